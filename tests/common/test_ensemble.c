/* tests of the probabilistic dynamics ensemble: gradients, learning Pendulum-v1, elites,
 * early stopping, prediction modes, file and WeightBlob round trips, refusals */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/crc32c.h"
#include "common/ensemble.h"
#include "common/env.h"
#include "common/err.h"
#include "common/mem.h"
#include "common/nn_gemm.h"
#include "common/rng.h"

static void setup(void)
{
    nn_gemm_set_threads(1);
}

TestSuite(ensemble, .init = setup);

/* a small ensemble for the fast tests: 3 members, 2 elites, 2 x 16, O 3, A 2 */
static void small_cfg(ensemble_cfg *c)
{
    ensemble_cfg_default(c, 3, 2);
    c->n_members = 3;
    c->n_elites = 2;
    c->n_hidden = 16;
    c->n_layers = 2;
}

static void fill_uniform(rng_t *r, float *x, size_t n, float lo, float hi)
{
    for (size_t i = 0; i < n; i++) {
        x[i] = rng_uniform_range(r, lo, hi);
    }
}

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

/* ---- Pendulum-v1 data ------------------------------------------------------------------ */

typedef struct dataset {
    int n;
    float *obs, *act, *next_obs, *reward;
} dataset;

/* random-action Pendulum-v1 transitions from the env module, episodes of 200 steps */
static dataset pendulum_data(int n, uint64_t seed)
{
    env_t *env = NULL;
    cr_assert_eq(env_make(&env, "Pendulum-v1"), 0, "%s", err_msg());
    dataset d = {.n = n};
    d.obs = xmalloc((size_t)n * 3 * sizeof(float));
    d.act = xmalloc((size_t)n * sizeof(float));
    d.next_obs = xmalloc((size_t)n * 3 * sizeof(float));
    d.reward = xmalloc((size_t)n * sizeof(float));
    rng_t r;
    rng_seed(&r, seed);
    float o[3], no[3];
    env_step_result res = {.next_obs = no};
    bool need_reset = true;
    uint64_t episode = 0;
    for (int i = 0; i < n; i++) {
        if (need_reset) {
            env_reset(env, seed * 1000 + episode++, o);
        }
        float a = rng_uniform_range(&r, -2.0f, 2.0f);
        cr_assert_eq(env_step(env, &a, &res), 0);
        memcpy(d.obs + 3 * (size_t)i, o, sizeof o);
        d.act[i] = a;
        memcpy(d.next_obs + 3 * (size_t)i, no, sizeof no);
        d.reward[i] = res.reward;
        memcpy(o, no, sizeof o);
        need_reset = res.terminated || res.truncated;
    }
    env_free(env);
    return d;
}

static void dataset_free(dataset *d)
{
    free(d->obs);
    free(d->act);
    free(d->next_obs);
    free(d->reward);
}

/* a trained Pendulum model, shared by the tests below through a file written once per test */
static void train_pendulum(ensemble_t *e, ensemble_train_report *rep, const dataset *d,
                           int max_epochs)
{
    ensemble_cfg cfg;
    ensemble_cfg_default(&cfg, 3, 1);
    rng_t r;
    rng_seed(&r, 7);
    cr_assert_eq(ensemble_init(e, &cfg, &r), 0, "%s", err_msg());
    ensemble_train_cfg tc;
    ensemble_train_cfg_default(&tc, cfg.n_layers);
    tc.max_epochs = max_epochs;
    ensemble_trainer_t t = {0};
    cr_assert_eq(ensemble_trainer_init(&t, e, &tc), 0, "%s", err_msg());
    int rc = ensemble_train(e, &t, &r, rep, d->obs, d->act, d->next_obs, d->reward, d->n);
    cr_assert_eq(rc, 0, "%s", err_msg());
    ensemble_trainer_free(&t);
}

