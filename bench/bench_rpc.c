/* bench_rpc.c - RPC figures of issue 3, as JSON lines on stdout:
 *
 *   append_real   transitions/s appended to a real twig-modelserver (batch 256, obs 17, act 6),
 *                 unary (1 and 4 in flight) and one client stream, per fsync policy
 *                 (batch, group, none); the reference is the same traffic into an in-process
 *                 rpc-layer sink that validates and drops each batch (no log, no disk)
 *   fetch_real    rows/s read back with FetchReal (4096 rows a call), as a log mirror does
 *   weight_blob   p50/p99 latency of pulling a 10 MiB WeightBlob through the rpc layer, with
 *                 glibc's default malloc tuning and with the mmap/trim thresholds raised
 *   model_pull    p50/p99 of pulling a real model from a real twig-modelserver (GetModel, the
 *                 whole blob each time) after its first fit on 2048 appended rows; for each
 *                 --server-bin given (another build's, for a before/after), interleaved
 *   tls           the cost of mutual TLS (docs/deploy.md, "TLS") on the in-process sink: a new
 *                 client's first call (connect + handshake) p50, unary appends/s (1 in flight)
 *                 and 10 MiB blob pulls p50, plaintext and TLS interleaved, with the ratio;
 *                 the CA and certificate are made with /usr/bin/openssl under /tmp
 *
 * usage: bench_rpc [--seconds S] [--reps N] [--only append|blob|pull|tls]
 *                  [--fsync none|group|batch]
 *                  [--server-bin PATH]... [--model-hidden H]
 * Each append figure is the median of N runs of S seconds, twig and the sink interleaved.
 * The server binary is TWIG_BIN_DIR/modelserver/twig-modelserver; data dirs go under /tmp and
 * are removed. Both ends share this machine's cores: figures are noisy on a loaded host.
 */
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/base/crc32c.h"
#include "common/base/clock.h"
#include "common/base/err.h"
#include "common/base/fs.h"
#include "common/base/mem.h"
#include "common/rpc/msg.h"
#include "common/rpc/rpc.h"
#include "tests/procspawn/procspawn.h"
#include "tests/procspawn/tlsgen.h"

#define SERVER_BIN TWIG_BIN_DIR "/modelserver/twig-modelserver"
#define SERVER_PORT_MS 20000    /* spawn to its port file */
#define SERVER_READY_MS 10000   /* port file to readiness */
#define SERVER_STOP_MS 60000    /* SIGTERM to exit, then SIGKILL */
#define B_ENV "HalfCheetah-v4"   /* the server's log takes the env's dims: obs 17, act 6 */
#define B_COUNT 256
#define B_OBS 17
#define B_ACT 6
#define BLOB_BYTES (10u << 20)
#define BLOB_PULLS 40
#define CONNECT_CALLS 40   /* tls: new clients, each timed to the end of its first call */

/* ---- one batch of the benchmark's shape, sent many times with new seqs ---- */

typedef struct bench_batch {
    float obs[B_COUNT * B_OBS], next_obs[B_COUNT * B_OBS], act[B_COUNT * B_ACT];
    float reward[B_COUNT];
    int terminated[B_COUNT], truncated[B_COUNT];
    char source[32];
    tbatch_t v;
} bench_batch;

static void bench_batch_init(bench_batch *b, int src)
{
    for (int i = 0; i < B_COUNT * B_OBS; i++) {
        b->obs[i] = (float)i * 0.01f;
        b->next_obs[i] = (float)i * 0.02f;
    }
    for (int i = 0; i < B_COUNT * B_ACT; i++) {
        b->act[i] = (float)(i % 13) * 0.1f;
    }
    for (int i = 0; i < B_COUNT; i++) {
        b->reward[i] = (float)i;
        b->terminated[i] = i % 100 == 99;
        b->truncated[i] = 0;
    }
    snprintf(b->source, sizeof b->source, "bench-%d", src);
    b->v = (tbatch_t){.env_id = B_ENV, .source_id = b->source, .obs_dim = B_OBS,
                      .act_dim = B_ACT, .count = B_COUNT, .obs = b->obs, .act = b->act,
                      .reward = b->reward, .next_obs = b->next_obs,
                      .terminated = b->terminated, .truncated = b->truncated};
}

/* ---- the sink: an in-process rpc server that validates and drops batches ---- */

