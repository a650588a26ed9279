/* actor process tests: the real twig-actor against the real twig-modelserver on 127.0.0.1,
 * with a fake learner (an rpc server inside the test) where pacing and evals matter.
 * End state is checked by reading the log back over FetchReal and LogStatus. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/env.h"
#include "common/err.h"
#include "common/nn_blob.h"
#include "common/policy.h"
#include "common/rpc.h"
#include "common/sac.h"
#include "proto/twig.pb-c.h"

#define ACTOR_BIN TWIG_BIN_DIR "/actor/twig-actor"
#define MS_BIN TWIG_BIN_DIR "/modelserver/twig-modelserver"
#define DEADLINE_MS 120000 /* any wait for a process in these tests */

static void suite_init(void)
{
    rpc_lib_init();
}

static void suite_fini(void)
{
    rpc_lib_shutdown(5000);
}

TestSuite(actor_process, .init = suite_init, .fini = suite_fini, .timeout = 300);

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* a short pause between polls of a condition that has a deadline */
static void nap(void)
{
    struct timespec ts = {0, 20 * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- processes ---- */

static pid_t spawn(char *const argv[], const char *log_path)
{
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

/* wait for pid to exit within ms: its wait status, or -1 (still running) */
static int wait_exit(pid_t pid, uint64_t ms)
{
    uint64_t end = now_ms() + ms;
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            return st;
        }
        if (now_ms() >= end) {
            return -1;
        }
        nap();
    }
}

static void kill9(pid_t pid)
{
    kill(pid, SIGKILL);
    cr_assert_neq(wait_exit(pid, 10000), -1);
}

/* the port a process wrote to its port file, within the deadline */
static int read_port(const char *path)
{
    uint64_t end = now_ms() + DEADLINE_MS;
    while (now_ms() < end) {
        FILE *f = fopen(path, "r");
        if (f) {
            int port = 0;
            int n = fscanf(f, "%d", &port);
            fclose(f);
            if (n == 1 && port > 0) {
                return port;
            }
        }
        nap();
    }
    cr_assert_fail("no port in %s", path);
    return -1;
}

typedef struct run_dir {
    char dir[128];
    char data[160];
    char ms_port_file[160];
    char actor_port_file[160];
    char ms_log[160];
    char actor_log[160];
    char ms_addr[64];
    int ms_port;
    pid_t ms;
} run_dir;

static void dir_init(run_dir *r)
{
    snprintf(r->dir, sizeof r->dir, "/tmp/twig-actor-test-XXXXXX");
    cr_assert_not_null(mkdtemp(r->dir));
    snprintf(r->data, sizeof r->data, "%s/data", r->dir);
    snprintf(r->ms_port_file, sizeof r->ms_port_file, "%s/ms.port", r->dir);
    snprintf(r->actor_port_file, sizeof r->actor_port_file, "%s/actor.port", r->dir);
    snprintf(r->ms_log, sizeof r->ms_log, "%s/modelserver.log", r->dir);
    snprintf(r->actor_log, sizeof r->actor_log, "%s/actor.log", r->dir);
}

/* TWIG_TEST_KEEP=1 keeps the run directories (logs, data) for a look after a failure */
static void dir_free(run_dir *r)
{
    if (getenv("TWIG_TEST_KEEP")) {
        fprintf(stderr, "kept %s\n", r->dir);
        return;
    }
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", r->dir);
    cr_expect_eq(system(cmd), 0);
}

/* start the model server (port 0 the first time, then the same port) and wait for health */
static void ms_start(run_dir *r)
{
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", r->ms_port);
    unlink(r->ms_port_file);
    char *argv[] = {MS_BIN,  "--listen",    listen,          "--data-dir",
                    r->data, "--port-file", r->ms_port_file, NULL};
    r->ms = spawn(argv, r->ms_log);
    r->ms_port = read_port(r->ms_port_file);
    snprintf(r->ms_addr, sizeof r->ms_addr, "127.0.0.1:%d", r->ms_port);
    cr_assert_eq(rpc_wait_serving(r->ms_addr, DEADLINE_MS), 0, "%s", err_msg());
}

static void ms_stop(run_dir *r)
{
    kill(r->ms, SIGTERM);
    int st = wait_exit(r->ms, DEADLINE_MS);
    cr_expect(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "modelserver status %d", st);
}

/* start twig-actor with the given extra arguments (NULL-terminated) */
static pid_t actor_start(run_dir *r, const char *learner_addr, char *const *extra)
{
    char *argv[64];
    int n = 0;
    argv[n++] = ACTOR_BIN;
    argv[n++] = "--modelserver-addr";
    argv[n++] = r->ms_addr;
    argv[n++] = "--learner-addr";
    argv[n++] = (char *)learner_addr;
    argv[n++] = "--port-file";
    argv[n++] = r->actor_port_file;
    argv[n++] = "--backoff-max-ms";
    argv[n++] = "200";
    for (int i = 0; extra[i]; i++) {
        argv[n++] = extra[i];
    }
    argv[n] = NULL;
    unlink(r->actor_port_file);
    return spawn(argv, r->actor_log);
}

/* ---- the model server, read back ---- */

/* LogStatus for a source: the log's end, the source's transitions and (if seq) last seq */
static int log_status(const char *addr, const char *source, uint64_t *end, uint64_t *stored,
                      uint64_t *seq)
{
    rpc_client_t *cl;
    cr_assert_eq(rpc_client_init(&cl, addr, NULL), 0);
    Twig__V1__LogStatusRequest q = TWIG__V1__LOG_STATUS_REQUEST__INIT;
    q.source_id = (char *)source;
    ProtobufCMessage *reply = NULL;
    rpc_call_opts o = {.deadline_ms = 2000};
    int rc = rpc_client_unary(cl, &reply, "/twig.v1.ModelServer/LogStatus", &q.base,
                              &twig__v1__log_status_reply__descriptor, &o);
    if (rc == 0) {
        const Twig__V1__LogStatusReply *r = (const Twig__V1__LogStatusReply *)reply;
        *end = r->end_offset;
        *stored = r->source_transitions;
        if (seq) {
            *seq = r->source_seq;
        }
        protobuf_c_message_free_unpacked(reply, NULL);
    }
    rpc_client_free(cl);
    return rc;
}

/* poll until the log's end reaches at least want; the end seen */
static uint64_t wait_log_end(const char *addr, uint64_t want)
{
    uint64_t end = 0, stored = 0;
    uint64_t stop = now_ms() + DEADLINE_MS;
    while (now_ms() < stop) {
        if (log_status(addr, "", &end, &stored, NULL) == 0 && end >= want) {
            return end;
        }
        nap();
    }
    cr_assert_fail("log end %lu never reached %lu", (unsigned long)end, (unsigned long)want);
    return 0;
}

typedef struct rows {
    uint64_t n;
    uint32_t O; /* obs dim; the action has 1 dim in these tests */
    float *obs, *act, *reward, *next_obs;
    int *terminated, *truncated;
} rows_t;

static void rows_fetch_dims(rows_t *r, const char *addr, uint64_t n, uint32_t O)
{
    r->n = n;
    r->O = O;
    r->obs = calloc(n * O, sizeof(float));
    r->next_obs = calloc(n * O, sizeof(float));
    r->act = calloc(n, sizeof(float));
    r->reward = calloc(n, sizeof(float));
    r->terminated = calloc(n, sizeof(int));
    r->truncated = calloc(n, sizeof(int));
    rpc_client_t *cl;
    cr_assert_eq(rpc_client_init(&cl, addr, NULL), 0);
    uint64_t at = 0;
    for (int calls = 0; at < n && calls < 10000; calls++) {
        Twig__V1__FetchRealRequest q = TWIG__V1__FETCH_REAL_REQUEST__INIT;
        q.from_offset = at;
        q.max_count = 1000;
        ProtobufCMessage *reply = NULL;
        rpc_call_opts o = {.deadline_ms = 5000};
        cr_assert_eq(rpc_client_unary(cl, &reply, "/twig.v1.ModelServer/FetchReal", &q.base,
                                      &twig__v1__fetch_real_reply__descriptor, &o),
                     0, "%s", err_msg());
        const Twig__V1__FetchRealReply *f = (const Twig__V1__FetchRealReply *)reply;
        cr_assert_not_null(f->batch);
        const Twig__V1__TransitionBatch *b = f->batch;
        cr_assert_eq(f->first_offset, at);
        cr_assert_eq(b->obs_dim, O);
        cr_assert_eq(b->act_dim, 1);
        cr_assert(b->count > 0 && at + b->count <= n);
        memcpy(r->obs + at * O, b->obs, b->count * O * sizeof(float));
        memcpy(r->next_obs + at * O, b->next_obs, b->count * O * sizeof(float));
        memcpy(r->act + at, b->act, b->count * sizeof(float));
        memcpy(r->reward + at, b->reward, b->count * sizeof(float));
        for (uint32_t i = 0; i < b->count; i++) {
            r->terminated[at + i] = b->terminated[i];
            r->truncated[at + i] = b->truncated[i];
        }
        at += b->count;
        protobuf_c_message_free_unpacked(reply, NULL);
    }
    rpc_client_free(cl);
    cr_assert_eq(at, n);
}

static void rows_fetch(rows_t *r, const char *addr, uint64_t n)
{
    rows_fetch_dims(r, addr, n, 3); /* Pendulum-v1 */
}

static void rows_free(rows_t *r)
{
    free(r->obs);
    free(r->next_obs);
    free(r->act);
    free(r->reward);
    free(r->terminated);
    free(r->truncated);
}

static int cmp_row(const void *x, const void *y)
{
    return memcmp(x, y, 4 * sizeof(float));
}

/* every row is a valid Pendulum-v1 transition (reward and dynamics from the obs and the
 * action); within an episode next_obs[t] == obs[t+1], except at most max_breaks times (an
 * actor restarted mid-episode); episodes are at most 200 steps and end truncated exactly
 * at 200; no (obs, act) row appears twice. Returns the number of breaks. */
static int rows_check_pendulum(const rows_t *r, int max_breaks)
{
    int breaks = 0, len = 0;
    for (uint64_t t = 0; t < r->n; t++) {
        const float *o = r->obs + t * 3, *no = r->next_obs + t * 3;
        float u = r->act[t];
        cr_assert(u >= -2.0f && u <= 2.0f, "row %lu: action %f out of bounds", (unsigned long)t, u);
        double th = atan2(o[1], o[0]);
        double thdot = o[2];
        double want = -(th * th + 0.1 * thdot * thdot + 0.001 * u * u);
        cr_assert(fabs(r->reward[t] - want) < 1e-4 * (1 + fabs(want)),
                  "row %lu: reward %f, Pendulum gives %f", (unsigned long)t, r->reward[t], want);
        double nthdot = thdot + (15.0 * sin(th) + 3.0 * u) * 0.05;
        nthdot = fmin(fmax(nthdot, -8.0), 8.0);
        double nth = th + nthdot * 0.05;
        cr_assert(fabs(no[2] - nthdot) < 1e-3 && fabs(no[0] - cos(nth)) < 1e-3 &&
                      fabs(no[1] - sin(nth)) < 1e-3,
                  "row %lu: next_obs is not Pendulum's step", (unsigned long)t);
        cr_assert_eq(r->terminated[t], 0, "Pendulum never terminates");
        len++;
        cr_assert(len <= 200, "row %lu: episode longer than 200", (unsigned long)t);
        if (r->truncated[t]) {
            cr_assert_eq(len, 200, "row %lu: truncated at %d", (unsigned long)t, len);
            len = 0;
        } else if (t + 1 < r->n && memcmp(no, r->obs + (t + 1) * 3, 3 * sizeof(float)) != 0) {
            breaks++;
            len = 0;
        }
    }
    cr_assert(breaks <= max_breaks, "%d episode breaks, at most %d expected", breaks, max_breaks);
    /* no transition stored twice */
    float *keys = malloc(r->n * 4 * sizeof(float));
    for (uint64_t t = 0; t < r->n; t++) {
        memcpy(keys + t * 4, r->obs + t * 3, 3 * sizeof(float));
        keys[t * 4 + 3] = r->act[t];
    }
    qsort(keys, r->n, 4 * sizeof(float), cmp_row);
    for (uint64_t t = 1; t < r->n; t++) {
        cr_assert_neq(memcmp(keys + (t - 1) * 4, keys + t * 4, 4 * sizeof(float)), 0,
                      "a transition is stored twice");
    }
    free(keys);
    return breaks;
}

/* ---- tests with no learner ---- */

Test(actor_process, without_learner_appends_exactly_the_budget_of_valid_transitions)
{
    run_dir r = {0};
    dir_init(&r);
    ms_start(&r);
    /* nobody listens on the learner's port: random actions, never a crash */
    char *extra[] = {"--real-steps",
                     "3000",
                     "--init-steps",
                     "1000",
                     "--pacing",
                     "async",
                     "--push-every",
                     "64",
                     "--eval-index",
                     "-1",
                     "--exit-when-done",
                     "true",
                     NULL};
    pid_t a = actor_start(&r, "127.0.0.1:1", extra);
    int st = wait_exit(a, DEADLINE_MS);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "actor status %d", st);

    uint64_t end = 0, stored = 0, seq = 0;
    cr_assert_eq(log_status(r.ms_addr, "actor-0", &end, &stored, &seq), 0, "%s", err_msg());
    cr_expect_eq(end, 3000);
    cr_expect_eq(stored, 3000);
    cr_expect_eq(seq, 47, "3000 steps in batches of 64 are seqs 1..47");
    rows_t rows;
    rows_fetch(&rows, r.ms_addr, end);
    cr_expect_eq(rows_check_pendulum(&rows, 0), 0);
    rows_free(&rows);
    ms_stop(&r);
    dir_free(&r);
}

