/* rpc_server.c - the generic gRPC server: method table, CQ thread, loop bridge, health,
 * graceful shutdown. The contract is in rpc.h.
 *
 * Life of a call (one rpc_call_t from request to final event):
 *   TAG_NEW   grpc_server_request_call completed: look the path up, post a replacement,
 *             count the call live, send initial metadata and arm RECV_MESSAGE
 *   TAG_RECV  a message (or end of stream) arrived: unpack, then run the handler here or
 *             queue it for the loop thread; streams re-arm RECV_MESSAGE after each handler
 *   TAG_DONE  the final batch (status [+ reply] + RECV_CLOSE_ON_SERVER) completed: release
 *             the gRPC side, count the call dead, drop the ref
 * Only the CQ thread sees events. The handler's thread (CQ or loop), or whichever thread calls
 * rpc_call_reply, starts batches, never two on one call at once. The context is freed when
 * its refs reach 0: one for the gRPC side (dropped at TAG_DONE), one per handler run.
 *
 * Shutdown: NOT_SERVING, grpc_server_shutdown_and_notify, at the grace deadline
 * grpc_server_cancel_all_calls (and the loop queue is answered UNAVAILABLE), and the CQ is
 * shut down only once the shutdown tag came AND no call is live AND no request_call is
 * posted; a call the application holds keeps the CQ alive (shutting the CQ down under it
 * makes its later start_batch abort the process).
 */
#include "common/rpc/rpc.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/status.h>
#include <grpc/support/time.h>

#include "common/base/clock.h"
#include "common/base/err.h"
#include "common/base/log.h"
#include "common/base/mem.h"
#include "common/base/netaddr.h"
#include "common/rpc/rpc_priv.h"
#include "proto/health.pb-c.h"

#define RPC_POSTED_REQUESTS 8  /* request_call contexts kept waiting for new calls */
#define RPC_TEXT_MAX 512

enum tag_kind { TAG_NEW, TAG_RECV, TAG_DONE, TAG_SHUTDOWN };

typedef struct srv_tag {
    enum tag_kind kind;
    rpc_call_t *call;  /* NULL for TAG_SHUTDOWN */
} srv_tag;

struct rpc_call {
    rpc_server_t *srv;
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array md;
    char *path;                 /* copy of details.method */
    const rpc_method *method;   /* NULL: health or unknown */
    bool is_health;
    bool md_sent;               /* initial metadata went out */
    srv_tag t_new, t_recv, t_done;
    grpc_byte_buffer *recv_bb;  /* RECV_MESSAGE target: the core's until TAG_RECV */
    grpc_byte_buffer *reply_bb; /* destroyed at TAG_DONE */
    int cancelled;              /* RECV_CLOSE_ON_SERVER target */
    ProtobufCMessage *msg;      /* unary request, kept until the context is freed */
    ProtobufCMessage *pending;  /* message waiting in the loop queue (NULL: end of stream) */
    uint64_t n_msgs;
    atomic_bool replied;
    atomic_int refs;
    void *data;
    void (*data_free)(void *);  /* runs on data when the context is freed */
    rpc_call_t *next;           /* loop queue */
};

typedef struct health_svc {
    char *name;
    bool serving;
} health_svc;

struct rpc_server {
    grpc_server *server;
    grpc_completion_queue *cq;
    rpc_method *methods;         /* (n_methods) copied table */
    size_t n_methods;
    void *app;
    int port;
    char *listen;
    bool tls;                    /* cfg.tls was on: mutual TLS on every connection */

    /* health: [0] is "", [1] "readiness", then one per service of the table; liveness is
     * not in the table: it is the loop's heartbeat */
    pthread_mutex_t health_lock;
    health_svc *svcs;            /* (n_svcs) */
    size_t n_svcs;
    int live_stale_ms;
    atomic_uint_fast64_t beat_ms; /* monotonic ms of the loop's last heartbeat */
    uv_timer_t beat;              /* on the loop: stamps beat_ms every RPC_HEARTBEAT_MS */
    bool beat_open;               /* uv_timer_init done, close callback not yet run */

    /* loop bridge */
    uv_loop_t *loop;
    uv_async_t wake;
    bool wake_open;              /* uv_async_init done, close callback not yet run */
    pthread_mutex_t q_lock;
    rpc_call_t *q_head;
    rpc_call_t **q_tail;
    bool cq_gone;                /* under q_lock: the CQ thread has ended */

    /* lifetime */
    pthread_t cq_thread;
    bool started;
    bool joined;
    pthread_mutex_t sd_lock;
    bool shutting_down;          /* under sd_lock; also read atomically below */
    atomic_bool sd_flag;
    gpr_timespec grace_deadline; /* monotonic; written before sd_flag */
    srv_tag t_shutdown;

