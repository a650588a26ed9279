/* tests of common/sac: critic, actor and temperature gradients against finite differences in
 * double precision, the tanh-Gaussian log-prob, the bootstrap target, acting, checkpoints */
#include <criterion/criterion.h>
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/err.h"
#include "common/nn/nn_gemm.h"
#include "common/nn/replay.h"
#include "common/nn/sac.h"
#include "tests/common/nn/nn_ref.h"

enum { O = 5, A = 2, H = 8, B = 4 };

static void small_sac(sac_t *s, uint64_t seed)
{
    sac_cfg cfg = sac_default_cfg(O, A);
    cfg.hidden = H;
    cfg.batch = B;
    cr_assert_eq(sac_init(s, &cfg, seed), 0, "%s", err_msg());
}

static void random_batch(replay_batch *b, rng_t *rng)
{
    cr_assert_eq(replay_batch_init(b, B, O, A), 0);
    b->n = B;
    rng_fill_normal(rng, b->obs, B * O);
    rng_fill_normal(rng, b->next_obs, B * O);
    for (int i = 0; i < B * A; i++) {
        b->act[i] = rng_uniform_range(rng, -1.0f, 1.0f);
    }
    for (int i = 0; i < B; i++) {
        b->reward[i] = rng_normal_f32(rng);
        b->terminated[i] = i == 1 ? 1.0f : 0.0f;
    }
}

/* ---- double references of the three losses ---- */

static double ref_critic_loss(const sac_t *s, const double *p0, const double *p1,
                              const replay_batch *b, const float *y)
{
    double x[B * (O + A)], q1[B], q2[B];
    for (int i = 0; i < B; i++) {
        for (int j = 0; j < O; j++) {
            x[i * (O + A) + j] = b->obs[i * O + j];
        }
        for (int j = 0; j < A; j++) {
            x[i * (O + A) + O + j] = b->act[i * A + j];
        }
    }
    nn_ref_forward(&s->q[0], p0, q1, x, B);
    nn_ref_forward(&s->q[1], p1, q2, x, B);
    double l = 0;
    for (int i = 0; i < B; i++) {
        l += (q1[i] - y[i]) * (q1[i] - y[i]) + (q2[i] - y[i]) * (q2[i] - y[i]);
    }
    return l / B;
}

/* log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), exact in double even where tanh(u)
 * rounds to 1 (the direct form is checked against it for moderate u below) */
static double log1m_tanh2(double u)
{
    double x = -2.0 * u;
    double sp = x > 0 ? x + log1p(exp(-x)) : log1p(exp(x));
    return 2.0 * (log(2.0) - u - sp);
}

/* the actor loss in double */
static double ref_actor_loss(const sac_t *s, const double *pa, const double *p0, const double *p1,
                             const float *obs, const float *eps, double alpha, double *logp_out)
{
    double o[B * O], out[B * 2 * A], x[B * (O + A)], q1[B], q2[B], logp[B];
    for (int i = 0; i < B * O; i++) {
        o[i] = obs[i];
    }
    nn_ref_forward(&s->actor, pa, out, o, B);
    for (int i = 0; i < B; i++) {
        logp[i] = 0;
        for (int j = 0; j < O; j++) {
            x[i * (O + A) + j] = o[i * O + j];
        }
        for (int j = 0; j < A; j++) {
            double mu = out[i * 2 * A + j];
            double ls = fmin(fmax(out[i * 2 * A + A + j], -20.0), 2.0);
            double e = eps[i * A + j];
            double u = mu + exp(ls) * e;
            double a = tanh(u);
            logp[i] += -0.5 * e * e - ls - 0.5 * log(2 * M_PI) - log1m_tanh2(u);
            x[i * (O + A) + O + j] = a;
        }
    }
    nn_ref_forward(&s->q[0], p0, q1, x, B);
    nn_ref_forward(&s->q[1], p1, q2, x, B);
    double l = 0;
    for (int i = 0; i < B; i++) {
        l += alpha * logp[i] - fmin(q1[i], q2[i]);
        if (logp_out) {
            logp_out[i] = logp[i];
        }
    }
    return l / B;
}

/* central differences over every parameter of net (p is its double copy), against grads */
typedef double loss_fn(void *ctx);

