/* bench_ensemble.c - the ensemble's figures: ensemble_train_step, rollout_all_members,
 * rollout_one_member.
 *
 * Sizes as ../shared/reference/torch/ensemble_ref.py: 7 members, in 17 + 6, 4 x 200 swish.
 * twig's model also predicts the reward, so its output layer is 2 x (17 + 1); the figure
 * ensemble_train_step_out34 drops the reward to match the reference's 2 x 17 exactly.
 * - train: each member gets its own 256 random rows of a 100k data set, then one Adam step
 *   (NLL with bounded log-variance, bound penalty, per-layer L2) on all members.
 * - rollout_all_members: 100k samples in chunks, every member on every sample, each member's
 *   Gaussian sampled, then one member picked per sample (MBPO's original code path).
 * - rollout_one_member: each sample goes to one random member only (rows grouped by member).
 * Before timing, each figure runs the same computation through nn_gemm_naive and compares, so
 * the command may switch OpenBLAS kernels (env -u OPENBLAS_CORETYPE ...) safely.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "common/base/clock.h"
#include "common/nn/ensemble.h"
#include "common/base/mem.h"
#include "common/nn/nn_gemm.h"

enum { ENS_OBS = 17, ENS_ACT = 6, ENS_BATCH = 256, ENS_DATA = 100000, ENS_ROLLOUT = 100000 };
#define ENS_CHUNK 2048

/* ensemble_ref.py's MAC counts: per sample and member, and the input layer's share */
static double macs_per_sample(const ensemble_t *e)
{
    double f = 0.0;
    for (int k = 0; k < e->n_linear; k++) {
        f += (double)e->sizes[k] * e->sizes[k + 1];
    }
    return f;
}

/* forward, dW, dX except the input layer: 2 FLOP per MAC */
static double train_flops(const ensemble_t *e)
{
    double f = macs_per_sample(e), first = (double)e->sizes[0] * e->sizes[1];
    return 2.0 * e->cfg.n_members * ENS_BATCH * (f + f + (f - first));
}

static void make_ensemble(ensemble_t *e, bool reward, nn_gemm_fn *gemm)
{
    ensemble_cfg cfg;
    ensemble_cfg_default(&cfg, ENS_OBS, ENS_ACT);
    cfg.learn_reward = reward;
    cfg.n_elites = cfg.n_members; /* as the reference: any member may be picked */
    rng_t rng;
    rng_seed(&rng, 0);
    TWIG_ASSERT(ensemble_init(e, &cfg, &rng) == 0);
    e->gemm = gemm;
}

/* X ~ N(0,1) (100k, 23), Y ~ 0.1 N(0,1) (100k, n_out), as ensemble_ref's bench_train */
typedef struct train_data {
    float *x, *y;   /* the data set */
    float *bx, *by; /* (E, B, .) one step's rows */
} train_data;

static void data_init(train_data *d, const ensemble_t *e, rng_t *rng)
{
    d->x = xmalloc((size_t)ENS_DATA * e->n_in * sizeof(float));
    d->y = xmalloc((size_t)ENS_DATA * e->n_out * sizeof(float));
    rng_fill_normal(rng, d->x, ENS_DATA * e->n_in);
    rng_fill_normal(rng, d->y, ENS_DATA * e->n_out);
    for (size_t i = 0; i < (size_t)ENS_DATA * e->n_out; i++) {
        d->y[i] *= 0.1f;
    }
    size_t rows = (size_t)e->cfg.n_members * ENS_BATCH;
    d->bx = xmalloc(rows * e->n_in * sizeof(float));
    d->by = xmalloc(rows * e->n_out * sizeof(float));
}

static void data_free(train_data *d)
{
    free(d->x);
    free(d->y);
    free(d->bx);
    free(d->by);
}

/* per-member bootstrap rows, then one step */
static float step(ensemble_t *e, ensemble_trainer_t *t, train_data *d, rng_t *rng)
{
    const int I = e->n_in, J = e->n_out;
    for (int r = 0; r < e->cfg.n_members * ENS_BATCH; r++) {
        uint32_t i = rng_uniform_u32(rng, ENS_DATA);
        memcpy(d->bx + (size_t)r * I, d->x + (size_t)i * I, (size_t)I * sizeof(float));
        memcpy(d->by + (size_t)r * J, d->y + (size_t)i * J, (size_t)J * sizeof(float));
    }
    return ensemble_train_step(e, t, d->bx, d->by, ENS_BATCH);
}

static double max_rel_diff(const float *a, const float *b, size_t n, double floor)
{
    double m = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]) / (floor + fabs((double)b[i]));
        m = d > m || isnan(d) ? d : m;
    }
    return m;
}

