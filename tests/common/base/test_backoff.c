/* backoff.h (the one retry rule) and stop.h (the one stop-aware wait) */
#include <criterion/criterion.h>
#include <pthread.h>

#include "common/base/backoff.h"
#include "common/base/clock.h"
#include "common/base/stop.h"

Test(backoff, delays_double_from_base_up_to_the_cap)
{
    cr_expect_eq(backoff_delay_ms(50, 2000, 1), 50);
    cr_expect_eq(backoff_delay_ms(50, 2000, 2), 100);
    cr_expect_eq(backoff_delay_ms(50, 2000, 6), 1600);
    cr_expect_eq(backoff_delay_ms(50, 2000, 7), 2000);
    cr_expect_eq(backoff_delay_ms(50, 2000, 1000), 2000, "no overflow however many failures");
    cr_expect_eq(backoff_delay_ms(3000, 2000, 1), 2000, "the cap wins over the base");
}

Test(backoff, jittered_waits_stay_in_half_to_whole_and_reset_starts_over)
{
    backoff_t b;
    backoff_init(&b, 40, 1000, 7);
    uint64_t want[] = {40, 80, 160, 320, 640, 1000, 1000};
    for (int round = 0; round < 50; round++) {
        for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
            uint64_t w = backoff_next(&b);
            cr_assert(w >= want[i] / 2 && w <= want[i], "failure %zu: %llu not in [%llu, %llu]",
                      i + 1, (unsigned long long)w, (unsigned long long)want[i] / 2,
                      (unsigned long long)want[i]);
        }
        backoff_reset(&b);
    }
    /* the jitter spreads: two seeds give different waits */
    backoff_t c;
    backoff_init(&b, 1000, 1000, 1);
    backoff_init(&c, 1000, 1000, 2);
    int differ = 0;
    for (int i = 0; i < 20; i++) {
        differ += backoff_next(&b) != backoff_next(&c);
    }
    cr_expect_gt(differ, 10);
    /* a zero base is one ms; a max below the base is the base */
    backoff_init(&b, 0, 0, 3);
    cr_expect_leq(backoff_next(&b), 1);
    cr_expect_eq(backoff_jitter(100, 0.0), 50);
    cr_expect_eq(backoff_jitter(100, 0.999999), 99);
}

static void *raise_later(void *arg)
{
    stop_flag *s = arg;
    struct timespec ts = {0, 50 * 1000000L};
    nanosleep(&ts, NULL);
    stop_flag_raise(s);
    return NULL;
}

Test(stop, a_wait_times_out_unless_raised_and_a_raise_wakes_it, .timeout = 30)
{
    stop_flag s;
    stop_flag_init(&s);
    uint64_t t0 = clock_now_ms();
    cr_expect_not(stop_flag_wait_ms(&s, 30));
    cr_expect_geq(clock_now_ms() - t0, 30, "the whole wait when nobody raises");
    cr_expect_not(stop_flag_raised(&s));

    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, raise_later, &s), 0);
    t0 = clock_now_ms();
    cr_expect(stop_flag_wait_ms(&s, 20000), "woken by the raise");
    cr_expect_lt(clock_now_ms() - t0, 10000, "long before its deadline");
    pthread_join(th, NULL);
    cr_expect(stop_flag_raised(&s));
    t0 = clock_now_ms();
    cr_expect(stop_flag_wait_ms(&s, 20000), "raised already: returns at once");
    cr_expect_lt(clock_now_ms() - t0, 10000);
    stop_flag_raise(&s);   /* idempotent */
    stop_flag_destroy(&s);
}
