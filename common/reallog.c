/* reallog.c - durable segmented log of real transitions (format and rules in reallog.h) */
#include "common/reallog.h"

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/crc32c.h"
#include "common/err.h"
#include "common/log.h"
#include "common/mem.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the log format is little-endian and written natively"
#endif

#define REALLOG_MAGIC 0x31525754u   /* "TWR1" read as little-endian u32 */
#define REALLOG_HDR_BYTES 56u
#define REALLOG_SRC_MAX_PADDED 256u /* 255 bytes rounded up to 8 */
#define REALLOG_MAX_RECORD                                                                  \
    ((uint64_t)REALLOG_HDR_BYTES + REALLOG_SRC_MAX_PADDED + (uint64_t)MSG_BATCH_MAX_FLOATS * 4 + \
     2ull * MSG_BATCH_MAX_COUNT + 8)
#define REALLOG_META_NAME "meta"
#define REALLOG_META_MAGIC "twig-reallog 1"
#define REALLOG_IOV_CHUNK 512

typedef struct reallog_seg {
    uint64_t first_offset;
    uint64_t size;       /* bytes of whole records */
    int fd;              /* read-write */
} reallog_seg;

/* one durable record in the index */
typedef struct reallog_rec {
    uint64_t first_offset;
    uint64_t pos;        /* byte position of the record in its segment */
    uint32_t count;
    uint32_t seg;
    uint32_t src_len;
    uint32_t len;        /* record bytes */
} reallog_rec;

typedef struct reallog_hist {
    uint64_t seq;
    uint64_t first_offset;
    uint32_t count;
} reallog_hist;

/* a source's dedup state: every batch it stored, in seq order (seqs only increase) */
typedef struct reallog_src {
    char *id;            /* owned; NULL: empty slot */
    uint64_t max_seq;      /* valid when n_hist > 0 */
    uint64_t transitions;  /* stored (or queued) from this source */
    uint64_t n_hist;
    uint64_t cap_hist;
    reallog_hist *hist;    /* (n_hist) owned, increasing seq */
} reallog_src;

/* a queued append */
typedef struct reallog_item {
    struct reallog_item *next;
    tbatch_t b;          /* arrays borrowed from the caller until done */
    int dup;             /* acknowledge only, nothing to write */
    reallog_ack ack;
    reallog_done_fn done;
    void *arg;
    uint64_t len;        /* record bytes */
    uint32_t src_len;
    uint32_t hdr_len;    /* header + padded source id */
    uint8_t hdr[REALLOG_HDR_BYTES + REALLOG_SRC_MAX_PADDED];
    uint8_t *flags;      /* owned: terminated, truncated, padding */
    uint64_t flags_len;
} reallog_item;

/* ---- small helpers ---- */

static uint64_t pad8(uint64_t n)
{
    return (n + 7) & ~(uint64_t)7;
}

/* bytes of a record as written: header, source id, floats and flags, padded to 8 */
static uint64_t reallog_record_len(uint32_t src_len, uint32_t count, uint32_t obs_dim,
                                   uint32_t act_dim)
{
    uint64_t floats = (uint64_t)count * (2ull * obs_dim + act_dim + 1);
    return REALLOG_HDR_BYTES + pad8(src_len) + pad8(floats * 4 + 2ull * count);
}

/* the length logs written before 2026-11-23 used: only the flags were padded, so a record
 * with an odd number of floats (HalfCheetah's 41 per row, odd count) ended 4-aligned. Read
 * so that those logs stay readable; never written. */
static uint64_t reallog_legacy_record_len(uint32_t src_len, uint32_t count, uint32_t obs_dim,
                                          uint32_t act_dim)
{
    uint64_t floats = (uint64_t)count * (2ull * obs_dim + act_dim + 1);
    return REALLOG_HDR_BYTES + pad8(src_len) + floats * 4 + pad8(2ull * count);
}

static uint32_t rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint64_t rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static void wr32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

static void wr64(uint8_t *p, uint64_t v)
{
    memcpy(p, &v, 8);
}

static void reallog_seg_name(char *out, size_t n, uint64_t first_offset)
{
    snprintf(out, n, "%020" PRIu64 ".seg", first_offset);
}

static int reallog_fsync_dir(reallog_t *lg)
{
    if (fsync(lg->dir_fd) < 0) {
        return err_set(-errno, "fsync of data dir %s: %s", lg->dir, strerror(errno));
    }
    return 0;
}

static int mkdir_parents(const char *dir)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path) {
        return err_set(-ENAMETOOLONG, "data dir path is too long");
    }
    for (char *p = path + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(path, 0755) < 0 && errno != EEXIST) {
                return err_set(-errno, "mkdir %s: %s", path, strerror(errno));
            }
            *p = '/';
        }
    }
    if (mkdir(path, 0755) < 0 && errno != EEXIST) {
        return err_set(-errno, "mkdir %s: %s", path, strerror(errno));
    }
    return 0;
}

reallog_opts reallog_opts_default(const char *dir)
{
    return (reallog_opts){
        .dir = dir,
        .env_id = NULL,
        .segment_bytes = REALLOG_DEFAULT_SEGMENT_BYTES,
        .sync = REALLOG_SYNC_BATCH,
        .group_max = 256,
        .max_queue_bytes = 64ull << 20,
    };
}

static const char *const reallog_sync_names[] = {"batch", "group", "none"};

int reallog_sync_parse(const char *s, reallog_sync *out)
{
    for (int i = 0; i < 3; i++) {
        if (strcmp(s, reallog_sync_names[i]) == 0) {
            *out = (reallog_sync)i;
            return 0;
        }
    }
    return err_set(-EINVAL, "sync policy '%s' is not one of batch, group, none", s);
}

const char *reallog_sync_name(reallog_sync s)
{
    return (unsigned)s < 3 ? reallog_sync_names[s] : "?";
}

/* ---- sources (dedup table); callers hold mu ---- */

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;   /* FNV-1a */
    for (; *s; s++) {
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    }
    return h;
}

