/* env.h - the environment interface every task implements (Pendulum, MuJoCo, plugins).
 *
 * An env_t is one instance: its vtable (env_ops), its spec, and its private state. Actors
 * step instances; model rollouts only need the spec and the pure termination function
 * (env_termination), which never touches the instance's state.
 *
 *     env_t *e = NULL;
 *     if (env_make(&e, "Pendulum-v1") < 0) { ... err_msg() names what was wrong ... }
 *     env_reset(e, seed, obs);
 *     env_step_result res = {.next_obs = next_obs};
 *     if (env_step(e, action, &res) < 0) { ... NaN/Inf action or episode already over ... }
 *     if (res.terminated || res.truncated) { env_reset(e, ++seed, obs); }
 *     env_free(e);
 *
 * Conventions shared by every task:
 * - observations are float (MuJoCo computes in double; Gymnasium returns float64 there);
 * - env_step clips the action to [act_low, act_high] before the task sees it, so the task's
 *   dynamics and control costs use the clipped action;
 * - truncated is set by env_step when t reaches max_episode_steps, and by a task whose
 *   simulator diverged (MuJoCo warnings); terminated comes only from the task;
 * - reward components (info) sum to the reward (up to float rounding).
 *
 * A task is a create function (env_create_fn) listed in env.c's registry by Gymnasium id;
 * a plugin is a shared object exporting the same thing through env_plugin.h.
 */
#ifndef TWIG_ENV_H
#define TWIG_ENV_H

#include <stdbool.h>
#include <stdint.h>

#define ENV_NAME_MAX 64
#define ENV_INFO_MAX 8      /* reward components reported in env_step_result.info */
#define ENV_DIM_MAX 4096    /* largest n_obs / n_act a task (or plugin) may declare */

typedef struct env_spec {
    char name[ENV_NAME_MAX];   /* Gymnasium id: "Pendulum-v1", "Hopper-v4" */
    int n_obs;
    int n_act;
    const float *act_low;      /* (n_act) borrowed from the env's static data */
    const float *act_high;     /* (n_act) */
    int max_episode_steps;     /* truncation limit */
    double dt;                 /* seconds of simulated time per step */
    int n_info;                /* reward components, summing to the reward */
    const char *info_names[ENV_INFO_MAX];
} env_spec;

typedef struct env_step_result {
    float *next_obs;           /* (n_obs) caller's buffer, written by env_step */
    float reward;
    bool terminated;           /* terminal state: no bootstrap */
    bool truncated;            /* time limit or simulator divergence: bootstrap */
    float info[ENV_INFO_MAX];  /* reward components, spec.info_names order */
} env_step_result;

typedef struct env env_t;

typedef struct env_ops {
    /* start an episode from seed; writes obs (n_obs) */
    void (*reset)(env_t *e, uint64_t seed, float *obs);
    /* one step; act (n_act) is finite and inside the bounds (env_step checks and clips).
     * res->info is zeroed and the flags false on entry; the task writes next_obs, reward,
     * info, terminated, and truncated only on divergence */
    void (*step)(env_t *e, const float *act, env_step_result *res);
    /* pure: would next_obs be terminal? obs/act/next_obs are (B, dim) rows; writes done[B].
     * reads only its arguments, so any thread may call it at any time */
    void (*termination)(const env_spec *s, const float *obs, const float *act,
                        const float *next_obs, bool *done, int B);
    /* releases e->impl; NULL if there is nothing to release */
    void (*destroy)(env_t *e);
} env_ops;

struct env {
    const env_ops *ops;
    env_spec spec;
    int t;                     /* steps since reset */
    bool done;                 /* the episode ended (or never started): env_step refuses */
    /* Gymnasium's reset_noise_scale: set by the task's create to its default, NAN when the
     * task has no such parameter; change it with env_set_reset_noise_scale */
    double reset_noise_scale;
    void *impl;                /* the task's state, owned */
    float *act_buf;            /* (n_act) the clipped action, owned by env.c */
    void *dl_handle;           /* plugin library, owned by env.c (NULL for built-ins) */
};

/* a task's constructor: fills e->ops, e->spec, e->impl (and reset_noise_scale).
 * returns 0 or a negative code with err_set detail; on failure e->impl must be released */
typedef int (*env_create_fn)(env_t *e);

/* make an instance by id ("Pendulum-v1", "Hopper-v4", "plugin:/path/lib.so:Name").
 * returns 0, or a negative code with err_msg() naming what was wrong */
int env_make(env_t **out, const char *id);
/* safe on NULL */
void env_free(env_t *e);

/* is id one env_make could make, from the options alone: a built-in id, or a plugin id of
 * the form plugin:PATH:NAME (the plugin itself is loaded only by env_make). 0, or
 * TWIG_ENOTFOUND / -EINVAL with err_msg naming the id (and the known ones) */
int env_check_id(const char *id);

void env_reset(env_t *e, uint64_t seed, float *obs);
/* checks the action (length is the caller's contract; NaN/Inf -> -EINVAL, nothing stepped),
 * clips it to the bounds, steps, and applies the time limit. stepping a finished episode
 * (or before the first reset) is -EINVAL too. returns 0 or -EINVAL */
int env_step(env_t *e, const float *act, env_step_result *res);

/* validates an action from outside (file, message): n_act must equal the spec's and every
 * value be finite. returns 0 or -EINVAL naming the index */
int env_check_action(const env_t *e, const float *act, int n_act);

/* Gymnasium's reset_noise_scale for the next resets (0: start exactly from the model's
 * initial pose). -EINVAL if x is negative or not finite, TWIG_EUNIMPL if the task has none */
int env_set_reset_noise_scale(env_t *e, double x);

/* pure termination of the env family, batched; usable by rollouts from any thread */
void env_termination(const env_t *e, const float *obs, const float *act, const float *next_obs,
                     bool *done, int B);

/* the termination of a task that never terminates (only truncates): done[0..B) = false */
void env_termination_never(const env_spec *s, const float *obs, const float *act,
                           const float *next_obs, bool *done, int B);

/* ids known to env_make (not plugins), NULL-terminated */
const char *const *env_list(void);

/* built-in tasks (one file each) */
int env_pendulum_create(env_t *e);
/* Gymnasium's reset options for Pendulum (x_init/y_init) in spirit: put the pendulum at
 * (th, thdot) after a reset, for tests and debugging. -EINVAL if e is not Pendulum-v1 */
int env_pendulum_set_state(env_t *e, double th, double thdot);
/* MuJoCo tasks (env_mujoco.h; one file each) */
int env_inverted_pendulum_create(env_t *e);
int env_half_cheetah_create(env_t *e);
int env_hopper_create(env_t *e);
int env_walker2d_create(env_t *e);
int env_ant_create(env_t *e);
int env_humanoid_create(env_t *e);

#endif
