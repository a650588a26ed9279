/* tests of common/reallog (the durable real-transition log) and the batch checks in msg.c */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/base/bytes.h"
#include "common/base/crc32c.h"
#include "common/base/err.h"
#include "modelserver/reallog.h"
#include "fixture.h"
#include "tests/procfix.h"

#define ENV "Pendulum-v1"
#define O 3
#define A 1

static char dir[PROCFIX_DIR_LEN];

static void setup(void)
{
    procfix_tmpdir(dir, sizeof dir);
}

static void teardown(void)
{
    procfix_tmpdir_done(dir);
}

TestSuite(reallog, .init = setup, .fini = teardown, .timeout = 60);

static reallog_opts opts(void)
{
    reallog_opts o = reallog_opts_default(dir);
    return o;
}

static void open_ok(reallog_t *lg, const reallog_opts *o)
{
    int rc = reallog_open(lg, o);
    cr_assert_eq(rc, 0, "open: %s %s", err_name(rc), err_msg());
}

/* append batch (src, seq) of count rows; returns the ack */
static reallog_ack append_ok(reallog_t *lg, int src, uint64_t seq, uint32_t count)
{
    fx_batch b;
    fx_batch_make(&b, ENV, src, seq, count, O, A);
    reallog_ack ack = {0};
    int rc = reallog_append(lg, &ack, &b.v);
    cr_assert_eq(rc, 0, "append: %s %s", err_name(rc), err_msg());
    fx_batch_free(&b);
    return ack;
}

/* every row of [from, from + n) comes from the batch the table says, bit for bit */
typedef struct expect_row {
    int src;
    uint64_t seq;
    uint32_t row;
} expect_row;

static void expect_rows(reallog_t *lg, const expect_row *want, uint64_t from, uint64_t n,
                        uint32_t chunk)
{
    reallog_rows_t rows;
    reallog_rows_init(&rows, chunk, O, A);
    uint64_t at = from;
    while (at < from + n) {
        int rc = reallog_fetch(lg, &rows, at, chunk);
        cr_assert_eq(rc, 0, "fetch: %s", err_msg());
        cr_assert_gt(rows.count, 0);
        cr_assert_eq(rows.first_offset, at);
        for (uint32_t r = 0; r < rows.count && at + r < from + n; r++) {
            const expect_row *e = &want[at + r];
            cr_assert(fx_row_matches(rows.obs + r * O, rows.act + r * A, rows.reward + r,
                                     rows.next_obs + r * O, rows.terminated + r,
                                     rows.truncated + r, O, A, e->src, e->seq, e->row),
                      "row at offset %llu differs", (unsigned long long)(at + r));
        }
        at += rows.count;
    }
    reallog_rows_free(&rows);
}

static int count_segments(void)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        n += len > 4 && strcmp(e->d_name + len - 4, ".seg") == 0;
    }
    closedir(d);
    return n;
}

static char *seg_path(uint64_t first)
{
    char *p = xmalloc(4096);
    snprintf(p, 4096, "%s/%020llu.seg", dir, (unsigned long long)first);
    return p;
}

static off_t file_size(const char *p)
{
    struct stat st;
    cr_assert_eq(stat(p, &st), 0);
    return st.st_size;
}

Test(reallog, append_then_fetch_is_bit_exact_across_records)
{
    reallog_t lg;
    reallog_opts o = opts();
    open_ok(&lg, &o);
    expect_row want[200];
    uint64_t end = 0;
    uint32_t counts[] = {1, 7, 64, 3, 50, 20};
    for (int k = 0; k < 6; k++) {
        reallog_ack ack = append_ok(&lg, 1, (uint64_t)k + 1, counts[k]);
        cr_expect_eq(ack.first_offset, end);
        cr_expect_eq(ack.count, counts[k]);
        cr_expect_eq(ack.duplicate, 0);
        for (uint32_t i = 0; i < counts[k]; i++) {
            want[end + i] = (expect_row){1, (uint64_t)k + 1, i};
        }
        end += counts[k];
    }
    cr_expect_eq(reallog_end(&lg), end);
    /* windows that start and end inside records */
    expect_rows(&lg, want, 0, end, 1000);
    expect_rows(&lg, want, 5, end - 5, 13);
    expect_rows(&lg, want, 71, 30, 4);
    /* at the end: zero rows; past it: ERANGE */
    reallog_rows_t rows;
    reallog_rows_init(&rows, 8, O, A);
    cr_expect_eq(reallog_fetch(&lg, &rows, end, 8), 0);
    cr_expect_eq(rows.count, 0);
    cr_expect_eq(reallog_fetch(&lg, &rows, end + 1, 8), -ERANGE);
    /* max_count below the capacity is honoured */
    cr_expect_eq(reallog_fetch(&lg, &rows, 0, 2), 0);
    cr_expect_eq(rows.count, 2);
    reallog_rows_free(&rows);
    reallog_close(&lg);

    /* the same after a restart */
    open_ok(&lg, &o);
    cr_expect_eq(reallog_end(&lg), end);
    expect_rows(&lg, want, 0, end, 17);
    reallog_status st;
    reallog_get_status(&lg, &st);
    cr_expect_str_eq(st.env_id, ENV);
    cr_expect_eq(st.obs_dim, O);
    cr_expect_eq(st.act_dim, A);
    cr_expect_eq(st.sources, 1);
    reallog_close(&lg);
}

Test(reallog, retried_batch_gets_original_offsets_also_after_reopen)
{
    reallog_t lg;
    reallog_opts o = opts();
    open_ok(&lg, &o);
    reallog_ack a1 = append_ok(&lg, 1, 10, 5);
    reallog_ack b1 = append_ok(&lg, 2, 10, 4);   /* same seq, other source: new */
    reallog_ack a2 = append_ok(&lg, 1, 11, 6);
    reallog_ack again = append_ok(&lg, 1, 10, 5);
    cr_expect_eq(again.duplicate, 1);
    cr_expect_eq(again.first_offset, a1.first_offset);
    cr_expect_eq(again.count, 5);
    cr_expect_eq(b1.first_offset, 5);
    cr_expect_eq(a2.first_offset, 9);
    cr_expect_eq(reallog_end(&lg), 15);
    reallog_close(&lg);

    open_ok(&lg, &o);
    reallog_ack r = append_ok(&lg, 1, 11, 6);
    cr_expect_eq(r.duplicate, 1);
    cr_expect_eq(r.first_offset, 9);
    r = append_ok(&lg, 2, 10, 4);
    cr_expect_eq(r.duplicate, 1);
    cr_expect_eq(r.first_offset, 5);
    cr_expect_eq(reallog_end(&lg), 15);
    /* new seqs continue after the old end */
    r = append_ok(&lg, 1, 12, 2);
    cr_expect_eq(r.duplicate, 0);
    cr_expect_eq(r.first_offset, 15);
    /* a seq below the last that is not remembered: refused, nothing stored */
    fx_batch b;
    fx_batch_make(&b, ENV, 1, 3, 2, O, A);
    reallog_ack ack;
    cr_expect_eq(reallog_append(&lg, &ack, &b.v), -EINVAL);
    cr_expect(strstr(err_msg(), "seq 3") != NULL, "%s", err_msg());
    fx_batch_free(&b);
    /* a retry with a different count is refused */
    fx_batch_make(&b, ENV, 1, 12, 3, O, A);
    cr_expect_eq(reallog_append(&lg, &ack, &b.v), -EINVAL);
    fx_batch_free(&b);
    cr_expect_eq(reallog_end(&lg), 17);
    reallog_close(&lg);
}

