/* tests of common/rpc: an in-process server on 127.0.0.1:0 with test handlers for twig.v1
 * messages, and the client against it. Nothing sleeps to wait for a server: tests poll health
 * or wait on condition variables, always with a deadline. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/base/err.h"
#include "common/base/mem.h"
#include "common/rpc/rpc.h"
#include "proto/twig.pb-c.h"
#include "tests/procfix.h"

#define P_ECHO "/twig.v1.Test/Echo"
#define P_STATUS "/twig.v1.ModelServer/LogStatus"
#define P_PARK "/twig.v1.Test/Park"
#define P_FLAKY "/twig.v1.Test/Flaky"
#define P_SUM "/twig.v1.Test/Sum"
#define P_LOOP_ECHO "/twig.v1.Test/LoopEcho"
#define MAX_PARKED 16

/* ---- the test application behind the handlers ---- */

typedef struct test_app {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    rpc_call_t *parked[MAX_PARKED];  /* calls the "application" holds */
    int n_parked;
    int flaky_fails_left;            /* Flaky answers UNAVAILABLE this many times */
    int flaky_calls;
    int streams_done;
    int64_t park_remaining_ms;       /* rpc_call_remaining_ms of the last parked call */
} test_app;

typedef struct sum_state {
    uint64_t messages;
    uint64_t transitions;
} sum_state;

static void app_init(test_app *a)
{
    memset(a, 0, sizeof *a);
    pthread_mutex_init(&a->lock, NULL);
    pthread_cond_init(&a->cond, NULL);
}

static void app_free(test_app *a)
{
    pthread_cond_destroy(&a->cond);
    pthread_mutex_destroy(&a->lock);
}

/* wait (bounded) until n calls are parked */
static bool app_wait_parked(test_app *a, int n, int timeout_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&a->lock);
    int rc = 0;
    while (a->n_parked < n && rc == 0) {
        rc = pthread_cond_timedwait(&a->cond, &a->lock, &until);
    }
    bool ok = a->n_parked >= n;
    pthread_mutex_unlock(&a->lock);
    return ok;
}

/* reply OK to every parked call (end_offset = its index) */
static int app_release_parked(test_app *a)
{
    pthread_mutex_lock(&a->lock);
    int n = a->n_parked;
    for (int i = 0; i < n; i++) {
        Twig__V1__LogStatusReply r = TWIG__V1__LOG_STATUS_REPLY__INIT;
        r.end_offset = (uint64_t)i;
        rpc_call_reply(a->parked[i], 0, &r.base);
    }
    a->n_parked = 0;
    pthread_mutex_unlock(&a->lock);
    return n;
}

/* the batch is consistent: arrays as long as count and dims say */
static int check_batch(const Twig__V1__TransitionBatch *b)
{
    if (b->n_obs != (size_t)b->count * b->obs_dim) {
        return err_set(-EINVAL, "obs has %zu values, count*obs_dim is %u", b->n_obs,
                       b->count * b->obs_dim);
    }
    if (b->n_reward != b->count) {
        return err_set(-EINVAL, "reward has %zu values, count is %u", b->n_reward, b->count);
    }
    return 0;
}

static int on_echo(rpc_call_t *call, const ProtobufCMessage *msg, void *app)
{
    int rc = check_batch((const Twig__V1__TransitionBatch *)msg);
    if (rc < 0) {
        return rc;
    }
    rpc_call_reply(call, 0, msg);
    return 0;
}

static int on_status(rpc_call_t *call, const ProtobufCMessage *msg, void *app)
{
    Twig__V1__LogStatusReply r = TWIG__V1__LOG_STATUS_REPLY__INIT;
    r.end_offset = 42;
    r.env_id = "Test-v0";
    r.obs_dim = 3;
    rpc_call_reply(call, 0, &r.base);
    return 0;
}

static int on_park(rpc_call_t *call, const ProtobufCMessage *msg, void *app)
{
    test_app *a = app;
    pthread_mutex_lock(&a->lock);
    if (a->n_parked == MAX_PARKED) {
        pthread_mutex_unlock(&a->lock);
        return err_set(TWIG_EFULL, "no room to park");
    }
    a->parked[a->n_parked++] = call;
    a->park_remaining_ms = rpc_call_remaining_ms(call);
    pthread_cond_broadcast(&a->cond);
    pthread_mutex_unlock(&a->lock);
    return RPC_DEFER;
}

static int on_flaky(rpc_call_t *call, const ProtobufCMessage *msg, void *app)
{
    test_app *a = app;
    pthread_mutex_lock(&a->lock);
    a->flaky_calls++;
    bool fail = a->flaky_fails_left > 0;
    if (fail) {
        a->flaky_fails_left--;
    }
    pthread_mutex_unlock(&a->lock);
    if (fail) {
        return err_set(TWIG_EUNAVAIL, "warming up, try again");
    }
    return on_status(call, msg, app);
}

/* client stream of batches: each must carry seq == its position; the reply counts them */
static int on_sum(rpc_call_t *call, const ProtobufCMessage *msg, void *app)
{
    test_app *a = app;
    sum_state *st = rpc_call_data(call);
    if (!st) {
        st = xcalloc(1, sizeof *st);
        rpc_call_set_data(call, st);
        rpc_call_set_data_free(call, free);  /* freed with the call, however it ends */
    }
    if (msg) {
        const Twig__V1__TransitionBatch *b = (const Twig__V1__TransitionBatch *)msg;
        if (b->seq != st->messages || b->seq + 1 != rpc_call_msg_count(call)) {
            err_set(-EINVAL, "batch seq %llu arrived as message %llu",
                    (unsigned long long)b->seq, (unsigned long long)st->messages);
            return -EINVAL;
        }
        if (b->count == 0) {
            return err_set(-EINVAL, "message #%llu: count is 0", (unsigned long long)b->seq);
        }
        st->messages++;
        st->transitions += b->count;
        return 0;
    }
    Twig__V1__AppendRealReply r = TWIG__V1__APPEND_REAL_REPLY__INIT;
    r.first_offset = st->messages;
    r.count = (uint32_t)st->transitions;
    pthread_mutex_lock(&a->lock);
    a->streams_done++;
    pthread_mutex_unlock(&a->lock);
    rpc_call_reply(call, 0, &r.base);
    return 0;
}

static const rpc_method test_methods[] = {
    {P_ECHO, &twig__v1__transition_batch__descriptor, on_echo, RPC_KIND_UNARY, RPC_RUN_ON_CQ},
    {P_STATUS, &twig__v1__log_status_request__descriptor, on_status, RPC_KIND_UNARY,
     RPC_RUN_ON_CQ},
    {P_PARK, &twig__v1__log_status_request__descriptor, on_park, RPC_KIND_UNARY, RPC_RUN_ON_CQ},
    {P_FLAKY, &twig__v1__log_status_request__descriptor, on_flaky, RPC_KIND_UNARY,
     RPC_RUN_ON_CQ},
    {P_SUM, &twig__v1__transition_batch__descriptor, on_sum, RPC_KIND_CLIENT_STREAM,
     RPC_RUN_ON_CQ},
};
#define N_TEST_METHODS (sizeof test_methods / sizeof test_methods[0])

/* ---- fixtures ---- */

typedef struct fixture {
    test_app app;
    rpc_server_t *srv;
    rpc_client_t *cl;
    char addr[64];
} fixture;