    atomic_int live;             /* calls between TAG_NEW(ok) and TAG_DONE; CQ thread writes */
    int max_calls;               /* live calls at most (health checks aside) */
    atomic_uint_fast64_t refused_busy;   /* calls refused because max_calls were live */
    atomic_uint_fast64_t errors[RPC_N_STATUS]; /* calls ended with each non-OK status */

    /* CQ thread only */
    int posted;                  /* request_call contexts outstanding */
    bool shutdown_seen;
    bool cancelled_all;
    bool cq_shut;
};

/* ---- messages in byte buffers ---- */

/* NULL: did not parse */
static ProtobufCMessage *bb_to_msg(const ProtobufCMessageDescriptor *d, grpc_byte_buffer *bb)
{
    grpc_byte_buffer_reader r;
    if (!grpc_byte_buffer_reader_init(&r, bb)) {
        return NULL;
    }
    grpc_slice s = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, GRPC_SLICE_LENGTH(s),
                                                    GRPC_SLICE_START_PTR(s));
    grpc_slice_unref(s);
    return m;
}

static int64_t ms_between(gpr_timespec from, gpr_timespec to)
{
    return (int64_t)(to.tv_sec - from.tv_sec) * 1000 + (to.tv_nsec - from.tv_nsec) / 1000000;
}

/* ---- call contexts ---- */

static void call_unref(rpc_call_t *c)
{
    if (atomic_fetch_sub(&c->refs, 1) != 1) {
        return;
    }
    if (c->msg) {
        protobuf_c_message_free_unpacked(c->msg, NULL);
    }
    if (c->data && c->data_free) {
        c->data_free(c->data);
    }
    free(c->path);
    free(c);
}

static void start_batch(rpc_call_t *c, const grpc_op *ops, size_t n, srv_tag *tag)
{
    grpc_call_error e = grpc_call_start_batch(c->call, ops, n, tag, NULL);
    if (e != GRPC_CALL_OK) {
        /* no event would ever come for it: the call could never end */
        TWIG_PANIC("grpc_call_start_batch failed (%d) on %s", (int)e, c->path);
    }
}

/* the final batch: status, optional reply, and the close; its event ends the call */
static void call_finish(rpc_call_t *c, grpc_status_code code, const char *text,
                        grpc_byte_buffer *reply)
{
    grpc_op ops[4];
    memset(ops, 0, sizeof ops);
    grpc_op *op = ops;
    grpc_slice details = grpc_slice_from_copied_string(text ? text : "");
    if (code != GRPC_STATUS_OK) {
        atomic_fetch_add(&c->srv->errors[(unsigned)code < RPC_N_STATUS ? code : GRPC_STATUS_UNKNOWN],
                         1);
    }
    if (!c->md_sent) {
        c->md_sent = true;
        op->op = GRPC_OP_SEND_INITIAL_METADATA;
        op++;
    }
    if (reply) {
        c->reply_bb = reply;
        op->op = GRPC_OP_SEND_MESSAGE;
        op->data.send_message.send_message = reply;
        op++;
    }
    op->op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    op->data.send_status_from_server.status = code;
    op->data.send_status_from_server.status_details = text ? &details : NULL;
    op++;
    op->op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op->data.recv_close_on_server.cancelled = &c->cancelled;
    op++;
    start_batch(c, ops, (size_t)(op - ops), &c->t_done);
    grpc_slice_unref(details);
}

