/* stats.h - the answer of twig.v1.Stats/GetStats, which every process serves for the
 * launcher's progress line: a role, the pid and named numbers.
 *
 *     const stats_kv v[] = {{"updates", (double)l->updates}, {"alpha", l->alpha}};
 *     stats_reply(call, "learner", v, STATS_COUNT(v));
 */
#ifndef TWIG_STATS_H
#define TWIG_STATS_H

#include "common/rpc/rpc.h"

#define STATS_MAX 64
#define STATS_COUNT(array) ((int)(sizeof(array) / sizeof((array)[0])))

typedef struct stats_kv {
    const char *key;   /* borrowed */
    double value;
} stats_kv;

/* copy kv[0..n) to out[0..max) (a process's collect function, shared by its GetStats handler
 * and its /metrics, metrics.h, builds its figures on the stack and returns this); n <= max */
int stats_copy(stats_kv *out, int max, const stats_kv *kv, int n);

/* reply OK to call with kv[0..n), n <= STATS_MAX (the reply is packed at once) */
void stats_reply(rpc_call_t *call, const char *role, const stats_kv *kv, int n);

#endif
