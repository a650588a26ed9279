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
    int rc = plan_build(plan, &run, &lc, "runs/x", "runs/x/config.yaml", ov, 2, bins);
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
    cr_expect_eq(plan_build(plan, &run, &lc, "r", "r/c.yaml", NULL, 0, bins), -EINVAL);
    cr_expect(strstr(err_msg(), "overlap") != NULL, "%s", err_msg());
    lc.rollout_base_port = 65534;
    cr_expect_eq(plan_build(plan, &run, &lc, "r", "r/c.yaml", NULL, 0, bins), -EINVAL);
}
