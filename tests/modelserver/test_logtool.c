/* tests of twig-modelserver log check|repair (modelserver/logtool.c over reallog_inspect_*):
 * a real log written through reallog_append (300 batches of 4 transitions in 4 KiB segments:
 * 20 records of 200 bytes a segment, 15 segments), damaged in each way open refuses, checked
 * and repaired by the binary; after a repair the log opens with exactly the records before
 * the damage and a model server starts on it. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/base/err.h"
#include "common/rpc/rpc.h"
#include "modelserver/reallog.h"
#include "fixture.h"
#include "tests/procfix.h"

#define MS_BIN TWIG_BIN_DIR "/modelserver/twig-modelserver"
#define ENV "Pendulum-v1"
#define O 3
#define A 1
#define N_BATCHES 300
#define COUNT 4
#define REC_BYTES 200 /* 56 header + 8 "actor-1" + 4 * 8 floats * 4 + 2 * 4 flags */
#define PER_SEG 20    /* records in a 4096-byte segment */
#define SEG_TRANS (PER_SEG * COUNT)
#define N_SEGS (N_BATCHES / PER_SEG)
#define END (N_BATCHES * COUNT)

static char tmp[PROCFIX_DIR_LEN];
static char dir[256];    /* the data dir */
static char backup[256]; /* where repair copies it */

static void setup(void)
{
    procfix_tmpdir(tmp, sizeof tmp);
    snprintf(dir, sizeof dir, "%s/data", tmp);
    snprintf(backup, sizeof backup, "%s/backup/data", tmp);
    rpc_lib_init(); /* the health checks of the model server on a repaired log */
}

static void teardown(void)
{
    procfix_reap_all();
    rpc_lib_shutdown(2000);
    procfix_tmpdir_done(tmp);
}

TestSuite(logtool, .init = setup, .fini = teardown, .timeout = 120);

/* ---- the log ---- */

static reallog_opts log_opts(void)
{
    reallog_opts o = reallog_opts_default(dir);
    o.env_id = ENV;
    o.obs_dim = O;
    o.act_dim = A;
    o.segment_bytes = 4096;
    return o;
}

/* batch j (0-based) is seq j + 1 of actor-1, at offsets [4j, 4j + 4) */
static void write_log(void)
{
    reallog_t lg;
    reallog_opts o = log_opts();
    int rc = reallog_open(&lg, &o);
    cr_assert_eq(rc, 0, "open: %s", err_msg());
    for (int j = 0; j < N_BATCHES; j++) {
        fx_batch b;
        fx_batch_make(&b, ENV, 1, (uint64_t)j + 1, COUNT, O, A);
        reallog_ack ack;
        rc = reallog_append(&lg, &ack, &b.v);
        cr_assert_eq(rc, 0, "append %d: %s", j, err_msg());
        cr_assert_eq(ack.first_offset, (uint64_t)j * COUNT);
        fx_batch_free(&b);
    }
    reallog_close(&lg);
}

static void seg_path(char *out, size_t n, int seg)
{
    snprintf(out, n, "%s/%020d.seg", dir, seg * SEG_TRANS);
}

static off_t file_size(const char *p)
{
    struct stat st;
    cr_assert_eq(stat(p, &st), 0, "stat %s", p);
    return st.st_size;
}

static void flip_byte(int seg, off_t at)
{
    char p[320];
    seg_path(p, sizeof p, seg);
    int fd = open(p, O_RDWR);
    cr_assert_geq(fd, 0);
    unsigned char c;
    cr_assert_eq(pread(fd, &c, 1, at), 1);
    c ^= 0x5a;
    cr_assert_eq(pwrite(fd, &c, 1, at), 1);
    close(fd);
}

