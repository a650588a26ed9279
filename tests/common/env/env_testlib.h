/* env_testlib.h - checks shared by the per-env tests (tests/common/test_env_*.c).
 * Header-only (static functions): each test executable includes it once. */
#ifndef TWIG_TESTS_ENV_TESTLIB_H
#define TWIG_TESTS_ENV_TESTLIB_H

#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "common/env/env.h"
#include "common/env/env_mujoco.h"
#include "common/base/err.h"
#include "common/base/mem.h"
#include "common/base/rng.h"

static inline env_t *envt_make(const char *id)
{
    env_t *e = NULL;
    int rc = env_make(&e, id);
    cr_assert_eq(rc, 0, "env_make(%s): %s", id, err_msg());
    return e;
}

static inline void envt_random_action(rng_t *r, const env_t *e, float *act)
{
    for (int i = 0; i < e->spec.n_act; i++) {
        act[i] = rng_uniform_range(r, e->spec.act_low[i], e->spec.act_high[i]);
    }
}

static inline double envt_total_mass(const env_t *e)
{
    const mjModel *m = mjenv_model_of(e);
    cr_assert_not_null(m);
    double sum = 0;
    for (int i = 0; i < m->nbody; i++) {
        sum += m->body_mass[i];
    }
    return sum;
}

/* zero action from the exact initial pose (noise 0): the 1-based step that terminates, 0 if
 * none within max_steps; the last observation goes to last_obs */
static inline int envt_zero_action_terminal_step(const char *id, int max_steps, float *last_obs)
{
    env_t *e = envt_make(id);
    cr_assert_eq(env_set_reset_noise_scale(e, 0.0), 0);
    float *obs = xcalloc((size_t)e->spec.n_obs, sizeof(float));
    float *act = xcalloc((size_t)e->spec.n_act, sizeof(float));
    env_reset(e, 0, obs);
    env_step_result r = {.next_obs = obs};
    int found = 0;
    for (int t = 1; t <= max_steps && t <= e->spec.max_episode_steps; t++) {
        cr_assert_eq(env_step(e, act, &r), 0, "%s", err_msg());
        cr_assert_not(r.truncated && !r.terminated && t < e->spec.max_episode_steps,
                      "%s diverged at step %d", id, t);
        if (r.terminated) {
            found = t;
            break;
        }
    }
    memcpy(last_obs, obs, (size_t)e->spec.n_obs * sizeof(float));
    free(obs);
    free(act);
    env_free(e);
    return found;
}

/* random policy over several episodes: every step's components add up to its reward, the
 * pure termination agrees with terminated, and the same seeds give the same rewards twice.
 * returns the number of transitions checked (>= n) */
static inline int envt_check_random_transitions(const char *id, int n, uint64_t seed)
{
    env_t *e = envt_make(id);
    env_t *f = envt_make(id);
    const env_spec *s = &e->spec;
    float *obs = xcalloc((size_t)s->n_obs, sizeof(float));
    float *next = xcalloc((size_t)s->n_obs, sizeof(float));
    float *obs2 = xcalloc((size_t)s->n_obs, sizeof(float));
    float *act = xcalloc((size_t)s->n_act, sizeof(float));
    rng_t r;
    rng_seed(&r, seed);
    int done_count = 0, checked = 0, episodes = 0, mismatches = 0;
    while (checked < n && episodes < 100000) {
        env_reset(e, seed + (uint64_t)episodes, obs);
        env_reset(f, seed + (uint64_t)episodes, obs2);
        cr_assert_arr_eq(obs, obs2, (size_t)s->n_obs * sizeof(float));
        episodes++;
        for (int t = 0; t < s->max_episode_steps; t++) {
            envt_random_action(&r, e, act);
            env_step_result res = {.next_obs = next};
            env_step_result res2 = {.next_obs = obs2};
            cr_assert_eq(env_step(e, act, &res), 0, "%s", err_msg());
            cr_assert_eq(env_step(f, act, &res2), 0, "%s", err_msg());
            /* deterministic for a seed */
            cr_assert_eq(res.reward, res2.reward, "%s step %d: %g vs %g", id, t,
                         (double)res.reward, (double)res2.reward);
            cr_assert_arr_eq(next, obs2, (size_t)s->n_obs * sizeof(float));
            /* components */
            double sum = 0;
            for (int k = 0; k < s->n_info; k++) {
                sum += res.info[k];
            }
            cr_assert(fabs(sum - res.reward) <= 1e-4 * (1.0 + fabs(res.reward)),
                      "%s: components sum %g, reward %g", id, sum, (double)res.reward);
            /* the pure termination sees what the env saw (divergence steps excluded) */
            if (!(res.truncated && mjenv_divergences(e) > 0 && !res.terminated)) {
                bool d = false;
                env_termination(e, obs, act, next, &d, 1);
                if (d != res.terminated) {
                    mismatches++;
                }
                checked++;
            }
            done_count += res.terminated;
            memcpy(obs, next, (size_t)s->n_obs * sizeof(float));
            if (res.terminated || res.truncated) {
                break;
            }
        }
    }
    cr_expect_eq(mismatches, 0, "%s: termination disagrees on %d of %d transitions", id,
                 mismatches, checked);
    cr_expect_eq(mjenv_divergences(e), 0, "%s diverged under a random policy", id);
    free(obs);
    free(next);
    free(obs2);
    free(act);
    env_free(e);
    env_free(f);
    return done_count;
}

