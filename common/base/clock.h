/* clock.h - the monotonic clock, for durations, rates and deadlines.
 *
 * Every reading here is CLOCK_MONOTONIC: it never steps when the wall clock is set, so
 * differences are real elapsed time. Readings mean nothing on their own (the origin is
 * arbitrary, usually boot); wall-clock time for logs and files is CLOCK_REALTIME, elsewhere.
 *
 *     uint64_t end = clock_now_ms() + 500;          // a deadline in ms
 *     double t0 = clock_now_s();                    // seconds, for rates and durations
 *     clock_cond_init(&cv);                         // a condvar timed on this clock
 *     struct timespec dl = clock_deadline_ms(250);  // its absolute deadline 250 ms ahead
 *     pthread_cond_timedwait(&cv, &mu, &dl);
 */
#ifndef TWIG_CLOCK_H
#define TWIG_CLOCK_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

#define CLOCK_NS_PER_S 1000000000L

/* monotonic milliseconds */
static inline uint64_t clock_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* monotonic seconds, to the nanosecond */
static inline double clock_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* the monotonic time ms from now (ms < 0 counts as 0), tv_nsec normalised below 1e9: the
 * absolute deadline pthread_cond_timedwait takes on a CLOCK_MONOTONIC condvar */
static inline struct timespec clock_deadline_ms(int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (ms < 0) {
        ms = 0;
    }
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= CLOCK_NS_PER_S) {
        ts.tv_sec++;
        ts.tv_nsec -= CLOCK_NS_PER_S;
    }
    return ts;
}

/* init a condvar whose timed waits take clock_deadline_ms deadlines (pthread_cond_destroy
 * ends it as usual) */
static inline void clock_cond_init(pthread_cond_t *cv)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &ca);
    pthread_condattr_destroy(&ca);
}

#endif
