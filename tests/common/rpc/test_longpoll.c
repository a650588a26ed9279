/* tests of common/rpc/longpoll: a loop-thread server whose Poll calls park on one
 * rpc_longpoll_t, clients on their own threads. Parked calls are answered on news, when their
 * wait (or the client's deadline less the margin) ends, and all at shutdown; nothing sleeps to
 * wait for the server: health and the parked count are polled with deadlines. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "common/base/err.h"
#include "common/rpc/longpoll.h"
#include "common/rpc/rpc.h"
#include "proto/health.pb-c.h"
#include "proto/twig.pb-c.h"
#include "tests/procfix.h"

#define P_POLL "/twig.v1.Test/Poll"       /* GetWeightsRequest(have_version, wait_ms) */
#define P_PUBLISH "/twig.v1.Test/Publish" /* GetWeightsRequest(have_version: new version) */
#define MAX_CLIENTS 8

static void setup(void)
{
    rpc_lib_init();
}

static void teardown(void)
{
    rpc_lib_shutdown(5000);
}

TestSuite(longpoll, .init = setup, .fini = teardown, .timeout = 60);

/* the server: a version that Publish raises, the polls waiting for a newer one */
typedef struct poll_server {
    uv_loop_t loop;
    uv_async_t close_now; /* from the test thread: close the polls, shut down */
    pthread_t thread;
    rpc_server_t *srv;
    rpc_longpoll_t polls;
    uint64_t version; /* loop thread */
    int port;         /* set before the server starts answering */
    int init_rc;
    int loop_close_rc;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool started;
    uint64_t answers[RPC_POLL_END_COUNT]; /* the answer callback's own count */
} poll_server;

static bool poll_has_news(void *app, const rpc_poll_want *w)
{
    return ((poll_server *)app)->version > w->have;
}

/* the reply says what ended the wait: end_offset the version then, segments the end */
static void poll_answer(void *app, rpc_call_t *call, const rpc_poll_want *w, rpc_poll_end why)
{
    (void)w;
    poll_server *ps = app;
    ps->answers[why]++;
    Twig__V1__LogStatusReply r = TWIG__V1__LOG_STATUS_REPLY__INIT;
    r.end_offset = ps->version;
    r.segments = (uint32_t)why;
    rpc_call_reply(call, 0, &r.base);
}

static const rpc_longpoll_ops poll_ops = {poll_has_news, poll_answer};

static int on_poll(rpc_call_t *call, const ProtobufCMessage *msg, void *app)
{
    poll_server *ps = app;
    const Twig__V1__GetWeightsRequest *q = (const Twig__V1__GetWeightsRequest *)msg;
    return rpc_longpoll_park(&ps->polls, call, q->wait_ms,
                             &(rpc_poll_want){.have = q->have_version});
}

static int on_publish(rpc_call_t *call, const ProtobufCMessage *msg, void *app)
{
    poll_server *ps = app;
    const Twig__V1__GetWeightsRequest *q = (const Twig__V1__GetWeightsRequest *)msg;
    ps->version = q->have_version;
    Twig__V1__LogStatusReply r = TWIG__V1__LOG_STATUS_REPLY__INIT;
    r.end_offset = rpc_longpoll_notify(&ps->polls); /* how many it answered */
    rpc_call_reply(call, 0, &r.base);
    return 0;
}

static const rpc_method poll_methods[] = {
    {P_POLL, &twig__v1__get_weights_request__descriptor, on_poll, RPC_KIND_UNARY, RPC_RUN_ON_LOOP},
    {P_PUBLISH, &twig__v1__get_weights_request__descriptor, on_publish, RPC_KIND_UNARY,
     RPC_RUN_ON_LOOP},
};

static void on_close_now(uv_async_t *h)
{
    poll_server *ps = h->data;
    rpc_longpoll_close(&ps->polls);
    rpc_server_shutdown(ps->srv, 500);
    uv_close((uv_handle_t *)h, NULL);
}

