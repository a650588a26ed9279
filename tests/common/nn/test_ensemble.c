/* tests of the probabilistic dynamics ensemble: gradients, learning Pendulum-v1, elites,
 * early stopping, prediction modes, file and WeightBlob round trips, refusals */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/base/bytes.h"
#include "common/base/crc32c.h"
#include "common/nn/ensemble.h"
#include "common/base/err.h"
#include "common/base/mem.h"
#include "common/nn/nn_gemm.h"
#include "common/base/rng.h"
#include "tests/common/nn/ensemble_small.h"

static void setup(void)
{
    nn_gemm_set_threads(1);
}

TestSuite(ensemble, .init = setup);

/* ---- gradients -------------------------------------------------------------------------- */

Test(ensemble, nll_with_logvar_bounds_matches_finite_differences)
{
    enum { B = 3, J = 4 };
    rng_t r;
    rng_seed(&r, 1);
    float out[B * 2 * J], y[B * J], mx[J], mn[J];
    fill_uniform(&r, out, B * 2 * J, -1.0f, 1.0f);
    fill_uniform(&r, y, B * J, -1.0f, 1.0f);
    /* raw log-variances near and past both bounds, where the softplus bends */
    out[J + 0] = 1.2f;
    out[J + 1] = -3.5f;
    out[2 * J + J + 2] = 0.4f;
    for (int j = 0; j < J; j++) {
        mx[j] = rng_uniform_range(&r, 0.0f, 1.0f);
        mn[j] = rng_uniform_range(&r, -4.0f, -2.5f);
    }
    float dout[B * 2 * J], dmax[J] = {0}, dmin[J] = {0};
    ensemble_nll(dout, dmax, dmin, out, y, mx, mn, B, J);

    const float h = 1e-2f;
    int checked = 0;
    for (int pass = 0; pass < 3; pass++) {
        float *v = pass == 0 ? out : pass == 1 ? mx : mn;
        const float *g = pass == 0 ? dout : pass == 1 ? dmax : dmin;
        int n = pass == 0 ? B * 2 * J : J;
        for (int i = 0; i < n; i++) {
            float keep = v[i];
            v[i] = keep + h;
            double lp = ensemble_nll(NULL, NULL, NULL, out, y, mx, mn, B, J);
            v[i] = keep - h;
            double lm = ensemble_nll(NULL, NULL, NULL, out, y, mx, mn, B, J);
            v[i] = keep;
            double fd = (lp - lm) / (2.0 * h);
            cr_expect(fabs(fd - g[i]) <= 2e-4 + 2e-2 * fabs(fd),
                      "pass %d index %d: analytic %g, finite difference %g", pass, i, g[i], fd);
            checked++;
        }
    }
    cr_expect_eq(checked, B * 2 * J + 2 * J);
    /* the bounds hold: the raw 1.2 above max and -3.5 below min are pulled inside */
    cr_expect(dmax[0] != 0.0f && dmin[1] != 0.0f);
}

