/* env_walker2d.c - Walker2d-v4 (gymnasium/envs/mujoco/walker2d_v4.py)
 *
 * obs (17) = qpos[1:] (z, angle, thigh, leg, foot, thigh_left, leg_left, foot_left),
 * clip(qvel, -10, 10) (9);
 * reward = 1.0 * (x_after - x_before) / dt + 1.0 - 1e-3 * sum(a^2), x = qpos[0]; the healthy
 * reward is paid on the terminating step too (v4: terminate_when_unhealthy);
 * healthy <=> 0.8 < z < 2.0 and -1 < angle < 1 (z = qpos[1], angle = qpos[2], strict);
 * terminated = not healthy; nothing else of the state is range-checked (unlike Hopper);
 * frame_skip 4 at timestep 0.002 (dt 0.008, RK4); reset qpos, qvel += U(-5e-3, 5e-3).
 * Facts: env-specs.md 2, 3, 4.3; model common/env/assets/walker2d.xml.
 *
 * The pure termination reads z and angle from obs[0] and obs[1], which are unclipped
 * positions, so it sees what the env sees up to float rounding; it compares in float
 * against the float-rounded bounds (the two can differ only within ~1e-7 of a bound).
 * MBPO's walker2d termination also requires every observation entry in (-100, 100); v4
 * does not, and neither does twig (the clipped velocities never reach 100 anyway).
 */
#include <math.h>

#include "common/env/env.h"
#include "common/env/env_mujoco.h"

#define WALKER2D_FORWARD_WEIGHT 1.0
#define WALKER2D_HEALTHY_REWARD 1.0
#define WALKER2D_CTRL_WEIGHT 1e-3
#define WALKER2D_MIN_Z 0.8
#define WALKER2D_MAX_Z 2.0
#define WALKER2D_MAX_ANGLE 1.0
#define WALKER2D_VEL_CLIP 10.0
#define WALKER2D_N_OBS 17

static void walker2d_observe(const mjModel *m, const mjData *d, float *obs)
{
    mjenv_observe_qpos_qvel(m, d, obs, 1, WALKER2D_VEL_CLIP);
}

/* false for NaN too */
static bool walker2d_healthy(double z, double angle)
{
    return z > WALKER2D_MIN_Z && z < WALKER2D_MAX_Z && angle > -WALKER2D_MAX_ANGLE &&
           angle < WALKER2D_MAX_ANGLE;
}

static void walker2d_score(const mjModel *m, const mjData *d, const float *act,
                           double x_before, double x_after, double dt, const float *obs,
                           env_step_result *res)
{
    double forward = WALKER2D_FORWARD_WEIGHT * (x_after - x_before) / dt;
    double ctrl_cost = WALKER2D_CTRL_WEIGHT * mjenv_sum_sq(act, m->nu);
    res->reward = (float)(forward + WALKER2D_HEALTHY_REWARD - ctrl_cost);
    res->info[0] = (float)forward;
    res->info[1] = (float)WALKER2D_HEALTHY_REWARD;
    res->info[2] = (float)-ctrl_cost;
    res->terminated = !walker2d_healthy(d->qpos[1], d->qpos[2]);
}

static void walker2d_termination(const env_spec *s, const float *obs, const float *act,
                                 const float *next_obs, bool *done, int B)
{
    for (int b = 0; b < B; b++) {
        const float *o = next_obs + (size_t)b * WALKER2D_N_OBS;
        float z = o[0], angle = o[1];
        /* at float precision: obs 0.8f (0.800000012) is the bound itself, so it is done */
        done[b] = !(z > (float)WALKER2D_MIN_Z && z < (float)WALKER2D_MAX_Z &&
                    angle > (float)-WALKER2D_MAX_ANGLE && angle < (float)WALKER2D_MAX_ANGLE);
    }
}

static const mjenv_task walker2d_task = {
    .id = "Walker2d-v4",
    .asset = "walker2d.xml",
    .frame_skip = 4,
    .n_obs = WALKER2D_N_OBS,
    .max_episode_steps = 1000,
    .reset_noise_scale = 5e-3,
    .qvel_noise = MJENV_NOISE_UNIFORM,
    .rne_post = false,
    .n_info = 3,
    .info_names = {"reward_forward", "reward_survive", "reward_ctrl"},
    .position = mjenv_position_qpos0,
    .observe = walker2d_observe,
    .score = walker2d_score,
    .termination = walker2d_termination,
};

int env_walker2d_create(env_t *e)
{
    return mjenv_create(e, &walker2d_task);
}
