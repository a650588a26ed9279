/* `twig monitor` and `twig status` against a run that twig run did not start: the four
 * daemons started by hand, as a deployment starts them, watched by address alone. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/procfix.h"

#define TWIG TWIG_BIN_DIR "/deploy/twig"
#define BUDGET 1200
#define INIT_STEPS 300
#define EVAL_EVERY 300
#define UTD 2

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        return strdup("");
    }
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return strdup(buf);
}

/* twig ARGS... to its end, stdout and stderr into dir/NAME.out; its exit code */
static int run_twig(const char *dir, const char *name, const char *const *args, int ms)
{
    char out[400];
    snprintf(out, sizeof out, "%s/%s.out", dir, name);
    const char *argv[16] = {TWIG};
    int k = 1;
    for (; args[k - 1]; k++) {
        argv[k] = args[k - 1];
    }
    argv[k] = NULL;
    return procfix_exit_code(procfix_spawn(argv, out), ms);
}

Test(twig_monitor, bad_usage_is_refused_and_a_silent_address_fails)
{
    char dir[PROCFIX_DIR_LEN];
    procfix_tmpdir(dir, sizeof dir);
    const char *none[] = {"monitor", NULL};
    cr_expect_eq(run_twig(dir, "m0", none, 10000), 2);
    char path[400];
    snprintf(path, sizeof path, "%s/m0.out", dir);
    char *t = slurp(path);
    cr_expect(strstr(t, "needs LEARNER_ADDR and MODELSERVER_ADDR") != NULL, "%s", t);
    free(t);
    const char *bad[] = {"monitor", "nohost", "127.0.0.1:1", NULL};
    cr_expect_eq(run_twig(dir, "m1", bad, 10000), 2);
    snprintf(path, sizeof path, "%s/m1.out", dir);
    t = slurp(path);
    cr_expect(strstr(t, "LEARNER_ADDR 'nohost'") != NULL, "%s", t);
    free(t);
    const char *ms[] = {"monitor", "127.0.0.1:1", "127.0.0.1:2", "--interval-ms", "0", NULL};
    cr_expect_eq(run_twig(dir, "m2", ms, 10000), 2);
    const char *st0[] = {"status", NULL};
    cr_expect_eq(run_twig(dir, "s0", st0, 10000), 2);
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", procfix_free_port());
    const char *st1[] = {"status", addr, "--timeout-ms", "500", NULL};
    cr_expect_eq(run_twig(dir, "s1", st1, 20000), 1, "nobody listens at %s", addr);
    snprintf(path, sizeof path, "%s/s1.out", dir);
    t = slurp(path);
    cr_expect(strstr(t, "liveness no answer") != NULL, "%s", t);
    free(t);
    /* nothing listens: twig monitor gives up at its start-up timeout, exit 1 */
    const char *m3[] = {"monitor", addr, addr, "--out", dir, "--startup-timeout-ms", "500",
                        NULL};
    cr_expect_eq(run_twig(dir, "m3", m3, 20000), 1);
    snprintf(path, sizeof path, "%s/m3.out", dir);
    t = slurp(path);
    cr_expect(strstr(t, "not live after 500 ms") != NULL, "%s", t);
    free(t);
    procfix_tmpdir_done(dir);
}

typedef struct daemon_proc {
    const char *name;
    pid_t pid;
    char addr[32];
} daemon_proc;

/* bin --config run.yaml --set SECTION.listen=ADDR extra... ; log in dir/NAME.log */
static void start_daemon(daemon_proc *d, const char *dir, const char *bin, const char *section,
                         const char *const *extra)
{
    char cfg[400], listen[96], log[400];
    snprintf(cfg, sizeof cfg, "%s/run.yaml", dir);
    snprintf(listen, sizeof listen, "%s.listen=%s", section, d->addr);
    snprintf(log, sizeof log, "%s/%s.log", dir, d->name);
    const char *argv[24] = {bin, "--config", cfg, "--set", listen};
    int k = 5;
    for (int i = 0; extra && extra[i]; i++) {
        argv[k++] = "--set";
        argv[k++] = extra[i];
    }
    argv[k] = NULL;
    d->pid = procfix_spawn(argv, log);
    cr_assert_gt(d->pid, 0);
}

