/* policy.h - the SAC actor as the other processes use it: parameters only (no critics, no
 * optimiser state), acting on batches of observations, in the env's action units. Its
 * parameters come from a policy WeightBlob (common/rpc/policy_blob.h).
 *
 * Units. Everything on the wire (the real log, synthetic pushes) and everything the model
 * sees carries actions in the env's units (within spec.act_low..act_high, as applied). SAC
 * works in [-1, 1]^n_act; policy_unit_from_env / policy_env_from_unit convert, per
 * dimension: env = low + (unit + 1) (high - low) / 2.
 *
 *     policy_t p = {0};
 *     policy_shape sh = {spec->n_obs, spec->n_act, hidden, spec->act_low, spec->act_high};
 *     policy_init(&p, &sh, max_batch);       // the allocation: params, forward workspace
 *     if (policy_load_blob(&p, blob) < 0) { ... err_msg() ... }  // policy_blob.h
 *     policy_act(&p, &rng, act, obs, B, false);                  // sample, env units
 *     policy_free(&p);
 */
#ifndef TWIG_POLICY_H
#define TWIG_POLICY_H

#include <stdbool.h>
#include <stdint.h>

#include "common/base/rng.h"
#include "common/nn/nn.h"

/* the one "newer" rule for policy versions: GetPolicy (answered now, parked waiters, the
 * shutdown's answers), its clients and policy_load_blob. Versions never go backwards (the
 * learner's policy_version file), so newer is greater. */
static inline bool policy_version_newer(uint64_t version, uint64_t have)
{
    return version > have;
}

typedef struct policy {
    int n_obs, n_act, hidden, max_batch;
    mlp_params actor;        /* O -> H -> H -> 2A, parameters from the newest blob */
    mlp_work actor_work;     /* its forward activations for max_batch rows */
    uint64_t version;        /* of the loaded blob; 0 before the first load */
    float *act_low;          /* (n_act) copied from the shape */
    float *act_high;         /* (n_act) */
    /* workspace, one block, for max_batch rows */
    float *work;
    float *pi_out;           /* (B, 2A) */
    float *eps;              /* (B, A) */
    float *u;                /* (B, A) */
    float *unit;             /* (B, A) actions in [-1, 1] */
    float *logp;             /* (B) */
} policy_t;

/* what a policy is sized by: the env's dims and action bounds (copied), the hidden width */
typedef struct policy_shape {
    int n_obs, n_act, hidden;
    const float *act_low, *act_high;   /* (n_act) each */
} policy_shape;

/* sized for shape and batches up to max_batch; returns 0 or -EINVAL naming the field */
int policy_init(policy_t *p, const policy_shape *shape, int max_batch);
void policy_free(policy_t *p);

/* act (B, n_act) in env units for obs (B, n_obs), B <= max_batch: tanh(mu) if deterministic,
 * else a tanh-Gaussian sample drawn with rng */
void policy_act(policy_t *p, rng_t *rng, float *act, const float *obs, int B, bool deterministic);

/* uniform random actions in env units (the initial exploration) */
void policy_act_random(const policy_t *p, rng_t *rng, float *act, int B);

/* unit (B, A) in [-1, 1] from env-unit actions (clamped into [-1, 1]) */
void policy_unit_from_env(const policy_t *p, float *unit, const float *act, int B);
/* env-unit actions from unit (B, A) */
void policy_env_from_unit(const policy_t *p, float *act, const float *unit, int B);


#endif
