/* env_humanoid.c - Humanoid-v4 (gymnasium/envs/mujoco/humanoid_v4.py)
 *
 * obs (376) = qpos[2:] (22: z, torso quaternion, 17 joint angles), qvel (23), cinert (14 x 10),
 * cvel (14 x 6), qfrc_actuator (23), cfrc_ext (14 x 6); the world-body rows and the free
 * joint's qfrc_actuator entries are always 0 (kept: v4 has them, v5 dropped them);
 * cfrc_ext is filled by mj_rnePostConstraint after the substeps (MuJoCo >= 2.0 does not fill
 * it in mj_step); all fields are read as left by the last substep, as Gymnasium reads them;
 * reward = 1.25 * (com_after - com_before) / dt + 5.0 - 0.1 * sum(ctrl^2), com = x of the
 * mass-weighted mean of every body's xipos (stale by one substep, as in Gymnasium); no
 * contact cost in v4 (v2/v3 had one, v5 restored it); the healthy reward is paid on the
 * terminating step too;
 * healthy <=> 1.0 < z < 2.0 (strict), z = qpos[2]; terminated = not healthy;
 * frame_skip 5 at timestep 0.003 (dt 0.015, RK4, PGS solver with 50 iterations);
 * reset qpos, qvel += U(-0.01, 0.01).
 * Facts: env-specs.md 0, 2, 3, 4.5; model common/env/assets/humanoid.xml. The action order
 * is the actuator order: abdomen_y, abdomen_z, abdomen_x, then the other joints.
 *
 * The pure termination reads z from obs[0]. mbrl-lib's humanoid termination uses
 * z < 1 or z > 2, which keeps z = 1.0 or 2.0 alive where v4 ends the episode; twig follows
 * v4 (done <=> z <= 1 or z >= 2, or z NaN).
 */
#include <math.h>

#include "common/env/env.h"
#include "common/env/env_mujoco.h"

#define HUMANOID_FORWARD_WEIGHT 1.25
#define HUMANOID_HEALTHY_REWARD 5.0
#define HUMANOID_CTRL_WEIGHT 0.1
#define HUMANOID_MIN_Z 1.0
#define HUMANOID_MAX_Z 2.0
#define HUMANOID_N_OBS 376

/* x of the centre of mass: sum(body_mass * xipos) / sum(body_mass) */
static double humanoid_position(const mjModel *m, const mjData *d)
{
    double mx = 0.0, mass = 0.0;
    for (int b = 0; b < m->nbody; b++) {
        mx += m->body_mass[b] * d->xipos[3 * b];
        mass += m->body_mass[b];
    }
    return mx / mass;
}

static float *humanoid_put(float *obs, const mjtNum *src, int n)
{
    for (int i = 0; i < n; i++) {
        obs[i] = (float)src[i];
    }
    return obs + n;
}

static void humanoid_observe(const mjModel *m, const mjData *d, float *obs)
{
    mjenv_observe_qpos_qvel(m, d, obs, 2, INFINITY);
    float *o = obs + (m->nq - 2) + m->nv;
    o = humanoid_put(o, d->cinert, 10 * m->nbody);
    o = humanoid_put(o, d->cvel, 6 * m->nbody);
    o = humanoid_put(o, d->qfrc_actuator, m->nv);
    humanoid_put(o, d->cfrc_ext, 6 * m->nbody);
}

static bool humanoid_healthy(double z)
{
    return z > HUMANOID_MIN_Z && z < HUMANOID_MAX_Z;    /* false for NaN */
}

static void humanoid_score(const mjModel *m, const mjData *d, const float *act,
                           double x_before, double x_after, double dt, const float *obs,
                           env_step_result *res)
{
    /* Gymnasium sums data.ctrl, which holds the action env_step clipped */
    double ctrl = 0.0;
    for (int i = 0; i < m->nu; i++) {
        ctrl += d->ctrl[i] * d->ctrl[i];
    }
    double forward = HUMANOID_FORWARD_WEIGHT * (x_after - x_before) / dt;
    double ctrl_cost = HUMANOID_CTRL_WEIGHT * ctrl;
    res->reward = (float)(forward + HUMANOID_HEALTHY_REWARD - ctrl_cost);
    res->info[0] = (float)forward;
    res->info[1] = (float)HUMANOID_HEALTHY_REWARD;
    res->info[2] = (float)-ctrl_cost;
    res->terminated = !humanoid_healthy(d->qpos[2]);
}

static void humanoid_termination(const env_spec *s, const float *obs, const float *act,
                                 const float *next_obs, bool *done, int B)
{
    for (int b = 0; b < B; b++) {
        done[b] = !humanoid_healthy(next_obs[(size_t)b * HUMANOID_N_OBS]);
    }
}

static const mjenv_task humanoid_task = {
    .id = "Humanoid-v4",
    .asset = "humanoid.xml",
    .frame_skip = 5,
    .n_obs = HUMANOID_N_OBS,
    .max_episode_steps = 1000,
    .reset_noise_scale = 1e-2,
    .qvel_noise = MJENV_NOISE_UNIFORM,
    .rne_post = true,
    .n_info = 3,
    .info_names = {"reward_linvel", "reward_alive", "reward_quadctrl"},
    .position = humanoid_position,
    .observe = humanoid_observe,
    .score = humanoid_score,
    .termination = humanoid_termination,
};

int env_humanoid_create(env_t *e)
{
    return mjenv_create(e, &humanoid_task);
}
