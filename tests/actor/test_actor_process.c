/* actor process tests: the real twig-actor against the real twig-modelserver on 127.0.0.1,
 * with a fake learner (an rpc server inside the test) where pacing and evals matter.
 * End state is checked by reading the log back over FetchReal and LogStatus. */
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/env/env.h"
#include "common/rpc/msg.h"
#include "common/base/err.h"
#include "common/rpc/nn_blob.h"
#include "common/nn/policy.h"
#include "common/rpc/policy_blob.h"
#include "common/rpc/rpc.h"
#include "common/nn/sac.h"
#include "proto/twig.pb-c.h"
#include "tests/procfix.h"

#define ACTOR_BIN TWIG_BIN_DIR "/actor/twig-actor"
#define MS_BIN TWIG_BIN_DIR "/modelserver/twig-modelserver"
#define DEADLINE_MS 120000 /* any wait for a process in these tests */

static void suite_init(void)
{
    rpc_lib_init();
}

static void suite_fini(void)
{
    procfix_reap_all();
    rpc_lib_shutdown(5000);
}

TestSuite(actor_process, .init = suite_init, .fini = suite_fini, .timeout = 300);

/* ---- processes ---- */

typedef struct run_dir {
    char dir[PROCFIX_DIR_LEN];
    char data[160];
    procfix_t ms;    /* the model server on data; its addr once it serves */
    procfix_t actor; /* the actor of the last actor_start */
} run_dir;

/* start the model server (port 0 the first time, then the same port) and wait for health;
 * env_id NULL: the run's default env (Pendulum-v1), which fixes the log's schema */
static void ms_start_env(run_dir *r, const char *env_id)
{
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", r->ms.port);
    unlink(r->ms.port_file);
    const char *argv[] = {MS_BIN,          "--listen",
                          listen,          "--data-dir",
                          r->data,         "--port-file",
                          r->ms.port_file, env_id ? "--env" : NULL,
                          env_id,          NULL};
    r->ms.pid = procfix_spawn(argv, r->ms.log_file);
    procfix_wait_serving(&r->ms, DEADLINE_MS);
}

static void ms_start(run_dir *r)
{
    ms_start_env(r, NULL);
}

/* a fresh run dir; with start_ms, the model server serving on it */
static void dir_init(run_dir *r, bool start_ms)
{
    procfix_tmpdir(r->dir, sizeof r->dir);
    snprintf(r->data, sizeof r->data, "%s/data", r->dir);
    snprintf(r->ms.port_file, sizeof r->ms.port_file, "%s/ms.port", r->dir);
    snprintf(r->ms.log_file, sizeof r->ms.log_file, "%s/modelserver.log", r->dir);
    snprintf(r->actor.port_file, sizeof r->actor.port_file, "%s/actor.port", r->dir);
    snprintf(r->actor.log_file, sizeof r->actor.log_file, "%s/actor.log", r->dir);
    if (start_ms) {
        ms_start(r);
    }
}

/* SIGTERM to the model server if it runs (exit 0 expected), then the run dir goes
 * (TWIG_TEST_KEEP=1 keeps it: logs, data) */
static void dir_free(run_dir *r)
{
    if (r->ms.pid) {
        procfix_stop(&r->ms);
    }
    procfix_tmpdir_done(r->dir);
}

/* start twig-actor a (port and log files set) on the run's model server; args: its other
 * flags, separated by single spaces; returns its pid */
static pid_t actor_start_as(run_dir *r, procfix_t *a, const char *learner_addr, const char *args)
{
    const char *argv[64] = {ACTOR_BIN,        "--modelserver-addr", r->ms.addr,
                            "--learner-addr", learner_addr,         "--port-file",
                            a->port_file,     "--backoff-max-ms",   "200"};
    int n = 9;
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", args);
    for (char *save = NULL, *t = strtok_r(buf, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
        cr_assert_lt(n, 63, "too many actor args");
        argv[n++] = t;
    }
    argv[n] = NULL;
    unlink(a->port_file);
    a->pid = procfix_spawn(argv, a->log_file); /* execv copies argv: buf may go */
    return a->pid;
}

/* the run's actor */
static pid_t actor_start(run_dir *r, const char *learner_addr, const char *args)
{
    return actor_start_as(r, &r->actor, learner_addr, args);
}

/* the run's actor from start to its end, which must be exit status 0 */
static void actor_run(run_dir *r, const char *learner_addr, const char *args)
{
    cr_assert_eq(procfix_exit_code(actor_start(r, learner_addr, args), DEADLINE_MS), 0,
                 "actor exit code (log %s)", r->actor.log_file);
}

/* the actor's address once it is live (ready only once both its peers answered) */
static const char *actor_addr(run_dir *r)
{
    procfix_wait_live(&r->actor, DEADLINE_MS);
    return r->actor.addr;
}

/* ---- the model server, read back ---- */

typedef struct log_state {
    uint64_t end;    /* the log's end offset */
    uint64_t stored; /* the source's transitions */
    uint64_t seq;    /* the source's last seq */
} log_state;

/* LogStatus of source at addr into *s: 0 or the rpc error */
static int log_status(log_state *s, const char *addr, const char *source)
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
        s->end = r->end_offset;
        s->stored = r->source_transitions;
        s->seq = r->source_seq;
        protobuf_c_message_free_unpacked(reply, NULL);
    }
    rpc_client_free(cl);
    return rc;
}