Test(reallog, every_stored_seq_dedups_however_old_and_gaps_cannot_be_filled)
{
    reallog_t lg;
    reallog_opts o = opts();
    o.sync = REALLOG_SYNC_NONE;
    open_ok(&lg, &o);
    /* seqs 1, 3, 5, ... 3999 (gaps allowed), interleaved with a second source */
    int n = 2000;
    for (int k = 0; k < n; k++) {
        append_ok(&lg, 1, 2 * (uint64_t)k + 1, 1);
        append_ok(&lg, 2, (uint64_t)k + 1, 1);
    }
    reallog_close(&lg);
    open_ok(&lg, &o);
    /* the oldest, a middle and the newest come back with their original offsets */
    uint64_t seqs[] = {1, 1001, 3999};
    for (int i = 0; i < 3; i++) {
        reallog_ack r = append_ok(&lg, 1, seqs[i], 1);
        cr_expect_eq(r.duplicate, 1);
        cr_expect_eq(r.first_offset, (seqs[i] - 1));   /* k = (seq-1)/2 at offset 2k */
    }
    reallog_ack r = append_ok(&lg, 2, 7, 1);
    cr_expect_eq(r.duplicate, 1);
    cr_expect_eq(r.first_offset, 13);
    /* a gap filled late is refused: it would break the per-source order */
    fx_batch b;
    fx_batch_make(&b, ENV, 1, 2, 1, O, A);
    reallog_ack ack;
    cr_expect_eq(reallog_append(&lg, &ack, &b.v), -EINVAL);
    cr_expect(strstr(err_msg(), "seq 2 of source 'actor-1' was never stored") != NULL, "%s",
              err_msg());
    fx_batch_free(&b);
    cr_expect_eq(reallog_end(&lg), (uint64_t)2 * n);
    reallog_close(&lg);
}

Test(reallog, schema_is_fixed_by_first_batch_and_persisted)
{
    reallog_t lg;
    reallog_opts o = opts();
    open_ok(&lg, &o);
    append_ok(&lg, 1, 1, 2);
    fx_batch b;
    reallog_ack ack;
    fx_batch_make(&b, "Hopper-v4", 1, 2, 2, O, A);
    cr_expect_eq(reallog_append(&lg, &ack, &b.v), -EINVAL);
    cr_expect(strstr(err_msg(), "env_id") != NULL, "%s", err_msg());
    fx_batch_free(&b);
    fx_batch_make(&b, ENV, 1, 2, 2, O + 1, A);
    cr_expect_eq(reallog_append(&lg, &ack, &b.v), -EINVAL);
    cr_expect(strstr(err_msg(), "obs_dim") != NULL, "%s", err_msg());
    fx_batch_free(&b);
    reallog_close(&lg);

    /* the run's schema against the data dir's: both named */
    o.env_id = "Hopper-v4";
    o.obs_dim = 11;
    o.act_dim = 3;
    cr_expect_eq(reallog_open(&lg, &o), TWIG_EMISMATCH);
    cr_expect(strstr(err_msg(), "'Hopper-v4' (obs_dim 11, act_dim 3)") != NULL, "%s", err_msg());
    cr_expect(strstr(err_msg(), "'Pendulum-v1' (obs_dim 3, act_dim 1)") != NULL, "%s",
              err_msg());
    /* same id, other dims: refused too */
    o.env_id = ENV;
    o.obs_dim = O + 1;
    o.act_dim = A;
    cr_expect_eq(reallog_open(&lg, &o), TWIG_EMISMATCH);
    o.obs_dim = O;
    open_ok(&lg, &o);
    cr_expect_eq(reallog_end(&lg), 2);
    reallog_close(&lg);
    /* an env id needs its dims */
    o.obs_dim = 0;
    cr_expect_eq(reallog_open(&lg, &o), -EINVAL);
    cr_expect(strstr(err_msg(), "obs_dim") != NULL, "%s", err_msg());
}

Test(reallog, the_run_schema_is_fixed_at_open_and_refuses_other_first_batches)
{
    reallog_t lg;
    reallog_opts o = opts();
    o.env_id = "Hopper-v4";
    o.obs_dim = 11;
    o.act_dim = 3;
    open_ok(&lg, &o);
    /* known before any batch, and kept in meta already */
    reallog_status st;
    reallog_get_status(&lg, &st);
    cr_expect_str_eq(st.env_id, "Hopper-v4");
    cr_expect_eq(st.obs_dim, 11);
    cr_expect_eq(st.act_dim, 3);
    char meta[PROCFIX_DIR_LEN + 16];
    snprintf(meta, sizeof meta, "%s/meta", dir);
    cr_expect_eq(access(meta, F_OK), 0, "meta is written at open");
    fx_batch b;
    reallog_ack ack;
    fx_batch_make(&b, ENV, 1, 1, 2, O, A);   /* a stray first batch of another env */
    cr_expect_eq(reallog_append(&lg, &ack, &b.v), -EINVAL);
    cr_expect(strstr(err_msg(), "env_id is 'Pendulum-v1', the run's is 'Hopper-v4'") != NULL, "%s",
              err_msg());
    fx_batch_free(&b);
    fx_batch_make(&b, "Hopper-v4", 1, 1, 2, 4096, 3);   /* right id, wrong dims */
    cr_expect_eq(reallog_append(&lg, &ack, &b.v), -EINVAL);
    cr_expect(strstr(err_msg(), "obs_dim is 4096, the log's is 11") != NULL, "%s", err_msg());
    fx_batch_free(&b);
    fx_batch_make(&b, "Hopper-v4", 1, 1, 2, 11, 3);
    cr_expect_eq(reallog_append(&lg, &ack, &b.v), 0, "%s", err_msg());
    fx_batch_free(&b);
    cr_expect_eq(reallog_end(&lg), 2);
    reallog_close(&lg);
    /* a log opened without a schema (a tool) takes the data dir's */
    reallog_opts plain = opts();
    open_ok(&lg, &plain);
    reallog_get_status(&lg, &st);
    cr_expect_str_eq(st.env_id, "Hopper-v4");
    cr_expect_eq(st.obs_dim, 11);
    reallog_close(&lg);
}

Test(reallog, second_open_of_a_data_dir_is_refused)
{
    reallog_t a, b;
    reallog_opts o = opts();
    open_ok(&a, &o);
    cr_expect_eq(reallog_open(&b, &o), -EBUSY);
    cr_expect(strstr(err_msg(), "in use") != NULL);
    reallog_close(&a);
    open_ok(&b, &o);
    reallog_close(&b);
}

/* append 5 batches of 4 rows, then close: 20 rows in segment 0 */
static void five_batches(reallog_t *lg, const reallog_opts *o, expect_row *want)
{
    open_ok(lg, o);
    for (int k = 0; k < 5; k++) {
        append_ok(lg, 1, (uint64_t)k + 1, 4);
        for (uint32_t i = 0; i < 4; i++) {
            want[k * 4 + i] = (expect_row){1, (uint64_t)k + 1, i};
        }
    }
    reallog_close(lg);
}

