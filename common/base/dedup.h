/* dedup.h - "stored before?" for pushes keyed by (source_id, seq): the one table behind
 * docs/design.md "Dedup: one rule for every push", used by the learner (PushSynthetic,
 * ReportEval) and by the model server's real log (AppendReal*).
 *
 * Per source the table keeps its newest seq and a history of stored entries (seq, the
 * acknowledgement the push got, the progress it added):
 *   - a seq above the newest is new: store it, then dedup_record;
 *   - a seq the history still holds is provably stored: answer its original entry, store
 *     nothing (duplicate);
 *   - any other seq at or below the newest (a gap filled late, or an entry since replaced)
 *     is refused (-EINVAL): it is not known to be stored and must never be acknowledged.
 *
 * History policy, one per table (dedup_opts.history):
 *   - DEDUP_HISTORY_WINDOW (the learner): DEDUP_WINDOW slots, slot seq % DEDUP_WINDOW; a
 *     stored seq replaces the entry in its slot. So seq s is provable exactly while no later
 *     stored seq is congruent to s mod DEDUP_WINDOW: with consecutive seqs, the last 64.
 *     Constant memory per source (one block of the slots, allocated at admission).
 *   - DEDUP_HISTORY_ALL (the real log): every stored entry, in seq order (24 bytes each,
 *     grown by doubling), so any old retry is proven; the newest entries can be rolled back
 *     (dedup_rollback) after a failed write.
 *
 * The table is bounded (max_sources). Each source's last activity is measured in the
 * caller's progress counter (learner push table: synthetic samples accepted; eval table:
 * evaluations stored; real log: log offsets), never in wall-clock time, so downtime forgets
 * nothing: it is now + count of its newest push (dedup_record). A new source that finds the
 * table full evicts the source quiet longest, if it has been quiet for at least `quiet`
 * progress; otherwise it is refused (TWIG_EFULL, retry later).
 *
 * Fence. Every identity has an epoch: max(the progress when it was admitted, the epoch
 * given at its first dedup_record), so it is at least anything the source could have read
 * (the learner passes the source_epoch the push carried; the real log passes 0, so an
 * identity's epoch is its first record's offset). Evicting one raises the fence above its
 * epoch. A source the table does not know is admitted only if its source_epoch is at or
 * above the fence (TWIG_EFENCED otherwise: the sender starts a new identity), so a
 * forgotten identity's retry is never mistaken for a new push. A new identity asks for
 * dedup_epoch() before its first push (Progress.source_epoch, LogStatus.source_epoch).
 *
 *     dedup_t d;
 *     dedup_init(&d, &(dedup_opts){.max_sources = 4096, .quiet = 1000000, .first_seq = 1});
 *     dedup_entry hit;
 *     int rc = dedup_check(&d, "rollout-0@5f1e", seq, epoch, progress, &hit);
 *     if (rc == DEDUP_NEW) { ...store...; dedup_record(&d, "rollout-0@5f1e", seq, epoch,
 *                                                      progress, stored, 0); }
 *     else if (rc == DEDUP_DUPLICATE) { ...answer hit.ack, duplicate... }
 *     else { ...refuse with rc (err_msg names the source)... }
 *
 * Sources are found through a hash index (open addressing, linear probing, backward-shift
 * deletion) allocated at init for max_sources; the sources themselves sit in one array
 * grown up to max_sources. dedup_check never allocates, so a retry or a refusal costs no
 * allocation. Not thread-safe: the caller locks.
 */
#ifndef TWIG_BASE_DEDUP_H
#define TWIG_BASE_DEDUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DEDUP_MAX_ID_LEN 255u   /* bytes in a source id (rpc/msg.c ties MSG_MAX_ID_LEN to it) */
#define DEDUP_WINDOW 64         /* slots of a DEDUP_HISTORY_WINDOW source */
#define DEDUP_NEVER UINT64_MAX  /* quiet: no source is ever quiet enough to be evicted */
#define DEDUP_IMAGE_V1 1u       /* image layouts (dedup_image_read): before fences */
#define DEDUP_IMAGE_V2 2u       /* with fence, evictions, and each source's epoch and activity */

enum dedup_verdict {
    DEDUP_NEW = 0,       /* store it, then dedup_record */
    DEDUP_DUPLICATE = 1, /* stored before: *hit is the stored entry */
};

typedef enum dedup_history {
    DEDUP_HISTORY_WINDOW = 0, /* slot seq % DEDUP_WINDOW (the learner) */
    DEDUP_HISTORY_ALL = 1,    /* every stored entry (the real log) */
} dedup_history;

typedef struct dedup_opts {
    size_t max_sources;    /* >= 1 */
    uint64_t quiet;        /* progress a source must be quiet for to be evicted; DEDUP_NEVER */
    dedup_history history;
    uint64_t first_seq;    /* seqs below it are refused (-EINVAL): the learner's start at 1 */
} dedup_opts;

typedef struct dedup_entry {
    uint64_t seq;
    uint64_t ack;   /* what the push was acknowledged with (learner: accepted; log: offset) */
    uint32_t count; /* progress the push added (log: its transitions; learner: 0) */
    bool used;      /* a window slot that holds an entry (always true in HISTORY_ALL) */
} dedup_entry;

