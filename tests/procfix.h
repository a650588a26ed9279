/* procfix.h - fixtures for the tests that run the project's real binaries: temp run dirs,
 * spawn argv with log files, wait for an exit with a deadline (status or exit code), wait
 * for a port file and health, read or poll a process's Stats, stop one by SIGTERM or SIGKILL
 * by pid, a free port, now_ms. Header-only, for tests only: every wait has a deadline and
 * fails the test when it passes. The process work itself is tests/procspawn/procspawn.h's
 * (shared with the benchmarks); this adds the Criterion assertions and the spawned list.
 *
 *   static char tmp[PROCFIX_DIR_LEN];
 *   procfix_tmpdir(tmp, sizeof tmp);                     suite init
 *   procfix_t ms = {0};
 *   snprintf(ms.port_file, ...); snprintf(ms.log_file, ...);
 *   ms.pid = procfix_spawn(argv, ms.log_file);
 *   procfix_wait_serving(&ms, 20000);                    port file, then health SERVING
 *   procfix_wait_live(&lr, 20000);                       port file, then liveness SERVING
 *   double n = procfix_stat(ms.addr, "modelserver", "log_end");
 *   procfix_stop(&ms);                                   SIGTERM, expects exit status 0
 *   procfix_reap_all(); procfix_tmpdir_done(tmp);        suite fini
 */
#ifndef TWIG_TESTS_PROCFIX_H
#define TWIG_TESTS_PROCFIX_H

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/base/fs.h"
#include "common/base/err.h"
#include "common/rpc/rpc.h"
#include "proto/twig.pb-c.h"
#include "tests/procspawn/procspawn.h"

#define PROCFIX_DIR_LEN 64     /* "/tmp/twig-test-XXXXXX" and some room */
#define PROCFIX_MAX_SPAWNED 32 /* processes one test may start (killed at procfix_reap_all) */
#define PROCFIX_STOP_MS 60000  /* SIGTERM to exit: a model server may finish an epoch first */
#define PROCFIX_POLL_MS 10     /* the pause between two looks at a condition */

/* a process started by the test; port and addr once it serves */
typedef struct procfix {
    pid_t pid;
    int port;
    char addr[64];       /* "127.0.0.1:<port>" */
    char port_file[512]; /* where the process writes its port (set before the spawn) */
    char log_file[512];  /* its stdout and stderr ("" leaves them on the test's) */
} procfix_t;

/* the pids this test process spawned, for procfix_reap_all; tests are one process each
 * (Criterion forks every test), so this list is the test's own */
static pid_t procfix_spawned[PROCFIX_MAX_SPAWNED];
static int procfix_n_spawned;

static inline int64_t procfix_now_ms(void)
{
    return procspawn_now_ms();
}

/* a pause between two looks at a condition that has a deadline: never a wait for a server */
static inline void procfix_pause_ms(int ms)
{
    procspawn_pause_ms(ms);
}

/* ---- temp run dirs ---- */

/* a fresh directory /tmp/twig-test-XXXXXX into dir */
static inline void procfix_tmpdir(char *dir, size_t n)
{
    snprintf(dir, n, "/tmp/twig-test-XXXXXX");
    cr_assert_not_null(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
}

/* remove a directory tree */
static inline void procfix_rmtree(const char *dir)
{
    fs_remove_tree(dir);   /* what is left is caught by procfix_tmpdir_done's check */
}

/* the end of a run dir: removed (and expected gone), or kept (logs, data) when
 * TWIG_TEST_KEEP is set */
static inline void procfix_tmpdir_done(const char *dir)
{
    if (getenv("TWIG_TEST_KEEP")) {
        fprintf(stderr, "kept %s\n", dir);
        return;
    }
    procfix_rmtree(dir);
    cr_expect_neq(access(dir, F_OK), 0, "%s is still there", dir);
}

/* a port on 127.0.0.1 nobody listens on right now (bound, read, released), for a peer that
 * starts later or for an address where nobody answers */
static inline int procfix_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0, "socket: %s", strerror(errno));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0, "bind: %s", strerror(errno));
    socklen_t len = sizeof a;
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* ---- processes ---- */