Test(twig_monitor, watches_a_run_started_by_hand_to_its_final_evaluation, .timeout = 240)
{
    char dir[PROCFIX_DIR_LEN];
    procfix_tmpdir(dir, sizeof dir);
    daemon_proc d[4] = {{.name = "modelserver"}, {.name = "learner"}, {.name = "rollout"},
                        {.name = "actor"}};
    for (int i = 0; i < 4; i++) {
        snprintf(d[i].addr, sizeof d[i].addr, "127.0.0.1:%d", procfix_free_port());
    }
    char path[400];
    snprintf(path, sizeof path, "%s/run.yaml", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f,
            "env: Pendulum-v1\nseed: 5\nreal_steps: %d\ninit_steps: %d\nutd: %d\n"
            "model_train_freq: 300\nrollouts_per_step: 8\nepoch_length: 300\nhidden: 32\n"
            "eval_every: %d\neval_episodes: 2\nn_actors: 1\nn_rollout: 1\n"
            "modelserver_addr: %s\nlearner_addr: %s\n"
            "learner:\n  batch_size: 64\n  policy_publish_every: 50\n"
            "modelserver:\n  model_hidden: 32\n  train_max_epochs: 20\n"
            "actor:\n  push_every: 25\n  exit_when_done: true\n",
            BUDGET, INIT_STEPS, UTD, EVAL_EVERY, d[0].addr, d[1].addr);
    cr_assert_eq(fclose(f), 0);
    char data[400], ckpt[400];
    snprintf(data, sizeof data, "modelserver.data_dir=%s/log", dir);
    snprintf(ckpt, sizeof ckpt, "learner.checkpoint_dir=%s/ckpt", dir);
    const char *ms_extra[] = {data, NULL}, *ln_extra[] = {ckpt, NULL};
    start_daemon(&d[0], dir, TWIG_BIN_DIR "/modelserver/twig-modelserver", "modelserver",
                 ms_extra);
    start_daemon(&d[1], dir, TWIG_BIN_DIR "/learner/twig-learner", "learner", ln_extra);
    start_daemon(&d[2], dir, TWIG_BIN_DIR "/modelserver/twig-rollout", "rollout", NULL);
    start_daemon(&d[3], dir, TWIG_BIN_DIR "/actor/twig-actor", "actor", NULL);

    char out[PROCFIX_DIR_LEN + 16];
    snprintf(out, sizeof out, "%s/watch", dir);
    const char *mon[] = {"monitor", d[1].addr, d[0].addr, "--out", out, "--interval-ms", "100",
                         "--final-eval-timeout-ms", "60000", NULL};
    char mon_out[400];
    snprintf(mon_out, sizeof mon_out, "%s/monitor.out", dir);
    const char *argv[16] = {TWIG};
    for (int k = 0; mon[k]; k++) {
        argv[k + 1] = mon[k];
        argv[k + 2] = NULL;
    }
    pid_t mp = procfix_spawn(argv, mon_out);

    /* while it runs: twig status sees both services, by role, once each answers liveness
     * (a loaded machine may take seconds to start them) */
    for (int i = 0; i < 2; i++) {
        int st;
        cr_assert_eq(procspawn_wait_health(&st, d[i].addr, RPC_HEALTH_LIVENESS, d[i].pid, 60000,
                                           PROCFIX_POLL_MS),
                     0, "%s at %s not live: %s (log %s/%s.log)", d[i].name, d[i].addr,
                     err_msg(), dir, d[i].name);
    }
    const char *st[] = {"status", d[1].addr, d[0].addr, NULL};
    int sc = run_twig(dir, "status", st, 20000);
    snprintf(path, sizeof path, "%s/status.out", dir);
    char *t = slurp(path);
    cr_expect_eq(sc, 0, "%s", t);
    cr_expect(strstr(t, "role      learner") != NULL, "%s", t);
    cr_expect(strstr(t, "role      modelserver") != NULL, "%s", t);
    char want[96];
    snprintf(want, sizeof want, "run       Pendulum-v1, %d real steps, strict pacing", BUDGET);
    cr_expect(strstr(t, want) != NULL, "%s", t);
    free(t);

    int code = procfix_exit_code(mp, 200000);
    t = slurp(mon_out);
    cr_expect_eq(code, 0, "twig monitor exited %d:\n%s", code, t);
    cr_expect(strstr(t, "twig: run finished") != NULL, "%s", t);
    snprintf(want, sizeof want, "real steps          %d / %d", BUDGET, BUDGET);
    cr_expect(strstr(t, want) != NULL, "%s", t);
    free(t);
    /* a row per evaluation point (the baseline at init_steps, then every eval_every), the
     * last at the budget; the event file is there */
    snprintf(path, sizeof path, "%s/metrics.csv", out);
    t = slurp(path);
    int rows = 0;
    unsigned long long last = 0;
    for (char *line = strchr(t, '\n'); line && line[1]; line = strchr(line + 1, '\n')) {
        last = strtoull(line + 1, NULL, 10);
        rows++;
    }
    cr_expect_eq(rows, BUDGET / EVAL_EVERY, "%s", t);
    cr_expect_eq(last, (unsigned long long)BUDGET, "%s", t);
    free(t);
    DIR *dd = opendir(out);
    cr_assert_not_null(dd);
    int events = 0;
    for (struct dirent *e; (e = readdir(dd));) {
        events += strncmp(e->d_name, "events.out.tfevents.", 20) == 0;
    }
    closedir(dd);
    cr_expect_eq(events, 1);

    for (int i = 3; i >= 0; i--) {
        if (kill(d[i].pid, 0) == 0) {
            kill(d[i].pid, SIGTERM);
        }
        cr_expect_eq(procfix_exit_code(d[i].pid, 30000), 0, "%s did not end cleanly",
                     d[i].name);
    }
    procfix_tmpdir_done(dir);
}