Test(reallog, torn_tail_is_truncated_at_open_and_never_served)
{
    reallog_t lg;
    reallog_opts o = opts();
    expect_row want[40];
    five_batches(&lg, &o, want);
    char *p = seg_path(0);
    off_t good = file_size(p);
    off_t rec = good / 5;

    /* a partial record: the first half of a copy of the last one */
    int fd = open(p, O_RDWR);
    char *buf = xmalloc((size_t)rec);
    cr_assert_eq(pread(fd, buf, (size_t)rec, good - rec), rec);
    cr_assert_eq(pwrite(fd, buf, (size_t)rec / 2, good), rec / 2);
    close(fd);
    open_ok(&lg, &o);
    cr_expect_eq(reallog_end(&lg), 20);
    cr_expect_eq(file_size(p), good);
    expect_rows(&lg, want, 0, 20, 64);
    /* appends continue where the good data ends */
    reallog_ack ack = append_ok(&lg, 1, 6, 4);
    cr_expect_eq(ack.first_offset, 20);
    for (uint32_t i = 0; i < 4; i++) {
        want[20 + i] = (expect_row){1, 6, i};
    }
    reallog_close(&lg);

    /* zeros at the end (a file extended without its data) */
    good = file_size(p);
    fd = open(p, O_RDWR);
    memset(buf, 0, (size_t)rec);
    cr_assert_eq(pwrite(fd, buf, (size_t)rec, good), rec);
    close(fd);
    /* a whole record with one flipped bit at the end */
    fd = open(p, O_RDWR);
    cr_assert_eq(pread(fd, buf, (size_t)rec, good - rec), rec);
    close(fd);
    open_ok(&lg, &o);
    cr_expect_eq(reallog_end(&lg), 24);
    cr_expect_eq(file_size(p), good);
    reallog_close(&lg);
    buf[rec - 9] ^= 0x10;
    fd = open(p, O_RDWR);
    cr_assert_eq(pwrite(fd, buf, (size_t)rec, good), rec);
    close(fd);
    open_ok(&lg, &o);
    cr_expect_eq(reallog_end(&lg), 24);
    cr_expect_eq(file_size(p), good);
    expect_rows(&lg, want, 0, 24, 7);
    reallog_close(&lg);
    free(buf);
    free(p);
}

Test(reallog, corruption_before_valid_records_refuses_to_open)
{
    reallog_t lg;
    reallog_opts o = opts();
    expect_row want[20];
    five_batches(&lg, &o, want);
    char *p = seg_path(0);
    off_t rec = file_size(p) / 5;
    /* flip one bit of a float in the second record */
    int fd = open(p, O_RDWR);
    unsigned char c;
    off_t at = rec + 100;
    cr_assert_eq(pread(fd, &c, 1, at), 1);
    c ^= 0x01;
    cr_assert_eq(pwrite(fd, &c, 1, at), 1);
    close(fd);
    off_t before = file_size(p);
    int rc = reallog_open(&lg, &o);
    cr_expect_eq(rc, TWIG_ECORRUPT);
    char want_msg[128];
    snprintf(want_msg, sizeof want_msg, "00000000000000000000.seg: bad record at byte %lld",
             (long long)rec);
    cr_expect(strstr(err_msg(), want_msg) != NULL, "%s", err_msg());
    cr_expect(strstr(err_msg(), "CRC") != NULL, "%s", err_msg());
    /* nothing was truncated */
    cr_expect_eq(file_size(p), before);
    free(p);
}

Test(reallog, segments_roll_and_reopen_reads_across_them)
{
    reallog_t lg;
    reallog_opts o = opts();
    o.segment_bytes = 4096;
    o.sync = REALLOG_SYNC_GROUP;
    open_ok(&lg, &o);
    static expect_row want[4000];
    uint64_t end = 0;
    for (int k = 0; k < 100; k++) {
        uint32_t c = 1 + (uint32_t)(k % 30);
        reallog_ack ack = append_ok(&lg, 3, (uint64_t)k + 1, c);
        cr_assert_eq(ack.first_offset, end);
        for (uint32_t i = 0; i < c; i++) {
            want[end + i] = (expect_row){3, (uint64_t)k + 1, i};
        }
        end += c;
    }
    reallog_status st;
    reallog_get_status(&lg, &st);
    cr_expect_gt(st.segments, 10);
    cr_expect_eq(count_segments(), (int)st.segments);
    expect_rows(&lg, want, 0, end, 333);
    reallog_close(&lg);
    open_ok(&lg, &o);
    cr_expect_eq(reallog_end(&lg), end);
    expect_rows(&lg, want, 0, end, 97);
    /* corruption in a segment that is not the last one is never a torn tail */
    reallog_close(&lg);
    char *p = seg_path(0);
    off_t sz = file_size(p);
    cr_assert_eq(truncate(p, sz - 3), 0);
    cr_expect_eq(reallog_open(&lg, &o), TWIG_ECORRUPT);
    cr_expect(strstr(err_msg(), "00000000000000000000.seg") != NULL, "%s", err_msg());
    free(p);
}

/* several threads appending at once; each checks its own acks */
typedef struct appender_arg {
    reallog_t *lg;
    int src;
    int n;
    uint32_t count;
    uint64_t *firsts;   /* (n) */
} appender_arg;

static void *appender_thread(void *p)
{
    appender_arg *a = p;
    for (int k = 0; k < a->n; k++) {
        fx_batch b;
        fx_batch_make(&b, ENV, a->src, (uint64_t)k + 1, a->count, O, A);
        reallog_ack ack = {0};
        if (reallog_append(a->lg, &ack, &b.v) != 0 || ack.count != a->count) {
            a->firsts[k] = UINT64_MAX;
        } else {
            a->firsts[k] = ack.first_offset;
        }
        fx_batch_free(&b);
    }
    return NULL;
}

static void concurrent_appends(reallog_sync sync)
{
    enum { T = 4, N = 150, C = 5 };
    reallog_t lg;
    reallog_opts o = opts();
    o.sync = sync;
    o.segment_bytes = 64 << 10;
    open_ok(&lg, &o);
    pthread_t th[T];
    appender_arg args[T];
    for (int t = 0; t < T; t++) {
        args[t] = (appender_arg){&lg, t + 1, N, C, xcalloc(N, sizeof(uint64_t))};
        pthread_create(&th[t], NULL, appender_thread, &args[t]);
    }
    for (int t = 0; t < T; t++) {
        pthread_join(th[t], NULL);
    }
    /* acks partition [0, T*N*C) */
    static expect_row want[T * N * C];
    static int seen[T * N * C];
    memset(seen, 0, sizeof seen);
    for (int t = 0; t < T; t++) {
        for (int k = 0; k < N; k++) {
            uint64_t f = args[t].firsts[k];
            cr_assert_lt(f, (uint64_t)T * N * C);
            for (uint32_t i = 0; i < C; i++) {
                cr_assert_eq(seen[f + i], 0, "offset %llu acked twice", (unsigned long long)f);
                seen[f + i] = 1;
                want[f + i] = (expect_row){t + 1, (uint64_t)k + 1, i};
            }
        }
    }
    cr_expect_eq(reallog_end(&lg), (uint64_t)T * N * C);
    expect_rows(&lg, want, 0, (uint64_t)T * N * C, 512);
    reallog_close(&lg);
    open_ok(&lg, &o);
    cr_expect_eq(reallog_end(&lg), (uint64_t)T * N * C);
    expect_rows(&lg, want, 0, (uint64_t)T * N * C, 1000);
    reallog_status st;
    reallog_get_status(&lg, &st);
    cr_expect_eq(st.sources, T);
    reallog_close(&lg);
    for (int t = 0; t < T; t++) {
        free(args[t].firsts);
    }
}

Test(reallog, group_commit_with_concurrent_appenders)
{
    concurrent_appends(REALLOG_SYNC_GROUP);
}

Test(reallog, fsync_per_batch_with_concurrent_appenders)
{
    concurrent_appends(REALLOG_SYNC_BATCH);
}

Test(reallog, no_sync_with_concurrent_appenders)
{
    concurrent_appends(REALLOG_SYNC_NONE);
}

