/* env_mujoco.h - the MuJoCo base every MuJoCo task plugs into (MuJoCo 2.2.2).
 *
 * The base owns what all Gymnasium v4 MuJoCo envs share (gymnasium/envs/mujoco/mujoco_env.py):
 * - one const mjModel per task, compiled once per process from the task's embedded MJCF file
 *   and shared by every instance and thread (never written after loading);
 * - one mjData per instance; reset = mj_resetData, qpos = qpos0 + noise, qvel = noise,
 *   mj_forward (noise: U(-s, s) on qpos; U(-s, s) or s*N(0, 1) on qvel, per task);
 * - step = ctrl <- action (clipped by env_step, as MuJoCo clamps ctrllimited actuators),
 *   frame_skip x mj_step, then mj_rnePostConstraint when the task reads cfrc_ext;
 * - divergence: d->warning[] is read after every step; if any counter moved (MuJoCo has then
 *   silently reset the state), or the observation is not finite, the episode ends as
 *   truncated with reward 0 and the instance's divergence count goes up;
 * - the action space is read from actuator_ctrlrange, dt = timestep * frame_skip.
 *
 * How a task plugs in (one file per task, common/env_<task>.c):
 *
 *     static const mjenv_task hopper_task = {
 *         .id = "Hopper-v4", .asset = "hopper.xml", .frame_skip = 4, .n_obs = 11,
 *         .max_episode_steps = 1000, .reset_noise_scale = 5e-3,
 *         .qvel_noise = MJENV_NOISE_UNIFORM, .rne_post = false,
 *         .n_info = 3, .info_names = {"reward_forward", "reward_healthy", "reward_ctrl"},
 *         .position = hopper_position, .observe = hopper_observe, .score = hopper_score,
 *         .termination = hopper_termination,
 *     };
 *     int env_hopper_create(env_t *e) { return mjenv_create(e, &hopper_task); }
 *
 * then declare env_hopper_create in env.h and add X("Hopper-v4", env_hopper_create) to
 * ENV_REGISTRY in env.c. The MJCF file goes in common/env/assets/ (embedded at build time by
 * env_assets/embed.cmake; nothing is read from disk at run time). Task hooks get the shared
 * model and the instance's data read-only; they must not allocate.
 */
#ifndef TWIG_ENV_MUJOCO_H
#define TWIG_ENV_MUJOCO_H

#include <mujoco/mujoco.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/env/env.h"

typedef enum mjenv_noise {
    MJENV_NOISE_UNIFORM,   /* qvel += U(-s, s) (Hopper, Walker2d, Humanoid, InvertedPendulum) */
    MJENV_NOISE_NORMAL,    /* qvel += s * N(0, 1) (HalfCheetah, Ant) */
} mjenv_noise;

typedef struct mjenv_task {
    const char *id;              /* Gymnasium id, "Hopper-v4" */
    const char *asset;           /* MJCF file name in common/env/assets/ */
    int frame_skip;              /* mj_step calls per env step */
    int n_obs;
    int max_episode_steps;
    double reset_noise_scale;    /* Gymnasium's default */
    mjenv_noise qvel_noise;      /* qpos noise is always U(-s, s) */
    bool rne_post;               /* call mj_rnePostConstraint after stepping (cfrc_ext used) */
    int n_info;                  /* reward components, in res->info */
    const char *info_names[ENV_INFO_MAX];
    /* the x coordinate whose velocity the forward reward pays (qpos[0], torso xpos, COM x);
     * called before and after the substeps. NULL if the task has no forward reward */
    double (*position)(const mjModel *m, const mjData *d);
    /* writes obs (n_obs) from the current state */
    void (*observe)(const mjModel *m, const mjData *d, float *obs);
    /* after the step: writes res->reward, res->info, res->terminated. act is the (clipped)
     * action, x_before/x_after from position(), obs the observation just written */
    void (*score)(const mjModel *m, const mjData *d, const float *act, double x_before,
                  double x_after, double dt, const float *obs, env_step_result *res);
    /* pure termination on observations, as env_ops.termination */
    void (*termination)(const env_spec *s, const float *obs, const float *act,
                        const float *next_obs, bool *done, int B);
} mjenv_task;

/* helpers the task hooks share */

/* x = qpos[0]: the forward coordinate of the planar tasks (a slide joint rootx) */
double mjenv_position_qpos0(const mjModel *m, const mjData *d);
/* obs = qpos[skip:], then qvel clipped to [-vel_clip, vel_clip] (INFINITY: not clipped; NaN
 * stays NaN, as np.clip); writes nq - skip + nv values */
void mjenv_observe_qpos_qvel(const mjModel *m, const mjData *d, float *obs, int skip,
                             double vel_clip);
/* sum of a[i]^2 over n, in double: the control costs */
double mjenv_sum_sq(const float *a, int n);

/* fill a zeroed env_t for task (the create function of every MuJoCo task).
 * returns 0, or a negative code if the model does not load (err_msg has MuJoCo's message) */
int mjenv_create(env_t *e, const mjenv_task *task);

/* the task's shared model, loading it on first use. 0 or a negative code */
int mjenv_model(const mjModel **out, const mjenv_task *task);

/* for tests and tools: the instance's model and data (NULL if e is not a MuJoCo env) */
const mjModel *mjenv_model_of(const env_t *e);
mjData *mjenv_data_of(env_t *e);
/* the task description behind a MuJoCo env (NULL if e is not one), e.g. for benchmarks */
const mjenv_task *mjenv_task_of(const env_t *e);
/* steps of this instance that ended in a simulator divergence */
int mjenv_divergences(const env_t *e);

/* embedded MJCF files (generated by common/env/assets/embed.cmake) */
typedef struct env_asset {
    const char *name;            /* file name, "hopper.xml" */
    const char *data;            /* contents, NUL-terminated */
    int size;                    /* bytes, without the NUL */
} env_asset;
extern const env_asset env_assets[];
extern const int env_n_assets;

#endif
