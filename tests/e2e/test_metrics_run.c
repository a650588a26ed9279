/* GET /metrics of a real `twig run` (Pendulum-v1, 1 actor, 1 rollout worker, strict pacing):
 * every process's endpoint passes `promtool check metrics`, and a real Prometheus reading
 * RUN/metrics_targets.json (its own config and TSDB in the test's temp dir, 127.0.0.1, scrape
 * interval 1 s) receives every series docs/metrics.md lists and sees a counter increase. */
#include "tests/e2e/e2e_run.h"

#include <ctype.h>

#define FETCH TWIG_SRC_DIR "/tests/deploy/metrics_fetch.py"
#define DOC TWIG_SRC_DIR "/docs/metrics.md"
#define PROMETHEUS "/usr/bin/prometheus"
#define PROMTOOL "/usr/bin/promtool"
#define N_PROCS 4
#define MAX_DOC_SERIES 128

/* long enough to be stopped by the test, not to end by itself */
static const char metrics_run[] =
    "env: Pendulum-v1\nseed: 5\nreal_steps: 200000\ninit_steps: 300\nutd: 1\n"
    "model_train_freq: 300\nrollouts_per_step: 8\nepoch_length: 300\n"
    "hidden: 32\neval_every: 1000\neval_episodes: 1\nn_actors: 1\nn_rollout: 1\n"
    "learner:\n  batch_size: 64\n  checkpoint_every: 0\n  policy_publish_every: 50\n"
    "modelserver:\n  model_hidden: 32\n  train_max_epochs: 5\n"
    "actor:\n  push_every: 25\n";

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    cr_assert_not_null(buf);
    size_t got = fread(buf, 1, (size_t)n, f);
    buf[got] = '\0';
    fclose(f);
    return buf;
}

/* GET url into out (metrics_fetch.py's exit code: 0 ok, 1 other status, 2 no answer) */
static int fetch(const char *url, const char *out)
{
    const char *argv[] = {"/usr/bin/python3", FETCH, url, out, NULL};
    return procfix_exit_code(procfix_spawn_io(argv, "/dev/null", NULL), 30000);
}

/* the series names docs/metrics.md's tables list ("| `twig_...` |" rows, labels cut) */
static int doc_series(char names[][96], int max)
{
    char *doc = slurp(DOC);
    cr_assert_not_null(doc, "%s missing", DOC);
    int n = 0;
    for (char *p = strstr(doc, "\n| `twig_"); p && n < max; p = strstr(p + 1, "\n| `twig_")) {
        const char *s = p + 4;
        size_t len = strcspn(s, "`{");
        cr_assert_lt(len, 96);
        memcpy(names[n], s, len);
        names[n][len] = '\0';
        n++;
    }
    free(doc);
    return n;
}

/* metrics_targets.json's targets, in plan order: addr[i] and proc[i] */
static int read_targets(const char *path, char addr[][64], char proc[][48], int max)
{
    char *json = slurp(path);
    if (!json) {
        return 0;
    }
    int n = 0;
    for (char *p = strstr(json, "\"targets\": [\""); p && n < max;
         p = strstr(p + 1, "\"targets\": [\"")) {
        cr_assert_eq(sscanf(p, "\"targets\": [\"%63[^\"]\"], \"labels\": {\"twig_proc\": \"%47[^\"]\"",
                            addr[n], proc[n]),
                     2, "malformed %s: %s", path, json);
        n++;
    }
    free(json);
    return n;
}

/* percent-encode a PromQL query for a URL */
static void url_encode(char *out, size_t n, const char *q)
{
    size_t k = 0;
    for (; *q && k + 4 < n; q++) {
        if (isalnum((unsigned char)*q) || strchr("_-.~", *q)) {
            out[k++] = *q;
        } else {
            k += (size_t)snprintf(out + k, n - k, "%%%02X", (unsigned char)*q);
        }
    }
    out[k] = '\0';
}

/* the value of an instant query's first sample, or NAN when the result is empty */
static double prom_query(int prom_port, const char *query, const char *out)
{
    char enc[512], url[700];
    url_encode(enc, sizeof enc, query);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/api/v1/query?query=%s", prom_port, enc);
    if (fetch(url, out) != 0) {
        return NAN;
    }
    char *body = slurp(out);
    double v = NAN;
    const char *val = body ? strstr(body, "\"value\":[") : NULL;
    if (val && (val = strstr(val, ",\""))) {
        v = strtod(val + 2, NULL);
    }
    free(body);
    return v;
}

static void write_prometheus_config(const char *path, const char *targets)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f,
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            "scrape_configs:\n  - job_name: twig\n    file_sd_configs:\n"
            "      - files: ['%s']\n        refresh_interval: 1s\n",
            targets);
    fclose(f);
}

/* a failed assertion leaves prometheus and the run behind: kill them by pid */
static void reap(void)
{
    procfix_reap_all();
}

