/* main.c - twig-learner: its config tables and hooks for the process skeleton
 * (common/rpc/daemon.h: command line, logging, launcher link, run, exit status).
 *
 *   twig-learner [--config FILE] [--set [learner.]KEY=VALUE ...] [--KEY VALUE ...]
 *                [--help] [--print-config]
 *
 * Options: the run's top level (common/config/run_config.h) and the `learner` section
 * (learner_opts in learner.c; `twig-learner --help` lists them).
 * Exit status (common/config/cli.h): 0 after a clean shutdown (SIGTERM/SIGINT), 1 when the learner
 * could not start (e.g. a damaged checkpoint_dir/policy_version), 2 on a bad command line or
 * config (a malformed modelserver_addr included), before anything starts; an unreachable
 * model server is waited for, not ready.
 */
#include <stdlib.h>

#include "common/base/mem.h"
#include "common/rpc/daemon.h"
#include "learner/learner.h"

typedef struct learner_main {
    run_cfg run;
    learner_cfg cfg;
    learner_t *l;   /* large: on the heap */
} learner_main;

static int learner_main_init(void *app)
{
    learner_main *m = app;
    m->l = xcalloc(1, sizeof *m->l);
    return learner_init(m->l, &m->run, &m->cfg);
}

static int learner_main_run(void *app)
{
    return learner_run(((learner_main *)app)->l);
}

static void learner_main_free(void *app)
{
    learner_main *m = app;
    learner_free(m->l);
    free(m->l);
    m->l = NULL;
}

int main(int argc, char **argv)
{
    learner_main m = {0};
    const config_table tables[2] = {
        run_cfg_table(&m.run),
        {"learner", learner_opts, learner_n_opts, &m.cfg, learner_opts_check},
    };
    const daemon_spec d = {
        .name = "learner",
        .section = "learner",
        .usage = "usage: twig-learner [--config FILE] [--set KEY=VALUE] [--KEY VALUE]\n\n"
                 "SAC on real + synthetic transitions, paced by real steps (MBPO); serves "
                 "twig.v1.Learner",
        .tables = tables,
        .n_tables = 2,
        .log_level = &m.cfg.log_level,
        .init = learner_main_init,
        .run = learner_main_run,
        .free = learner_main_free,
        .app = &m,
    };
    return daemon_main(&d, argc, argv);
}
