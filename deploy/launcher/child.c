/* child.c - see child.h */
#include "deploy/launcher/child.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/base/err.h"

int child_run(char *const argv[], int fo, int fe, bool search)
{
    pid_t pid = fork();
    if (pid < 0) {
        return err_set(-errno, "fork: %s", strerror(errno));
    }
    if (pid == 0) {
        dup2(fo, STDOUT_FILENO);
        dup2(fe, STDERR_FILENO);
        if (search) {
            execvp(argv[0], argv);
        } else {
            execv(argv[0], argv);
        }
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return status;
}

void child_describe_status(char *out, size_t n, int status)
{
    if (WIFSIGNALED(status)) {
        snprintf(out, n, "killed by signal %d", WTERMSIG(status));
    } else if (WEXITSTATUS(status) == 126 || WEXITSTATUS(status) == 127) {
        snprintf(out, n, "could not be run (exit %d)", WEXITSTATUS(status));
    } else {
        snprintf(out, n, "exit %d", WEXITSTATUS(status));
    }
}
