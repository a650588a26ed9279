/* rpc_client.c - channels, unary calls with deadlines and retries, client streams, health
 * probes. The contract is in rpc.h.
 *
 * Every call is synchronous for its caller: it gets its own pluck completion queue, starts
 * its batches and plucks their tags. The call's deadline bounds every pluck, so none waits
 * forever. Retries (idempotent calls only) sleep an exponential backoff with "equal jitter"
 * (half fixed, half uniform), the policy of gRPC's connection backoff spec
 * (doc/connection-backoff.md) applied per call.
 */
#include "common/rpc/rpc.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/status.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "common/base/clock.h"
#include "common/base/backoff.h"
#include "common/base/err.h"
#include "common/base/mem.h"
#include "common/base/rng.h"
#include "common/rpc/rpc_priv.h"
#include "proto/health.pb-c.h"

#define RPC_POLL_MS 20          /* rpc_wait_serving: pause between probes */
#define RPC_PROBE_MAX_MS 1000   /* rpc_wait_serving: longest single probe */
#define RPC_INITIAL_RECONNECT_MS 100

struct rpc_client {
    grpc_channel *ch;
    char *addr;
    pthread_mutex_t rng_lock;
    rng_t rng;  /* retry jitter */
    atomic_uint_fast64_t errors[RPC_N_STATUS]; /* failed attempts by status */
};

struct rpc_stream {
    rpc_client_t *cl;
    grpc_completion_queue *cq;
    grpc_call *call;
    char *path;
    bool wait_for_ready;
    bool md_sent;     /* initial metadata went out (with the first message) */
    bool recv_done;   /* the status arrived */
    int rc;           /* the call's outcome once recv_done */
    grpc_metadata_array imd, tmd;
    grpc_byte_buffer *resp;
    grpc_status_code status;
    grpc_slice details;
    int tag_recv, tag_send;  /* their addresses are the tags */
    gpr_timespec deadline;   /* the call's */
};

/* ---- helpers ---- */

static gpr_timespec deadline_in(int64_t ms)
{
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms, GPR_TIMESPAN));
}

/* a client call's wait for its tag, bounded: until the call's deadline plus
 * RPC_PLUCK_SLACK_MS. gRPC's deadline should have ended the call by then; under heavy load
 * a forked test process saw a stream's deadline never fire and its pluck wait for ever, so
 * past that point the call is cancelled here (DEADLINE_EXCEEDED), which completes its ops at
 * once. No wait in a twig client outlives its deadline by more than the slack. */
#define RPC_PLUCK_SLACK_MS 2000

static grpc_event pluck_by(grpc_completion_queue *cq, void *tag, grpc_call *call,
                           gpr_timespec deadline)
{
    gpr_timespec until =
        gpr_time_add(deadline, gpr_time_from_millis(RPC_PLUCK_SLACK_MS, GPR_TIMESPAN));
    grpc_event ev = grpc_completion_queue_pluck(cq, tag, until, NULL);
    if (ev.type == GRPC_QUEUE_TIMEOUT) {
        grpc_call_cancel_with_status(call, GRPC_STATUS_DEADLINE_EXCEEDED,
                                     "the call outlived its deadline (client watchdog)", NULL);
        ev = grpc_completion_queue_pluck(cq, tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    }
    return ev;
}

static void sleep_ms(int64_t ms)
{
    struct timespec t = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0) {
    }
}