Test(ensemble, member_backward_matches_finite_differences)
{
    enum { B = 5 };
    ensemble_cfg cfg;
    small_cfg(&cfg);
    cfg.n_hidden = 6;
    rng_t r;
    rng_seed(&r, 2);
    ensemble_t e = {0};
    cr_assert_eq(ensemble_init(&e, &cfg, &r), 0, "%s", err_msg());
    /* a non-trivial normaliser and bounds close enough to matter */
    for (int j = 0; j < e.n_in; j++) {
        e.in_mu[j] = 0.1f * j;
        e.in_sd[j] = 1.0f + 0.2f * j;
    }
    for (int j = 0; j < e.n_out; j++) {
        e.out_sd[j] = 0.5f + 0.1f * j;
        e.max_logvar[j] = 0.3f;
        e.min_logvar[j] = -1.5f;
    }
    /* biases away from zero so their gradients are exercised at generic points */
    for (int k = 0; k < e.n_linear; k++) {
        fill_uniform(&r, e.b[k], (size_t)cfg.n_members * e.sizes[k + 1], -0.3f, 0.3f);
    }
    ensemble_train_cfg tc;
    ensemble_train_cfg_default(&tc, cfg.n_layers);
    tc.batch = B;
    ensemble_trainer_t t = {0};
    cr_assert_eq(ensemble_trainer_init(&t, &e, &tc), 0, "%s", err_msg());

    float x[3 * B * 5], y[3 * B * 4];
    fill_uniform(&r, x, sizeof x / sizeof *x, -2.0f, 2.0f);
    fill_uniform(&r, y, sizeof y / sizeof *y, -1.0f, 1.0f);
    ensemble_train_grad(&e, &t, x, y, B);
    float *g = xmalloc(e.n_params * sizeof(float));
    memcpy(g, t.grads, e.n_params * sizeof(float));

    /* every bias and bound, and a spread of weights of every layer and member */
    const float h = 3e-3f;
    int checked = 0, bad = 0;
    for (size_t i = 0; i < e.n_params; i++) {
        bool is_weight = false;
        for (int k = 0; k < e.n_linear; k++) {
            size_t o = (size_t)(e.w[k] - e.params);
            size_t n = (size_t)cfg.n_members * e.sizes[k] * e.sizes[k + 1];
            is_weight |= i >= o && i < o + n;
        }
        if (is_weight && i % 7 != 0) {
            continue;
        }
        float keep = e.params[i];
        e.params[i] = keep + h;
        double lp = ensemble_train_grad(&e, &t, x, y, B);
        e.params[i] = keep - h;
        double lm = ensemble_train_grad(&e, &t, x, y, B);
        e.params[i] = keep;
        double fd = (lp - lm) / (2.0 * h);
        if (!(fabs(fd - g[i]) <= 1e-3 + 3e-2 * fabs(fd))) {
            bad++;
            cr_expect(false, "param %zu: analytic %g, finite difference %g", i, g[i], fd);
        }
        checked++;
    }
    cr_expect_gt(checked, 100);
    cr_expect_eq(bad, 0);
    free(g);
    ensemble_trainer_free(&t);
    ensemble_free(&e);
}

Test(ensemble, too_few_transitions_are_refused)
{
    ensemble_cfg cfg;
    small_cfg(&cfg);
    rng_t r;
    rng_seed(&r, 3);
    ensemble_t e = {0};
    cr_assert_eq(ensemble_init(&e, &cfg, &r), 0);
    ensemble_train_cfg tc;
    ensemble_train_cfg_default(&tc, cfg.n_layers);
    ensemble_trainer_t t = {0};
    cr_assert_eq(ensemble_trainer_init(&t, &e, &tc), 0);
    float obs[9 * 3] = {0}, act[9 * 2] = {0}, rew[9] = {0};
    ensemble_train_report rep;
    cr_expect_eq(ensemble_train(&e, &t, &r, &rep, obs, act, obs, rew, 9), -EINVAL);
    cr_expect(strstr(err_msg(), "at least") != NULL, "%s", err_msg());
    tc.batch = 0;
    ensemble_trainer_t t2 = {0};
    cr_expect_eq(ensemble_trainer_init(&t2, &e, &tc), -EINVAL);
    cfg.n_elites = 4;
    ensemble_t e2 = {0};
    cr_expect_eq(ensemble_init(&e2, &cfg, &r), -EINVAL);
    cr_expect(strstr(err_msg(), "n_elites") != NULL, "%s", err_msg());
    ensemble_trainer_free(&t);
    ensemble_free(&e);
}

/* ---- prediction modes and steps -------------------------------------------------------- */

Test(ensemble, train_steps_lower_the_loss_on_a_fixed_batch)
{
    ensemble_cfg cfg;
    small_cfg(&cfg);
    rng_t r;
    rng_seed(&r, 4);
    ensemble_t e = {0};
    cr_assert_eq(ensemble_init(&e, &cfg, &r), 0);
    ensemble_train_cfg tc;
    ensemble_train_cfg_default(&tc, cfg.n_layers);
    tc.batch = 16;
    ensemble_trainer_t t = {0};
    cr_assert_eq(ensemble_trainer_init(&t, &e, &tc), 0);
    float x[3 * 16 * 5], y[3 * 16 * 4];
    fill_uniform(&r, x, sizeof x / sizeof *x, -1.0f, 1.0f);
    for (int i = 0; i < 3 * 16; i++) {
        for (int j = 0; j < 4; j++) {
            y[4 * i + j] = 0.5f * x[5 * i + j] - 0.2f * x[5 * i + 4];
        }
    }
    float first = ensemble_train_step(&e, &t, x, y, 16);
    float last = first;
    for (int s = 0; s < 200; s++) {
        last = ensemble_train_step(&e, &t, x, y, 16);
    }
    cr_expect(isfinite(first) && isfinite(last));
    cr_expect_lt(last, first - 1.0f, "loss %g -> %g", first, last);
    cr_expect_eq(t.steps, 201);
    cr_expect_eq(t.adam.t, 201);
    ensemble_trainer_free(&t);
    ensemble_free(&e);
}

