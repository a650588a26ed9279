/* main.c - twig-modelserver: command line, logging, run, exit status.
 *
 *   twig-modelserver --listen HOST:PORT --data-dir DIR [--env ID] [--fsync batch|group|none]
 *                    [--segment-mb N] [--port-file FILE] [--grace-ms N] [--log-level L]
 *                    [--max-sources N] [--source-quiet-steps N]
 *                    [--config RUN.yaml] [--set [modelserver.]KEY=VALUE ...] [--help]
 *                    [--print-config]
 *
 * Every option goes through common/cli: the run's top level (common/config/run_config.h) and the
 * `modelserver` section, which holds the server options below (ms_opts) and the model options
 * (trainer_opts, modelserver/trainer.h). `--data-dir d` is `--set modelserver.data_dir=d`;
 * later settings win over earlier ones and over the --config file.
 *
 * The run's `env` (top level; `--env ID` on the command line) fixes the log's schema at
 * start: its id and the obs and act dims of its spec (common/env/env.h). Every batch must have
 * them, from the first one on, and a data dir holding another env's log refuses to start.
 *
 * Exit status: 0 after a clean shutdown (SIGTERM/SIGINT), 1 when the server could not start
 * or run (data dir in use, corrupt, or of another env; port taken), 2 on a bad command line
 * or config (an unknown env id too).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config/cli.h"
#include "common/env/env.h"
#include "common/base/err.h"
#include "common/base/launcher_link.h"
#include "common/base/log.h"
#include "common/rpc/rpc.h"
#include "modelserver/modelserver.h"

#define MS_PATH_MAX 1023

/* the server options of the modelserver section */
typedef struct ms_options {
    char listen[RUN_ADDR_MAX + 1];
    char data_dir[MS_PATH_MAX + 1];
    char port_file[MS_PATH_MAX + 1];
    int fsync;      /* reallog_sync, index into fsync_names */
    int segment_mb;
    int grace_ms;
    int log_level;  /* log_level */
    int max_sources;
    uint64_t source_quiet_steps;
} ms_options;

/* by reallog_sync value */
static const char *const fsync_names[] = {"batch", "group", "none", NULL};

#define O(field) offsetof(ms_options, field)
static const config_opt ms_opts[] = {
    {"listen", CFG_ADDR, O(listen), "", 0, RUN_ADDR_MAX,
     "HOST:PORT to listen on (required); port 0 picks a free one", NULL},
    {"data_dir", CFG_STRING, O(data_dir), "", 0, MS_PATH_MAX,
     "directory of the real-transition log (required; created if missing)", NULL},
    {"fsync", CFG_ENUM, O(fsync), "batch", 0, 0,
     "batch (fdatasync per batch), group (group commit) or none (page cache only)", fsync_names},
    {"segment_mb", CFG_INT, O(segment_mb), "64", 1, 4096, "log segment size in MiB", NULL},
    {"port_file", CFG_STRING, O(port_file), "", 0, MS_PATH_MAX,
     "write the bound port to this file once serving (atomic rename); empty: none", NULL},
    {"grace_ms", CFG_INT, O(grace_ms), "2000", 1, 600000,
     "on SIGTERM, calls in flight get this long to finish", NULL},
    {"log_level", CFG_ENUM, O(log_level), "info", 0, 0, "debug, info, warn or error",
     log_level_names},
    {"max_sources", CFG_INT, O(max_sources), "4096", 1, REALLOG_MAX_SOURCES_LIMIT,
     "sources (actor ids) the log's dedup table remembers; a new one evicts the quietest "
     "once that has been quiet for source_quiet_steps, else it is refused (retry later)",
     NULL},
    {"source_quiet_steps", CFG_U64, O(source_quiet_steps), "1000000", 1, 1e15,
     "transitions appended by others before a source may be evicted (an evicted actor's "
     "transition count restarts; keep this above the run's real_steps)", NULL},
};
#undef O
_Static_assert(REALLOG_SYNC_BATCH == 0 && REALLOG_SYNC_GROUP == 1 && REALLOG_SYNC_NONE == 2,
               "fsync_names follows reallog_sync");

