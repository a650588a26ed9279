/* the ensemble with MBPO's configuration on 5k random-action Pendulum-v1 transitions: trains
 * until early stopping, elites by holdout error, held-out next states far better than "no
 * change". About 40 s on a quiet core, minutes under load: labelled slow in tests/CMakeLists.txt */
#include <criterion/criterion.h>

#include "common/nn/nn_gemm.h"
#include "tests/learning/ensemble_testlib.h"

static void setup(void)
{
    nn_gemm_set_threads(1);
}

Test(ensemble_pendulum, mbpo_config_learns_and_stops_early, .init = setup, .timeout = 900)
{
    dataset train = pendulum_data(5000, 21);
    dataset test = pendulum_data(1000, 22);
    ensemble_t e = {0};
    ensemble_train_report rep;
    const int max_epochs = 400;
    train_pendulum(&e, &rep, &train, 200, max_epochs, 1e-3f);
    /* holdout min(20 %, 5000) and early stopping before the bound */
    cr_expect_eq(rep.n_holdout, 1000);
    cr_expect_eq(rep.n_train, 4000);
    cr_expect(rep.stopped_early, "ran all %d epochs", rep.epochs);
    cr_expect_lt(rep.epochs, max_epochs);
    cr_expect_geq(rep.epochs, 6);
    cr_expect_eq(rep.steps, (int64_t)rep.epochs * 16);
    cr_log_info("pendulum: %d epochs, train loss %.4f, elite holdout mse %.5f", rep.epochs,
                rep.train_loss, rep.holdout_mse_elites);
    expect_elites_are_best(&e);
    expect_beats_no_change(&e, &test, 0.01);
    ensemble_free(&e);
    dataset_free(&train);
    dataset_free(&test);
}
