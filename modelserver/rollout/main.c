/* rollout_main.c - twig-rollout: command line, logging, run, exit status.
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
#include <stdio.h>

#include "common/config/cli.h"
#include "common/base/err.h"
#include "common/base/launcher_link.h"
#include "common/base/log.h"
#include "common/rpc/rpc.h"
#include "modelserver/rollout/rollout.h"

int main(int argc, char **argv)
{
    run_cfg run;
    rollout_cfg cfg;
    config_table t[2] = {run_cfg_table(&run),
                         {ROLLOUT_SECTION, rollout_opts, rollout_n_opts, &cfg, rollout_opts_check}};
    int rc = cli_parse(t, 2, ROLLOUT_SECTION, argc, argv,
                       "usage: twig-rollout [--config RUN.yaml] [--set KEY=VALUE] [--KEY VALUE]\n\n"
                       "Generates short model branches from real start states and pushes them "
                       "to the learner.");
    if (rc == CLI_EXIT) {
        return 0;
    }
    if (rc < 0) {
        fprintf(stderr, "twig-rollout: %s\n", err_msg());
        return 2;
    }
    log_init("rollout", (log_level)cfg.log_level);
    if (launcher_link_from_env() < 0) {
        log_error("event=start_failed detail=\"%s\"", err_msg());
        return 1;
    }
    rpc_lib_init();
    rollout_t r;
    rc = rollout_init(&r, &cfg, &run);
    if (rc < 0) {
        log_error("event=start_failed err=%s detail=\"%s\"", err_name(rc), err_msg());
        rollout_free(&r);
        rpc_lib_shutdown(2000);
        return 1;   /* the config was checked in cli_parse: this is a start-up failure */
    }
    rc = rollout_run(&r);
    rollout_free(&r);
    rpc_lib_shutdown(2000);
    log_info("event=exit status=%d", rc < 0 ? 1 : 0);
    return rc < 0 ? 1 : 0;
}
