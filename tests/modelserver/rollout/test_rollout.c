/* tests of twig-rollout with the real twig-modelserver (training its model) and an in-test
 * learner: strict quota counts and model versions per training point, retried pushes keep
 * their seq, a missing learner is a wait, branches stop on termination, kill -9 and restart
 * resumes under a new source id, SIGTERM exits 0 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>

#include "common/env/env.h"
#include "common/base/err.h"
#include "common/base/mem.h"
#include "common/config/run_config.h"
#include "common/rpc/member.h"
#include "common/rpc/msg.h"
#include "common/rpc/nn_blob.h"
#include "common/nn/policy.h"
#include "common/rpc/policy_blob.h"
#include "common/rpc/rpc.h"
#include "common/nn/sac.h"
#include "tests/modelserver/env_data.h"
#include "tests/modelserver/fixture.h"
#include "modelserver/rollout/rollout.h"
#include "tests/procfix.h"

#define MS_BIN TWIG_BIN_DIR "/modelserver/twig-modelserver"
#define RO_BIN TWIG_BIN_DIR "/modelserver/twig-rollout"
#define MAX_WORKERS 8

static char tmp[PROCFIX_DIR_LEN];

static void setup(void)
{
    procfix_tmpdir(tmp, sizeof tmp);
    rpc_lib_init();
}

static void teardown(void)
{
    procfix_reap_all();
    rpc_lib_shutdown(5000);
    procfix_tmpdir_done(tmp);
}

TestSuite(rollout, .init = setup, .fini = teardown, .timeout = 240);

/* a test's schedule */
typedef struct run_params {
    const char *env;
    int init_steps, train_freq, rollouts, k;
    int n_workers;      /* 0: 1 */
    const char *pacing; /* NULL: the default (strict) */
} run_params;

/* ---- the learner's side, in the test ---- */

typedef struct push_rec {
    char source[96];
    uint64_t seq;
    uint64_t source_epoch;
    uint32_t count;
    uint64_t model_version;
    uint64_t policy_version;
    uint64_t chunk_id, chunk_branches;
    uint64_t chunk_begin; /* of the chunk it credited (0: it credited none) */
} push_rec;

/* a chunk of the quota as the fake learner hands them out (the learner's rule, by hand) */
typedef struct fl_chunk {
    uint64_t id, begin, end, need, done, owner;
} fl_chunk;
#define FL_CHUNKS 64

typedef struct fake_learner {
    pthread_mutex_t mu;
    rpc_server_t *srv;
    char addr[64];
    int O, A;
    push_rec *recs;
    int n_recs, cap_recs;
    uint64_t transitions, duplicates, bad, acks_dropped;
    float *obs, *next, *act; /* stored rows */
    int *term;
    uint64_t n_rows, cap_rows;
    member_svc members; /* the real Membership handler (common/rpc/member.h), under mu */
    run_cfg run;        /* init_steps, model_train_freq, epoch_length: the chunks' bounds */
    fl_chunk chunks[FL_CHUNKS];
    uint64_t next_step, next_chunk;
    uint64_t credited;  /* branches credited to chunks */
    int drop_ack_every; /* store, then fail the reply of every n-th new push */
    uint64_t n_new;
    nn_blob *policy;        /* served by GetPolicy when set */
    uint64_t policy_pushes; /* pushes tagged with the policy's version */
    /* the dedup rule's fence (docs/design.md "Dedup"), played by hand */
    uint64_t epoch;            /* Progress.source_epoch */
    uint64_t fence;            /* an unknown source below it is refused as fenced */
    uint64_t evict_at;         /* once this many transitions are stored, forget their source */
    char forgotten[96];        /* the source forgotten (its pushes count as unknown) */
    uint64_t fenced;           /* pushes refused as fenced */
} fake_learner;

