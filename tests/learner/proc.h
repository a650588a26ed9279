/* proc.h - the learner process tests' helpers: start the real twig-modelserver and
 * twig-learner binaries on 127.0.0.1:0 (port files), wait for them by health with a deadline,
 * append real data, push synthetic batches, read Progress and Stats. Header-only. */
#ifndef TWIG_TESTS_LEARNER_PROC_H
#define TWIG_TESTS_LEARNER_PROC_H

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../modelserver/fixture.h"
#include "common/err.h"
#include "common/mem.h"
#include "common/rng.h"
#include "common/rpc.h"
#include "proto/twig.pb-c.h"

#define MS_BIN TWIG_BIN_DIR "/modelserver/twig-modelserver"
#define LEARNER_BIN TWIG_BIN_DIR "/learner/twig-learner"
#define ENV "Pendulum-v1"
#define O 3
#define A 1

#define MAX_SPAWNED 16
static pid_t spawned[MAX_SPAWNED];
static int n_spawned;
static char *tmp;

static void proc_setup(void)
{
    tmp = fx_tmpdir();
    rpc_lib_init();
}

static void proc_teardown(void)
{
    for (int i = 0; i < n_spawned; i++) {
        if (waitpid(spawned[i], NULL, WNOHANG) == 0) {
            kill(spawned[i], SIGKILL);
            waitpid(spawned[i], NULL, 0);
        }
    }
    rpc_lib_shutdown(2000);
    if (!getenv("TWIG_TEST_KEEP")) { /* keep the logs for a look */
        fx_rmtree(tmp);
    }
    free(tmp);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

typedef struct proc {
    pid_t pid;
    int port;
    char addr[64];
    char port_file[512];
    char log_file[512];
} proc;

/* fork + exec argv (NULL-terminated) with stderr into log_file; dies with the test */
static pid_t proc_spawn(const char *const *argv, const char *log_file)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) {
            _exit(127);
        }
        int fd = open(log_file, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 2);
            close(fd);
        }
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    if (n_spawned < MAX_SPAWNED) {
        spawned[n_spawned++] = pid;
    }
    return pid;
}

/* wait for p's port file, then for health SERVING */
static void proc_wait_serving(proc *p)
{
    int64_t deadline = now_ms() + 30000;
    p->port = 0;
    while (now_ms() < deadline) {
        FILE *f = fopen(p->port_file, "r");
        if (f) {
            int ok = fscanf(f, "%d", &p->port) == 1;
            fclose(f);
            if (ok) {
                break;
            }
        }
        int st;
        cr_assert_eq(waitpid(p->pid, &st, WNOHANG), 0, "process exited before serving (log %s)",
                     p->log_file);
        pause_ms(5);
    }
    cr_assert_gt(p->port, 0, "no port file within 30 s (log %s)", p->log_file);
    snprintf(p->addr, sizeof p->addr, "127.0.0.1:%d", p->port);
    cr_assert_eq(rpc_wait_serving(p->addr, 20000), 0, "not serving: %s", err_msg());
}

/* a model server on data dir tmp/<name>, listening on listen ("127.0.0.1:0": any port) */
static void start_modelserver_at(proc *p, const char *name, const char *listen)
{
    char data_dir[512];
    snprintf(data_dir, sizeof data_dir, "%s/%s", tmp, name);
    snprintf(p->port_file, sizeof p->port_file, "%s/%s.port", tmp, name);
    snprintf(p->log_file, sizeof p->log_file, "%s/%s.log", tmp, name);
    unlink(p->port_file);
    const char *argv[] = {MS_BIN,        "--listen",    listen,     "--data-dir", data_dir,
                          "--port-file", p->port_file,  "--env-id", ENV,          "--fsync",
                          "none",        "--log-level", "warn",     NULL};
    p->pid = proc_spawn(argv, p->log_file);
    proc_wait_serving(p);
}

static inline void start_modelserver(proc *p, const char *name)
{
    start_modelserver_at(p, name, "127.0.0.1:0");
}

/* the learner with small nets; sets: extra "--set" assignments (NULL-terminated).
 * Its checkpoints go to tmp/<name>.ckpt, so a restart with the same name resumes. */
