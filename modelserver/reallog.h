/* reallog.h - the durable, append-only, segmented log of real transitions.
 *
 * The model server owns it; actors append batches, model training, rollout workers and the
 * learner read it (over FetchReal). Every transition has an offset: 0, 1, 2, ... in append
 * order. A batch appended as one record gets a contiguous offset range.
 *
 *     reallog_t lg = {0};
 *     reallog_opts o = reallog_opts_default("runs/x/modelserver");
 *     o.env_id = "Pendulum-v1"; o.obs_dim = 3; o.act_dim = 1;   // the run's schema
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
 *   DIR/meta                 "twig-reallog 1", env_id, obs_dim, act_dim (atomic rename);
 *                            written at open from the run's schema (reallog_opts.env_id and
 *                            dims), or, when the opener gives none (tools, tests), by the
 *                            first batch
 *   DIR/durable_end          the recovery point: how far the log was durable (see below)
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
 * DIR/durable_end is 1024 bytes: two slots of 512 (one disk sector each), written in turn,
 * each little-endian:
 *   u32 magic "TWD1" | u32 crc32c (of bytes [8,64)) | u64 gen | u64 end_offset
 *   u64 seg_first (the segment the end lies in) | u64 seg_bytes (its bytes up to the end)
 *   u32 sync policy that wrote it | u32 0 | 16 bytes 0 | zeros to 512
 * The valid slot with the highest gen is the recovery point. After each group of records is
 * written (and fdatasync'ed), the appender writes the next slot (gen + 1) in place and
 * fdatasyncs it; only then is the group acknowledged. The file never changes size, so that
 * sync writes one sector and no metadata; a torn slot fails its CRC and the other slot, one
 * group older, still covers everything that was acknowledged. (Measured cost: docs/
 * performance.md, "Recovery point".) It is created (atomic rename) at the first open.
 *
 * Open scans every record and checks its CRC, framing and offset continuity against the
 * recovery point (end E, at byte B of segment S):
 *   - every record before E was acknowledged, so any damage there is corruption: a bad
 *     record before byte B of S (or anywhere in a segment before S), S cut short of B or
 *     missing, or the log ending before E. Open fails with TWIG_ECORRUPT naming the segment
 *     file and byte offset; nothing is repaired silently. (A crash cannot cause this: it
 *     tears only what was never acknowledged.)
 *   - records past E were never acknowledged (a crash came between their write and the
 *     recovery point's). Those that verify are kept (a retry finds them as duplicates); from
 *     the first one that does not parse (bad magic, length or CRC: a torn write), the last
 *     segment is truncated (logged). A bad record past E in a segment that is not the last,
 *     or a well-formed record that breaks the offset sequence, is still corruption.
 *   - a data dir written before the recovery point existed (segments, no durable_end): the
 *     old rule, logged once: a bad record in the last segment with no valid record after it
 *     is a torn tail and truncated, anything else is corruption. The file is then created.
 *     The same rule applies when durable_end is deleted: deleting it gives up the check.
 *
 * Durability (reallog_sync): an append is acknowledged only after its record and then the
 * recovery point covering it are written and
 *   BATCH  fdatasync'ed, one sync of each per batch (the default);
 *   GROUP  fdatasync'ed together with every batch queued meanwhile (group commit: one sync
 *          of each per group);
 *   NONE   written to the page cache, never synced before the ack: survives a process crash
 *          (kill -9), not a power loss or a kernel crash. After one, the recovery point may
 *          have reached the disk ahead of the records; open then refuses the log
 *          (TWIG_ECORRUPT, saying it was written with fsync=none) rather than guess, because
 *          acknowledged appends were lost. Close syncs both, so a clean shutdown is durable.
 * One appender thread does all writes in offset order; appends from any number of threads
 * queue for it. Readers see only acknowledged data.
 *
 * When a write or sync fails (disk full, I/O error), the group being written and every batch
 * queued behind it fail with that error (their offsets are void): the assigned end rolls
 * back to the durable end and their dedup entries are removed, so a retry is stored exactly
 * once. The log is then not writable (reallog_set_health); the appender truncates the partial
 * record (first rewriting the recovery point, if that was the write that failed) and each
 * later append tries the disk again: the first that is written makes the log writable again.
 *
 * Idempotency and sources (docs/design.md, "Dedup: one rule for every push"; the table is
 * common/base/dedup.h with every entry kept, DEDUP_HISTORY_ALL): each batch
 * carries (source_id, seq) and source_epoch; a source's seqs must increase (gaps allowed),
 * which holds for a client sending one batch at a time or over one stream. For each source
 * it knows the log remembers every stored batch: (seq, first offset, count), 24 bytes per
 * batch in memory (the record index already costs 32), rebuilt from the records at open. A
 * batch with seq above the source's highest is new. A retry of a stored seq, however old, is
 * answered with its original offsets (duplicate = 1) and stored nowhere. A seq at or below
 * the highest that was never stored (a gap filled late) is refused with -EINVAL.
 * The table of known sources holds at most max_sources. A source's last activity is the end
 * offset of its newest record, so its quietness is measured in log offsets, never in time.
 * A new source that finds the table full evicts the quietest source if that one has been
 * quiet for at least quiet_steps transitions; otherwise it is refused (TWIG_EFULL, counted).
 * Evicting forgets the source's history and raises the fence to (the offset of that
 * identity's first record + 1). A batch from a source the log does not know whose
 * source_epoch is below the fence is refused with TWIG_EFENCED (counted): it may be a retry of
 * a forgotten identity, and the sender must start a new one, reading the current epoch
 * (reallog_status.epoch: the durable end, or the fence if that is higher) before its first
 * push. Open replays the same admissions and evictions in log order (see reallog.c). A
 * refused append (a gap, a differing retry, fenced, table or queue full) allocates nothing.
 * Known limit: an evicted actor's transitions count (reallog_source_status) starts again
 * from 0 with its new identity (a later issue makes the real-step budget global); the
 * default quiet amount exceeds every real-step budget in configs/, so a run's own actors are
 * never evicted.
 *
 * Thread safety: every function but open/close may be called from any thread at any time.
 */