static int fl_push(rpc_call_t *call, const ProtobufCMessage *msg, void *app)
{
    fake_learner *fl = app;
    const Twig__V1__TransitionBatch *m = (const Twig__V1__TransitionBatch *)msg;
    int rc = msg_synth_check(m, MSG_BATCH_MAX_COUNT);
    pthread_mutex_lock(&fl->mu);
    if (rc == 0 && (m->obs_dim != (uint32_t)fl->O || m->act_dim != (uint32_t)fl->A)) {
        rc = err_set(-EINVAL, "dims (%u, %u)", m->obs_dim, m->act_dim);
    }
    if (rc < 0) {
        fl->bad++;
        pthread_mutex_unlock(&fl->mu);
        return rc;
    }
    /* known: pushed before and not forgotten since */
    bool known = false;
    for (int i = 0; i < fl->n_recs; i++) {
        known = known || !strcmp(fl->recs[i].source, m->source_id);
    }
    known = known && strcmp(fl->forgotten, m->source_id) != 0;
    if (!known && m->source_epoch < fl->fence) {
        fl->fenced++;
        pthread_mutex_unlock(&fl->mu);
        return err_set(TWIG_EFENCED, "source '%s' is not known and its source_epoch %" PRIu64
                       " is below the fence %" PRIu64, m->source_id, m->source_epoch, fl->fence);
    }
    for (int i = 0; i < fl->n_recs; i++) {
        if (fl->recs[i].seq == m->seq && !strcmp(fl->recs[i].source, m->source_id)) {
            cr_expect_eq(fl->recs[i].count, m->count, "a retry carries the same batch");
            fl->duplicates++;
            pthread_mutex_unlock(&fl->mu);
            Twig__V1__PushReply r = TWIG__V1__PUSH_REPLY__INIT;
            r.duplicate = true;
            rpc_call_reply(call, 0, &r.base);
            return 0;
        }
    }
    /* new data: a live lease, and credit only to the member's own open chunk */
    rc = member_check_push(&fl->members, m->member_id, m->source_id, (uint64_t)procfix_now_ms());
    fl_chunk *ck = NULL;
    for (int i = 0; i < FL_CHUNKS && rc == 0 && m->chunk_branches > 0; i++) {
        if (fl->chunks[i].id == m->chunk_id && fl->chunks[i].owner == m->member_id) {
            ck = &fl->chunks[i];
        }
    }
    if (rc == 0 && m->chunk_branches > 0 && (!ck || m->chunk_branches > ck->need - ck->done)) {
        rc = err_set(-EINVAL, "chunk %" PRIu64 " cannot take %" PRIu64 " branches", m->chunk_id,
                     m->chunk_branches);
    }
    if (rc < 0) {
        fl->bad += rc != TWIG_ELEASE;
        pthread_mutex_unlock(&fl->mu);
        return rc;
    }
    if (fl->n_recs == fl->cap_recs) {
        fl->cap_recs = fl->cap_recs ? 2 * fl->cap_recs : 256;
        fl->recs = xrealloc(fl->recs, (size_t)fl->cap_recs * sizeof *fl->recs);
    }
    push_rec *p = &fl->recs[fl->n_recs++];
    snprintf(p->source, sizeof p->source, "%s", m->source_id);
    p->seq = m->seq;
    p->source_epoch = m->source_epoch;
    p->count = m->count;
    p->model_version = m->model_version;
    p->policy_version = m->policy_version;
    p->chunk_id = m->chunk_id;
    p->chunk_branches = m->chunk_branches;
    p->chunk_begin = ck ? ck->begin : 0;
    if (ck) {
        ck->done += m->chunk_branches;
        fl->credited += m->chunk_branches;
        if (ck->done == ck->need) {
            memset(ck, 0, sizeof *ck);
        }
    }
    uint64_t need = fl->n_rows + m->count;
    if (need > fl->cap_rows) {
        fl->cap_rows = need * 2;
        fl->obs = xrealloc(fl->obs, fl->cap_rows * (size_t)fl->O * sizeof(float));
        fl->next = xrealloc(fl->next, fl->cap_rows * (size_t)fl->O * sizeof(float));
        fl->term = xrealloc(fl->term, fl->cap_rows * sizeof(int));
        fl->act = xrealloc(fl->act, fl->cap_rows * (size_t)fl->A * sizeof(float));
    }
    memcpy(fl->act + fl->n_rows * fl->A, m->act, m->n_act * sizeof(float));
    fl->policy_pushes += fl->policy && m->policy_version == fl->policy->msg.version;
    memcpy(fl->obs + fl->n_rows * fl->O, m->obs, m->n_obs * sizeof(float));
    memcpy(fl->next + fl->n_rows * fl->O, m->next_obs, m->n_next_obs * sizeof(float));
    for (uint32_t i = 0; i < m->count; i++) {
        fl->term[fl->n_rows + i] = m->terminated[i];
    }
    fl->n_rows = need;
    fl->transitions += m->count;
    fl->n_new++;
    if (fl->evict_at && fl->transitions >= fl->evict_at && !fl->forgotten[0]) {
        /* evicted: its next push, whatever its seq, finds it unknown and below the fence */
        snprintf(fl->forgotten, sizeof fl->forgotten, "%s", m->source_id);
        fl->fence = m->source_epoch + 1;
        fl->epoch = fl->fence + 5;
    }
    bool drop = fl->drop_ack_every > 0 && fl->n_new % (uint64_t)fl->drop_ack_every == 0;
    fl->acks_dropped += drop;
    pthread_mutex_unlock(&fl->mu);
    if (drop) {
        return err_set(TWIG_EUNAVAIL, "ack lost (test)"); /* stored: the retry is a dup */
    }
    Twig__V1__PushReply r = TWIG__V1__PUSH_REPLY__INIT;
    r.accepted = m->count;
    rpc_call_reply(call, 0, &r.base);
    return 0;
}

/* the lowest step of an open chunk, else the first step in none */
static uint64_t fl_quota_done_locked(const fake_learner *fl)
{
    uint64_t q = fl->next_step;
    for (int i = 0; i < FL_CHUNKS; i++) {
        if (fl->chunks[i].id && fl->chunks[i].begin < q) {
            q = fl->chunks[i].begin;
        }
    }
    return q;
}

static int fl_take_chunk(rpc_call_t *call, const ProtobufCMessage *msg, void *app)
{
    fake_learner *fl = app;
    const Twig__V1__ChunkRequest *q = (const Twig__V1__ChunkRequest *)msg;
    Twig__V1__ChunkReply r = TWIG__V1__CHUNK_REPLY__INIT;
    pthread_mutex_lock(&fl->mu);
    member_sweep(&fl->members, (uint64_t)procfix_now_ms());
    int rc = lease_renew(&fl->members.leases, q->member_id, (uint64_t)procfix_now_ms());
    if (rc < 0) {
        pthread_mutex_unlock(&fl->mu);
        return rc;
    }
    fl_chunk *c = NULL, *free_slot = NULL;
    for (int i = 0; i < FL_CHUNKS && !c; i++) {
        fl_chunk *x = &fl->chunks[i];
        if (x->id && (x->owner == q->member_id || (x->owner == 0 && x->end <= q->have_real))) {
            c = x;
            c->owner = q->member_id;
        } else if (!x->id && !free_slot) {
            free_slot = x;
        }
    }
    uint64_t s0 = fl->next_step, end = q->have_real;
    uint64_t next_point = run_model_next_point(&fl->run, s0);
    uint64_t el = (uint64_t)fl->run.epoch_length, next_epoch = (s0 / el + 1) * el;
    end = end < next_point ? end : next_point;
    end = end < next_epoch ? end : next_epoch;
    end = end < s0 + q->max_steps ? end : s0 + q->max_steps;
    if (!c && free_slot && end > s0) {
        c = free_slot;
        *c = (fl_chunk){.id = ++fl->next_chunk, .begin = s0, .end = end,
                        .need = (end - s0) * (uint64_t)fl->run.rollouts_per_step,
                        .owner = q->member_id};
        fl->next_step = end;
    }
    if (c) {
        r.chunk_id = c->id;
        r.step_begin = c->begin;
        r.step_end = c->end;
        r.chunk_branches = c->need;
        r.done = c->done;
    }
    pthread_mutex_unlock(&fl->mu);
    rpc_call_reply(call, 0, &r.base);
    return 0;
}

