/* tests for common/base/atomic_file.c: atomic replacement, what a failed write leaves behind, and
 * the capped whole-file read */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/base/atomic_file.h"
#include "common/base/err.h"
#include "common/base/mem.h"

static char dir[128];

static void make_dir(void)
{
    snprintf(dir, sizeof dir, "/tmp/twig-atomic-file-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void remove_dir(void)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_expect_eq(system(cmd), 0);
}

TestSuite(atomic_file, .init = make_dir, .fini = remove_dir);

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* path holds exactly want(n) */
static void expect_content(const char *path, const void *want, size_t n)
{
    uint8_t *got;
    size_t len;
    cr_assert_eq(atomic_file_read(&got, &len, path, 1 << 20), 0, "%s", err_msg());
    cr_expect_eq(len, n);
    cr_expect_eq(memcmp(got, want, n < len ? n : len), 0);
    free(got);
}

Test(atomic_file, round_trip_replace_and_empty)
{
    char path[256], tmp[300];
    snprintf(path, sizeof path, "%s/data.bin", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    size_t n = 100000;
    uint8_t *buf = xmalloc(n);
    for (size_t i = 0; i < n; i++) {
        buf[i] = (uint8_t)(i * 31 + (i >> 8));
    }
    cr_assert_eq(atomic_file_write(path, buf, n), 0, "%s", err_msg());
    expect_content(path, buf, n);
    cr_expect(!exists(tmp), "the temporary file is gone after the rename");

    /* a shorter file replaces the longer one whole */
    cr_assert_eq(atomic_file_write(path, "short", 5), 0, "%s", err_msg());
    expect_content(path, "short", 5);

    /* an empty file reads back as a non-NULL buffer of 0 bytes */
    cr_assert_eq(atomic_file_write(path, "", 0), 0, "%s", err_msg());
    uint8_t *got;
    size_t len = 99;
    cr_assert_eq(atomic_file_read(&got, &len, path, 10), 0, "%s", err_msg());
    cr_expect_eq(len, 0);
    cr_expect_not_null(got);
    free(got);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_expect_eq(st.st_mode & 0777 & ~0644, 0, "mode %o is at most 0644", st.st_mode & 0777);
    free(buf);
}

Test(atomic_file, a_write_that_fails_midway_leaves_the_old_file)
{
    char path[256], tmp[300];
    snprintf(path, sizeof path, "%s/state.bin", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    cr_assert_eq(atomic_file_write(path, "old contents", 12), 0, "%s", err_msg());

    /* files may grow to 4 KiB in this (forked) test process: a 64 KiB write fails midway */
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = {.rlim_cur = 4096, .rlim_max = RLIM_INFINITY};
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    size_t n = 65536;
    uint8_t *buf = xcalloc(n, 1);
    int rc = atomic_file_write(path, buf, n);
    cr_expect_eq(rc, -EFBIG, "%s: %s", err_name(rc), err_msg());
    cr_expect_neq(strstr(err_msg(), tmp), NULL, "the error names the file: %s", err_msg());
    expect_content(path, "old contents", 12);
    cr_expect(!exists(tmp), "the partial temporary file is removed");
    free(buf);
}

Test(atomic_file, a_blocked_temporary_path_leaves_the_old_file)
{
    char path[256], tmp[300];
    snprintf(path, sizeof path, "%s/model.blob", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    cr_assert_eq(atomic_file_write(path, "v1", 2), 0, "%s", err_msg());
    cr_assert_eq(mkdir(tmp, 0755), 0);
    int rc = atomic_file_write(path, "v2", 2);
    cr_expect_eq(rc, -EISDIR, "%s: %s", err_name(rc), err_msg());
    cr_expect_neq(strstr(err_msg(), tmp), NULL, "%s", err_msg());
    expect_content(path, "v1", 2);
    cr_expect_eq(rmdir(tmp), 0, "the directory in the way is left alone");
}

Test(atomic_file, a_missing_directory_is_a_clear_error)
{
    char path[256];
    snprintf(path, sizeof path, "%s/no/such/dir/f.bin", dir);
    int rc = atomic_file_write(path, "x", 1);
    cr_expect_eq(rc, -ENOENT, "%s: %s", err_name(rc), err_msg());
    cr_expect_neq(strstr(err_msg(), path), NULL, "%s", err_msg());
    cr_expect_neq(strstr(err_msg(), "No such file"), NULL, "%s", err_msg());

    uint8_t *data = (uint8_t *)1;
    size_t n = 7;
    rc = atomic_file_read(&data, &n, path, 100);
    cr_expect_eq(rc, -ENOENT, "%s: %s", err_name(rc), err_msg());
    cr_expect_neq(strstr(err_msg(), path), NULL, "%s", err_msg());
    cr_expect_null(data);
    cr_expect_eq(n, 0);
}

Test(atomic_file, the_size_cap_refuses_a_larger_file)
{
    char path[256];
    snprintf(path, sizeof path, "%s/big.bin", dir);
    uint8_t buf[1000];
    memset(buf, 7, sizeof buf);
    cr_assert_eq(atomic_file_write(path, buf, sizeof buf), 0, "%s", err_msg());
    uint8_t *data = (uint8_t *)1;
    size_t n = 7;
    int rc = atomic_file_read(&data, &n, path, 999);
    cr_expect_eq(rc, TWIG_ETOOBIG, "%s: %s", err_name(rc), err_msg());
    cr_expect_neq(strstr(err_msg(), path), NULL, "%s", err_msg());
    cr_expect_neq(strstr(err_msg(), "1000 bytes"), NULL, "%s", err_msg());
    cr_expect_null(data);
    cr_expect_eq(n, 0);
    /* exactly at the cap is fine */
    cr_assert_eq(atomic_file_read(&data, &n, path, 1000), 0, "%s", err_msg());
    cr_expect_eq(n, 1000);
    cr_expect_eq(data[999], 7);
    free(data);
}

Test(atomic_file, reading_a_directory_is_refused)
{
    uint8_t *data;
    size_t n;
    int rc = atomic_file_read(&data, &n, dir, 1 << 20);
    cr_expect_eq(rc, -EINVAL, "%s: %s", err_name(rc), err_msg());
    cr_expect_neq(strstr(err_msg(), "not a regular file"), NULL, "%s", err_msg());
    cr_expect_null(data);
}