typedef struct dedup_source {
    char id[DEDUP_MAX_ID_LEN + 1];
    uint32_t hash;
    uint64_t max_seq;   /* newest seq stored */
    uint64_t epoch;     /* max(progress at admission, the epoch it was recorded with) */
    uint64_t active;    /* progress at the end of its newest stored push (now + count) */
    uint64_t total;     /* progress its stored pushes added, summed (log: transitions) */
    size_t n_hist;      /* HISTORY_ALL: entries held */
    size_t cap_hist;
    dedup_entry *hist;  /* owned: WINDOW: DEDUP_WINDOW slots by seq % DEDUP_WINDOW;
                         * ALL: (n_hist) in increasing seq, hist[0] the identity's first */
} dedup_source;

typedef struct dedup {
    dedup_source *src; /* (n) owned, grown up to max_sources */
    size_t n, cap;
    uint32_t *index;   /* (cap_index) owned: 1 + position in src, 0 empty; a power of two */
    size_t cap_index;  /* at least 2 * max(n, max_sources) */
    size_t max_sources;
    uint64_t quiet;     /* progress a source must be quiet for to be evicted; DEDUP_NEVER */
    dedup_history history;
    uint64_t first_seq;
    uint64_t fence;     /* unknown sources need source_epoch >= fence */
    uint64_t evictions; /* sources evicted so far (all lifetimes) */
} dedup_t;

/* an empty table (allocates its index) */
void dedup_init(dedup_t *d, const dedup_opts *o);
/* release it; safe on a zeroed table */
void dedup_free(dedup_t *d);

/* the epoch a new identity starts with at progress now: max(now, fence) */
uint64_t dedup_epoch(const dedup_t *d, uint64_t now);

/* what a push (id, seq, epoch) is at progress now: DEDUP_NEW, DEDUP_DUPLICATE (*hit set to
 * the stored entry), or a refusal with err_msg naming the source: -EINVAL (seq below
 * first_seq, or at or below the source's newest and not provably stored), TWIG_EFENCED
 * (unknown source, epoch below the fence), TWIG_EFULL (unknown source, table full, nobody
 * quiet for `quiet`). id: 1..DEDUP_MAX_ID_LEN bytes, validated by the caller. Changes
 * nothing and allocates nothing. */
int dedup_check(const dedup_t *d, const char *id, uint64_t seq, uint64_t epoch, uint64_t now,
                dedup_entry *hit);

/* record a push dedup_check found DEDUP_NEW (same id, seq, now, nothing recorded in
 * between; or, replaying a log, any seq above the source's newest): an unknown source is
 * admitted with epoch max(now, epoch), evicting the quietest when the table is full (the
 * fence rises above the evicted identity's epoch). The source is active at now + count. */
void dedup_record(dedup_t *d, const char *id, uint64_t seq, uint64_t epoch, uint64_t now,
                  uint64_t ack, uint32_t count);

/* the source id, or NULL */
const dedup_source *dedup_find(const dedup_t *d, const char *id);
/* the source quiet longest (the smallest activity; the first of equals), NULL if empty */
const dedup_source *dedup_quietest(const dedup_t *d);
/* progress since s's last push at now (0 if now is behind it, e.g. right after a restore) */
uint64_t dedup_quiet_for(const dedup_source *s, uint64_t now);
/* forget s (a source of d), raising the fence above its epoch; counted in evictions */
void dedup_evict(dedup_t *d, const dedup_source *s);

/* HISTORY_ALL tables whose ack is the progress at the push (the log's first offset): forget
 * the source's newest entries whose ack is at or above `from` (progress voided by a failed
 * write) and the source itself if none remain (neither an eviction nor a fence: nothing
 * it stored is forgotten). Its newest seq and activity become those of its newest entry
 * left. Unknown id: nothing. */
void dedup_rollback(dedup_t *d, const char *id, uint64_t from);

/* evict the quietest sources, quiet or not, until at most max_sources remain (a table read
 * from a checkpoint of a larger max_sources); how many were evicted */
size_t dedup_trim(dedup_t *d);

/* the image of a HISTORY_WINDOW table (little-endian, for checkpoints), always written as
 * DEDUP_IMAGE_V2: u64 n, u64 fence, u64 evictions, then per source u32 id_len, id bytes,
 * u64 max_seq, u64 epoch, u64 active, then per slot u64 seq, u64 ack, u8 used.
 * DEDUP_IMAGE_V1 (read only) has u64 n, then per source id, max_seq and the slots: its
 * sources get epoch and activity `now` (the restored progress, which no source of that
 * image can have read an epoch above) and the fence 0. Entries' counts are not kept.
 * read: 0 or TWIG_ECORRUPT; d must be initialised (its contents are replaced, its options
 * kept; every source of the image is kept, see dedup_trim) */
size_t dedup_image_size(const dedup_t *d);
void dedup_image_write(uint8_t *buf, const dedup_t *d);
int dedup_image_read(dedup_t *d, const uint8_t *buf, size_t len, unsigned version, uint64_t now,
                     size_t *used);

#endif
