/* rpc.h - protobuf-c messages over gRPC: servers with a method table, clients with deadlines.
 *
 * This is the only door to gRPC in twig; no other file includes <grpc/...>. Messages are
 * protobuf-c messages, named by their descriptors; paths are full gRPC paths,
 * "/twig.v1.ModelServer/AppendReal". Errors are twig codes (err.h) both ways: a handler
 * returns -EINVAL and the client sees -EINVAL with the server's text in err_msg().
 *
 * Start and end of a process (optional but recommended: it keeps gRPC loaded between
 * servers and bounds gRPC's shutdown, which can hang ~10 s):
 *
 *     rpc_lib_init();
 *     ...
 *     rpc_lib_shutdown(2000);           // waits at most 2 s for gRPC to unload
 *
 * A server. Handlers get the unpacked request, reply now or later, from any thread:
 *
 *     static int on_status(rpc_call_t *call, const ProtobufCMessage *msg, void *app)
 *     {
 *         const Twig__V1__LogStatusRequest *q = (const Twig__V1__LogStatusRequest *)msg;
 *         Twig__V1__LogStatusReply r = TWIG__V1__LOG_STATUS_REPLY__INIT;
 *         r.end_offset = ((my_app *)app)->end;
 *         rpc_call_reply(call, 0, &r.base);   // packed (copied) at once
 *         return 0;                           // replied
 *     }
 *     static int on_append(rpc_call_t *call, const ProtobufCMessage *msg, void *app)
 *     {
 *         if (bad(msg)) {
 *             return err_set(-EINVAL, "obs_dim is %u, expected %u", a, b); // INVALID_ARGUMENT
 *         }
 *         queue_for_writer(app, call, msg);   // the writer calls rpc_call_reply after fsync
 *         return RPC_DEFER;                   // msg stays valid until the reply
 *     }
 *     static const rpc_method methods[] = {
 *         {"/twig.v1.ModelServer/LogStatus", &twig__v1__log_status_request__descriptor,
 *          on_status, RPC_KIND_UNARY, RPC_RUN_ON_CQ},
 *         {"/twig.v1.ModelServer/AppendReal", &twig__v1__transition_batch__descriptor,
 *          on_append, RPC_KIND_UNARY, RPC_RUN_ON_LOOP},
 *     };
 *     rpc_server_cfg cfg = {.listen = "0.0.0.0:50051", .loop = &loop, .app = &app};
 *     rpc_server_t *srv;
 *     int rc = rpc_server_init(&srv, &cfg, methods, 2);    // binds; port in rpc_server_port()
 *     rc = rpc_server_start(srv);                          // answers from now on
 *     uv_run(&loop, UV_RUN_DEFAULT);                       // returns after shutdown (below)
 *     rpc_server_free(srv);
 *     uv_loop_close(&loop);
 *
 *   - Threads. One completion-queue (CQ) thread per server does all gRPC work: new calls,
 *     unpacking, error replies, health checks. RPC_RUN_ON_CQ handlers run there: they must be
 *     quick and never block. RPC_RUN_ON_LOOP handlers run on cfg.loop's thread (handed over by
 *     uv_async); rpc_server_init and rpc_server_start must then be called on that thread.
 *   - Replies. A handler returns 0 after rpc_call_reply(), RPC_DEFER if it (or another thread)
 *     will call rpc_call_reply() later, or a negative code: the call fails with the status
 *     for that code (rpc_err_to_status) and err_msg() as text. Every call gets exactly one
 *     reply. A request the handler got stays valid until its reply.
 *   - Client streams (RPC_KIND_CLIENT_STREAM). The handler runs once per message (msg valid
 *     only during that run; return 0 to read on, negative to fail the call, or reply early to
 *     stop reading), then once with msg == NULL at the end of the stream, where it replies as a
 *     unary handler does. rpc_call_set_data() keeps per-call state between the runs and
 *     rpc_call_set_data_free() frees it with the call, however the call ends. A client that
 *     cancels mid-stream may look like a normal end of stream (gRPC core does not always tell
 *     them apart), so each message must stand on its own (e.g. dedup by source and seq).
 *   - Input. A request that does not parse is answered INVALID_ARGUMENT naming the method and
 *     the message type, and the handler never sees it; parsing is not validation, so handlers
 *     validate. Unknown paths get UNIMPLEMENTED.
 *   - Health. grpc.health.v1.Health/Check is answered on the CQ thread, one rule for every
 *     twig process (docs/design.md, "Health"):
 *       "liveness"   SERVING while the process's loop turns: a heartbeat timer on cfg.loop
 *                    stamps the time every RPC_HEARTBEAT_MS, and a stamp older than
 *                    cfg.live_stale_ms is NOT_SERVING (a wedged loop). A stopped or dead
 *                    process does not answer at all. Restart a process only when not live.
 *       "readiness", "" and each service of the method table ("twig.v1.ModelServer"):
 *                    SERVING when the process can do its job now (rpc_server_set_ready; all
 *                    SERVING from the start by default); NOT_SERVING holds traffic back.
 *       other names  NOT_FOUND.
 *     Once shutting down, everything is NOT_SERVING.
 *   - Shutdown. rpc_server_shutdown(srv, grace_ms) returns at once: it marks every service
 *     NOT_SERVING, refuses new calls, lets calls in flight finish for grace_ms, then cancels
 *     them (their clients see UNAVAILABLE or CANCELLED). Calls the application holds
 *     (RPC_DEFER) must still get their rpc_call_reply: answer them promptly once you shut
 *     down (a reply to a cancelled call is fine and cheap). Calls queued for the loop but not
 *     yet handed to a handler are answered UNAVAILABLE by the layer after the grace period.
 *     When the last call has ended the CQ thread exits and the server's uv handle closes, so
 *     uv_run returns; then rpc_server_free. Without a loop, rpc_server_free waits for the
 *     CQ thread itself (and shuts down with RPC_DEFAULT_GRACE_MS if nobody did).
 *   - Long polls: use rpc_longpoll_t (common/rpc/longpoll.h), which parks the call
 *     (RPC_DEFER) and answers before rpc_call_remaining_ms() runs out, or the client sees
 *     DEADLINE_EXCEEDED instead of its "nothing yet" reply: rpc_call_poll_ms(call, wait_ms)
 *     is how long it parks (RPC_POLL_MARGIN_MS early).
 *   - A reply many calls share (a blob per version): pack it once with rpc_packed_from_msg
 *     and send it with rpc_call_reply_packed.
 *   - Never call rpc_server_free from a handler or a loop callback.
 *
 * A client. One rpc_client_t is one channel to "host:port", shared by any number of threads;
 * it connects on the first call and reconnects by itself. Every call has a deadline:
 *
 *     rpc_client_t *cl;
 *     rc = rpc_client_init(&cl, "127.0.0.1:50051", NULL);         // NULL: default cfg
 *     rpc_call_opts o = {.deadline_ms = 2000, .idempotent = true, .wait_for_ready = true};
 *     ProtobufCMessage *reply = NULL;
 *     rc = rpc_client_unary(cl, &reply, "/twig.v1.ModelServer/LogStatus", &req.base,
 *                           &twig__v1__log_status_reply__descriptor, &o);
 *     if (rc < 0) {   // TWIG_EUNAVAIL, TWIG_EDEADLINE, -EINVAL, ...; err_msg() says what/where
 *         ...
 *     }
 *     protobuf_c_message_free_unpacked(reply, NULL);
 *     rpc_client_free(cl);
 *
 *   - Idempotent calls are retried on TWIG_EUNAVAIL and TWIG_EFULL with exponential backoff
 *     and jitter, at most max_attempts times and never past deadline_ms (the total).
 *   - wait_for_ready: a call waits for the server (e.g. restarting) until its deadline
 *     instead of failing at once with TWIG_EUNAVAIL.
 *   - A client stream: rpc_client_stream_open, rpc_stream_send per message (one in flight; it
 *     returns when the transport took the message), rpc_stream_finish for the single reply.
 *   - rpc_health_check / rpc_wait_serving: one-shot probes for tests and the launcher;
 *     rpc_health_check_cfg / rpc_wait_health_cfg the same over a client cfg (TLS).
 *
 * TLS. A server or client whose cfg.tls names three PEM files talks TLS only (gRPC's
 * default versions), and always mutual: the server shows cert_file and requires a client
 * certificate that ca_file signed; the client trusts ca_file alone (never the system's
 * roots), checks the server's certificate against the host of its address (or server_name)
 * and shows its own cert_file.
 * tls NULL or all empty: plaintext, and the network must be trusted (docs/deploy.md, "TLS").
 *
 *     rpc_tls tls = {.ca_file = "ca.pem", .cert_file = "host.pem", .key_file = "host.key"};
 *     rpc_server_cfg cfg = {.listen = "0.0.0.0:7101", .tls = &tls, ...};
 *     rpc_client_cfg ccfg = {.tls = &tls};
 *
 * The files are read and checked when a server or client is made (rpc_tls_check says what
 * is checked); a failure is TWIG_ECONFIG naming the run-config key (tls_ca, tls_cert,
 * tls_key, tls_server_name) and the file. A TLS peer and a plaintext one do not talk: each
 * call fails with TWIG_EUNAVAIL (UNAVAILABLE), at once without wait_for_ready.
 */
