/* sac.c - the SAC update: target, critic step, actor step, temperature step, Polyak */
#include "common/nn/sac.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/err.h"
#include "common/base/mem.h"

sac_cfg sac_default_cfg(int n_obs, int n_act)
{
    return (sac_cfg){
        .n_obs = n_obs,
        .n_act = n_act,
        .hidden = 256,
        .batch = 256,
        .gamma = 0.99f,
        .tau = 0.005f,
        .lr_actor = 3e-4f,
        .lr_critic = 3e-4f,
        .lr_alpha = 3e-4f,
        .init_log_alpha = 0.0f,
        .target_entropy = -(float)n_act,
    };
}

static int check_cfg(const sac_cfg *c)
{
    if (c->n_obs < 1 || c->n_obs > 4096 || c->n_act < 1 || c->n_act > 4096) {
        return err_set(-EINVAL, "sac: n_obs %d n_act %d, must be 1..4096", c->n_obs, c->n_act);
    }
    if (c->hidden < 1 || c->hidden > 65536 || c->batch < 1 || c->batch > 1 << 20) {
        return err_set(-EINVAL, "sac: hidden %d batch %d out of range", c->hidden, c->batch);
    }
    if (!(c->gamma >= 0.0f && c->gamma <= 1.0f) || !(c->tau > 0.0f && c->tau <= 1.0f)) {
        return err_set(-EINVAL, "sac: gamma %g must be in [0,1], tau %g in (0,1]", c->gamma,
                       c->tau);
    }
    if (!(c->lr_actor > 0.0f) || !(c->lr_critic > 0.0f) || !(c->lr_alpha >= 0.0f)) {
        return err_set(-EINVAL, "sac: learning rates must be positive");
    }
    if (!isfinite(c->init_log_alpha) || !isfinite(c->target_entropy)) {
        return err_set(-EINVAL, "sac: init_log_alpha and target_entropy must be finite");
    }
    return 0;
}

int sac_init(sac_t *s, const sac_cfg *cfg, uint64_t seed)
{
    memset(s, 0, sizeof(*s));
    int rc = check_cfg(cfg);
    if (rc < 0) {
        return rc;
    }
    s->cfg = *cfg;
    const int O = cfg->n_obs, A = cfg->n_act, H = cfg->hidden, B = cfg->batch;
    rng_seed(&s->rng, seed);
    rng_t init = rng_split(&s->rng, 1);
    const int pi_sizes[] = {O, H, H, 2 * A};
    const int q_sizes[] = {O + A, H, H, 1};
    mlp_init(&s->actor, pi_sizes, 3, NN_ACT_RELU, B, &init);
    for (int k = 0; k < 2; k++) {
        mlp_init(&s->q[k], q_sizes, 3, NN_ACT_RELU, B, &init);
        // the targets are never stepped: parameters and a forward workspace only
        mlp_params_init(&s->q_targ[k].p, q_sizes, 3, NN_ACT_RELU, &init);
        mlp_work_init(&s->q_targ[k].work, &s->q_targ[k].p, B);
        mlp_copy_params(&s->q_targ[k].p, &s->q[k].p);
    }
    s->log_alpha = cfg->init_log_alpha;
    nn_adam_init(&s->alpha_adam, 1);
    s->adam_actor = nn_adam_default(cfg->lr_actor);
    s->adam_critic = nn_adam_default(cfg->lr_critic);
    s->adam_alpha = nn_adam_default(cfg->lr_alpha);

    // workspace: one block
    size_t n = (size_t)B * (2 * (O + A) + 4 * A + 4 * A + 7);
    s->work = xmalloc_aligned(n * sizeof(float));
    memset(s->work, 0, n * sizeof(float));
    float *p = s->work;
    s->x = p, p += (size_t)B * (O + A);
    s->dx = p, p += (size_t)B * (O + A);
    s->pi_out = p, p += (size_t)B * 2 * A;
    s->dpi = p, p += (size_t)B * 2 * A;
    s->eps = p, p += (size_t)B * A;
    s->u = p, p += (size_t)B * A;
    s->a = p, p += (size_t)B * A;
    s->da = p, p += (size_t)B * A;
    s->logp = p, p += B;
    s->q1 = p, p += B;
    s->q2 = p, p += B;
    s->y = p, p += B;
    s->dq1 = p, p += B;
    s->dq2 = p, p += B;
    s->dlogp = p, p += B;
    TWIG_ASSERT(p <= s->work + n);
    s->rows1 = xmalloc(sizeof(int) * (size_t)B);
    s->rows2 = xmalloc(sizeof(int) * (size_t)B);
    return 0;
}

