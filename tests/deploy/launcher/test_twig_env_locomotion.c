/* `twig env` (deploy/launcher/twig_env.c) on Walker2d-v4, Ant-v4 and Humanoid-v4: the CSV columns
 * documented in docs/envs.md and the spec's zero-action episodes from the initial pose */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define TWIG TWIG_BIN_DIR "/deploy/twig"
#define CSV_MAX (4 << 20)

typedef struct csv_run {
    char *text;         /* stdout, NUL-terminated, owned */
    int lines;
    int status;         /* exit status */
} csv_run;

/* runs `twig env ID --policy zero --reset-noise-scale 0` and keeps its stdout */
static csv_run run_zero_episode(const char *id)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "%s env %s --policy zero --reset-noise-scale 0", TWIG, id);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p, "%s", cmd);
    csv_run r = {.text = malloc(CSV_MAX)};
    cr_assert_not_null(r.text);
    size_t n = fread(r.text, 1, CSV_MAX - 1, p);
    r.text[n] = '\0';
    int st = pclose(p);
    cr_assert(WIFEXITED(st), "%s did not exit normally", cmd);
    r.status = WEXITSTATUS(st);
    for (size_t i = 0; i < n; i++) {
        r.lines += r.text[i] == '\n';
    }
    return r;
}

/* field k (0-based) of the last line, copied into out */
static void last_field(char *out, size_t cap, const char *csv, int k)
{
    size_t len = strlen(csv);
    cr_assert_gt(len, 1);
    const char *start = csv + len - 1;
    while (start > csv && start[-1] != '\n') {
        start--;
    }
    for (int i = 0; i < k; i++) {
        start = strchr(start, ',');
        cr_assert_not_null(start, "line has fewer than %d fields", k + 1);
        start++;
    }
    size_t n = strcspn(start, ",\n");
    cr_assert_lt(n, cap);
    memcpy(out, start, n);
    out[n] = '\0';
}

/* the header has step, n_obs obs columns, n_act act columns, reward, the components, flags */
static void expect_header(const char *csv, int n_obs, int n_act, const char *components)
{
    char want[8192];
    size_t o = (size_t)snprintf(want, sizeof(want), "step");
    for (int i = 0; i < n_obs; i++) {
        o += (size_t)snprintf(want + o, sizeof(want) - o, ",obs_%d", i);
    }
    for (int i = 0; i < n_act; i++) {
        o += (size_t)snprintf(want + o, sizeof(want) - o, ",act_%d", i);
    }
    snprintf(want + o, sizeof(want) - o, ",reward,%s,terminated,truncated\n", components);
    cr_expect_eq(strncmp(csv, want, strlen(want)), 0, "header differs: %.200s", csv);
}

Test(twig_env_locomotion, walker2d_falls_at_step_131, .timeout = 60)
{
    csv_run r = run_zero_episode("Walker2d-v4");
    cr_assert_eq(r.status, 0);
    expect_header(r.text, 17, 6, "reward_forward,reward_survive,reward_ctrl");
    cr_expect_eq(r.lines, 1 + 1 + 131);     /* header, reset row, steps */
    char f[64];
    last_field(f, sizeof(f), r.text, 0);
    cr_expect_str_eq(f, "131");
    last_field(f, sizeof(f), r.text, 1 + 17 + 6 + 1 + 3);
    cr_expect_str_eq(f, "1", "terminated");
    last_field(f, sizeof(f), r.text, 2);
    cr_expect(fabs(atof(f) + 1.032) < 1e-3, "angle %s", f);
    free(r.text);
}

Test(twig_env_locomotion, ant_runs_to_the_time_limit, .timeout = 60)
{
    csv_run r = run_zero_episode("Ant-v4");
    cr_assert_eq(r.status, 0);
    expect_header(r.text, 27, 8, "reward_forward,reward_survive,reward_ctrl");
    cr_expect_eq(r.lines, 1 + 1 + 1000);
    char f[64];
    last_field(f, sizeof(f), r.text, 1 + 27 + 8 + 1 + 3);
    cr_expect_str_eq(f, "0", "terminated");
    last_field(f, sizeof(f), r.text, 1 + 27 + 8 + 1 + 3 + 1);
    cr_expect_str_eq(f, "1", "truncated");
    free(r.text);
}

Test(twig_env_locomotion, humanoid_falls_at_step_40, .timeout = 60)
{
    csv_run r = run_zero_episode("Humanoid-v4");
    cr_assert_eq(r.status, 0);
    expect_header(r.text, 376, 17, "reward_linvel,reward_alive,reward_quadctrl");
    cr_expect_eq(r.lines, 1 + 1 + 40);
    char f[64];
    last_field(f, sizeof(f), r.text, 1);
    cr_expect(fabs(atof(f) - 0.996) < 1e-3, "z %s", f);
    last_field(f, sizeof(f), r.text, 1 + 376 + 17 + 1 + 3);
    cr_expect_str_eq(f, "1", "terminated");
    /* reset row: z 1.4 (as float, printed %.9g), then the identity quaternion */
    cr_expect_not_null(strstr(r.text, "\n0,1.39999998,1,0,0,0,"), "reset row");
    free(r.text);
}
