/* ensemble_small.h - the small trained ensemble of the fast tests, shared by the nn tests
 * (test_ensemble.c) and the wire codec's (tests/common/rpc/test_weight_blobs.c) */
#ifndef TWIG_TEST_ENSEMBLE_SMALL_H
#define TWIG_TEST_ENSEMBLE_SMALL_H

#include <criterion/criterion.h>
#include <string.h>

#include "common/base/rng.h"
#include "common/nn/ensemble.h"

/* a small ensemble for the fast tests: 3 members, 2 elites, 2 x 16, O 3, A 2 */
static inline void small_cfg(ensemble_cfg *c)
{
    ensemble_cfg_default(c, 3, 2);
    c->n_members = 3;
    c->n_elites = 2;
    c->n_hidden = 16;
    c->n_layers = 2;
}

static inline void fill_uniform(rng_t *r, float *x, size_t n, float lo, float hi)
{
    for (size_t i = 0; i < n; i++) {
        x[i] = rng_uniform_range(r, lo, hi);
    }
}

/* a small model with a fitted normaliser and a few training steps: non-trivial outputs */
static inline void small_trained(ensemble_t *e, rng_t *r)
{
    ensemble_cfg cfg;
    small_cfg(&cfg);
    cr_assert_eq(ensemble_init(e, &cfg, r), 0);
    enum { N = 200 };
    float obs[N * 3], act[N * 2], next[N * 3], rew[N];
    fill_uniform(r, obs, N * 3, -1.0f, 1.0f);
    fill_uniform(r, act, N * 2, -1.0f, 1.0f);
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < 3; j++) {
            next[3 * i + j] = 0.9f * obs[3 * i + j] + 0.1f * act[2 * i + (j & 1)];
        }
        rew[i] = -obs[3 * i] * obs[3 * i];
    }
    ensemble_train_cfg tc;
    ensemble_train_cfg_default(&tc, cfg.n_layers);
    tc.batch = 32;
    tc.max_epochs = 3;
    ensemble_trainer_t t = {0};
    cr_assert_eq(ensemble_trainer_init(&t, e, &tc), 0);
    ensemble_train_report rep;
    cr_assert_eq(ensemble_train(e, &t, r, &rep, obs, act, next, rew, N), 0, "%s", err_msg());
    cr_assert_eq(rep.epochs, 3);
    cr_assert_eq(rep.n_holdout, 40);
    ensemble_trainer_free(&t);
}

static inline void expect_same_predictions(const ensemble_t *a, const ensemble_t *b)
{
    enum { N = 100 };
    rng_t r;
    rng_seed(&r, 6);
    float obs[N * 3], act[N * 2];
    fill_uniform(&r, obs, N * 3, -1.0f, 1.0f);
    fill_uniform(&r, act, N * 2, -1.0f, 1.0f);
    float na[N * 3], nb[N * 3], ra[N], rb[N];
    int ma[N], mb[N];
    ensemble_work_t wa = {0}, wb = {0};
    cr_assert_eq(ensemble_work_init(&wa, a, 32), 0);
    cr_assert_eq(ensemble_work_init(&wb, b, 32), 0);
    rng_t s1, s2;
    rng_seed(&s1, 77);
    rng_seed(&s2, 77);
    ensemble_predict(a, &wa, &s1, na, ra, ma, obs, act, N, true);
    ensemble_predict(b, &wb, &s2, nb, rb, mb, obs, act, N, true);
    cr_expect_eq(memcmp(na, nb, sizeof na), 0);
    cr_expect_eq(memcmp(ra, rb, sizeof ra), 0);
    cr_expect_eq(memcmp(ma, mb, sizeof ma), 0);
    cr_expect_eq(memcmp(a->elites, b->elites, (size_t)a->cfg.n_elites * sizeof(int)), 0);
    cr_expect_eq(memcmp(a->holdout_mse, b->holdout_mse, (size_t)a->cfg.n_members * 4), 0);
    ensemble_work_free(&wa);
    ensemble_work_free(&wb);
}

#endif
