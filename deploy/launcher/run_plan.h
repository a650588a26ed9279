/* run_plan.h - which processes a run starts, with which command lines (pure, no I/O).
 *
 * Every process gets the run's config file and the user's --set overrides, plus the few
 * options that differ per process (its id, index, listen address, data directory):
 *
 *     twig-modelserver --config RUN/config.yaml --set modelserver.listen=127.0.0.1:7101
 *                      --set modelserver.data_dir=RUN/modelserver [user --set ...]
 *
 * Addresses of the model server and learner come from the run config (modelserver_addr,
 * learner_addr); actors and rollout workers listen on consecutive ports from the launcher
 * section's base ports. Nothing assumes one machine except this plan, which is the local one.
 */
#ifndef TWIG_RUN_PLAN_H
#define TWIG_RUN_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include "common/config/config.h"
#include "common/config/run_config.h"

#define PLAN_MAX_PROCS 48
#define PLAN_MAX_ARGS 96
#define PLAN_PATH_MAX 512
#define PLAN_MAX_OVERRIDES 32

typedef enum plan_role {
    PLAN_ROLE_MODELSERVER = 0,
    PLAN_ROLE_LEARNER = 1,
    PLAN_ROLE_ROLLOUT = 2,
    PLAN_ROLE_ACTOR = 3,
} plan_role;

/* the launcher's own section */
typedef struct launcher_cfg {
    char run_dir[PLAN_PATH_MAX];      /* "": runs/<env>-<time> */
    char bin_dir[PLAN_PATH_MAX];      /* "": found next to the twig binary */
    char host[64];                    /* where actors and rollout workers listen */
    int actor_base_port;
    int rollout_base_port;
    int metrics_base_port;           /* -1 off; 0 free ports picked at launch; N: N + slot */
    int progress_interval_ms;
    int startup_timeout_ms;
    int restart_base_ms;
    int restart_max_ms;
    int restart_stable_ms;
    int max_restarts;                /* within restart_window_ms; -1: no limit */
    int restart_window_ms;           /* 0: max_restarts counts over the whole run */
    int stop_grace_ms;
    int final_eval_timeout_ms;       /* after the budget is reached */
    int health_every_ms;             /* liveness probe period (deploy/launcher/healthwatch.h); 0: off */
    int hang_ms;                     /* not live this long: killed and restarted */
} launcher_cfg;

extern const config_opt launcher_opts[];
extern const int launcher_n_opts;

/* the launcher table's check (config_table.check): max_restarts fits a window's count */
int launcher_cfg_check(const void *base, const void *top);

typedef struct plan_proc {
    char name[48];                    /* "modelserver", "actor-0", ... */
    plan_role role;
    int index;                        /* within the role */
    char addr[RUN_ADDR_MAX + 1];      /* where its health and Stats answer */
    char metrics_addr[RUN_ADDR_MAX + 1]; /* where its GET /metrics answers; "": off */
    char log_path[PLAN_PATH_MAX];
    char *argv[PLAN_MAX_ARGS + 1];    /* into plan.strings; NULL-terminated */
} plan_proc;

typedef struct run_plan {
    plan_proc procs[PLAN_MAX_PROCS];
    int n_procs;
    char strings[PLAN_MAX_PROCS][PLAN_MAX_ARGS][PLAN_PATH_MAX / 2]; /* argv storage */
} run_plan;

/* the binary's file name of a role ("twig-modelserver", ...) */
const char *plan_binary_name(plan_role role);

/* processes a plan of run r has (modelserver, learner, the workers, the actors) */
int plan_n_procs(const run_cfg *r);

/* fill plan (caller storage, large: allocate it) for run r with launcher cfg l; config_path
 * is the run's config file, overrides[0..n) the user's KEY=VALUE strings, bin_paths[role]
 * each binary's path. Metrics: process k of the plan gets `--set SECTION.metrics_listen=
 * l->host:PORT` (before the user's overrides, which may replace it) with PORT
 * l->metrics_base_port + k when that is > 0, metrics_ports[k] when it is 0 (the launcher's
 * pick of free ports; NULL: none), and none at -1. returns 0 or -EINVAL (err_msg names what
 * does not fit) */
int plan_build(run_plan *plan, const run_cfg *r, const launcher_cfg *l, const char *run_dir,
               const char *config_path, const char *const *overrides, int n_overrides,
               const char *const bin_paths[4], const int *metrics_ports);

#endif