Test(actor_process, steps_per_s_caps_the_real_step_rate)
{
    run_dir r = {0};
    dir_init(&r);
    ms_start(&r);
    /* 300 steps at 200/s take at least 1.5 s; uncapped they take a few ms */
    char *extra[] = {"--real-steps", "300",  "--init-steps",     "299",  "--pacing",
                     "async",        "--push-every", "50", "--eval-index", "-1",
                     "--steps-per-s", "200", "--exit-when-done", "true", NULL};
    uint64_t t0 = now_ms();
    pid_t a = actor_start(&r, "127.0.0.1:1", extra);
    int st = wait_exit(a, DEADLINE_MS);
    uint64_t took = now_ms() - t0;
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "actor status %d", st);
    cr_expect_geq(took, 1490, "300 steps at 200/s took %llu ms", (unsigned long long)took);

    uint64_t end = 0, stored = 0, seq = 0;
    cr_assert_eq(log_status(r.ms_addr, "actor-0", &end, &stored, &seq), 0, "%s", err_msg());
    cr_expect_eq(end, 300);
    cr_expect_eq(stored, 300);
    cr_expect_eq(seq, 6);
    ms_stop(&r);
    dir_free(&r);
}

Test(actor_process, sigterm_stops_cleanly_with_status_0)
{
    run_dir r = {0};
    dir_init(&r);
    ms_start(&r);
    /* strict pacing and no learner: the actor waits after init_steps + one batch */
    char *extra[] = {"--real-steps", "5000", "--init-steps", "300", "--push-every", "20", NULL};
    pid_t a = actor_start(&r, "127.0.0.1:1", extra);
    int port = read_port(r.actor_port_file);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    cr_assert_eq(rpc_wait_serving(addr, DEADLINE_MS), 0, "%s", err_msg());
    cr_expect_eq(wait_log_end(r.ms_addr, 320), 320);
    kill(a, SIGTERM);
    int st = wait_exit(a, DEADLINE_MS);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "actor status %d", st);
    uint64_t end = 0, stored = 0;
    cr_assert_eq(log_status(r.ms_addr, "actor-0", &end, &stored, NULL), 0, "%s", err_msg());
    cr_expect_eq(end, 320, "strict pacing without a learner stops at init_steps + slack");
    cr_expect_eq(stored, 320);
    ms_stop(&r);
    dir_free(&r);
}