Test(ensemble, predict_uses_elites_and_agrees_with_predict_all)
{
    rng_t r;
    rng_seed(&r, 5);
    ensemble_t e = {0};
    small_trained(&e, &r);
    enum { N = 300 };
    float obs[N * 3], act[N * 2], next[N * 3], rew[N];
    int member[N];
    fill_uniform(&r, obs, N * 3, -1.0f, 1.0f);
    fill_uniform(&r, act, N * 2, -1.0f, 1.0f);
    ensemble_work_t w = {0};
    cr_assert_eq(ensemble_work_init(&w, &e, 64), 0); /* several chunks */
    ensemble_predict(&e, &w, &r, next, rew, member, obs, act, N, false);
    float *all = xmalloc((size_t)3 * N * 3 * sizeof(float));
    float *all_rew = xmalloc((size_t)3 * N * sizeof(float));
    ensemble_predict_all(&e, &w, &r, all, all_rew, obs, act, N, false);
    int used[3] = {0};
    for (int i = 0; i < N; i++) {
        int m = member[i];
        cr_assert(m == e.elites[0] || m == e.elites[1], "row %d member %d", i, m);
        used[m]++;
        for (int j = 0; j < 3; j++) {
            cr_expect_float_eq(next[3 * i + j], all[((size_t)m * N + i) * 3 + j], 1e-5f);
        }
        cr_expect_float_eq(rew[i], all_rew[(size_t)m * N + i], 1e-5f);
    }
    /* both elites are drawn, roughly half each */
    cr_expect_gt(used[e.elites[0]], N / 4);
    cr_expect_gt(used[e.elites[1]], N / 4);
    /* sampling adds noise of the predicted scale around the mean */
    float noisy[N * 3];
    ensemble_predict(&e, &w, &r, noisy, NULL, member, obs, act, N, true);
    int differ = 0;
    for (int i = 0; i < N * 3; i++) {
        differ += noisy[i] != next[i];
        cr_expect(isfinite(noisy[i]));
    }
    cr_expect_gt(differ, N * 3 / 2);
    free(all);
    free(all_rew);
    ensemble_work_free(&w);
    ensemble_free(&e);
}

Test(ensemble, samples_follow_the_predicted_gaussian)
{
    /* last layer zero but its bias: every row predicts mean 0.3 and raw log-variance log 0.25 */
    ensemble_cfg cfg;
    small_cfg(&cfg);
    rng_t r;
    rng_seed(&r, 15);
    ensemble_t e = {0};
    cr_assert_eq(ensemble_init(&e, &cfg, &r), 0);
    const int L = e.n_linear - 1, J = e.n_out;
    memset(e.w[L], 0, (size_t)cfg.n_members * e.sizes[L] * 2 * J * sizeof(float));
    for (int m = 0; m < cfg.n_members; m++) {
        for (int j = 0; j < J; j++) {
            e.b[L][m * 2 * J + j] = 0.3f;
            e.b[L][m * 2 * J + J + j] = logf(0.25f);
        }
    }
    double raw = log(0.25), mx = e.max_logvar[0], mn = e.min_logvar[0];
    double lv1 = mx - log1p(exp(mx - raw));
    double lv = mn + log1p(exp(lv1 - mn));
    double sd = exp(0.5 * lv);

    enum { N = 20000 };
    float *obs = xcalloc((size_t)N * 3, sizeof(float));
    float *act = xcalloc((size_t)N * 2, sizeof(float));
    float *next = xmalloc((size_t)N * 3 * sizeof(float));
    float *rew = xmalloc((size_t)N * sizeof(float));
    ensemble_work_t w = {0};
    cr_assert_eq(ensemble_work_init(&w, &e, 1000), 0);
    ensemble_predict(&e, &w, &r, next, rew, NULL, obs, act, N, true);
    double sum = 0.0, sq = 0.0, inside = 0.0;
    const int n = N * 4;
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < 4; j++) {
            double z = ((j < 3 ? next[3 * i + j] : rew[i]) - 0.3) / sd;
            sum += z;
            sq += z * z;
            inside += fabs(z) < 1.0;
        }
    }
    double mean = sum / n, var = sq / n - mean * mean;
    cr_expect_lt(fabs(mean), 4.0 / sqrt(n), "mean %g", mean);
    cr_expect_lt(fabs(var - 1.0), 0.03, "variance %g", var);
    cr_expect_lt(fabs(inside / n - 0.682689), 0.01, "P(|z| < 1) = %g", inside / n);
    free(obs);
    free(act);
    free(next);
    free(rew);
    ensemble_work_free(&w);
    ensemble_free(&e);
}

