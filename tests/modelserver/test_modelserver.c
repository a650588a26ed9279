/* tests of the real twig-modelserver binary over gRPC: append/fetch, validation, long polls,
 * streams, concurrency, kill -9 and restart, SIGTERM with calls in flight, bad flags.
 * Every server is started on 127.0.0.1:0 with --port-file; readiness is a health poll with a
 * deadline, never a sleep. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/base/err.h"
#include "modelserver/reallog.h"
#include "common/rpc/rpc.h"
#include "fixture.h"
#include "tests/procfix.h"

#define SERVER_BIN TWIG_BIN_DIR "/modelserver/twig-modelserver"
#define ENV "Pendulum-v1"
#define O 3
#define A 1
#define P_APPEND "/twig.v1.ModelServer/AppendReal"
#define P_STREAM "/twig.v1.ModelServer/AppendRealStream"
#define P_FETCH "/twig.v1.ModelServer/FetchReal"
#define P_STATUS "/twig.v1.ModelServer/LogStatus"

static char tmp[PROCFIX_DIR_LEN];

static void setup(void)
{
    procfix_tmpdir(tmp, sizeof tmp);
    rpc_lib_init();
}

static void teardown(void)
{
    procfix_reap_all(); /* servers a failed assertion left running */
    rpc_lib_shutdown(2000);
    procfix_tmpdir_done(tmp);
}

TestSuite(modelserver, .init = setup, .fini = teardown, .timeout = 240);

/* ---- the server process ---- */

typedef struct server {
    procfix_t p;
    char data_dir[512];
} server;

/* spawn the binary on s->data_dir with extra args (NULL-terminated); returns its pid */
static pid_t spawn_server(server *s, const char *const *extra)
{
    /* a log service with room for every test's appends (a log past real_steps is refused) */
    const char *argv[32] = {SERVER_BIN,    "--listen",      "127.0.0.1:0", "--data-dir",
                            s->data_dir,   "--port-file",   s->p.port_file, "--log-level",
                            "warn",        "--set",         "real_steps=1000000000"};
    int n = 11;
    for (int i = 0; extra && extra[i]; i++) {
        argv[n++] = extra[i];
    }
    argv[n] = NULL;
    return procfix_spawn(argv, s->p.log_file);
}

/* start a server on data_dir, its port and log files tmp/name.*, and wait until it serves */
static void start_server_in(server *s, const char *data_dir, const char *name,
                            const char *const *extra)
{
    snprintf(s->data_dir, sizeof s->data_dir, "%s", data_dir);
    snprintf(s->p.port_file, sizeof s->p.port_file, "%s/%s.p.port", tmp, name);
    snprintf(s->p.log_file, sizeof s->p.log_file, "%s/%s.log", tmp, name);
    unlink(s->p.port_file);
    s->p.pid = spawn_server(s, extra);
    /* the port file appears (atomic rename) once the server is bound and serving */
    procfix_wait_serving(&s->p, 20000);
}

/* start a server on data dir name (under tmp) and wait until it serves */
static void start_server(server *s, const char *name, const char *const *extra)
{
    char d[512];
    snprintf(d, sizeof d, "%s/%s", tmp, name);
    start_server_in(s, d, name, extra);
}

/* ---- calls ---- */

static rpc_client_t *client_of(const server *s)
{
    rpc_client_t *cl;
    cr_assert_eq(rpc_client_init(&cl, s->p.addr, NULL), 0);
    return cl;
}

static const rpc_call_opts call_opts = {.deadline_ms = 10000};

static int append(rpc_client_t *cl, Twig__V1__AppendRealReply **reply, const fx_batch *b)
{
    Twig__V1__TransitionBatch m;
    msg_batch_from_view(&m, &b->v);
    ProtobufCMessage *r = NULL;
    int rc = rpc_client_unary(cl, &r, P_APPEND, &m.base, &twig__v1__append_real_reply__descriptor,
                              &call_opts);
    *reply = (Twig__V1__AppendRealReply *)r;
    return rc;
}

/* append batch (src, seq, count) and expect success; returns first_offset */
static uint64_t append_ok(rpc_client_t *cl, int src, uint64_t seq, uint32_t count, int *dup)
{
    fx_batch b;
    fx_batch_make(&b, ENV, src, seq, count, O, A);
    Twig__V1__AppendRealReply *r;
    int rc = append(cl, &r, &b);
    cr_assert_eq(rc, 0, "append: %s %s", err_name(rc), err_msg());
    cr_assert_eq(r->count, count);
    cr_assert_eq(r->seq, seq);
    uint64_t first = r->first_offset;
    if (dup) {
        *dup = r->duplicate;
    }
    protobuf_c_message_free_unpacked(&r->base, NULL);
    fx_batch_free(&b);
    return first;
}

static int fetch(rpc_client_t *cl, Twig__V1__FetchRealReply **reply, uint64_t from,
                 uint32_t max_count, uint32_t wait_ms)
{
    Twig__V1__FetchRealRequest q = TWIG__V1__FETCH_REAL_REQUEST__INIT;
    q.from_offset = from;
    q.max_count = max_count;
    q.wait_ms = wait_ms;
    ProtobufCMessage *r = NULL;
    int rc = rpc_client_unary(cl, &r, P_FETCH, &q.base, &twig__v1__fetch_real_reply__descriptor,
                              &call_opts);
    *reply = (Twig__V1__FetchRealReply *)r;
    return rc;
}

static Twig__V1__LogStatusReply *status_of(rpc_client_t *cl)
{
    Twig__V1__LogStatusRequest q = TWIG__V1__LOG_STATUS_REQUEST__INIT;
    ProtobufCMessage *r = NULL;
    int rc = rpc_client_unary(cl, &r, P_STATUS, &q.base, &twig__v1__log_status_reply__descriptor,
                              &call_opts);
    cr_assert_eq(rc, 0, "status: %s", err_msg());
    return (Twig__V1__LogStatusReply *)r;
}

/* what the row at an offset must be */
typedef struct expect_row {
    int src;
    uint64_t seq;
    uint32_t row;
} expect_row;

/* fetch [0, n) and check each row against want, bit for bit */
static void expect_log(rpc_client_t *cl, const expect_row *want, uint64_t n)
{
    uint64_t at = 0;
    while (at < n) {
        Twig__V1__FetchRealReply *r;
        int rc = fetch(cl, &r, at, 1000, 0);
        cr_assert_eq(rc, 0, "fetch: %s", err_msg());
        cr_assert_eq(r->first_offset, at);
        cr_assert_not_null(r->batch, "no rows at %" PRIu64 " (end %" PRIu64 ")", at,
                           r->end_offset);
        const Twig__V1__TransitionBatch *b = r->batch;
        cr_assert_eq(msg_batch_check(b, MSG_BATCH_MAX_COUNT), -EINVAL);   /* no source_id */
        cr_assert_str_eq(b->env_id, ENV);
        cr_assert_eq(b->obs_dim, O);
        cr_assert_eq(b->act_dim, A);
        cr_assert_eq(b->n_obs, (size_t)b->count * O);
        cr_assert_eq(b->n_terminated, b->count);
        for (uint32_t i = 0; i < b->count && at + i < n; i++) {
            const expect_row *e = &want[at + i];
            cr_assert(fx_row_matches(b->obs + i * O, b->act + i * A, b->reward + i,
                                     b->next_obs + i * O, b->terminated + i, b->truncated + i,
                                     O, A, e->src, e->seq, e->row),
                      "row at offset %" PRIu64 " differs", at + i);
        }
        at += b->count;
        protobuf_c_message_free_unpacked(&r->base, NULL);
    }
}

/* ---- tests ---- */