/* the log holds exactly batches [0, end / COUNT), bit for bit, and ends there */
static void expect_log_holds(uint64_t end)
{
    reallog_t lg;
    reallog_opts o = log_opts();
    int rc = reallog_open(&lg, &o);
    cr_assert_eq(rc, 0, "open after repair: %s %s", err_name(rc), err_msg());
    cr_expect_eq(reallog_end(&lg), end, "end %llu, want %llu",
                 (unsigned long long)reallog_end(&lg), (unsigned long long)end);
    reallog_rows_t rows;
    reallog_rows_init(&rows, 256, O, A);
    for (uint64_t at = 0; at < end;) {
        rc = reallog_fetch(&lg, &rows, at, 256);
        cr_assert_eq(rc, 0, "fetch %llu: %s", (unsigned long long)at, err_msg());
        cr_assert_gt(rows.count, 0);
        for (uint32_t r = 0; r < rows.count; r++) {
            uint64_t off = at + r;
            cr_assert(fx_row_matches(rows.obs + r * O, rows.act + r * A, rows.reward + r,
                                     rows.next_obs + r * O, rows.terminated + r,
                                     rows.truncated + r, O, A, 1, off / COUNT + 1,
                                     (uint32_t)(off % COUNT)),
                      "row at offset %llu differs", (unsigned long long)off);
        }
        at += rows.count;
    }
    reallog_rows_free(&rows);
    reallog_close(&lg);
}

/* ---- the tool ---- */

/* run twig-modelserver with args (NULL-terminated); exit status, stdout + stderr in out */
static int run_ms(char *out, size_t n, const char *const *args)
{
    char path[320];
    snprintf(path, sizeof path, "%s/out", tmp);
    int rc = procfix_exit_code(procfix_spawn_bin(MS_BIN, args, path), 20000);
    procfix_read_text(out, n, path);
    return rc;
}

static int check(char *out, size_t n)
{
    const char *args[] = {"log", "check", dir, "--json", NULL};
    return run_ms(out, n, args);
}

static int repair(char *out, size_t n)
{
    const char *args[] = {"log", "repair", dir, "--backup", backup, "--json", NULL};
    return run_ms(out, n, args);
}

/* the value of "key": in the output's JSON line, as an integer (-1 when absent) */
static long long json_int(const char *out, const char *key)
{
    char k[64];
    snprintf(k, sizeof k, "\"%s\":", key);
    const char *p = strstr(out, k);
    return p ? strtoll(p + strlen(k), NULL, 10) : -1;
}

static void expect_has(const char *out, const char *want)
{
    cr_expect_not_null(strstr(out, want), "want '%s' in:\n%s", want, out);
}

/* ---- a copy of a dir in memory: what the backup must equal ---- */

#define SNAP_MAX 64
typedef struct snap {
    int n;
    char name[SNAP_MAX][32];
    uint8_t *data[SNAP_MAX];
    size_t len[SNAP_MAX];
} snap_t;

static void snap_take(snap_t *s, const char *d)
{
    memset(s, 0, sizeof *s);
    DIR *dd = opendir(d);
    cr_assert_not_null(dd, "opendir %s", d);
    struct dirent *e;
    while ((e = readdir(dd))) {
        if (e->d_name[0] == '.') {
            continue;
        }
        cr_assert_lt(s->n, SNAP_MAX);
        char p[320];
        snprintf(p, sizeof p, "%s/%s", d, e->d_name);
        FILE *f = fopen(p, "rb");
        cr_assert_not_null(f, "%s", p);
        off_t len = file_size(p);
        snprintf(s->name[s->n], 32, "%.31s", e->d_name);
        s->data[s->n] = xmalloc((size_t)len + 1);
        s->len[s->n] = fread(s->data[s->n], 1, (size_t)len, f);
        cr_assert_eq(s->len[s->n], (size_t)len);
        fclose(f);
        s->n++;
    }
    closedir(dd);
}

static void snap_free(snap_t *s)
{
    for (int i = 0; i < s->n; i++) {
        free(s->data[i]);
    }
}

