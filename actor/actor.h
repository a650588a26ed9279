/* actor.h - twig-actor: steps a real environment, appends its transitions to the model server,
 * evaluates the policy, and reports returns.
 *
 *     actor_t a;
 *     rc = actor_init(&a, &run, &cfg);   // env, policy, clients, health + Stats server
 *     rc = actor_run(&a);                // until SIGTERM/SIGINT (or done with exit_when_done)
 *     actor_free(&a);
 *
 * Budget. The run's real_steps are split between the n_actors actors: actor i of N owns
 * actor_share(real_steps, i, N) steps and, of those, actor_share(init_steps, i, N) are taken
 * with uniform random actions (the initial exploration); after that the newest policy acts
 * (random until the learner has published one). Each actor stops exactly at its share, so
 * the log ends with exactly real_steps transitions whatever the restarts.
 *
 * Sequence numbers. Batches are numbered 1, 2, 3, ... per actor id and sent one at a time,
 * each kept and retried with the same seq until acknowledged, so a retry after a timeout or a
 * model server restart is stored once. A restarted actor asks the model server for its id
 * (LogStatus.source_seq, .source_transitions) and goes on with seq source_seq + 1, counting
 * its steps from source_transitions. A batch the killed actor had in flight that the server
 * takes only after that question has the same seq as the new actor's first batch (one batch
 * in flight per actor): whichever comes second is a duplicate (same count) or refused (other
 * count); the actor then asks again and renumbers (event=seq_resync), dropping what it had
 * not stored. Either way the log holds each seq once and the count stays exact.
 *
 * Identity (docs/design.md "Dedup"). Every AppendReal carries the source_epoch LogStatus gave
 * when the actor synced (LogStatusReply.source_epoch). When the model server has forgotten
 * the actor's identity and refuses a batch as fenced (ABORTED), the actor asks LogStatus
 * again and goes on as a new identity: the seq and the count LogStatus reports now (seq 1
 * when it forgot the seqs), its new epoch, the queued batches dropped (none was stored) and
 * stepped again (event=seq_resync why=fenced), so the count stays exact.
 *
 * Readiness. Health answers NOT_SERVING (readiness, "") until both the model server and the
 * learner have answered, and whenever one of them does not; liveness is the loop's. Each
 * change is logged once (event=ready, event=not_ready reason=<peer>_unreachable), and
 * `ready` is in Stats. A malformed modelserver_addr or learner_addr, or an actor.id a source
 * id cannot carry, fails start-up (twig-actor exits 2, naming the option and value).
 *
 * Threads (one actor_t, passed down; no globals):
 *   loop     (main) libuv: SIGTERM/SIGINT, the health + Stats server's hand-offs, shutdown
 *   stepper  env steps, batches, pacing, evaluations (the only user of env and policy)
 *   pusher   AppendReal of queued batches to the model server, in order, with backoff
 *   puller   learner: GetPolicy (newest blob handed to the stepper), GetProgress (pacing),
 *            ReportEval (queued eval results, retried with the same seq)
 * The stepper never waits on the learner except for strict pacing, and never on a pull.
 *
 * Pacing (docs/design.md). Strict: a step that would make the run's real steps R is taken
 * only while updates >= utd * (R - learn_start) - utd * slack, slack = push_every * n_actors
 * steps (one batch in flight per actor); R counts what the log has acknowledged plus this
 * actor's steps not yet acknowledged; learn_start is the learner's (Progress.learn_start),
 * never below init_steps. Before waiting, the partial batch is pushed so the learner sees
 * every step taken. Async: never waits. A batch also ends when the acting policy's version
 * changes, so TransitionBatch.policy_version is exact (0: random actions).
 *
 * Evaluation (the actor whose index is eval_index): each time the run's real steps reach a
 * multiple of eval_every, eval_episodes episodes with the deterministic policy on seeds
 * seed + eval_seed_offset + e, and once at init_steps (the initial policy, the curve's
 * baseline); reported with ReportEval (seq = that point, so a retry or a restarted actor's
 * repeat is stored once; a restarted actor repeats the newest point the log has passed,
 * whose report may have died with it, and skips older ones; before the learner has
 * published a policy, random actions, policy_version 0).
 * When the whole budget is in the log, a final evaluation (seq = real_steps); then the actor
 * idles, serving health and Stats (done = 1), until SIGTERM (the launcher ends the run when
 * the final eval reaches the learner), or exits 0 at once with exit_when_done.
 *
 * Stats (twig.v1.Stats/GetStats, role "actor"): steps, acked, share, log_end, episodes,
 * episode_return_last, episode_return_mean10, batches_acked, batches_pending, append_retries,
 * duplicates, policy_version, policy_loads, evals, evals_waiting, evals_reported,
 * eval_return_last, pace_waits, pace_wait_s, done, fenced, source_epoch, ready.
 */
