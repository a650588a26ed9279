/* `twig run` with the real binaries refuses a config that one process's section makes
 * invalid (each binary checks its own with --print-config) before it starts any process,
 * naming the option, with exit 2 */
#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/procfix.h"

#define TWIG TWIG_BIN_DIR "/deploy/twig"

static char tmp[PROCFIX_DIR_LEN];

static void setup(void)
{
    procfix_tmpdir(tmp, sizeof tmp);
}

static void teardown(void)
{
    procfix_reap_all();
    procfix_tmpdir_done(tmp);
}

TestSuite(twig_run_checks, .init = setup, .fini = teardown, .timeout = 120);

/* tmp/config.yaml: a small run on free ports, plus extra (a YAML fragment) */
static void write_config(const char *extra)
{
    char path[128];
    snprintf(path, sizeof path, "%s/config.yaml", tmp);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f,
            "env: Pendulum-v1\nreal_steps: 2000\ninit_steps: 500\nn_actors: 1\nn_rollout: 1\n"
            "modelserver_addr: 127.0.0.1:%d\nlearner_addr: 127.0.0.1:%d\n"
            "launcher:\n  actor_base_port: %d\n  rollout_base_port: %d\n%s",
            procfix_free_port(), procfix_free_port(), procfix_free_port(), procfix_free_port(),
            extra);
    cr_assert_eq(fclose(f), 0);
}

/* twig run tmp/config.yaml --run-dir tmp/run [--set s ...] to its end; exit code, stderr */
static int run_twig(char *err, size_t n, const char *const *sets, int n_sets)
{
    char cfg[128], run_dir[128], out_path[128], err_path[128];
    snprintf(cfg, sizeof cfg, "%s/config.yaml", tmp);
    snprintf(run_dir, sizeof run_dir, "%s/run", tmp);
    snprintf(out_path, sizeof out_path, "%s/out.txt", tmp);
    snprintf(err_path, sizeof err_path, "%s/err.txt", tmp);
    const char *argv[16] = {TWIG, "run", cfg, "--run-dir", run_dir};
    int k = 5;
    for (int i = 0; i < n_sets; i++) {
        argv[k++] = "--set";
        argv[k++] = sets[i];
    }
    argv[k] = NULL;
    unlink(err_path);
    int code = procfix_exit_code(procfix_spawn_io(argv, out_path, err_path), 60000);
    err[0] = '\0';
    FILE *f = fopen(err_path, "r");
    if (f) {
        size_t got = fread(err, 1, n - 1, f);
        err[got] = '\0';
        fclose(f);
    }
    return code;
}

/* no process of the run was started: no procs.tsv, no data dirs, no process logs */
static void expect_nothing_started(void)
{
    const char *left[] = {"procs.tsv", "modelserver", "learner", "modelserver.log",
                          "learner.log", "actor-0.log", "rollout-0.log"};
    for (size_t i = 0; i < sizeof left / sizeof left[0]; i++) {
        char p[256];
        snprintf(p, sizeof p, "%s/run/%s", tmp, left[i]);
        cr_expect_neq(access(p, F_OK), 0, "%s exists: a process was started", p);
    }
}

Test(twig_run_checks, more_elites_than_members_is_refused_before_any_process_starts)
{
    static char err[1 << 14];
    write_config("");
    const char *sets[] = {"modelserver.elites=9"};
    int code = run_twig(err, sizeof err, sets, 1);
    cr_expect_eq(code, 2, "exit %d\n%s", code, err);
    cr_expect_neq(strstr(err, "modelserver refused the config (exit 2"), NULL, "%s", err);
    cr_expect_neq(strstr(err, "modelserver.elites (9) exceeds modelserver.ensemble_size (7)"),
                  NULL, "%s", err);
    expect_nothing_started();
}

/* a value that came from --set is named as such, whoever checks it: twig itself (run keys,
 * the env id) or a process (a section key) */