/* two train steps through BLAS and naive GEMM from the same state: losses and parameters must
 * agree to rounding (Adam's first steps move each weight by about lr, whatever the gradient's
 * size, so parameters are compared relative to lr) */
static int check_train(bool reward, double *worst)
{
    ensemble_t fast = {0}, ref = {0};
    make_ensemble(&fast, reward, nn_gemm);
    make_ensemble(&ref, reward, nn_gemm_naive);
    ensemble_train_cfg tc;
    ensemble_train_cfg_default(&tc, fast.cfg.n_layers);
    ensemble_trainer_t tf = {0}, tr = {0};
    TWIG_ASSERT(ensemble_trainer_init(&tf, &fast, &tc) == 0);
    TWIG_ASSERT(ensemble_trainer_init(&tr, &ref, &tc) == 0);
    rng_t r1, r2;
    rng_seed(&r1, 3);
    rng_seed(&r2, 3);
    train_data d1 = {0}, d2 = {0};
    data_init(&d1, &fast, &r1);
    data_init(&d2, &ref, &r2);
    int rc = 0;
    *worst = 0.0;
    for (int s = 0; s < 2 && rc == 0; s++) {
        float lf = step(&fast, &tf, &d1, &r1);
        float lr = step(&ref, &tr, &d2, &r2);
        double rel = fabs((double)lf - lr) / (1.0 + fabs((double)lr));
        *worst = rel > *worst ? rel : *worst;
        if (!(rel < 1e-4)) {
            fprintf(stderr, "bench ensemble_train_step: step %d loss %g with BLAS, %g naive\n", s,
                    lf, lr);
            rc = 1;
        }
        /* every gradient tensor of the step, relative to its largest entry */
        for (int k = 0; k < fast.n_tensors && fast.tensors[k].data; k++) {
            const ensemble_tensor *et = &fast.tensors[k];
            if (et->data < fast.params || et->data >= fast.params + fast.n_params) {
                continue;
            }
            size_t off = (size_t)(et->data - fast.params);
            double diff = 0.0, scale = 1e-12;
            for (size_t i = off; i < off + et->count; i++) {
                double d = fabs((double)tf.grads[i] - tr.grads[i]);
                diff = d > diff || isnan(d) ? d : diff;
                scale = fabs((double)tr.grads[i]) > scale ? fabs((double)tr.grads[i]) : scale;
            }
            double g = diff / scale;
            *worst = g > *worst || isnan(g) ? g : *worst;
            if (!(g < 1e-3)) {
                fprintf(stderr,
                        "bench ensemble_train_step: step %d gradient of %s differs by %g "
                        "of its largest entry\n",
                        s, et->name, g);
                rc = 1;
            }
        }
    }
    double dp = 0.0;
    for (size_t i = 0; i < fast.n_params; i++) {
        double d = fabs((double)fast.params[i] - ref.params[i]);
        dp = d > dp || isnan(d) ? d : dp;
    }
    if (!(dp < 2.0 * 2 * tc.lr)) {
        fprintf(stderr, "bench ensemble_train_step: parameters differ by %g\n", dp);
        rc = 1;
    }
    data_free(&d1);
    data_free(&d2);
    ensemble_trainer_free(&tf);
    ensemble_trainer_free(&tr);
    ensemble_free(&fast);
    ensemble_free(&ref);
    return rc;
}

static int report_check(const char *name, int rc, double worst)
{
    if (rc != 0) {
        fprintf(stderr,
                "bench %s: BLAS result does not match the naive reference (core %s); "
                "not timing\n",
                name, nn_gemm_core_name());
    } else {
        printf("{\"bench\":\"%s\",\"impl\":\"twig\",\"check\":\"ok\",\"check_max_rel_err\":%.3g,"
               "\"openblas_core\":\"%s\"}\n",
               name, worst, nn_gemm_core_name());
    }
    fflush(stdout);
    return rc;
}

static void min_max(const double *v, int n, double *lo, double *hi)
{
    *lo = v[0];
    *hi = v[0];
    for (int i = 1; i < n; i++) {
        *lo = v[i] < *lo ? v[i] : *lo;
        *hi = v[i] > *hi ? v[i] : *hi;
    }
}

