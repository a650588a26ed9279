/* backoff.h - how long to wait before the next retry: exponential, capped, with equal
 * jitter, the one rule for every retry loop (the actor's pushes, the learner's and rollout
 * workers' calls to their peers, rpc_client's retries, the launcher's restarts).
 *
 *     backoff_t b;
 *     backoff_init(&b, 50, 5000, seed);        // first wait about 50 ms, never above 5 s
 *     while (call() fails) { if (stop_flag_wait_ms(&stop, backoff_next(&b))) break; }
 *     backoff_reset(&b);                       // after a success
 *
 * The n-th consecutive failure waits base * 2^(n-1), capped at max; with jitter (backoff_next)
 * a uniform draw in [d/2, d] ("equal jitter", so peers that failed together spread out
 * and still wait at least half the delay).
 */
#ifndef TWIG_BACKOFF_H
#define TWIG_BACKOFF_H

#include <stdint.h>

#include "common/base/rng.h"

typedef struct backoff {
    uint64_t base_ms, max_ms;
    int failures;   /* since the last reset */
    rng_t rng;      /* the jitter's */
} backoff_t;

/* base_ms >= 1; a max_ms below base_ms is taken as base_ms */
void backoff_init(backoff_t *b, uint64_t base_ms, uint64_t max_ms, uint64_t seed);

/* the wait after one more failure, jittered in [d/2, d] for d = backoff_delay_ms(...) */
uint64_t backoff_next(backoff_t *b);

/* the next failure waits base_ms again */
void backoff_reset(backoff_t *b);

/* d for the n-th consecutive failure (n >= 1): base * 2^(n-1), at most max (no jitter) */
uint64_t backoff_delay_ms(uint64_t base_ms, uint64_t max_ms, int n);

/* equal jitter of d with a draw u in [0, 1): d/2 + u * (d - d/2) */
uint64_t backoff_jitter(uint64_t d, double u);

#endif