/* the same file names with the same bytes */
static void expect_snap_equal(const snap_t *a, const snap_t *b, const char *what)
{
    cr_expect_eq(a->n, b->n, "%s: %d files, want %d", what, b->n, a->n);
    for (int i = 0; i < a->n; i++) {
        int found = 0;
        for (int j = 0; j < b->n; j++) {
            if (strcmp(a->name[i], b->name[j]) == 0) {
                found = 1;
                cr_expect(a->len[i] == b->len[j] && !memcmp(a->data[i], b->data[j], a->len[i]),
                          "%s: %s differs", what, a->name[i]);
            }
        }
        cr_expect(found, "%s: %s is missing", what, a->name[i]);
    }
}

/* a model server starts on the repaired dir and answers health */
static void expect_server_starts(void)
{
    procfix_t ms = {0};
    snprintf(ms.port_file, sizeof ms.port_file, "%s/port", tmp);
    snprintf(ms.log_file, sizeof ms.log_file, "%s/ms.log", tmp);
    unlink(ms.port_file);
    const char *argv[] = {MS_BIN, "--listen", "127.0.0.1:0", "--data-dir", dir, "--env", ENV,
                          "--port-file", ms.port_file, "--grace-ms", "100",
                          FX_SMALL_MODEL_ARGS, NULL};
    ms.pid = procfix_spawn(argv, ms.log_file);
    procfix_wait_serving(&ms, 30000);
    procfix_stop(&ms);
}

/* repair the damaged dir: the backup equals it, the log then holds batches [0, end / COUNT)
 * and verifies, and a model server starts on it */
static void expect_repair(uint64_t end, long long dropped)
{
    snap_t before, saved;
    snap_take(&before, dir);
    char out[8192];
    int rc = repair(out, sizeof out);
    cr_assert_eq(rc, 0, "repair exit %d:\n%s", rc, out);
    cr_expect_eq(json_int(out, "dropped_transitions"), dropped, "%s", out);
    expect_has(out, "\"status\":\"repaired\"");
    snap_take(&saved, backup);
    expect_snap_equal(&before, &saved, "backup");
    snap_free(&before);
    snap_free(&saved);
    rc = check(out, sizeof out);
    cr_expect_eq(rc, 0, "check after repair: exit %d:\n%s", rc, out);
    cr_expect_eq(json_int(out, "transitions"), (long long)end, "%s", out);
    cr_expect_eq(json_int(out, "records"), (long long)(end / COUNT), "%s", out);
    expect_log_holds(end);
    expect_server_starts();
}

/* ---- tests ---- */

Test(logtool, clean_log_checks_clean_and_repair_changes_nothing)
{
    write_log();
    char out[8192];
    int rc = check(out, sizeof out);
    cr_assert_eq(rc, 0, "exit %d:\n%s", rc, out);
    expect_has(out, "\"status\":\"clean\"");
    expect_has(out, "env Pendulum-v1, obs_dim 3, act_dim 1");
    cr_expect_eq(json_int(out, "segments"), N_SEGS);
    cr_expect_eq(json_int(out, "records"), N_BATCHES);
    cr_expect_eq(json_int(out, "transitions"), END);
    cr_expect_eq(json_int(out, "end_offset"), END);
    cr_expect_eq(json_int(out, "bytes"), (long long)N_BATCHES * REC_BYTES);
    expect_has(out, "\"segment\":\"00000000000000001120.seg\",\"bytes\":4000");
    expect_has(out, "\"damage\":null");

    snap_t before, after;
    snap_take(&before, dir);
    rc = repair(out, sizeof out);
    cr_expect_eq(rc, 0, "exit %d:\n%s", rc, out);
    expect_has(out, "nothing to repair");
    snap_take(&after, dir);
    expect_snap_equal(&before, &after, "the clean dir after repair");
    struct stat st;
    cr_expect_neq(stat(backup, &st), 0, "no backup is made of a clean log");
    snap_free(&before);
    snap_free(&after);
}

