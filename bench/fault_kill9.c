/* fault_kill9.c - does an acknowledged real transition survive kill -9 of the model server?
 *
 *   bench_fault_kill9 [--kills N] [--min-ms MS] [--max-ms MS] [--fsync batch|group|none]
 *                     [--sources N] [--rows N] [--seed N] [--reconnect-ms MS] [--timeout-s S]
 *
 * A real twig-modelserver (TWIG_BIN_DIR/modelserver/twig-modelserver) runs on a fresh data
 * dir under /tmp. --sources client threads, each with its own channel and one AppendReal in
 * flight, send seqs 1, 2, 3, ... and retry a batch (same seq, same bytes) until it is
 * acknowledged, as an actor does. Every row encodes (source, seq, row), so the log can be
 * checked row by row afterwards. The main thread kill -9s the server --kills times, each at a
 * random moment --min-ms..--max-ms after the clients' first ack since the last restart,
 * restarts it on the same data dir and port, and polls its readiness with a deadline.
 *
 * At the end the clients stop after their current batch is acknowledged (so the batches in
 * flight at the last kill were retried against the restarted server and acknowledged, as
 * duplicates when they had reached the disk), the server gets SIGTERM, and this process
 * opens the data dir itself (modelserver/reallog.h, no appends) and reads every row back:
 *   lost        acknowledged batches not found at their acknowledged offsets
 *   duplicated  batches whose rows are in the log more than once
 *   stray       rows of no acknowledged batch (the clean end leaves none)
 * and the log's end must equal the acknowledged rows. Exit 0 when all of those are 0, 1 when
 * any is not or the run failed (a deadline passed, the server would not restart), 2 on a bad
 * command line.
 *
 * Output, JSON lines on stdout: one per kill (restart to readiness, restart to the first ack
 * of a call begun after the kill, kill to that ack), then a summary. Every wait has a
 * deadline and the whole run is bounded by --timeout-s. Only the server pids this program
 * started are signalled; the temp dir (data dir, server log, port file) is removed.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/base/clock.h"
#include "common/base/err.h"
#include "common/base/fs.h"
#include "common/base/mem.h"
#include "common/rpc/msg.h"
#include "modelserver/reallog.h"
#include "common/base/rng.h"
#include "common/rpc/rpc.h"
#include "tests/procspawn/procspawn.h"

#define SERVER_BIN TWIG_BIN_DIR "/modelserver/twig-modelserver"
#define F_ENV "Pendulum-v1"   /* the server's log takes the env's dims */
#define F_OBS 3               /* obs = (source, seq, row): the row says where it came from */
#define F_ACT 1
#define P_APPEND "/twig.v1.ModelServer/AppendReal"
#define MAX_SOURCES 64
#define SEQ_LIMIT (1u << 24)  /* seqs are stored in a float: exact below 2^24 */
#define CALL_MS 2000          /* one AppendReal attempt */
#define BATCH_MS 60000        /* a batch not acknowledged within this is a failure */
#define START_MS 20000        /* spawn to readiness */
#define FIRST_ACK_MS 30000    /* readiness to the first ack of a call begun after the kill */
#define STOP_MS 60000         /* SIGTERM to exit */
#define POLL_MS 2             /* pause between two looks at a condition with a deadline */
#define FETCH_ROWS 4096

/* ---- options ---- */

typedef struct fault_opts {
    long kills;
    long min_ms;
    long max_ms;
    const char *fsync;
    long sources;
    long rows;
    uint64_t seed;
    long reconnect_ms;    /* the clients' channel reconnect backoff cap; 0: rpc default */
    long timeout_s;
} fault_opts;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench_fault_kill9 [--kills N] [--min-ms MS] [--max-ms MS]\n"
            "                         [--fsync batch|group|none] [--sources N] [--rows N]\n"
            "                         [--seed N] [--reconnect-ms MS] [--timeout-s S]\n"
            "  --kills N         kill -9s of the model server, 1..1000 (30)\n"
            "  --min-ms/--max-ms the kill comes this long after the first ack since the last\n"
            "                    restart, uniform in [min, max], 1..600000 (100, 1000)\n"
            "  --fsync P         the model server's log sync policy (batch)\n"
            "  --sources N       client threads, one batch in flight each, 1..%d (4)\n"
            "  --rows N          transitions per batch, 1..4096 (16)\n"
            "  --seed N          seed of the kill intervals (0: from the clock) (0)\n"
            "  --reconnect-ms MS the clients' reconnect backoff cap, 0 = the rpc layer's\n"
            "                    default (%d ms), else 10..60000 (0)\n"
            "  --timeout-s S     the whole run, 10..86400 (900)\n",
            MAX_SOURCES, RPC_DEFAULT_RECONNECT_MAX_MS);
}

