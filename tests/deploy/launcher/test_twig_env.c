/* tests of `twig env` (deploy/launcher/twig_env.c): runs the built binary, reads back its CSV */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/env/env.h"
#include "common/base/err.h"

#define TWIG TWIG_BIN_DIR "/deploy/twig"

static char tmpdir[64];

static void setup(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/twig_env_XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    cr_expect_eq(system(cmd), 0);
}

/* runs `twig ARGS > out.csv 2> err.txt`; returns the exit status */
static int run_twig(const char *args)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "%s %s > %s/out.csv 2> %s/err.txt", TWIG, args, tmpdir, tmpdir);
    int st = system(cmd);
    cr_assert(WIFEXITED(st), "%s did not exit normally", cmd);
    return WEXITSTATUS(st);
}

static char *slurp(const char *name)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s", path);
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void write_file(const char *name, const char *text)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++) {
        n += *s == '\n';
    }
    return n;
}

/* the last line's field k (0-based), as a string copied into out */
static void last_line_field(char *out, size_t cap, const char *csv, int k)
{
    const char *end = csv + strlen(csv) - 1;     /* the final '\n' */
    const char *start = end;
    while (start > csv && start[-1] != '\n') {
        start--;
    }
    for (int i = 0; i < k; i++) {
        start = strchr(start, ',') + 1;
    }
    size_t n = strcspn(start, ",\n");
    cr_assert_lt(n, cap);
    memcpy(out, start, n);
    out[n] = '\0';
}

TestSuite(twig_env, .init = setup, .fini = teardown, .timeout = 120);

Test(twig_env, hopper_zero_action_from_the_initial_pose_terminates_at_141)
{
    cr_assert_eq(run_twig("env Hopper-v4 --policy zero --reset-noise-scale 0"), 0, "%s",
                 slurp("err.txt"));
    const char *csv = slurp("out.csv");
    const char *header = "step,obs_0,obs_1,obs_2,obs_3,obs_4,obs_5,obs_6,obs_7,obs_8,obs_9,"
                         "obs_10,act_0,act_1,act_2,reward,reward_forward,reward_healthy,"
                         "reward_ctrl,terminated,truncated\n";
    cr_expect_eq(strncmp(csv, header, strlen(header)), 0, "%.300s", csv);
    /* header + reset row + 141 steps */
    cr_expect_eq(count_lines(csv), 1 + 1 + 141);
    char f[64];
    last_line_field(f, sizeof(f), csv, 0);
    cr_expect_str_eq(f, "141");
    last_line_field(f, sizeof(f), csv, 19);
    cr_expect_str_eq(f, "1");
    last_line_field(f, sizeof(f), csv, 2);
    cr_expect(fabs(atof(f) + 0.2046) < 2e-4, "angle %s", f);
    /* reset row: exactly qpos0 */
    cr_expect(strstr(csv, "\n0,1.25,0,0,0,0,0,0,0,0,0,0,,,,,,,,,\n") != NULL);
}

/* an actions file gives the same trajectory as stepping the library */
Test(twig_env, actions_file_matches_the_library_bit_for_bit)
{
    write_file("act.txt", "# torques\n0.5\n-2.5\n\n1.25\n2\n");
    cr_assert_eq(run_twig("env Pendulum-v1 --seed 9 --actions ACT"), 2);   /* no such file */
    char args[256];
    snprintf(args, sizeof(args), "env Pendulum-v1 --seed 9 --actions %s/act.txt", tmpdir);
    cr_assert_eq(run_twig(args), 0, "%s", slurp("err.txt"));
    const char *csv = slurp("out.csv");
    cr_expect_eq(count_lines(csv), 1 + 1 + 4);

    env_t *e = NULL;
    cr_assert_eq(env_make(&e, "Pendulum-v1"), 0);
    float obs[3];
    env_reset(e, 9, obs);
    const float acts[4] = {0.5f, -2.5f, 1.25f, 2.0f};
    const char *line = strchr(csv, '\n') + 1;
    line = strchr(line, '\n') + 1;   /* skip the reset row */
    env_step_result r = {.next_obs = obs};
    for (int t = 0; t < 4; t++) {
        cr_assert_eq(env_step(e, &acts[t], &r), 0);
        int step;
        float o0, o1, o2, a, rew, c0, c1, c2;
        int term, trunc;
        int n = sscanf(line, "%d,%g,%g,%g,%g,%g,%g,%g,%g,%d,%d", &step, &o0, &o1, &o2, &a, &rew,
                       &c0, &c1, &c2, &term, &trunc);
        cr_assert_eq(n, 11, "%.200s", line);
        cr_expect_eq(step, t + 1);
        cr_expect_eq(o0, obs[0]);
        cr_expect_eq(o1, obs[1]);
        cr_expect_eq(o2, obs[2]);
        cr_expect_eq(a, acts[t]);            /* printed as given, before clipping */
        cr_expect_eq(rew, r.reward);
        cr_expect_eq(c2, r.info[2]);
        cr_expect_eq(term, 0);
        cr_expect_eq(trunc, 0);
        line = strchr(line, '\n') + 1;
    }
    env_free(e);
}

