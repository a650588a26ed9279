/* ensemble_testlib.h - Pendulum-v1 data and checks shared by the ensemble tests */
#ifndef TWIG_TEST_ENSEMBLE_TESTLIB_H
#define TWIG_TEST_ENSEMBLE_TESTLIB_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/nn/ensemble.h"
#include "common/env/env.h"
#include "common/base/err.h"
#include "common/base/mem.h"
#include "common/base/rng.h"

typedef struct dataset {
    int n;
    float *obs, *act, *next_obs, *reward;
} dataset;

/* random-action Pendulum-v1 transitions from the env module, episodes of 200 steps */
static dataset pendulum_data(int n, uint64_t seed)
{
    env_t *env = NULL;
    cr_assert_eq(env_make(&env, "Pendulum-v1"), 0, "%s", err_msg());
    dataset d = {.n = n};
    d.obs = xmalloc((size_t)n * 3 * sizeof(float));
    d.act = xmalloc((size_t)n * sizeof(float));
    d.next_obs = xmalloc((size_t)n * 3 * sizeof(float));
    d.reward = xmalloc((size_t)n * sizeof(float));
    rng_t r;
    rng_seed(&r, seed);
    float o[3], no[3];
    env_step_result res = {.next_obs = no};
    bool need_reset = true;
    uint64_t episode = 0;
    for (int i = 0; i < n; i++) {
        if (need_reset) {
            env_reset(env, seed * 1000 + episode++, o);
        }
        float a = rng_uniform_range(&r, -2.0f, 2.0f);
        cr_assert_eq(env_step(env, &a, &res), 0);
        memcpy(d.obs + 3 * (size_t)i, o, sizeof o);
        d.act[i] = a;
        memcpy(d.next_obs + 3 * (size_t)i, no, sizeof no);
        d.reward[i] = res.reward;
        memcpy(o, no, sizeof o);
        need_reset = res.terminated || res.truncated;
    }
    env_free(env);
    return d;
}

static void dataset_free(dataset *d)
{
    free(d->obs);
    free(d->act);
    free(d->next_obs);
    free(d->reward);
}

/* an MBPO-configured ensemble (optionally narrower) trained on d with tc */
static void train_pendulum_with(ensemble_t *e, ensemble_train_report *rep, const dataset *d,
                                int n_hidden, const ensemble_train_cfg *tc)
{
    ensemble_cfg cfg;
    ensemble_cfg_default(&cfg, 3, 1);
    cfg.n_hidden = n_hidden;
    rng_t r;
    rng_seed(&r, 7);
    cr_assert_eq(ensemble_init(e, &cfg, &r), 0, "%s", err_msg());
    ensemble_trainer_t t = {0};
    cr_assert_eq(ensemble_trainer_init(&t, e, tc), 0, "%s", err_msg());
    int rc = ensemble_train(e, &t, &r, rep, d->obs, d->act, d->next_obs, d->reward, d->n);
    cr_assert_eq(rc, 0, "%s", err_msg());
    ensemble_trainer_free(&t);
}

/* the same with MBPO's training defaults but max_epochs and lr */
static void train_pendulum(ensemble_t *e, ensemble_train_report *rep, const dataset *d,
                           int n_hidden, int max_epochs, float lr)
{
    ensemble_cfg cfg;
    ensemble_cfg_default(&cfg, 3, 1);
    ensemble_train_cfg tc;
    ensemble_train_cfg_default(&tc, cfg.n_layers);
    tc.max_epochs = max_epochs;
    tc.lr = lr;
    train_pendulum_with(e, rep, d, n_hidden, &tc);
}

/* elites: the n_elites lowest holdout errors, best first */
static void expect_elites_are_best(const ensemble_t *e)
{
    bool is_elite[ENSEMBLE_MAX_MEMBERS] = {false};
    for (int i = 0; i < e->cfg.n_elites; i++) {
        is_elite[e->elites[i]] = true;
        if (i > 0) {
            cr_expect_leq(e->holdout_mse[e->elites[i - 1]], e->holdout_mse[e->elites[i]]);
        }
    }
    for (int m = 0; m < e->cfg.n_members; m++) {
        cr_expect(isfinite(e->holdout_mse[m]));
        for (int i = 0; i < e->cfg.n_elites && !is_elite[m]; i++) {
            cr_expect_leq(e->holdout_mse[e->elites[i]], e->holdout_mse[m]);
        }
    }
}

/* normalised MSE (sum over dims of mse / variance of the true next state) of the model's mean
 * prediction and of "no change"; reward mse over its variance. Predicted members are elites */
static void expect_beats_no_change(const ensemble_t *e, const dataset *test, double ratio)
{
    ensemble_work_t w = {0};
    cr_assert_eq(ensemble_work_init(&w, e, 512), 0);
    const int N = test->n;
    float *pred = xmalloc((size_t)N * 3 * sizeof(float));
    float *rew = xmalloc((size_t)N * sizeof(float));
    int *member = xmalloc((size_t)N * sizeof(int));
    rng_t r;
    rng_seed(&r, 99);
    ensemble_predict(e, &w, &r, pred, rew, member, test->obs, test->act, N, false);
    double model = 0.0, still = 0.0, rew_model = 0.0, rew_var = 0.0, rew_mean = 0.0;
    for (int j = 0; j < 3; j++) {
        double mean = 0.0, var = 0.0, sm = 0.0, ss = 0.0;
        for (int i = 0; i < N; i++) {
            mean += test->next_obs[3 * i + j] / N;
        }
        for (int i = 0; i < N; i++) {
            double t = test->next_obs[3 * i + j];
            var += (t - mean) * (t - mean) / N;
            sm += (pred[3 * i + j] - t) * (pred[3 * i + j] - t) / N;
            ss += (test->obs[3 * i + j] - t) * (test->obs[3 * i + j] - t) / N;
        }
        model += sm / var;
        still += ss / var;
    }
    for (int i = 0; i < N; i++) {
        rew_mean += test->reward[i] / N;
    }
    for (int i = 0; i < N; i++) {
        rew_model += (rew[i] - test->reward[i]) * (rew[i] - test->reward[i]) / N;
        rew_var += (test->reward[i] - rew_mean) * (test->reward[i] - rew_mean) / N;
    }
    cr_log_info("normalised mse: model %.3g, no change %.3g; reward mse / var %.3g", model, still,
                rew_model / rew_var);
    cr_expect_lt(model, ratio * still, "model %g vs no change %g", model, still);
    cr_expect_lt(rew_model, ratio * rew_var, "reward mse %g vs variance %g", rew_model, rew_var);
    for (int i = 0; i < N; i++) {
        bool elite = false;
        for (int k = 0; k < e->cfg.n_elites; k++) {
            elite |= member[i] == e->elites[k];
        }
        cr_expect(elite, "row %d used member %d, not an elite", i, member[i]);
    }
    free(pred);
    free(rew);
    free(member);
    ensemble_work_free(&w);
}

#endif