/* a lease ended: its chunk becomes an orphan (mu held) */
static void fl_gone(void *app, const lease *ended, bool left)
{
    (void)left;
    fake_learner *fl = app;
    for (int i = 0; i < FL_CHUNKS; i++) {
        if (fl->chunks[i].id && fl->chunks[i].owner == ended->id) {
            fl->chunks[i].owner = 0;
        }
    }
}

static uint64_t fl_epoch(void *app)
{
    return ((fake_learner *)app)->epoch;
}

static int fl_join(rpc_call_t *call, const ProtobufCMessage *msg, void *app)
{
    return member_on_join(&((fake_learner *)app)->members, call, msg);
}

static int fl_renew(rpc_call_t *call, const ProtobufCMessage *msg, void *app)
{
    return member_on_renew(&((fake_learner *)app)->members, call, msg);
}

static int fl_leave(rpc_call_t *call, const ProtobufCMessage *msg, void *app)
{
    return member_on_leave(&((fake_learner *)app)->members, call, msg);
}

static int fl_progress(rpc_call_t *call, const ProtobufCMessage *msg, void *app)
{
    fake_learner *fl = app;
    Twig__V1__Progress r = TWIG__V1__PROGRESS__INIT;
    pthread_mutex_lock(&fl->mu);
    r.rollout_quota_done = fl_quota_done_locked(fl);
    r.synthetic_samples = fl->transitions;
    r.source_epoch = fl->epoch;
    pthread_mutex_unlock(&fl->mu);
    rpc_call_reply(call, 0, &r.base);
    return 0;
}

static int fl_policy(rpc_call_t *call, const ProtobufCMessage *msg, void *app)
{
    fake_learner *fl = app;
    const Twig__V1__GetWeightsRequest *q = (const Twig__V1__GetWeightsRequest *)msg;
    Twig__V1__GetWeightsReply r = TWIG__V1__GET_WEIGHTS_REPLY__INIT;
    if (fl->policy && q->have_version < fl->policy->msg.version) {
        r.blob = &fl->policy->msg;
    } else {
        r.empty_reason = TWIG__V1__EMPTY_REASON__EMPTY_REASON_NO_VERSION;
    }
    rpc_call_reply(call, 0, &r.base);
    return 0;
}

static const rpc_method fl_methods[] = {
    {"/twig.v1.Learner/PushSynthetic", &twig__v1__transition_batch__descriptor, fl_push,
     RPC_KIND_UNARY, RPC_RUN_ON_CQ},
    {"/twig.v1.Learner/GetProgress", &twig__v1__progress_request__descriptor, fl_progress,
     RPC_KIND_UNARY, RPC_RUN_ON_CQ},
    {"/twig.v1.Learner/GetPolicy", &twig__v1__get_weights_request__descriptor, fl_policy,
     RPC_KIND_UNARY, RPC_RUN_ON_CQ},
    {"/twig.v1.Learner/TakeChunk", &twig__v1__chunk_request__descriptor, fl_take_chunk,
     RPC_KIND_UNARY, RPC_RUN_ON_CQ},
    {"/twig.v1.Membership/Join", &twig__v1__join_request__descriptor, fl_join, RPC_KIND_UNARY,
     RPC_RUN_ON_CQ},
    {"/twig.v1.Membership/Renew", &twig__v1__member_request__descriptor, fl_renew,
     RPC_KIND_UNARY, RPC_RUN_ON_CQ},
    {"/twig.v1.Membership/Leave", &twig__v1__member_request__descriptor, fl_leave,
     RPC_KIND_UNARY, RPC_RUN_ON_CQ},
};

/* listen on addr ("127.0.0.1:0" or a reserved port) */
static void fl_start(fake_learner *fl, const char *addr)
{
    rpc_server_cfg sc = {.listen = addr, .app = fl};
    int rc = rpc_server_init(&fl->srv, &sc, fl_methods, sizeof fl_methods / sizeof fl_methods[0]);
    cr_assert_eq(rc, 0, "fake learner: %s", err_msg());
    cr_assert_eq(rpc_server_start(fl->srv), 0);
    snprintf(fl->addr, sizeof fl->addr, "127.0.0.1:%d", rpc_server_port(fl->srv));
}

/* a fake learner for rows of (O, A) under rp's schedule; leases of ttl_ms */
static void fl_init(fake_learner *fl, int O, int A, const run_params *rp, uint64_t ttl_ms)
{
    memset(fl, 0, sizeof *fl);
    pthread_mutex_init(&fl->mu, NULL);
    fl->O = O;
    fl->A = A;
    fl->run.init_steps = (uint64_t)rp->init_steps;
    fl->run.model_train_freq = rp->train_freq;
    fl->run.epoch_length = 1000;
    fl->run.rollouts_per_step = rp->rollouts;
    fl->next_step = run_model_next_point(&fl->run, 0);
    member_svc_cfg mc = {.role = MEMBER_ROLE_ROLLOUT, .run_id = "", .ttl_ms = ttl_ms,
                         .capacity = 16, .first_id = 1000, .mu = &fl->mu, .gone = fl_gone,
                         .epoch = fl_epoch, .app = fl};
    cr_assert_eq(member_svc_init(&fl->members, &mc), 0);
}

static void fl_free(fake_learner *fl)
{
    rpc_server_free(fl->srv);
    free(fl->recs);
    free(fl->obs);
    free(fl->next);
    free(fl->term);
    free(fl->act);
    member_svc_free(&fl->members);
    pthread_mutex_destroy(&fl->mu);
}

/* wait until the learner's quota_done reaches q */
static void fl_wait_quota(fake_learner *fl, uint64_t q, int ms)
{
    int64_t deadline = procfix_now_ms() + ms;
    uint64_t got = 0;
    while (procfix_now_ms() < deadline) {
        pthread_mutex_lock(&fl->mu);
        got = fl_quota_done_locked(fl);
        pthread_mutex_unlock(&fl->mu);
        if (got >= q) {
            return;
        }
        procfix_pause_ms(20);
    }
    cr_assert_fail("quota_done %" PRIu64 " did not reach %" PRIu64 " within %d ms", got, q, ms);
}

/* ---- processes ---- */


