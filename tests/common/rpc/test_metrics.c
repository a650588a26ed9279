/* common/rpc/metrics: the exposition text of a small table (exact), the table's checks, and
 * the endpoint itself: GET /metrics over HTTP gives what metrics_render gives, RPC errors are
 * counted by status in the server and the client */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/err.h"
#include "common/rpc/metrics.h"
#include "proto/twig.pb-c.h"
#include "tests/procfix.h"

#define FETCH TWIG_SRC_DIR "/tests/deploy/metrics_fetch.py"

static const metrics_series small[] = {
    {"twig_test_events_total", METRICS_COUNTER, "events seen\nback\\slash", "events"},
    {"twig_test_depth", METRICS_GAUGE, "queue depth", "depth"},
    {"twig_test_loss", METRICS_GAUGE, "a loss", "loss"},
};

Test(metrics, small_table_renders_exactly)
{
    const stats_kv kv[] = {{"depth", 3.0}, {"loss", 0.25}, {"events", 42.0}, {"other", 7.0}};
    char buf[1024];
    int n = metrics_format(buf, sizeof buf, small, 3, kv, 4, NULL, NULL);
    const char *want = "# HELP twig_test_events_total events seen\\nback\\\\slash\n"
                       "# TYPE twig_test_events_total counter\n"
                       "twig_test_events_total 42\n"
                       "# HELP twig_test_depth queue depth\n"
                       "# TYPE twig_test_depth gauge\n"
                       "twig_test_depth 3\n"
                       "# HELP twig_test_loss a loss\n"
                       "# TYPE twig_test_loss gauge\n"
                       "twig_test_loss 0.25\n";
    cr_expect_eq(n, (int)strlen(want));
    cr_expect_str_eq(buf, want);
}

Test(metrics, values_nan_infinities_and_large_counts)
{
    const metrics_series s[] = {
        {"a", METRICS_GAUGE, "h", "a"}, {"b", METRICS_GAUGE, "h", "b"},
        {"c", METRICS_GAUGE, "h", "c"}, {"d_total", METRICS_COUNTER, "h", "d"},
        {"e", METRICS_GAUGE, "h", "missing"},
    };
    const stats_kv kv[] = {{"a", NAN}, {"b", INFINITY}, {"c", -INFINITY}, {"d", 9007199254740991.0}};
    char buf[1024];
    cr_assert_gt(metrics_format(buf, sizeof buf, s, 5, kv, 4, NULL, NULL), 0);
    cr_expect_not_null(strstr(buf, "\na NaN\n"));
    cr_expect_not_null(strstr(buf, "\nb +Inf\n"));
    cr_expect_not_null(strstr(buf, "\nc -Inf\n"));
    cr_expect_not_null(strstr(buf, "\nd_total 9007199254740991\n"));
    cr_expect_not_null(strstr(buf, "\ne NaN\n"), "a key Stats lacks renders NaN");
}

Test(metrics, rpc_errors_by_status)
{
    uint64_t srv[RPC_N_STATUS] = {0}, cl[RPC_N_STATUS] = {0};
    srv[3] = 5;    /* INVALID_ARGUMENT */
    cl[14] = 2;    /* UNAVAILABLE */
    char buf[8192];
    cr_assert_gt(metrics_format(buf, sizeof buf, small, 0, NULL, 0, srv, cl), 0);
    cr_expect_not_null(strstr(buf, "# TYPE twig_rpc_server_errors_total counter\n"));
    cr_expect_not_null(strstr(buf, "\ntwig_rpc_server_errors_total{code=\"INVALID_ARGUMENT\"} 5\n"));
    cr_expect_not_null(strstr(buf, "\ntwig_rpc_client_errors_total{code=\"UNAVAILABLE\"} 2\n"));
    cr_expect_not_null(strstr(buf, "\ntwig_rpc_client_errors_total{code=\"UNAUTHENTICATED\"} 0\n"));
    cr_expect_null(strstr(buf, "code=\"OK\""), "OK is no error");
    int lines = 0;
    for (const char *c = buf; *c; c++) {
        lines += *c == '\n';
    }
    cr_expect_eq(lines, 2 * (2 + RPC_N_STATUS - 1), "HELP, TYPE and 16 codes per family");
}

Test(metrics, too_small_a_buffer_is_enospc)
{
    const stats_kv kv[] = {{"events", 1}, {"depth", 2}, {"loss", 3}};
    char buf[64];
    cr_expect_eq(metrics_format(buf, sizeof buf, small, 3, kv, 3, NULL, NULL), -ENOSPC);
}