static void fixture_start_with(fixture *f, size_t max_msg_bytes, int max_calls)
{
    app_init(&f->app);
    rpc_server_cfg cfg = {.listen = "127.0.0.1:0", .max_msg_bytes = max_msg_bytes,
                          .max_calls = max_calls, .app = &f->app};
    int rc = rpc_server_init(&f->srv, &cfg, test_methods, N_TEST_METHODS);
    cr_assert_eq(rc, 0, "server init: %s", err_msg());
    cr_assert_gt(rpc_server_port(f->srv), 0);
    cr_assert_eq(rpc_server_start(f->srv), 0);
    snprintf(f->addr, sizeof f->addr, "127.0.0.1:%d", rpc_server_port(f->srv));
    cr_assert_eq(rpc_wait_serving(f->addr, 10000), 0, "%s", err_msg());
    cr_assert_eq(rpc_client_init(&f->cl, f->addr, NULL), 0);
}

static void fixture_start(fixture *f, size_t max_msg_bytes)
{
    fixture_start_with(f, max_msg_bytes, 0);
}

static void fixture_stop(fixture *f)
{
    rpc_client_free(f->cl);
    rpc_server_free(f->srv);
    app_free(&f->app);
}

static void suite_init(void)
{
    rpc_lib_init();
}

static void suite_fini(void)
{
    rpc_lib_shutdown(3000);
}

TestSuite(rpc, .init = suite_init, .fini = suite_fini, .timeout = 60);

static int status_call(rpc_client_t *cl, const char *path, const rpc_call_opts *o,
                       uint64_t *end_offset)
{
    Twig__V1__LogStatusRequest q = TWIG__V1__LOG_STATUS_REQUEST__INIT;
    ProtobufCMessage *r = NULL;
    int rc = rpc_client_unary(cl, &r, path, &q.base, &twig__v1__log_status_reply__descriptor, o);
    if (rc == 0) {
        cr_assert_not_null(r);
        if (end_offset) {
            *end_offset = ((Twig__V1__LogStatusReply *)r)->end_offset;
        }
        protobuf_c_message_free_unpacked(r, NULL);
    } else {
        cr_assert_null(r);
    }
    return rc;
}

/* the last error's text must contain text */
#define EXPECT_ERR_HAS(text)                                                                       \
    cr_expect(strstr(err_msg(), (text)) != NULL, "'%s' does not say '%s'", err_msg(), (text))

/* a batch of count rows pointing into obs (count * obs_dim values) and reward (count values,
 * or NULL for none); no other field set */
static Twig__V1__TransitionBatch batch_of(float *obs, uint32_t obs_dim, uint32_t count,
                                          float *reward)
{
    Twig__V1__TransitionBatch b = TWIG__V1__TRANSITION_BATCH__INIT;
    b.obs_dim = obs_dim;
    b.count = count;
    b.n_obs = (size_t)count * obs_dim;
    b.obs = obs;
    b.n_reward = reward ? count : 0;
    b.reward = reward;
    return b;
}

/* Echo b: the rc, the echoed batch in *r */
static int echo_call(rpc_client_t *cl, ProtobufCMessage **r, Twig__V1__TransitionBatch *b,
                     const rpc_call_opts *o)
{
    return rpc_client_unary(cl, r, P_ECHO, &b->base, &twig__v1__transition_batch__descriptor, o);
}

/* ---- tests ---- */

Test(rpc, status_codes_translate_both_ways)
{
    int codes[] = {0, -EINVAL, TWIG_EFULL, TWIG_EDEADLINE, TWIG_ENOTFOUND, TWIG_EUNAVAIL,
                   TWIG_ECANCELLED, TWIG_EUNIMPL, TWIG_ECORRUPT, TWIG_EVERSION, -EEXIST,
                   -EPERM, -ERANGE};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        cr_expect_eq(rpc_status_to_err(rpc_err_to_status(codes[i])), codes[i], "%s",
                     err_name(codes[i]));
    }
    cr_expect_eq(rpc_err_to_status(TWIG_EINVAL_ARG), 3);
    cr_expect_eq(rpc_err_to_status(TWIG_EFULL), 8);
    cr_expect_eq(rpc_err_to_status(TWIG_EDEADLINE), 4);
    cr_expect_eq(rpc_err_to_status(TWIG_ENOTFOUND), 5);
    cr_expect_eq(rpc_err_to_status(TWIG_EUNAVAIL), 14);
    cr_expect_eq(rpc_err_to_status(-12345), 13);  /* unknown -> INTERNAL */
    cr_expect_str_eq(rpc_status_name(3), "INVALID_ARGUMENT");
    cr_expect_str_eq(rpc_status_name(99), "UNKNOWN_STATUS");
}

Test(rpc, round_trip_is_bit_exact)
{
    fixture f;
    fixture_start(&f, 0);
    enum { COUNT = 5, OBS = 3, ACT = 2 };
    float obs[COUNT * OBS], next_obs[COUNT * OBS], act[COUNT * ACT], reward[COUNT];
    protobuf_c_boolean term[COUNT], trunc[COUNT];
    for (int i = 0; i < COUNT * OBS; i++) {
        obs[i] = (float)i * 0.37f - 1.0f;
        next_obs[i] = -obs[i] / 3.0f;
    }
    for (int i = 0; i < COUNT * ACT; i++) {
        act[i] = 1e-7f * (float)(i + 1);
    }
    for (int i = 0; i < COUNT; i++) {
        reward[i] = (float)i / 7.0f;
        term[i] = i == 4;
        trunc[i] = i == 2;
    }
    Twig__V1__TransitionBatch b = TWIG__V1__TRANSITION_BATCH__INIT;
    b.env_id = "Pendulum-v1";
    b.obs_dim = OBS;
    b.act_dim = ACT;
    b.count = COUNT;
    b.n_obs = COUNT * OBS;
    b.obs = obs;
    b.n_next_obs = COUNT * OBS;
    b.next_obs = next_obs;
    b.n_act = COUNT * ACT;
    b.act = act;
    b.n_reward = COUNT;
    b.reward = reward;
    b.n_terminated = COUNT;
    b.terminated = term;
    b.n_truncated = COUNT;
    b.truncated = trunc;
    b.source_id = "actor-3";
    b.seq = 123456789012345ull;

    ProtobufCMessage *r = NULL;
    rpc_call_opts o = {.deadline_ms = 5000};
    cr_assert_eq(echo_call(f.cl, &r, &b, &o), 0, "%s", err_msg());
    Twig__V1__TransitionBatch *e = (Twig__V1__TransitionBatch *)r;
    cr_expect_str_eq(e->env_id, "Pendulum-v1");
    cr_expect_str_eq(e->source_id, "actor-3");
    cr_expect_eq(e->seq, 123456789012345ull);
    cr_expect_eq(e->count, COUNT);
    cr_assert_eq(e->n_obs, (size_t)COUNT * OBS);
    cr_assert_eq(e->n_act, (size_t)COUNT * ACT);
    cr_assert_eq(e->n_reward, (size_t)COUNT);
    cr_assert_eq(e->n_terminated, (size_t)COUNT);
    cr_expect_eq(memcmp(e->obs, obs, sizeof obs), 0);
    cr_expect_eq(memcmp(e->next_obs, next_obs, sizeof next_obs), 0);
    cr_expect_eq(memcmp(e->act, act, sizeof act), 0);
    cr_expect_eq(memcmp(e->reward, reward, sizeof reward), 0);
    for (int i = 0; i < COUNT; i++) {
        cr_expect_eq(!!e->terminated[i], !!term[i]);
        cr_expect_eq(!!e->truncated[i], !!trunc[i]);
    }
    protobuf_c_message_free_unpacked(r, NULL);

    uint64_t end = 0;
    cr_expect_eq(status_call(f.cl, P_STATUS, &o, &end), 0, "%s", err_msg());
    cr_expect_eq(end, 42u);
    fixture_stop(&f);
}