/* the layer's own error reply (the handler never replied) */
static void call_fail(rpc_call_t *c, grpc_status_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void call_fail(rpc_call_t *c, grpc_status_code code, const char *fmt, ...)
{
    if (atomic_exchange(&c->replied, true)) {
        return;
    }
    char text[RPC_TEXT_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    call_finish(c, code, text, NULL);
}

void rpc_call_reply(rpc_call_t *call, int rc, const ProtobufCMessage *reply)
{
    TWIG_ASSERT(call != NULL);
    if (atomic_exchange(&call->replied, true)) {
        TWIG_PANIC("rpc_call_reply: %s was already replied to", call->path);
    }
    if (rc == 0) {
        TWIG_ASSERT(reply != NULL);
        call_finish(call, GRPC_STATUS_OK, NULL, rpc_bb_from_msg(reply));
        return;
    }
    const char *text = err_msg();
    if (!text[0]) {
        text = err_str(rc);
    }
    call_finish(call, (grpc_status_code)rpc_err_to_status(rc), text, NULL);
}

struct rpc_packed {
    atomic_int refs;
    size_t n;
    uint8_t bytes[];
};

rpc_packed_t *rpc_packed_from_msg(const ProtobufCMessage *msg)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    rpc_packed_t *p = xmalloc(sizeof *p + (n ? n : 1));   /* empty messages are legal */
    atomic_init(&p->refs, 1);
    p->n = n;
    protobuf_c_message_pack(msg, p->bytes);
    return p;
}

void rpc_packed_unref(rpc_packed_t *p)
{
    if (p && atomic_fetch_sub(&p->refs, 1) == 1) {
        free(p);
    }
}

size_t rpc_packed_size(const rpc_packed_t *p)
{
    return p->n;
}

/* gRPC drops the slice (its reference) once the reply is sent or the call is gone */
static void packed_slice_done(void *p)
{
    rpc_packed_unref(p);
}

void rpc_call_reply_packed(rpc_call_t *call, rpc_packed_t *p)
{
    TWIG_ASSERT(call != NULL && p != NULL);
    if (atomic_exchange(&call->replied, true)) {
        TWIG_PANIC("rpc_call_reply_packed: %s was already replied to", call->path);
    }
    atomic_fetch_add(&p->refs, 1);
    grpc_slice s = grpc_slice_new_with_user_data(p->bytes, p->n, packed_slice_done, p);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    call_finish(call, GRPC_STATUS_OK, NULL, bb);
}

const char *rpc_call_path(const rpc_call_t *call)
{
    return call->path;
}

int64_t rpc_call_remaining_ms(const rpc_call_t *call)
{
    gpr_timespec d = call->details.deadline;
    if (gpr_time_cmp(d, gpr_inf_future(d.clock_type)) == 0) {
        return INT64_MAX;
    }
    d = gpr_convert_clock_type(d, GPR_CLOCK_MONOTONIC);
    return ms_between(gpr_now(GPR_CLOCK_MONOTONIC), d);
}

uint64_t rpc_call_poll_ms(const rpc_call_t *call, uint64_t wait_ms)
{
    int64_t left = rpc_call_remaining_ms(call);
    if (left == INT64_MAX) {
        return wait_ms;
    }
    left -= RPC_POLL_MARGIN_MS;
    if (left <= 0) {
        return 0;
    }
    return (uint64_t)left < wait_ms ? (uint64_t)left : wait_ms;
}

uint64_t rpc_call_msg_count(const rpc_call_t *call)
{
    return call->n_msgs;
}

void rpc_call_set_data(rpc_call_t *call, void *data)
{
    call->data = data;
}

void *rpc_call_data(const rpc_call_t *call)
{
    return call->data;
}

void rpc_call_set_data_free(rpc_call_t *call, void (*fn)(void *data))
{
    call->data_free = fn;
}

/* ---- handlers ---- */

static void arm_recv(rpc_call_t *c, bool with_initial_md)
{
    grpc_op ops[2];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    if (with_initial_md) {
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
        c->md_sent = true;
    }
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n].data.recv_message.recv_message = &c->recv_bb;
    n++;
    start_batch(c, ops, n, &c->t_recv);
}

/* run the handler for msg (the unary request, a stream message, or NULL at a stream's end);
 * any thread; the caller holds a ref on c, dropped here */
static void run_handler(rpc_call_t *c, ProtobufCMessage *msg)
{
    const rpc_method *m = c->method;
    rpc_server_t *srv = c->srv;
    bool stream = m->kind == RPC_KIND_CLIENT_STREAM;
    if (!stream) {
        c->msg = msg;  /* valid until the context goes */
    }
    err_clear();
    int rc = m->handler(c, msg, srv->app);
    if (stream && msg) {
        protobuf_c_message_free_unpacked(msg, NULL);
    }
    if (rc < 0) {
        if (!atomic_load(&c->replied)) {
            const char *text = err_msg();
            call_fail(c, (grpc_status_code)rpc_err_to_status(rc), "%s",
                      text[0] ? text : err_str(rc));
        }
    } else if (stream && msg) {
        if (!atomic_load(&c->replied)) {
            arm_recv(c, false);  /* read on */
        }
    } else if (rc != RPC_DEFER && !atomic_load(&c->replied)) {
        log_error("event=rpc_no_reply path=%s rc=%d", c->path, rc);
        call_fail(c, GRPC_STATUS_INTERNAL, "%s: the handler returned without a reply", c->path);
    }
    call_unref(c);
}

/* CQ thread: run the handler now or hand it to the loop */
static void dispatch(rpc_call_t *c, ProtobufCMessage *msg)
{
    rpc_server_t *srv = c->srv;
    if (srv->cancelled_all) {
        if (msg) {
            protobuf_c_message_free_unpacked(msg, NULL);
        }
        call_fail(c, GRPC_STATUS_UNAVAILABLE, "%s: the server is shutting down", c->path);
        return;
    }
    atomic_fetch_add(&c->refs, 1);
    if (c->method->run == RPC_RUN_ON_CQ) {
        run_handler(c, msg);
        return;
    }
    c->pending = msg;
    c->next = NULL;
    pthread_mutex_lock(&srv->q_lock);
    *srv->q_tail = c;
    srv->q_tail = &c->next;
    pthread_mutex_unlock(&srv->q_lock);
    uv_async_send(&srv->wake);
}