/* LogStatus of source on the run's model server, which must answer */
static log_state log_of(const run_dir *r, const char *source)
{
    log_state s = {0};
    cr_assert_eq(log_status(&s, r->ms.addr, source), 0, "%s", err_msg());
    return s;
}

/* poll until the log's end reaches at least want; the end seen */
static uint64_t wait_log_end(const char *addr, uint64_t want)
{
    log_state s = {0};
    int64_t stop = procfix_now_ms() + DEADLINE_MS;
    while (procfix_now_ms() < stop) {
        if (log_status(&s, addr, "") == 0 && s.end >= want) {
            return s.end;
        }
        procfix_pause_ms(20);
    }
    cr_assert_fail("log end %lu never reached %lu", (unsigned long)s.end, (unsigned long)want);
    return 0;
}

/* poll until source has stored transitions in the log; the state seen last */
static log_state wait_stored(const run_dir *r, const char *source, uint64_t stored)
{
    log_state s = {0};
    int64_t stop = procfix_now_ms() + DEADLINE_MS;
    while (procfix_now_ms() < stop &&
           !(log_status(&s, r->ms.addr, source) == 0 && s.stored == stored)) {
        procfix_pause_ms(20);
    }
    return s;
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

/* fetch the run's log [0, n) and check it as rows_check_pendulum does; the breaks */
static int log_check_pendulum(const run_dir *r, uint64_t n, int max_breaks)
{
    rows_t rows;
    rows_fetch(&rows, r->ms.addr, n);
    int breaks = rows_check_pendulum(&rows, max_breaks);
    rows_free(&rows);
    return breaks;
}

/* ---- tests with no learner ---- */

/* nobody listens on this learner address: random actions, never a crash */
#define NO_LEARNER "127.0.0.1:1"

Test(actor_process, without_learner_appends_exactly_the_budget_of_valid_transitions)
{
    run_dir r = {0};
    dir_init(&r, true);
    actor_run(&r, NO_LEARNER,
              "--real-steps 3000 --init-steps 1000 --pacing async --push-every 64 "
              "--eval-index -1 --exit-when-done true");

    log_state s = log_of(&r, "actor-0");
    cr_expect_eq(s.end, 3000);
    cr_expect_eq(s.stored, 3000);
    cr_expect_eq(s.seq, 47, "3000 steps in batches of 64 are seqs 1..47");
    cr_expect_eq(log_check_pendulum(&r, s.end, 0), 0);
    dir_free(&r);
}

Test(actor_process, steps_per_s_caps_the_real_step_rate)
{
    run_dir r = {0};
    dir_init(&r, true);
    /* 300 steps at 200/s take at least 1.5 s; uncapped they take a few ms */
    int64_t t0 = procfix_now_ms();
    actor_run(&r, NO_LEARNER,
              "--real-steps 300 --init-steps 299 --pacing async --push-every 50 "
              "--eval-index -1 --steps-per-s 200 --exit-when-done true");
    int64_t took = procfix_now_ms() - t0;
    cr_expect_geq(took, 1490, "300 steps at 200/s took %llu ms", (unsigned long long)took);

    log_state s = log_of(&r, "actor-0");
    cr_expect_eq(s.end, 300);
    cr_expect_eq(s.stored, 300);
    cr_expect_eq(s.seq, 6);
    dir_free(&r);
}

Test(actor_process, sigterm_stops_cleanly_with_status_0)
{
    run_dir r = {0};
    dir_init(&r, true);
    /* strict pacing and no learner: the actor waits after init_steps + one batch */
    actor_start(&r, NO_LEARNER, "--real-steps 5000 --init-steps 300 --push-every 20");
    actor_addr(&r);
    cr_expect_eq(wait_log_end(r.ms.addr, 320), 320);
    procfix_stop(&r.actor);
    log_state s = log_of(&r, "actor-0");
    cr_expect_eq(s.end, 320, "strict pacing without a learner stops at init_steps + slack");
    cr_expect_eq(s.stored, 320);
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
    bool policy_held; /* GetPolicy answers NO_VERSION while set */
    sac_t sac;        /* the policy's source */
    rpc_server_t *srv;
    char addr[64];
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
    if (q->have_version < f->policy.msg.version && !f->policy_held) {
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

static void fake_hold_policy(fake_learner *f, bool held)
{
    pthread_mutex_lock(&f->mu);
    f->policy_held = held;
    pthread_mutex_unlock(&f->mu);
}

static void fake_set_updates(fake_learner *f, uint64_t updates)
{
    pthread_mutex_lock(&f->mu);
    f->updates = updates;
    pthread_mutex_unlock(&f->mu);
}

/* a fake learner serving a version-3 policy of hidden width 32 on listen */
static void fake_start_at(fake_learner *f, uint64_t learn_start, const char *listen)
{
    memset(f, 0, sizeof *f);
    pthread_mutex_init(&f->mu, NULL);
    f->learn_start = learn_start;
    sac_cfg sc = sac_default_cfg(3, 1);
    sc.hidden = 32;
    cr_assert_eq(sac_init(&f->sac, &sc, 9), 0, "%s", err_msg());
    cr_assert_eq(policy_blob_build(&f->policy, &f->sac, 3, "Pendulum-v1"), 0, "%s", err_msg());
    rpc_server_cfg cfg = {.listen = listen, .app = f};
    cr_assert_eq(rpc_server_init(&f->srv, &cfg, fake_methods, 3), 0, "%s", err_msg());
    cr_assert_eq(rpc_server_start(f->srv), 0);
    snprintf(f->addr, sizeof f->addr, "127.0.0.1:%d", rpc_server_port(f->srv));
}

/* the same on a free port */
static void fake_start(fake_learner *f, uint64_t learn_start)
{
    fake_start_at(f, learn_start, "127.0.0.1:0");
}

static void fake_stop(fake_learner *f)
{
    rpc_server_shutdown(f->srv, 100);
    rpc_server_free(f->srv);
    nn_blob_free(&f->policy);
    sac_free(&f->sac);
    pthread_mutex_destroy(&f->mu);
}

/* poll the actor's Stats until key reaches want */
static double wait_stat(const char *addr, const char *key, double want)
{
    return procfix_wait_stat(addr, "actor", key, want, DEADLINE_MS);
}

Test(actor_process, strict_pacing_follows_the_learners_updates_and_evals_are_reported)
{
    run_dir r = {0};
    dir_init(&r, true);
    fake_learner f;
    fake_start(&f, 200);
    fake_hold_policy(&f, true);

    /* utd 1, learning from 200, one batch of 10 as slack: with 0 updates the actor may
     * take 210 steps, with 300 updates 510, then the whole budget */
    pid_t a = actor_start(&r, f.addr,
                          "--real-steps 1000 --init-steps 200 --utd 1 --push-every 10 "
                          "--hidden 32 --eval-every 500 --eval-episodes 2 --policy-poll-ms 50 "
                          "--exit-when-done true");
    const char *addr = actor_addr(&r);

    wait_stat(addr, "pace_waits", 1);
    cr_expect_eq(wait_log_end(r.ms.addr, 210), 210);
    cr_expect_eq(wait_stat(addr, "steps", 210), 210, "no step past the pacing limit");
    /* a policy published while the actor waits is loaded during the wait */
    fake_hold_policy(&f, false);
    wait_stat(addr, "policy_version", 3);
    cr_expect_eq(wait_stat(addr, "steps", 210), 210, "still at the pacing limit");

    fake_set_updates(&f, 300);
    wait_stat(addr, "pace_waits", 2);
    cr_expect_eq(wait_log_end(r.ms.addr, 510), 510);
    cr_expect_eq(wait_stat(addr, "steps", 510), 510);

    fake_set_updates(&f, 100000);
    cr_assert_eq(procfix_exit_code(a, DEADLINE_MS), 0, "actor exit code");
    log_state s = log_of(&r, "actor-0");
    cr_expect_eq(s.end, 1000);
    cr_expect_eq(s.stored, 1000);

    /* the initial policy's at the end of the random phase (200, before any policy was
     * published), one at 500 and the final one at 1000 with the pulled policy */
    pthread_mutex_lock(&f.mu);
    cr_expect_eq(f.n_evals, 3);
    for (int i = 0; i < f.n_evals && i < 3; i++) {
        const Twig__V1__EvalResult *e = &f.evals[i];
        const uint64_t seq[] = {200, 500, 1000};
        cr_expect_eq(e->seq, seq[i]);
        cr_expect(e->real_steps >= e->seq);
        cr_expect_eq(e->policy_version, i == 0 ? 0 : 3);
        cr_expect_eq(e->episodes, 2);
        cr_expect_str_eq(f.eval_source[i], "actor-0");
        cr_expect(isfinite(e->return_mean) && e->return_mean <= 0 && e->return_mean >= -200 * 16.3,
                  "return %f", e->return_mean);
        cr_expect(e->return_std >= 0);
    }
    cr_expect_gt(f.policy_pulls, 0);
    pthread_mutex_unlock(&f.mu);

    log_check_pendulum(&r, s.end, 0);
    fake_stop(&f);
    dir_free(&r);
}

/* the fake learner holds the actor at a pacing limit so the faults hit at known points */
static const char gated_args[] = "--real-steps 3000 --init-steps 1000 --utd 1 --push-every 10 "
                                 "--hidden 32 --eval-index -1 --policy-poll-ms 50 "
                                 "--exit-when-done true";

/* a run dir with the model server, a fake learner learning from 1000 and the actor held at
 * its pacing limit: 1010 steps in the log; the actor's address */
static const char *gated_start(run_dir *r, fake_learner *f)
{
    dir_init(r, true);
    fake_start(f, 1000);
    actor_start(r, f->addr, gated_args);
    const char *addr = actor_addr(r);
    cr_expect_eq(wait_log_end(r->ms.addr, 1010), 1010);
    return addr;
}

Test(actor_process, model_server_killed_with_batches_pending_loses_and_duplicates_nothing)
{
    run_dir r = {0};
    fake_learner f;
    const char *addr = gated_start(&r, &f);
    wait_stat(addr, "pace_waits", 1);

    /* the server dies; the actor runs on into it and keeps its batches */
    procfix_kill9(&r.ms);
    fake_set_updates(&f, 1000000);
    wait_stat(addr, "append_retries", 1);
    wait_stat(addr, "batches_pending", 1);
    ms_start(&r);
    cr_assert_eq(procfix_exit_code(r.actor.pid, DEADLINE_MS), 0, "actor exit code");

    log_state s = log_of(&r, "actor-0");
    cr_expect_eq(s.end, 3000);
    cr_expect_eq(s.stored, 3000, "each (actor, seq) once");
    cr_expect_eq(log_check_pendulum(&r, s.end, 0), 0, "the actor never restarted: no breaks");
    fake_stop(&f);
    dir_free(&r);
}

Test(actor_process, actor_killed_with_unacknowledged_batches_restarts_exactly)
{
    run_dir r = {0};
    fake_learner f;
    const char *addr = gated_start(&r, &f);

    /* with the server gone the actor fills its queue of unacknowledged batches; then it dies */
    procfix_kill9(&r.ms);
    fake_set_updates(&f, 1000000);
    wait_stat(addr, "batches_pending", 8);
    procfix_kill9(&r.actor);
    ms_start(&r);
    cr_expect_eq(log_of(&r, "actor-0").end, 1010, "nothing unacknowledged was stored");

    actor_run(&r, f.addr, gated_args);
    log_state s = log_of(&r, "actor-0");
    cr_expect_eq(s.end, 3000);
    cr_expect_eq(s.stored, 3000);
    cr_expect_eq(log_check_pendulum(&r, s.end, 1), 1, "one new episode at the restart");
    fake_stop(&f);
    dir_free(&r);
}

Test(actor_process, actor_killed_while_running_free_restarts_exactly)
{
    /* a kill at no chosen point: whatever was in flight, the count ends exact */
    run_dir r = {0};
    dir_init(&r, true);
    const char *args = "--real-steps 20000 --init-steps 1000 --pacing async --push-every 10 "
                       "--eval-index -1 --exit-when-done true";
    actor_start(&r, NO_LEARNER, args);
    wait_log_end(r.ms.addr, 500);
    procfix_kill9(&r.actor);
    /* a batch the server took just before the kill may still be on its way to the disk:
     * the source's count has it already, the log's end once durable; the two meet */
    log_state s = {.stored = 1};
    int64_t stop = procfix_now_ms() + DEADLINE_MS;
    while (procfix_now_ms() < stop &&
           !(log_status(&s, r.ms.addr, "actor-0") == 0 && s.stored == s.end)) {
        procfix_pause_ms(20);
    }
    cr_expect_eq(s.stored, s.end);
    actor_run(&r, NO_LEARNER, args);
    s = log_of(&r, "actor-0");
    cr_expect_eq(s.end, 20000);
    cr_expect_eq(s.stored, 20000);
    log_check_pendulum(&r, s.end, 1);
    dir_free(&r);
}

/* does the file at path hold a line matching the extended regex re? */
static bool log_has(const char *path, const char *re)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "grep -qE '%s' '%s'", re, path);
    return system(cmd) == 0;
}

Test(actor_process, a_log_of_another_env_is_a_clear_error_and_a_bad_flag_exit_2)
{
    run_dir r = {0};
    dir_init(&r, false);
    ms_start_env(&r, "Hopper-v4");

    pid_t a = actor_start(&r, NO_LEARNER, "--real-steps 100 --init-steps 10 --pacing async");
    cr_assert_eq(procfix_exit_code(a, DEADLINE_MS), 1, "actor exit code");
    cr_expect(log_has(r.actor.log_file, "event=fatal.*Hopper-v4.*Pendulum-v1"),
              "the log names both envs");
    cr_expect_eq(log_of(&r, "actor-0").end, 0);

    const char *bad[] = {ACTOR_BIN, "--push-every", "0", NULL};
    char bad_log[200];
    snprintf(bad_log, sizeof bad_log, "%s/bad.log", r.dir);
    cr_assert_eq(procfix_exit_code(procfix_spawn(bad, bad_log), DEADLINE_MS), 2,
                 "actor exit code");
    cr_expect(log_has(bad_log, "push_every"), "the error names the key");
    dir_free(&r);
}

Test(actor_process, two_actors_split_the_budget_and_the_evaluator_waits_for_all_of_it)
{
    run_dir r = {0};
    dir_init(&r, true);
    fake_learner f;
    fake_start(&f, 300);
    fake_set_updates(&f, 100000000);
    /* actor 0 (the evaluator) runs alone through its share; its final evaluation must wait
     * until actor 1, started only then, has stored the rest of the budget */
    const char *both = "--real-steps 2001 --init-steps 300 --n-actors 2 --push-every 25 "
                       "--hidden 32 --eval-every 1000 --eval-episodes 1 --exit-when-done true";
    char args[512];
    snprintf(args, sizeof args, "%s --index 0 --policy-poll-ms 50", both);
    pid_t a0 = actor_start(&r, f.addr, args);
    cr_assert_eq(wait_stored(&r, "actor-0", 1001).stored, 1001,
                 "actor 0 takes its share, with the odd step");
    cr_assert(procfix_runs_for(a0, 300), "actor 0 waits for the whole budget");
    pthread_mutex_lock(&f.mu);
    cr_expect_leq(f.n_evals, 2, "no final evaluation before the budget is in the log");
    pthread_mutex_unlock(&f.mu);

    procfix_t a1 = {0};
    snprintf(a1.port_file, sizeof a1.port_file, "%s/actor1.port", r.dir);
    snprintf(a1.log_file, sizeof a1.log_file, "%s/actor1.log", r.dir);
    snprintf(args, sizeof args, "%s --index 1", both);
    actor_start_as(&r, &a1, f.addr, args);
    cr_assert_eq(procfix_exit_code(a1.pid, DEADLINE_MS), 0, "actor 1 exit code");
    cr_assert_eq(procfix_exit_code(a0, DEADLINE_MS), 0, "actor 0 exit code");

    log_state s = log_of(&r, "actor-1");
    cr_expect_eq(s.end, 2001);
    cr_expect_eq(s.stored, 1000);

    pthread_mutex_lock(&f.mu);
    cr_expect_eq(f.n_evals, 3, "the initial one at 300, one at 1000, the final at 2001");
    if (f.n_evals == 3) {
        cr_expect_eq(f.evals[0].seq, 300);
        cr_expect_eq(f.evals[1].seq, 1000);
        cr_expect_eq(f.evals[2].seq, 2001);
        cr_expect_eq(f.evals[2].real_steps, 2001, "the final eval saw the whole budget");
        cr_expect_str_eq(f.eval_source[2], "actor-0");
    }
    pthread_mutex_unlock(&f.mu);
    fake_stop(&f);
    dir_free(&r);
}

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
    fake_learner f;
    const char *addr = gated_start(&r, &f);
    wait_stat(addr, "pace_waits", 1);

    log_state s = log_of(&r, "actor-0");
    cr_assert_eq(s.stored, 1010);
    append_as(r.ms.addr, "actor-0", s.seq + 1, stale_count);
    fake_set_updates(&f, 1000000);
    cr_assert_eq(procfix_exit_code(r.actor.pid, DEADLINE_MS), 0, "actor exit code");
    char re[256];
    snprintf(re, sizeof re, "event=seq_resync source=actor-0 batch_seq=%lu server_seq=%lu",
             (unsigned long)s.seq + 1, (unsigned long)s.seq + 1);
    cr_expect(log_has(r.actor.log_file, re), "the actor logged its resync");

    s = log_of(&r, "actor-0");
    cr_expect_eq(s.stored, 3000);
    cr_expect_eq(s.end, 3000);
    log_check_pendulum(&r, s.end, 3);
    fake_stop(&f);
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
    dir_init(&r, true); /* only to learn a free port, then the server is gone */
    procfix_stop(&r.ms);
    pid_t a = actor_start(&r, NO_LEARNER,
                          "--real-steps 500 --init-steps 100 --pacing async --eval-index -1 "
                          "--exit-when-done true");
    actor_addr(&r); /* it serves health meanwhile */
    cr_expect(procfix_runs_for(a, 300), "a missing model server is a wait");
    ms_start(&r);
    cr_assert_eq(procfix_exit_code(a, DEADLINE_MS), 0, "actor exit code");
    log_state s = log_of(&r, "actor-0");
    cr_expect_eq(s.end, 500);
    cr_expect_eq(s.stored, 500);
    dir_free(&r);
}

