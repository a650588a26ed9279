/* fetcher.h - FetchReal off the event loop: one reader thread reads the log and replies.
 *
 * Reading rows from the log is a pread of up to MODELSERVER_FETCH_MAX transitions (megabytes,
 * and a disk seek when the page cache does not hold them); on the model server's loop thread
 * it would stall every long poll, GetModel and readiness change behind it. The loop only
 * checks a request and queues it; the reader thread fetches into its own buffer (allocated
 * once, for the log's schema) and answers the call.
 *
 *     fetcher_t f;
 *     fetcher_start(&f, &log);                        // after the log is open
 *     fetcher_submit(&f, call, from, 4096, TWIG__V1__EMPTY_REASON__EMPTY_REASON_AT_END);
 *     fetcher_stop(&f);                               // answers what is queued, joins
 *
 * Bound: at most FETCHER_QUEUE_MAX requests wait; one more is refused at once with
 * TWIG_EFULL (RESOURCE_EXHAUSTED, retried with backoff by every twig client). The memory it
 * holds is the queue (FETCHER_QUEUE_MAX entries) and one rows buffer of
 * MODELSERVER_FETCH_MAX transitions, whatever the peers send.
 */
#ifndef TWIG_MODELSERVER_FETCHER_H
#define TWIG_MODELSERVER_FETCHER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/rpc/rpc.h"
#include "modelserver/reallog.h"

#define FETCHER_QUEUE_MAX 256u

typedef struct fetch_req {
    rpc_call_t *call;
    uint64_t from;
    uint32_t max_count;
    int if_empty;   /* Twig__V1__EmptyReason of a reply without rows */
} fetch_req;

typedef struct fetcher {
    reallog_t *log;      /* borrowed */
    uint32_t rows_cap;   /* transitions per fetch */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    fetch_req queue[FETCHER_QUEUE_MAX];   /* ring: head, n */
    uint32_t head, n;
    bool stopping;       /* no more submissions; the thread drains and exits */
    bool running;        /* the thread was started and not joined */
    uint64_t served, refused_full;
    atomic_uint queued;  /* n, readable without the lock (Stats, also after fetcher_stop) */
    reallog_rows_t rows; /* reader thread only */
} fetcher_t;

/* start the reader thread for log; rows_cap: most transitions one reply carries */
int fetcher_start(fetcher_t *f, reallog_t *log, uint32_t rows_cap);

/* queue a fetch of up to max_count transitions from `from` (any thread); the reader thread
 * replies. TWIG_EFULL when FETCHER_QUEUE_MAX wait already, TWIG_ESHUTDOWN once stopping:
 * the caller answers the call with that error. */
int fetcher_submit(fetcher_t *f, rpc_call_t *call, uint64_t from, uint32_t max_count,
                   int if_empty);

/* refuse new requests, answer every queued one, join the thread; safe on a zeroed struct
 * and twice */
void fetcher_stop(fetcher_t *f);

/* requests waiting now (any thread, any time) */
uint32_t fetcher_queued(fetcher_t *f);

#endif