/* p's port and log file: tmp/<name>.port, tmp/<name>.log */
static void name_files(procfix_t *p, const char *name)
{
    snprintf(p->port_file, sizeof p->port_file, "%s/%s.port", tmp, name);
    snprintf(p->log_file, sizeof p->log_file, "%s/%s.log", tmp, name);
    unlink(p->port_file);
}

/* on listen ("127.0.0.1:0", or a fixed port to restart on) */
static void start_modelserver_on(procfix_t *p, const run_params *rp, const char *listen)
{
    char dir[600], s_env[128], s_init[64], s_freq[64];
    snprintf(dir, sizeof dir, "%s/ms", tmp);
    name_files(p, "ms");
    snprintf(s_env, sizeof s_env, "env=%s", rp->env);
    snprintf(s_init, sizeof s_init, "init_steps=%d", rp->init_steps);
    snprintf(s_freq, sizeof s_freq, "model_train_freq=%d", rp->train_freq);
    const char *argv[] = {MS_BIN,       "--listen",
                          listen,       "--data-dir",
                          dir,          "--port-file",
                          p->port_file, "--fsync",
                          "none",       "--log-level",
                          "warn",       "--set",
                          s_env,        "--set",
                          s_init,       "--set",
                          s_freq,       FX_SMALL_MODEL_ARGS,
                          "--set",      "modelserver.model_batch=64",
                          NULL};
    p->pid = procfix_spawn(argv, p->log_file);
    procfix_wait_serving(p, 20000);
}

/* worker index of rp->n_workers */
static void start_worker(procfix_t *p, const run_params *rp, const char *ms_addr,
                         const char *learner_addr, const char *name, int index)
{
    char s_env[128], s_init[64], s_freq[64], s_r[64], s_kmin[64], s_kmax[64], s_ms[128], s_ln[128],
        s_pf[600], s_m[64], s_j[64], s_id[64], s_pace[64];
    name_files(p, name);
    snprintf(s_m, sizeof s_m, "n_rollout=%d", rp->n_workers ? rp->n_workers : 1);
    snprintf(s_j, sizeof s_j, "rollout.index=%d", index);
    snprintf(s_id, sizeof s_id, "rollout.id=rollout-%d", index);
    snprintf(s_env, sizeof s_env, "env=%s", rp->env);
    snprintf(s_init, sizeof s_init, "init_steps=%d", rp->init_steps);
    snprintf(s_freq, sizeof s_freq, "model_train_freq=%d", rp->train_freq);
    snprintf(s_r, sizeof s_r, "rollouts_per_step=%d", rp->rollouts);
    snprintf(s_kmin, sizeof s_kmin, "k_min=%d", rp->k);
    snprintf(s_kmax, sizeof s_kmax, "k_max=%d", rp->k);
    snprintf(s_ms, sizeof s_ms, "modelserver_addr=%s", ms_addr);
    snprintf(s_ln, sizeof s_ln, "learner_addr=%s", learner_addr);
    snprintf(s_pf, sizeof s_pf, "rollout.port_file=%s", p->port_file);
    snprintf(s_pace, sizeof s_pace, "pacing=%s", rp->pacing ? rp->pacing : "strict");
    const char *argv[] = {
        RO_BIN, "--set",        s_env,       "--set",     s_init,        "--set",
        s_freq, "--set",        s_r,         "--set",     s_kmin,        "--set",
        s_kmax, "--set",        s_ms,        "--set",     s_ln,          "--set",
        s_pf,   "--set",        "hidden=32", "--listen",  "127.0.0.1:0", "--chunk",
        "256",  "--push-batch", "100",       "--wait-ms", "200",         "--backoff-max-ms",
        "200",  "--log-level",  "warn",      "--set",     s_m,           "--set",
        s_j,    "--set",        s_id,        "--set",     s_pace,        NULL};
    p->pid = procfix_spawn(argv, p->log_file);
    procfix_wait_live(p, 20000); /* ready once both peers answered */
}

/* the worker's Stats value for key */
static double stat_value(const char *addr, const char *key)
{
    return procfix_stat(addr, "rollout", key);
}

/* one test's world: the model server (on listen) for rp, n_real steps of rp->env collected
 * from seed to append as actor-0, a client to the server, a fake learner of the env's dims
 * (not listening yet), and one rollout worker "ro" once rig_start_rollout ran */
typedef struct rig {
    run_params rp;
    procfix_t ms, ro;
    ed_data d;
    rpc_client_t *cl;
    uint64_t seq; /* actor-0's next AppendReal seq */
    fake_learner fl;
} rig;

static void rig_init(rig *g, const run_params *rp, const char *listen, int n_real, uint64_t seed)
{
    memset(g, 0, sizeof *g);
    g->rp = *rp;
    g->seq = 1;
    start_modelserver_on(&g->ms, rp, listen);
    cr_assert_eq(ed_collect(&g->d, rp->env, n_real, seed), 0);
    cr_assert_eq(rpc_client_init(&g->cl, g->ms.addr, NULL), 0);
    fl_init(&g->fl, g->d.O, g->d.A, rp, 3000);
}

/* append rows [from, to) of the collected steps to the model server as actor-0 */
static void rig_append(rig *g, int from, int to)
{
    for (int i = from; i < to; i += 100) {
        int n = to - i < 100 ? to - i : 100;
        tbatch_t v = ed_view(&g->d, i, n, "actor-0", g->seq++);
        Twig__V1__TransitionBatch m;
        msg_batch_from_view(&m, &v);
        ProtobufCMessage *reply = NULL;
        rpc_call_opts o = {.deadline_ms = 10000, .idempotent = true, .wait_for_ready = true};
        int rc = rpc_client_unary(g->cl, &reply, "/twig.v1.ModelServer/AppendReal", &m.base,
                                  &twig__v1__append_real_reply__descriptor, &o);
        cr_assert_eq(rc, 0, "append: %s", err_msg());
        cr_assert_eq(((Twig__V1__AppendRealReply *)reply)->first_offset, (uint64_t)i);
        protobuf_c_message_free_unpacked(reply, NULL);
    }
}

/* the fake learner listening on any port, and worker 0 "ro" pushing to it */
static void rig_start_rollout(rig *g)
{
    fl_start(&g->fl, "127.0.0.1:0");
    start_worker(&g->ro, &g->rp, g->ms.addr, g->fl.addr, "ro", 0);
}