/* take the whole loop queue */
static rpc_call_t *queue_take(rpc_server_t *srv, bool *cq_gone)
{
    pthread_mutex_lock(&srv->q_lock);
    rpc_call_t *c = srv->q_head;
    srv->q_head = NULL;
    srv->q_tail = &srv->q_head;
    if (cq_gone) {
        *cq_gone = srv->cq_gone;
    }
    pthread_mutex_unlock(&srv->q_lock);
    return c;
}

static void on_wake_closed(uv_handle_t *h)
{
    rpc_server_t *srv = h->data;
    srv->wake_open = false;
}

static void on_beat_closed(uv_handle_t *h)
{
    rpc_server_t *srv = h->data;
    srv->beat_open = false;
}

/* loop thread: the loop turns, so the process is live */
static void on_beat(uv_timer_t *t)
{
    rpc_server_t *srv = t->data;
    atomic_store(&srv->beat_ms, clock_now_ms());
}

/* loop thread: one wake-up may stand for many sends */
static void on_wake(uv_async_t *h)
{
    rpc_server_t *srv = h->data;
    bool gone = false;
    rpc_call_t *c = queue_take(srv, &gone);
    while (c) {
        rpc_call_t *next = c->next;  /* the handler may end c */
        ProtobufCMessage *msg = c->pending;
        c->pending = NULL;
        run_handler(c, msg);
        c = next;
    }
    if (gone && !uv_is_closing((uv_handle_t *)h)) {
        uv_close((uv_handle_t *)h, on_wake_closed);
        if (srv->beat_open && !uv_is_closing((uv_handle_t *)&srv->beat)) {
            uv_close((uv_handle_t *)&srv->beat, on_beat_closed);
        }
    }
}

/* CQ thread, after the grace period: answer what still waits for the loop */
static void queue_fail_all(rpc_server_t *srv)
{
    rpc_call_t *c = queue_take(srv, NULL);
    while (c) {
        rpc_call_t *next = c->next;
        if (c->pending) {
            protobuf_c_message_free_unpacked(c->pending, NULL);
            c->pending = NULL;
        }
        call_fail(c, GRPC_STATUS_UNAVAILABLE, "%s: the server is shutting down", c->path);
        call_unref(c);
        c = next;
    }
}

/* ---- health ---- */

static void health_set_all(rpc_server_t *srv, bool serving)
{
    pthread_mutex_lock(&srv->health_lock);
    for (size_t i = 0; i < srv->n_svcs; i++) {
        srv->svcs[i].serving = serving;
    }
    pthread_mutex_unlock(&srv->health_lock);
}

int rpc_server_set_serving(rpc_server_t *srv, const char *service, bool serving)
{
    int rc = err_set(TWIG_ENOTFOUND, "no service named \"%s\" on this server", service);
    pthread_mutex_lock(&srv->health_lock);
    for (size_t i = 0; i < srv->n_svcs; i++) {
        if (strcmp(srv->svcs[i].name, service) == 0) {
            /* once shutting down, stay NOT_SERVING */
            srv->svcs[i].serving = serving && !atomic_load(&srv->sd_flag);
            rc = 0;
            break;
        }
    }
    pthread_mutex_unlock(&srv->health_lock);
    if (rc == 0) {
        err_clear();
    }
    return rc;
}

bool rpc_server_loop_live(rpc_server_t *srv)
{
    if (!srv->loop || !srv->started) {
        return true;   /* no loop: the CQ thread answering is all there is to check */
    }
    uint64_t beat = atomic_load(&srv->beat_ms);
    return clock_now_ms() - beat <= (uint64_t)srv->live_stale_ms;
}

int rpc_server_set_ready(rpc_server_t *srv, bool ready)
{
    int changed = 0;
    bool sd = atomic_load(&srv->sd_flag);
    pthread_mutex_lock(&srv->health_lock);
    changed = srv->svcs[0].serving != (ready && !sd);
    for (size_t i = 0; i < srv->n_svcs; i++) {
        srv->svcs[i].serving = ready && !sd;   /* once shutting down, stay NOT_SERVING */
    }
    pthread_mutex_unlock(&srv->health_lock);
    return changed;
}

