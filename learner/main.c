/* main.c - twig-learner: command line, logging, run, exit status.
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
#include <stdio.h>
#include <stdlib.h>

#include "common/config/cli.h"
#include "common/base/err.h"
#include "common/base/launcher_link.h"
#include "common/base/log.h"
#include "common/base/mem.h"
#include "common/rpc/rpc.h"
#include "learner/learner.h"

int main(int argc, char **argv)
{
    run_cfg run;
    learner_cfg cfg;
    config_table tables[2] = {
        run_cfg_table(&run),
        {"learner", learner_opts, learner_n_opts, &cfg, learner_opts_check},
    };
    int rc = cli_parse(tables, 2, "learner", argc, argv,
                       "usage: twig-learner [--config FILE] [--set KEY=VALUE] [--KEY VALUE]\n\n"
                       "SAC on real + synthetic transitions, paced by real steps (MBPO); serves "
                       "twig.v1.Learner");
    if (rc == CLI_EXIT) {
        return 0;
    }
    if (rc < 0) {
        fprintf(stderr, "twig-learner: %s\n", err_msg());
        return 2;
    }
    log_init("learner", (log_level)cfg.log_level);
    if (launcher_link_from_env() < 0) {
        log_error("event=start_failed detail=\"%s\"", err_msg());
        return 1;
    }
    rpc_lib_init();
    learner_t *l = xcalloc(1, sizeof *l);
    rc = learner_init(l, &run, &cfg);
    if (rc < 0) {
        log_error("event=start_failed err=%s detail=\"%s\"", err_name(rc), err_msg());
        learner_free(l);
        free(l);
        rpc_lib_shutdown(2000);
        return 1;
    }
    rc = learner_run(l);
    learner_free(l);
    free(l);
    rpc_lib_shutdown(2000);
    log_info("event=exit status=%d", rc < 0 ? 1 : 0);
    return rc < 0 ? 1 : 0;
}