/* ---- a fake learner: GetProgress, GetPolicy, ReportEval ---- */

#define FAKE_MAX_EVALS 32

typedef struct fake_learner {
    pthread_mutex_t mu;
    uint64_t updates;
    uint64_t learn_start;
    nn_blob policy; /* version 3 */
    int n_evals;
    Twig__V1__EvalResult evals[FAKE_MAX_EVALS]; /* scalars copied, source_id dropped */
    char eval_source[FAKE_MAX_EVALS][64];
    int policy_pulls;
} fake_learner;

static int fake_on_progress(rpc_call_t *call, const ProtobufCMessage *msg, void *app)
{
    fake_learner *f = app;
    Twig__V1__Progress p = TWIG__V1__PROGRESS__INIT;
    pthread_mutex_lock(&f->mu);
    p.updates = f->updates;
    p.learn_start = f->learn_start;
    p.utd = 1;
    p.policy_version = 3;
    pthread_mutex_unlock(&f->mu);
    rpc_call_reply(call, 0, &p.base);
    return 0;
}

static int fake_on_policy(rpc_call_t *call, const ProtobufCMessage *msg, void *app)
{
    fake_learner *f = app;
    const Twig__V1__GetWeightsRequest *q = (const Twig__V1__GetWeightsRequest *)msg;
    Twig__V1__GetWeightsReply r = TWIG__V1__GET_WEIGHTS_REPLY__INIT;
    pthread_mutex_lock(&f->mu);
    f->policy_pulls++;
    if (q->have_version < f->policy.msg.version) {
        r.blob = &f->policy.msg;
    } else {
        r.empty_reason = TWIG__V1__EMPTY_REASON__EMPTY_REASON_NO_VERSION;
    }
    rpc_call_reply(call, 0, &r.base);
    pthread_mutex_unlock(&f->mu);
    return 0;
}

