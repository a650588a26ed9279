/* actor: the pieces on their own: budget shares, strict pacing, eval points, batches,
 * the option table */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "actor/actor.h"
#include "common/config/cli.h"
#include "common/base/err.h"
#include "common/rpc/msg.h"
#include "common/config/run_config.h"

Test(actor, shares_split_the_budget_exactly_and_evenly)
{
    const uint64_t totals[] = {1, 7, 1000, 6000, 6001, 123457};
    for (size_t k = 0; k < sizeof totals / sizeof totals[0]; k++) {
        for (int n = 1; n <= 7; n++) {
            uint64_t sum = 0, lo = UINT64_MAX, hi = 0;
            for (int i = 0; i < n; i++) {
                uint64_t s = actor_share(totals[k], i, n);
                sum += s;
                lo = s < lo ? s : lo;
                hi = s > hi ? s : hi;
            }
            cr_expect_eq(sum, totals[k], "total %lu n %d: shares sum to %lu",
                         (unsigned long)totals[k], n, (unsigned long)sum);
            cr_expect(hi - lo <= 1, "total %lu n %d: shares differ by %lu",
                      (unsigned long)totals[k], n, (unsigned long)(hi - lo));
        }
    }
    cr_expect_eq(actor_share(10, 0, 3), 4);
    cr_expect_eq(actor_share(10, 1, 3), 3);
    cr_expect_eq(actor_share(10, 2, 3), 3);
}

Test(actor, strict_pacing_waits_for_updates_beyond_the_slack)
{
    /* utd 20, learning from 1000 real steps, slack 50 steps */
    const int S = RUN_PACING_STRICT;
    /* before learning and within the slack: no learner needed */
    cr_expect(actor_pace_allows(S, 20, 1000, 50, 1, false, 0));
    cr_expect(actor_pace_allows(S, 20, 1000, 50, 1000, false, 0));
    cr_expect(actor_pace_allows(S, 20, 1000, 50, 1050, false, 0));
    /* beyond it: nothing known from the learner means wait */
    cr_expect_not(actor_pace_allows(S, 20, 1000, 50, 1051, false, 0));
    /* step 1051 needs 20 updates, step 1100 needs 1000 */
    cr_expect_not(actor_pace_allows(S, 20, 1000, 50, 1051, true, 19));
    cr_expect(actor_pace_allows(S, 20, 1000, 50, 1051, true, 20));
    cr_expect_not(actor_pace_allows(S, 20, 1000, 50, 1100, true, 999));
    cr_expect(actor_pace_allows(S, 20, 1000, 50, 1100, true, 1000));
    /* fractional utd rounds up to a whole update */
    cr_expect_not(actor_pace_allows(S, 0.5, 0, 0, 3, true, 1));
    cr_expect(actor_pace_allows(S, 0.5, 0, 0, 3, true, 2));
    /* async never waits */
    cr_expect(actor_pace_allows(RUN_PACING_ASYNC, 20, 1000, 50, 100000, false, 0));
}

Test(actor, eval_points_are_the_next_multiple)
{
    cr_expect_eq(actor_next_eval(0, 1000), 1000);
    cr_expect_eq(actor_next_eval(999, 1000), 1000);
    cr_expect_eq(actor_next_eval(1000, 1000), 2000);
    cr_expect_eq(actor_next_eval(2501, 1000), 3000);
    cr_expect_eq(actor_next_eval(7, 1), 8);
}

/* the curve's baseline: the initial policy is evaluated at the end of the random phase */
Test(actor, the_first_eval_point_is_the_end_of_the_random_phase)
{
    cr_expect_eq(actor_first_eval(0, 500, 1000), 500);
    cr_expect_eq(actor_first_eval(0, 2500, 1000), 1000, "a multiple comes first");
    cr_expect_eq(actor_first_eval(0, 1000, 1000), 1000, "one point, not two");
    cr_expect_eq(actor_first_eval(600, 500, 1000), 1000, "a restart past it skips it");
    cr_expect_eq(actor_first_eval(0, 0, 1000), 1000, "no random phase");
}

/* a restarted or resumed actor repeats the newest point passed (its report may be lost) */
Test(actor, a_restart_repeats_the_newest_eval_point_passed)
{
    cr_expect_eq(actor_start_eval(0, 500, 1000), 500, "a fresh start: the baseline first");
    cr_expect_eq(actor_start_eval(600, 500, 1000), 500, "the baseline, passed");
    cr_expect_eq(actor_start_eval(1500, 500, 1000), 1000, "the newest multiple passed");
    cr_expect_eq(actor_start_eval(2000, 500, 1000), 2000, "a point exactly reached");
    cr_expect_eq(actor_start_eval(300, 500, 1000), 500, "nothing passed: the next point");
    cr_expect_eq(actor_start_eval(300, 0, 1000), 1000, "no random phase, nothing passed");
    cr_expect_eq(actor_start_eval(1200, 1100, 1000), 1100, "a baseline past a multiple");
}

