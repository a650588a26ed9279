/* pace.h - the learner's rate limiter: how many SAC updates the real (and synthetic) data
 * so far allows. Pure functions of the counters, so they are tested without threads.
 *
 * Strict pacing (docs/design.md, "Pacing") is MBPO's ratio kept by credits: update number u
 * (counting from 0) belongs to real step learn_start + floor(u / utd) + 1, and may run once
 *   - that real step has been mirrored:   u < floor(utd * (real_steps - learn_start)), and
 *   - when synthetic quotas are on (rollouts_per_step > 0 and rollout workers exist), that
 *     real step's branches have all arrived:
 *     u < floor(utd * (quota_done - learn_start)), where quota_done is the lowest real step
 *     of an unfinished chunk (learner/quota.h, quota_done).
 * Async pacing allows any number of updates once real_steps > learn_start.
 * Both refuse while a restarted learner refills its real replay (real_steps < refill_until).
 *
 *     pace_in in = {.pacing = RUN_PACING_STRICT, .utd = 20, .learn_start = 1000, ...};
 *     if (in.updates < pace_allowed_updates(&in)) { ...one update... }
 */
#ifndef TWIG_LEARNER_PACE_H
#define TWIG_LEARNER_PACE_H

#include <stdbool.h>
#include <stdint.h>

#define PACE_UNLIMITED UINT64_MAX

typedef struct pace_in {
    int pacing;            /* run_pacing */
    double utd;            /* updates per real step, > 0 */
    uint64_t learn_start;  /* real steps before the first update (the run's init_steps) */
    uint64_t real_steps;   /* real transitions mirrored so far */
    uint64_t updates;      /* updates done */
    bool quota_on;         /* strict only: wait for the synthetic quota too */
    uint64_t quota_done;   /* real steps whose synthetic quota has arrived */
    uint64_t refill_until; /* 0, or the real step count a restart must refill first */
} pace_in;

/* total updates the counters allow (not the ones left): 0 before learning starts,
 * PACE_UNLIMITED in async mode once it has */
uint64_t pace_allowed_updates(const pace_in *in);

/* may one more update run now? (updates < allowed) */
bool pace_may_update(const pace_in *in);

/* updates that may run now before waiting again (allowed - updates, 0 if none) */
uint64_t pace_updates_left(const pace_in *in);

/* does the learner wait for synthetic data now: no update may run, yet the real steps alone
 * would allow one (strict pacing with quotas on, the rollout workers behind)? What
 * twig_learner_synthetic_wait_seconds_total measures: time in such waits says more rollout
 * workers would help */
bool pace_waits_for_synthetic(const pace_in *in);

/* updates / (real_steps - learn_start), 0 before learning starts */
double pace_achieved_utd(uint64_t updates, uint64_t real_steps, uint64_t learn_start);

#endif
