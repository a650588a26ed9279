/* rollout.h - twig-rollout: short model branches from real start states, pushed to the
 * learner (MBPO's model rollouts, Janner et al. 2019, as a separate process; M of them).
 *
 * One worker thread does everything in order, with blocking calls that always end (long
 * polls of at most wait_ms, deadlines, backoff), so SIGTERM is served within about wait_ms:
 *
 *   mirror   common/rpc/real_mirror from the mirrored end: the observations of every real
 *            transition (replies checked against the env; backing off while the model server
 *            is missing) in a local buffer, the start states. Nothing else of the log is
 *            needed.
 *   model    GetModel(have_version): the newest ensemble (elites + normaliser).
 *   policy   Learner/GetPolicy(have_version), never waited for: until a policy exists,
 *            actions are uniform random in the env's bounds (policy_act_random), tagged
 *            policy_version 0, as MBPO's first rollouts use its initial policy.
 *   branches n start states drawn uniformly from the mirrored rows, k steps each: act (the
 *            policy samples, in env units via policy.h), ensemble_predict with one random
 *            elite per row and step, sampled (MBPO: stochastic model), env_termination on the
 *            predicted next state; a terminated branch stops, the others go on from the
 *            prediction. Rows whose prediction is not finite are dropped (and counted).
 *   push     PushSynthetic batches of at most push_batch transitions (actions in env units,
 *            truncated false) as the member's identity, source_id "<id>@m<member id>", seq
 *            1, 2, ... per membership, its source_epoch, member_id, model_version and
 *            policy_version of the piece, and (strict) its chunk and the branches that start
 *            in it; retried with the same seq and content until acknowledged (a missing
 *            learner is a wait with backoff, a full source table too). A batch the learner
 *            refuses as invalid is logged and dropped (counted).
 *
 * Membership (docs/design.md "Membership"). The worker joins the learner
 * (Membership/Join: the run's run_id, MSG_PROTOCOL_VERSION, role "rollout", its id as the
 * name; identical replicas may share all options) and keeps the lease with a heartbeat
 * thread (Renew every third of the ttl) and its traffic; a clean stop Leaves. A refused Join
 * (another run, another protocol version) stops the worker: exit 1 with
 * event=join_refused. When a push is refused for its lease (UNAUTHENTICATED: the worker was
 * paused past its ttl, or the learner restarted) or as fenced (ABORTED), or a Renew is
 * refused, the worker drops the piece it was making and joins again: a new member id, a new
 * identity, seqs from 1. Nothing is persisted; a restarted worker is a new member.
 *
 * Readiness: health answers NOT_SERVING (readiness, "") while the model server, or (when the
 * run has rollouts) the learner, does not answer; each change is logged once with its reason
 * (event=ready, event=not_ready reason=<peer>_unreachable) and `ready` is in Stats. Liveness
 * is the loop's. The learner is asked for a policy every ROLLOUT_POLICY_EVERY_S from the
 * start, so its absence is known while the worker still waits for a model.
 *
 * Pacing (docs/design.md). Real steps at or above the first model training point P0 carry a
 * quota of rollouts_per_step branches, handed out by the learner in chunks. k =
 * run_rollout_length(real step).
 *   strict  Learner/TakeChunk gives the member a chunk [begin, end) that never crosses a
 *           training point or an epoch (k boundary), or nothing (wait for real steps); its
 *           branches need a model with trained_on >= run_model_point(begin), else the worker
 *           long-polls GetModel for it. The chunk's remaining branches are made in pieces
 *           of at most `chunk`; each push credits the branches whose first step it holds.
 *   async   `chunk` branches at a time, continuously, with the newest model, k of the
 *           mirrored end; no chunks.
 *
 * Serves grpc.health.v1 and twig.v1.Stats/GetStats (role "rollout": samples_per_s,
 * transitions, pushes, push_retries, ...) on `listen`.
 *
 *     rollout_t r;
 *     rc = rollout_init(&r, &cfg, &run);   // env, buffers, clients, server bound
 *     rc = rollout_run(&r);                // until SIGTERM/SIGINT
 *     rollout_free(&r);
 */
#ifndef TWIG_MODELSERVER_ROLLOUT_H
#define TWIG_MODELSERVER_ROLLOUT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "common/base/backoff.h"
#include "common/base/stop.h"
#include "common/config/config.h"
#include "common/nn/ensemble.h"
#include "common/env/env.h"
#include "common/nn/policy.h"
#include "common/rpc/daemon.h"
#include "common/rpc/metrics.h"
#include "common/rpc/policy_blob.h"
#include "common/base/rng.h"
#include "common/rpc/real_mirror.h"
#include "common/rpc/rpc.h"
#include "common/config/run_config.h"

#define ROLLOUT_SECTION "rollout"
#define ROLLOUT_ID_MAX 63
#define ROLLOUT_PATH_MAX 1023
#define ROLLOUT_FETCH_ROWS 4096u

/* the rollout section (rollout_opts) */
typedef struct rollout_cfg {
    char id[ROLLOUT_ID_MAX + 1];          /* "rollout-0" */
    int index;                            /* j of run.n_rollout */
    char listen[RUN_ADDR_MAX + 1];        /* health + Stats */
    char port_file[ROLLOUT_PATH_MAX + 1]; /* "" or a file that gets the bound port */
    char metrics_listen[RUN_ADDR_MAX + 1]; /* Prometheus /metrics; "": off */
    int chunk;                            /* branches generated together */
    int push_batch;                       /* transitions per PushSynthetic */
    int wait_ms;                          /* long polls (FetchReal, GetModel) */
    int deadline_ms;                      /* RPC deadline on top of the wait */
    int backoff_max_ms;                   /* reconnect / retry backoff cap */
    int log_level;                        /* debug, info, warn, error */
} rollout_cfg;

