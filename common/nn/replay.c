/* replay.c - ring buffers of packed transitions and uniform samplers */
#include "common/nn/replay.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/err.h"
#include "common/base/mem.h"

int replay_init(replay_t *rb, size_t capacity, int n_obs, int n_act)
{
    memset(rb, 0, sizeof(*rb));
    if (capacity == 0 || capacity > UINT32_MAX) {
        return err_set(-EINVAL, "replay: capacity %zu, must be 1..%u", capacity, UINT32_MAX);
    }
    if (n_obs < 1 || n_act < 1 || n_obs > 4096 || n_act > 4096) {
        return err_set(-EINVAL, "replay: n_obs %d n_act %d, must be 1..4096", n_obs, n_act);
    }
    rb->n_obs = n_obs;
    rb->n_act = n_act;
    rb->capacity = capacity;
    rb->obs = xmalloc_aligned(capacity * (size_t)n_obs * sizeof(float));
    rb->act = xmalloc_aligned(capacity * (size_t)n_act * sizeof(float));
    rb->reward = xmalloc_aligned(capacity * sizeof(float));
    rb->next_obs = xmalloc_aligned(capacity * (size_t)n_obs * sizeof(float));
    rb->terminated = xmalloc_aligned(capacity * sizeof(float));
    return 0;
}

void replay_free(replay_t *rb)
{
    free(rb->obs);
    free(rb->act);
    free(rb->reward);
    free(rb->next_obs);
    free(rb->terminated);
    memset(rb, 0, sizeof(*rb));
}

void replay_clear(replay_t *rb)
{
    rb->size = 0;
    rb->head = 0;
    rb->total = 0;
}

void replay_add(replay_t *rb, const float *obs, const float *act, float reward,
                const float *next_obs, bool terminated)
{
    size_t i = rb->head;
    size_t O = (size_t)rb->n_obs, A = (size_t)rb->n_act;
    memcpy(rb->obs + i * O, obs, O * sizeof(float));
    memcpy(rb->act + i * A, act, A * sizeof(float));
    rb->reward[i] = reward;
    memcpy(rb->next_obs + i * O, next_obs, O * sizeof(float));
    rb->terminated[i] = terminated ? 1.0f : 0.0f;
    rb->head = i + 1 == rb->capacity ? 0 : i + 1;
    if (rb->size < rb->capacity) {
        rb->size++;
    }
    rb->total++;
}

void replay_add_batch(replay_t *rb, const float *obs, const float *act, const float *reward,
                      const float *next_obs, const bool *terminated, size_t n)
{
    size_t O = (size_t)rb->n_obs, A = (size_t)rb->n_act;
    for (size_t k = 0; k < n; k++) {
        replay_add(rb, obs + k * O, act + k * A, reward[k], next_obs + k * O, terminated[k]);
    }
}

int replay_batch_init(replay_batch *b, int max_batch, int n_obs, int n_act)
{
    memset(b, 0, sizeof(*b));
    if (max_batch < 1 || n_obs < 1 || n_act < 1) {
        return err_set(-EINVAL, "replay batch: max_batch %d n_obs %d n_act %d must be >= 1",
                       max_batch, n_obs, n_act);
    }
    size_t B = (size_t)max_batch;
    size_t n = B * (2 * (size_t)n_obs + (size_t)n_act + 2);
    b->block = xmalloc_aligned(n * sizeof(float));
    memset(b->block, 0, n * sizeof(float));
    b->max_batch = max_batch;
    b->n_obs = n_obs;
    b->n_act = n_act;
    b->obs = b->block;
    b->next_obs = b->obs + B * n_obs;
    b->act = b->next_obs + B * n_obs;
    b->reward = b->act + B * n_act;
    b->terminated = b->reward + B;
    return 0;
}

void replay_batch_free(replay_batch *b)
{
    free(b->block);
    memset(b, 0, sizeof(*b));
}

void replay_sample_rows(replay_batch *b, const replay_t *rb, rng_t *rng, int row, int n)
{
    TWIG_ASSERT(rb->size > 0 && row >= 0 && row + n <= b->max_batch);
    TWIG_ASSERT(rb->n_obs == b->n_obs && rb->n_act == b->n_act);
    size_t O = (size_t)rb->n_obs, A = (size_t)rb->n_act;
    for (int k = row; k < row + n; k++) {
        size_t i = rng_uniform_u32(rng, (uint32_t)rb->size);
        memcpy(b->obs + (size_t)k * O, rb->obs + i * O, O * sizeof(float));
        memcpy(b->act + (size_t)k * A, rb->act + i * A, A * sizeof(float));
        b->reward[k] = rb->reward[i];
        memcpy(b->next_obs + (size_t)k * O, rb->next_obs + i * O, O * sizeof(float));
        b->terminated[k] = rb->terminated[i];
    }
}

void replay_sample_batch(replay_batch *b, const replay_t *rb, rng_t *rng, int B)
{
    replay_sample_rows(b, rb, rng, 0, B);
    b->n = B;
}

int replay_real_rows(float real_ratio, int B)
{
    if (!(real_ratio > 0.0f)) {
        return 0;
    }
    if (real_ratio >= 1.0f) {
        return B;
    }
    return (int)((float)B * real_ratio);
}

void replay_sample_mixed(replay_batch *b, const replay_t *real, const replay_t *synthetic,
                         float real_ratio, rng_t *rng, int B)
{
    int n_real = replay_real_rows(real_ratio, B);
    if (!synthetic || synthetic->size == 0) {
        n_real = B;
    }
    if (n_real > 0) {
        replay_sample_rows(b, real, rng, 0, n_real);
    }
    if (B - n_real > 0) {
        replay_sample_rows(b, synthetic, rng, n_real, B - n_real);
    }
    b->n = B;
}