static grpc_byte_buffer *bb_from_bytes(const uint8_t *p, size_t n)
{
    grpc_slice s = grpc_slice_from_copied_buffer((const char *)p, n);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

/* copy a received buffer out: *out owned (free()), never NULL on success */
static int bb_to_bytes(uint8_t **out, size_t *n_out, grpc_byte_buffer *bb)
{
    grpc_byte_buffer_reader r;
    if (!grpc_byte_buffer_reader_init(&r, bb)) {
        return err_set(TWIG_EPROTO, "cannot read the reply buffer");
    }
    grpc_slice s = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    size_t n = GRPC_SLICE_LENGTH(s);
    *out = xmalloc(n ? n : 1);
    memcpy(*out, GRPC_SLICE_START_PTR(s), n);
    *n_out = n;
    grpc_slice_unref(s);
    return 0;
}

/* a non-OK status as a twig code, with "addr/path: STATUS: text" as detail */
static int status_to_rc(rpc_client_t *cl, const char *path, grpc_status_code status,
                        grpc_slice details)
{
    const char *addr = cl->addr;
    atomic_fetch_add(&cl->errors[(unsigned)status < RPC_N_STATUS ? status : GRPC_STATUS_UNKNOWN],
                     1);
    int rc = rpc_status_to_err((int)status);
    char *text = grpc_slice_to_c_string(details);
    if (status == GRPC_STATUS_RESOURCE_EXHAUSTED && strstr(text, "larger than max")) {
        rc = TWIG_ETOOBIG;  /* the core's size limit, not the handler's "full" */
    }
    err_set(rc, "%s%s: %s: %s", addr, path, rpc_status_name((int)status), text);
    gpr_free(text);
    return rc;
}

static void cq_release(grpc_completion_queue *cq)
{
    grpc_completion_queue_shutdown(cq);
    grpc_completion_queue_destroy(cq);
}

/* ---- client ---- */

int rpc_client_init(rpc_client_t **out, const char *addr, const rpc_client_cfg *cfg)
{
    *out = NULL;
    rpc_client_cfg d = {0};
    if (!cfg) {
        cfg = &d;
    }
    if (!addr || !addr[0] || !strchr(addr, ':')) {
        return err_set(-EINVAL, "rpc client: address \"%s\" is not host:port",
                       addr ? addr : "(null)");
    }
    size_t max_msg = cfg->max_msg_bytes ? cfg->max_msg_bytes : RPC_DEFAULT_MAX_MSG_BYTES;
    if (max_msg > INT32_MAX) {
        return err_set(-EINVAL, "rpc client: max_msg_bytes %zu exceeds %d", max_msg, INT32_MAX);
    }
    int reconnect_max = cfg->reconnect_max_ms > 0 ? cfg->reconnect_max_ms
                                                  : RPC_DEFAULT_RECONNECT_MAX_MS;
    rpc_grpc_init();
    grpc_channel_credentials *creds = NULL;
    int rc = rpc_tls_channel_creds(&creds, cfg->tls);
    if (rc < 0) {
        grpc_shutdown();   /* rpc_grpc_init's reference */
        return rc;
    }
    rpc_client_t *cl = xcalloc(1, sizeof *cl);
    cl->addr = xstrdup(addr);
    pthread_mutex_init(&cl->rng_lock, NULL);
    uint64_t seed = cfg->seed;
    if (seed == 0) {
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        seed = (uint64_t)t.tv_nsec ^ ((uint64_t)t.tv_sec << 32) ^ (uint64_t)(uintptr_t)cl;
    }
    rng_seed(&cl->rng, seed);

    grpc_arg a[9];
    size_t na = 0;
    if (cfg->tls && cfg->tls->server_name && cfg->tls->server_name[0]) {
        /* the name checked in the server's certificate, instead of the address's host */
        a[na].type = GRPC_ARG_STRING;
        a[na].key = (char *)GRPC_SSL_TARGET_NAME_OVERRIDE_ARG;
        a[na].value.string = (char *)cfg->tls->server_name;
        na++;
    }
    rpc_arg_int(a, &na, GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, (int)max_msg);
    rpc_arg_int(a, &na, GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, (int)max_msg);
    rpc_arg_int(a, &na, GRPC_ARG_KEEPALIVE_TIME_MS,
                cfg->keepalive_ms > 0 ? cfg->keepalive_ms : RPC_DEFAULT_KEEPALIVE_MS);
    rpc_arg_int(a, &na, GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                cfg->keepalive_timeout_ms > 0 ? cfg->keepalive_timeout_ms
                                              : RPC_DEFAULT_KEEPALIVE_TIMEOUT_MS);
    rpc_arg_int(a, &na, GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
    rpc_arg_int(a, &na, GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
                RPC_INITIAL_RECONNECT_MS < reconnect_max ? RPC_INITIAL_RECONNECT_MS
                                                         : reconnect_max);
    rpc_arg_int(a, &na, GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, reconnect_max);
    grpc_channel_args args = {.num_args = na, .args = a};
    cl->ch = grpc_channel_create(addr, creds, &args);
    grpc_channel_credentials_release(creds);
    *out = cl;
    return 0;
}

void rpc_client_free(rpc_client_t *cl)
{
    if (!cl) {
        return;
    }
    grpc_channel_destroy(cl->ch);
    pthread_mutex_destroy(&cl->rng_lock);
    free(cl->addr);
    free(cl);
    grpc_shutdown();
}

void rpc_client_error_counts(const rpc_client_t *cl, uint64_t out[RPC_N_STATUS])
{
    for (int i = 0; cl && i < RPC_N_STATUS; i++) {
        out[i] += atomic_load(&cl->errors[i]);
    }
}

rpc_conn_state rpc_client_state(rpc_client_t *cl)
{
    switch (grpc_channel_check_connectivity_state(cl->ch, 0)) {
    case GRPC_CHANNEL_IDLE:
        return RPC_CONN_IDLE;
    case GRPC_CHANNEL_CONNECTING:
        return RPC_CONN_CONNECTING;
    case GRPC_CHANNEL_READY:
        return RPC_CONN_READY;
    case GRPC_CHANNEL_TRANSIENT_FAILURE:
        return RPC_CONN_TRANSIENT_FAILURE;
    default:
        return RPC_CONN_SHUTDOWN;
    }
}

/* ---- unary ---- */

/* one attempt; req stays the caller's */
static int unary_once(rpc_client_t *cl, uint8_t **reply, size_t *n_reply, const char *path,
                      grpc_byte_buffer *req, int64_t timeout_ms, bool wait_for_ready)
{
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_slice method = grpc_slice_from_copied_string(path);
    gpr_timespec deadline = deadline_in(timeout_ms);
    grpc_call *call = grpc_channel_create_call(cl->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, method,
                                               NULL, deadline, NULL);
    grpc_slice_unref(method);

    grpc_metadata_array imd, tmd;
    grpc_metadata_array_init(&imd);
    grpc_metadata_array_init(&tmd);
    grpc_byte_buffer *resp = NULL;
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].flags = wait_for_ready ? GRPC_INITIAL_METADATA_WAIT_FOR_READY : 0;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = req;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &imd;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &resp;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &tmd;
    ops[5].data.recv_status_on_client.status = &status;
    ops[5].data.recv_status_on_client.status_details = &details;
    int tag;
    int rc = 0;
    grpc_call_error e = grpc_call_start_batch(call, ops, 6, &tag, NULL);
    if (e != GRPC_CALL_OK) {
        rc = err_set(TWIG_EINTERNAL, "%s%s: grpc_call_start_batch failed (%d)", cl->addr, path,
                     (int)e);
    } else {
        pluck_by(cq, &tag, call, deadline);
        if (status != GRPC_STATUS_OK) {
            rc = status_to_rc(cl, path, status, details);
        } else if (!resp) {
            rc = err_set(TWIG_EPROTO, "%s%s: OK without a reply message", cl->addr, path);
        } else {
            rc = bb_to_bytes(reply, n_reply, resp);
        }
    }
    if (resp) {
        grpc_byte_buffer_destroy(resp);
    }
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&imd);
    grpc_metadata_array_destroy(&tmd);
    grpc_call_unref(call);
    cq_release(cq);
    return rc;
}

