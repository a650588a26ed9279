/* bytes.h - the one byte encoder and decoder of twig's file formats (the real log's records
 * and recovery point, checkpoints, network and ensemble images, dedup images, TensorBoard
 * frames). Every multi-byte field of every twig file is little-endian, whatever the host.
 *
 * Fixed layouts (a header at known offsets) use the loads and stores:
 *     le32_put(hdr + 4, count);   uint64_t seq = le64_get(hdr + 8);
 *
 * Variable layouts use a writer over a buffer sized beforehand, and a reader whose errors
 * are sticky: it never reads past len, a short read yields zeros and sets bad, and the
 * caller checks once at the end.
 *     byte_writer w = {.buf = buf};      byte_reader r = {.buf = buf, .len = len};
 *     bw_u32(&w, n);                     uint32_t n = br_u32(&r);
 *     bw_f32s(&w, x, n);                 br_f32s(&r, x, n);
 *     bw_str(&w, id);                    br_str(&r, id, ID_MAX);
 *     size_t used = w.pos;               if (r.bad) return TWIG_ECORRUPT;
 */
#ifndef TWIG_BYTES_H
#define TWIG_BYTES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline void le32_put(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline uint32_t le32_get(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void le64_put(uint8_t *p, uint64_t v)
{
    le32_put(p, (uint32_t)v);
    le32_put(p + 4, (uint32_t)(v >> 32));
}

static inline uint64_t le64_get(const uint8_t *p)
{
    return (uint64_t)le32_get(p) | (uint64_t)le32_get(p + 4) << 32;
}

static inline void le16_put(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static inline uint16_t le16_get(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

/* ---- writer: the caller sized buf for everything it writes ---- */

typedef struct byte_writer {
    uint8_t *buf;
    size_t pos;   /* bytes written */
} byte_writer;

static inline void bw_bytes(byte_writer *w, const void *p, size_t n)
{
    if (n) {
        memcpy(w->buf + w->pos, p, n);
    }
    w->pos += n;
}

static inline void bw_u8(byte_writer *w, uint8_t v)
{
    w->buf[w->pos++] = v;
}

static inline void bw_u32(byte_writer *w, uint32_t v)
{
    le32_put(w->buf + w->pos, v);
    w->pos += 4;
}

static inline void bw_u64(byte_writer *w, uint64_t v)
{
    le64_put(w->buf + w->pos, v);
    w->pos += 8;
}

/* n floats, each as the little-endian bytes of its IEEE-754 bits */
static inline void bw_f32s(byte_writer *w, const float *x, size_t n)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    bw_bytes(w, x, n * sizeof(float));
#else
    for (size_t i = 0; i < n; i++) {
        uint32_t b;
        memcpy(&b, &x[i], 4);
        bw_u32(w, b);
    }
#endif
}

/* a string as a u32 length and its bytes (no NUL): 4 + strlen(s) bytes */
static inline void bw_str(byte_writer *w, const char *s)
{
    size_t n = strlen(s);
    bw_u32(w, (uint32_t)n);
    bw_bytes(w, s, n);
}

/* ---- reader: never past len; errors are sticky ---- */

typedef struct byte_reader {
    const uint8_t *buf;
    size_t len;
    size_t pos;   /* bytes consumed */
    bool bad;     /* a read ran past len: what it returned is zeros */
} byte_reader;

static inline size_t br_left(const byte_reader *r)
{
    return r->bad ? 0 : r->len - r->pos;
}

/* n bytes into p (NULL: skip them); false (and bad) when fewer are left */
static inline bool br_bytes(byte_reader *r, void *p, size_t n)
{
    if (br_left(r) < n) {
        r->bad = true;
        if (p && n) {
            memset(p, 0, n);
        }
        return false;
    }
    if (p && n) {
        memcpy(p, r->buf + r->pos, n);
    }
    r->pos += n;
    return true;
}

/* the next n bytes in place (NULL and bad when fewer are left) */
static inline const uint8_t *br_view(byte_reader *r, size_t n)
{
    if (br_left(r) < n) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *p = r->buf + r->pos;
    r->pos += n;
    return p;
}

static inline uint8_t br_u8(byte_reader *r)
{
    const uint8_t *p = br_view(r, 1);
    return p ? p[0] : 0;
}

static inline uint32_t br_u32(byte_reader *r)
{
    const uint8_t *p = br_view(r, 4);
    return p ? le32_get(p) : 0;
}

static inline uint64_t br_u64(byte_reader *r)
{
    const uint8_t *p = br_view(r, 8);
    return p ? le64_get(p) : 0;
}

/* n floats into x (which holds n); false (and bad, x untouched) when fewer are left */
static inline bool br_f32s(byte_reader *r, float *x, size_t n)
{
    if (n > br_left(r) / sizeof(float)) {
        r->bad = true;
        return false;
    }
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return br_bytes(r, x, n * sizeof(float));
#else
    for (size_t i = 0; i < n; i++) {
        uint32_t b = br_u32(r);
        memcpy(&x[i], &b, 4);
    }
    return !r->bad;
#endif
}

/* a bw_str string of 1..max bytes into out (which holds max + 1), NUL-terminated; "" and
 * bad when it is empty, longer than max or cut short */
static inline bool br_str(byte_reader *r, char *out, size_t max)
{
    uint32_t n = br_u32(r);
    out[0] = '\0';
    if (r->bad || n == 0 || n > max) {
        r->bad = true;
        return false;
    }
    if (!br_bytes(r, out, n)) {
        out[0] = '\0';
        return false;
    }
    out[n] = '\0';
    return true;
}

#endif
