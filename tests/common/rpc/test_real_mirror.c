/* tests of common/rpc/real_mirror: the mirror against a small in-process model server whose
 * FetchReal serves a scripted log (and, on request, bad replies). Nothing sleeps to wait for
 * a server: tests poll health or the mirror's counters, always with a deadline. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "common/base/err.h"
#include "common/rpc/real_mirror.h"
#include "common/rpc/rpc.h"
#include "proto/twig.pb-c.h"
#include "tests/procfix.h"

#define ENV_ID "Test-v0"
#define N_OBS 3
#define N_ACT 2
#define LOG_MAX 64 /* rows the fake log can hold, and serve in one reply */

/* what the fake server does with the next replies */
typedef enum fake_mode {
    FAKE_OK = 0,
    FAKE_WRONG_DIMS,  /* obs_dim one too many */
    FAKE_WRONG_FIRST, /* first_offset one past what was asked */
    FAKE_NOT_FINITE,  /* a NaN observation */
    FAKE_NOT_READY,   /* empty, EMPTY_REASON_NOT_READY */
} fake_mode;

/* ---- the fake model server: a log of rows whose values say their offset ---- */

typedef struct fake_ms {
    pthread_mutex_t lock;
    uint64_t end; /* rows in the log */
    fake_mode mode;
    int fetches; /* FetchReal calls answered */
    /* one reply's arrays, filled under lock on the CQ thread */
    float obs[LOG_MAX * (N_OBS + 1)], next_obs[LOG_MAX * (N_OBS + 1)];
    float act[LOG_MAX * N_ACT], reward[LOG_MAX];
    protobuf_c_boolean terminated[LOG_MAX], truncated[LOG_MAX];
} fake_ms;

static int on_fetch(rpc_call_t *call, const ProtobufCMessage *msg, void *app)
{
    fake_ms *f = app;
    const Twig__V1__FetchRealRequest *q = (const Twig__V1__FetchRealRequest *)msg;
    Twig__V1__FetchRealReply r = TWIG__V1__FETCH_REAL_REPLY__INIT;
    Twig__V1__TransitionBatch b = TWIG__V1__TRANSITION_BATCH__INIT;
    pthread_mutex_lock(&f->lock);
    f->fetches++;
    r.first_offset = q->from_offset;
    r.end_offset = f->end;
    uint64_t n = q->from_offset < f->end ? f->end - q->from_offset : 0;
    n = n < q->max_count ? n : q->max_count;
    n = n < LOG_MAX ? n : LOG_MAX;
    uint32_t O = f->mode == FAKE_WRONG_DIMS ? N_OBS + 1 : N_OBS;
    if (f->mode == FAKE_NOT_READY) {
        r.empty_reason = TWIG__V1__EMPTY_REASON__EMPTY_REASON_NOT_READY;
    } else if (n == 0) {
        r.empty_reason = TWIG__V1__EMPTY_REASON__EMPTY_REASON_AT_END;
    } else {
        for (uint64_t i = 0; i < n; i++) {
            float row = (float)(q->from_offset + i);
            for (uint32_t j = 0; j < O; j++) {
                f->obs[i * O + j] = row * 10 + (float)j;
                f->next_obs[i * O + j] = row * 10 + (float)j + 1;
            }
            for (uint32_t j = 0; j < N_ACT; j++) {
                f->act[i * N_ACT + j] = 0.25f * (float)j;
            }
            f->reward[i] = row;
            f->terminated[i] = 0;
            f->truncated[i] = 0;
        }
        if (f->mode == FAKE_NOT_FINITE) {
            f->obs[0] = __builtin_nanf("");
        }
        b.env_id = ENV_ID;
        b.source_id = "";
        b.obs_dim = O;
        b.act_dim = N_ACT;
        b.count = (uint32_t)n;
        b.n_obs = b.n_next_obs = n * O;
        b.obs = f->obs;
        b.next_obs = f->next_obs;
        b.n_act = n * N_ACT;
        b.act = f->act;
        b.n_reward = b.n_terminated = b.n_truncated = n;
        b.reward = f->reward;
        b.terminated = f->terminated;
        b.truncated = f->truncated;
        r.batch = &b;
        if (f->mode == FAKE_WRONG_FIRST) {
            r.first_offset++;
        }
    }
    rpc_call_reply(call, 0, &r.base); /* packed at once, under lock: the arrays are shared */
    pthread_mutex_unlock(&f->lock);
    return 0;
}

