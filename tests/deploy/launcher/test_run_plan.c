/* run_plan: every process gets the config, its own identity and address, and the overrides */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/err.h"
#include "deploy/launcher/run_plan.h"

static run_cfg run;
static launcher_cfg lc;
static run_plan *plan;
static const char *const bins[4] = {"/b/twig-modelserver", "/b/twig-learner", "/b/twig-rollout",
                                    "/b/twig-actor"};

static void setup(void)
{
    config_table t[2] = {run_cfg_table(&run),
                         {"launcher", launcher_opts, launcher_n_opts, &lc, NULL}};
    cr_assert_eq(config_set_defaults(t, 2), 0, "%s", err_msg());
    plan = calloc(1, sizeof *plan);
}

static void teardown(void)
{
    free(plan);
}

/* index of "--set" followed by value in argv, or -1 */
static int find_set(const plan_proc *p, const char *value)
{
    for (int i = 0; p->argv[i] && p->argv[i + 1]; i++) {
        if (strcmp(p->argv[i], "--set") == 0 && strcmp(p->argv[i + 1], value) == 0) {
            return i;
        }
    }
    return -1;
}

Test(run_plan, one_of_each_in_start_order_with_their_identity, .init = setup, .fini = teardown)
{
    run.n_actors = 2;
    run.n_rollout = 3;
    const char *ov[] = {"learner.batch_size=64", "utd=10"};
    int rc = plan_build(plan, &run, &lc, "runs/x", "runs/x/config.yaml", ov, 2, bins, NULL);
    cr_assert_eq(rc, 0, "%s", err_msg());
    cr_assert_eq(plan->n_procs, 7);
    const char *names[] = {"modelserver", "learner",  "rollout-0", "rollout-1",
                           "rollout-2",   "actor-0", "actor-1"};
    for (int i = 0; i < 7; i++) {
        const plan_proc *p = &plan->procs[i];
        cr_expect_str_eq(p->name, names[i]);
        cr_expect_str_eq(p->argv[1], "--config");
        cr_expect_str_eq(p->argv[2], "runs/x/config.yaml");
        cr_expect_geq(find_set(p, "learner.batch_size=64"), 0, "%s lacks the override", p->name);
        cr_expect_geq(find_set(p, "utd=10"), 0);
        cr_expect_geq(find_set(p, "run_id=x"), 0, "%s: the run is named after its dir", p->name);
    }
    cr_expect_str_eq(plan->procs[0].argv[0], "/b/twig-modelserver");
    cr_expect_str_eq(plan->procs[0].addr, "127.0.0.1:7101");
    cr_expect_geq(find_set(&plan->procs[0], "modelserver.data_dir=runs/x/modelserver"), 0);
    cr_expect_geq(find_set(&plan->procs[1], "learner.checkpoint_dir=runs/x/learner"), 0);
    cr_expect_str_eq(plan->procs[3].addr, "127.0.0.1:7141");
    cr_expect_geq(find_set(&plan->procs[3], "rollout.id=rollout-1"), 0);
    cr_expect_geq(find_set(&plan->procs[3], "rollout.index=1"), 0);
    cr_expect_geq(find_set(&plan->procs[3], "rollout.listen=127.0.0.1:7141"), 0);
    cr_expect_str_eq(plan->procs[6].argv[0], "/b/twig-actor");
    cr_expect_geq(find_set(&plan->procs[6], "actor.listen=127.0.0.1:7111"), 0);
    cr_expect_str_eq(plan->procs[6].log_path, "runs/x/actor-1.log");
    /* the user's overrides come last, so they win over the plan's */
    const plan_proc *a = &plan->procs[5];
    cr_expect_gt(find_set(a, "utd=10"), find_set(a, "actor.index=0"));
}

