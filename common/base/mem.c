/* mem.c - checked allocation, panics, arena */
#include "common/base/mem.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/base/log.h"

_Noreturn void twig_panic_at(const char *file, int line, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log_write(LOG_LEVEL_ERROR, "event=panic at=%s:%d msg=\"%s\"", file, line, msg);
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        TWIG_PANIC("out of memory allocating %zu bytes", n);
    }
    return p;
}

void *xcalloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) {
        TWIG_PANIC("out of memory allocating %zu x %zu bytes", count, size);
    }
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) {
        TWIG_PANIC("out of memory reallocating %zu bytes", n);
    }
    return q;
}

char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = xmalloc(n);
    memcpy(d, s, n);
    return d;
}

void *xmalloc_aligned(size_t n)
{
    void *p = NULL;
    if (n > SIZE_MAX - 63) {
        TWIG_PANIC("out of memory allocating %zu aligned bytes", n);   /* would round to 0 */
    }
    size_t rounded = (n + 63) & ~(size_t)63;
    if (posix_memalign(&p, 64, rounded ? rounded : 64) != 0) {
        TWIG_PANIC("out of memory allocating %zu aligned bytes", n);
    }
    return p;
}

void arena_init(arena_t *a, size_t cap)
{
    a->base = xmalloc_aligned(cap);
    a->cap = cap;
    a->used = 0;
}

void arena_free(arena_t *a)
{
    free(a->base);
    a->base = NULL;
    a->cap = a->used = 0;
}

void *arena_alloc(arena_t *a, size_t n)
{
    size_t start = (a->used + 63) & ~(size_t)63;
    if (start > a->cap || n > a->cap - start) {   /* start + n could wrap around */
        TWIG_PANIC("arena of %zu bytes too small for %zu more (used %zu)", a->cap, n, a->used);
    }
    a->used = start + n;
    return a->base + start;
}
