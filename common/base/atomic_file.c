/* atomic_file.c - tmp + fsync + rename + directory fsync writes, capped whole-file reads */
#include "common/base/atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/base/err.h"
#include "common/base/mem.h"

#define ATOMIC_FILE_PATH_MAX 4096

/* write all of buf(n) to fd, retrying short writes and EINTR; 0 or -errno */
static int write_all(int fd, const uint8_t *buf, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, buf + done, n - done);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return w < 0 ? -errno : -EIO;
        }
        done += (size_t)w;
    }
    return 0;
}

int atomic_file_sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return err_set(-errno, "open directory %s: %s", dir, strerror(errno));
    }
    int rc = 0;
    if (fsync(fd) != 0) {
        rc = err_set(-errno, "fsync directory %s: %s", dir, strerror(errno));
    }
    close(fd);
    return rc;
}

/* fsync the directory holding path ("." when path has no slash) */
static int sync_parent(const char *path)
{
    char dir[ATOMIC_FILE_PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(dir, sizeof dir, ".");
    } else if (slash == path) {
        snprintf(dir, sizeof dir, "/");
    } else {
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    }
    return atomic_file_sync_dir(dir);
}

int atomic_file_write(const char *path, const void *buf, size_t n)
{
    char tmp[ATOMIC_FILE_PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        return err_set(-ENAMETOOLONG, "path '%.64s...' is too long", path);
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        return err_set(-errno, "create %s: %s", tmp, strerror(errno));
    }
    int rc = write_all(fd, buf, n);
    if (rc < 0) {
        err_set(rc, "write %s: %s", tmp, strerror(-rc));
    } else if (fsync(fd) != 0) {
        rc = err_set(-errno, "fsync %s: %s", tmp, strerror(errno));
    }
    if (close(fd) != 0 && rc == 0) {
        rc = err_set(-errno, "close %s: %s", tmp, strerror(errno));
    }
    if (rc == 0 && rename(tmp, path) != 0) {
        rc = err_set(-errno, "rename %s -> %s: %s", tmp, path, strerror(errno));
    }
    if (rc < 0) {
        unlink(tmp);
        return rc;
    }
    return sync_parent(path);
}

int atomic_file_read(uint8_t **data, size_t *n, const char *path, size_t max)
{
    *data = NULL;
    *n = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return err_set(-errno, "open %s: %s", path, strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int rc = err_set(-errno, "stat %s: %s", path, strerror(errno));
        close(fd);
        return rc;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return err_set(-EINVAL, "%s is not a regular file", path);
    }
    if (st.st_size < 0 || (unsigned long long)st.st_size > (unsigned long long)max) {
        close(fd);
        return err_set(TWIG_ETOOBIG, "%s is %lld bytes, more than the %zu allowed", path,
                       (long long)st.st_size, max);
    }
    size_t len = (size_t)st.st_size, done = 0;
    uint8_t *buf = xmalloc(len ? len : 1);
    int rc = 0;
    while (done < len) {
        ssize_t r = read(fd, buf + done, len - done);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            rc = err_set(-errno, "read %s: %s", path, strerror(errno));
            break;
        }
        if (r == 0) {
            rc = err_set(-EIO, "read %s: short read (%zu of %zu bytes)", path, done, len);
            break;
        }
        done += (size_t)r;
    }
    close(fd);
    if (rc < 0) {
        free(buf);
        return rc;
    }
    *data = buf;
    *n = len;
    return 0;
}