/* rig_init, the first n_append steps appended, then worker 0 started and its quota done */
static void rig_start(rig *g, const run_params *rp, const char *listen, int n_real, uint64_t seed,
                      int n_append)
{
    rig_init(g, rp, listen, n_real, seed);
    rig_append(g, 0, n_append);
    rig_start_rollout(g);
    fl_wait_quota(&g->fl, (uint64_t)n_append, 60000);
}

/* SIGTERM to the worker (if started) and the model server, both must exit 0; frees all */
static void rig_free(rig *g)
{
    if (g->ro.pid) {
        procfix_stop(&g->ro);
    }
    procfix_stop(&g->ms);
    rpc_client_free(g->cl);
    fl_free(&g->fl);
    ed_free(&g->d);
}

/* ---- tests ---- */

Test(rollout, strict_quota_per_real_step_and_model_per_training_point)
{
    /* Pendulum; training points 400, 600, ...; 3 branches of 1 step per real step >= 400 */
    run_params rp = {"Pendulum-v1", 300, 200, 3, 1, 1, NULL};
    rig g;
    rig_init(&g, &rp, "127.0.0.1:0", 700, 11);
    rig_append(&g, 0, 450);

    /* the learner is not there yet: the worker waits for it (backoff), then goes on */
    char ln_addr[64];
    snprintf(ln_addr, sizeof ln_addr, "127.0.0.1:%d", procfix_free_port());
    start_worker(&g.ro, &rp, g.ms.addr, ln_addr, "ro", 0);
    procfix_wait_stat(g.ro.addr, "rollout", "real_mirrored", 450, 60000);
    procfix_wait_stat(g.ro.addr, "rollout", "model_version", 1, 60000);
    cr_assert_eq(stat_value(g.ro.addr, "model_version"), 1, "mirrored and loaded the model");
    cr_assert(procfix_runs_for(g.ro.pid, 0), "a missing learner is a wait, not an exit");
    cr_expect_eq(stat_value(g.ro.addr, "transitions"), 0);
    /* it cannot do its job: live, not ready */
    cr_expect_eq(rpc_health_check(g.ro.addr, RPC_HEALTH_LIVENESS, 2000), RPC_HEALTH_SERVING);
    cr_expect_eq(rpc_health_check(g.ro.addr, RPC_HEALTH_READINESS, 2000),
                 RPC_HEALTH_NOT_SERVING);
    cr_expect_eq(stat_value(g.ro.addr, "ready"), 0);
    fake_learner *fl = &g.fl;
    fl->drop_ack_every = 4;
    fl->epoch = 7;
    fl_start(fl, ln_addr);
    cr_assert_eq(rpc_wait_serving(g.ro.addr, 30000), 0, "ready once the learner answers: %s",
                 err_msg());
    cr_expect_eq(stat_value(g.ro.addr, "ready"), 1);

    fl_wait_quota(fl, 450, 60000);
    rig_append(&g, 450, 700); /* crosses the training point 600 */
    fl_wait_quota(fl, 700, 60000);

    pthread_mutex_lock(&fl->mu);
    cr_expect_eq(fl->transitions, (700 - 400) * 3, "one branch of k=1 per quota slot");
    cr_expect_eq(fl->n_rows, fl->transitions);
    cr_expect_eq(fl->bad, 0);
    cr_expect_gt(fl->acks_dropped, 0);
    cr_expect_geq(fl->duplicates, fl->acks_dropped, "every lost ack was retried with its seq");
    uint64_t max_begin = 0;
    for (int i = 0; i < fl->n_recs; i++) {
        const push_rec *p = &fl->recs[i];
        cr_expect_geq(p->model_version, 1);
        cr_expect_eq(p->policy_version, 0, "no policy yet: random actions");
        cr_expect_eq(p->seq, (uint64_t)i + 1, "seqs 1, 2, ... of one membership");
        cr_expect_eq(p->source_epoch, 7, "the epoch the learner gave the identity");
        cr_expect_eq(strncmp(p->source, "rollout-0@m", 11), 0, "%s", p->source);
        cr_expect_eq(p->chunk_branches, p->count, "k = 1: every row starts a branch");
        if (p->chunk_begin >= 600) {
            /* steps from 600 on need the model trained at 600: version 2 or later */
            cr_expect_geq(p->model_version, 2, "push %d chunk at %" PRIu64, i, p->chunk_begin);
        }
        cr_expect_geq(p->chunk_begin, max_begin, "one worker's chunks never go back");
        max_begin = p->chunk_begin > max_begin ? p->chunk_begin : max_begin;
    }
    cr_expect_eq(fl_quota_done_locked(fl), 700);
    cr_expect_eq(fl->credited, (700 - 400) * 3, "exactly 3 branches per real step");
    pthread_mutex_unlock(&fl->mu);
    cr_expect_eq(stat_value(g.ro.addr, "branches"), (700 - 400) * 3);
    cr_expect_eq(stat_value(g.ro.addr, "transitions"), (700 - 400) * 3);
    cr_expect_eq(stat_value(g.ro.addr, "real_mirrored"), 700);
    cr_expect_eq(stat_value(g.ro.addr, "quota_done"), 700);
    cr_expect_geq(stat_value(g.ro.addr, "model_version"), 2);
    cr_expect_gt(stat_value(g.ro.addr, "samples_per_s"), 0);
    cr_expect_eq(stat_value(g.ro.addr, "identities"), 1);
    char *log = g.ro.log_file;
    rig_free(&g);
    FILE *f = fopen(log, "r");
    cr_assert_not_null(f);
    char line[4096];
    int not_ready = 0, missing = 0;
    while (fgets(line, sizeof line, f)) {
        not_ready += strstr(line, "event=not_ready reason=learner_unreachable") != NULL;
        missing += strstr(line, "event=peer_missing") != NULL;
    }
    fclose(f);
    cr_expect_eq(not_ready, 1, "the change logged once, with its reason");
    cr_expect_eq(missing, 0, "no second line for it");
}

