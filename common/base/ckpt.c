/* ckpt.c - atomic checkpoint directories and the byte buffer (see ckpt.h) */
#include "common/base/ckpt.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/base/atomic_file.h"
#include "common/base/err.h"
#include "common/base/fs.h"
#include "common/base/mem.h"

#define CKPT_PREFIX "ckpt-"
#define CKPT_TMP_PREFIX ".tmp-ckpt-"
#define CKPT_FILE_MAX ((size_t)1 << 40) /* no real limit: a file is as large as the state */

/* "ckpt-<digits>" -> id */
static int parse_id(const char *name, const char *prefix, uint64_t *id)
{
    size_t np = strlen(prefix);
    if (strncmp(name, prefix, np) != 0 || name[np] == '\0') {
        return -1;
    }
    uint64_t v = 0;
    for (const char *s = name + np; *s; s++) {
        if (*s < '0' || *s > '9' || v > UINT64_MAX / 10) {
            return -1;
        }
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *id = v;
    return 0;
}

int ckpt_dir_prepare(const char *dir)
{
    int rc = fs_mkdir_p(dir);
    if (rc < 0) {
        return rc;
    }
    DIR *d = opendir(dir);
    if (!d) {
        return err_set(-errno, "opendir %s: %s", dir, strerror(errno));
    }
    struct dirent *e;
    char p[CKPT_PATH_MAX];
    while ((e = readdir(d))) {
        uint64_t id;
        if (parse_id(e->d_name, CKPT_TMP_PREFIX, &id) == 0 &&
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name) < (int)sizeof p) {
            fs_remove_tree(p);
        }
    }
    closedir(d);
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int ckpt_list(const char *dir, uint64_t **ids, size_t *n)
{
    *ids = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) {
        return errno == ENOENT ? 0 : err_set(-errno, "opendir %s: %s", dir, strerror(errno));
    }
    size_t cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        uint64_t id;
        if (parse_id(e->d_name, CKPT_PREFIX, &id) == 0) {
            if (*n == cap) {
                cap = cap ? 2 * cap : 8;
                *ids = xrealloc(*ids, cap * sizeof **ids);
            }
            (*ids)[(*n)++] = id;
        }
    }
    closedir(d);
    if (*n > 1) {
        qsort(*ids, *n, sizeof **ids, cmp_u64);
    }
    return 0;
}

int ckpt_path(char *out, size_t n, const char *dir, uint64_t id, const char *file)
{
    int w = file ? snprintf(out, n, "%s/" CKPT_PREFIX "%020" PRIu64 "/%s", dir, id, file)
                 : snprintf(out, n, "%s/" CKPT_PREFIX "%020" PRIu64, dir, id);
    if (w < 0 || (size_t)w >= n) {
        return err_set(-ENAMETOOLONG, "checkpoint path under %s is too long", dir);
    }
    return 0;
}

static int tmp_path(char *out, size_t n, const char *dir, uint64_t id)
{
    int w = snprintf(out, n, "%s/" CKPT_TMP_PREFIX "%020" PRIu64, dir, id);
    if (w < 0 || (size_t)w >= n) {
        return err_set(-ENAMETOOLONG, "checkpoint path under %s is too long", dir);
    }
    return 0;
}

int ckpt_begin(char *tmp, size_t n, const char *dir, uint64_t id)
{
    int rc = tmp_path(tmp, n, dir, id);
    if (rc < 0) {
        return rc;
    }
    fs_remove_tree(tmp);
    if (mkdir(tmp, 0755) != 0) {
        return err_set(-errno, "mkdir %s: %s", tmp, strerror(errno));
    }
    return 0;
}

int ckpt_write_file(const char *dir, const char *file, const void *data, size_t n)
{
    char p[CKPT_PATH_MAX];
    if (snprintf(p, sizeof p, "%s/%s", dir, file) >= (int)sizeof p) {
        return err_set(-ENAMETOOLONG, "checkpoint file path is too long");
    }
    return atomic_file_write(p, data, n);
}

int ckpt_read_file(const char *path, uint8_t **data, size_t *n)
{
    return atomic_file_read(data, n, path, CKPT_FILE_MAX);
}

int ckpt_commit(const char *dir, uint64_t id)
{
    char tmp[CKPT_PATH_MAX], final[CKPT_PATH_MAX];
    int rc;
    if ((rc = tmp_path(tmp, sizeof tmp, dir, id)) < 0 ||
        (rc = ckpt_path(final, sizeof final, dir, id, NULL)) < 0 ||
        (rc = atomic_file_sync_dir(tmp)) < 0) {
        return rc;
    }
    fs_remove_tree(final); /* an older checkpoint of the same id (e.g. a final one) */
    if (rename(tmp, final) != 0) {
        return err_set(-errno, "rename %s -> %s: %s", tmp, final, strerror(errno));
    }
    return atomic_file_sync_dir(dir);
}

int ckpt_remove(const char *dir, uint64_t id)
{
    char p[CKPT_PATH_MAX];
    int rc = ckpt_path(p, sizeof p, dir, id, NULL);
    return rc < 0 ? rc : fs_remove_tree(p);
}

int ckpt_prune(const char *dir, int keep)
{
    uint64_t *ids;
    size_t n;
    int rc = ckpt_list(dir, &ids, &n);
    if (rc < 0) {
        return rc;
    }
    int removed = 0;
    for (size_t i = 0; keep >= 0 && i + (size_t)keep < n; i++) {
        if (ckpt_remove(dir, ids[i]) == 0) {
            removed++;
        }
    }
    free(ids);
    return removed;
}
