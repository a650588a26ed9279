/* run_config.h - the options every process of a run shares (the config file's top level),
 * and the MBPO schedule derived from them.
 *
 * A run config file has these keys at its top level and one section per process:
 *
 *     env: Pendulum-v1
 *     real_steps: 6000
 *     utd: 20
 *     modelserver_addr: 127.0.0.1:7101
 *     learner:
 *       batch_size: 256
 *
 * Each process reads the top level (run_opts) and its own section; the launcher checks
 * every section. configs/example.yaml lists every option with its help.
 */
#ifndef TWIG_RUN_CONFIG_H
#define TWIG_RUN_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "common/base/netaddr.h"
#include "common/config/config.h"

#define RUN_ADDR_MAX NETADDR_MAX   /* the longest HOST:PORT of an address option */
#define RUN_ENV_MAX 255
#define RUN_PATH_MAX 1023          /* the longest file path of an option (tls_*) */
#define RUN_TLS_NAME_MAX 253       /* the longest tls_server_name (a DNS name) */
#define RUN_ID_MAX 63              /* the longest run_id */

typedef enum run_pacing {
    RUN_PACING_STRICT = 0,   /* every process waits so the run is algorithmically MBPO */
    RUN_PACING_ASYNC = 1,    /* nobody waits for ratios; achieved ratios are reported */
} run_pacing;

typedef struct run_cfg {
    char run_id[RUN_ID_MAX + 1];            /* the run's name: members of another are refused
                                             * at Join ("" is a name like any other) */
    char env[RUN_ENV_MAX + 1];              /* env id, e.g. "Hopper-v4" or "plugin:..." */
    uint64_t seed;
    uint64_t real_steps;                    /* budget of real env steps for the whole run */
    uint64_t init_steps;                    /* random-action steps before learning starts */
    float utd;                              /* SAC updates per real step */
    int pacing;                             /* run_pacing */
    int model_train_freq;                   /* retrain the model every this many real steps */
    int rollouts_per_step;                  /* model branches started per real step */
    int epoch_length;                       /* real steps per MBPO epoch (k schedule unit) */
    int k_epoch_start, k_epoch_end;         /* rollout length grows between these epochs */
    int k_min, k_max;                       /* from k_min to k_max */
    int retain_epochs;                      /* synthetic FIFO keeps this many epochs of data */
    float real_ratio;                       /* share of real data in a SAC batch */
    int hidden;                             /* policy/critic hidden width */
    float target_entropy;                   /* 0: -n_act */
    int eval_every;                         /* real steps between evaluations */
    int eval_episodes;                      /* episodes per evaluation */
    int n_actors;
    int n_rollout;
    char modelserver_addr[RUN_ADDR_MAX + 1];
    char learner_addr[RUN_ADDR_MAX + 1];
    /* TLS of every connection of the run (docs/deploy.md, "TLS"): all three files, or none
     * (plaintext); per host with --set tls_cert=... */
    char tls_ca[RUN_PATH_MAX + 1];          /* PEM CA certificate every process trusts */
    char tls_cert[RUN_PATH_MAX + 1];        /* PEM certificate of this process (its host) */
    char tls_key[RUN_PATH_MAX + 1];         /* PEM private key of tls_cert */
    char tls_server_name[RUN_TLS_NAME_MAX + 1]; /* name the servers' certificates carry, if
                                                 * not their addresses' hosts */
} run_cfg;

extern const config_opt run_opts[];
extern const int run_n_opts;

/* the sections a run file may have, NULL-terminated */
extern const char *const run_sections[];

/* MBPO's rollout length after real_steps: k_min before epoch k_epoch_start, k_max after
 * k_epoch_end, linear in between (rounded down), as in MBPO's rollout_schedule */
int run_rollout_length(const run_cfg *r, uint64_t real_steps);

/* model training points: the model server trains when the real step count reaches
 * P0 = init_steps rounded up to a multiple of model_train_freq (at least model_train_freq;
 * MBPO trains first right after its init_exploration_steps, then every model_train_freq
 * steps), then P0 + model_train_freq, P0 + 2 model_train_freq, ...
 * run_model_point: the newest point at or below real_steps, 0 before P0.
 * run_model_next_point: the first point above real_steps. */
uint64_t run_model_point(const run_cfg *r, uint64_t real_steps);
uint64_t run_model_next_point(const run_cfg *r, uint64_t real_steps);

/* synthetic FIFO capacity: rollouts per model training x k x retain_epochs x trainings per
 * epoch, as MBPO's model pool (rollout_batch_size * k * model_retain_epochs *
 * epoch_length / model_train_freq) */
uint64_t run_synthetic_capacity(const run_cfg *r, int k);

/* the SAC updates strict pacing allows for `steps` real steps past learn_start:
 * floor(utd * steps), without overshooting by float rounding (utd came from a float option,
 * so 0.1 * 10 may be 1.0000000149; floor gives 1 as wanted, and the product of a double is
 * exact enough for the step counts a run reaches, < 2^40). The learner's rate limiter and the
 * launcher's end of a strict run both count with it. */
uint64_t run_utd_credit(double utd, uint64_t steps);

/* cross-option checks the table cannot express (k_min <= k_max, init_steps < real_steps,
 * rollouts_per_step 0 or >= n_rollout when strict, tls_ca/tls_cert/tls_key all or none);
 * 0 or -EINVAL naming both options. The TLS files themselves are read by the processes
 * (common/rpc: rpc_tls_check), each on its own host. */
int run_cfg_check(const run_cfg *r);
/* run_cfg_check as a config_table check (base: the run_cfg) */
int run_cfg_table_check(const void *base, const void *top);

/* the top-level table of a process, over r, with its check: cli_parse refuses a run config
 * that fails run_cfg_check before anything runs (--print-config too) */
config_table run_cfg_table(run_cfg *r);

#endif
