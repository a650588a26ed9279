/* dedup.c - bounded (source_id, seq) tables with eviction and a fence (see dedup.h) */
#include "common/base/dedup.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/bytes.h"
#include "common/base/err.h"
#include "common/base/mem.h"

_Static_assert(DEDUP_WINDOW > 0 && (DEDUP_WINDOW & (DEDUP_WINDOW - 1)) == 0,
               "the window is a power of two");

/* ---- the hash index: 1 + position in d->src per occupied slot ---- */

static uint32_t dedup_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) {
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    }
    return (uint32_t)(h ^ (h >> 32));
}

/* the index slot holding id, or the empty slot where it would go */
static size_t dedup_slot_of(const dedup_t *d, const char *id, uint32_t h)
{
    size_t mask = d->cap_index - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        uint32_t at = d->index[i];
        if (at == 0) {
            return i;
        }
        const dedup_source *s = &d->src[at - 1];
        if (s->hash == h && strcmp(s->id, id) == 0) {
            return i;
        }
    }
}

/* empty slot hole; pull later entries of its probe run into it unless their home slot lies
 * cyclically in (hole, j] */
static void dedup_index_remove(dedup_t *d, size_t hole)
{
    size_t mask = d->cap_index - 1;
    d->index[hole] = 0;
    for (size_t j = (hole + 1) & mask; d->index[j]; j = (j + 1) & mask) {
        size_t home = d->src[d->index[j] - 1].hash & mask;
        bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
        if (!stays) {
            d->index[hole] = d->index[j];
            d->index[j] = 0;
            hole = j;
        }
    }
}

/* an index of at least 2 * max(sources, max_sources) slots over d->src[0..n) */
static void dedup_index_build(dedup_t *d, size_t sources)
{
    size_t want = sources > d->max_sources ? sources : d->max_sources;
    size_t cap = 16;
    while (cap < 2 * want) {
        cap *= 2;
    }
    if (cap != d->cap_index) {
        free(d->index);
        d->index = xcalloc(cap, sizeof *d->index);
        d->cap_index = cap;
    } else {
        memset(d->index, 0, cap * sizeof *d->index);
    }
    for (size_t i = 0; i < d->n; i++) {
        d->index[dedup_slot_of(d, d->src[i].id, d->src[i].hash)] = (uint32_t)(i + 1);
    }
}

/* ---- the table ---- */

void dedup_init(dedup_t *d, const dedup_opts *o)
{
    TWIG_ASSERT(o->max_sources >= 1 && o->max_sources < UINT32_MAX / 4);
    memset(d, 0, sizeof *d);
    d->max_sources = o->max_sources;
    d->quiet = o->quiet;
    d->history = o->history;
    d->first_seq = o->first_seq;
    dedup_index_build(d, 0);
}

void dedup_free(dedup_t *d)
{
    for (size_t i = 0; i < d->n; i++) {
        free(d->src[i].hist);
    }
    free(d->src);
    free(d->index);
    memset(d, 0, sizeof *d);
}

uint64_t dedup_epoch(const dedup_t *d, uint64_t now)
{
    return now > d->fence ? now : d->fence;
}

const dedup_source *dedup_find(const dedup_t *d, const char *id)
{
    uint32_t at = d->index[dedup_slot_of(d, id, dedup_hash(id))];
    return at ? &d->src[at - 1] : NULL;
}

const dedup_source *dedup_quietest(const dedup_t *d)
{
    const dedup_source *q = NULL;
    for (size_t i = 0; i < d->n; i++) {
        if (!q || d->src[i].active < q->active) {
            q = &d->src[i];
        }
    }
    return q;
}

uint64_t dedup_quiet_for(const dedup_source *s, uint64_t now)
{
    return now > s->active ? now - s->active : 0;
}

/* the stored entry of seq, or NULL */
static const dedup_entry *dedup_history_find(const dedup_t *d, const dedup_source *s,
                                             uint64_t seq)
{
    if (d->history == DEDUP_HISTORY_WINDOW) {
        const dedup_entry *e = &s->hist[seq % DEDUP_WINDOW];
        return e->used && e->seq == seq ? e : NULL;
    }
    size_t lo = 0, hi = s->n_hist; /* binary search: the entries' seqs increase */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->hist[mid].seq < seq) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < s->n_hist && s->hist[lo].seq == seq ? &s->hist[lo] : NULL;
}