#ifndef TWIG_RPC_H
#define TWIG_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>
#include <uv.h>

#define RPC_DEFAULT_MAX_MSG_BYTES (64u << 20)  /* weights exceed gRPC's 4 MiB default */
#define RPC_DEFAULT_GRACE_MS 500                /* shutdown: let calls finish this long */
#define RPC_DEFAULT_KEEPALIVE_MS 30000          /* ping an idle connection this often */
#define RPC_DEFAULT_KEEPALIVE_TIMEOUT_MS 10000  /* and drop it if the ping is not answered */
#define RPC_DEFAULT_DEADLINE_MS 5000            /* a call whose opts say 0 */
#define RPC_DEFAULT_MAX_ATTEMPTS 5              /* idempotent retries */
#define RPC_DEFAULT_BACKOFF_MS 50               /* first retry waits about this long */
#define RPC_DEFAULT_BACKOFF_MAX_MS 2000         /* and no retry waits longer */
#define RPC_DEFAULT_RECONNECT_MAX_MS 1000       /* channel reconnect backoff cap */
#define RPC_HEARTBEAT_MS 250                    /* liveness: the loop stamps the time this often */
#define RPC_DEFAULT_LIVE_STALE_MS 5000          /* and is not live once the stamp is older */
#define RPC_DEFAULT_MAX_CALLS 1024              /* calls a server holds at once (health aside) */
#define RPC_POLL_MARGIN_MS 50                   /* long polls answer this long before the
                                                 * client's deadline */