Test(rollout, a_fenced_identity_rejoins_and_finishes_its_chunk_under_a_new_one)
{
    /* the learner forgets the worker's identity once 300 transitions are in: the next push
     * is refused as fenced, the worker leaves, joins again as a new identity and makes the
     * chunk's uncredited rest */
    run_params rp = {"Pendulum-v1", 200, 200, 2, 1, 1, NULL};
    rig g;
    rig_init(&g, &rp, "127.0.0.1:0", 600, 61);
    rig_append(&g, 0, 600);
    fake_learner *fl = &g.fl;
    fl->epoch = 7;
    fl->evict_at = 300;
    rig_start_rollout(&g);
    fl_wait_quota(fl, 600, 60000);
    pthread_mutex_lock(&fl->mu);
    cr_expect_eq(fl->transitions, (600 - 200) * 2, "every quota slot once, none lost");
    cr_expect_eq(fl->credited, (600 - 200) * 2);
    cr_expect_eq(fl->n_rows, fl->transitions);
    cr_expect_eq(fl->duplicates, 0);
    cr_expect_eq(fl->fenced, 1, "one push refused; its chunk's rest made under a new one");
    cr_expect_eq(fl->bad, 0);
    cr_assert_gt(fl->n_recs, 2);
    const char *first = fl->recs[0].source;
    int split = 0;
    while (split < fl->n_recs && !strcmp(fl->recs[split].source, first)) {
        split++;
    }
    cr_assert_lt(split, fl->n_recs, "a second identity pushed");
    uint64_t before = 0;
    for (int i = 0; i < fl->n_recs; i++) {
        const push_rec *p = &fl->recs[i];
        bool second = i >= split;
        cr_expect_eq(strncmp(p->source, "rollout-0@m", 11), 0, "%s", p->source);
        cr_expect_eq(p->seq, (uint64_t)(second ? i - split + 1 : i + 1),
                     "push %d: each identity numbers from 1", i);
        cr_expect_eq(p->source_epoch, second ? 13 : 7, "push %d: the identity's epoch", i);
        if (second) {
            cr_expect_str_neq(p->source, first);
            cr_expect_str_eq(p->source, fl->recs[split].source, "one more identity, not more");
        } else {
            before += p->count;
        }
    }
    cr_expect_geq(before, 300);
    cr_expect_str_eq(fl->forgotten, first);
    pthread_mutex_unlock(&fl->mu);
    cr_expect_eq(stat_value(g.ro.addr, "identities"), 2);
    cr_expect_eq(stat_value(g.ro.addr, "push_fenced"), 1);
    cr_expect_eq(stat_value(g.ro.addr, "source_epoch"), 13);
    cr_expect_eq(stat_value(g.ro.addr, "transitions"), (600 - 200) * 2);
    rig_free(&g);
}

Test(rollout, branches_stop_on_termination)
{
    /* InvertedPendulum: terminal once |angle| > 0.2; random actions topple it fast */
    run_params rp = {"InvertedPendulum-v4", 200, 200, 4, 5, 1, NULL};
    rig g;
    rig_start(&g, &rp, "127.0.0.1:0", 300, 5, 300);
    fake_learner *fl = &g.fl;

    env_t *e;
    cr_assert_eq(env_make(&e, rp.env), 0);
    const uint64_t branches = (300 - 200) * 4;
    pthread_mutex_lock(&fl->mu);
    uint64_t n = fl->n_rows, n_term = 0, wrong = 0, terminal_start = 0;
    for (uint64_t i = 0; i < n; i++) {
        bool done_next, done_obs;
        const float *o = fl->obs + i * 4, *nx = fl->next + i * 4;
        float a = 0;
        env_termination(e, o, &a, nx, &done_next, 1);
        env_termination(e, o, &a, o, &done_obs, 1);
        n_term += fl->term[i] != 0;
        wrong += (fl->term[i] != 0) != done_next;
        terminal_start += done_obs; /* a branch never steps on from a terminal state */
    }
    pthread_mutex_unlock(&fl->mu);
    cr_expect_eq(wrong, 0, "terminated is the env's termination of next_obs");
    cr_expect_eq(terminal_start, 0);
    cr_expect_gt(n_term, 0, "some branches terminated");
    cr_expect_leq(n_term, branches);
    cr_expect_geq(n, branches);
    cr_expect_lt(n, branches * 5, "terminated branches stop early");
    cr_expect_eq(stat_value(g.ro.addr, "branches"), branches);
    cr_expect_eq(stat_value(g.ro.addr, "terminated"), n_term);
    cr_expect_eq(stat_value(g.ro.addr, "transitions"), n);
    env_free(e);
    rig_free(&g);
}

Test(rollout, kill9_and_restart_resumes_under_a_new_source)
{
    run_params rp = {"Pendulum-v1", 200, 200, 2, 1, 1, NULL};
    rig g;
    rig_start(&g, &rp, "127.0.0.1:0", 600, 21, 400);
    fake_learner *fl = &g.fl;
    procfix_kill9(&g.ro);
    pthread_mutex_lock(&fl->mu);
    int first_recs = fl->n_recs;
    uint64_t first_transitions = fl->transitions;
    char first_source[96];
    snprintf(first_source, sizeof first_source, "%s", fl->recs[0].source);
    pthread_mutex_unlock(&fl->mu);
    cr_expect_eq(first_transitions, (400 - 200) * 2);

    rig_append(&g, 400, 600);
    start_worker(&g.ro, &rp, g.ms.addr, fl->addr, "ro", 0);
    fl_wait_quota(fl, 600, 60000);
    pthread_mutex_lock(&fl->mu);
    cr_expect_eq(fl->transitions, (600 - 200) * 2, "resumed at the acknowledged quota");
    cr_expect_eq(fl->credited, (600 - 200) * 2);
    cr_expect_eq(fl->duplicates, 0);
    cr_assert_gt(fl->n_recs, first_recs);
    const push_rec *p = &fl->recs[first_recs];
    cr_expect_str_neq(p->source, first_source, "a new membership is a new source");
    cr_expect_eq(strncmp(p->source, "rollout-0@m", 11), 0, "%s", p->source);
    cr_expect_eq(p->seq, 1);
    cr_expect_geq(p->chunk_begin, 400, "its chunks start where the quota stood");
    cr_expect_eq(fl_quota_done_locked(fl), 600);
    for (int i = first_recs; i < fl->n_recs; i++) {
        cr_expect_str_eq(fl->recs[i].source, p->source);
    }
    pthread_mutex_unlock(&fl->mu);
    rig_free(&g);
}