Test(actor, batch_fills_and_packs_a_valid_message)
{
    actor_batch_t b;
    actor_batch_init(&b, 4, 3, 1);
    actor_batch_clear(&b, 7);
    for (int i = 0; i < 3; i++) {
        float obs[3] = {(float)i, 1.0f, 2.0f};
        float next[3] = {(float)i + 1, 1.0f, 2.0f};
        float act[1] = {0.5f * (float)i};
        actor_batch_add(&b, obs, act, -1.0f * (float)i, next, false, i == 2);
    }
    cr_expect_eq(b.count, 3);
    b.seq = 43; /* the pusher numbers batches when it queues them */

    Twig__V1__TransitionBatch m;
    actor_batch_to_msg(&m, &b, "Pendulum-v1", "actor-0");
    cr_assert_eq(msg_batch_check(&m, MSG_BATCH_MAX_COUNT), 0, "%s", err_msg());
    /* through the wire and back */
    size_t n = protobuf_c_message_get_packed_size(&m.base);
    uint8_t *buf = malloc(n);
    protobuf_c_message_pack(&m.base, buf);
    Twig__V1__TransitionBatch *u = twig__v1__transition_batch__unpack(NULL, n, buf);
    cr_assert_not_null(u);
    cr_expect_eq(msg_batch_check(u, MSG_BATCH_MAX_COUNT), 0, "%s", err_msg());
    cr_expect_str_eq(u->source_id, "actor-0");
    cr_expect_eq(u->seq, 43);
    cr_expect_eq(u->count, 3);
    cr_expect_eq(u->policy_version, 7);
    cr_expect_eq(u->obs[3], 1.0f);
    cr_expect_eq(u->next_obs[6], 3.0f);
    cr_expect_eq(u->act[2], 1.0f);
    cr_expect_eq(u->reward[2], -2.0f);
    cr_expect(!u->truncated[0] && !u->truncated[1] && u->truncated[2]);
    twig__v1__transition_batch__free_unpacked(u, NULL);
    free(buf);

    actor_batch_clear(&b, 0);
    cr_expect_eq(b.count, 0);
    cr_expect_eq(b.policy_version, 0);
    actor_batch_free(&b);
}

static int parse(run_cfg *run, actor_cfg *cfg, int argc, char **argv)
{
    const config_table t[2] = {
        run_cfg_table(run),
        {"actor", actor_opts, actor_n_opts, cfg, actor_opts_check},
    };
    return cli_parse(t, 2, "actor", argc, argv, "usage");
}

Test(actor, options_have_valid_defaults_and_refuse_bad_values_by_name)
{
    run_cfg run;
    actor_cfg cfg;
    char *ok[] = {"twig-actor", "--index", "1",     "--push-every",        "25",
                  "--n-actors", "2",       "--set", "actor.eval_index=-1", "--exit-when-done",
                  "true"};
    cr_assert_eq(parse(&run, &cfg, 11, ok), CLI_RUN, "%s", err_msg());
    cr_expect_eq(cfg.index, 1);
    cr_expect_eq(cfg.push_every, 25);
    cr_expect_eq(cfg.eval_index, -1);
    cr_expect(cfg.exit_when_done);
    cr_expect_eq(run.n_actors, 2);
    cr_expect_str_eq(cfg.listen, "127.0.0.1:0");
    cr_expect_str_eq(cfg.id, "");

    char *bad_push[] = {"twig-actor", "--push-every", "0"};
    cr_expect_lt(parse(&run, &cfg, 3, bad_push), 0);
    cr_expect(strstr(err_msg(), "push_every") != NULL, "%s", err_msg());
    char *bad_key[] = {"twig-actor", "--set", "actor.push_evry=3"};
    cr_expect_lt(parse(&run, &cfg, 3, bad_key), 0);
    cr_expect(strstr(err_msg(), "push_evry") != NULL, "%s", err_msg());
    char *bad_level[] = {"twig-actor", "--log-level", "loud"};
    cr_expect_lt(parse(&run, &cfg, 3, bad_level), 0);
    cr_expect(strstr(err_msg(), "log_level") != NULL, "%s", err_msg());
}

Test(actor, parse_and_init_refuse_an_index_outside_the_actor_count)
{
    run_cfg run;
    actor_cfg cfg;
    char *argv[] = {"twig-actor", "--index", "2", "--n-actors", "2"};
    cr_expect_eq(parse(&run, &cfg, 5, argv), -EINVAL, "a config error, refused at parse time");
    cr_expect(strstr(err_msg(), "actor.index (2) must be below n_actors (2)") != NULL, "%s",
              err_msg());
    actor_t a;   /* the options as parsed: init refuses them too */
    cr_expect_eq(actor_init(&a, &run, &cfg), -EINVAL);
    cr_expect(strstr(err_msg(), "index") != NULL, "%s", err_msg());
    actor_free(&a);
}