#define RPC_HEALTH_LIVENESS "liveness"          /* health service names (see Health above) */
#define RPC_HEALTH_READINESS "readiness"

/* handler return value: the reply will come later through rpc_call_reply */
#define RPC_DEFER 1

/* ---- library ---- */

/* take a reference on gRPC for the process (servers and clients also take their own) */
void rpc_lib_init(void);
/* drop it; waits at most timeout_ms for gRPC to unload, then returns TWIG_EDEADLINE and
 * leaves it unloading in the background (let the process exit) */
int rpc_lib_shutdown(int timeout_ms);

/* ---- status translation (the only place twig codes meet gRPC status codes) ---- */

/* gRPC status code (0 OK, 3 INVALID_ARGUMENT, ...) for a twig code; 0 -> 0 */
int rpc_err_to_status(int rc);
/* twig code for a gRPC status code; 0 -> 0 */
int rpc_status_to_err(int status);
/* "INVALID_ARGUMENT", ... */
const char *rpc_status_name(int status);
#define RPC_N_STATUS 17  /* gRPC status codes 0 (OK) .. 16 (UNAUTHENTICATED) */
/* did a call fail because the peer could not be reached at all (TWIG_EUNAVAIL,
 * TWIG_EDEADLINE, TWIG_ECANCELLED), as opposed to an answer it gave (-EINVAL, TWIG_EFULL, ...)?
 * What readiness follows: a peer that answers with an error is still there. */
bool rpc_err_unreachable(int rc);

/* ---- TLS (see the opening comment) ---- */

typedef struct rpc_tls {
    const char *ca_file;      /* PEM: the CA certificate(s) both sides trust; borrowed */
    const char *cert_file;    /* PEM: this process's certificate (chain), signed by the CA */
    const char *key_file;     /* PEM: its private key (unencrypted) */
    const char *server_name;  /* client: the name the server's certificate must carry;
                               * NULL or "": the host of the address it dials */
} rpc_tls;

/* does t ask for TLS (any of its three files named)? NULL: no */
bool rpc_tls_on(const rpc_tls *t);
/* read and check t's files as rpc_server_init / rpc_client_init do: all three or none
 * named (server_name only with them); each readable, at most 1 MiB, PEM of its kind (one or
 * more certificates; a private key); the key is the certificate's; the certificate (with
 * any intermediates after it in cert_file) verifies against ca_file now (not expired).
 * 0 (also when TLS is off), or TWIG_ECONFIG with err_msg() naming the key and file:
 * "tls_cert '/etc/twig/a.pem': cannot read it (open ...: No such file or directory)" */
