/* synth.h - the learner's synthetic pool: a FIFO of model transitions (MBPO's model_pool).
 *
 * Storage is one replay ring allocated at start for the largest pool the run can need; the
 * pool's current size limit follows MBPO's schedule (rollouts per training x k x retained
 * epochs, which grows with the rollout length k), and sampling draws uniformly from the
 * newest min(filled, limit) transitions only. Adding past the storage overwrites the oldest.
 *
 *     synth_t s = {0};
 *     synth_init(&s, capacity, n_obs, n_act);
 *     synth_set_limit(&s, run_synthetic_capacity(run, k));
 *     synth_add(&s, obs, act_unit, reward, next_obs, terminated, n);
 *     synth_sample_rows(&batch, &s, &rng, row, n);
 */
#ifndef TWIG_LEARNER_SYNTH_H
#define TWIG_LEARNER_SYNTH_H

#include <stddef.h>
#include <stdint.h>

#include "common/nn/replay.h"
#include "common/base/rng.h"

typedef struct synth {
    replay_t rb;  /* storage; rb.total counts every transition ever added */
    size_t limit; /* newest transitions sampled from, 1..rb.capacity */
} synth_t;

/* capacity >= 1; the limit starts at capacity. 0 or -EINVAL */
int synth_init(synth_t *s, size_t capacity, int n_obs, int n_act);
void synth_free(synth_t *s);

/* sample from the newest `limit` transitions (clamped to 1..capacity) */
void synth_set_limit(synth_t *s, size_t limit);

/* copy n rows in; act already in [-1, 1]; terminated: nonzero = terminal (protobuf bools) */
void synth_add(synth_t *s, const float *obs, const float *act, const float *reward,
               const float *next_obs, const int *terminated, size_t n);

/* transitions sampling can return: min(filled, limit) */
size_t synth_size(const synth_t *s);

/* rows [row, row + n) of b get uniform samples of the newest synth_size(s) transitions
 * (which must be > 0) */
void synth_sample_rows(replay_batch *b, const synth_t *s, rng_t *rng, int row, int n);

#endif
