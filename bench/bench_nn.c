/* bench_nn.c - learning-core figures: sac_update.
 *
 * sac_update does what ../shared/reference/torch/sac_ref.py times, at its default sizes:
 * obs 17, act 6, 2 x 256 ReLU, batch 256, a 100k replay filled like sac_ref's Replay; one
 * update = sample a minibatch, critic step, actor step, temperature step, Polyak update.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bench/bench.h"
#include "common/base/clock.h"
#include "common/base/err.h"
#include "common/base/mem.h"
#include "common/nn/nn_gemm.h"
#include "common/nn/replay.h"
#include "common/nn/sac.h"

enum { SAC_OBS = 17, SAC_ACT = 6, SAC_HID = 256, SAC_BATCH = 256, SAC_REPLAY = 100000 };

/* sac_ref.py's sac_flops_per_update: dense matmul FLOPs, 2 per multiply-add */
static double sac_flops(int O, int A, int H, int B)
{
    double q_f = (double)(O + A) * H + (double)H * H + H;
    double pi_f = (double)O * H + (double)H * H + (double)H * 2 * A;
    double q_dx = q_f - (double)(O + A) * H, pi_dx = pi_f - (double)O * H;
    double target = pi_f + 2 * q_f;
    double critic = 2 * q_f + 2 * (q_f + q_dx);
    double actor = pi_f + 2 * q_f + 2 * q_f + (pi_f + pi_dx);
    return 2.0 * B * (target + critic + actor);
}

/* o ~ N(0,1), a ~ U(-1,1), r ~ N(0,1), o' = o + 0.05 N, d = 1 with probability 0.01 */
static void fill_replay(replay_t *rb, rng_t *rng)
{
    float o[SAC_OBS], a[SAC_ACT], o2[SAC_OBS];
    for (int i = 0; i < SAC_REPLAY; i++) {
        rng_fill_normal(rng, o, SAC_OBS);
        for (int j = 0; j < SAC_ACT; j++) {
            a[j] = rng_uniform_range(rng, -1.0f, 1.0f);
        }
        for (int j = 0; j < SAC_OBS; j++) {
            o2[j] = o[j] + 0.05f * rng_normal_f32(rng);
        }
        float r = rng_normal_f32(rng);
        replay_add(rb, o, a, r, o2, rng_uniform_f32(rng) < 0.01f);
    }
}

static void use_gemm(sac_t *s, nn_gemm_fn *g)
{
    s->actor.p.gemm = g;
    for (int k = 0; k < 2; k++) {
        s->q[k].p.gemm = g;
        s->q_targ[k].p.gemm = g;
    }
}

static double max_abs_diff(const float *a, const float *b, size_t n)
{
    double m = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        m = d > m || isnan(d) ? d : m;
    }
    return m;
}

static bool close_rel(double a, double b, double tol)
{
    return fabs(a - b) <= tol * (1.0 + fabs(b));
}

/* two updates through BLAS and through the naive triple loop from the same state must agree
 * to rounding: losses closely, parameters within a few Adam steps' worth of sign noise */
static int check_sac(const replay_t *rb, replay_batch *batch, double *worst)
{
    sac_cfg cfg = sac_default_cfg(SAC_OBS, SAC_ACT);
    sac_t fast = {0}, ref = {0};
    sac_init(&fast, &cfg, 7);
    sac_init(&ref, &cfg, 7);
    use_gemm(&ref, nn_gemm_naive);
    rng_t r1, r2;
    rng_seed(&r1, 99);
    rng_seed(&r2, 99);
    bool ok = true;
    *worst = 0.0;
    const int n_updates = 2;
    for (int u = 0; u < n_updates; u++) {
        replay_sample_batch(batch, rb, &r1, SAC_BATCH);
        sac_update(&fast, batch);
        replay_sample_batch(batch, rb, &r2, SAC_BATCH);
        sac_update(&ref, batch);
        const float got[3] = {fast.stats.q_loss, fast.stats.pi_loss, fast.stats.alpha_loss};
        const float want[3] = {ref.stats.q_loss, ref.stats.pi_loss, ref.stats.alpha_loss};
        for (int k = 0; k < 3; k++) {
            double d = fabs((double)got[k] - want[k]) / (1.0 + fabs((double)want[k]));
            *worst = d > *worst ? d : *worst;
            if (!close_rel(got[k], want[k], 1e-3)) {
                fprintf(stderr, "bench sac_update: update %d loss %d is %g with BLAS, %g naive\n",
                        u, k, got[k], want[k]);
                ok = false;
            }
        }
    }
    // parameters: Adam's first steps move each weight by about lr, so rounding can at most
    // flip a few tiny-gradient signs (2 lr per step)
    const double ptol = 2.0 * n_updates * cfg.lr_critic * 1.05;
    mlp_t *fn[5] = {&fast.actor, &fast.q[0], &fast.q[1], &fast.q_targ[0], &fast.q_targ[1]};
    mlp_t *rn[5] = {&ref.actor, &ref.q[0], &ref.q[1], &ref.q_targ[0], &ref.q_targ[1]};
    for (int k = 0; k < 5; k++) {
        double d = max_abs_diff(fn[k]->p.params, rn[k]->p.params, fn[k]->p.n_params);
        if (!(d <= ptol)) {
            fprintf(stderr, "bench sac_update: net %d parameters differ by %g (limit %g)\n", k, d,
                    ptol);
            ok = false;
        }
    }
    if (!close_rel(fast.log_alpha, ref.log_alpha, 1e-4)) {
        fprintf(stderr, "bench sac_update: log_alpha %g vs %g\n", fast.log_alpha, ref.log_alpha);
        ok = false;
    }
    sac_free(&fast);
    sac_free(&ref);
    return ok ? 0 : 1;
}