Test(modelserver, append_then_fetch_is_bit_exact_and_health_answers)
{
    server s;
    start_server(&s, "d", NULL);
    cr_expect_eq(rpc_health_check(s.p.addr, "", 2000), RPC_HEALTH_SERVING);
    cr_expect_eq(rpc_health_check(s.p.addr, "twig.v1.ModelServer", 2000), RPC_HEALTH_SERVING);
    cr_expect_eq(rpc_health_check(s.p.addr, "no.Such", 2000), TWIG_ENOTFOUND);
    rpc_client_t *cl = client_of(&s);

    /* empty log: an empty fetch says why */
    Twig__V1__FetchRealReply *f;
    cr_assert_eq(fetch(cl, &f, 0, 10, 0), 0);
    cr_expect_null(f->batch);
    cr_expect_eq(f->empty_reason, TWIG__V1__EMPTY_REASON__EMPTY_REASON_AT_END);
    protobuf_c_message_free_unpacked(&f->base, NULL);

    expect_row want[64];
    uint64_t end = 0;
    uint32_t counts[] = {5, 1, 17, 9};
    for (int k = 0; k < 4; k++) {
        int dup;
        uint64_t first = append_ok(cl, 1, (uint64_t)k + 1, counts[k], &dup);
        cr_expect_eq(first, end);
        cr_expect_eq(dup, 0);
        for (uint32_t i = 0; i < counts[k]; i++) {
            want[end + i] = (expect_row){1, (uint64_t)k + 1, i};
        }
        end += counts[k];
    }
    expect_log(cl, want, end);
    /* a window inside records */
    cr_assert_eq(fetch(cl, &f, 3, 4, 0), 0);
    cr_assert_not_null(f->batch);
    cr_expect_eq(f->batch->count, 4);
    cr_expect_eq(f->end_offset, end);
    cr_expect(fx_row_matches(f->batch->obs, f->batch->act, f->batch->reward, f->batch->next_obs,
                             f->batch->terminated, f->batch->truncated, O, A, 1, 1, 3));
    protobuf_c_message_free_unpacked(&f->base, NULL);
    /* a retry answers with the original offsets */
    int dup;
    cr_expect_eq(append_ok(cl, 1, 2, 1, &dup), 5);
    cr_expect_eq(dup, 1);

    Twig__V1__LogStatusReply *st = status_of(cl);
    cr_expect_eq(st->end_offset, end);
    cr_expect_eq(st->sources, 1);
    cr_expect_str_eq(st->env_id, ENV);
    cr_expect_eq(st->obs_dim, O);
    cr_expect_eq(st->act_dim, A);
    protobuf_c_message_free_unpacked(&st->base, NULL);
    rpc_client_free(cl);
    procfix_stop(&s.p);

    /* the env id fixed by the first batch is kept in the data dir */
    const char *other[] = {"--env", "Hopper-v4", NULL};
    snprintf(s.data_dir, sizeof s.data_dir, "%s/d", tmp);
    cr_expect_eq(procfix_exit_code(spawn_server(&s, other), 20000), 2,
                 "a log of another env is the config's error: exit 2, never restarted");
}

static void expect_invalid(rpc_client_t *cl, fx_batch *b, const char *text)
{
    Twig__V1__AppendRealReply *r;
    int rc = append(cl, &r, b);
    cr_expect_eq(rc, -EINVAL, "%s: got %s %s", text, err_name(rc), err_msg());
    cr_expect(strstr(err_msg(), text) != NULL, "'%s' not in '%s'", text, err_msg());
    cr_expect_null(r);
}

Test(modelserver, bad_batches_get_invalid_argument_and_the_server_keeps_serving)
{
    server s;
    const char *extra[] = {"--env", ENV, NULL};
    start_server(&s, "d", extra);
    rpc_client_t *cl = client_of(&s);
    append_ok(cl, 1, 1, 4, NULL);

    fx_batch b;
    fx_batch_make(&b, ENV, 1, 2, 4, O + 1, A);
    expect_invalid(cl, &b, "obs_dim is 4, the log's is 3");
    fx_batch_free(&b);

    fx_batch_make(&b, ENV, 1, 2, 4, O, A);
    float keep = b.reward[1];
    b.reward[1] = NAN;
    expect_invalid(cl, &b, "reward[1] is NaN");
    b.reward[1] = keep;
    /* count says 3, the arrays hold 4 rows */
    Twig__V1__TransitionBatch m;
    msg_batch_from_view(&m, &b.v);
    m.count = 3;
    ProtobufCMessage *rr = NULL;
    int rc = rpc_client_unary(cl, &rr, P_APPEND, &m.base,
                              &twig__v1__append_real_reply__descriptor, &call_opts);
    cr_expect_eq(rc, -EINVAL);
    cr_expect(strstr(err_msg(), "obs has 12 elements, expected 9") != NULL, "%s", err_msg());
    cr_expect_null(rr);
    fx_batch_free(&b);

    fx_batch_make(&b, "Hopper-v4", 1, 2, 4, O, A);
    expect_invalid(cl, &b, "env_id is 'Hopper-v4', the run's is 'Pendulum-v1'");
    fx_batch_free(&b);

    fx_batch_make(&b, ENV, 1, 2, 4, O, A);
    b.v.source_id = "";
    expect_invalid(cl, &b, "source_id is empty");
    fx_batch_free(&b);

    /* bytes that are not a TransitionBatch */
    const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x12, 0x99};
    uint8_t *raw = NULL;
    size_t n_raw = 0;
    rc = rpc_client_unary_bytes(cl, &raw, &n_raw, P_APPEND, junk, sizeof junk, &call_opts);
    cr_expect_eq(rc, -EINVAL, "junk: %s", err_msg());
    free(raw);

    /* still serving, nothing bad stored */
    cr_expect_eq(append_ok(cl, 1, 2, 4, NULL), 4);
    Twig__V1__LogStatusReply *st = status_of(cl);
    cr_expect_eq(st->end_offset, 8);
    protobuf_c_message_free_unpacked(&st->base, NULL);
    rpc_client_free(cl);
    procfix_stop(&s.p);
}

/* appends one batch after a delay, from another thread */
typedef struct late_append {
    const char *addr;
    int delay_ms;
    uint64_t seq;
} late_append;

static void *late_append_main(void *p)
{
    late_append *la = p;
    procfix_pause_ms(la->delay_ms);   /* the point of the test: data arrives while a fetch waits */
    rpc_client_t *cl;
    rpc_client_init(&cl, la->addr, NULL);
    fx_batch b;
    fx_batch_make(&b, ENV, 2, la->seq, 3, O, A);
    Twig__V1__AppendRealReply *r = NULL;
    if (append(cl, &r, &b) == 0) {
        protobuf_c_message_free_unpacked(&r->base, NULL);
    }
    fx_batch_free(&b);
    rpc_client_free(cl);
    return NULL;
}

Test(modelserver, fetch_long_poll_answers_on_data_or_at_the_wait_deadline)
{
    server s;
    start_server(&s, "d", NULL);
    rpc_client_t *cl = client_of(&s);
    append_ok(cl, 1, 1, 2, NULL);

    /* nothing arrives: empty at the deadline */
    int64_t t0 = procfix_now_ms();
    Twig__V1__FetchRealReply *f;
    cr_assert_eq(fetch(cl, &f, 2, 10, 300), 0, "%s", err_msg());
    int64_t took = procfix_now_ms() - t0;
    cr_expect_null(f->batch);
    cr_expect_eq(f->empty_reason, TWIG__V1__EMPTY_REASON__EMPTY_REASON_AT_END);
    cr_expect_geq(took, 250, "answered after %lld ms", (long long)took);
    protobuf_c_message_free_unpacked(&f->base, NULL);

    /* data arrives after 200 ms: answered with it, well before the 8 s wait */
    late_append la = {s.p.addr, 200, 1};
    pthread_t th;
    pthread_create(&th, NULL, late_append_main, &la);
    t0 = procfix_now_ms();
    cr_assert_eq(fetch(cl, &f, 2, 10, 8000), 0, "%s", err_msg());
    took = procfix_now_ms() - t0;
    pthread_join(th, NULL);
    cr_assert_not_null(f->batch);
    cr_expect_eq(f->batch->count, 3);
    cr_expect_eq(f->first_offset, 2);
    cr_expect(fx_row_matches(f->batch->obs, f->batch->act, f->batch->reward, f->batch->next_obs,
                             f->batch->terminated, f->batch->truncated, O, A, 2, 1, 0));
    cr_expect_lt(took, 6000, "answered after %lld ms", (long long)took);
    protobuf_c_message_free_unpacked(&f->base, NULL);

    /* past the end, or a too long wait: errors naming the field */
    cr_expect_eq(fetch(cl, &f, 99, 10, 0), -ERANGE);
    cr_expect(strstr(err_msg(), "from_offset 99") != NULL, "%s", err_msg());
    cr_expect_eq(fetch(cl, &f, 0, 10, 999999), -EINVAL);
    cr_expect(strstr(err_msg(), "wait_ms") != NULL, "%s", err_msg());
    rpc_client_free(cl);
    procfix_stop(&s.p);
}

