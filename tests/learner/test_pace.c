/* tests for learner/pace.c: the rate limiter as pure functions of the counters */
#include <criterion/criterion.h>

#include "common/config/run_config.h"
#include "learner/pace.h"

static pace_in strict_in(double utd, uint64_t learn_start, uint64_t real, uint64_t updates)
{
    return (pace_in){.pacing = RUN_PACING_STRICT,
                     .utd = utd,
                     .learn_start = learn_start,
                     .real_steps = real,
                     .updates = updates};
}

Test(pace, strict_allows_nothing_until_learn_start_is_passed)
{
    pace_in in = strict_in(20, 1000, 0, 0);
    cr_expect_eq(pace_allowed_updates(&in), 0);
    in.real_steps = 1000;
    cr_expect_eq(pace_allowed_updates(&in), 0);
    cr_expect_not(pace_may_update(&in));
    in.real_steps = 1001;
    cr_expect_eq(pace_allowed_updates(&in), 20);
    cr_expect(pace_may_update(&in));
}

Test(pace, strict_allows_utd_per_real_step_and_no_more)
{
    pace_in in = strict_in(20, 1000, 1250, 0);
    cr_expect_eq(pace_allowed_updates(&in), 5000);
    cr_expect_eq(pace_updates_left(&in), 5000);
    in.updates = 4999;
    cr_expect(pace_may_update(&in));
    cr_expect_eq(pace_updates_left(&in), 1);
    in.updates = 5000;
    cr_expect_not(pace_may_update(&in));
    cr_expect_eq(pace_updates_left(&in), 0);
    /* counters restored ahead of the real steps (a restart during refill) */
    in.updates = 7000;
    cr_expect_eq(pace_updates_left(&in), 0);
}

Test(pace, fractional_utd_rounds_down)
{
    pace_in in = strict_in(0.1f, 0, 10, 0); /* a float option: 0.1f is 0.100000001 */
    cr_expect_eq(pace_allowed_updates(&in), 1);
    in.real_steps = 9;
    cr_expect_eq(pace_allowed_updates(&in), 0);
    in = strict_in(2.5, 0, 3, 0);
    cr_expect_eq(pace_allowed_updates(&in), 7);
}

Test(pace, strict_quota_caps_updates_at_the_covered_real_steps)
{
    pace_in in = strict_in(20, 1000, 1300, 0);
    in.quota_on = true;
    in.quota_done = 1000; /* no branches yet */
    cr_expect_eq(pace_allowed_updates(&in), 0);
    in.quota_done = 1100;
    cr_expect_eq(pace_allowed_updates(&in), 2000);
    in.quota_done = 5000; /* quota ahead of real data: real steps decide */
    cr_expect_eq(pace_allowed_updates(&in), 6000);
    in.quota_on = false;
    in.quota_done = 0;
    cr_expect_eq(pace_allowed_updates(&in), 6000);
}

Test(pace, async_is_unlimited_once_learning_starts)
{
    pace_in in = {.pacing = RUN_PACING_ASYNC, .utd = 20, .learn_start = 100, .real_steps = 100};
    cr_expect_eq(pace_allowed_updates(&in), 0);
    in.real_steps = 101;
    in.updates = 1000000;
    cr_expect_eq(pace_allowed_updates(&in), PACE_UNLIMITED);
    cr_expect(pace_may_update(&in));
    in.quota_on = true; /* async ignores quotas */
    in.quota_done = 0;
    cr_expect(pace_may_update(&in));
}

Test(pace, refill_blocks_both_modes_until_the_restored_offset)
{
    pace_in in = strict_in(20, 10, 500, 100);
    in.refill_until = 800;
    cr_expect_eq(pace_allowed_updates(&in), 0);
    in.pacing = RUN_PACING_ASYNC;
    cr_expect_not(pace_may_update(&in));
    in.real_steps = 800;
    cr_expect(pace_may_update(&in));
    in.pacing = RUN_PACING_STRICT;
    cr_expect_eq(pace_allowed_updates(&in), 20 * 790);
}

Test(pace, achieved_utd)
{
    cr_expect_float_eq(pace_achieved_utd(0, 10, 10), 0.0, 1e-12);
    cr_expect_float_eq(pace_achieved_utd(400, 30, 10), 20.0, 1e-12);
    cr_expect_float_eq(pace_achieved_utd(50, 110, 10), 0.5, 1e-12);
}

Test(pace, waits_for_synthetic_only_when_the_quota_alone_holds_updates_back)
{
    /* real steps allow 20 * 300 = 6000 updates; the quota covers 100 steps: 2000 */
    pace_in in = strict_in(20, 1000, 1300, 2000);
    in.quota_on = true;
    in.quota_done = 1100;
    cr_expect(pace_waits_for_synthetic(&in), "the quota alone stops update 2000");
    in.updates = 1999;
    cr_expect_not(pace_waits_for_synthetic(&in), "an update may run: no wait at all");
    in.updates = 6000;
    in.quota_done = 1300;
    cr_expect_not(pace_waits_for_synthetic(&in), "both caught up: a wait for real steps");
    in.quota_done = 1100;
    cr_expect_not(pace_waits_for_synthetic(&in), "real steps hold it back as well");
    in.updates = 2000;
    in.quota_on = false;
    cr_expect_not(pace_waits_for_synthetic(&in), "no quota, no synthetic wait");
    pace_in before = strict_in(20, 1000, 900, 0);
    before.quota_on = true;
    cr_expect_not(pace_waits_for_synthetic(&before), "warm-up waits for real steps");
    pace_in async = {.pacing = RUN_PACING_ASYNC, .utd = 20, .learn_start = 100,
                     .real_steps = 500, .quota_on = true};
    cr_expect_not(pace_waits_for_synthetic(&async), "async never waits for synthetic data");
}