static const rpc_method fake_methods[] = {
    {REAL_MIRROR_PATH, &twig__v1__fetch_real_request__descriptor, on_fetch, RPC_KIND_UNARY,
     RPC_RUN_ON_CQ},
};

static void fake_set(fake_ms *f, uint64_t end, fake_mode mode)
{
    pthread_mutex_lock(&f->lock);
    f->end = end;
    f->mode = mode;
    pthread_mutex_unlock(&f->lock);
}

static rpc_server_t *fake_serve(fake_ms *f, const char *listen)
{
    rpc_server_t *srv = NULL;
    rpc_server_cfg cfg = {.listen = listen, .app = f};
    cr_assert_eq(rpc_server_init(&srv, &cfg, fake_methods, 1), 0, "server: %s", err_msg());
    cr_assert_eq(rpc_server_start(srv), 0);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", rpc_server_port(srv));
    cr_assert_eq(rpc_wait_serving(addr, 10000), 0, "%s", err_msg());
    return srv;
}

/* ---- the owner: what the callbacks saw ---- */

typedef struct owner {
    pthread_mutex_t lock;
    int takes;                /* take callbacks, empty ones included */
    uint64_t rows;            /* rows taken */
    uint64_t next;            /* first_offset the next take must have */
    uint64_t end_offset;      /* of the last take */
    int bad_rows;             /* rows whose values do not match their offset */
    int reached, not_reached; /* peer callbacks */
    int last_rc;              /* of the last not reached */
    int64_t fail_ms[16];      /* when the first not-reached callbacks came */
} owner;

static void owner_take(void *app, const real_mirror_rows *rows)
{
    owner *o = app;
    pthread_mutex_lock(&o->lock);
    o->takes++;
    o->bad_rows += rows->first_offset != o->next; /* rows follow each other (no cr_ here: the
                                                   * mirror thread may be the caller) */
    for (uint32_t i = 0; i < rows->count; i++) {
        float row = (float)(rows->first_offset + i);
        bool ok = rows->obs[i * N_OBS] == row * 10 && rows->reward[i] == row &&
                  rows->next_obs[i * N_OBS + 2] == row * 10 + 3 && rows->act[1] == 0.25f;
        o->bad_rows += !ok;
    }
    o->rows += rows->count;
    o->next = rows->first_offset + rows->count;
    o->end_offset = rows->end_offset;
    pthread_mutex_unlock(&o->lock);
}

static void owner_peer(void *app, bool reached, int rc, uint64_t offset)
{
    (void)offset;
    owner *o = app;
    pthread_mutex_lock(&o->lock);
    if (reached) {
        o->reached++;
    } else {
        if (o->not_reached < 16) {
            o->fail_ms[o->not_reached] = procfix_now_ms();
        }
        o->not_reached++;
        o->last_rc = rc;
    }
    pthread_mutex_unlock(&o->lock);
}

/* ---- fixtures ---- */

typedef struct fixture {
    fake_ms ms;
    rpc_server_t *srv;
    char addr[64];
    rpc_client_t *cl;
    stop_flag stop;
    owner own;
    real_mirror_t m;
} fixture;

/* the mirror of addr from from_offset, asking max_count rows at a time */
static void mirror_start(fixture *fx, uint32_t max_count, uint64_t from, uint64_t backoff_min,
                         uint64_t backoff_max)
{
    pthread_mutex_init(&fx->own.lock, NULL);
    fx->own.next = from;
    stop_flag_init(&fx->stop);
    cr_assert_eq(rpc_client_init(&fx->cl, fx->addr, NULL), 0);
    real_mirror_cfg c = {
        .client = fx->cl,
        .env_id = ENV_ID,
        .n_obs = N_OBS,
        .n_act = N_ACT,
        .max_count = max_count,
        .wait_ms = 0,
        .deadline_slack_ms = 2000,
        .backoff_min_ms = backoff_min,
        .backoff_max_ms = backoff_max,
        .seed = 7,
        .stop = &fx->stop,
        .take = owner_take,
        .peer = owner_peer,
        .app = &fx->own,
    };
    real_mirror_init(&fx->m, &c, from);
}

