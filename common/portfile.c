/* portfile.c - atomic port files (tmp + rename) */
#include "common/portfile.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/err.h"

#define PORTFILE_PATH_MAX 4096

int portfile_write(const char *path, int port)
{
    char tmp[PORTFILE_PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        return err_set(-ENAMETOOLONG, "port file path '%.64s...' is too long", path);
    }
    FILE *f = fopen(tmp, "w");
    if (!f) {
        return err_set(-errno, "create %s: %s", tmp, strerror(errno));
    }
    fprintf(f, "%d\n", port);
    if (fclose(f) != 0) {
        return err_set(-EIO, "write %s failed", tmp);
    }
    if (rename(tmp, path) != 0) {
        return err_set(-errno, "rename %s: %s", tmp, strerror(errno));
    }
    return 0;
}
