/* learner.h - twig-learner: SAC on real + synthetic data, paced by real steps (MBPO).
 *
 * Services (proto/twig.proto), on cfg.listen (default: the run's learner_addr):
 *   twig.v1.Learner/PushSynthetic  rollout workers' model transitions -> the synthetic FIFO;
 *                                  validated (env id, dims, finite, source id), deduped on
 *                                  (source_id, seq) by the bounded, fenced table of dedup.h
 *   twig.v1.Learner/GetPolicy      the newest policy WeightBlob; long poll with wait_ms,
 *                                  answered NO_VERSION RPC_POLL_MARGIN_MS before the client's
 *                                  deadline; "newer" is policy_version_newer everywhere
 *   twig.v1.Learner/GetProgress    counters for strict pacing and the launcher, and
 *                                  source_epoch (the epoch a new push identity starts with)
 *   twig.v1.Learner/ReportEval     actors' evaluation returns, validated against the run
 *                                  (learner_check_eval) and deduped on (source_id, seq); at
 *                                  most learner_evals_bound() kept
 *   twig.v1.Learner/GetEvals       the evaluations so far
 *   twig.v1.Learner/TakeChunk      strict pacing: a rollout worker's chunk of the synthetic
 *                                  quota (learner/quota.h), renewing its lease
 *   twig.v1.Membership/...         rollout workers join, renew and leave (common/rpc/member.h);
 *                                  a push needs a live lease, its source_id is the lease's
 *   twig.v1.Stats/GetStats         counters and gauges (ready: 0/1)
 *   grpc.health.v1.Health/Check    (the rpc layer); liveness from the loop, readiness false
 *                                  while the model server cannot be reached (the mirror's
 *                                  last call found nobody, rpc_err_unreachable, or none
 *                                  answered yet)
 *
 * Push dedup (docs/design.md "Dedup"): the table holds at most cfg.max_sources sources; a
 * source's quietness is measured in synthetic samples accepted (synthetic_samples), and a
 * new source evicts the quietest once it has been quiet for cfg.source_quiet_samples, else
 * is refused RESOURCE_EXHAUSTED (counted). The eval table holds n_actors sources and never
 * evicts (EvalResult carries no epoch, so nothing could fence a forgotten one). Both tables,
 * fences and epochs are in the checkpoint.
 *
 * policy_version file (checkpoint_dir/policy_version): the highest version ever published,
 * written before a version is served. At start the learner continues above the higher of it
 * and the checkpoint's; a file that is there but does not hold a version (damaged), or holds
 * one that cannot be incremented, stops the start-up naming the file: versions published
 * after the checkpoint cannot be known then, and serving one of them again would make
 * versions go backwards for the workers. Removing the file is the operator's way to accept
 * the checkpoint's version. A publication whose file cannot be written is not served.
 *
 * Threads: the libuv loop on the caller's thread (signals, GetPolicy long polls, publishing),
 * the rpc completion-queue thread (the other handlers: quick, under l->mu), the mirror thread
 * (common/rpc/real_mirror: FetchReal long polls on the model server -> real replay) and the
 * training thread (SAC updates as the rate limiter allows, policy publishing, checkpoints).
 * l->mu guards the replays, counters, dedup tables and evaluations; the SAC state belongs to
 * the training thread alone.
 *
 *     learner_t *l = xcalloc(1, sizeof *l);
 *     rc = learner_init(l, &run, &cfg);    // env, nets, newest valid checkpoint, binds, serves
 *     rc = learner_run(l);                 // until SIGTERM/SIGINT, then a clean shutdown
 *     learner_free(l);
 */
#ifndef TWIG_LEARNER_H
#define TWIG_LEARNER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "common/base/stop.h"

#include "common/config/config.h"
#include "common/env/env.h"
#include "common/rpc/daemon.h"
#include "common/rpc/nn_blob.h"
#include "common/nn/policy.h"
#include "common/rpc/policy_blob.h"
#include "common/rpc/longpoll.h"
#include "common/rpc/metrics.h"
#include "common/nn/replay.h"
#include "common/base/rng.h"
#include "common/rpc/real_mirror.h"
#include "common/rpc/rpc.h"
#include "common/config/run_config.h"
#include "learner/writer.h"
#include "common/nn/sac.h"
#include "common/rpc/msg.h"
#include "common/base/dedup.h"
#include "common/rpc/member.h"
#include "learner/quota.h"
#include "learner/synth.h"