#ifndef TWIG_ACTOR_H
#define TWIG_ACTOR_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "common/config/config.h"
#include "common/env/env.h"
#include "common/nn/policy.h"
#include "common/rpc/daemon.h"
#include "common/rpc/metrics.h"
#include "common/rpc/policy_blob.h"
#include "common/base/rng.h"
#include "common/rpc/rpc.h"
#include "common/config/run_config.h"
#include "proto/twig.pb-c.h"

#define ACTOR_ID_MAX 63
#define ACTOR_PATH_MAX 255
#define ACTOR_EVAL_QUEUE 16 /* eval results waiting for the learner */

/* the `actor` section of the run config */
typedef struct actor_cfg {
    char id[ACTOR_ID_MAX + 1];          /* "" -> "actor-<index>" */
    int index;                          /* 0 .. n_actors-1 */
    char listen[RUN_ADDR_MAX + 1];      /* health + Stats */
    char port_file[ACTOR_PATH_MAX + 1]; /* "" or a file that gets the bound port */
    char metrics_listen[RUN_ADDR_MAX + 1]; /* Prometheus /metrics; "": off */
    int push_every;                     /* transitions per AppendReal batch */
    int max_pending;                    /* batches stepped but not acknowledged */
    uint64_t eval_seed_offset;          /* eval env seeds: seed + this + episode */
    int eval_index;                     /* which actor evaluates; -1: none */
    int policy_poll_ms;                 /* GetPolicy long-poll / poll period */
    int progress_poll_ms;               /* GetProgress period while pacing waits */
    int rpc_deadline_ms;                /* every call's deadline */
    int backoff_min_ms;                 /* retry backoff: first wait */
    int backoff_max_ms;                 /* and the cap */
    int flush_ms;                       /* on SIGTERM: pending batches get this long */
    bool exit_when_done;                /* exit 0 after the final eval instead of idling */
    double steps_per_s;                 /* cap on the real-step rate; 0: none */
    int log_level;                      /* log_level */
} actor_cfg;

extern const config_opt actor_opts[];
extern const int actor_n_opts;

/* the actor section's checks against the run (the table's check; cfg an actor_cfg, run the
 * run_cfg): index and eval_index below n_actors, a share of real_steps for this actor, the
 * id's characters, an env id env_make knows. 0, or -EINVAL / TWIG_ENOTFOUND naming the
 * options and values */
int actor_opts_check(const void *cfg, const void *run);

/* ---- pure pieces (tested on their own) ---- */

/* actor index's part of total split over n: total/n, plus one for the first total%n */
uint64_t actor_share(uint64_t total, int index, int n);

/* strict pacing: may a step that brings the run to `steps` real steps be taken, given the
 * learner's `updates` (have_progress false: nothing known from the learner)? Always true in
 * async mode and while utd * (steps - learn_start - slack) <= 0. */
bool actor_pace_allows(int pacing, double utd, uint64_t learn_start, uint64_t slack, uint64_t steps,
                       bool have_progress, uint64_t updates);

/* the first multiple of every above steps */
uint64_t actor_next_eval(uint64_t steps, uint64_t every);

/* the first eval point of an actor that starts at steps: the end of the random phase
 * (init_steps) when it lies ahead and before the next multiple of every, so the learning
 * curve starts from the initial policy's return; else actor_next_eval */
uint64_t actor_first_eval(uint64_t steps, uint64_t init_steps, uint64_t every);

/* where an actor that starts at steps (a restart, a resume) evaluates first: the newest eval
 * point already passed (init_steps or a multiple of every), whose report may have died with
 * the stop; with none passed, actor_first_eval */
uint64_t actor_start_eval(uint64_t steps, uint64_t init_steps, uint64_t every);

/* a batch of transitions being filled (or waiting for its ack); arrays owned, one block */
typedef struct actor_batch {
    int cap, n_obs, n_act;
    int count;
    uint64_t seq;            /* set when queued: 1, 2, 3, ... per source */
    uint64_t policy_version; /* that chose every action of the batch (0: random) */
    int attempts;            /* AppendReal calls made for it */
    float *obs;              /* (cap, n_obs) */
    float *act;              /* (cap, n_act) env units */
    float *reward;           /* (cap) */
    float *next_obs;         /* (cap, n_obs) */
    int *terminated;         /* (cap) protobuf_c_boolean */
    int *truncated;          /* (cap) */
    void *block;
} actor_batch_t;