int rpc_tls_check(const rpc_tls *t);

/* ---- server ---- */

typedef struct rpc_server rpc_server_t;  /* opaque */
typedef struct rpc_call rpc_call_t;      /* one incoming call, opaque */

typedef enum rpc_kind {
    RPC_KIND_UNARY = 0,          /* one request, one reply */
    RPC_KIND_CLIENT_STREAM = 1,  /* many requests, one reply */
} rpc_kind;

typedef enum rpc_run {
    RPC_RUN_ON_CQ = 0,    /* on the completion-queue thread: quick, never blocking */
    RPC_RUN_ON_LOOP = 1,  /* on the thread running rpc_server_cfg.loop */
} rpc_run;

/* msg: the request (unary), the next stream message, or NULL at the end of a stream.
 * app: rpc_server_cfg.app. Returns 0 (replied / stream: read on), RPC_DEFER, or < 0. */
typedef int (*rpc_handler_fn)(rpc_call_t *call, const ProtobufCMessage *msg, void *app);

typedef struct rpc_method {
    const char *path;                            /* "/pkg.Service/Method"; borrowed */
    const ProtobufCMessageDescriptor *request;   /* request message type; borrowed */
    rpc_handler_fn handler;
    rpc_kind kind;
    rpc_run run;
} rpc_method;

typedef struct rpc_server_cfg {
    const char *listen;          /* "0.0.0.0:50051", "127.0.0.1:0" (0: any free port); copied.
                                  * In containers use 0.0.0.0: kubelet probes dial the pod IP */
    size_t max_msg_bytes;        /* largest message received or sent; 0: default */
    int keepalive_ms;            /* 0: default */
    int keepalive_timeout_ms;    /* 0: default */
    uv_loop_t *loop;             /* needed by RPC_RUN_ON_LOOP methods; borrowed. Also carries
                                  * the liveness heartbeat */
    int live_stale_ms;           /* liveness: a heartbeat older than this is not live; 0:
                                  * RPC_DEFAULT_LIVE_STALE_MS */
    int max_calls;               /* calls held at once (parked long polls, streams, calls
                                  * being answered); one more is refused at once with
                                  * RESOURCE_EXHAUSTED. Health checks never count. 0:
                                  * RPC_DEFAULT_MAX_CALLS */
    void *app;                   /* handed to every handler; borrowed */
    const rpc_tls *tls;          /* NULL or all empty: plaintext; borrowed (read at init) */
} rpc_server_cfg;

/* create a server and bind cfg->listen (fails with -EADDRINUSE if taken: SO_REUSEPORT is
 * off). methods[0..n_methods) are copied (their strings and descriptors are borrowed).
 * -EINVAL on a bad table (path not "/a.B/C", duplicate path, RPC_RUN_ON_LOOP without loop).
 * TWIG_ECONFIG: cfg->tls's files failed rpc_tls_check. */
int rpc_server_init(rpc_server_t **out, const rpc_server_cfg *cfg, const rpc_method *methods,
                    size_t n_methods);
/* the bound port (the one picked for ":0") */
int rpc_server_port(const rpc_server_t *srv);
/* start answering: starts the CQ thread */
int rpc_server_start(rpc_server_t *srv);
/* service "" (the whole server) or a service of the method table, e.g. "twig.v1.ModelServer";
 * TWIG_ENOTFOUND for another name. Any thread. */
int rpc_server_set_serving(rpc_server_t *srv, const char *service, bool serving);
/* readiness of the whole process: "readiness", "" and every service at once. Returns 1 when
 * that changed what "" answers, else 0 (log the transition once, with its reason). Any
 * thread; ignored once shutting down. */
int rpc_server_set_ready(rpc_server_t *srv, bool ready);
/* the liveness answer now: the loop's heartbeat is fresh (true without a loop). Any thread */
bool rpc_server_loop_live(rpc_server_t *srv);
/* calls accepted and not yet ended (for metrics and tests); any thread */
int rpc_server_live_calls(const rpc_server_t *srv);
/* calls refused because max_calls were held (any thread) */
uint64_t rpc_server_refused_busy(const rpc_server_t *srv);
/* add to out[status] the calls this server ended with each status (health checks and the
 * layer's own refusals included; out[0], OK, gets nothing). Any thread */
