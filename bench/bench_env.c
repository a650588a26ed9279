/* bench_env.c - `twig-bench env`: env steps/s per MuJoCo task on one core, next to bare
 * mj_step x frame_skip on the same model, so the cost of twig's layer (action checks and
 * clipping, observation, reward, termination, divergence check, resets) is visible.
 *
 * Check first: from the exact initial pose, the env's mjData and a bare mjData stepped with
 * the same actions must agree bit for bit for the first episode; otherwise nothing is timed.
 * Timing: the env loop steps a fixed sequence of uniform random actions, resetting (with the
 * task's reset noise) when an episode ends; the bare loop sets ctrl, calls mj_step frame_skip
 * times (+ mj_rnePostConstraint where the task uses it) and resets (mj_resetData +
 * mj_forward) after the same steps. The two loops alternate, rep by rep; medians reported.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "common/base/clock.h"
#include "common/env/env.h"
#include "common/env/env_mujoco.h"
#include "common/base/err.h"
#include "common/base/mem.h"
#include "common/base/rng.h"

#define BENCH_ENV_STEPS 20000
#define BENCH_ENV_CHECK_STEPS 1000

static void bench_bare_step(const mjModel *m, mjData *d, const mjenv_task *task,
                            const float *act)
{
    for (int i = 0; i < m->nu; i++) {
        d->ctrl[i] = act[i];
    }
    for (int k = 0; k < task->frame_skip; k++) {
        mj_step(m, d);
    }
    if (task->rne_post) {
        mj_rnePostConstraint(m, d);
    }
}

static void bench_bare_reset(const mjModel *m, mjData *d)
{
    mj_resetData(m, d);
    mj_forward(m, d);
}

/* the env's first episode from qpos0 equals bare stepping, bit for bit */
static int bench_env_check(env_t *e, mjData *bare, const float *acts)
{
    const mjModel *m = mjenv_model_of(e);
    const mjenv_task *task = mjenv_task_of(e);
    mjData *d = mjenv_data_of(e);
    float *obs = xcalloc((size_t)e->spec.n_obs, sizeof(float));
    TWIG_ASSERT(env_set_reset_noise_scale(e, 0.0) == 0);
    env_reset(e, 0, obs);
    bench_bare_reset(m, bare);
    env_step_result r = {.next_obs = obs};
    int rc = 0;
    for (int t = 0; t < BENCH_ENV_CHECK_STEPS && rc == 0; t++) {
        const float *a = acts + (size_t)t * m->nu;
        TWIG_ASSERT(env_step(e, a, &r) == 0);
        bench_bare_step(m, bare, task, a);
        if (memcmp(d->qpos, bare->qpos, sizeof(mjtNum) * m->nq) != 0 ||
            memcmp(d->qvel, bare->qvel, sizeof(mjtNum) * m->nv) != 0) {
            fprintf(stderr, "bench env %s: state differs from bare mj_step at step %d\n",
                    e->spec.name, t + 1);
            rc = 1;
        }
        if (r.terminated || r.truncated) {
            break;
        }
    }
    TWIG_ASSERT(env_set_reset_noise_scale(e, mjenv_task_of(e)->reset_noise_scale) == 0);
    free(obs);
    return rc;
}

/* one pass of the env loop; marks the steps after which it reset */
static void bench_env_loop(env_t *e, const float *acts, int n, unsigned char *reset_after,
                           float *obs)
{
    uint64_t seed = 0;
    env_reset(e, seed++, obs);
    env_step_result r = {.next_obs = obs};
    for (int t = 0; t < n; t++) {
        env_step(e, acts + (size_t)t * e->spec.n_act, &r);
        if (r.terminated || r.truncated) {
            env_reset(e, seed++, obs);
            if (reset_after != NULL) {
                reset_after[t] = 1;
            }
        }
    }
}

static void bench_bare_loop(const mjModel *m, mjData *d, const mjenv_task *task,
                            const float *acts, int n, const unsigned char *reset_after)
{
    bench_bare_reset(m, d);
    for (int t = 0; t < n; t++) {
        bench_bare_step(m, d, task, acts + (size_t)t * m->nu);
        if (reset_after[t]) {
            bench_bare_reset(m, d);
        }
    }
}