static int stream_append(rpc_client_t *cl, Twig__V1__AppendRealStreamReply **reply, int src,
                         uint64_t seq0, int n, uint32_t count, int bad_at)
{
    /* a stream of thousands of batches, each fdatasync'ed under --fsync batch, takes seconds
     * on a loaded machine: its deadline covers the whole stream */
    static const rpc_call_opts stream_opts = {.deadline_ms = 120000};
    rpc_stream_t *st;
    int rc = rpc_client_stream_open(cl, &st, P_STREAM, &stream_opts);
    cr_assert_eq(rc, 0, "%s", err_msg());
    for (int k = 0; k < n; k++) {
        fx_batch b;
        fx_batch_make(&b, ENV, src, seq0 + (uint64_t)k, count, O, A);
        if (k == bad_at) {
            b.obs[0] = INFINITY;
        }
        Twig__V1__TransitionBatch m;
        msg_batch_from_view(&m, &b.v);
        rc = rpc_stream_send(st, &m.base);
        fx_batch_free(&b);
        if (rc < 0) {
            break;
        }
    }
    ProtobufCMessage *r = NULL;
    rc = rpc_stream_finish(st, &r, &twig__v1__append_real_stream_reply__descriptor);
    *reply = (Twig__V1__AppendRealStreamReply *)r;
    return rc;
}

Test(modelserver, stream_of_appends_acks_every_message)
{
    server s;
    const char *extra[] = {"--fsync", "group", NULL};
    start_server(&s, "d", extra);
    rpc_client_t *cl = client_of(&s);
    static expect_row want[2000];
    Twig__V1__AppendRealStreamReply *r;
    int rc = stream_append(cl, &r, 1, 1, 200, 5, -1);
    cr_assert_eq(rc, 0, "stream: %s", err_msg());
    cr_assert_eq(r->n_acks, 200);
    cr_expect_eq(r->transitions, 1000);
    for (size_t k = 0; k < r->n_acks; k++) {
        cr_assert_eq(r->acks[k]->seq, k + 1);
        cr_assert_eq(r->acks[k]->first_offset, k * 5);
        cr_assert_eq(r->acks[k]->count, 5);
        for (uint32_t i = 0; i < 5; i++) {
            want[k * 5 + i] = (expect_row){1, k + 1, i};
        }
    }
    protobuf_c_message_free_unpacked(&r->base, NULL);
    expect_log(cl, want, 1000);

    /* resending the same stream stores nothing new */
    rc = stream_append(cl, &r, 1, 1, 200, 5, -1);
    cr_assert_eq(rc, 0, "stream: %s", err_msg());
    cr_expect_eq(r->transitions, 0);
    cr_expect_eq(r->acks[7]->duplicate, 1);
    cr_expect_eq(r->acks[7]->first_offset, 35);
    protobuf_c_message_free_unpacked(&r->base, NULL);

    /* a bad message fails the call, naming it */
    rc = stream_append(cl, &r, 2, 1, 10, 5, 4);
    cr_expect_eq(rc, -EINVAL);
    cr_expect(strstr(err_msg(), "message #4: obs[0][0] is Inf") != NULL, "%s", err_msg());
    /* the four before it were queued and get stored (the error does not wait for them) */
    uint64_t end = 0;
    for (int64_t deadline = procfix_now_ms() + 10000; procfix_now_ms() < deadline;
         procfix_pause_ms(5)) {
        Twig__V1__LogStatusReply *st = status_of(cl);
        end = st->end_offset;
        protobuf_c_message_free_unpacked(&st->base, NULL);
        if (end >= 1000 + 4 * 5) {
            break;
        }
    }
    cr_expect_eq(end, 1000 + 4 * 5);
    cr_expect_eq(append_ok(cl, 2, 3, 5, NULL), 1010);   /* stored earlier: a duplicate */
    rpc_client_free(cl);
    procfix_stop(&s.p);
}

/* ---- concurrency ---- */

typedef struct pusher {
    const char *addr;
    int src;
    int n;
    uint32_t count;
    uint64_t *firsts;        /* (n) offset acked for seq k+1, UINT64_MAX if not acked */
    atomic_int *acked;       /* shared progress counter (may be NULL) */
    atomic_int *stop;        /* stop early when set (may be NULL) */
    int attempted;
} pusher;

static void *pusher_main(void *p)
{
    pusher *u = p;
    rpc_client_t *cl;
    rpc_client_init(&cl, u->addr, NULL);
    rpc_call_opts o = {.deadline_ms = 20000};
    for (int k = 0; k < u->n; k++) {
        u->firsts[k] = UINT64_MAX;
    }
    for (int k = 0; k < u->n && !(u->stop && atomic_load(u->stop)); k++) {
        fx_batch b;
        fx_batch_make(&b, ENV, u->src, (uint64_t)k + 1, u->count, O, A);
        Twig__V1__TransitionBatch m;
        msg_batch_from_view(&m, &b.v);
        ProtobufCMessage *r = NULL;
        u->attempted = k + 1;
        int rc = rpc_client_unary(cl, &r, P_APPEND, &m.base,
                                  &twig__v1__append_real_reply__descriptor, &o);
        fx_batch_free(&b);
        if (rc < 0) {
            break;   /* the server went away */
        }
        Twig__V1__AppendRealReply *a = (Twig__V1__AppendRealReply *)r;
        if (a->count == u->count && a->seq == (uint64_t)k + 1) {
            u->firsts[k] = a->first_offset;
        }
        protobuf_c_message_free_unpacked(r, NULL);
        if (u->acked) {
            atomic_fetch_add(u->acked, 1);
        }
    }
    rpc_client_free(cl);
    return NULL;
}

Test(modelserver, eight_clients_times_1000_appends_each_stored_exactly_once)
{
    enum { T = 8, N = 1000, C = 2 };
    server s;
    const char *extra[] = {"--fsync", "group", NULL};
    start_server(&s, "d", extra);
    pthread_t th[T];
    pusher u[T];
    for (int t = 0; t < T; t++) {
        u[t] = (pusher){.addr = s.p.addr, .src = t + 1, .n = N, .count = C,
                        .firsts = xcalloc(N, sizeof(uint64_t))};
        pthread_create(&th[t], NULL, pusher_main, &u[t]);
    }
    for (int t = 0; t < T; t++) {
        pthread_join(th[t], NULL);
    }
    /* the acks partition [0, T*N*C) */
    static expect_row want[T * N * C];
    static char seen[T * N * C];
    for (int t = 0; t < T; t++) {
        for (int k = 0; k < N; k++) {
            uint64_t f = u[t].firsts[k];
            cr_assert_lt(f, (uint64_t)T * N * C, "client %d seq %d not acked", t, k + 1);
            for (uint32_t i = 0; i < C; i++) {
                cr_assert_eq(seen[f + i], 0, "offset %" PRIu64 " acked twice", f + i);
                seen[f + i] = 1;
                want[f + i] = (expect_row){t + 1, (uint64_t)k + 1, i};
            }
        }
        free(u[t].firsts);
    }
    rpc_client_t *cl = client_of(&s);
    Twig__V1__LogStatusReply *st = status_of(cl);
    cr_expect_eq(st->end_offset, (uint64_t)T * N * C);
    cr_expect_eq(st->sources, T);
    protobuf_c_message_free_unpacked(&st->base, NULL);
    expect_log(cl, want, (uint64_t)T * N * C);
    rpc_client_free(cl);
    procfix_stop(&s.p);
}