/* a whole decimal integer in [lo, hi], or a message and false */
static bool parse_long(const char *flag, const char *s, long lo, long hi, long *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!s[0] || errno || *end || v < lo || v > hi) {
        fprintf(stderr, "bench_fault_kill9: %s wants an integer in %ld..%ld, not '%s'\n", flag,
                lo, hi, s);
        return false;
    }
    *out = v;
    return true;
}

/* 0 or 2 (the exit status of a bad command line) */
static int parse_args(fault_opts *o, int argc, char **argv)
{
    *o = (fault_opts){.kills = 30, .min_ms = 100, .max_ms = 1000, .fsync = "batch",
                      .sources = 4, .rows = 16, .timeout_s = 900};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "bench_fault_kill9: unexpected argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "bench_fault_kill9: %s needs a value\n", a);
            return 2;
        }
        const char *v = argv[++i];
        long n = 0;
        bool ok = true;
        if (!strcmp(a, "--kills")) {
            ok = parse_long(a, v, 1, 1000, &o->kills);
        } else if (!strcmp(a, "--min-ms")) {
            ok = parse_long(a, v, 1, 600000, &o->min_ms);
        } else if (!strcmp(a, "--max-ms")) {
            ok = parse_long(a, v, 1, 600000, &o->max_ms);
        } else if (!strcmp(a, "--fsync")) {
            reallog_sync s;
            if (reallog_sync_parse(v, &s) < 0) {
                fprintf(stderr, "bench_fault_kill9: --fsync is batch, group or none, not '%s'\n",
                        v);
                return 2;
            }
            o->fsync = reallog_sync_name(s);
        } else if (!strcmp(a, "--sources")) {
            ok = parse_long(a, v, 1, MAX_SOURCES, &o->sources);
        } else if (!strcmp(a, "--rows")) {
            ok = parse_long(a, v, 1, 4096, &o->rows);
        } else if (!strcmp(a, "--seed")) {
            ok = parse_long(a, v, 0, LONG_MAX, &n);
            o->seed = (uint64_t)n;
        } else if (!strcmp(a, "--reconnect-ms")) {
            ok = parse_long(a, v, 0, 60000, &o->reconnect_ms);
            if (ok && o->reconnect_ms != 0 && o->reconnect_ms < 10) {
                fprintf(stderr, "bench_fault_kill9: --reconnect-ms is 0 or 10..60000, not %s\n",
                        v);
                return 2;
            }
        } else if (!strcmp(a, "--timeout-s")) {
            ok = parse_long(a, v, 10, 86400, &o->timeout_s);
        } else {
            fprintf(stderr, "bench_fault_kill9: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
        if (!ok) {
            return 2;
        }
    }
    if (o->min_ms > o->max_ms) {
        fprintf(stderr, "bench_fault_kill9: --min-ms %ld is above --max-ms %ld\n", o->min_ms,
                o->max_ms);
        return 2;
    }
    return 0;
}

static double now_ms(void)
{
    return clock_now_s() * 1e3;
}

static void pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- the server process ---- */

typedef struct server {
    pid_t pid;             /* 0: not running */
    int port;
    char addr[64];
    char tmp[64];          /* /tmp/twig-fault-XXXXXX: data/, port, server.log */
    char data[128];
    char port_file[128];
    char log_file[128];
    const char *fsync;
} server;

/* the end of the server's log, for a failure message (it is removed with the temp dir) */
static void dump_server_log(const server *s)
{
    FILE *f = fopen(s->log_file, "r");
    if (!f) {
        return;
    }
    char line[512];
    char ring[20][512];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        snprintf(ring[n % 20], sizeof ring[0], "%s", line);
        n++;
    }
    fclose(f);
    fprintf(stderr, "bench_fault_kill9: last lines of the server's log:\n");
    for (int i = n > 20 ? n - 20 : 0; i < n; i++) {
        fputs(ring[i % 20], stderr);
    }
}

