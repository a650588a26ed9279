/* env_ant.c - Ant-v4 with its default arguments (gymnasium/envs/mujoco/ant_v4.py)
 *
 * obs (27) = qpos[2:] (z, torso quaternion w x y z, hip/ankle angles 1..4), qvel (14: linear,
 * angular in the body frame, 8 joints); no contact forces (v4 default use_contact_forces
 * false, so none in obs or reward; v2/v3 had both, see docs/envs.md);
 * reward = (x_after - x_before) / dt + 1.0 - 0.5 * sum(a^2), x = xpos[0] of body "torso"
 * read after the substeps (one substep stale, as Gymnasium reads data.xpos);
 * healthy <=> qpos and qvel all finite and 0.2 <= z <= 1.0 (inclusive); the healthy reward
 * is paid on the terminating step too; terminated = not healthy;
 * frame_skip 5 at timestep 0.01 (dt 0.05, RK4); reset qpos += U(-0.1, 0.1) on all 15
 * entries (the env does not renormalise the quaternion, as in Gymnasium; MuJoCo 2.2.2's
 * mj_kinematics does, in place, during the reset's mj_forward), qvel = 0.1 * N(0, 1).
 * Facts: env-specs.md 0, 2, 3, 4.4; model common/env/assets/ant.xml. The action order is
 * the actuator order hip_4, ankle_4, hip_1, ankle_1, hip_2, ankle_2, hip_3, ankle_3.
 *
 * The pure termination sees obs = qpos[2:], qvel: the finiteness check misses qpos[0:2]
 * (x, y), which can only go non-finite with the rest of a diverged state, and a divergence
 * is caught by the base (truncated) before the task scores the step.
 */
#include <math.h>

#include "common/env/env.h"
#include "common/env/env_mujoco.h"

#define ANT_FORWARD_WEIGHT 1.0
#define ANT_HEALTHY_REWARD 1.0
#define ANT_CTRL_WEIGHT 0.5
#define ANT_MIN_Z 0.2
#define ANT_MAX_Z 1.0
#define ANT_TORSO_BODY 1       /* body "torso" (checked by the tests) */
#define ANT_N_OBS 27

static double ant_position(const mjModel *m, const mjData *d)
{
    return d->xpos[3 * ANT_TORSO_BODY];
}

static void ant_observe(const mjModel *m, const mjData *d, float *obs)
{
    mjenv_observe_qpos_qvel(m, d, obs, 2, INFINITY);
}

static bool ant_healthy_z(double z)
{
    return z >= ANT_MIN_Z && z <= ANT_MAX_Z;    /* false for NaN */
}

static void ant_score(const mjModel *m, const mjData *d, const float *act, double x_before,
                      double x_after, double dt, const float *obs, env_step_result *res)
{
    double forward = ANT_FORWARD_WEIGHT * (x_after - x_before) / dt;
    double ctrl_cost = ANT_CTRL_WEIGHT * mjenv_sum_sq(act, m->nu);
    res->reward = (float)(forward + ANT_HEALTHY_REWARD - ctrl_cost);
    res->info[0] = (float)forward;
    res->info[1] = (float)ANT_HEALTHY_REWARD;
    res->info[2] = (float)-ctrl_cost;

    bool healthy = ant_healthy_z(d->qpos[2]);
    for (int i = 0; i < m->nq && healthy; i++) {
        healthy = isfinite(d->qpos[i]);
    }
    for (int i = 0; i < m->nv && healthy; i++) {
        healthy = isfinite(d->qvel[i]);
    }
    res->terminated = !healthy;
}

static void ant_termination(const env_spec *s, const float *obs, const float *act,
                            const float *next_obs, bool *done, int B)
{
    for (int b = 0; b < B; b++) {
        const float *o = next_obs + (size_t)b * ANT_N_OBS;
        bool healthy = ant_healthy_z(o[0]);
        for (int i = 1; i < ANT_N_OBS && healthy; i++) {
            healthy = isfinite(o[i]);
        }
        done[b] = !healthy;
    }
}

static const mjenv_task ant_task = {
    .id = "Ant-v4",
    .asset = "ant.xml",
    .frame_skip = 5,
    .n_obs = ANT_N_OBS,
    .max_episode_steps = 1000,
    .reset_noise_scale = 0.1,
    .qvel_noise = MJENV_NOISE_NORMAL,
    .rne_post = false,
    .n_info = 3,
    .info_names = {"reward_forward", "reward_survive", "reward_ctrl"},
    .position = ant_position,
    .observe = ant_observe,
    .score = ant_score,
    .termination = ant_termination,
};

int env_ant_create(env_t *e)
{
    return mjenv_create(e, &ant_task);
}
