/* env_hopper.c - Hopper-v4 (gymnasium/envs/mujoco/hopper_v4.py)
 *
 * obs (11) = qpos[1:] (z, angle, thigh, leg, foot), clip(qvel, -10, 10) (6);
 * reward = 1.0 * (x_after - x_before) / dt + 1.0 - 1e-3 * sum(a^2), x = qpos[0]; the healthy
 * reward is paid on the terminating step too (v4: terminate_when_unhealthy);
 * healthy <=> every entry of state_vector()[2:] = (qpos[2:], qvel) in (-100, 100), z > 0.7 and
 * angle in (-0.2, 0.2), all strict; terminated = not healthy;
 * frame_skip 4 at timestep 0.002 (dt 0.008, RK4); reset qpos, qvel += U(-5e-3, 5e-3).
 * Facts: env-specs.md 2, 3, 4.2.
 *
 * The pure termination sees only the observation, whose velocities are clipped to +-10, so
 * it checks |obs[1:]| < 100 and cannot see an unclipped |qvel| >= 100 (the env can). MBPO's
 * hopper termination has the abs misplaced, `np.abs(next_obs[:, 1:] < 100)`, which lets any
 * large negative value through; twig takes the absolute value first.
 */
#include <math.h>

#include "common/env/env.h"
#include "common/env/env_mujoco.h"

#define HOPPER_FORWARD_WEIGHT 1.0
#define HOPPER_HEALTHY_REWARD 1.0
#define HOPPER_CTRL_WEIGHT 1e-3
#define HOPPER_STATE_MAX 100.0
#define HOPPER_MIN_Z 0.7
#define HOPPER_MAX_ANGLE 0.2
#define HOPPER_VEL_CLIP 10.0
#define HOPPER_N_OBS 11

static void hopper_observe(const mjModel *m, const mjData *d, float *obs)
{
    mjenv_observe_qpos_qvel(m, d, obs, 1, HOPPER_VEL_CLIP);
}

/* Gymnasium's is_healthy on the full double state */
static bool hopper_is_healthy(const mjModel *m, const mjData *d)
{
    for (int i = 2; i < m->nq; i++) {
        if (!(d->qpos[i] > -HOPPER_STATE_MAX && d->qpos[i] < HOPPER_STATE_MAX)) {
            return false;
        }
    }
    for (int i = 0; i < m->nv; i++) {
        if (!(d->qvel[i] > -HOPPER_STATE_MAX && d->qvel[i] < HOPPER_STATE_MAX)) {
            return false;
        }
    }
    double z = d->qpos[1], angle = d->qpos[2];
    return z > HOPPER_MIN_Z && angle > -HOPPER_MAX_ANGLE && angle < HOPPER_MAX_ANGLE;
}

static void hopper_score(const mjModel *m, const mjData *d, const float *act, double x_before,
                         double x_after, double dt, const float *obs, env_step_result *res)
{
    double forward = HOPPER_FORWARD_WEIGHT * (x_after - x_before) / dt;
    double ctrl_cost = HOPPER_CTRL_WEIGHT * mjenv_sum_sq(act, m->nu);
    res->reward = (float)(forward + HOPPER_HEALTHY_REWARD - ctrl_cost);
    res->info[0] = (float)forward;
    res->info[1] = (float)HOPPER_HEALTHY_REWARD;
    res->info[2] = (float)-ctrl_cost;
    res->terminated = !hopper_is_healthy(m, d);
}

/* the same ranges on an observation (obs[0] z, obs[1] angle, obs[1:] = qpos[2:], clip(qvel)) */
static void hopper_termination(const env_spec *s, const float *obs, const float *act,
                               const float *next_obs, bool *done, int B)
{
    for (int b = 0; b < B; b++) {
        const float *o = next_obs + (size_t)b * HOPPER_N_OBS;
        bool healthy = o[0] > HOPPER_MIN_Z && o[1] > -HOPPER_MAX_ANGLE && o[1] < HOPPER_MAX_ANGLE;
        for (int i = 1; i < HOPPER_N_OBS && healthy; i++) {
            healthy = fabsf(o[i]) < HOPPER_STATE_MAX;   /* false for NaN too */
        }
        done[b] = !healthy;
    }
}

static const mjenv_task hopper_task = {
    .id = "Hopper-v4",
    .asset = "hopper.xml",
    .frame_skip = 4,
    .n_obs = HOPPER_N_OBS,
    .max_episode_steps = 1000,
    .reset_noise_scale = 5e-3,
    .qvel_noise = MJENV_NOISE_UNIFORM,
    .rne_post = false,
    .n_info = 3,
    .info_names = {"reward_forward", "reward_healthy", "reward_ctrl"},
    .position = mjenv_position_qpos0,
    .observe = hopper_observe,
    .score = hopper_score,
    .termination = hopper_termination,
};

int env_hopper_create(env_t *e)
{
    return mjenv_create(e, &hopper_task);
}