static void fixture_start(fixture *fx, uint64_t end, uint32_t max_count, uint64_t from)
{
    memset(fx, 0, sizeof *fx);
    pthread_mutex_init(&fx->ms.lock, NULL);
    fake_set(&fx->ms, end, FAKE_OK);
    fx->srv = fake_serve(&fx->ms, "127.0.0.1:0");
    snprintf(fx->addr, sizeof fx->addr, "127.0.0.1:%d", rpc_server_port(fx->srv));
    mirror_start(fx, max_count, from, 20, 200);
}

static void fixture_stop(fixture *fx)
{
    rpc_client_free(fx->cl);
    rpc_server_free(fx->srv);
    stop_flag_destroy(&fx->stop);
    pthread_mutex_destroy(&fx->own.lock);
    pthread_mutex_destroy(&fx->ms.lock);
}

static void suite_init(void)
{
    rpc_lib_init();
}

static void suite_fini(void)
{
    rpc_lib_shutdown(3000);
}

TestSuite(real_mirror, .init = suite_init, .fini = suite_fini, .timeout = 60);

/* ---- one step at a time ---- */

Test(real_mirror, step_takes_rows_from_its_offset_and_moves_past_them)
{
    fixture fx;
    fixture_start(&fx, 10, 4, 0);
    cr_expect_eq(real_mirror_step(&fx.m, 0), 4);
    cr_expect_eq(real_mirror_offset(&fx.m), 4);
    cr_expect_eq(real_mirror_step(&fx.m, 0), 4);
    cr_expect_eq(real_mirror_step(&fx.m, 0), 2, "the rest of the log");
    cr_expect_eq(real_mirror_offset(&fx.m), 10);
    cr_expect_eq(real_mirror_step(&fx.m, 0), 0, "at the end: nothing");
    cr_expect_eq(real_mirror_offset(&fx.m), 10);
    cr_expect_eq(fx.own.takes, 4, "the empty reply is taken too (its log end is news)");
    cr_expect_eq(fx.own.rows, 10);
    cr_expect_eq(fx.own.end_offset, 10);
    cr_expect_eq(fx.own.bad_rows, 0, "every row arrived with its own values");
    cr_expect_eq(fx.own.reached, 4);
    cr_expect_eq(fx.own.not_reached, 0);
    cr_expect_eq(atomic_load(&fx.m.rows), 10);
    cr_expect_eq(atomic_load(&fx.m.refused), 0);
    fixture_stop(&fx);
}

Test(real_mirror, catch_up_reads_to_the_end_in_max_count_pieces_from_a_restored_offset)
{
    fixture fx;
    fixture_start(&fx, 25, 8, 3); /* as a learner refilling from offset 3 */
    cr_expect_eq(real_mirror_catch_up(&fx.m), 0);
    cr_expect_eq(real_mirror_offset(&fx.m), 25);
    cr_expect_eq(fx.own.rows, 22);
    cr_expect_eq(fx.own.takes, 3, "8 + 8 + 6: the short reply ends the catch-up");
    cr_expect_eq(fx.ms.fetches, 3);
    cr_expect_eq(fx.own.bad_rows, 0);
    fixture_stop(&fx);
}

/* a bad reply of each kind: refused, nothing taken, the offset stays; the next good one is
 * taken from the same offset */
