/* proc.h - start the real binaries for process tests: spawn with a port file, wait until
 * serving (health poll with a deadline), stop with SIGTERM or SIGKILL by pid. Header-only. */
#ifndef TWIG_TESTS_MODELSERVER_PROC_H
#define TWIG_TESTS_MODELSERVER_PROC_H

#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"
#include "common/rpc.h"

typedef struct proc {
    pid_t pid;
    int port;
    char addr[64];
    char port_file[512];
} proc_t;

static inline int64_t proc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline void proc_pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* spawn argv[0] (NULL-terminated argv); the child dies with the test process */
static inline pid_t proc_spawn(const char *const *argv)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) {
            _exit(127);
        }
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

/* wait until p->port_file names a port and that port serves health */
static inline void proc_wait_serving(proc_t *p, int ms)
{
    int64_t deadline = proc_now_ms() + ms;
    p->port = 0;
    while (proc_now_ms() < deadline) {
        FILE *f = fopen(p->port_file, "r");
        if (f) {
            int ok = fscanf(f, "%d", &p->port) == 1;
            fclose(f);
            if (ok) {
                break;
            }
        }
        int st;
        cr_assert_eq(waitpid(p->pid, &st, WNOHANG), 0, "%s exited before serving", p->port_file);
        proc_pause_ms(5);
    }
    cr_assert_gt(p->port, 0, "no port in %s within %d ms", p->port_file, ms);
    snprintf(p->addr, sizeof p->addr, "127.0.0.1:%d", p->port);
    int rc = rpc_wait_serving(p->addr, ms);
    cr_assert_eq(rc, 0, "%s not serving: %s", p->addr, err_msg());
}

/* wait for pid to exit within ms; its wait status (SIGKILLed and failed after the deadline) */
static inline int proc_wait_exit(pid_t pid, int ms)
{
    int64_t deadline = proc_now_ms() + ms;
    int st = 0;
    while (proc_now_ms() < deadline) {
        if (waitpid(pid, &st, WNOHANG) == pid) {
            return st;
        }
        proc_pause_ms(5);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    cr_assert_fail("process %d did not exit within %d ms", (int)pid, ms);
    return st;
}

/* SIGTERM, and expect exit status 0 */
static inline void proc_stop(proc_t *p)
{
    cr_assert_eq(kill(p->pid, SIGTERM), 0);
    int st = proc_wait_exit(p->pid, 20000);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: exit status %d", p->port_file, st);
    p->pid = 0;
}

static inline void proc_kill9(proc_t *p)
{
    cr_assert_eq(kill(p->pid, SIGKILL), 0);
    int st = proc_wait_exit(p->pid, 20000);
    cr_expect(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    p->pid = 0;
}

#endif