void sac_free(sac_t *s)
{
    mlp_free(&s->actor);
    for (int k = 0; k < 2; k++) {
        mlp_free(&s->q[k]);
        mlp_free(&s->q_targ[k]);
    }
    nn_adam_free(&s->alpha_adam);
    free(s->work);
    free(s->rows1);
    free(s->rows2);
    memset(s, 0, sizeof(*s));
}

/* x = [obs | act] row by row */
static void concat_rows(float *x, const float *obs, const float *act, int B, int O, int A)
{
    for (int i = 0; i < B; i++) {
        memcpy(x + (size_t)i * (O + A), obs + (size_t)i * O, sizeof(float) * O);
        memcpy(x + (size_t)i * (O + A) + O, act + (size_t)i * A, sizeof(float) * A);
    }
}

/* ---- losses ---- */

/* how a loss leaves its gradients: not at all, added to the grads, or overwriting them */
typedef enum grad_mode { GRAD_NONE, GRAD_ADD, GRAD_SET } grad_mode;

static float critic_loss(sac_t *s, const replay_batch *b, const float *y, grad_mode mode)
{
    const int B = b->n, O = s->cfg.n_obs, A = s->cfg.n_act;
    concat_rows(s->x, b->obs, b->act, B, O, A);
    mlp_forward(&s->q[0].p, &s->q[0].work, s->q1, s->x, B);
    mlp_forward(&s->q[1].p, &s->q[1].work, s->q2, s->x, B);
    double l1 = 0.0, l2 = 0.0, qsum = 0.0;
    const float scale = 2.0f / (float)B;
    for (int i = 0; i < B; i++) {
        float e1 = s->q1[i] - y[i], e2 = s->q2[i] - y[i];
        l1 += (double)e1 * e1;
        l2 += (double)e2 * e2;
        qsum += s->q1[i];
        s->dq1[i] = scale * e1;
        s->dq2[i] = scale * e2;
    }
    s->stats.q_mean = (float)(qsum / B);
    if (mode == GRAD_ADD) {
        mlp_backward(&s->q[0].p, &s->q[0].work, &s->q[0].train, NULL, s->dq1, true);
        mlp_backward(&s->q[1].p, &s->q[1].work, &s->q[1].train, NULL, s->dq2, true);
    } else if (mode == GRAD_SET) {
        mlp_backward_set(&s->q[0].p, &s->q[0].work, &s->q[0].train, NULL, s->dq1);
        mlp_backward_set(&s->q[1].p, &s->q[1].work, &s->q[1].train, NULL, s->dq2);
    }
    return (float)((l1 + l2) / B);
}

float sac_critic_loss(sac_t *s, const replay_batch *b, const float *y, bool accumulate)
{
    return critic_loss(s, b, y, accumulate ? GRAD_ADD : GRAD_NONE);
}

static float actor_loss(sac_t *s, const float *obs, const float *eps, float alpha, int B,
                        grad_mode mode)
{
    const int O = s->cfg.n_obs, A = s->cfg.n_act;
    mlp_forward(&s->actor.p, &s->actor.work, s->pi_out, obs, B);
    squash_forward(s->u, s->a, s->logp, s->pi_out, eps, B, A);
    concat_rows(s->x, obs, s->a, B, O, A);
    mlp_forward(&s->q[0].p, &s->q[0].work, s->q1, s->x, B);
    mlp_forward(&s->q[1].p, &s->q[1].work, s->q2, s->x, B);
    double loss = 0.0;
    const float inv_b = 1.0f / (float)B;
    for (int i = 0; i < B; i++) {
        float q1 = s->q1[i], q2 = s->q2[i];
        loss += (double)alpha * s->logp[i] - (q1 < q2 ? q1 : q2);
        // the min passes its gradient to the smaller Q (split evenly on a tie)
        float w1 = q1 < q2 ? 1.0f : q1 > q2 ? 0.0f : 0.5f;
        s->dq1[i] = -inv_b * w1;
        s->dq2[i] = -inv_b * (1.0f - w1);
    }
    if (mode != GRAD_NONE) {
        // through the frozen critics to the action only, each row through the critic that
        // is its minimum (the other one's gradient there is zero)
        int n1 = 0, n2 = 0;
        for (int i = 0; i < B; i++) {
            if (s->dq1[i] != 0.0f) {
                s->rows1[n1++] = i;
            }
            if (s->dq2[i] != 0.0f) {
                s->rows2[n2++] = i;
            }
        }
        memset(s->da, 0, sizeof(float) * (size_t)B * A);
        mlp_backward_input_rows(&s->q[0].p, &s->q[0].work, &s->q[0].train, s->dx, s->dq1, s->rows1,
                                n1, O, A);
        for (int r = 0; r < n1; r++) {
            for (int j = 0; j < A; j++) {
                s->da[(size_t)s->rows1[r] * A + j] += s->dx[(size_t)r * A + j];
            }
        }
        mlp_backward_input_rows(&s->q[1].p, &s->q[1].work, &s->q[1].train, s->dx, s->dq2, s->rows2,
                                n2, O, A);
        for (int r = 0; r < n2; r++) {
            for (int j = 0; j < A; j++) {
                s->da[(size_t)s->rows2[r] * A + j] += s->dx[(size_t)r * A + j];
            }
        }
        // dL/dlogp = alpha / B for every row
        for (int i = 0; i < B; i++) {
            s->dlogp[i] = alpha * inv_b;
        }
        squash_backward(s->dpi, s->da, s->dlogp, s->pi_out, eps, s->a, B, A);
        if (mode == GRAD_SET) {
            mlp_backward_set(&s->actor.p, &s->actor.work, &s->actor.train, NULL, s->dpi);
        } else {
            mlp_backward(&s->actor.p, &s->actor.work, &s->actor.train, NULL, s->dpi, true);
        }
    }
    return (float)(loss / B);
}

