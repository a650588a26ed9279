/* `twig run` (deploy/launcher/twig_run.c) end to end with stand-in binaries: shell scripts named
 * twig-modelserver, twig-learner, twig-rollout and twig-actor in a temporary bin_dir. They
 * accept the --print-config check and then do what the test needs (crash, wait, or serve
 * what the monitor polls through tests/deploy/launcher/fake_twig_proc.py and /usr/bin/python3). */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/procfix.h"

#define TWIG TWIG_BIN_DIR "/deploy/twig"
#define N_PROCS 3   /* modelserver, learner, actor-0 (no rollout workers) */

static char tmpdir[PROCFIX_DIR_LEN];
static const char *run_name = "run";   /* the run directory inside tmpdir */

static void setup(void)
{
    procfix_tmpdir(tmpdir, sizeof tmpdir);
}

static void teardown(void)
{
    procfix_reap_all(); /* a launcher a failed assertion left running */
    procfix_tmpdir_done(tmpdir);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    fputs(text, f);
    fclose(f);
    cr_assert_eq(chmod(path, mode), 0);
}

/* bin/twig-* run `body` unless asked for --print-config; config.yaml with test ports */
static void make_fixture(const char *body)
{
    char path[256], script[1024];
    snprintf(path, sizeof path, "%s/bin", tmpdir);
    cr_assert_eq(mkdir(path, 0755), 0);
    snprintf(script, sizeof script,
             "#!/bin/sh\n"
             "for a; do [ \"$a\" = --print-config ] && { echo 'ok: true'; exit 0; }; done\n"
             "%s\n",
             body);
    const char *names[] = {"twig-modelserver", "twig-learner", "twig-rollout", "twig-actor"};
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/bin/%s", tmpdir, names[i]);
        write_file(path, script, 0755);
    }
    run_name = "run";
    char cfg[512];
    snprintf(cfg, sizeof cfg,
             "env: Pendulum-v1\nn_actors: 1\nn_rollout: 0\n"
             "modelserver_addr: 127.0.0.1:%d\nlearner_addr: 127.0.0.1:%d\n"
             "launcher:\n  actor_base_port: %d\n  bin_dir: %s/bin\n",
             procfix_free_port(), procfix_free_port(), procfix_free_port(), tmpdir);
    snprintf(path, sizeof path, "%s/config.yaml", tmpdir);
    write_file(path, cfg, 0644);
}

/* start `twig run` with extra --set options; stdout and stderr go to files in tmpdir */
static pid_t start_twig(const char *const *sets, int n_sets)
{
    char cfg[128], run_dir[128], out[128], err[128];
    snprintf(cfg, sizeof cfg, "%s/config.yaml", tmpdir);
    snprintf(run_dir, sizeof run_dir, "%s/%s", tmpdir, run_name);
    snprintf(out, sizeof out, "%s/out.txt", tmpdir);
    snprintf(err, sizeof err, "%s/err.txt", tmpdir);
    const char *argv[32] = {TWIG, "run", cfg, "--run-dir", run_dir};
    int argc = 5;
    for (int i = 0; i < n_sets; i++) {
        argv[argc++] = "--set";
        argv[argc++] = sets[i];
    }
    argv[argc] = NULL;
    return procfix_spawn_io(argv, out, err);
}

static char *slurp(const char *name)
{
    static char buf[1 << 16];
    char path[128];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (f) {
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = '\0';
        fclose(f);
    }
    return buf;
}

Test(twig_run, a_process_that_keeps_crashing_fails_the_run_once_restarts_are_used_up,
     .init = setup, .fini = teardown, .timeout = 120)
{
    make_fixture("exit 3");
    const char *sets[] = {"launcher.max_restarts=1", "launcher.restart_base_ms=10",
                          "launcher.startup_timeout_ms=60000", "launcher.stop_grace_ms=2000"};
    int64_t t0 = procfix_now_ms();
    pid_t pid = start_twig(sets, 4);
    int code = procfix_exit_code(pid, 50000);
    int64_t took = procfix_now_ms() - t0;
    const char *err = slurp("err.txt");
    cr_expect_eq(code, 1, "exit %d; stderr: %s", code, err);
    /* ended by the supervisor giving up, not by the 60 s start-up timeout */
    cr_expect_lt(took, 30000, "took %llu ms", (unsigned long long)took);
    cr_expect(strstr(err, "restarted 1 time in 10m; last exit status 3") != NULL, "stderr: %s",
              err);
    cr_expect(strstr(err, "restarting it") != NULL, "the first crash is restarted: %s", err);
}