static int sink_unary(rpc_call_t *call, const ProtobufCMessage *msg, void *app)
{
    int rc = msg_batch_check((const Twig__V1__TransitionBatch *)msg, MSG_BATCH_MAX_COUNT);
    if (rc < 0) {
        return rc;
    }
    Twig__V1__AppendRealReply r = TWIG__V1__APPEND_REAL_REPLY__INIT;
    r.count = ((const Twig__V1__TransitionBatch *)msg)->count;
    rpc_call_reply(call, 0, &r.base);
    return 0;
}

static int sink_stream(rpc_call_t *call, const ProtobufCMessage *msg, void *app)
{
    if (msg) {
        return msg_batch_check((const Twig__V1__TransitionBatch *)msg, MSG_BATCH_MAX_COUNT);
    }
    Twig__V1__AppendRealStreamReply r = TWIG__V1__APPEND_REAL_STREAM_REPLY__INIT;
    rpc_call_reply(call, 0, &r.base);
    return 0;
}

/* the 10 MiB blob, built once; app points at its packed reply */
static int blob_get(rpc_call_t *call, const ProtobufCMessage *msg, void *app)
{
    rpc_call_reply(call, 0, (const ProtobufCMessage *)app);
    return 0;
}

static const rpc_method sink_methods[] = {
    {"/twig.v1.ModelServer/AppendReal", &twig__v1__transition_batch__descriptor, sink_unary,
     RPC_KIND_UNARY, RPC_RUN_ON_CQ},
    {"/twig.v1.ModelServer/AppendRealStream", &twig__v1__transition_batch__descriptor,
     sink_stream, RPC_KIND_CLIENT_STREAM, RPC_RUN_ON_CQ},
    {"/twig.v1.Bench/GetBlob", &twig__v1__log_status_request__descriptor, blob_get,
     RPC_KIND_UNARY, RPC_RUN_ON_CQ},
};

/* ---- the real server process ---- */

typedef struct server_proc {
    pid_t pid;
    char dir[256];
    char addr[64];
} server_proc;

/* bin with the benchmark's flags plus extra (NULL-terminated, may be NULL) */
static int server_start_bin(server_proc *s, const char *bin, const char *fsync,
                            const char *const *extra)
{
    snprintf(s->dir, sizeof s->dir, "/tmp/twig-bench-XXXXXX");
    if (!mkdtemp(s->dir)) {
        return -errno;
    }
    char data[300], port_file[300];
    snprintf(data, sizeof data, "%s/data", s->dir);
    snprintf(port_file, sizeof port_file, "%s/port", s->dir);
    const char *argv[40] = {bin, "--listen", "127.0.0.1:0", "--data-dir", data,
                            "--port-file", port_file, "--fsync", fsync, "--log-level",
                            "warn", "--env", B_ENV};
    int n = 13;
    for (int i = 0; extra && extra[i] && n < 39; i++) {
        argv[n++] = extra[i];
    }
    argv[n] = NULL;
    s->pid = procspawn_start(argv, NULL, NULL);   /* its warnings on our stderr */
    if (s->pid < 0) {
        return s->pid;
    }
    int port = 0, st;
    int rc = procspawn_read_port(&port, &st, port_file, s->pid, SERVER_PORT_MS, 5);
    if (rc < 0) {
        s->pid = rc == PROCSPAWN_EXITED ? 0 : s->pid;
        return rc;
    }
    snprintf(s->addr, sizeof s->addr, "127.0.0.1:%d", port);
    rc = procspawn_wait_health(&st, s->addr, RPC_HEALTH_READINESS, s->pid, SERVER_READY_MS,
                               10);
    if (rc == PROCSPAWN_EXITED) {
        s->pid = 0;
    }
    return rc;
}

static int server_start(server_proc *s, const char *fsync)
{
    return server_start_bin(s, SERVER_BIN, fsync, NULL);
}

static void server_stop(server_proc *s)
{
    int st;
    if (s->pid > 0) {
        procspawn_stop(&st, s->pid, SERVER_STOP_MS);
        s->pid = 0;
    }
    fs_remove_tree(s->dir);
}

/* ---- append runs ---- */

typedef struct unary_arg {
    const char *addr;
    const rpc_client_cfg *cc;   /* NULL: defaults (plaintext) */
    int src;
    double seconds;
    uint64_t batches;
    int rc;
} unary_arg;

