/* stop.h - a stop request that sleeping threads wake up for: the one stop-aware wait of the
 * threads that retry, poll or back off (the learner's mirror, the rollout worker, the
 * launcher's health watch).
 *
 *     stop_flag stop;
 *     stop_flag_init(&stop);
 *     while (!stop_flag_raised(&stop)) {          // a worker thread
 *         if (work() < 0 && stop_flag_wait_ms(&stop, backoff_next(&b))) break;
 *     }
 *     stop_flag_raise(&stop);                     // any thread: every wait returns at once
 *     ... join ... stop_flag_destroy(&stop);
 */
#ifndef TWIG_STOP_H
#define TWIG_STOP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct stop_flag {
    pthread_mutex_t mu;
    pthread_cond_t cv;   /* on CLOCK_MONOTONIC */
    atomic_bool raised;
} stop_flag;

void stop_flag_init(stop_flag *s);
void stop_flag_destroy(stop_flag *s);

/* ask every thread to stop; wakes each stop_flag_wait_ms (idempotent) */
void stop_flag_raise(stop_flag *s);

/* has stop been asked (lock-free) */
bool stop_flag_raised(stop_flag *s);

/* sleep up to ms (monotonic), returning early when stop is raised: true if it was */
bool stop_flag_wait_ms(stop_flag *s, uint64_t ms);

#endif