static void expect_refused(fake_mode mode, const char *says)
{
    fixture fx;
    fixture_start(&fx, 10, 4, 0);
    cr_assert_eq(real_mirror_step(&fx.m, 0), 4);
    fake_set(&fx.ms, 10, mode);
    int64_t t0 = procfix_now_ms();
    cr_expect_eq(real_mirror_step(&fx.m, 0), -EINVAL);
    cr_expect(strstr(err_msg(), says) != NULL, "'%s' does not say '%s'", err_msg(), says);
    cr_expect_geq(procfix_now_ms() - t0, 10, "backed off (at least half of 20 ms)");
    cr_expect_eq(real_mirror_offset(&fx.m), 4, "the offset stays");
    cr_expect_eq(fx.own.rows, 4, "nothing taken");
    cr_expect_eq(fx.own.takes, 1);
    cr_expect_eq(atomic_load(&fx.m.refused), 1);
    cr_expect_eq(fx.own.not_reached, 0, "the server answered: it is there");
    fake_set(&fx.ms, 10, FAKE_OK);
    cr_expect_eq(real_mirror_step(&fx.m, 0), 4);
    cr_expect_eq(real_mirror_offset(&fx.m), 8);
    cr_expect_eq(fx.own.bad_rows, 0);
    fixture_stop(&fx);
}

Test(real_mirror, a_reply_with_the_wrong_dims_is_refused)
{
    expect_refused(FAKE_WRONG_DIMS, "dims 4x2, the run's env has 3x2");
}

Test(real_mirror, a_reply_from_another_offset_is_refused)
{
    expect_refused(FAKE_WRONG_FIRST, "first_offset is 5, asked for 4");
}

Test(real_mirror, a_reply_with_a_non_finite_value_is_refused)
{
    expect_refused(FAKE_NOT_FINITE, "obs");
}

Test(real_mirror, a_log_end_going_back_behind_the_offset_is_refused)
{
    fixture fx;
    fixture_start(&fx, 10, 16, 0);
    cr_assert_eq(real_mirror_catch_up(&fx.m), 0);
    cr_assert_eq(real_mirror_offset(&fx.m), 10);
    fake_set(&fx.ms, 6, FAKE_OK); /* a model server that lost rows we hold */
    cr_expect_eq(real_mirror_step(&fx.m, 0), -EINVAL);
    cr_expect(strstr(err_msg(), "the log ends at 6, before offset 10") != NULL, "%s", err_msg());
    cr_expect_eq(real_mirror_offset(&fx.m), 10, "never backwards");
    cr_expect_eq(fx.own.takes, 1, "the refused reply was not taken");
    cr_expect_eq(atomic_load(&fx.m.refused), 1);
    /* the log grows past the offset again: mirroring goes on from where it was */
    fake_set(&fx.ms, 13, FAKE_OK);
    cr_expect_eq(real_mirror_step(&fx.m, 0), 3);
    cr_expect_eq(real_mirror_offset(&fx.m), 13);
    cr_expect_eq(fx.own.bad_rows, 0);
    fixture_stop(&fx);
}

Test(real_mirror, a_server_not_ready_yet_is_backed_off_from_and_counts_as_reached)
{
    fixture fx;
    fixture_start(&fx, 10, 4, 0);
    fake_set(&fx.ms, 10, FAKE_NOT_READY);
    int64_t t0 = procfix_now_ms();
    cr_expect_eq(real_mirror_step(&fx.m, 0), 0);
    cr_expect_eq(real_mirror_step(&fx.m, 0), 0);
    /* waits of [10, 20] then [20, 40] ms */
    cr_expect_geq(procfix_now_ms() - t0, 30, "backed off twice");
    cr_expect_eq(real_mirror_offset(&fx.m), 0);
    cr_expect_eq(fx.own.rows, 0);
    cr_expect_eq(fx.own.reached, 2);
    cr_expect_eq(atomic_load(&fx.m.refused), 0, "not ready is not a bad reply");
    fake_set(&fx.ms, 10, FAKE_OK);
    cr_expect_eq(real_mirror_catch_up(&fx.m), 0);
    cr_expect_eq(real_mirror_offset(&fx.m), 10);
    fixture_stop(&fx);
}

/* ---- the mirror thread ---- */

static void *mirror_thread(void *arg)
{
    real_mirror_run(arg);
    return NULL;
}

static int owner_not_reached(owner *o)
{
    pthread_mutex_lock(&o->lock);
    int n = o->not_reached;
    pthread_mutex_unlock(&o->lock);
    return n;
}

