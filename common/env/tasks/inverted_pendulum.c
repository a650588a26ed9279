/* env_inverted_pendulum.c - InvertedPendulum-v4 (gymnasium/envs/mujoco/inverted_pendulum_v4.py)
 *
 * obs (4) = qpos (cart x, pole angle), qvel; reward +1 on every step, the terminating one
 * included; terminated when any obs is not finite or |pole angle| > 0.2; frame_skip 2 at
 * timestep 0.02 (dt 0.04); reset qpos, qvel += U(-0.01, 0.01). Facts: env-specs.md 2, 4.6.
 */
#include <math.h>

#include "common/env/env.h"
#include "common/env/env_mujoco.h"

#define IPEND_MAX_ANGLE 0.2

static void ipend_observe(const mjModel *m, const mjData *d, float *obs)
{
    obs[0] = (float)d->qpos[0];
    obs[1] = (float)d->qpos[1];
    obs[2] = (float)d->qvel[0];
    obs[3] = (float)d->qvel[1];
}

static bool ipend_is_terminal(const float *obs)
{
    for (int i = 0; i < 4; i++) {
        if (!isfinite(obs[i])) {
            return true;
        }
    }
    return fabsf(obs[1]) > IPEND_MAX_ANGLE;
}

static void ipend_score(const mjModel *m, const mjData *d, const float *act, double x_before,
                        double x_after, double dt, const float *obs, env_step_result *res)
{
    res->reward = 1.0f;
    res->info[0] = 1.0f;
    res->terminated = ipend_is_terminal(obs);
}

static void ipend_termination(const env_spec *s, const float *obs, const float *act,
                              const float *next_obs, bool *done, int B)
{
    for (int b = 0; b < B; b++) {
        done[b] = ipend_is_terminal(next_obs + 4 * b);
    }
}

static const mjenv_task ipend_task = {
    .id = "InvertedPendulum-v4",
    .asset = "inverted_pendulum.xml",
    .frame_skip = 2,
    .n_obs = 4,
    .max_episode_steps = 1000,
    .reset_noise_scale = 0.01,
    .qvel_noise = MJENV_NOISE_UNIFORM,
    .rne_post = false,
    .n_info = 1,
    .info_names = {"reward_survive"},
    .position = NULL,
    .observe = ipend_observe,
    .score = ipend_score,
    .termination = ipend_termination,
};

int env_inverted_pendulum_create(env_t *e)
{
    return mjenv_create(e, &ipend_task);
}