static int fake_on_eval(rpc_call_t *call, const ProtobufCMessage *msg, void *app)
{
    fake_learner *f = app;
    const Twig__V1__EvalResult *e = (const Twig__V1__EvalResult *)msg;
    Twig__V1__PushReply r = TWIG__V1__PUSH_REPLY__INIT;
    pthread_mutex_lock(&f->mu);
    for (int i = 0; i < f->n_evals; i++) {
        if (f->evals[i].seq == e->seq && strcmp(f->eval_source[i], e->source_id) == 0) {
            r.duplicate = 1;
        }
    }
    if (!r.duplicate && f->n_evals < FAKE_MAX_EVALS) {
        f->evals[f->n_evals] = *e;
        f->evals[f->n_evals].source_id = NULL;
        snprintf(f->eval_source[f->n_evals], 64, "%s", e->source_id);
        f->n_evals++;
        r.accepted = 1;
    }
    pthread_mutex_unlock(&f->mu);
    rpc_call_reply(call, 0, &r.base);
    return 0;
}

static const rpc_method fake_methods[] = {
    {"/twig.v1.Learner/GetProgress", &twig__v1__progress_request__descriptor, fake_on_progress,
     RPC_KIND_UNARY, RPC_RUN_ON_CQ},
    {"/twig.v1.Learner/GetPolicy", &twig__v1__get_weights_request__descriptor, fake_on_policy,
     RPC_KIND_UNARY, RPC_RUN_ON_CQ},
    {"/twig.v1.Learner/ReportEval", &twig__v1__eval_result__descriptor, fake_on_eval,
     RPC_KIND_UNARY, RPC_RUN_ON_CQ},
};

static void fake_set_updates(fake_learner *f, uint64_t updates)
{
    pthread_mutex_lock(&f->mu);
    f->updates = updates;
    pthread_mutex_unlock(&f->mu);
}

/* a fake learner serving a version-3 policy of hidden width 32 on a free port */
static rpc_server_t *fake_start(fake_learner *f, sac_t *sac, uint64_t learn_start, char *addr,
                                size_t n_addr)
{
    memset(f, 0, sizeof *f);
    pthread_mutex_init(&f->mu, NULL);
    f->learn_start = learn_start;
    sac_cfg sc = sac_default_cfg(3, 1);
    sc.hidden = 32;
    cr_assert_eq(sac_init(sac, &sc, 9), 0, "%s", err_msg());
    cr_assert_eq(policy_blob_build(&f->policy, sac, 3, "Pendulum-v1"), 0, "%s", err_msg());
    rpc_server_t *srv;
    rpc_server_cfg cfg = {.listen = "127.0.0.1:0", .app = f};
    cr_assert_eq(rpc_server_init(&srv, &cfg, fake_methods, 3), 0, "%s", err_msg());
    cr_assert_eq(rpc_server_start(srv), 0);
    snprintf(addr, n_addr, "127.0.0.1:%d", rpc_server_port(srv));
    return srv;
}

static void fake_stop(fake_learner *f, sac_t *sac, rpc_server_t *srv)
{
    rpc_server_shutdown(srv, 100);
    rpc_server_free(srv);
    nn_blob_free(&f->policy);
    sac_free(sac);
    pthread_mutex_destroy(&f->mu);
}

static void actor_addr(run_dir *r, char *addr, size_t n)
{
    snprintf(addr, n, "127.0.0.1:%d", read_port(r->actor_port_file));
}

/* poll the actor's Stats until key reaches want */
static double wait_stat(const char *addr, const char *key, double want)
{
    rpc_client_t *cl;
    cr_assert_eq(rpc_client_init(&cl, addr, NULL), 0);
    double v = -1;
    uint64_t stop = now_ms() + DEADLINE_MS;
    while (now_ms() < stop) {
        Twig__V1__StatsRequest q = TWIG__V1__STATS_REQUEST__INIT;
        ProtobufCMessage *reply = NULL;
        rpc_call_opts o = {.deadline_ms = 2000};
        if (rpc_client_unary(cl, &reply, "/twig.v1.Stats/GetStats", &q.base,
                             &twig__v1__stats_reply__descriptor, &o) == 0) {
            const Twig__V1__StatsReply *s = (const Twig__V1__StatsReply *)reply;
            cr_expect_str_eq(s->role, "actor");
            for (size_t i = 0; i < s->n_values; i++) {
                if (strcmp(s->values[i]->key, key) == 0) {
                    v = s->values[i]->value;
                }
            }
            protobuf_c_message_free_unpacked(reply, NULL);
            if (v >= want) {
                break;
            }
        }
        nap();
    }
    rpc_client_free(cl);
    cr_assert(v >= want, "stat %s is %g, wanted %g", key, v, want);
    return v;
}

