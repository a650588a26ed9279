/* reallog.c - durable segmented log of real transitions (format and rules in reallog.h) */
#include "modelserver/reallog.h"

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

#include "common/base/atomic_file.h"
#include "common/base/bytes.h"
#include "common/base/clock.h"
#include "common/base/crc32c.h"
#include "common/base/err.h"
#include "common/base/fs.h"
#include "common/base/log.h"
#include "common/base/mem.h"

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
#define REALLOG_RP_NAME "durable_end"
#define REALLOG_RP_MAGIC 0x31445754u  /* "TWD1" */
#define REALLOG_RP_SLOT 512u          /* one sector per slot; the file holds two */
#define REALLOG_RP_USED 64u           /* bytes of a slot that carry data (the rest is 0) */
#define REALLOG_TEXT_MAX 320

typedef struct reallog_seg {
    uint64_t first_offset;
    uint64_t size;       /* bytes written (whole records once a group is done) */
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

/* the recovery point: the log was durable up to end, at byte seg_bytes of segment seg_first */
typedef struct reallog_rp {
    uint64_t gen;
    uint64_t end;
    uint64_t seg_first;
    uint64_t seg_bytes;
    uint32_t sync;       /* reallog_sync of the writer */
} reallog_rp;

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

/* write all of iov at off, resuming after short writes; 0 or -errno */
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

reallog_opts reallog_opts_default(const char *dir)
{
    return (reallog_opts){
        .dir = dir,
        .env_id = NULL,
        .segment_bytes = REALLOG_DEFAULT_SEGMENT_BYTES,
        .sync = REALLOG_SYNC_BATCH,
        .group_max = 256,
        .max_queue_bytes = 64ull << 20,
        .max_sources = REALLOG_DEFAULT_MAX_SOURCES,
        .quiet_steps = REALLOG_DEFAULT_QUIET_STEPS,
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

/* ---- sources: the dedup table (common/base/dedup.h, HISTORY_ALL); callers hold mu ----
 *
 * Every stored batch is an entry {seq, ack = its first offset, count}. A source is admitted
 * at its first record's offset (its epoch: evicting it raises the fence to that offset + 1)
 * and is active at the end offset of its newest record. */

/* forget a source at log offset now: the fence rises above its identity's first record, so
 * a retry of anything it stored can never pass for a new identity */
static void reallog_src_evict(reallog_t *lg, const dedup_source *s, uint64_t now,
                              const char *reason, int at_open)
{
    char id[DEDUP_MAX_ID_LEN + 1];
    snprintf(id, sizeof id, "%s", s->id);
    uint64_t first = s->hist[0].ack, last_end = s->active;
    dedup_evict(&lg->srcs, s);
    if (at_open) {
        log_debug("event=source_evicted at_open=1 source=%s first_offset=%" PRIu64
                  " last_end=%" PRIu64 " quiet=%" PRIu64 " fence=%" PRIu64 " reason=%s",
                  id, first, last_end, now - last_end, lg->srcs.fence, reason);
    } else {
        log_info("event=source_evicted source=%s first_offset=%" PRIu64 " last_end=%" PRIu64
                 " quiet=%" PRIu64 " fence=%" PRIu64 " reason=%s",
                 id, first, last_end, now - last_end, lg->srcs.fence, reason);
    }
}

/* record a stored batch of `count` transitions at log offset first (its seq above the
 * source's newest): an unknown source is admitted, evicting the quietest if the table is
 * full (its quietness was checked live; at open the record was stored, so it goes anyway) */
static void reallog_src_record(reallog_t *lg, const char *id, uint64_t seq, uint64_t first,
                               uint32_t count, int at_open)
{
    dedup_t *d = &lg->srcs;
    if (!dedup_find(d, id) && d->n >= d->max_sources) {
        reallog_src_evict(lg, dedup_quietest(d), first, "table_full", at_open);
    }
    dedup_record(d, id, seq, 0, first, first, count);
}

/* what a batch is to the table at the assigned end, in the log's words: DEDUP_NEW,
 * DEDUP_DUPLICATE (*ack: the original acknowledgement), or a refusal (-EINVAL: a seq at or
 * below the newest never stored, or a retry whose count differs; TWIG_EFENCED; TWIG_EFULL),
 * counted. Changes nothing else and allocates nothing. */
static int reallog_src_check(reallog_t *lg, const tbatch_t *b, reallog_ack *ack)
{
    dedup_entry hit;
    int rc = dedup_check(&lg->srcs, b->source_id, b->seq, b->source_epoch, lg->end_assigned,
                         &hit);
    if (rc == DEDUP_DUPLICATE) {
        if (hit.count != b->count) {
            return err_set(-EINVAL, "seq %" PRIu64 " of source '%s' was stored with count %u,"
                           " this retry has count %u", b->seq, b->source_id, hit.count, b->count);
        }
        *ack = (reallog_ack){hit.ack, hit.count, 1, b->seq};
    } else if (rc == -EINVAL) {
        const dedup_source *s = dedup_find(&lg->srcs, b->source_id);
        TWIG_ASSERT(s); /* first_seq is 0: only a known source's old seq is refused */
        rc = err_set(-EINVAL, "seq %" PRIu64 " of source '%s' was never stored and is below"
                     " its last stored seq %" PRIu64 ": seqs must increase per source",
                     b->seq, b->source_id, s->max_seq);
    } else if (rc == TWIG_EFENCED) {
        lg->n_fenced++;
        rc = err_set(TWIG_EFENCED, "source '%s' is not known to the log (new, or evicted) and"
                     " its source_epoch %" PRIu64 " is below the fence %" PRIu64 ": start a"
                     " new identity from the current epoch (LogStatus.source_epoch)",
                     b->source_id, b->source_epoch, lg->srcs.fence);
    } else if (rc == TWIG_EFULL) {
        const dedup_source *q = dedup_quietest(&lg->srcs);
        lg->n_sources_full++;
        rc = err_set(TWIG_EFULL, "too many sources: the table holds %zu and the quietest,"
                     " '%s', has been quiet for %" PRIu64 " transitions, fewer than"
                     " source_quiet_steps %" PRIu64 ": retry later", lg->srcs.n, q->id,
                     dedup_quiet_for(q, lg->end_assigned), lg->opts.quiet_steps);
    }
    return rc;
}

/* a failed write voided the offsets from end_durable on: forget the entries that point
 * there (and a source whose only entries they were), so a retry is stored exactly once */
static void reallog_src_rollback(reallog_t *lg, const reallog_item *it)
{
    if (!it->dup) {
        dedup_rollback(&lg->srcs, it->b.source_id, lg->end_durable);
    }
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

/* write meta atomically (tmp file, fsync, rename, fsync dir) with the schema in lg */
static int reallog_meta_write(reallog_t *lg)
{
    char buf[512], path[PATH_MAX];
    int n = snprintf(buf, sizeof buf, REALLOG_META_MAGIC "\nenv_id=%s\nobs_dim=%u\nact_dim=%u\n",
                     lg->env_id, lg->obs_dim, lg->act_dim);
    if (snprintf(path, sizeof path, "%s/" REALLOG_META_NAME, lg->dir) >= (int)sizeof path) {
        return err_set(-ENAMETOOLONG, "data dir path is too long");
    }
    int rc = atomic_file_write(path, buf, (size_t)n);
    if (rc == 0) {
        lg->meta_written = 1;
    }
    return rc;
}

/* ---- the recovery point (DIR/durable_end) ---- */

static void reallog_rp_encode(uint8_t *slot, const reallog_rp *rp)
{
    memset(slot, 0, REALLOG_RP_SLOT);
    le32_put(slot, REALLOG_RP_MAGIC);
    le64_put(slot + 8, rp->gen);
    le64_put(slot + 16, rp->end);
    le64_put(slot + 24, rp->seg_first);
    le64_put(slot + 32, rp->seg_bytes);
    le32_put(slot + 40, rp->sync);
    le32_put(slot + 4, crc32c(slot + 8, REALLOG_RP_USED - 8));
}

/* 1 and *rp filled when the slot holds a valid recovery point, else 0 */
static int reallog_rp_decode(reallog_rp *rp, const uint8_t *slot)
{
    if (le32_get(slot) != REALLOG_RP_MAGIC || le32_get(slot + 4) != crc32c(slot + 8, REALLOG_RP_USED - 8)) {
        return 0;
    }
    *rp = (reallog_rp){.gen = le64_get(slot + 8), .end = le64_get(slot + 16),
                       .seg_first = le64_get(slot + 24), .seg_bytes = le64_get(slot + 32),
                       .sync = le32_get(slot + 40)};
    return rp->gen > 0 && rp->sync <= REALLOG_SYNC_NONE && rp->seg_first <= rp->end;
}

/* read DIR/durable_end: 1 with *rp (the newest valid slot) and lg->rp_fd open (oflags:
 * O_RDWR, or O_RDONLY for the log tool's check), 0 when the file does not exist, or a
 * negative code */
static int reallog_rp_read(reallog_t *lg, reallog_rp *rp, int oflags)
{
    int fd = openat(lg->dir_fd, REALLOG_RP_NAME, oflags | O_CLOEXEC);
    if (fd < 0) {
        return errno == ENOENT ? 0
                               : err_set(-errno, "open %s/" REALLOG_RP_NAME ": %s", lg->dir,
                                         strerror(errno));
    }
    uint8_t buf[2 * REALLOG_RP_SLOT];
    struct stat st;
    ssize_t n = fstat(fd, &st) == 0 && st.st_size == (off_t)sizeof buf
                    ? pread(fd, buf, sizeof buf, 0)
                    : -2;
    if (n != (ssize_t)sizeof buf) {
        int e = errno;
        close(fd);
        return n == -1 ? err_set(-e, "read %s/" REALLOG_RP_NAME ": %s", lg->dir, strerror(e))
                       : err_set(TWIG_ECORRUPT, "%s/" REALLOG_RP_NAME " is not %zu bytes",
                                 lg->dir, sizeof buf);
    }
    reallog_rp a, b;
    int va = reallog_rp_decode(&a, buf), vb = reallog_rp_decode(&b, buf + REALLOG_RP_SLOT);
    if (!va && !vb) {
        close(fd);
        return err_set(TWIG_ECORRUPT, "%s/" REALLOG_RP_NAME " holds no valid recovery point"
                       " (both slots fail their check)", lg->dir);
    }
    *rp = va && (!vb || a.gen > b.gen) ? a : b;
    lg->rp_fd = fd;
    lg->rp_gen = rp->gen;
    return 1;
}

/* create DIR/durable_end (atomic rename) holding *rp as gen 1 */
static int reallog_rp_create(reallog_t *lg, reallog_rp rp)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/" REALLOG_RP_NAME, lg->dir) >= (int)sizeof path) {
        return err_set(-ENAMETOOLONG, "data dir path is too long");
    }
    uint8_t buf[2 * REALLOG_RP_SLOT] = {0};
    rp.gen = 1;
    reallog_rp_encode(buf + REALLOG_RP_SLOT, &rp);   /* slot gen % 2 */
    int rc = atomic_file_write(path, buf, sizeof buf);
    if (rc < 0) {
        return rc;
    }
    lg->rp_fd = openat(lg->dir_fd, REALLOG_RP_NAME, O_RDWR | O_CLOEXEC);
    if (lg->rp_fd < 0) {
        return err_set(-errno, "open %s: %s", path, strerror(errno));
    }
    lg->rp_gen = 1;
    return 0;
}

/* write the next recovery point in place (slot gen % 2), and sync it when do_sync. The
 * appender thread, or open/close. On failure it may still have reached the disk whole:
 * rp_dirty says so, and the repair writes the durable end again before it truncates. */
static int reallog_rp_write(reallog_t *lg, uint64_t end, uint64_t seg_first, uint64_t seg_bytes,
                            int do_sync)
{
    reallog_rp rp = {.gen = lg->rp_gen + 1, .end = end, .seg_first = seg_first,
                     .seg_bytes = seg_bytes, .sync = (uint32_t)lg->opts.sync};
    uint8_t slot[REALLOG_RP_SLOT];
    reallog_rp_encode(slot, &rp);
    struct iovec v = {slot, sizeof slot};
    int rc = pwritev_all(lg->rp_fd, &v, 1, (rp.gen % 2) * REALLOG_RP_SLOT);
    if (rc == 0 && do_sync && fdatasync(lg->rp_fd) < 0) {
        rc = -errno;
    }
    if (rc < 0) {
        lg->rp_dirty = 1;
        return err_set(rc, "write %s/" REALLOG_RP_NAME ": %s", lg->dir, strerror(-rc));
    }
    lg->rp_gen = rp.gen;
    lg->rp_dirty = 0;
    return 0;
}

/* where the durable end lies: the segment of the last durable record and the byte after it
 * (segment 0, byte 0 for an empty log). Holds mu. */
static void reallog_durable_pos(reallog_t *lg, uint32_t *seg, uint64_t *bytes)
{
    if (lg->n_recs == 0) {
        *seg = 0;
        *bytes = 0;
        return;
    }
    const reallog_rec *r = &lg->recs[lg->n_recs - 1];
    *seg = r->seg;
    *bytes = r->pos + r->len;
}

/* ---- reading records: the scan open and the log tool (reallog_inspect_*) share ---- */

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

/* what the recovery point says about one segment's bytes */
typedef struct reallog_bound {
    uint64_t protect;    /* bytes [0, protect) hold acknowledged records; UINT64_MAX: all */
    uint64_t end;        /* the log offset at byte protect (protect < UINT64_MAX) */
    int check_end;       /* the recovery point's own segment: byte protect must be log offset end */
    int legacy;          /* no recovery point (a log from before it existed): the old rule */
    const reallog_rp *rp;
} reallog_bound;

/* the schema every record must have: the meta file's */
typedef struct reallog_schema {
    int meta;            /* the meta file exists */
    uint32_t obs_dim;
    uint32_t act_dim;
} reallog_schema;

/* by reallog_damage: the name in reports, and open's words */
static const struct {
    const char *name;
    const char *text;
} reallog_damages[REALLOG_DAMAGE_COUNT_] = {
    [REALLOG_DAMAGE_NONE] = {"none", "no damage"},
    [REALLOG_DAMAGE_HEADER_SHORT] = {"header_short", "record header cut short"},
    [REALLOG_DAMAGE_BAD_MAGIC] = {"bad_magic", "bad magic"},
    [REALLOG_DAMAGE_BAD_LENGTH] = {"bad_length", "bad record length"},
    [REALLOG_DAMAGE_RECORD_SHORT] = {"record_short", "record runs past the end of the file"},
    [REALLOG_DAMAGE_CRC] = {"crc", "CRC mismatch"},
    [REALLOG_DAMAGE_FIELDS] = {"fields", "record fields disagree with its length"},
    [REALLOG_DAMAGE_OFFSET_GAP] = {"offset_gap", "record offset breaks the sequence"},
    [REALLOG_DAMAGE_NO_META] = {"no_meta", "records exist but the meta file is missing"},
    [REALLOG_DAMAGE_DIMS] = {"dims", "record dims differ from the meta file"},
    [REALLOG_DAMAGE_RP_INSIDE] = {"rp_inside", "the recovery point falls inside this record"},
    [REALLOG_DAMAGE_SEGMENT_GAP] = {"segment_gap", "the segment starts past the log's end"},
    [REALLOG_DAMAGE_RP_MISMATCH] = {"rp_mismatch", "the recovery point names another offset"},
    [REALLOG_DAMAGE_SEGMENT_SHORT] = {"segment_short", "segment cut short of the recovery point"},
    [REALLOG_DAMAGE_SEGMENT_MISSING] = {"segment_missing",
                                        "the recovery point's segment is missing"},
    [REALLOG_DAMAGE_LOG_SHORT] = {"log_short", "the log ends before the recovery point"},
};

const char *reallog_damage_name(reallog_damage d)
{
    return (unsigned)d < REALLOG_DAMAGE_COUNT_ ? reallog_damages[d].name : "?";
}

/* the record did not parse: at the end of the last segment, a write a crash cut short */
static int reallog_damage_is_framing(reallog_damage d)
{
    return d >= REALLOG_DAMAGE_HEADER_SHORT && d <= REALLOG_DAMAGE_FIELDS;
}

static uint32_t reallog_crc(const uint8_t *rec, uint64_t len)
{
    return crc32c_update(crc32c(rec, 8), rec + 12, len - 12);
}

/* parse and verify one record at p (avail bytes to the end of the file); NONE or why not */
static reallog_damage reallog_parse(reallog_hdr *h, const uint8_t *p, uint64_t avail)
{
    if (avail < 12) {
        return REALLOG_DAMAGE_HEADER_SHORT;
    }
    if (le32_get(p) != REALLOG_MAGIC) {
        return REALLOG_DAMAGE_BAD_MAGIC;
    }
    uint64_t len = le32_get(p + 4);
    if (len < REALLOG_HDR_BYTES || len % 4 != 0 || len > REALLOG_MAX_RECORD) {
        return REALLOG_DAMAGE_BAD_LENGTH;
    }
    if (len > avail) {
        return REALLOG_DAMAGE_RECORD_SHORT;
    }
    if (reallog_crc(p, len) != le32_get(p + 8)) {
        return REALLOG_DAMAGE_CRC;
    }
    h->len = (uint32_t)len;
    h->count = le32_get(p + 12);
    h->first_offset = le64_get(p + 16);
    h->seq = le64_get(p + 24);
    h->obs_dim = le32_get(p + 32);
    h->act_dim = le32_get(p + 36);
    h->src_len = le16_get(p + 48);
    h->src = (const char *)p + REALLOG_HDR_BYTES;
    if (h->count == 0 || h->count > MSG_BATCH_MAX_COUNT || h->obs_dim == 0 ||
        h->obs_dim > MSG_MAX_DIM || h->act_dim == 0 || h->act_dim > MSG_MAX_DIM ||
        h->src_len == 0 || h->src_len > MSG_MAX_ID_LEN ||
        (reallog_record_len(h->src_len, h->count, h->obs_dim, h->act_dim) != len &&
         reallog_legacy_record_len(h->src_len, h->count, h->obs_dim, h->act_dim) != len)) {
        return REALLOG_DAMAGE_FIELDS;
    }
    return REALLOG_DAMAGE_NONE;
}

/* the byte of the first record in [from, size) that verifies (4-aligned: legacy records
 * are), *h filled; UINT64_MAX if none (tells a torn tail from corruption, and finds the
 * records behind a damaged one) */
static uint64_t reallog_next_valid(reallog_hdr *h, const uint8_t *map, uint64_t from,
                                   uint64_t size)
{
    for (uint64_t p = (from + 3) & ~(uint64_t)3; p + 12 <= size; p += 4) {
        if (le32_get(map + p) == REALLOG_MAGIC && !reallog_parse(h, map + p, size - p)) {
            return p;
        }
    }
    return UINT64_MAX;
}

/* called for each record a walk verifies, at byte pos of its segment */
typedef void (*reallog_rec_fn)(void *arg, const reallog_hdr *h, uint64_t pos);

/* how far one segment verifies */
typedef struct reallog_walk {
    uint64_t seg_first;       /* the segment's first offset (its name) */
    uint64_t pos;             /* bytes verified: the first bad record's byte, or the size */
    uint64_t end;             /* the log offset at pos */
    uint64_t end_at_protect;  /* the log offset at byte protect; UINT64_MAX: not reached */
    uint64_t records;         /* verified */
    reallog_damage why;       /* what stopped it; NONE: every byte verified */
} reallog_walk;

/* verify the records of one segment (map, size bytes) whose log must continue at offset
 * start, against bd and the schema: fn sees each good one in order */
static void reallog_walk_seg(reallog_walk *w, const uint8_t *map, uint64_t size,
                             uint64_t seg_first, uint64_t start, const reallog_bound *bd,
                             const reallog_schema *sc, reallog_rec_fn fn, void *arg)
{
    *w = (reallog_walk){.seg_first = seg_first, .end = start, .end_at_protect = UINT64_MAX};
    if (seg_first != start) {
        w->why = REALLOG_DAMAGE_SEGMENT_GAP;
        return;
    }
    while (w->pos < size) {
        if (w->pos == bd->protect) {
            w->end_at_protect = w->end;
        }
        reallog_hdr h;
        reallog_damage why = reallog_parse(&h, map + w->pos, size - w->pos);
        if (!why && h.first_offset != w->end) {
            why = REALLOG_DAMAGE_OFFSET_GAP;
        }
        if (!why && !sc->meta) {
            why = REALLOG_DAMAGE_NO_META;
        } else if (!why && (h.obs_dim != sc->obs_dim || h.act_dim != sc->act_dim)) {
            why = REALLOG_DAMAGE_DIMS;
        }
        if (!why && w->pos < bd->protect && w->pos + h.len > bd->protect) {
            why = REALLOG_DAMAGE_RP_INSIDE;
        }
        if (why) {
            w->why = why;
            return;
        }
        fn(arg, &h, w->pos);
        w->pos += h.len;
        w->end += h.count;
        w->records++;
    }
    if (w->pos == bd->protect && w->end_at_protect == UINT64_MAX) {
        w->end_at_protect = w->end;
    }
}

/* what a walk means under the rules of reallog.h */
typedef enum reallog_verdict {
    REALLOG_VERDICT_OK = 0,
    REALLOG_VERDICT_TORN,       /* a torn tail past everything acknowledged: truncate at pos */
    REALLOG_VERDICT_GAP,        /* the segment starts past the log's end */
    REALLOG_VERDICT_BAD_ACKED,  /* a bad record among acknowledged ones */
    REALLOG_VERDICT_RP_MISMATCH,/* the recovery point's byte is another offset */
    REALLOG_VERDICT_BAD,        /* a bad record past the recovery point that is no torn tail */
    REALLOG_VERDICT_SHORT,      /* the segment ends before the recovery point's byte */
} reallog_verdict;

static reallog_verdict reallog_judge_seg(const reallog_walk *w, const reallog_bound *bd,
                                         int is_last, const uint8_t *map, uint64_t size)
{
    if (w->why == REALLOG_DAMAGE_SEGMENT_GAP) {
        return REALLOG_VERDICT_GAP;
    }
    if (w->why && w->pos < bd->protect) {
        return REALLOG_VERDICT_BAD_ACKED;   /* acknowledged bytes are damaged: never a crash */
    }
    if (bd->check_end && w->end_at_protect != UINT64_MAX && w->end_at_protect != bd->end) {
        return REALLOG_VERDICT_RP_MISMATCH;
    }
    if (w->why) {
        int framing = is_last && reallog_damage_is_framing(w->why);
        reallog_hdr h;
        int torn = bd->legacy ? framing && reallog_next_valid(&h, map, w->pos + 8, size) ==
                                               UINT64_MAX
                              : framing;
        return torn ? REALLOG_VERDICT_TORN : REALLOG_VERDICT_BAD;
    }
    if (bd->protect != UINT64_MAX && w->pos < bd->protect) {
        return REALLOG_VERDICT_SHORT;
    }
    return REALLOG_VERDICT_OK;
}

/* " (written with fsync=none ...)" when the recovery point came from a NONE writer */
static const char *reallog_rp_note(const reallog_rp *rp)
{
    return rp && rp->sync == REALLOG_SYNC_NONE
               ? " (the log was written with fsync=none, which does not survive a power loss"
                 " or kernel crash)"
               : "";
}

/* open's words for a verdict other than OK and TORN on segment name of dir */
static void reallog_verdict_text(char *out, size_t n, const char *dir, const char *name,
                                 reallog_verdict v, const reallog_walk *w,
                                 const reallog_bound *bd)
{
    const char *why = reallog_damages[w->why].text, *note = reallog_rp_note(bd->rp);
    switch (v) {
    case REALLOG_VERDICT_GAP:
        snprintf(out, n, "segment %s/%s starts at offset %" PRIu64
                 " but the log before it ends at %" PRIu64 ": a segment before it is missing or was"
                 " cut short", dir, name, w->seg_first, w->end);
        break;
    case REALLOG_VERDICT_BAD_ACKED:
        if (bd->protect == UINT64_MAX) {
            snprintf(out, n, "segment %s/%s: bad record at byte %" PRIu64 " (log offset %" PRIu64
                     "): %s; the recovery point (%s/" REALLOG_RP_NAME ") lies in a later"
                     " segment, so it was acknowledged%s", dir, name, w->pos, w->end, why, dir,
                     note);
        } else {
            snprintf(out, n, "segment %s/%s: bad record at byte %" PRIu64 " (log offset %" PRIu64
                     "): %s; it lies before the recovery point (%s/" REALLOG_RP_NAME ": %" PRIu64
                     " transitions acknowledged, to byte %" PRIu64 " of this segment)%s",
                     dir, name, w->pos, w->end, why, dir, bd->end, bd->protect, note);
        }
        break;
    case REALLOG_VERDICT_RP_MISMATCH:
        snprintf(out, n, "segment %s/%s: byte %" PRIu64 " is log offset %" PRIu64 ", but the"
                 " recovery point (%s/" REALLOG_RP_NAME ") says %" PRIu64, dir, name,
                 bd->protect, w->end_at_protect, dir, bd->end);
        break;
    case REALLOG_VERDICT_BAD:
        snprintf(out, n, "segment %s/%s: bad record at byte %" PRIu64 " (log offset %" PRIu64
                 "): %s", dir, name, w->pos, w->end, why);
        break;
    case REALLOG_VERDICT_SHORT:
        snprintf(out, n, "segment %s/%s ends at byte %" PRIu64 " (log offset %" PRIu64 "), but"
                 " the recovery point (%s/" REALLOG_RP_NAME ") says its first %" PRIu64 " bytes,"
                 " to log offset %" PRIu64 ", were acknowledged: the file was cut short%s",
                 dir, name, w->pos, w->end, dir, bd->protect, bd->end, note);
        break;
    default:
        snprintf(out, n, "segment %s/%s: no damage", dir, name);
        break;
    }
}

/* what the recovery point says of the segment starting at first; 1 if it is its segment */
static int reallog_seg_bound(reallog_bound *bd, const reallog_rp *rp, uint64_t first)
{
    *bd = (reallog_bound){.protect = 0, .legacy = rp == NULL, .rp = rp};
    if (rp && first < rp->seg_first) {
        bd->protect = UINT64_MAX;
    } else if (rp && first == rp->seg_first) {
        bd->protect = rp->seg_bytes;
        bd->end = rp->end;
        bd->check_end = 1;
        return 1;
    }
    return 0;
}

/* after every segment verified to log offset end: does the log reach the recovery point?
 * NONE, SEGMENT_MISSING (its segment would start at the end) or LOG_SHORT; the text in out */
static reallog_damage reallog_rp_reached(char *out, size_t n, const char *dir,
                                         const reallog_rp *rp, int rp_seg_seen, uint64_t end)
{
    if (!rp || rp->end == 0 || rp_seg_seen) {
        return REALLOG_DAMAGE_NONE;
    }
    char name[32];
    reallog_seg_name(name, sizeof name, rp->seg_first);
    snprintf(out, n, "segment %s/%s is missing: the recovery point (%s/" REALLOG_RP_NAME ") says"
             " %" PRIu64 " transitions were acknowledged, to byte %" PRIu64 " of it, but the log"
             " ends at offset %" PRIu64 "%s", dir, name, dir, rp->end, rp->seg_bytes, end,
             reallog_rp_note(rp));
    return rp->seg_first == end ? REALLOG_DAMAGE_SEGMENT_MISSING : REALLOG_DAMAGE_LOG_SHORT;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* the segment files of dir by first offset: *firsts owned (NULL when none), sorted */
static int reallog_list_segs(const char *dir, uint64_t **firsts_out, uint32_t *n_out)
{
    *firsts_out = NULL;
    *n_out = 0;
    DIR *d = opendir(dir);
    if (!d) {
        return err_set(-errno, "opendir %s: %s", dir, strerror(errno));
    }
    uint64_t *firsts = NULL;
    uint32_t n = 0, cap = 0;
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
        if (len != REALLOG_SEG_NAME_LEN || strcmp(want, e->d_name) != 0) {
            rc = err_set(TWIG_ECORRUPT, "%s/%s is not a segment name (want 20 digits + .seg)",
                         dir, e->d_name);
            break;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            firsts = xrealloc(firsts, cap * sizeof *firsts);
        }
        firsts[n++] = v;
    }
    closedir(d);
    if (rc < 0) {
        free(firsts);
        return rc;
    }
    if (n > 0) {
        qsort(firsts, n, sizeof *firsts, cmp_u64);
    }
    *firsts_out = firsts;
    *n_out = n;
    return 0;
}

/* ---- open's scan ---- */

/* add a verified record to the index and replay its source's admission.
 *
 * Replay makes the same decisions live appends made, in the same order: a record from an
 * unknown source finds the table as the live admission found it (the quietness it measures
 * is log offsets, which the records carry), so it evicts the same source. Two things can
 * differ, and both are read as an eviction:
 *   - a record from a known source whose seq is not above its newest. Live, that source was
 *     evicted and its id came back as a new identity (seqs afresh from 1). The eviction is
 *     missing here when the batch that caused it was refused by a failed write (its offsets
 *     were voided, so it left no record: the disk was full), or when max_sources or
 *     quiet_steps were larger live than now. So: evict the old identity here (raising the
 *     fence as live) and admit the new one. Corruption cannot be the cause: the record
 *     passed its CRC and the offset sequence.
 *   - a full table whose quietest source is not quiet enough: live, the record found room
 *     (an eviction whose batch then failed left a slot free, or the options were larger).
 *     The record was stored, so the quietest is evicted anyway.
 * A source evicted live but kept here is only remembered longer, which is safe: its retries
 * are answered as duplicates instead of being fenced. */
static void reallog_load_rec(reallog_t *lg, const reallog_hdr *h, uint32_t seg, uint64_t pos,
                             const char *seg_name)
{
    char id[MSG_MAX_ID_LEN + 1];
    memcpy(id, h->src, h->src_len);
    id[h->src_len] = '\0';
    const dedup_source *s = dedup_find(&lg->srcs, id);
    if (s && h->seq <= s->max_seq) {
        log_info("event=source_readmitted source=%s seq=%" PRIu64 " prev_max_seq=%" PRIu64
                 " segment=%s/%s at_byte=%" PRIu64 " log_offset=%" PRIu64
                 " detail=\"evicted and back as a new identity while the log was last open\"",
                 id, h->seq, s->max_seq, lg->dir, seg_name, pos, h->first_offset);
        reallog_src_evict(lg, s, h->first_offset, "readmitted", 1);
        s = NULL;
    }
    if (!s && lg->srcs.n >= lg->srcs.max_sources) {
        const dedup_source *q = dedup_quietest(&lg->srcs);
        uint64_t quiet = dedup_quiet_for(q, h->first_offset);
        if (quiet < lg->opts.quiet_steps) {
            log_warn("event=source_evicted_early source=%s quiet=%" PRIu64
                     " source_quiet_steps=%" PRIu64 " log_offset=%" PRIu64
                     " detail=\"the record was admitted to a table with room: made by an"
                     " eviction whose batch then failed to write, or by larger options\"",
                     q->id, quiet, lg->opts.quiet_steps, h->first_offset);
        }
    }
    reallog_src_record(lg, id, h->seq, h->first_offset, h->count, 1);
    reallog_rec r = {.first_offset = h->first_offset, .pos = pos, .count = h->count,
                     .seg = seg, .src_len = h->src_len, .len = h->len};
    reallog_push_rec(lg, &r);
}

/* the walk's callback at open: index the record */
typedef struct reallog_load_ctx {
    reallog_t *lg;
    uint32_t seg;
    const char *name;
} reallog_load_ctx;

static void reallog_load_cb(void *arg, const reallog_hdr *h, uint64_t pos)
{
    reallog_load_ctx *c = arg;
    reallog_load_rec(c->lg, h, c->seg, pos, c->name);
}

/* scan one segment within what the recovery point says of it (bd) */
static int reallog_scan_seg(reallog_t *lg, uint32_t si, const char *name, int is_last,
                            const reallog_bound *bd)
{
    reallog_seg *sg = &lg->segs[si];
    struct stat st;
    if (fstat(sg->fd, &st) < 0) {
        return err_set(-errno, "stat %s/%s: %s", lg->dir, name, strerror(errno));
    }
    uint64_t size = (uint64_t)st.st_size;
    const uint8_t *map = NULL;
    if (size > 0 && sg->first_offset == lg->end_durable) {
        map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, sg->fd, 0);
        if (map == MAP_FAILED) {
            return err_set(-errno, "mmap %s/%s: %s", lg->dir, name, strerror(errno));
        }
    }
    reallog_schema sc = {lg->meta_written, lg->obs_dim, lg->act_dim};
    reallog_load_ctx ctx = {lg, si, name};
    reallog_walk w;
    reallog_walk_seg(&w, map, size, sg->first_offset, lg->end_durable, bd, &sc, reallog_load_cb,
                     &ctx);
    lg->end_durable = w.end;
    reallog_verdict v = reallog_judge_seg(&w, bd, is_last, map, size);
    int rc = 0;
    if (v == REALLOG_VERDICT_TORN) {
        /* a write cut short by a crash, past everything acknowledged */
        log_warn("event=torn_tail_truncated segment=%s/%s at_byte=%" PRIu64
                 " log_offset=%" PRIu64 " dropped_bytes=%" PRIu64 " reason=\"%s\" rule=%s",
                 lg->dir, name, w.pos, w.end, size - w.pos, reallog_damages[w.why].text,
                 bd->legacy ? "legacy_no_recovery_point" : "past_recovery_point");
        if (ftruncate(sg->fd, (off_t)w.pos) < 0 || fsync(sg->fd) < 0) {
            rc = err_set(-errno, "truncate %s/%s: %s", lg->dir, name, strerror(errno));
        }
    } else if (v != REALLOG_VERDICT_OK) {
        char text[REALLOG_TEXT_MAX + 2 * PATH_MAX];
        reallog_verdict_text(text, sizeof text, lg->dir, name, v, &w, bd);
        rc = err_set(TWIG_ECORRUPT, "%s", text);
    }
    if (map) {
        munmap((void *)map, size);
    }
    sg->size = w.pos;
    return rc;
}

/* find, sort, open and scan the segment files against the recovery point (NULL: none) */
static int reallog_load_segments(reallog_t *lg, const reallog_rp *rp)
{
    uint64_t *firsts;
    uint32_t n;
    int rc = reallog_list_segs(lg->dir, &firsts, &n);
    int rp_seg_seen = 0;
    for (uint32_t i = 0; rc == 0 && i < n; i++) {
        char name[32];
        reallog_seg_name(name, sizeof name, firsts[i]);
        int fd = openat(lg->dir_fd, name, O_RDWR | O_CLOEXEC);
        if (fd < 0) {
            rc = err_set(-errno, "open %s/%s: %s", lg->dir, name, strerror(errno));
            break;
        }
        reallog_seg sg = {.first_offset = firsts[i], .size = 0, .fd = fd};
        reallog_push_seg(lg, &sg);
        reallog_bound bd;
        rp_seg_seen |= reallog_seg_bound(&bd, rp, firsts[i]);
        rc = reallog_scan_seg(lg, lg->n_segs - 1, name, i + 1 == n, &bd);
    }
    free(firsts);
    char text[REALLOG_TEXT_MAX + 2 * PATH_MAX];
    if (rc == 0 &&
        reallog_rp_reached(text, sizeof text, lg->dir, rp, rp_seg_seen, lg->end_durable)) {
        rc = err_set(TWIG_ECORRUPT, "%s", text);
    }
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
            unlinkat(lg->dir_fd, name, 0);
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
    le32_put(h, REALLOG_MAGIC);
    le32_put(h + 4, (uint32_t)it->len);
    le32_put(h + 12, c);
    le64_put(h + 16, it->ack.first_offset);
    le64_put(h + 24, b->seq);
    le32_put(h + 32, b->obs_dim);
    le32_put(h + 36, b->act_dim);
    le64_put(h + 40, b->policy_version);
    le16_put(h + 48, (uint16_t)it->src_len);
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
    le32_put(h + 8, crc);
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

/* flush iov to sg at *at; 0 or a negative code with err_msg() */
static int reallog_flush_iov(reallog_t *lg, reallog_seg *sg, struct iovec *iov, int n_iov,
                             uint64_t *at, uint64_t pending)
{
    int rc = pwritev_all(sg->fd, iov, n_iov, *at);
    if (rc < 0) {
        return err_set(rc, "write segment %" PRIu64 ": %s", sg->first_offset, strerror(-rc));
    }
    *at += pending;
    pthread_mutex_lock(&lg->mu);
    sg->size = *at;
    pthread_mutex_unlock(&lg->mu);
    return 0;
}

/* write the records of items [first, end) into the current segments, rolling as needed, and
 * sync them (unless NONE); 0 or a negative code with err_msg() */
static int reallog_write_items(reallog_t *lg, reallog_item *first, reallog_item *end)
{
    struct iovec iov[REALLOG_IOV_CHUNK];
    int n_iov = 0;
    reallog_seg *sg = &lg->segs[lg->n_segs - 1];   /* only this thread appends segs */
    uint64_t at = sg->size;                          /* where iov starts */
    uint64_t pending = 0;                            /* bytes in iov */
    int rc = 0;
    for (reallog_item *it = first; it != end; it = it->next) {
        if (it->dup) {
            continue;
        }
        int roll = at + pending > 0 && at + pending + it->len > lg->opts.segment_bytes;
        if (n_iov + 6 > REALLOG_IOV_CHUNK || roll) {
            if ((rc = reallog_flush_iov(lg, sg, iov, n_iov, &at, pending)) < 0) {
                return rc;
            }
            pending = 0;
            n_iov = 0;
        }
        if (roll) {
            if (lg->opts.sync != REALLOG_SYNC_NONE && fdatasync(sg->fd) < 0) {
                return err_set(-errno, "fdatasync segment %" PRIu64 ": %s", sg->first_offset,
                               strerror(errno));
            }
            if ((rc = reallog_new_seg(lg, it->ack.first_offset)) < 0) {
                return rc;
            }
            sg = &lg->segs[lg->n_segs - 1];
            at = 0;
        }
        n_iov += reallog_item_iov(iov + n_iov, it);
        pending += it->len;
    }
    if (n_iov > 0 && (rc = reallog_flush_iov(lg, sg, iov, n_iov, &at, pending)) < 0) {
        return rc;
    }
    if (lg->opts.sync != REALLOG_SYNC_NONE && fdatasync(sg->fd) < 0) {
        return err_set(-errno, "fdatasync segment %" PRIu64 ": %s", sg->first_offset,
                       strerror(errno));
    }
    return 0;
}

/* after a failed group: make the files end at the durable end again, so the next write
 * starts there. The recovery point goes first when its own write failed (it may have
 * reached the disk naming the failed group's end, and must never be ahead of the records);
 * then segments started by the failed group are removed and the last one is cut back.
 * Appender thread, or close. 0 or a negative code with err_msg() (try again later). */
static int reallog_repair(reallog_t *lg)
{
    pthread_mutex_lock(&lg->mu);
    uint32_t keep;
    uint64_t bytes;
    reallog_durable_pos(lg, &keep, &bytes);
    uint64_t end = lg->end_durable, keep_first = lg->segs[keep].first_offset;
    pthread_mutex_unlock(&lg->mu);
    int rc = 0;
    if (lg->rp_dirty && (rc = reallog_rp_write(lg, end, keep_first, bytes,
                                               lg->opts.sync != REALLOG_SYNC_NONE)) < 0) {
        return rc;
    }
    int removed = 0;
    while (lg->n_segs - 1 > keep) {
        reallog_seg *sg = &lg->segs[lg->n_segs - 1];
        char name[32];
        reallog_seg_name(name, sizeof name, sg->first_offset);
        if (unlinkat(lg->dir_fd, name, 0) < 0 && errno != ENOENT) {
            return err_set(-errno, "remove %s/%s (written by a failed group): %s", lg->dir, name,
                           strerror(errno));
        }
        close(sg->fd);
        pthread_mutex_lock(&lg->mu);
        lg->n_segs--;   /* no durable record points into it */
        pthread_mutex_unlock(&lg->mu);
        removed = 1;
    }
    if (removed && lg->opts.sync != REALLOG_SYNC_NONE && (rc = reallog_fsync_dir(lg)) < 0) {
        return rc;
    }
    reallog_seg *sg = &lg->segs[keep];
    if (ftruncate(sg->fd, (off_t)bytes) < 0) {
        return err_set(-errno, "truncate segment %" PRIu64 " to byte %" PRIu64 ": %s",
                       sg->first_offset, bytes, strerror(errno));
    }
    pthread_mutex_lock(&lg->mu);
    sg->size = bytes;
    pthread_mutex_unlock(&lg->mu);
    lg->needs_repair = 0;
    return 0;
}

/* index the written items: their records are where write_items put them. Holds mu. */
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

/* write one group of records and then the recovery point that covers them; 0 or a negative
 * code with err_msg() */
static int reallog_commit(reallog_t *lg, reallog_item *first, reallog_item *end)
{
    int rc = lg->needs_repair ? reallog_repair(lg) : 0;
    if (rc < 0) {
        return rc;
    }
    uint64_t new_end = 0;
    for (reallog_item *it = first; it != end; it = it->next) {
        if (!it->dup) {
            reallog_item_encode(it);
            new_end = it->ack.first_offset + it->b.count;
        }
    }
    if ((rc = reallog_write_items(lg, first, end)) < 0) {
        return rc;
    }
    const reallog_seg *sg = &lg->segs[lg->n_segs - 1];
    return reallog_rp_write(lg, new_end, sg->first_offset, sg->size,
                            lg->opts.sync != REALLOG_SYNC_NONE);
}

static void reallog_item_free(reallog_item *it)
{
    free(it->flags);
    free(it);
}

static void *reallog_appender_main(void *arg)
{
    reallog_t *lg = arg;
    char text[REALLOG_TEXT_MAX], tail_text[REALLOG_TEXT_MAX + 64];
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
        pthread_mutex_unlock(&lg->mu);

        /* a group of duplicates only acknowledges: their records are durable already */
        int rc = recs > 0 ? reallog_commit(lg, first, end) : 0;
        if (rc < 0) {
            snprintf(text, sizeof text, "%s", err_msg());
        }

        pthread_mutex_lock(&lg->mu);
        for (reallog_item *it = first; it != end; it = it->next) {
            lg->q_bytes -= it->dup ? 0 : it->len;
        }
        reallog_item *tail = NULL;   /* failed with the group: queued behind it */
        int changed = 0;
        if (rc == 0) {
            reallog_publish(lg, first, end);
            if (recs > 0 && !lg->writable) {
                lg->writable = 1;
                changed = 1;
            }
        } else {
            /* every offset past the durable end is void: the batches queued behind were
             * numbered after the failed ones, so they fail too and numbering starts again
             * at the durable end */
            lg->n_write_failures++;
            tail = lg->q_head;
            lg->q_head = NULL;
            lg->q_tail = &lg->q_head;
            for (reallog_item *it = tail; it; it = it->next) {
                lg->q_bytes -= it->dup ? 0 : it->len;
            }
            for (reallog_item *it = first; it != end; it = it->next) {
                reallog_src_rollback(lg, it);
            }
            for (reallog_item *it = tail; it; it = it->next) {
                reallog_src_rollback(lg, it);
            }
            lg->end_assigned = lg->end_durable;
            lg->needs_repair = 1;
            if (lg->writable) {
                lg->writable = 0;
                snprintf(lg->unwritable_why, sizeof lg->unwritable_why, "%s", text);
                changed = 1;
            }
        }
        pthread_cond_broadcast(&lg->cv_room);
        uint64_t end_off = lg->end_durable;
        int writable = lg->writable;
        reallog_notify_fn notify = lg->notify;
        void *notify_arg = lg->notify_arg;
        reallog_health_fn health = lg->health;
        void *health_arg = lg->health_arg;
        pthread_mutex_unlock(&lg->mu);

        if (rc < 0 && reallog_repair(lg) < 0) {
            /* left for the next group to try (needs_repair stays set) */
            log_debug("event=log_repair_deferred detail=\"%s\"", err_msg());
        }
        /* the change first: whoever hears of this group's outcome sees the new state */
        if (changed && health) {
            health(health_arg, writable, writable ? "" : text);
        }
        for (reallog_item *it = first, *next; it != end; it = next) {
            next = it->next;
            it->done(it->arg, rc, rc == 0 ? &it->ack : NULL, rc == 0 ? "" : text);
            reallog_item_free(it);
        }
        if (tail) {
            snprintf(tail_text, sizeof tail_text, "a write queued before this batch failed: %s",
                     text);
        }
        for (reallog_item *it = tail, *next; it; it = next) {
            next = it->next;
            it->done(it->arg, rc, NULL, tail_text);
            reallog_item_free(it);
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

static int reallog_check_opts(const reallog_opts *o)
{
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
    if (o->env_id && (o->obs_dim == 0 || o->obs_dim > MSG_MAX_DIM || o->act_dim == 0 ||
                      o->act_dim > MSG_MAX_DIM)) {
        return err_set(-EINVAL, "env '%s': obs_dim %u and act_dim %u must be 1..%u", o->env_id,
                       o->obs_dim, o->act_dim, MSG_MAX_DIM);
    }
    if (!o->env_id && (o->obs_dim || o->act_dim)) {
        return err_set(-EINVAL, "obs_dim and act_dim are given without an env id");
    }
    if (o->max_sources > REALLOG_MAX_SOURCES_LIMIT) {
        return err_set(-EINVAL, "max_sources %u is above %u", o->max_sources,
                       REALLOG_MAX_SOURCES_LIMIT);
    }
    return 0;
}

/* the run's schema against the data dir's meta (read already) */
static int reallog_check_meta(reallog_t *lg, const reallog_opts *o)
{
    if (lg->meta_written &&
        (strcmp(lg->env_id, o->env_id) != 0 || lg->obs_dim != o->obs_dim ||
         lg->act_dim != o->act_dim)) {
        return err_set(TWIG_EMISMATCH, "the run's env is '%s' (obs_dim %u, act_dim %u) but the"
                       " data dir holds a log of '%s' (obs_dim %u, act_dim %u) (%s/meta): use"
                       " another data dir, or the run's env",
                       o->env_id, o->obs_dim, o->act_dim, lg->env_id, lg->obs_dim, lg->act_dim,
                       lg->dir);
    }
    snprintf(lg->env_id, sizeof lg->env_id, "%s", o->env_id);
    lg->obs_dim = o->obs_dim;
    lg->act_dim = o->act_dim;
    return 0;
}

/* sync what open found (records a killed process left in the page cache) and write a
 * recovery point for it, creating DIR/durable_end when there is none */
static int reallog_open_recovery_point(reallog_t *lg, int has_rp)
{
    for (uint32_t i = 0; i < lg->n_segs; i++) {
        if (fdatasync(lg->segs[i].fd) < 0) {
            return err_set(-errno, "fdatasync segment %" PRIu64 ": %s", lg->segs[i].first_offset,
                           strerror(errno));
        }
    }
    int rc = reallog_fsync_dir(lg);
    if (rc < 0) {
        return rc;
    }
    uint32_t seg;
    uint64_t bytes;
    reallog_durable_pos(lg, &seg, &bytes);
    reallog_rp rp = {.end = lg->end_durable, .seg_first = lg->segs[seg].first_offset,
                     .seg_bytes = bytes, .sync = (uint32_t)lg->opts.sync};
    if (!has_rp) {
        return reallog_rp_create(lg, rp);
    }
    return reallog_rp_write(lg, rp.end, rp.seg_first, rp.seg_bytes, 1);
}

int reallog_open(reallog_t *lg, const reallog_opts *o)
{
    memset(lg, 0, sizeof *lg);
    lg->lock_fd = -1;
    lg->dir_fd = -1;
    lg->rp_fd = -1;
    int rc = reallog_check_opts(o);
    if (rc < 0) {
        return rc;
    }
    lg->opts = *o;
    lg->opts.dir = NULL;
    lg->opts.env_id = NULL;
    if (lg->opts.max_sources == 0) {
        lg->opts.max_sources = REALLOG_DEFAULT_MAX_SOURCES;
    }
    if (lg->opts.quiet_steps == 0) {
        lg->opts.quiet_steps = REALLOG_DEFAULT_QUIET_STEPS;
    }
    dedup_init(&lg->srcs, &(dedup_opts){.max_sources = lg->opts.max_sources,
                                        .quiet = lg->opts.quiet_steps,
                                        .history = DEDUP_HISTORY_ALL, .first_seq = 0});
    lg->dir = xstrdup(o->dir);
    lg->writable = 1;
    pthread_mutex_init(&lg->mu, NULL);
    pthread_cond_init(&lg->cv_work, NULL);
    clock_cond_init(&lg->cv_room); /* timed waits (reallog_wait_room) */
    lg->q_tail = &lg->q_head;

    if ((rc = fs_mkdir_p(lg->dir)) < 0) {
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
    if ((rc = reallog_meta_read(lg)) < 0 || (o->env_id && (rc = reallog_check_meta(lg, o)) < 0)) {
        goto fail;
    }
    reallog_rp rp;
    if ((rc = reallog_rp_read(lg, &rp, O_RDWR)) < 0) {
        goto fail;
    }
    int has_rp = rc == 1;
    if ((rc = reallog_load_segments(lg, has_rp ? &rp : NULL)) < 0) {
        goto fail;
    }
    if (!has_rp && lg->n_segs > 0) {
        log_warn("event=recovery_point_missing file=%s/" REALLOG_RP_NAME " end_offset=%" PRIu64
                 " detail=\"a log from before the recovery point existed (or its file was"
                 " deleted): the tail was checked by the old rule (a bad last record is a torn"
                 " tail); the file is created now\"",
                 lg->dir, lg->end_durable);
    } else if (has_rp && lg->end_durable > rp.end) {
        log_info("event=unacknowledged_records_kept from_offset=%" PRIu64 " end_offset=%" PRIu64
                 " detail=\"written before a crash, never acknowledged; they verify\"",
                 rp.end, lg->end_durable);
    }
    if (o->env_id && !lg->meta_written && (rc = reallog_meta_write(lg)) < 0) {
        goto fail;
    }
    lg->end_assigned = lg->end_durable;
    if (lg->n_segs == 0 && (rc = reallog_new_seg(lg, 0)) < 0) {
        goto fail;
    }
    if ((rc = reallog_open_recovery_point(lg, has_rp)) < 0) {
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

/* a clean close: nothing past the durable end, and (NONE) everything synced */
static void reallog_close_sync(reallog_t *lg)
{
    if (lg->needs_repair && reallog_repair(lg) < 0) {
        log_warn("event=log_close_unrepaired detail=\"%s\"", err_msg());
        return;   /* open truncates what lies past the recovery point */
    }
    if (lg->opts.sync != REALLOG_SYNC_NONE) {
        return;   /* every acknowledged byte is synced already */
    }
    for (uint32_t i = 0; i < lg->n_segs; i++) {
        fdatasync(lg->segs[i].fd);
    }
    reallog_fsync_dir(lg);
    uint32_t seg;
    uint64_t bytes;
    reallog_durable_pos(lg, &seg, &bytes);
    reallog_rp_write(lg, lg->end_durable, lg->segs[seg].first_offset, bytes, 1); /* after them */
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
        reallog_close_sync(lg);
    }
    for (uint32_t i = 0; i < lg->n_segs; i++) {
        close(lg->segs[i].fd);
    }
    dedup_free(&lg->srcs);
    free(lg->segs);
    free(lg->recs);
    if (lg->rp_fd >= 0) {
        close(lg->rp_fd);
    }
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

void reallog_set_health(reallog_t *lg, reallog_health_fn fn, void *arg)
{
    pthread_mutex_lock(&lg->mu);
    lg->health = fn;
    lg->health_arg = arg;
    pthread_mutex_unlock(&lg->mu);
}

/* schema: env id and dims of the run. A log opened without one (tools, tests) takes the
 * first batch's and writes the meta file. Holds mu. */
static int reallog_check_schema(reallog_t *lg, const tbatch_t *b)
{
    if (lg->env_id[0] && strcmp(b->env_id, lg->env_id) != 0) {
        return err_set(-EINVAL, "env_id is '%s', the run's is '%s'", b->env_id, lg->env_id);
    }
    if (lg->obs_dim && (b->obs_dim != lg->obs_dim || b->act_dim != lg->act_dim)) {
        return err_set(-EINVAL, "%s is %u, the log's is %u (env %s)",
                       b->obs_dim != lg->obs_dim ? "obs_dim" : "act_dim",
                       b->obs_dim != lg->obs_dim ? b->obs_dim : b->act_dim,
                       b->obs_dim != lg->obs_dim ? lg->obs_dim : lg->act_dim, lg->env_id);
    }
    if (!lg->meta_written) {
        snprintf(lg->env_id, sizeof lg->env_id, "%s", b->env_id);
        lg->obs_dim = b->obs_dim;
        lg->act_dim = b->act_dim;
        int rc = reallog_meta_write(lg);
        if (rc < 0) {
            lg->env_id[0] = '\0';
            lg->obs_dim = 0;
            lg->act_dim = 0;
            return rc;
        }
        log_info("event=run_schema_fixed env_id=%s obs_dim=%u act_dim=%u by=first_batch",
                 lg->env_id, lg->obs_dim, lg->act_dim);
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
    uint32_t src_len = (uint32_t)strlen(b->source_id);
    uint64_t len = reallog_record_len(src_len, b->count, b->obs_dim, b->act_dim);

    /* every refusal, the dedup check's included, comes before the item is allocated */
    pthread_mutex_lock(&lg->mu);
    reallog_ack dup_ack = {0};
    int rc = 0;
    if (lg->stopping) {
        rc = err_set(TWIG_ESHUTDOWN, "the log is closing");
    } else if (lg->q_bytes > 0 && lg->q_bytes + len > lg->opts.max_queue_bytes) {
        rc = err_set(TWIG_EFULL, "append queue is full (%" PRIu64 " bytes wait for the disk)",
                     lg->q_bytes);
    } else if ((rc = reallog_check_schema(lg, b)) == 0) {
        rc = reallog_src_check(lg, b, &dup_ack);
    }
    if (rc < 0) {
        pthread_mutex_unlock(&lg->mu);
        return rc;
    }
    /* new, or a duplicate: its acknowledgement follows the queue (its record may be one of
     * those queued, not yet durable) */
    reallog_item *it = xcalloc(1, sizeof *it);
    it->b = *b;
    it->done = done;
    it->arg = arg;
    it->src_len = src_len;
    it->hdr_len = REALLOG_HDR_BYTES + (uint32_t)pad8(src_len);
    it->len = len;
    if (rc == DEDUP_DUPLICATE) {
        it->dup = 1;
        it->ack = dup_ack;
    } else {
        it->ack = (reallog_ack){lg->end_assigned, b->count, 0, b->seq};
        reallog_src_record(lg, b->source_id, b->seq, lg->end_assigned, b->count, 0);
        lg->end_assigned += b->count;
        lg->q_bytes += it->len;
    }
    *lg->q_tail = it;
    lg->q_tail = &it->next;
    pthread_cond_signal(&lg->cv_work);
    pthread_mutex_unlock(&lg->mu);
    return 0;
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
    while (!lg->stopping && lg->q_bytes > 0 && lg->q_bytes + bytes > lg->opts.max_queue_bytes) {
        if (pthread_cond_timedwait(&lg->cv_room, &lg->mu, &dl) == ETIMEDOUT) {
            rc = err_set(TWIG_EFULL, "append queue stayed full for %d ms (%" PRIu64
                         " bytes wait for the disk)", timeout_ms, lg->q_bytes);
            break;
        }
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
    char text[REALLOG_TEXT_MAX + 64];
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
    st->sources = (uint32_t)lg->srcs.n;
    st->max_sources = lg->opts.max_sources;
    st->obs_dim = lg->obs_dim;
    st->act_dim = lg->act_dim;
    snprintf(st->env_id, sizeof st->env_id, "%s", lg->env_id);
    st->fence = lg->srcs.fence;
    st->epoch = dedup_epoch(&lg->srcs, lg->end_durable);
    st->writable = lg->writable;
    st->write_failures = lg->n_write_failures;
    st->evictions = lg->srcs.evictions;
    st->fenced = lg->n_fenced;
    st->sources_full = lg->n_sources_full;
    pthread_mutex_unlock(&lg->mu);
}

void reallog_source_status(reallog_t *lg, const char *source_id, uint64_t *max_seq,
                           uint64_t *transitions)
{
    pthread_mutex_lock(&lg->mu);
    const dedup_source *s = dedup_find(&lg->srcs, source_id);
    *max_seq = s ? s->max_seq : 0;
    *transitions = s ? s->total : 0;
    pthread_mutex_unlock(&lg->mu);
}

/* ---- checking a data dir offline (twig-modelserver log check|repair) ---- */

int reallog_inspect_open(reallog_inspect_t *in, const char *dir, int exclusive)
{
    memset(in, 0, sizeof *in);
    in->dir_fd = -1;
    in->lock_fd = -1;
    in->exclusive = exclusive;
    in->dir = xstrdup(dir);
    int rc = 0;
    in->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (in->dir_fd < 0) {
        rc = err_set(-errno, "data dir %s: %s", dir, strerror(errno));
        goto fail;
    }
    /* open creates LOCK; a check writes nothing, so a dir without one has no holder */
    in->lock_fd = openat(in->dir_fd, "LOCK", (exclusive ? O_RDWR | O_CREAT : O_RDONLY) | O_CLOEXEC,
                         0644);
    if (in->lock_fd < 0 && (exclusive || errno != ENOENT)) {
        rc = err_set(-errno, "open %s/LOCK: %s", dir, strerror(errno));
        goto fail;
    }
    if (in->lock_fd >= 0 && flock(in->lock_fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) < 0) {
        rc = errno == EWOULDBLOCK
                 ? err_set(-EBUSY, "data dir %s is in use by another process (a running model"
                           " server: stop it first)", dir)
                 : err_set(-errno, "lock %s/LOCK: %s", dir, strerror(errno));
        goto fail;
    }
    if ((rc = reallog_list_segs(dir, &in->firsts, &in->n_segs)) < 0) {
        goto fail;
    }
    if (in->n_segs == 0 && faccessat(in->dir_fd, REALLOG_META_NAME, F_OK, 0) < 0 &&
        faccessat(in->dir_fd, REALLOG_RP_NAME, F_OK, 0) < 0) {
        rc = err_set(-EINVAL, "%s is not a real-transition log (no meta, " REALLOG_RP_NAME
                     " or segment file)", dir);
        goto fail;
    }
    in->sizes = xcalloc(in->n_segs ? in->n_segs : 1, sizeof *in->sizes);
    return 0;
fail:
    reallog_inspect_close(in);
    return rc;
}

void reallog_inspect_close(reallog_inspect_t *in)
{
    if (in->lock_fd >= 0) {
        close(in->lock_fd);
    }
    if (in->dir_fd >= 0) {
        close(in->dir_fd);
    }
    free(in->firsts);
    free(in->sizes);
    free(in->dir);
    memset(in, 0, sizeof *in);
    in->lock_fd = -1;
    in->dir_fd = -1;
}

/* a segment of the inspected dir, read-only and mapped (map NULL when empty) */
typedef struct reallog_seg_map {
    int fd;
    uint64_t size;
    const uint8_t *map;
} reallog_seg_map;

static int reallog_seg_map_open(reallog_seg_map *m, const reallog_inspect_t *in, uint32_t i)
{
    char name[32];
    reallog_seg_name(name, sizeof name, in->firsts[i]);
    *m = (reallog_seg_map){.fd = openat(in->dir_fd, name, O_RDONLY | O_CLOEXEC)};
    struct stat st;
    if (m->fd < 0 || fstat(m->fd, &st) < 0) {
        int rc = err_set(-errno, "open %s/%s: %s", in->dir, name, strerror(errno));
        if (m->fd >= 0) {
            close(m->fd);
        }
        return rc;
    }
    m->size = (uint64_t)st.st_size;
    if (m->size > 0) {
        m->map = mmap(NULL, m->size, PROT_READ, MAP_PRIVATE, m->fd, 0);
        if (m->map == MAP_FAILED) {
            int rc = err_set(-errno, "mmap %s/%s: %s", in->dir, name, strerror(errno));
            close(m->fd);
            return rc;
        }
    }
    return 0;
}

static void reallog_seg_map_close(reallog_seg_map *m)
{
    if (m->map) {
        munmap((void *)m->map, m->size);
    }
    close(m->fd);
}

static void reallog_count_cb(void *arg, const reallog_hdr *h, uint64_t pos)
{
    (void)arg;
    (void)h;
    (void)pos;
}

/* the records that still verify from byte from of segment si to the end of the log whose
 * first offset lies below limit (the acknowledged ones a cut there drops): how many, and
 * their transitions */
static int reallog_count_after(const reallog_inspect_t *in, uint32_t si, uint64_t from,
                               uint64_t limit, uint64_t *records, uint64_t *transitions)
{
    *records = 0;
    *transitions = 0;
    for (uint32_t i = si; i < in->n_segs; i++, from = 0) {
        reallog_seg_map m;
        int rc = reallog_seg_map_open(&m, in, i);
        if (rc < 0) {
            return rc;
        }
        reallog_hdr h;
        for (uint64_t p = reallog_next_valid(&h, m.map, from, m.size); p != UINT64_MAX;
             p = reallog_next_valid(&h, m.map, p + h.len, m.size)) {
            if (h.first_offset < limit) {
                *records += 1;
                *transitions += h.count;
            }
        }
        reallog_seg_map_close(&m);
    }
    return 0;
}

/* the damage found in segment si (walk w, verdict v): where the log is cut, what it drops */
static int reallog_inspect_damage(reallog_inspect_t *in, uint32_t si, reallog_verdict v,
                                  const reallog_walk *w, const reallog_bound *bd)
{
    reallog_report *r = &in->rep;
    reallog_seg_name(r->file, sizeof r->file, in->firsts[si]);
    reallog_verdict_text(r->detail, sizeof r->detail, in->dir, r->file, v, w, bd);
    r->at_byte = w->pos;
    r->cut_offset = w->end;
    in->cut_seg = si;
    in->cut_pos = w->pos;
    switch (v) {
    case REALLOG_VERDICT_GAP:
        r->kind = REALLOG_DAMAGE_SEGMENT_GAP;
        break;
    case REALLOG_VERDICT_RP_MISMATCH:
        /* the records hold another offset at the recovery point's byte: cut there */
        r->kind = REALLOG_DAMAGE_RP_MISMATCH;
        r->at_byte = bd->protect;
        r->cut_offset = w->end_at_protect;
        in->cut_pos = bd->protect;
        break;
    case REALLOG_VERDICT_SHORT:
        r->kind = REALLOG_DAMAGE_SEGMENT_SHORT;
        break;
    default:
        r->kind = w->why;
        break;
    }
    r->acknowledged = r->has_rp && r->cut_offset < r->rp_end;
    if (!r->acknowledged) {
        return 0;
    }
    r->dropped_transitions = r->rp_end - r->cut_offset;
    /* the records from the cut on that still verify (past a damaged one: its length may be
     * what is damaged, so they are found by their magic and CRC); the rest of the dropped
     * transitions lie in bytes that do not verify or are gone */
    uint64_t readable = 0;
    int rc = reallog_count_after(in, si, in->cut_pos + (reallog_damage_is_framing(r->kind) ? 4 : 0),
                                 r->rp_end, &r->dropped_records, &readable);
    r->dropped_unreadable = readable < r->dropped_transitions ? r->dropped_transitions - readable
                                                               : 0;
    return rc;
}

int reallog_inspect_scan(reallog_inspect_t *in, reallog_report *out)
{
    reallog_report *r = &in->rep;
    memset(r, 0, sizeof *r);
    in->scanned = 0;
    /* the meta and recovery point readers need only the dir of a log */
    reallog_t lg = {.dir = in->dir, .dir_fd = in->dir_fd, .rp_fd = -1, .lock_fd = -1};
    int rc = reallog_meta_read(&lg);
    if (rc < 0) {
        return rc;
    }
    reallog_rp rp = {0};
    int has_rp = reallog_rp_read(&lg, &rp, O_RDONLY);
    if (has_rp < 0) {
        return has_rp;
    }
    if (lg.rp_fd >= 0) {
        close(lg.rp_fd);
    }
    r->has_meta = lg.meta_written;
    snprintf(r->env_id, sizeof r->env_id, "%s", lg.env_id);
    r->obs_dim = lg.obs_dim;
    r->act_dim = lg.act_dim;
    r->has_rp = has_rp;
    r->rp_gen = rp.gen;
    r->rp_end = rp.end;
    r->rp_seg_first = rp.seg_first;
    r->rp_seg_bytes = rp.seg_bytes;
    r->rp_sync = (reallog_sync)rp.sync;
    r->segments = in->n_segs;
    in->cut_seg = in->n_segs;
    in->cut_pos = 0;

    const reallog_rp *rpp = has_rp ? &rp : NULL;
    reallog_schema sc = {lg.meta_written, lg.obs_dim, lg.act_dim};
    uint64_t end = 0;
    int rp_seg_seen = 0;
    for (uint32_t i = 0; i < in->n_segs && r->kind == REALLOG_DAMAGE_NONE; i++) {
        reallog_seg_map m;
        if ((rc = reallog_seg_map_open(&m, in, i)) < 0) {
            return rc;
        }
        r->bytes += m.size;
        reallog_bound bd;
        rp_seg_seen |= reallog_seg_bound(&bd, rpp, in->firsts[i]);
        reallog_walk w;
        reallog_walk_seg(&w, m.map, m.size, in->firsts[i], end, &bd, &sc, reallog_count_cb, NULL);
        reallog_verdict v = reallog_judge_seg(&w, &bd, i + 1 == in->n_segs, m.map, m.size);
        reallog_seg_map_close(&m);
        r->records += w.records;
        end = w.end;
        in->sizes[i] = w.pos;   /* the verified bytes: what a cut keeps */
        if (v == REALLOG_VERDICT_TORN) {
            r->torn_bytes = m.size - w.pos;
        } else if (v != REALLOG_VERDICT_OK) {
            if ((rc = reallog_inspect_damage(in, i, v, &w, &bd)) < 0) {
                return rc;
            }
        }
    }
    for (uint32_t i = in->cut_seg + 1; i < in->n_segs; i++) {
        struct stat st;
        char name[32];
        reallog_seg_name(name, sizeof name, in->firsts[i]);
        if (fstatat(in->dir_fd, name, &st, 0) == 0) {
            r->bytes += (uint64_t)st.st_size;   /* not scanned: past the damage */
        }
    }
    r->transitions = r->kind ? r->cut_offset : end;
    if (r->kind == REALLOG_DAMAGE_NONE) {
        r->kind = reallog_rp_reached(r->detail, sizeof r->detail, in->dir, rpp, rp_seg_seen, end);
        if (r->kind) {
            reallog_seg_name(r->file, sizeof r->file, rp.seg_first);
            r->at_byte = 0;
            r->cut_offset = end;
            r->acknowledged = 1;
            r->dropped_transitions = rp.end - end;
            r->dropped_unreadable = rp.end - end;   /* in files that are gone */
            in->cut_seg = in->n_segs;   /* nothing to truncate: the durable end moves back */
        }
    }
    /* the segment the cut log ends in */
    r->removed_segments = in->cut_seg < in->n_segs
                              ? in->n_segs - in->cut_seg - (in->cut_pos > 0)
                              : 0;
    if (r->kind && in->cut_seg < in->n_segs && in->cut_pos > 0) {
        reallog_seg_name(r->cut_file, sizeof r->cut_file, in->firsts[in->cut_seg]);
        r->cut_bytes = in->cut_pos;
    } else if (r->kind && in->cut_seg > 0) {
        reallog_seg_name(r->cut_file, sizeof r->cut_file, in->firsts[in->cut_seg - 1]);
        r->cut_bytes = in->sizes[in->cut_seg - 1];
    }
    in->scanned = 1;
    if (out) {
        *out = *r;
    }
    return 0;
}

int reallog_inspect_cut(reallog_inspect_t *in)
{
    TWIG_ASSERT(in->scanned && in->exclusive);
    const reallog_report *r = &in->rep;
    if (r->kind == REALLOG_DAMAGE_NONE) {
        return 0;
    }
    /* the segments past the cut go, newest first, so a crash halfway leaves a log that
     * ends early (which a second repair cuts the same way) */
    uint32_t keep = in->cut_seg + (in->cut_seg < in->n_segs && in->cut_pos > 0);
    for (uint32_t i = in->n_segs; i-- > keep;) {
        char name[32];
        reallog_seg_name(name, sizeof name, in->firsts[i]);
        if (unlinkat(in->dir_fd, name, 0) < 0 && errno != ENOENT) {
            return err_set(-errno, "remove %s/%s: %s", in->dir, name, strerror(errno));
        }
    }
    if (keep > in->cut_seg) {
        char name[32];
        reallog_seg_name(name, sizeof name, in->firsts[in->cut_seg]);
        int fd = openat(in->dir_fd, name, O_RDWR | O_CLOEXEC);
        if (fd < 0 || ftruncate(fd, (off_t)in->cut_pos) < 0 || fsync(fd) < 0) {
            int rc = err_set(-errno, "truncate %s/%s to byte %" PRIu64 ": %s", in->dir, name,
                             in->cut_pos, strerror(errno));
            if (fd >= 0) {
                close(fd);
            }
            return rc;
        }
        close(fd);
    }
    if (fsync(in->dir_fd) < 0) {
        return err_set(-errno, "fsync of data dir %s: %s", in->dir, strerror(errno));
    }
    /* the recovery point at the cut, in both slots: the newest gen wins and the other slot
     * holds the same point, so no older end can come back */
    reallog_rp rp = {.end = r->cut_offset, .sync = r->has_rp ? (uint32_t)r->rp_sync : 0};
    if (r->cut_file[0]) {
        rp.seg_first = strtoull(r->cut_file, NULL, 10);
        rp.seg_bytes = r->cut_bytes;
    }
    uint8_t buf[2 * REALLOG_RP_SLOT];
    for (int k = 1; k <= 2; k++) {
        rp.gen = r->rp_gen + (uint64_t)k;
        reallog_rp_encode(buf + (rp.gen % 2) * REALLOG_RP_SLOT, &rp);
    }
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/" REALLOG_RP_NAME, in->dir) >= (int)sizeof path) {
        return err_set(-ENAMETOOLONG, "data dir path is too long");
    }
    int rc = atomic_file_write(path, buf, sizeof buf);
    if (rc < 0) {
        return rc;
    }
    /* the dir as it is now, for a scan after the cut */
    free(in->firsts);
    free(in->sizes);
    in->sizes = NULL;
    in->scanned = 0;
    rc = reallog_list_segs(in->dir, &in->firsts, &in->n_segs);
    in->sizes = xcalloc(in->n_segs ? in->n_segs : 1, sizeof *in->sizes);
    return rc;
}
