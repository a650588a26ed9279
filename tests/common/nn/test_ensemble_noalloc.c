/* train steps and predictions of the ensemble never allocate: the calls made while a flag is
 * up are counted. The plain build interposes malloc, calloc, realloc and posix_memalign
 * (forwarding to glibc's). Under AddressSanitizer, whose allocator owns these symbols, the
 * count comes from the sanitizer's allocation hook instead, which its allocator runs for
 * every block it hands out, so the same test runs in both builds. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "common/nn/ensemble.h"
#include "common/base/err.h"
#include "common/nn/nn_gemm.h"
#include "common/base/rng.h"

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
static volatile bool counting;
static volatile long allocations;

#if TWIG_TEST_ASAN

/* compiler-rt's sanitizer/allocator_interface.h, which GCC does not ship: hooks run after
 * each allocation and before each free by the sanitizer's allocator (both must be given) */
extern int __sanitizer_install_malloc_and_free_hooks(
    void (*malloc_hook)(const volatile void *p, size_t n),
    void (*free_hook)(const volatile void *p));

static void count_malloc(const volatile void *p, size_t n)
{
    (void)p;
    (void)n;
    if (counting) {
        allocations++;
    }
}

static void ignore_free(const volatile void *p)
{
    (void)p;
}

/* in the test's own process, before its body allocates anything that is counted */
static void install_hooks(void)
{
    cr_assert_gt(__sanitizer_install_malloc_and_free_hooks(count_malloc, ignore_free), 0,
                 "the sanitizer refused the allocation hooks");
}

#else

static void install_hooks(void)
{
}

/* glibc's own entry points */
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *p, size_t n);
extern void *__libc_memalign(size_t align, size_t n);

void *malloc(size_t n)
{
    if (counting) {
        allocations++;
    }
    return __libc_malloc(n);
}

void *calloc(size_t count, size_t size)
{
    if (counting) {
        allocations++;
    }
    return __libc_calloc(count, size);
}

void *realloc(void *p, size_t n)
{
    if (counting) {
        allocations++;
    }
    return __libc_realloc(p, n);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    if (counting) {
        allocations++;
    }
    void *p = __libc_memalign(align, n);
    if (!p) {
        return ENOMEM;
    }
    *out = p;
    return 0;
}

#endif

Test(ensemble_noalloc, train_steps_and_predictions_do_not_allocate, .init = install_hooks)
{
    nn_gemm_set_threads(1);
    ensemble_cfg cfg;
    ensemble_cfg_default(&cfg, 5, 2);
    cfg.n_hidden = 32;
    rng_t r;
    rng_seed(&r, 1);
    ensemble_t e = {0};
    cr_assert_eq(ensemble_init(&e, &cfg, &r), 0, "%s", err_msg());
    ensemble_train_cfg tc;
    ensemble_train_cfg_default(&tc, cfg.n_layers);
    tc.batch = 32;
    ensemble_trainer_t t = {0};
    cr_assert_eq(ensemble_trainer_init(&t, &e, &tc), 0, "%s", err_msg());
    ensemble_work_t w = {0};
    cr_assert_eq(ensemble_work_init(&w, &e, 64), 0);

    enum { B = 32, N = 300 };
    static float x[7 * B * 7], y[7 * B * 6];
    static float obs[N * 5], act[N * 2], next[N * 5], rew[N], all[7 * N * 5], all_rew[7 * N];
    static int member[N];
    for (size_t i = 0; i < sizeof x / sizeof *x; i++) {
        x[i] = rng_uniform_range(&r, -1.0f, 1.0f);
    }
    for (size_t i = 0; i < sizeof y / sizeof *y; i++) {
        y[i] = rng_uniform_range(&r, -1.0f, 1.0f);
    }
    for (size_t i = 0; i < sizeof obs / sizeof *obs; i++) {
        obs[i] = rng_uniform_range(&r, -1.0f, 1.0f);
    }
    /* warm up: OpenBLAS sets up its buffers on its first calls */
    ensemble_train_step(&e, &t, x, y, B);
    ensemble_predict(&e, &w, &r, next, rew, member, obs, act, N, true);
    ensemble_predict_all(&e, &w, &r, all, all_rew, obs, act, N, true);

    allocations = 0;
    counting = true;
    for (int s = 0; s < 5; s++) {
        ensemble_train_step(&e, &t, x, y, B - s);
    }
    ensemble_predict(&e, &w, &r, next, rew, member, obs, act, N, true);
    ensemble_predict(&e, &w, &r, next, NULL, NULL, obs, act, N, false);
    ensemble_predict_all(&e, &w, &r, all, all_rew, obs, act, N, true);
    counting = false;
    cr_expect_eq(allocations, 0, "%ld allocations in train steps and predictions", allocations);
    cr_expect_eq(t.steps, 6);

    /* the counter itself works: an init allocates */
    counting = true;
    ensemble_work_t w2 = {0};
    cr_assert_eq(ensemble_work_init(&w2, &e, 16), 0);
    counting = false;
    cr_expect_gt(allocations, 0);
    ensemble_work_free(&w2);

    ensemble_work_free(&w);
    ensemble_trainer_free(&t);
    ensemble_free(&e);
}