float sac_actor_loss(sac_t *s, const float *obs, const float *eps, float alpha, int B,
                     bool accumulate)
{
    return actor_loss(s, obs, eps, alpha, B, accumulate ? GRAD_ADD : GRAD_NONE);
}

float sac_alpha_loss(const sac_t *s, const float *logp, int B, float *grad)
{
    double m = 0.0;
    for (int i = 0; i < B; i++) {
        m += (double)logp[i] + s->cfg.target_entropy;
    }
    m /= B;
    *grad = (float)-m;
    return (float)(-(double)s->log_alpha * m);
}

/* ---- the update ---- */

void sac_target(sac_t *s, float *y, const replay_batch *b, const float *eps, float alpha)
{
    const int B = b->n, O = s->cfg.n_obs, A = s->cfg.n_act;
    const float gamma = s->cfg.gamma;
    mlp_forward(&s->actor.p, &s->actor.work, s->pi_out, b->next_obs, B);
    squash_forward(s->u, s->a, s->logp, s->pi_out, eps, B, A);
    concat_rows(s->x, b->next_obs, s->a, B, O, A);
    mlp_forward(&s->q_targ[0].p, &s->q_targ[0].work, s->q1, s->x, B);
    mlp_forward(&s->q_targ[1].p, &s->q_targ[1].work, s->q2, s->x, B);
    for (int i = 0; i < B; i++) {
        float qmin = s->q1[i] < s->q2[i] ? s->q1[i] : s->q2[i];
        y[i] = b->reward[i] + gamma * (1.0f - b->terminated[i]) * (qmin - alpha * s->logp[i]);
    }
}

void sac_update(sac_t *s, const replay_batch *b)
{
    const int B = b->n, O = s->cfg.n_obs, A = s->cfg.n_act;
    TWIG_ASSERT(B >= 1 && B <= s->cfg.batch && b->n_obs == O && b->n_act == A);
    const float alpha = expf(s->log_alpha);

    // target
    rng_fill_normal_polar(&s->rng, s->eps, B * A);
    sac_target(s, s->y, b, s->eps, alpha);

    // critic step (the backward overwrites the grads: no zeroing pass)
    s->stats.q_loss = critic_loss(s, b, s->y, GRAD_SET);
    mlp_adam_step(&s->q[0].p, &s->q[0].train, &s->adam_critic);
    mlp_adam_step(&s->q[1].p, &s->q[1].train, &s->adam_critic);

    // actor step, critics frozen
    rng_fill_normal_polar(&s->rng, s->eps, B * A);
    s->stats.pi_loss = actor_loss(s, b->obs, s->eps, alpha, B, GRAD_SET);
    mlp_adam_step(&s->actor.p, &s->actor.train, &s->adam_actor);

    // temperature step on the actor step's logp
    float g = 0.0f;
    s->stats.alpha_loss = sac_alpha_loss(s, s->logp, B, &g);
    nn_adam_step(&s->adam_alpha, &s->alpha_adam, &s->log_alpha, &g, 1);
    double lp = 0.0;
    for (int i = 0; i < B; i++) {
        lp += s->logp[i];
    }
    s->stats.entropy = (float)(-lp / B);
    s->stats.alpha = alpha;

    // targets follow
    mlp_polyak(&s->q_targ[0].p, &s->q[0].p, s->cfg.tau);
    mlp_polyak(&s->q_targ[1].p, &s->q[1].p, s->cfg.tau);
    s->n_updates++;
}