Test(rollout, async_generates_continuously_with_the_learners_policy)
{
    run_params rp = {"Pendulum-v1", 200, 200, 2, 2, 1, "async"};
    rig g;
    rig_init(&g, &rp, "127.0.0.1:0", 300, 31);
    rig_append(&g, 0, 300);

    /* a policy (hidden 32 as the run says), version 7 */
    sac_cfg sc = sac_default_cfg(3, 1);
    sc.hidden = 32;
    sac_t sac;
    cr_assert_eq(sac_init(&sac, &sc, 3), 0);
    nn_blob *blob = xcalloc(1, sizeof *blob);
    cr_assert_eq(policy_blob_build(blob, &sac, 7, rp.env), 0);
    fake_learner *fl = &g.fl;
    fl->policy = blob;
    rig_start_rollout(&g);

    /* no new real steps, yet the branches keep coming (the quota of 100 real steps x 2
     * would be 200 branches) with the policy's actions once it is loaded */
    int64_t deadline = procfix_now_ms() + 60000;
    uint64_t n = 0, tagged = 0;
    while (procfix_now_ms() < deadline) {
        pthread_mutex_lock(&fl->mu);
        n = fl->transitions;
        tagged = fl->policy_pushes;
        pthread_mutex_unlock(&fl->mu);
        if (n >= 4000 && tagged >= 5) {
            break;
        }
        procfix_pause_ms(20);
    }
    cr_expect_geq(n, 4000);
    cr_expect_geq(tagged, 5, "pushes carry policy_version 7");
    pthread_mutex_lock(&fl->mu);
    for (uint64_t i = 0; i < fl->n_rows; i++) {
        cr_expect(fl->act[i] >= -2.0f && fl->act[i] <= 2.0f, "action %g in env units", fl->act[i]);
        if (fl->act[i] < -2.0f || fl->act[i] > 2.0f) {
            break;
        }
    }
    for (int i = 0; i < fl->n_recs; i++) {
        cr_expect_eq(fl->recs[i].chunk_id, 0, "async: no chunks");
        cr_expect_eq(fl->recs[i].chunk_branches, 0);
    }
    pthread_mutex_unlock(&fl->mu);
    cr_expect_eq(stat_value(g.ro.addr, "policy_version"), 7);
    rig_free(&g);
    nn_blob_free(blob);
    free(blob);
    sac_free(&sac);
}

Test(rollout, two_workers_share_the_quota_by_chunks_exactly)
{
    /* R = 3, two identical workers (no index needed): together exactly 3 per step */
    run_params rp = {"Pendulum-v1", 200, 200, 3, 1, 2, NULL};
    rig g;
    rig_init(&g, &rp, "127.0.0.1:0", 500, 41);
    fake_learner *fl = &g.fl;
    procfix_t w1 = {0};
    rig_start_rollout(&g); /* worker 0 */
    start_worker(&w1, &rp, g.ms.addr, fl->addr, "w1", 0);
    /* both members before the real steps come, so both get chunks */
    int64_t deadline = procfix_now_ms() + 30000;
    for (;;) {
        pthread_mutex_lock(&fl->mu);
        size_t live = lease_live(&fl->members.leases, (uint64_t)procfix_now_ms());
        pthread_mutex_unlock(&fl->mu);
        if (live == 2) {
            break;
        }
        cr_assert_lt(procfix_now_ms(), deadline, "both workers join");
        procfix_pause_ms(20);
    }
    for (int s0 = 0; s0 < 500; s0 += 50) {
        rig_append(&g, s0, s0 + 50);
    }
    fl_wait_quota(fl, 500, 60000);
    double t0 = stat_value(g.ro.addr, "transitions"), t1 = stat_value(w1.addr, "transitions");
    cr_expect_eq(t0 + t1, (500 - 200) * 3);
    cr_expect_gt(t0, 0, "worker 0 took chunks");
    cr_expect_gt(t1, 0, "worker 1 took chunks");
    pthread_mutex_lock(&fl->mu);
    cr_expect_eq(fl->transitions, (500 - 200) * 3);
    cr_expect_eq(fl->credited, (500 - 200) * 3);
    cr_expect_eq(fl->members.leases.joins, 2, "two members");
    for (int i = 0; i < fl->n_recs; i++) {
        const char *src = fl->recs[i].source;
        cr_expect(!strncmp(src, "rollout-0@m", 11), "%s", src);
    }
    pthread_mutex_unlock(&fl->mu);
    procfix_stop(&w1);
    pthread_mutex_lock(&fl->mu);
    cr_expect_eq(fl->members.leases.leaves, 1, "a clean stop leaves");
    pthread_mutex_unlock(&fl->mu);
    rig_free(&g);
}

Test(rollout, a_worker_paused_past_its_ttl_is_fenced_and_rejoins)
{
    /* SIGSTOP for longer than the lease: the learner gives its chunk to nobody else here,
     * but its lease is gone; after SIGCONT its next call is refused and it joins again */
    run_params rp = {"Pendulum-v1", 200, 200, 2, 1, 1, NULL};
    rig g;
    rig_start(&g, &rp, "127.0.0.1:0", 600, 71, 400);
    fake_learner *fl = &g.fl;
    cr_assert_eq(kill(g.ro.pid, SIGSTOP), 0);
    /* until its lease is dead on the learner's clock (the ttl, 3 s, after its last renewal) */
    int64_t deadline = procfix_now_ms() + 20000;
    for (;;) {
        pthread_mutex_lock(&fl->mu);
        size_t live = lease_live(&fl->members.leases, (uint64_t)procfix_now_ms());
        pthread_mutex_unlock(&fl->mu);
        if (live == 0) {
            break;
        }
        cr_assert_lt(procfix_now_ms(), deadline, "the paused worker's lease never expired");
        procfix_pause_ms(50);
    }
    rig_append(&g, 400, 600);
    cr_assert_eq(kill(g.ro.pid, SIGCONT), 0);
    fl_wait_quota(fl, 600, 60000);
    procfix_wait_stat(g.ro.addr, "rollout", "lease_lost", 1, 20000);
    pthread_mutex_lock(&fl->mu);
    cr_expect_eq(fl->credited, (600 - 200) * 2, "exact across the pause");
    cr_expect_eq(fl->transitions, (600 - 200) * 2);
    cr_expect_eq(fl->members.leases.expiries, 1);
    cr_expect_eq(fl->members.leases.joins, 2, "a new membership after the pause");
    pthread_mutex_unlock(&fl->mu);
    cr_expect_eq(stat_value(g.ro.addr, "identities"), 2);
    rig_free(&g);
}