/* ---- saving ----------------------------------------------------------------------------- */

static void temp_path(char *buf, size_t n, const char *tag)
{
    snprintf(buf, n, "/tmp/twig_test_ensemble_%d_%s.bin", (int)getpid(), tag);
}

static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = xmalloc(*len);
    cr_assert_eq(fread(buf, 1, *len, f), *len);
    fclose(f);
    return buf;
}

static void write_all(const char *path, const uint8_t *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(buf, 1, len, f), len);
    fclose(f);
}

Test(ensemble, save_then_load_gives_identical_predictions)
{
    rng_t r;
    rng_seed(&r, 8);
    ensemble_t e = {0};
    small_trained(&e, &r);
    char path[256];
    temp_path(path, sizeof path, "save");
    cr_assert_eq(ensemble_save_file(&e, path), 0, "%s", err_msg());
    ensemble_t l = {0};
    cr_assert_eq(ensemble_load_file(&l, path), 0, "%s", err_msg());
    cr_expect_eq(l.n_params, e.n_params);
    cr_expect_eq(memcmp(l.params, e.params, e.n_params * sizeof(float)), 0);
    cr_expect_eq(memcmp(l.in_mu, e.in_mu, (size_t)e.n_in * sizeof(float)), 0);
    cr_expect_eq(memcmp(l.out_sd, e.out_sd, (size_t)e.n_out * sizeof(float)), 0);
    expect_same_predictions(&e, &l);
    ensemble_free(&l);
    unlink(path);
    ensemble_free(&e);
}

/* the image's layout, pinned: a change of field order, width or byte order fails here */
Test(ensemble, image_layout_is_pinned_little_endian)
{
    rng_t r;
    rng_seed(&r, 8);
    ensemble_t e = {0};
    small_trained(&e, &r);
    size_t len = ensemble_image_size(&e);
    uint8_t *img = xmalloc(len);
    ensemble_image_write(img, &e);
    const uint8_t head[48] = {
        'T', 'W', 'I', 'G', 'E', 'N', 'S', 0, /* magic */
        1, 0, 0, 0,                           /* version */
        3, 0, 0, 0, 2, 0, 0, 0,               /* n_obs, n_act */
        3, 0, 0, 0, 2, 0, 0, 0,               /* n_members, n_elites */
        16, 0, 0, 0, 2, 0, 0, 0,              /* n_hidden, n_layers */
        (uint8_t)e.cfg.learn_reward, 0, 0, 0, /* learn_reward */
        (uint8_t)e.n_params, (uint8_t)(e.n_params >> 8), (uint8_t)(e.n_params >> 16), 0,
        0, 0, 0, 0,                           /* n_params, u64 */
    };
    cr_expect_eq(memcmp(img, head, sizeof head), 0);
    uint32_t bits;
    memcpy(&bits, &e.params[0], 4);
    cr_expect_eq(img[48], (uint8_t)bits);
    cr_expect_eq(img[51], (uint8_t)(bits >> 24));
    /* the two elites as u32, then the crc */
    cr_expect_eq(img[len - 12], (uint8_t)e.elites[0]);
    cr_expect_eq(img[len - 9], 0);
    cr_expect_eq(img[len - 8], (uint8_t)e.elites[1]);
    cr_expect_eq(img[len - 5], 0);
    uint32_t crc = crc32c(img, len - 4);
    cr_expect_eq(img[len - 4], (uint8_t)crc);
    cr_expect_eq(img[len - 1], (uint8_t)(crc >> 24));
    free(img);
    ensemble_free(&e);
}