/* the last segment file of a data dir */
static void last_segment(char *out, size_t n, const char *dir)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    struct dirent *e;
    char best[64] = "";
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len == 24 && !strcmp(e->d_name + 20, ".seg") && strcmp(e->d_name, best) > 0) {
            memcpy(best, e->d_name, len + 1);   /* len == 24 */
        }
    }
    closedir(d);
    cr_assert(best[0]);
    snprintf(out, n, "%s/%s", dir, best);
}

static off_t size_of(const char *p)
{
    struct stat st;
    cr_assert_eq(stat(p, &st), 0);
    return st.st_size;
}

Test(modelserver, kill_9_keeps_every_acked_batch_once_and_retries_dedup)
{
    enum { T = 2, N = 100000, C = 3 };
    server s;
    const char *extra[] = {"--segment-mb", "1", NULL};
    start_server(&s, "d", extra);
    atomic_int acked = 0, stop = 0;
    pthread_t th[T];
    pusher u[T];
    for (int t = 0; t < T; t++) {
        u[t] = (pusher){.addr = s.p.addr, .src = t + 1, .n = N, .count = C,
                        .firsts = xcalloc(N, sizeof(uint64_t)), .acked = &acked, .stop = &stop};
        pthread_create(&th[t], NULL, pusher_main, &u[t]);
    }
    /* kill -9 in the middle of the appends */
    int64_t deadline = procfix_now_ms() + 60000;
    while (atomic_load(&acked) < 300 && procfix_now_ms() < deadline) {
        procfix_pause_ms(2);
    }
    cr_assert_geq(atomic_load(&acked), 300, "appends too slow");
    procfix_kill9(&s.p);
    atomic_store(&stop, 1);
    for (int t = 0; t < T; t++) {
        pthread_join(th[t], NULL);
    }

    /* a torn write at the end of the last segment, as a power cut would leave */
    char seg[1024];
    last_segment(seg, sizeof seg, s.data_dir);
    off_t good = size_of(seg);
    int fd = open(seg, O_WRONLY | O_APPEND);
    const char torn[] = "TWR1\x40\x00\x00\x00garbage-of-a-half-written-record";
    cr_assert_eq(write(fd, torn, sizeof torn), (ssize_t)sizeof torn);
    close(fd);

    start_server(&s, "d", extra);
    cr_expect_eq(size_of(seg), good, "torn tail not truncated");
    rpc_client_t *cl = client_of(&s);
    Twig__V1__LogStatusReply *st = status_of(cl);
    uint64_t end = st->end_offset;
    protobuf_c_message_free_unpacked(&st->base, NULL);

    /* every acked batch is at its offset */
    expect_row *want = xcalloc(end + 1, sizeof *want);
    char *seen = xcalloc(end + 1, 1);
    int n_acked = 0;
    for (int t = 0; t < T; t++) {
        for (int k = 0; k < u[t].attempted; k++) {
            uint64_t f = u[t].firsts[k];
            if (f == UINT64_MAX) {
                continue;
            }
            n_acked++;
            cr_assert_leq(f + C, end, "acked batch at %" PRIu64 " lost (end %" PRIu64 ")", f,
                          end);
            for (uint32_t i = 0; i < C; i++) {
                seen[f + i] = 1;
                want[f + i] = (expect_row){t + 1, (uint64_t)k + 1, i};
            }
        }
    }
    /* rows that are not acked: at most the batches in flight at the kill (one per client) */
    uint64_t unacked_rows = 0;
    for (uint64_t i = 0; i < end; i++) {
        unacked_rows += !seen[i];
    }
    cr_expect_leq(unacked_rows, (uint64_t)T * C);
    /* retry everything each client attempted: acked ones come back as duplicates with the
     * original offsets; the one in flight at the kill is a duplicate if it reached the disk,
     * else stored at the end */
    for (int t = 0; t < T; t++) {
        for (int k = 0; k < u[t].attempted; k++) {
            int dup;
            uint64_t f = append_ok(cl, t + 1, (uint64_t)k + 1, C, &dup);
            if (u[t].firsts[k] != UINT64_MAX) {
                cr_assert_eq(dup, 1);
                cr_assert_eq(f, u[t].firsts[k]);
            } else if (!dup) {
                cr_assert_eq(f, end, "a new batch goes at the end");
                end += C;
            }
            if (u[t].firsts[k] == UINT64_MAX) {
                want = xrealloc(want, (end + 1) * sizeof *want);
                for (uint32_t i = 0; i < C; i++) {
                    want[f + i] = (expect_row){t + 1, (uint64_t)k + 1, i};
                }
            }
        }
        free(u[t].firsts);
    }
    /* now every row is accounted for exactly once, and the log holds exactly those */
    st = status_of(cl);
    cr_expect_eq(st->end_offset, end);
    cr_expect_eq(end, (uint64_t)(u[0].attempted + u[1].attempted) * C);
    protobuf_c_message_free_unpacked(&st->base, NULL);
    expect_log(cl, want, end);
    cr_expect_gt(n_acked, 299);
    free(want);
    free(seen);
    rpc_client_free(cl);
    procfix_stop(&s.p);
}

/* a long poll parked at the log's end while the server shuts down */
typedef struct parked_fetch {
    const char *addr;
    uint64_t from;
    int rc;
    int empty_reason;
    int64_t took_ms;
} parked_fetch;

static void *parked_fetch_main(void *p)
{
    parked_fetch *pf = p;
    rpc_client_t *cl;
    rpc_client_init(&cl, pf->addr, NULL);
    Twig__V1__FetchRealRequest q = TWIG__V1__FETCH_REAL_REQUEST__INIT;
    q.from_offset = pf->from;
    q.wait_ms = 60000;
    rpc_call_opts o = {.deadline_ms = 70000};
    ProtobufCMessage *r = NULL;
    int64_t t0 = procfix_now_ms();
    pf->rc = rpc_client_unary(cl, &r, P_FETCH, &q.base, &twig__v1__fetch_real_reply__descriptor,
                              &o);
    pf->took_ms = procfix_now_ms() - t0;
    if (r) {
        pf->empty_reason = ((Twig__V1__FetchRealReply *)r)->empty_reason;
        protobuf_c_message_free_unpacked(r, NULL);
    }
    rpc_client_free(cl);
    return NULL;
}

typedef struct stream_job {
    const char *addr;
    int n;
    int rc;
} stream_job;

static void *stream_job_main(void *p)
{
    stream_job *j = p;
    rpc_client_t *cl;
    rpc_client_init(&cl, j->addr, NULL);
    Twig__V1__AppendRealStreamReply *r = NULL;
    j->rc = stream_append(cl, &r, 5, 1, j->n, 4, -1);
    if (j->rc == 0) {
        err_clear();
    }
    if (r) {
        protobuf_c_message_free_unpacked(&r->base, NULL);
    }
    rpc_client_free(cl);
    return NULL;
}