typedef struct echo_thread {
    rpc_client_t *cl;
    int id;
    int ok;  /* calls that came back intact */
} echo_thread;

static void *echo_main(void *arg)
{
    echo_thread *t = arg;
    float obs[3], reward[1];
    Twig__V1__TransitionBatch b = batch_of(obs, 3, 1, reward);
    rpc_call_opts o = {.deadline_ms = 10000};
    for (int i = 0; i < 200; i++) {
        obs[0] = (float)t->id;
        obs[1] = (float)i;
        obs[2] = -1.0f;
        reward[0] = (float)(t->id * 1000 + i);
        b.seq = (uint64_t)(t->id * 1000 + i);
        ProtobufCMessage *r = NULL;
        if (echo_call(t->cl, &r, &b, &o) == 0) {
            const Twig__V1__TransitionBatch *e = (const Twig__V1__TransitionBatch *)r;
            t->ok += e->seq == b.seq && e->n_obs == 3 && memcmp(e->obs, obs, sizeof obs) == 0 &&
                     e->reward[0] == reward[0];
            protobuf_c_message_free_unpacked(r, NULL);
        }
    }
    return NULL;
}

Test(rpc, one_client_shared_by_threads_gets_every_reply_right)
{
    fixture f;
    fixture_start(&f, 0);
    enum { T = 4 };
    echo_thread et[T];
    pthread_t th[T];
    for (int i = 0; i < T; i++) {
        et[i] = (echo_thread){.cl = f.cl, .id = i};
        cr_assert_eq(pthread_create(&th[i], NULL, echo_main, &et[i]), 0);
    }
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        cr_expect_eq(et[i].ok, 200, "thread %d", i);
    }
    fixture_stop(&f);
}

Test(rpc, ten_mib_messages_pass_both_ways_under_the_default_limit)
{
    fixture f;
    fixture_start(&f, 0);
    uint32_t count = (10u << 20) / (4 * sizeof(float));  /* obs alone is 10 MiB */
    float *obs = xmalloc((size_t)count * 4 * sizeof *obs);
    float *reward = xmalloc(count * sizeof *reward);
    for (size_t i = 0; i < (size_t)count * 4; i++) {
        obs[i] = (float)i * 0.5f;
    }
    for (uint32_t i = 0; i < count; i++) {
        reward[i] = -(float)i;
    }
    Twig__V1__TransitionBatch b = batch_of(obs, 4, count, reward);
    ProtobufCMessage *r = NULL;
    rpc_call_opts o = {.deadline_ms = 30000};
    cr_assert_eq(echo_call(f.cl, &r, &b, &o), 0, "%s", err_msg());
    Twig__V1__TransitionBatch *e = (Twig__V1__TransitionBatch *)r;
    cr_assert_eq(e->n_obs, (size_t)count * 4);
    cr_assert_eq(e->n_reward, (size_t)count);
    cr_expect_eq(memcmp(e->obs, obs, e->n_obs * sizeof *obs), 0);
    cr_expect_eq(memcmp(e->reward, reward, e->n_reward * sizeof *reward), 0);
    protobuf_c_message_free_unpacked(r, NULL);
    free(obs);
    free(reward);
    fixture_stop(&f);
}

Test(rpc, malformed_and_invalid_requests_get_invalid_argument_and_server_keeps_serving)
{
    fixture f;
    fixture_start(&f, 0);
    rpc_call_opts o = {.deadline_ms = 5000};
    /* field 1 (env_id) claims 16 bytes, 2 follow */
    const uint8_t garbage[] = {0x0a, 0x10, 'a', 'b'};
    uint8_t *out = NULL;
    size_t n_out = 0;
    int rc = rpc_client_unary_bytes(f.cl, &out, &n_out, P_ECHO, garbage, sizeof garbage, &o);
    cr_expect_eq(rc, -EINVAL, "%s", err_name(rc));
    cr_expect_null(out);
    EXPECT_ERR_HAS("INVALID_ARGUMENT");
    EXPECT_ERR_HAS(P_ECHO);
    EXPECT_ERR_HAS("twig.v1.TransitionBatch");

    /* parses, but the handler's validation rejects it: its text reaches the client */
    float obs[4] = {1, 2, 3, 4};
    Twig__V1__TransitionBatch b = batch_of(obs, 2, 2, NULL);
    ProtobufCMessage *r = NULL;
    rc = echo_call(f.cl, &r, &b, &o);
    cr_expect_eq(rc, -EINVAL);
    cr_expect_null(r);
    EXPECT_ERR_HAS("reward has 0 values, count is 2");

    /* the next good call works */
    uint64_t end = 0;
    cr_expect_eq(status_call(f.cl, P_STATUS, &o, &end), 0, "%s", err_msg());
    cr_expect_eq(end, 42u);
    fixture_stop(&f);
}

Test(rpc, message_over_max_size_is_resource_exhausted)
{
    fixture f;
    fixture_start(&f, 1u << 20);  /* the server takes at most 1 MiB */
    size_t n = (2u << 20) / sizeof(float);
    float *obs = xcalloc(n, sizeof *obs);
    Twig__V1__TransitionBatch b = batch_of(obs, 1, (uint32_t)n, NULL);
    ProtobufCMessage *r = NULL;
    rpc_call_opts o = {.deadline_ms = 10000};
    int rc = echo_call(f.cl, &r, &b, &o);
    free(obs);
    cr_expect_eq(rc, TWIG_ETOOBIG, "%s: %s", err_name(rc), err_msg());
    cr_expect_eq(rpc_err_to_status(rc), 8);
    EXPECT_ERR_HAS("RESOURCE_EXHAUSTED");
    cr_expect_null(r);
    cr_expect_eq(status_call(f.cl, P_STATUS, &o, NULL), 0, "%s", err_msg());
    fixture_stop(&f);
}

Test(rpc, slow_handler_gives_deadline_exceeded_and_late_reply_is_harmless)
{
    fixture f;
    fixture_start(&f, 0);
    rpc_call_opts o = {.deadline_ms = 300};
    int64_t t0 = procfix_now_ms();
    int rc = status_call(f.cl, P_PARK, &o, NULL);
    int64_t took = procfix_now_ms() - t0;
    cr_expect_eq(rc, TWIG_EDEADLINE, "%s: %s", err_name(rc), err_msg());
    EXPECT_ERR_HAS("DEADLINE_EXCEEDED");
    cr_expect(took >= 250 && took < 5000, "took %lld ms", (long long)took);
    cr_assert(app_wait_parked(&f.app, 1, 5000));
    /* the application answers long after the client left */
    cr_expect_eq(app_release_parked(&f.app), 1);
    o.deadline_ms = 5000;
    cr_expect_eq(status_call(f.cl, P_STATUS, &o, NULL), 0, "%s", err_msg());
    fixture_stop(&f);
}

typedef struct reply_later {
    test_app *app;
} reply_later;

static void *release_thread(void *arg)
{
    test_app *a = arg;
    if (app_wait_parked(a, 1, 10000)) {
        app_release_parked(a);
    }
    return NULL;
}

Test(rpc, deferred_reply_from_another_thread_reaches_the_client)
{
    fixture f;
    fixture_start(&f, 0);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, release_thread, &f.app), 0);
    rpc_call_opts o = {.deadline_ms = 10000};
    uint64_t end = 99;
    int rc = status_call(f.cl, P_PARK, &o, &end);
    pthread_join(th, NULL);
    cr_expect_eq(rc, 0, "%s", err_msg());
    cr_expect_eq(end, 0u);  /* the first parked call gets end_offset 0 */
    /* the handler saw the client's deadline */
    /* (gRPC rounds the timeout it sends up, so a little over 10 s is possible) */
    cr_expect(f.app.park_remaining_ms > 5000 && f.app.park_remaining_ms <= 10500, "%lld ms",
              (long long)f.app.park_remaining_ms);
    fixture_stop(&f);
}

