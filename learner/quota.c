/* quota.c - the synthetic quota in chunks (see quota.h) */
#include "learner/quota.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/err.h"
#include "common/base/mem.h"

void quota_init(quota_t *q, size_t cap, uint64_t per_step, uint64_t start)
{
    TWIG_ASSERT(cap > 0 && per_step > 0);
    memset(q, 0, sizeof *q);
    q->c = xcalloc(cap, sizeof *q->c);
    q->cap = cap;
    q->per_step = per_step;
    q->start = start;
    q->next_step = start;
    q->next_id = 1;
}

void quota_free(quota_t *q)
{
    free(q->c);
    memset(q, 0, sizeof *q);
}

void quota_set_start(quota_t *q, uint64_t start)
{
    TWIG_ASSERT(q->next_id == 1); /* no chunk cut yet */
    q->start = start;
    q->next_step = start;
}

static quota_chunk *quota_slot(const quota_t *q, uint64_t chunk_id)
{
    for (size_t i = 0; i < q->cap && chunk_id; i++) {
        if (q->c[i].id == chunk_id) {
            return &q->c[i];
        }
    }
    return NULL;
}

int quota_take(quota_t *q, uint64_t member, uint64_t have_end, uint64_t limit_end,
               uint64_t max_steps, quota_chunk *out)
{
    TWIG_ASSERT(member != 0 && max_steps > 0);
    quota_chunk *orphan = NULL, *free_slot = NULL;
    for (size_t i = 0; i < q->cap; i++) {
        quota_chunk *c = &q->c[i];
        if (c->id == 0) {
            free_slot = free_slot ? free_slot : c;
        } else if (c->owner == member) {
            *out = *c; /* its own, unfinished */
            return 1;
        } else if (c->owner == 0 && c->end <= have_end && (!orphan || c->begin < orphan->begin)) {
            orphan = c;
        }
    }
    if (orphan) {
        orphan->owner = member;
        q->adopted++;
        *out = *orphan;
        return 1;
    }
    if (!free_slot || q->next_step >= limit_end) {
        return 0;
    }
    uint64_t end = limit_end - q->next_step > max_steps ? q->next_step + max_steps : limit_end;
    *free_slot = (quota_chunk){.id = q->next_id++,
                               .begin = q->next_step,
                               .end = end,
                               .need = (end - q->next_step) * q->per_step,
                               .owner = member};
    q->next_step = end;
    *out = *free_slot;
    return 1;
}

const quota_chunk *quota_find(const quota_t *q, uint64_t member, uint64_t chunk_id)
{
    const quota_chunk *c = quota_slot(q, chunk_id);
    return c && c->owner == member ? c : NULL;
}

int quota_check(const quota_t *q, uint64_t member, uint64_t chunk_id, uint64_t branches)
{
    const quota_chunk *c = quota_slot(q, chunk_id);
    if (!c) {
        return err_set(-EINVAL,
                       "chunk_id %" PRIu64 " is no open chunk (done, or never "
                       "handed out)",
                       chunk_id);
    }
    if (c->owner != member) {
        return err_set(-EINVAL, "chunk_id %" PRIu64 " is not held by member %" PRIu64, chunk_id,
                       member);
    }
    if (branches > c->need - c->done) {
        return err_set(
            -EINVAL, "chunk_branches is %" PRIu64 ", chunk %" PRIu64 " needs only %" PRIu64 " more",
            branches, chunk_id, c->need - c->done);
    }
    return 0;
}

void quota_add(quota_t *q, uint64_t member, uint64_t chunk_id, uint64_t branches)
{
    quota_chunk *c = quota_slot(q, chunk_id);
    TWIG_ASSERT(c && c->owner == member && branches <= c->need - c->done);
    c->done += branches;
    q->branches += branches;
    if (c->done == c->need) {
        memset(c, 0, sizeof *c);
        q->chunks_done++;
    }
}

int quota_release(quota_t *q, uint64_t member)
{
    for (size_t i = 0; i < q->cap; i++) {
        if (q->c[i].id != 0 && q->c[i].owner == member) {
            q->c[i].owner = 0;
            q->orphaned++;
            return 1;
        }
    }
    return 0;
}

uint64_t quota_done(const quota_t *q)
{
    uint64_t low = q->next_step;
    for (size_t i = 0; i < q->cap; i++) {
        if (q->c[i].id != 0 && q->c[i].begin < low) {
            low = q->c[i].begin;
        }
    }
    return low;
}

size_t quota_open(const quota_t *q, size_t *orphans)
{
    size_t n = 0, o = 0;
    for (size_t i = 0; i < q->cap; i++) {
        n += q->c[i].id != 0;
        o += q->c[i].id != 0 && q->c[i].owner == 0;
    }
    if (orphans) {
        *orphans = o;
    }
    return n;
}