/* fork + exec argv (NULL-terminated, argv[0] a path) with stdout appended to out_file and
 * stderr to err_file (NULL or "": the test's own); the child dies with the test process */
static inline pid_t procfix_spawn_io(const char *const *argv, const char *out_file,
                                     const char *err_file)
{
    pid_t pid = procspawn_start(argv, out_file, err_file);
    cr_assert_geq(pid, 0, "%s", err_msg());
    if (procfix_n_spawned < PROCFIX_MAX_SPAWNED) {
        procfix_spawned[procfix_n_spawned++] = pid;
    }
    return pid;
}

/* the same with stdout and stderr both appended to log_file */
static inline pid_t procfix_spawn(const char *const *argv, const char *log_file)
{
    return procfix_spawn_io(argv, log_file, log_file);
}

/* spawn bin with args (NULL-terminated, at most 62), stdout and stderr into out_file, which is
 * emptied first so a later read sees only this run's output */
static inline pid_t procfix_spawn_bin(const char *bin, const char *const *args,
                                      const char *out_file)
{
    const char *argv[64] = {bin};
    int k = 1;
    for (; args[k - 1]; k++) {
        cr_assert_lt(k, 63, "too many arguments for %s", bin);
        argv[k] = args[k - 1];
    }
    argv[k] = NULL;
    unlink(out_file);
    return procfix_spawn(argv, out_file);
}

/* path's text into out (at most n - 1 bytes, NUL-terminated) */
static inline void procfix_read_text(char *out, size_t n, const char *path)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot read %s", path);
    size_t got = fread(out, 1, n - 1, f);
    out[got] = '\0';
    fclose(f);
}

/* kill -9 and reap every process this test spawned that still runs (suite fini: a failed
 * assertion may have left servers behind, writing into the run dir) */
static inline void procfix_reap_all(void)
{
    for (int i = 0; i < procfix_n_spawned; i++) {
        if (waitpid(procfix_spawned[i], NULL, WNOHANG) == 0) {
            kill(procfix_spawned[i], SIGKILL);
            waitpid(procfix_spawned[i], NULL, 0);
        }
    }
    procfix_n_spawned = 0;
}

/* wait up to ms for pid to exit: true and its wait status in *st, or false (still running) */
static inline bool procfix_poll_exit(int *st, pid_t pid, int ms)
{
    return procspawn_poll_exit(st, pid, ms);
}

/* does pid still run after ms? (false: it exited, and is reaped) */
static inline bool procfix_runs_for(pid_t pid, int ms)
{
    int st;
    return !procfix_poll_exit(&st, pid, ms);
}

/* pid's wait status once it exits within ms; past the deadline it gets SIGTERM (a launcher
 * stops its children), SIGKILL if it still runs 10 s later, and the test fails */
static inline int procfix_wait_status(pid_t pid, int ms)
{
    int st = 0;
    if (procfix_poll_exit(&st, pid, ms)) {
        return st;
    }
    procspawn_stop(&st, pid, 10000);
    cr_assert_fail("process %d did not exit within %d ms", (int)pid, ms);
    return st;
}

/* pid's exit code once it exits within ms: its exit status, or 256 + the signal that ended
 * it (never an exit status); the deadline as procfix_wait_status */
static inline int procfix_exit_code(pid_t pid, int ms)
{
    int st = procfix_wait_status(pid, ms);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 256 + WTERMSIG(st);
}

/* the port p wrote to p->port_file, within ms; fails if p exits first */
static inline int procfix_read_port(procfix_t *p, int ms)
{
    int st = 0;
    p->port = 0;
    int rc = procspawn_read_port(&p->port, &st, p->port_file, p->pid, ms, 5);
    cr_assert_eq(rc, 0, "%s (log %s)", err_msg(), p->log_file);
    snprintf(p->addr, sizeof p->addr, "127.0.0.1:%d", p->port);
    return p->port;
}

