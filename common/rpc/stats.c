/* stats.c - packing a GetStats reply */
#include "common/rpc/stats.h"

#include <string.h>
#include <unistd.h>

#include "common/base/mem.h"
#include "proto/twig.pb-c.h"

void stats_reply(rpc_call_t *call, const char *role, const stats_kv *kv, int n)
{
    TWIG_ASSERT(n >= 0 && n <= STATS_MAX);
    Twig__V1__StatsReply__ValuesEntry e[STATS_MAX];
    Twig__V1__StatsReply__ValuesEntry *ep[STATS_MAX];
    for (int i = 0; i < n; i++) {
        twig__v1__stats_reply__values_entry__init(&e[i]);
        e[i].key = (char *)kv[i].key;
        e[i].value = kv[i].value;
        ep[i] = &e[i];
    }
    Twig__V1__StatsReply r = TWIG__V1__STATS_REPLY__INIT;
    r.role = (char *)role;
    r.pid = (uint32_t)getpid();
    r.n_values = (size_t)n;
    r.values = ep;
    rpc_call_reply(call, 0, &r.base);
}

int stats_copy(stats_kv *out, int max, const stats_kv *kv, int n)
{
    TWIG_ASSERT(n >= 0 && n <= max);
    memcpy(out, kv, (size_t)n * sizeof *kv);
    return n;
}