Test(ensemble, learns_pendulum_picks_elites_and_stops_early, .timeout = 600)
{
    dataset train = pendulum_data(5000, 11);
    dataset test = pendulum_data(1000, 12);
    ensemble_t e = {0};
    ensemble_train_report rep;
    const int max_epochs = 400;
    train_pendulum(&e, &rep, &train, max_epochs);

    /* holdout min(20 %, 5000) and early stopping before the bound */
    cr_expect_eq(rep.n_holdout, 1000);
    cr_expect_eq(rep.n_train, 4000);
    cr_expect(rep.stopped_early, "ran all %d epochs", rep.epochs);
    cr_expect_lt(rep.epochs, max_epochs);
    cr_expect_geq(rep.epochs, 5);
    cr_expect_eq(rep.steps, (int64_t)rep.epochs * 16);
    cr_log_info("pendulum: %d epochs, train loss %.4f, elite holdout mse %.5f", rep.epochs,
                rep.train_loss, rep.holdout_mse_elites);

    /* elites are the members with the lowest holdout error, best first */
    bool is_elite[7] = {false};
    for (int i = 0; i < e.cfg.n_elites; i++) {
        is_elite[e.elites[i]] = true;
        if (i > 0) {
            cr_expect_leq(e.holdout_mse[e.elites[i - 1]], e.holdout_mse[e.elites[i]]);
        }
    }
    for (int m = 0; m < 7; m++) {
        cr_expect(isfinite(e.holdout_mse[m]));
        for (int i = 0; i < e.cfg.n_elites && !is_elite[m]; i++) {
            cr_expect_leq(e.holdout_mse[e.elites[i]], e.holdout_mse[m]);
        }
    }

    /* held-out next states: normalised MSE of the mean prediction against "no change" */
    ensemble_work_t w = {0};
    cr_assert_eq(ensemble_work_init(&w, &e, 512), 0);
    float *pred = xmalloc((size_t)test.n * 3 * sizeof(float));
    float *rew = xmalloc((size_t)test.n * sizeof(float));
    int *member = xmalloc((size_t)test.n * sizeof(int));
    rng_t r;
    rng_seed(&r, 99);
    ensemble_predict(&e, &w, &r, pred, rew, member, test.obs, test.act, test.n, false);
    double model = 0.0, still = 0.0, rew_model = 0.0, rew_var = 0.0, rew_mean = 0.0;
    for (int i = 0; i < test.n; i++) {
        rew_mean += test.reward[i] / test.n;
    }
    for (int j = 0; j < 3; j++) {
        double mean = 0.0, var = 0.0, sm = 0.0, ss = 0.0;
        for (int i = 0; i < test.n; i++) {
            mean += test.next_obs[3 * i + j] / test.n;
        }
        for (int i = 0; i < test.n; i++) {
            double t = test.next_obs[3 * i + j];
            var += (t - mean) * (t - mean) / test.n;
            sm += (pred[3 * i + j] - t) * (pred[3 * i + j] - t) / test.n;
            ss += (test.obs[3 * i + j] - t) * (test.obs[3 * i + j] - t) / test.n;
        }
        model += sm / var;
        still += ss / var;
    }
    for (int i = 0; i < test.n; i++) {
        rew_model += (rew[i] - test.reward[i]) * (rew[i] - test.reward[i]) / test.n;
        rew_var += (test.reward[i] - rew_mean) * (test.reward[i] - rew_mean) / test.n;
    }
    cr_log_info("normalised mse: model %.3g, no change %.3g; reward mse / var %.3g", model,
                still, rew_model / rew_var);
    cr_expect_lt(model, 0.05 * still, "model %g vs no change %g", model, still);
    cr_expect_lt(rew_model, 0.05 * rew_var, "reward mse %g vs variance %g", rew_model, rew_var);
    for (int i = 0; i < test.n; i++) {
        cr_expect(is_elite[member[i]], "row %d used member %d, not an elite", i, member[i]);
    }

    /* sampled predictions spread around the mean by the predicted noise, not wildly */
    ensemble_predict(&e, &w, &r, pred, rew, member, test.obs, test.act, test.n, true);
    double sampled = 0.0;
    for (int i = 0; i < 3 * test.n; i++) {
        sampled += (pred[i] - test.next_obs[i]) * (pred[i] - test.next_obs[i]);
    }
    cr_expect(isfinite(sampled));
    free(pred);
    free(rew);
    free(member);
    ensemble_work_free(&w);
    ensemble_free(&e);
    dataset_free(&train);
    dataset_free(&test);
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

/* a small model with a fitted normaliser and a few training steps: non-trivial outputs */
static void small_trained(ensemble_t *e, rng_t *r)
{
    ensemble_cfg cfg;
    small_cfg(&cfg);
    cr_assert_eq(ensemble_init(e, &cfg, r), 0);
    enum { N = 200 };
    float obs[N * 3], act[N * 2], next[N * 3], rew[N];
    fill_uniform(r, obs, N * 3, -1.0f, 1.0f);
    fill_uniform(r, act, N * 2, -1.0f, 1.0f);
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < 3; j++) {
            next[3 * i + j] = 0.9f * obs[3 * i + j] + 0.1f * act[2 * i + (j & 1)];
        }
        rew[i] = -obs[3 * i] * obs[3 * i];
    }
    ensemble_train_cfg tc;
    ensemble_train_cfg_default(&tc, cfg.n_layers);
    tc.batch = 32;
    tc.max_epochs = 3;
    ensemble_trainer_t t = {0};
    cr_assert_eq(ensemble_trainer_init(&t, e, &tc), 0);
    ensemble_train_report rep;
    cr_assert_eq(ensemble_train(e, &t, r, &rep, obs, act, next, rew, N), 0, "%s", err_msg());
    cr_assert_eq(rep.epochs, 3);
    cr_assert_eq(rep.n_holdout, 40);
    ensemble_trainer_free(&t);
}

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

