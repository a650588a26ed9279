/* nn_adam.c - Adam / AdamW over a flat parameter block (Kingma & Ba 2015; Loshchilov & Hutter
 * 2019), written to match torch.optim.Adam/AdamW step for step:
 *   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
 *   p -= lr / (1-b1^t) * m / (sqrt(v) / sqrt(1-b2^t) + eps)
 * with L2 weight decay (g += wd p) or decoupled decay (p *= 1 - lr wd) before the update. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/mem.h"
#include "common/nn/nn.h"

nn_adam_cfg nn_adam_default(float lr)
{
    return (nn_adam_cfg){
        .lr = lr,
        .beta1 = 0.9f,
        .beta2 = 0.999f,
        .eps = 1e-8f,
        .weight_decay = 0.0f,
        .decoupled = false,
        .clip_norm = 0.0f,
    };
}

void nn_adam_init(nn_adam_state *st, size_t n)
{
    size_t bytes = (n ? n : 1) * sizeof(float);
    st->m = xmalloc_aligned(bytes);
    st->v = xmalloc_aligned(bytes);
    st->n = n;
    nn_adam_reset(st);
}

void nn_adam_free(nn_adam_state *st)
{
    free(st->m);
    free(st->v);
    st->m = NULL;
    st->v = NULL;
    st->n = 0;
    st->t = 0;
}

void nn_adam_reset(nn_adam_state *st)
{
    if (st->n) {
        memset(st->m, 0, st->n * sizeof(float));
        memset(st->v, 0, st->n * sizeof(float));
    }
    st->t = 0;
}

double nn_grad_norm(const float *g, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) {
        s += (double)g[i] * g[i];
    }
    return sqrt(s);
}

/* the shared constants of one step */
typedef struct adam_step {
    float b1, b2, one_b1, one_b2;
    float step_size;    /* lr / (1 - b1^t) */
    float inv_sqrt_bc2; /* 1 / sqrt(1 - b2^t) */
    float eps;
    float gscale; /* clipping factor, 1 if none */
    float lr;
    bool decoupled;
} adam_step;

static void adam_range(const adam_step *s, float *restrict p, const float *restrict g,
                       float *restrict m, float *restrict v, size_t n, float wd)
{
    if (wd != 0.0f && s->decoupled) {
        float shrink = 1.0f - s->lr * wd;
        for (size_t i = 0; i < n; i++) {
            p[i] *= shrink;
        }
        wd = 0.0f;
    }
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] * s->gscale + wd * p[i];
        float mi = s->b1 * m[i] + s->one_b1 * gi;
        float vi = s->b2 * v[i] + s->one_b2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] -= s->step_size * mi / (sqrtf(vi) * s->inv_sqrt_bc2 + s->eps);
    }
}

static adam_step adam_begin(const nn_adam_cfg *cfg, nn_adam_state *st, const float *grads, size_t n)
{
    st->t++;
    adam_step s = {
        .b1 = cfg->beta1,
        .b2 = cfg->beta2,
        .one_b1 = 1.0f - cfg->beta1,
        .one_b2 = 1.0f - cfg->beta2,
        .eps = cfg->eps,
        .gscale = 1.0f,
        .lr = cfg->lr,
        .decoupled = cfg->decoupled,
    };
    double bc1 = 1.0 - pow((double)cfg->beta1, (double)st->t);
    double bc2 = 1.0 - pow((double)cfg->beta2, (double)st->t);
    s.step_size = (float)(cfg->lr / bc1);
    s.inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2));
    if (cfg->clip_norm > 0.0f) {
        double norm = nn_grad_norm(grads, n);
        if (norm > cfg->clip_norm) {
            s.gscale = (float)(cfg->clip_norm / (norm + 1e-6));
        }
    }
    return s;
}

void nn_adam_step(const nn_adam_cfg *cfg, nn_adam_state *st, float *params, const float *grads,
                  size_t n)
{
    TWIG_ASSERT(n <= st->n);
    adam_step s = adam_begin(cfg, st, grads, n);
    adam_range(&s, params, grads, st->m, st->v, n, cfg->weight_decay);
}

void nn_adam_step_groups(const nn_adam_cfg *cfg, nn_adam_state *st, float *params,
                         const float *grads, size_t n, const nn_adam_group *groups, int n_groups)
{
    TWIG_ASSERT(n <= st->n);
    adam_step s = adam_begin(cfg, st, grads, n);
    // walk the block in order: gaps between groups get the default decay
    size_t pos = 0;
    for (int k = 0; k < n_groups; k++) {
        const nn_adam_group *g = &groups[k];
        TWIG_ASSERT(g->offset >= pos && g->offset + g->n <= n);
        adam_range(&s, params + pos, grads + pos, st->m + pos, st->v + pos, g->offset - pos,
                   cfg->weight_decay);
        adam_range(&s, params + g->offset, grads + g->offset, st->m + g->offset, st->v + g->offset,
                   g->n, g->weight_decay);
        pos = g->offset + g->n;
    }
    adam_range(&s, params + pos, grads + pos, st->m + pos, st->v + pos, n - pos, cfg->weight_decay);
}
