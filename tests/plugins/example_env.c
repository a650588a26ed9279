/* example_env.c - a user environment as a twig plugin: "PointMass", a unit mass on a line.
 *
 * Build it as a shared object against common/env/env.h and common/env/env_plugin.h only (no twig
 * library symbols are available to plugins), then run it with
 *     twig env plugin:/path/libtwig_example_env.so:PointMass --steps 20
 *
 * Task: state (x, v); force u in [-1, 1]; semi-implicit Euler with dt 0.05:
 *     v' = v + u dt,  x' = x + v' dt
 * reward = -(x^2 + 0.1 u^2) of the pre-step position (components reward_distance,
 * reward_ctrl); terminated when |x'| > 2; 100 steps per episode; reset x ~ U(-1, 1), v = 0.
 *
 * EXAMPLE_ABI_VERSION and EXAMPLE_BAD_SPEC exist only so the tests can build broken variants.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/env/env.h"
#include "common/env/env_plugin.h"

#ifndef EXAMPLE_ABI_VERSION
#define EXAMPLE_ABI_VERSION ENV_PLUGIN_ABI_VERSION
#endif

#define PM_DT 0.05
#define PM_LIMIT 2.0
#define PM_CTRL_WEIGHT 0.1
#define PM_MAX_STEPS 100

typedef struct point_mass {
    double x, v;
    uint64_t rng;     /* splitmix64 state */
} point_mass_t;

static const float pm_low[1] = {-1.0f};
static const float pm_high[1] = {1.0f};

static double pm_uniform(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1.0p-53;
}

static void pm_reset(env_t *e, uint64_t seed, float *obs)
{
    point_mass_t *p = e->impl;
    p->rng = seed;
    p->x = -1.0 + 2.0 * pm_uniform(&p->rng);
    p->v = 0.0;
    obs[0] = (float)p->x;
    obs[1] = (float)p->v;
}

static void pm_step(env_t *e, const float *act, env_step_result *res)
{
    point_mass_t *p = e->impl;
    double u = act[0];
    double c_dist = p->x * p->x;
    double c_ctrl = PM_CTRL_WEIGHT * u * u;
    p->v += u * PM_DT;
    p->x += p->v * PM_DT;
    res->next_obs[0] = (float)p->x;
    res->next_obs[1] = (float)p->v;
    res->reward = (float)-(c_dist + c_ctrl);
    res->info[0] = (float)-c_dist;
    res->info[1] = (float)-c_ctrl;
    res->terminated = fabs(p->x) > PM_LIMIT;
}

static void pm_termination(const env_spec *s, const float *obs, const float *act,
                           const float *next_obs, bool *done, int B)
{
    for (int b = 0; b < B; b++) {
        done[b] = !(fabsf(next_obs[2 * b]) <= (float)PM_LIMIT);
    }
}

static void pm_destroy(env_t *e)
{
    free(e->impl);
    e->impl = NULL;
}

static const env_ops pm_ops = {
    .reset = pm_reset,
    .step = pm_step,
    .termination = pm_termination,
    .destroy = pm_destroy,
};

static int pm_create(env_t *e)
{
    e->impl = calloc(1, sizeof(point_mass_t));
    if (e->impl == NULL) {
        return -ENOMEM;
    }
    e->ops = &pm_ops;
    env_spec *s = &e->spec;
    snprintf(s->name, sizeof(s->name), "PointMass");
#ifdef EXAMPLE_BAD_SPEC
    s->n_obs = 0;
#else
    s->n_obs = 2;
#endif
    s->n_act = 1;
    s->act_low = pm_low;
    s->act_high = pm_high;
    s->max_episode_steps = PM_MAX_STEPS;
    s->dt = PM_DT;
    s->n_info = 2;
    s->info_names[0] = "reward_distance";
    s->info_names[1] = "reward_ctrl";
    return 0;
}

static const env_plugin pm_plugin = {
    .abi_version = EXAMPLE_ABI_VERSION,
    .struct_size = sizeof(env_plugin),
    .create = pm_create,
};

__attribute__((visibility("default"))) const env_plugin *twig_env_plugin_register(const char *name)
{
    return strcmp(name, "PointMass") == 0 ? &pm_plugin : NULL;
}