static int check_net_grads(const mlp_t *net, double *p, const float *grads, loss_fn *f, void *ctx,
                           const char *what)
{
    const double h = 1e-6;
    int n = 0;
    for (int t = 0; t < 2 * net->p.n_layers; t++) {
        const mlp_tensor *ts = &net->p.tensors[t];
        for (int j = 0; j < ts->rows * ts->cols; j++) {
            size_t i = ts->offset + (size_t)j;
            double keep = p[i];
            p[i] = keep + h;
            double lp = f(ctx);
            p[i] = keep - h;
            double lm = f(ctx);
            p[i] = keep;
            double num = (lp - lm) / (2 * h);
            cr_expect(fabs(num - grads[i]) < 2e-4 * (1 + fabs(num)),
                      "%s %s[%d]: numeric %.7f analytic %.7f", what, ts->name, j, num, grads[i]);
            n++;
        }
    }
    return n;
}

typedef struct critic_ctx {
    const sac_t *s;
    double *p0, *p1;
    const replay_batch *b;
    const float *y;
} critic_ctx;

static double critic_loss_of(void *c)
{
    critic_ctx *x = c;
    return ref_critic_loss(x->s, x->p0, x->p1, x->b, x->y);
}

Test(sac, critic_loss_gradients_match_finite_differences)
{
    sac_t s;
    small_sac(&s, 1);
    rng_t rng;
    rng_seed(&rng, 2);
    replay_batch b;
    random_batch(&b, &rng);
    float y[B];
    rng_fill_normal(&rng, y, B);
    mlp_zero_grad(&s.q[0].train);
    mlp_zero_grad(&s.q[1].train);
    mlp_zero_grad(&s.actor.train);
    float loss = sac_critic_loss(&s, &b, y, true);
    critic_ctx c = {&s, nn_ref_params(&s.q[0]), nn_ref_params(&s.q[1]), &b, y};
    cr_expect(fabs(loss - critic_loss_of(&c)) < 1e-5 * (1 + fabs(loss)), "loss %f vs %f", loss,
              critic_loss_of(&c));
    int n = check_net_grads(&s.q[0], c.p0, s.q[0].train.grads, critic_loss_of, &c, "q1");
    n += check_net_grads(&s.q[1], c.p1, s.q[1].train.grads, critic_loss_of, &c, "q2");
    cr_expect_eq(n, 2 * ((O + A) * H + H + H * H + H + H + 1));
    // the critic loss leaves the actor alone
    cr_expect_eq(nn_grad_norm(s.actor.train.grads, s.actor.p.n_params), 0.0);
    free(c.p0);
    free(c.p1);
    replay_batch_free(&b);
    sac_free(&s);
}

typedef struct actor_ctx {
    const sac_t *s;
    double *pa, *p0, *p1;
    const float *obs, *eps;
    double alpha;
} actor_ctx;

static double actor_loss_of(void *c)
{
    actor_ctx *x = c;
    return ref_actor_loss(x->s, x->pa, x->p0, x->p1, x->obs, x->eps, x->alpha, NULL);
}

static void check_actor(float ls_bias)
{
    sac_t s;
    small_sac(&s, 3);
    // a large log-std bias pushes one action dim into the clamp: its gradient must vanish
    s.actor.p.b[2][A] = ls_bias;
    rng_t rng;
    rng_seed(&rng, 4);
    replay_batch b;
    random_batch(&b, &rng);
    float eps[B * A];
    rng_fill_normal(&rng, eps, B * A);
    const float alpha = 0.3f;
    mlp_zero_grad(&s.q[0].train);
    mlp_zero_grad(&s.q[1].train);
    mlp_zero_grad(&s.actor.train);
    float loss = sac_actor_loss(&s, b.obs, eps, alpha, B, true);
    actor_ctx c = {
        &s,   nn_ref_params(&s.actor), nn_ref_params(&s.q[0]), nn_ref_params(&s.q[1]), b.obs, eps,
        alpha};
    double logp[B];
    double want = ref_actor_loss(&s, c.pa, c.p0, c.p1, b.obs, eps, alpha, logp);
    cr_expect(fabs(loss - want) < 1e-5 * (1 + fabs(want)), "loss %f vs %f", loss, want);
    for (int i = 0; i < B; i++) {
        cr_expect(fabs(s.logp[i] - logp[i]) < 1e-4 * (1 + fabs(logp[i])), "logp[%d] %f vs %f", i,
                  s.logp[i], logp[i]);
    }
    int n = check_net_grads(&s.actor, c.pa, s.actor.train.grads, actor_loss_of, &c, "actor");
    cr_expect_eq(n, O * H + H + H * H + H + H * 2 * A + 2 * A);
    // critics are frozen during the actor step
    cr_expect_eq(nn_grad_norm(s.q[0].train.grads, s.q[0].p.n_params), 0.0);
    cr_expect_eq(nn_grad_norm(s.q[1].train.grads, s.q[1].p.n_params), 0.0);
    if (ls_bias > 10.0f) {
        const float *db = s.actor.train.db[2];
        cr_expect_eq(db[A], 0.0f, "clamped log-std has gradient %g", db[A]);
    }
    free(c.pa);
    free(c.p0);
    free(c.p1);
    replay_batch_free(&b);
    sac_free(&s);
}