Test(rpc, health_reports_serving_not_serving_and_not_found)
{
    fixture f;
    fixture_start(&f, 0);
    cr_expect_eq(rpc_health_check(f.addr, "", 5000), RPC_HEALTH_SERVING);
    cr_expect_eq(rpc_health_check(f.addr, "twig.v1.Test", 5000), RPC_HEALTH_SERVING);
    cr_expect_eq(rpc_health_check(f.addr, "twig.v1.ModelServer", 5000), RPC_HEALTH_SERVING);

    cr_expect_eq(rpc_server_set_serving(f.srv, "twig.v1.Test", false), 0);
    cr_expect_eq(rpc_health_check(f.addr, "twig.v1.Test", 5000), RPC_HEALTH_NOT_SERVING);
    cr_expect_eq(rpc_health_check(f.addr, "", 5000), RPC_HEALTH_SERVING);
    cr_expect_eq(rpc_server_set_serving(f.srv, "", false), 0);
    cr_expect_eq(rpc_health_check(f.addr, "", 5000), RPC_HEALTH_NOT_SERVING);
    cr_expect_eq(rpc_server_set_serving(f.srv, "", true), 0);
    cr_expect_eq(rpc_server_set_serving(f.srv, "twig.v1.Test", true), 0);
    cr_expect_eq(rpc_health_check(f.addr, "twig.v1.Test", 5000), RPC_HEALTH_SERVING);

    int rc = rpc_health_check(f.addr, "twig.v1.Nope", 5000);
    cr_expect_eq(rc, TWIG_ENOTFOUND, "%s", err_name(rc));
    EXPECT_ERR_HAS("NOT_FOUND");
    cr_expect_eq(rpc_server_set_serving(f.srv, "twig.v1.Nope", false), TWIG_ENOTFOUND);

    /* once shutdown starts the server says NOT_SERVING or refuses the probe */
    rpc_server_shutdown(f.srv, 500);
    rc = rpc_health_check(f.addr, "", 2000);
    cr_expect(rc != RPC_HEALTH_SERVING, "rc %d", rc);
    cr_expect_eq(rpc_server_set_serving(f.srv, "", true), 0);
    rc = rpc_health_check(f.addr, "", 2000);
    cr_expect(rc != RPC_HEALTH_SERVING, "rc %d", rc);
    fixture_stop(&f);
}

Test(rpc, unknown_method_is_unimplemented)
{
    fixture f;
    fixture_start(&f, 0);
    rpc_call_opts o = {.deadline_ms = 5000};
    int rc = status_call(f.cl, "/twig.v1.Test/Nope", &o, NULL);
    cr_expect_eq(rc, TWIG_EUNIMPL, "%s", err_name(rc));
    EXPECT_ERR_HAS("UNIMPLEMENTED");
    EXPECT_ERR_HAS("/twig.v1.Test/Nope");
    cr_expect_eq(status_call(f.cl, P_STATUS, &o, NULL), 0);
    fixture_stop(&f);
}

static int send_batch(rpc_stream_t *s, uint64_t seq, uint32_t count)
{
    float obs[8] = {0};
    Twig__V1__TransitionBatch b = batch_of(obs, 1, count, NULL);
    b.seq = seq;
    return rpc_stream_send(s, &b.base);
}

Test(rpc, client_stream_arrives_complete_and_in_order)
{
    fixture f;
    fixture_start(&f, 0);
    enum { N = 500 };
    rpc_call_opts o = {.deadline_ms = 20000};
    rpc_stream_t *s = NULL;
    cr_assert_eq(rpc_client_stream_open(f.cl, &s, P_SUM, &o), 0);
    uint64_t want = 0;
    for (uint64_t i = 0; i < N; i++) {
        uint32_t count = (uint32_t)(i % 7) + 1;
        want += count;
        cr_assert_eq(send_batch(s, i, count), 0, "send %llu: %s", (unsigned long long)i,
                     err_msg());
    }
    ProtobufCMessage *r = NULL;
    int rc = rpc_stream_finish(s, &r, &twig__v1__append_real_reply__descriptor);
    cr_assert_eq(rc, 0, "%s", err_msg());
    Twig__V1__AppendRealReply *a = (Twig__V1__AppendRealReply *)r;
    cr_expect_eq(a->first_offset, (uint64_t)N);  /* messages seen */
    cr_expect_eq(a->count, (uint32_t)want);      /* transitions seen */
    protobuf_c_message_free_unpacked(r, NULL);
    cr_expect_eq(f.app.streams_done, 1);

    /* an empty stream is a stream too */
    cr_assert_eq(rpc_client_stream_open(f.cl, &s, P_SUM, &o), 0);
    cr_assert_eq(rpc_stream_finish(s, &r, &twig__v1__append_real_reply__descriptor), 0);
    cr_expect_eq(((Twig__V1__AppendRealReply *)r)->count, 0u);
    protobuf_c_message_free_unpacked(r, NULL);
    fixture_stop(&f);
}

Test(rpc, client_stream_bad_message_fails_the_call_with_its_number)
{
    fixture f;
    fixture_start(&f, 0);
    rpc_call_opts o = {.deadline_ms = 10000};
    rpc_stream_t *s = NULL;

    /* message #3 does not parse */
    cr_assert_eq(rpc_client_stream_open(f.cl, &s, P_SUM, &o), 0);
    for (uint64_t i = 0; i < 3; i++) {
        cr_assert_eq(send_batch(s, i, 1), 0);
    }
    const uint8_t garbage[] = {0x0a, 0x10, 'a', 'b'};
    int rc = rpc_stream_send_bytes(s, garbage, sizeof garbage);
    /* later sends fail once the server's status arrived; finish reports it either way */
    for (uint64_t i = 4; i < 1000 && rc == 0; i++) {
        rc = send_batch(s, i, 1);
    }
    ProtobufCMessage *r = NULL;
    rc = rpc_stream_finish(s, &r, &twig__v1__append_real_reply__descriptor);
    cr_expect_eq(rc, -EINVAL, "%s", err_name(rc));
    cr_expect_null(r);
    EXPECT_ERR_HAS("message #3 is not a valid twig.v1.TransitionBatch");

    /* the handler rejects message #2 */
    cr_assert_eq(rpc_client_stream_open(f.cl, &s, P_SUM, &o), 0);
    cr_assert_eq(send_batch(s, 0, 1), 0);
    cr_assert_eq(send_batch(s, 1, 1), 0);
    rc = send_batch(s, 2, 0);
    rc = rpc_stream_finish(s, &r, &twig__v1__append_real_reply__descriptor);
    cr_expect_eq(rc, -EINVAL, "%s", err_name(rc));
    EXPECT_ERR_HAS("message #2: count is 0");

    /* aborting a stream ends it without a reply; the server stays up (it may see the cancel
     * as an end of stream, see rpc.h) */
    cr_expect_eq(f.app.streams_done, 0);
    cr_assert_eq(rpc_client_stream_open(f.cl, &s, P_SUM, &o), 0);
    cr_assert_eq(send_batch(s, 0, 1), 0);
    rpc_stream_abort(s);
    cr_expect_eq(status_call(f.cl, P_STATUS, &o, NULL), 0, "%s", err_msg());
    fixture_stop(&f);
}