Test(modelserver, kill_9_during_a_client_stream_then_resending_it_stores_each_batch_once)
{
    enum { N = 3000, C = 4 };
    server s;
    const char *extra[] = {"--fsync", "batch", NULL};   /* one fdatasync each: slow enough */
    start_server(&s, "d", extra);
    stream_job j = {.addr = s.p.addr, .n = N, .rc = 1};
    pthread_t th;
    pthread_create(&th, NULL, stream_job_main, &j);
    /* kill -9 once part of the stream is in the log */
    rpc_client_t *cl = client_of(&s);
    uint64_t end = 0;
    for (int64_t deadline = procfix_now_ms() + 30000; procfix_now_ms() < deadline && end < 40 * C;
         procfix_pause_ms(1)) {
        Twig__V1__LogStatusReply *st = status_of(cl);
        end = st->end_offset;
        protobuf_c_message_free_unpacked(&st->base, NULL);
    }
    cr_assert_geq(end, 40 * C);
    rpc_client_free(cl);
    procfix_kill9(&s.p);
    pthread_join(th, NULL);
    cr_expect_neq(j.rc, 0, "the stream finished before the kill");

    /* restart and resend the whole stream: what was stored comes back as duplicates */
    start_server(&s, "d", extra);
    cl = client_of(&s);
    Twig__V1__LogStatusReply *st = status_of(cl);
    uint64_t before = st->end_offset;
    protobuf_c_message_free_unpacked(&st->base, NULL);
    cr_assert_eq(before % C, 0, "a partial batch survived");
    Twig__V1__AppendRealStreamReply *r;
    int rc = stream_append(cl, &r, 5, 1, N, C, -1);
    cr_assert_eq(rc, 0, "resend: %s", err_msg());
    cr_assert_eq(r->n_acks, N);
    cr_expect_eq(r->transitions, (uint64_t)N * C - before);
    static expect_row want[N * C];
    static char seen[N * C];
    for (int k = 0; k < N; k++) {
        const Twig__V1__AppendRealReply *a = r->acks[k];
        cr_assert_eq(a->seq, (uint64_t)k + 1);
        cr_assert_eq(a->duplicate, a->first_offset < before);
        cr_assert_leq(a->first_offset + C, (uint64_t)N * C);
        for (uint32_t i = 0; i < C; i++) {
            cr_assert_eq(seen[a->first_offset + i], 0);
            seen[a->first_offset + i] = 1;
            want[a->first_offset + i] = (expect_row){5, (uint64_t)k + 1, i};
        }
    }
    protobuf_c_message_free_unpacked(&r->base, NULL);
    st = status_of(cl);
    cr_expect_eq(st->end_offset, (uint64_t)N * C);
    protobuf_c_message_free_unpacked(&st->base, NULL);
    expect_log(cl, want, (uint64_t)N * C);
    rpc_client_free(cl);
    procfix_stop(&s.p);
}

Test(modelserver, sigterm_with_calls_in_flight_exits_0_and_keeps_acked_data)
{
    enum { T = 3, N = 100000, C = 2 };
    server s;
    start_server(&s, "d", NULL);
    atomic_int acked = 0;
    pthread_t th[T];
    pusher u[T];
    for (int t = 0; t < T; t++) {
        u[t] = (pusher){.addr = s.p.addr, .src = t + 1, .n = N, .count = C,
                        .firsts = xcalloc(N, sizeof(uint64_t)), .acked = &acked};
        pthread_create(&th[t], NULL, pusher_main, &u[t]);
    }
    int64_t deadline = procfix_now_ms() + 60000;
    while (atomic_load(&acked) < 100 && procfix_now_ms() < deadline) {
        procfix_pause_ms(2);
    }
    cr_assert_geq(atomic_load(&acked), 100);
    procfix_stop(&s.p);   /* asserts exit status 0 */
    for (int t = 0; t < T; t++) {
        pthread_join(th[t], NULL);
    }

    start_server(&s, "d", NULL);
    rpc_client_t *cl = client_of(&s);
    Twig__V1__LogStatusReply *st = status_of(cl);
    uint64_t end = st->end_offset;
    protobuf_c_message_free_unpacked(&st->base, NULL);
    for (int t = 0; t < T; t++) {
        for (int k = 0; k < u[t].attempted; k++) {
            if (u[t].firsts[k] != UINT64_MAX) {
                cr_assert_leq(u[t].firsts[k] + C, end);
                int dup;
                cr_assert_eq(append_ok(cl, t + 1, (uint64_t)k + 1, C, &dup), u[t].firsts[k]);
                cr_assert_eq(dup, 1);
            }
        }
        free(u[t].firsts);
    }
    rpc_client_free(cl);
    procfix_stop(&s.p);
}

Test(modelserver, sigterm_answers_parked_long_polls_and_exits_0)
{
    server s;
    start_server(&s, "d", NULL);
    rpc_client_t *cl = client_of(&s);
    append_ok(cl, 1, 1, 1, NULL);
    parked_fetch pf = {.addr = s.p.addr, .from = 1, .rc = 1};
    pthread_t th;
    pthread_create(&th, NULL, parked_fetch_main, &pf);
    /* wait (with a deadline) until the server reports the poll parked */
    uint32_t parked = 0;
    for (int64_t deadline = procfix_now_ms() + 10000; procfix_now_ms() < deadline && parked == 0;
         procfix_pause_ms(5)) {
        Twig__V1__LogStatusReply *st = status_of(cl);
        parked = st->parked_fetches;
        protobuf_c_message_free_unpacked(&st->base, NULL);
    }
    cr_assert_eq(parked, 1);
    rpc_client_free(cl);
    int64_t t0 = procfix_now_ms();
    procfix_stop(&s.p);   /* asserts exit status 0 */
    pthread_join(th, NULL);
    /* answered at shutdown as "not ready", not after its 60 s wait */
    cr_expect_eq(pf.rc, 0, "parked fetch: %s", err_name(pf.rc));
    cr_expect_eq(pf.empty_reason, TWIG__V1__EMPTY_REASON__EMPTY_REASON_NOT_READY);
    cr_expect_lt(pf.took_ms, 30000);
    cr_expect_lt(procfix_now_ms() - t0, 20000);
}

/* run the binary with args; returns its exit code, its output captured to err */
static int run_cli(char *err, size_t n_err, const char *const *args)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/cli.err", tmp);
    unlink(path);
    const char *argv[16] = {SERVER_BIN};
    int k = 1;
    for (; args[k - 1]; k++) {
        argv[k] = args[k - 1];
    }
    argv[k] = NULL;
    int code = procfix_exit_code(procfix_spawn(argv, path), 20000);
    FILE *f = fopen(path, "r");
    size_t got = f ? fread(err, 1, n_err - 1, f) : 0;
    err[got] = '\0';
    if (f) {
        fclose(f);
    }
    return code;
}

Test(modelserver, bad_command_lines_exit_2_naming_the_flag)
{
    char err[4096], dir[1024];
    snprintf(dir, sizeof dir, "%s/d", tmp);
    const char *a1[] = {"--listen", "127.0.0.1:0", "--data-dir", dir, "--fsync", "sometimes",
                        NULL};
    cr_expect_eq(run_cli(err, sizeof err, a1), 2);
    cr_expect(strstr(err, "--fsync 'sometimes'") != NULL, "%s", err);
    const char *a2[] = {"--listen", "localhost", "--data-dir", dir, NULL};
    cr_expect_eq(run_cli(err, sizeof err, a2), 2);
    cr_expect(strstr(err, "--listen 'localhost'") != NULL, "%s", err);
    const char *a3[] = {"--listen", "127.0.0.1:70000", "--data-dir", dir, NULL};
    cr_expect_eq(run_cli(err, sizeof err, a3), 2);
    const char *a4[] = {"--data-dir", dir, NULL};
    cr_expect_eq(run_cli(err, sizeof err, a4), 2);
    cr_expect(strstr(err, "--listen is required") != NULL, "%s", err);
    const char *a5[] = {"--listen", "127.0.0.1:0", "--data-dir", dir, "--bogus", "1", NULL};
    cr_expect_eq(run_cli(err, sizeof err, a5), 2);
    cr_expect(strstr(err, "--bogus") != NULL, "%s", err);
    const char *a6[] = {"--listen", "127.0.0.1:0", "--data-dir", dir, "--segment-mb", "0x",
                        NULL};
    cr_expect_eq(run_cli(err, sizeof err, a6), 2);
    const char *a7[] = {"--help", NULL};
    cr_expect_eq(run_cli(err, sizeof err, a7), 0);
    /* a corrupt data dir: exit 1 naming the file */
    mkdir(dir, 0755);
    char meta[1100];
    snprintf(meta, sizeof meta, "%s/meta", dir);
    FILE *f = fopen(meta, "w");
    fputs("not a meta file\n", f);
    fclose(f);
    const char *a8[] = {"--listen", "127.0.0.1:0", "--data-dir", dir, NULL};
    cr_expect_eq(run_cli(err, sizeof err, a8), 1);
    cr_expect(strstr(err, "meta") != NULL && strstr(err, "TWIG_ECORRUPT") != NULL, "%s", err);
}