Test(logtool, flipped_byte_in_a_middle_segment_is_cut_at_its_record)
{
    write_log();
    /* segment 5 (offsets 400..479), record 7: offset 428, byte 1400; flip a float in it */
    flip_byte(5, 7 * REC_BYTES + 100);
    char out[8192];
    int rc = check(out, sizeof out);
    cr_assert_eq(rc, 1, "exit %d:\n%s", rc, out);
    expect_has(out, "\"kind\":\"crc\",\"file\":\"00000000000000000400.seg\",\"byte\":1400");
    cr_expect_eq(json_int(out, "first_offset"), 428, "%s", out);
    expect_has(out, "\"acknowledged\":true");
    cr_expect_eq(json_int(out, "dropped_transitions"), END - 428, "%s", out);
    /* the damaged record's 4 transitions are unreadable, the 192 records after it verify */
    cr_expect_eq(json_int(out, "dropped_records"), N_BATCHES - 108, "%s", out);
    cr_expect_eq(json_int(out, "dropped_unreadable"), COUNT, "%s", out);
    cr_expect_eq(json_int(out, "removed_segments"), N_SEGS - 6, "%s", out);
    expect_has(out, "\"cut_file\":\"00000000000000000400.seg\",\"cut_bytes\":1400");
    cr_expect_eq(json_int(out, "records"), 107, "verified before the damage: %s", out);
    expect_has(out, "CRC mismatch");
    expect_repair(428, END - 428);
}

Test(logtool, truncated_middle_segment_is_cut_at_its_last_whole_record)
{
    write_log();
    char p[320];
    seg_path(p, sizeof p, 5);
    cr_assert_eq(truncate(p, 7 * REC_BYTES + 50), 0);
    char out[8192];
    int rc = check(out, sizeof out);
    cr_assert_eq(rc, 1, "exit %d:\n%s", rc, out);
    expect_has(out,
               "\"kind\":\"record_short\",\"file\":\"00000000000000000400.seg\",\"byte\":1400");
    cr_expect_eq(json_int(out, "first_offset"), 428, "%s", out);
    cr_expect_eq(json_int(out, "dropped_transitions"), END - 428, "%s", out);
    /* records 7..19 of segment 5 are gone (13 * 4), segments 6..14 verify (180 records) */
    cr_expect_eq(json_int(out, "dropped_records"), (N_SEGS - 6) * PER_SEG, "%s", out);
    cr_expect_eq(json_int(out, "dropped_unreadable"), 13 * COUNT, "%s", out);
    expect_repair(428, END - 428);
}

Test(logtool, deleted_middle_segment_cuts_the_log_where_it_was)
{
    write_log();
    char p[320];
    seg_path(p, sizeof p, 5);
    cr_assert_eq(unlink(p), 0);
    char out[8192];
    int rc = check(out, sizeof out);
    cr_assert_eq(rc, 1, "exit %d:\n%s", rc, out);
    expect_has(out, "\"kind\":\"segment_gap\",\"file\":\"00000000000000000480.seg\",\"byte\":0");
    cr_expect_eq(json_int(out, "first_offset"), 400, "%s", out);
    cr_expect_eq(json_int(out, "dropped_transitions"), END - 400, "%s", out);
    cr_expect_eq(json_int(out, "dropped_records"), (N_SEGS - 6) * PER_SEG, "%s", out);
    cr_expect_eq(json_int(out, "dropped_unreadable"), SEG_TRANS, "%s", out);
    cr_expect_eq(json_int(out, "removed_segments"), N_SEGS - 6, "%s", out);
    expect_has(out, "\"cut_file\":\"00000000000000000320.seg\",\"cut_bytes\":4000");
    expect_repair(400, END - 400);
}