static void *unary_main(void *p)
{
    unary_arg *u = p;
    rpc_client_t *cl;
    if ((u->rc = rpc_client_init(&cl, u->addr, u->cc)) < 0) {
        fprintf(stderr, "bench_rpc: client: %s\n", err_msg());
        return NULL;
    }
    bench_batch *b = xmalloc(sizeof *b);
    bench_batch_init(b, u->src);
    rpc_call_opts o = {.deadline_ms = 30000};
    double end = clock_now_s() + u->seconds;
    for (uint64_t seq = 1; clock_now_s() < end; seq++) {
        b->v.seq = seq;
        Twig__V1__TransitionBatch m;
        msg_batch_from_view(&m, &b->v);
        ProtobufCMessage *r = NULL;
        u->rc = rpc_client_unary(cl, &r, "/twig.v1.ModelServer/AppendReal", &m.base,
                                 &twig__v1__append_real_reply__descriptor, &o);
        if (u->rc < 0) {
            fprintf(stderr, "bench_rpc: append: %s\n", err_msg());
            break;
        }
        protobuf_c_message_free_unpacked(r, NULL);
        u->batches++;
    }
    free(b);
    rpc_client_free(cl);
    return NULL;
}

/* transitions/s of `threads` unary clients, one call in flight each */
static double run_unary(const char *addr, const rpc_client_cfg *cc, int threads, double seconds,
                        int src0)
{
    pthread_t th[16];
    unary_arg a[16];
    double t0 = clock_now_s();
    for (int t = 0; t < threads; t++) {
        a[t] = (unary_arg){.addr = addr, .cc = cc, .src = src0 + t, .seconds = seconds};
        pthread_create(&th[t], NULL, unary_main, &a[t]);
    }
    uint64_t n = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(th[t], NULL);
        n += a[t].batches;
    }
    return (double)n * B_COUNT / (clock_now_s() - t0);
}

/* transitions/s of one client stream, timed until its reply (everything durable) */
static double run_stream(const char *addr, double seconds, int src)
{
    rpc_client_t *cl;
    rpc_client_init(&cl, addr, NULL);
    bench_batch *b = xmalloc(sizeof *b);
    bench_batch_init(b, src);
    rpc_call_opts o = {.deadline_ms = 120000};
    rpc_stream_t *st = NULL;
    double t0 = clock_now_s(), end = t0 + seconds;
    uint64_t n = 0;
    int rc = rpc_client_stream_open(cl, &st, "/twig.v1.ModelServer/AppendRealStream", &o);
    while (rc == 0 && clock_now_s() < end) {
        for (int k = 0; k < 64 && rc == 0; k++) {
            b->v.seq = ++n;
            Twig__V1__TransitionBatch m;
            msg_batch_from_view(&m, &b->v);
            rc = rpc_stream_send(st, &m.base);
        }
    }
    ProtobufCMessage *r = NULL;
    if (st) {
        rc = rpc_stream_finish(st, &r, &twig__v1__append_real_stream_reply__descriptor);
    }
    double dt = clock_now_s() - t0;
    if (rc < 0) {
        fprintf(stderr, "bench_rpc: stream: %s\n", err_msg());
        n = 0;
    }
    if (r) {
        protobuf_c_message_free_unpacked(r, NULL);
    }
    free(b);
    rpc_client_free(cl);
    return (double)n * B_COUNT / dt;
}

static int cmp_double(const void *a, const void *b);

/* sorted rates of reps runs: median, min, max, and the sink's median alongside */
/* FetchReal as a mirror does it: chunks of max_count rows from offset 0 to the end,
 * around again, for `seconds`; rows/s */
