/* launcher_link.c - see launcher_link.h */
#include "common/base/launcher_link.h"

#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "common/base/err.h"

int launcher_link_from_env(void)
{
    const char *v = getenv(LAUNCHER_PID_ENV);
    if (!v) {
        return 0;
    }
    char *end = NULL;
    errno = 0;
    long pid = strtol(v, &end, 10);
    if (!isdigit((unsigned char)v[0]) || errno != 0 || *end != '\0' || pid < 2 ||
        pid > 0x3fffffffL) {
        return err_set(-EINVAL, "%s is '%s', expected the launcher's pid", LAUNCHER_PID_ENV, v);
    }
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0) {
        int e = errno;
        return err_set(-e, "prctl(PR_SET_PDEATHSIG): %s", strerror(e));
    }
    /* the launcher may have died before the line above: then the signal never comes */
    if ((long)getppid() != pid) {
        return err_set(-ESRCH, "the launcher (pid %ld, %s) is gone", pid, LAUNCHER_PID_ENV);
    }
    return 0;
}

void launcher_link_ignore_stop_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}