#define LEARNER_SERVICE "twig.v1.Learner"
#define LEARNER_PATH_MAX 1023
#define LEARNER_WAIT_MAX_MS 60000u      /* longest GetPolicy long poll */
#define LEARNER_MAX_SOURCES_LIMIT 65536 /* upper bound of the max_sources option */
#define LEARNER_MAX_WORKERS 256         /* rollout workers (run option n_rollout's bound) */
#define LEARNER_EVALS_CAP 100000u       /* evaluations kept, whatever the run (see below) */
#define LEARNER_EVALS_CAP_V1 1000000u   /* the cap of state images before version 2 */
#define LEARNER_EVALS_PER_REPLY 1000u   /* GetEvals answers at most this many at once */
#define LEARNER_MAX_EVAL_EPISODES 1000u /* episodes of one evaluation (eval_episodes' bound) */
#define LEARNER_MAX_ABS_RETURN 1e9f     /* |return_mean|, return_std of an evaluation; twig's
                                         * tasks give |reward| <= ~1e2 per step over at most
                                         * ~1e4 steps, so this only keeps out garbage (3.4e38
                                         * would overflow any sum of returns) */

/* the `learner` section of a run file */
typedef struct learner_cfg {
    char listen[RUN_ADDR_MAX + 1];        /* "": the run's learner_addr */
    char port_file[LEARNER_PATH_MAX + 1]; /* "": none */
    char metrics_listen[RUN_ADDR_MAX + 1]; /* Prometheus /metrics; "": off */
    char checkpoint_dir[LEARNER_PATH_MAX + 1];
    int checkpoint_every; /* updates; 0: never */
    int keep_checkpoints;
    bool final_checkpoint;    /* on SIGTERM */
    int policy_publish_every; /* updates */
    int batch_size;
    float lr_actor, lr_critic, lr_alpha;
    float gamma, tau;
    uint64_t real_capacity;      /* 0: the run's real_steps */
    uint64_t synthetic_capacity; /* 0: MBPO's pool at k_max */
    int synthetic_max_mb;        /* memory cap of that default */
    int fetch_max;               /* FetchReal rows per call */
    int fetch_wait_ms;           /* FetchReal long poll */
    int threads;                 /* OpenBLAS threads of the training thread */
    int grace_ms;
    int log_every; /* updates between progress lines; 0: never */
    int log_level; /* log_level */
    int max_sources;               /* push sources remembered (dedup table) */
    int max_members;               /* rollout worker leases at once */
    int lease_ttl_ms;              /* a lease ends this long after its last renewal */
    uint64_t source_quiet_samples; /* quiet needed before a source may be evicted */
} learner_cfg;

extern const config_opt learner_opts[];
extern const int learner_n_opts;

/* the learner section's checks against the run (the table's check; cfg a learner_cfg, run
 * the run_cfg): n_rollout fits the worker table, an env id env_make knows. 0, or a negative
 * code naming the option and its value */
int learner_opts_check(const void *cfg, const void *run);

/* evaluations kept for the run: n_actors x (real_steps / eval_every + 2) (each actor's eval
 * points, its final evaluation and the initial policy's at init_steps), at most
 * LEARNER_EVALS_CAP */
uint64_t learner_evals_bound(const run_cfg *run);

typedef struct learner_eval {
    char source_id[MSG_MAX_ID_LEN + 1];
    uint64_t real_steps, policy_version, seq;
    uint32_t episodes;
    float return_mean, return_std;
} learner_eval;