Test(actor_process, strict_pacing_follows_the_learners_updates_and_evals_are_reported)
{
    run_dir r = {0};
    dir_init(&r);
    ms_start(&r);

    fake_learner f;
    sac_t sac = {0};
    char learner[64];
    rpc_server_t *srv = fake_start(&f, &sac, 200, learner, sizeof learner);

    /* utd 1, learning from 200, one batch of 10 as slack: with 0 updates the actor may
     * take 210 steps, with 300 updates 510, then the whole budget */
    char *extra[] = {"--real-steps",
                     "1000",
                     "--init-steps",
                     "200",
                     "--utd",
                     "1",
                     "--push-every",
                     "10",
                     "--hidden",
                     "32",
                     "--eval-every",
                     "500",
                     "--eval-episodes",
                     "2",
                     "--policy-poll-ms",
                     "50",
                     "--exit-when-done",
                     "true",
                     NULL};
    pid_t a = actor_start(&r, learner, extra);
    int port = read_port(r.actor_port_file);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);

    wait_stat(addr, "pace_waits", 1);
    cr_expect_eq(wait_log_end(r.ms_addr, 210), 210);
    cr_expect_eq(wait_stat(addr, "steps", 210), 210, "no step past the pacing limit");
    wait_stat(addr, "policy_version", 3);

    fake_set_updates(&f, 300);
    wait_stat(addr, "pace_waits", 2);
    cr_expect_eq(wait_log_end(r.ms_addr, 510), 510);
    cr_expect_eq(wait_stat(addr, "steps", 510), 510);

    fake_set_updates(&f, 100000);
    int st = wait_exit(a, DEADLINE_MS);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "actor status %d", st);
    uint64_t end = 0, stored = 0;
    cr_assert_eq(log_status(r.ms_addr, "actor-0", &end, &stored, NULL), 0, "%s", err_msg());
    cr_expect_eq(end, 1000);
    cr_expect_eq(stored, 1000);

    /* one eval at 500, the final one at 1000, both with the pulled policy */
    pthread_mutex_lock(&f.mu);
    cr_expect_eq(f.n_evals, 2);
    for (int i = 0; i < f.n_evals && i < 2; i++) {
        const Twig__V1__EvalResult *e = &f.evals[i];
        cr_expect_eq(e->seq, i == 0 ? 500 : 1000);
        cr_expect(e->real_steps >= e->seq);
        cr_expect_eq(e->policy_version, 3);
        cr_expect_eq(e->episodes, 2);
        cr_expect_str_eq(f.eval_source[i], "actor-0");
        cr_expect(isfinite(e->return_mean) && e->return_mean <= 0 && e->return_mean >= -200 * 16.3,
                  "return %f", e->return_mean);
        cr_expect(e->return_std >= 0);
    }
    cr_expect_gt(f.policy_pulls, 0);
    pthread_mutex_unlock(&f.mu);

    rows_t rows;
    rows_fetch(&rows, r.ms_addr, end);
    rows_check_pendulum(&rows, 0);
    rows_free(&rows);

    fake_stop(&f, &sac, srv);
    ms_stop(&r);
    dir_free(&r);
}

/* the fake learner holds the actor at a pacing limit so the faults hit at known points */
static char *const gated_args[] = {"--real-steps",
                                   "3000",
                                   "--init-steps",
                                   "1000",
                                   "--utd",
                                   "1",
                                   "--push-every",
                                   "10",
                                   "--hidden",
                                   "32",
                                   "--eval-index",
                                   "-1",
                                   "--policy-poll-ms",
                                   "50",
                                   "--exit-when-done",
                                   "true",
                                   NULL};

Test(actor_process, model_server_killed_with_batches_pending_loses_and_duplicates_nothing)
{
    run_dir r = {0};
    dir_init(&r);
    ms_start(&r);
    fake_learner f;
    sac_t sac = {0};
    char learner[64], addr[64];
    rpc_server_t *srv = fake_start(&f, &sac, 1000, learner, sizeof learner);
    pid_t a = actor_start(&r, learner, gated_args);
    actor_addr(&r, addr, sizeof addr);
    cr_expect_eq(wait_log_end(r.ms_addr, 1010), 1010);
    wait_stat(addr, "pace_waits", 1);

    /* the server dies; the actor runs on into it and keeps its batches */
    kill9(r.ms);
    fake_set_updates(&f, 1000000);
    wait_stat(addr, "append_retries", 1);
    wait_stat(addr, "batches_pending", 1);
    ms_start(&r);
    int st = wait_exit(a, DEADLINE_MS);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "actor status %d", st);

    uint64_t end = 0, stored = 0;
    cr_assert_eq(log_status(r.ms_addr, "actor-0", &end, &stored, NULL), 0, "%s", err_msg());
    cr_expect_eq(end, 3000);
    cr_expect_eq(stored, 3000, "each (actor, seq) once");
    rows_t rows;
    rows_fetch(&rows, r.ms_addr, end);
    cr_expect_eq(rows_check_pendulum(&rows, 0), 0, "the actor never restarted: no breaks");
    rows_free(&rows);
    fake_stop(&f, &sac, srv);
    ms_stop(&r);
    dir_free(&r);
}

