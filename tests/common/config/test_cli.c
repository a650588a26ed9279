/* cli: the command line every twig program shares (common/config/cli.c) — one clear message per
 * mistake and one exit code per kind of mistake, in-process on small tables and then on the
 * real programs (twig-modelserver, twig-learner, twig-actor, twig-rollout, twig run): an
 * unknown option, a missing value, a near miss, a key given twice in a config file, a bad
 * index, and the listen-address errors (exit 1, reported once) */
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/config/cli.h"
#include "common/base/err.h"
#include "common/config/run_config.h"
#include "tests/procfix.h"

/* ---- in-process: a top level and a "learner" section ---- */

typedef struct top_cfg {
    int n_workers;
    char addr[64];
} top_cfg;

typedef struct sec_cfg {
    int index;
    char data_dir[64];
    int log_level;
} sec_cfg;

static const char *const levels[] = {"debug", "info", NULL};

static const config_opt top_opts[] = {
    {"n_workers", CFG_INT, offsetof(top_cfg, n_workers), "2", 1, 64, "workers", NULL},
    {"addr", CFG_ADDR, offsetof(top_cfg, addr), "127.0.0.1:1", 3, 63, "an address", NULL},
};

static const config_opt sec_opts[] = {
    {"index", CFG_INT, offsetof(sec_cfg, index), "0", 0, 64, "which worker", NULL},
    {"data_dir", CFG_STRING, offsetof(sec_cfg, data_dir), "", 0, 63, "a dir", NULL},
    {"log_level", CFG_ENUM, offsetof(sec_cfg, log_level), "info", 0, 0, "level", levels},
};

static int index_below_workers(const void *base, const void *top)
{
    const sec_cfg *s = base;
    const top_cfg *t = top;
    if (s->index >= t->n_workers) {
        return err_set(-EINVAL, "learner.index (%d) must be below n_workers (%d)", s->index,
                       t->n_workers);
    }
    return 0;
}

static top_cfg tc;
static sec_cfg sc;

static int parse(int argc, const char **argv)
{
    config_table t[2] = {{NULL, top_opts, 2, &tc, NULL},
                         {"learner", sec_opts, 3, &sc, index_below_workers}};
    return cli_parse(t, 2, "learner", argc, (char **)argv, "usage: test");
}

#define PARSE(...)                                                                              \
    parse((int)(sizeof((const char *[]){"prog", __VA_ARGS__}) / sizeof(const char *)),          \
          (const char *[]){"prog", __VA_ARGS__})

Test(cli, an_unknown_option_is_named_as_unknown_with_or_without_a_value)
{
    cr_expect_eq(PARSE("--nope"), -EINVAL);
    cr_expect_str_eq(err_msg(), "unknown option '--nope' (see --help)");
    cr_expect_eq(PARSE("--nope", "1"), -EINVAL);
    cr_expect_str_eq(err_msg(), "unknown option '--nope' (see --help)");
    cr_expect_eq(PARSE("--nope=1"), -EINVAL);
    cr_expect_str_eq(err_msg(), "unknown option '--nope' (see --help)");
    /* a near miss, in flag spelling */
    cr_expect_eq(PARSE("--data-dri", "x"), -EINVAL);
    cr_expect_str_eq(err_msg(), "unknown option '--data-dri' (did you mean '--data-dir'?)");
    cr_expect_eq(PARSE("--n-wrokers", "3"), -EINVAL);
    cr_expect_str_eq(err_msg(), "unknown option '--n-wrokers' (did you mean '--n-workers'?)");
    cr_expect_eq(PARSE("--set", "learner.idnex=1"), -ENOENT);
    cr_expect_str_eq(err_msg(), "--set learner.idnex=1: unknown option 'learner.idnex' "
                                "(did you mean 'learner.index'?)");
}

Test(cli, a_missing_value_is_named_and_never_taken_from_the_next_option)
{
    cr_expect_eq(PARSE("--data-dir"), -EINVAL);
    cr_expect_str_eq(err_msg(), "--data-dir needs a value");
    cr_expect_eq(PARSE("--data-dir", "--index", "1"), -EINVAL);
    cr_expect_str_eq(err_msg(), "--data-dir needs a value");
    cr_expect_eq(PARSE("--set"), -EINVAL);
    cr_expect_str_eq(err_msg(), "--set needs KEY=VALUE");
    cr_expect_eq(PARSE("--config"), -EINVAL);
    cr_expect_str_eq(err_msg(), "--config needs a value");
    /* a negative number is a value, not an option */
    cr_expect_eq(PARSE("--index", "-1"), -EINVAL);
    cr_expect(strstr(err_msg(), "--index '-1': learner.index: -1 is out of range") != NULL,
              "%s", err_msg());
    cr_expect_eq(PARSE("stray"), -EINVAL);
    cr_expect_str_eq(err_msg(), "unexpected argument 'stray' (see --help)");
}

