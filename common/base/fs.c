/* fs.c - see fs.h */
#include "common/base/fs.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

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