static reallog_src *reallog_src_find(reallog_t *lg, const char *id)
{
    if (lg->cap_srcs == 0) {
        return NULL;
    }
    uint32_t mask = lg->cap_srcs - 1;
    for (uint32_t i = (uint32_t)hash_str(id) & mask;; i = (i + 1) & mask) {
        reallog_src *s = &lg->srcs[i];
        if (!s->id) {
            return NULL;
        }
        if (strcmp(s->id, id) == 0) {
            return s;
        }
    }
}

static reallog_src *reallog_src_slot(reallog_src *tab, uint32_t cap, const char *id)
{
    uint32_t mask = cap - 1;
    uint32_t i = (uint32_t)hash_str(id) & mask;
    while (tab[i].id) {
        i = (i + 1) & mask;
    }
    return &tab[i];
}

/* add a source (not present); NULL when the table is full */
static reallog_src *reallog_src_add(reallog_t *lg, const char *id)
{
    if (lg->n_srcs >= REALLOG_MAX_SOURCES) {
        return NULL;
    }
    if (2 * (lg->n_srcs + 1) > lg->cap_srcs) {
        uint32_t cap = lg->cap_srcs ? 2 * lg->cap_srcs : 64;
        reallog_src *tab = xcalloc(cap, sizeof *tab);
        for (uint32_t i = 0; i < lg->cap_srcs; i++) {
            if (lg->srcs[i].id) {
                *reallog_src_slot(tab, cap, lg->srcs[i].id) = lg->srcs[i];
            }
        }
        free(lg->srcs);
        lg->srcs = tab;
        lg->cap_srcs = cap;
    }
    reallog_src *s = reallog_src_slot(lg->srcs, lg->cap_srcs, id);
    memset(s, 0, sizeof *s);
    s->id = xstrdup(id);
    lg->n_srcs++;
    return s;
}

/* append (seq above every earlier one) */
static void reallog_src_remember(reallog_src *s, uint64_t seq, uint64_t first, uint32_t count)
{
    if (s->n_hist == s->cap_hist) {
        s->cap_hist = s->cap_hist ? 2 * s->cap_hist : 16;
        s->hist = xrealloc(s->hist, s->cap_hist * sizeof *s->hist);
    }
    s->transitions += count;
    s->hist[s->n_hist++] = (reallog_hist){.seq = seq, .first_offset = first, .count = count};
    s->max_seq = seq;
}

/* binary search of a stored seq */
static const reallog_hist *reallog_src_lookup(const reallog_src *s, uint64_t seq)
{
    uint64_t lo = 0, hi = s->n_hist;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (s->hist[mid].seq < seq) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < s->n_hist && s->hist[lo].seq == seq ? &s->hist[lo] : NULL;
}

/* ---- index ---- */

static void reallog_push_rec(reallog_t *lg, const reallog_rec *r)
{
    if (lg->n_recs == lg->cap_recs) {
        lg->cap_recs = lg->cap_recs ? 2 * lg->cap_recs : 1024;
        lg->recs = xrealloc(lg->recs, lg->cap_recs * sizeof *lg->recs);
    }
    lg->recs[lg->n_recs++] = *r;
}

static void reallog_push_seg(reallog_t *lg, const reallog_seg *s)
{
    if (lg->n_segs == lg->cap_segs) {
        lg->cap_segs = lg->cap_segs ? 2 * lg->cap_segs : 16;
        lg->segs = xrealloc(lg->segs, lg->cap_segs * sizeof *lg->segs);
    }
    lg->segs[lg->n_segs++] = *s;
}

/* ---- meta file ---- */

static int reallog_meta_read(reallog_t *lg)
{
    int fd = openat(lg->dir_fd, REALLOG_META_NAME, O_RDONLY);
    if (fd < 0) {
        if (errno == ENOENT) {
            return 0;
        }
        return err_set(-errno, "open %s/meta: %s", lg->dir, strerror(errno));
    }
    char buf[1024];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n < 0) {
        return err_set(-errno, "read %s/meta: %s", lg->dir, strerror(errno));
    }
    buf[n] = '\0';
    char env[MSG_MAX_ID_LEN + 2];
    unsigned obs = 0, act = 0;
    int used = 0;
    int got = sscanf(buf, REALLOG_META_MAGIC "\nenv_id=%256[^\n]\nobs_dim=%u\nact_dim=%u\n%n",
                     env, &obs, &act, &used);
    if (got != 3 || used != n || strlen(env) > MSG_MAX_ID_LEN || obs == 0 ||
        obs > MSG_MAX_DIM || act == 0 || act > MSG_MAX_DIM) {
        return err_set(TWIG_ECORRUPT, "%s/meta is not a valid twig-reallog meta file", lg->dir);
    }
    memcpy(lg->env_id, env, strlen(env) + 1);   /* length checked above */
    lg->obs_dim = obs;
    lg->act_dim = act;
    lg->meta_written = 1;
    return 0;
}

/* write meta atomically: tmp file, fsync, rename, fsync dir */
static int reallog_meta_write(reallog_t *lg)
{
    char buf[512];
    int n = snprintf(buf, sizeof buf, REALLOG_META_MAGIC "\nenv_id=%s\nobs_dim=%u\nact_dim=%u\n",
                     lg->env_id, lg->obs_dim, lg->act_dim);
    int fd = openat(lg->dir_fd, REALLOG_META_NAME ".tmp", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        return err_set(-errno, "create %s/meta.tmp: %s", lg->dir, strerror(errno));
    }
    if (write(fd, buf, (size_t)n) != n || fsync(fd) < 0) {
        int e = errno ? errno : EIO;
        close(fd);
        return err_set(-e, "write %s/meta.tmp: %s", lg->dir, strerror(e));
    }
    close(fd);
    if (renameat(lg->dir_fd, REALLOG_META_NAME ".tmp", lg->dir_fd, REALLOG_META_NAME) < 0) {
        return err_set(-errno, "rename %s/meta.tmp: %s", lg->dir, strerror(errno));
    }
    int rc = reallog_fsync_dir(lg);
    if (rc == 0) {
        lg->meta_written = 1;
    }
    return rc;
}

/* ---- reading records at open ---- */

typedef struct reallog_hdr {
    uint32_t len;
    uint32_t count;
    uint64_t first_offset;
    uint64_t seq;
    uint32_t obs_dim;
    uint32_t act_dim;
    uint32_t src_len;
    const char *src;     /* not terminated */
} reallog_hdr;