Test(cli, set_and_flags_resolve_a_bare_key_the_same_way_and_take_the_equals_forms)
{
    cr_assert_eq(PARSE("--set", "index=1", "--data-dir=/d", "--set=log_level=debug",
                       "--set", "n_workers=5"),
                 CLI_RUN, "%s", err_msg());
    cr_expect_eq(sc.index, 1, "--set index= is the section's index, as --index is");
    cr_expect_str_eq(sc.data_dir, "/d");
    cr_expect_eq(sc.log_level, 0);
    cr_expect_eq(tc.n_workers, 5);
    /* another process's section is left to it */
    cr_expect_eq(PARSE("--set", "actor.whatever=1"), CLI_RUN, "%s", err_msg());
    cr_expect_eq(PARSE("--addr", "nohostport"), -EINVAL);
    cr_expect(strstr(err_msg(), "--addr 'nohostport': addr: address 'nohostport' is not "
                                "HOST:PORT") != NULL,
              "%s", err_msg());
}

Test(cli, the_checks_run_after_every_option_and_before_print_config)
{
    cr_expect_eq(PARSE("--index", "2"), -EINVAL, "index 2 of 2 workers");
    cr_expect_str_eq(err_msg(), "learner.index (2) must be below n_workers (2)");
    cr_expect_eq(PARSE("--index", "2", "--print-config"), -EINVAL,
                 "--print-config refuses what a start would");
    cr_expect_eq(PARSE("--index", "2", "--n-workers", "3"), CLI_RUN, "a later option fixes it");
    /* --help still helps */
    cr_expect_eq(PARSE("--index", "2", "--help"), CLI_EXIT);
}

/* ---- the programs ---- */

#define MS TWIG_BIN_DIR "/modelserver/twig-modelserver"
#define LEARNER TWIG_BIN_DIR "/learner/twig-learner"
#define ACTOR TWIG_BIN_DIR "/actor/twig-actor"
#define ROLLOUT TWIG_BIN_DIR "/modelserver/twig-rollout"
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

TestSuite(cli_programs, .init = setup, .fini = teardown, .timeout = 120);

static const char *const programs[] = {MS, LEARNER, ACTOR, ROLLOUT};
#define N_PROGRAMS 4

/* the arguments each program needs besides the one under test: its own dirs in tmp, peers
 * nobody needs to reach (the tests end before any call) */
static int base_args(const char **argv, const char *bin, char *dir, size_t dir_n)
{
    int n = 0;
    argv[n++] = bin;
    if (strcmp(bin, MS) == 0) {
        snprintf(dir, dir_n, "%s/ms-data", tmp);
        argv[n++] = "--data-dir";
        argv[n++] = dir;
    } else if (strcmp(bin, LEARNER) == 0) {
        snprintf(dir, dir_n, "%s/ckpt", tmp);
        argv[n++] = "--checkpoint-dir";
        argv[n++] = dir;
    }
    return n;
}

/* run argv to its end (within 30 s): exit code, or 256 + the signal; output into out */
static int run(char *out, size_t n, const char *const *argv)
{
    char log[PROCFIX_DIR_LEN + 16];
    snprintf(log, sizeof log, "%s/out", tmp);
    unlink(log);
    pid_t pid = procfix_spawn(argv, log);
    int code = procfix_exit_code(pid, 30000);
    out[0] = '\0';
    FILE *f = fopen(log, "r");
    if (f) {
        size_t got = fread(out, 1, n - 1, f);
        out[got] = '\0';
        fclose(f);
    }
    return code;
}

/* program bin with base args, then extra (NULL-terminated) */
static int run_program(char *out, size_t n, const char *bin, const char *const *extra)
{
    const char *argv[32];
    char dir[PROCFIX_DIR_LEN + 16];
    int k = base_args(argv, bin, dir, sizeof dir);
    for (int i = 0; extra[i]; i++) {
        argv[k++] = extra[i];
    }
    argv[k] = NULL;
    return run(out, n, argv);
}