Test(ensemble, corrupt_truncated_or_foreign_file_is_refused)
{
    rng_t r;
    rng_seed(&r, 9);
    ensemble_t e = {0};
    small_trained(&e, &r);
    char path[256];
    temp_path(path, sizeof path, "corrupt");
    cr_assert_eq(ensemble_save_file(&e, path), 0, "%s", err_msg());
    size_t len;
    uint8_t *good = read_all(path, &len);
    uint8_t *bad = xmalloc(len);
    ensemble_t l = {0};

    /* one flipped bit in the parameters */
    memcpy(bad, good, len);
    bad[len / 2] ^= 0x10;
    write_all(path, bad, len);
    cr_expect_eq(ensemble_load_file(&l, path), TWIG_ECORRUPT);
    cr_expect(strstr(err_msg(), "checksum") != NULL, "%s", err_msg());
    cr_expect_null(l.params);

    /* truncated */
    write_all(path, good, len - 9);
    cr_expect_eq(ensemble_load_file(&l, path), TWIG_ECORRUPT);
    write_all(path, good, 10);
    cr_expect_eq(ensemble_load_file(&l, path), TWIG_ECORRUPT);

    /* another file type */
    memcpy(bad, good, len);
    memcpy(bad, "TWIGNN\0\0", 8);
    write_all(path, bad, len);
    cr_expect_eq(ensemble_load_file(&l, path), TWIG_ECORRUPT);
    cr_expect(strstr(err_msg(), "magic") != NULL, "%s", err_msg());

    /* a future version, checksum intact */
    memcpy(bad, good, len);
    uint32_t v = ENSEMBLE_FILE_VERSION + 1, crc;
    le32_put(bad + 8, v);
    crc = crc32c_update(0, bad, len - 4);
    le32_put(bad + len - 4, crc);
    cr_expect_eq(ensemble_image_read(&l, bad, len), TWIG_EVERSION);

    /* a NaN parameter behind a valid checksum */
    memcpy(bad, good, len);
    float nan = NAN;
    memcpy(bad + 48 + 4 * 5, &nan, 4);
    crc = crc32c_update(0, bad, len - 4);
    le32_put(bad + len - 4, crc);
    cr_expect_eq(ensemble_image_read(&l, bad, len), -EINVAL);
    cr_expect(strstr(err_msg(), "not finite") != NULL, "%s", err_msg());

    /* a valid checksum over a header claiming the largest dimensions: refused by size,
     * before anything that large is allocated */
    uint8_t big[64] = {0};
    memcpy(big, "TWIGENS\0", 8);
    uint32_t hdr[8] = {ENSEMBLE_FILE_VERSION, 4096, 4096, 64, 5, 4096, 8, 1};
    for (int i = 0; i < 8; i++) {
        le32_put(big + 8 + 4 * i, hdr[i]);
    }
    crc = crc32c_update(0, big, sizeof big - 4);
    le32_put(big + sizeof big - 4, crc);
    cr_expect_eq(ensemble_image_read(&l, big, sizeof big), TWIG_ECORRUPT);
    cr_expect(strstr(err_msg(), "does not match") != NULL, "%s", err_msg());
    cr_expect_null(l.params);

    /* missing file */
    unlink(path);
    cr_expect_eq(ensemble_load_file(&l, path), -ENOENT);
    cr_expect_null(l.params);

    /* and the good image still loads */
    cr_expect_eq(ensemble_image_read(&l, good, len), 0, "%s", err_msg());
    ensemble_free(&l);
    free(good);
    free(bad);
    ensemble_free(&e);
}