static void *poll_server_main(void *arg)
{
    poll_server *ps = arg;
    uv_loop_init(&ps->loop);
    uv_async_init(&ps->loop, &ps->close_now, on_close_now);
    ps->close_now.data = ps;
    rpc_longpoll_init(&ps->polls, &ps->loop, &poll_ops, ps);
    rpc_server_cfg cfg = {.listen = "127.0.0.1:0", .loop = &ps->loop, .app = ps};
    int rc = rpc_server_init(&ps->srv, &cfg, poll_methods, 2);
    if (rc == 0) {
        rc = rpc_server_start(ps->srv);
    }
    pthread_mutex_lock(&ps->mu);
    ps->init_rc = rc;
    ps->port = rc == 0 ? rpc_server_port(ps->srv) : 0;
    ps->started = true;
    pthread_cond_broadcast(&ps->cv);
    pthread_mutex_unlock(&ps->mu);
    if (rc == 0) {
        uv_run(&ps->loop, UV_RUN_DEFAULT); /* returns once the server and polls are closed */
    } else {
        uv_close((uv_handle_t *)&ps->close_now, NULL);
        uv_run(&ps->loop, UV_RUN_DEFAULT);
    }
    rpc_server_free(ps->srv);
    ps->loop_close_rc = uv_loop_close(&ps->loop);
    return NULL;
}

static void poll_server_start(poll_server *ps, char *addr, size_t n_addr)
{
    memset(ps, 0, sizeof *ps);
    pthread_mutex_init(&ps->mu, NULL);
    pthread_cond_init(&ps->cv, NULL);
    cr_assert_eq(pthread_create(&ps->thread, NULL, poll_server_main, ps), 0);
    pthread_mutex_lock(&ps->mu);
    while (!ps->started) {
        pthread_cond_wait(&ps->cv, &ps->mu);
    }
    pthread_mutex_unlock(&ps->mu);
    cr_assert_eq(ps->init_rc, 0, "server: %s", err_msg());
    snprintf(addr, n_addr, "127.0.0.1:%d", ps->port);
    cr_assert_eq(rpc_wait_serving(addr, 10000), 0, "%s", err_msg());
}

/* close the polls and the server from the loop thread, wait for the loop to end */
static void poll_server_stop(poll_server *ps)
{
    uv_async_send(&ps->close_now);
    pthread_join(ps->thread, NULL);
    cr_expect_eq(ps->loop_close_rc, 0, "uv_loop_close: %s", uv_strerror(ps->loop_close_rc));
    pthread_cond_destroy(&ps->cv);
    pthread_mutex_destroy(&ps->mu);
}

/* wait (bounded) until n calls are parked */
static bool wait_parked(const poll_server *ps, unsigned n, int timeout_ms)
{
    int64_t until = procfix_now_ms() + timeout_ms;
    while (rpc_longpoll_parked(&ps->polls) != n) {
        if (procfix_now_ms() >= until) {
            return false;
        }
        procfix_pause_ms(5); /* polling a counter, not waiting for a server to start */
    }
    return true;
}

/* one client's Poll on its own thread */
typedef struct poller {
    pthread_t thread;
    const char *addr;
    uint64_t have;
    uint32_t wait_ms;
    int deadline_ms;
    int rc;
    uint64_t version; /* the server's version when it answered */
    uint32_t end;     /* rpc_poll_end */
    int64_t took_ms;
    bool warm;        /* connect first (a health check), so a short deadline times the poll only */
} poller;

static void *poller_main(void *arg)
{
    poller *p = arg;
    rpc_client_t *cl = NULL;
    p->rc = rpc_client_init(&cl, p->addr, NULL);
    if (p->rc < 0) {
        return NULL;
    }
    if (p->warm) {
        /* answered by the server's CQ thread, not the long poll: the counts stay the poll's */
        Grpc__Health__V1__HealthCheckRequest h = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
        ProtobufCMessage *hr = NULL;
        p->rc = rpc_client_unary(cl, &hr, "/grpc.health.v1.Health/Check", &h.base,
                                 &grpc__health__v1__health_check_response__descriptor,
                                 &(rpc_call_opts){.deadline_ms = 20000});
        if (p->rc < 0) {
            rpc_client_free(cl);
            return NULL;
        }
        protobuf_c_message_free_unpacked(hr, NULL);
    }
    Twig__V1__GetWeightsRequest q = TWIG__V1__GET_WEIGHTS_REQUEST__INIT;
    q.have_version = p->have;
    q.wait_ms = p->wait_ms;
    rpc_call_opts o = {.deadline_ms = p->deadline_ms};
    ProtobufCMessage *reply = NULL;
    int64_t t0 = procfix_now_ms();
    p->rc =
        rpc_client_unary(cl, &reply, P_POLL, &q.base, &twig__v1__log_status_reply__descriptor, &o);
    p->took_ms = procfix_now_ms() - t0;
    if (p->rc == 0) {
        const Twig__V1__LogStatusReply *r = (const Twig__V1__LogStatusReply *)reply;
        p->version = r->end_offset;
        p->end = r->segments;
        protobuf_c_message_free_unpacked(reply, NULL);
    }
    rpc_client_free(cl);
    return NULL;
}