Test(rollout, a_worker_of_another_run_is_refused_at_join_and_exits_1)
{
    run_params rp = {"Pendulum-v1", 200, 200, 2, 1, 1, NULL};
    rig g;
    rig_init(&g, &rp, "127.0.0.1:0", 300, 81);
    fl_start(&g.fl, "127.0.0.1:0");
    char s_ms[128], s_ln[128], log[700];
    snprintf(s_ms, sizeof s_ms, "modelserver_addr=%s", g.ms.addr);
    snprintf(s_ln, sizeof s_ln, "learner_addr=%s", g.fl.addr);
    snprintf(log, sizeof log, "%s/other-run.log", tmp);
    const char *argv[] = {RO_BIN, "--set", s_ms, "--set", s_ln, "--set", "run_id=other-run",
                          "--set", "rollouts_per_step=2", "--listen", "127.0.0.1:0", NULL};
    int code = procfix_exit_code(procfix_spawn(argv, log), 30000);
    cr_expect_eq(code, 1, "exit code %d", code);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "grep -q \"event=join_refused.*run_id is 'other-run', this "
                              "server's run is ''\" '%s'", log);
    cr_expect_eq(system(cmd), 0, "the log says why (%s)", log);
    pthread_mutex_lock(&g.fl.mu);
    cr_expect_eq(g.fl.members.refused, 1);
    cr_expect_eq(g.fl.members.leases.joins, 0);
    pthread_mutex_unlock(&g.fl.mu);
    rig_free(&g);
}

Test(rollout, missing_peers_are_a_wait_and_sigterm_exits_0)
{
    run_params rp = {"Pendulum-v1", 200, 200, 2, 1, 1, NULL};
    char ms_addr[64], ln_addr[64];
    snprintf(ms_addr, sizeof ms_addr, "127.0.0.1:%d", procfix_free_port());
    snprintf(ln_addr, sizeof ln_addr, "127.0.0.1:%d", procfix_free_port());
    procfix_t ro = {0};
    start_worker(&ro, &rp, ms_addr, ln_addr, "ro", 0);
    /* nobody to talk to: it serves health and Stats, live but not ready, and waits */
    cr_expect_eq(stat_value(ro.addr, "real_mirrored"), 0);
    cr_expect_eq(rpc_health_check(ro.addr, RPC_HEALTH_LIVENESS, 2000), RPC_HEALTH_SERVING);
    cr_expect_eq(rpc_health_check(ro.addr, "", 2000), RPC_HEALTH_NOT_SERVING);
    cr_expect_eq(stat_value(ro.addr, "ready"), 0);
    cr_expect(procfix_runs_for(ro.pid, 300));
    int64_t t0 = procfix_now_ms();
    procfix_stop(&ro);
    cr_expect_lt(procfix_now_ms() - t0, 5000, "SIGTERM is served within about wait_ms");
}

Test(rollout, bad_options_exit_2_naming_them)
{
    static const struct {
        const char *argv[6];
        const char *what;
        const char *says; /* in the output, or NULL */
    } bad[] = {
        {{RO_BIN, "--chunk", "0", NULL}, "chunk 0", NULL},
        {{RO_BIN, "--bogus", "1", NULL}, "unknown flag", NULL},
        {{RO_BIN, "--set", "learner_addr=nonsense", NULL}, "malformed learner_addr",
         "learner_addr: address 'nonsense' is not HOST:PORT"},
        {{RO_BIN, "--set", "modelserver_addr=127.0.0.1:0", NULL}, "modelserver_addr port 0",
         "modelserver_addr '127.0.0.1:0'"},
        {{RO_BIN, "--set", "rollout.id=worker 0", NULL}, "an id with a space", "rollout.id"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char log[700];
        snprintf(log, sizeof log, "%s/bad-%zu.log", tmp, i);
        int code = procfix_exit_code(procfix_spawn(bad[i].argv, log), 20000);
        cr_expect_eq(code, 2, "%s: exit code %d", bad[i].what, code);
        if (bad[i].says) {
            char cmd[1024];
            snprintf(cmd, sizeof cmd, "grep -qF \"%s\" '%s'", bad[i].says, log);
            cr_expect_eq(system(cmd), 0, "%s: the output names it (%s)", bad[i].what, log);
        }
    }
}

Test(rollout, modelserver_kill9_and_restart_the_worker_reconnects)
{
    run_params rp = {"Pendulum-v1", 200, 200, 2, 1, 1, NULL};
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", procfix_free_port());
    rig g;
    rig_start(&g, &rp, listen, 600, 51, 400);
    fake_learner *fl = &g.fl;

    /* the model server dies and comes back on its data dir and port */
    procfix_kill9(&g.ms);
    start_modelserver_on(&g.ms, &rp, listen);
    rig_append(&g, 400, 600);
    fl_wait_quota(fl, 600, 60000);
    pthread_mutex_lock(&fl->mu);
    cr_expect_eq(fl->transitions, (600 - 200) * 2, "every quota slot once, across the restart");
    cr_expect_eq(fl->bad, 0);
    pthread_mutex_unlock(&fl->mu);
    cr_expect_eq(stat_value(g.ro.addr, "real_mirrored"), 600);
    /* the quota past 400 needs the model trained at 400, whatever version the restarted model
     * server gave it (a kill before the first blob was persisted starts the versions anew) */
    cr_expect_geq(stat_value(g.ro.addr, "model_trained_on"), 400,
                  "the model trained at 400 and on");
    rig_free(&g);
}
