/* fs.c - see fs.h */
#include "common/base/fs.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/base/err.h"

/* mkdir path unless it is a directory already */
static int make_one(const char *path)
{
    if (mkdir(path, 0755) == 0) {
        return 0;
    }
    int e = errno;
    struct stat st;
    if (e == EEXIST && stat(path, &st) == 0) {
        return S_ISDIR(st.st_mode) ? 0
                                   : err_set(-ENOTDIR, "%s exists and is not a directory", path);
    }
    return err_set(-e, "mkdir %s: %s", path, strerror(e));
}

int fs_mkdir_p(const char *dir)
{
    char path[FS_PATH_MAX];
    if (!dir[0]) {
        return err_set(-ENOENT, "mkdir: empty path");
    }
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path) {
        return err_set(-ENAMETOOLONG, "mkdir %.64s...: the path is longer than %d bytes", dir,
                       FS_PATH_MAX - 1);
    }
    for (char *p = path + 1; *p; p++) {
        if (*p == '/' && p[-1] != '/') {
            *p = '\0';
            int rc = make_one(path);
            if (rc < 0) {
                return rc;
            }
            *p = '/';
        }
    }
    return make_one(path);
}

int fs_remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT) {
            return 0;
        }
        if (errno != ENOTDIR) {
            return err_set(-errno, "opendir %s: %s", dir, strerror(errno));
        }
        /* not a directory (a file, a link): remove it as it is */
        return unlink(dir) == 0 ? 0 : err_set(-errno, "unlink %s: %s", dir, strerror(errno));
    }
    int rc = 0;
    char path[FS_PATH_MAX];
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) {
            continue;
        }
        int r;
        struct stat st;
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path) {
            r = err_set(-ENAMETOOLONG, "rm %s/%.64s...: the path is too long", dir, e->d_name);
        } else if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
            r = fs_remove_tree(path);
        } else {
            r = unlink(path) == 0 || errno == ENOENT
                    ? 0
                    : err_set(-errno, "unlink %s: %s", path, strerror(errno));
        }
        rc = rc < 0 ? rc : r;
    }
    closedir(d);
    if (rmdir(dir) != 0 && errno != ENOENT && rc == 0) {
        rc = err_set(-errno, "rmdir %s: %s", dir, strerror(errno));
    }
    return rc;
}