typedef struct learner {
    run_cfg run;
    learner_cfg cfg;
    env_t *env;           /* for the spec (bounds stay valid while it lives) */
    policy_t units;       /* action unit conversion only (read-only after init) */
    uint64_t learn_start; /* = run.init_steps */
    bool quota_on;        /* strict, rollouts_per_step > 0, n_rollout > 0 */
    bool synth_capped;    /* the FIFO is smaller than MBPO's pool (memory cap) */

    /* loop thread */
    uv_loop_t loop;
    rpc_server_t *srv;
    rpc_client_t *ms; /* the model server (mirror thread) */
    int port;
    metrics_t metrics;              /* GET /metrics on cfg.metrics_listen */
    daemon_signals signals;         /* SIGTERM, SIGINT */
    uv_async_t wake;                /* a new policy is waiting in pending_blob */
    rpc_longpoll_t policy_polls;    /* parked GetPolicy calls */
    nn_blob *blob;                  /* the policy served; loop thread only */
    rpc_packed_t *blob_reply;       /* its GetPolicy reply, packed once; loop thread only */
    int loop_ready, shutting_down;
    int exit_code;

    /* threads */
    pthread_t mirror_thr, train_thr;
    int mirror_started, train_started;
    writer_t writer;      /* publications' version records and checkpoints: the fsyncs */

    /* mirror thread */
    real_mirror_t mirror; /* the model server's real log, from refill_from */
    float *mirror_unit;   /* (fetch_max, n_act) fetched actions in [-1, 1] */

    /* guarded by mu */
    pthread_mutex_t mu;
    pthread_cond_t cv_train; /* data, quota or stop for the training thread */
    stop_flag stop;          /* the threads' stop; the mirror's backoff sleeps wake on it */
    int wake_open;
    nn_blob *pending_blob; /* published by the training thread, taken by the loop */
    rpc_packed_t *pending_reply; /* its GetPolicy reply, taken with it */
    uint64_t policy_reply_packs; /* GetPolicy replies packed: one per version published */
    replay_t real;         /* actions in [-1, 1] */
    synth_t synth;
    float *push_unit;      /* (n_act) the pushed row being stored, its action in [-1, 1] */
    dedup_t push_dedup;    /* progress: synthetic_samples */
    dedup_t eval_dedup;    /* progress: n_evals */
    learner_eval *evals;
    size_t n_evals, cap_evals;
    uint64_t evals_bound;  /* learner_evals_bound (or more, restored) */
    int ready;             /* -1 not known yet, 0 not ready, 1 ready (mirror thread writes) */
    uint64_t real_offset;  /* next log offset to mirror = real steps mirrored */
    uint64_t refill_from;  /* first offset mirrored in this process */
    uint64_t refill_until; /* restored real offset (0 on a fresh start) */
    uint64_t updates;
    uint64_t policy_version;    /* newest published: recorded on disk, then served */
    uint64_t policy_built;      /* newest built (>= policy_version; the writer records it) */
    uint64_t synthetic_samples; /* transitions accepted, all lifetimes */
    uint64_t synthetic_pushes;
    uint64_t push_duplicates;
    uint64_t push_rejected;   /* every refused push (the four below, and invalid ones) */
    uint64_t push_stale;      /* at or below the newest seq, not provably stored */
    uint64_t push_fenced;     /* unknown source below the fence */
    uint64_t push_table_full; /* new source, no source quiet enough to evict */
    uint64_t push_lease;      /* new data under a dead or unknown lease (fenced) */
    uint64_t eval_duplicates, eval_rejected;
    member_svc members;     /* rollout workers' leases (under mu) */
    quota_t quota;          /* strict: the synthetic quota in chunks, from quota_base */
    uint64_t quota_wait_max_ms; /* the longest the training thread waited on the quota alone */
    uint64_t quota_base;    /* real steps whose quota counts as met at start */
    bool quota_known;       /* quota_base set (first contact with the model server) */
    uint64_t model_version; /* newest in synthetic data */
    uint64_t log_end;       /* model server's log end at the last fetch */
    uint64_t checkpoints_written;
    uint64_t restored_updates; /* from the checkpoint loaded at start (0: none) */
    bool diverged;
    sac_stats stats;
    double updates_per_s;
    double wait_real_s;      /* the training thread's waits for real steps (pacing), seconds */
    double wait_synthetic_s; /* and for the synthetic quota alone (pace_waits_for_synthetic) */

    /* training thread */
    sac_t sac;
    replay_batch batch;
    rng_t rng; /* batch sampling */
} learner_t;

/* load the env, build nets and buffers, restore the newest valid checkpoint, publish the
 * first policy, bind and serve, start the threads. 0 or a negative code with err_msg() */
int learner_init(learner_t *l, const run_cfg *run, const learner_cfg *cfg);

/* run the loop until SIGTERM/SIGINT has shut everything down. 0 on a clean exit */
int learner_run(learner_t *l);

/* begin the shutdown (loop thread; what the signals do): stop and join the threads, write
 * the final checkpoint, answer parked calls, stop the server */
void learner_shutdown(learner_t *l);

/* release everything; safe after a failed init */
void learner_free(learner_t *l);

#endif