/* NaN/Inf are refused with nothing stepped; out-of-range values act as the bound */
static inline void envt_check_bad_actions(const char *id)
{
    env_t *e = envt_make(id);
    env_t *f = envt_make(id);
    const env_spec *s = &e->spec;
    float *obs = xcalloc((size_t)s->n_obs, sizeof(float));
    float *n1 = xcalloc((size_t)s->n_obs, sizeof(float));
    float *n2 = xcalloc((size_t)s->n_obs, sizeof(float));
    float *act = xcalloc((size_t)s->n_act, sizeof(float));
    float *big = xcalloc((size_t)s->n_act, sizeof(float));
    env_reset(e, 5, obs);
    env_reset(f, 5, obs);
    env_step_result r1 = {.next_obs = n1}, r2 = {.next_obs = n2};
    act[s->n_act - 1] = NAN;
    cr_expect_eq(env_step(e, act, &r1), -EINVAL);
    act[s->n_act - 1] = INFINITY;
    cr_expect_eq(env_step(e, act, &r1), -EINVAL);
    cr_expect_eq(e->t, 0);
    cr_expect_eq(env_check_action(e, act, s->n_act + 1), -EINVAL);
    cr_expect_eq(env_check_action(e, act, s->n_act - 1), -EINVAL);
    for (int i = 0; i < s->n_act; i++) {
        act[i] = i % 2 ? s->act_low[i] : s->act_high[i];
        big[i] = i % 2 ? s->act_low[i] * 10.0f - 1.0f : s->act_high[i] * 10.0f + 1.0f;
    }
    cr_assert_eq(env_step(e, big, &r1), 0);
    cr_assert_eq(env_step(f, act, &r2), 0);
    cr_expect_arr_eq(n1, n2, (size_t)s->n_obs * sizeof(float));
    cr_expect_eq(r1.reward, r2.reward);
    free(obs);
    free(n1);
    free(n2);
    free(act);
    free(big);
    env_free(e);
    env_free(f);
}

/* reset with noise 0 gives qpos0 / 0 exactly; with the default noise, within the scale */
static inline void envt_check_reset_noise(const char *id, double scale)
{
    env_t *e = envt_make(id);
    cr_expect_float_eq(e->reset_noise_scale, scale, 1e-12);
    float *obs = xcalloc((size_t)e->spec.n_obs, sizeof(float));
    const mjModel *m = mjenv_model_of(e);
    mjData *d = mjenv_data_of(e);
    cr_assert_eq(env_set_reset_noise_scale(e, 0.0), 0);
    env_reset(e, 1, obs);
    for (int i = 0; i < m->nq; i++) {
        cr_expect_eq(d->qpos[i], m->qpos0[i], "%s qpos[%d]", id, i);
    }
    for (int i = 0; i < m->nv; i++) {
        cr_expect_eq(d->qvel[i], 0.0, "%s qvel[%d]", id, i);
    }
    cr_assert_eq(env_set_reset_noise_scale(e, scale), 0);
    double maxdev = 0;
    for (uint64_t seed = 0; seed < 50; seed++) {
        env_reset(e, seed, obs);
        for (int i = 0; i < m->nq; i++) {
            double dev = fabs(d->qpos[i] - m->qpos0[i]);
            cr_expect(dev <= scale, "%s qpos[%d] moved %g", id, i, dev);
            maxdev = fmax(maxdev, dev);
        }
    }
    cr_expect(maxdev > 0.5 * scale, "%s: reset noise too small (%g)", id, maxdev);
    cr_expect_eq(env_set_reset_noise_scale(e, -1.0), -EINVAL);
    cr_expect_eq(env_set_reset_noise_scale(e, NAN), -EINVAL);
    free(obs);
    env_free(e);
}

#endif