static void poller_start_as(poller *p, const char *addr, uint64_t have, uint32_t wait_ms,
                            int deadline_ms, bool warm)
{
    *p = (poller){.addr = addr, .have = have, .wait_ms = wait_ms, .deadline_ms = deadline_ms,
                  .warm = warm};
    cr_assert_eq(pthread_create(&p->thread, NULL, poller_main, p), 0);
}

static void poller_start(poller *p, const char *addr, uint64_t have, uint32_t wait_ms,
                         int deadline_ms)
{
    poller_start_as(p, addr, have, wait_ms, deadline_ms, false);
}

/* Publish(version): returns how many parked calls it answered */
static uint64_t publish(const char *addr, uint64_t version)
{
    rpc_client_t *cl = NULL;
    cr_assert_eq(rpc_client_init(&cl, addr, NULL), 0);
    Twig__V1__GetWeightsRequest q = TWIG__V1__GET_WEIGHTS_REQUEST__INIT;
    q.have_version = version;
    ProtobufCMessage *reply = NULL;
    rpc_call_opts o = {.deadline_ms = 5000};
    int rc = rpc_client_unary(cl, &reply, P_PUBLISH, &q.base,
                              &twig__v1__log_status_reply__descriptor, &o);
    cr_assert_eq(rc, 0, "Publish: %s", err_msg());
    uint64_t n = ((const Twig__V1__LogStatusReply *)reply)->end_offset;
    protobuf_c_message_free_unpacked(reply, NULL);
    rpc_client_free(cl);
    return n;
}

Test(longpoll, parked_calls_are_answered_when_news_for_them_arrives)
{
    poll_server ps;
    char addr[64];
    poll_server_start(&ps, addr, sizeof addr);
    /* three wait for anything past 0, one for anything past 1 */
    poller p[4];
    for (int i = 0; i < 3; i++) {
        poller_start(&p[i], addr, 0, 10000, 20000);
    }
    poller_start(&p[3], addr, 1, 10000, 20000);
    cr_assert(wait_parked(&ps, 4, 10000), "parked: %u", rpc_longpoll_parked(&ps.polls));

    /* version 1 is news to the three, not to the fourth */
    int64_t t0 = procfix_now_ms();
    cr_expect_eq(publish(addr, 1), 3);
    for (int i = 0; i < 3; i++) {
        pthread_join(p[i].thread, NULL);
        cr_expect_eq(p[i].rc, 0, "poll %d: %s", i, err_name(p[i].rc));
        cr_expect_eq(p[i].version, 1);
        cr_expect_eq(p[i].end, RPC_POLL_END_NEWS);
    }
    cr_expect_lt(procfix_now_ms() - t0, 5000, "news took %lld ms",
                 (long long)(procfix_now_ms() - t0));
    cr_expect(wait_parked(&ps, 1, 5000), "parked: %u", rpc_longpoll_parked(&ps.polls));

    /* version 2 is news to the fourth */
    cr_expect_eq(publish(addr, 2), 1);
    pthread_join(p[3].thread, NULL);
    cr_expect_eq(p[3].rc, 0, "%s", err_name(p[3].rc));
    cr_expect_eq(p[3].version, 2);
    cr_expect_eq(p[3].end, RPC_POLL_END_NEWS);

    /* a poll that already has news is answered without parking */
    poller now;
    poller_start(&now, addr, 1, 10000, 20000);
    pthread_join(now.thread, NULL);
    cr_expect_eq(now.rc, 0);
    cr_expect_eq(now.version, 2);
    cr_expect_eq(now.end, RPC_POLL_END_NEWS);
    cr_expect_lt(now.took_ms, 5000);

    poll_server_stop(&ps);
    cr_expect_eq(ps.answers[RPC_POLL_END_NEWS], 5);
    cr_expect_eq(ps.answers[RPC_POLL_END_TIMEOUT], 0);
    cr_expect_eq(ps.answers[RPC_POLL_END_SHUTDOWN], 0);
    cr_expect_eq(ps.polls.answered[RPC_POLL_END_NEWS], 5);
    cr_expect_eq(rpc_longpoll_parked(&ps.polls), 0);
}

