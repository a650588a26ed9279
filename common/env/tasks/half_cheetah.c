/* env_half_cheetah.c - HalfCheetah-v4 (gymnasium/envs/mujoco/half_cheetah_v4.py)
 *
 * obs (17) = qpos[1:] (rootz, rooty, 6 joints), qvel (9), not clipped;
 * reward = 1.0 * (x_after - x_before) / dt - 0.1 * sum(a^2), x = qpos[0];
 * never terminates; frame_skip 5 at timestep 0.01 (dt 0.05, Euler);
 * reset qpos += U(-0.1, 0.1), qvel += 0.1 * N(0, 1). Facts: env-specs.md 2, 3, 4.1.
 */
#include <math.h>

#include "common/env/env.h"
#include "common/env/env_mujoco.h"

#define CHEETAH_FORWARD_WEIGHT 1.0
#define CHEETAH_CTRL_WEIGHT 0.1

static void cheetah_observe(const mjModel *m, const mjData *d, float *obs)
{
    mjenv_observe_qpos_qvel(m, d, obs, 1, INFINITY);
}

static void cheetah_score(const mjModel *m, const mjData *d, const float *act, double x_before,
                          double x_after, double dt, const float *obs, env_step_result *res)
{
    double forward = CHEETAH_FORWARD_WEIGHT * (x_after - x_before) / dt;
    double ctrl_cost = CHEETAH_CTRL_WEIGHT * mjenv_sum_sq(act, m->nu);
    res->reward = (float)(forward - ctrl_cost);
    res->info[0] = (float)forward;
    res->info[1] = (float)-ctrl_cost;
    res->terminated = false;
}

static const mjenv_task cheetah_task = {
    .id = "HalfCheetah-v4",
    .asset = "half_cheetah.xml",
    .frame_skip = 5,
    .n_obs = 17,
    .max_episode_steps = 1000,
    .reset_noise_scale = 0.1,
    .qvel_noise = MJENV_NOISE_NORMAL,
    .rne_post = false,
    .n_info = 2,
    .info_names = {"reward_run", "reward_ctrl"},
    .position = mjenv_position_qpos0,
    .observe = cheetah_observe,
    .score = cheetah_score,
    .termination = env_termination_never,
};

int env_half_cheetah_create(env_t *e)
{
    return mjenv_create(e, &cheetah_task);
}