Test(twig_run_checks, a_bad_set_value_is_named_with_its_set)
{
    static char err[1 << 14];
    write_config("");
    const char *cases[][2] = {
        {"learner.batch_size=abc",
         "--set learner.batch_size=abc: learner.batch_size: 'abc' is not a number"},
        {"real_steps=-5", "--set real_steps=-5: real_steps: -5 is out of range"},
        {"env=Pendulum-v0", "--set env=Pendulum-v0: env: unknown env id 'Pendulum-v0'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int code = run_twig(err, sizeof err, &cases[i][0], 1);
        cr_expect_eq(code, 2, "%s: exit %d\n%s", cases[i][0], code, err);
        cr_expect_neq(strstr(err, cases[i][1]), NULL, "wanted '%s' in:\n%s", cases[i][1], err);
        expect_nothing_started();
    }
}

Test(twig_run_checks, a_bad_model_section_in_the_file_is_refused_naming_the_keys)
{
    static char err[1 << 14];
    write_config("modelserver:\n  train_max_epochs: 50\n  min_epochs: 80\n");
    int code = run_twig(err, sizeof err, NULL, 0);
    cr_expect_eq(code, 2, "exit %d\n%s", code, err);
    cr_expect_neq(
        strstr(err, "modelserver.min_epochs (80) exceeds modelserver.train_max_epochs (50)"),
        NULL, "%s", err);
    expect_nothing_started();
}

Test(twig_run_checks, a_run_option_checked_by_the_processes_is_refused_by_twig_itself)
{
    static char err[1 << 14];
    write_config("");
    const char *sets[] = {"rollouts_per_step=1", "n_rollout=2"};
    int code = run_twig(err, sizeof err, sets, 2);
    cr_expect_eq(code, 2, "exit %d\n%s", code, err);
    cr_expect_neq(strstr(err, "rollouts_per_step (1) is below n_rollout (2)"), NULL, "%s", err);
    char run_dir[128];
    snprintf(run_dir, sizeof run_dir, "%s/run", tmp);
    cr_expect_neq(access(run_dir, F_OK), 0, "refused before the run dir is made");
}

/* the run directory was never made: a refused run creates nothing */
static void expect_no_run_dir(void)
{
    char run_dir[128];
    snprintf(run_dir, sizeof run_dir, "%s/run", tmp);
    cr_expect_neq(access(run_dir, F_OK), 0, "%s exists: a refused run made it", run_dir);
}

Test(twig_run_checks, an_unknown_env_id_is_refused_with_a_near_miss_and_nothing_is_made)
{
    static char err[1 << 14];
    write_config("");
    const char *sets[] = {"env=Pendulum-v0"};
    int code = run_twig(err, sizeof err, sets, 1);
    cr_expect_eq(code, 2, "exit %d\n%s", code, err);
    cr_expect_neq(strstr(err, "unknown env id 'Pendulum-v0'"), NULL, "%s", err);
    cr_expect_neq(strstr(err, "did you mean 'Pendulum-v1'?"), NULL, "%s", err);
    expect_no_run_dir();
}

Test(twig_run_checks, an_unknown_section_key_names_the_users_file_and_line_with_a_near_miss)
{
    static char err[1 << 14];
    /* write_config's lines 1-10, then learner: on 11 and the slip on 12 */
    write_config("learner:\n  batch: 64\n");
    int code = run_twig(err, sizeof err, NULL, 0);
    cr_expect_eq(code, 2, "exit %d\n%s", code, err);
    char want[256];
    snprintf(want, sizeof want,
             "%s/config.yaml:12: unknown option 'learner.batch' (did you mean "
             "'learner.batch_size'?)",
             tmp);
    cr_expect_neq(strstr(err, want), NULL, "wanted: %s\ngot: %s", want, err);
    cr_expect_eq(strstr(err, "/run/config.yaml"), NULL, "names the run dir's copy: %s", err);
    expect_no_run_dir();
}

Test(twig_run_checks, a_run_dir_holding_another_envs_log_is_refused_before_anything_starts)
{
    static char err[1 << 14];
    write_config("");
    /* what twig-modelserver's real-transition log leaves in RUN/modelserver/meta */
    char path[256];
    snprintf(path, sizeof path, "%s/run", tmp);
    cr_assert_eq(mkdir(path, 0755), 0);
    snprintf(path, sizeof path, "%s/run/modelserver", tmp);
    cr_assert_eq(mkdir(path, 0755), 0);
    snprintf(path, sizeof path, "%s/run/modelserver/meta", tmp);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("twig-reallog 1\nenv_id=Hopper-v4\nobs_dim=11\nact_dim=3\n", f);
    cr_assert_eq(fclose(f), 0);
    int code = run_twig(err, sizeof err, NULL, 0);
    cr_expect_eq(code, 2, "exit %d\n%s", code, err);
    cr_expect_neq(strstr(err, "holds a log of env 'Hopper-v4'"), NULL, "%s", err);
    cr_expect_neq(strstr(err, "not 'Pendulum-v1'"), NULL, "%s", err);
    /* unchanged: nothing was added to it */
    const char *added[] = {"twig.log", "config.yaml", "learner.config.yaml",
                           "modelserver.config.yaml", "procs.tsv", "modelserver.log"};
    for (size_t i = 0; i < sizeof added / sizeof added[0]; i++) {
        snprintf(path, sizeof path, "%s/run/%s", tmp, added[i]);
        cr_expect_neq(access(path, F_OK), 0, "%s was made by a refused run", path);
    }
}

/* a "key: value" line whose number has a run of 0s or 9s after its point: 0.0500000007 */
static bool float_noise(const char *line)
{
    const char *colon = strchr(line, ':');
    const char *point = colon ? strchr(colon, '.') : NULL;
    if (!point || point[1] < '0' || point[1] > '9') {
        return false;
    }
    return strstr(point, "0000") != NULL || strstr(point, "9999") != NULL;
}

/* RUN/config.yaml is the config as run: the overrides applied, with the text the user gave;
 * each process's effective copy prints floats without float32 noise (0.05, not
 * 0.0500000007). The files are written once every check passed, before the processes
 * start: the test waits for them, then stops the run with SIGTERM */
Test(twig_run_checks, the_run_dir_config_has_the_overrides_as_written_and_no_float_noise)
{
    write_config("learner:\n  batch_size: 256\n");
    char cfg[128], run_dir[128], out_path[128], err_path[128];
    snprintf(cfg, sizeof cfg, "%s/config.yaml", tmp);
    snprintf(run_dir, sizeof run_dir, "%s/run", tmp);
    snprintf(out_path, sizeof out_path, "%s/out.txt", tmp);
    snprintf(err_path, sizeof err_path, "%s/err.txt", tmp);
    const char *argv[] = {TWIG, "run", cfg, "--run-dir", run_dir, "--set", "real_ratio=0.05",
                          "--set", "learner.batch_size=128", NULL};
    pid_t pid = procfix_spawn_io(argv, out_path, err_path);
    const char *procs[] = {"modelserver", "learner", "rollout-0", "actor-0"};
    char path[256], text[1 << 14];
    for (int64_t end = procfix_now_ms() + 60000;; procfix_pause_ms(PROCFIX_POLL_MS)) {
        int have = 0;
        for (int i = 0; i < 4; i++) {
            snprintf(path, sizeof path, "%s/run/%s.config.yaml", tmp, procs[i]);
            have += access(path, F_OK) == 0;
        }
        snprintf(path, sizeof path, "%s/run/procs.tsv", tmp);
        if (have == 4 && access(path, F_OK) == 0) {
            break;   /* procs.tsv: the processes were started after the configs were written */
        }
        cr_assert(procfix_now_ms() < end, "the run's config files never appeared");
    }
    cr_assert_eq(kill(pid, SIGTERM), 0);
    procfix_exit_code(pid, 60000);
    snprintf(path, sizeof path, "%s/run/config.yaml", tmp);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s", path);
    text[fread(text, 1, sizeof text - 1, f)] = '\0';
    fclose(f);
    cr_expect_neq(strstr(text, "\nreal_ratio: 0.05\n"), NULL, "%s", text);
    cr_expect_neq(strstr(text, "\nlearner:\n  batch_size: 128\n"), NULL, "%s", text);
    cr_expect_eq(strstr(text, "batch_size: 256"), NULL, "%s", text);
    /* every per-process copy: no float printed with more digits than it needs */
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/run/%s.config.yaml", tmp, procs[i]);
        f = fopen(path, "r");
        cr_assert_not_null(f, "%s", path);
        char line[512];
        while (fgets(line, sizeof line, f)) {
            cr_expect(!float_noise(line), "%s: float noise: %s", procs[i], line);
        }
        fclose(f);
    }
    snprintf(path, sizeof path, "%s/run/learner.config.yaml", tmp);
    f = fopen(path, "r");
    text[fread(text, 1, sizeof text - 1, f)] = '\0';
    fclose(f);
    cr_expect_neq(strstr(text, "real_ratio: 0.05\n"), NULL, "%s", text);
    cr_expect_neq(strstr(text, "batch_size: 128\n"), NULL, "%s", text);
}

Test(twig_run_checks, a_taken_metrics_port_or_a_bad_metrics_address_starts_nothing)
{
    static char err[1 << 14];
    /* somebody listens where the model server's metrics would go */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(fd, 1), 0);
    socklen_t len = sizeof a;
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    char extra[64];
    snprintf(extra, sizeof extra, "  metrics_base_port: %d\n", ntohs(a.sin_port));
    write_config(extra);
    int code = run_twig(err, sizeof err, NULL, 0);
    cr_expect_eq(code, 1, "exit %d\n%s", code, err);
    cr_expect_neq(strstr(err, "modelserver cannot serve its metrics"), NULL, "%s", err);
    cr_expect_neq(strstr(err, "launcher.metrics_base_port"), NULL, "%s", err);
    expect_nothing_started();
    close(fd);

    write_config("");
    const char *sets[] = {"learner.metrics_listen=nowhere"};
    code = run_twig(err, sizeof err, sets, 1);
    cr_expect_eq(code, 2, "exit %d\n%s", code, err);
    cr_expect_neq(strstr(err, "learner.metrics_listen"), NULL, "%s", err);
    expect_nothing_started();
}