static int ms_bad(const char *what)
{
    fprintf(stderr, "twig-modelserver: %s\n(see twig-modelserver --help)\n", what);
    return -EINVAL;
}

/* the parsed options into the server's config (which borrows o's strings) */
static int ms_cfg_from_options(modelserver_cfg *cfg, const ms_options *o)
{
    memset(cfg, 0, sizeof *cfg);
    if (!o->listen[0]) {
        return ms_bad("--listen is required (or modelserver.listen in --config/--set)");
    }
    if (!o->data_dir[0]) {
        return ms_bad("--data-dir is required (or modelserver.data_dir in --config/--set)");
    }
    cfg->listen = o->listen;
    cfg->data_dir = o->data_dir;
    cfg->port_file = o->port_file[0] ? o->port_file : NULL;
    cfg->sync = (reallog_sync)o->fsync;
    cfg->segment_bytes = (uint64_t)o->segment_mb << 20;
    cfg->grace_ms = o->grace_ms;
    cfg->max_sources = (uint32_t)o->max_sources;
    cfg->source_quiet_steps = o->source_quiet_steps;
    return 0;
}

/* the log's schema from the run's env (borrowed: run->env): its id and its spec's dims */
static int ms_cfg_schema(modelserver_cfg *cfg, const run_cfg *run)
{
    env_t *e = NULL;
    int rc = env_make(&e, run->env);
    if (rc < 0) {
        return rc;
    }
    cfg->env_id = run->env;
    cfg->obs_dim = (uint32_t)e->spec.n_obs;
    cfg->act_dim = (uint32_t)e->spec.n_act;
    env_free(e);
    return 0;
}

int main(int argc, char **argv)
{
    run_cfg run;
    trainer_cfg tc;
    ms_options o;
    config_table t[3] = {
        run_cfg_table(&run),
        {TRAINER_SECTION, ms_opts, (int)(sizeof ms_opts / sizeof ms_opts[0]), &o, NULL},
        {TRAINER_SECTION, trainer_opts, trainer_n_opts, &tc, trainer_opts_check},
    };
    int rc = cli_parse(t, 3, TRAINER_SECTION, argc, argv,
                       "usage: twig-modelserver --listen HOST:PORT --data-dir DIR [options]\n\n"
                       "Serves the run's durable log of real transitions and its dynamics model "
                       "(twig.v1.ModelServer)");
    if (rc == CLI_EXIT) {   /* --help or --print-config went to stdout */
        return 0;
    }
    if (rc < 0) {
        fprintf(stderr, "twig-modelserver: %s\n", err_msg());
        return 2;
    }
    modelserver_cfg cfg;
    if (ms_cfg_from_options(&cfg, &o) < 0) {
        return 2;
    }
    if (ms_cfg_schema(&cfg, &run) < 0) {
        fprintf(stderr, "twig-modelserver: the run's env (env: %s): %s\n", run.env, err_msg());
        return 2;
    }
    cfg.run = &run;
    cfg.train = &tc;
    log_init("modelserver", (log_level)o.log_level);
    if (launcher_link_from_env() < 0) {
        log_error("event=start_failed detail=\"%s\"", err_msg());
        return 1;
    }
    rpc_lib_init();
    modelserver_t ms;
    rc = modelserver_init(&ms, &cfg);
    if (rc < 0) {
        log_error("event=start_failed err=%s detail=\"%s\"", err_name(rc), err_msg());
        modelserver_free(&ms);
        rpc_lib_shutdown(2000);
        return 1;
    }
    rc = modelserver_run(&ms);
    modelserver_free(&ms);
    rpc_lib_shutdown(2000);
    log_info("event=exit status=%d", rc < 0 ? 1 : 0);
    return rc < 0 ? 1 : 0;
}