static bool retryable(int rc)
{
    return rc == TWIG_EUNAVAIL || rc == TWIG_EFULL;
}

int rpc_client_unary_bytes(rpc_client_t *cl, uint8_t **reply, size_t *n_reply, const char *path,
                           const uint8_t *req, size_t n_req, const rpc_call_opts *opts)
{
    *reply = NULL;
    *n_reply = 0;
    rpc_call_opts o = opts ? *opts : (rpc_call_opts){0};
    int64_t total = o.deadline_ms > 0 ? o.deadline_ms : RPC_DEFAULT_DEADLINE_MS;
    int attempts = !o.idempotent ? 1 : o.max_attempts > 0 ? o.max_attempts
                                                           : RPC_DEFAULT_MAX_ATTEMPTS;
    int64_t backoff = o.backoff_ms > 0 ? o.backoff_ms : RPC_DEFAULT_BACKOFF_MS;
    int64_t backoff_max = o.backoff_max_ms > 0 ? o.backoff_max_ms : RPC_DEFAULT_BACKOFF_MAX_MS;
    int64_t end = (int64_t)clock_now_ms() + total;

    int rc = 0;
    int k = 0;
    for (;;) {
        /* a buffer per attempt: gRPC core may take the slices of a sent message, so a reused
         * buffer would go out empty on the retry */
        grpc_byte_buffer *bb = bb_from_bytes(req, n_req);
        rc = unary_once(cl, reply, n_reply, path, bb, end - (int64_t)clock_now_ms(), o.wait_for_ready);
        grpc_byte_buffer_destroy(bb);
        k++;
        if (rc == 0 || !retryable(rc) || k >= attempts) {
            break;
        }
        uint64_t d = backoff_delay_ms((uint64_t)backoff, (uint64_t)backoff_max, k);
        pthread_mutex_lock(&cl->rng_lock);
        int64_t pause = (int64_t)backoff_jitter(d, rng_uniform_f64(&cl->rng));
        pthread_mutex_unlock(&cl->rng_lock);
        if ((int64_t)clock_now_ms() + pause >= end) {
            break;  /* the next attempt would start past the deadline */
        }
        sleep_ms(pause);
    }
    if (rc < 0 && k > 1) {
        char text[512];
        snprintf(text, sizeof text, "%s", err_msg());
        err_set(rc, "%s (after %d attempts)", text, k);
    }
    return rc;
}