static int train_figure(const bench_opts *o, const char *name, bool reward)
{
    double worst = 0.0;
    int rc = check_train(reward, &worst);
    if (report_check(name, rc, worst) != 0 || o->check_only) {
        return rc;
    }
    const int iters = o->iters > 0 ? o->iters : 20;
    const int warmup = o->warmup >= 0 ? o->warmup : 10;
    ensemble_t e = {0};
    make_ensemble(&e, reward, nn_gemm);
    ensemble_train_cfg tc;
    ensemble_train_cfg_default(&tc, e.cfg.n_layers);
    ensemble_trainer_t t = {0};
    TWIG_ASSERT(ensemble_trainer_init(&t, &e, &tc) == 0);
    rng_t rng;
    rng_seed(&rng, 0);
    train_data d = {0};
    data_init(&d, &e, &rng);
    float loss = 0.0f;
    for (int i = 0; i < warmup; i++) {
        loss = step(&e, &t, &d, &rng);
    }
    double rates[1000];
    for (int r = 0; r < o->reps; r++) {
        double t0 = clock_now_s();
        for (int i = 0; i < iters; i++) {
            loss = step(&e, &t, &d, &rng);
        }
        rates[r] = iters / (clock_now_s() - t0);
    }
    double lo, hi;
    min_max(rates, o->reps, &lo, &hi);
    double med = bench_median(rates, o->reps);
    double fl = train_flops(&e);
    printf("{\"bench\":\"%s\",\"name\":\"%s\",\"impl\":\"twig\",\"per_s\":%.1f,\"rate\":%.1f,"
           "\"min\":%.1f,\"max\":%.1f,\"ms_per_step\":%.3f,\"mflop_per_unit\":%.2f,"
           "\"achieved_gflops\":%.2f,\"threads\":1,\"openblas_core\":\"%s\",\"members\":%d,"
           "\"obs\":%d,\"act\":%d,\"hidden\":%d,\"layers\":%d,\"out\":%d,\"batch\":%d,"
           "\"reps\":%d,\"steps_per_rep\":%d,\"check_max_rel_err\":%.3g,\"loss\":%.4g}\n",
           name, name, med, med, lo, hi, 1e3 / med, fl / 1e6, fl * med / 1e9, nn_gemm_core_name(),
           e.cfg.n_members, ENS_OBS, ENS_ACT, e.cfg.n_hidden, e.cfg.n_layers, 2 * e.n_out,
           ENS_BATCH, o->reps, iters, worst, loss);
    fflush(stdout);
    data_free(&d);
    ensemble_trainer_free(&t);
    ensemble_free(&e);
    return 0;
}

int bench_ensemble_train_step(const bench_opts *o)
{
    return train_figure(o, "ensemble_train_step", true);
}

int bench_ensemble_train_step_out34(const bench_opts *o)
{
    return train_figure(o, "ensemble_train_step_out34", false);
}

/* ---- rollouts ----------------------------------------------------------------------- */

typedef struct rollout_bufs {
    int n;
    float *obs, *act;     /* (n, O), (n, A) */
    float *next, *rew;    /* (n, O), (n) picked */
    float *all, *all_rew; /* (E, n, O), (E, n) every member */
    int *member;          /* (n) */
} rollout_bufs;

static void bufs_init(rollout_bufs *b, int n, int E, rng_t *rng)
{
    b->n = n;
    b->obs = xmalloc((size_t)n * ENS_OBS * sizeof(float));
    b->act = xmalloc((size_t)n * ENS_ACT * sizeof(float));
    b->next = xmalloc((size_t)n * ENS_OBS * sizeof(float));
    b->rew = xmalloc((size_t)n * sizeof(float));
    b->all = xmalloc((size_t)E * n * ENS_OBS * sizeof(float));
    b->all_rew = xmalloc((size_t)E * n * sizeof(float));
    b->member = xmalloc((size_t)n * sizeof(int));
    rng_fill_normal(rng, b->obs, n * ENS_OBS);
    for (size_t i = 0; i < (size_t)n * ENS_ACT; i++) {
        b->act[i] = rng_uniform_range(rng, -1.0f, 1.0f);
    }
}

static void bufs_free(rollout_bufs *b)
{
    free(b->obs);
    free(b->act);
    free(b->next);
    free(b->rew);
    free(b->all);
    free(b->all_rew);
    free(b->member);
}

/* every member on every sample, then one member per sample */
static void rollout_all(const ensemble_t *e, ensemble_work_t *w, rng_t *rng, rollout_bufs *b,
                        bool sample)
{
    const int E = e->cfg.n_members, N = b->n;
    ensemble_predict_all(e, w, rng, b->all, b->all_rew, b->obs, b->act, N, sample);
    for (int i = 0; i < N; i++) {
        int m = (int)rng_uniform_u32(rng, (uint32_t)E);
        b->member[i] = m;
        memcpy(b->next + (size_t)i * ENS_OBS, b->all + ((size_t)m * N + i) * ENS_OBS,
               ENS_OBS * sizeof(float));
        b->rew[i] = b->all_rew[(size_t)m * N + i];
    }
}

static void rollout_one(const ensemble_t *e, ensemble_work_t *w, rng_t *rng, rollout_bufs *b,
                        bool sample)
{
    ensemble_predict(e, w, rng, b->next, b->rew, b->member, b->obs, b->act, b->n, sample);
}