static int count_of(const char *hay, const char *needle)
{
    int c = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) {
        c++;
    }
    return c;
}

Test(cli_programs, every_program_names_an_unknown_option_and_exits_2)
{
    static char out[1 << 14];
    for (int i = 0; i < N_PROGRAMS; i++) {
        const char *nope[] = {"--nope", NULL};
        int code = run_program(out, sizeof out, programs[i], nope);
        cr_expect_eq(code, 2, "%s --nope: exit %d\n%s", programs[i], code, out);
        cr_expect_eq(count_of(out, "unknown option '--nope'"), 1, "%s: %s", programs[i], out);
        cr_expect_null(strstr(out, "needs a value"), "%s: %s", programs[i], out);
        const char *missing[] = {"--log-level", NULL};
        code = run_program(out, sizeof out, programs[i], missing);
        cr_expect_eq(code, 2, "%s --log-level: exit %d\n%s", programs[i], code, out);
        cr_expect_neq(strstr(out, "--log-level needs a value"), NULL, "%s: %s", programs[i], out);
        const char *near[] = {"--log-levl", "warn", NULL};
        code = run_program(out, sizeof out, programs[i], near);
        cr_expect_eq(code, 2, "%s: exit %d\n%s", programs[i], code, out);
        cr_expect_neq(strstr(out, "(did you mean '--log-level'?)"), NULL, "%s: %s", programs[i],
                      out);
        const char *help[] = {"--help", NULL};
        cr_expect_eq(run_program(out, sizeof out, programs[i], help), 0);
        cr_expect_neq(strstr(out, "exit status: 0 "), NULL, "%s --help: %s", programs[i], out);
    }
    char cfg[PROCFIX_DIR_LEN + 16];
    snprintf(cfg, sizeof cfg, "%s/run.yaml", tmp);
    FILE *f = fopen(cfg, "w");
    cr_assert_not_null(f);
    fputs("env: Pendulum-v1\n", f);
    fclose(f);
    const char *twig_nope[] = {TWIG, "run", cfg, "--nope", NULL};
    cr_expect_eq(run(out, sizeof out, twig_nope), 2, "%s", out);
    cr_expect_neq(strstr(out, "unknown option '--nope'"), NULL, "%s", out);
    const char *twig_missing[] = {TWIG, "run", cfg, "--run-dir", NULL};
    cr_expect_eq(run(out, sizeof out, twig_missing), 2, "%s", out);
    cr_expect_neq(strstr(out, "--run-dir needs a value"), NULL, "%s", out);
    const char *twig_help[] = {TWIG, "run", "--help", NULL};
    cr_expect_eq(run(out, sizeof out, twig_help), 0, "%s", out);
    cr_expect_neq(strstr(out, "exit status: 0 the run finished"), NULL, "%s", out);
}

Test(cli_programs, a_key_given_twice_in_the_config_file_is_refused_by_every_program)
{
    static char out[1 << 14];
    char cfg[PROCFIX_DIR_LEN + 16];
    snprintf(cfg, sizeof cfg, "%s/dup.yaml", tmp);
    FILE *f = fopen(cfg, "w");
    cr_assert_not_null(f);
    fputs("env: Pendulum-v1\nreal_steps: 5000\nseed: 3\nreal_steps: 6000\n", f);
    fclose(f);
    char want[256];
    snprintf(want, sizeof want, "%s:4: 'real_steps' is given twice (first at line 2)", cfg);
    for (int i = 0; i < N_PROGRAMS; i++) {
        const char *args[] = {"--config", cfg, "--print-config", NULL};
        int code = run_program(out, sizeof out, programs[i], args);
        cr_expect_eq(code, 2, "%s: exit %d\n%s", programs[i], code, out);
        cr_expect_eq(count_of(out, want), 1, "%s: %s", programs[i], out);
    }
    const char *twig[] = {TWIG, "run", cfg, NULL};
    cr_expect_eq(run(out, sizeof out, twig), 2, "%s", out);
    cr_expect_neq(strstr(out, want), NULL, "%s", out);

    /* in a process's own section, and refused by that process under twig run too */
    f = fopen(cfg, "w");
    cr_assert_not_null(f);
    fputs("env: Pendulum-v1\nmodelserver:\n  elites: 3\n  elites: 4\n", f);
    fclose(f);
    snprintf(want, sizeof want, "%s:4: 'modelserver.elites' is given twice (first at line 3)",
             cfg);
    const char *args[] = {"--config", cfg, NULL};
    cr_expect_eq(run_program(out, sizeof out, MS, args), 2, "%s", out);
    cr_expect_neq(strstr(out, want), NULL, "%s", out);
}