int rpc_client_unary(rpc_client_t *cl, ProtobufCMessage **reply, const char *path,
                     const ProtobufCMessage *req, const ProtobufCMessageDescriptor *reply_type,
                     const rpc_call_opts *opts)
{
    *reply = NULL;
    size_t n = protobuf_c_message_get_packed_size(req);
    uint8_t *buf = xmalloc(n ? n : 1);
    protobuf_c_message_pack(req, buf);
    uint8_t *out = NULL;
    size_t n_out = 0;
    int rc = rpc_client_unary_bytes(cl, &out, &n_out, path, buf, n, opts);
    free(buf);
    if (rc < 0) {
        return rc;
    }
    *reply = protobuf_c_message_unpack(reply_type, NULL, n_out, out);
    free(out);
    if (!*reply) {
        return err_set(TWIG_EPROTO, "%s%s: reply is not a valid %s", cl->addr, path,
                       reply_type->name);
    }
    return 0;
}

/* ---- client streams ---- */

int rpc_client_stream_open(rpc_client_t *cl, rpc_stream_t **out, const char *path,
                           const rpc_call_opts *opts)
{
    rpc_call_opts o = opts ? *opts : (rpc_call_opts){0};
    int64_t total = o.deadline_ms > 0 ? o.deadline_ms : RPC_DEFAULT_DEADLINE_MS;
    rpc_stream_t *s = xcalloc(1, sizeof *s);
    s->cl = cl;
    s->path = xstrdup(path);
    s->wait_for_ready = o.wait_for_ready;
    s->cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_slice method = grpc_slice_from_copied_string(path);
    s->deadline = deadline_in(total);
    s->call = grpc_channel_create_call(cl->ch, NULL, GRPC_PROPAGATE_DEFAULTS, s->cq, method, NULL,
                                       s->deadline, NULL);
    grpc_slice_unref(method);
    grpc_metadata_array_init(&s->imd);
    grpc_metadata_array_init(&s->tmd);
    s->details = grpc_empty_slice();
    s->status = GRPC_STATUS_UNKNOWN;

    /* the receive side, armed once: completes when the call ends */
    grpc_op ops[3];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[0].data.recv_initial_metadata.recv_initial_metadata = &s->imd;
    ops[1].op = GRPC_OP_RECV_MESSAGE;
    ops[1].data.recv_message.recv_message = &s->resp;
    ops[2].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[2].data.recv_status_on_client.trailing_metadata = &s->tmd;
    ops[2].data.recv_status_on_client.status = &s->status;
    ops[2].data.recv_status_on_client.status_details = &s->details;
    grpc_call_error e = grpc_call_start_batch(s->call, ops, 3, &s->tag_recv, NULL);
    if (e != GRPC_CALL_OK) {
        TWIG_PANIC("grpc_call_start_batch failed (%d) opening a stream on %s", (int)e, path);
    }
    *out = s;
    return 0;
}

