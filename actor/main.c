/* main.c - twig-actor: command line, logging, run, exit status.
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
#include <signal.h>
#include <stdio.h>

#include "actor/actor.h"
#include "common/config/cli.h"
#include "common/base/err.h"
#include "common/base/launcher_link.h"
#include "common/base/log.h"
#include "common/rpc/rpc.h"
#include "common/config/run_config.h"

int main(int argc, char **argv)
{
    run_cfg run;
    actor_cfg cfg;
    const config_table tables[2] = {
        run_cfg_table(&run),
        {"actor", actor_opts, actor_n_opts, &cfg, actor_opts_check},
    };
    int rc = cli_parse(tables, 2, "actor", argc, argv,
                       "usage: twig-actor [--config FILE] [--set KEY=VALUE ...] [--KEY VALUE ...]"
                       "\n\nSteps the real environment and appends its transitions to the model"
                       " server.");
    if (rc == CLI_EXIT) {
        return 0;
    }
    if (rc < 0) {
        fprintf(stderr, "twig-actor: %s\n", err_msg());
        return 2;
    }
    log_init("actor", (log_level)cfg.log_level);
    if (launcher_link_from_env() < 0) {
        log_error("event=start_failed detail=\"%s\"", err_msg());
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    rpc_lib_init();
    actor_t a;
    rc = actor_init(&a, &run, &cfg);
    if (rc < 0) {
        log_error("event=start_failed err=%s detail=\"%s\"", err_name(rc), err_msg());
        actor_free(&a);
        rpc_lib_shutdown(2000);
        return 1;
    }
    rc = actor_run(&a);
    actor_free(&a);
    rpc_lib_shutdown(2000);
    log_info("event=exit status=%d", rc < 0 ? 1 : 0);
    return rc < 0 ? 1 : 0;
}