static void health_check(rpc_call_t *c, grpc_byte_buffer *bb)
{
    rpc_server_t *srv = c->srv;
    Grpc__Health__V1__HealthCheckRequest *q = (Grpc__Health__V1__HealthCheckRequest *)bb_to_msg(
        &grpc__health__v1__health_check_request__descriptor, bb);
    if (!q) {
        call_fail(c, GRPC_STATUS_INVALID_ARGUMENT,
                  "%s: request is not a valid grpc.health.v1.HealthCheckRequest", c->path);
        return;
    }
    int status = -1;
    if (strcmp(q->service, RPC_HEALTH_LIVENESS) == 0) {
        bool live = !atomic_load(&srv->sd_flag) && rpc_server_loop_live(srv);
        status = live ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                      : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
    }
    pthread_mutex_lock(&srv->health_lock);
    for (size_t i = 0; status < 0 && i < srv->n_svcs; i++) {
        if (strcmp(srv->svcs[i].name, q->service) == 0) {
            status = srv->svcs[i].serving
                         ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                         : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
            break;
        }
    }
    pthread_mutex_unlock(&srv->health_lock);
    if (status < 0) {
        call_fail(c, GRPC_STATUS_NOT_FOUND, "unknown service \"%.200s\"", q->service);
    } else {
        Grpc__Health__V1__HealthCheckResponse r = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
        r.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)status;
        atomic_store(&c->replied, true);
        call_finish(c, GRPC_STATUS_OK, NULL, rpc_bb_from_msg(&r.base));
    }
    protobuf_c_message_free_unpacked(&q->base, NULL);
}

/* ---- the CQ thread ---- */

static void post_request(rpc_server_t *srv)
{
    rpc_call_t *c = xcalloc(1, sizeof *c);
    c->srv = srv;
    grpc_call_details_init(&c->details);
    grpc_metadata_array_init(&c->md);
    c->t_new = (srv_tag){TAG_NEW, c};
    c->t_recv = (srv_tag){TAG_RECV, c};
    c->t_done = (srv_tag){TAG_DONE, c};
    atomic_init(&c->refs, 1);
    atomic_init(&c->replied, false);
    grpc_call_error e = grpc_server_request_call(srv->server, &c->call, &c->details, &c->md,
                                                 srv->cq, srv->cq, &c->t_new);
    if (e != GRPC_CALL_OK) {
        TWIG_PANIC("grpc_server_request_call failed (%d)", (int)e);
    }
    srv->posted++;
}

static void free_unstarted(rpc_call_t *c)
{
    grpc_call_details_destroy(&c->details);
    grpc_metadata_array_destroy(&c->md);
    call_unref(c);
}

static void on_new(rpc_call_t *c, bool ok)
{
    rpc_server_t *srv = c->srv;
    srv->posted--;
    if (!ok) {
        free_unstarted(c);  /* shutdown: no call came */
        return;
    }
    if (!atomic_load(&srv->sd_flag)) {
        post_request(srv);
    }
    srv->live++;
    c->path = xmalloc(GRPC_SLICE_LENGTH(c->details.method) + 1);
    memcpy(c->path, GRPC_SLICE_START_PTR(c->details.method), GRPC_SLICE_LENGTH(c->details.method));
    c->path[GRPC_SLICE_LENGTH(c->details.method)] = '\0';

    if (strcmp(c->path, RPC_HEALTH_PATH) == 0) {
        c->is_health = true;
    } else {
        for (size_t i = 0; i < srv->n_methods; i++) {
            if (strcmp(srv->methods[i].path, c->path) == 0) {
                c->method = &srv->methods[i];
                break;
            }
        }
    }
    if (!c->is_health && !c->method) {
        call_fail(c, GRPC_STATUS_UNIMPLEMENTED, "unknown method %s", c->path);
        return;
    }
    /* every live call holds its request and its state: peers get at most max_calls of them
     * (health checks always pass, so probes still see a busy server) */
    if (!c->is_health && srv->live > srv->max_calls) {
        atomic_fetch_add(&srv->refused_busy, 1);
        call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
                  "%s: the server holds %d calls already, at most %d: retry later", c->path,
                  srv->live - 1, srv->max_calls);
        return;
    }
    arm_recv(c, true);
}

static void on_recv(rpc_call_t *c, bool ok)
{
    grpc_byte_buffer *bb = c->recv_bb;  /* take it before anything can re-arm */
    c->recv_bb = NULL;
    if (!ok) {
        /* the client went away, or the message was over the size limit */
        if (bb) {
            grpc_byte_buffer_destroy(bb);
        }
        call_fail(c, GRPC_STATUS_CANCELLED, "%s: receiving the request failed", c->path);
        return;
    }
    if (c->is_health) {
        if (!bb) {
            call_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "%s: no request message", c->path);
            return;
        }
        health_check(c, bb);
        grpc_byte_buffer_destroy(bb);
        return;
    }
    const rpc_method *m = c->method;
    bool stream = m->kind == RPC_KIND_CLIENT_STREAM;
    if (!bb) {
        if (stream) {
            dispatch(c, NULL);  /* end of stream */
        } else {
            call_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "%s: no request message", c->path);
        }
        return;
    }
    ProtobufCMessage *msg = bb_to_msg(m->request, bb);
    grpc_byte_buffer_destroy(bb);
    if (!msg) {
        if (stream) {
            call_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "%s: message #%" PRIu64 " is not a valid %s",
                      c->path, c->n_msgs, m->request->name);
        } else {
            call_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "%s: request is not a valid %s", c->path,
                      m->request->name);
        }
        return;
    }
    c->n_msgs++;
    dispatch(c, msg);
}

