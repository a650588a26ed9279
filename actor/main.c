/* main.c - twig-actor: its config tables and hooks for the process skeleton
 * (common/rpc/daemon.h: command line, logging, launcher link, run, exit status).
 *
 *   twig-actor [--config FILE] [--set KEY=VALUE ...] [--KEY VALUE ...] [--help]
 *              [--print-config]
 *
 * Options: the run's top level (env, seed, real_steps, init_steps, utd, pacing, eval_every,
 * eval_episodes, n_actors, modelserver_addr, learner_addr, ...) and the `actor` section
 * (actor.h: id, index, listen, port_file, push_every, ...); `--index 1` is short for
 * `--set actor.index=1`.
 *
 * Exit status (common/config/cli.h): 0 after a clean shutdown (SIGTERM/SIGINT, or done with
 * exit_when_done), 1 when the actor could not start or gave up (its log says why), 2 on a
 * bad command line or config (actor.index not below n_actors, a malformed peer address),
 * before anything starts; an unreachable peer is waited for, not ready.
 */
#include "actor/actor.h"
#include "common/config/run_config.h"
#include "common/rpc/daemon.h"

typedef struct actor_main {
    run_cfg run;
    actor_cfg cfg;
    actor_t a;
} actor_main;

static int actor_main_init(void *app)
{
    actor_main *m = app;
    return actor_init(&m->a, &m->run, &m->cfg);
}

static int actor_main_run(void *app)
{
    return actor_run(&((actor_main *)app)->a);
}

static void actor_main_free(void *app)
{
    actor_free(&((actor_main *)app)->a);
}

int main(int argc, char **argv)
{
    actor_main m;
    const config_table tables[2] = {
        run_cfg_table(&m.run),
        {"actor", actor_opts, actor_n_opts, &m.cfg, actor_opts_check},
    };
    const daemon_spec d = {
        .name = "actor",
        .section = "actor",
        .usage = "usage: twig-actor [--config FILE] [--set KEY=VALUE ...] [--KEY VALUE ...]"
                 "\n\nSteps the real environment and appends its transitions to the model"
                 " server.",
        .tables = tables,
        .n_tables = 2,
        .log_level = &m.cfg.log_level,
        .init = actor_main_init,
        .run = actor_main_run,
        .free = actor_main_free,
        .app = &m,
    };
    return daemon_main(&d, argc, argv);
}