int bench_sac_update(const bench_opts *o)
{
    const int iters = o->iters > 0 ? o->iters : 200;
    const int warmup = o->warmup >= 0 ? o->warmup : 30;
    rng_t rng;
    rng_seed(&rng, 0);
    replay_t rb = {0};
    replay_batch batch = {0};
    TWIG_ASSERT(replay_init(&rb, SAC_REPLAY, SAC_OBS, SAC_ACT) == 0);
    TWIG_ASSERT(replay_batch_init(&batch, SAC_BATCH, SAC_OBS, SAC_ACT) == 0);
    fill_replay(&rb, &rng);

    double worst = 0.0;
    if (check_sac(&rb, &batch, &worst) != 0) {
        fprintf(stderr,
                "bench sac_update: BLAS result does not match the naive reference "
                "(core %s); not timing\n",
                nn_gemm_core_name());
        replay_batch_free(&batch);
        replay_free(&rb);
        return 1;
    }
    if (o->check_only) {
        printf("{\"bench\":\"sac_update\",\"impl\":\"twig\",\"check\":\"ok\","
               "\"check_max_rel_err\":%.3g,\"openblas_core\":\"%s\"}\n",
               worst, nn_gemm_core_name());
        replay_batch_free(&batch);
        replay_free(&rb);
        return 0;
    }

    sac_cfg cfg = sac_default_cfg(SAC_OBS, SAC_ACT);
    sac_t s = {0};
    TWIG_ASSERT(sac_init(&s, &cfg, 0) == 0);
    for (int i = 0; i < warmup; i++) {
        replay_sample_batch(&batch, &rb, &rng, SAC_BATCH);
        sac_update(&s, &batch);
    }
    double rates[1000];
    int reps = o->reps;
    for (int r = 0; r < reps; r++) {
        double t0 = clock_now_s();
        for (int i = 0; i < iters; i++) {
            replay_sample_batch(&batch, &rb, &rng, SAC_BATCH);
            sac_update(&s, &batch);
        }
        rates[r] = iters / (clock_now_s() - t0);
    }
    double lo = rates[0], hi = rates[0];
    for (int r = 1; r < reps; r++) {
        lo = rates[r] < lo ? rates[r] : lo;
        hi = rates[r] > hi ? rates[r] : hi;
    }
    double med = bench_median(rates, reps);
    double fl = sac_flops(SAC_OBS, SAC_ACT, SAC_HID, SAC_BATCH);
    printf("{\"bench\":\"sac_update\",\"name\":\"sac_update\",\"impl\":\"twig\",\"per_s\":%.1f,"
           "\"rate\":%.1f,\"min\":%.1f,\"max\":%.1f,\"ms_per_update\":%.3f,"
           "\"mflop_per_update\":%.2f,\"achieved_gflops\":%.2f,\"threads\":%d,"
           "\"openblas_core\":\"%s\",\"obs\":%d,\"act\":%d,\"hidden\":%d,\"batch\":%d,"
           "\"reps\":%d,\"updates_per_rep\":%d,\"check_max_rel_err\":%.3g,"
           "\"q_loss\":%.4g}\n",
           med, med, lo, hi, 1e3 / med, fl / 1e6, fl * med / 1e9, o->threads, nn_gemm_core_name(), SAC_OBS,
           SAC_ACT, SAC_HID, SAC_BATCH, reps, iters, worst, s.stats.q_loss);
    fflush(stdout);
    sac_free(&s);
    replay_batch_free(&batch);
    replay_free(&rb);
    return 0;
}