void rpc_server_error_counts(const rpc_server_t *srv, uint64_t out[RPC_N_STATUS]);
/* begin a graceful shutdown (see the opening comment); any thread, returns at once;
 * later calls do nothing */
void rpc_server_shutdown(rpc_server_t *srv, int grace_ms);
/* shut down if needed, wait for the CQ thread, release everything; NULL is fine */
void rpc_server_free(rpc_server_t *srv);

/* reply to a call, from any thread, exactly once. rc == 0: OK with reply (packed at once,
 * so it may live on the caller's stack). rc < 0: the status for rc with the calling
 * thread's err_msg() as text; reply is ignored. */
void rpc_call_reply(rpc_call_t *call, int rc, const ProtobufCMessage *reply);
/* A reply packed once and sent to many calls (a model or policy blob: one encode per
 * version, not per request). Reference counted, any thread: the creator holds one reference,
 * each reply in flight another, so the bytes outlive whoever drops theirs first. */
typedef struct rpc_packed rpc_packed_t;  /* opaque */
/* msg packed into a new rpc_packed_t (one reference, owned by the caller) */
rpc_packed_t *rpc_packed_from_msg(const ProtobufCMessage *msg);
/* drop a reference; the bytes go with the last. NULL is fine */
void rpc_packed_unref(rpc_packed_t *p);
/* the packed size in bytes */
size_t rpc_packed_size(const rpc_packed_t *p);
/* reply OK to a call with p's bytes as the method's reply message, no packing or copy (the
 * reply takes its own reference); as rpc_call_reply otherwise */
void rpc_call_reply_packed(rpc_call_t *call, rpc_packed_t *p);
/* the call's path */
const char *rpc_call_path(const rpc_call_t *call);
/* milliseconds left until the client's deadline (INT64_MAX if it set none) */
int64_t rpc_call_remaining_ms(const rpc_call_t *call);
/* how long a long poll asking for wait_ms may park this call: wait_ms, or less so that the
 * answer leaves RPC_POLL_MARGIN_MS before the client's deadline (0: answer now) */
uint64_t rpc_call_poll_ms(const rpc_call_t *call, uint64_t wait_ms);
/* messages received so far on this call (a stream's current message is number count-1) */
uint64_t rpc_call_msg_count(const rpc_call_t *call);
/* one pointer of application state per call (streams); borrowed */
void rpc_call_set_data(rpc_call_t *call, void *data);
void *rpc_call_data(const rpc_call_t *call);
/* run fn(data) once when the call's context is released: after its reply, whether or not the
 * handler saw the end of its stream (a stream broken by a bad message or a cancel gets no
 * end-of-stream run). Lets per-call state be freed on every path. Not run while data is NULL
 * (set it to NULL to take the state back). Runs on the thread that drops the call last. */
void rpc_call_set_data_free(rpc_call_t *call, void (*fn)(void *data));

/* ---- client ---- */

typedef struct rpc_client rpc_client_t;  /* opaque; thread-safe */
typedef struct rpc_stream rpc_stream_t;  /* one outgoing client stream; one thread at a time */

typedef struct rpc_client_cfg {
    size_t max_msg_bytes;        /* 0: default */
    int keepalive_ms;            /* 0: default */
    int keepalive_timeout_ms;    /* 0: default */
    int reconnect_max_ms;        /* cap of the channel's reconnect backoff; 0: default */
    uint64_t seed;               /* retry jitter; 0: from the clock */
    const rpc_tls *tls;          /* NULL or all empty: plaintext; borrowed (read at init) */
} rpc_client_cfg;

typedef struct rpc_call_opts {
    int deadline_ms;             /* whole call, retries included; 0: RPC_DEFAULT_DEADLINE_MS */
    bool wait_for_ready;         /* wait for a connection instead of failing with EUNAVAIL */
    bool idempotent;             /* safe to repeat: retried on TWIG_EUNAVAIL / TWIG_EFULL */
    int max_attempts;            /* 0: RPC_DEFAULT_MAX_ATTEMPTS (only with idempotent) */
    int backoff_ms;              /* 0: RPC_DEFAULT_BACKOFF_MS */
    int backoff_max_ms;          /* 0: RPC_DEFAULT_BACKOFF_MAX_MS */
} rpc_call_opts;

