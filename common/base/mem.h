/* mem.h - allocation that never returns NULL, assertions, and a bump arena.
 *
 * Out of memory and broken invariants are bugs: they abort at once, printing the
 * expression, file:line, role and pid. Input from peers never reaches an assert; it is
 * validated and answered with an error code (see err.h).
 */
#ifndef TWIG_MEM_H
#define TWIG_MEM_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
/* 64-byte aligned, for GEMM operands; free with free() */
void *xmalloc_aligned(size_t n);

_Noreturn void twig_panic_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define TWIG_PANIC(...) twig_panic_at(__FILE__, __LINE__, __VA_ARGS__)
#define TWIG_ASSERT(cond)                                          \
    do {                                                           \
        if (!(cond)) {                                             \
            twig_panic_at(__FILE__, __LINE__, "assert: %s", #cond); \
        }                                                          \
    } while (0)

/* arena: one block taken up front, bump allocation, mark/reset for per-step scratch */
typedef struct arena {
    char *base;   /* owned */
    size_t cap;
    size_t used;
} arena_t;

void arena_init(arena_t *a, size_t cap);
void arena_free(arena_t *a);
/* 64-byte aligned; panics when the arena is too small (its size is a bug, not an input) */
void *arena_alloc(arena_t *a, size_t n);
static inline size_t arena_mark(const arena_t *a)
{
    return a->used;
}
static inline void arena_reset(arena_t *a, size_t mark)
{
    a->used = mark;
}

#endif
