/* alloc_count.h - count the heap allocations a thread makes while its flag is up, in plain
 * and sanitizer builds alike. Include it in exactly one file of a test executable.
 *
 * The plain build interposes malloc, calloc, realloc and posix_memalign (forwarding to
 * glibc's). Under AddressSanitizer, whose allocator owns these symbols, the count comes from
 * the sanitizer's allocation hook instead, which its allocator runs for every block it hands
 * out. alloc_count_begin counts the calling thread only, so the threads of the code under
 * test (an appender, a completion queue) are not counted; alloc_count_begin_all counts
 * every thread (code whose workers must not allocate either). alloc_counted_bytes holds the
 * bytes the counted calls asked for.
 *
 *     Test(x, y, .init = alloc_count_install) {
 *         alloc_count_begin();
 *         ...code that must not allocate...
 *         cr_expect_eq(alloc_count_end(), 0);
 *     }
 */
#ifndef TWIG_TESTS_ALLOC_COUNT_H
#define TWIG_TESTS_ALLOC_COUNT_H

#include <criterion/criterion.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#if defined(__SANITIZE_ADDRESS__)
#define TWIG_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TWIG_TEST_ASAN 1
#endif
#endif
#ifndef TWIG_TEST_ASAN
#define TWIG_TEST_ASAN 0
#endif

/* what is counted: this thread's allocations (alloc_count_begin), or every thread's
 * (alloc_count_begin_all, for code whose own threads must not allocate either) */
static _Thread_local bool alloc_counting;
static atomic_bool alloc_counting_all;
static atomic_long alloc_counted;         /* calls since the last begin */
static atomic_size_t alloc_counted_bytes; /* bytes they asked for (posix_memalign: its size) */

static inline void alloc_count_note(size_t n)
{
    if (alloc_counting || atomic_load_explicit(&alloc_counting_all, memory_order_relaxed)) {
        atomic_fetch_add(&alloc_counted, 1);
        atomic_fetch_add(&alloc_counted_bytes, n);
    }
}

static inline void alloc_count_begin(void)
{
    atomic_store(&alloc_counted, 0);
    atomic_store(&alloc_counted_bytes, 0);
    alloc_counting = true;
}

static inline void alloc_count_begin_all(void)
{
    alloc_count_begin();
    atomic_store(&alloc_counting_all, true);
}

/* allocations counted since the begin (alloc_counted_bytes: their bytes) */
static inline long alloc_count_end(void)
{
    alloc_counting = false;
    atomic_store(&alloc_counting_all, false);
    return atomic_load(&alloc_counted);
}

#if TWIG_TEST_ASAN

/* compiler-rt's sanitizer/allocator_interface.h, which GCC does not ship: hooks run after
 * each allocation and before each free by the sanitizer's allocator (both must be given) */
extern int __sanitizer_install_malloc_and_free_hooks(
    void (*malloc_hook)(const volatile void *p, size_t n),
    void (*free_hook)(const volatile void *p));

static void alloc_count_malloc_hook(const volatile void *p, size_t n)
{
    (void)p;
    alloc_count_note(n);
}

static void alloc_count_free_hook(const volatile void *p)
{
    (void)p;
}

/* in the test's own process, before its body allocates anything that is counted */
static inline void alloc_count_install(void)
{
    cr_assert_gt(__sanitizer_install_malloc_and_free_hooks(alloc_count_malloc_hook,
                                                           alloc_count_free_hook),
                 0, "the sanitizer refused the allocation hooks");
}

#else

static inline void alloc_count_install(void)
{
}

/* glibc's own entry points */
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *p, size_t n);
extern void *__libc_memalign(size_t align, size_t n);

void *malloc(size_t n)
{
    alloc_count_note(n);
    return __libc_malloc(n);
}

void *calloc(size_t count, size_t size)
{
    alloc_count_note(count * size);
    return __libc_calloc(count, size);
}

void *realloc(void *p, size_t n)
{
    alloc_count_note(n);
    return __libc_realloc(p, n);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    alloc_count_note(n);
    void *p = __libc_memalign(align, n);
    if (!p) {
        return ENOMEM;
    }
    *out = p;
    return 0;
}

#endif

#endif