Test(modelserver, python_grpcio_client_interoperates)
{
    server s;
    start_server(&s, "d", NULL);
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 %s/tests/modelserver/interop.py --proto-dir %s/proto --addr %s "
             "--work-dir %s",
             TWIG_SRC_DIR, TWIG_SRC_DIR, s.p.addr, tmp);
    int rc = system(cmd);
    cr_expect(WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "interop.py failed (status %d)", rc);
    /* what python appended is in the log */
    rpc_client_t *cl = client_of(&s);
    Twig__V1__LogStatusReply *st = status_of(cl);
    cr_expect_eq(st->end_offset, 2);
    cr_expect_str_eq(st->env_id, "Pendulum-v1");
    protobuf_c_message_free_unpacked(&st->base, NULL);
    rpc_client_free(cl);
    procfix_stop(&s.p);
}

Test(modelserver, taken_port_or_data_dir_in_use_exit_1_saying_so)
{
    server s;
    start_server(&s, "d", NULL);
    char err[4096], port[32], other[1024];
    snprintf(port, sizeof port, "127.0.0.1:%d", s.p.port);
    snprintf(other, sizeof other, "%s/other", tmp);
    const char *a1[] = {"--listen", port, "--data-dir", other, NULL};
    cr_expect_eq(run_cli(err, sizeof err, a1), 1);
    cr_expect(strstr(err, "EADDRINUSE") != NULL, "%s", err);
    const char *a2[] = {"--listen", "127.0.0.1:0", "--data-dir", s.data_dir, NULL};
    cr_expect_eq(run_cli(err, sizeof err, a2), 1);
    cr_expect(strstr(err, "in use by another process") != NULL, "%s", err);
    /* the first server is unharmed */
    cr_expect_eq(rpc_health_check(s.p.addr, "", 2000), RPC_HEALTH_SERVING);
    procfix_stop(&s.p);
}

/* ---- issue 11: what the log promises about acknowledged data and bad input ---- */

/* for logs of many rows: no model training point is ever reached (a fit on a million rows
 * would hold the CPU and the shutdown) */
#define NO_MODEL_TRAINING "--set", "model_train_freq=1000000000"

/* the text of a file (at most n - 1 bytes) */
static void read_text(char *out, size_t n, const char *path)
{
    FILE *f = fopen(path, "r");
    size_t got = f ? fread(out, 1, n - 1, f) : 0;
    out[got] = '\0';
    if (f) {
        fclose(f);
    }
}

/* start the server on s->data_dir (with extra), expect it to exit with code before serving
 * and its log to hold each of the texts (NULL: no check) */
static void expect_start_fails(server *s, int code, const char *const *extra, const char *t1,
                               const char *t2)
{
    static int attempt;
    snprintf(s->p.log_file, sizeof s->p.log_file, "%s/refused-%d.log", tmp, attempt++);
    snprintf(s->p.port_file, sizeof s->p.port_file, "%s/refused.port", tmp);
    unlink(s->p.port_file);
    cr_expect_eq(procfix_exit_code(spawn_server(s, extra), 30000), code, "exit code (log %s)",
                 s->p.log_file);
    static char text[1 << 16];
    read_text(text, sizeof text, s->p.log_file);
    cr_expect(strstr(text, t1) != NULL, "'%s' not in the log:\n%s", t1, text);
    cr_expect(!t2 || strstr(text, t2) != NULL, "'%s' not in the log:\n%s", t2, text);
}

/* a Stats value of the model server (NAN, and a failed expectation, when absent: the test
 * goes on to check behaviour) */
static double ms_stat(const server *s, const char *key)
{
    double v = NAN;
    int rc = procfix_stat_get(&v, s->p.addr, "modelserver", key);
    cr_expect(rc == 0 && !isnan(v), "no stat %s: %s", key, rc ? err_msg() : "absent");
    return v;
}

static uint64_t log_end_of(rpc_client_t *cl)
{
    Twig__V1__LogStatusReply *st = status_of(cl);
    uint64_t end = st->end_offset;
    protobuf_c_message_free_unpacked(&st->base, NULL);
    return end;
}

Test(modelserver, damage_to_acknowledged_records_after_kill_9_refuses_to_start_naming_the_file)
{
    enum { N = 20, C = 16 };   /* 320 acknowledged rows */
    server s;
    start_server(&s, "d", NULL);   /* fsync per batch */
    rpc_client_t *cl = client_of(&s);
    static expect_row want[N * C];
    for (int k = 0; k < N; k++) {
        cr_assert_eq(append_ok(cl, 1, (uint64_t)k + 1, C, NULL), (uint64_t)k * C);
        for (uint32_t i = 0; i < C; i++) {
            want[k * C + i] = (expect_row){1, (uint64_t)k + 1, i};
        }
    }
    rpc_client_free(cl);
    procfix_kill9(&s.p);

    char seg[1024], at[1300];
    last_segment(seg, sizeof seg, s.data_dir);
    size_t size;
    uint8_t *orig = fx_read_file(seg, &size);
    off_t rec = (off_t)size / N, last = (off_t)size - rec;
    /* four flipped bytes in the last record, which was synced and acknowledged */
    fx_flip_bytes(seg, last + rec / 2, 4);
    snprintf(at, sizeof at, "%s: bad record at byte %lld (log offset %d)", seg, (long long)last,
             (N - 1) * C);
    expect_start_fails(&s, 1, NULL, at, "before the recovery point");
    /* the last page zeroed */
    fx_write_file(seg, orig, size);
    off_t page = ((off_t)size - 1) / 4096 * 4096;
    fx_zero_range(seg, page, (off_t)size);
    snprintf(at, sizeof at, "%s: bad record at byte %lld", seg, (long long)(page / rec * rec));
    expect_start_fails(&s, 1, NULL, at, "TWIG_ECORRUPT");
    /* cut at a record boundary: what is left verifies, but one acknowledged record is gone */
    fx_write_file(seg, orig, size);
    cr_assert_eq(truncate(seg, last), 0);
    snprintf(at, sizeof at, "%s ends at byte %lld (log offset %d)", seg, (long long)last,
             (N - 1) * C);
    expect_start_fails(&s, 1, NULL, at, "cut short");
    cr_expect_eq(size_of(seg), last, "nothing repaired silently");

    /* undamaged, it serves all of it */
    fx_write_file(seg, orig, size);
    start_server(&s, "d", NULL);
    cl = client_of(&s);
    cr_expect_eq(log_end_of(cl), N * C);
    expect_log(cl, want, N * C);
    rpc_client_free(cl);
    procfix_stop(&s.p);
    free(orig);
}

Test(modelserver, a_deleted_newest_segment_refuses_to_start)
{
    enum { N = 40, C = 1000 };   /* 1.3 MB: two segments of 1 MiB */
    server s;
    const char *extra[] = {"--segment-mb", "1", "--fsync", "group", NO_MODEL_TRAINING, NULL};
    start_server(&s, "d", extra);
    rpc_client_t *cl = client_of(&s);
    for (int k = 0; k < N; k++) {
        append_ok(cl, 1, (uint64_t)k + 1, C, NULL);
    }
    rpc_client_free(cl);
    procfix_kill9(&s.p);
    char seg[1024], moved[1100];
    last_segment(seg, sizeof seg, s.data_dir);
    cr_assert_str_neq(strrchr(seg, '/') + 1, "00000000000000000000.seg", "one segment only");
    snprintf(moved, sizeof moved, "%s/moved-away", tmp);
    cr_assert_eq(rename(seg, moved), 0);
    expect_start_fails(&s, 1, extra, strrchr(seg, '/') + 1, "is missing");
    cr_assert_eq(rename(moved, seg), 0);
    start_server(&s, "d", extra);
    cl = client_of(&s);
    cr_expect_eq(log_end_of(cl), N * C);
    rpc_client_free(cl);
    procfix_stop(&s.p);
}

/* the tmpfs of the disk-full test */
static char small_fs[PROCFIX_DIR_LEN + 16];

static void small_fs_setup(void)
{
    snprintf(small_fs, sizeof small_fs, "%s/small", tmp);
    fx_small_fs_mount(small_fs, 256);
}

static void small_fs_teardown(void)
{
    procfix_reap_all();   /* a server still holding files there */
    fx_small_fs_umount(small_fs);
}