Test(real_mirror, a_missing_server_is_backed_off_from_and_caught_up_with_once_it_is_back)
{
    fixture fx;
    memset(&fx, 0, sizeof fx);
    pthread_mutex_init(&fx.ms.lock, NULL);
    fake_set(&fx.ms, 40, FAKE_OK);
    int port = procfix_free_port();
    snprintf(fx.addr, sizeof fx.addr, "127.0.0.1:%d", port);
    mirror_start(&fx, 16, 0, 20, 400);
    pthread_t thr;
    cr_assert_eq(pthread_create(&thr, NULL, mirror_thread, &fx.m), 0);

    /* nobody listens: failures, noted as not reached, further and further apart */
    int64_t deadline = procfix_now_ms() + 20000;
    while (owner_not_reached(&fx.own) < 5 && procfix_now_ms() < deadline) {
        procfix_pause_ms(5);
    }
    pthread_mutex_lock(&fx.own.lock);
    cr_assert_geq(fx.own.not_reached, 5, "the mirror keeps trying");
    cr_expect(rpc_err_unreachable(fx.own.last_rc), "not reached: %s", err_name(fx.own.last_rc));
    cr_expect_eq(fx.own.reached, 0);
    /* the 4th wait is in [80, 160] ms, the 1st in [10, 20]: exponential */
    int64_t gap1 = fx.own.fail_ms[1] - fx.own.fail_ms[0];
    int64_t gap4 = fx.own.fail_ms[4] - fx.own.fail_ms[3];
    cr_expect_geq(gap4, 80, "backed off: the 4th wait was %lld ms", (long long)gap4);
    cr_expect_gt(gap4, gap1, "the waits grow: %lld, then %lld ms", (long long)gap1,
                 (long long)gap4);
    pthread_mutex_unlock(&fx.own.lock);
    cr_expect_eq(real_mirror_offset(&fx.m), 0);
    cr_expect_eq(atomic_load(&fx.m.refused), 0);

    /* the server comes up on that address: the same mirror reaches it and catches up */
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    fx.srv = fake_serve(&fx.ms, listen);
    deadline = procfix_now_ms() + 20000;
    while (real_mirror_offset(&fx.m) < 40 && procfix_now_ms() < deadline) {
        procfix_pause_ms(5);
    }
    cr_expect_eq(real_mirror_offset(&fx.m), 40, "caught up with the whole log");
    fake_set(&fx.ms, 50, FAKE_OK); /* and follows it as it grows */
    deadline = procfix_now_ms() + 20000;
    while (real_mirror_offset(&fx.m) < 50 && procfix_now_ms() < deadline) {
        procfix_pause_ms(5);
    }
    stop_flag_raise(&fx.stop);
    pthread_join(thr, NULL);
    cr_expect_eq(real_mirror_offset(&fx.m), 50);
    cr_expect_eq(fx.own.rows, 50, "every row once");
    cr_expect_eq(fx.own.bad_rows, 0);
    cr_expect_gt(fx.own.reached, 0, "reached once it was back");
    fixture_stop(&fx);
}

Test(real_mirror, stop_ends_a_long_backoff_at_once)
{
    fixture fx;
    memset(&fx, 0, sizeof fx);
    pthread_mutex_init(&fx.ms.lock, NULL);
    snprintf(fx.addr, sizeof fx.addr, "127.0.0.1:%d", procfix_free_port());
    mirror_start(&fx, 16, 0, 30000, 60000); /* the first wait: 15..30 s */
    pthread_t thr;
    cr_assert_eq(pthread_create(&thr, NULL, mirror_thread, &fx.m), 0);
    int64_t deadline = procfix_now_ms() + 20000;
    while (owner_not_reached(&fx.own) < 1 && procfix_now_ms() < deadline) {
        procfix_pause_ms(5);
    }
    cr_assert_eq(owner_not_reached(&fx.own), 1, "failed once, now backing off");
    int64_t t0 = procfix_now_ms();
    stop_flag_raise(&fx.stop);
    pthread_join(thr, NULL);
    cr_expect_lt(procfix_now_ms() - t0, 2000, "the backoff ended with the stop");
    cr_expect_eq(owner_not_reached(&fx.own), 1);
    fixture_stop(&fx);
}