/* the notify hook reports each new end */
static void on_end(void *arg, uint64_t end)
{
    *(uint64_t *)arg = end;
}

Test(reallog, notify_reports_the_new_end)
{
    reallog_t lg;
    reallog_opts o = opts();
    open_ok(&lg, &o);
    uint64_t seen = 0;
    reallog_set_notify(&lg, on_end, &seen);
    append_ok(&lg, 1, 1, 3);
    append_ok(&lg, 1, 2, 4);
    reallog_close(&lg);
    cr_expect_eq(seen, 7);
}

Test(reallog, sync_policy_names_parse)
{
    reallog_sync s;
    cr_expect_eq(reallog_sync_parse("group", &s), 0);
    cr_expect_eq(s, REALLOG_SYNC_GROUP);
    cr_expect_eq(reallog_sync_parse("sometimes", &s), -EINVAL);
    cr_expect(strstr(err_msg(), "sometimes") != NULL);
}

/* ---- msg_batch_check ---- */

static Twig__V1__TransitionBatch *msg_of(fx_batch *b)
{
    Twig__V1__TransitionBatch *m = xmalloc(sizeof *m);
    msg_batch_from_view(m, &b->v);
    return m;
}

static void expect_invalid(Twig__V1__TransitionBatch *m, const char *field)
{
    cr_expect_eq(msg_batch_check(m, MSG_BATCH_MAX_COUNT), -EINVAL);
    cr_expect(strstr(err_msg(), field) != NULL, "'%s' not in '%s'", field, err_msg());
}

Test(msg, batch_check_names_the_bad_field)
{
    fx_batch b;
    fx_batch_make(&b, ENV, 1, 1, 4, O, A);
    Twig__V1__TransitionBatch *m = msg_of(&b);
    cr_expect_eq(msg_batch_check(m, MSG_BATCH_MAX_COUNT), 0);

    float keep = b.reward[2];
    b.reward[2] = NAN;
    expect_invalid(m, "reward[2] is NaN");
    b.reward[2] = keep;
    keep = b.next_obs[1 * O + 2];
    b.next_obs[1 * O + 2] = -INFINITY;
    expect_invalid(m, "next_obs[1][2] is Inf");
    b.next_obs[1 * O + 2] = keep;
    cr_expect_eq(msg_batch_check(m, MSG_BATCH_MAX_COUNT), 0);

    m->n_act = 3;
    expect_invalid(m, "act has 3 elements");
    m->n_act = 4;
    m->obs_dim = 0;
    expect_invalid(m, "obs_dim is 0");
    m->obs_dim = O;
    m->count = 5;
    expect_invalid(m, "obs has 12 elements");
    m->count = 4;
    m->n_truncated = 0;
    expect_invalid(m, "truncated");
    m->n_truncated = 4;
    m->source_id = (char *)"";
    expect_invalid(m, "source_id is empty");
    /* ids reach log lines as key=value: a space, a quote or a newline would forge fields */
    m->source_id = (char *)"actor 0";
    expect_invalid(m, "source_id has byte 0x20 at 5");
    m->source_id = (char *)"a\"b";
    expect_invalid(m, "source_id has byte 0x22 at 1");
    m->source_id = b.source_id;
    m->env_id = (char *)"Pendulum-v1 x=1";
    expect_invalid(m, "env_id has byte 0x20 at 11");
    m->env_id = b.env_id;
    m->env_id = (char *)"";
    expect_invalid(m, "env_id is empty");
    m->env_id = b.env_id;
    m->count = 0;
    expect_invalid(m, "count is 0");
    m->count = 4;
    cr_expect_eq(msg_batch_check(m, 2), -EINVAL);
    m->model_version = 3;
    expect_invalid(m, "model_version");
    m->model_version = 0;
    cr_expect_eq(msg_batch_check(m, MSG_BATCH_MAX_COUNT), 0);

    /* round trip through the wire format keeps every number */
    size_t n = protobuf_c_message_get_packed_size(&m->base);
    uint8_t *buf = xmalloc(n);
    protobuf_c_message_pack(&m->base, buf);
    Twig__V1__TransitionBatch *u = twig__v1__transition_batch__unpack(NULL, n, buf);
    cr_assert_not_null(u);
    cr_expect_eq(msg_batch_check(u, MSG_BATCH_MAX_COUNT), 0);
    tbatch_t v;
    msg_batch_view(&v, u);
    for (uint32_t i = 0; i < 4; i++) {
        cr_expect(fx_row_matches(v.obs + i * O, v.act + i * A, v.reward + i,
                                 v.next_obs + i * O, v.terminated + i, v.truncated + i, O, A,
                                 1, 1, i));
    }
    twig__v1__transition_batch__free_unpacked(u, NULL);
    free(buf);
    free(m);
    fx_batch_free(&b);
}

/* async appends counted by their callbacks */
typedef struct counter {
    pthread_mutex_t mu;
    int done;
    int failed;
} counter;

static void count_done(void *arg, int rc, const reallog_ack *ack, const char *text)
{
    counter *c = arg;
    pthread_mutex_lock(&c->mu);
    c->done++;
    c->failed += rc < 0;
    pthread_mutex_unlock(&c->mu);
}

Test(reallog, full_queue_refuses_appends_and_wait_room_waits_for_the_disk)
{
    reallog_t lg;
    reallog_opts o = opts();
    o.max_queue_bytes = 4096;   /* about six of these records */
    open_ok(&lg, &o);
    enum { N = 200 };
    static fx_batch b[N];
    counter c = {.done = 0};
    pthread_mutex_init(&c.mu, NULL);
    int queued = 0, full = 0;
    for (int k = 0; k < N; k++) {
        fx_batch_make(&b[k], ENV, 1, (uint64_t)k + 1, 4, O, A);
        int rc = reallog_append_async(&lg, &b[k].v, count_done, &c);
        if (rc == TWIG_EFULL) {
            full++;
            /* flow control: wait, then it fits */
            cr_assert_eq(reallog_wait_room(&lg, reallog_batch_bytes(&b[k].v), 10000), 0);
            rc = reallog_append_async(&lg, &b[k].v, count_done, &c);
        }
        cr_assert_eq(rc, 0, "%s", err_msg());
        queued++;
    }
    reallog_close(&lg);   /* drains the queue */
    cr_expect_gt(full, 0, "the queue never filled");
    cr_expect_eq(c.done, queued);
    cr_expect_eq(c.failed, 0);
    open_ok(&lg, &o);
    cr_expect_eq(reallog_end(&lg), (uint64_t)N * 4);
    reallog_close(&lg);
    for (int k = 0; k < N; k++) {
        fx_batch_free(&b[k]);
    }
}

/* HalfCheetah's rows hold 41 floats, so a batch of odd count has a float section that is
 * 4 mod 8 bytes: its record must still end 8-aligned and the log must reopen. (Before
 * 2026-11-23 such records ended 4-aligned and open refused the log as corrupt.) */
#define HC_ENV "HalfCheetah-v4"
#define HC_O 17
#define HC_A 6
#define HC_BATCHES 6

static const uint32_t hc_counts[HC_BATCHES] = {1, 3, 2, 5, 1, 4};

/* append batch seq of count HalfCheetah rows from source 1; its ack */
static reallog_ack hc_append(reallog_t *lg, uint64_t seq, uint32_t count)
{
    fx_batch b;
    fx_batch_make(&b, HC_ENV, 1, seq, count, HC_O, HC_A);
    reallog_ack ack = {0};
    int rc = reallog_append(lg, &ack, &b.v);
    cr_assert_eq(rc, 0, "append: %s %s", err_name(rc), err_msg());
    fx_batch_free(&b);
    return ack;
}