static uint32_t reallog_crc(const uint8_t *rec, uint64_t len)
{
    return crc32c_update(crc32c(rec, 8), rec + 12, len - 12);
}

/* parse and verify one record at p (avail bytes to the end of the file); NULL or why not */
static const char *reallog_parse(reallog_hdr *h, const uint8_t *p, uint64_t avail)
{
    if (avail < 12) {
        return "record header cut short";
    }
    if (rd32(p) != REALLOG_MAGIC) {
        return "bad magic";
    }
    uint64_t len = rd32(p + 4);
    if (len < REALLOG_HDR_BYTES || len % 4 != 0 || len > REALLOG_MAX_RECORD) {
        return "bad record length";
    }
    if (len > avail) {
        return "record runs past the end of the file";
    }
    if (reallog_crc(p, len) != rd32(p + 8)) {
        return "CRC mismatch";
    }
    h->len = (uint32_t)len;
    h->count = rd32(p + 12);
    h->first_offset = rd64(p + 16);
    h->seq = rd64(p + 24);
    h->obs_dim = rd32(p + 32);
    h->act_dim = rd32(p + 36);
    h->src_len = (uint32_t)p[48] | ((uint32_t)p[49] << 8);
    h->src = (const char *)p + REALLOG_HDR_BYTES;
    if (h->count == 0 || h->count > MSG_BATCH_MAX_COUNT || h->obs_dim == 0 ||
        h->obs_dim > MSG_MAX_DIM || h->act_dim == 0 || h->act_dim > MSG_MAX_DIM ||
        h->src_len == 0 || h->src_len > MSG_MAX_ID_LEN ||
        (reallog_record_len(h->src_len, h->count, h->obs_dim, h->act_dim) != len &&
         reallog_legacy_record_len(h->src_len, h->count, h->obs_dim, h->act_dim) != len)) {
        return "record fields disagree with its length";
    }
    return NULL;
}

/* is there a valid record anywhere in [from, size)? (tells a torn tail from corruption) */
static int reallog_valid_after(const uint8_t *map, uint64_t from, uint64_t size)
{
    reallog_hdr h;
    for (uint64_t p = (from + 3) & ~(uint64_t)3; p + 12 <= size; p += 4) { /* legacy: 4 */
        if (rd32(map + p) == REALLOG_MAGIC && !reallog_parse(&h, map + p, size - p)) {
            return 1;
        }
    }
    return 0;
}

/* add a verified record to the index and the dedup table */
static int reallog_load_rec(reallog_t *lg, const reallog_hdr *h, uint32_t seg, uint64_t pos,
                            const char *seg_name)
{
    char id[MSG_MAX_ID_LEN + 1];
    memcpy(id, h->src, h->src_len);
    id[h->src_len] = '\0';
    reallog_src *s = reallog_src_find(lg, id);
    if (!s) {
        s = reallog_src_add(lg, id);
        if (!s) {
            return err_set(TWIG_ECORRUPT, "more than %d sources in the log", REALLOG_MAX_SOURCES);
        }
    } else if (s->n_hist > 0 && h->seq <= s->max_seq) {
        return err_set(TWIG_ECORRUPT, "segment %s/%s: record at byte %" PRIu64 " (log offset %"
                       PRIu64 ") has seq %" PRIu64 " for source '%s', not above its previous %"
                       PRIu64, lg->dir, seg_name, pos, h->first_offset, h->seq, id, s->max_seq);
    }
    reallog_src_remember(s, h->seq, h->first_offset, h->count);
    reallog_rec r = {.first_offset = h->first_offset, .pos = pos, .count = h->count,
                     .seg = seg, .src_len = h->src_len, .len = h->len};
    reallog_push_rec(lg, &r);
    return 0;
}

/* scan one segment; the last one may lose a torn tail */
static int reallog_scan_seg(reallog_t *lg, uint32_t si, const char *name, int is_last)
{
    reallog_seg *sg = &lg->segs[si];
    struct stat st;
    if (fstat(sg->fd, &st) < 0) {
        return err_set(-errno, "stat %s/%s: %s", lg->dir, name, strerror(errno));
    }
    uint64_t size = (uint64_t)st.st_size;
    if (sg->first_offset != lg->end_durable) {
        return err_set(TWIG_ECORRUPT, "segment %s/%s starts at offset %" PRIu64
                       " but the log before it ends at %" PRIu64,
                       lg->dir, name, sg->first_offset, lg->end_durable);
    }
    if (size == 0) {
        sg->size = 0;
        return 0;
    }
    const uint8_t *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, sg->fd, 0);
    if (map == MAP_FAILED) {
        return err_set(-errno, "mmap %s/%s: %s", lg->dir, name, strerror(errno));
    }
    uint64_t pos = 0;
    const char *why = NULL;
    int framing = 0;     /* the record did not parse: may be a torn tail */
    int rc = 0;
    while (pos < size) {
        reallog_hdr h;
        why = reallog_parse(&h, map + pos, size - pos);
        framing = why != NULL;
        if (!why && h.first_offset != lg->end_durable) {
            why = "record offset breaks the sequence";
        }
        if (!why && (h.obs_dim != lg->obs_dim || h.act_dim != lg->act_dim)) {
            why = lg->meta_written ? "record dims differ from the meta file"
                                   : "records exist but the meta file is missing";
        }
        if (why) {
            break;
        }
        rc = reallog_load_rec(lg, &h, si, pos, name);
        if (rc < 0) {
            break;
        }
        pos += h.len;
        lg->end_durable += h.count;
    }
    if (rc == 0 && why) {
        if (is_last && framing && !reallog_valid_after(map, pos + 8, size)) {
            /* torn tail: a write cut short by a crash; never acknowledged */
            log_warn("event=torn_tail_truncated segment=%s/%s at_byte=%" PRIu64
                     " dropped_bytes=%" PRIu64 " reason=\"%s\"",
                     lg->dir, name, pos, size - pos, why);
            if (ftruncate(sg->fd, (off_t)pos) < 0 || fsync(sg->fd) < 0) {
                rc = err_set(-errno, "truncate %s/%s: %s", lg->dir, name, strerror(errno));
            }
        } else {
            rc = err_set(TWIG_ECORRUPT, "segment %s/%s: bad record at byte %" PRIu64
                         " (log offset %" PRIu64 "): %s", lg->dir, name, pos, lg->end_durable,
                         why);
        }
    }
    munmap((void *)map, size);
    sg->size = pos;
    return rc;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* find, sort, open and scan the segment files */