void actor_batch_init(actor_batch_t *b, int cap, int n_obs, int n_act);
void actor_batch_free(actor_batch_t *b);
/* empty it for transitions chosen by policy_version */
void actor_batch_clear(actor_batch_t *b, uint64_t policy_version);
/* append one transition (count < cap) */
void actor_batch_add(actor_batch_t *b, const float *obs, const float *act, float reward,
                     const float *next_obs, bool terminated, bool truncated);
/* a message pointing into b (b must outlive it) */
void actor_batch_to_msg(Twig__V1__TransitionBatch *m, const actor_batch_t *b, const char *env_id,
                        const char *source_id);

/* ---- the process ---- */

typedef struct actor_eval_item {
    uint64_t seq; /* eval point: a multiple of eval_every, or real_steps */
    uint64_t real_steps;
    uint64_t policy_version;
    uint32_t episodes;
    float mean, std;
} actor_eval_item;

/* counters for Stats (guarded by actor_t.mu) */
typedef struct actor_stats {
    uint64_t steps;      /* own steps stored or pending (the source's count) */
    uint64_t acked;      /* own steps acknowledged */
    uint64_t global_end; /* the log's end as last seen */
    uint64_t episodes;
    double last_return;
    double return_sum_10; /* sum of the last (up to) 10 returns */
    double returns_10[10];
    uint64_t batches_acked;
    uint64_t append_retries;
    uint64_t duplicates;
    uint64_t policy_version;
    uint64_t policy_loads;
    uint64_t evals;
    double last_eval_mean;
    double pace_wait_s;
    uint64_t pace_waits;
    uint64_t fenced;       /* batches refused as fenced (each began a new identity) */
    uint64_t source_epoch; /* of the current identity */
    int done; /* own share stored (and final eval reported, if evaluating) */
} actor_stats;

typedef enum actor_peer {
    ACTOR_PEER_MS = 0,
    ACTOR_PEER_LEARNER = 1,
} actor_peer;

typedef struct actor {
    run_cfg run;
    actor_cfg cfg;
    char id[ACTOR_ID_MAX + 1];
    uint64_t share;      /* own real steps */
    uint64_t init_share; /* own random steps */
    bool evaluates;

    env_t *env;       /* stepper only */
    env_t *eval_env;  /* stepper only */
    policy_t pol;     /* stepper only */
    rng_t rng;        /* stepper only */
    rpc_client_t *ms; /* model server */
    rpc_client_t *learner;

    uv_loop_t loop;
    rpc_server_t *srv;
    int port;
    metrics_t metrics;                  /* GET /metrics on cfg.metrics_listen */
    daemon_signals signals; /* SIGTERM, SIGINT */
    uv_async_t wake; /* the stepper is done and exit_when_done */
    int loop_ready;
    bool shutting_down; /* loop thread */

    pthread_t stepper, pusher, puller;
    int threads_started; /* how many of the three run */
    atomic_int stop;     /* SIGTERM: leave the loops */

    pthread_mutex_t mu;  /* guards everything below */
    pthread_cond_t cv;   /* any change below, or stop */
    actor_batch_t *ring; /* (max_pending) batches queued for the pusher */
    int ring_head, ring_n;
    uint64_t base;                           /* the source's transitions before the filling batch */
    uint64_t next_seq;                       /* seq of the next batch queued */
    uint64_t epoch;                          /* source_epoch of the identity (LogStatus) */
    int peer_up[2];                          /* actor_peer: -1 not asked yet, 0 down, 1 up */
    int ready_state;                         /* -1 not known yet, 0, 1 */
    uint64_t resync_gen;                     /* bumped when the pusher renumbered from the server */
    uint64_t flush_deadline_ms;              /* set at stop: the pusher gives up after it */
    bool stepper_done;                       /* the stepper has handed over its last batch */
    int fatal;                               /* < 0: a thread gave up (bad config, refused data) */
    Twig__V1__GetWeightsReply *policy_reply; /* newest policy pulled, not loaded (owned) */
    bool have_progress;
    Twig__V1__Progress progress; /* the last one (scalar fields only) */
    bool pace_waiting;           /* the stepper waits for progress */
    actor_eval_item evalq[ACTOR_EVAL_QUEUE];
    int evalq_head, evalq_n;
    uint64_t evals_acked; /* taken (or refused) by the learner */
    actor_stats st;
} actor_t;

/* run and cfg are copied. Makes the envs and the policy, the clients (no connection yet),
 * binds cfg->listen and starts serving health and Stats. 0 or a negative code with
 * err_msg(); actor_free is safe after a failure. */
int actor_init(actor_t *a, const run_cfg *run, const actor_cfg *cfg);

/* learn the actor's count from the model server (waits, with backoff, while it is missing),
 * start the threads, run the loop until a clean shutdown. 0 on a clean exit. */
int actor_run(actor_t *a);

void actor_free(actor_t *a);

#endif