Test(rpc, second_server_on_the_same_port_fails_to_bind)
{
    fixture f;
    fixture_start(&f, 0);
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", rpc_server_port(f.srv));
    rpc_server_cfg cfg = {.listen = listen};
    rpc_server_t *second = NULL;
    int rc = rpc_server_init(&second, &cfg, test_methods, N_TEST_METHODS);
    cr_expect_eq(rc, -EADDRINUSE, "%s", err_name(rc));
    cr_expect_null(second);
    EXPECT_ERR_HAS(listen);
    EXPECT_ERR_HAS("is in use");
    rpc_call_opts o = {.deadline_ms = 5000};
    cr_expect_eq(status_call(f.cl, P_STATUS, &o, NULL), 0);
    fixture_stop(&f);
}

Test(rpc, a_listen_address_that_cannot_work_is_named_before_grpc_sees_it)
{
    rpc_server_t *srv = NULL;
    rpc_server_cfg cfg = {.listen = "10.255.255.1:5000"};   /* not an address of this host */
    int rc = rpc_server_init(&srv, &cfg, test_methods, N_TEST_METHODS);
    cr_expect_eq(rc, -EADDRNOTAVAIL, "%s", err_name(rc));
    EXPECT_ERR_HAS("is not an address of this machine");
    cfg.listen = "127.0.0.1";
    cr_expect_eq(rpc_server_init(&srv, &cfg, test_methods, N_TEST_METHODS), -EINVAL);
    EXPECT_ERR_HAS("not HOST:PORT");
    cfg.listen = "127.0.0.1:70000";
    cr_expect_eq(rpc_server_init(&srv, &cfg, test_methods, N_TEST_METHODS), -EINVAL);
    EXPECT_ERR_HAS("0..65535");
    cr_expect_null(srv);
}

Test(rpc, bad_method_tables_are_rejected)
{
    rpc_server_cfg cfg = {.listen = "127.0.0.1:0"};
    rpc_server_t *srv = NULL;
    rpc_method bad[2] = {test_methods[0], test_methods[0]};
    cr_expect_eq(rpc_server_init(&srv, &cfg, bad, 2), -EINVAL);
    EXPECT_ERR_HAS("listed twice");
    bad[0].path = "twig.v1.Test/Echo";
    cr_expect_eq(rpc_server_init(&srv, &cfg, bad, 1), -EINVAL);
    bad[0].path = "/twig.v1.Test/Echo";
    bad[0].run = RPC_RUN_ON_LOOP;
    cr_expect_eq(rpc_server_init(&srv, &cfg, bad, 1), -EINVAL);
    EXPECT_ERR_HAS("no loop");
    cr_expect_null(srv);
    /* a server made but never started frees cleanly */
    cr_assert_eq(rpc_server_init(&srv, &cfg, test_methods, N_TEST_METHODS), 0);
    rpc_server_free(srv);
}

typedef struct call_thread {
    const char *addr;
    const char *path;
    int deadline_ms;
    int rc;
    uint64_t end_offset;
} call_thread;

static void *call_main(void *arg)
{
    call_thread *t = arg;
    rpc_client_t *cl;
    if (rpc_client_init(&cl, t->addr, NULL) < 0) {
        t->rc = -999;
        return NULL;
    }
    rpc_call_opts o = {.deadline_ms = t->deadline_ms};
    Twig__V1__LogStatusRequest q = TWIG__V1__LOG_STATUS_REQUEST__INIT;
    ProtobufCMessage *r = NULL;
    t->rc = rpc_client_unary(cl, &r, t->path, &q.base, &twig__v1__log_status_reply__descriptor,
                             &o);
    if (r) {
        t->end_offset = ((Twig__V1__LogStatusReply *)r)->end_offset;
        protobuf_c_message_free_unpacked(r, NULL);
    }
    rpc_client_free(cl);
    return NULL;
}

/* n threads each calling path at addr with the deadline, their states in ct (rc 1 until done) */
static void calls_start(call_thread *ct, pthread_t *th, int n, const char *addr,
                        const char *path, int deadline_ms)
{
    for (int i = 0; i < n; i++) {
        ct[i] = (call_thread){.addr = addr, .path = path, .deadline_ms = deadline_ms, .rc = 1};
        cr_assert_eq(pthread_create(&th[i], NULL, call_main, &ct[i]), 0);
    }
}

/* n calls to Park on f's server, from threads, all parked by the application */
static void calls_park(fixture *f, call_thread *ct, pthread_t *th, int n, int deadline_ms)
{
    calls_start(ct, th, n, f->addr, P_PARK, deadline_ms);
    cr_assert(app_wait_parked(&f->app, n, 10000));
}

Test(rpc, shutdown_lets_held_calls_finish_within_grace)
{
    fixture f;
    fixture_start(&f, 0);
    enum { N = 4 };
    call_thread ct[N];
    pthread_t th[N];
    calls_park(&f, ct, th, N, 20000);
    rpc_server_shutdown(f.srv, 10000);
    /* new calls are refused while the held ones are still open */
    rpc_call_opts o = {.deadline_ms = 2000};
    cr_expect_neq(status_call(f.cl, P_STATUS, &o, NULL), 0);
    cr_expect_eq(app_release_parked(&f.app), N);
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        cr_expect_eq(ct[i].rc, 0, "call %d: %s", i, err_name(ct[i].rc));
    }
    fixture_stop(&f);
}

Test(rpc, shutdown_cancels_calls_held_past_grace)
{
    fixture f;
    fixture_start(&f, 0);
    enum { N = 4 };
    call_thread ct[N];
    pthread_t th[N];
    calls_park(&f, ct, th, N, 30000);
    int64_t t0 = procfix_now_ms();
    rpc_server_shutdown(f.srv, 200);
    /* the clients are released by the cancel, not by their 30 s deadline */
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        cr_expect(ct[i].rc == TWIG_EUNAVAIL || ct[i].rc == TWIG_ECANCELLED, "call %d: %s", i,
                  err_name(ct[i].rc));
    }
    cr_expect_lt(procfix_now_ms() - t0, 20000);
    /* the application answers after the cancel: harmless, and free completes */
    cr_expect_eq(app_release_parked(&f.app), N);
    fixture_stop(&f);
}

Test(rpc, free_with_unanswered_calls_in_flight_from_clients)
{
    /* clients still waiting when the server goes: they get an error, nothing leaks */
    fixture f;
    fixture_start(&f, 0);
    enum { N = 3 };
    call_thread ct[N];
    pthread_t th[N];
    calls_park(&f, ct, th, N, 30000);
    rpc_server_shutdown(f.srv, 0);
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        cr_expect_lt(ct[i].rc, 0);
    }
    app_release_parked(&f.app);
    fixture_stop(&f);
}

typedef struct late_server {
    rpc_client_t *cl;     /* the client whose call must be under way first */
    char listen[64];
    test_app app;
    rpc_server_t *srv;
    rpc_conn_state seen;  /* client state that proved the call was issued */
    int rc;
} late_server;

static void *late_server_main(void *arg)
{
    late_server *ls = arg;
    /* poll (bounded) until the client's call has made the channel leave IDLE */
    ls->seen = RPC_CONN_IDLE;
    for (int i = 0; i < 5000 && ls->seen == RPC_CONN_IDLE; i++) {
        ls->seen = rpc_client_state(ls->cl);
        if (ls->seen == RPC_CONN_IDLE) {
            procfix_pause_ms(1);
        }
    }
    rpc_server_cfg cfg = {.listen = ls->listen, .app = &ls->app};
    ls->rc = rpc_server_init(&ls->srv, &cfg, test_methods, N_TEST_METHODS);
    if (ls->rc == 0) {
        ls->rc = rpc_server_start(ls->srv);
    }
    return NULL;
}

