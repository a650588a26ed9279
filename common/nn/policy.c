/* policy.c - acting with a published SAC actor, action unit conversion */
#include "common/nn/policy.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/err.h"
#include "common/base/mem.h"
#include "common/nn/squash.h"

int policy_init(policy_t *p, const policy_shape *shape, int max_batch)
{
    memset(p, 0, sizeof *p);
    if (shape->n_obs <= 0 || shape->n_act <= 0) {
        return err_set(-EINVAL, "policy: n_obs %d / n_act %d must be positive", shape->n_obs,
                       shape->n_act);
    }
    int hidden = shape->hidden;
    if (hidden <= 0 || max_batch <= 0) {
        return err_set(-EINVAL, "policy: hidden %d / max_batch %d must be positive", hidden,
                       max_batch);
    }
    int O = shape->n_obs, A = shape->n_act;
    p->n_obs = O;
    p->n_act = A;
    p->hidden = hidden;
    p->max_batch = max_batch;
    const int sizes[] = {O, hidden, hidden, 2 * A};
    rng_t init_rng;
    rng_seed(&init_rng, 0);   /* overwritten by the first blob */
    int rc = mlp_params_init(&p->actor, sizes, 3, NN_ACT_RELU, &init_rng);
    if (rc < 0) {
        return rc;
    }
    mlp_work_init(&p->actor_work, &p->actor, max_batch); /* max_batch >= 1: cannot fail */
    p->act_low = xmalloc((size_t)A * sizeof(float));
    p->act_high = xmalloc((size_t)A * sizeof(float));
    memcpy(p->act_low, shape->act_low, (size_t)A * sizeof(float));
    memcpy(p->act_high, shape->act_high, (size_t)A * sizeof(float));
    size_t B = (size_t)max_batch;
    size_t n = B * 2 * A + 3 * B * A + B;
    p->work = xmalloc_aligned(n * sizeof(float));
    float *w = p->work;
    p->pi_out = w;
    w += B * 2 * A;
    p->eps = w;
    w += B * A;
    p->u = w;
    w += B * A;
    p->unit = w;
    w += B * A;
    p->logp = w;
    return 0;
}

void policy_free(policy_t *p)
{
    mlp_params_free(&p->actor);
    mlp_work_free(&p->actor_work);
    free(p->act_low);
    free(p->act_high);
    free(p->work);
    memset(p, 0, sizeof *p);
}

void policy_act(policy_t *p, rng_t *rng, float *act, const float *obs, int B, bool deterministic)
{
    TWIG_ASSERT(B <= p->max_batch);
    int A = p->n_act;
    mlp_forward(&p->actor, &p->actor_work, p->pi_out, obs, B);
    if (deterministic) {
        for (int i = 0; i < B; i++) {
            for (int j = 0; j < A; j++) {
                p->unit[i * A + j] = tanhf(p->pi_out[i * 2 * A + j]);
            }
        }
    } else {
        rng_fill_normal(rng, p->eps, B * A);
        squash_forward(p->u, p->unit, p->logp, p->pi_out, p->eps, B, A);
    }
    policy_env_from_unit(p, act, p->unit, B);
}

void policy_act_random(const policy_t *p, rng_t *rng, float *act, int B)
{
    int A = p->n_act;
    for (int i = 0; i < B; i++) {
        for (int j = 0; j < A; j++) {
            act[i * A + j] = rng_uniform_range(rng, p->act_low[j], p->act_high[j]);
        }
    }
}

void policy_unit_from_env(const policy_t *p, float *unit, const float *act, int B)
{
    int A = p->n_act;
    for (int i = 0; i < B; i++) {
        for (int j = 0; j < A; j++) {
            float lo = p->act_low[j], hi = p->act_high[j];
            float u = 2.0f * (act[i * A + j] - lo) / (hi - lo) - 1.0f;
            unit[i * A + j] = u < -1.0f ? -1.0f : (u > 1.0f ? 1.0f : u);
        }
    }
}

void policy_env_from_unit(const policy_t *p, float *act, const float *unit, int B)
{
    int A = p->n_act;
    for (int i = 0; i < B; i++) {
        for (int j = 0; j < A; j++) {
            float lo = p->act_low[j], hi = p->act_high[j];
            act[i * A + j] = lo + (unit[i * A + j] + 1.0f) * 0.5f * (hi - lo);
        }
    }
}
