/* rng.h - explicit random generator state (xoshiro256**, seeded by splitmix64).
 *
 * Nothing in twig calls rand(): every user owns an rng_t, so a run with a seed is
 * reproducible bit for bit on one machine, and threads never share a generator.
 * rng_split() derives an independent stream for a worker thread or a member.
 * Reference: Blackman & Vigna, "Scrambled linear pseudorandom number generators" (2018).
 */
#ifndef TWIG_RNG_H
#define TWIG_RNG_H

#include <stdint.h>

typedef struct rng {
    uint64_t s[4];
} rng_t;

void rng_seed(rng_t *r, uint64_t seed);
/* a new generator whose stream depends on r's state and stream_id; r is advanced */
rng_t rng_split(rng_t *r, uint64_t stream_id);

uint64_t rng_next_u64(rng_t *r);
/* uniform in [0, n), n > 0, without modulo bias */
uint32_t rng_uniform_u32(rng_t *r, uint32_t n);
/* uniform in [0, 1) with 24 random bits */
float rng_uniform_f32(rng_t *r);
/* uniform in [lo, hi) */
float rng_uniform_range(rng_t *r, float lo, float hi);
/* uniform in [0, 1) with 53 random bits */
double rng_uniform_f64(rng_t *r);
/* standard normal */
float rng_normal_f32(rng_t *r);
/* fill out[0..n) with standard normals (pairs from one Box-Muller draw) */
void rng_fill_normal(rng_t *r, float *out, int n);
/* the same distribution, several times faster, in float (Marsaglia's polar method: pairs
 * from a point drawn in the unit disc, no trig); a different stream than rng_fill_normal.
 * For hot loops such as SAC's reparameterisation noise. */
void rng_fill_normal_polar(rng_t *r, float *out, int n);

#endif