Test(cli_programs, an_index_outside_the_count_is_a_config_error_on_the_actor_not_the_rollout)
{
    static char out[1 << 14];
    const char *actor[] = {"--index", "3", "--n-actors", "2", NULL};
    int code = run_program(out, sizeof out, ACTOR, actor);
    cr_expect_eq(code, 2, "exit %d\n%s", code, out);
    cr_expect_eq(count_of(out, "actor.index (3) must be below n_actors (2)"), 1, "%s", out);
    /* a rollout worker's index is a seed salt only: identical replicas need none */
    const char *rollout[] = {"--index", "3", "--n-rollout", "2", "--print-config", NULL};
    code = run_program(out, sizeof out, ROLLOUT, rollout);
    cr_expect_eq(code, 0, "exit %d\n%s", code, out);
    /* a run option every process checks, the rollout worker too */
    const char *k[] = {"--k-min", "5", "--k-max", "2", NULL};
    for (int i = 0; i < N_PROGRAMS; i++) {
        code = run_program(out, sizeof out, programs[i], k);
        cr_expect_eq(code, 2, "%s: exit %d\n%s", programs[i], code, out);
        cr_expect_neq(strstr(out, "k_min (5) is larger than k_max (2)"), NULL, "%s: %s",
                      programs[i], out);
    }
    /* a listen address that is not HOST:PORT is a config error everywhere */
    const char *syntax[] = {"--listen", "localhost", NULL};
    for (int i = 0; i < N_PROGRAMS; i++) {
        code = run_program(out, sizeof out, programs[i], syntax);
        cr_expect_eq(code, 2, "%s: exit %d\n%s", programs[i], code, out);
        cr_expect_neq(strstr(out, "address 'localhost' is not HOST:PORT"), NULL, "%s: %s",
                      programs[i], out);
    }
}

Test(cli_programs, a_taken_port_or_a_bad_host_is_reported_once_and_exits_1)
{
    static char out[1 << 14];
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(fd, 1), 0);
    socklen_t len = sizeof a;
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    char taken[64], in_use[64];
    snprintf(taken, sizeof taken, "127.0.0.1:%d", ntohs(a.sin_port));
    snprintf(in_use, sizeof in_use, "port %d is in use", ntohs(a.sin_port));
    for (int i = 0; i < N_PROGRAMS; i++) {
        const char *args[] = {"--listen", taken, NULL};
        int code = run_program(out, sizeof out, programs[i], args);
        cr_expect_eq(code, 1, "%s: exit %d\n%s", programs[i], code, out);
        cr_expect_eq(count_of(out, in_use), 1, "%s, once: %s", programs[i], out);
        cr_expect_eq(count_of(out, "event=start_failed"), 1, "%s: %s", programs[i], out);
        const char *host[] = {"--listen", "no-such-host.invalid:5000", NULL};
        code = run_program(out, sizeof out, programs[i], host);
        cr_expect_eq(code, 1, "%s: exit %d\n%s", programs[i], code, out);
        cr_expect_eq(count_of(out, "host 'no-such-host.invalid' does not resolve"), 1,
                     "%s, once: %s", programs[i], out);
        cr_expect_eq(count_of(out, "event=start_failed"), 1, "%s: %s", programs[i], out);
    }
    close(fd);
}