static int append_count(rpc_client_t *cl, int src, uint64_t seq, uint32_t count,
                        Twig__V1__AppendRealReply **r)
{
    fx_batch b;
    fx_batch_make(&b, ENV, src, seq, count, O, A);
    int rc = append(cl, r, &b);
    fx_batch_free(&b);
    return rc;
}

Test(modelserver, a_full_disk_refuses_appends_goes_not_ready_and_recovers_by_itself,
     .init = small_fs_setup, .fini = small_fs_teardown)
{
    enum { BIG = 200 };   /* 6.6 KB: more than the page a file may still grow into */
    char data[PROCFIX_DIR_LEN + 32], filler[PROCFIX_DIR_LEN + 32];
    snprintf(data, sizeof data, "%s/d", small_fs);
    snprintf(filler, sizeof filler, "%s/filler", small_fs);
    server s;
    const char *extra[] = {"--segment-mb", "1", NULL};
    start_server_in(&s, data, "d", extra);
    rpc_client_t *cl = client_of(&s);
    static expect_row want[4096];
    for (int k = 1; k <= 3; k++) {
        append_ok(cl, 1, (uint64_t)k, 10, NULL);
        for (uint32_t i = 0; i < 10; i++) {
            want[(k - 1) * 10 + i] = (expect_row){1, (uint64_t)k, i};
        }
    }
    cr_expect_eq(ms_stat(&s, "ready"), 1);

    /* the disk fills up: RESOURCE_EXHAUSTED naming the write, not ready, still live */
    fx_fill_fs(filler, 0);
    Twig__V1__AppendRealReply *r = NULL;
    int rc = append_count(cl, 1, 4, BIG, &r);
    cr_expect_eq(rc, TWIG_EFULL, "%s %s", err_name(rc), err_msg());   /* RESOURCE_EXHAUSTED */
    cr_expect(strstr(err_msg(), "write segment 0: No space left on device") != NULL, "%s",
              err_msg());
    cr_expect_null(r);
    cr_expect_eq(rpc_health_check(s.p.addr, "", 2000), RPC_HEALTH_NOT_SERVING);
    cr_expect_eq(rpc_health_check(s.p.addr, RPC_HEALTH_READINESS, 2000), RPC_HEALTH_NOT_SERVING);
    cr_expect_eq(rpc_health_check(s.p.addr, RPC_HEALTH_LIVENESS, 2000), RPC_HEALTH_SERVING);
    cr_expect_eq(ms_stat(&s, "ready"), 0);
    cr_expect_geq(ms_stat(&s, "log_write_failures"), 1);
    /* retries while it is full get the same answer (the failed write was cut away: take
     * that space as well) */
    fx_fill_fs(filler, 0);
    for (int i = 0; i < 3; i++) {
        rc = append_count(cl, 1, 4, BIG, &r);
        cr_expect_eq(rc, TWIG_EFULL, "retry %d: %s %s", i, err_name(rc), err_msg());
        cr_expect(strstr(err_msg(), "No space left on device") != NULL, "%s", err_msg());
    }
    cr_expect_geq(ms_stat(&s, "log_write_failures"), 4);
    cr_expect_eq(log_end_of(cl), 30);

    /* space returns: the same retry is stored, once, where the log ends; ready again */
    cr_assert_eq(unlink(filler), 0);
    int dup = 1;
    cr_expect_eq(append_ok(cl, 1, 4, BIG, &dup), 30);
    cr_expect_eq(dup, 0);
    for (uint32_t i = 0; i < BIG; i++) {
        want[30 + i] = (expect_row){1, 4, i};
    }
    cr_expect_eq(rpc_health_check(s.p.addr, "", 2000), RPC_HEALTH_SERVING);
    cr_expect_eq(ms_stat(&s, "ready"), 1);
    cr_expect_eq(append_ok(cl, 1, 5, 10, NULL), 30 + BIG);
    for (uint32_t i = 0; i < 10; i++) {
        want[30 + BIG + i] = (expect_row){1, 5, i};
    }
    cr_expect_eq(append_ok(cl, 1, 4, BIG, &dup), 30, "a later retry: the original offsets");
    cr_expect_eq(dup, 1);
    uint64_t end = 30 + BIG + 10;
    cr_expect_eq(log_end_of(cl), end);
    expect_log(cl, want, end);
    rpc_client_free(cl);
    procfix_stop(&s.p);

    /* the failed writes left nothing behind: a restart opens the same log */
    start_server_in(&s, data, "d", extra);
    cl = client_of(&s);
    cr_expect_eq(log_end_of(cl), end);
    expect_log(cl, want, end);
    rpc_client_free(cl);
    procfix_stop(&s.p);
}

static void expect_refused_batch(rpc_client_t *cl, const char *env, uint32_t obs, uint32_t act,
                                 const char *text)
{
    fx_batch b;
    fx_batch_make(&b, env, 1, 1, 2, obs, act);
    Twig__V1__AppendRealReply *r = NULL;
    int rc = append(cl, &r, &b);
    cr_expect_eq(rc, -EINVAL, "%s: %s %s", env, err_name(rc), err_msg());
    cr_expect(strstr(err_msg(), text) != NULL, "'%s' not in '%s'", text, err_msg());
    fx_batch_free(&b);
}

Test(modelserver, the_run_env_fixes_the_log_schema_before_the_first_batch)
{
    server s;
    start_server(&s, "d", NULL);   /* the run's env by default: Pendulum-v1 */
    rpc_client_t *cl = client_of(&s);
    Twig__V1__LogStatusReply *st = status_of(cl);
    cr_expect_str_eq(st->env_id, "Pendulum-v1");
    cr_expect_eq(st->obs_dim, 3);
    cr_expect_eq(st->act_dim, 1);
    protobuf_c_message_free_unpacked(&st->base, NULL);
    /* a stray first batch of another env, or of other dims, is refused */
    expect_refused_batch(cl, "Hopper-v4", 11, 3, "env_id is 'Hopper-v4', the run's is 'Pendulum-v1'");
    expect_refused_batch(cl, ENV, 4096, 1, "obs_dim is 4096, the log's is 3");
    cr_expect_eq(log_end_of(cl), 0);
    cr_expect_eq(append_ok(cl, 1, 1, 4, NULL), 0);
    rpc_client_free(cl);
    procfix_stop(&s.p);

    /* another env on this data dir: refused at start, naming both */
    const char *hopper[] = {"--env", "Hopper-v4", NULL};
    expect_start_fails(&s, 2, hopper, "the run's env is 'Hopper-v4' (obs_dim 11, act_dim 3)",
                       "'Pendulum-v1' (obs_dim 3, act_dim 1)");
    /* an env id nobody knows: a configuration error */
    char err[4096], dir[1024];
    snprintf(dir, sizeof dir, "%s/other", tmp);
    const char *unknown[] = {"--listen", "127.0.0.1:0", "--data-dir", dir, "--env",
                             "NoSuchEnv-v0", NULL};
    cr_expect_eq(run_cli(err, sizeof err, unknown), 2);
    cr_expect(strstr(err, "unknown env id 'NoSuchEnv-v0'") != NULL, "%s", err);
    cr_expect_neq(access(dir, F_OK), 0, "nothing was created for it");

    /* the run config's env, which `twig run` passes with --config */
    char yaml[600];
    snprintf(yaml, sizeof yaml, "%s/run.yaml", tmp);
    FILE *f = fopen(yaml, "w");
    cr_assert_not_null(f);
    fputs("env: Hopper-v4\n", f);
    fclose(f);
    const char *config[] = {"--config", yaml, NULL};
    start_server(&s, "h", config);
    cl = client_of(&s);
    st = status_of(cl);
    cr_expect_str_eq(st->env_id, "Hopper-v4");
    cr_expect_eq(st->obs_dim, 11);
    cr_expect_eq(st->act_dim, 3);
    protobuf_c_message_free_unpacked(&st->base, NULL);
    expect_refused_batch(cl, ENV, O, A, "env_id is 'Pendulum-v1', the run's is 'Hopper-v4'");
    rpc_client_free(cl);
    procfix_stop(&s.p);
}