Test(sac, actor_loss_gradients_match_finite_differences)
{
    check_actor(0.0f);
}

Test(sac, actor_gradient_vanishes_through_the_log_std_clamp)
{
    check_actor(40.0f);
}

Test(sac, alpha_loss_gradient_matches_finite_differences)
{
    sac_t s;
    small_sac(&s, 5);
    const float logp[B] = {-1.5f, 0.25f, 3.0f, -0.75f};
    float g = 0.0f;
    s.log_alpha = 0.4f;
    float l0 = sac_alpha_loss(&s, logp, B, &g);
    // -log_alpha * mean(logp + target_entropy): mean(logp) = 0.25, target -2
    cr_expect(fabsf(l0 - (-0.4f * (0.25f - 2.0f))) < 1e-6f, "loss %f", l0);
    const float h = 1e-2f; // the loss is linear in log_alpha: any step is exact
    float gd;
    s.log_alpha = 0.4f + h;
    float lp = sac_alpha_loss(&s, logp, B, &gd);
    s.log_alpha = 0.4f - h;
    float lm = sac_alpha_loss(&s, logp, B, &gd);
    cr_expect(fabsf((lp - lm) / (2 * h) - g) < 1e-4f, "numeric %f analytic %f", (lp - lm) / (2 * h),
              g);
    cr_expect(fabsf(g - 1.75f) < 1e-6f, "grad %f", g);
    sac_free(&s);
}

Test(sac, stable_log_prob_matches_the_direct_formula)
{
    // u from -8 to 8; direct log(1 - tanh^2) in double is accurate there
    enum { N = 33 };
    float pi_out[N * 2], eps[N], u[N], a[N], logp[N];
    for (int i = 0; i < N; i++) {
        pi_out[2 * i] = -8.0f + 0.5f * (float)i; // mu
        pi_out[2 * i + 1] = -1.0f;               // log std
        eps[i] = 0.1f;
    }
    squash_forward(u, a, logp, pi_out, eps, N, 1);
    for (int i = 0; i < N; i++) {
        double ud = (double)pi_out[2 * i] + exp(-1.0) * 0.1;
        double t = tanh(ud);
        double want = -0.5 * 0.01 + 1.0 - 0.5 * log(2 * M_PI) - log(1 - t * t);
        cr_expect(fabs(logp[i] - want) < 2e-4 * (1 + fabs(want)), "u %f: %f vs %f", ud, logp[i],
                  want);
        cr_expect(fabs(a[i] - t) < 1e-6);
    }
    // far in the tails the stable form stays finite
    float big[2] = {30.0f, 0.0f}, e1[1] = {0.0f};
    squash_forward(u, a, logp, big, e1, 1, 1);
    cr_expect(isfinite(logp[0]) && a[0] == 1.0f, "logp %f a %f", logp[0], a[0]);
}

Test(sac, termination_cuts_the_bootstrap_and_nothing_else)
{
    sac_t s;
    small_sac(&s, 6);
    rng_t rng;
    rng_seed(&rng, 7);
    replay_batch b;
    random_batch(&b, &rng); // row 1 terminated
    float eps[B * A], y[B];
    rng_fill_normal(&rng, eps, B * A);
    const float alpha = 0.5f;
    sac_target(&s, y, &b, eps, alpha);
    // recompute the pieces: actor on o', both target critics
    float out[B * 2 * A], u[B * A], a[B * A], logp[B], x[B * (O + A)], q1[B], q2[B];
    mlp_forward(&s.actor.p, &s.actor.work, out, b.next_obs, B);
    squash_forward(u, a, logp, out, eps, B, A);
    for (int i = 0; i < B; i++) {
        memcpy(x + i * (O + A), b.next_obs + i * O, sizeof(float) * O);
        memcpy(x + i * (O + A) + O, a + i * A, sizeof(float) * A);
    }
    mlp_forward(&s.q_targ[0].p, &s.q_targ[0].work, q1, x, B);
    mlp_forward(&s.q_targ[1].p, &s.q_targ[1].work, q2, x, B);
    for (int i = 0; i < B; i++) {
        float boot = 0.99f * (fminf(q1[i], q2[i]) - alpha * logp[i]);
        float want = b.reward[i] + (i == 1 ? 0.0f : boot);
        cr_expect(fabsf(y[i] - want) < 1e-5f, "row %d: y %f want %f", i, y[i], want);
    }
    cr_expect_eq(y[1], b.reward[1]);
    replay_batch_free(&b);
    sac_free(&s);
}

