/* env_pendulum.c - Pendulum-v1 exactly as Gymnasium's classic_control/pendulum.py defines it.
 *
 * State (th, thdot), th = 0 upright, not wrapped. One step with torque u in [-2, 2]:
 *     cost    = angle_normalize(th)^2 + 0.1 thdot^2 + 0.001 u^2       (pre-step state)
 *     thdot'  = clip(thdot + (3g/(2l) sin th + 3/(m l^2) u) dt, -8, 8)
 *     th'     = th + thdot' dt                                         (semi-implicit Euler)
 * obs = (cos th, sin th, thdot); reset th ~ U(-pi, pi), thdot ~ U(-1, 1); never terminates,
 * truncated at 200 steps. Facts: ../shared/env-specs.md section 5.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/env/env.h"
#include "common/base/err.h"
#include "common/base/mem.h"
#include "common/base/rng.h"

#define PENDULUM_G 10.0
#define PENDULUM_M 1.0
#define PENDULUM_L 1.0
#define PENDULUM_DT 0.05
#define PENDULUM_MAX_SPEED 8.0
#define PENDULUM_MAX_TORQUE 2.0f
#define PENDULUM_MAX_STEPS 200

typedef struct pendulum {
    double th;       /* angle, 0 upright */
    double thdot;    /* angular velocity */
    rng_t rng;
} pendulum_t;

static const float pendulum_act_low[1] = {-PENDULUM_MAX_TORQUE};
static const float pendulum_act_high[1] = {PENDULUM_MAX_TORQUE};

/* ((x + pi) mod 2pi) - pi with a floor modulo, as numpy's %: result in [-pi, pi) */
static double pendulum_angle_normalize(double x)
{
    double r = fmod(x + M_PI, 2.0 * M_PI);
    if (r < 0.0) {
        r += 2.0 * M_PI;
    }
    return r - M_PI;
}

static void pendulum_write_obs(const pendulum_t *p, float *obs)
{
    obs[0] = (float)cos(p->th);
    obs[1] = (float)sin(p->th);
    obs[2] = (float)p->thdot;
}

static void pendulum_reset(env_t *e, uint64_t seed, float *obs)
{
    pendulum_t *p = e->impl;
    rng_seed(&p->rng, seed);
    p->th = -M_PI + 2.0 * M_PI * rng_uniform_f64(&p->rng);
    p->thdot = -1.0 + 2.0 * rng_uniform_f64(&p->rng);
    pendulum_write_obs(p, obs);
}

static void pendulum_step(env_t *e, const float *act, env_step_result *res)
{
    pendulum_t *p = e->impl;
    double u = act[0];      /* already clipped to [-2, 2] by env_step */

    /* cost of the pre-step state */
    double th_n = pendulum_angle_normalize(p->th);
    double c_angle = th_n * th_n;
    double c_vel = 0.1 * p->thdot * p->thdot;
    double c_ctrl = 0.001 * u * u;

    /* velocity first, clipped, then the angle with the new velocity */
    double acc = 3.0 * PENDULUM_G / (2.0 * PENDULUM_L) * sin(p->th) +
                 3.0 / (PENDULUM_M * PENDULUM_L * PENDULUM_L) * u;
    double thdot = p->thdot + acc * PENDULUM_DT;
    thdot = fmin(fmax(thdot, -PENDULUM_MAX_SPEED), PENDULUM_MAX_SPEED);
    p->th = p->th + thdot * PENDULUM_DT;
    p->thdot = thdot;

    pendulum_write_obs(p, res->next_obs);
    res->reward = (float)(-(c_angle + c_vel + c_ctrl));
    res->info[0] = (float)-c_angle;
    res->info[1] = (float)-c_vel;
    res->info[2] = (float)-c_ctrl;
}

static void pendulum_destroy(env_t *e)
{
    free(e->impl);
    e->impl = NULL;
}

static const env_ops pendulum_ops = {
    .reset = pendulum_reset,
    .step = pendulum_step,
    .termination = env_termination_never,
    .destroy = pendulum_destroy,
};

int env_pendulum_create(env_t *e)
{
    e->ops = &pendulum_ops;
    e->impl = xcalloc(1, sizeof(pendulum_t));
    env_spec *s = &e->spec;
    snprintf(s->name, sizeof(s->name), "Pendulum-v1");
    s->n_obs = 3;
    s->n_act = 1;
    s->act_low = pendulum_act_low;
    s->act_high = pendulum_act_high;
    s->max_episode_steps = PENDULUM_MAX_STEPS;
    s->dt = PENDULUM_DT;
    s->n_info = 3;
    s->info_names[0] = "reward_angle";
    s->info_names[1] = "reward_velocity";
    s->info_names[2] = "reward_ctrl";
    return 0;
}

int env_pendulum_set_state(env_t *e, double th, double thdot)
{
    if (e->ops != &pendulum_ops) {
        return err_set(-EINVAL, "%s is not Pendulum-v1", e->spec.name);
    }
    if (!isfinite(th) || !isfinite(thdot)) {
        return err_set(-EINVAL, "pendulum state (%g, %g) is not finite", th, thdot);
    }
    pendulum_t *p = e->impl;
    p->th = th;
    p->thdot = thdot;
    return 0;
}