Test(twig_run, every_process_starts_and_sigterm_stops_them_and_exits_128_plus_15, .init = setup,
     .fini = teardown, .timeout = 120)
{
    char body[256];
    snprintf(body, sizeof body, "echo $$ >> %s/pids\nexec sleep 60", tmpdir);
    make_fixture(body);
    const char *sets[] = {"launcher.startup_timeout_ms=60000", "launcher.stop_grace_ms=5000"};
    pid_t pid = start_twig(sets, 2);
    /* every child has started (each wrote its pid) */
    int pids[N_PROCS] = {0};
    int n = 0;
    for (int64_t end = procfix_now_ms() + 30000; n < N_PROCS && procfix_now_ms() < end;) {
        char *s = slurp("pids");
        n = 0;
        for (char *line = strtok(s, "\n"); line && n < N_PROCS; line = strtok(NULL, "\n")) {
            pids[n++] = atoi(line);
        }
        if (n < N_PROCS) {
            procfix_pause_ms(20);
        }
    }
    cr_assert_eq(n, N_PROCS, "children started: %d; stderr: %s", n, slurp("err.txt"));
    cr_assert_eq(kill(pid, SIGTERM), 0);
    int code = procfix_exit_code(pid, 30000);
    cr_expect_eq(code, 128 + SIGTERM, "exit %d; stderr: %s", code, slurp("err.txt"));
    for (int i = 0; i < N_PROCS; i++) {
        cr_expect(pids[i] > 0 && kill(pids[i], 0) < 0 && errno == ESRCH,
                  "child %d (pid %d) outlived the launcher", i, pids[i]);
    }
}

Test(twig_run, a_config_refused_by_a_process_names_it_with_its_exit_status, .init = setup,
     .fini = teardown, .timeout = 120)
{
    make_fixture("exec sleep 60");
    char path[128];
    snprintf(path, sizeof path, "%s/bin/twig-learner", tmpdir);
    write_file(path,
               "#!/bin/sh\necho 'unknown option learner.bogus' >&2\nexit 2\n", 0755);
    pid_t pid = start_twig(NULL, 0);
    int code = procfix_exit_code(pid, 60000);
    const char *err = slurp("err.txt");
    cr_expect_eq(code, 2, "a config error: exit %d; stderr: %s", code, err);
    cr_expect(strstr(err, "learner refused the config (exit 2") != NULL, "stderr: %s", err);
    cr_expect(strstr(err, "unknown option learner.bogus") != NULL, "stderr: %s", err);
}

Test(twig_run, a_listen_address_in_use_is_refused_before_anything_starts, .init = setup,
     .fini = teardown, .timeout = 60)
{
    /* any started process would leave this file: none may start */
    char marker[160], body[256];
    snprintf(marker, sizeof marker, "%s/started", tmpdir);
    snprintf(body, sizeof body, "touch '%s'; exec sleep 60", marker);
    make_fixture(body);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(fd, 1), 0);
    socklen_t len = sizeof a;
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    char set[64];
    snprintf(set, sizeof set, "learner_addr=127.0.0.1:%d", ntohs(a.sin_port));
    const char *sets[] = {set};
    pid_t pid = start_twig(sets, 1);
    int code = procfix_exit_code(pid, 30000);
    close(fd);
    const char *err = slurp("err.txt");
    cr_expect_eq(code, 1, "exit %d; stderr: %s", code, err);
    cr_expect(strstr(err, "learner cannot listen") != NULL, "stderr: %s", err);
    cr_expect(strstr(err, set + strlen("learner_addr=")) != NULL, "names the address: %s", err);
    cr_expect(strstr(err, "set learner_addr") != NULL, "names the option: %s", err);
    cr_expect_neq(access(marker, F_OK), 0, "a process was started");
}

/* pid and start count of a process of the run from RUN/procs.tsv; 0 when not running */
static int proc_pid(const char *name, int *starts)
{
    char path[200], line[256];
    snprintf(path, sizeof path, "%s/%s/procs.tsv", tmpdir, run_name);
    FILE *f = fopen(path, "r");
    int pid = 0;
    while (f && fgets(line, sizeof line, f)) {
        char n[64];
        int p, st, running;
        if (sscanf(line, "%63s %d %d %d", n, &p, &st, &running) == 4 && strcmp(n, name) == 0) {
            pid = running ? p : 0;
            *starts = st;
        }
    }
    if (f) {
        fclose(f);
    }
    return pid;
}

/* a process that stops answering (SIGSTOP: hung) is killed and restarted by the launcher's
 * liveness probes; the run goes on */