Test(sac, acting_is_bounded_and_deterministic_mode_is_tanh_mu)
{
    sac_t s;
    small_sac(&s, 8);
    rng_t rng;
    rng_seed(&rng, 9);
    float obs[B * O], a1[B * A], a2[B * A], out[B * 2 * A];
    rng_fill_normal(&rng, obs, B * O);
    sac_act(&s, a1, obs, B, true);
    sac_act(&s, a2, obs, B, true);
    mlp_forward(&s.actor.p, &s.actor.work, out, obs, B);
    for (int i = 0; i < B; i++) {
        for (int j = 0; j < A; j++) {
            cr_expect_eq(a1[i * A + j], a2[i * A + j]);
            cr_expect(fabsf(a1[i * A + j] - tanhf(out[i * 2 * A + j])) < 1e-7f);
        }
    }
    sac_act(&s, a1, obs, B, false);
    sac_act(&s, a2, obs, B, false);
    int differ = 0;
    for (int i = 0; i < B * A; i++) {
        cr_expect(a1[i] >= -1.0f && a1[i] <= 1.0f);
        differ += a1[i] != a2[i];
    }
    cr_expect_gt(differ, 0, "sampled actions never vary");
    sac_free(&s);
}

/* a batch from a replay of random data, used by the update tests */
static void fill_replay(replay_t *rb, rng_t *rng, int n)
{
    cr_assert_eq(replay_init(rb, (size_t)n, O, A), 0);
    for (int i = 0; i < n; i++) {
        float o[O], a[A], o2[O];
        rng_fill_normal(rng, o, O);
        rng_fill_normal(rng, o2, O);
        for (int j = 0; j < A; j++) {
            a[j] = rng_uniform_range(rng, -1.0f, 1.0f);
        }
        replay_add(rb, o, a, o[0] - a[0], o2, rng_uniform_f32(rng) < 0.1f);
    }
}

Test(sac, blas_and_naive_gemm_updates_agree)
{
    sac_t s1, s2;
    small_sac(&s1, 10);
    small_sac(&s2, 10);
    mlp_t *n2[5] = {&s2.actor, &s2.q[0], &s2.q[1], &s2.q_targ[0], &s2.q_targ[1]};
    for (int k = 0; k < 5; k++) {
        n2[k]->p.gemm = nn_gemm_naive;
    }
    rng_t rng;
    rng_seed(&rng, 11);
    replay_t rb;
    fill_replay(&rb, &rng, 64);
    replay_batch b;
    cr_assert_eq(replay_batch_init(&b, B, O, A), 0);
    for (int u = 0; u < 5; u++) {
        replay_sample_batch(&b, &rb, &rng, B);
        sac_update(&s1, &b);
        sac_update(&s2, &b);
        cr_expect(fabsf(s1.stats.q_loss - s2.stats.q_loss) < 1e-4f * (1 + fabsf(s2.stats.q_loss)));
        cr_expect(fabsf(s1.stats.pi_loss - s2.stats.pi_loss) <
                  1e-4f * (1 + fabsf(s2.stats.pi_loss)));
    }
    cr_expect(fabsf(s1.log_alpha - s2.log_alpha) < 1e-6f);
    cr_expect_eq(s1.n_updates, 5);
    // alpha moved: each step is about lr in size
    cr_expect(fabsf(s1.log_alpha) > 1e-4f && fabsf(s1.log_alpha) < 5 * 3e-4f * 1.01f, "%f",
              s1.log_alpha);
    replay_batch_free(&b);
    replay_free(&rb);
    sac_free(&s1);
    sac_free(&s2);
}