int dedup_check(const dedup_t *d, const char *id, uint64_t seq, uint64_t epoch, uint64_t now,
                dedup_entry *hit)
{
    memset(hit, 0, sizeof *hit);
    if (seq < d->first_seq) {
        return err_set(-EINVAL, "seq is %" PRIu64 " for source '%s': seqs start at %" PRIu64,
                       seq, id, d->first_seq);
    }
    const dedup_source *s = dedup_find(d, id);
    if (s) {
        if (seq > s->max_seq) {
            return DEDUP_NEW;
        }
        const dedup_entry *e = dedup_history_find(d, s, seq);
        if (e) {
            *hit = *e;
            return DEDUP_DUPLICATE;
        }
        return err_set(-EINVAL,
                       "seq %" PRIu64 " of source '%s' is at or below its newest %" PRIu64
                       " and not known to be stored (older than the last %d seqs, or a gap): "
                       "refused, not acknowledged",
                       seq, id, s->max_seq, DEDUP_WINDOW);
    }
    if (epoch < d->fence) {
        return err_set(TWIG_EFENCED,
                       "source '%s' is not known and its source_epoch %" PRIu64
                       " is below the fence %" PRIu64 ": start a new identity at the current "
                       "epoch %" PRIu64,
                       id, epoch, d->fence, dedup_epoch(d, now));
    }
    if (d->n >= d->max_sources) {
        const dedup_source *q = dedup_quietest(d);
        uint64_t quiet = dedup_quiet_for(q, now);
        if (d->quiet == DEDUP_NEVER || quiet < d->quiet) {
            return err_set(TWIG_EFULL,
                           "source '%s' is new and the table holds %zu sources, the most "
                           "kept; the quietest ('%s') has been quiet for %" PRIu64 " of the "
                           "%" PRIu64 " needed to evict it: retry later",
                           id, d->n, q->id, quiet, d->quiet);
        }
    }
    return DEDUP_NEW;
}

/* drop source i from the array and the index, the last source taking its place */
static void dedup_remove(dedup_t *d, size_t i)
{
    dedup_source *s = &d->src[i];
    dedup_index_remove(d, dedup_slot_of(d, s->id, s->hash));
    free(s->hist);
    size_t last = d->n - 1;
    if (i != last) {
        d->index[dedup_slot_of(d, d->src[last].id, d->src[last].hash)] = (uint32_t)(i + 1);
        d->src[i] = d->src[last];
    }
    memset(&d->src[last], 0, sizeof d->src[last]);
    d->n--;
}

void dedup_evict(dedup_t *d, const dedup_source *s)
{
    uint64_t above = s->epoch < UINT64_MAX ? s->epoch + 1 : UINT64_MAX;
    if (above > d->fence) {
        d->fence = above;
    }
    d->evictions++;
    dedup_remove(d, (size_t)(s - d->src));
}

/* a new source (not in the table, room made) */
static dedup_source *dedup_add(dedup_t *d, const char *id, uint64_t epoch)
{
    if (d->n == d->cap) {
        /* doubling, but never past max_sources: the bound is the allocation */
        size_t cap = d->cap ? 2 * d->cap : 8;
        d->cap = cap <= d->max_sources ? cap : d->max_sources > d->n ? d->max_sources : d->n + 1;
        d->src = xrealloc(d->src, d->cap * sizeof *d->src);
    }
    if (2 * (d->n + 1) > d->cap_index) {
        dedup_index_build(d, d->n + 1); /* only above max_sources (a larger image) */
    }
    uint32_t h = dedup_hash(id);
    d->index[dedup_slot_of(d, id, h)] = (uint32_t)(d->n + 1);
    dedup_source *s = &d->src[d->n++];
    memset(s, 0, sizeof *s);
    snprintf(s->id, sizeof s->id, "%s", id);
    s->hash = h;
    s->epoch = epoch;
    if (d->history == DEDUP_HISTORY_WINDOW) {
        s->hist = xcalloc(DEDUP_WINDOW, sizeof *s->hist);
        s->cap_hist = DEDUP_WINDOW;
    }
    return s;
}

void dedup_record(dedup_t *d, const char *id, uint64_t seq, uint64_t epoch, uint64_t now,
                  uint64_t ack, uint32_t count)
{
    dedup_source *s = (dedup_source *)dedup_find(d, id);
    if (!s) {
        if (d->n >= d->max_sources) {
            dedup_evict(d, dedup_quietest(d));
        }
        s = dedup_add(d, id, epoch > now ? epoch : now);
    }
    TWIG_ASSERT(seq > s->max_seq || (s->n_hist == 0 && d->history == DEDUP_HISTORY_ALL));
    dedup_entry e = {.seq = seq, .ack = ack, .count = count, .used = true};
    if (d->history == DEDUP_HISTORY_WINDOW) {
        s->hist[seq % DEDUP_WINDOW] = e;
    } else {
        if (s->n_hist == s->cap_hist) {
            s->cap_hist = s->cap_hist ? 2 * s->cap_hist : 16;
            s->hist = xrealloc(s->hist, s->cap_hist * sizeof *s->hist);
        }
        s->hist[s->n_hist++] = e;
    }
    s->max_seq = seq;
    s->active = now + count;
    s->total += count;
}

void dedup_rollback(dedup_t *d, const char *id, uint64_t from)
{
    TWIG_ASSERT(d->history == DEDUP_HISTORY_ALL);
    dedup_source *s = (dedup_source *)dedup_find(d, id);
    if (!s) {
        return;
    }
    while (s->n_hist > 0 && s->hist[s->n_hist - 1].ack >= from) {
        s->total -= s->hist[s->n_hist - 1].count;
        s->n_hist--;
    }
    if (s->n_hist == 0) {
        dedup_remove(d, (size_t)(s - d->src));
        return;
    }
    const dedup_entry *last = &s->hist[s->n_hist - 1];
    s->max_seq = last->seq;
    s->active = last->ack + last->count;
}

