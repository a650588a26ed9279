/* alloc_count.h - counts the allocations (calls and bytes) a test makes while a flag is up.
 * Include it in one test file only: the plain build interposes malloc, calloc, realloc and
 * posix_memalign (forwarding to glibc's). Under AddressSanitizer, whose allocator owns these
 * symbols, the count comes from the sanitizer's allocation hook instead, which its allocator
 * runs for every block it hands out, so the same test runs in both builds.
 *
 *     Test(x, y, .init = alloc_count_install) {
 *         alloc_count_start();   ...   alloc_count_stop();
 *         cr_expect_eq(alloc_calls, 0);   cr_expect_eq(alloc_bytes, expected);
 */
#ifndef TWIG_TEST_ALLOC_COUNT_H
#define TWIG_TEST_ALLOC_COUNT_H

#include <criterion/criterion.h>
#include <errno.h>
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

/* one test process at a time (criterion forks each test); not shared between threads here */
static volatile bool alloc_counting;
static volatile long alloc_calls;
static volatile size_t alloc_bytes; /* as requested (posix_memalign: its rounded size) */

static void alloc_count_start(void)
{
    alloc_calls = 0;
    alloc_bytes = 0;
    alloc_counting = true;
}

static void alloc_count_stop(void)
{
    alloc_counting = false;
}

static void alloc_count_one(size_t n)
{
    if (alloc_counting) {
        alloc_calls++;
        alloc_bytes += n;
    }
}

#if TWIG_TEST_ASAN

/* compiler-rt's sanitizer/allocator_interface.h, which GCC does not ship: hooks run after
 * each allocation and before each free by the sanitizer's allocator (both must be given) */
extern int __sanitizer_install_malloc_and_free_hooks(
    void (*malloc_hook)(const volatile void *p, size_t n),
    void (*free_hook)(const volatile void *p));

static void alloc_count_hook(const volatile void *p, size_t n)
{
    (void)p;
    alloc_count_one(n);
}

static void alloc_count_ignore_free(const volatile void *p)
{
    (void)p;
}

/* in the test's own process, before its body allocates anything that is counted */
static void alloc_count_install(void)
{
    cr_assert_gt(__sanitizer_install_malloc_and_free_hooks(alloc_count_hook,
                                                           alloc_count_ignore_free),
                 0, "the sanitizer refused the allocation hooks");
}

#else

static void alloc_count_install(void)
{
}

/* glibc's own entry points */
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *p, size_t n);
extern void *__libc_memalign(size_t align, size_t n);

void *malloc(size_t n)
{
    alloc_count_one(n);
    return __libc_malloc(n);
}

void *calloc(size_t count, size_t size)
{
    alloc_count_one(count * size);
    return __libc_calloc(count, size);
}

void *realloc(void *p, size_t n)
{
    alloc_count_one(n);
    return __libc_realloc(p, n);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    alloc_count_one(n);
    void *p = __libc_memalign(align, n);
    if (!p) {
        return ENOMEM;
    }
    *out = p;
    return 0;
}

#endif

#endif