#ifndef TWIG_REALLOG_H
#define TWIG_REALLOG_H

#include <pthread.h>
#include <stdint.h>

#include "common/base/dedup.h"
#include "common/rpc/msg.h"

#define REALLOG_DEFAULT_SEGMENT_BYTES (64ull << 20)
#define REALLOG_DEFAULT_MAX_SOURCES 4096u        /* sources the dedup table holds */
#define REALLOG_MAX_SOURCES_LIMIT 65536u         /* and at most this many (table memory) */
#define REALLOG_DEFAULT_QUIET_STEPS 1000000ull   /* above configs/' largest budget (400k) */

typedef enum reallog_sync {
    REALLOG_SYNC_BATCH = 0,
    REALLOG_SYNC_GROUP = 1,
    REALLOG_SYNC_NONE = 2,
} reallog_sync;

typedef struct reallog_opts {
    const char *dir;          /* borrowed; created (with parents) if missing */
    const char *env_id;       /* borrowed: the run's env id; with obs_dim and act_dim the
                               * schema every batch must have, checked against the data dir's
                               * meta at open and written there before the first append.
                               * NULL (tools, tests): the meta's, or the first batch's */
    uint32_t obs_dim;         /* 1..MSG_MAX_DIM with env_id, else 0 */
    uint32_t act_dim;
    uint64_t segment_bytes;   /* roll segments above this size */
    reallog_sync sync;
    uint32_t group_max;       /* GROUP/NONE: at most this many batches per write */
    uint64_t max_queue_bytes; /* appends waiting for the disk above this fail with TWIG_EFULL */
    uint32_t max_sources;     /* sources remembered, 1..REALLOG_MAX_SOURCES_LIMIT; 0: default */
    uint64_t quiet_steps;     /* a source quiet for this many transitions may be evicted by a
                               * new one when the table is full; 0: default */
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

/* called on the appender thread when the log stops being writable (writable 0, why: the
 * failed write) or becomes writable again (1, why ""); once per change, before the done
 * callbacks of the appends whose write made the change */
typedef void (*reallog_health_fn)(void *arg, int writable, const char *why);

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
    uint32_t sources;         /* sources in the table now */
    uint32_t max_sources;
    uint32_t obs_dim;         /* 0 until the schema is fixed */
    uint32_t act_dim;
    char env_id[MSG_MAX_ID_LEN + 1];  /* "" until fixed */
    uint64_t fence;           /* unknown sources below this epoch are refused */
    uint64_t epoch;           /* what a new source identity starts with: max(end, fence) */
    int writable;             /* 0 after a failed write, until a write succeeds */
    /* counters since open */
    uint64_t write_failures;  /* writes (groups) that failed */
    uint64_t evictions;       /* sources evicted (live and replayed at open) */
    uint64_t fenced;          /* appends refused with TWIG_EFENCED */
    uint64_t sources_full;    /* new sources refused with TWIG_EFULL: nobody quiet enough */
} reallog_status;