Test(ensemble, resumed_training_continues_bit_for_bit)
{
    /* model + trainer saved after some steps and loaded into fresh structs: the next step
     * gives identical parameters to the uninterrupted run */
    ensemble_cfg cfg;
    small_cfg(&cfg);
    rng_t r;
    rng_seed(&r, 16);
    ensemble_t e = {0};
    cr_assert_eq(ensemble_init(&e, &cfg, &r), 0);
    ensemble_train_cfg tc;
    ensemble_train_cfg_default(&tc, cfg.n_layers);
    tc.batch = 8;
    ensemble_trainer_t t = {0};
    cr_assert_eq(ensemble_trainer_init(&t, &e, &tc), 0);
    float x[3 * 8 * 5], y[3 * 8 * 4];
    fill_uniform(&r, x, sizeof x / sizeof *x, -1.0f, 1.0f);
    fill_uniform(&r, y, sizeof y / sizeof *y, -1.0f, 1.0f);
    for (int s = 0; s < 5; s++) {
        ensemble_train_step(&e, &t, x, y, 8);
    }
    char mpath[256], tpath[256];
    temp_path(mpath, sizeof mpath, "resume_model");
    temp_path(tpath, sizeof tpath, "resume_trainer");
    cr_assert_eq(ensemble_save_file(&e, mpath), 0, "%s", err_msg());
    cr_assert_eq(ensemble_trainer_save_file(&e, &t, tpath), 0, "%s", err_msg());

    ensemble_t e2 = {0};
    cr_assert_eq(ensemble_load_file(&e2, mpath), 0, "%s", err_msg());
    ensemble_trainer_t t2 = {0};
    cr_assert_eq(ensemble_trainer_init(&t2, &e2, &tc), 0);
    cr_assert_eq(ensemble_trainer_load_file(&t2, &e2, tpath), 0, "%s", err_msg());
    cr_expect_eq(t2.steps, 5);
    cr_expect_eq(t2.adam.t, 5);
    ensemble_train_step(&e, &t, x, y, 8);
    ensemble_train_step(&e2, &t2, x, y, 8);
    cr_expect_eq(memcmp(e.params, e2.params, e.n_params * sizeof(float)), 0);

    /* damaged, or for another model: refused, trainer untouched */
    size_t len;
    uint8_t *img = read_all(tpath, &len);
    img[len / 2] ^= 4;
    cr_expect_eq(ensemble_trainer_image_read(&t2, &e2, img, len), TWIG_ECORRUPT);
    img[len / 2] ^= 4;
    cr_expect_eq(ensemble_trainer_image_read(&t2, &e2, img, len), 0, "%s", err_msg());
    cr_expect_eq(t2.steps, 5);
    ensemble_cfg other = cfg;
    other.n_hidden = 17;
    ensemble_t e3 = {0};
    cr_assert_eq(ensemble_init(&e3, &other, &r), 0);
    ensemble_trainer_t t3 = {0};
    cr_assert_eq(ensemble_trainer_init(&t3, &e3, &tc), 0);
    cr_expect_eq(ensemble_trainer_image_read(&t3, &e3, img, len), TWIG_EMISMATCH);
    cr_expect_eq(t3.steps, 0);
    free(img);
    unlink(mpath);
    unlink(tpath);
    ensemble_trainer_free(&t3);
    ensemble_free(&e3);
    ensemble_trainer_free(&t2);
    ensemble_free(&e2);
    ensemble_trainer_free(&t);
    ensemble_free(&e);
}

/* ---- warm starts under a refitted normaliser ------------------------------------------- */

/* every member's mean and sampled next state and reward on rows (sampling with rng seed 77,
 * so equal outputs mean equal means and equal variances) */
static void predict_fixed(const ensemble_t *e, float *mean, float *sample, const float *obs,
                          const float *act, int N)
{
    const int E = e->cfg.n_members;
    ensemble_work_t w = {0};
    cr_assert_eq(ensemble_work_init(&w, e, 64), 0);
    rng_t r;
    rng_seed(&r, 77);
    ensemble_predict_all(e, &w, &r, mean, mean + (size_t)E * N * 3, obs, act, N, false);
    rng_seed(&r, 77);
    ensemble_predict_all(e, &w, &r, sample, sample + (size_t)E * N * 3, obs, act, N, true);
    ensemble_work_free(&w);
}

/* largest |a - b| / (1 + |a|) */
static float max_rel_diff(const float *a, const float *b, size_t n)
{
    float worst = 0.0f;
    for (size_t i = 0; i < n; i++) {
        float d = fabsf(a[i] - b[i]) / (1.0f + fabsf(a[i]));
        worst = d > worst ? d : worst;
    }
    return worst;
}

/* N rows of the small ensemble's toy dynamics with inputs drawn from [lo, hi] */
static void toy_rows(rng_t *r, float *obs, float *act, float *next, float *rew, int N, float lo,
                     float hi)
{
    fill_uniform(r, obs, (size_t)N * 3, lo, hi);
    fill_uniform(r, act, (size_t)N * 2, lo, hi);
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < 3; j++) {
            next[3 * i + j] = 0.9f * obs[3 * i + j] + 0.1f * act[2 * i + (j & 1)];
        }
        rew[i] = -obs[3 * i] * obs[3 * i];
    }
}

