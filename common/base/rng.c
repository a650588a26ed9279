/* rng.c - xoshiro256** and the distributions twig draws from */
#include "common/base/rng.h"

#include <math.h>

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void rng_seed(rng_t *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) {
        r->s[i] = splitmix64(&x);
    }
}

rng_t rng_split(rng_t *r, uint64_t stream_id)
{
    rng_t child;
    rng_seed(&child, rng_next_u64(r) ^ (stream_id * 0xd1342543de82ef95ULL));
    return child;
}

uint64_t rng_next_u64(rng_t *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint32_t rng_uniform_u32(rng_t *r, uint32_t n)
{
    /* Lemire's multiply-shift with rejection */
    uint64_t m = (uint64_t)(uint32_t)(rng_next_u64(r) >> 32) * n;
    uint32_t low = (uint32_t)m;
    if (low < n) {
        uint32_t threshold = (uint32_t)(-n) % n;
        while (low < threshold) {
            m = (uint64_t)(uint32_t)(rng_next_u64(r) >> 32) * n;
            low = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

float rng_uniform_f32(rng_t *r)
{
    return (float)(rng_next_u64(r) >> 40) * 0x1.0p-24f;
}

float rng_uniform_range(rng_t *r, float lo, float hi)
{
    return lo + (hi - lo) * rng_uniform_f32(r);
}

double rng_uniform_f64(rng_t *r)
{
    return (double)(rng_next_u64(r) >> 11) * 0x1.0p-53;
}

/* Box-Muller: two normals from two uniforms; u1 in (0, 1] so log is finite */
static void normal_pair(rng_t *r, float *a, float *b)
{
    double u1 = 1.0 - rng_uniform_f64(r);
    double u2 = rng_uniform_f64(r);
    double rad = sqrt(-2.0 * log(u1));
    double th = 6.283185307179586 * u2;
    *a = (float)(rad * cos(th));
    *b = (float)(rad * sin(th));
}

float rng_normal_f32(rng_t *r)
{
    float a, b;
    normal_pair(r, &a, &b);
    return a;
}

void rng_fill_normal(rng_t *r, float *out, int n)
{
    int i = 0;
    for (; i + 1 < n; i += 2) {
        normal_pair(r, &out[i], &out[i + 1]);
    }
    if (i < n) {
        out[i] = rng_normal_f32(r);
    }
}

/* Marsaglia & Bray (1964): (u, v) uniform in the unit disc, s = u^2 + v^2, then
 * u sqrt(-2 ln s / s) and v sqrt(-2 ln s / s) are independent standard normals */
static void polar_pair(rng_t *r, float *a, float *b)
{
    for (;;) {
        uint64_t x = rng_next_u64(r);
        // two 24-bit uniforms in (-1, 1), centred on the bins so 0 never comes up
        float u = ((float)(x >> 40) + 0.5f) * 0x1.0p-23f - 1.0f;
        float v = ((float)((x >> 8) & 0xffffffu) + 0.5f) * 0x1.0p-23f - 1.0f;
        float s = u * u + v * v;
        if (s < 1.0f && s > 0.0f) {
            float f = sqrtf(-2.0f * logf(s) / s);
            *a = u * f;
            *b = v * f;
            return;
        }
    }
}

void rng_fill_normal_polar(rng_t *r, float *out, int n)
{
    int i = 0;
    for (; i + 1 < n; i += 2) {
        polar_pair(r, &out[i], &out[i + 1]);
    }
    if (i < n) {
        float spare;
        polar_pair(r, &out[i], &spare);
    }
}
