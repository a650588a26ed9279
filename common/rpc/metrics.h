/* metrics.h - a process's figures as Prometheus metrics: GET /metrics in the text exposition
 * format (version 0.0.4), served by libmicrohttpd on its own thread.
 *
 * The figures are the ones the process's GetStats reply carries (stats.h): the process gives
 * one collect function that both its GetStats handler and /metrics call, and a table that
 * names each series once (name, type, help, the Stats key it shows). Adding a series is one
 * table row (and its key in the collect function):
 *
 *     static const metrics_series learner_series[] = {
 *         {"twig_learner_updates_total", METRICS_COUNTER, "SAC updates made", "updates"},
 *         {"twig_learner_policy_version", METRICS_GAUGE, "latest policy version", "policy_version"},
 *     };
 *     metrics_cfg mc = {.listen = cfg->metrics_listen, .series = learner_series,
 *                       .n_series = STATS_COUNT(learner_series), .collect = learner_stats,
 *                       .app = l, .srv = l->srv, .clients = {l->ms}};
 *     rc = metrics_init(&l->metrics, &mc);    // "" listen: off, nothing bound
 *     ...
 *     metrics_free(&l->metrics);
 *
 * Besides the table, every process renders its RPC errors by gRPC status (common/rpc counts
 * them in the server and in each client):
 *     twig_rpc_server_errors_total{code="INVALID_ARGUMENT"}   calls its server failed
 *     twig_rpc_client_errors_total{code="UNAVAILABLE"}        attempts of its calls that failed
 *
 * Names follow Prometheus's: twig_<role>_<what>, the unit in the name (_seconds), counters
 * ending in _total. metrics_init checks the table (names, no duplicate, counters' _total,
 * every key present in what collect gives) and refuses a bad one naming the row.
 *
 * Threads: a scrape runs on the HTTP thread: collect must be safe there, as a GetStats
 * handler on the CQ thread is (copy the figures under the lock or from atomics, then return);
 * the rendering holds no lock. The render buffer is sized and allocated at metrics_init.
 */
#ifndef TWIG_RPC_METRICS_H
#define TWIG_RPC_METRICS_H

#include <stddef.h>

#include "common/base/netaddr.h"
#include "common/rpc/rpc.h"
#include "common/rpc/stats.h"

#define METRICS_MAX_SERIES STATS_MAX
#define METRICS_MAX_CLIENTS 4
#define METRICS_NAME_MAX 96
#define METRICS_HELP_MAX 200
#define METRICS_PATH "/metrics"

typedef enum metrics_type {
    METRICS_COUNTER = 0,   /* only goes up (reset by a restart) */
    METRICS_GAUGE = 1,     /* a value now */
} metrics_type;

typedef struct metrics_series {
    const char *name;      /* "twig_learner_updates_total"; borrowed */
    metrics_type type;
    const char *help;      /* one line for # HELP (escaped when rendered); borrowed */
    const char *stat;      /* the key in the collect function's figures; borrowed */
} metrics_series;

/* the process's figures now, as its GetStats reply has them: fills kv[0..max) (keys borrowed
 * from static storage) and returns how many. Any thread; must not block for long */
typedef int (*metrics_collect_fn)(stats_kv *kv, int max, void *app);

typedef struct metrics_cfg {
    const char *listen;                   /* "HOST:PORT" (port 0: any free one); "" or NULL:
                                           * metrics off. Copied */
    const metrics_series *series;         /* (n_series) borrowed, must outlive the metrics */
    int n_series;
    metrics_collect_fn collect;
    void *app;                            /* passed to collect; borrowed */
    const rpc_server_t *srv;              /* its errors by status; borrowed, may be NULL */
    const rpc_client_t *clients[METRICS_MAX_CLIENTS]; /* theirs, summed; borrowed, NULLs skipped */
} metrics_cfg;

struct MHD_Daemon;

typedef struct metrics {
    metrics_cfg cfg;
    char listen[NETADDR_MAX + 1];
    int port;                             /* bound port; 0 when off */
    char *buf;                            /* (cap) the render buffer */
    size_t cap;
    struct MHD_Daemon *mhd;               /* NULL when off */
} metrics_t;

/* check cfg's table (-EINVAL naming the row), size the render buffer, and unless listen is
 * empty bind it and start serving /metrics (-EINVAL a bad address, -EADDRINUSE, ... with
 * err_msg naming it). m is the caller's; metrics_free releases it, also after a failure */
int metrics_init(metrics_t *m, const metrics_cfg *cfg);
/* the bound port, 0 when metrics are off */
int metrics_port(const metrics_t *m);
/* the exposition text now, into m's buffer (valid until the next render on this m, which
 * only the HTTP thread does while serving): its length, or -ENOSPC. Tests call it directly */
int metrics_render(metrics_t *m, const char **text);
/* stop serving (waits for a scrape in progress) and release; safe on a zeroed struct */
void metrics_free(metrics_t *m);

/* the pure part of the render: the exposition text of series over kv[0..n_kv) and the RPC
 * error counts (each RPC_N_STATUS long, NULL: not rendered) into buf[cap]; its length, or
 * -ENOSPC. A series whose key is missing from kv is rendered NaN */
int metrics_format(char *buf, size_t cap, const metrics_series *series, int n_series,
                   const stats_kv *kv, int n_kv, const uint64_t *server_errors,
                   const uint64_t *client_errors);

/* a table's check alone: names [a-zA-Z_:][a-zA-Z0-9_:]* up to METRICS_NAME_MAX, a counter's
 * ending in _total, no name twice (nor one of the RPC error names), help non-empty and at
 * most METRICS_HELP_MAX; 0 or -EINVAL naming the row */
int metrics_check_series(const metrics_series *series, int n_series);

#endif