Test(ensemble, renormalise_keeps_every_members_mean_and_variance)
{
    rng_t r;
    rng_seed(&r, 21);
    ensemble_t e = {0};
    small_trained(&e, &r);
    enum { N = 200, E = 3, OUT = E * N * 4 };
    float obs[N * 3], act[N * 2];
    fill_uniform(&r, obs, N * 3, -2.0f, 2.0f);
    fill_uniform(&r, act, N * 2, -2.0f, 2.0f);
    float mean0[OUT], sample0[OUT], mean1[OUT], sample1[OUT];
    predict_fixed(&e, mean0, sample0, obs, act, N);

    /* statistics far from the fitted ones: shifted means, spreads from 0.2x to 5x */
    const int I = e.n_in, J = e.n_out;
    float old[2 * (5 + 4)];
    memcpy(old, e.in_mu, (size_t)I * sizeof(float));
    memcpy(old + I, e.in_sd, (size_t)I * sizeof(float));
    memcpy(old + 2 * I, e.out_mu, (size_t)J * sizeof(float));
    memcpy(old + 2 * I + J, e.out_sd, (size_t)J * sizeof(float));
    float w00 = e.w[0][0], lvmax = e.max_logvar[0];
    for (int i = 0; i < I; i++) {
        e.in_mu[i] += rng_uniform_range(&r, -3.0f, 3.0f);
        e.in_sd[i] *= rng_uniform_range(&r, 0.2f, 5.0f);
    }
    for (int j = 0; j < J; j++) {
        e.out_mu[j] += rng_uniform_range(&r, -3.0f, 3.0f);
        e.out_sd[j] *= rng_uniform_range(&r, 0.2f, 5.0f);
    }
    ensemble_renormalise(&e, old, old + I, old + 2 * I, old + 2 * I + J);
    cr_expect_neq(e.w[0][0], w00, "the first layer was rewritten");
    cr_expect_neq(e.max_logvar[0], lvmax, "the log-variance bounds moved");

    predict_fixed(&e, mean1, sample1, obs, act, N);
    cr_expect_lt(max_rel_diff(mean0, mean1, OUT), 1e-4f, "means kept");
    cr_expect_lt(max_rel_diff(sample0, sample1, OUT), 1e-4f, "samples (so variances) kept");
    ensemble_free(&e);
}

/* a continued fit whose data moved the normaliser: with keep_function the first epoch starts
 * from the previous function (with lr 1e-7 it ends there too); without, it starts from the
 * old weights read under new statistics, a different function */
static float continued_fit_drift(bool keep_function)
{
    rng_t r;
    rng_seed(&r, 33);
    ensemble_t e = {0};
    small_trained(&e, &r);
    enum { N = 400, E = 3, OUT = E * N * 4 };
    float *obs = xmalloc(N * 3 * sizeof(float)), *act = xmalloc(N * 2 * sizeof(float));
    float *next = xmalloc(N * 3 * sizeof(float)), *rew = xmalloc(N * sizeof(float));
    toy_rows(&r, obs, act, next, rew, N, -3.0f, 2.0f); /* small_trained drew [-1, 1] */
    float *before = xmalloc(2 * OUT * sizeof(float)), *after = xmalloc(2 * OUT * sizeof(float));
    predict_fixed(&e, before, before + OUT, obs, act, N);

    ensemble_train_cfg tc;
    ensemble_train_cfg_default(&tc, e.cfg.n_layers);
    tc.batch = 32;
    tc.max_epochs = 1;
    tc.lr = 1e-7f;
    tc.keep_function = keep_function;
    ensemble_trainer_t t = {0};
    cr_assert_eq(ensemble_trainer_init(&t, &e, &tc), 0);
    ensemble_train_report rep;
    cr_assert_eq(ensemble_train(&e, &t, &r, &rep, obs, act, next, rew, N), 0, "%s", err_msg());
    cr_assert_eq(rep.epochs, 1);
    predict_fixed(&e, after, after + OUT, obs, act, N);
    float drift = max_rel_diff(before, after, OUT);
    ensemble_trainer_free(&t);
    ensemble_free(&e);
    free(before);
    free(after);
    free(obs);
    free(act);
    free(next);
    free(rew);
    return drift;
}

Test(ensemble, continued_fit_keeps_the_function_across_a_normaliser_refit)
{
    float kept = continued_fit_drift(true);
    float moved = continued_fit_drift(false);
    cr_expect_lt(kept, 1e-3f, "keep_function: the function moved by %g", kept);
    cr_expect_gt(moved, 0.1f, "without keep_function the refit moves the function (%g)", moved);
}