/* fork + exec the server listening on listen; its output goes to the log file */
static int server_spawn(server *s, const char *listen)
{
    /* the model never trains here: its first fit point is past any log this run writes, so
     * the two cores go to the log and the clients */
    const char *argv[] = {SERVER_BIN, "--listen", listen, "--data-dir", s->data,
                          "--port-file", s->port_file, "--fsync", s->fsync,
                          "--log-level", "warn", "--env", F_ENV,
                          "--set", "real_steps=1000000000000",
                          "--set", "init_steps=999999999999",
                          "--set", "model_train_freq=1000000000", NULL};
    unlink(s->port_file);   /* a port file from the killed server would look like readiness */
    /* dies with this program (the spawning thread is main, which lives to the end) */
    pid_t pid = procspawn_start(argv, s->log_file, s->log_file);
    if (pid < 0) {
        return pid;
    }
    s->pid = pid;
    return 0;
}

/* poll until the server answers readiness SERVING (and, the first time, has written its
 * port), within ms; fails at once if it exits */
static int server_wait_ready(server *s, int ms)
{
    double deadline = now_ms() + ms;
    int st, rc = 0;
    if (s->port == 0) {
        rc = procspawn_read_port(&s->port, &st, s->port_file, s->pid, ms, POLL_MS);
        if (rc == 0) {
            snprintf(s->addr, sizeof s->addr, "127.0.0.1:%d", s->port);
        }
    }
    if (rc == 0) {
        int left = (int)(deadline - now_ms());
        rc = procspawn_wait_health(&st, s->addr, RPC_HEALTH_READINESS, s->pid,
                                   left > 1 ? left : 1, POLL_MS);
    }
    if (rc == PROCSPAWN_EXITED) {
        char why[64];
        procspawn_status_text(why, sizeof why, st);
        s->pid = 0;
        return err_set(TWIG_EUNAVAIL, "the server exited (%s) before it was ready", why);
    }
    if (rc < 0) {
        char last[400];
        snprintf(last, sizeof last, "%s", err_msg());
        return err_set(rc, "the server was not ready within %d ms (%s)", ms, last);
    }
    return 0;
}

/* send sig and reap within ms: 0 and the wait status, or TWIG_EDEADLINE (still running) */
static int server_signal_reap(server *s, int sig, int ms, int *st)
{
    if (s->pid <= 0) {
        return err_set(-ESRCH, "no server running");
    }
    int rc = procspawn_signal_reap(st, s->pid, sig, ms);
    if (rc == 0) {
        s->pid = 0;
    }
    return rc;
}

/* ---- the clients ---- */

/* the restart the clients' acks are measured against */
typedef struct epoch_state {
    pthread_mutex_t mu;
    double kill_ms;       /* when the killed server was reaped (0 before the first kill) */
    double first_ack_ms;  /* first ack of a call begun after kill_ms; 0: none yet */
} epoch_state;

typedef struct shared {
    const fault_opts *o;
    const char *addr;
    atomic_int stop;      /* clients: stop after the current batch is acknowledged */
    atomic_int failed;    /* a client gave up: the run is void */
    atomic_ullong acked_batches;
    epoch_state ep;
} shared;

typedef struct client {
    shared *sh;
    int src;
    /* per seq (index seq - 1): the acknowledged first offset; written by this thread only,
     * read by main after the join */
    uint64_t *first;
    uint64_t n_acked;     /* seqs 1..n_acked are acknowledged */
    uint64_t cap;
    uint64_t dup_acks;    /* acks that said duplicate: stored before an ack was lost */
    uint64_t attempts;
    uint64_t retries_by_kind[4];  /* unavailable, deadline, resource/shutdown, other */
    char why[320];        /* set when it gave up */
} client;

/* row i of (src, seq): obs = (src, seq, i), next_obs = obs + 0.5, act = -i,
 * reward = seq + i / 4096, flags from seq and i */
static void row_fill(float *obs, float *next_obs, float *act, float *reward, int *term,
                     int *trunc, int src, uint64_t seq, uint32_t i)
{
    obs[0] = (float)src;
    obs[1] = (float)seq;
    obs[2] = (float)i;
    for (int j = 0; j < F_OBS; j++) {
        next_obs[j] = obs[j] + 0.5f;
    }
    *act = -(float)i;
    *reward = (float)seq + (float)i / 4096.0f;
    *term = (int)((seq + i) % 7 == 0);
    *trunc = (int)((seq + i) % 5 == 0);
}