Test(metrics, bad_tables_are_refused_naming_the_row)
{
    static const struct {
        metrics_series s[2];
        const char *why;
    } bad[] = {
        {{{"twig_a_total", METRICS_COUNTER, "h", "a"}, {"twig_a_total", METRICS_COUNTER, "h", "b"}},
         "named twice"},
        {{{"twig_a", METRICS_COUNTER, "h", "a"}, {"twig_b", METRICS_GAUGE, "h", "b"}},
         "ends in _total"},
        {{{"twig_a", METRICS_GAUGE, "h", "a"}, {"twig_b_total", METRICS_GAUGE, "h", "b"}},
         "must not end in _total"},
        {{{"twig-a", METRICS_GAUGE, "h", "a"}, {"twig_b", METRICS_GAUGE, "h", "b"}},
         "is not [a-zA-Z_:]"},
        {{{"9twig", METRICS_GAUGE, "h", "a"}, {"twig_b", METRICS_GAUGE, "h", "b"}},
         "is not [a-zA-Z_:]"},
        {{{"twig_a", METRICS_GAUGE, "", "a"}, {"twig_b", METRICS_GAUGE, "h", "b"}},
         "help must be"},
        {{{"twig_a", METRICS_GAUGE, "h", "a"},
          {"twig_rpc_server_errors_total", METRICS_COUNTER, "h", "b"}},
         "the RPC layer's own"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_expect_eq(metrics_check_series(bad[i].s, 2), -EINVAL, "case %zu", i);
        cr_expect_not_null(strstr(err_msg(), bad[i].why), "case %zu: %s", i, err_msg());
    }
    cr_expect_eq(metrics_check_series(small, 3), 0);
}

/* ---- the endpoint ---- */

typedef struct figures {
    double events;
} figures;

static int collect_small(stats_kv *kv, int max, void *app)
{
    const figures *f = app;
    const stats_kv v[] = {{"events", f->events}, {"depth", 3}, {"loss", 0.5}};
    return stats_copy(kv, max, v, STATS_COUNT(v));
}

/* GET url into out: metrics_fetch.py's exit code */
static int fetch(const char *url, const char *out)
{
    const char *argv[] = {"/usr/bin/python3", FETCH, url, out, NULL};
    return procfix_exit_code(procfix_spawn_io(argv, "/dev/null", NULL), 30000);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    static char buf[16384];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

Test(metrics, http_get_serves_the_render_and_refuses_other_paths, .timeout = 60)
{
    char dir[256], out[320], url[128];
    procfix_tmpdir(dir, sizeof dir);
    snprintf(out, sizeof out, "%s/body", dir);
    figures fig = {.events = 1};
    metrics_t m;
    metrics_cfg cfg = {.listen = "127.0.0.1:0", .series = small, .n_series = 3,
                       .collect = collect_small, .app = &fig};
    cr_assert_eq(metrics_init(&m, &cfg), 0, "%s", err_msg());
    cr_assert_gt(metrics_port(&m), 0);

    snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", metrics_port(&m));
    cr_assert_eq(fetch(url, out), 0);
    cr_expect_not_null(strstr(slurp(out), "\ntwig_test_events_total 1\n"));
    fig.events = 17;   /* each scrape collects anew */
    cr_assert_eq(fetch(url, out), 0);
    const char *text;
    int n = metrics_render(&m, &text);
    cr_assert_gt(n, 0);
    cr_expect_str_eq(slurp(out), text, "the body is the render");
    cr_expect_not_null(strstr(text, "\ntwig_test_events_total 17\n"));
    cr_expect_not_null(strstr(text, "twig_rpc_client_errors_total{code=\"UNAVAILABLE\"} 0\n"));

    snprintf(url, sizeof url, "http://127.0.0.1:%d/other", metrics_port(&m));
    cr_expect_eq(fetch(url, out), 1, "another path is a 404");
    snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", metrics_port(&m));
    metrics_free(&m);
    cr_expect_eq(fetch(url, out), 2, "nothing answers once freed");
    metrics_free(&m);   /* twice is fine */
    procfix_tmpdir_done(dir);
}

Test(metrics, off_binds_nothing_and_bad_setups_are_named)
{
    figures fig = {0};
    metrics_t m;
    metrics_cfg cfg = {.listen = "", .series = small, .n_series = 3, .collect = collect_small,
                       .app = &fig};
    cr_expect_eq(metrics_init(&m, &cfg), 0);
    cr_expect_eq(metrics_port(&m), 0);
    metrics_free(&m);

    /* a series over a key the process does not report */
    const metrics_series typo[] = {{"twig_test_evnts_total", METRICS_COUNTER, "h", "evnts"}};
    metrics_cfg c2 = {.listen = "", .series = typo, .n_series = 1, .collect = collect_small,
                      .app = &fig};
    cr_expect_eq(metrics_init(&m, &c2), -EINVAL);
    cr_expect_not_null(strstr(err_msg(), "evnts"), "%s", err_msg());
    metrics_free(&m);

    /* a taken port */
    metrics_t first;
    cfg.listen = "127.0.0.1:0";
    cr_assert_eq(metrics_init(&first, &cfg), 0, "%s", err_msg());
    char taken[64];
    snprintf(taken, sizeof taken, "127.0.0.1:%d", metrics_port(&first));
    cfg.listen = taken;
    cr_expect_eq(metrics_init(&m, &cfg), -EADDRINUSE, "%s", err_msg());
    cr_expect_not_null(strstr(err_msg(), taken), "%s", err_msg());
    metrics_free(&m);
    metrics_free(&first);

    cfg.listen = "127.0.0.1";
    cr_expect_eq(metrics_init(&m, &cfg), -EINVAL, "no port");
    metrics_free(&m);
}

/* ---- RPC errors counted where they happen ---- */

static int refuse(rpc_call_t *call, const ProtobufCMessage *msg, void *app)
{
    (void)call;
    (void)msg;
    (void)app;
    return err_set(-EINVAL, "refused for the test");
}

Test(metrics, rpc_errors_are_counted_by_the_server_and_the_client, .timeout = 60)
{
    static const rpc_method methods[] = {
        {"/twig.v1.Stats/GetStats", &twig__v1__stats_request__descriptor, refuse, RPC_KIND_UNARY,
         RPC_RUN_ON_CQ},
    };
    rpc_server_cfg sc = {.listen = "127.0.0.1:0"};
    rpc_server_t *srv;
    cr_assert_eq(rpc_server_init(&srv, &sc, methods, 1), 0, "%s", err_msg());
    cr_assert_eq(rpc_server_start(srv), 0);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", rpc_server_port(srv));
    rpc_client_t *cl;
    cr_assert_eq(rpc_client_init(&cl, addr, NULL), 0);
    Twig__V1__StatsRequest req = TWIG__V1__STATS_REQUEST__INIT;
    rpc_call_opts o = {.deadline_ms = 5000, .wait_for_ready = true};
    for (int i = 0; i < 3; i++) {
        ProtobufCMessage *reply = NULL;
        cr_expect_eq(rpc_client_unary(cl, &reply, "/twig.v1.Stats/GetStats", &req.base,
                                      &twig__v1__stats_reply__descriptor, &o),
                     -EINVAL);
    }
    ProtobufCMessage *reply = NULL;
    cr_expect_eq(rpc_client_unary(cl, &reply, "/twig.v1.Nope/Nothing", &req.base,
                                  &twig__v1__stats_reply__descriptor, &o),
                 TWIG_EUNIMPL);

    uint64_t s[RPC_N_STATUS] = {0}, c[RPC_N_STATUS] = {0};
    rpc_server_error_counts(srv, s);
    rpc_client_error_counts(cl, c);
    cr_expect_eq(s[3], 3, "INVALID_ARGUMENT at the server: %llu", (unsigned long long)s[3]);
    cr_expect_eq(s[12], 1, "UNIMPLEMENTED at the server");
    cr_expect_eq(c[3], 3, "INVALID_ARGUMENT at the client");
    cr_expect_eq(c[12], 1, "UNIMPLEMENTED at the client");
    cr_expect_eq(s[0] + c[0], 0, "OK is never counted");

    /* and the endpoint shows them */
    figures fig = {0};
    metrics_t m;
    metrics_cfg mc = {.listen = "", .series = small, .n_series = 3, .collect = collect_small,
                      .app = &fig, .srv = srv, .clients = {cl, NULL, cl}};
    cr_assert_eq(metrics_init(&m, &mc), 0);
    const char *text;
    cr_assert_gt(metrics_render(&m, &text), 0);
    cr_expect_not_null(strstr(text, "twig_rpc_server_errors_total{code=\"INVALID_ARGUMENT\"} 3\n"));
    cr_expect_not_null(strstr(text, "twig_rpc_client_errors_total{code=\"INVALID_ARGUMENT\"} 6\n"),
                       "clients are summed (the same one twice here)");
    metrics_free(&m);
    rpc_client_free(cl);
    rpc_server_free(srv);
}