Test(metrics_run, promtool_passes_and_prometheus_gets_every_documented_series,
     .timeout = 240, .fini = reap)
{
    cr_assert_eq(access(PROMETHEUS, X_OK), 0, "%s missing (deploy/install-deps.sh test)",
                 PROMETHEUS);
    char names[MAX_DOC_SERIES][96];
    int n_names = doc_series(names, MAX_DOC_SERIES);
    cr_assert_gt(n_names, 60, "docs/metrics.md lists %d series", n_names);

    e2e_run r;
    e2e_init(&r, metrics_run);
    char targets[400], prom_cfg[400], tsdb[400], prom_log[400], out[400], check[1024];
    snprintf(targets, sizeof targets, "%s/metrics_targets.json", r.run_dir);
    snprintf(prom_cfg, sizeof prom_cfg, "%s/prometheus.yml", r.dir);
    snprintf(tsdb, sizeof tsdb, "%s/tsdb", r.dir);
    snprintf(prom_log, sizeof prom_log, "%s/prometheus.log", r.dir);
    snprintf(out, sizeof out, "%s/body", r.dir);

    /* prometheus first: it follows the targets file once the launcher writes it */
    write_prometheus_config(prom_cfg, targets);
    int prom_port = procfix_free_port();
    char a_cfg[450], a_tsdb[450], a_listen[64];
    snprintf(a_cfg, sizeof a_cfg, "--config.file=%s", prom_cfg);
    snprintf(a_tsdb, sizeof a_tsdb, "--storage.tsdb.path=%s", tsdb);
    snprintf(a_listen, sizeof a_listen, "--web.listen-address=127.0.0.1:%d", prom_port);
    const char *pargv[] = {PROMETHEUS, a_cfg, a_tsdb, a_listen, NULL};
    pid_t prom = procfix_spawn(pargv, prom_log);
    char ready_url[96];
    snprintf(ready_url, sizeof ready_url, "http://127.0.0.1:%d/-/ready", prom_port);
    int64_t until = procfix_now_ms() + 30000;
    while (fetch(ready_url, out) != 0) {
        cr_assert(procfix_runs_for(prom, 0), "prometheus exited, see %s", prom_log);
        cr_assert_lt(procfix_now_ms(), until, "prometheus not ready in 30 s, see %s", prom_log);
        procfix_pause_ms(100);
    }

    e2e_start(&r);
    e2e_wait_real_steps(&r, 1000, 90000);

    /* (b) every process's endpoint is valid exposition text with its role's series */
    char addr[N_PROCS + 1][64], proc[N_PROCS + 1][48];
    int n_targets = read_targets(targets, addr, proc, N_PROCS + 1);
    cr_assert_eq(n_targets, N_PROCS, "%s lists %d targets", targets, n_targets);
    static const char *const roles[N_PROCS] = {"modelserver", "learner", "rollout", "actor"};
    for (int i = 0; i < N_PROCS; i++) {
        char url[160], want[64];
        snprintf(url, sizeof url, "http://%.63s/metrics", addr[i]);
        cr_assert_eq(fetch(url, out), 0, "GET %s (%s)", url, proc[i]);
        char *body = slurp(out);
        snprintf(want, sizeof want, "\ntwig_%s_ready ", roles[i]);
        cr_expect_not_null(strstr(body, want), "%s: no %s", proc[i], want + 1);
        cr_expect_not_null(strstr(body, "twig_rpc_client_errors_total{code=\"UNAVAILABLE\"}"),
                           "%s: no RPC client errors", proc[i]);
        free(body);
        snprintf(check, sizeof check, PROMTOOL " check metrics < '%s' > '%s.promtool' 2>&1", out,
                 out);
        const char *sh[] = {"/bin/sh", "-c", check, NULL};
        int rc = procfix_exit_code(procfix_spawn_io(sh, "/dev/null", NULL), 30000);
        char report[450];
        snprintf(report, sizeof report, "%s.promtool", out);
        char *why = slurp(report);
        cr_expect_eq(rc, 0, "promtool check metrics on %s (%s): %s", proc[i], url,
                     why ? why : "");
        free(why);
    }

    /* (c) Prometheus has every documented series, and a counter that grows */
    char names_url[96];
    snprintf(names_url, sizeof names_url, "http://127.0.0.1:%d/api/v1/label/__name__/values",
             prom_port);
    until = procfix_now_ms() + 60000;
    int missing = n_names;
    char first_missing[96] = "";
    while (missing > 0 && procfix_now_ms() < until) {
        missing = 0;
        char *body = fetch(names_url, out) == 0 ? slurp(out) : NULL;
        for (int i = 0; i < n_names; i++) {
            char quoted[100];
            snprintf(quoted, sizeof quoted, "\"%.95s\"", names[i]);
            if (!body || !strstr(body, quoted)) {
                if (missing++ == 0) {
                    snprintf(first_missing, sizeof first_missing, "%.95s", names[i]);
                }
            }
        }
        free(body);
        if (missing > 0) {
            procfix_pause_ms(500);
        }
    }
    cr_expect_eq(missing, 0, "%d documented series never reached Prometheus, first %s", missing,
                 first_missing);
    double inc = NAN;
    until = procfix_now_ms() + 60000;
    while (!(inc > 0) && procfix_now_ms() < until) {
        inc = prom_query(prom_port, "increase(twig_learner_updates_total[1m])", out);
        if (!(inc > 0)) {
            procfix_pause_ms(500);
        }
    }
    cr_expect_gt(inc, 0, "twig_learner_updates_total did not increase in Prometheus");
    double up = prom_query(prom_port, "count(up == 1)", out);
    cr_expect_eq(up, N_PROCS, "targets up: %g", up);

    /* stop the run, then prometheus, by pid */
    cr_assert_eq(kill(r.pid, SIGTERM), 0);
    cr_expect_eq(e2e_wait_exit(&r, 60000), 128 + SIGTERM);
    cr_assert_eq(kill(prom, SIGTERM), 0);
    cr_expect_eq(procfix_exit_code(prom, 30000), 0, "prometheus's exit, see %s", prom_log);
    procfix_tmpdir_done(r.dir);
}