static void batch_fill(float *obs, float *next_obs, float *act, float *reward, int *term,
                       int *trunc, int src, uint64_t seq, uint32_t rows)
{
    for (uint32_t i = 0; i < rows; i++) {
        row_fill(&obs[i * F_OBS], &next_obs[i * F_OBS], &act[i * F_ACT], &reward[i], &term[i],
                 &trunc[i], src, seq, i);
    }
}

/* codes a retry cannot fix: the server refused the batch itself */
static bool fatal_code(int rc)
{
    return rc == -EINVAL || rc == TWIG_EFENCED || rc == TWIG_EMISMATCH || rc == TWIG_EUNIMPL ||
           rc == TWIG_ETOOBIG || rc == TWIG_EPROTO || rc == TWIG_ECORRUPT;
}

static void client_give_up(client *c, const char *fmt, uint64_t seq, int rc, const char *msg)
{
    snprintf(c->why, sizeof c->why, fmt, c->src, seq, err_name(rc), msg);
    atomic_store(&c->sh->failed, 1);
}

static void *client_main(void *p)
{
    client *c = p;
    shared *sh = c->sh;
    uint32_t rows = (uint32_t)sh->o->rows;
    rpc_client_cfg cc = {.reconnect_max_ms = (int)sh->o->reconnect_ms};
    rpc_client_t *cl = NULL;
    if (rpc_client_init(&cl, sh->addr, &cc) < 0) {
        client_give_up(c, "source %d (seq %" PRIu64 "): client: %s %s", 0, -EINVAL, err_msg());
        return NULL;
    }
    float *obs = xmalloc(rows * F_OBS * sizeof(float));
    float *next_obs = xmalloc(rows * F_OBS * sizeof(float));
    float *act = xmalloc(rows * F_ACT * sizeof(float));
    float *reward = xmalloc(rows * sizeof(float));
    int *term = xmalloc(rows * sizeof(int));
    int *trunc = xmalloc(rows * sizeof(int));
    char source_id[32];
    snprintf(source_id, sizeof source_id, "fault-%d", c->src);
    /* wait_for_ready: an attempt rides out the restart instead of failing at once; not
     * idempotent, so that this loop (not the rpc layer) sees and counts every failure */
    rpc_call_opts co = {.deadline_ms = CALL_MS, .wait_for_ready = true};
    for (uint64_t seq = 1; !atomic_load(&sh->stop) && !atomic_load(&sh->failed); seq++) {
        if (seq >= SEQ_LIMIT) {
            break;   /* the row encoding would stop being exact; the run is long enough */
        }
        batch_fill(obs, next_obs, act, reward, term, trunc, c->src, seq, rows);
        tbatch_t b = {.env_id = F_ENV, .source_id = source_id, .seq = seq, .obs_dim = F_OBS,
                      .act_dim = F_ACT, .count = rows, .obs = obs, .act = act,
                      .reward = reward, .next_obs = next_obs, .terminated = term,
                      .truncated = trunc};
        Twig__V1__TransitionBatch m;
        msg_batch_from_view(&m, &b);
        double batch_deadline = now_ms() + BATCH_MS;
        for (;;) {
            double t0 = now_ms();
            ProtobufCMessage *r = NULL;
            c->attempts++;
            int rc = rpc_client_unary(cl, &r, P_APPEND, &m.base,
                                      &twig__v1__append_real_reply__descriptor, &co);
            if (rc == 0) {
                const Twig__V1__AppendRealReply *a = (const Twig__V1__AppendRealReply *)r;
                double t1 = now_ms();
                if (a->count != rows || a->seq != seq) {
                    char msg[96];
                    snprintf(msg, sizeof msg, "ack says count %u seq %" PRIu64, a->count,
                             (uint64_t)a->seq);
                    client_give_up(c, "source %d seq %" PRIu64 ": %s: %s", seq,
                                   TWIG_EPROTO, msg);
                    protobuf_c_message_free_unpacked(r, NULL);
                    goto out;
                }
                if (c->n_acked == c->cap) {
                    c->cap = c->cap ? 2 * c->cap : 4096;
                    c->first = xrealloc(c->first, c->cap * sizeof *c->first);
                }
                c->first[c->n_acked++] = a->first_offset;
                c->dup_acks += a->duplicate ? 1 : 0;
                protobuf_c_message_free_unpacked(r, NULL);
                atomic_fetch_add(&sh->acked_batches, 1);
                /* an attempt begun before the kill may carry a reply the dead server had
                 * already sent; only attempts begun after it show the restarted server */
                pthread_mutex_lock(&sh->ep.mu);
                if (sh->ep.first_ack_ms == 0 && t0 >= sh->ep.kill_ms) {
                    sh->ep.first_ack_ms = t1;
                }
                pthread_mutex_unlock(&sh->ep.mu);
                break;
            }
            if (fatal_code(rc)) {
                client_give_up(c, "source %d seq %" PRIu64 ": refused: %s %s", seq, rc,
                               err_msg());
                goto out;
            }
            int kind = rc == TWIG_EUNAVAIL ? 0 : rc == TWIG_EDEADLINE ? 1
                       : (rc == TWIG_EFULL || rc == TWIG_ESHUTDOWN) ? 2 : 3;
            c->retries_by_kind[kind]++;
            if (now_ms() >= batch_deadline) {
                client_give_up(c, "source %d seq %" PRIu64 ": not acknowledged within 60 s: "
                                  "%s %s", seq, rc, err_msg());
                goto out;
            }
            if (atomic_load(&sh->failed)) {
                goto out;
            }
            /* a refused connection fails at once; do not spin on it */
            pause_ms(POLL_MS);
        }
    }
out:
    free(obs);
    free(next_obs);
    free(act);
    free(reward);
    free(term);
    free(trunc);
    rpc_client_free(cl);
    return NULL;
}