Test(logtool, flipped_byte_before_the_recovery_point_in_the_last_segment)
{
    write_log();
    /* the last segment (offsets 1120..1199), record 10: offset 1160, byte 2000; its magic */
    flip_byte(N_SEGS - 1, 10 * REC_BYTES + 1);
    char out[8192];
    int rc = check(out, sizeof out);
    cr_assert_eq(rc, 1, "exit %d:\n%s", rc, out);
    expect_has(out, "\"kind\":\"bad_magic\",\"file\":\"00000000000000001120.seg\",\"byte\":2000");
    cr_expect_eq(json_int(out, "first_offset"), 1160, "%s", out);
    cr_expect_eq(json_int(out, "dropped_transitions"), END - 1160, "%s", out);
    cr_expect_eq(json_int(out, "dropped_records"), 9, "%s", out);
    cr_expect_eq(json_int(out, "dropped_unreadable"), COUNT, "%s", out);
    cr_expect_eq(json_int(out, "removed_segments"), 0, "%s", out);
    expect_has(out, "lies before the recovery point");
    expect_repair(1160, END - 1160);
}

Test(logtool, torn_tail_past_the_recovery_point_is_clean)
{
    write_log();
    /* the first 150 bytes of a record past the durable end: a write a crash cut short */
    char p[320], first[320];
    seg_path(p, sizeof p, N_SEGS - 1);
    seg_path(first, sizeof first, 0);
    int in = open(first, O_RDONLY), fd = open(p, O_WRONLY | O_APPEND);
    cr_assert(in >= 0 && fd >= 0);
    uint8_t rec[150];
    cr_assert_eq(pread(in, rec, sizeof rec, 0), (ssize_t)sizeof rec);
    cr_assert_eq(write(fd, rec, sizeof rec), (ssize_t)sizeof rec);
    close(in);
    close(fd);
    char out[8192];
    int rc = check(out, sizeof out);
    cr_assert_eq(rc, 0, "exit %d:\n%s", rc, out);
    expect_has(out, "clean, 150 unacknowledged bytes would be truncated at open");
    cr_expect_eq(json_int(out, "torn_bytes"), 150, "%s", out);
    cr_expect_eq(json_int(out, "transitions"), END, "%s", out);
    snap_t before, after;
    snap_take(&before, dir);
    rc = repair(out, sizeof out);
    cr_expect_eq(rc, 0, "exit %d:\n%s", rc, out);
    expect_has(out, "nothing to repair");
    snap_take(&after, dir);
    expect_snap_equal(&before, &after, "repair of a torn tail alone");
    snap_free(&before);
    snap_free(&after);
    cr_expect_eq(file_size(p), 4000 + 150, "check and repair leave the tail to open");
    expect_log_holds(END);
}

Test(logtool, locked_dir_is_refused_naming_it)
{
    write_log();
    reallog_t lg;
    reallog_opts o = log_opts();
    cr_assert_eq(reallog_open(&lg, &o), 0, "%s", err_msg());
    char out[8192];
    int rc = check(out, sizeof out);
    cr_expect_eq(rc, 2, "exit %d:\n%s", rc, out);
    expect_has(out, "in use");
    expect_has(out, dir);
    flip_byte(3, 10);
    rc = repair(out, sizeof out);
    cr_expect_eq(rc, 2, "exit %d:\n%s", rc, out);
    expect_has(out, "in use");
    struct stat st;
    cr_expect_neq(stat(backup, &st), 0, "no backup while locked");
    reallog_close(&lg);
}