Test(actor_process, actor_killed_with_unacknowledged_batches_restarts_exactly)
{
    run_dir r = {0};
    dir_init(&r);
    ms_start(&r);
    fake_learner f;
    sac_t sac = {0};
    char learner[64], addr[64];
    rpc_server_t *srv = fake_start(&f, &sac, 1000, learner, sizeof learner);
    pid_t a = actor_start(&r, learner, gated_args);
    actor_addr(&r, addr, sizeof addr);
    cr_expect_eq(wait_log_end(r.ms_addr, 1010), 1010);

    /* with the server gone the actor fills its queue of unacknowledged batches; then it dies */
    kill9(r.ms);
    fake_set_updates(&f, 1000000);
    wait_stat(addr, "batches_pending", 8);
    kill9(a);
    ms_start(&r);
    uint64_t end = 0, stored = 0;
    cr_assert_eq(log_status(r.ms_addr, "actor-0", &end, &stored, NULL), 0, "%s", err_msg());
    cr_expect_eq(end, 1010, "nothing unacknowledged was stored");

    a = actor_start(&r, learner, gated_args);
    int st = wait_exit(a, DEADLINE_MS);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "actor status %d", st);
    cr_assert_eq(log_status(r.ms_addr, "actor-0", &end, &stored, NULL), 0, "%s", err_msg());
    cr_expect_eq(end, 3000);
    cr_expect_eq(stored, 3000);
    rows_t rows;
    rows_fetch(&rows, r.ms_addr, end);
    cr_expect_eq(rows_check_pendulum(&rows, 1), 1, "one new episode at the restart");
    rows_free(&rows);
    fake_stop(&f, &sac, srv);
    ms_stop(&r);
    dir_free(&r);
}

Test(actor_process, actor_killed_while_running_free_restarts_exactly)
{
    /* a kill at no chosen point: whatever was in flight, the count ends exact */
    run_dir r = {0};
    dir_init(&r);
    ms_start(&r);
    char *extra[] = {"--real-steps",
                     "20000",
                     "--init-steps",
                     "1000",
                     "--pacing",
                     "async",
                     "--push-every",
                     "10",
                     "--eval-index",
                     "-1",
                     "--exit-when-done",
                     "true",
                     NULL};
    pid_t a = actor_start(&r, "127.0.0.1:1", extra);
    wait_log_end(r.ms_addr, 500);
    kill9(a);
    /* a batch the server took just before the kill may still be on its way to the disk:
     * the source's count has it already, the log's end once durable; the two meet */
    uint64_t end = 0, stored = 1;
    uint64_t stop = now_ms() + DEADLINE_MS;
    while (now_ms() < stop &&
           !(log_status(r.ms_addr, "actor-0", &end, &stored, NULL) == 0 && stored == end)) {
        nap();
    }
    cr_expect_eq(stored, end);
    a = actor_start(&r, "127.0.0.1:1", extra);
    int st = wait_exit(a, DEADLINE_MS);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "actor status %d", st);
    cr_assert_eq(log_status(r.ms_addr, "actor-0", &end, &stored, NULL), 0, "%s", err_msg());
    cr_expect_eq(end, 20000);
    cr_expect_eq(stored, 20000);
    rows_t rows;
    rows_fetch(&rows, r.ms_addr, end);
    rows_check_pendulum(&rows, 1);
    rows_free(&rows);
    ms_stop(&r);
    dir_free(&r);
}

Test(actor_process, a_log_of_another_env_is_a_clear_error_and_a_bad_flag_exit_2)
{
    run_dir r = {0};
    dir_init(&r);
    char listen[] = "127.0.0.1:0";
    char *argv[] = {MS_BIN,        "--listen",     listen,     "--data-dir", r.data,
                    "--port-file", r.ms_port_file, "--env-id", "Hopper-v4",  NULL};
    r.ms = spawn(argv, r.ms_log);
    r.ms_port = read_port(r.ms_port_file);
    snprintf(r.ms_addr, sizeof r.ms_addr, "127.0.0.1:%d", r.ms_port);
    cr_assert_eq(rpc_wait_serving(r.ms_addr, DEADLINE_MS), 0, "%s", err_msg());

    char *extra[] = {"--real-steps", "100", "--init-steps", "10", "--pacing", "async", NULL};
    pid_t a = actor_start(&r, "127.0.0.1:1", extra);
    int st = wait_exit(a, DEADLINE_MS);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 1, "actor status %d", st);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "grep -q \"event=fatal.*Hopper-v4.*Pendulum-v1\" '%s'", r.actor_log);
    cr_expect_eq(system(cmd), 0, "the log names both envs");
    uint64_t end = 1, stored = 1;
    cr_assert_eq(log_status(r.ms_addr, "actor-0", &end, &stored, NULL), 0, "%s", err_msg());
    cr_expect_eq(end, 0);

    char *bad[] = {ACTOR_BIN, "--push-every", "0", NULL};
    char bad_log[200];
    snprintf(bad_log, sizeof bad_log, "%s/bad.log", r.dir);
    a = spawn(bad, bad_log);
    st = wait_exit(a, DEADLINE_MS);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 2, "actor status %d", st);
    snprintf(cmd, sizeof cmd, "grep -q push_every '%s'", bad_log);
    cr_expect_eq(system(cmd), 0, "the error names the key");
    ms_stop(&r);
    dir_free(&r);
}