/* ---- saving ----------------------------------------------------------------------------- */

static void expect_same_predictions(const ensemble_t *a, const ensemble_t *b)
{
    enum { N = 100 };
    rng_t r;
    rng_seed(&r, 6);
    float obs[N * 3], act[N * 2];
    fill_uniform(&r, obs, N * 3, -1.0f, 1.0f);
    fill_uniform(&r, act, N * 2, -1.0f, 1.0f);
    float na[N * 3], nb[N * 3], ra[N], rb[N];
    int ma[N], mb[N];
    ensemble_work_t wa = {0}, wb = {0};
    cr_assert_eq(ensemble_work_init(&wa, a, 32), 0);
    cr_assert_eq(ensemble_work_init(&wb, b, 32), 0);
    rng_t s1, s2;
    rng_seed(&s1, 77);
    rng_seed(&s2, 77);
    ensemble_predict(a, &wa, &s1, na, ra, ma, obs, act, N, true);
    ensemble_predict(b, &wb, &s2, nb, rb, mb, obs, act, N, true);
    cr_expect_eq(memcmp(na, nb, sizeof na), 0);
    cr_expect_eq(memcmp(ra, rb, sizeof ra), 0);
    cr_expect_eq(memcmp(ma, mb, sizeof ma), 0);
    cr_expect_eq(memcmp(a->elites, b->elites, (size_t)a->cfg.n_elites * sizeof(int)), 0);
    cr_expect_eq(memcmp(a->holdout_mse, b->holdout_mse, (size_t)a->cfg.n_members * 4), 0);
    ensemble_work_free(&wa);
    ensemble_work_free(&wb);
}

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
    memcpy(bad + 8, &v, 4);
    crc = crc32c_update(0, bad, len - 4);
    memcpy(bad + len - 4, &crc, 4);
    cr_expect_eq(ensemble_image_read(&l, bad, len), TWIG_EVERSION);

    /* a NaN parameter behind a valid checksum */
    memcpy(bad, good, len);
    float nan = NAN;
    memcpy(bad + 48 + 4 * 5, &nan, 4);
    crc = crc32c_update(0, bad, len - 4);
    memcpy(bad + len - 4, &crc, 4);
    cr_expect_eq(ensemble_image_read(&l, bad, len), -EINVAL);
    cr_expect(strstr(err_msg(), "not finite") != NULL, "%s", err_msg());

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

