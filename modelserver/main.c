/* main.c - twig-modelserver: its config tables and hooks for the process skeleton
 * (common/rpc/daemon.h: command line, logging, launcher link, run, exit status).
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
 *   twig-modelserver log check|repair DIR ...   the log's offline tool (modelserver/logtool.h)
 *
 * Exit status: 0 after a clean shutdown (SIGTERM/SIGINT), 1 when the server could not start
 * or run (data dir in use, corrupt, or of another env; port taken), 2 on a bad command line
 * or config (an unknown env id too).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/err.h"
#include "common/base/log.h"
#include "common/env/env.h"
#include "common/rpc/daemon.h"
#include "modelserver/logtool.h"
#include "modelserver/modelserver.h"

#define MS_PATH_MAX 1023

/* the server options of the modelserver section */
typedef struct ms_options {
    char listen[RUN_ADDR_MAX + 1];
    char data_dir[MS_PATH_MAX + 1];
    char port_file[MS_PATH_MAX + 1];
    char metrics_listen[RUN_ADDR_MAX + 1];
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
    {"metrics_listen", CFG_ADDR, O(metrics_listen), "", 0, RUN_ADDR_MAX,
     "HOST:PORT to serve Prometheus GET /metrics on (port 0: any free one); empty: off "
     "(twig run gives each process one, launcher.metrics_base_port)", NULL},
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
    return err_set(-EINVAL, "%s\n(see twig-modelserver --help)", what);
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
    cfg->metrics_listen = o->metrics_listen;
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

typedef struct ms_main {
    run_cfg run;
    trainer_cfg tc;
    ms_options o;
    modelserver_cfg cfg;   /* from o, run and tc (configure) */
    modelserver_t ms;
} ms_main;

/* the options into the server's config, and the log's schema from the run's env */
static int ms_main_configure(void *app)
{
    ms_main *m = app;
    int rc = ms_cfg_from_options(&m->cfg, &m->o);
    if (rc < 0) {
        return rc;
    }
    if ((rc = ms_cfg_schema(&m->cfg, &m->run)) < 0) {
        char why[256];
        snprintf(why, sizeof why, "%s", err_msg());
        return err_set(rc, "the run's env (env: %s): %s", m->run.env, why);
    }
    m->cfg.run = &m->run;
    m->cfg.train = &m->tc;
    return 0;
}

static int ms_main_init(void *app)
{
    ms_main *m = app;
    return modelserver_init(&m->ms, &m->cfg);
}

static int ms_main_run(void *app)
{
    return modelserver_run(&((ms_main *)app)->ms);
}

static void ms_main_free(void *app)
{
    modelserver_free(&((ms_main *)app)->ms);
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "log") == 0) {
        return logtool_main(argc - 1, argv + 1, stdout, stderr);
    }
    ms_main m;
    const config_table t[3] = {
        run_cfg_table(&m.run),
        {TRAINER_SECTION, ms_opts, (int)(sizeof ms_opts / sizeof ms_opts[0]), &m.o, NULL},
        {TRAINER_SECTION, trainer_opts, trainer_n_opts, &m.tc, trainer_opts_check},
    };
    const daemon_spec d = {
        .name = "modelserver",
        .section = TRAINER_SECTION,
        .usage = "usage: twig-modelserver --listen HOST:PORT --data-dir DIR [options]\n\n"
                 "Serves the run's durable log of real transitions and its dynamics model "
                 "(twig.v1.ModelServer)\n"
                 "       twig-modelserver log check|repair DIR ... (see log --help): check or "
                 "repair a data dir's log offline",
        .tables = t,
        .n_tables = 3,
        .log_level = &m.o.log_level,
        .configure = ms_main_configure,
        .init = ms_main_init,
        .run = ms_main_run,
        .free = ms_main_free,
        .app = &m,
    };
    return daemon_main(&d, argc, argv);
}