static int bench_env_run(const bench_opts *o, const char *id)
{
    env_t *e = NULL;
    if (env_make(&e, id) < 0) {
        fprintf(stderr, "bench env %s: %s\n", id, err_msg());
        return 1;
    }
    const mjModel *m = mjenv_model_of(e);
    const mjenv_task *task = mjenv_task_of(e);
    int n = o->iters > 0 ? o->iters : BENCH_ENV_STEPS;
    int n_acts = n > BENCH_ENV_CHECK_STEPS ? n : BENCH_ENV_CHECK_STEPS;
    float *acts = xmalloc((size_t)n_acts * (size_t)m->nu * sizeof(float));
    rng_t rng;
    rng_seed(&rng, 1);
    for (int t = 0; t < n_acts; t++) {
        for (int i = 0; i < m->nu; i++) {
            acts[(size_t)t * m->nu + i] =
                rng_uniform_range(&rng, e->spec.act_low[i], e->spec.act_high[i]);
        }
    }
    mjData *bare = mj_makeData(m);
    float *obs = xcalloc((size_t)e->spec.n_obs, sizeof(float));
    unsigned char *reset_after = xcalloc((size_t)n, 1);
    int rc = bench_env_check(e, bare, acts);
    if (rc == 0 && o->check_only) {
        printf("{\"bench\":\"env_step\",\"name\":\"env_step/%s\",\"env\":\"%s\","
               "\"impl\":\"twig\",\"check\":\"ok\"}\n", id, id);
    } else if (rc == 0) {
        int warmup = o->warmup >= 0 ? o->warmup : 1;
        for (int w = 0; w < warmup; w++) {
            bench_env_loop(e, acts, n, reset_after, obs);
            bench_bare_loop(m, bare, task, acts, n, reset_after);
        }
        if (warmup == 0) {
            bench_env_loop(e, acts, n, reset_after, obs);   /* the reset pattern is needed */
        }
        double env_rate[1000], bare_rate[1000];
        for (int r = 0; r < o->reps; r++) {
            double t0 = clock_now_s();
            bench_env_loop(e, acts, n, NULL, obs);
            double t1 = clock_now_s();
            bench_bare_loop(m, bare, task, acts, n, reset_after);
            double t2 = clock_now_s();
            env_rate[r] = n / (t1 - t0);
            bare_rate[r] = n / (t2 - t1);
        }
        int episodes = 0;
        for (int t = 0; t < n; t++) {
            episodes += reset_after[t];
        }
        double env_med = bench_median(env_rate, o->reps);
        double bare_med = bench_median(bare_rate, o->reps);
        printf("{\"bench\":\"env_step\",\"name\":\"env_step/%s\",\"env\":\"%s\","
               "\"impl\":\"twig\",\"per_s\":%.1f,\"rate\":%.1f,\"ratio_to_bare\":%.3f,"
               "\"frame_skip\":%d,\"steps_per_rep\":%d,\"episodes_per_rep\":%d,\"reps\":%d,"
               "\"threads\":1}\n",
               id, id, env_med, env_med, env_med / bare_med, task->frame_skip, n, episodes,
               o->reps);
        printf("{\"bench\":\"env_step\",\"name\":\"env_step/%s\",\"env\":\"%s\","
               "\"impl\":\"bare_mj_step\",\"per_s\":%.1f,\"rate\":%.1f,\"frame_skip\":%d,"
               "\"steps_per_rep\":%d,\"reps\":%d,\"threads\":1}\n",
               id, id, bare_med, bare_med, task->frame_skip, n, o->reps);
        fflush(stdout);
    }
    free(reset_after);
    free(obs);
    free(acts);
    mj_deleteData(bare);
    env_free(e);
    return rc;
}

int bench_env_inverted_pendulum(const bench_opts *o)
{
    return bench_env_run(o, "InvertedPendulum-v4");
}

int bench_env_half_cheetah(const bench_opts *o)
{
    return bench_env_run(o, "HalfCheetah-v4");
}

int bench_env_hopper(const bench_opts *o)
{
    return bench_env_run(o, "Hopper-v4");
}

int bench_env_walker2d(const bench_opts *o)
{
    return bench_env_run(o, "Walker2d-v4");
}

int bench_env_ant(const bench_opts *o)
{
    return bench_env_run(o, "Ant-v4");
}

int bench_env_humanoid(const bench_opts *o)
{
    return bench_env_run(o, "Humanoid-v4");
}
