/* fixture.h - helpers shared by the model server tests: owned batches with contents that
 * encode (source, seq, row). Header-only (tests are one file each); temp dirs and processes
 * are in tests/procfix.h. */
#ifndef TWIG_TESTS_MODELSERVER_FIXTURE_H
#define TWIG_TESTS_MODELSERVER_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/mem.h"
#include "common/msg.h"
#include "common/rng.h"

/* twig-modelserver flags for a small, quick model: an ensemble of 3 with 2 elites, 2 hidden
 * layers of 32, at most 20 epochs a fit (argv entries, for an initializer) */
#define FX_SMALL_MODEL_ARGS                                                                        \
    "--set", "modelserver.ensemble_size=3", "--set", "modelserver.elites=2", "--set",              \
        "modelserver.model_hidden=32", "--set", "modelserver.model_layers=2", "--set",             \
        "modelserver.train_max_epochs=20"

/* a batch that owns its arrays */
typedef struct fx_batch {
    tbatch_t v;
    char env_id[64];
    char source_id[64];
    float *obs, *act, *reward, *next_obs;
    int *terminated, *truncated;
} fx_batch;

/* the value of column j of row i of a batch (source number s, seq q): distinct per element,
 * so a fetched row tells exactly which batch and row it came from */
static inline float fx_value(int s, uint64_t q, uint32_t i, uint32_t j, int field)
{
    return (float)s * 1000.0f + (float)(q % 4096) + (float)i * 0.001f + (float)j * 1e-6f +
           (float)field * 0.25f;
}

static inline void fx_batch_make(fx_batch *b, const char *env, int src, uint64_t seq,
                                 uint32_t count, uint32_t O, uint32_t A)
{
    memset(b, 0, sizeof *b);
    snprintf(b->env_id, sizeof b->env_id, "%s", env);
    snprintf(b->source_id, sizeof b->source_id, "actor-%d", src);
    b->obs = xmalloc((size_t)count * O * 4);
    b->act = xmalloc((size_t)count * A * 4);
    b->reward = xmalloc((size_t)count * 4);
    b->next_obs = xmalloc((size_t)count * O * 4);
    b->terminated = xmalloc((size_t)count * sizeof(int));
    b->truncated = xmalloc((size_t)count * sizeof(int));
    for (uint32_t i = 0; i < count; i++) {
        for (uint32_t j = 0; j < O; j++) {
            b->obs[i * O + j] = fx_value(src, seq, i, j, 0);
            b->next_obs[i * O + j] = fx_value(src, seq, i, j, 1);
        }
        for (uint32_t j = 0; j < A; j++) {
            b->act[i * A + j] = fx_value(src, seq, i, j, 2);
        }
        b->reward[i] = fx_value(src, seq, i, 0, 3);
        b->terminated[i] = (int)((seq + i) % 7 == 0);
        b->truncated[i] = (int)((seq + i) % 5 == 0);
    }
    b->v = (tbatch_t){
        .env_id = b->env_id, .source_id = b->source_id, .seq = seq, .policy_version = 0,
        .obs_dim = O, .act_dim = A, .count = count,
        .obs = b->obs, .act = b->act, .reward = b->reward, .next_obs = b->next_obs,
        .terminated = b->terminated, .truncated = b->truncated,
    };
}

static inline void fx_batch_free(fx_batch *b)
{
    free(b->obs);
    free(b->act);
    free(b->reward);
    free(b->next_obs);
    free(b->terminated);
    free(b->truncated);
    memset(b, 0, sizeof *b);
}

/* does row r of (obs, act, ...) equal row i of batch (src, seq)? bit for bit */
static inline int fx_row_matches(const float *obs, const float *act, const float *reward,
                                 const float *next_obs, const int *term, const int *trunc,
                                 uint32_t O, uint32_t A, int src, uint64_t seq, uint32_t i)
{
    for (uint32_t j = 0; j < O; j++) {
        float a = fx_value(src, seq, i, j, 0), b = fx_value(src, seq, i, j, 1);
        if (memcmp(&obs[j], &a, 4) || memcmp(&next_obs[j], &b, 4)) {
            return 0;
        }
    }
    for (uint32_t j = 0; j < A; j++) {
        float a = fx_value(src, seq, i, j, 2);
        if (memcmp(&act[j], &a, 4)) {
            return 0;
        }
    }
    float rw = fx_value(src, seq, i, 0, 3);
    return !memcmp(reward, &rw, 4) && *term == (int)((seq + i) % 7 == 0) &&
           *trunc == (int)((seq + i) % 5 == 0);
}

#endif