Test(run_plan, overlapping_port_ranges_are_refused, .init = setup, .fini = teardown)
{
    run.n_actors = 4;
    run.n_rollout = 4;
    lc.actor_base_port = 8000;
    lc.rollout_base_port = 8002;
    cr_expect_eq(plan_build(plan, &run, &lc, "r", "r/c.yaml", NULL, 0, bins, NULL), -EINVAL);
    cr_expect(strstr(err_msg(), "overlap") != NULL, "%s", err_msg());
    lc.rollout_base_port = 65534;
    cr_expect_eq(plan_build(plan, &run, &lc, "r", "r/c.yaml", NULL, 0, bins, NULL), -EINVAL);
}

Test(run_plan, metrics_addresses_from_the_base_port_picked_ports_or_none, .init = setup,
     .fini = teardown)
{
    run.n_actors = 2;
    run.n_rollout = 1;
    const char *ov[] = {"learner.metrics_listen=127.0.0.1:9999"};
    lc.metrics_base_port = 9200;
    cr_assert_eq(plan_build(plan, &run, &lc, "r", "r/c.yaml", ov, 1, bins, NULL), 0, "%s",
                 err_msg());
    cr_assert_eq(plan->n_procs, plan_n_procs(&run));
    const char *want[] = {"modelserver.metrics_listen=127.0.0.1:9200",
                          "learner.metrics_listen=127.0.0.1:9201",
                          "rollout.metrics_listen=127.0.0.1:9202",
                          "actor.metrics_listen=127.0.0.1:9203",
                          "actor.metrics_listen=127.0.0.1:9204"};
    for (int i = 0; i < 5; i++) {
        cr_expect_geq(find_set(&plan->procs[i], want[i]), 0, "%s lacks %s", plan->procs[i].name,
                      want[i]);
        cr_expect_str_eq(plan->procs[i].metrics_addr, strchr(want[i], '=') + 1);
    }
    /* the user's override comes after the plan's, so it wins */
    cr_expect_gt(find_set(&plan->procs[1], ov[0]),
                 find_set(&plan->procs[1], "learner.metrics_listen=127.0.0.1:9201"));

    /* 0: the launcher's picks */
    lc.metrics_base_port = 0;
    const int picked[5] = {40001, 40007, 40003, 40004, 40002};
    cr_assert_eq(plan_build(plan, &run, &lc, "r", "r/c.yaml", NULL, 0, bins, picked), 0);
    cr_expect_str_eq(plan->procs[1].metrics_addr, "127.0.0.1:40007");
    cr_expect_geq(find_set(&plan->procs[4], "actor.metrics_listen=127.0.0.1:40002"), 0);

    /* -1: off, no flag at all */
    lc.metrics_base_port = -1;
    cr_assert_eq(plan_build(plan, &run, &lc, "r", "r/c.yaml", NULL, 0, bins, picked), 0);
    for (int i = 0; i < plan->n_procs; i++) {
        cr_expect_str_eq(plan->procs[i].metrics_addr, "");
        for (int k = 0; plan->procs[i].argv[k]; k++) {
            cr_expect_null(strstr(plan->procs[i].argv[k], "metrics_listen"));
        }
    }
}

Test(run_plan, a_metrics_range_over_other_ports_is_refused, .init = setup, .fini = teardown)
{
    run.n_actors = 2;
    run.n_rollout = 1;
    lc.metrics_base_port = lc.actor_base_port - 2;   /* 5 ports: reaches the actors' */
    cr_expect_eq(plan_build(plan, &run, &lc, "r", "r/c.yaml", NULL, 0, bins, NULL), -EINVAL);
    cr_expect(strstr(err_msg(), "launcher.metrics_base_port") != NULL, "%s", err_msg());
    lc.metrics_base_port = 7100;   /* holds modelserver_addr's 7101 */
    cr_expect_eq(plan_build(plan, &run, &lc, "r", "r/c.yaml", NULL, 0, bins, NULL), -EINVAL);
    cr_expect(strstr(err_msg(), "modelserver_addr") != NULL, "%s", err_msg());
    lc.metrics_base_port = 65533;
    cr_expect_eq(plan_build(plan, &run, &lc, "r", "r/c.yaml", NULL, 0, bins, NULL), -EINVAL);
    cr_expect(strstr(err_msg(), "exceeds") != NULL, "%s", err_msg());
}