static void hc_append_all(reallog_t *lg)
{
    for (int k = 0; k < HC_BATCHES; k++) {
        hc_append(lg, (uint64_t)k + 1, hc_counts[k]);
    }
}

/* the 16 rows the batches of hc_counts wrote, bit for bit */
static void hc_expect_all(reallog_t *lg)
{
    reallog_rows_t rows;
    reallog_rows_init(&rows, 64, HC_O, HC_A);
    cr_assert_eq(reallog_fetch(lg, &rows, 0, 16), 0, "fetch: %s", err_msg());
    uint32_t at = 0;
    for (int k = 0; k < HC_BATCHES; k++) {
        for (uint32_t i = 0; i < hc_counts[k]; i++, at++) {
            cr_assert_lt(at, rows.count);
            cr_assert(fx_row_matches(rows.obs + at * HC_O, rows.act + at * HC_A,
                                     rows.reward + at, rows.next_obs + at * HC_O,
                                     rows.terminated + at, rows.truncated + at, HC_O, HC_A, 1,
                                     (uint64_t)k + 1, i),
                      "row %u differs", at);
        }
    }
    cr_expect_eq(rows.count, at);
    reallog_rows_free(&rows);
}

Test(reallog, odd_float_count_records_are_8_aligned_and_reopen)
{
    reallog_t lg;
    reallog_opts o = opts();
    open_ok(&lg, &o);
    hc_append_all(&lg);
    cr_expect_eq(reallog_end(&lg), 16);
    reallog_close(&lg);

    char *p = seg_path(0);
    cr_expect_eq(file_size(p) % 8, 0, "segment size %lld", (long long)file_size(p));
    open_ok(&lg, &o);
    cr_expect_eq(reallog_end(&lg), 16);
    hc_expect_all(&lg);
    /* appends go on after the reopened records */
    cr_expect_eq(hc_append(&lg, 7, 3).first_offset, 16);
    reallog_close(&lg);
    open_ok(&lg, &o);
    cr_expect_eq(reallog_end(&lg), 19);
    reallog_close(&lg);
    free(p);
}

static uint32_t up8(uint32_t n)
{
    return (n + 7) & ~7u;
}

/* rewrite a segment into the old layout, where only the flags were padded to 8 (so a record
 * with an odd number of floats ended 4-aligned); lengths and CRCs to match */
static void rewrite_as_legacy(const char *p)
{
    off_t n = file_size(p);
    unsigned char *in = xmalloc((size_t)n), *out = xcalloc(2 * (size_t)n, 1);
    int fd = open(p, O_RDWR);
    cr_assert_eq(pread(fd, in, (size_t)n, 0), n);
    size_t at = 0, w = 0;
    int misaligned = 0; /* records that start 4 mod 8, as the old writer left them */
    while (at < (size_t)n) {
        misaligned += w % 8 != 0;
        uint32_t len = le32_get(in + at + 4), count = le32_get(in + at + 12);
        uint32_t fbytes = count * (2 * HC_O + HC_A + 1) * 4;
        uint32_t legacy = len - up8(fbytes + 2 * count) + fbytes + up8(2 * count);
        memcpy(out + w, in + at, legacy < len ? legacy : len); /* longer: zero padding */
        le32_put(out + w + 4, legacy);
        uint32_t crc = crc32c_update(crc32c(out + w, 8), out + w + 12, legacy - 12);
        le32_put(out + w + 8, crc);
        at += len;
        w += legacy;
    }
    cr_assert_gt(misaligned, 0);
    cr_assert_eq(ftruncate(fd, 0), 0);
    cr_assert_eq(pwrite(fd, out, w, 0), (ssize_t)w);
    close(fd);
    free(in);
    free(out);
}

Test(reallog, logs_with_the_old_4_aligned_records_still_open)
{
    reallog_t lg;
    reallog_opts o = opts();
    open_ok(&lg, &o);
    hc_append_all(&lg);
    reallog_close(&lg);
    char *p = seg_path(0);
    rewrite_as_legacy(p);
    off_t legacy_size = file_size(p);
    /* the old layout comes from before the recovery point existed */
    char rp[PROCFIX_DIR_LEN + 16];
    snprintf(rp, sizeof rp, "%s/durable_end", dir);
    cr_assert_eq(unlink(rp), 0);

    open_ok(&lg, &o);
    cr_expect_eq(reallog_end(&lg), 16);
    hc_expect_all(&lg);
    /* a new record after the old ones; then everything reopens */
    cr_expect_eq(hc_append(&lg, 7, 1).first_offset, 16);
    reallog_close(&lg);
    cr_expect_gt(file_size(p), legacy_size);
    open_ok(&lg, &o);
    cr_expect_eq(reallog_end(&lg), 17);
    hc_expect_all(&lg);
    reallog_close(&lg);
    free(p);
}

/* ---- the recovery point: damage to acknowledged records is corruption ---- */

/* the path of the segment with the highest first offset (owned) */
static char *newest_segment(void)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    struct dirent *e;
    unsigned long long best = 0;
    while ((e = readdir(d))) {
        unsigned long long v;
        size_t len = strlen(e->d_name);
        if (len == 24 && !strcmp(e->d_name + 20, ".seg") && sscanf(e->d_name, "%20llu", &v) == 1 &&
            v > best) {
            best = v;
        }
    }
    closedir(d);
    return seg_path(best);
}

static char *rp_path(void)
{
    char *p = xmalloc(4096);
    snprintf(p, 4096, "%s/durable_end", dir);
    return p;
}

/* n batches of count rows from source 1 (seqs 1..n), acknowledged; then closed */
static void batches(const reallog_opts *o, int n, uint32_t count, expect_row *want)
{
    reallog_t lg;
    open_ok(&lg, o);
    for (int k = 0; k < n; k++) {
        reallog_ack ack = append_ok(&lg, 1, (uint64_t)k + 1, count);
        cr_assert_eq(ack.first_offset, (uint64_t)k * count);
        for (uint32_t i = 0; want && i < count; i++) {
            want[k * count + i] = (expect_row){1, (uint64_t)k + 1, i};
        }
    }
    reallog_close(&lg);
}

/* open must refuse with TWIG_ECORRUPT and a message holding each of the texts */
static void expect_corrupt(const reallog_opts *o, const char *t1, const char *t2)
{
    reallog_t lg;
    int rc = reallog_open(&lg, o);
    cr_expect_eq(rc, TWIG_ECORRUPT, "open: %s %s", err_name(rc), err_msg());
    cr_expect(strstr(err_msg(), t1) != NULL, "'%s' not in '%s'", t1, err_msg());
    cr_expect(!t2 || strstr(err_msg(), t2) != NULL, "'%s' not in '%s'", t2, err_msg());
    if (rc == 0) {
        reallog_close(&lg);
    }
}

/* the log opens with end rows, every one as want says */
static void expect_intact(const reallog_opts *o, const expect_row *want, uint64_t end)
{
    reallog_t lg;
    open_ok(&lg, o);
    cr_expect_eq(reallog_end(&lg), end);
    expect_rows(&lg, want, 0, end, 4096);
    reallog_close(&lg);
}

