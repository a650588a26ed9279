/* tests of the small base modules: err, rng, crc32c, mem arena */
#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/crc32c.h"
#include "common/base/err.h"
#include "common/base/mem.h"
#include "common/base/rng.h"

Test(err, names_and_detail_round_trip)
{
    cr_expect_str_eq(err_name(TWIG_ECORRUPT), "TWIG_ECORRUPT");
    cr_expect_str_eq(err_name(-EINVAL), "EINVAL");
    cr_expect_str_eq(err_name(0), "OK");
    int rc = err_set(-EINVAL, "obs_dim is %u, expected %u", 5u, 3u);
    cr_expect_eq(rc, -EINVAL);
    cr_expect_eq(err_code(), -EINVAL);
    cr_expect_str_eq(err_msg(), "obs_dim is 5, expected 3");
    err_clear();
    cr_expect_str_eq(err_msg(), "");
}

Test(crc32c, matches_the_standard_check_value)
{
    cr_expect_eq(crc32c("123456789", 9), 0xe3069283u);
    /* RFC 3720 appendix B.4 vectors: 32 bytes of zeros, 32 bytes of 0xff */
    unsigned char zeros[32] = {0}, ones[32];
    memset(ones, 0xff, sizeof ones);
    cr_expect_eq(crc32c(zeros, 32), 0x8a9136aau);
    cr_expect_eq(crc32c(ones, 32), 0x62a8ab43u);
    /* continuing in pieces gives the same crc as one call */
    const char *s = "the quick brown fox jumps over the lazy dog";
    uint32_t whole = crc32c(s, strlen(s));
    uint32_t part = crc32c_update(crc32c(s, 10), s + 10, strlen(s) - 10);
    cr_expect_eq(whole, part);
}

Test(rng, same_seed_same_stream_and_sane_moments)
{
    rng_t a, b;
    rng_seed(&a, 42);
    rng_seed(&b, 42);
    for (int i = 0; i < 100; i++) {
        cr_expect_eq(rng_next_u64(&a), rng_next_u64(&b));
    }
    double sum = 0, sq = 0;
    int n = 200000;
    for (int i = 0; i < n; i++) {
        float x = rng_normal_f32(&a);
        sum += x;
        sq += (double)x * x;
    }
    cr_expect(fabs(sum / n) < 0.01, "mean %f", sum / n);
    cr_expect(fabs(sq / n - 1.0) < 0.02, "var %f", sq / n);
    int counts[7] = {0};
    for (int i = 0; i < 70000; i++) {
        uint32_t k = rng_uniform_u32(&a, 7);
        cr_assert_lt(k, 7u);
        counts[k]++;
    }
    for (int k = 0; k < 7; k++) {
        cr_expect(counts[k] > 9500 && counts[k] < 10500, "bucket %d has %d", k, counts[k]);
    }
}

Test(arena, mark_reset_reuses_memory_and_aligns)
{
    arena_t a;
    arena_init(&a, 4096);
    size_t m = arena_mark(&a);
    char *p = arena_alloc(&a, 100);
    char *q = arena_alloc(&a, 100);
    cr_expect_eq((uintptr_t)p % 64, 0);
    cr_expect_eq((uintptr_t)q % 64, 0);
    cr_expect(q > p);
    arena_reset(&a, m);
    cr_expect_eq(arena_alloc(&a, 100), p);
    arena_free(&a);
}

Test(arena, overflow_panics, .signal = SIGABRT)
{
    arena_t a;
    arena_init(&a, 128);
    arena_alloc(&a, 4096);
}

/* a size near SIZE_MAX must not wrap the bounds check around to a small number */
Test(arena, size_that_wraps_around_panics, .signal = SIGABRT)
{
    arena_t a;
    arena_init(&a, 128);
    arena_alloc(&a, 10);
    arena_alloc(&a, SIZE_MAX - 10);
}

Test(mem, aligned_size_that_wraps_around_panics, .signal = SIGABRT)
{
    void *p = xmalloc_aligned(SIZE_MAX - 10);
    free(p);
}

Test(rng, polar_normals_have_normal_moments_and_tails)
{
    rng_t a, b;
    rng_seed(&a, 7);
    rng_seed(&b, 7);
    enum { N = 200001 };   // odd: the last value comes from a half-used pair
    float *x = malloc(sizeof(float) * N), *y = malloc(sizeof(float) * N);
    rng_fill_normal_polar(&a, x, N);
    rng_fill_normal_polar(&b, y, N);
    cr_expect_eq(memcmp(x, y, sizeof(float) * N), 0, "same seed, same stream");
    double sum = 0, sq = 0, q4 = 0;
    int beyond2 = 0;
    for (int i = 0; i < N; i++) {
        cr_assert(isfinite(x[i]));
        sum += x[i];
        sq += (double)x[i] * x[i];
        q4 += (double)x[i] * x[i] * x[i] * x[i];
        beyond2 += fabsf(x[i]) > 2.0f;
    }
    cr_expect(fabs(sum / N) < 0.01, "mean %f", sum / N);
    cr_expect(fabs(sq / N - 1.0) < 0.02, "var %f", sq / N);
    cr_expect(fabs(q4 / N - 3.0) < 0.1, "fourth moment %f", q4 / N);
    // P(|x| > 2) = 0.0455
    cr_expect(fabs((double)beyond2 / N - 0.0455) < 0.003, "tail %f", (double)beyond2 / N);
    free(x);
    free(y);
}