Test(actor_process, two_actors_split_the_budget_and_the_evaluator_waits_for_all_of_it)
{
    run_dir r = {0};
    dir_init(&r);
    ms_start(&r);
    fake_learner f;
    sac_t sac = {0};
    char learner[64];
    rpc_server_t *srv = fake_start(&f, &sac, 300, learner, sizeof learner);
    fake_set_updates(&f, 100000000);
    /* actor 0 (the evaluator) runs alone through its share; its final evaluation must wait
     * until actor 1, started only then, has stored the rest of the budget */
    uint64_t end = 0, stored = 0;
    char *extra[] = {"--real-steps",
                     "2001",
                     "--init-steps",
                     "300",
                     "--n-actors",
                     "2",
                     "--index",
                     "0",
                     "--push-every",
                     "25",
                     "--hidden",
                     "32",
                     "--eval-every",
                     "1000",
                     "--eval-episodes",
                     "1",
                     "--policy-poll-ms",
                     "50",
                     "--exit-when-done",
                     "true",
                     NULL};
    pid_t a0 = actor_start(&r, learner, extra);
    uint64_t stop = now_ms() + DEADLINE_MS;
    while (now_ms() < stop &&
           !(log_status(r.ms_addr, "actor-0", &end, &stored, NULL) == 0 && stored == 1001)) {
        nap();
    }
    cr_assert_eq(stored, 1001, "actor 0 takes its share, with the odd step");
    cr_assert_eq(wait_exit(a0, 300), -1, "actor 0 waits for the whole budget");
    pthread_mutex_lock(&f.mu);
    cr_expect_leq(f.n_evals, 1, "no final evaluation before the budget is in the log");
    pthread_mutex_unlock(&f.mu);

    char port1[200], log1[200];
    snprintf(port1, sizeof port1, "%s/actor1.port", r.dir);
    snprintf(log1, sizeof log1, "%s/actor1.log", r.dir);
    char *a1_args[] = {ACTOR_BIN, "--modelserver-addr", r.ms_addr, "--learner-addr",
                       learner,   "--real-steps",       "2001",    "--init-steps",
                       "300",     "--n-actors",         "2",       "--index",
                       "1",       "--push-every",       "25",      "--hidden",
                       "32",      "--eval-every",       "1000",    "--eval-episodes",
                       "1",       "--exit-when-done",   "true",    "--port-file",
                       port1,     "--backoff-max-ms",   "200",     NULL};
    pid_t a1 = spawn(a1_args, log1);
    int st = wait_exit(a1, DEADLINE_MS);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "actor 1 status %d", st);
    st = wait_exit(a0, DEADLINE_MS);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "actor 0 status %d", st);

    cr_assert_eq(log_status(r.ms_addr, "actor-1", &end, &stored, NULL), 0, "%s", err_msg());
    cr_expect_eq(end, 2001);
    cr_expect_eq(stored, 1000);

    pthread_mutex_lock(&f.mu);
    cr_expect_eq(f.n_evals, 2, "one at 1000, the final at 2001");
    if (f.n_evals == 2) {
        cr_expect_eq(f.evals[0].seq, 1000);
        cr_expect_eq(f.evals[1].seq, 2001);
        cr_expect_eq(f.evals[1].real_steps, 2001, "the final eval saw the whole budget");
        cr_expect_str_eq(f.eval_source[1], "actor-0");
    }
    pthread_mutex_unlock(&f.mu);
    fake_stop(&f, &sac, srv);
    ms_stop(&r);
    dir_free(&r);
}

/* append n valid Pendulum transitions as source_id/seq, the way a stale earlier run of the
 * actor would have */
static void append_as(const char *addr, const char *source, uint64_t seq, int n)
{
    env_t *e = NULL;
    cr_assert_eq(env_make(&e, "Pendulum-v1"), 0);
    float obs[64 * 3], act[64], reward[64], next_obs[64 * 3];
    protobuf_c_boolean term[64] = {0}, trunc[64] = {0};
    cr_assert(n <= 64);
    env_reset(e, 4242, obs);
    for (int i = 0; i < n; i++) {
        act[i] = 0.25f * (float)(i % 9) - 1.0f;
        env_step_result res = {.next_obs = next_obs + i * 3};
        cr_assert_eq(env_step(e, &act[i], &res), 0);
        reward[i] = res.reward;
        if (i + 1 < n) {
            memcpy(obs + (i + 1) * 3, next_obs + i * 3, 3 * sizeof(float));
        }
    }
    env_free(e);
    Twig__V1__TransitionBatch m = TWIG__V1__TRANSITION_BATCH__INIT;
    m.env_id = "Pendulum-v1";
    m.source_id = (char *)source;
    m.seq = seq;
    m.obs_dim = 3;
    m.act_dim = 1;
    m.count = (uint32_t)n;
    m.n_obs = m.n_next_obs = (size_t)n * 3;
    m.obs = obs;
    m.next_obs = next_obs;
    m.n_act = m.n_reward = m.n_terminated = m.n_truncated = (size_t)n;
    m.act = act;
    m.reward = reward;
    m.terminated = term;
    m.truncated = trunc;
    rpc_client_t *cl;
    cr_assert_eq(rpc_client_init(&cl, addr, NULL), 0);
    ProtobufCMessage *reply = NULL;
    rpc_call_opts o = {.deadline_ms = 5000};
    cr_assert_eq(rpc_client_unary(cl, &reply, "/twig.v1.ModelServer/AppendReal", &m.base,
                                  &twig__v1__append_real_reply__descriptor, &o),
                 0, "%s", err_msg());
    cr_assert_eq(((Twig__V1__AppendRealReply *)reply)->duplicate, 0);
    protobuf_c_message_free_unpacked(reply, NULL);
    rpc_client_free(cl);
}

/* a batch of an earlier life of the actor lands after the actor read its count: it has the
 * seq of the actor's next batch, which meets it as a duplicate (same count) or is refused
 * (another count); the actor asks again and renumbers. The stale batch's transitions count
 * as the actor's: the log ends exactly at the budget either way */