Test(cli_programs, an_unknown_env_id_is_a_config_error_wherever_an_env_is_made)
{
    static char out[1 << 14];
    const char *const makers[] = {LEARNER, ACTOR, ROLLOUT};
    for (int i = 0; i < 3; i++) {
        const char *args[] = {"--env", "Hopper-v9", "--print-config", NULL};
        int code = run_program(out, sizeof out, makers[i], args);
        cr_expect_eq(code, 2, "%s: exit %d\n%s", makers[i], code, out);
        cr_expect_eq(count_of(out, "unknown env id 'Hopper-v9'"), 1, "%s: %s", makers[i], out);
        const char *plugin[] = {"--env", "plugin:/x.so", NULL};
        code = run_program(out, sizeof out, makers[i], plugin);
        cr_expect_eq(code, 2, "%s: exit %d\n%s", makers[i], code, out);
        cr_expect_neq(strstr(out, "must be plugin:/path/lib.so:Name"), NULL, "%s", out);
    }
    char cfg[PROCFIX_DIR_LEN + 16], run_dir[PROCFIX_DIR_LEN + 16];
    snprintf(cfg, sizeof cfg, "%s/run.yaml", tmp);
    snprintf(run_dir, sizeof run_dir, "%s/run", tmp);
    FILE *f = fopen(cfg, "w");
    cr_assert_not_null(f);
    fputs("env: Hopper-v9\n", f);
    fclose(f);
    const char *twig[] = {TWIG, "run", cfg, "--run-dir", run_dir, NULL};
    cr_expect_eq(run(out, sizeof out, twig), 2, "%s", out);
    cr_expect_neq(strstr(out, "unknown env id 'Hopper-v9'"), NULL, "%s", out);
    cr_expect_neq(access(run_dir, F_OK), 0, "refused before the run dir is made");
}

Test(cli_flag, an_integer_flag_takes_a_whole_number_in_its_range_and_names_what_is_wrong)
{
    uint64_t x = 7;
    cr_assert_eq(cli_flag_u64(&x, "--n", "0", 0, 5), 0);
    cr_expect_eq(x, 0);
    cr_assert_eq(cli_flag_u64(&x, "--n", "18446744073709551615", 0, UINT64_MAX), 0);
    cr_expect_eq(x, UINT64_MAX);
    const struct {
        const char *v, *why;
    } bad[] = {
        {NULL, "--n needs a value"},
        {"", "--n '' is not an integer in [1, 5]"},
        {"6", "--n '6' is not an integer in [1, 5]"},
        {"0", "--n '0' is not an integer in [1, 5]"},
        {"-1", "--n '-1' is not an integer in [1, 5]"},
        {" 2", "--n ' 2' is not an integer in [1, 5]"},
        {"+2", "--n '+2' is not an integer in [1, 5]"},
        {"2x", "--n '2x' is not an integer in [1, 5]"},
        {"0x2", "--n '0x2' is not an integer in [1, 5]"},
        {"99999999999999999999", "--n '99999999999999999999' is not an integer in [1, 5]"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        x = 3;
        cr_expect_eq(cli_flag_u64(&x, "--n", bad[i].v, 1, 5), -EINVAL, "'%s'", bad[i].v);
        cr_expect_str_eq(err_msg(), bad[i].why);
        cr_expect_eq(x, 3, "'%s' left the value alone", bad[i].v);
    }
}

Test(cli_programs, every_subcommand_refuses_a_bad_integer_flag_with_exit_2_naming_it)
{
    static char out[1 << 14];
    const struct {
        const char *args[8];
        const char *why;
    } cases[] = {
        {{TWIG, "status", "127.0.0.1:1", "--timeout-ms", "0", NULL},
         "twig status: --timeout-ms '0' is not an integer in [1, 600000]"},
        {{TWIG, "health", "127.0.0.1:1", "--timeout-ms", "5s", NULL},
         "twig health: --timeout-ms '5s' is not an integer in [1, 600000]"},
        {{TWIG, "monitor", "127.0.0.1:1", "127.0.0.1:2", "--interval-ms", "-5", NULL},
         "--interval-ms '-5' is not an integer in [1, 86400000]"},
        {{TWIG, "env", "Pendulum-v1", "--steps", "0", NULL},
         "twig env: --steps '0' is not an integer in [1, 100000000]"},
        {{TWIG, "eval", "x.twigp", "--episodes", "2e3", NULL},
         "twig eval: --episodes '2e3' is not an integer in [1, 1000000]"},
        {{TWIG, "export", "x", "-o", "y", "--version", "-1", NULL},
         "twig export: --version '-1' is not an integer in [0, 18446744073709551615]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int code = run(out, sizeof out, cases[i].args);
        cr_expect_eq(code, 2, "%s %s: exit %d\n%s", cases[i].args[1], cases[i].args[3], code, out);
        cr_expect_neq(strstr(out, cases[i].why), NULL, "%s: wanted '%s' in\n%s", cases[i].args[1],
                      cases[i].why, out);
    }
}
