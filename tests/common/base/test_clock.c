/* tests for common/base/clock.h: the monotonic readings agree with each other and with
 * clock_gettime, and deadlines are normalised and work with a monotonic condvar */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include "common/base/clock.h"

static double ts_s(const struct timespec *ts)
{
    return (double)ts->tv_sec + 1e-9 * (double)ts->tv_nsec;
}

static double raw_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts_s(&ts);
}

Test(clock, ms_and_s_read_the_same_monotonic_clock)
{
    double before = raw_s();
    uint64_t ms = clock_now_ms();
    double s = clock_now_s();
    double after = raw_s();
    cr_expect_geq(s, before);
    cr_expect_leq(s, after);
    /* ms truncates: at most 1 ms below the raw reading taken before it */
    cr_expect_geq((double)ms / 1e3, before - 1e-3, "%llu ms vs %.6f s", (unsigned long long)ms,
                  before);
    cr_expect_leq((double)ms / 1e3, after);
    uint64_t prev = clock_now_ms();
    for (int i = 0; i < 100000; i++) {
        uint64_t t = clock_now_ms();
        cr_assert_geq(t, prev, "the clock went back at reading %d", i);
        prev = t;
    }
}

Test(clock, deadlines_are_normalised_and_clamped)
{
    int64_t cases[] = {0, 1, 999, 1000, 1001, 1999, 2500, 86400000};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double before = raw_s();
        struct timespec dl = clock_deadline_ms(cases[i]);
        double after = raw_s();
        cr_expect_geq(dl.tv_nsec, 0);
        cr_expect_lt(dl.tv_nsec, CLOCK_NS_PER_S, "ms %lld: tv_nsec %ld", (long long)cases[i],
                     dl.tv_nsec);
        double want = (double)cases[i] / 1e3;
        /* taken between the two raw readings: before + want <= dl <= after + want (1 us of
         * slack for the doubles) */
        cr_expect_geq(ts_s(&dl) - before, want - 1e-6, "ms %lld", (long long)cases[i]);
        cr_expect_leq(ts_s(&dl) - after, want + 1e-6, "ms %lld", (long long)cases[i]);
    }
    /* a negative wait is now, never a negative tv_nsec (EINVAL for timedwait) */
    double before = raw_s();
    struct timespec dl = clock_deadline_ms(-1500);
    cr_expect_geq(dl.tv_nsec, 0);
    cr_expect_geq(ts_s(&dl), before - 1e-6);
    cr_expect_leq(ts_s(&dl), raw_s() + 1e-6);
}

Test(clock, a_clock_condvar_times_out_at_the_deadline)
{
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv;
    clock_cond_init(&cv);
    double t0 = clock_now_s();
    struct timespec dl = clock_deadline_ms(60);
    int rc = 0;
    pthread_mutex_lock(&mu);
    for (int i = 0; i < 1000 && rc != ETIMEDOUT; i++) { /* spurious wake-ups wait again */
        rc = pthread_cond_timedwait(&cv, &mu, &dl);
    }
    pthread_mutex_unlock(&mu);
    double waited = clock_now_s() - t0;
    cr_expect_eq(rc, ETIMEDOUT);
    cr_expect_geq(waited, 0.060, "waited %.4f s", waited);
    cr_expect_lt(waited, 5.0, "waited %.4f s", waited);
    pthread_cond_destroy(&cv);
}