Test(twig_run, a_hung_process_is_killed_and_restarted, .init = setup, .fini = teardown,
     .timeout = 120)
{
    char body[512];
    snprintf(body, sizeof body,
             "FAKE_EVALS=none exec /usr/bin/python3 %s/tests/deploy/launcher/fake_twig_proc.py "
             "\"$0\" \"$@\"",
             TWIG_SRC_DIR);
    make_fixture(body);
    const char *sets[] = {"real_steps=1000", "init_steps=100",
                          "launcher.startup_timeout_ms=90000", "launcher.health_every_ms=100",
                          "launcher.hang_ms=1500", "launcher.restart_base_ms=50"};
    pid_t pid = start_twig(sets, 6);
    int starts = 0, hung = 0;
    for (int64_t end = procfix_now_ms() + 60000; procfix_now_ms() < end && !hung;) {
        hung = proc_pid("actor-0", &starts);
        procfix_pause_ms(20);
    }
    cr_assert_gt(hung, 0, "actor-0 never started; stderr: %s", slurp("err.txt"));
    cr_assert_eq(starts, 1);
    /* wait until the launcher's health watch has seen it live (its own line: the monitor's
     * start-up wait logs event=monitor_sees_live), then hang it */
    const char *seen_live = "event=live proc=actor-0 start=1";
    bool seen = false;
    for (int64_t end = procfix_now_ms() + 60000; procfix_now_ms() < end && !seen;) {
        seen = strstr(slurp("run/twig.log"), seen_live) != NULL;
        procfix_pause_ms(20);
    }
    cr_assert(seen, "the health watch never saw actor-0 live: %s", slurp("run/twig.log"));
    int64_t t0 = procfix_now_ms();
    cr_assert_eq(kill(hung, SIGSTOP), 0);
    int now_pid = 0;
    for (int64_t end = t0 + 30000; procfix_now_ms() < end;) {
        now_pid = proc_pid("actor-0", &starts);
        if (now_pid > 0 && now_pid != hung && starts == 2) {
            break;
        }
        procfix_pause_ms(20);
    }
    int64_t took = procfix_now_ms() - t0;
    cr_expect_eq(starts, 2, "restarted once; twig.log: %s", slurp("run/twig.log"));
    cr_expect(now_pid > 0 && now_pid != hung, "a new actor-0 runs");
    cr_expect_geq(took, 1500, "killed after %lld ms, before hang_ms", (long long)took);
    cr_expect(kill(hung, 0) < 0 && errno == ESRCH, "the hung process (pid %d) is gone", hung);
    const char *err = slurp("err.txt");
    cr_expect(strstr(err, "actor-0 is hung (not answering its health check for") != NULL,
              "stderr: %s", err);
    /* the others were never touched */
    cr_expect(proc_pid("learner", &starts) > 0 && starts == 1);
    cr_expect(proc_pid("modelserver", &starts) > 0 && starts == 1);
    cr_assert_eq(kill(pid, SIGTERM), 0);
    int code = procfix_exit_code(pid, 30000);
    cr_expect_eq(code, 128 + SIGTERM, "exit %d; stderr: %s", code, slurp("err.txt"));
}

/* the learner loses its last evaluations (restarted from an older checkpoint) and refuses
 * the monitor's from_index: the monitor reads its list again and still sees the final one */
Test(twig_run, evaluations_lost_by_a_restarted_learner_do_not_hide_the_final_one,
     .init = setup, .fini = teardown, .timeout = 180)
{
    char body[512];
    snprintf(body, sizeof body,
             "FAKE_EVALS=restart exec /usr/bin/python3 %s/tests/deploy/launcher/fake_twig_proc.py "
             "\"$0\" \"$@\"",
             TWIG_SRC_DIR);
    make_fixture(body);
    const char *sets[] = {"real_steps=1000", "init_steps=100",
                          "launcher.progress_interval_ms=100",
                          "launcher.startup_timeout_ms=90000",
                          "launcher.final_eval_timeout_ms=5000"};
    pid_t pid = start_twig(sets, 5);
    int code = procfix_exit_code(pid, 150000);
    cr_expect_eq(code, 0, "exit %d; stderr: %s", code, slurp("err.txt"));
    char *csv = slurp("run/metrics.csv");
    const char *steps[] = {"\n300,", "\n500,", "\n1000,"};
    for (int i = 0; i < 3; i++) {
        cr_expect(strstr(csv, steps[i]) != NULL, "metrics.csv: %s", csv);
    }
    int rows = 0;
    for (const char *p = csv; *p; p++) {
        rows += *p == '\n';
    }
    cr_expect_eq(rows, 4, "header and 3 rows, none twice: %s", csv);
}

/* the whole happy path: healthy, polled, final evaluation, stop, metrics.csv, plot, summary.
 * The run directory's name holds a '$' that a shell would expand */