Test(longpoll, a_wait_ends_with_a_reply_before_the_clients_deadline)
{
    poll_server ps;
    char addr[64];
    poll_server_start(&ps, addr, sizeof addr);
    /* the wait ends first: answered after about wait_ms */
    poller by_wait;
    poller_start(&by_wait, addr, 0, 300, 10000);
    /* the deadline comes first: answered RPC_POLL_MARGIN_MS before it, not DEADLINE_EXCEEDED */
    poller by_deadline;
    poller_start_as(&by_deadline, addr, 0, 30000, 600, true);
    pthread_join(by_wait.thread, NULL);
    pthread_join(by_deadline.thread, NULL);

    cr_expect_eq(by_wait.rc, 0, "%s", err_name(by_wait.rc));
    cr_expect_eq(by_wait.end, RPC_POLL_END_TIMEOUT);
    cr_expect_eq(by_wait.version, 0);
    cr_expect_geq(by_wait.took_ms, 290, "took %lld ms", (long long)by_wait.took_ms);
    cr_expect_lt(by_wait.took_ms, 5000, "took %lld ms", (long long)by_wait.took_ms);

    cr_expect_eq(by_deadline.rc, 0, "%s (a deadline, not a reply)", err_name(by_deadline.rc));
    cr_expect_eq(by_deadline.end, RPC_POLL_END_TIMEOUT);
    cr_expect_lt(by_deadline.took_ms, 600, "took %lld ms", (long long)by_deadline.took_ms);

    /* less time left than the margin: answered at once, still a reply (on a connected
     * channel: under load a fresh one could spend the whole deadline connecting) */
    poller no_time;
    poller_start_as(&no_time, addr, 0, 30000, RPC_POLL_MARGIN_MS - 10, true);
    pthread_join(no_time.thread, NULL);
    cr_expect_eq(no_time.rc, 0, "%s", err_name(no_time.rc));
    cr_expect_eq(no_time.end, RPC_POLL_END_TIMEOUT);

    poll_server_stop(&ps);
    cr_expect_eq(ps.answers[RPC_POLL_END_TIMEOUT], 3);
    cr_expect_eq(ps.answers[RPC_POLL_END_NEWS], 0);
    cr_expect_eq(ps.polls.answered[RPC_POLL_END_TIMEOUT], 3);
}

Test(longpoll, close_answers_every_parked_call_at_once)
{
    poll_server ps;
    char addr[64];
    poll_server_start(&ps, addr, sizeof addr);
    poller p[MAX_CLIENTS];
    for (int i = 0; i < MAX_CLIENTS; i++) {
        poller_start(&p[i], addr, (uint64_t)i, 30000, 40000);
    }
    cr_assert(wait_parked(&ps, MAX_CLIENTS, 10000), "parked: %u", rpc_longpoll_parked(&ps.polls));
    int64_t t0 = procfix_now_ms();
    poll_server_stop(&ps); /* closes the polls, then shuts the server down */
    for (int i = 0; i < MAX_CLIENTS; i++) {
        pthread_join(p[i].thread, NULL);
        cr_expect_eq(p[i].rc, 0, "poll %d: %s", i, err_name(p[i].rc));
        cr_expect_eq(p[i].end, RPC_POLL_END_SHUTDOWN);
    }
    cr_expect_lt(procfix_now_ms() - t0, 5000);
    cr_expect_eq(ps.answers[RPC_POLL_END_SHUTDOWN], MAX_CLIENTS);
    cr_expect_eq(ps.polls.answered[RPC_POLL_END_SHUTDOWN], MAX_CLIENTS);
    cr_expect_eq(ps.answers[RPC_POLL_END_NEWS] + ps.answers[RPC_POLL_END_TIMEOUT], 0);
    cr_expect_eq(rpc_longpoll_parked(&ps.polls), 0);
    cr_expect(ps.polls.closed);
}