static double run_fetch(const char *addr, double seconds, uint32_t max_count, uint64_t *end_out)
{
    rpc_client_t *cl;
    rpc_client_init(&cl, addr, NULL);
    rpc_call_opts o = {.deadline_ms = 30000};
    uint64_t from = 0, rows = 0;
    double t0 = clock_now_s(), end = t0 + seconds;
    *end_out = 0;
    while (clock_now_s() < end) {
        Twig__V1__FetchRealRequest q = TWIG__V1__FETCH_REAL_REQUEST__INIT;
        q.from_offset = from;
        q.max_count = max_count;
        ProtobufCMessage *r = NULL;
        if (rpc_client_unary(cl, &r, "/twig.v1.ModelServer/FetchReal", &q.base,
                             &twig__v1__fetch_real_reply__descriptor, &o) < 0) {
            fprintf(stderr, "bench_rpc: fetch: %s\n", err_msg());
            break;
        }
        const Twig__V1__FetchRealReply *f = (const Twig__V1__FetchRealReply *)r;
        *end_out = f->end_offset;
        uint32_t n = f->batch ? f->batch->count : 0;
        rows += n;
        from = n ? from + n : 0;
        protobuf_c_message_free_unpacked(r, NULL);
    }
    double dt = clock_now_s() - t0;
    rpc_client_free(cl);
    return (double)rows / dt;
}

