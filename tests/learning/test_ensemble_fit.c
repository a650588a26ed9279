/* the ensemble fitting Pendulum-v1 transitions (common/nn/ensemble.h on common/env data):
 * it learns in a few epochs, picks its elites, stops on patience, continues a fit */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "common/base/crc32c.h"
#include "common/nn/ensemble.h"
#include "common/base/err.h"
#include "common/base/mem.h"
#include "common/nn/nn_gemm.h"
#include "common/base/rng.h"
#include "tests/common/nn/ensemble_small.h"
#include "common/env/env.h"
#include "tests/learning/ensemble_testlib.h"

static void setup(void)
{
    nn_gemm_set_threads(1);
}

TestSuite(ensemble, .init = setup);

Test(ensemble, learns_pendulum_in_a_few_epochs_and_picks_elites, .timeout = 300)
{
    dataset train = pendulum_data(2000, 11);
    dataset test = pendulum_data(1000, 12);
    ensemble_t e = {0};
    ensemble_train_report rep;
    train_pendulum(&e, &rep, &train, 200, 30, 1e-3f);
    cr_expect_eq(rep.n_holdout, 400);
    cr_expect_eq(rep.n_train, 1600);
    cr_expect_eq(rep.epochs, 30);
    cr_expect_not(rep.stopped_early);
    cr_expect_eq(rep.steps, 30 * 7);
    cr_log_info("pendulum (fast): train loss %.4f, elite holdout mse %.5f", rep.train_loss,
                rep.holdout_mse_elites);
    expect_elites_are_best(&e);
    expect_beats_no_change(&e, &test, 0.05);
    ensemble_free(&e);
    dataset_free(&train);
    dataset_free(&test);
}

Test(ensemble, stops_after_patience_epochs_without_improvement)
{
    /* a learning rate too small to improve any member by 1 %: the first epoch counts
     * (nothing came before it), then more than `patience` (5) epochs without one: 7 */
    dataset train = pendulum_data(600, 13);
    ensemble_t e = {0};
    ensemble_train_report rep;
    train_pendulum(&e, &rep, &train, 16, 100, 1e-9f);
    cr_expect(rep.stopped_early);
    cr_expect_eq(rep.epochs, 7);
    cr_expect_eq(rep.n_holdout, 120);
    expect_elites_are_best(&e);
    ensemble_free(&e);
    dataset_free(&train);
}

Test(ensemble, min_epochs_holds_off_patience)
{
    /* the same stalled fit as above, but patience may only stop it after 8 epochs */
    dataset train = pendulum_data(600, 13);
    ensemble_cfg cfg;
    ensemble_cfg_default(&cfg, 3, 1);
    ensemble_train_cfg tc;
    ensemble_train_cfg_default(&tc, cfg.n_layers);
    tc.lr = 1e-9f;
    tc.min_epochs = 8;
    ensemble_t e = {0};
    ensemble_train_report rep;
    train_pendulum_with(&e, &rep, &train, 16, &tc);
    cr_expect(rep.stopped_early);
    cr_expect_eq(rep.epochs, 8);
    /* more than max_epochs is refused */
    tc.min_epochs = tc.max_epochs + 1;
    ensemble_trainer_t t = {0};
    cr_expect_eq(ensemble_trainer_init(&t, &e, &tc), -EINVAL);
    ensemble_free(&e);
    dataset_free(&train);
}

Test(ensemble, a_continued_fit_keeps_its_own_weights_even_when_it_started_better)
{
    /* A continued fit is judged on a new holdout split that the earlier fits mostly trained
     * on, so its starting weights always look good there. It must still take the best of
     * its own epochs (MBPO), not fall back to where it started. A learning rate far too
     * large makes every epoch of the second fit worse than its start. */
    dataset train = pendulum_data(1000, 21);
    dataset test = pendulum_data(500, 22);
    ensemble_t e = {0};
    ensemble_train_report rep;
    train_pendulum(&e, &rep, &train, 32, 20, 1e-3f);
    const int E = e.cfg.n_members;
    float before[ENSEMBLE_MAX_MEMBERS], after[ENSEMBLE_MAX_MEMBERS];
    ensemble_work_t w = {0};
    cr_assert_eq(ensemble_work_init(&w, &e, 256), 0);
    ensemble_eval_mse(&e, &w, before, test.obs, test.act, test.next_obs, test.reward, test.n);
    float *start = xmalloc(e.n_params * sizeof(float));
    memcpy(start, e.params, e.n_params * sizeof(float));

    ensemble_train_cfg tc;
    ensemble_train_cfg_default(&tc, e.cfg.n_layers);
    tc.lr = 0.05f;
    tc.max_epochs = 2;
    tc.keep_function = true;
    ensemble_trainer_t t = {0};
    cr_assert_eq(ensemble_trainer_init(&t, &e, &tc), 0, "%s", err_msg());
    rng_t r;
    rng_seed(&r, 23);
    cr_assert_eq(ensemble_train(&e, &t, &r, &rep, train.obs, train.act, train.next_obs,
                                train.reward, train.n), 0, "%s", err_msg());
    cr_expect_eq(rep.epochs, 2);
    ensemble_work_free(&w);
    cr_assert_eq(ensemble_work_init(&w, &e, 256), 0);
    ensemble_eval_mse(&e, &w, after, test.obs, test.act, test.next_obs, test.reward, test.n);
    for (int m = 0; m < E; m++) {
        cr_expect_gt(after[m], before[m], "member %d: test MSE %g after, %g before", m,
                     after[m], before[m]);
        cr_expect(isfinite(e.holdout_mse[m]), "member %d holdout %g", m, e.holdout_mse[m]);
    }
    /* every member's first-layer weights moved */
    size_t n0 = (size_t)e.sizes[0] * e.sizes[1];
    for (int m = 0; m < E; m++) {
        size_t o = (size_t)(e.w[0] - e.params) + (size_t)m * n0;
        cr_expect_neq(memcmp(e.params + o, start + o, n0 * sizeof(float)), 0, "member %d", m);
    }
    expect_elites_are_best(&e);
    free(start);
    ensemble_work_free(&w);
    ensemble_trainer_free(&t);
    ensemble_free(&e);
    dataset_free(&train);
    dataset_free(&test);
}