/* wait for the status and translate it (once) */
static int stream_wait_status(rpc_stream_t *s)
{
    if (!s->recv_done) {
        pluck_by(s->cq, &s->tag_recv, s->call, s->deadline);
        s->recv_done = true;
        if (s->status != GRPC_STATUS_OK) {
            s->rc = status_to_rc(s->cl, s->path, s->status, s->details);
        } else if (!s->resp) {
            s->rc = err_set(TWIG_EPROTO, "%s%s: OK without a reply message", s->cl->addr,
                            s->path);
        } else {
            s->rc = 0;
        }
    }
    return s->rc;
}

/* one send batch (initial metadata first time); < 0: the call ended, with its status */
static int stream_send_op(rpc_stream_t *s, grpc_op_type type, grpc_byte_buffer *bb)
{
    if (s->recv_done) {
        return s->rc < 0 ? s->rc : err_set(TWIG_EPROTO, "%s%s: the stream already ended",
                                           s->cl->addr, s->path);
    }
    grpc_op ops[2];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    if (!s->md_sent) {
        ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
        ops[n].flags = s->wait_for_ready ? GRPC_INITIAL_METADATA_WAIT_FOR_READY : 0;
        n++;
        s->md_sent = true;
    }
    ops[n].op = type;
    if (type == GRPC_OP_SEND_MESSAGE) {
        ops[n].data.send_message.send_message = bb;
    }
    n++;
    grpc_call_error e = grpc_call_start_batch(s->call, ops, n, &s->tag_send, NULL);
    if (e != GRPC_CALL_OK) {
        return err_set(TWIG_EINTERNAL, "%s%s: grpc_call_start_batch failed (%d)", s->cl->addr,
                       s->path, (int)e);
    }
    grpc_event ev = pluck_by(s->cq, &s->tag_send, s->call, s->deadline);
    if (!ev.success) {
        int rc = stream_wait_status(s);  /* the server ended the call: say why */
        return rc < 0 ? rc : err_set(TWIG_EPROTO, "%s%s: the server replied before the end",
                                     s->cl->addr, s->path);
    }
    return 0;
}

int rpc_stream_send_bytes(rpc_stream_t *s, const uint8_t *msg, size_t n_msg)
{
    grpc_byte_buffer *bb = bb_from_bytes(msg, n_msg);
    int rc = stream_send_op(s, GRPC_OP_SEND_MESSAGE, bb);
    grpc_byte_buffer_destroy(bb);
    return rc;
}

int rpc_stream_send(rpc_stream_t *s, const ProtobufCMessage *msg)
{
    grpc_byte_buffer *bb = rpc_bb_from_msg(msg);
    int rc = stream_send_op(s, GRPC_OP_SEND_MESSAGE, bb);
    grpc_byte_buffer_destroy(bb);
    return rc;
}

static void stream_release(rpc_stream_t *s)
{
    if (s->resp) {
        grpc_byte_buffer_destroy(s->resp);
    }
    grpc_slice_unref(s->details);
    grpc_metadata_array_destroy(&s->imd);
    grpc_metadata_array_destroy(&s->tmd);
    grpc_call_unref(s->call);
    cq_release(s->cq);
    free(s->path);
    free(s);
}