/* ---- the check: every row of the log read back by this process ---- */

typedef struct check_result {
    uint64_t log_rows;
    uint64_t acked_rows;
    uint64_t acked_batches;
    uint64_t lost;         /* acked batches whose acked offsets do not hold them */
    uint64_t duplicated;   /* batches present more than once */
    uint64_t stray_rows;   /* rows of no acked batch, or that do not decode */
    uint64_t bad_rows;     /* rows whose contents are not what their batch sent */
} check_result;

/* does row k of rows hold row i of (src, seq) exactly? */
static bool row_is(const reallog_rows_t *r, uint32_t k, int src, uint64_t seq, uint32_t i)
{
    float o[F_OBS], n[F_OBS], a, w;
    int te, tr;
    row_fill(o, n, &a, &w, &te, &tr, src, seq, i);
    return !memcmp(&r->obs[k * F_OBS], o, sizeof o) &&
           !memcmp(&r->next_obs[k * F_OBS], n, sizeof n) && r->act[k] == a &&
           r->reward[k] == w && !!r->terminated[k] == te && !!r->truncated[k] == tr;
}

static int check_log(const char *data, client *cs, int n_src, uint32_t rows, check_result *res)
{
    memset(res, 0, sizeof *res);
    reallog_t lg = {0};
    reallog_opts lo = reallog_opts_default(data);
    lo.env_id = F_ENV;
    lo.obs_dim = F_OBS;
    lo.act_dim = F_ACT;
    int rc = reallog_open(&lg, &lo);
    if (rc < 0) {
        return rc;   /* TWIG_ECORRUPT here is the finding: acknowledged data damaged */
    }
    uint64_t end = reallog_end(&lg);
    res->log_rows = end;
    /* where row 0 of each (src, seq) was found; UINT64_MAX: nowhere */
    uint64_t *where[MAX_SOURCES];
    for (int s = 0; s < n_src; s++) {
        uint64_t n = cs[s].n_acked + 1;
        where[s] = xmalloc(n * sizeof(uint64_t));
        for (uint64_t q = 0; q < n; q++) {
            where[s][q] = UINT64_MAX;
        }
    }
    reallog_rows_t r = {0};
    reallog_rows_init(&r, FETCH_ROWS, F_OBS, F_ACT);
    for (uint64_t from = 0; from < end && rc == 0;) {
        rc = reallog_fetch(&lg, &r, from, FETCH_ROWS);
        if (rc < 0 || r.count == 0) {
            rc = rc < 0 ? rc : err_set(TWIG_EINTERNAL, "fetch at %" PRIu64 " below end %"
                                       PRIu64 " gave no rows", from, end);
            break;
        }
        for (uint32_t k = 0; k < r.count; k++) {
            uint64_t off = from + k;
            float fs = r.obs[k * F_OBS], fq = r.obs[k * F_OBS + 1], fi = r.obs[k * F_OBS + 2];
            /* range first: a float out of range (or NaN) must not be cast to an integer */
            bool decodes = fs >= 0 && fs < n_src && fq >= 1 && fq < SEQ_LIMIT && fi >= 0 &&
                           fi < rows;
            int src = decodes ? (int)fs : 0;
            uint64_t seq = decodes ? (uint64_t)fq : 0;
            uint32_t i = decodes ? (uint32_t)fi : 0;
            decodes = decodes && (float)src == fs && (float)seq == fq && (float)i == fi;
            if (!decodes || seq > cs[src].n_acked) {
                res->stray_rows++;   /* not a row any acknowledged batch sent */
                continue;
            }
            if (!row_is(&r, k, src, seq, i)) {
                res->bad_rows++;
            }
            if (i == 0) {
                if (where[src][seq] != UINT64_MAX) {
                    res->duplicated++;
                } else {
                    where[src][seq] = off;
                }
            }
        }
        from += r.count;
    }
    /* each acknowledged batch, row by row, at the offsets its ack named */
    reallog_rows_t b = {0};
    reallog_rows_init(&b, rows, F_OBS, F_ACT);
    for (int s = 0; s < n_src && rc == 0; s++) {
        for (uint64_t q = 1; q <= cs[s].n_acked; q++) {
            uint64_t f = cs[s].first[q - 1];
            bool ok = f + rows <= end && reallog_fetch(&lg, &b, f, rows) == 0 &&
                      b.count == rows;
            for (uint32_t i = 0; ok && i < rows; i++) {
                ok = row_is(&b, i, s, q, i);
            }
            res->lost += ok ? 0 : 1;
            res->acked_batches++;
            res->acked_rows += rows;
        }
    }
    for (int s = 0; s < n_src; s++) {
        free(where[s]);
    }
    reallog_rows_free(&b);
    reallog_rows_free(&r);
    reallog_close(&lg);
    return rc;
}