/* act from the actor output: tanh(mu), or a tanh-Gaussian sample with noise from rng */
static void policy_head(float *act, float *scratch, const float *pi_out, int B, int A,
                        bool deterministic, rng_t *rng)
{
    if (deterministic) {
        for (int i = 0; i < B; i++) {
            for (int j = 0; j < A; j++) {
                act[(size_t)i * A + j] = tanhf(pi_out[(size_t)i * 2 * A + j]);
            }
        }
        return;
    }
    float *eps = scratch, *u = eps + (size_t)B * A, *logp = u + (size_t)B * A;
    rng_fill_normal_polar(rng, eps, B * A);
    squash_forward(u, act, logp, pi_out, eps, B, A);
}

void sac_act(sac_t *s, float *act, const float *obs, int B, bool deterministic)
{
    TWIG_ASSERT(B >= 1 && B <= s->cfg.batch);
    mlp_forward(&s->actor.p, &s->actor.work, s->pi_out, obs, B);
    // eps, u, a, da are consecutive in the workspace: 4 B A floats, more than the
    // 2 B A + B policy_head uses as scratch
    const size_t BA = (size_t)s->cfg.batch * s->cfg.n_act;
    TWIG_ASSERT(s->u == s->eps + BA && s->a == s->u + BA && s->da == s->a + BA);
    policy_head(act, s->eps, s->pi_out, B, s->cfg.n_act, deterministic, &s->rng);
}

/* ---- checkpoints ---- */

typedef struct sac_extra {
    float log_alpha, alpha_m, alpha_v, pad;
    int64_t alpha_t;
    int64_t n_updates;
    uint64_t rng[4];
} sac_extra;

static sac_extra sac_extra_of(const sac_t *s)
{
    sac_extra ex = {
        .log_alpha = s->log_alpha,
        .alpha_m = s->alpha_adam.m[0],
        .alpha_v = s->alpha_adam.v[0],
        .alpha_t = s->alpha_adam.t,
        .n_updates = s->n_updates,
    };
    memcpy(ex.rng, s->rng.s, sizeof(ex.rng));
    return ex;
}

size_t sac_image_size(sac_t *s)
{
    mlp_t *nets[5] = {&s->actor, &s->q[0], &s->q[1], &s->q_targ[0], &s->q_targ[1]};
    return mlp_image_size(nets, 5, sizeof(sac_extra));
}

void sac_image_write(uint8_t *buf, sac_t *s)
{
    mlp_t *nets[5] = {&s->actor, &s->q[0], &s->q[1], &s->q_targ[0], &s->q_targ[1]};
    sac_extra ex = sac_extra_of(s);
    mlp_image_write(buf, nets, 5, &ex, sizeof(ex));
}

int sac_save(sac_t *s, const char *path)
{
    mlp_t *nets[5] = {&s->actor, &s->q[0], &s->q[1], &s->q_targ[0], &s->q_targ[1]};
    sac_extra ex = sac_extra_of(s);
    return mlp_save_file(path, nets, 5, &ex, sizeof(ex));
}

int sac_load(sac_t *s, const char *path)
{
    mlp_t *nets[5] = {&s->actor, &s->q[0], &s->q[1], &s->q_targ[0], &s->q_targ[1]};
    sac_extra ex;
    int rc = mlp_load_file(path, nets, 5, &ex, sizeof(ex));
    if (rc < 0) {
        return rc;
    }
    if (!isfinite(ex.log_alpha) || !isfinite(ex.alpha_m) || !(ex.alpha_v >= 0.0f) ||
        ex.alpha_t < 0 || ex.n_updates < 0) {
        return err_set(TWIG_ECORRUPT, "sac load: %s has an invalid temperature state", path);
    }
    s->log_alpha = ex.log_alpha;
    s->alpha_adam.m[0] = ex.alpha_m;
    s->alpha_adam.v[0] = ex.alpha_v;
    s->alpha_adam.t = ex.alpha_t;
    s->n_updates = ex.n_updates;
    memcpy(s->rng.s, ex.rng, sizeof(ex.rng));
    return 0;
}
