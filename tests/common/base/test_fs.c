/* fs_mkdir_p: the one mkdir -p (data dirs, checkpoint dirs, run dirs) */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/base/err.h"
#include "common/base/fs.h"

static char root[64];

static void setup(void)
{
    snprintf(root, sizeof root, "/tmp/twig-test-fs-XXXXXX");
    cr_assert_not_null(mkdtemp(root));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    cr_expect_eq(system(cmd), 0);
}

TestSuite(fs, .init = setup, .fini = teardown, .timeout = 30);

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

Test(fs, makes_every_missing_parent_and_accepts_an_existing_dir)
{
    char p[256];
    snprintf(p, sizeof p, "%s/a/b//c/", root);
    cr_assert_eq(fs_mkdir_p(p), 0, "%s", err_msg());
    snprintf(p, sizeof p, "%s/a/b/c", root);
    cr_expect(is_dir(p));
    cr_expect_eq(fs_mkdir_p(p), 0, "again: %s", err_msg());
    cr_expect_eq(fs_mkdir_p(root), 0);
}

Test(fs, a_file_in_the_way_is_not_a_directory_naming_it)
{
    char file[256], p[300];
    snprintf(file, sizeof file, "%s/f", root);
    int fd = open(file, O_CREAT | O_WRONLY, 0644);
    cr_assert_geq(fd, 0);
    close(fd);
    cr_expect_eq(fs_mkdir_p(file), -ENOTDIR);
    cr_expect(strstr(err_msg(), file) != NULL, "%s", err_msg());
    snprintf(p, sizeof p, "%s/under", file);
    cr_expect_eq(fs_mkdir_p(p), -ENOTDIR, "%s", err_msg());
}

Test(fs, too_long_empty_and_unwritable_paths_are_refused)
{
    char *big = malloc(FS_PATH_MAX + 16);
    memset(big, 'x', FS_PATH_MAX + 15);
    big[0] = '/';
    big[FS_PATH_MAX + 15] = '\0';
    cr_expect_eq(fs_mkdir_p(big), -ENAMETOOLONG);
    free(big);
    cr_expect_eq(fs_mkdir_p(""), -ENOENT);
    if (geteuid() != 0) {   /* root may write anywhere */
        char p[256];
        snprintf(p, sizeof p, "%s/ro", root);
        cr_assert_eq(mkdir(p, 0555), 0);
        snprintf(p, sizeof p, "%s/ro/x", root);
        cr_expect_eq(fs_mkdir_p(p), -EACCES);
    }
}

Test(fs, remove_tree_takes_nested_dirs_files_and_links_but_not_what_links_point_to)
{
    char p[300], outside[300], target[300];
    snprintf(p, sizeof p, "%s/t/a/b", root);
    cr_assert_eq(fs_mkdir_p(p), 0, "%s", err_msg());
    snprintf(p, sizeof p, "%s/t/a/b/f", root);
    int fd = open(p, O_CREAT | O_WRONLY, 0644);
    cr_assert_geq(fd, 0);
    close(fd);
    snprintf(outside, sizeof outside, "%s/keep", root);
    cr_assert_eq(fs_mkdir_p(outside), 0);
    snprintf(target, sizeof target, "%s/keep/f", root);
    fd = open(target, O_CREAT | O_WRONLY, 0644);
    cr_assert_geq(fd, 0);
    close(fd);
    snprintf(p, sizeof p, "%s/t/link", root);
    cr_assert_eq(symlink(outside, p), 0);
    snprintf(p, sizeof p, "%s/t", root);
    cr_expect_eq(fs_remove_tree(p), 0, "%s", err_msg());
    cr_expect_neq(access(p, F_OK), 0, "the tree is gone");
    cr_expect_eq(access(target, F_OK), 0, "what the link pointed to is kept");
    cr_expect_eq(fs_remove_tree(p), 0, "a missing dir is fine");
}