static void start_learner(proc *p, const char *name, const char *ms_addr, const char *const *sets)
{
    static char buf[16][600];
    int nb = 0;
    snprintf(p->port_file, sizeof p->port_file, "%s/%s.port", tmp, name);
    snprintf(p->log_file, sizeof p->log_file, "%s/%s.log", tmp, name);
    unlink(p->port_file);
    const char *argv[64] = {LEARNER_BIN};
    int n = 1;
#define SET(...)                                                                                   \
    do {                                                                                           \
        snprintf(buf[nb], sizeof buf[nb], __VA_ARGS__);                                            \
        argv[n++] = "--set";                                                                       \
        argv[n++] = buf[nb++];                                                                     \
    } while (0)
    SET("env=%s", ENV);
    SET("modelserver_addr=%s", ms_addr);
    SET("learner.listen=127.0.0.1:0");
    SET("learner.port_file=%s", p->port_file);
    SET("learner.checkpoint_dir=%s/%s.ckpt", tmp, name);
    SET("hidden=32");
    SET("learner.batch_size=32");
    SET("real_steps=1000000");
    SET("learner.fetch_wait_ms=200");
#undef SET
    for (int i = 0; sets && sets[i]; i++) {
        argv[n++] = "--set";
        argv[n++] = sets[i];
    }
    argv[n] = NULL;
    p->pid = proc_spawn(argv, p->log_file);
    proc_wait_serving(p);
}