Test(rpc, wait_for_ready_call_succeeds_once_a_late_server_starts)
{
    late_server ls = {0};
    app_init(&ls.app);
    char addr[64];
    int port = procfix_free_port();
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    snprintf(ls.listen, sizeof ls.listen, "127.0.0.1:%d", port);
    cr_assert_eq(rpc_client_init(&ls.cl, addr, NULL), 0);
    cr_expect_eq(rpc_client_state(ls.cl), RPC_CONN_IDLE);

    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, late_server_main, &ls), 0);
    rpc_call_opts o = {.deadline_ms = 20000, .wait_for_ready = true};
    uint64_t end = 0;
    int rc = status_call(ls.cl, P_STATUS, &o, &end);
    pthread_join(th, NULL);
    cr_assert_eq(ls.rc, 0, "late server: %s", err_name(ls.rc));
    cr_expect_neq(ls.seen, RPC_CONN_IDLE);
    cr_expect_eq(rc, 0, "%s: %s", err_name(rc), err_msg());
    cr_expect_eq(end, 42u);
    rpc_client_free(ls.cl);
    rpc_server_free(ls.srv);
    app_free(&ls.app);
}

Test(rpc, no_server_gives_unavailable_naming_the_address)
{
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", procfix_free_port());
    rpc_client_t *cl;
    cr_assert_eq(rpc_client_init(&cl, addr, NULL), 0);
    rpc_call_opts o = {.deadline_ms = 5000};
    int rc = status_call(cl, P_STATUS, &o, NULL);
    cr_expect_eq(rc, TWIG_EUNAVAIL, "%s: %s", err_name(rc), err_msg());
    EXPECT_ERR_HAS(addr);
    EXPECT_ERR_HAS("UNAVAILABLE");
    /* the same with wait_for_ready runs into its deadline instead */
    o = (rpc_call_opts){.deadline_ms = 300, .wait_for_ready = true};
    rc = status_call(cl, P_STATUS, &o, NULL);
    cr_expect_eq(rc, TWIG_EDEADLINE, "%s: %s", err_name(rc), err_msg());
    cr_expect_eq(rpc_health_check(addr, "", 1000), TWIG_EUNAVAIL);
    int64_t t0 = procfix_now_ms();
    cr_expect_eq(rpc_wait_serving(addr, 300), TWIG_EDEADLINE);
    cr_expect_lt(procfix_now_ms() - t0, 3000);
    rpc_client_free(cl);
    cr_expect_eq(rpc_client_init(&cl, "no-port", NULL), -EINVAL);
}

Test(rpc, idempotent_call_retries_with_backoff_until_it_succeeds)
{
    fixture f;
    fixture_start(&f, 0);
    f.app.flaky_fails_left = 2;
    rpc_call_opts o = {.deadline_ms = 10000, .idempotent = true, .max_attempts = 5,
                       .backoff_ms = 20};
    uint64_t end = 0;
    cr_expect_eq(status_call(f.cl, P_FLAKY, &o, &end), 0, "%s", err_msg());
    cr_expect_eq(end, 42u);
    cr_expect_eq(f.app.flaky_calls, 3);

    /* not idempotent: one attempt, the server's code and text */
    f.app.flaky_fails_left = 2;
    f.app.flaky_calls = 0;
    o.idempotent = false;
    int rc = status_call(f.cl, P_FLAKY, &o, NULL);
    cr_expect_eq(rc, TWIG_EUNAVAIL);
    EXPECT_ERR_HAS("warming up, try again");
    cr_expect_eq(f.app.flaky_calls, 1);

    /* attempts are bounded */
    f.app.flaky_fails_left = 100;
    f.app.flaky_calls = 0;
    o = (rpc_call_opts){.deadline_ms = 10000, .idempotent = true, .max_attempts = 3,
                        .backoff_ms = 10};
    rc = status_call(f.cl, P_FLAKY, &o, NULL);
    cr_expect_eq(rc, TWIG_EUNAVAIL);
    cr_expect_eq(f.app.flaky_calls, 3);
    EXPECT_ERR_HAS("after 3 attempts");

    /* and so is the total time */
    f.app.flaky_calls = 0;
    o = (rpc_call_opts){.deadline_ms = 400, .idempotent = true, .max_attempts = 1000,
                        .backoff_ms = 50, .backoff_max_ms = 100};
    int64_t t0 = procfix_now_ms();
    rc = status_call(f.cl, P_FLAKY, &o, NULL);
    int64_t took = procfix_now_ms() - t0;
    cr_expect(rc == TWIG_EUNAVAIL || rc == TWIG_EDEADLINE, "%s", err_name(rc));
    cr_expect_lt(took, 2000);
    cr_expect(f.app.flaky_calls >= 2 && f.app.flaky_calls < 20, "calls %d", f.app.flaky_calls);
    fixture_stop(&f);
}

/* ---- a server whose handlers run on a libuv loop ---- */

#define P_LOOP_SUM "/twig.v1.Test/LoopSum"
#define P_LOOP_BLOCK "/twig.v1.Test/LoopBlock"

typedef struct loop_server {
    test_app app;         /* first: handlers get a loop_server * as their test_app * */
    uv_loop_t loop;
    pthread_t loop_thread;
    rpc_server_t *srv;
    int port;             /* > 0 once serving, < 0 on failure */
    int loop_close_rc;
    bool block;           /* LoopBlock holds the loop thread while this is true */
    int blocked;          /* LoopBlock runs that started */
    int loop_calls;       /* handler runs seen on the loop thread */
    int live_stale_ms;    /* rpc_server_cfg.live_stale_ms (0: default) */
} loop_server;

/* every loop handler checks it runs on the loop's thread */
static int loop_check_thread(loop_server *ls)
{
    if (!pthread_equal(pthread_self(), ls->loop_thread)) {
        return err_set(TWIG_EINTERNAL, "loop handler ran off the loop thread");
    }
    pthread_mutex_lock(&ls->app.lock);
    ls->loop_calls++;
    pthread_mutex_unlock(&ls->app.lock);
    return 0;
}

static int on_loop_echo(rpc_call_t *call, const ProtobufCMessage *msg, void *app)
{
    int rc = loop_check_thread(app);
    return rc < 0 ? rc : on_echo(call, msg, app);
}

static int on_loop_sum(rpc_call_t *call, const ProtobufCMessage *msg, void *app)
{
    int rc = loop_check_thread(app);
    return rc < 0 ? rc : on_sum(call, msg, app);
}

/* holds the loop thread until the test clears ls->block: a busy loop */
static int on_loop_block(rpc_call_t *call, const ProtobufCMessage *msg, void *app)
{
    loop_server *ls = app;
    pthread_mutex_lock(&ls->app.lock);
    ls->blocked++;
    pthread_cond_broadcast(&ls->app.cond);
    while (ls->block) {
        pthread_cond_wait(&ls->app.cond, &ls->app.lock);
    }
    pthread_mutex_unlock(&ls->app.lock);
    return on_status(call, msg, app);
}

static const rpc_method loop_methods[] = {
    {P_LOOP_ECHO, &twig__v1__transition_batch__descriptor, on_loop_echo, RPC_KIND_UNARY,
     RPC_RUN_ON_LOOP},
    {P_LOOP_SUM, &twig__v1__transition_batch__descriptor, on_loop_sum, RPC_KIND_CLIENT_STREAM,
     RPC_RUN_ON_LOOP},
    {P_LOOP_BLOCK, &twig__v1__log_status_request__descriptor, on_loop_block, RPC_KIND_UNARY,
     RPC_RUN_ON_LOOP},
    {P_STATUS, &twig__v1__log_status_request__descriptor, on_status, RPC_KIND_UNARY,
     RPC_RUN_ON_CQ},
};