typedef void rollout_fn(const ensemble_t *e, ensemble_work_t *w, rng_t *rng, rollout_bufs *b,
                        bool sample);

/* the means of 1000 samples through BLAS and naive GEMM agree */
static int check_rollout(rollout_fn *fn, double *worst)
{
    ensemble_t fast = {0}, ref = {0};
    make_ensemble(&fast, true, nn_gemm);
    make_ensemble(&ref, true, nn_gemm_naive);
    ensemble_work_t wf = {0}, wr = {0};
    TWIG_ASSERT(ensemble_work_init(&wf, &fast, ENS_CHUNK) == 0);
    TWIG_ASSERT(ensemble_work_init(&wr, &ref, ENS_CHUNK) == 0);
    rng_t r1, r2;
    rng_seed(&r1, 5);
    rng_seed(&r2, 5);
    rollout_bufs b1 = {0}, b2 = {0};
    bufs_init(&b1, 1000, fast.cfg.n_members, &r1);
    bufs_init(&b2, 1000, ref.cfg.n_members, &r2);
    fn(&fast, &wf, &r1, &b1, false);
    fn(&ref, &wr, &r2, &b2, false);
    *worst = max_rel_diff(b1.next, b2.next, (size_t)b1.n * ENS_OBS, 1.0);
    double wrew = max_rel_diff(b1.rew, b2.rew, (size_t)b1.n, 1.0);
    *worst = wrew > *worst ? wrew : *worst;
    int rc = *worst < 1e-4 && memcmp(b1.member, b2.member, (size_t)b1.n * sizeof(int)) == 0 ? 0 : 1;
    bufs_free(&b1);
    bufs_free(&b2);
    ensemble_work_free(&wf);
    ensemble_work_free(&wr);
    ensemble_free(&fast);
    ensemble_free(&ref);
    return rc;
}

static int rollout_figure(const bench_opts *o, const char *name, rollout_fn *fn, bool all)
{
    double worst = 0.0;
    int rc = check_rollout(fn, &worst);
    if (report_check(name, rc, worst) != 0 || o->check_only) {
        return rc;
    }
    const int reps_per = o->iters > 0 ? o->iters : 1;
    const int warmup = o->warmup >= 0 ? o->warmup : 1;
    ensemble_t e = {0};
    make_ensemble(&e, true, nn_gemm);
    ensemble_work_t w = {0};
    TWIG_ASSERT(ensemble_work_init(&w, &e, ENS_CHUNK) == 0);
    rng_t rng;
    rng_seed(&rng, 1);
    rollout_bufs b = {0};
    bufs_init(&b, ENS_ROLLOUT, e.cfg.n_members, &rng);
    for (int i = 0; i < warmup; i++) {
        fn(&e, &w, &rng, &b, true);
    }
    double rates[1000];
    for (int r = 0; r < o->reps; r++) {
        double t0 = clock_now_s();
        for (int i = 0; i < reps_per; i++) {
            fn(&e, &w, &rng, &b, true);
        }
        rates[r] = (double)reps_per * ENS_ROLLOUT / (clock_now_s() - t0);
    }
    double lo, hi;
    min_max(rates, o->reps, &lo, &hi);
    double med = bench_median(rates, o->reps);
    double fl = 2.0 * macs_per_sample(&e) * (all ? e.cfg.n_members : 1);
    printf("{\"bench\":\"%s\",\"name\":\"%s\",\"impl\":\"twig\",\"per_s\":%.0f,\"rate\":%.0f,"
           "\"min\":%.0f,\"max\":%.0f,\"mflop_per_unit\":%.4f,\"achieved_gflops\":%.2f,"
           "\"threads\":1,\"openblas_core\":\"%s\",\"members\":%d,\"obs\":%d,\"act\":%d,"
           "\"hidden\":%d,\"layers\":%d,\"out\":%d,\"chunk\":%d,\"rollout_batch\":%d,"
           "\"reps\":%d,\"check_max_rel_err\":%.3g}\n",
           name, name, med, med, lo, hi, fl / 1e6, fl * med / 1e9, nn_gemm_core_name(),
           e.cfg.n_members, ENS_OBS, ENS_ACT, e.cfg.n_hidden, e.cfg.n_layers, 2 * e.n_out,
           ENS_CHUNK, ENS_ROLLOUT, o->reps, worst);
    fflush(stdout);
    bufs_free(&b);
    ensemble_work_free(&w);
    ensemble_free(&e);
    return 0;
}

int bench_rollout_all_members(const bench_opts *o)
{
    return rollout_figure(o, "rollout_all_members", rollout_all, true);
}

int bench_rollout_one_member(const bench_opts *o)
{
    return rollout_figure(o, "rollout_one_member", rollout_one, false);
}
