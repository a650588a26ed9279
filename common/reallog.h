/* reallog.h - the durable, append-only, segmented log of real transitions.
 *
 * The model server owns it; actors append batches, model training, rollout workers and the
 * learner read it (over FetchReal). Every transition has an offset: 0, 1, 2, ... in append
 * order. A batch appended as one record gets a contiguous offset range.
 *
 *     reallog_t lg = {0};
 *     reallog_opts o = reallog_opts_default("runs/x/modelserver");
 *     if (reallog_open(&lg, &o) < 0) { log err_msg(); }
 *     reallog_ack ack;
 *     rc = reallog_append(&lg, &ack, &batch);          // blocks until durable
 *     reallog_rows_t rows = {0};
 *     reallog_rows_init(&rows, 4096, obs_dim, act_dim);
 *     rc = reallog_fetch(&lg, &rows, from, 4096);     // rows.count transitions from `from`
 *     reallog_close(&lg);
 *
 * On disk (DIR = the data dir):
 *   DIR/LOCK                 flock'ed while open: one process per data dir
 *   DIR/meta                 "twig-reallog 1", env_id, obs_dim, act_dim; written once (atomic
 *                            rename) when the first batch fixes the run's schema
 *   DIR/<first offset>.seg   segments, 20-digit zero-padded names; a new one starts when the
 *                            current one would exceed segment_bytes
 * A segment is a sequence of records, each 8-byte aligned, little-endian:
 *   u32 magic "TWR1" | u32 len (whole record) | u32 crc32c (of bytes [0,8) and [12,len))
 *   u32 count | u64 first_offset | u64 seq | u32 obs_dim | u32 act_dim | u64 policy_version
 *   u16 source_len | u16 0 | u32 0 | source_id, padded to 8
 *   f32 obs[count*obs_dim] | f32 act[count*act_dim] | f32 reward[count]
 *   f32 next_obs[count*obs_dim] | u8 terminated[count] | u8 truncated[count] | pad to 8
 * (Logs written before 2026-11-23 padded only the flags, so records with an odd number of
 * floats ended 4-aligned; open still reads them.)
 *
 * Open scans every record and checks its CRC, framing and offset continuity:
 *   - a bad record in the last segment with no valid record after it is a torn tail (crash
 *     in mid-write): it is truncated away (logged) and never served;
 *   - any other bad record means corruption: open fails with TWIG_ECORRUPT naming the
 *     segment file and byte offset. Nothing is repaired silently. (A power cut during a
 *     group write can leave a bad record with good ones after it, none of them acknowledged;
 *     that too is refused, and truncating the segment at the named byte recovers it.)
 *
 * Idempotency: each batch carries (source_id, seq), and a source's seqs must increase (gaps
 * allowed), which holds for a client sending one batch at a time or over one stream. The log
 * remembers every stored batch of every source: (seq, first offset, count), 24 bytes per
 * batch in memory (the record index already costs 32), rebuilt from the records at open. A
 * batch with seq above the source's highest is new. A retry of a stored seq, however old, is
 * answered with its original offsets (duplicate = 1) and stored nowhere. A seq at or below
 * the highest that was never stored (a gap filled late) is refused with -EINVAL.
 *
 * Durability (reallog_sync): an append is acknowledged only after its record is written and
 *   BATCH  fdatasync'ed, one sync per batch (the default);
 *   GROUP  fdatasync'ed together with every batch queued meanwhile (group commit);
 *   NONE   written to the page cache: survives a process crash (kill -9), not a power loss;
 *          after one, a segment that was rolled past may end torn and open then refuses the
 *          log (TWIG_ECORRUPT) rather than guess.
 * One appender thread does all writes in offset order; appends from any number of threads
 * queue for it. Readers see only acknowledged data. A write or sync error is sticky: every
 * later append fails with that error (restart the process; open truncates any partial write).
 *
 * Thread safety: every function but open/close may be called from any thread at any time.
 */
#ifndef TWIG_REALLOG_H
#define TWIG_REALLOG_H

#include <pthread.h>
#include <stdint.h>

#include "common/msg.h"

#define REALLOG_MAX_SOURCES 4096
#define REALLOG_DEFAULT_SEGMENT_BYTES (64ull << 20)

typedef enum reallog_sync {
    REALLOG_SYNC_BATCH = 0,
    REALLOG_SYNC_GROUP = 1,
    REALLOG_SYNC_NONE = 2,
} reallog_sync;

typedef struct reallog_opts {
    const char *dir;          /* borrowed; created (with parents) if missing */
    const char *env_id;       /* borrowed; NULL: the first batch fixes it */
    uint64_t segment_bytes;   /* roll segments above this size */
    reallog_sync sync;
    uint32_t group_max;       /* GROUP/NONE: at most this many batches per write */
    uint64_t max_queue_bytes; /* appends waiting for the disk above this fail with TWIG_EFULL */
} reallog_opts;

/* what an append is acknowledged with */
typedef struct reallog_ack {
    uint64_t first_offset;
    uint32_t count;
    int duplicate;            /* 1: (source_id, seq) was stored before, offsets are the original */
    uint64_t seq;             /* the batch's seq */
} reallog_ack;

/* called once per queued append, on the appender thread, after the record is durable
 * (rc == 0) or failed (rc < 0, detail in text: err_msg() is another thread's) */
typedef void (*reallog_done_fn)(void *arg, int rc, const reallog_ack *ack, const char *text);

/* called on the appender thread each time the log's end moves (for long polls) */
typedef void (*reallog_notify_fn)(void *arg, uint64_t end_offset);