Test(logtool, bad_arguments_exit_2_naming_the_problem)
{
    write_log();
    flip_byte(3, 10);
    char notlog[320], existing[320];
    snprintf(notlog, sizeof notlog, "%s/empty", tmp);
    cr_assert_eq(mkdir(notlog, 0755), 0);
    snprintf(existing, sizeof existing, "%s/exists", tmp);
    cr_assert_eq(mkdir(existing, 0755), 0);
    char inside[320];
    snprintf(inside, sizeof inside, "%s/sub/backup", dir);
    struct {
        const char *args[8];
        const char *want;
    } cases[] = {
        {{"log", NULL}, "a command is required"},
        {{"log", "frob", dir, NULL}, "unknown command 'frob'"},
        {{"log", "check", NULL}, "the data dir (DIR) is required"},
        {{"log", "check", dir, "extra", NULL}, "'extra' is extra"},
        {{"log", "check", dir, "--bogus", NULL}, "unknown flag '--bogus'"},
        {{"log", "check", dir, "--backup", backup, NULL}, "--backup is for repair only"},
        {{"log", "repair", dir, NULL}, "repair needs --backup BACKUP_DIR"},
        {{"log", "repair", dir, "--backup", NULL}, "--backup needs a directory"},
        {{"log", "repair", dir, "--backup", existing, NULL}, "exists already"},
        {{"log", "repair", dir, "--backup", inside, NULL}, "is inside the data dir"},
        {{"log", "check", "/nonexistent/twig-log", NULL}, "/nonexistent/twig-log"},
        {{"log", "check", notlog, NULL}, "is not a real-transition log"},
    };
    snap_t before, after;
    snap_take(&before, dir);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[8192];
        int rc = run_ms(out, sizeof out, cases[i].args);
        cr_expect_eq(rc, 2, "case %zu: exit %d:\n%s", i, rc, out);
        expect_has(out, cases[i].want);
    }
    snap_take(&after, dir);
    expect_snap_equal(&before, &after, "the damaged dir after refused commands");
    snap_free(&before);
    snap_free(&after);
    char out[8192];
    const char *help[] = {"log", "--help", NULL};
    cr_expect_eq(run_ms(out, sizeof out, help), 0);
    expect_has(out, "twig-modelserver log repair DIR --backup BACKUP_DIR");
}

Test(logtool, deleted_last_segment_is_the_recovery_points_segment_missing)
{
    write_log();
    char p[320];
    seg_path(p, sizeof p, N_SEGS - 1);
    cr_assert_eq(unlink(p), 0);
    char out[8192];
    int rc = check(out, sizeof out);
    cr_assert_eq(rc, 1, "exit %d:\n%s", rc, out);
    expect_has(out, "\"kind\":\"segment_missing\",\"file\":\"00000000000000001120.seg\"");
    cr_expect_eq(json_int(out, "first_offset"), END - SEG_TRANS, "%s", out);
    cr_expect_eq(json_int(out, "dropped_transitions"), SEG_TRANS, "%s", out);
    cr_expect_eq(json_int(out, "dropped_records"), 0, "%s", out);
    cr_expect_eq(json_int(out, "dropped_unreadable"), SEG_TRANS, "%s", out);
    cr_expect_eq(json_int(out, "removed_segments"), 0, "%s", out);
    expect_has(out, "\"cut_file\":\"00000000000000001040.seg\",\"cut_bytes\":4000");
    expect_repair(END - SEG_TRANS, SEG_TRANS);
}

Test(logtool, last_segment_cut_short_of_the_recovery_point)
{
    write_log();
    char p[320];
    seg_path(p, sizeof p, N_SEGS - 1);
    cr_assert_eq(truncate(p, 10 * REC_BYTES), 0);   /* at a record boundary: offset 1160 */
    char out[8192];
    int rc = check(out, sizeof out);
    cr_assert_eq(rc, 1, "exit %d:\n%s", rc, out);
    expect_has(out,
               "\"kind\":\"segment_short\",\"file\":\"00000000000000001120.seg\",\"byte\":2000");
    cr_expect_eq(json_int(out, "first_offset"), 1160, "%s", out);
    cr_expect_eq(json_int(out, "dropped_transitions"), END - 1160, "%s", out);
    cr_expect_eq(json_int(out, "dropped_records"), 0, "%s", out);
    cr_expect_eq(json_int(out, "dropped_unreadable"), END - 1160, "%s", out);
    expect_has(out, "the file was cut short");
    expect_repair(1160, END - 1160);
}