typedef enum rpc_conn_state {
    RPC_CONN_IDLE = 0,
    RPC_CONN_CONNECTING = 1,
    RPC_CONN_READY = 2,
    RPC_CONN_TRANSIENT_FAILURE = 3,
    RPC_CONN_SHUTDOWN = 4,
} rpc_conn_state;

/* addr "host:port" (copied); cfg may be NULL. Does not connect yet. TWIG_ECONFIG:
 * cfg->tls's files failed rpc_tls_check. */
int rpc_client_init(rpc_client_t **out, const char *addr, const rpc_client_cfg *cfg);
/* every call on it must have returned; NULL is fine */
void rpc_client_free(rpc_client_t *cl);
/* the channel's state (does not start connecting) */
rpc_conn_state rpc_client_state(rpc_client_t *cl);
/* add to out[status] the failed attempts of this client's calls and streams by the status
 * they ended with (every retry counts; out[0] gets nothing); NULL cl adds nothing. Any thread */
void rpc_client_error_counts(const rpc_client_t *cl, uint64_t out[RPC_N_STATUS]);

/* unary call: *reply (owned; free with protobuf_c_message_free_unpacked) is set on 0 and
 * NULL otherwise. opts may be NULL (defaults, not idempotent). Errors: the server's code
 * (-EINVAL, TWIG_EFULL, ...), TWIG_EUNAVAIL (no connection or lost), TWIG_EDEADLINE,
 * TWIG_ETOOBIG (a message over a max size), TWIG_EUNIMPL (unknown path), TWIG_EPROTO (reply
 * did not parse); err_msg() names the address, path, status and the server's text. */
int rpc_client_unary(rpc_client_t *cl, ProtobufCMessage **reply, const char *path,
                     const ProtobufCMessage *req, const ProtobufCMessageDescriptor *reply_type,
                     const rpc_call_opts *opts);
/* the same with raw bytes: *reply (owned; free()) of *n_reply bytes */
int rpc_client_unary_bytes(rpc_client_t *cl, uint8_t **reply, size_t *n_reply, const char *path,
                           const uint8_t *req, size_t n_req, const rpc_call_opts *opts);

/* open a client stream (no retries; wait_for_ready and deadline_ms apply to the whole
 * stream); nothing is sent yet */
int rpc_client_stream_open(rpc_client_t *cl, rpc_stream_t **out, const char *path,
                           const rpc_call_opts *opts);
/* send one message; returns when the transport took it. < 0: the call has ended (server
 * error, deadline, connection lost): rpc_stream_finish gives the reason. */
int rpc_stream_send(rpc_stream_t *s, const ProtobufCMessage *msg);
/* the same with raw bytes */
int rpc_stream_send_bytes(rpc_stream_t *s, const uint8_t *msg, size_t n_msg);
/* half-close, wait for the reply, free s. As rpc_client_unary for *reply and errors. */
int rpc_stream_finish(rpc_stream_t *s, ProtobufCMessage **reply,
                      const ProtobufCMessageDescriptor *reply_type);
/* cancel the call and free s */
void rpc_stream_abort(rpc_stream_t *s);

/* health of a service ("" = whole server) at addr within deadline_ms: RPC_HEALTH_SERVING or
 * RPC_HEALTH_NOT_SERVING, or < 0 (TWIG_ENOTFOUND: unknown service; TWIG_EUNAVAIL: nobody
 * listening; TWIG_EDEADLINE) */
#define RPC_HEALTH_SERVING 1
#define RPC_HEALTH_NOT_SERVING 2
int rpc_health_check(const char *addr, const char *service, int deadline_ms);
/* the same over a client made with cfg (NULL: defaults; cfg->tls for a TLS server) */
int rpc_health_check_cfg(const char *addr, const rpc_client_cfg *cfg, const char *service,
                         int deadline_ms);
/* poll addr's service until SERVING: 0, or TWIG_EDEADLINE after deadline_ms (err_msg()
 * says what the last probe saw) */
int rpc_wait_health(const char *addr, const char *service, int deadline_ms);
/* the same over a client made with cfg (NULL: defaults) */
int rpc_wait_health_cfg(const char *addr, const rpc_client_cfg *cfg, const char *service,
                        int deadline_ms);
/* rpc_wait_health on RPC_HEALTH_READINESS */
int rpc_wait_serving(const char *addr, int deadline_ms);

#endif