struct reallog_seg;
struct reallog_rec;
struct reallog_item;

typedef struct reallog {
    char *dir;                        /* owned */
    reallog_opts opts;                /* dir/env_id pointers not kept */
    int lock_fd;
    int dir_fd;
    int rp_fd;                        /* DIR/durable_end, read-write */

    pthread_mutex_t mu;               /* guards everything below but the appender's own */
    pthread_cond_t cv_work;           /* appender: queue not empty or stopping */
    pthread_cond_t cv_room;           /* writers: queued bytes went down */
    pthread_t appender;
    int appender_started;
    int stopping;
    int writable;                     /* 0 from a failed write until the next good one */
    char unwritable_why[320];         /* the failed write */

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

    dedup_t srcs;                     /* the sources: every stored (seq, first offset,
                                       * count) of each; its fence and evictions */

    struct reallog_item *q_head;      /* queued appends, offset order */
    struct reallog_item **q_tail;
    uint64_t q_bytes;                 /* record bytes queued, not yet written */

    /* counters (reallog_status) */
    uint64_t n_write_failures;
    uint64_t n_fenced;
    uint64_t n_sources_full;

    /* the appender's own (and open/close's) */
    uint64_t rp_gen;                  /* gen of the newest recovery point slot written */
    int rp_dirty;                     /* a failed write of the recovery point may have landed */
    int needs_repair;                 /* a failed group left bytes past the durable end */

    reallog_notify_fn notify;
    void *notify_arg;
    reallog_health_fn health;
    void *health_arg;
} reallog_t;

/* defaults: no schema, segment_bytes 64 MiB, sync BATCH, group_max 256, max_queue_bytes
 * 64 MiB, max_sources 4096, quiet_steps 1,000,000 */
reallog_opts reallog_opts_default(const char *dir);

/* parse "batch", "group", "none"; 0 or -EINVAL */
int reallog_sync_parse(const char *s, reallog_sync *out);
const char *reallog_sync_name(reallog_sync s);

/* open (or create) the log in o->dir: lock, check the meta file against o's schema (and
 * write it if new), read the recovery point, scan and verify every record against it,
 * truncate a torn tail past it, replay the source table, write a fresh recovery point,
 * start the appender. 0 or a negative code with err_msg(): -EINVAL (bad options), -EBUSY
 * (dir in use), TWIG_ECORRUPT (naming the file and byte offset), TWIG_EMISMATCH (the run's
 * env id or dims differ from the data dir's: both named), -errno from the file system. */
int reallog_open(reallog_t *lg, const reallog_opts *o);

/* drain queued appends (each one acknowledged or failed), stop the appender, sync and
 * close. Safe on a zeroed struct. */
void reallog_close(reallog_t *lg);