size_t dedup_trim(dedup_t *d)
{
    size_t evicted = 0;
    while (d->n > d->max_sources) {
        dedup_evict(d, dedup_quietest(d));
        evicted++;
    }
    return evicted;
}

/* ---- image ---- */

#define DEDUP_SLOT_BYTES 17
#define DEDUP_SLOTS_BYTES ((size_t)DEDUP_WINDOW * DEDUP_SLOT_BYTES)

static size_t dedup_source_bytes(unsigned version, size_t id_len)
{
    return 4 + id_len + 8 + (version >= DEDUP_IMAGE_V2 ? 16 : 0) + DEDUP_SLOTS_BYTES;
}

size_t dedup_image_size(const dedup_t *d)
{
    TWIG_ASSERT(d->history == DEDUP_HISTORY_WINDOW);
    size_t n = 24;
    for (size_t i = 0; i < d->n; i++) {
        n += dedup_source_bytes(DEDUP_IMAGE_V2, strlen(d->src[i].id));
    }
    return n;
}

void dedup_image_write(uint8_t *buf, const dedup_t *d)
{
    TWIG_ASSERT(d->history == DEDUP_HISTORY_WINDOW);
    byte_writer w = {.buf = buf};
    bw_u64(&w, d->n);
    bw_u64(&w, d->fence);
    bw_u64(&w, d->evictions);
    for (size_t i = 0; i < d->n; i++) {
        const dedup_source *s = &d->src[i];
        uint32_t len = (uint32_t)strlen(s->id);
        bw_u32(&w, len);
        bw_bytes(&w, s->id, len);
        bw_u64(&w, s->max_seq);
        bw_u64(&w, s->epoch);
        bw_u64(&w, s->active);
        for (int k = 0; k < DEDUP_WINDOW; k++) {
            bw_u64(&w, s->hist[k].seq);
            bw_u64(&w, s->hist[k].ack);
            bw_u8(&w, s->hist[k].used ? 1 : 0);
        }
    }
}

int dedup_image_read(dedup_t *d, const uint8_t *buf, size_t len, unsigned version, uint64_t now,
                     size_t *used)
{
    TWIG_ASSERT(d->history == DEDUP_HISTORY_WINDOW);
    dedup_opts o = {.max_sources = d->max_sources, .quiet = d->quiet, .history = d->history,
                    .first_seq = d->first_seq};
    dedup_free(d);
    dedup_init(d, &o);
    if (version != DEDUP_IMAGE_V1 && version != DEDUP_IMAGE_V2) {
        return err_set(TWIG_ECORRUPT, "dedup image: unknown layout %u", version);
    }
    byte_reader r = {.buf = buf, .len = len};
    size_t head = version == DEDUP_IMAGE_V2 ? 24 : 8;
    if (len < head) {
        return err_set(TWIG_ECORRUPT, "dedup image: truncated");
    }
    uint64_t n = br_u64(&r);
    uint64_t fence = version == DEDUP_IMAGE_V2 ? br_u64(&r) : 0;
    uint64_t evictions = version == DEDUP_IMAGE_V2 ? br_u64(&r) : 0;
    /* every source takes at least its minimal size: a count above what fits is damage */
    if (n > br_left(&r) / dedup_source_bytes(version, 1)) {
        return err_set(TWIG_ECORRUPT, "dedup image: %" PRIu64 " sources cannot fit in %zu bytes",
                       n, len);
    }
    d->cap = n ? (size_t)n : 1;
    d->src = xcalloc(d->cap, sizeof *d->src);
    dedup_index_build(d, (size_t)n);
    for (uint64_t i = 0; i < n; i++) {
        if (br_left(&r) < 4) {
            return err_set(TWIG_ECORRUPT, "dedup image: truncated at source %" PRIu64, i);
        }
        uint32_t idlen = br_u32(&r);
        if (idlen == 0 || idlen > DEDUP_MAX_ID_LEN ||
            br_left(&r) < dedup_source_bytes(version, idlen) - 4) {
            return err_set(TWIG_ECORRUPT, "dedup image: bad source %" PRIu64, i);
        }
        char id[DEDUP_MAX_ID_LEN + 1];
        br_bytes(&r, id, idlen);
        id[idlen] = '\0';
        if (dedup_find(d, id)) {
            return err_set(TWIG_ECORRUPT, "dedup image: bad source %" PRIu64, i);
        }
        uint64_t max_seq = br_u64(&r);
        uint64_t epoch = version == DEDUP_IMAGE_V2 ? br_u64(&r) : now;
        uint64_t active = version == DEDUP_IMAGE_V2 ? br_u64(&r) : now;
        dedup_source *s = dedup_add(d, id, epoch);
        s->max_seq = max_seq;
        s->active = active;
        for (int k = 0; k < DEDUP_WINDOW; k++) {
            s->hist[k].seq = br_u64(&r);
            s->hist[k].ack = br_u64(&r);
            s->hist[k].used = br_u8(&r) != 0;
        }
    }
    d->fence = fence;
    d->evictions = evictions;
    *used = r.pos;
    return 0;
}