Test(reallog, damage_to_the_acknowledged_tail_refuses_to_open_naming_the_file_and_byte)
{
    enum { N = 40, C = 20 };   /* 40 records of 744 bytes: the last page is all acknowledged */
    reallog_opts o = opts();
    static expect_row want[N * C];
    batches(&o, N, C, want);
    char *p = seg_path(0);
    size_t size;
    uint8_t *orig = fx_read_file(p, &size);
    off_t rec = (off_t)size / N, last = (off_t)size - rec;
    char at[160];

    /* four flipped bytes inside the last, fully synced record */
    fx_flip_bytes(p, last + rec / 2, 4);
    snprintf(at, sizeof at, "00000000000000000000.seg: bad record at byte %lld", (long long)last);
    expect_corrupt(&o, at, "before the recovery point");
    cr_expect_eq(file_size(p), (off_t)size, "nothing was truncated");
    fx_write_file(p, orig, size);
    expect_intact(&o, want, N * C);

    /* the last page zeroed */
    off_t page = ((off_t)size - 1) / 4096 * 4096;
    fx_zero_range(p, page, (off_t)size);
    snprintf(at, sizeof at, "00000000000000000000.seg: bad record at byte %lld",
             (long long)(page / rec * rec));
    expect_corrupt(&o, at, "before the recovery point");
    cr_expect_eq(file_size(p), (off_t)size);
    fx_write_file(p, orig, size);
    expect_intact(&o, want, N * C);

    /* cut exactly at a record boundary: every record left verifies, one is missing */
    cr_assert_eq(truncate(p, last), 0);
    snprintf(at, sizeof at, "00000000000000000000.seg ends at byte %lld (log offset %d)",
             (long long)last, (N - 1) * C);
    expect_corrupt(&o, at, "cut short");
    fx_write_file(p, orig, size);
    expect_intact(&o, want, N * C);
    free(orig);
    free(p);
}

Test(reallog, deleting_the_newest_segment_refuses_to_open)
{
    enum { N = 30, C = 20 };
    reallog_opts o = opts();
    o.segment_bytes = 4096;    /* five records a segment */
    static expect_row want[N * C];
    batches(&o, N, C, want);
    cr_assert_geq(count_segments(), 5);
    char *last = newest_segment();
    char moved[4200];
    snprintf(moved, sizeof moved, "%s.away", last);
    cr_assert_eq(rename(last, moved), 0);
    expect_corrupt(&o, "is missing", strrchr(last, '/') + 1);
    cr_assert_eq(rename(moved, last), 0);
    expect_intact(&o, want, N * C);
    free(last);
}

Test(reallog, damage_past_the_recovery_point_is_truncated_and_valid_records_there_kept)
{
    reallog_t lg;
    reallog_opts o = opts();
    expect_row want[40];
    five_batches(&lg, &o, want);
    char *rp = rp_path(), *p = seg_path(0);
    size_t rp_n, five;
    uint8_t *rp_at_20 = fx_read_file(rp, &rp_n);   /* the recovery point after 20 rows */
    five = (size_t)file_size(p);
    off_t rec = (off_t)five / 5;
    /* three more batches, then their recovery points are lost: as if the process died
     * after syncing their records and before syncing durable_end */
    open_ok(&lg, &o);
    for (int k = 5; k < 8; k++) {
        append_ok(&lg, 1, (uint64_t)k + 1, 4);
        for (uint32_t i = 0; i < 4; i++) {
            want[k * 4 + i] = (expect_row){1, (uint64_t)k + 1, i};
        }
    }
    reallog_close(&lg);
    fx_write_file(rp, rp_at_20, rp_n);

    /* they verify: kept, and a retry finds them */
    open_ok(&lg, &o);
    cr_expect_eq(reallog_end(&lg), 32);
    expect_rows(&lg, want, 0, 32, 64);
    reallog_ack ack = append_ok(&lg, 1, 7, 4);
    cr_expect_eq(ack.duplicate, 1);
    cr_expect_eq(ack.first_offset, 24);
    reallog_close(&lg);

    /* the first of them torn, the two after it intact: all three were never acknowledged,
     * so the segment is cut at the torn one (the old rule refused such a log) */
    fx_write_file(rp, rp_at_20, rp_n);
    fx_flip_bytes(p, 5 * rec + rec / 2, 1);
    open_ok(&lg, &o);
    cr_expect_eq(reallog_end(&lg), 20);
    cr_expect_eq(file_size(p), (off_t)five);
    expect_rows(&lg, want, 0, 20, 64);
    /* seq 6 was never acknowledged: stored anew where the log ends */
    ack = append_ok(&lg, 1, 6, 4);
    cr_expect_eq(ack.duplicate, 0);
    cr_expect_eq(ack.first_offset, 20);
    reallog_close(&lg);
    free(rp_at_20);
    free(rp);
    free(p);
}

Test(reallog, a_log_without_durable_end_opens_by_the_old_rule_and_gets_one)
{
    reallog_t lg;
    reallog_opts o = opts();
    expect_row want[20];
    five_batches(&lg, &o, want);
    char *rp = rp_path(), *p = seg_path(0);
    cr_assert_eq(unlink(rp), 0);   /* a data dir of an older twig */
    off_t good = file_size(p), rec = good / 5;
    /* a torn half-record at the end: truncated as before */
    size_t n;
    uint8_t *seg = fx_read_file(p, &n);
    int fd = open(p, O_WRONLY | O_APPEND);
    cr_assert_eq(write(fd, seg + good - rec, (size_t)rec / 2), rec / 2);
    close(fd);
    expect_intact(&o, want, 20);
    cr_expect_eq(file_size(p), good);
    cr_expect_eq(access(rp, F_OK), 0, "durable_end is created");
    /* from now on the tail is protected */
    fx_flip_bytes(p, good - rec / 2, 4);
    expect_corrupt(&o, "before the recovery point", NULL);
    free(seg);
    free(rp);
    free(p);
}

Test(reallog, fsync_none_says_so_when_acknowledged_records_are_gone)
{
    reallog_t lg;
    reallog_opts o = opts();
    o.sync = REALLOG_SYNC_NONE;
    expect_row want[20];
    five_batches(&lg, &o, want);
    char *p = seg_path(0);
    off_t good = file_size(p);
    /* what a power loss can do to a log written without syncs: the recovery point reached
     * the disk, the last record did not */
    cr_assert_eq(truncate(p, good - good / 5), 0);
    expect_corrupt(&o, "cut short", "fsync=none");
    free(p);
}

/* ---- the source table: bounded, quietness in log offsets, the fence ---- */

/* append (src, seq, count) with a source_epoch; the return code, the ack in *ack */
static int append_epoch(reallog_t *lg, reallog_ack *ack, int src, uint64_t seq, uint32_t count,
                        uint64_t epoch)
{
    fx_batch b;
    fx_batch_make(&b, ENV, src, seq, count, O, A);
    b.v.source_epoch = epoch;
    int rc = reallog_append(lg, ack, &b.v);
    fx_batch_free(&b);
    return rc;
}

static reallog_status status_of(reallog_t *lg)
{
    reallog_status st;
    reallog_get_status(lg, &st);
    return st;
}