/* append (src, seq, count) with source_epoch; the return code, first offset in *first */
static int append_epoch(rpc_client_t *cl, int src, uint64_t seq, uint32_t count, uint64_t epoch,
                        uint64_t *first, int *dup)
{
    fx_batch b;
    fx_batch_make(&b, ENV, src, seq, count, O, A);
    b.v.source_epoch = epoch;
    Twig__V1__AppendRealReply *r = NULL;
    int rc = append(cl, &r, &b);
    fx_batch_free(&b);
    if (rc == 0) {
        *first = r->first_offset;
        *dup = r->duplicate;
        protobuf_c_message_free_unpacked(&r->base, NULL);
    }
    return rc;
}

Test(modelserver, a_new_source_gets_in_once_the_quietest_of_4096_is_quiet_enough, .timeout = 300)
{
    enum { S = 4096, BATCH = 10000, BATCHES = 101 };
    server s;
    /* the default table: 4096 sources, quiet for 1,000,000 */
    const char *extra[] = {"--fsync", "none", NO_MODEL_TRAINING, NULL};
    start_server(&s, "d", extra);
    rpc_client_t *cl = client_of(&s);
    for (int i = 0; i < S; i++) {
        cr_assert_eq(append_ok(cl, 10000 + i, 1, 1, NULL), (uint64_t)i);
    }
    /* the table is full and everybody was active within the last million transitions */
    uint64_t first;
    int dup;
    int rc = append_epoch(cl, 1, 1, 1, 0, &first, &dup);
    cr_expect_eq(rc, TWIG_EFULL, "%s %s", err_name(rc), err_msg());
    cr_expect(strstr(err_msg(), "too many sources") != NULL, "%s", err_msg());
    cr_expect_eq(ms_stat(&s, "sources_refused_full"), 1);
    /* the newest source goes on for a million transitions: the first one is now quiet for
     * longer than that */
    for (int k = 0; k < BATCHES; k++) {
        cr_assert_eq(append_epoch(cl, 10000 + S - 1, (uint64_t)k + 2, BATCH, 0, &first, &dup), 0,
                     "%s", err_msg());
    }
    uint64_t end = S + (uint64_t)BATCHES * BATCH;
    rc = append_epoch(cl, 1, 1, 1, 0, &first, &dup);
    cr_expect_eq(rc, 0, "the new source: %s %s", err_name(rc), err_msg());
    cr_expect_eq(first, end);
    end += 1;
    Twig__V1__LogStatusReply *st = status_of(cl);
    cr_expect_eq(st->sources, S);
    cr_expect_eq(st->source_fence, 1, "actor-10000 was first at offset 0");
    cr_expect_eq(st->source_epoch, end);
    protobuf_c_message_free_unpacked(&st->base, NULL);
    cr_expect_eq(ms_stat(&s, "sources_evicted"), 1);
    cr_expect_eq(ms_stat(&s, "source_fence"), 1);
    /* a retry from the evicted identity: ABORTED, nothing stored */
    rc = append_epoch(cl, 10000, 1, 1, 0, &first, &dup);
    cr_expect_eq(rc, TWIG_EFENCED, "%s %s", err_name(rc), err_msg());
    cr_expect_eq(ms_stat(&s, "sources_fenced"), 1);
    rpc_client_free(cl);
    procfix_kill9(&s.p);

    /* the table comes back the same from the log */
    start_server(&s, "d", extra);
    cl = client_of(&s);
    st = status_of(cl);
    cr_expect_eq(st->end_offset, end);
    cr_expect_eq(st->sources, S);
    cr_expect_eq(st->source_fence, 1);
    protobuf_c_message_free_unpacked(&st->base, NULL);
    cr_expect_eq(append_epoch(cl, 10000, 1, 1, 0, &first, &dup), TWIG_EFENCED);
    cr_assert_eq(append_epoch(cl, 1, 1, 1, 0, &first, &dup), 0);
    cr_expect(dup && first == end - 1, "dup %d at %llu", dup, (unsigned long long)first);
    cr_assert_eq(append_epoch(cl, 10001, 1, 1, 0, &first, &dup), 0);
    cr_expect(dup && first == 1);
    rpc_client_free(cl);
    procfix_stop(&s.p);
}

Test(modelserver, a_small_source_table_refuses_evicts_fences_and_survives_kill_9)
{
    server s;
    const char *extra[] = {"--fsync", "none", "--set", "modelserver.max_sources=2", "--set",
                           "modelserver.source_quiet_steps=10", NULL};
    start_server(&s, "d", extra);
    rpc_client_t *cl = client_of(&s);
    uint64_t first;
    int dup;
    cr_assert_eq(append_epoch(cl, 1, 1, 5, 0, &first, &dup), 0);   /* actor-1 at 0 */
    cr_assert_eq(append_epoch(cl, 2, 1, 5, 0, &first, &dup), 0);   /* actor-2 at 5 */
    /* actor-1 is quiet for 10 - 5 = 5 */
    cr_expect_eq(append_epoch(cl, 3, 1, 5, 0, &first, &dup), TWIG_EFULL);
    cr_expect_eq(ms_stat(&s, "sources_refused_full"), 1);
    cr_assert_eq(append_epoch(cl, 2, 2, 5, 0, &first, &dup), 0);   /* at 10: now 10 */
    cr_assert_eq(append_epoch(cl, 3, 1, 5, 0, &first, &dup), 0, "%s", err_msg());
    cr_expect_eq(first, 15);
    Twig__V1__LogStatusReply *st = status_of(cl);
    cr_expect_eq(st->sources, 2);
    cr_expect_eq(st->source_fence, 1);
    cr_expect_eq(st->source_epoch, 20);
    protobuf_c_message_free_unpacked(&st->base, NULL);
    /* actor-1 is forgotten: its old seqs are fenced (ABORTED), LogStatus knows nothing */
    cr_expect_eq(append_epoch(cl, 1, 1, 5, 0, &first, &dup), TWIG_EFENCED);
    cr_expect(strstr(err_msg(), "below the fence 1") != NULL, "%s", err_msg());
    cr_expect_eq(ms_stat(&s, "sources_fenced"), 1);
    Twig__V1__LogStatusRequest q = TWIG__V1__LOG_STATUS_REQUEST__INIT;
    q.source_id = (char *)"actor-1";
    ProtobufCMessage *m = NULL;
    cr_assert_eq(rpc_client_unary(cl, &m, P_STATUS, &q.base,
                                  &twig__v1__log_status_reply__descriptor, &call_opts), 0);
    st = (Twig__V1__LogStatusReply *)m;
    cr_expect_eq(st->source_seq, 0);
    cr_expect_eq(st->source_transitions, 0);
    protobuf_c_message_free_unpacked(m, NULL);
    /* it starts a new identity from the epoch, once actor-2 has been quiet long enough */
    cr_assert_eq(append_epoch(cl, 3, 2, 10, 0, &first, &dup), 0);  /* 20..30: actor-2 quiet 15 */
    cr_assert_eq(append_epoch(cl, 1, 1, 5, 30, &first, &dup), 0, "%s", err_msg());
    cr_expect_eq(first, 30);
    cr_expect_eq(dup, 0);
    cr_expect_eq(ms_stat(&s, "source_fence"), 6);
    cr_expect_eq(ms_stat(&s, "sources_evicted"), 2);
    rpc_client_free(cl);
    procfix_kill9(&s.p);

    start_server(&s, "d", extra);
    cl = client_of(&s);
    st = status_of(cl);
    cr_expect_eq(st->end_offset, 35);
    cr_expect_eq(st->sources, 2);
    cr_expect_eq(st->source_fence, 6);
    protobuf_c_message_free_unpacked(&st->base, NULL);
    cr_expect_eq(ms_stat(&s, "sources_evicted"), 2);
    cr_expect_eq(append_epoch(cl, 2, 2, 5, 0, &first, &dup), TWIG_EFENCED);
    cr_assert_eq(append_epoch(cl, 3, 2, 10, 0, &first, &dup), 0);
    cr_expect(dup && first == 20);
    cr_assert_eq(append_epoch(cl, 1, 1, 5, 0, &first, &dup), 0);
    cr_expect(dup && first == 30);
    rpc_client_free(cl);
    procfix_stop(&s.p);
}