extern const config_opt rollout_opts[];
extern const int rollout_n_opts;

/* a peer as the worker thread last saw it */
typedef struct rollout_peer {
    const char *name; /* "modelserver", "learner" */
    const char *addr;
    int up;           /* -1 not asked yet, 0 did not answer, 1 answered */
    backoff_t backoff; /* the waits after failures in a row */
} rollout_peer;

/* the rollout section's checks against the run (the table's check; cfg a rollout_cfg, run
 * the run_cfg): the id's characters, an env id env_make knows. 0, or -EINVAL /
 * TWIG_ENOTFOUND naming the options and values */
int rollout_opts_check(const void *cfg, const void *run);

/* counters, published under stats_mu for Stats */
typedef struct rollout_stats {
    uint64_t real_mirrored;
    uint64_t branches;
    uint64_t transitions; /* acknowledged by the learner */
    uint64_t pushes;
    uint64_t push_retries;
    uint64_t push_refused; /* transitions the learner refused as invalid */
    uint64_t terminated;   /* branches stopped by the termination function */
    uint64_t dropped_nonfinite;
    uint64_t model_version;
    uint64_t model_trained_on; /* real steps the loaded model was trained on */
    uint64_t policy_version;
    uint64_t quota_done;
    uint64_t identities;   /* memberships joined (each a push identity) */
    uint64_t push_fenced;  /* pushes refused as fenced (each began a new membership) */
    uint64_t push_lease;   /* pushes refused for a dead lease (each began a new membership) */
    uint64_t lease_lost;   /* memberships lost (expired, fenced, a learner restart) */
    uint64_t member_id;    /* the current one (0: not joined) */
    uint64_t chunks;       /* chunks finished */
    int chunk_open;        /* 0/1: a chunk is being worked on */
    uint64_t chunk_branches; /* branches credited to chunks, acknowledged */
    uint64_t source_epoch; /* of the current identity */
    int k;
    int ready;            /* 0/1: the health answer */
    double samples_per_s; /* acknowledged transitions per second, recent window */
} rollout_stats;

typedef struct rollout {
    rollout_cfg cfg;
    run_cfg run;
    env_t *env; /* spec and termination only */
    int n_obs, n_act;
    char source_id[ROLLOUT_ID_MAX + 24]; /* JoinReply.source_id, <id>@m<member id> */
    uint64_t seq;                        /* last used by this identity */
    uint64_t epoch;                      /* JoinReply.source_epoch for this identity */
    /* membership: written by the worker thread, read by the heartbeat, under member_mu */
    pthread_mutex_t member_mu;
    uint64_t member_id;                  /* 0: not joined */
    uint64_t ttl_ms;
    bool lease_lost;                     /* the heartbeat's Renew was refused */
    /* strict: the chunk being worked on (worker thread) */
    uint64_t chunk_id;                   /* 0: none */
    uint64_t chunk_begin, chunk_end, chunk_left;
    int fatal;                           /* a refusal that stops the worker (exit 1) */

    uv_loop_t loop;
    daemon_signals signals; /* SIGTERM, SIGINT */
    rpc_server_t *srv;
    int port;
    metrics_t metrics;                    /* GET /metrics on cfg.metrics_listen */
    int loop_ready;
    int closing;
    rpc_client_t *ms; /* model server */
    rpc_client_t *learner;

    pthread_t thread, hb_thread;
    int thread_started, hb_started;
    stop_flag stop;   /* the worker thread's stop; its backoff sleeps wake on it */

    pthread_mutex_t stats_mu;
    rollout_stats stats;
    double rate_t0; /* samples_per_s window start (monotonic s) */
    uint64_t rate_n0;

    /* worker thread only */
    rollout_peer ms_peer, ln_peer;
    int ready_state; /* -1 not known yet, 0, 1 (also under stats_mu) */
    rng_t rng;
    real_mirror_t mirror; /* the real log's observations -> real_obs */
    float *real_obs; /* (cap_real, n_obs) mirrored start states */
    uint64_t n_real, cap_real;
    ensemble_t ens;
    int ens_ready;
    uint64_t model_version, model_trained_on;
    ensemble_work_t work;
    policy_t pol;
    double policy_checked; /* last GetPolicy (monotonic s) */
    /* a piece: branches (chunk rows) and the push buffer (push_batch rows) */
    float *cur, *next, *act, *rew;
    bool *done;
    float *p_obs, *p_act, *p_rew, *p_next;
    int *p_term, *p_trunc;
    int p_n;
    uint64_t p_starts; /* rows of the buffer that are a branch's first step */
} rollout_t;

/* check cfg against run (run_cfg_check: the peer addresses, ...; rollout_opts_check: index
 * < n_rollout, the id, ...: -EINVAL naming the option, and twig-rollout exits 2), make the
 * env, allocate, bind the server (started; live, not ready until both peers answered), write
 * the port file. 0 or a negative code with err_msg(). */
int rollout_init(rollout_t *r, const rollout_cfg *cfg, const run_cfg *run);
/* start the worker, run the loop until SIGTERM/SIGINT, stop the worker (it finishes or
 * abandons its current call within about wait_ms), shut the server down. 0 on a clean exit. */
int rollout_run(rollout_t *r);
/* from any thread: begin the shutdown (what the signals do) */
void rollout_stop(rollout_t *r);
/* release everything; safe after a failed init */
void rollout_free(rollout_t *r);

void rollout_get_stats(rollout_t *r, rollout_stats *st);

#endif
