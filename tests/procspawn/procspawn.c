/* procspawn.c - see procspawn.h */
#include "tests/procspawn/procspawn.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/base/err.h"
#include "common/rpc/rpc.h"

#define PROCSPAWN_PROBE_MAX_MS 500   /* longest single health probe */
#define PROCSPAWN_REAP_POLL_MS 2     /* pause between two looks for an exit after a signal */

int64_t procspawn_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void procspawn_pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

void procspawn_status_text(char *out, size_t n, int st)
{
    if (WIFEXITED(st)) {
        snprintf(out, n, "exit status %d", WEXITSTATUS(st));
    } else if (WIFSIGNALED(st)) {
        snprintf(out, n, "signal %d", WTERMSIG(st));
    } else {
        snprintf(out, n, "wait status %d", st);
    }
}

/* the child's fd appended to path (NULL or "": left as it is) */
static void procspawn_redirect(int fd, const char *path)
{
    if (path && path[0]) {
        int f = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (f >= 0) {
            dup2(f, fd);
            close(f);
        }
    }
}

pid_t procspawn_start(const char *const *argv, const char *out_file, const char *err_file)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        return err_set(-errno, "fork: %s", strerror(errno));
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) {
            _exit(127);
        }
        procspawn_redirect(STDOUT_FILENO, out_file);
        procspawn_redirect(STDERR_FILENO, err_file);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

bool procspawn_poll_exit(int *st, pid_t pid, int ms)
{
    int64_t deadline = procspawn_now_ms() + ms;
    for (;;) {
        if (waitpid(pid, st, WNOHANG) == pid) {
            return true;
        }
        if (procspawn_now_ms() >= deadline) {
            return false;
        }
        procspawn_pause_ms(PROCSPAWN_REAP_POLL_MS);
    }
}

/* PROCSPAWN_EXITED naming what pid was waited for, if it has exited; else 0 */
static int procspawn_check_exit(int *st, pid_t pid, const char *waiting_for)
{
    if (waitpid(pid, st, WNOHANG) != pid) {
        return 0;
    }
    char why[64];
    procspawn_status_text(why, sizeof why, *st);
    return err_set(PROCSPAWN_EXITED, "pid %d exited (%s) before %s", (int)pid, why, waiting_for);
}

int procspawn_read_port(int *port, int *st, const char *port_file, pid_t pid, int ms,
                        int poll_ms)
{
    int64_t deadline = procspawn_now_ms() + ms;
    char what[600];
    snprintf(what, sizeof what, "writing %s", port_file);
    for (;;) {
        FILE *f = fopen(port_file, "r");
        if (f) {
            int p = 0;
            int ok = fscanf(f, "%d", &p) == 1 && p > 0 && p < 65536;
            fclose(f);
            if (ok) {
                *port = p;
                return 0;
            }
        }
        int rc = procspawn_check_exit(st, pid, what);
        if (rc < 0) {
            return rc;
        }
        if (procspawn_now_ms() >= deadline) {
            return err_set(TWIG_EDEADLINE, "no port in %s within %d ms", port_file, ms);
        }
        procspawn_pause_ms(poll_ms);
    }
}

int procspawn_wait_health(int *st, const char *addr, const char *service, pid_t pid, int ms,
                          int poll_ms)
{
    int64_t deadline = procspawn_now_ms() + ms;
    char last[256] = "no probe finished";
    for (;;) {
        int64_t left = deadline - procspawn_now_ms();
        int probe_ms = left < PROCSPAWN_PROBE_MAX_MS ? (int)(left > 1 ? left : 1)
                                                     : PROCSPAWN_PROBE_MAX_MS;
        int rc = rpc_health_check(addr, service, probe_ms);
        if (rc == RPC_HEALTH_SERVING) {
            return 0;
        }
        snprintf(last, sizeof last, "%s",
                 rc == RPC_HEALTH_NOT_SERVING ? "NOT_SERVING" : err_msg());
        if ((rc = procspawn_check_exit(st, pid, "it was serving")) < 0) {
            return rc;
        }
        if (procspawn_now_ms() >= deadline) {
            return err_set(TWIG_EDEADLINE, "%s: service \"%s\" not serving after %d ms (last: %s)",
                           addr, service, ms, last);
        }
        procspawn_pause_ms(poll_ms);
    }
}

int procspawn_signal_reap(int *st, pid_t pid, int sig, int ms)
{
    if (kill(pid, sig) < 0) {
        return err_set(-errno, "kill %d: %s", (int)pid, strerror(errno));
    }
    if (!procspawn_poll_exit(st, pid, ms)) {
        return err_set(TWIG_EDEADLINE, "pid %d still runs %d ms after signal %d", (int)pid, ms,
                       sig);
    }
    return 0;
}

int procspawn_stop(int *st, pid_t pid, int grace_ms)
{
    int rc = procspawn_signal_reap(st, pid, SIGTERM, grace_ms);
    if (rc != TWIG_EDEADLINE) {
        return rc;
    }
    kill(pid, SIGKILL);
    waitpid(pid, st, 0);
    return 1;
}