static void *loop_main(void *arg)
{
    loop_server *ls = arg;
    uv_loop_init(&ls->loop);
    rpc_server_cfg cfg = {.listen = "127.0.0.1:0", .loop = &ls->loop, .app = ls,
                          .live_stale_ms = ls->live_stale_ms};
    int rc = rpc_server_init(&ls->srv, &cfg, loop_methods,
                             sizeof loop_methods / sizeof loop_methods[0]);
    if (rc == 0) {
        rc = rpc_server_start(ls->srv);
    }
    pthread_mutex_lock(&ls->app.lock);
    ls->port = rc == 0 ? rpc_server_port(ls->srv) : -1;
    pthread_cond_broadcast(&ls->app.cond);
    pthread_mutex_unlock(&ls->app.lock);
    if (rc == 0) {
        uv_run(&ls->loop, UV_RUN_DEFAULT);  /* returns once the server has shut down */
        rpc_server_free(ls->srv);
    }
    ls->loop_close_rc = uv_loop_close(&ls->loop);
    return NULL;
}

/* start the loop thread and its server (liveness stale after live_stale_ms, 0: default);
 * fills addr */
static void loop_server_start_stale(loop_server *ls, char *addr, size_t n_addr,
                                    int live_stale_ms)
{
    memset(ls, 0, sizeof *ls);
    ls->live_stale_ms = live_stale_ms;
    app_init(&ls->app);
    cr_assert_eq(pthread_create(&ls->loop_thread, NULL, loop_main, ls), 0);
    pthread_mutex_lock(&ls->app.lock);
    while (ls->port == 0) {
        pthread_cond_wait(&ls->app.cond, &ls->app.lock);
    }
    pthread_mutex_unlock(&ls->app.lock);
    cr_assert_gt(ls->port, 0);
    snprintf(addr, n_addr, "127.0.0.1:%d", ls->port);
    cr_assert_eq(rpc_wait_serving(addr, 10000), 0, "%s", err_msg());
}

static void loop_server_start(loop_server *ls, char *addr, size_t n_addr)
{
    loop_server_start_stale(ls, addr, n_addr, 0);
}

static void loop_server_join(loop_server *ls);

/* poll addr's service (bounded by deadline_ms) until it answers want; the answer last seen */
static int health_poll_until(const char *addr, const char *service, int want, int deadline_ms)
{
    int64_t end = procfix_now_ms() + deadline_ms;
    int rc;
    while ((rc = rpc_health_check(addr, service, 1000)) != want && procfix_now_ms() < end) {
        procfix_pause_ms(PROCFIX_POLL_MS);
    }
    return rc;
}

Test(rpc, liveness_follows_the_loop_and_readiness_is_set_apart, .timeout = 60)
{
    loop_server ls;
    char addr[64];
    loop_server_start_stale(&ls, addr, sizeof addr, 400);
    cr_expect_eq(rpc_health_check(addr, RPC_HEALTH_LIVENESS, 2000), RPC_HEALTH_SERVING);
    cr_expect_eq(rpc_health_check(addr, RPC_HEALTH_READINESS, 2000), RPC_HEALTH_SERVING);

    /* not ready: "", "readiness" and every service say NOT_SERVING; liveness stays */
    cr_expect_eq(rpc_server_set_ready(ls.srv, false), 1);
    cr_expect_eq(rpc_server_set_ready(ls.srv, false), 0);   /* no change the second time */
    cr_expect_eq(rpc_health_check(addr, "", 2000), RPC_HEALTH_NOT_SERVING);
    cr_expect_eq(rpc_health_check(addr, RPC_HEALTH_READINESS, 2000), RPC_HEALTH_NOT_SERVING);
    cr_expect_eq(rpc_health_check(addr, "twig.v1.Test", 2000), RPC_HEALTH_NOT_SERVING);
    cr_expect_eq(rpc_health_check(addr, RPC_HEALTH_LIVENESS, 2000), RPC_HEALTH_SERVING);
    cr_expect_eq(rpc_wait_serving(addr, 300), TWIG_EDEADLINE);
    cr_expect_eq(rpc_server_set_ready(ls.srv, true), 1);
    cr_expect_eq(rpc_wait_serving(addr, 2000), 0, "%s", err_msg());

    /* a wedged loop: liveness goes NOT_SERVING once the heartbeat is stale, readiness
     * (answered by the CQ thread) does not change */
    ls.block = true;
    call_thread blocker = {.addr = addr, .path = P_LOOP_BLOCK, .deadline_ms = 30000, .rc = 1};
    pthread_t tb;
    cr_assert_eq(pthread_create(&tb, NULL, call_main, &blocker), 0);
    cr_expect_eq(health_poll_until(addr, RPC_HEALTH_LIVENESS, RPC_HEALTH_NOT_SERVING, 10000),
                 RPC_HEALTH_NOT_SERVING);
    cr_expect_eq(rpc_server_loop_live(ls.srv), false);
    cr_expect_eq(rpc_health_check(addr, RPC_HEALTH_READINESS, 2000), RPC_HEALTH_SERVING);
    pthread_mutex_lock(&ls.app.lock);
    ls.block = false;
    pthread_cond_broadcast(&ls.app.cond);
    pthread_mutex_unlock(&ls.app.lock);
    pthread_join(tb, NULL);
    cr_expect_eq(blocker.rc, 0, "%s", err_name(blocker.rc));
    cr_expect_eq(health_poll_until(addr, RPC_HEALTH_LIVENESS, RPC_HEALTH_SERVING, 10000),
                 RPC_HEALTH_SERVING);
    cr_expect_eq(rpc_wait_health(addr, RPC_HEALTH_LIVENESS, 2000), 0, "%s", err_msg());

    /* shutting down: not live, not ready */
    rpc_server_shutdown(ls.srv, 300);
    int rc = rpc_health_check(addr, RPC_HEALTH_LIVENESS, 2000);
    cr_expect(rc != RPC_HEALTH_SERVING, "rc %d", rc);
    loop_server_join(&ls);
}

/* wait for the loop thread, which frees the server and closes the loop once uv_run returns
 * (after a shutdown: ls->srv must not be touched from here on) */
static void loop_server_join(loop_server *ls)
{
    pthread_join(ls->loop_thread, NULL);
    cr_expect_eq(ls->loop_close_rc, 0, "uv_loop_close: %s", uv_strerror(ls->loop_close_rc));
    app_free(&ls->app);
}

/* shut down from this (non-loop) thread; uv_run returns, the loop thread frees and closes */
static void loop_server_stop(loop_server *ls, int grace_ms)
{
    rpc_server_shutdown(ls->srv, grace_ms);
    loop_server_join(ls);
}