Test(sac, one_update_is_target_critic_actor_alpha_polyak_in_that_order)
{
    sac_t s1, s2;
    small_sac(&s1, 20);
    small_sac(&s2, 20);
    rng_t rng;
    rng_seed(&rng, 21);
    replay_t rb;
    fill_replay(&rb, &rng, 64);
    replay_batch b;
    cr_assert_eq(replay_batch_init(&b, B, O, A), 0);
    for (int u = 0; u < 3; u++) {
        replay_sample_batch(&b, &rb, &rng, B);
        sac_update(&s1, &b);
        // the same, spelled out with the public pieces
        float eps[B * A], y[B], g;
        const float alpha = expf(s2.log_alpha);
        rng_fill_normal_polar(&s2.rng, eps, B * A);
        sac_target(&s2, y, &b, eps, alpha);
        mlp_zero_grad(&s2.q[0].train);
        mlp_zero_grad(&s2.q[1].train);
        float ql = sac_critic_loss(&s2, &b, y, true);
        mlp_adam_step(&s2.q[0].p, &s2.q[0].train, &s2.adam_critic);
        mlp_adam_step(&s2.q[1].p, &s2.q[1].train, &s2.adam_critic);
        rng_fill_normal_polar(&s2.rng, eps, B * A);
        mlp_zero_grad(&s2.actor.train);
        float pl = sac_actor_loss(&s2, b.obs, eps, alpha, B, true);
        mlp_adam_step(&s2.actor.p, &s2.actor.train, &s2.adam_actor);
        sac_alpha_loss(&s2, s2.logp, B, &g);
        nn_adam_step(&s2.adam_alpha, &s2.alpha_adam, &s2.log_alpha, &g, 1);
        mlp_polyak(&s2.q_targ[0].p, &s2.q[0].p, s2.cfg.tau);
        mlp_polyak(&s2.q_targ[1].p, &s2.q[1].p, s2.cfg.tau);
        cr_expect_eq(ql, s1.stats.q_loss);
        cr_expect_eq(pl, s1.stats.pi_loss);
    }
    mlp_t *n1[5] = {&s1.actor, &s1.q[0], &s1.q[1], &s1.q_targ[0], &s1.q_targ[1]};
    mlp_t *n2[5] = {&s2.actor, &s2.q[0], &s2.q[1], &s2.q_targ[0], &s2.q_targ[1]};
    for (int k = 0; k < 5; k++) {
        double d = 0;
        for (size_t i = 0; i < n1[k]->p.n_params; i++) {
            d = fmax(d, fabs((double)n1[k]->p.params[i] - n2[k]->p.params[i]));
        }
        cr_expect(d < 1e-6, "net %d differs by %g", k, d);
    }
    cr_expect(fabsf(s1.log_alpha - s2.log_alpha) < 1e-7f);
    replay_batch_free(&b);
    replay_free(&rb);
    sac_free(&s1);
    sac_free(&s2);
}

Test(sac, repeated_updates_fit_the_critic_on_a_fixed_batch)
{
    sac_t s;
    small_sac(&s, 12);
    s.adam_critic.lr = 1e-2f;
    rng_t rng;
    rng_seed(&rng, 13);
    replay_batch b;
    random_batch(&b, &rng);
    b.terminated[0] = b.terminated[1] = b.terminated[2] = b.terminated[3] = 1.0f; // y = r
    sac_update(&s, &b);
    float first = s.stats.q_loss;
    for (int u = 0; u < 300; u++) {
        sac_update(&s, &b);
    }
    cr_expect(s.stats.q_loss < 0.05f * first, "q_loss %f after 300 updates, first %f",
              s.stats.q_loss, first);
    replay_batch_free(&b);
    sac_free(&s);
}

