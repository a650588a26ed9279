/* proc.h - the learner process tests' helpers: start the real twig-modelserver and
 * twig-learner binaries on 127.0.0.1:0 (port files, tests/procfix.h), append real data, push
 * synthetic batches, read Progress and Stats. Header-only. */
#ifndef TWIG_TESTS_LEARNER_PROC_H
#define TWIG_TESTS_LEARNER_PROC_H

#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/base/err.h"
#include "common/base/mem.h"
#include "common/base/rng.h"
#include "common/rpc/member.h"
#include "common/rpc/rpc.h"
#include "proto/twig.pb-c.h"
#include "tests/procfix.h"

#define MS_BIN TWIG_BIN_DIR "/modelserver/twig-modelserver"
#define LEARNER_BIN TWIG_BIN_DIR "/learner/twig-learner"
#define ENV "Pendulum-v1"
#define O 3
#define A 1

static char tmp[PROCFIX_DIR_LEN];

static void proc_setup(void)
{
    procfix_tmpdir(tmp, sizeof tmp);
    rpc_lib_init();
}

static void proc_teardown(void)
{
    procfix_reap_all();
    rpc_lib_shutdown(2000);
    procfix_tmpdir_done(tmp); /* TWIG_TEST_KEEP keeps the logs for a look */
}

/* p's port file and log file: tmp/<name>.port, tmp/<name>.log */
static void proc_name_files(procfix_t *p, const char *name)
{
    snprintf(p->port_file, sizeof p->port_file, "%s/%s.port", tmp, name);
    snprintf(p->log_file, sizeof p->log_file, "%s/%s.log", tmp, name);
    unlink(p->port_file);
}

/* a model server on data dir tmp/<name>, listening on listen ("127.0.0.1:0": any port) */
static void start_modelserver_at(procfix_t *p, const char *name, const char *listen)
{
    char data_dir[512];
    snprintf(data_dir, sizeof data_dir, "%s/%s", tmp, name);
    proc_name_files(p, name);
    const char *argv[] = {MS_BIN,        "--listen",    listen,     "--data-dir", data_dir,
                          "--port-file", p->port_file,  "--env",    ENV,          "--fsync",
                          "none",        "--log-level", "warn",     NULL};
    p->pid = procfix_spawn(argv, p->log_file);
    procfix_wait_serving(p, 30000);
}

static inline void start_modelserver(procfix_t *p, const char *name)
{
    start_modelserver_at(p, name, "127.0.0.1:0");
}

/* spawn the learner with small nets; sets: extra "--set" assignments (NULL-terminated).
 * Its checkpoints go to tmp/<name>.ckpt, so a restart with the same name resumes. */
static void spawn_learner(procfix_t *p, const char *name, const char *ms_addr,
                          const char *const *sets)
{
    static char buf[16][600];
    int nb = 0;
    proc_name_files(p, name);
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
    p->pid = procfix_spawn(argv, p->log_file);
}

/* spawn_learner, once it is live (ready only once it has reached its model server) */
static void start_learner(procfix_t *p, const char *name, const char *ms_addr,
                          const char *const *sets)
{
    spawn_learner(p, name, ms_addr, sets);
    procfix_wait_live(p, 30000);
}

static rpc_client_t *client_of(const procfix_t *p)
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

/* ---- membership: a test's push sources are members named after them ---- */

/* Join as identity on role with run_id and version; the rc, the reply in *out (may be
 * NULL) */
static int join_raw(rpc_client_t *cl, const char *run_id, uint32_t version, const char *role,
                    const char *identity, Twig__V1__JoinReply **out)
{
    Twig__V1__JoinRequest q = TWIG__V1__JOIN_REQUEST__INIT;
    q.run_id = (char *)run_id;
    q.protocol_version = version;
    q.role = (char *)role;
    q.identity = (char *)identity;
    ProtobufCMessage *reply = NULL;
    int rc = rpc_client_unary(cl, &reply, "/twig.v1.Membership/Join", &q.base,
                              &twig__v1__join_reply__descriptor, &call_opts);
    if (out) {
        *out = (Twig__V1__JoinReply *)reply;
    } else if (reply) {
        protobuf_c_message_free_unpacked(reply, NULL);
    }
    return rc;
}

typedef struct test_member {
    char name[64];
    uint64_t id;
    char source[MEMBER_SOURCE_MAX + 1];
} test_member;

/* the members this test process joined, by name (one test per process: Criterion forks) */
static test_member test_members[4200];
static int n_test_members;

