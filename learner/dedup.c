/* dedup.c - (source_id, seq) windows (see dedup.h) */
#include "learner/dedup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/mem.h"

void dedup_init(dedup_t *d, size_t max_sources)
{
    memset(d, 0, sizeof *d);
    d->max_sources = max_sources;
}

void dedup_free(dedup_t *d)
{
    free(d->src);
    memset(d, 0, sizeof *d);
}

static dedup_source *dedup_find(const dedup_t *d, const char *id)
{
    for (size_t i = 0; i < d->n; i++) {
        if (strcmp(d->src[i].id, id) == 0) {
            return &d->src[i];
        }
    }
    return NULL;
}

int dedup_check(const dedup_t *d, const char *id, uint64_t seq, uint64_t *ack)
{
    *ack = 0;
    const dedup_source *s = dedup_find(d, id);
    if (!s) {
        return 0;
    }
    const dedup_slot *slot = &s->win[seq % DEDUP_WINDOW];
    if (slot->used && slot->seq == seq) {
        *ack = slot->ack;
        return 1;
    }
    if (seq <= s->max_seq && s->max_seq - seq >= DEDUP_WINDOW) {
        return 1; /* older than the window: assume seen, ack unknown */
    }
    return 0;
}

int dedup_record(dedup_t *d, const char *id, uint64_t seq, uint64_t ack)
{
    dedup_source *s = dedup_find(d, id);
    if (!s) {
        if (d->n >= d->max_sources) {
            return err_set(TWIG_EFULL, "source_id '%s': already %zu sources, the most kept", id,
                           d->max_sources);
        }
        if (d->n == d->cap) {
            d->cap = d->cap ? 2 * d->cap : 8;
            d->src = xrealloc(d->src, d->cap * sizeof *d->src);
        }
        s = &d->src[d->n++];
        memset(s, 0, sizeof *s);
        snprintf(s->id, sizeof s->id, "%s", id);
        s->max_seq = seq;
    }
    if (seq > s->max_seq) {
        s->max_seq = seq;
    }
    s->win[seq % DEDUP_WINDOW] = (dedup_slot){.seq = seq, .ack = ack, .used = true};
    return 0;
}

/* ---- image: u64 n, then per source u32 id_len, id bytes, u64 max_seq, then per slot
 * u64 seq, u64 ack, u8 used ---- */

#define DEDUP_SLOT_BYTES 17

size_t dedup_image_size(const dedup_t *d)
{
    size_t n = 8;
    for (size_t i = 0; i < d->n; i++) {
        n += 4 + strlen(d->src[i].id) + 8 + DEDUP_WINDOW * DEDUP_SLOT_BYTES;
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
    for (size_t i = 0; i < d->n; i++) {
        const dedup_source *s = &d->src[i];
        uint32_t len = (uint32_t)strlen(s->id);
        for (int k = 0; k < 4; k++) {
            *p++ = (uint8_t)(len >> (8 * k));
        }
        memcpy(p, s->id, len);
        p += len;
        p = put_u64(p, s->max_seq);
        for (int w = 0; w < DEDUP_WINDOW; w++) {
            p = put_u64(p, s->win[w].seq);
            p = put_u64(p, s->win[w].ack);
            *p++ = s->win[w].used ? 1 : 0;
        }
    }
}

int dedup_image_read(dedup_t *d, const uint8_t *buf, size_t len, size_t *used)
{
    size_t max_sources = d->max_sources;
    dedup_free(d);
    dedup_init(d, max_sources);
    if (len < 8) {
        return err_set(TWIG_ECORRUPT, "dedup image: truncated");
    }
    uint64_t n = get_u64(buf);
    size_t off = 8;
    if (n > max_sources) {
        return err_set(TWIG_ECORRUPT, "dedup image: %llu sources, at most %zu",
                       (unsigned long long)n, max_sources);
    }
    for (uint64_t i = 0; i < n; i++) {
        if (len - off < 4) {
            return err_set(TWIG_ECORRUPT, "dedup image: truncated at source %llu",
                           (unsigned long long)i);
        }
        uint32_t idlen = (uint32_t)buf[off] | (uint32_t)buf[off + 1] << 8 |
                         (uint32_t)buf[off + 2] << 16 | (uint32_t)buf[off + 3] << 24;
        off += 4;
        if (idlen == 0 || idlen > MSG_MAX_ID_LEN ||
            len - off < idlen + 8 + (size_t)DEDUP_WINDOW * DEDUP_SLOT_BYTES) {
            return err_set(TWIG_ECORRUPT, "dedup image: bad source %llu", (unsigned long long)i);
        }
        if (d->n == d->cap) {
            d->cap = d->cap ? 2 * d->cap : 8;
            d->src = xrealloc(d->src, d->cap * sizeof *d->src);
        }
        dedup_source *s = &d->src[d->n++];
        memset(s, 0, sizeof *s);
        memcpy(s->id, buf + off, idlen);
        off += idlen;
        s->max_seq = get_u64(buf + off);
        off += 8;
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