Test(actor_process, a_mujoco_task_with_terminations_logs_valid_episodes)
{
    /* InvertedPendulum-v4 under random actions falls within tens of steps: terminated rows
     * must be exactly where the task's termination says, and episodes continue otherwise */
    run_dir r = {0};
    dir_init(&r, false);
    ms_start_env(&r, "InvertedPendulum-v4");
    actor_run(&r, NO_LEARNER,
              "--env InvertedPendulum-v4 --real-steps 2000 --init-steps 100 "
              "--pacing async --push-every 32 --eval-index -1 --exit-when-done true");
    log_state s = log_of(&r, "actor-0");
    cr_expect_eq(s.end, 2000);
    cr_expect_eq(s.stored, 2000);

    rows_t rows;
    rows_fetch_dims(&rows, r.ms.addr, s.end, 4);
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
    dir_free(&r);
}

/* ---- readiness, start-up checks ---- */

Test(actor_process, not_ready_until_both_peers_answer_and_bad_addresses_exit_2)
{
    run_dir r = {0};
    dir_init(&r, true);
    /* the learner's address is reserved but nobody answers there yet */
    char ln_listen[64];
    snprintf(ln_listen, sizeof ln_listen, "127.0.0.1:%d", procfix_free_port());
    pid_t a = actor_start(&r, ln_listen,
                          "--real-steps 3000 --init-steps 2999 --pacing async --push-every 10 "
                          "--hidden 32 --eval-index -1 --policy-poll-ms 50 --steps-per-s 500");
    const char *addr = actor_addr(&r);
    wait_stat(addr, "acked", 10); /* the model server answers */
    cr_expect_eq(rpc_health_check(addr, RPC_HEALTH_LIVENESS, 2000), RPC_HEALTH_SERVING);
    cr_expect_eq(rpc_health_check(addr, RPC_HEALTH_READINESS, 2000), RPC_HEALTH_NOT_SERVING);
    cr_expect_eq(rpc_health_check(addr, "", 2000), RPC_HEALTH_NOT_SERVING);
    cr_expect_eq(procfix_stat(addr, "actor", "ready"), 0);
    /* the learner comes up: the same actor becomes ready */
    fake_learner f;
    fake_start_at(&f, 100, ln_listen);
    cr_assert_eq(rpc_wait_serving(addr, DEADLINE_MS), 0, "ready: %s", err_msg());
    cr_expect_eq(procfix_stat(addr, "actor", "ready"), 1);
    /* and the learner goes: not ready again, still live */
    fake_stop(&f);
    int64_t stop = procfix_now_ms() + DEADLINE_MS;
    while (rpc_health_check(addr, RPC_HEALTH_READINESS, 2000) != RPC_HEALTH_NOT_SERVING) {
        cr_assert_lt(procfix_now_ms(), stop, "still ready without its learner");
        procfix_pause_ms(PROCFIX_POLL_MS);
    }
    cr_expect_eq(rpc_health_check(addr, RPC_HEALTH_LIVENESS, 2000), RPC_HEALTH_SERVING);
    cr_expect(procfix_runs_for(a, 0));
    procfix_stop(&r.actor);
    cr_expect(log_has(r.actor.log_file, "event=not_ready reason=learner_unreachable"),
              "the reason is logged");
    cr_expect(log_has(r.actor.log_file, "event=ready reason=peers_reached"));

    /* malformed peer addresses and ids fail the start, naming the option and value */
    static const struct {
        const char *flag, *value, *says;
    } bad[] = {
        {"--learner-addr", "nonsense", "learner_addr: address .nonsense. is not HOST:PORT"},
        {"--modelserver-addr", "127.0.0.1:0", "modelserver_addr .127.0.0.1:0."},
        {"--modelserver-addr", "bad host:7101", "modelserver_addr .bad host:7101."},
        {"--id", "actor 0", "actor.id"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char log[300];
        snprintf(log, sizeof log, "%s/bad-%zu.log", r.dir, i);
        const char *argv[] = {ACTOR_BIN, bad[i].flag, bad[i].value, NULL};
        cr_expect_eq(procfix_exit_code(procfix_spawn(argv, log), DEADLINE_MS), 2, "%s %s",
                     bad[i].flag, bad[i].value);
        cr_expect(log_has(log, bad[i].says), "%s %s: the output names it (%s)", bad[i].flag,
                  bad[i].value, log);
    }
    dir_free(&r);
}

/* ---- a fake model server that forgets the actor's identity (docs/design.md "Dedup") ---- */

#define FMS_MAX_RECS 1024

typedef struct fms_rec {
    uint64_t seq, count, first_offset, source_epoch;
    int identity; /* 0 before the model server forgot the actor, 1 after */
} fms_rec;

typedef struct fake_ms {
    pthread_mutex_t mu;
    rpc_server_t *srv;
    char addr[64];
    uint64_t end;      /* transitions stored: the log's end, all the actor's */
    uint64_t seq;      /* the actor's newest seq while known */
    bool known;        /* the actor's identity is remembered */
    int identity;      /* how often it was forgotten */
    uint64_t epoch;    /* LogStatusReply.source_epoch */
    uint64_t fence;    /* an unknown source below it is refused as fenced */
    uint64_t evict_at; /* forget the actor once this many transitions are stored */
    uint64_t fenced, duplicates, bad;
    fms_rec recs[FMS_MAX_RECS];
    int n_recs;
} fake_ms;

static int fms_append(rpc_call_t *call, const ProtobufCMessage *msg, void *app)
{
    fake_ms *f = app;
    const Twig__V1__TransitionBatch *m = (const Twig__V1__TransitionBatch *)msg;
    int rc = msg_batch_check(m, MSG_BATCH_MAX_COUNT);
    pthread_mutex_lock(&f->mu);
    if (rc < 0 || strcmp(m->source_id, "actor-0") != 0 || f->n_recs == FMS_MAX_RECS) {
        f->bad++;
        pthread_mutex_unlock(&f->mu);
        return rc < 0 ? rc : err_set(-EINVAL, "fake model server: not actor-0, or full");
    }
    Twig__V1__AppendRealReply r = TWIG__V1__APPEND_REAL_REPLY__INIT;
    r.seq = m->seq;
    r.count = m->count;
    if (!f->known && m->source_epoch < f->fence) {
        f->fenced++;
        pthread_mutex_unlock(&f->mu);
        return err_set(TWIG_EFENCED,
                       "source 'actor-0' is not known and its source_epoch %llu is below the "
                       "fence %llu",
                       (unsigned long long)m->source_epoch, (unsigned long long)f->fence);
    }
    if (f->known && m->seq <= f->seq) {
        for (int i = f->n_recs - 1; i >= 0; i--) {
            if (f->recs[i].identity == f->identity && f->recs[i].seq == m->seq) {
                f->duplicates++;
                r.first_offset = f->recs[i].first_offset;
                r.duplicate = 1;
                pthread_mutex_unlock(&f->mu);
                rpc_call_reply(call, 0, &r.base);
                return 0;
            }
        }
        f->bad++;
        pthread_mutex_unlock(&f->mu);
        return err_set(-EINVAL, "seq %llu below the newest %llu", (unsigned long long)m->seq,
                       (unsigned long long)f->seq);
    }
    f->recs[f->n_recs++] = (fms_rec){.seq = m->seq,
                                     .count = m->count,
                                     .first_offset = f->end,
                                     .source_epoch = m->source_epoch,
                                     .identity = f->identity};
    r.first_offset = f->end;
    f->end += m->count;
    f->seq = m->seq;
    f->known = true;
    if (f->evict_at && f->end >= f->evict_at && f->identity == 0) {
        /* evicted: it forgets the actor's seqs (not its transitions, which are in the log) */
        f->known = false;
        f->seq = 0;
        f->identity = 1;
        f->fence = m->source_epoch + 1;
        f->epoch = f->fence + 10;
    }
    pthread_mutex_unlock(&f->mu);
    rpc_call_reply(call, 0, &r.base);
    return 0;
}

static int fms_status(rpc_call_t *call, const ProtobufCMessage *msg, void *app)
{
    fake_ms *f = app;
    Twig__V1__LogStatusReply r = TWIG__V1__LOG_STATUS_REPLY__INIT;
    pthread_mutex_lock(&f->mu);
    r.end_offset = f->end;
    r.env_id = (char *)"Pendulum-v1";
    r.obs_dim = 3;
    r.act_dim = 1;
    r.source_seq = f->known ? f->seq : 0;
    r.source_transitions = f->end;
    r.source_epoch = f->epoch;
    pthread_mutex_unlock(&f->mu);
    rpc_call_reply(call, 0, &r.base);
    return 0;
}

static const rpc_method fms_methods[] = {
    {"/twig.v1.ModelServer/AppendReal", &twig__v1__transition_batch__descriptor, fms_append,
     RPC_KIND_UNARY, RPC_RUN_ON_CQ},
    {"/twig.v1.ModelServer/LogStatus", &twig__v1__log_status_request__descriptor, fms_status,
     RPC_KIND_UNARY, RPC_RUN_ON_CQ},
};

Test(actor_process, a_fenced_identity_asks_log_status_and_goes_on_as_a_new_one)
{
    char dir[PROCFIX_DIR_LEN];
    procfix_tmpdir(dir, sizeof dir);
    fake_ms f = {0};
    pthread_mutex_init(&f.mu, NULL);
    f.epoch = 5;
    f.evict_at = 200;
    rpc_server_cfg cfg = {.listen = "127.0.0.1:0", .app = &f};
    cr_assert_eq(rpc_server_init(&f.srv, &cfg, fms_methods, 2), 0, "%s", err_msg());
    cr_assert_eq(rpc_server_start(f.srv), 0);
    snprintf(f.addr, sizeof f.addr, "127.0.0.1:%d", rpc_server_port(f.srv));

    run_dir r = {0};
    snprintf(r.dir, sizeof r.dir, "%s", dir);
    snprintf(r.ms.addr, sizeof r.ms.addr, "%s", f.addr);
    snprintf(r.actor.port_file, sizeof r.actor.port_file, "%s/actor.port", dir);
    snprintf(r.actor.log_file, sizeof r.actor.log_file, "%s/actor.log", dir);
    actor_run(&r, NO_LEARNER,
              "--real-steps 600 --init-steps 599 --pacing async --push-every 10 "
              "--eval-index -1 --exit-when-done true");

    pthread_mutex_lock(&f.mu);
    cr_expect_eq(f.end, 600, "exactly the budget, nothing lost or stored twice");
    cr_expect_eq(f.fenced, 1, "one batch refused, then sent by the new identity");
    cr_expect_eq(f.bad, 0);
    cr_expect_eq(f.duplicates, 0);
    uint64_t sum = 0, seq0 = 0, seq1 = 0;
    for (int i = 0; i < f.n_recs; i++) {
        const fms_rec *p = &f.recs[i];
        sum += p->count;
        if (p->identity == 0) {
            cr_expect_eq(p->seq, ++seq0, "first identity: seqs 1, 2, ...");
            cr_expect_eq(p->source_epoch, 5, "the epoch LogStatus gave at start");
        } else {
            cr_expect_eq(p->seq, ++seq1, "the new identity numbers from 1");
            cr_expect_eq(p->source_epoch, 16, "the epoch LogStatus gave after the fence");
        }
    }
    cr_expect_eq(sum, 600);
    cr_expect_eq(seq0 * 10, 200, "evicted once 200 were stored");
    cr_expect_eq(seq1 * 10, 400);
    pthread_mutex_unlock(&f.mu);
    cr_expect(log_has(r.actor.log_file, "event=seq_resync source=actor-0 .* why=fenced"),
              "the actor logged the new identity (%s)", r.actor.log_file);
    rpc_server_shutdown(f.srv, 100);
    rpc_server_free(f.srv);
    pthread_mutex_destroy(&f.mu);
    procfix_tmpdir_done(dir);
}