/* set the end-moved callback (before appends start; NULL to remove) */
void reallog_set_notify(reallog_t *lg, reallog_notify_fn fn, void *arg);

/* set the writable-changed callback (NULL to remove; after it returns, fn is not running) */
void reallog_set_health(reallog_t *lg, reallog_health_fn fn, void *arg);

/* queue a batch. b and its arrays are borrowed until done runs. Returns 0 and later calls
 * done exactly once; or fails at once (done never runs) with -EINVAL (bad field, env id or
 * dims differ from the run's, seq out of order), TWIG_EFENCED (unknown source whose
 * source_epoch is below the fence: start a new identity), TWIG_EFULL (the source table is
 * full and nobody is quiet enough, or max_queue_bytes wait: back off and retry), or
 * TWIG_ESHUTDOWN (closing); err_msg() names the problem. A write that fails later reaches
 * done with its error (-ENOSPC, -EIO, ...). */
int reallog_append_async(reallog_t *lg, const tbatch_t *b, reallog_done_fn done, void *arg);

/* flow control for producers that can wait (client streams): block until `bytes` more fit
 * in the append queue, at most timeout_ms. 0 (also when the log is closing: the append
 * then says so), or TWIG_EFULL after the timeout. */
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
 * and about to be); both 0 if the source is not in the table (never appended, or evicted).
 * A restarting source continues above max_seq. */
void reallog_source_status(reallog_t *lg, const char *source_id, uint64_t *max_seq,
                           uint64_t *transitions);

/* ---- checking a data dir offline (twig-modelserver log check|repair, modelserver/logtool.h)
 *
 * reallog_inspect_open locks a data dir (shared for a check, exclusive for a repair; a
 * running model server's dir is refused with -EBUSY) and reads its meta and recovery point
 * without writing anything. reallog_inspect_scan verifies every segment with the code open
 * uses (the same record parser, offset and recovery-point rules) and reports the first
 * damage open would refuse the log for, with what it costs: the log offset from which the
 * log can no longer be trusted (the cut) and the acknowledged transitions and records that
 * lie from there to the recovery point. A torn tail past the recovery point alone is not
 * damage (open truncates it): it is counted in torn_bytes. reallog_inspect_cut then cuts the
 * log there: the segment holding the cut is truncated at the last good record, later
 * segments are removed and DIR/durable_end is rewritten (both slots) to the cut, so that
 * reallog_open accepts the dir. */

typedef enum reallog_damage {
    REALLOG_DAMAGE_NONE = 0,
    REALLOG_DAMAGE_HEADER_SHORT,    /* fewer than 12 bytes left for a record header */
    REALLOG_DAMAGE_BAD_MAGIC,
    REALLOG_DAMAGE_BAD_LENGTH,      /* the length field is out of range */
    REALLOG_DAMAGE_RECORD_SHORT,    /* the record runs past the end of its file */
    REALLOG_DAMAGE_CRC,
    REALLOG_DAMAGE_FIELDS,          /* count, dims or source length disagree with the length */
    REALLOG_DAMAGE_OFFSET_GAP,      /* a record's first offset breaks the sequence */
    REALLOG_DAMAGE_NO_META,         /* records but no meta file */
    REALLOG_DAMAGE_DIMS,            /* a record's dims differ from the meta file's */
    REALLOG_DAMAGE_RP_INSIDE,       /* the recovery point's byte falls inside a record */
    REALLOG_DAMAGE_SEGMENT_GAP,     /* a segment starts past the end of the log before it:
                                     * a segment before it is missing or cut short */
    REALLOG_DAMAGE_RP_MISMATCH,     /* the recovery point's byte is another log offset */
    REALLOG_DAMAGE_SEGMENT_SHORT,   /* the recovery point's segment ends before its byte */
    REALLOG_DAMAGE_SEGMENT_MISSING, /* the recovery point's segment does not exist */
    REALLOG_DAMAGE_LOG_SHORT,       /* the segments end before the recovery point's segment */
    REALLOG_DAMAGE_COUNT_
} reallog_damage;

