/* env.h - the environment interface every task implements (Pendulum, MuJoCo, plugins).
 *
 * An env_t is one instance: its vtable (env_ops), its spec, and its private state. Actors
 * step instances; model rollouts only need the spec and the pure termination function,
 * which env_termination() calls without an instance.
 *
 *     env_t *e = NULL;
 *     if (env_make(&e, "Pendulum-v1") < 0) { ... err_msg() names what was wrong ... }
 *     env_reset(e, seed, obs);
 *     env_step_result res;
 *     env_step(e, action, &res);      // fills res.next_obs, reward, terminated, truncated
 *     env_free(e);
 */
#ifndef TWIG_ENV_H
#define TWIG_ENV_H

#include <stdbool.h>
#include <stdint.h>

#define ENV_NAME_MAX 64
#define ENV_INFO_MAX 8      /* reward components reported in env_step_result.info */

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
    /* one step; act (n_act) is finite and of the right length (env_step checks) */
    void (*step)(env_t *e, const float *act, env_step_result *res);
    /* pure: would next_obs be terminal? obs/act/next_obs are (B, dim) rows; writes done[B] */
    void (*termination)(const env_spec *s, const float *obs, const float *act,
                        const float *next_obs, bool *done, int B);
    void (*destroy)(env_t *e);
} env_ops;

struct env {
    const env_ops *ops;
    env_spec spec;
    int t;                     /* steps since reset */
    void *impl;                /* the task's state, owned */
};

/* make an instance by id ("Pendulum-v1", "Hopper-v4", "plugin:/path/lib.so:Name").
 * returns 0, or a negative code with err_msg() naming what was wrong */
int env_make(env_t **out, const char *id);
void env_free(env_t *e);

void env_reset(env_t *e, uint64_t seed, float *obs);
/* checks the action (length is the caller's contract; NaN/Inf -> -EINVAL, nothing stepped),
 * clips it to the bounds, steps, and applies the time limit. returns 0 or -EINVAL */
int env_step(env_t *e, const float *act, env_step_result *res);

/* pure termination of the env family, batched; usable by rollouts without an instance */
void env_termination(const env_t *e, const float *obs, const float *act, const float *next_obs,
                     bool *done, int B);

/* ids known to env_make (not plugins), NULL-terminated */
const char *const *env_list(void);

#endif
