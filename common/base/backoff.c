/* backoff.c - see backoff.h */
#include "common/base/backoff.h"

void backoff_init(backoff_t *b, uint64_t base_ms, uint64_t max_ms, uint64_t seed)
{
    b->base_ms = base_ms ? base_ms : 1;
    b->max_ms = max_ms > b->base_ms ? max_ms : b->base_ms;
    b->failures = 0;
    rng_seed(&b->rng, seed);
}

uint64_t backoff_delay_ms(uint64_t base_ms, uint64_t max_ms, int n)
{
    uint64_t d = base_ms;
    for (int i = 1; i < n && d < max_ms; i++) {
        d *= 2;
    }
    return d < max_ms ? d : max_ms;
}

uint64_t backoff_jitter(uint64_t d, double u)
{
    return d / 2 + (uint64_t)(u * (double)(d - d / 2));
}

uint64_t backoff_next(backoff_t *b)
{
    if (b->failures < 64) {
        b->failures++;
    }
    uint64_t d = backoff_delay_ms(b->base_ms, b->max_ms, b->failures);
    return backoff_jitter(d, rng_uniform_f64(&b->rng));
}

void backoff_reset(backoff_t *b)
{
    b->failures = 0;
}
