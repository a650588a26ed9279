/* dedup.c - bounded (source_id, seq) windows with eviction and a fence (see dedup.h) */
#include "common/base/dedup.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/err.h"
#include "common/base/mem.h"

_Static_assert(DEDUP_WINDOW > 0 && (DEDUP_WINDOW & (DEDUP_WINDOW - 1)) == 0,
               "the window is a power of two");

void dedup_init(dedup_t *d, size_t max_sources, uint64_t quiet)
{
    TWIG_ASSERT(max_sources >= 1);
    memset(d, 0, sizeof *d);
    d->max_sources = max_sources;
    d->quiet = quiet;
}

void dedup_free(dedup_t *d)
{
    free(d->src);
    memset(d, 0, sizeof *d);
}

uint64_t dedup_epoch(const dedup_t *d, uint64_t now)
{
    return now > d->fence ? now : d->fence;
}

static const dedup_source *dedup_find(const dedup_t *d, const char *id)
{
    for (size_t i = 0; i < d->n; i++) {
        if (strcmp(d->src[i].id, id) == 0) {
            return &d->src[i];
        }
    }
    return NULL;
}

/* the source quiet longest (the smallest activity; the first of equals); d->n > 0 */
static size_t dedup_quietest(const dedup_t *d)
{
    size_t q = 0;
    for (size_t i = 1; i < d->n; i++) {
        if (d->src[i].active < d->src[q].active) {
            q = i;
        }
    }
    return q;
}

/* progress since s's last push (0 if now is behind it, e.g. right after a restore) */
static uint64_t dedup_quiet_for(const dedup_source *s, uint64_t now)
{
    return now > s->active ? now - s->active : 0;
}