/* "crc", "segment_gap", ...: the kind's name in reports */
const char *reallog_damage_name(reallog_damage d);

#define REALLOG_SEG_NAME_LEN 24       /* 20 digits + ".seg" */

typedef struct reallog_report {
    /* meta */
    int has_meta;
    char env_id[MSG_MAX_ID_LEN + 1];
    uint32_t obs_dim;
    uint32_t act_dim;
    /* the recovery point (has_rp 0: a log from before it existed, checked by the old rule) */
    int has_rp;
    uint64_t rp_gen;
    uint64_t rp_end;                  /* acknowledged transitions */
    uint64_t rp_seg_first;            /* the segment the end lies in */
    uint64_t rp_seg_bytes;            /* and its bytes up to the end */
    reallog_sync rp_sync;
    /* the files */
    uint32_t segments;
    uint64_t bytes;                   /* in all segment files */
    /* verified in order up to the first damage (all of them for a clean log) */
    uint64_t records;
    uint64_t transitions;             /* = the log offset where verification stopped */
    uint64_t torn_bytes;              /* clean: unacknowledged bytes open would truncate */
    /* the first damage (kind NONE: the log is clean) */
    reallog_damage kind;
    char file[REALLOG_SEG_NAME_LEN + 1];  /* the segment it is in (or that is missing) */
    uint64_t at_byte;                 /* its byte in that file */
    int acknowledged;                 /* it lies before the recovery point */
    uint64_t cut_offset;              /* the first log offset it affects: the cut */
    char cut_file[REALLOG_SEG_NAME_LEN + 1];  /* the segment the cut log ends in ("": none) */
    uint64_t cut_bytes;               /* and its bytes */
    uint32_t removed_segments;        /* segment files the cut removes */
    uint64_t dropped_transitions;     /* acknowledged, in [cut_offset, rp_end) */
    uint64_t dropped_records;         /* records from the cut on, below rp_end, that still
                                       * verify (a cut drops them too) */
    uint64_t dropped_unreadable;      /* of dropped_transitions, those in no such record:
                                       * in damaged bytes or missing files */
    char detail[512];                 /* open's words for the damage */
} reallog_report;

typedef struct reallog_inspect {
    char *dir;                        /* owned */
    int dir_fd;
    int lock_fd;
    int exclusive;
    uint64_t *firsts;                 /* (n_segs) owned: the segments' first offsets, sorted */
    uint64_t *sizes;                  /* (n_segs) owned: their file sizes */
    uint32_t n_segs;
    uint32_t cut_seg;                 /* after a scan with damage: the segment the cut is in
                                       * (n_segs: none, the log ends before the damage) */
    uint64_t cut_pos;                 /* and its byte (0: the segment goes) */
    int scanned;
    reallog_report rep;
} reallog_inspect_t;

/* lock dir (exclusive: for a cut) and list its segments; writes nothing. 0, -ENOENT/-ENOTDIR
 * (no such dir), -EINVAL (not a log: no meta, durable_end or segment), -EBUSY (in use:
 * naming the dir), TWIG_ECORRUPT (a file that is not a segment name), -errno; err_msg() */
int reallog_inspect_open(reallog_inspect_t *in, const char *dir, int exclusive);

/* verify the whole log into *rep (also kept in in->rep). 0 (rep->kind says whether it is
 * damaged), TWIG_ECORRUPT when the meta file or durable_end cannot be read as theirs (no
 * cut can fix those), or -errno from reading; err_msg() */
int reallog_inspect_scan(reallog_inspect_t *in, reallog_report *rep);

/* after a scan that found damage, with the exclusive lock: cut the log at the damage (see
 * above), each change synced. 0 (nothing to do on a clean log), or -errno with err_msg() */
int reallog_inspect_cut(reallog_inspect_t *in);

/* unlock and free; safe on a zeroed struct */
void reallog_inspect_close(reallog_inspect_t *in);

#endif
