/* replay.h - fixed-capacity ring buffers of transitions, sampled into caller batches.
 *
 * Each field is one packed float array (obs (capacity, n_obs), act, reward, next_obs,
 * terminated as 0/1). Adding past capacity overwrites the oldest transition. Sampling is
 * uniform with replacement over the filled slots and never allocates.
 *
 *     replay_t real = {0};
 *     replay_init(&real, 1000000, n_obs, n_act);
 *     replay_add(&real, obs, act, reward, next_obs, terminated);   // truncation is not stored:
 *                                                                  // it does not cut bootstrap
 *     replay_batch b = {0};
 *     replay_batch_init(&b, 256, n_obs, n_act);
 *     replay_sample_mixed(&b, &real, &synthetic, 0.05f, &rng, 256);
 */
#ifndef TWIG_REPLAY_H
#define TWIG_REPLAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/base/rng.h"

typedef struct replay {
    int n_obs, n_act;
    size_t capacity;
    size_t size;       /* filled slots, <= capacity */
    size_t head;       /* slot the next transition goes to */
    uint64_t total;    /* transitions ever added */
    float *obs;        /* (capacity, n_obs) owned */
    float *act;        /* (capacity, n_act) owned */
    float *reward;     /* (capacity) owned */
    float *next_obs;   /* (capacity, n_obs) owned */
    float *terminated; /* (capacity) 1 = terminal, owned */
} replay_t;

/* a minibatch, caller-owned, filled by the samplers */
typedef struct replay_batch {
    int max_batch, n_obs, n_act;
    int n;             /* rows filled by the last sample */
    float *obs;        /* (max_batch, n_obs) */
    float *act;        /* (max_batch, n_act) */
    float *reward;     /* (max_batch) */
    float *next_obs;   /* (max_batch, n_obs) */
    float *terminated; /* (max_batch) */
    float *block;      /* owned: all of the above */
} replay_batch;

/* returns 0 or -EINVAL (zero capacity or dims) */
int replay_init(replay_t *rb, size_t capacity, int n_obs, int n_act);
void replay_free(replay_t *rb);
void replay_clear(replay_t *rb);

/* copies one transition in (obs/next_obs (n_obs), act (n_act)) */
void replay_add(replay_t *rb, const float *obs, const float *act, float reward,
                const float *next_obs, bool terminated);
/* copies n rows in; terminated may hold any nonzero for true */
void replay_add_batch(replay_t *rb, const float *obs, const float *act, const float *reward,
                      const float *next_obs, const bool *terminated, size_t n);

int replay_batch_init(replay_batch *b, int max_batch, int n_obs, int n_act);
void replay_batch_free(replay_batch *b);

/* rows [row, row + n) of b get uniform samples of rb (which must not be empty) */
void replay_sample_rows(replay_batch *b, const replay_t *rb, rng_t *rng, int row, int n);

/* B uniform samples of rb; b->n = B */
void replay_sample_batch(replay_batch *b, const replay_t *rb, rng_t *rng, int B);

/* MBPO's mix: the first floor(B * real_ratio) rows from real, the rest from synthetic; all
 * from real while synthetic is empty (or NULL). real must not be empty. */
void replay_sample_mixed(replay_batch *b, const replay_t *real, const replay_t *synthetic,
                         float real_ratio, rng_t *rng, int B);

/* rows drawn from real by replay_sample_mixed for batch B and this ratio */
int replay_real_rows(float real_ratio, int B);

#endif