Test(reallog, a_full_source_table_evicts_the_quietest_once_quiet_enough_and_fences_it)
{
    reallog_t lg;
    reallog_opts o = opts();
    o.sync = REALLOG_SYNC_NONE;
    o.max_sources = 3;
    o.quiet_steps = 10;
    open_ok(&lg, &o);
    reallog_ack ack;
    for (int s = 1; s <= 3; s++) {
        cr_assert_eq(append_epoch(&lg, &ack, s, 1, 2, 0), 0, "%s", err_msg());  /* at 0, 2, 4 */
    }
    /* a fourth source: actor-1 has been quiet for 6 - 2 = 4 transitions, fewer than 10 */
    cr_expect_eq(append_epoch(&lg, &ack, 4, 1, 2, 0), TWIG_EFULL);
    cr_expect(strstr(err_msg(), "too many sources") && strstr(err_msg(), "'actor-1'"), "%s",
              err_msg());
    reallog_status st = status_of(&lg);
    cr_expect_eq(st.sources_full, 1);
    cr_expect_eq(st.sources, 3);
    cr_expect_eq(st.end_offset, 6);
    /* actor-3 appends 6 more: actor-1 is quiet for 12 - 2 = 10 */
    cr_assert_eq(append_epoch(&lg, &ack, 3, 2, 6, 0), 0);
    cr_assert_eq(append_epoch(&lg, &ack, 4, 1, 2, 0), 0, "%s", err_msg());
    cr_expect_eq(ack.first_offset, 12);
    st = status_of(&lg);
    cr_expect_eq(st.evictions, 1);
    cr_expect_eq(st.fence, 1, "actor-1's first record was at 0");
    cr_expect_eq(st.sources, 3);
    cr_expect_eq(st.epoch, 14);
    uint64_t seq, tr;
    reallog_source_status(&lg, "actor-1", &seq, &tr);
    cr_expect_eq(seq, 0, "forgotten");
    /* a retry of the forgotten identity: fenced, never stored twice */
    cr_expect_eq(append_epoch(&lg, &ack, 1, 1, 2, 0), TWIG_EFENCED);
    cr_expect(strstr(err_msg(), "below the fence 1"), "%s", err_msg());
    cr_expect_eq(status_of(&lg).fenced, 1);
    /* a new identity of actor-1 starts from the current epoch and seq 1; it evicts actor-2
     * (quiet since 4: 14 - 4 = 10), the fence rises to 3 */
    cr_assert_eq(append_epoch(&lg, &ack, 1, 1, 2, st.epoch), 0, "%s", err_msg());
    cr_expect_eq(ack.first_offset, 14);
    cr_expect_eq(ack.duplicate, 0);
    st = status_of(&lg);
    cr_expect_eq(st.fence, 3);
    cr_expect_eq(st.evictions, 2);
    reallog_source_status(&lg, "actor-1", &seq, &tr);
    cr_expect_eq(seq, 1);
    cr_expect_eq(tr, 2, "the new identity counts from 0 (the known limit)");
    /* known sources are never fenced, whatever their epoch */
    cr_assert_eq(append_epoch(&lg, &ack, 3, 3, 1, 0), 0, "%s", err_msg());
    reallog_close(&lg);

    /* reopen: the same admissions and evictions replay from the records */
    open_ok(&lg, &o);
    st = status_of(&lg);
    cr_expect_eq(st.sources, 3);
    cr_expect_eq(st.fence, 3);
    cr_expect_eq(st.evictions, 2);
    cr_expect_eq(st.end_offset, 17);
    reallog_source_status(&lg, "actor-1", &seq, &tr);
    cr_expect_eq(seq, 1);
    cr_expect_eq(tr, 2);
    reallog_source_status(&lg, "actor-2", &seq, &tr);
    cr_expect_eq(seq, 0);
    cr_expect_eq(append_epoch(&lg, &ack, 2, 1, 2, 0), TWIG_EFENCED);
    cr_assert_eq(append_epoch(&lg, &ack, 4, 1, 2, 0), 0);
    cr_expect(ack.duplicate && ack.first_offset == 12, "dup %d at %llu", ack.duplicate,
              (unsigned long long)ack.first_offset);
    cr_assert_eq(append_epoch(&lg, &ack, 1, 1, 2, 0), 0);
    cr_expect(ack.duplicate && ack.first_offset == 14);
    cr_assert_eq(append_epoch(&lg, &ack, 3, 2, 6, 0), 0);
    cr_expect(ack.duplicate && ack.first_offset == 6);
    cr_expect_eq(reallog_end(&lg), 17);
    reallog_close(&lg);
    /* smaller options than the log was written with: the replay still takes every record */
    o.max_sources = 2;
    open_ok(&lg, &o);
    st = status_of(&lg);
    cr_expect_eq(st.sources, 2);
    cr_expect_eq(st.end_offset, 17);
    reallog_close(&lg);
}

Test(reallog, source_options_are_checked)
{
    reallog_t lg;
    reallog_opts o = opts();
    o.max_sources = REALLOG_MAX_SOURCES_LIMIT + 1;
    cr_expect_eq(reallog_open(&lg, &o), -EINVAL);
    cr_expect(strstr(err_msg(), "max_sources") != NULL, "%s", err_msg());
    o.max_sources = 0;   /* 0: the defaults */
    o.quiet_steps = 0;
    open_ok(&lg, &o);
    cr_expect_eq(status_of(&lg).max_sources, REALLOG_DEFAULT_MAX_SOURCES);
    reallog_close(&lg);
}

/* ---- a full disk (a small tmpfs) ---- */

static char small[PROCFIX_DIR_LEN + 16];

static void small_fs_setup(void)
{
    snprintf(small, sizeof small, "%s/small", dir);
    fx_small_fs_mount(small, 256);
}

static void small_fs_teardown(void)
{
    fx_small_fs_umount(small);
}

/* what the health callback saw */
typedef struct health_seen {
    pthread_mutex_t mu;
    int changes;
    int writable;
    char why[400];
} health_seen;

/* a copy of what it saw, under its lock */
static health_seen health_now(health_seen *h)
{
    pthread_mutex_lock(&h->mu);
    health_seen c = *h;
    pthread_mutex_unlock(&h->mu);
    return c;
}

static void on_health(void *arg, int writable, const char *why)
{
    health_seen *h = arg;
    pthread_mutex_lock(&h->mu);
    h->changes++;
    h->writable = writable;
    snprintf(h->why, sizeof h->why, "%s", why);
    pthread_mutex_unlock(&h->mu);
}

/* an async append's result */
typedef struct result {
    pthread_mutex_t *mu;
    pthread_cond_t *cv;
    int *left;
    int rc;
    reallog_ack ack;
    char text[400];
} result;

static void on_result(void *arg, int rc, const reallog_ack *ack, const char *text)
{
    result *r = arg;
    pthread_mutex_lock(r->mu);
    r->rc = rc;
    if (ack) {
        r->ack = *ack;
    }
    snprintf(r->text, sizeof r->text, "%s", text);
    (*r->left)--;
    pthread_cond_broadcast(r->cv);
    pthread_mutex_unlock(r->mu);
}

