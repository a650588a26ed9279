/* stop.c - see stop.h */
#include "common/base/stop.h"

#include <errno.h>

#include "common/base/clock.h"

void stop_flag_init(stop_flag *s)
{
    pthread_mutex_init(&s->mu, NULL);
    clock_cond_init(&s->cv);
    atomic_init(&s->raised, false);
}

void stop_flag_destroy(stop_flag *s)
{
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
}

void stop_flag_raise(stop_flag *s)
{
    pthread_mutex_lock(&s->mu);
    atomic_store(&s->raised, true);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

bool stop_flag_raised(stop_flag *s)
{
    return atomic_load(&s->raised);
}

bool stop_flag_wait_ms(stop_flag *s, uint64_t ms)
{
    struct timespec dl = clock_deadline_ms((int64_t)ms);
    pthread_mutex_lock(&s->mu);
    while (!atomic_load(&s->raised)) {
        if (pthread_cond_timedwait(&s->cv, &s->mu, &dl) == ETIMEDOUT) {
            break;
        }
    }
    bool raised = atomic_load(&s->raised);
    pthread_mutex_unlock(&s->mu);
    return raised;
}
