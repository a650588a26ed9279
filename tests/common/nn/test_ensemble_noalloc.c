/* train steps and predictions of the ensemble never allocate: the calls made while a flag is
 * up are counted (tests/common/base/alloc_count.h, in the plain and the sanitizer build). */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "common/nn/ensemble.h"
#include "common/base/err.h"
#include "common/nn/nn_gemm.h"
#include "common/base/rng.h"
#include "tests/common/base/alloc_count.h"

Test(ensemble_noalloc, train_steps_and_predictions_do_not_allocate, .init = alloc_count_install)
{
    nn_gemm_set_threads(1);
    ensemble_cfg cfg;
    ensemble_cfg_default(&cfg, 5, 2);
    cfg.n_hidden = 32;
    rng_t r;
    rng_seed(&r, 1);
    ensemble_t e = {0};
    cr_assert_eq(ensemble_init(&e, &cfg, &r), 0, "%s", err_msg());
    ensemble_train_cfg tc;
    ensemble_train_cfg_default(&tc, cfg.n_layers);
    tc.batch = 32;
    ensemble_trainer_t t = {0};
    cr_assert_eq(ensemble_trainer_init(&t, &e, &tc), 0, "%s", err_msg());
    ensemble_work_t w = {0};
    cr_assert_eq(ensemble_work_init(&w, &e, 64), 0);

    enum { B = 32, N = 300 };
    static float x[7 * B * 7], y[7 * B * 6];
    static float obs[N * 5], act[N * 2], next[N * 5], rew[N], all[7 * N * 5], all_rew[7 * N];
    static int member[N];
    for (size_t i = 0; i < sizeof x / sizeof *x; i++) {
        x[i] = rng_uniform_range(&r, -1.0f, 1.0f);
    }
    for (size_t i = 0; i < sizeof y / sizeof *y; i++) {
        y[i] = rng_uniform_range(&r, -1.0f, 1.0f);
    }
    for (size_t i = 0; i < sizeof obs / sizeof *obs; i++) {
        obs[i] = rng_uniform_range(&r, -1.0f, 1.0f);
    }
    /* warm up: OpenBLAS sets up its buffers on its first calls */
    ensemble_train_step(&e, &t, x, y, B);
    ensemble_predict(&e, &w, &r, next, rew, member, obs, act, N, true);
    ensemble_predict_all(&e, &w, &r, all, all_rew, obs, act, N, true);

    alloc_count_begin_all();
    for (int s = 0; s < 5; s++) {
        ensemble_train_step(&e, &t, x, y, B - s);
    }
    ensemble_predict(&e, &w, &r, next, rew, member, obs, act, N, true);
    ensemble_predict(&e, &w, &r, next, NULL, NULL, obs, act, N, false);
    ensemble_predict_all(&e, &w, &r, all, all_rew, obs, act, N, true);
    long n = alloc_count_end();
    cr_expect_eq(n, 0, "%ld allocations in train steps and predictions", n);
    cr_expect_eq(t.steps, 6);

    /* the counter itself works: an init allocates */
    alloc_count_begin_all();
    ensemble_work_t w2 = {0};
    cr_assert_eq(ensemble_work_init(&w2, &e, 16), 0);
    cr_expect_gt(alloc_count_end(), 0);
    ensemble_work_free(&w2);

    ensemble_work_free(&w);
    ensemble_trainer_free(&t);
    ensemble_free(&e);
}