static void on_done(rpc_call_t *c)
{
    rpc_server_t *srv = c->srv;
    if (c->reply_bb) {
        grpc_byte_buffer_destroy(c->reply_bb);
        c->reply_bb = NULL;
    }
    grpc_call_unref(c->call);
    c->call = NULL;
    grpc_call_details_destroy(&c->details);
    grpc_metadata_array_destroy(&c->md);
    srv->live--;
    call_unref(c);
}

/* after every event: cancel at the grace deadline, end the CQ when nothing is left */
static void shutdown_progress(rpc_server_t *srv)
{
    if (!atomic_load(&srv->sd_flag)) {
        return;
    }
    if (!srv->cancelled_all &&
        gpr_time_cmp(gpr_now(GPR_CLOCK_MONOTONIC), srv->grace_deadline) >= 0) {
        if (srv->live > 0) {
            log_info("event=rpc_cancel_all port=%d live=%d", srv->port, srv->live);
        }
        /* first what still waits for the loop (no handler ran: say why), then the rest */
        srv->cancelled_all = true;
        if (srv->loop) {
            queue_fail_all(srv);
        }
        grpc_server_cancel_all_calls(srv->server);
    }
    if (!srv->cq_shut && srv->shutdown_seen && srv->live == 0 && srv->posted == 0) {
        grpc_completion_queue_shutdown(srv->cq);
        srv->cq_shut = true;
    }
}

/* the CQ loop; returns at GRPC_QUEUE_SHUTDOWN */
static void cq_run(rpc_server_t *srv)
{
    for (;;) {
        gpr_timespec until = gpr_inf_future(GPR_CLOCK_MONOTONIC);
        if (atomic_load(&srv->sd_flag) && !srv->cancelled_all) {
            until = srv->grace_deadline;
        }
        grpc_event ev = grpc_completion_queue_next(srv->cq, until, NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) {
            break;
        }
        if (ev.type == GRPC_OP_COMPLETE) {
            srv_tag *t = ev.tag;
            switch (t->kind) {
            case TAG_NEW:
                on_new(t->call, ev.success != 0);
                break;
            case TAG_RECV:
                on_recv(t->call, ev.success != 0);
                break;
            case TAG_DONE:
                on_done(t->call);
                break;
            case TAG_SHUTDOWN:
                srv->shutdown_seen = true;
                break;
            }
        }
        shutdown_progress(srv);
    }
}

static void *cq_main(void *arg)
{
    rpc_server_t *srv = arg;
    cq_run(srv);
    if (srv->loop) {
        pthread_mutex_lock(&srv->q_lock);
        srv->cq_gone = true;
        pthread_mutex_unlock(&srv->q_lock);
        uv_async_send(&srv->wake);
    }
    return NULL;
}

/* ---- server lifetime ---- */

/* "/pkg.Service/Method" -> length of "pkg.Service", or 0 if path has another shape */
static size_t path_service_len(const char *path)
{
    if (!path || path[0] != '/') {
        return 0;
    }
    const char *slash = strchr(path + 1, '/');
    if (!slash || slash == path + 1 || slash[1] == '\0' || strchr(slash + 1, '/')) {
        return 0;
    }
    return (size_t)(slash - path - 1);
}

static int validate_table(const rpc_server_cfg *cfg, const rpc_method *methods, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const rpc_method *m = &methods[i];
        if (path_service_len(m->path) == 0) {
            return err_set(-EINVAL, "method %zu: path \"%s\" is not /package.Service/Method", i,
                           m->path ? m->path : "(null)");
        }
        if (!m->request || !m->handler) {
            return err_set(-EINVAL, "method %s: request type and handler are required", m->path);
        }
        if (m->kind != RPC_KIND_UNARY && m->kind != RPC_KIND_CLIENT_STREAM) {
            return err_set(-EINVAL, "method %s: kind %d is unknown", m->path, (int)m->kind);
        }
        if (m->run == RPC_RUN_ON_LOOP && !cfg->loop) {
            return err_set(-EINVAL, "method %s runs on the loop but the server has no loop",
                           m->path);
        }
        if (m->run != RPC_RUN_ON_LOOP && m->run != RPC_RUN_ON_CQ) {
            return err_set(-EINVAL, "method %s: run %d is unknown", m->path, (int)m->run);
        }
        if (strcmp(m->path, RPC_HEALTH_PATH) == 0) {
            return err_set(-EINVAL, "method %s is built in", m->path);
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(methods[j].path, m->path) == 0) {
                return err_set(-EINVAL, "method %s is listed twice", m->path);
            }
        }
    }
    return 0;
}

