/* pace.c - the learner's rate limiter (see pace.h) */
#include "learner/pace.h"

#include "common/config/run_config.h"

uint64_t pace_allowed_updates(const pace_in *in)
{
    if (in->real_steps < in->refill_until || in->real_steps <= in->learn_start) {
        return 0;
    }
    if (in->pacing == RUN_PACING_ASYNC) {
        return PACE_UNLIMITED;
    }
    uint64_t covered = in->real_steps;
    if (in->quota_on && in->quota_done < covered) {
        covered = in->quota_done;
    }
    if (covered <= in->learn_start) {
        return 0;
    }
    return run_utd_credit(in->utd, covered - in->learn_start);
}

bool pace_may_update(const pace_in *in)
{
    return in->updates < pace_allowed_updates(in);
}

bool pace_waits_for_synthetic(const pace_in *in)
{
    if (!in->quota_on || pace_may_update(in)) {
        return false;
    }
    pace_in real_only = *in;
    real_only.quota_on = false;
    return pace_may_update(&real_only);
}

uint64_t pace_updates_left(const pace_in *in)
{
    uint64_t a = pace_allowed_updates(in);
    return a > in->updates ? a - in->updates : 0;
}

double pace_achieved_utd(uint64_t updates, uint64_t real_steps, uint64_t learn_start)
{
    if (real_steps <= learn_start) {
        return 0.0;
    }
    return (double)updates / (double)(real_steps - learn_start);
}