/* wait until p->port_file names a port and that port serves health, each within ms */
static inline void procfix_wait_serving(procfix_t *p, int ms)
{
    procfix_read_port(p, ms);
    int st;
    int rc = procspawn_wait_health(&st, p->addr, RPC_HEALTH_READINESS, p->pid, ms,
                                   PROCFIX_POLL_MS);
    cr_assert_eq(rc, 0, "%s not serving: %s (log %s)", p->addr, err_msg(), p->log_file);
}

/* wait until p->port_file names a port and that port answers liveness SERVING, each within
 * ms: for a process that is up but may not be ready (a peer it needs is missing) */
static inline void procfix_wait_live(procfix_t *p, int ms)
{
    procfix_read_port(p, ms);
    int st;
    int rc = procspawn_wait_health(&st, p->addr, RPC_HEALTH_LIVENESS, p->pid, ms,
                                   PROCFIX_POLL_MS);
    cr_assert_eq(rc, 0, "%s not live: %s (log %s)", p->addr, err_msg(), p->log_file);
}

/* SIGTERM, and expect exit status 0 within PROCFIX_STOP_MS */
static inline void procfix_stop(procfix_t *p)
{
    cr_assert_eq(kill(p->pid, SIGTERM), 0);
    int st = procfix_wait_status(p->pid, PROCFIX_STOP_MS);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "pid %d: exit status %d (log %s)", (int)p->pid,
              st, p->log_file);
    p->pid = 0;
}

/* SIGKILL, and expect the process to end by it */
static inline void procfix_kill9(procfix_t *p)
{
    cr_assert_eq(kill(p->pid, SIGKILL), 0);
    int st = procfix_wait_status(p->pid, PROCFIX_STOP_MS);
    cr_expect(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "pid %d: status %d", (int)p->pid, st);
    p->pid = 0;
}

/* ---- Stats ---- */

/* one GetStats of the process at addr: 0 and the value of key in *v (NAN when absent), or
 * the rpc error; when role is given, the reply must name it */
static inline int procfix_stat_get(double *v, const char *addr, const char *role, const char *key)
{
    rpc_client_t *cl;
    int rc = rpc_client_init(&cl, addr, NULL);
    if (rc < 0) {
        return rc;
    }
    Twig__V1__StatsRequest q = TWIG__V1__STATS_REQUEST__INIT;
    ProtobufCMessage *reply = NULL;
    rpc_call_opts o = {.deadline_ms = 5000};
    rc = rpc_client_unary(cl, &reply, "/twig.v1.Stats/GetStats", &q.base,
                          &twig__v1__stats_reply__descriptor, &o);
    *v = NAN;
    if (rc == 0) {
        const Twig__V1__StatsReply *r = (const Twig__V1__StatsReply *)reply;
        if (role) {
            cr_expect_str_eq(r->role, role);
        }
        for (size_t i = 0; i < r->n_values; i++) {
            if (strcmp(r->values[i]->key, key) == 0) {
                *v = r->values[i]->value;
            }
        }
        protobuf_c_message_free_unpacked(reply, NULL);
    }
    rpc_client_free(cl);
    return rc;
}

/* the value of key in the Stats of the process at addr; fails if the call fails or the
 * key is absent */
static inline double procfix_stat(const char *addr, const char *role, const char *key)
{
    double v;
    int rc = procfix_stat_get(&v, addr, role, key);
    cr_assert_eq(rc, 0, "GetStats %s: %s", addr, err_msg());
    cr_assert(!isnan(v), "no stat %s at %s", key, addr);
    return v;
}

/* poll the Stats at addr until key reaches want, within ms; the value reached */
static inline double procfix_wait_stat(const char *addr, const char *role, const char *key,
                                       double want, int ms)
{
    int64_t deadline = procfix_now_ms() + ms;
    double v = NAN;
    while (!(procfix_stat_get(&v, addr, role, key) == 0 && v >= want)) {
        cr_assert_lt(procfix_now_ms(), deadline, "stat %s at %s is %g, not %g within %d ms", key,
                     addr, v, want, ms);
        procfix_pause_ms(PROCFIX_POLL_MS);
    }
    return v;
}

#endif