int rpc_stream_finish(rpc_stream_t *s, ProtobufCMessage **reply,
                      const ProtobufCMessageDescriptor *reply_type)
{
    *reply = NULL;
    if (!s->recv_done) {
        stream_send_op(s, GRPC_OP_SEND_CLOSE_FROM_CLIENT, NULL);
    }
    int rc = stream_wait_status(s);
    if (rc == 0) {
        uint8_t *out = NULL;
        size_t n_out = 0;
        rc = bb_to_bytes(&out, &n_out, s->resp);
        if (rc == 0) {
            *reply = protobuf_c_message_unpack(reply_type, NULL, n_out, out);
            free(out);
            if (!*reply) {
                rc = err_set(TWIG_EPROTO, "%s%s: reply is not a valid %s", s->cl->addr, s->path,
                             reply_type->name);
            }
        }
    }
    stream_release(s);
    return rc;
}

void rpc_stream_abort(rpc_stream_t *s)
{
    if (!s) {
        return;
    }
    grpc_call_cancel(s->call, NULL);
    stream_wait_status(s);
    stream_release(s);
}

/* ---- health ---- */

static int client_health(rpc_client_t *cl, const char *service, int deadline_ms,
                         bool wait_for_ready)
{
    Grpc__Health__V1__HealthCheckRequest q = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    q.service = (char *)service;
    rpc_call_opts o = {.deadline_ms = deadline_ms, .wait_for_ready = wait_for_ready};
    ProtobufCMessage *r = NULL;
    int rc = rpc_client_unary(cl, &r, RPC_HEALTH_PATH, &q.base,
                              &grpc__health__v1__health_check_response__descriptor, &o);
    if (rc < 0) {
        return rc;
    }
    int status = ((Grpc__Health__V1__HealthCheckResponse *)r)->status;
    protobuf_c_message_free_unpacked(r, NULL);
    if (status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING) {
        return RPC_HEALTH_SERVING;
    }
    err_set(0, "%s service \"%s\" answered status %d", cl->addr, service, status);
    return RPC_HEALTH_NOT_SERVING;
}

int rpc_health_check(const char *addr, const char *service, int deadline_ms)
{
    return rpc_health_check_cfg(addr, NULL, service, deadline_ms);
}

int rpc_health_check_cfg(const char *addr, const rpc_client_cfg *cfg, const char *service,
                         int deadline_ms)
{
    rpc_client_t *cl;
    int rc = rpc_client_init(&cl, addr, cfg);
    if (rc < 0) {
        return rc;
    }
    rc = client_health(cl, service, deadline_ms, false);
    rpc_client_free(cl);
    return rc;
}

int rpc_wait_health(const char *addr, const char *service, int deadline_ms)
{
    return rpc_wait_health_cfg(addr, NULL, service, deadline_ms);
}

int rpc_wait_health_cfg(const char *addr, const rpc_client_cfg *cfg, const char *service,
                        int deadline_ms)
{
    rpc_client_t *cl;
    int rc = rpc_client_init(&cl, addr, cfg);
    if (rc < 0) {
        return rc;
    }
    int64_t end = (int64_t)clock_now_ms() + deadline_ms;
    char last[256] = "no probe finished";
    for (int64_t left = deadline_ms; left > 0; left = end - (int64_t)clock_now_ms()) {
        rc = client_health(cl, service, left < RPC_PROBE_MAX_MS ? (int)left : RPC_PROBE_MAX_MS,
                           true);
        if (rc == RPC_HEALTH_SERVING) {
            rpc_client_free(cl);
            return 0;
        }
        snprintf(last, sizeof last, "%s", err_msg());
        if (end - (int64_t)clock_now_ms() > RPC_POLL_MS) {
            sleep_ms(RPC_POLL_MS);
        }
    }
    rpc_client_free(cl);
    return err_set(TWIG_EDEADLINE, "%s: service \"%s\" not serving after %d ms (last probe: %s)",
                   addr, service, deadline_ms, last);
}

int rpc_wait_serving(const char *addr, int deadline_ms)
{
    return rpc_wait_health(addr, RPC_HEALTH_READINESS, deadline_ms);
}