Test(reallog, a_full_disk_fails_the_write_and_what_queued_behind_it_then_appends_resume,
     .init = small_fs_setup, .fini = small_fs_teardown)
{
    enum { BIG = 600 };   /* 600 rows: 20 KiB, more than the space left */
    char logdir[PROCFIX_DIR_LEN + 32], filler[PROCFIX_DIR_LEN + 32];
    snprintf(logdir, sizeof logdir, "%s/log", small);
    snprintf(filler, sizeof filler, "%s/filler", small);
    reallog_t lg;
    reallog_opts o = reallog_opts_default(logdir);
    o.sync = REALLOG_SYNC_GROUP;
    o.env_id = ENV;
    o.obs_dim = O;
    o.act_dim = A;
    open_ok(&lg, &o);
    health_seen hs = {.changes = 0};
    pthread_mutex_init(&hs.mu, NULL);
    reallog_set_health(&lg, on_health, &hs);
    static expect_row want[4096];
    uint64_t end = 0;
    for (int k = 1; k <= 3; k++) {
        reallog_ack ack = append_ok(&lg, 1, (uint64_t)k, 10);
        cr_assert_eq(ack.first_offset, end);
        for (uint32_t i = 0; i < 10; i++) {
            want[end + i] = (expect_row){1, (uint64_t)k, i};
        }
        end += 10;
    }

    /* the disk is full: the write fails with ENOSPC, naming the segment */
    fx_fill_fs(filler, 0);
    fx_batch big;
    fx_batch_make(&big, ENV, 1, 4, BIG, O, A);
    reallog_ack ack;
    cr_expect_eq(reallog_append(&lg, &ack, &big.v), -ENOSPC);
    cr_expect(strstr(err_msg(), "write segment 0: No space left on device") != NULL, "%s",
              err_msg());
    reallog_status st = status_of(&lg);
    cr_expect_eq(st.writable, 0);
    cr_expect_geq(st.write_failures, 1);
    cr_expect_eq(st.end_offset, end);
    health_seen h = health_now(&hs);
    cr_expect_eq(h.changes, 1, "not writable: reported once");
    cr_expect_eq(h.writable, 0);
    cr_expect(strstr(h.why, "No space left on device") != NULL, "%s", h.why);
    /* the failed write was truncated away: take that space too. A new source's batch (more
     * than a page) fails as well, and its admission is undone */
    fx_fill_fs(filler, 0);
    cr_expect_eq(append_epoch(&lg, &ack, 2, 1, 200, 0), -ENOSPC);
    cr_expect_eq(status_of(&lg).sources, 1);
    cr_expect_eq(health_now(&hs).changes, 1, "still not writable: no new report");

    /* a little space: the big batch still does not fit, small ones would. Queue it and two
     * small ones of other sources (a source has one batch in flight): whatever was queued
     * behind the failed write fails with it (its offset was void), whatever came after is
     * stored where the log ends, with no gap */
    unlink(filler);
    fx_fill_fs(filler, 8192);
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;   /* static: the appender may */
    static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;     /* outlive a failed assertion */
    static int left = 3;
    static result r[3];
    static fx_batch small_b, other;
    fx_batch_make(&small_b, ENV, 3, 1, 1, O, A);
    fx_batch_make(&other, ENV, 2, 1, 1, O, A);
    const tbatch_t *queued[3] = {&big.v, &small_b.v, &other.v};
    for (int i = 0; i < 3; i++) {
        r[i] = (result){.mu = &mu, .cv = &cv, .left = &left};
        cr_assert_eq(reallog_append_async(&lg, queued[i], on_result, &r[i]), 0, "%s", err_msg());
    }
    pthread_mutex_lock(&mu);
    while (left > 0) {
        pthread_cond_wait(&cv, &mu);
    }
    pthread_mutex_unlock(&mu);
    cr_expect_eq(r[0].rc, -ENOSPC, "%s", r[0].text);
    uint64_t at = end;
    for (int i = 1; i < 3; i++) {
        if (r[i].rc == 0) {
            cr_expect_eq(r[i].ack.first_offset, at, "stored after the failure: at the end");
            cr_expect_eq(r[i].ack.duplicate, 0);
            at += 1;
        } else {
            /* in the failed group, or queued behind it */
            cr_expect_eq(r[i].rc, -ENOSPC);
            cr_expect(strstr(r[i].text, "No space left on device") != NULL, "%s", r[i].text);
        }
    }
    cr_expect_eq(reallog_end(&lg), at);

    /* space again: every batch goes in exactly once, offsets dense */
    unlink(filler);
    for (int i = 0; i < 3; i++) {
        reallog_ack a;
        cr_assert_eq(reallog_append(&lg, &a, queued[i]), 0, "retry %d: %s", i, err_msg());
        if (r[i].rc == 0) {
            cr_expect(a.duplicate && a.first_offset == r[i].ack.first_offset);
        } else {
            cr_expect_eq(a.duplicate, 0, "a failed batch was not stored: stored now");
            cr_expect_eq(a.first_offset, at);
            at += a.count;
        }
        for (uint32_t k = 0; k < a.count; k++) {
            int src = i == 0 ? 1 : i == 1 ? 3 : 2;
            want[a.first_offset + k] = (expect_row){src, queued[i]->seq, k};
        }
    }
    st = status_of(&lg);
    cr_expect_eq(st.writable, 1);
    cr_expect_eq(st.end_offset, end + BIG + 2);
    cr_expect_eq(st.sources, 3);
    h = health_now(&hs);
    cr_expect_eq(h.writable, 1);
    cr_expect_eq(h.changes, 2, "writable again: reported once");
    expect_rows(&lg, want, 0, st.end_offset, 4096);
    reallog_close(&lg);
    /* the failed writes left nothing behind: the log reopens exact */
    open_ok(&lg, &o);
    cr_expect_eq(reallog_end(&lg), end + BIG + 2);
    expect_rows(&lg, want, 0, end + BIG + 2, 4096);
    reallog_close(&lg);
    fx_batch_free(&big);
    fx_batch_free(&small_b);
    fx_batch_free(&other);
}

Test(reallog, a_source_evicted_by_a_failed_batch_and_back_as_a_new_identity_replays,
     .init = small_fs_setup, .fini = small_fs_teardown)
{
    char logdir[PROCFIX_DIR_LEN + 32], filler[PROCFIX_DIR_LEN + 32];
    snprintf(logdir, sizeof logdir, "%s/log", small);
    snprintf(filler, sizeof filler, "%s/filler", small);
    reallog_t lg;
    reallog_opts o = reallog_opts_default(logdir);
    o.max_sources = 2;
    o.quiet_steps = 1;
    open_ok(&lg, &o);
    reallog_ack ack;
    cr_assert_eq(append_epoch(&lg, &ack, 1, 1, 1, 0), 0);   /* actor-1 at 0 */
    cr_assert_eq(append_epoch(&lg, &ack, 2, 1, 1, 0), 0);   /* actor-2 at 1 */
    /* actor-3 evicts actor-1 (quiet 1), but the disk is full: its batch (more than a page)
     * fails */
    fx_fill_fs(filler, 0);
    cr_expect_eq(append_epoch(&lg, &ack, 3, 1, 200, 0), -ENOSPC);
    reallog_status st = status_of(&lg);
    cr_expect_eq(st.evictions, 1);
    cr_expect_eq(st.fence, 1);
    cr_expect_eq(st.sources, 1, "actor-3's admission is undone, actor-1 stays forgotten");
    /* actor-1's old identity is fenced; it starts a new one */
    cr_expect_eq(append_epoch(&lg, &ack, 1, 2, 1, 0), TWIG_EFENCED);
    unlink(filler);
    cr_assert_eq(append_epoch(&lg, &ack, 1, 1, 1, st.epoch), 0, "%s", err_msg());
    cr_expect_eq(ack.first_offset, 2);
    cr_expect_eq(ack.duplicate, 0);
    reallog_close(&lg);

    /* the log holds actor-1 seq 1 twice (two identities); the eviction between them left no
     * record. Open reads the second as evicted-and-readmitted, not as corruption */
    open_ok(&lg, &o);
    st = status_of(&lg);
    cr_expect_eq(st.end_offset, 3);
    cr_expect_eq(st.sources, 2);
    cr_expect_eq(st.fence, 1);
    uint64_t seq, tr;
    reallog_source_status(&lg, "actor-1", &seq, &tr);
    cr_expect_eq(seq, 1);
    cr_expect_eq(tr, 1, "the new identity's count");
    cr_assert_eq(append_epoch(&lg, &ack, 1, 1, 1, 0), 0);
    cr_expect(ack.duplicate && ack.first_offset == 2, "the new identity's seq 1 is at 2");
    cr_expect_eq(append_epoch(&lg, &ack, 1, 2, 1, 0), 0, "the new identity goes on");
    cr_expect_eq(ack.first_offset, 3);
    reallog_close(&lg);
}
