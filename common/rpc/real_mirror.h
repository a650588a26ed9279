/* real_mirror.h - follow the model server's durable real-transition log: the one FetchReal
 * loop of twig (the learner's real replay, the rollout workers' start states).
 *
 * The mirror asks for rows from its offset, checks each reply against the run's env (env id,
 * dims, array lengths, finite values, the offset it asked from, a log end that never falls
 * behind what was mirrored), hands the accepted rows to its owner and moves its offset past
 * them. A reply that fails a check is logged and refused: nothing is taken, the offset stays.
 * When the model server cannot be reached the mirror backs off (base/backoff.h), waking at
 * once for a stop (base/stop.h), and tells the owner whether the peer answered so the owner
 * can report readiness its own way.
 *
 *     static void take(void *app, const real_mirror_rows *rows) { append rows->count rows }
 *     static void peer(void *app, bool reached, int rc, uint64_t offset) { readiness }
 *     real_mirror_cfg c = {.client = cl, .env_id = "hopper", .n_obs = 11, .n_act = 3,
 *                          .max_count = 4096, .wait_ms = 500, .deadline_slack_ms = 3000,
 *                          .backoff_min_ms = 50, .backoff_max_ms = 2000, .seed = seed,
 *                          .stop = &stop, .take = take, .peer = peer, .app = owner};
 *     real_mirror_t m;
 *     real_mirror_init(&m, &c, from_offset);
 *     real_mirror_run(&m);          // a thread of its own, until stop is raised
 *
 * or, inside a worker that does other things between fetches, real_mirror_catch_up (to the
 * log's end without waiting) and real_mirror_step (one long poll). The callbacks run on the
 * thread calling the mirror, one at a time. The mirror allocates nothing.
 */
#ifndef TWIG_REAL_MIRROR_H
#define TWIG_REAL_MIRROR_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/base/backoff.h"
#include "common/base/stop.h"
#include "common/rpc/rpc.h"

#define REAL_MIRROR_PATH "/twig.v1.ModelServer/FetchReal"
#define REAL_MIRROR_CATCH_UP_ROUNDS 1024 /* catch_up's bound: a log growing faster never ends */

/* one accepted reply, pointing into it (valid during the take callback only) */
typedef struct real_mirror_rows {
    uint64_t first_offset; /* log offset of row 0: the mirror's offset before the take */
    uint64_t end_offset;   /* the log's end when the reply was made (>= first + count) */
    uint32_t count;        /* 0: nothing new; end_offset is still news */
    const float *obs;      /* (count, n_obs) */
    const float *act;      /* (count, n_act), in env units */
    const float *reward;   /* (count) */
    const float *next_obs; /* (count, n_obs) */
    const int *terminated; /* (count), nonzero = true */
} real_mirror_rows;

/* owner: the rows of an accepted reply (count 0 too); the mirror then moves past them */
typedef void (*real_mirror_take_fn)(void *app, const real_mirror_rows *rows);
/* owner: after every FetchReal, whether the model server answered (rc: the failure when it
 * did not; offset: the one asked from). Called on every attempt: the owner logs changes. */
typedef void (*real_mirror_peer_fn)(void *app, bool reached, int rc, uint64_t offset);

typedef struct real_mirror_cfg {
    rpc_client_t *client;    /* the model server; borrowed, outlives the mirror */
    const char *env_id;      /* the run's env; borrowed */
    int n_obs, n_act;        /* the run's env dims */
    uint32_t max_count;      /* rows asked per FetchReal, 1..MSG_BATCH_MAX_COUNT */
    int wait_ms;             /* real_mirror_run's long poll at the log's end; 0: poll every
                              * backoff_min_ms */
    int deadline_slack_ms;   /* the call's deadline beyond its long poll */
    uint64_t backoff_min_ms; /* first wait after a failure, doubling up to backoff_max_ms */
    uint64_t backoff_max_ms;
    uint64_t seed;   /* the backoff's jitter */
    stop_flag *stop; /* borrowed; every wait ends when it is raised */
    real_mirror_take_fn take;
    real_mirror_peer_fn peer; /* NULL: nobody asks */
    void *app;                /* handed to both callbacks; borrowed */
} real_mirror_cfg;

typedef struct real_mirror {
    real_mirror_cfg cfg;
    backoff_t backoff;       /* the waits after failures in a row */
    _Atomic uint64_t offset; /* next log offset to ask for (the mirror's thread writes) */
    bool at_end;             /* the last reply said the log has nothing past offset */
    /* counters, readable from any thread */
    _Atomic uint64_t rows;     /* rows taken */
    _Atomic uint64_t refused;  /* replies refused by the checks */
    _Atomic uint64_t failures; /* FetchReal calls that failed (no reply) */
} real_mirror_t;

/* fill m to mirror from from_offset (cfg copied; its pointers stay borrowed) */
void real_mirror_init(real_mirror_t *m, const real_mirror_cfg *cfg, uint64_t from_offset);

/* one FetchReal from the offset with a long poll of wait_ms: the rows taken (0: none, the
 * log is at its end, or the server is not ready yet, which backs off), or < 0 after backing
 * off: the call failed (TWIG_EUNAVAIL, ...) or the reply was refused (-EINVAL, logged) */
int real_mirror_step(real_mirror_t *m, int wait_ms);

/* real_mirror_step without waiting until a reply is short of max_count (the log's end, at
 * most REAL_MIRROR_CATCH_UP_ROUNDS rounds) or stop: 0 or the first failure */
int real_mirror_catch_up(real_mirror_t *m);

/* real_mirror_step with cfg.wait_ms until stop is raised (the body of a mirror thread) */
void real_mirror_run(real_mirror_t *m);

/* the next offset to mirror = rows mirrored from the log's start; any thread */
uint64_t real_mirror_offset(const real_mirror_t *m);

#endif
