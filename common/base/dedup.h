/* dedup.h - "stored before?" for pushes keyed by (source_id, seq): the learner's side of
 * docs/design.md "Dedup: one rule for every push", for PushSynthetic and ReportEval alike.
 *
 * Per source the table keeps its newest seq and a window of DEDUP_WINDOW slots (slot
 * seq % DEDUP_WINDOW) holding the acknowledgement each stored seq got:
 *   - a seq above the newest is new: store it, then dedup_record;
 *   - a seq whose slot still holds it is provably stored: answer its original ack, store
 *     nothing (duplicate);
 *   - any other seq at or below the newest (a gap filled late, or a slot overwritten since)
 *     is refused (-EINVAL): it is not known to be stored and must never be acknowledged.
 *
 * The table is bounded (max_sources). Each source's last activity is measured in the
 * caller's progress counter (for the push table: synthetic samples accepted; for the eval
 * table: evaluations stored), never in wall-clock time, so downtime forgets nothing. A new
 * source that finds the table full evicts the source quiet longest, if it has been quiet for
 * at least `quiet` progress; otherwise it is refused (TWIG_EFULL, retry later).
 *
 * Fence. Every identity has an epoch: max(the progress when it was admitted, the
 * source_epoch it carried), so it is at least anything the source could have read. Evicting
 * one raises the fence above its epoch. A source the table does not know is admitted only
 * if its source_epoch is at or above the fence (TWIG_EFENCED otherwise: the sender starts a
 * new identity), so a forgotten identity's retry is never mistaken for a new push. A new
 * identity asks for dedup_epoch() before its first push (Progress.source_epoch).
 *
 *     dedup_t d;
 *     dedup_init(&d, 4096, 1000000);
 *     uint64_t ack;
 *     int rc = dedup_check(&d, "rollout-0@5f1e", seq, epoch, progress, &ack);
 *     if (rc == DEDUP_NEW) { ...store...; dedup_record(&d, "rollout-0@5f1e", seq, epoch,
 *                                                      progress, stored); }
 *     else if (rc == DEDUP_DUPLICATE) { ...answer ack, duplicate... }
 *     else { ...refuse with rc (err_msg names the source)... }
 *
 * Not thread-safe: the caller locks. The table grows as sources arrive (never above
 * max_sources entries, except what a checkpoint brought in above it, see dedup_trim).
 */
#ifndef TWIG_BASE_DEDUP_H
#define TWIG_BASE_DEDUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DEDUP_MAX_ID_LEN 255u   /* bytes in a source id (rpc/msg.c ties MSG_MAX_ID_LEN to it) */
#define DEDUP_WINDOW 64         /* seqs whose acknowledgement a source's entry can prove */
#define DEDUP_NEVER UINT64_MAX  /* quiet: no source is ever quiet enough to be evicted */
#define DEDUP_IMAGE_V1 1u       /* image layouts (dedup_image_read): before fences */
#define DEDUP_IMAGE_V2 2u       /* with fence, evictions, and each source's epoch and activity */

enum dedup_verdict {
    DEDUP_NEW = 0,       /* store it, then dedup_record */
    DEDUP_DUPLICATE = 1, /* stored before: *ack is the original acknowledgement */
};

typedef struct dedup_slot {
    uint64_t seq;
    uint64_t ack;
    bool used;
} dedup_slot;

typedef struct dedup_source {
    char id[DEDUP_MAX_ID_LEN + 1];
    uint64_t max_seq;             /* newest seq stored */
    uint64_t epoch;               /* max(progress at admission, its source_epoch) */
    uint64_t active;              /* progress at its newest stored push */
    dedup_slot win[DEDUP_WINDOW]; /* indexed by seq % DEDUP_WINDOW */
} dedup_source;

typedef struct dedup {
    dedup_source *src; /* (n) owned, grown up to max_sources */
    size_t n, cap;
    size_t max_sources;
    uint64_t quiet;     /* progress a source must be quiet for to be evicted; DEDUP_NEVER */
    uint64_t fence;     /* unknown sources need source_epoch >= fence */
    uint64_t evictions; /* sources evicted so far (all lifetimes) */
} dedup_t;

/* an empty table of at most max_sources (>= 1) */
void dedup_init(dedup_t *d, size_t max_sources, uint64_t quiet);
/* release it; safe on a zeroed table */
void dedup_free(dedup_t *d);

/* the epoch a new identity starts with at progress now: max(now, fence) */
uint64_t dedup_epoch(const dedup_t *d, uint64_t now);

/* what a push (id, seq, epoch) is at progress now: DEDUP_NEW, DEDUP_DUPLICATE (*ack set),
 * or a refusal with err_msg naming the source: -EINVAL (seq 0, or at or below the source's
 * newest and not provably stored), TWIG_EFENCED (unknown source, epoch below the fence),
 * TWIG_EFULL (unknown source, table full, nobody quiet for `quiet`). id: 1..DEDUP_MAX_ID_LEN
 * bytes, validated by the caller. Changes nothing. */
int dedup_check(const dedup_t *d, const char *id, uint64_t seq, uint64_t epoch, uint64_t now,
                uint64_t *ack);

/* record a push dedup_check found DEDUP_NEW (same id, seq, epoch, now, nothing recorded in
 * between): an unknown source is admitted, evicting the quietest when the table is full
 * (the fence rises above the evicted identity's epoch) */
void dedup_record(dedup_t *d, const char *id, uint64_t seq, uint64_t epoch, uint64_t now,
                  uint64_t ack);

/* evict the quietest sources, quiet or not, until at most max_sources remain (a table read
 * from a checkpoint of a larger max_sources); how many were evicted */
size_t dedup_trim(dedup_t *d);

/* the image (little-endian, for checkpoints), always written as DEDUP_IMAGE_V2:
 * u64 n, u64 fence, u64 evictions, then per source u32 id_len, id bytes, u64 max_seq,
 * u64 epoch, u64 active, then per slot u64 seq, u64 ack, u8 used.
 * DEDUP_IMAGE_V1 (read only) has u64 n, then per source id, max_seq and the slots: its
 * sources get epoch and activity `now` (the restored progress, which no source of that
 * image can have read an epoch above) and the fence 0.
 * read: 0 or TWIG_ECORRUPT; d must be initialised (its contents are replaced, its
 * max_sources and quiet kept; every source of the image is kept, see dedup_trim) */
size_t dedup_image_size(const dedup_t *d);
void dedup_image_write(uint8_t *buf, const dedup_t *d);
int dedup_image_read(dedup_t *d, const uint8_t *buf, size_t len, unsigned version, uint64_t now,
                     size_t *used);

#endif