static int reallog_load_segments(reallog_t *lg)
{
    DIR *d = opendir(lg->dir);
    if (!d) {
        return err_set(-errno, "opendir %s: %s", lg->dir, strerror(errno));
    }
    uint64_t *firsts = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 4 || strcmp(e->d_name + len - 4, ".seg") != 0) {
            continue;
        }
        char want[32];
        unsigned long long v = 0;
        if (sscanf(e->d_name, "%20llu", &v) == 1) {
            reallog_seg_name(want, sizeof want, v);
        }
        if (len != 24 || strcmp(want, e->d_name) != 0) {
            rc = err_set(TWIG_ECORRUPT, "%s/%s is not a segment name (want 20 digits + .seg)",
                         lg->dir, e->d_name);
            break;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            firsts = xrealloc(firsts, cap * sizeof *firsts);
        }
        firsts[n++] = v;
    }
    closedir(d);
    if (rc == 0 && n > 0) {
        qsort(firsts, n, sizeof *firsts, cmp_u64);
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        char name[32];
        reallog_seg_name(name, sizeof name, firsts[i]);
        int fd = openat(lg->dir_fd, name, O_RDWR | O_CLOEXEC);
        if (fd < 0) {
            rc = err_set(-errno, "open %s/%s: %s", lg->dir, name, strerror(errno));
            break;
        }
        reallog_seg sg = {.first_offset = firsts[i], .size = 0, .fd = fd};
        reallog_push_seg(lg, &sg);
        rc = reallog_scan_seg(lg, lg->n_segs - 1, name, i + 1 == n);
    }
    free(firsts);
    return rc;
}

/* start a new segment at the current end (the appender thread, or open) */
static int reallog_new_seg(reallog_t *lg, uint64_t first_offset)
{
    char name[32];
    reallog_seg_name(name, sizeof name, first_offset);
    int fd = openat(lg->dir_fd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        return err_set(-errno, "create %s/%s: %s", lg->dir, name, strerror(errno));
    }
    if (lg->opts.sync != REALLOG_SYNC_NONE) {
        int rc = reallog_fsync_dir(lg);
        if (rc < 0) {
            close(fd);
            return rc;
        }
    }
    reallog_seg sg = {.first_offset = first_offset, .size = 0, .fd = fd};
    pthread_mutex_lock(&lg->mu);
    reallog_push_seg(lg, &sg);
    pthread_mutex_unlock(&lg->mu);
    return 0;
}

/* ---- the appender ---- */

/* serialise the header and flags of an item; crc over everything */
static void reallog_item_encode(reallog_item *it)
{
    const tbatch_t *b = &it->b;
    uint32_t c = b->count;
    uint8_t *h = it->hdr;
    memset(h, 0, sizeof it->hdr);
    wr32(h, REALLOG_MAGIC);
    wr32(h + 4, (uint32_t)it->len);
    wr32(h + 12, c);
    wr64(h + 16, it->ack.first_offset);
    wr64(h + 24, b->seq);
    wr32(h + 32, b->obs_dim);
    wr32(h + 36, b->act_dim);
    wr64(h + 40, b->policy_version);
    h[48] = (uint8_t)(it->src_len & 0xff);
    h[49] = (uint8_t)(it->src_len >> 8);
    memcpy(h + REALLOG_HDR_BYTES, b->source_id, it->src_len);
    size_t O = b->obs_dim, A = b->act_dim;
    it->flags_len = it->len - it->hdr_len - (uint64_t)c * (2 * O + A + 1) * 4; /* + padding */
    it->flags = xcalloc(it->flags_len, 1);
    for (uint32_t i = 0; i < c; i++) {
        it->flags[i] = b->terminated[i] != 0;
        it->flags[c + i] = b->truncated[i] != 0;
    }
    uint32_t crc = crc32c(h, 8);
    crc = crc32c_update(crc, h + 12, it->hdr_len - 12);
    crc = crc32c_update(crc, b->obs, c * O * 4);
    crc = crc32c_update(crc, b->act, c * A * 4);
    crc = crc32c_update(crc, b->reward, (size_t)c * 4);
    crc = crc32c_update(crc, b->next_obs, c * O * 4);
    crc = crc32c_update(crc, it->flags, it->flags_len);
    wr32(h + 8, crc);
}

static int reallog_item_iov(struct iovec *v, const reallog_item *it)
{
    const tbatch_t *b = &it->b;
    size_t c = b->count, O = b->obs_dim, A = b->act_dim;
    v[0] = (struct iovec){(void *)it->hdr, it->hdr_len};
    v[1] = (struct iovec){(void *)b->obs, c * O * 4};
    v[2] = (struct iovec){(void *)b->act, c * A * 4};
    v[3] = (struct iovec){(void *)b->reward, c * 4};
    v[4] = (struct iovec){(void *)b->next_obs, c * O * 4};
    v[5] = (struct iovec){(void *)it->flags, it->flags_len};
    return 6;
}