/* ---- statistics ---- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* nearest-rank percentile of sorted v[0..n) */
static double pct(const double *v, int n, double p)
{
    if (n == 0) {
        return 0;
    }
    int k = (int)(p / 100.0 * n + 0.999999) - 1;
    return v[k < 0 ? 0 : k >= n ? n - 1 : k];
}

/* ---- the run ---- */

/* the first ack of a call begun after the last kill (or, before any kill, the first ack),
 * within ms: its time, or 0 */
static double wait_first_ack(shared *sh, int ms)
{
    double dl = now_ms() + ms;
    while (!atomic_load(&sh->failed)) {
        pthread_mutex_lock(&sh->ep.mu);
        double first = sh->ep.first_ack_ms;
        pthread_mutex_unlock(&sh->ep.mu);
        if (first != 0) {
            return first;
        }
        if (now_ms() >= dl) {
            break;
        }
        pause_ms(POLL_MS);
    }
    return 0;
}

/* one kill as measured: all times in ms of the same clock */
typedef struct kill_rec {
    double killed;   /* the killed server reaped */
    double spawned;  /* the restart forked */
    double ready;    /* it answered readiness SERVING */
    double acked;    /* the first ack of a call begun after `killed`; 0: none */
} kill_rec;

static int run(const fault_opts *o, server *s)
{
    uint64_t seed = o->seed ? o->seed : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    rng_t rng;
    rng_seed(&rng, seed);
    double t_end = now_ms() + (double)o->timeout_s * 1e3;

    int rc = server_spawn(s, "127.0.0.1:0");
    if (rc == 0) {
        rc = server_wait_ready(s, START_MS);
    }
    if (rc < 0) {
        fprintf(stderr, "bench_fault_kill9: first start: %s\n", err_msg());
        dump_server_log(s);
        return 1;
    }
    /* the restarts listen on the port the first start picked: clients keep their address */
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", s->port);

    shared sh = {.o = o, .addr = s->addr};
    pthread_mutex_init(&sh.ep.mu, NULL);
    int n_src = (int)o->sources;
    client *cs = xcalloc((size_t)n_src, sizeof *cs);
    pthread_t th[MAX_SOURCES];
    for (int i = 0; i < n_src; i++) {
        cs[i] = (client){.sh = &sh, .src = i};
        pthread_create(&th[i], NULL, client_main, &cs[i]);
    }

    kill_rec *kr = xcalloc((size_t)o->kills, sizeof *kr);
    int done = 0;
    char fail[400] = "";
    double t_start = now_ms();
    for (int k = 0; k < o->kills; k++) {
        /* the kill comes a random time after the first ack since the last restart, so that
         * every restart is measured up to an ack and every kill lands mid-traffic */
        double first = wait_first_ack(&sh, FIRST_ACK_MS);
        if (first == 0) {
            snprintf(fail, sizeof fail, "%s", atomic_load(&sh.failed)
                     ? "a client gave up" : "no ack within 30 s of the server's start");
            break;
        }
        if (k > 0) {
            kr[k - 1].acked = first;
        }
        long span = o->max_ms - o->min_ms + 1;
        pause_ms((int)(o->min_ms + (long)rng_uniform_u32(&rng, (uint32_t)span)));
        if (now_ms() >= t_end) {
            snprintf(fail, sizeof fail, "--timeout-s %ld passed", o->timeout_s);
            break;
        }
        int st = 0;
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            s->pid = 0;
            char why[64];
            procspawn_status_text(why, sizeof why, st);
            snprintf(fail, sizeof fail, "the server ended by itself (%s)", why);
            break;
        }
        if (server_signal_reap(s, SIGKILL, 10000, &st) < 0) {
            snprintf(fail, sizeof fail, "kill -9: %s", err_msg());
            break;
        }
        kr[k].killed = now_ms();
        pthread_mutex_lock(&sh.ep.mu);
        sh.ep.kill_ms = kr[k].killed;
        sh.ep.first_ack_ms = 0;
        pthread_mutex_unlock(&sh.ep.mu);
        kr[k].spawned = now_ms();
        rc = server_spawn(s, listen);
        if (rc == 0) {
            rc = server_wait_ready(s, START_MS);
        }
        if (rc < 0) {
            snprintf(fail, sizeof fail, "restart %d: %s", k + 1, err_msg());
            break;
        }
        kr[k].ready = now_ms();
        done = k + 1;
    }
    if (!fail[0] && done > 0) {
        kr[done - 1].acked = wait_first_ack(&sh, FIRST_ACK_MS);
        if (kr[done - 1].acked == 0) {
            snprintf(fail, sizeof fail, "no ack within 30 s of the last restart");
        }
    }
    /* stop the clients: each finishes (gets acknowledged) its current batch first */
    atomic_store(&sh.stop, 1);
    for (int i = 0; i < n_src; i++) {
        pthread_join(th[i], NULL);
    }
    double t_run = now_ms() - t_start;
    int status = 0;
    for (int i = 0; i < n_src; i++) {
        if (cs[i].why[0]) {
            fprintf(stderr, "bench_fault_kill9: %s\n", cs[i].why);
            status = 1;
        }
    }
    if (fail[0]) {
        fprintf(stderr, "bench_fault_kill9: after %d kills: %s\n", done, fail);
        status = 1;
    }
    /* one line per kill whose restart reached an ack */
    int measured = 0;
    double *rec = xcalloc((size_t)o->kills, sizeof(double));
    double *rdy = xcalloc((size_t)o->kills, sizeof(double));
    for (int k = 0; k < done; k++) {
        if (kr[k].acked == 0) {
            continue;
        }
        rdy[measured] = kr[k].ready - kr[k].spawned;
        rec[measured] = kr[k].acked - kr[k].spawned;
        printf("{\"bench\":\"fault_kill9\",\"fsync\":\"%s\",\"kill\":%d,"
               "\"restart_to_ready_ms\":%.1f,\"restart_to_first_ack_ms\":%.1f,"
               "\"kill_to_first_ack_ms\":%.1f}\n",
               o->fsync, k + 1, rdy[measured], rec[measured], kr[k].acked - kr[k].killed);
        measured++;
    }
    fflush(stdout);

    /* SIGTERM: a clean shutdown must still work after all those kills */
    if (s->pid > 0) {
        int st = 0;
        if (server_signal_reap(s, SIGTERM, STOP_MS, &st) < 0) {
            fprintf(stderr, "bench_fault_kill9: SIGTERM: %s\n", err_msg());
            int st9;
            server_signal_reap(s, SIGKILL, 10000, &st9);
            status = 1;
        } else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            char why[64];
            procspawn_status_text(why, sizeof why, st);
            fprintf(stderr, "bench_fault_kill9: the server's clean shutdown ended with %s\n",
                    why);
            status = 1;
        }
    }

    check_result cr;
    rc = check_log(s->data, cs, n_src, (uint32_t)o->rows, &cr);
    if (rc < 0) {
        fprintf(stderr, "bench_fault_kill9: reading the log back: %s %s\n", err_name(rc),
                err_msg());
        status = 1;
    }
    uint64_t dup_acks = 0, attempts = 0, retries[4] = {0};
    for (int i = 0; i < n_src; i++) {
        dup_acks += cs[i].dup_acks;
        attempts += cs[i].attempts;
        for (int j = 0; j < 4; j++) {
            retries[j] += cs[i].retries_by_kind[j];
        }
    }
    bool rows_match = cr.log_rows == cr.acked_rows;
    if (rc == 0 && (cr.lost || cr.duplicated || cr.stray_rows || cr.bad_rows || !rows_match)) {
        fprintf(stderr, "bench_fault_kill9: FAILED: lost %" PRIu64 ", duplicated %" PRIu64
                        ", stray rows %" PRIu64 ", bad rows %" PRIu64 ", log rows %" PRIu64
                        " vs acked rows %" PRIu64 "\n",
                cr.lost, cr.duplicated, cr.stray_rows, cr.bad_rows, cr.log_rows,
                cr.acked_rows);
        status = 1;
    }
    qsort(rec, (size_t)measured, sizeof(double), cmp_double);
    qsort(rdy, (size_t)measured, sizeof(double), cmp_double);
    printf("{\"bench\":\"fault_kill9\",\"fsync\":\"%s\",\"kills\":%d,\"sources\":%d,"
           "\"rows_per_batch\":%ld,\"seed\":%" PRIu64 ",\"seconds\":%.1f,"
           "\"acked_batches\":%" PRIu64 ",\"acked_rows\":%" PRIu64 ",\"log_rows\":%" PRIu64 ","
           "\"lost\":%" PRIu64 ",\"duplicated\":%" PRIu64 ",\"stray_rows\":%" PRIu64 ","
           "\"bad_rows\":%" PRIu64 ",\"duplicate_acks\":%" PRIu64 ",\"attempts\":%" PRIu64 ","
           "\"retries_unavailable\":%" PRIu64 ",\"retries_deadline\":%" PRIu64 ","
           "\"retries_other\":%" PRIu64 ","
           "\"ready_ms_p50\":%.1f,\"ready_ms_max\":%.1f,"
           "\"recovery_ms_p50\":%.1f,\"p99\":%.1f,\"max\":%.1f,\"ok\":%s}\n",
           o->fsync, done, n_src, o->rows, seed, t_run / 1e3, cr.acked_batches, cr.acked_rows,
           cr.log_rows, cr.lost, cr.duplicated, cr.stray_rows, cr.bad_rows, dup_acks, attempts,
           retries[0], retries[1], retries[2] + retries[3], pct(rdy, measured, 50),
           pct(rdy, measured, 100), pct(rec, measured, 50), pct(rec, measured, 99),
           pct(rec, measured, 100), status == 0 ? "true" : "false");
    fflush(stdout);
    if (status != 0) {
        dump_server_log(s);
    }
    for (int i = 0; i < n_src; i++) {
        free(cs[i].first);
    }
    free(cs);
    free(kr);
    free(rec);
    free(rdy);
    pthread_mutex_destroy(&sh.ep.mu);
    return status;
}

int main(int argc, char **argv)
{
    fault_opts o;
    int rc = parse_args(&o, argc, argv);
    if (rc != 0) {
        return rc;
    }
    if (access(SERVER_BIN, X_OK) != 0) {
        fprintf(stderr, "bench_fault_kill9: %s: %s (build the project first)\n", SERVER_BIN,
                strerror(errno));
        return 1;
    }
    server s = {.fsync = o.fsync};
    snprintf(s.tmp, sizeof s.tmp, "/tmp/twig-fault-XXXXXX");
    if (!mkdtemp(s.tmp)) {
        fprintf(stderr, "bench_fault_kill9: mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    snprintf(s.data, sizeof s.data, "%s/data", s.tmp);
    snprintf(s.port_file, sizeof s.port_file, "%s/port", s.tmp);
    snprintf(s.log_file, sizeof s.log_file, "%s/server.log", s.tmp);
    rpc_lib_init();
    int status = run(&o, &s);
    if (s.pid > 0) {   /* a failed run may leave its server running: only that pid */
        int st;
        server_signal_reap(&s, SIGKILL, 10000, &st);
    }
    fs_remove_tree(s.tmp);
    rpc_lib_shutdown(2000);
    return status;
}