static void health_init(rpc_server_t *srv)
{
    srv->svcs = xcalloc(srv->n_methods + 2, sizeof *srv->svcs);
    srv->svcs[0] = (health_svc){xstrdup(""), true};
    srv->svcs[1] = (health_svc){xstrdup(RPC_HEALTH_READINESS), true};
    srv->n_svcs = 2;
    for (size_t i = 0; i < srv->n_methods; i++) {
        const char *p = srv->methods[i].path;
        size_t len = path_service_len(p);
        bool seen = false;
        for (size_t k = 2; k < srv->n_svcs; k++) {
            seen |= strlen(srv->svcs[k].name) == len && memcmp(srv->svcs[k].name, p + 1, len) == 0;
        }
        if (!seen) {
            char *name = xmalloc(len + 1);
            memcpy(name, p + 1, len);
            name[len] = '\0';
            srv->svcs[srv->n_svcs++] = (health_svc){name, true};
        }
    }
}

int rpc_server_init(rpc_server_t **out, const rpc_server_cfg *cfg, const rpc_method *methods,
                    size_t n_methods)
{
    *out = NULL;
    if (!cfg->listen || !cfg->listen[0]) {
        return err_set(-EINVAL, "rpc server: listen address is empty");
    }
    int rc = validate_table(cfg, methods, n_methods);
    if (rc < 0) {
        return rc;
    }
    if ((rc = netaddr_check_bindable(cfg->listen)) < 0) {
        return rc;
    }
    size_t max_msg = cfg->max_msg_bytes ? cfg->max_msg_bytes : RPC_DEFAULT_MAX_MSG_BYTES;
    if (max_msg > INT32_MAX) {
        return err_set(-EINVAL, "rpc server: max_msg_bytes %zu exceeds %d", max_msg, INT32_MAX);
    }
    if (cfg->max_calls < 0) {
        return err_set(-EINVAL, "rpc server: max_calls %d is negative", cfg->max_calls);
    }
    if (cfg->live_stale_ms < 0) {
        return err_set(-EINVAL, "rpc server: live_stale_ms %d is negative", cfg->live_stale_ms);
    }
    int keepalive = cfg->keepalive_ms > 0 ? cfg->keepalive_ms : RPC_DEFAULT_KEEPALIVE_MS;
    int keepalive_to = cfg->keepalive_timeout_ms > 0 ? cfg->keepalive_timeout_ms
                                                     : RPC_DEFAULT_KEEPALIVE_TIMEOUT_MS;

    rpc_grpc_init();
    grpc_server_credentials *creds = NULL;
    if ((rc = rpc_tls_server_creds(&creds, cfg->tls)) < 0) {
        grpc_shutdown();   /* rpc_grpc_init's reference */
        return rc;
    }
    rpc_server_t *srv = xcalloc(1, sizeof *srv);
    srv->tls = rpc_tls_on(cfg->tls);
    srv->methods = xmalloc((n_methods ? n_methods : 1) * sizeof *srv->methods);
    if (n_methods) {
        memcpy(srv->methods, methods, n_methods * sizeof *methods);
    }
    srv->n_methods = n_methods;
    srv->app = cfg->app;
    srv->loop = cfg->loop;
    srv->live_stale_ms = cfg->live_stale_ms ? cfg->live_stale_ms : RPC_DEFAULT_LIVE_STALE_MS;
    srv->max_calls = cfg->max_calls ? cfg->max_calls : RPC_DEFAULT_MAX_CALLS;
    srv->listen = xstrdup(cfg->listen);
    srv->t_shutdown = (srv_tag){TAG_SHUTDOWN, NULL};
    srv->q_tail = &srv->q_head;
    pthread_mutex_init(&srv->health_lock, NULL);
    pthread_mutex_init(&srv->q_lock, NULL);
    pthread_mutex_init(&srv->sd_lock, NULL);
    atomic_init(&srv->sd_flag, false);
    health_init(srv);

    grpc_arg a[8];
    size_t na = 0;
    rpc_arg_int(a, &na, GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, (int)max_msg);
    rpc_arg_int(a, &na, GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, (int)max_msg);
    rpc_arg_int(a, &na, GRPC_ARG_ALLOW_REUSEPORT, 0);
    rpc_arg_int(a, &na, GRPC_ARG_KEEPALIVE_TIME_MS, keepalive);
    rpc_arg_int(a, &na, GRPC_ARG_KEEPALIVE_TIMEOUT_MS, keepalive_to);
    /* accept the clients' keepalive pings (rpc_client pings only during calls) */
    rpc_arg_int(a, &na, GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
    rpc_arg_int(a, &na, GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
    grpc_channel_args args = {.num_args = na, .args = a};
    srv->server = grpc_server_create(&args, NULL);
    srv->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(srv->server, srv->cq, NULL);
    srv->port = grpc_server_add_http2_port(srv->server, srv->listen, creds);
    grpc_server_credentials_release(creds);
    if (srv->port == 0) {
        rc = err_set(-EADDRINUSE, "rpc server: cannot listen on %s (gRPC refused it; taken "
                     "since the check?)",
                     srv->listen);
        rpc_server_free(srv);
        return rc;
    }
    *out = srv;
    return 0;
}

uint64_t rpc_server_refused_busy(const rpc_server_t *srv)
{
    return atomic_load(&srv->refused_busy);
}

void rpc_server_error_counts(const rpc_server_t *srv, uint64_t out[RPC_N_STATUS])
{
    for (int i = 0; i < RPC_N_STATUS; i++) {
        out[i] += atomic_load(&srv->errors[i]);
    }
}

int rpc_server_live_calls(const rpc_server_t *srv)
{
    return atomic_load(&srv->live);
}

int rpc_server_port(const rpc_server_t *srv)
{
    return srv->port;
}

int rpc_server_start(rpc_server_t *srv)
{
    if (srv->started) {
        return err_set(-EINVAL, "rpc server on %s: already started", srv->listen);
    }
    if (srv->loop) {
        uv_async_init(srv->loop, &srv->wake, on_wake);
        srv->wake.data = srv;
        srv->wake_open = true;
        atomic_store(&srv->beat_ms, clock_now_ms());
        uv_timer_init(srv->loop, &srv->beat);
        srv->beat.data = srv;
        srv->beat_open = true;
        uv_timer_start(&srv->beat, on_beat, RPC_HEARTBEAT_MS, RPC_HEARTBEAT_MS);
    }
    grpc_server_start(srv->server);
    for (int i = 0; i < RPC_POSTED_REQUESTS; i++) {
        post_request(srv);
    }
    srv->started = true;
    if (pthread_create(&srv->cq_thread, NULL, cq_main, srv) != 0) {
        TWIG_PANIC("cannot start the rpc CQ thread");
    }
    log_info("event=rpc_listen addr=%s port=%d methods=%zu tls=%s", srv->listen, srv->port,
             srv->n_methods, srv->tls ? "mutual" : "off");
    return 0;
}

void rpc_server_shutdown(rpc_server_t *srv, int grace_ms)
{
    /* held throughout: rpc_server_free takes it too, so the server cannot be freed (by the
     * loop thread, once the CQ is done) while another thread is still in here */
    pthread_mutex_lock(&srv->sd_lock);
    if (srv->shutting_down) {
        pthread_mutex_unlock(&srv->sd_lock);
        return;
    }
    srv->shutting_down = true;
    if (grace_ms < 0) {
        grace_ms = 0;
    }
    srv->grace_deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                       gpr_time_from_millis(grace_ms, GPR_TIMESPAN));
    atomic_store(&srv->sd_flag, true);
    health_set_all(srv, false);
    if (srv->started) {
        log_info("event=rpc_shutdown port=%d grace_ms=%d live=%d", srv->port, grace_ms,
                 atomic_load(&srv->live));
    }
    grpc_server_shutdown_and_notify(srv->server, srv->cq, &srv->t_shutdown);
    pthread_mutex_unlock(&srv->sd_lock);
}

void rpc_server_free(rpc_server_t *srv)
{
    if (!srv) {
        return;
    }
    if (srv->server) {
        rpc_server_shutdown(srv, RPC_DEFAULT_GRACE_MS);
        if (srv->started) {
            pthread_join(srv->cq_thread, NULL);
        } else {
            cq_run(srv);  /* nothing was posted: only the shutdown tag comes */
        }
        if (srv->wake_open || srv->beat_open) {
            TWIG_PANIC("rpc_server_free: run the loop until uv_run returns before freeing");
        }
        /* wait out a rpc_server_shutdown still running on another thread */
        pthread_mutex_lock(&srv->sd_lock);
        pthread_mutex_unlock(&srv->sd_lock);
        grpc_server_destroy(srv->server);
        grpc_completion_queue_destroy(srv->cq);
        grpc_shutdown();
    }
    for (size_t i = 0; i < srv->n_svcs; i++) {
        free(srv->svcs[i].name);
    }
    free(srv->svcs);
    pthread_mutex_destroy(&srv->health_lock);
    pthread_mutex_destroy(&srv->q_lock);
    pthread_mutex_destroy(&srv->sd_lock);
    free(srv->methods);
    free(srv->listen);
    free(srv);
}
