/* tests for common/base/ckpt.c: checkpoint directories written, listed and pruned */
#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/base/err.h"
#include "common/base/ckpt.h"

static void make_tmpdir(char *out, size_t n)
{
    snprintf(out, n, "/tmp/twig-ckpt-test-XXXXXX");
    cr_assert_not_null(mkdtemp(out));
}

Test(ckpt, commit_list_prune_and_leftover_temp_dirs)
{
    char root[128], dir[256], tmp[CKPT_PATH_MAX], p[CKPT_PATH_MAX];
    make_tmpdir(root, sizeof root);
    snprintf(dir, sizeof dir, "%s/a/b", root);
    cr_assert_eq(ckpt_dir_prepare(dir), 0, "%s", err_msg());
    uint64_t ids_in[] = {300, 100, 200, 400};
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(ckpt_begin(tmp, sizeof tmp, dir, ids_in[i]), 0);
        char text[32];
        int len = snprintf(text, sizeof text, "id %llu", (unsigned long long)ids_in[i]);
        cr_assert_eq(ckpt_write_file(tmp, "x.bin", text, (size_t)len), 0);
        cr_assert_eq(ckpt_commit(dir, ids_in[i]), 0, "%s", err_msg());
    }
    /* an interrupted checkpoint: a temp directory that never got renamed */
    cr_assert_eq(ckpt_begin(tmp, sizeof tmp, dir, 500), 0);
    uint64_t *ids;
    size_t n;
    cr_assert_eq(ckpt_list(dir, &ids, &n), 0);
    cr_assert_eq(n, 4, "the temp directory is not a checkpoint");
    cr_expect_eq(ids[0], 100);
    cr_expect_eq(ids[3], 400);
    free(ids);
    cr_expect_eq(ckpt_prune(dir, 2), 2);
    cr_assert_eq(ckpt_list(dir, &ids, &n), 0);
    cr_assert_eq(n, 2);
    cr_expect_eq(ids[0], 300);
    cr_expect_eq(ids[1], 400);
    free(ids);
    cr_assert_eq(ckpt_path(p, sizeof p, dir, 400, "x.bin"), 0);
    uint8_t *data;
    size_t len;
    cr_assert_eq(ckpt_read_file(p, &data, &len), 0);
    cr_expect_eq(len, 6);
    cr_expect_eq(memcmp(data, "id 400", 6), 0);
    free(data);
    /* prepare removes the leftover temp directory */
    struct stat st;
    cr_expect_eq(stat(tmp, &st), 0);
    cr_assert_eq(ckpt_dir_prepare(dir), 0);
    cr_expect_neq(stat(tmp, &st), 0);
    /* re-committing an existing id replaces it */
    cr_assert_eq(ckpt_begin(tmp, sizeof tmp, dir, 400), 0);
    cr_assert_eq(ckpt_write_file(tmp, "x.bin", "new", 3), 0);
    cr_assert_eq(ckpt_commit(dir, 400), 0, "%s", err_msg());
    cr_assert_eq(ckpt_read_file(p, &data, &len), 0);
    cr_expect_eq(len, 3);
    free(data);
    cr_expect_eq(ckpt_remove(dir, 300), 0);
    cr_expect_eq(ckpt_remove(dir, 400), 0);
    cr_expect_eq(rmdir(dir), 0);
    char ab[300];
    snprintf(ab, sizeof ab, "%s/a", root);
    rmdir(ab);
    rmdir(root);
}
