/* the standalone loaders of docs/loaders (twig_policy.h in C, twig_policy.py with numpy)
 * against twig's own forward pass (policy_act, deterministic) on 1,000 random observations:
 * at most 1e-5 apart; and both refuse a damaged file naming the field */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/base/err.h"
#include "common/base/rng.h"
#include "common/nn/policy_file.h"

#define DRIVER TWIG_BIN_DIR "/tests/docs/loader_driver"
#define PYTHON "/usr/bin/python3"
#define CHECK_PY TWIG_SRC_DIR "/tests/docs/loader_check.py"
#define N_OBS_ROWS 1000
enum { O = 11, A = 3, H = 256 };

static char tmpdir[64];
static char err_text[8192];

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/twig-test-loaders-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    cr_expect_eq(system(cmd), 0);
}

TestSuite(loaders, .init = setup, .fini = teardown, .timeout = 120);

/* a Hopper-sized policy with weights of a trained net's scale, written to tmpdir/p.twigp,
 * and N_OBS_ROWS observations to tmpdir/obs.f32; twig's actions into want */
static void make_inputs(float *want)
{
    const float low[A] = {-1.0f, -0.4f, -2.0f}, high[A] = {1.0f, 0.4f, 3.0f};
    policy_shape sh = {O, A, H, low, high};
    policy_t p = {0};
    cr_assert_eq(policy_init(&p, &sh, N_OBS_ROWS), 0, "%s", err_msg());
    rng_t rng;
    rng_seed(&rng, 17);
    for (int l = 0; l < 3; l++) {
        int in = p.actor.sizes[l], out = p.actor.sizes[l + 1];
        rng_fill_normal(&rng, p.actor.w[l], in * out);
        rng_fill_normal(&rng, p.actor.b[l], out);
        for (int i = 0; i < in * out; i++) {
            p.actor.w[l][i] *= 1.5f / sqrtf((float)in);
        }
        for (int i = 0; i < out; i++) {
            p.actor.b[l][i] *= 0.1f;
        }
    }
    policy_file_meta m = {.policy_version = 5, .updates = 777};
    snprintf(m.env_id, sizeof m.env_id, "Hopper-v4");
    char path[128];
    snprintf(path, sizeof path, "%s/p.twigp", tmpdir);
    cr_assert_eq(policy_file_write(path, &p, &m), 0, "%s", err_msg());

    static float obs[N_OBS_ROWS * O];
    rng_fill_normal(&rng, obs, N_OBS_ROWS * O);
    for (int i = 0; i < N_OBS_ROWS * O; i++) {
        obs[i] *= 2.0f;
    }
    snprintf(path, sizeof path, "%s/obs.f32", tmpdir);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(obs, sizeof(float), N_OBS_ROWS * O, f), (size_t)N_OBS_ROWS * O);
    fclose(f);
    policy_act(&p, NULL, want, obs, N_OBS_ROWS, true);
    policy_free(&p);
}

/* runs `prog POLICY obs.f32 N out.f32` (stderr into err_text); its exit status */
static int run_loader(const char *prog, const char *policy)
{
    char cmd[1024], p[128];
    snprintf(cmd, sizeof cmd, "%s %s %s/obs.f32 %d %s/out.f32 > /dev/null 2> %s/err.txt", prog,
             policy, tmpdir, N_OBS_ROWS, tmpdir, tmpdir);
    int st = system(cmd);
    cr_assert(WIFEXITED(st), "%s", cmd);
    snprintf(p, sizeof p, "%s/err.txt", tmpdir);
    FILE *f = fopen(p, "r");
    size_t n = f ? fread(err_text, 1, sizeof err_text - 1, f) : 0;
    err_text[n] = '\0';
    if (f) {
        fclose(f);
    }
    return WEXITSTATUS(st);
}

static void expect_close(const float *want)
{
    static float got[N_OBS_ROWS * A];
    char p[128];
    snprintf(p, sizeof p, "%s/out.f32", tmpdir);
    FILE *f = fopen(p, "rb");
    cr_assert_not_null(f);
    cr_assert_eq(fread(got, sizeof(float), N_OBS_ROWS * A, f), (size_t)N_OBS_ROWS * A);
    fclose(f);
    double worst = 0.0, spread = 0.0;
    for (int i = 0; i < N_OBS_ROWS * A; i++) {
        worst = fmax(worst, fabs((double)got[i] - want[i]));
        spread = fmax(spread, fabs((double)want[i]));
    }
    cr_expect_leq(worst, 1e-5, "max abs difference %g", worst);
    cr_expect_gt(spread, 0.1, "degenerate actions");
}

static void write_damaged(const char *name, long cut, long flip_at)
{
    char src[128], dst[128];
    snprintf(src, sizeof src, "%s/p.twigp", tmpdir);
    snprintf(dst, sizeof dst, "%s/%s", tmpdir, name);
    FILE *f = fopen(src, "rb");
    cr_assert_not_null(f);
    static uint8_t buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    if (cut >= 0) {
        n = (size_t)cut;
    }
    if (flip_at >= 0) {
        buf[flip_at] ^= 0x40;
    }
    f = fopen(dst, "wb");
    fwrite(buf, 1, n, f);
    fclose(f);
}

static void check_loader(const char *prog)
{
    static float want[N_OBS_ROWS * A];
    make_inputs(want);
    char p[128];
    snprintf(p, sizeof p, "%s/p.twigp", tmpdir);
    cr_assert_eq(run_loader(prog, p), 0, "%s", err_text);
    expect_close(want);

    write_damaged("cut.twigp", 300, -1);
    snprintf(p, sizeof p, "%s/cut.twigp", tmpdir);
    cr_expect_eq(run_loader(prog, p), 1);
    cr_expect_not_null(strstr(err_text, "truncated"), "%s", err_text);
    write_damaged("flip.twigp", -1, 5000);
    snprintf(p, sizeof p, "%s/flip.twigp", tmpdir);
    cr_expect_eq(run_loader(prog, p), 1);
    cr_expect_not_null(strstr(err_text, "crc32c"), "%s", err_text);
    write_damaged("magic.twigp", -1, 2);
    snprintf(p, sizeof p, "%s/magic.twigp", tmpdir);
    cr_expect_eq(run_loader(prog, p), 1);
    cr_expect_not_null(strstr(err_text, "magic"), "%s", err_text);
    write_damaged("nobs.twigp", -1, 16 + 9 + 16 + 2); /* n_obs byte 2 (env "Hopper-v4") */
    snprintf(p, sizeof p, "%s/nobs.twigp", tmpdir);
    cr_expect_eq(run_loader(prog, p), 1);
    cr_expect_not_null(strstr(err_text, "n_obs"), "%s", err_text);
}

Test(loaders, c_header_matches_twig_on_1000_observations)
{
    check_loader(DRIVER);
}

Test(loaders, numpy_loader_matches_twig_on_1000_observations)
{
    cr_assert_eq(access(PYTHON, X_OK), 0, "%s is missing (deploy/install-deps.sh)", PYTHON);
    cr_assert_eq(system(PYTHON " -c 'import numpy' 2> /dev/null"), 0,
                 "numpy is missing: apt-get install python3-numpy (deploy/install-deps.sh)");
    check_loader(PYTHON " " CHECK_PY);
}