static int wait_exit(pid_t pid, int ms)
{
    int64_t deadline = now_ms() + ms;
    int st = 0;
    while (now_ms() < deadline) {
        if (waitpid(pid, &st, WNOHANG) == pid) {
            return st;
        }
        pause_ms(5);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    cr_assert_fail("process %d did not exit within %d ms", (int)pid, ms);
    return st;
}

static void stop_proc(proc *p)
{
    cr_assert_eq(kill(p->pid, SIGTERM), 0);
    int st = wait_exit(p->pid, 30000);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d (log %s)", st, p->log_file);
}

static inline void kill9_proc(proc *p)
{
    cr_assert_eq(kill(p->pid, SIGKILL), 0);
    int st;
    cr_assert_eq(waitpid(p->pid, &st, 0), p->pid);
    cr_expect(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
}

static rpc_client_t *client_of(const proc *p)
{
    rpc_client_t *cl;
    cr_assert_eq(rpc_client_init(&cl, p->addr, NULL), 0);
    return cl;
}

static const rpc_call_opts call_opts = {.deadline_ms = 10000};

/* ---- data ---- */

/* an owned batch of Pendulum-like transitions: obs in [-1, 1], act in env units [-2, 2] */
typedef struct tb {
    Twig__V1__TransitionBatch m;
    float *obs, *act, *reward, *next_obs;
    protobuf_c_boolean *term, *trunc;
    char source[64];
} tb;

static void tb_make(tb *b, const char *source, uint64_t seq, uint32_t count, uint64_t salt)
{
    memset(b, 0, sizeof *b);
    twig__v1__transition_batch__init(&b->m);
    rng_t r;
    rng_seed(&r, seq * 7919 + salt);
    b->obs = xmalloc(sizeof(float) * count * O);
    b->next_obs = xmalloc(sizeof(float) * count * O);
    b->act = xmalloc(sizeof(float) * count * A);
    b->reward = xmalloc(sizeof(float) * count);
    b->term = xcalloc(count, sizeof *b->term);
    b->trunc = xcalloc(count, sizeof *b->trunc);
    for (uint32_t i = 0; i < count * O; i++) {
        b->obs[i] = rng_uniform_range(&r, -1, 1);
        b->next_obs[i] = rng_uniform_range(&r, -1, 1);
    }
    for (uint32_t i = 0; i < count; i++) {
        b->act[i] = rng_uniform_range(&r, -2, 2);
        b->reward[i] = -b->obs[i * O] * b->obs[i * O];
    }
    snprintf(b->source, sizeof b->source, "%s", source);
    b->m.env_id = (char *)ENV;
    b->m.source_id = b->source;
    b->m.seq = seq;
    b->m.obs_dim = O;
    b->m.act_dim = A;
    b->m.count = count;
    b->m.n_obs = b->m.n_next_obs = (size_t)count * O;
    b->m.n_act = (size_t)count * A;
    b->m.n_reward = b->m.n_terminated = b->m.n_truncated = count;
    b->m.obs = b->obs;
    b->m.next_obs = b->next_obs;
    b->m.act = b->act;
    b->m.reward = b->reward;
    b->m.terminated = b->term;
    b->m.truncated = b->trunc;
    b->m.n_workers = 1;   /* synthetic pushes name their worker; real appends ignore it */
}

static void tb_free(tb *b)
{
    free(b->obs);
    free(b->next_obs);
    free(b->act);
    free(b->reward);
    free(b->term);
    free(b->trunc);
}

/* append count real transitions as (source, seq) to the model server; asserts the ack */
static void append_real(rpc_client_t *ms, const char *source, uint64_t seq, uint32_t count)
{
    tb b;
    tb_make(&b, source, seq, count, 1);
    ProtobufCMessage *reply = NULL;
    int rc = rpc_client_unary(ms, &reply, "/twig.v1.ModelServer/AppendReal", &b.m.base,
                              &twig__v1__append_real_reply__descriptor, &call_opts);
    cr_assert_eq(rc, 0, "AppendReal: %s", err_msg());
    cr_assert_eq(((Twig__V1__AppendRealReply *)reply)->count, count);
    protobuf_c_message_free_unpacked(reply, NULL);
    tb_free(&b);
}

/* push a synthetic batch; returns the rc, reply in *out (may be NULL) */
static int push_synth(rpc_client_t *cl, tb *b, Twig__V1__PushReply **out)
{
    ProtobufCMessage *reply = NULL;
    int rc = rpc_client_unary(cl, &reply, "/twig.v1.Learner/PushSynthetic", &b->m.base,
                              &twig__v1__push_reply__descriptor, &call_opts);
    if (out) {
        *out = (Twig__V1__PushReply *)reply;
    } else if (reply) {
        protobuf_c_message_free_unpacked(reply, NULL);
    }
    return rc;
}

/* a valid synthetic push of count transitions from worker 0 of 1, whose quota watermark is
 * then quota_end */
static void push_ok(rpc_client_t *cl, const char *source, uint64_t seq, uint32_t count,
                    uint64_t quota_end)
{
    tb b;
    tb_make(&b, source, seq, count, 2);
    b.m.model_version = 1;
    b.m.policy_version = 1;
    b.m.quota_end = quota_end;
    Twig__V1__PushReply *r = NULL;
    int rc = push_synth(cl, &b, &r);
    cr_assert_eq(rc, 0, "PushSynthetic: %s", err_msg());
    cr_assert_eq(r->accepted, count);
    cr_assert_not(r->duplicate);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    tb_free(&b);
}

static Twig__V1__Progress *progress_of(rpc_client_t *cl)
{
    Twig__V1__ProgressRequest q = TWIG__V1__PROGRESS_REQUEST__INIT;
    ProtobufCMessage *reply = NULL;
    int rc = rpc_client_unary(cl, &reply, "/twig.v1.Learner/GetProgress", &q.base,
                              &twig__v1__progress__descriptor, &call_opts);
    cr_assert_eq(rc, 0, "GetProgress: %s", err_msg());
    return (Twig__V1__Progress *)reply;
}

/* one value of the learner's Stats */
static double stat_of(rpc_client_t *cl, const char *key)
{
    Twig__V1__StatsRequest q = TWIG__V1__STATS_REQUEST__INIT;
    ProtobufCMessage *reply = NULL;
    int rc = rpc_client_unary(cl, &reply, "/twig.v1.Stats/GetStats", &q.base,
                              &twig__v1__stats_reply__descriptor, &call_opts);
    cr_assert_eq(rc, 0, "GetStats: %s", err_msg());
    Twig__V1__StatsReply *r = (Twig__V1__StatsReply *)reply;
    double v = NAN;
    for (size_t i = 0; i < r->n_values; i++) {
        if (strcmp(r->values[i]->key, key) == 0) {
            v = r->values[i]->value;
        }
    }
    protobuf_c_message_free_unpacked(reply, NULL);
    cr_assert(!isnan(v), "no stat %s", key);
    return v;
}

/* GetPolicy(have, wait_ms): the reply (owned) */
static Twig__V1__GetWeightsReply *get_policy(rpc_client_t *cl, uint64_t have, uint32_t wait_ms)
{
    Twig__V1__GetWeightsRequest q = TWIG__V1__GET_WEIGHTS_REQUEST__INIT;
    q.have_version = have;
    q.wait_ms = wait_ms;
    ProtobufCMessage *reply = NULL;
    int rc = rpc_client_unary(cl, &reply, "/twig.v1.Learner/GetPolicy", &q.base,
                              &twig__v1__get_weights_reply__descriptor, &call_opts);
    cr_assert_eq(rc, 0, "GetPolicy: %s", err_msg());
    return (Twig__V1__GetWeightsReply *)reply;
}

/* poll Progress until pred holds or ms pass; returns the last Progress (owned) */
typedef bool (*progress_pred)(const Twig__V1__Progress *p, const void *arg);
static Twig__V1__Progress *wait_progress(rpc_client_t *cl, progress_pred pred, const void *arg,
                                         int ms, const char *what)
{
    int64_t deadline = now_ms() + ms;
    for (;;) {
        Twig__V1__Progress *p = progress_of(cl);
        if (pred(p, arg)) {
            return p;
        }
        if (now_ms() > deadline) {
            cr_assert_fail("%s not reached within %d ms: updates=%" PRIu64 " real_steps=%" PRIu64
                           " synthetic=%" PRIu64 " quota_done=%" PRIu64,
                           what, ms, p->updates, p->real_steps, p->synthetic_samples,
                           p->rollout_quota_done);
        }
        protobuf_c_message_free_unpacked(&p->base, NULL);
        pause_ms(20);
    }
}

#endif
