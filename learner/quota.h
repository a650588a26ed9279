/* quota.h - strict pacing's synthetic quota as chunks held by members (docs/design.md,
 * "Pacing" and "Membership"). Pure: no lock, no clock, no I/O; the learner holds l->mu.
 *
 * Every real step s at or after `start` owes exactly per_step model branches. The learner
 * cuts the steps into chunks [begin, end) and hands each to one rollout worker (a member id)
 * to cover with (end - begin) * per_step branches. Pushes name their chunk and the branches
 * they complete; the chunk counts them, and is done when the count reaches its need.
 *
 * - A member holds at most one chunk: taking again before it is done returns the same chunk
 *   (a retried TakeChunk whose reply was lost hands out nothing new).
 * - A member that leaves or whose lease expires releases its chunk: the chunk keeps its
 *   count and becomes an orphan, and the next taker gets its remainder (need - done) before
 *   any new steps, so a half-done chunk is finished exactly, never redone or dropped.
 * - The watermark (`quota_done`) is the lowest begin of an unfinished chunk, or the first
 *   step not yet cut when none is: every real step below it has its per_step branches.
 *
 *     quota_t q;
 *     quota_init(&q, 512, 400, 1000);             // 400 branches per step from step 1000
 *     quota_chunk c;
 *     rc = quota_take(&q, member, have, limit, max_steps, &c);   // 1: c, 0: nothing to take
 *     rc = quota_add(&q, member, c.id, 400);                   // a push's branches
 *     quota_release(&q, member);                               // left or expired
 *     uint64_t met = quota_done(&q);
 */
#ifndef TWIG_LEARNER_QUOTA_H
#define TWIG_LEARNER_QUOTA_H

#include <stddef.h>
#include <stdint.h>

typedef struct quota_chunk {
    uint64_t id;         /* 0: a free slot; ids count from 1 and are never reused */
    uint64_t begin, end; /* real steps [begin, end) */
    uint64_t need, done; /* branches: (end - begin) * per_step, and those accepted */
    uint64_t owner;      /* member id; 0: an orphan waiting for a taker */
} quota_chunk;

typedef struct quota {
    quota_chunk *c; /* (cap) owned */
    size_t cap;
    uint64_t per_step;  /* branches per real step, > 0 */
    uint64_t start;     /* the first real step owing branches */
    uint64_t next_step; /* the first real step in no chunk */
    uint64_t next_id;
    uint64_t branches;                       /* accepted, all chunks */
    uint64_t chunks_done, orphaned, adopted; /* counters */
} quota_t;

/* an empty quota of cap chunk slots (cap > 0, per_step > 0), real steps from start */
void quota_init(quota_t *q, size_t cap, uint64_t per_step, uint64_t start);
void quota_free(quota_t *q);
/* the first real step owing branches, before any chunk is cut (a learner's first contact
 * with the model server tells it) */
void quota_set_start(quota_t *q, uint64_t start);

/* the chunk member should work on, into *out: its own unfinished one; else the oldest orphan
 * whose end is at most have_end (the real steps the worker has mirrored); else a new chunk
 * of up to max_steps steps (> 0) from next_step, ending at most at limit_end (the caller's
 * bound from next_step: have_end, the next model training point, the next epoch). 1 when
 * *out is set, 0 when there is nothing to take now (no orphan it can do, no steps below
 * limit_end, or every slot holds an unfinished chunk) */
int quota_take(quota_t *q, uint64_t member, uint64_t have_end, uint64_t limit_end,
               uint64_t max_steps, quota_chunk *out);

/* the chunk chunk_id held by member, or NULL */
const quota_chunk *quota_find(const quota_t *q, uint64_t member, uint64_t chunk_id);

/* may a push by member add `branches` to chunk_id? 0, or -EINVAL naming why (not that
 * member's chunk, more branches than the chunk still needs). Changes nothing */
int quota_check(const quota_t *q, uint64_t member, uint64_t chunk_id, uint64_t branches);

/* add a checked push's branches; a chunk that reaches its need is done and freed */
void quota_add(quota_t *q, uint64_t member, uint64_t chunk_id, uint64_t branches);

/* member is gone: its unfinished chunk (if any) becomes an orphan. 1 if it held one */
int quota_release(quota_t *q, uint64_t member);

/* the real steps whose quota is met: the lowest begin of an unfinished chunk, else
 * next_step */
uint64_t quota_done(const quota_t *q);

/* unfinished chunks (held or orphaned) and orphans alone */
size_t quota_open(const quota_t *q, size_t *orphans);

#endif