Test(ensemble, weight_blob_round_trip_and_refusals)
{
    rng_t r;
    rng_seed(&r, 10);
    ensemble_t e = {0};
    small_trained(&e, &r);
    ensemble_blob_t *b = xmalloc(sizeof *b);
    ensemble_blob_init(b, &e, 42, "Test-v0");
    size_t n = twig__v1__weight_blob__get_packed_size(&b->msg);
    uint8_t *wire = xmalloc(n);
    cr_assert_eq(twig__v1__weight_blob__pack(&b->msg, wire), n);
    ensemble_blob_free(b);

    Twig__V1__WeightBlob *msg = twig__v1__weight_blob__unpack(NULL, n, wire);
    cr_assert_not_null(msg);
    cr_expect_eq(msg->kind, TWIG__V1__WEIGHT_KIND__WEIGHT_KIND_MODEL);
    cr_expect_eq(msg->version, 42);
    cr_expect_str_eq(msg->env_id, "Test-v0");
    cr_expect_eq(msg->n_stats, 4);
    bool saw_elites_stat = false;
    for (size_t i = 0; i < msg->n_stats; i++) {
        if (strcmp(msg->stats[i]->key, "holdout_mse.1") == 0) {
            cr_expect_float_eq(msg->stats[i]->value, e.holdout_mse[1], 0.0f);
        }
        saw_elites_stat |= strcmp(msg->stats[i]->key, "holdout_mse_elites") == 0;
    }
    cr_expect(saw_elites_stat);

    ensemble_t l = {0};
    cr_assert_eq(ensemble_from_blob(&l, msg), 0, "%s", err_msg());
    cr_expect_eq(l.cfg.n_members, 3);
    cr_expect_eq(l.cfg.n_elites, 2);
    cr_expect_eq(l.cfg.n_layers, 2);
    cr_expect_eq(l.cfg.n_hidden, 16);
    cr_expect(l.cfg.learn_reward);
    expect_same_predictions(&e, &l);
    ensemble_free(&l);

    /* a damaged byte of data: crc */
    msg->data.data[msg->data.len / 3] ^= 1;
    cr_expect_eq(ensemble_from_blob(&l, msg), TWIG_ECORRUPT);
    cr_expect_null(l.params);
    msg->data.data[msg->data.len / 3] ^= 1;

    /* a wrong shape */
    Twig__V1__Tensor *t1 = msg->tensors[1]; /* l0.b (E, H) */
    t1->shape[1] = 17;
    cr_expect_eq(ensemble_from_blob(&l, msg), -EINVAL);
    cr_expect(strstr(err_msg(), "l0.b") != NULL, "%s", err_msg());
    t1->shape[1] = 16;

    /* a tensor running past the data */
    uint64_t keep = t1->offset;
    t1->offset = msg->data.len - 4;
    cr_expect_eq(ensemble_from_blob(&l, msg), -EINVAL);
    t1->offset = keep;

    /* a missing tensor (renamed) */
    char *name = msg->tensors[msg->n_tensors - 4]->name; /* out_sd */
    name[0] = 'x';
    cr_expect_eq(ensemble_from_blob(&l, msg), -EINVAL);
    cr_expect(strstr(err_msg(), "out_sd") != NULL, "%s", err_msg());
    name[0] = 'o';

    /* a policy blob is not a model */
    msg->kind = TWIG__V1__WEIGHT_KIND__WEIGHT_KIND_POLICY;
    cr_expect_eq(ensemble_from_blob(&l, msg), -EINVAL);
    msg->kind = TWIG__V1__WEIGHT_KIND__WEIGHT_KIND_MODEL;

    /* and it still loads after the repairs */
    cr_expect_eq(ensemble_from_blob(&l, msg), 0, "%s", err_msg());
    ensemble_free(&l);
    twig__v1__weight_blob__free_unpacked(msg, NULL);
    free(wire);
    free(b);
    ensemble_free(&e);
}
