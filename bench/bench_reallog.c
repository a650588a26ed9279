/* bench_reallog.c - what an acknowledged append costs in the log itself, as JSON lines on
 * stdout (issue 11: the recovery point adds a second synced write per group):
 *
 *   reallog_append  appends/s through reallog_append (in-process, no RPC) from T threads with
 *                   fsync batch or group, R rows a batch of HalfCheetah's width (obs 17, act
 *                   6: 16 rows is a small actor push, 256 a big one). Each thread is its own
 *                   source and has one batch in flight, as an actor does.
 *   references, interleaved with it in the same run, one thread writing the same record
 *   size to a file of its own:
 *     one_sync   pwrite + fdatasync per record: the log's floor with one synced write
 *     two_syncs  the same, then a 512-byte pwrite in place into a second file + fdatasync:
 *                the floor with the recovery point's write, without the log's own work
 *
 * usage: bench_reallog [--seconds S] [--reps N] [--dir DIR]
 * Each figure is the median of N runs of S seconds (min and max too). Files go under DIR
 * (default /tmp) and are removed. Only the log's public API is used, so the same file
 * builds against an older modelserver/reallog.c for a before/after comparison.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/base/clock.h"
#include "common/base/err.h"
#include "common/base/fs.h"
#include "common/base/mem.h"
#include "modelserver/reallog.h"

#define B_ENV "HalfCheetah-v4"
#define B_OBS 17
#define B_ACT 6
#define B_MAX_ROWS 256
#define MAX_REPS 15

/* one source's batch, resent with new seqs */
typedef struct bench_src {
    float obs[B_MAX_ROWS * B_OBS], next_obs[B_MAX_ROWS * B_OBS], act[B_MAX_ROWS * B_ACT];
    float reward[B_MAX_ROWS];
    int terminated[B_MAX_ROWS], truncated[B_MAX_ROWS];
    char id[32];
    tbatch_t v;
} bench_src;

static void bench_src_init(bench_src *b, int src, uint32_t rows)
{
    for (uint32_t i = 0; i < rows * B_OBS; i++) {
        b->obs[i] = (float)i * 0.01f;
        b->next_obs[i] = (float)i * 0.02f;
    }
    for (uint32_t i = 0; i < rows * B_ACT; i++) {
        b->act[i] = (float)(i % 13) * 0.1f;
    }
    for (uint32_t i = 0; i < rows; i++) {
        b->reward[i] = (float)i;
        b->terminated[i] = 0;
        b->truncated[i] = 0;
    }
    snprintf(b->id, sizeof b->id, "bench-%d", src);
    b->v = (tbatch_t){.env_id = B_ENV, .source_id = b->id, .obs_dim = B_OBS, .act_dim = B_ACT,
                      .count = rows, .obs = b->obs, .act = b->act, .reward = b->reward,
                      .next_obs = b->next_obs, .terminated = b->terminated,
                      .truncated = b->truncated};
}

typedef struct appender {
    reallog_t *lg;
    bench_src src;
    double until;
    uint64_t done;
    int failed;
} appender;

static void *appender_main(void *p)
{
    appender *a = p;
    for (uint64_t seq = 1; clock_now_s() < a->until; seq++) {
        a->src.v.seq = seq;
        reallog_ack ack;
        if (reallog_append(a->lg, &ack, &a->src.v) < 0) {
            fprintf(stderr, "bench_reallog: append: %s\n", err_msg());
            a->failed = 1;
            return NULL;
        }
        a->done++;
    }
    return NULL;
}

static void rm_dir(const char *dir)
{
    if (fs_remove_tree(dir) < 0) {
        fprintf(stderr, "bench_reallog: %s\n", err_msg());
    }
}

/* appends/s of one run: a fresh log, T threads for `seconds`; < 0 on failure */
static double run_twig(const char *base, reallog_sync sync, int threads, uint32_t rows,
                       double seconds)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/bench-reallog-%d", base, (int)getpid());
    rm_dir(dir);
    reallog_t lg;
    reallog_opts o = reallog_opts_default(dir);
    o.sync = sync;
    if (reallog_open(&lg, &o) < 0) {
        fprintf(stderr, "bench_reallog: open %s: %s\n", dir, err_msg());
        return -1;
    }
    appender *a = xcalloc((size_t)threads, sizeof *a);
    pthread_t *th = xcalloc((size_t)threads, sizeof *th);
    double t0 = clock_now_s();
    for (int t = 0; t < threads; t++) {
        a[t].lg = &lg;
        a[t].until = t0 + seconds;
        bench_src_init(&a[t].src, t, rows);
        pthread_create(&th[t], NULL, appender_main, &a[t]);
    }
    uint64_t done = 0;
    int failed = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(th[t], NULL);
        done += a[t].done;
        failed |= a[t].failed;
    }
    double dt = clock_now_s() - t0;
    reallog_close(&lg);
    rm_dir(dir);
    free(a);
    free(th);
    return failed ? -1 : (double)done / dt;
}

