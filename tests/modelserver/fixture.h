/* fixture.h - helpers shared by the model server tests: owned batches with contents that
 * encode (source, seq, row), small filesystems for disk-full tests, damaging files. Header-
 * only (tests are one file each); temp dirs and processes are in tests/procfix.h. */
#ifndef TWIG_TESTS_MODELSERVER_FIXTURE_H
#define TWIG_TESTS_MODELSERVER_FIXTURE_H

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/base/mem.h"
#include "common/rpc/msg.h"
#include "common/base/rng.h"

/* twig-modelserver flags for a small, quick model: an ensemble of 3 with 2 elites, 2 hidden
 * layers of 32, at most 20 epochs a fit (argv entries, for an initializer) */
#define FX_SMALL_MODEL_ARGS                                                                        \
    "--set", "modelserver.ensemble_size=3", "--set", "modelserver.elites=2", "--set",              \
        "modelserver.model_hidden=32", "--set", "modelserver.model_layers=2", "--set",             \
        "modelserver.train_max_epochs=20"

/* a batch that owns its arrays */
typedef struct fx_batch {
    tbatch_t v;
    char env_id[64];
    char source_id[64];
    float *obs, *act, *reward, *next_obs;
    int *terminated, *truncated;
} fx_batch;

/* the value of column j of row i of a batch (source number s, seq q): distinct per element,
 * so a fetched row tells exactly which batch and row it came from */
static inline float fx_value(int s, uint64_t q, uint32_t i, uint32_t j, int field)
{
    return (float)s * 1000.0f + (float)(q % 4096) + (float)i * 0.001f + (float)j * 1e-6f +
           (float)field * 0.25f;
}

static inline void fx_batch_make(fx_batch *b, const char *env, int src, uint64_t seq,
                                 uint32_t count, uint32_t O, uint32_t A)
{
    memset(b, 0, sizeof *b);
    snprintf(b->env_id, sizeof b->env_id, "%s", env);
    snprintf(b->source_id, sizeof b->source_id, "actor-%d", src);
    b->obs = xmalloc((size_t)count * O * 4);
    b->act = xmalloc((size_t)count * A * 4);
    b->reward = xmalloc((size_t)count * 4);
    b->next_obs = xmalloc((size_t)count * O * 4);
    b->terminated = xmalloc((size_t)count * sizeof(int));
    b->truncated = xmalloc((size_t)count * sizeof(int));
    for (uint32_t i = 0; i < count; i++) {
        for (uint32_t j = 0; j < O; j++) {
            b->obs[i * O + j] = fx_value(src, seq, i, j, 0);
            b->next_obs[i * O + j] = fx_value(src, seq, i, j, 1);
        }
        for (uint32_t j = 0; j < A; j++) {
            b->act[i * A + j] = fx_value(src, seq, i, j, 2);
        }
        b->reward[i] = fx_value(src, seq, i, 0, 3);
        b->terminated[i] = (int)((seq + i) % 7 == 0);
        b->truncated[i] = (int)((seq + i) % 5 == 0);
    }
    b->v = (tbatch_t){
        .env_id = b->env_id, .source_id = b->source_id, .seq = seq, .policy_version = 0,
        .obs_dim = O, .act_dim = A, .count = count,
        .obs = b->obs, .act = b->act, .reward = b->reward, .next_obs = b->next_obs,
        .terminated = b->terminated, .truncated = b->truncated,
    };
}

static inline void fx_batch_free(fx_batch *b)
{
    free(b->obs);
    free(b->act);
    free(b->reward);
    free(b->next_obs);
    free(b->terminated);
    free(b->truncated);
    memset(b, 0, sizeof *b);
}

/* does row r of (obs, act, ...) equal row i of batch (src, seq)? bit for bit */
static inline int fx_row_matches(const float *obs, const float *act, const float *reward,
                                 const float *next_obs, const int *term, const int *trunc,
                                 uint32_t O, uint32_t A, int src, uint64_t seq, uint32_t i)
{
    for (uint32_t j = 0; j < O; j++) {
        float a = fx_value(src, seq, i, j, 0), b = fx_value(src, seq, i, j, 1);
        if (memcmp(&obs[j], &a, 4) || memcmp(&next_obs[j], &b, 4)) {
            return 0;
        }
    }
    for (uint32_t j = 0; j < A; j++) {
        float a = fx_value(src, seq, i, j, 2);
        if (memcmp(&act[j], &a, 4)) {
            return 0;
        }
    }
    float rw = fx_value(src, seq, i, 0, 3);
    return !memcmp(reward, &rw, 4) && *term == (int)((seq + i) % 7 == 0) &&
           *trunc == (int)((seq + i) % 5 == 0);
}