/* the member named name, joined on first use (asserted) */
static const test_member *member_of(rpc_client_t *cl, const char *name)
{
    for (int i = 0; i < n_test_members; i++) {
        if (!strcmp(test_members[i].name, name)) {
            return &test_members[i];
        }
    }
    cr_assert_lt(n_test_members, (int)(sizeof test_members / sizeof test_members[0]));
    Twig__V1__JoinReply *j = NULL;
    int rc = join_raw(cl, "", MSG_PROTOCOL_VERSION, MEMBER_ROLE_ROLLOUT, name, &j);
    cr_assert_eq(rc, 0, "Join as %s: %s", name, err_msg());
    test_member *m = &test_members[n_test_members++];
    snprintf(m->name, sizeof m->name, "%s", name);
    m->id = j->member_id;
    snprintf(m->source, sizeof m->source, "%s", j->source_id);
    protobuf_c_message_free_unpacked(&j->base, NULL);
    return m;
}

/* Membership/Leave of the member named name (joined before); the rc */
static inline int member_leave_name(rpc_client_t *cl, const char *name)
{
    Twig__V1__MemberRequest q = TWIG__V1__MEMBER_REQUEST__INIT;
    q.member_id = member_of(cl, name)->id;
    ProtobufCMessage *reply = NULL;
    int rc = rpc_client_unary(cl, &reply, "/twig.v1.Membership/Leave", &q.base,
                              &twig__v1__leave_reply__descriptor, &call_opts);
    if (reply) {
        protobuf_c_message_free_unpacked(reply, NULL);
    }
    return rc;
}

/* push a synthetic batch; returns the rc, reply in *out (may be NULL). A batch whose
 * source_id is still its own name pushes as the member of that name (member_id and the
 * member's source_id filled in) */
static int push_synth(rpc_client_t *cl, tb *b, Twig__V1__PushReply **out)
{
    if (b->m.source_id == b->source) {
        const test_member *tm = member_of(cl, b->source);
        b->m.member_id = tm->id;
        b->m.source_id = (char *)tm->source;
    }
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

/* a valid synthetic push of count transitions from the member named source, crediting
 * branches to its chunk chunk_id (0, 0: no quota in the run) */
static inline void push_chunk(rpc_client_t *cl, const char *source, uint64_t seq, uint32_t count,
                       uint64_t chunk_id, uint64_t branches)
{
    tb b;
    tb_make(&b, source, seq, count, 2);
    b.m.model_version = 1;
    b.m.policy_version = 1;
    b.m.chunk_id = chunk_id;
    b.m.chunk_branches = branches;
    Twig__V1__PushReply *r = NULL;
    int rc = push_synth(cl, &b, &r);
    cr_assert_eq(rc, 0, "PushSynthetic: %s", err_msg());
    cr_assert_eq(r->accepted, count);
    cr_assert_not(r->duplicate);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    tb_free(&b);
}

/* a valid synthetic push of count transitions, no quota */
static void push_ok(rpc_client_t *cl, const char *source, uint64_t seq, uint32_t count)
{
    push_chunk(cl, source, seq, count, 0, 0);
}

/* TakeChunk for the member named name with have_real mirrored steps; the reply (owned) */
static inline Twig__V1__ChunkReply *take_chunk(rpc_client_t *cl, const char *name, uint64_t have_real,
                                        uint32_t max_steps)
{
    Twig__V1__ChunkRequest q = TWIG__V1__CHUNK_REQUEST__INIT;
    q.member_id = member_of(cl, name)->id;
    q.have_real = have_real;
    q.max_steps = max_steps;
    ProtobufCMessage *reply = NULL;
    int rc = rpc_client_unary(cl, &reply, "/twig.v1.Learner/TakeChunk", &q.base,
                              &twig__v1__chunk_reply__descriptor, &call_opts);
    cr_assert_eq(rc, 0, "TakeChunk: %s", err_msg());
    return (Twig__V1__ChunkReply *)reply;
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

/* one value of the learner's Stats; poll until key reaches want within ms */
static inline double stat_of(const procfix_t *lr, const char *key)
{
    return procfix_stat(lr->addr, "learner", key);
}

static inline double wait_stat(const procfix_t *lr, const char *key, double want, int ms)
{
    return procfix_wait_stat(lr->addr, "learner", key, want, ms);
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

/* poll Progress until the learner has at least real steps and updates, within ms (what
 * names the goal in the failure); the Progress that got there (owned) */
static Twig__V1__Progress *wait_reached(rpc_client_t *cl, uint64_t real, uint64_t updates, int ms,
                                        const char *what)
{
    int64_t deadline = procfix_now_ms() + ms;
    for (;;) {
        Twig__V1__Progress *p = progress_of(cl);
        if (p->real_steps >= real && p->updates >= updates) {
            return p;
        }
        if (procfix_now_ms() > deadline) {
            cr_assert_fail("%s not reached within %d ms: updates=%" PRIu64 " real_steps=%" PRIu64
                           " synthetic=%" PRIu64 " quota_done=%" PRIu64,
                           what, ms, p->updates, p->real_steps, p->synthetic_samples,
                           p->rollout_quota_done);
        }
        protobuf_c_message_free_unpacked(&p->base, NULL);
        procfix_pause_ms(20);
    }
}

#endif