Test(twig_env, bad_action_lines_are_errors_naming_the_line)
{
    write_file("two.txt", "0.1,0.2,0.3\n0.1,0.2\n");
    char args[256];
    snprintf(args, sizeof(args), "env Hopper-v4 --actions %s/two.txt", tmpdir);
    cr_expect_eq(run_twig(args), 1);
    cr_expect(strstr(slurp("err.txt"), "two.txt:2: 2 values, the env's action has 3") != NULL,
              "%s", slurp("err.txt"));
    cr_expect_eq(count_lines(slurp("out.csv")), 1 + 1 + 1);

    write_file("nan.txt", "0.1\nnan\n");
    snprintf(args, sizeof(args), "env Pendulum-v1 --actions %s/nan.txt", tmpdir);
    cr_expect_eq(run_twig(args), 1);
    cr_expect(strstr(slurp("err.txt"), "nan.txt:2: action[0] is nan") != NULL, "%s",
              slurp("err.txt"));

    write_file("junk.txt", "0.1;0.2\n");
    snprintf(args, sizeof(args), "env Pendulum-v1 --actions %s/junk.txt", tmpdir);
    cr_expect_eq(run_twig(args), 1);
    cr_expect(strstr(slurp("err.txt"), "junk.txt:1: expected ','") != NULL, "%s",
              slurp("err.txt"));
}

Test(twig_env, bad_flags_are_usage_errors)
{
    cr_expect_eq(run_twig("env NoSuchEnv-v0"), 2);
    cr_expect(strstr(slurp("err.txt"), "unknown env id 'NoSuchEnv-v0'") != NULL);
    cr_expect_eq(run_twig("env Hopper-v4 --policy greedy"), 2);
    cr_expect_eq(run_twig("env Hopper-v4 --seed -1"), 2);
    cr_expect_eq(run_twig("env Hopper-v4 --steps 0"), 2);
    cr_expect_eq(run_twig("env Hopper-v4 --steps 12x"), 2);
    cr_expect_eq(run_twig("env Hopper-v4 --reset-noise-scale -0.5"), 2);
    cr_expect_eq(run_twig("env Pendulum-v1 --reset-noise-scale 0.5"), 2);
    cr_expect(strstr(slurp("err.txt"), "no reset noise scale") != NULL);
    cr_expect_eq(run_twig("env Hopper-v4 --policy zero --actions x"), 2);
    cr_expect_eq(run_twig("env"), 2);
    cr_expect_eq(run_twig("nosuchcommand"), 2);
    cr_expect_eq(run_twig("--help"), 0);
    cr_expect(strstr(slurp("out.csv"), "env") != NULL);
}

Test(twig_env, steps_limit_random_policy_and_plugin)
{
    cr_assert_eq(run_twig("env HalfCheetah-v4 --policy random --seed 4 --steps 7"), 0);
    const char *csv = slurp("out.csv");
    cr_expect_eq(count_lines(csv), 1 + 1 + 7);
    char first[1 << 12];
    snprintf(first, sizeof(first), "%s", csv);
    cr_assert_eq(run_twig("env HalfCheetah-v4 --policy random --seed 4 --steps 7"), 0);
    cr_expect_str_eq(slurp("out.csv"), first);      /* deterministic for a seed */
    cr_assert_eq(run_twig("env HalfCheetah-v4 --policy random --seed 5 --steps 7"), 0);
    cr_expect_str_neq(slurp("out.csv"), first);

    cr_assert_eq(run_twig("env plugin:" TWIG_BIN_DIR
                          "/tests/plugins/libtwig_example_env.so:PointMass --policy random"),
                 0, "%s", slurp("err.txt"));
    csv = slurp("out.csv");
    cr_expect_eq(strncmp(csv, "step,obs_0,obs_1,act_0,reward,reward_distance,reward_ctrl,", 58),
                 0, "%.100s", csv);
    cr_expect_leq(count_lines(csv), 1 + 1 + 100);
    cr_assert_eq(run_twig("env plugin:" TWIG_BIN_DIR
                          "/tests/plugins/libtwig_wrong_abi_env.so:PointMass"), 1);
    cr_expect(strstr(slurp("err.txt"), "ABI version 999") != NULL, "%s", slurp("err.txt"));
}