/* write all of iov at off, resuming after short writes */
static int pwritev_all(int fd, struct iovec *iov, int n, uint64_t off)
{
    while (n > 0) {
        ssize_t w = pwritev(fd, iov, n > IOV_MAX ? IOV_MAX : n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        off += (uint64_t)w;
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

/* write the records of items [first, end) into the current segments, rolling as needed;
 * returns 0 or a negative code with the detail in text */
static int reallog_write_items(reallog_t *lg, reallog_item *first, reallog_item *end,
                               char *text, size_t text_len)
{
    struct iovec iov[REALLOG_IOV_CHUNK];
    int n_iov = 0;
    reallog_seg *sg = &lg->segs[lg->n_segs - 1];   /* only this thread appends segs */
    uint64_t at = sg->size;                          /* where iov starts */
    uint64_t pending = 0;                            /* bytes in iov */
    int rc = 0;
    for (reallog_item *it = first; it != end && rc == 0; it = it->next) {
        if (it->dup) {
            continue;
        }
        int roll = at + pending > 0 && at + pending + it->len > lg->opts.segment_bytes;
        if (n_iov + 6 > REALLOG_IOV_CHUNK || roll) {
            rc = pwritev_all(sg->fd, iov, n_iov, at);
            at += pending;
            pending = 0;
            n_iov = 0;
            if (rc < 0) {
                snprintf(text, text_len, "write segment %" PRIu64 ": %s", sg->first_offset,
                         strerror(-rc));
                break;
            }
            pthread_mutex_lock(&lg->mu);
            sg->size = at;
            pthread_mutex_unlock(&lg->mu);
        }
        if (roll) {
            if (lg->opts.sync != REALLOG_SYNC_NONE && fdatasync(sg->fd) < 0) {
                rc = -errno;
                snprintf(text, text_len, "fdatasync: %s", strerror(errno));
                break;
            }
            rc = reallog_new_seg(lg, it->ack.first_offset);
            if (rc < 0) {
                snprintf(text, text_len, "%s", err_msg());
                break;
            }
            sg = &lg->segs[lg->n_segs - 1];
            at = 0;
        }
        n_iov += reallog_item_iov(iov + n_iov, it);
        pending += it->len;
    }
    if (rc == 0 && n_iov > 0) {
        rc = pwritev_all(sg->fd, iov, n_iov, at);
        if (rc < 0) {
            snprintf(text, text_len, "write segment %" PRIu64 ": %s", sg->first_offset,
                     strerror(-rc));
        } else {
            at += pending;
            pthread_mutex_lock(&lg->mu);
            sg->size = at;
            pthread_mutex_unlock(&lg->mu);
        }
    }
    if (rc == 0 && lg->opts.sync != REALLOG_SYNC_NONE && fdatasync(sg->fd) < 0) {
        rc = -errno;
        snprintf(text, text_len, "fdatasync: %s", strerror(errno));
    }
    return rc;
}

/* index the written items: their records are where write_items put them */
static void reallog_publish(reallog_t *lg, reallog_item *first, reallog_item *end)
{
    /* recompute each record's segment and position walking forward from the ends */
    for (reallog_item *it = first; it != end; it = it->next) {
        if (it->dup) {
            continue;
        }
        uint32_t si = lg->n_segs - 1;
        while (si > 0 && lg->segs[si].first_offset > it->ack.first_offset) {
            si--;
        }
        uint64_t pos = 0;
        if (lg->n_recs > 0 && lg->recs[lg->n_recs - 1].seg == si) {
            const reallog_rec *p = &lg->recs[lg->n_recs - 1];
            pos = p->pos + p->len;
        }
        reallog_rec r = {.first_offset = it->ack.first_offset, .pos = pos, .count = it->b.count,
                         .seg = si, .src_len = it->src_len, .len = (uint32_t)it->len};
        reallog_push_rec(lg, &r);
        lg->end_durable = it->ack.first_offset + it->b.count;
    }
}

static void *reallog_appender_main(void *arg)
{
    reallog_t *lg = arg;
    char text[320];
    pthread_mutex_lock(&lg->mu);
    for (;;) {
        while (!lg->q_head && !lg->stopping) {
            pthread_cond_wait(&lg->cv_work, &lg->mu);
        }
        if (!lg->q_head) {
            break;
        }
        /* take a group: BATCH takes up to one record, GROUP/NONE up to group_max */
        reallog_item *first = lg->q_head, *end = first;
        uint32_t recs = 0, limit = lg->opts.sync == REALLOG_SYNC_BATCH ? 1 : lg->opts.group_max;
        while (end && (end->dup || recs < limit)) {
            recs += !end->dup;
            end = end->next;
        }
        lg->q_head = end;
        if (!end) {
            lg->q_tail = &lg->q_head;
        }
        int rc = lg->failed;
        if (rc < 0) {
            snprintf(text, sizeof text, "%s", lg->failed_text);
        }
        pthread_mutex_unlock(&lg->mu);

        if (rc == 0 && recs > 0) {
            for (reallog_item *it = first; it != end; it = it->next) {
                if (!it->dup) {
                    reallog_item_encode(it);
                }
            }
            rc = reallog_write_items(lg, first, end, text, sizeof text);
        }

        pthread_mutex_lock(&lg->mu);
        for (reallog_item *it = first; it != end; it = it->next) {
            lg->q_bytes -= it->dup ? 0 : it->len;
        }
        pthread_cond_broadcast(&lg->cv_room);
        if (rc == 0) {
            reallog_publish(lg, first, end);
        } else if (lg->failed == 0) {
            lg->failed = rc;
            snprintf(lg->failed_text, sizeof lg->failed_text, "log failed: %.300s", text);
        }
        uint64_t end_off = lg->end_durable;
        reallog_notify_fn notify = lg->notify;
        void *notify_arg = lg->notify_arg;
        pthread_mutex_unlock(&lg->mu);

        for (reallog_item *it = first, *next; it != end; it = next) {
            next = it->next;
            it->done(it->arg, rc, rc == 0 ? &it->ack : NULL, rc == 0 ? "" : text);
            free(it->flags);
            free(it);
        }
        if (rc == 0 && recs > 0 && notify) {
            notify(notify_arg, end_off);
        }
        pthread_mutex_lock(&lg->mu);
    }
    pthread_mutex_unlock(&lg->mu);
    return NULL;
}

/* ---- public ---- */

int reallog_open(reallog_t *lg, const reallog_opts *o)
{
    memset(lg, 0, sizeof *lg);
    lg->lock_fd = -1;
    lg->dir_fd = -1;
    if (!o->dir || !o->dir[0]) {
        return err_set(-EINVAL, "data dir is empty");
    }
    if (o->segment_bytes < 4096) {
        return err_set(-EINVAL, "segment_bytes %" PRIu64 " is below 4096", o->segment_bytes);
    }
    if ((unsigned)o->sync > REALLOG_SYNC_NONE || o->group_max == 0 || o->max_queue_bytes == 0) {
        return err_set(-EINVAL, "bad sync policy or group_max");
    }
    if (o->env_id && (!o->env_id[0] || strlen(o->env_id) > MSG_MAX_ID_LEN)) {
        return err_set(-EINVAL, "env id must be 1..%u bytes", MSG_MAX_ID_LEN);
    }
    lg->opts = *o;
    lg->opts.dir = NULL;
    lg->opts.env_id = NULL;
    lg->dir = xstrdup(o->dir);
    pthread_mutex_init(&lg->mu, NULL);
    pthread_cond_init(&lg->cv_work, NULL);
    clock_cond_init(&lg->cv_room); /* timed waits (reallog_wait_room) */
    lg->q_tail = &lg->q_head;

    int rc = mkdir_parents(lg->dir);
    if (rc < 0) {
        goto fail;
    }
    lg->dir_fd = open(lg->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (lg->dir_fd < 0) {
        rc = err_set(-errno, "open data dir %s: %s", lg->dir, strerror(errno));
        goto fail;
    }
    lg->lock_fd = openat(lg->dir_fd, "LOCK", O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lg->lock_fd < 0) {
        rc = err_set(-errno, "open %s/LOCK: %s", lg->dir, strerror(errno));
        goto fail;
    }
    if (flock(lg->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        rc = errno == EWOULDBLOCK
                 ? err_set(-EBUSY, "data dir %s is in use by another process", lg->dir)
                 : err_set(-errno, "lock %s/LOCK: %s", lg->dir, strerror(errno));
        goto fail;
    }
    if ((rc = reallog_meta_read(lg)) < 0) {
        goto fail;
    }
    if (o->env_id) {
        if (lg->env_id[0] && strcmp(lg->env_id, o->env_id) != 0) {
            rc = err_set(TWIG_EMISMATCH, "env id '%s' differs from the data dir's '%s' (%s/meta)",
                         o->env_id, lg->env_id, lg->dir);
            goto fail;
        }
        snprintf(lg->env_id, sizeof lg->env_id, "%s", o->env_id);
    }
    if ((rc = reallog_load_segments(lg)) < 0) {
        goto fail;
    }
    lg->end_assigned = lg->end_durable;
    if (lg->n_segs == 0 && (rc = reallog_new_seg(lg, 0)) < 0) {
        goto fail;
    }
    if (pthread_create(&lg->appender, NULL, reallog_appender_main, lg) != 0) {
        rc = err_set(-EAGAIN, "cannot start the appender thread");
        goto fail;
    }
    lg->appender_started = 1;
    return 0;
fail:
    reallog_close(lg);
    return rc;
}

void reallog_close(reallog_t *lg)
{
    if (!lg->dir) {
        return;
    }
    if (lg->appender_started) {
        pthread_mutex_lock(&lg->mu);
        lg->stopping = 1;
        pthread_cond_signal(&lg->cv_work);
        pthread_mutex_unlock(&lg->mu);
        pthread_join(lg->appender, NULL);
    }
    for (uint32_t i = 0; i < lg->n_segs; i++) {
        if (i + 1 == lg->n_segs && lg->failed == 0) {
            fdatasync(lg->segs[i].fd);
        }
        close(lg->segs[i].fd);
    }
    for (uint32_t i = 0; i < lg->cap_srcs; i++) {
        free(lg->srcs[i].id);
        free(lg->srcs[i].hist);
    }
    free(lg->srcs);
    free(lg->segs);
    free(lg->recs);
    if (lg->lock_fd >= 0) {
        close(lg->lock_fd);   /* releases the flock */
    }
    if (lg->dir_fd >= 0) {
        close(lg->dir_fd);
    }
    pthread_cond_destroy(&lg->cv_work);
    pthread_cond_destroy(&lg->cv_room);
    pthread_mutex_destroy(&lg->mu);
    free(lg->dir);
    memset(lg, 0, sizeof *lg);
}

void reallog_set_notify(reallog_t *lg, reallog_notify_fn fn, void *arg)
{
    pthread_mutex_lock(&lg->mu);
    lg->notify = fn;
    lg->notify_arg = arg;
    pthread_mutex_unlock(&lg->mu);
}

/* schema: env id and dims of the run; fixes them with the first batch. Holds mu. */
static int reallog_check_schema(reallog_t *lg, const tbatch_t *b)
{
    if (lg->env_id[0] && strcmp(b->env_id, lg->env_id) != 0) {
        return err_set(-EINVAL, "env_id is '%s', the run's is '%s'", b->env_id, lg->env_id);
    }
    if (lg->obs_dim && (b->obs_dim != lg->obs_dim || b->act_dim != lg->act_dim)) {
        return err_set(-EINVAL, "%s is %u, the log's is %u",
                       b->obs_dim != lg->obs_dim ? "obs_dim" : "act_dim",
                       b->obs_dim != lg->obs_dim ? b->obs_dim : b->act_dim,
                       b->obs_dim != lg->obs_dim ? lg->obs_dim : lg->act_dim);
    }
    if (!lg->meta_written) {
        char old_env[sizeof lg->env_id];
        memcpy(old_env, lg->env_id, sizeof old_env);
        snprintf(lg->env_id, sizeof lg->env_id, "%s", b->env_id);
        lg->obs_dim = b->obs_dim;
        lg->act_dim = b->act_dim;
        int rc = reallog_meta_write(lg);
        if (rc < 0) {
            memcpy(lg->env_id, old_env, sizeof old_env);
            lg->obs_dim = 0;
            lg->act_dim = 0;
            return rc;
        }
        log_info("event=run_schema_fixed env_id=%s obs_dim=%u act_dim=%u", lg->env_id,
                 lg->obs_dim, lg->act_dim);
    }
    return 0;
}

int reallog_append_async(reallog_t *lg, const tbatch_t *b, reallog_done_fn done, void *arg)
{
    if (!b->source_id || !b->source_id[0] || strlen(b->source_id) > MSG_MAX_ID_LEN) {
        return err_set(-EINVAL, "source_id must be 1..%u bytes", MSG_MAX_ID_LEN);
    }
    if (!b->env_id || !b->env_id[0] || strlen(b->env_id) > MSG_MAX_ID_LEN) {
        return err_set(-EINVAL, "env_id must be 1..%u bytes", MSG_MAX_ID_LEN);
    }
    if (b->count == 0 || b->count > MSG_BATCH_MAX_COUNT) {
        return err_set(-EINVAL, "count is %u, expected 1..%u", b->count, MSG_BATCH_MAX_COUNT);
    }
    reallog_item *it = xcalloc(1, sizeof *it);
    it->b = *b;
    it->done = done;
    it->arg = arg;
    it->src_len = (uint32_t)strlen(b->source_id);
    it->hdr_len = REALLOG_HDR_BYTES + (uint32_t)pad8(it->src_len);
    it->len = reallog_record_len(it->src_len, b->count, b->obs_dim, b->act_dim);

    pthread_mutex_lock(&lg->mu);
    int rc = 0;
    if (lg->failed < 0) {
        rc = err_set(lg->failed, "%s", lg->failed_text);
    } else if (lg->stopping) {
        rc = err_set(TWIG_ESHUTDOWN, "the log is closing");
    } else if (lg->q_bytes > 0 && lg->q_bytes + it->len > lg->opts.max_queue_bytes) {
        rc = err_set(TWIG_EFULL, "append queue is full (%" PRIu64 " bytes wait for the disk)",
                     lg->q_bytes);
    } else {
        rc = reallog_check_schema(lg, b);
    }
    reallog_src *s = NULL;
    if (rc == 0) {
        s = reallog_src_find(lg, b->source_id);
        if (s && s->n_hist > 0 && b->seq <= s->max_seq) {
            const reallog_hist *h = reallog_src_lookup(s, b->seq);
            if (h) {
                it->dup = 1;
                it->ack = (reallog_ack){h->first_offset, h->count, 1, b->seq};
                if (h->count != b->count) {
                    rc = err_set(-EINVAL, "seq %" PRIu64 " of source '%s' was stored with count"
                                 " %u, this retry has count %u", b->seq, b->source_id, h->count,
                                 b->count);
                }
            } else {
                rc = err_set(-EINVAL, "seq %" PRIu64 " of source '%s' was never stored and is"
                             " below its last stored seq %" PRIu64 ": seqs must increase per"
                             " source", b->seq, b->source_id, s->max_seq);
            }
        } else {
            if (!s && !(s = reallog_src_add(lg, b->source_id))) {
                rc = err_set(TWIG_EFULL, "too many sources (%d)", REALLOG_MAX_SOURCES);
            } else {
                it->ack = (reallog_ack){lg->end_assigned, b->count, 0, b->seq};
                lg->end_assigned += b->count;
                reallog_src_remember(s, b->seq, it->ack.first_offset, b->count);
            }
        }
    }
    if (rc == 0) {
        lg->q_bytes += it->dup ? 0 : it->len;
        *lg->q_tail = it;
        lg->q_tail = &it->next;
        pthread_cond_signal(&lg->cv_work);
    }
    pthread_mutex_unlock(&lg->mu);
    if (rc < 0) {
        free(it);
    }
    return rc;
}

uint64_t reallog_batch_bytes(const tbatch_t *b)
{
    return reallog_record_len((uint32_t)strlen(b->source_id), b->count, b->obs_dim, b->act_dim);
}

int reallog_wait_room(reallog_t *lg, uint64_t bytes, int timeout_ms)
{
    struct timespec dl = clock_deadline_ms(timeout_ms);
    int rc = 0;
    pthread_mutex_lock(&lg->mu);
    while (lg->failed == 0 && !lg->stopping && lg->q_bytes > 0 &&
           lg->q_bytes + bytes > lg->opts.max_queue_bytes) {
        if (pthread_cond_timedwait(&lg->cv_room, &lg->mu, &dl) == ETIMEDOUT) {
            rc = err_set(TWIG_EFULL, "append queue stayed full for %d ms (%" PRIu64
                         " bytes wait for the disk)", timeout_ms, lg->q_bytes);
            break;
        }
    }
    if (rc == 0 && lg->failed < 0) {
        rc = err_set(lg->failed, "%s", lg->failed_text);
    }
    pthread_mutex_unlock(&lg->mu);
    return rc;
}

/* blocking append: wait on the done callback */
typedef struct reallog_waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int finished;
    int rc;
    reallog_ack ack;
    char text[320];
} reallog_waiter;

static void reallog_waiter_done(void *arg, int rc, const reallog_ack *ack, const char *text)
{
    reallog_waiter *w = arg;
    pthread_mutex_lock(&w->mu);
    w->rc = rc;
    if (ack) {
        w->ack = *ack;
    }
    snprintf(w->text, sizeof w->text, "%s", text);
    w->finished = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

int reallog_append(reallog_t *lg, reallog_ack *ack, const tbatch_t *b)
{
    reallog_waiter w = {.finished = 0};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    int rc = reallog_append_async(lg, b, reallog_waiter_done, &w);
    if (rc == 0) {
        pthread_mutex_lock(&w.mu);
        while (!w.finished) {
            pthread_cond_wait(&w.cv, &w.mu);
        }
        pthread_mutex_unlock(&w.mu);
        rc = w.rc;
        if (rc == 0) {
            *ack = w.ack;
        } else {
            err_set(rc, "%s", w.text);
        }
    }
    pthread_cond_destroy(&w.cv);
    pthread_mutex_destroy(&w.mu);
    return rc;
}

void reallog_rows_init(reallog_rows_t *r, uint32_t cap, uint32_t obs_dim, uint32_t act_dim)
{
    memset(r, 0, sizeof *r);
    r->cap = cap;
    r->obs_dim = obs_dim;
    r->act_dim = act_dim;
    r->obs = xmalloc((size_t)cap * obs_dim * sizeof(float));
    r->act = xmalloc((size_t)cap * act_dim * sizeof(float));
    r->reward = xmalloc((size_t)cap * sizeof(float));
    r->next_obs = xmalloc((size_t)cap * obs_dim * sizeof(float));
    r->terminated = xmalloc((size_t)cap * sizeof(int));
    r->truncated = xmalloc((size_t)cap * sizeof(int));
}

void reallog_rows_free(reallog_rows_t *r)
{
    free(r->obs);
    free(r->act);
    free(r->reward);
    free(r->next_obs);
    free(r->terminated);
    free(r->truncated);
    memset(r, 0, sizeof *r);
}

static int pread_all(int fd, void *buf, size_t n, uint64_t off)
{
    char *p = buf;
    while (n > 0) {
        ssize_t r = pread(fd, p, n, (off_t)off);
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (r == 0) {
            return -EIO;   /* the index says the bytes are there */
        }
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

/* read flags as bytes into the start of an int array, then widen in place from the end */
static int pread_flags(int fd, int *out, uint32_t n, uint64_t off)
{
    int rc = pread_all(fd, out, n, off);
    if (rc < 0) {
        return rc;
    }
    const uint8_t *bytes = (const uint8_t *)out;
    for (uint32_t i = n; i-- > 0;) {
        out[i] = bytes[i];
    }
    return 0;
}

/* a record's slice to copy, taken under the lock */
typedef struct reallog_span {
    int fd;
    uint64_t data;       /* byte position of the record's obs array */
    uint32_t count;      /* rows in the record */
    uint32_t row0;       /* first row to copy */
    uint32_t rows;
} reallog_span;

int reallog_fetch(reallog_t *lg, reallog_rows_t *rows, uint64_t from, uint32_t max_count)
{
    rows->count = 0;
    rows->first_offset = from;
    pthread_mutex_lock(&lg->mu);
    uint64_t end = lg->end_durable;
    if (from > end) {
        pthread_mutex_unlock(&lg->mu);
        return err_set(-ERANGE, "from_offset %" PRIu64 " is past the log's end %" PRIu64, from,
                       end);
    }
    if (from < end && (rows->obs_dim != lg->obs_dim || rows->act_dim != lg->act_dim)) {
        pthread_mutex_unlock(&lg->mu);
        return err_set(-EINVAL, "rows are %ux%u, the log's dims are %ux%u", rows->obs_dim,
                       rows->act_dim, lg->obs_dim, lg->act_dim);
    }
    uint64_t want = end - from;
    uint32_t cap = max_count < rows->cap ? max_count : rows->cap;
    uint32_t n = want < cap ? (uint32_t)want : cap;
    if (n == 0) {
        pthread_mutex_unlock(&lg->mu);
        return 0;
    }
    /* binary search: last record with first_offset <= from */
    uint64_t lo = 0, hi = lg->n_recs;
    while (hi - lo > 1) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (lg->recs[mid].first_offset <= from) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    reallog_span *spans = xmalloc(n * sizeof *spans);
    uint32_t n_spans = 0, got = 0;
    for (uint64_t i = lo; got < n; i++) {
        const reallog_rec *r = &lg->recs[i];
        uint32_t row0 = from + got > r->first_offset ? (uint32_t)(from + got - r->first_offset) : 0;
        uint32_t take = r->count - row0;
        if (take > n - got) {
            take = n - got;
        }
        spans[n_spans++] = (reallog_span){
            .fd = lg->segs[r->seg].fd,
            .data = r->pos + REALLOG_HDR_BYTES + pad8(r->src_len),
            .count = r->count,
            .row0 = row0,
            .rows = take,
        };
        got += take;
    }
    pthread_mutex_unlock(&lg->mu);

    /* copy each column slice straight into the rows (fds stay open until close) */
    size_t O = rows->obs_dim, A = rows->act_dim;
    uint32_t k = 0;
    int rc = 0;
    for (uint32_t s = 0; s < n_spans && rc == 0; s++) {
        const reallog_span *sp = &spans[s];
        uint64_t c = sp->count, a = sp->row0;
        uint64_t p_obs = sp->data, p_act = p_obs + c * O * 4, p_rew = p_act + c * A * 4;
        uint64_t p_next = p_rew + c * 4, p_flags = p_next + c * O * 4;
        if ((rc = pread_all(sp->fd, rows->obs + k * O, sp->rows * O * 4, p_obs + a * O * 4)) ||
            (rc = pread_all(sp->fd, rows->act + k * A, sp->rows * A * 4, p_act + a * A * 4)) ||
            (rc = pread_all(sp->fd, rows->reward + k, sp->rows * 4ull, p_rew + a * 4)) ||
            (rc = pread_all(sp->fd, rows->next_obs + k * O, sp->rows * O * 4,
                            p_next + a * O * 4)) ||
            (rc = pread_flags(sp->fd, rows->terminated + k, sp->rows, p_flags + a)) ||
            (rc = pread_flags(sp->fd, rows->truncated + k, sp->rows, p_flags + c + a))) {
            rc = err_set(rc, "read of the log at offset %" PRIu64 ": %s", from + k,
                         strerror(-rc));
        }
        k += sp->rows;
    }
    free(spans);
    if (rc == 0) {
        rows->count = n;
    }
    return rc;
}

uint64_t reallog_end(reallog_t *lg)
{
    pthread_mutex_lock(&lg->mu);
    uint64_t e = lg->end_durable;
    pthread_mutex_unlock(&lg->mu);
    return e;
}

void reallog_get_status(reallog_t *lg, reallog_status *st)
{
    memset(st, 0, sizeof *st);
    pthread_mutex_lock(&lg->mu);
    st->end_offset = lg->end_durable;
    st->segments = lg->n_segs;
    for (uint32_t i = 0; i < lg->n_segs; i++) {
        st->bytes += lg->segs[i].size;
    }
    st->sources = lg->n_srcs;
    st->obs_dim = lg->obs_dim;
    st->act_dim = lg->act_dim;
    snprintf(st->env_id, sizeof st->env_id, "%s", lg->env_id);
    pthread_mutex_unlock(&lg->mu);
}

void reallog_source_status(reallog_t *lg, const char *source_id, uint64_t *max_seq,
                           uint64_t *transitions)
{
    pthread_mutex_lock(&lg->mu);
    const reallog_src *s = reallog_src_find(lg, source_id);
    *max_seq = s ? s->max_seq : 0;
    *transitions = s ? s->transitions : 0;
    pthread_mutex_unlock(&lg->mu);
}