Test(rpc, loop_handlers_run_on_the_loop_and_shutdown_ends_uv_run)
{
    loop_server ls;
    char addr[64];
    loop_server_start(&ls, addr, sizeof addr);
    rpc_client_t *cl;
    cr_assert_eq(rpc_client_init(&cl, addr, NULL), 0);
    float obs[2] = {1.5f, -2.5f}, reward[2] = {0.25f, 0.5f};
    Twig__V1__TransitionBatch b = batch_of(obs, 1, 2, reward);
    rpc_call_opts o = {.deadline_ms = 5000};
    enum { N = 50 };
    for (int i = 0; i < N; i++) {
        ProtobufCMessage *r = NULL;
        b.seq = (uint64_t)i;
        int rc = rpc_client_unary(cl, &r, P_LOOP_ECHO, &b.base,
                                  &twig__v1__transition_batch__descriptor, &o);
        cr_assert_eq(rc, 0, "call %d: %s", i, err_msg());
        cr_expect_eq(((Twig__V1__TransitionBatch *)r)->seq, (uint64_t)i);
        cr_expect_eq(memcmp(((Twig__V1__TransitionBatch *)r)->reward, reward, sizeof reward), 0);
        protobuf_c_message_free_unpacked(r, NULL);
    }
    /* validation errors from a loop handler reach the client too */
    b.n_reward = 1;
    ProtobufCMessage *r = NULL;
    cr_expect_eq(rpc_client_unary(cl, &r, P_LOOP_ECHO, &b.base,
                                  &twig__v1__transition_batch__descriptor, &o),
                 -EINVAL);
    /* a client stream whose messages are handled on the loop */
    enum { M = 100 };
    rpc_stream_t *s = NULL;
    cr_assert_eq(rpc_client_stream_open(cl, &s, P_LOOP_SUM, &o), 0);
    for (uint64_t i = 0; i < M; i++) {
        cr_assert_eq(send_batch(s, i, 2), 0, "%s", err_msg());
    }
    cr_assert_eq(rpc_stream_finish(s, &r, &twig__v1__append_real_reply__descriptor), 0, "%s",
                 err_msg());
    cr_expect_eq(((Twig__V1__AppendRealReply *)r)->first_offset, (uint64_t)M);
    cr_expect_eq(((Twig__V1__AppendRealReply *)r)->count, 2u * M);
    protobuf_c_message_free_unpacked(r, NULL);
    rpc_client_free(cl);

    loop_server_stop(&ls, 200);
    cr_expect_eq(ls.loop_calls, N + 1 + M + 1);  /* every run was on the loop thread */
}

Test(rpc, shutdown_answers_calls_still_queued_for_a_busy_loop)
{
    loop_server ls;
    char addr[64];
    loop_server_start(&ls, addr, sizeof addr);
    ls.block = true;
    /* one call holds the loop thread ... */
    call_thread blocker = {.addr = addr, .path = P_LOOP_BLOCK, .deadline_ms = 30000, .rc = 1};
    pthread_t tb;
    cr_assert_eq(pthread_create(&tb, NULL, call_main, &blocker), 0);
    pthread_mutex_lock(&ls.app.lock);
    while (ls.blocked == 0) {
        pthread_cond_wait(&ls.app.cond, &ls.app.lock);  /* bounded by the test's timeout */
    }
    pthread_mutex_unlock(&ls.app.lock);
    /* ... so these wait in the loop queue */
    enum { N = 3 };
    call_thread ct[N];
    pthread_t th[N];
    calls_start(ct, th, N, addr, P_LOOP_BLOCK, 30000);
    /* poll (bounded) until the server holds all of them */
    int64_t t0 = procfix_now_ms();
    while (rpc_server_live_calls(ls.srv) < N + 1 && procfix_now_ms() - t0 < 10000) {
        procfix_pause_ms(2);
    }
    cr_assert_eq(rpc_server_live_calls(ls.srv), N + 1);
    /* the CQ thread still answers health and CQ methods while the loop is stuck */
    cr_expect_eq(rpc_health_check(addr, "twig.v1.Test", 1000), RPC_HEALTH_SERVING);
    rpc_client_t *cl;
    cr_assert_eq(rpc_client_init(&cl, addr, NULL), 0);
    rpc_call_opts o = {.deadline_ms = 5000};
    cr_expect_eq(status_call(cl, P_STATUS, &o, NULL), 0, "%s", err_msg());
    rpc_client_free(cl);

    rpc_server_shutdown(ls.srv, 300);
    /* after the grace period the queued calls are answered by the layer */
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        cr_expect(ct[i].rc == TWIG_EUNAVAIL || ct[i].rc == TWIG_ECANCELLED, "call %d: %s", i,
                  err_name(ct[i].rc));
    }
    cr_expect_lt(procfix_now_ms() - t0, 20000);
    /* release the loop: the blocked handler replies to its cancelled call, uv_run ends */
    pthread_mutex_lock(&ls.app.lock);
    ls.block = false;
    pthread_cond_broadcast(&ls.app.cond);
    pthread_mutex_unlock(&ls.app.lock);
    pthread_join(tb, NULL);
    /* its reply may beat the cancel or not: either ends the call */
    cr_expect(blocker.rc == 0 || blocker.rc == TWIG_EUNAVAIL || blocker.rc == TWIG_ECANCELLED,
              "%s", err_name(blocker.rc));
    /* shut down above: once the blocker is answered the loop thread may already have freed
     * the server, so only join it (a second rpc_server_shutdown raced with that free) */
    loop_server_join(&ls);
    cr_expect_eq(ls.blocked, 1, "blocked %d", ls.blocked);  /* queued calls never ran */
}

/* ---- deploy/health_check.py against the C server ---- */

/* exit code of deploy/health_check.py ADDR --service SERVICE (within 30 s) */
static int run_health_py(const char *addr, const char *service)
{
    char script[512];
    snprintf(script, sizeof script, "%s/deploy/health_check.py", TWIG_SRC_DIR);
    const char *argv[] = {"/usr/bin/python3", script,    addr, "--service", service,
                          "--timeout",        "2",       NULL};
    return procfix_exit_code(procfix_spawn(argv, NULL), 30000);
}

Test(rpc, python_health_check_exits_0_only_on_serving)
{
    fixture f;
    fixture_start(&f, 0);
    cr_expect_eq(run_health_py(f.addr, ""), 0);
    cr_expect_eq(run_health_py(f.addr, "twig.v1.ModelServer"), 0);
    cr_expect_eq(run_health_py(f.addr, "twig.v1.Nope"), 1);
    cr_expect_eq(rpc_server_set_serving(f.srv, "", false), 0);
    cr_expect_eq(run_health_py(f.addr, ""), 1);
    fixture_stop(&f);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", procfix_free_port());
    cr_expect_eq(run_health_py(addr, ""), 1);
}

/* a server holds at most max_calls: one more is refused at once (RESOURCE_EXHAUSTED, which the
 * client reads as TWIG_EFULL), health checks still answer, and room comes back as calls end */
Test(rpc, calls_past_max_calls_are_refused_at_once_and_health_still_answers)
{
    fixture f;
    fixture_start_with(&f, 0, 4);
    enum { N = 4 };
    call_thread ct[N];
    pthread_t th[N];
    calls_park(&f, ct, th, N, 20000);
    cr_expect_eq(rpc_server_live_calls(f.srv), N);
    rpc_call_opts o = {.deadline_ms = 5000};
    int64_t t0 = procfix_now_ms();
    int rc = status_call(f.cl, P_PARK, &o, NULL);
    cr_expect_eq(rc, TWIG_EFULL, "the fifth call: %s %s", err_name(rc), err_msg());
    cr_expect(strstr(err_msg(), "at most 4") != NULL, "names the bound: %s", err_msg());
    cr_expect_lt(procfix_now_ms() - t0, 2000, "refused at once, not at its deadline");
    cr_expect_eq(rpc_server_refused_busy(f.srv), 1);
    rc = rpc_health_check(f.addr, RPC_HEALTH_READINESS, 2000);
    cr_expect_eq(rc, RPC_HEALTH_SERVING, "health: %s %s", err_name(rc), err_msg());
    cr_expect_eq(app_release_parked(&f.app), N);
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        cr_expect_eq(ct[i].rc, 0, "call %d: %s", i, err_name(ct[i].rc));
    }
    cr_expect_eq(status_call(f.cl, P_STATUS, &o, NULL), 0, "room again: %s", err_msg());
    fixture_stop(&f);
}
