/* slow_io.c - an LD_PRELOAD shim for tests: a slow disk under a real twig process.
 *   - TWIG_TEST_SLOW_PREAD_MS: every pread(2) of a real-log segment (a file whose name ends
 *     in ".seg") first sleeps this long, as a cold disk would, and creates the file
 *     TWIG_TEST_SLOW_PREAD_FLAG (if set) so the test knows a slow read has begun;
 *   - TWIG_TEST_SLOW_FSYNC_MS: every fsync(2) and fdatasync(2) first sleeps this long.
 * Everything else is untouched. Built without sanitizers (tests/CMakeLists.txt); used by
 * test_modelserver_loop and test_learner. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef ssize_t (*pread_fn)(int, void *, size_t, off_t);

static int is_segment(int fd)
{
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n < 4) {
        return 0;
    }
    path[n] = 0;
    return strcmp(path + n - 4, ".seg") == 0;
}

static void sleep_ms_env(const char *name)
{
    const char *ms = getenv(name);
    if (!ms) {
        return;
    }
    long v = atol(ms);
    struct timespec t = {v / 1000, (v % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static void slow_down(int fd)
{
    const char *ms = getenv("TWIG_TEST_SLOW_PREAD_MS");
    if (!ms || !is_segment(fd)) {
        return;
    }
    const char *flag = getenv("TWIG_TEST_SLOW_PREAD_FLAG");
    if (flag) {
        int f = open(flag, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (f >= 0) {
            close(f);
        }
    }
    sleep_ms_env("TWIG_TEST_SLOW_PREAD_MS");
}

__attribute__((visibility("default"))) ssize_t pread(int fd, void *buf, size_t n, off_t off)
{
    static pread_fn real;
    if (!real) {
        real = (pread_fn)dlsym(RTLD_NEXT, "pread");
    }
    slow_down(fd);
    return real(fd, buf, n, off);
}

__attribute__((visibility("default"))) ssize_t pread64(int fd, void *buf, size_t n, off_t off)
{
    static pread_fn real;
    if (!real) {
        real = (pread_fn)dlsym(RTLD_NEXT, "pread64");
    }
    slow_down(fd);
    return real(fd, buf, n, off);
}

typedef int (*sync_fn)(int);

__attribute__((visibility("default"))) int fsync(int fd)
{
    static sync_fn real;
    if (!real) {
        real = (sync_fn)dlsym(RTLD_NEXT, "fsync");
    }
    sleep_ms_env("TWIG_TEST_SLOW_FSYNC_MS");
    return real(fd);
}

__attribute__((visibility("default"))) int fdatasync(int fd)
{
    static sync_fn real;
    if (!real) {
        real = (sync_fn)dlsym(RTLD_NEXT, "fdatasync");
    }
    sleep_ms_env("TWIG_TEST_SLOW_FSYNC_MS");
    return real(fd);
}