int dedup_check(const dedup_t *d, const char *id, uint64_t seq, uint64_t epoch, uint64_t now,
                uint64_t *ack)
{
    *ack = 0;
    if (seq == 0) {
        return err_set(-EINVAL, "seq is 0 for source '%s': seqs start at 1", id);
    }
    const dedup_source *s = dedup_find(d, id);
    if (s) {
        if (seq > s->max_seq) {
            return DEDUP_NEW;
        }
        const dedup_slot *slot = &s->win[seq % DEDUP_WINDOW];
        if (slot->used && slot->seq == seq) {
            *ack = slot->ack;
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
        const dedup_source *q = &d->src[dedup_quietest(d)];
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

/* evict source i: the fence rises above its epoch (the caller keeps the table's order) */
static void dedup_evict(dedup_t *d, size_t i)
{
    uint64_t above = d->src[i].epoch < UINT64_MAX ? d->src[i].epoch + 1 : UINT64_MAX;
    if (above > d->fence) {
        d->fence = above;
    }
    d->src[i] = d->src[d->n - 1];
    d->n--;
    d->evictions++;
}

void dedup_record(dedup_t *d, const char *id, uint64_t seq, uint64_t epoch, uint64_t now,
                  uint64_t ack)
{
    dedup_source *s = (dedup_source *)dedup_find(d, id);
    if (!s) {
        TWIG_ASSERT(epoch >= d->fence);
        if (d->n >= d->max_sources) {
            dedup_evict(d, dedup_quietest(d));
        }
        if (d->n == d->cap) {
            /* doubling, but never past max_sources: the bound is the allocation */
            size_t cap = d->cap ? 2 * d->cap : 8;
            d->cap = cap <= d->max_sources ? cap : d->max_sources > d->n ? d->max_sources
                                                                           : d->n + 1;
            d->src = xrealloc(d->src, d->cap * sizeof *d->src);
        }
        s = &d->src[d->n++];
        memset(s, 0, sizeof *s);
        snprintf(s->id, sizeof s->id, "%s", id);
        s->epoch = epoch > now ? epoch : now;
    }
    TWIG_ASSERT(seq > s->max_seq); /* dedup_check said new */
    s->max_seq = seq;
    s->active = now;
    s->win[seq % DEDUP_WINDOW] = (dedup_slot){.seq = seq, .ack = ack, .used = true};
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
    size_t n = 24;
    for (size_t i = 0; i < d->n; i++) {
        n += dedup_source_bytes(DEDUP_IMAGE_V2, strlen(d->src[i].id));
    }
    return n;
}

static uint8_t *put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
    return p + 8;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v |= (uint64_t)p[i] << (8 * i);
    }
    return v;
}

void dedup_image_write(uint8_t *buf, const dedup_t *d)
{
    uint8_t *p = put_u64(buf, d->n);
    p = put_u64(p, d->fence);
    p = put_u64(p, d->evictions);
    for (size_t i = 0; i < d->n; i++) {
        const dedup_source *s = &d->src[i];
        uint32_t len = (uint32_t)strlen(s->id);
        for (int k = 0; k < 4; k++) {
            *p++ = (uint8_t)(len >> (8 * k));
        }
        memcpy(p, s->id, len);
        p += len;
        p = put_u64(p, s->max_seq);
        p = put_u64(p, s->epoch);
        p = put_u64(p, s->active);
        for (int w = 0; w < DEDUP_WINDOW; w++) {
            p = put_u64(p, s->win[w].seq);
            p = put_u64(p, s->win[w].ack);
            *p++ = s->win[w].used ? 1 : 0;
        }
    }
}

int dedup_image_read(dedup_t *d, const uint8_t *buf, size_t len, unsigned version, uint64_t now,
                     size_t *used)
{
    size_t max_sources = d->max_sources;
    uint64_t quiet = d->quiet;
    dedup_free(d);
    dedup_init(d, max_sources, quiet);
    if (version != DEDUP_IMAGE_V1 && version != DEDUP_IMAGE_V2) {
        return err_set(TWIG_ECORRUPT, "dedup image: unknown layout %u", version);
    }
    size_t head = version == DEDUP_IMAGE_V2 ? 24 : 8;
    if (len < head) {
        return err_set(TWIG_ECORRUPT, "dedup image: truncated");
    }
    uint64_t n = get_u64(buf);
    if (version == DEDUP_IMAGE_V2) {
        d->fence = get_u64(buf + 8);
        d->evictions = get_u64(buf + 16);
    }
    size_t off = head;
    /* every source takes at least its minimal size: a count above what fits is damage */
    if (n > (len - off) / dedup_source_bytes(version, 1)) {
        return err_set(TWIG_ECORRUPT, "dedup image: %" PRIu64 " sources cannot fit in %zu bytes",
                       n, len);
    }
    d->cap = n ? (size_t)n : 1;
    d->src = xcalloc(d->cap, sizeof *d->src);
    for (uint64_t i = 0; i < n; i++) {
        if (len - off < 4) {
            return err_set(TWIG_ECORRUPT, "dedup image: truncated at source %" PRIu64, i);
        }
        uint32_t idlen = (uint32_t)buf[off] | (uint32_t)buf[off + 1] << 8 |
                         (uint32_t)buf[off + 2] << 16 | (uint32_t)buf[off + 3] << 24;
        if (idlen == 0 || idlen > DEDUP_MAX_ID_LEN ||
            len - off < dedup_source_bytes(version, idlen)) {
            return err_set(TWIG_ECORRUPT, "dedup image: bad source %" PRIu64, i);
        }
        off += 4;
        dedup_source *s = &d->src[d->n++];
        memset(s, 0, sizeof *s);
        memcpy(s->id, buf + off, idlen);
        off += idlen;
        s->max_seq = get_u64(buf + off);
        off += 8;
        if (version == DEDUP_IMAGE_V2) {
            s->epoch = get_u64(buf + off);
            s->active = get_u64(buf + off + 8);
            off += 16;
        } else {
            s->epoch = now;
            s->active = now;
        }
        for (int w = 0; w < DEDUP_WINDOW; w++) {
            s->win[w].seq = get_u64(buf + off);
            s->win[w].ack = get_u64(buf + off + 8);
            s->win[w].used = buf[off + 16] != 0;
            off += DEDUP_SLOT_BYTES;
        }
    }
    *used = off;
    return 0;
}