/* writes/s of the bare reference: one thread, pwrite(rec) + fdatasync, and with two_syncs a
 * 512-byte pwrite in place into a second file + fdatasync after each */
static double run_bare(const char *base, uint32_t rows, int two_syncs, double seconds)
{
    char data[512], side[512];
    snprintf(data, sizeof data, "%s/bench-bare-%d.data", base, (int)getpid());
    snprintf(side, sizeof side, "%s/bench-bare-%d.side", base, (int)getpid());
    int fd = open(data, O_RDWR | O_CREAT | O_TRUNC, 0644);
    int sd = open(side, O_RDWR | O_CREAT | O_TRUNC, 0644);
    size_t rec = 64 + (size_t)rows * (2 * B_OBS + B_ACT + 1) * 4 + 2 * rows;
    rec = (rec + 7) & ~(size_t)7;
    uint8_t *buf = xcalloc(rec, 1), slot[512] = {0};
    double rate = -1;
    if (fd >= 0 && sd >= 0 && pwrite(sd, slot, sizeof slot, 0) == (ssize_t)sizeof slot &&
        fdatasync(sd) == 0) {
        uint64_t n = 0, off = 0;
        double t0 = clock_now_s(), until = t0 + seconds;
        int ok = 1;
        while (ok && clock_now_s() < until) {
            ok = pwrite(fd, buf, rec, (off_t)off) == (ssize_t)rec && fdatasync(fd) == 0;
            if (ok && two_syncs) {
                slot[0] = (uint8_t)n;
                ok = pwrite(sd, slot, sizeof slot, 0) == (ssize_t)sizeof slot &&
                     fdatasync(sd) == 0;
            }
            off += rec;
            n++;
        }
        rate = ok ? (double)n / (clock_now_s() - t0) : -1;
    }
    if (fd >= 0) {
        close(fd);
    }
    if (sd >= 0) {
        close(sd);
    }
    unlink(data);
    unlink(side);
    free(buf);
    return rate;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void print_line(const char *impl, const char *sync, int threads, uint32_t rows, double *v,
                       int reps)
{
    qsort(v, (size_t)reps, sizeof *v, cmp_double);
    printf("{\"bench\":\"reallog_append\",\"impl\":\"%s\",\"fsync\":\"%s\",\"threads\":%d,"
           "\"rows\":%u,\"reps\":%d,\"appends_per_s\":%.0f,\"min\":%.0f,\"max\":%.0f}\n",
           impl, sync, threads, rows, reps, v[reps / 2], v[0], v[reps - 1]);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    double seconds = 1;
    int reps = 3;
    const char *base = "/tmp";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
            seconds = atof(argv[++i]);
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--dir") && i + 1 < argc) {
            base = argv[++i];
        } else {
            fprintf(stderr, "usage: bench_reallog [--seconds S] [--reps N] [--dir DIR]\n");
            return 2;
        }
    }
    if (seconds <= 0 || reps < 1 || reps > MAX_REPS) {
        fprintf(stderr, "bench_reallog: --seconds > 0, --reps 1..%d\n", MAX_REPS);
        return 2;
    }
    static const uint32_t rows[] = {16, 256};
    static const int threads[] = {1, 4};
    static const reallog_sync syncs[] = {REALLOG_SYNC_BATCH, REALLOG_SYNC_GROUP};
    for (int r = 0; r < 2; r++) {
        double one[MAX_REPS], two[MAX_REPS], tw[2][2][MAX_REPS];
        for (int k = 0; k < reps; k++) {   /* interleaved: every configuration each round */
            one[k] = run_bare(base, rows[r], 0, seconds);
            two[k] = run_bare(base, rows[r], 1, seconds);
            for (int s = 0; s < 2; s++) {
                for (int t = 0; t < 2; t++) {
                    tw[s][t][k] = run_twig(base, syncs[s], threads[t], rows[r], seconds);
                    if (tw[s][t][k] < 0 || one[k] < 0 || two[k] < 0) {
                        return 1;
                    }
                }
            }
        }
        print_line("one_sync", "batch", 1, rows[r], one, reps);
        print_line("two_syncs", "batch", 1, rows[r], two, reps);
        for (int s = 0; s < 2; s++) {
            for (int t = 0; t < 2; t++) {
                print_line("twig", reallog_sync_name(syncs[s]), threads[t], rows[r], tw[s][t],
                           reps);
            }
        }
    }
    return 0;
}
