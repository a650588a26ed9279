/* main.c - twig-rollout: its config tables and hooks for the process skeleton
 * (common/rpc/daemon.h: command line, logging, launcher link, run, exit status).
 *
 *   twig-rollout [--config RUN.yaml] [--set KEY=VALUE ...] [--KEY VALUE ...] [--help]
 *                [--print-config]
 *
 * Options: the run's top level (run_config.h: env, pacing, rollouts_per_step, the k schedule,
 * modelserver_addr, learner_addr, n_rollout, ...) and the `rollout` section (rollout.h:
 * id, index, listen, port_file, chunk, push_batch, wait_ms, ...).
 *
 * Exit status (common/config/cli.h): 0 after a clean shutdown (SIGTERM/SIGINT), 1 when the worker
 * could not start (a taken port, a host that does not resolve, a plugin that does not load),
 * 2 on a bad command line or config (rollout.index not below n_rollout too), before
 * anything starts.
 */
#include "common/rpc/daemon.h"
#include "modelserver/rollout/rollout.h"

typedef struct rollout_main {
    run_cfg run;
    rollout_cfg cfg;
    rollout_t r;
} rollout_main;

/* the config was checked in cli_parse: a failure here is a start-up failure (exit 1) */
static int rollout_main_init(void *app)
{
    rollout_main *m = app;
    return rollout_init(&m->r, &m->cfg, &m->run);
}

static int rollout_main_run(void *app)
{
    return rollout_run(&((rollout_main *)app)->r);
}

static void rollout_main_free(void *app)
{
    rollout_free(&((rollout_main *)app)->r);
}

int main(int argc, char **argv)
{
    rollout_main m;
    const config_table tables[2] = {
        run_cfg_table(&m.run),
        {ROLLOUT_SECTION, rollout_opts, rollout_n_opts, &m.cfg, rollout_opts_check},
    };
    const daemon_spec d = {
        .name = "rollout",
        .section = ROLLOUT_SECTION,
        .usage = "usage: twig-rollout [--config RUN.yaml] [--set KEY=VALUE] [--KEY VALUE]\n\n"
                 "Generates short model branches from real start states and pushes them "
                 "to the learner.",
        .tables = tables,
        .n_tables = 2,
        .log_level = &m.cfg.log_level,
        .init = rollout_main_init,
        .run = rollout_main_run,
        .free = rollout_main_free,
        .app = &m,
    };
    return daemon_main(&d, argc, argv);
}