/* rows read back from the log: owned arrays of capacity cap, row-major */
typedef struct reallog_rows {
    uint32_t cap;
    uint32_t obs_dim;
    uint32_t act_dim;
    uint32_t count;           /* rows filled by the last fetch */
    uint64_t first_offset;
    float *obs;               /* (cap, obs_dim) */
    float *act;               /* (cap, act_dim) */
    float *reward;            /* (cap) */
    float *next_obs;          /* (cap, obs_dim) */
    int *terminated;          /* (cap) */
    int *truncated;           /* (cap) */
} reallog_rows_t;

typedef struct reallog_status {
    uint64_t end_offset;      /* acknowledged transitions */
    uint64_t bytes;           /* bytes in all segments */
    uint32_t segments;
    uint32_t sources;
    uint32_t obs_dim;         /* 0 until the first batch */
    uint32_t act_dim;
    char env_id[MSG_MAX_ID_LEN + 1];  /* "" until fixed */
} reallog_status;

struct reallog_seg;
struct reallog_rec;
struct reallog_src;
struct reallog_item;

typedef struct reallog {
    char *dir;                        /* owned */
    reallog_opts opts;                /* dir/env_id pointers not kept */
    int lock_fd;
    int dir_fd;

    pthread_mutex_t mu;               /* guards everything below */
    pthread_cond_t cv_work;           /* appender: queue not empty or stopping */
    pthread_cond_t cv_room;           /* writers: queued bytes went down */
    pthread_t appender;
    int appender_started;
    int stopping;
    int failed;                       /* sticky error code, 0 if healthy */
    char failed_text[320];

    char env_id[MSG_MAX_ID_LEN + 1];  /* "" until fixed */
    int meta_written;
    uint32_t obs_dim;                 /* 0 until fixed */
    uint32_t act_dim;

    uint64_t end_assigned;            /* offsets handed out to queued batches */
    uint64_t end_durable;             /* offsets acknowledged and readable */

    struct reallog_seg *segs;         /* (n_segs) owned; last one is written */
    uint32_t n_segs;
    uint32_t cap_segs;
    struct reallog_rec *recs;         /* (n_recs) index of durable records, by offset */
    uint64_t n_recs;
    uint64_t cap_recs;

    struct reallog_src *srcs;         /* open-addressing table of sources (cap_srcs) */
    uint32_t n_srcs;
    uint32_t cap_srcs;

    struct reallog_item *q_head;      /* queued appends, offset order */
    struct reallog_item **q_tail;
    uint64_t q_bytes;                 /* record bytes queued, not yet written */

    reallog_notify_fn notify;
    void *notify_arg;
} reallog_t;

/* defaults: segment_bytes 64 MiB, sync BATCH, group_max 256, max_queue_bytes 64 MiB */
reallog_opts reallog_opts_default(const char *dir);

/* parse "batch", "group", "none"; 0 or -EINVAL */
int reallog_sync_parse(const char *s, reallog_sync *out);
const char *reallog_sync_name(reallog_sync s);

/* open (or create) the log in o->dir: lock, check the meta file against o->env_id, scan and
 * verify every record, truncate a torn tail, rebuild offsets and the dedup table, start the
 * appender. 0 or a negative code with err_msg(): -EBUSY (dir in use), TWIG_ECORRUPT,
 * TWIG_EMISMATCH (env id differs from the data dir's), -errno from the file system. */
int reallog_open(reallog_t *lg, const reallog_opts *o);

/* drain queued appends (each one acknowledged or failed), stop the appender, sync and
 * close. Safe on a zeroed struct. */
void reallog_close(reallog_t *lg);

/* set the end-moved callback (before appends start; NULL to remove) */
void reallog_set_notify(reallog_t *lg, reallog_notify_fn fn, void *arg);

/* queue a batch. b and its arrays are borrowed until done runs. Returns 0 and later calls
 * done exactly once; or fails at once (done never runs) with -EINVAL (bad field, env id or
 * dims differ from the run's, seq out of order), TWIG_EFULL (too many sources, or
 * max_queue_bytes waiting: back off and retry), TWIG_ESHUTDOWN (closing), or the
 * sticky error of a failed log; err_msg() names the problem. */
int reallog_append_async(reallog_t *lg, const tbatch_t *b, reallog_done_fn done, void *arg);

/* flow control for producers that can wait (client streams): block until `bytes` more fit
 * in the append queue, at most timeout_ms. 0, or TWIG_EFULL after the timeout, or the sticky
 * error of a failed log. */
int reallog_wait_room(reallog_t *lg, uint64_t bytes, int timeout_ms);

/* bytes a batch of these sizes takes in the queue and on disk */
uint64_t reallog_batch_bytes(const tbatch_t *b);

/* queue and wait until durable: 0 with ack filled, or a negative code with err_msg() */
int reallog_append(reallog_t *lg, reallog_ack *ack, const tbatch_t *b);

/* rows for reallog_fetch; the one allocation */
void reallog_rows_init(reallog_rows_t *r, uint32_t cap, uint32_t obs_dim, uint32_t act_dim);
void reallog_rows_free(reallog_rows_t *r);

/* copy up to min(max_count, rows->cap) acknowledged transitions starting at from into rows
 * (rows->count may be 0: from is the end). rows' dims must be the log's. 0, -ERANGE (from is
 * past the end), -EINVAL (dims differ), -errno on a read error. */
int reallog_fetch(reallog_t *lg, reallog_rows_t *rows, uint64_t from, uint32_t max_count);

/* acknowledged end offset */
uint64_t reallog_end(reallog_t *lg);

void reallog_get_status(reallog_t *lg, reallog_status *st);

/* what the log holds from source_id: its highest seq and its transitions (durable, or queued
 * and about to be); both 0 if the source never appended. A restarting source continues above
 * max_seq. */
void reallog_source_status(reallog_t *lg, const char *source_id, uint64_t *max_seq,
                           uint64_t *transitions);

#endif
