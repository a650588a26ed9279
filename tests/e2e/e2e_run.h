/* e2e_run.h - helpers for end-to-end tests: start `twig run` on a small config, follow its
 * processes through RUN/procs.tsv, poll the learner's progress, wait for the end.
 * Header-only; included by the tests under tests/e2e/. */
#ifndef TWIG_E2E_RUN_H
#define TWIG_E2E_RUN_H

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/base/err.h"
#include "common/rpc/rpc.h"
#include "proto/twig.pb-c.h"
#include "tests/procfix.h"

typedef struct e2e_run {
    char dir[PROCFIX_DIR_LEN]; /* the test's temp dir (kept: logs, data, metrics) */
    char run_dir[300];     /* dir/run */
    char config[300];
    char ms_addr[64];
    char learner_addr[64];
    int base_port;
    pid_t pid;             /* twig run */
    const rpc_tls *tls;    /* the run's TLS for the test's own calls; NULL: plaintext */
} e2e_run;

/* ports from the test's pid, so test executables running side by side do not collide */
static inline void e2e_init(e2e_run *r, const char *extra_yaml)
{
    memset(r, 0, sizeof *r);
    procfix_tmpdir(r->dir, sizeof r->dir);
    snprintf(r->run_dir, sizeof r->run_dir, "%s/run", r->dir);
    snprintf(r->config, sizeof r->config, "%s/config.yaml", r->dir);
    r->base_port = 20000 + (int)(getpid() % 400) * 100;
    snprintf(r->ms_addr, sizeof r->ms_addr, "127.0.0.1:%d", r->base_port + 1);
    snprintf(r->learner_addr, sizeof r->learner_addr, "127.0.0.1:%d", r->base_port + 2);
    FILE *f = fopen(r->config, "w");
    cr_assert_not_null(f);
    fprintf(f,
            "modelserver_addr: %s\nlearner_addr: %s\n%s\n"
            "launcher:\n  actor_base_port: %d\n  rollout_base_port: %d\n"
            "  progress_interval_ms: 200\n  restart_base_ms: 100\n  restart_max_ms: 1000\n"
            "  stop_grace_ms: 5000\n  final_eval_timeout_ms: 120000\n",
            r->ms_addr, r->learner_addr, extra_yaml, r->base_port + 10, r->base_port + 40);
    fclose(f);
}

static inline void e2e_start(e2e_run *r)
{
    char out[320];
    snprintf(out, sizeof out, "%s/twig-run.out", r->dir);
    const char *argv[] = {TWIG_BIN_DIR "/deploy/twig", "run", r->config, "--run-dir", r->run_dir,
                          NULL};
    r->pid = procfix_spawn(argv, out);
}

/* pid and start count of a process of the run, from procs.tsv; 0 if not there yet */
static inline int e2e_proc(const e2e_run *r, const char *name, int *starts)
{
    char path[360], line[256];
    snprintf(path, sizeof path, "%s/procs.tsv", r->run_dir);
    FILE *f = fopen(path, "r");
    if (!f) {
        return 0;
    }
    int pid = 0;
    while (fgets(line, sizeof line, f)) {
        char n[64];
        int p, s, running;
        if (sscanf(line, "%63s %d %d %d", n, &p, &s, &running) == 4 && strcmp(n, name) == 0) {
            pid = running ? p : 0;
            if (starts) {
                *starts = s;
            }
        }
    }
    fclose(f);
    return pid;
}

/* the learner's progress; 0 or an rpc error */
static inline int e2e_progress(const e2e_run *r, Twig__V1__Progress *out)
{
    rpc_client_t *cl = NULL;
    rpc_client_cfg cc = {.tls = r->tls};
    int rc = rpc_client_init(&cl, r->learner_addr, &cc);
    if (rc < 0) {
        return rc;
    }
    Twig__V1__ProgressRequest q = TWIG__V1__PROGRESS_REQUEST__INIT;
    ProtobufCMessage *reply = NULL;
    rpc_call_opts o = {.deadline_ms = 1000};
    rc = rpc_client_unary(cl, &reply, "/twig.v1.Learner/GetProgress", &q.base,
                          &twig__v1__progress__descriptor, &o);
    if (rc == 0) {
        *out = *(Twig__V1__Progress *)reply;
        out->base.descriptor = &twig__v1__progress__descriptor;
        protobuf_c_message_free_unpacked(reply, NULL);
    }
    rpc_client_free(cl);
    return rc;
}

/* poll until the learner reports at least real_steps mirrored (deadline in ms) */
static inline void e2e_wait_real_steps(const e2e_run *r, uint64_t real_steps, int deadline_ms)
{
    int64_t until = procfix_now_ms() + deadline_ms;
    Twig__V1__Progress p;
    for (;;) {
        if (e2e_progress(r, &p) == 0 && p.real_steps >= real_steps) {
            return;
        }
        cr_assert_lt(procfix_now_ms(), until,
                     "the learner did not reach %llu real steps in %d ms",
                     (unsigned long long)real_steps, deadline_ms);
        procfix_pause_ms(100);
    }
}

/* kill -9 a process by name and wait until the launcher has restarted it */
static inline void e2e_kill_and_wait_restart(const e2e_run *r, const char *name, int deadline_ms)
{
    int starts = 0;
    int pid = e2e_proc(r, name, &starts);
    cr_assert_gt(pid, 0, "%s is not running", name);
    cr_assert_eq(kill(pid, SIGKILL), 0);
    int64_t until = procfix_now_ms() + deadline_ms;
    for (;;) {
        int now_starts = 0;
        int p = e2e_proc(r, name, &now_starts);
        if (p > 0 && p != pid && now_starts == starts + 1) {
            return;
        }
        cr_assert_lt(procfix_now_ms(), until, "%s was not restarted", name);
        procfix_pause_ms(50);
    }
}

/* wait for `twig run` to exit; its exit code (SIGTERM and a failed test at the deadline) */
static inline int e2e_wait_exit(e2e_run *r, int deadline_ms)
{
    int code = procfix_exit_code(r->pid, deadline_ms);
    r->pid = 0;
    return code;
}

/* the last row of metrics.csv, split into its numbers; returns the number of rows */
static inline int e2e_metrics_last(const e2e_run *r, double *cols, int n_cols)
{
    char path[360], line[1024], last[1024] = "";
    snprintf(path, sizeof path, "%s/metrics.csv", r->run_dir);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s missing", path);
    int rows = -1;   /* the header */
    while (fgets(line, sizeof line, f)) {
        memcpy(last, line, sizeof last);
        rows++;
    }
    fclose(f);
    char *p = last;
    for (int i = 0; i < n_cols; i++) {
        cols[i] = strtod(p, &p);
        if (*p == ',') {
            p++;
        }
    }
    return rows;
}

#endif
