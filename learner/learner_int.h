/* learner_int.h - what learner.c and learner_rpc.c share; not for other modules */
#ifndef TWIG_LEARNER_INT_H
#define TWIG_LEARNER_INT_H

#include "learner/learner.h"
#include "learner/pace.h"

extern const rpc_method learner_methods[];
extern const size_t learner_n_methods;

/* the figures of GetStats and /metrics (metrics_collect_fn; takes l->mu) */
int learner_collect_stats(stats_kv *out, int max, void *app);
/* the /metrics series over them */
extern const metrics_series learner_series[];
extern const int learner_n_series;

/* the pacing counters now (caller holds l->mu) */
pace_in learner_pace_in(const learner_t *l);
/* real steps whose synthetic quota is met (caller holds l->mu) */
uint64_t learner_quota_done(const learner_t *l);

/* the writer thread's job kinds (l->writer) */
enum { LEARNER_WRITE_PUBLISH = 0, LEARNER_WRITE_CHECKPOINT = 1 };

/* GetPolicy's long poll (l->policy_polls): news is a policy newer than the caller's */
extern const rpc_longpoll_ops learner_policy_poll_ops;

#endif