/* ---- small filesystems (disk full) ----
 *
 * A tmpfs of kib KiB mounted on dir (created), in a mount namespace of this test process's
 * own: the servers it spawns afterwards see it, and nothing outlives the test even when it
 * is killed. Unmount it in the test's .fini (Criterion runs it after a failed assertion
 * too), before the run dir is removed. The tests run as root; where mounting is not
 * permitted the test fails here, saying so (it never skips). */
static inline void fx_small_fs_mount(const char *dir, int kib)
{
    cr_assert_eq(unshare(CLONE_NEWNS), 0,
                 "unshare(CLONE_NEWNS): %s: this disk-full test mounts a tmpfs and must run as"
                 " root (CAP_SYS_ADMIN)", strerror(errno));
    cr_assert_eq(mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL), 0,
                 "mount --make-rprivate /: %s", strerror(errno));
    cr_assert(mkdir(dir, 0755) == 0 || errno == EEXIST, "mkdir %s: %s", dir, strerror(errno));
    char o[32];
    snprintf(o, sizeof o, "size=%dk", kib);
    cr_assert_eq(mount("tmpfs", dir, "tmpfs", 0, o), 0,
                 "mount -t tmpfs -o %s tmpfs %s: %s: this disk-full test must run as root", o,
                 dir, strerror(errno));
}

/* unmount what fx_small_fs_mount mounted (lazily if busy); fine if nothing is mounted */
static inline void fx_small_fs_umount(const char *dir)
{
    if (umount2(dir, 0) < 0 && errno == EBUSY) {
        umount2(dir, MNT_DETACH);
    }
}

/* fill the filesystem that holds path, growing the file there (made if missing) until the
 * disk is full, then giving back keep bytes; its size. Call again to take up space freed
 * since. (A file may still grow into the unused end of its last page.) */
static inline uint64_t fx_fill_fs(const char *path, uint64_t keep)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    cr_assert_geq(fd, 0, "create %s: %s", path, strerror(errno));
    static const char zeros[4096];
    struct stat st;
    cr_assert_eq(fstat(fd, &st), 0);
    uint64_t n = (uint64_t)st.st_size;
    for (;;) {
        ssize_t w = write(fd, zeros, sizeof zeros);
        if (w <= 0) {
            cr_assert(w == 0 || errno == ENOSPC, "fill %s: %s", path, strerror(errno));
            break;
        }
        n += (uint64_t)w;
    }
    if (keep > 0) {
        n = n > keep ? n - keep : 0;
        cr_assert_eq(ftruncate(fd, (off_t)n), 0);
    }
    close(fd);
    return n;
}

/* ---- damaging files ---- */

/* a whole file, owned (free it) */
static inline uint8_t *fx_read_file(const char *path, size_t *n)
{
    int fd = open(path, O_RDONLY);
    cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
    struct stat st;
    cr_assert_eq(fstat(fd, &st), 0);
    uint8_t *buf = xmalloc((size_t)st.st_size + 1);
    cr_assert_eq(pread(fd, buf, (size_t)st.st_size, 0), st.st_size);
    close(fd);
    *n = (size_t)st.st_size;
    return buf;
}

/* replace a file's bytes (and length) with buf(n) */
static inline void fx_write_file(const char *path, const uint8_t *buf, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
    cr_assert_eq(write(fd, buf, n), (ssize_t)n);
    close(fd);
}

/* xor len bytes at off with 0xff */
static inline void fx_flip_bytes(const char *path, off_t off, size_t len)
{
    int fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
    uint8_t b[64];
    cr_assert_leq(len, sizeof b);
    cr_assert_eq(pread(fd, b, len, off), (ssize_t)len);
    for (size_t i = 0; i < len; i++) {
        b[i] ^= 0xff;
    }
    cr_assert_eq(pwrite(fd, b, len, off), (ssize_t)len);
    close(fd);
}

/* zero [from, to) */
static inline void fx_zero_range(const char *path, off_t from, off_t to)
{
    int fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
    uint8_t *z = xcalloc((size_t)(to - from), 1);
    cr_assert_eq(pwrite(fd, z, (size_t)(to - from), from), (ssize_t)(to - from));
    free(z);
    close(fd);
}

#endif