static void check_resync(int stale_count)
{
    run_dir r = {0};
    dir_init(&r);
    ms_start(&r);
    fake_learner f;
    sac_t sac = {0};
    char learner[64], addr[64];
    rpc_server_t *srv = fake_start(&f, &sac, 1000, learner, sizeof learner);
    pid_t a = actor_start(&r, learner, gated_args);
    actor_addr(&r, addr, sizeof addr);
    cr_expect_eq(wait_log_end(r.ms_addr, 1010), 1010);
    wait_stat(addr, "pace_waits", 1);

    uint64_t end = 0, stored = 0, seq = 0;
    cr_assert_eq(log_status(r.ms_addr, "actor-0", &end, &stored, &seq), 0, "%s", err_msg());
    cr_assert_eq(stored, 1010);
    append_as(r.ms_addr, "actor-0", seq + 1, stale_count);
    fake_set_updates(&f, 1000000);
    int st = wait_exit(a, DEADLINE_MS);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "actor status %d", st);
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "grep -q 'event=seq_resync source=actor-0 batch_seq=%lu server_seq=%lu' '%s'",
             (unsigned long)seq + 1, (unsigned long)seq + 1, r.actor_log);
    cr_expect_eq(system(cmd), 0, "the actor logged its resync");

    cr_assert_eq(log_status(r.ms_addr, "actor-0", &end, &stored, NULL), 0, "%s", err_msg());
    cr_expect_eq(stored, 3000);
    cr_expect_eq(end, 3000);
    rows_t rows;
    rows_fetch(&rows, r.ms_addr, end);
    rows_check_pendulum(&rows, 3);
    rows_free(&rows);
    fake_stop(&f, &sac, srv);
    ms_stop(&r);
    dir_free(&r);
}

Test(actor_process, a_stale_batch_with_the_same_count_is_met_as_duplicate_and_resynced)
{
    check_resync(10);
}

Test(actor_process, a_stale_batch_with_another_count_is_refused_and_resynced)
{
    check_resync(4);
}

Test(actor_process, an_actor_started_before_the_model_server_waits_for_it)
{
    run_dir r = {0};
    dir_init(&r);
    ms_start(&r); /* only to learn a free port, then the server is gone */
    ms_stop(&r);
    char *extra[] = {"--real-steps", "500", "--init-steps",     "100",  "--pacing", "async",
                     "--eval-index", "-1",  "--exit-when-done", "true", NULL};
    pid_t a = actor_start(&r, "127.0.0.1:1", extra);
    char addr[64];
    actor_addr(&r, addr, sizeof addr);
    cr_assert_eq(rpc_wait_serving(addr, DEADLINE_MS), 0, "%s", err_msg());
    cr_expect_eq(wait_exit(a, 300), -1, "a missing model server is a wait");
    ms_start(&r);
    int st = wait_exit(a, DEADLINE_MS);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "actor status %d", st);
    uint64_t end = 0, stored = 0;
    cr_assert_eq(log_status(r.ms_addr, "actor-0", &end, &stored, NULL), 0, "%s", err_msg());
    cr_expect_eq(end, 500);
    cr_expect_eq(stored, 500);
    ms_stop(&r);
    dir_free(&r);
}

Test(actor_process, a_mujoco_task_with_terminations_logs_valid_episodes)
{
    /* InvertedPendulum-v4 under random actions falls within tens of steps: terminated rows
     * must be exactly where the task's termination says, and episodes continue otherwise */
    run_dir r = {0};
    dir_init(&r);
    ms_start(&r);
    char *extra[] = {"--env",
                     "InvertedPendulum-v4",
                     "--real-steps",
                     "2000",
                     "--init-steps",
                     "100",
                     "--pacing",
                     "async",
                     "--push-every",
                     "32",
                     "--eval-index",
                     "-1",
                     "--exit-when-done",
                     "true",
                     NULL};
    pid_t a = actor_start(&r, "127.0.0.1:1", extra);
    int st = wait_exit(a, DEADLINE_MS);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "actor status %d", st);
    uint64_t end = 0, stored = 0;
    cr_assert_eq(log_status(r.ms_addr, "actor-0", &end, &stored, NULL), 0, "%s", err_msg());
    cr_expect_eq(end, 2000);
    cr_expect_eq(stored, 2000);

    rows_t rows;
    rows_fetch_dims(&rows, r.ms_addr, end, 4);
    env_t *e = NULL;
    cr_assert_eq(env_make(&e, "InvertedPendulum-v4"), 0, "%s", err_msg());
    int terminated = 0;
    for (uint64_t t = 0; t < rows.n; t++) {
        const float *o = rows.obs + t * 4, *no = rows.next_obs + t * 4;
        bool done = false;
        env_termination(e, o, &rows.act[t], no, &done, 1);
        cr_assert_eq(done, rows.terminated[t] != 0, "row %lu: terminated flag", (unsigned long)t);
        cr_assert(rows.act[t] >= e->spec.act_low[0] && rows.act[t] <= e->spec.act_high[0]);
        terminated += rows.terminated[t] != 0;
        if (!rows.terminated[t] && !rows.truncated[t] && t + 1 < rows.n) {
            cr_assert_eq(memcmp(no, rows.obs + (t + 1) * 4, 4 * sizeof(float)), 0,
                         "row %lu: the episode goes on from next_obs", (unsigned long)t);
        }
    }
    cr_expect_gt(terminated, 10, "random actions topple the pole often (%d)", terminated);
    env_free(e);
    rows_free(&rows);
    ms_stop(&r);
    dir_free(&r);
}