static void print_append(const char *mode, const char *fsync, int in_flight, int reps,
                         const double *twig, const double *sink)
{
    double t = twig[reps / 2], r = sink[reps / 2];
    printf("{\"bench\":\"append_real\",\"impl\":\"twig_modelserver\",\"mode\":\"%s\","
           "\"fsync\":\"%s\",\"in_flight\":%d,\"batch\":%d,\"obs\":%d,\"act\":%d,\"reps\":%d,"
           "\"transitions_per_s\":%.0f,\"min\":%.0f,\"max\":%.0f,"
           "\"ref\":\"rpc_sink\",\"ref_per_s\":%.0f,\"ref_min\":%.0f,\"ref_max\":%.0f,"
           "\"ratio\":%.3f}\n",
           mode, fsync, in_flight, B_COUNT, B_OBS, B_ACT, reps, t, twig[0], twig[reps - 1], r,
           sink[0], sink[reps - 1], r > 0 ? t / r : 0.0);
    fflush(stdout);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* pull the blob n times; p50/p99 in ms; checks the crc of the first pull */
static int run_blob(const char *addr, const rpc_client_cfg *cc, double *p50, double *p99)
{
    rpc_client_t *cl;
    int rc = rpc_client_init(&cl, addr, cc);
    if (rc < 0) {
        fprintf(stderr, "bench_rpc: client: %s\n", err_msg());
        return rc;
    }
    rpc_call_opts o = {.deadline_ms = 20000};
    double lat[BLOB_PULLS];
    for (int i = 0; i < BLOB_PULLS && rc == 0; i++) {
        Twig__V1__LogStatusRequest q = TWIG__V1__LOG_STATUS_REQUEST__INIT;
        ProtobufCMessage *r = NULL;
        double t0 = clock_now_s();
        rc = rpc_client_unary(cl, &r, "/twig.v1.Bench/GetBlob", &q.base,
                              &twig__v1__weight_blob__descriptor, &o);
        lat[i] = (clock_now_s() - t0) * 1e3;
        if (rc == 0) {
            const Twig__V1__WeightBlob *w = (const Twig__V1__WeightBlob *)r;
            if (i == 0 && (w->data.len != BLOB_BYTES ||
                           crc32c(w->data.data, w->data.len) != w->crc32c)) {
                rc = err_set(TWIG_ECORRUPT, "blob came back wrong");
            }
            protobuf_c_message_free_unpacked(r, NULL);
        }
    }
    rpc_client_free(cl);
    if (rc < 0) {
        fprintf(stderr, "bench_rpc: blob: %s\n", err_msg());
        return rc;
    }
    qsort(lat, BLOB_PULLS, sizeof lat[0], cmp_double);
    *p50 = lat[BLOB_PULLS / 2];
    *p99 = lat[BLOB_PULLS - 1];   /* 40 pulls: the max stands for p99 */
    return 0;
}

/* ---- the cost of TLS ---- */

/* p50 in ms of CONNECT_CALLS new clients' first health call (connect, handshake, call) */
static int run_connect(const char *addr, const rpc_client_cfg *cc, double *p50)
{
    double lat[CONNECT_CALLS];
    for (int i = 0; i < CONNECT_CALLS; i++) {
        double t0 = clock_now_s();
        int rc = rpc_health_check_cfg(addr, cc, "", 5000);
        lat[i] = (clock_now_s() - t0) * 1e3;
        if (rc != RPC_HEALTH_SERVING) {
            fprintf(stderr, "bench_rpc: connect: %s\n", err_msg());
            return rc < 0 ? rc : TWIG_EUNAVAIL;
        }
    }
    qsort(lat, CONNECT_CALLS, sizeof lat[0], cmp_double);
    *p50 = lat[CONNECT_CALLS / 2];
    return 0;
}

/* plaintext (the sink at plain_addr) against mutual TLS (a second sink made here, with
 * certificates openssl makes under /tmp), interleaved over reps; medians and ratios */
static int run_tls(const char *plain_addr, void *blob, double seconds, int reps)
{
    char dir[] = "/tmp/twig-bench-tls-XXXXXX";
    if (!mkdtemp(dir)) {
        return err_set(-errno, "mkdtemp: %s", strerror(errno));
    }
    char ca[TLSGEN_PATH_MAX], cert[TLSGEN_PATH_MAX], key[TLSGEN_PATH_MAX];
    tlsgen_path(ca, sizeof ca, dir, "ca", "pem");
    tlsgen_path(cert, sizeof cert, dir, "host", "pem");
    tlsgen_path(key, sizeof key, dir, "host", "key");
    rpc_tls tls = {.ca_file = ca, .cert_file = cert, .key_file = key};
    rpc_server_t *srv = NULL;
    rpc_server_cfg sc = {.listen = "127.0.0.1:0", .app = blob, .tls = &tls};
    int rc = tlsgen_ca(dir, "ca");
    rc = rc < 0 ? rc : tlsgen_cert(dir, "ca", "host");
    rc = rc < 0 ? rc : rpc_server_init(&srv, &sc, sink_methods,
                                       sizeof sink_methods / sizeof *sink_methods);
    rc = rc < 0 ? rc : rpc_server_start(srv);
    if (rc == 0) {
        char tls_addr[64];
        snprintf(tls_addr, sizeof tls_addr, "127.0.0.1:%d", rpc_server_port(srv));
        rpc_client_cfg tc = {.tls = &tls};
        /* [0] plaintext, [1] TLS: connect p50, appends/s, blob p50 */
        double conn[2][16], app[2][16], blob_p50[2][16], p99;
        for (int r = 0; r < reps && rc == 0; r++) {
            for (int k = 0; k < 2 && rc == 0; k++) {
                const char *addr = k ? tls_addr : plain_addr;
                const rpc_client_cfg *cc = k ? &tc : NULL;
                rc = run_connect(addr, cc, &conn[k][r]);
                app[k][r] = rc < 0 ? 0 : run_unary(addr, cc, 1, seconds, 9000 + 10 * r + k);
                rc = rc < 0 ? rc : run_blob(addr, cc, &blob_p50[k][r], &p99);
            }
        }
        for (int k = 0; k < 2 && rc == 0; k++) {
            qsort(conn[k], (size_t)reps, sizeof(double), cmp_double);
            qsort(app[k], (size_t)reps, sizeof(double), cmp_double);
            qsort(blob_p50[k], (size_t)reps, sizeof(double), cmp_double);
        }
        int m = reps / 2;
        for (int k = 0; k < 2 && rc == 0; k++) {
            printf("{\"bench\":\"tls\",\"impl\":\"rpc_%s\",\"reps\":%d,"
                   "\"connect_p50_ms\":%.2f,\"append_unary_tr_per_s\":%.0f,"
                   "\"blob_10MiB_p50_ms\":%.2f}\n",
                   k ? "mutual_tls" : "plaintext", reps, conn[k][m], app[k][m], blob_p50[k][m]);
        }
        if (rc == 0) {
            printf("{\"bench\":\"tls\",\"impl\":\"ratio_tls_over_plaintext\","
                   "\"connect\":%.2f,\"append_unary\":%.3f,\"blob_10MiB\":%.2f}\n",
                   conn[1][m] / conn[0][m], app[1][m] / app[0][m],
                   blob_p50[1][m] / blob_p50[0][m]);
        }
    }
    if (rc < 0) {
        fprintf(stderr, "bench_rpc: tls: %s\n", err_msg());
    }
    if (srv) {
        rpc_server_shutdown(srv, 100);
        rpc_server_free(srv);
    }
    fs_remove_tree(dir);
    return rc;
}

/* ---- weight pulls through a real model server ---- */

/* the server's options for model_pull: one fit of a full-size HalfCheetah ensemble (7 x 200,
 * 4 layers: MBPO's) on the first MODEL_ROWS rows, then nothing more to train (the first
 * training point is init_steps rounded up to a multiple of model_train_freq) */
#define MODEL_ROWS 2048
static const char *const model_sets[] = {
    "--set", "real_steps=1000000", "--set", "init_steps=2048", "--set",
    "model_train_freq=2048", "--set", "modelserver.train_max_epochs=2", "--set", NULL, NULL};

/* start bin, append MODEL_ROWS rows, wait for its first model, then pull it BLOB_PULLS
 * times (have_version 0: the whole blob each time); p50/p99 in ms and the blob's bytes */
static int run_model_pull(const char *bin, int hidden, double *p50, double *p99, size_t *bytes)
{
    server_proc s;
    const char *sets[sizeof model_sets / sizeof model_sets[0]];
    memcpy(sets, model_sets, sizeof sets);
    char hidden_set[64];
    snprintf(hidden_set, sizeof hidden_set, "modelserver.model_hidden=%d", hidden);
    sets[sizeof sets / sizeof sets[0] - 2] = hidden_set;
    int rc = server_start_bin(&s, bin, "none", sets);
    if (rc < 0) {
        fprintf(stderr, "bench_rpc: %s: %s\n", bin, err_msg());
        return rc;
    }
    rpc_client_t *cl;
    rpc_client_init(&cl, s.addr, NULL);
    rpc_call_opts o = {.deadline_ms = 30000};
    bench_batch *b = xmalloc(sizeof *b);
    bench_batch_init(b, 900);
    for (uint64_t seq = 1; rc == 0 && seq * B_COUNT <= MODEL_ROWS; seq++) {
        /* vary the rows so that the fit sees more than one point */
        for (int i = 0; i < B_COUNT * B_OBS; i++) {
            b->obs[i] = (float)((i * 7919 + (int)seq * 104729) % 2000) * 1e-3f - 1.0f;
            b->next_obs[i] = b->obs[i] * 0.9f;
        }
        b->v.seq = seq;
        Twig__V1__TransitionBatch m;
        msg_batch_from_view(&m, &b->v);
        ProtobufCMessage *r = NULL;
        rc = rpc_client_unary(cl, &r, "/twig.v1.ModelServer/AppendReal", &m.base,
                              &twig__v1__append_real_reply__descriptor, &o);
        protobuf_c_message_free_unpacked(r, NULL);
    }
    free(b);
    double lat[BLOB_PULLS];
    *bytes = 0;
    /* the first model: long polls of up to 10 s, within 300 s */
    for (double end = clock_now_s() + 300; rc == 0 && *bytes == 0;) {
        if (clock_now_s() > end) {
            rc = err_set(TWIG_EDEADLINE, "no model within 300 s");
            break;
        }
        Twig__V1__GetWeightsRequest q = TWIG__V1__GET_WEIGHTS_REQUEST__INIT;
        q.wait_ms = 10000;
        ProtobufCMessage *r = NULL;
        rc = rpc_client_unary(cl, &r, "/twig.v1.ModelServer/GetModel", &q.base,
                              &twig__v1__get_weights_reply__descriptor, &o);
        if (rc == 0) {
            const Twig__V1__GetWeightsReply *w = (const Twig__V1__GetWeightsReply *)r;
            *bytes = w->blob ? w->blob->data.len : 0;
            protobuf_c_message_free_unpacked(r, NULL);
        }
    }
    for (int i = 0; i < BLOB_PULLS && rc == 0; i++) {
        Twig__V1__GetWeightsRequest q = TWIG__V1__GET_WEIGHTS_REQUEST__INIT;
        ProtobufCMessage *r = NULL;
        double t0 = clock_now_s();
        rc = rpc_client_unary(cl, &r, "/twig.v1.ModelServer/GetModel", &q.base,
                              &twig__v1__get_weights_reply__descriptor, &o);
        lat[i] = (clock_now_s() - t0) * 1e3;
        if (rc == 0) {
            const Twig__V1__GetWeightsReply *w = (const Twig__V1__GetWeightsReply *)r;
            if (!w->blob || w->blob->data.len != *bytes ||
                crc32c(w->blob->data.data, w->blob->data.len) != w->blob->crc32c) {
                rc = err_set(TWIG_ECORRUPT, "pull %d: the model came back wrong", i);
            }
            protobuf_c_message_free_unpacked(r, NULL);
        }
    }
    rpc_client_free(cl);
    server_stop(&s);
    if (rc < 0) {
        fprintf(stderr, "bench_rpc: model pull from %s: %s\n", bin, err_msg());
        return rc;
    }
    qsort(lat, BLOB_PULLS, sizeof lat[0], cmp_double);
    *p50 = lat[BLOB_PULLS / 2];
    *p99 = lat[BLOB_PULLS - 1];
    return 0;
}

int main(int argc, char **argv)
{
    double seconds = 2.0;
    int reps = 3;
    const char *only = NULL;
    const char *only_fsync = NULL;
    const char *bins[4] = {SERVER_BIN};
    int n_bins = 0;
    int model_hidden = 200;   /* MBPO's; larger for a bigger model blob */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
            seconds = atof(argv[++i]);
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--fsync") && i + 1 < argc) {
            only_fsync = argv[++i];
        } else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
            only = argv[++i];
        } else if (!strcmp(argv[i], "--model-hidden") && i + 1 < argc) {
            model_hidden = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--server-bin") && i + 1 < argc && n_bins < 4) {
            bins[n_bins++] = argv[++i];
        } else {
            fprintf(stderr, "usage: bench_rpc [--seconds S] [--reps N] "
                            "[--only append|blob|pull|tls]"
                            " [--fsync none|group|batch] [--server-bin PATH]... [--model-hidden H]\n");
            return 2;
        }
    }
    if (model_hidden < 8 || model_hidden > 2048) {
        fprintf(stderr, "bench_rpc: --model-hidden must be in 8..2048\n");
        return 2;
    }
    if (only && strcmp(only, "append") && strcmp(only, "blob") && strcmp(only, "pull") &&
        strcmp(only, "tls")) {
        fprintf(stderr, "bench_rpc: --only '%s': append, blob, pull or tls\n", only);
        return 2;
    }
    if (seconds <= 0 || seconds > 600 || reps < 1 || reps > 16) {
        fprintf(stderr, "bench_rpc: --seconds must be in (0, 600], --reps in 1..16\n");
        return 2;
    }
    rpc_lib_init();

    /* the sink and blob server, in this process */
    Twig__V1__WeightBlob blob = TWIG__V1__WEIGHT_BLOB__INIT;
    uint8_t *blob_data = xmalloc(BLOB_BYTES);
    for (size_t i = 0; i < BLOB_BYTES; i++) {
        blob_data[i] = (uint8_t)(i * 2654435761u >> 24);
    }
    blob.kind = TWIG__V1__WEIGHT_KIND__WEIGHT_KIND_POLICY;
    blob.version = 1;
    blob.data.data = blob_data;
    blob.data.len = BLOB_BYTES;
    blob.crc32c = crc32c(blob_data, BLOB_BYTES);
    blob.env_id = (char *)"Bench-v0";
    rpc_server_cfg sc = {.listen = "127.0.0.1:0", .app = &blob};
    rpc_server_t *sink;
    int rc = rpc_server_init(&sink, &sc, sink_methods, sizeof sink_methods / sizeof *sink_methods);
    if (rc < 0 || (rc = rpc_server_start(sink)) < 0) {
        fprintf(stderr, "bench_rpc: sink server: %s\n", err_msg());
        return 1;
    }
    char sink_addr[64];
    snprintf(sink_addr, sizeof sink_addr, "127.0.0.1:%d", rpc_server_port(sink));

    if (!only || !strcmp(only, "append")) {
        /* per fsync policy one server; twig and the sink interleaved, reps times each,
         * medians reported (sources differ per rep so seqs never repeat) */
        const char *modes[] = {"none", "group", "batch"};
        const char *kinds[] = {"unary", "unary", "stream"};
        const int in_flight[] = {1, 4, 1};
        for (int k = 0; k < 3; k++) {
            if (only_fsync && strcmp(only_fsync, modes[k]) != 0) {
                continue;
            }
            server_proc s;
            if (server_start(&s, modes[k]) < 0) {
                fprintf(stderr, "bench_rpc: server: %s\n", err_msg());
                return 1;
            }
            double twig[3][16], sink_r[3][16];
            for (int r = 0; r < reps; r++) {
                for (int j = 0; j < 3; j++) {
                    int src = 100 * (r + 1) + 10 * j;
                    if (j < 2) {
                        sink_r[j][r] = run_unary(sink_addr, NULL, in_flight[j], seconds, src);
                        twig[j][r] = run_unary(s.addr, NULL, in_flight[j], seconds, src);
                    } else {
                        sink_r[j][r] = run_stream(sink_addr, seconds, src);
                        twig[j][r] = run_stream(s.addr, seconds, src);
                    }
                }
            }
            if (k == 0) {
                uint64_t log_end;
                double fr = run_fetch(s.addr, seconds, 4096, &log_end);
                printf("{\"bench\":\"fetch_real\",\"impl\":\"twig_modelserver\","
                       "\"max_count\":4096,\"obs\":%d,\"act\":%d,\"log_rows\":%" PRIu64 ","
                       "\"rows_per_s\":%.0f}\n", B_OBS, B_ACT, log_end, fr);
            }
            server_stop(&s);
            for (int j = 0; j < 3; j++) {
                qsort(twig[j], (size_t)reps, sizeof(double), cmp_double);
                qsort(sink_r[j], (size_t)reps, sizeof(double), cmp_double);
                print_append(kinds[j], modes[k], in_flight[j], reps, twig[j], sink_r[j]);
            }
        }
    }
    if ((!only || !strcmp(only, "tls")) && run_tls(sink_addr, &blob, seconds, reps) < 0) {
        return 1;
    }
    if (!only || !strcmp(only, "blob")) {
        double p50, p99;
        if (run_blob(sink_addr, NULL, &p50, &p99) == 0) {
            printf("{\"bench\":\"weight_blob\",\"impl\":\"rpc\",\"malloc\":\"glibc_default\","
                   "\"bytes\":%u,\"pulls\":%d,\"p50_ms\":%.2f,\"p99_ms\":%.2f}\n",
                   BLOB_BYTES, BLOB_PULLS, p50, p99);
        }
        /* big messages fault in fresh mmap'ed pages on every call unless glibc keeps them */
        mallopt(M_MMAP_THRESHOLD, 32 << 20);
        mallopt(M_TRIM_THRESHOLD, 512 << 20);
        mallopt(M_TOP_PAD, 64 << 20);
        if (run_blob(sink_addr, NULL, &p50, &p99) == 0) {
            printf("{\"bench\":\"weight_blob\",\"impl\":\"rpc\",\"malloc\":\"mmap_threshold_32M\","
                   "\"bytes\":%u,\"pulls\":%d,\"p50_ms\":%.2f,\"p99_ms\":%.2f}\n",
                   BLOB_BYTES, BLOB_PULLS, p50, p99);
        }
    }
    if (!only || !strcmp(only, "pull")) {
        /* the same model pulled from each server binary given (default: this build's),
         * interleaved over reps; with glibc's default malloc tuning on both ends */
        n_bins = n_bins ? n_bins : 1;
        double p50[4][16], p99[4][16];
        size_t bytes[4] = {0};
        for (int r = 0; r < reps; r++) {
            for (int k = 0; k < n_bins; k++) {
                if (run_model_pull(bins[k], model_hidden, &p50[k][r], &p99[k][r], &bytes[k]) < 0) {
                    return 1;
                }
            }
        }
        for (int k = 0; k < n_bins; k++) {
            qsort(p50[k], (size_t)reps, sizeof(double), cmp_double);
            qsort(p99[k], (size_t)reps, sizeof(double), cmp_double);
            printf("{\"bench\":\"model_pull\",\"impl\":\"twig_modelserver\",\"server\":\"%s\","
                   "\"model_hidden\":%d,\"bytes\":%zu,\"pulls\":%d,\"reps\":%d,\"p50_ms\":%.2f,\"p99_ms\":%.2f,"
                   "\"p50_min\":%.2f,\"p50_max\":%.2f}\n",
                   bins[k], model_hidden, bytes[k], BLOB_PULLS, reps, p50[k][reps / 2], p99[k][reps / 2],
                   p50[k][0], p50[k][reps - 1]);
            fflush(stdout);
        }
    }
    rpc_server_shutdown(sink, 500);
    rpc_server_free(sink);
    free(blob_data);
    rpc_lib_shutdown(2000);
    return 0;
}
