/* env_data.h - real transitions from an env with uniform random actions, for the trainer and
 * rollout tests. Header-only (tests are one file each). */
#ifndef TWIG_TESTS_MODELSERVER_ENV_DATA_H
#define TWIG_TESTS_MODELSERVER_ENV_DATA_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/env/env.h"
#include "common/base/mem.h"
#include "common/rpc/msg.h"
#include "common/base/rng.h"

/* n transitions of consecutive episodes, owned arrays, and a batch view of them */
typedef struct ed_data {
    int n, O, A;
    float *obs, *act, *reward, *next_obs;
    int *terminated, *truncated;
    char env_id[64];
} ed_data;

/* returns 0 or the env_make error */
static inline int ed_collect(ed_data *d, const char *env_id, int n, uint64_t seed)
{
    memset(d, 0, sizeof *d);
    env_t *e = NULL;
    int rc = env_make(&e, env_id);
    if (rc < 0) {
        return rc;
    }
    int O = e->spec.n_obs, A = e->spec.n_act;
    d->n = n;
    d->O = O;
    d->A = A;
    snprintf(d->env_id, sizeof d->env_id, "%s", env_id);
    d->obs = xmalloc((size_t)n * O * sizeof(float));
    d->next_obs = xmalloc((size_t)n * O * sizeof(float));
    d->act = xmalloc((size_t)n * A * sizeof(float));
    d->reward = xmalloc((size_t)n * sizeof(float));
    d->terminated = xcalloc((size_t)n, sizeof(int));
    d->truncated = xcalloc((size_t)n, sizeof(int));
    rng_t rng;
    rng_seed(&rng, seed);
    uint64_t ep = seed * 1000;
    float *obs = xmalloc((size_t)O * sizeof(float));
    env_reset(e, ep++, obs);
    for (int i = 0; i < n; i++) {
        float *a = d->act + (size_t)i * A;
        for (int j = 0; j < A; j++) {
            a[j] = rng_uniform_range(&rng, e->spec.act_low[j], e->spec.act_high[j]);
        }
        memcpy(d->obs + (size_t)i * O, obs, (size_t)O * sizeof(float));
        env_step_result res = {.next_obs = d->next_obs + (size_t)i * O};
        env_step(e, a, &res);
        d->reward[i] = res.reward;
        d->terminated[i] = res.terminated;
        d->truncated[i] = res.truncated;
        if (res.terminated || res.truncated) {
            env_reset(e, ep++, obs);
        } else {
            memcpy(obs, res.next_obs, (size_t)O * sizeof(float));
        }
    }
    free(obs);
    env_free(e);
    return 0;
}

/* view of rows [from, from + count) as a batch of (source, seq) */
static inline tbatch_t ed_view(const ed_data *d, int from, int count, const char *source,
                               uint64_t seq)
{
    size_t O = (size_t)d->O, A = (size_t)d->A, f = (size_t)from;
    return (tbatch_t){
        .env_id = d->env_id,
        .source_id = source,
        .seq = seq,
        .obs_dim = (uint32_t)d->O,
        .act_dim = (uint32_t)d->A,
        .count = (uint32_t)count,
        .obs = d->obs + f * O,
        .act = d->act + f * A,
        .reward = d->reward + f,
        .next_obs = d->next_obs + f * O,
        .terminated = d->terminated + f,
        .truncated = d->truncated + f,
    };
}

static inline void ed_free(ed_data *d)
{
    free(d->obs);
    free(d->act);
    free(d->reward);
    free(d->next_obs);
    free(d->terminated);
    free(d->truncated);
    memset(d, 0, sizeof *d);
}

#endif
