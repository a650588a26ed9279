/* synth.c - the synthetic FIFO (see synth.h) */
#include "learner/synth.h"

#include <string.h>

#include "common/base/mem.h"

int synth_init(synth_t *s, size_t capacity, int n_obs, int n_act)
{
    memset(s, 0, sizeof *s);
    int rc = replay_init(&s->rb, capacity, n_obs, n_act);
    if (rc < 0) {
        return rc;
    }
    s->limit = capacity;
    return 0;
}

void synth_free(synth_t *s)
{
    replay_free(&s->rb);
    memset(s, 0, sizeof *s);
}

void synth_set_limit(synth_t *s, size_t limit)
{
    if (limit < 1) {
        limit = 1;
    }
    s->limit = limit < s->rb.capacity ? limit : s->rb.capacity;
}

void synth_add(synth_t *s, const float *obs, const float *act, const float *reward,
               const float *next_obs, const int *terminated, size_t n)
{
    int O = s->rb.n_obs, A = s->rb.n_act;
    for (size_t i = 0; i < n; i++) {
        replay_add(&s->rb, obs + i * O, act + i * A, reward[i], next_obs + i * O,
                   terminated[i] != 0);
    }
}

size_t synth_size(const synth_t *s)
{
    return s->rb.size < s->limit ? s->rb.size : s->limit;
}

void synth_sample_rows(replay_batch *b, const synth_t *s, rng_t *rng, int row, int n)
{
    const replay_t *rb = &s->rb;
    size_t size = synth_size(s);
    TWIG_ASSERT(size > 0 && row >= 0 && row + n <= b->max_batch);
    int O = rb->n_obs, A = rb->n_act;
    for (int i = row; i < row + n; i++) {
        /* j-th newest: the slot just before head, going back j */
        size_t j = rng_uniform_u32(rng, (uint32_t)size);
        size_t slot = (rb->head + rb->capacity - 1 - j) % rb->capacity;
        memcpy(b->obs + (size_t)i * O, rb->obs + slot * O, sizeof(float) * O);
        memcpy(b->act + (size_t)i * A, rb->act + slot * A, sizeof(float) * A);
        b->reward[i] = rb->reward[slot];
        memcpy(b->next_obs + (size_t)i * O, rb->next_obs + slot * O, sizeof(float) * O);
        b->terminated[i] = rb->terminated[slot];
    }
}