Test(sac, save_load_resumes_bit_for_bit_and_damage_is_refused)
{
    char dir[] = "/tmp/twig_test_sac_XXXXXX";
    cr_assert(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof(path), "%s/sac.bin", dir);
    sac_t s1, s2;
    small_sac(&s1, 14);
    small_sac(&s2, 15);
    rng_t rng;
    rng_seed(&rng, 16);
    replay_t rb;
    fill_replay(&rb, &rng, 64);
    replay_batch b;
    cr_assert_eq(replay_batch_init(&b, B, O, A), 0);
    for (int u = 0; u < 3; u++) {
        replay_sample_batch(&b, &rb, &rng, B);
        sac_update(&s1, &b);
    }
    cr_assert_eq(sac_save(&s1, path), 0, "%s", err_msg());
    cr_assert_eq(sac_load(&s2, path), 0, "%s", err_msg());
    cr_expect_eq(s2.n_updates, 3);
    cr_expect_eq(s2.log_alpha, s1.log_alpha);
    // the same next update on both gives the same bits (nets, moments, alpha, rng all restored)
    replay_sample_batch(&b, &rb, &rng, B);
    sac_update(&s1, &b);
    sac_update(&s2, &b);
    mlp_t *n1[5] = {&s1.actor, &s1.q[0], &s1.q[1], &s1.q_targ[0], &s1.q_targ[1]};
    mlp_t *n2[5] = {&s2.actor, &s2.q[0], &s2.q[1], &s2.q_targ[0], &s2.q_targ[1]};
    for (int k = 0; k < 5; k++) {
        cr_expect_eq(memcmp(n1[k]->p.params, n2[k]->p.params, n1[k]->p.n_params * sizeof(float)), 0,
                     "net %d differs after resume", k);
    }
    cr_expect_eq(s1.log_alpha, s2.log_alpha);
    float obs[O] = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f}, a1[A], a2[A];
    sac_act(&s1, a1, obs, 1, true);
    sac_act(&s2, a2, obs, 1, true);
    cr_expect_eq(memcmp(a1, a2, sizeof(a1)), 0);

    // a flipped byte is refused, and so is a file for other dimensions
    FILE *f = fopen(path, "r+b");
    cr_assert(f);
    fseek(f, 200, SEEK_SET);
    int ch = fgetc(f);
    fseek(f, 200, SEEK_SET);
    fputc(ch ^ 0x40, f);
    fclose(f);
    cr_expect_eq(sac_load(&s2, path), TWIG_ECORRUPT);
    cr_expect(strstr(err_msg(), "checksum") != NULL, "%s", err_msg());
    cr_assert_eq(sac_save(&s1, path), 0);
    sac_t other;
    sac_cfg cfg = sac_default_cfg(O + 1, A);
    cfg.hidden = H;
    cfg.batch = B;
    cr_assert_eq(sac_init(&other, &cfg, 1), 0);
    cr_expect_eq(sac_load(&other, path), TWIG_EMISMATCH);
    sac_free(&other);
    replay_batch_free(&b);
    replay_free(&rb);
    sac_free(&s1);
    sac_free(&s2);
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_expect_eq(system(cmd), 0);
}

Test(sac, update_allocates_nothing)
{
    sac_t s;
    sac_cfg cfg = sac_default_cfg(O, A);
    cfg.hidden = 64;
    cfg.batch = 32;
    cr_assert_eq(sac_init(&s, &cfg, 30), 0);
    rng_t rng;
    rng_seed(&rng, 31);
    replay_t rb;
    fill_replay(&rb, &rng, 256);
    replay_batch b;
    cr_assert_eq(replay_batch_init(&b, 32, O, A), 0);
    replay_sample_batch(&b, &rb, &rng, 32);
    sac_update(&s, &b); // first call: BLAS sets up its buffers
    struct mallinfo2 before = mallinfo2();
    for (int u = 0; u < 10; u++) {
        replay_sample_batch(&b, &rb, &rng, 32);
        sac_update(&s, &b);
    }
    float obs[O] = {0}, act[A];
    sac_act(&s, act, obs, 1, false);
    struct mallinfo2 after = mallinfo2();
    cr_expect_eq(after.uordblks, before.uordblks, "heap in use went %zu -> %zu", before.uordblks,
                 after.uordblks);
    cr_expect_eq(after.hblkhd, before.hblkhd, "mmapped heap went %zu -> %zu", before.hblkhd,
                 after.hblkhd);
    replay_batch_free(&b);
    replay_free(&rb);
    sac_free(&s);
}

Test(sac, init_rejects_bad_config)
{
    sac_t s;
    sac_cfg cfg = sac_default_cfg(0, 2);
    cr_expect_eq(sac_init(&s, &cfg, 1), -EINVAL);
    cfg = sac_default_cfg(3, 2);
    cfg.gamma = 1.5f;
    cr_expect_eq(sac_init(&s, &cfg, 1), -EINVAL);
    cr_expect(strstr(err_msg(), "gamma") != NULL, "%s", err_msg());
    cfg = sac_default_cfg(3, 2);
    cfg.tau = 0.0f;
    cr_expect_eq(sac_init(&s, &cfg, 1), -EINVAL);
    cfg = sac_default_cfg(3, 2);
    cfg.lr_actor = -1.0f;
    cr_expect_eq(sac_init(&s, &cfg, 1), -EINVAL);
    sac_free(&s);
}