Test(twig_run, a_run_that_gets_its_final_eval_exits_0_with_metrics_and_a_plot, .init = setup,
     .fini = teardown, .timeout = 180)
{
    char body[512];
    snprintf(body, sizeof body,
             "exec /usr/bin/python3 %s/tests/deploy/launcher/fake_twig_proc.py \"$0\" \"$@\"",
             TWIG_SRC_DIR);
    make_fixture(body);
    run_name = "run-$x";
    const char *sets[] = {"real_steps=1000", "init_steps=100",
                          "launcher.progress_interval_ms=100",
                          "launcher.startup_timeout_ms=90000"};
    pid_t pid = start_twig(sets, 4);
    int code = procfix_exit_code(pid, 150000);
    cr_expect_eq(code, 0, "exit %d; stderr: %s", code, slurp("err.txt"));
    const char *out = slurp("out.txt");
    cr_expect(strstr(out, "final eval return   -150.50 +- 12.25 (at 1000 real steps, policy v7)")
                  != NULL, "stdout: %s", out);
    char *csv = slurp("run-$x/metrics.csv");
    char *row = strchr(csv, '\n');
    cr_assert_not_null(row, "metrics.csv: %s", csv);
    cr_expect(strncmp(row + 1, "1000,", 5) == 0, "metrics.csv: %s", csv);
    cr_expect(strstr(row, ",-150.5000,12.2500,20000,400000,7,3,7,20.000,0.5\n") != NULL,
              "metrics.csv: %s", csv);
    char png[160];
    snprintf(png, sizeof png, "%s/run-$x/learning_curve.png", tmpdir);
    struct stat st;
    cr_expect(stat(png, &st) == 0 && st.st_size > 1000, "no plot at %s", png);
}

/* bin/twig-learner passes the --print-config check, then appends a line to tmpdir/starts at
 * each start, writes `log` (its reason) to its log and exits with `status` */
static void make_learner(const char *log, int status)
{
    char path[128], script[1024];
    snprintf(path, sizeof path, "%s/bin/twig-learner", tmpdir);
    snprintf(script, sizeof script,
             "#!/bin/sh\n"
             "for a; do [ \"$a\" = --print-config ] && { echo 'ok: true'; exit 0; }; done\n"
             "echo start >> %s/starts\n"
             "echo '2026-12-07T10:00:00.000Z info learner[1] event=starting'\n"
             "echo '%s'\n"
             "exit %d\n",
             tmpdir, log, status);
    write_file(path, script, 0755);
}

static int count_lines(const char *name)
{
    int n = 0;
    for (const char *c = slurp(name); *c; c++) {
        n += *c == '\n';
    }
    return n;
}

Test(twig_run, a_process_exiting_2_is_not_restarted_and_the_run_shows_its_reason,
     .init = setup, .fini = teardown, .timeout = 120)
{
    make_fixture("exec sleep 60");
    make_learner("twig-learner: learner.checkpoint_dir: cannot use /nope (not a directory)", 2);
    const char *sets[] = {"launcher.restart_base_ms=10", "launcher.stop_grace_ms=2000"};
    pid_t pid = start_twig(sets, 2);
    int code = procfix_exit_code(pid, 30000);
    const char *err = slurp("err.txt");
    cr_expect_eq(code, 2, "exit %d; stderr: %s", code, err);
    cr_expect(strstr(err, "learner exited with a configuration error (exit status 2) and is "
                          "not restarted") != NULL,
              "stderr: %s", err);
    cr_expect(strstr(err, "cannot use /nope (not a directory)") != NULL, "stderr: %s", err);
    cr_expect(strstr(err, "restarting it") == NULL, "a config error was restarted: %s", err);
    cr_expect_eq(count_lines("starts"), 1, "learner started %d times", count_lines("starts"));
}

Test(twig_run, a_process_crashing_over_and_over_stops_the_run_at_the_default_restart_bound,
     .init = setup, .fini = teardown, .timeout = 120)
{
    make_fixture("exec sleep 60");
    make_learner("2026-12-07T10:00:00.001Z error learner[1] event=fatal detail=\"disk on fire\"",
                 1);
    /* no max_restarts: the default bound, 5 within 10 min */
    const char *sets[] = {"launcher.restart_base_ms=10", "launcher.restart_max_ms=20",
                          "launcher.stop_grace_ms=2000"};
    pid_t pid = start_twig(sets, 3);
    int code = procfix_exit_code(pid, 30000);
    const char *err = slurp("err.txt");
    cr_expect_eq(code, 1, "exit %d; stderr: %s", code, err);
    cr_expect(strstr(err, "learner restarted 5 times in 10m; last exit status 1: "
                          "2026-12-07T10:00:00.001Z error learner[1] event=fatal "
                          "detail=\"disk on fire\"") != NULL,
              "stderr: %s", err);
    cr_expect_eq(count_lines("starts"), 6, "learner started %d times", count_lines("starts"));
}
