/* nn_math.h - branch-free float exp and sigmoid that vectorise (AVX2/AVX-512) inside loops.
 *
 * libm's expf is a scalar call; the ensemble's swish layers evaluate ~1.4M of them per train
 * step, more time than the GEMMs. nn_expf: Cody-Waite reduction x = k ln2 + r, |r| <= ln2/2,
 * e^r by a degree-6 Taylor/Horner polynomial (truncation < 2e-8 relative), then the
 * exponent k written into the float's bits. Input clamped to [-87, 88] so 2^k stays a
 * normal float: relative error about 2 ulp over that range, e^-87 ~ 1.6e-38 below it.
 */
#ifndef TWIG_NN_MATH_H
#define TWIG_NN_MATH_H

#include <stdint.h>
#include <string.h>

static inline float nn_expf(float x)
{
    const float log2e = 1.44269504088896341f;
    const float ln2_hi = 0.693359375f;    /* 8 significant bits: k * ln2_hi is exact */
    const float ln2_lo = -2.12194440e-4f; /* ln2 - ln2_hi */
    const float round = 12582912.0f;      /* 1.5 * 2^23: adding it rounds to an integer */
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    float k = (x * log2e + round) - round;
    float r = x - k * ln2_hi;
    r = r - k * ln2_lo;
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits = ((int32_t)k + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* 1 / (1 + e^-z), no overflow for any finite z */
static inline float nn_sigmoidf(float z)
{
    return 1.0f / (1.0f + nn_expf(-z));
}

/* the same on 8 lanes with GCC/Clang vector extensions: GCC 12 at -O2 does not if-convert
 * the float clamps above, so loops over nn_expf stay scalar; these lanes are explicit */
typedef float nn_v8f __attribute__((vector_size(32)));
typedef int32_t nn_v8i __attribute__((vector_size(32)));

static inline nn_v8f nn_v8_load(const float *p)
{
    nn_v8f v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void nn_v8_store(float *p, nn_v8f v)
{
    memcpy(p, &v, sizeof v);
}

/* m ? a : b per lane, m all-ones or zero */
static inline nn_v8f nn_v8_select(nn_v8i m, nn_v8f a, nn_v8f b)
{
    return (nn_v8f)(((nn_v8i)a & m) | ((nn_v8i)b & ~m));
}

static inline nn_v8f nn_v8_expf(nn_v8f x)
{
    const nn_v8f zero = {0};
    const float round = 12582912.0f;
    x = nn_v8_select(x < -87.0f, zero - 87.0f, x);
    x = nn_v8_select(x > 88.0f, zero + 88.0f, x);
    nn_v8f k = (x * 1.44269504088896341f + round) - round;
    nn_v8f r = x - k * 0.693359375f;
    r = r - k * -2.12194440e-4f;
    nn_v8f p = zero + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    nn_v8i bits = (__builtin_convertvector(k, nn_v8i) + 127) << 23;
    return p * (nn_v8f)bits;
}

/* natural log for x > 0 (Cephes' logf: mantissa in [sqrt(1/2), sqrt(2)) and a degree-8
 * polynomial, about 2 ulp); x <= 0 or non-finite lanes give garbage, callers keep x > 0 */
static inline nn_v8f nn_v8_logf(nn_v8f x)
{
    const nn_v8f zero = {0};
    nn_v8i bits = (nn_v8i)x;
    nn_v8i e = ((bits >> 23) & 0xff) - 126;
    nn_v8f m = (nn_v8f)((bits & 0x007fffff) | 0x3f000000); /* [0.5, 1) */
    nn_v8i small = m < 0.707106781186547524f;
    nn_v8f ef = __builtin_convertvector(e, nn_v8f);
    ef = nn_v8_select(small, ef - 1.0f, ef);
    m = nn_v8_select(small, m + m - 1.0f, m - 1.0f);
    nn_v8f z = m * m;
    nn_v8f p = zero + 7.0376836292e-2f;
    p = p * m - 1.1514610310e-1f;
    p = p * m + 1.1676998740e-1f;
    p = p * m - 1.2420140846e-1f;
    p = p * m + 1.4249322787e-1f;
    p = p * m - 1.6668057665e-1f;
    p = p * m + 2.0000714765e-1f;
    p = p * m - 2.4999993993e-1f;
    p = p * m + 3.3333331174e-1f;
    nn_v8f y = p * m * z;
    y = y + ef * -2.12194440e-4f;
    y = y - 0.5f * z;
    return m + y + ef * 0.693359375f;
}

/* softplus(x) = log(1 + e^x) and sigmoid(x), stable for either sign */
static inline nn_v8f nn_v8_softplus_sigmoid(nn_v8f x, nn_v8f *sig)
{
    const nn_v8f zero = {0};
    nn_v8i neg = x < 0.0f;
    nn_v8f t = nn_v8_expf(nn_v8_select(neg, x, -x)); /* e^-|x| in (0, 1] */
    nn_v8f inv = 1.0f / (1.0f + t);
    *sig = nn_v8_select(neg, t * inv, inv);
    /* log1p(t) = log(u) t / (u - 1) with u = 1 + t rounded: exact-ish for small t */
    nn_v8f u = 1.0f + t;
    nn_v8f c = u - 1.0f;
    nn_v8i exact = c == 0.0f;
    nn_v8f l1p = nn_v8_select(exact, t, nn_v8_logf(u) * t / nn_v8_select(exact, zero + 1.0f, c));
    return nn_v8_select(neg, zero, x) + l1p;
}

static inline nn_v8f nn_v8_sigmoidf(nn_v8f z)
{
    return 1.0f / (1.0f + nn_v8_expf(-z));
}

#endif
