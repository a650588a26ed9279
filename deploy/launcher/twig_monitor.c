/* twig_monitor.c - `twig monitor LEARNER_ADDR MODELSERVER_ADDR [--out DIR]`: the part of
 * `twig run` that watches a run (metrics.csv, TensorBoard events, the progress line,
 * learning_curve.png and the summary), for a run that twig run did not start: a compose,
 * Swarm or Kubernetes deployment, or processes started by hand. It needs only the two
 * addresses: the run's budget, pacing and env come from the learner (Progress). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/err.h"
#include "common/base/fs.h"
#include "common/base/log.h"
#include "common/base/netaddr.h"
#include "common/config/cli.h"
#include "common/rpc/rpc.h"
#include "deploy/launcher/monitor.h"
#include "deploy/launcher/run_report.h"
#include "deploy/launcher/twig_cmds.h"

#define MONITOR_DEFAULT_INTERVAL_MS 1000
#define MONITOR_DEFAULT_STARTUP_MS 120000
#define MONITOR_DEFAULT_FINAL_EVAL_MS 600000
#define MONITOR_UNLOAD_MS 2000
#define MONITOR_TIMEOUT_MS_MAX 86400000 /* a day */

static void monitor_usage(FILE *f)
{
    fprintf(f,
            "usage: twig monitor LEARNER_ADDR MODELSERVER_ADDR [--out DIR] [options]\n"
            "  watches a running deployment until its final evaluation: writes DIR/metrics.csv\n"
            "  (continued, never rewritten, when DIR holds one), TensorBoard events and, at the\n"
            "  end, DIR/learning_curve.png; prints the progress line and the summary\n"
            "  --out DIR                    where to write (default: .; made if missing)\n"
            "  --interval-ms N              poll every N ms (default %d)\n"
            "  --startup-timeout-ms N       for both to be live (default %d)\n"
            "  --final-eval-timeout-ms N    from the budget to the final evaluation (default %d)\n"
            "%s"
            "  exit status: 0 the run finished; 1 it did not (a peer never came up, no final\n"
            "  evaluation in time); 2 bad usage or TLS files; 128+N interrupted by signal N\n",
            MONITOR_DEFAULT_INTERVAL_MS, MONITOR_DEFAULT_STARTUP_MS, MONITOR_DEFAULT_FINAL_EVAL_MS,
            rpc_tls_flags_help);
}

static int parse_monitor_args(monitor_cfg *c, int argc, char **argv)
{
    memset(c, 0, sizeof *c);
    snprintf(c->out_dir, sizeof c->out_dir, ".");
    c->progress_interval_ms = MONITOR_DEFAULT_INTERVAL_MS;
    c->startup_timeout_ms = MONITOR_DEFAULT_STARTUP_MS;
    c->final_eval_timeout_ms = MONITOR_DEFAULT_FINAL_EVAL_MS;
    const char *addrs[2] = {NULL, NULL};
    int n_addrs = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int tls = rpc_tls_paths_flag(&c->tls, a, v);
        if (tls < 0) {
            return tls;
        }
        if (tls > 0) {
            i++;
            continue;
        }
        int *ms = strcmp(a, "--interval-ms") == 0          ? &c->progress_interval_ms
                  : strcmp(a, "--startup-timeout-ms") == 0 ? &c->startup_timeout_ms
                  : strcmp(a, "--final-eval-timeout-ms") == 0 ? &c->final_eval_timeout_ms
                                                              : NULL;
        if (ms) {
            uint64_t x = 0;
            int rc = cli_flag_u64(&x, a, v, 1, MONITOR_TIMEOUT_MS_MAX);
            if (rc < 0) {
                return rc;
            }
            *ms = (int)x;
            i++;
        } else if (strcmp(a, "--out") == 0) {
            if (!v || !*v || strlen(v) >= sizeof c->out_dir) {
                return err_set(-EINVAL, "--out needs a directory (at most %zu bytes)",
                               sizeof c->out_dir - 1);
            }
            snprintf(c->out_dir, sizeof c->out_dir, "%s", v);
            i++;
        } else if (a[0] == '-') {
            return err_set(-EINVAL, "unknown option '%s'", a);
        } else if (n_addrs < 2) {
            addrs[n_addrs++] = a;
        } else {
            return err_set(-EINVAL, "unexpected argument '%s'", a);
        }
    }
    if (n_addrs < 2) {
        return err_set(-EINVAL, "needs LEARNER_ADDR and MODELSERVER_ADDR");
    }
    const char *what[2] = {"LEARNER_ADDR", "MODELSERVER_ADDR"};
    char *dst[2] = {c->learner_addr, c->modelserver_addr};
    for (int k = 0; k < 2; k++) {
        if (netaddr_check_peer(addrs[k]) < 0) {
            char why[256];
            snprintf(why, sizeof why, "%s", err_msg());
            return err_set(-EINVAL, "%s '%s': %s", what[k], addrs[k], why);
        }
        snprintf(dst[k], RUN_ADDR_MAX + 1, "%s", addrs[k]);
    }
    rpc_tls t = rpc_tls_of_paths(&c->tls);
    return rpc_tls_check(&t);
}

/* the monitor's state changed: wake the main thread out of sigwait */
static void wake_main(void *data)
{
    pthread_kill(*(pthread_t *)data, SIGUSR1);
}

int twig_cmd_monitor(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            monitor_usage(stdout);
            return 0;
        }
    }
    monitor_cfg cfg;
    if (parse_monitor_args(&cfg, argc, argv) < 0) {
        fprintf(stderr, "twig monitor: %s\n", err_msg());
        monitor_usage(stderr);
        return 2;
    }
    if (fs_mkdir_p(cfg.out_dir) < 0) {
        fprintf(stderr, "twig monitor: --out %s: %s\n", cfg.out_dir, err_msg());
        return 1;
    }
    log_init("monitor", LOG_LEVEL_WARN);
    /* the signals are taken by sigwait on this thread only: block them before any thread
     * (the monitor's, gRPC's) starts, so they inherit the mask */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    rpc_lib_init();
    pthread_t self = pthread_self();
    monitor_t m;
    int code = 1, rc = monitor_init(&m, &cfg, wake_main, &self);
    if (rc == 0) {
        rc = monitor_start(&m);
    }
    if (rc < 0) {
        fprintf(stderr, "twig monitor: %s\n", err_msg());
    } else {
        printf("twig monitor: learner %s, model server %s, writing to %s\n", cfg.learner_addr,
               cfg.modelserver_addr, cfg.out_dir);
        fflush(stdout);
        for (;;) {
            int sig = 0;
            sigwait(&set, &sig);
            monitor_state st = monitor_get_state(&m);
            if (sig == SIGINT || sig == SIGTERM) {
                monitor_stop(&m);
                printf("\ntwig monitor: interrupted by signal %d; metrics.csv is continued by "
                       "the next `twig monitor --out %s`\n",
                       sig, cfg.out_dir);
                code = 128 + sig;
                break;
            }
            if (st == MONITOR_DONE || st == MONITOR_FAILED) {
                monitor_stop(&m);
                code = st == MONITOR_DONE ? 0 : 1;
                if (st == MONITOR_FAILED) {
                    fprintf(stderr, "twig monitor: %s\n", m.failure);
                }
                break;
            }
        }
        bool plotted = code == 0 && report_plot(cfg.out_dir, m.run.env);
        report_summary(stdout, &m.last, &m.run, code == 0, cfg.out_dir, plotted, NULL, 0);
    }
    monitor_free(&m);
    rpc_lib_shutdown(MONITOR_UNLOAD_MS);
    return code;
}
