/* ensemble.c - MBPO's probabilistic dynamics ensemble (see ensemble.h) */
#include "common/nn/ensemble.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/atomic_file.h"
#include "common/base/bytes.h"
#include "common/base/crc32c.h"
#include "common/base/err.h"
#include "common/base/mem.h"
#include "common/nn/nn_gemm.h"
#include "common/nn/nn_math.h"

#define ENSEMBLE_MAX_LV_INIT 0.5f      /* MBPO bnn.py: max_logvar starts at 0.5 */
#define ENSEMBLE_MIN_LV_INIT -10.0f    /* and min_logvar at -10 */
#define ENSEMBLE_STD_FLOOR 1e-12       /* MBPO's StandardScaler: a smaller std becomes 1 */
#define ENSEMBLE_MIN_TRANSITIONS 10    /* fewer leave no holdout */
#define ENSEMBLE_FILE_MAX (1ull << 32) /* refuse bigger files before reading them */

static const char ensemble_magic[8] = {'T', 'W', 'I', 'G', 'E', 'N', 'S', '\0'};

/* ---- configuration -------------------------------------------------------------------- */

void ensemble_cfg_default(ensemble_cfg *cfg, int n_obs, int n_act)
{
    *cfg = (ensemble_cfg){
        .n_obs = n_obs,
        .n_act = n_act,
        .n_members = 7,
        .n_elites = 5,
        .n_hidden = 200,
        .n_layers = 4,
        .learn_reward = true,
    };
}

void ensemble_train_cfg_default(ensemble_train_cfg *cfg, int n_layers)
{
    *cfg = (ensemble_train_cfg){
        .lr = 1e-3f,
        .logvar_penalty = 0.01f,
        .batch = 256,
        .holdout_ratio = 0.2f,
        .max_holdout = 5000,
        .patience = 5,
        .improve_ratio = 0.01f,
        .max_epochs = 1000,
    };
    /* MBPO: 2.5e-5 on the input layer, 5e-5 on the next, 7.5e-5 on the other hidden ones,
     * 1e-4 on the output layer */
    if (n_layers < 1 || n_layers > ENSEMBLE_MAX_HIDDEN_LAYERS) {
        return;
    }
    for (int k = 0; k <= n_layers; k++) {
        cfg->weight_decay[k] = k == 0 ? 2.5e-5f : k == 1 ? 5e-5f : 7.5e-5f;
    }
    cfg->weight_decay[n_layers] = 1e-4f;
}

int ensemble_cfg_check(const ensemble_cfg *c)
{
    if (c->n_obs < 1 || c->n_obs > ENSEMBLE_MAX_DIM) {
        return err_set(-EINVAL, "ensemble n_obs is %d, expected 1..%d", c->n_obs, ENSEMBLE_MAX_DIM);
    }
    if (c->n_act < 1 || c->n_act > ENSEMBLE_MAX_DIM) {
        return err_set(-EINVAL, "ensemble n_act is %d, expected 1..%d", c->n_act, ENSEMBLE_MAX_DIM);
    }
    if (c->n_hidden < 1 || c->n_hidden > ENSEMBLE_MAX_DIM) {
        return err_set(-EINVAL, "ensemble n_hidden is %d, expected 1..%d", c->n_hidden,
                       ENSEMBLE_MAX_DIM);
    }
    if (c->n_layers < 1 || c->n_layers > ENSEMBLE_MAX_HIDDEN_LAYERS) {
        return err_set(-EINVAL, "ensemble n_layers is %d, expected 1..%d", c->n_layers,
                       ENSEMBLE_MAX_HIDDEN_LAYERS);
    }
    if (c->n_members < 1 || c->n_members > ENSEMBLE_MAX_MEMBERS) {
        return err_set(-EINVAL, "ensemble n_members is %d, expected 1..%d", c->n_members,
                       ENSEMBLE_MAX_MEMBERS);
    }
    if (c->n_elites < 1 || c->n_elites > c->n_members) {
        return err_set(-EINVAL, "ensemble n_elites is %d, expected 1..n_members (%d)", c->n_elites,
                       c->n_members);
    }
    return 0;
}

static int train_cfg_check(const ensemble_train_cfg *c, int n_linear)
{
    if (!(c->lr > 0.0f && c->lr < 1.0f)) {
        return err_set(-EINVAL, "ensemble lr is %g, expected (0, 1)", c->lr);
    }
    for (int k = 0; k < n_linear; k++) {
        if (!(c->weight_decay[k] >= 0.0f && c->weight_decay[k] < 1.0f)) {
            return err_set(-EINVAL, "ensemble weight_decay[%d] is %g, expected [0, 1)", k,
                           c->weight_decay[k]);
        }
    }
    if (!(c->logvar_penalty >= 0.0f && c->logvar_penalty < 1e3f)) {
        return err_set(-EINVAL, "ensemble logvar_penalty is %g", c->logvar_penalty);
    }
    if (c->batch < 1 || c->batch > 65536) {
        return err_set(-EINVAL, "ensemble batch is %d, expected 1..65536", c->batch);
    }
    if (!(c->holdout_ratio > 0.0f && c->holdout_ratio < 1.0f)) {
        return err_set(-EINVAL, "ensemble holdout_ratio is %g, expected (0, 1)", c->holdout_ratio);
    }
    if (c->max_holdout < 1) {
        return err_set(-EINVAL, "ensemble max_holdout is %d, expected >= 1", c->max_holdout);
    }
    if (c->min_epochs < 0 || c->min_epochs > c->max_epochs) {
        return err_set(-EINVAL, "ensemble min_epochs %d must be in 0..max_epochs (%d)",
                       c->min_epochs, c->max_epochs);
    }
    if (c->patience < 1 || c->max_epochs < 1) {
        return err_set(-EINVAL, "ensemble patience %d and max_epochs %d must be >= 1", c->patience,
                       c->max_epochs);
    }
    if (!(c->improve_ratio >= 0.0f && c->improve_ratio < 1.0f)) {
        return err_set(-EINVAL, "ensemble improve_ratio is %g, expected [0, 1)", c->improve_ratio);
    }
    return 0;
}

/* ---- layout --------------------------------------------------------------------------- */

static ensemble_tensor *table_add(ensemble_t *e, const char *name, float *data, int ndim,
                                  uint32_t d0, uint32_t d1, uint32_t d2)
{
    TWIG_ASSERT(e->n_tensors < ENSEMBLE_MAX_TENSORS);
    ensemble_tensor *t = &e->tensors[e->n_tensors++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = d1;
    t->shape[2] = d2;
    t->count = d0;
    if (ndim > 1) {
        t->count *= d1;
    }
    if (ndim > 2) {
        t->count *= d2;
    }
    t->data = data;
    return t;
}

/* floats of the parameter block and of the stats block for a valid cfg, without allocating:
 * loaders compare these with what they were given before they allocate anything */
static size_t count_params(const ensemble_cfg *cfg)
{
    const size_t E = (size_t)cfg->n_members, H = (size_t)cfg->n_hidden;
    const size_t I = (size_t)cfg->n_obs + (size_t)cfg->n_act;
    const size_t J = (size_t)cfg->n_obs + (cfg->learn_reward ? 1 : 0);
    size_t n = E * (I * H + H);                         /* input layer */
    n += E * (H * H + H) * (size_t)(cfg->n_layers - 1); /* hidden to hidden */
    n += E * (H * 2 * J + 2 * J);                       /* output layer */
    return n + 2 * J;                                   /* bounds */
}

static size_t count_stats(const ensemble_cfg *cfg)
{
    const size_t I = (size_t)cfg->n_obs + (size_t)cfg->n_act;
    const size_t J = (size_t)cfg->n_obs + (cfg->learn_reward ? 1 : 0);
    return 2 * I + 2 * J + (size_t)cfg->n_members;
}

size_t ensemble_tensor_floats(const ensemble_cfg *cfg)
{
    return count_params(cfg) + count_stats(cfg) + (size_t)cfg->n_elites + 3;   /* + dims */
}

/* sizes, the tensor table and the pointers into the blocks; allocates the blocks */
void ensemble_alloc(ensemble_t *e, const ensemble_cfg *cfg)
{
    memset(e, 0, sizeof *e);
    e->cfg = *cfg;
    e->gemm = nn_gemm;
    const int E = cfg->n_members;
    e->n_in = cfg->n_obs + cfg->n_act;
    e->n_out = cfg->n_obs + (cfg->learn_reward ? 1 : 0);
    e->n_linear = cfg->n_layers + 1;
    e->sizes[0] = e->n_in;
    for (int k = 1; k <= cfg->n_layers; k++) {
        e->sizes[k] = cfg->n_hidden;
    }
    e->sizes[e->n_linear] = 2 * e->n_out;

    size_t n = 0;
    for (int k = 0; k < e->n_linear; k++) {
        n += (size_t)E * e->sizes[k] * e->sizes[k + 1] + (size_t)E * e->sizes[k + 1];
    }
    n += 2 * (size_t)e->n_out;
    TWIG_ASSERT(n == count_params(cfg));
    e->n_params = n;
    e->params = xmalloc_aligned(n * sizeof(float));
    memset(e->params, 0, n * sizeof(float));

    size_t n_stats = 2 * (size_t)e->n_in + 2 * (size_t)e->n_out + (size_t)E;
    e->stats = xmalloc_aligned(n_stats * sizeof(float));
    e->elites = xcalloc((size_t)cfg->n_elites, sizeof(int));

    float *p = e->params;
    char name[16];
    for (int k = 0; k < e->n_linear; k++) {
        int in = e->sizes[k], out = e->sizes[k + 1];
        e->w[k] = p;
        snprintf(name, sizeof name, "l%d.w", k);
        table_add(e, name, p, 3, (uint32_t)E, (uint32_t)in, (uint32_t)out);
        p += (size_t)E * in * out;
        e->b[k] = p;
        snprintf(name, sizeof name, "l%d.b", k);
        table_add(e, name, p, 2, (uint32_t)E, (uint32_t)out, 0);
        p += (size_t)E * out;
    }
    e->max_logvar = p;
    table_add(e, "max_logvar", p, 1, (uint32_t)e->n_out, 0, 0);
    p += e->n_out;
    e->min_logvar = p;
    table_add(e, "min_logvar", p, 1, (uint32_t)e->n_out, 0, 0);
    p += e->n_out;
    TWIG_ASSERT(p == e->params + e->n_params);

    float *s = e->stats;
    e->in_mu = s;
    table_add(e, "in_mu", s, 1, (uint32_t)e->n_in, 0, 0);
    s += e->n_in;
    e->in_sd = s;
    table_add(e, "in_sd", s, 1, (uint32_t)e->n_in, 0, 0);
    s += e->n_in;
    e->out_mu = s;
    table_add(e, "out_mu", s, 1, (uint32_t)e->n_out, 0, 0);
    s += e->n_out;
    e->out_sd = s;
    table_add(e, "out_sd", s, 1, (uint32_t)e->n_out, 0, 0);
    s += e->n_out;
    e->holdout_mse = s;
    table_add(e, "holdout_mse", s, 1, (uint32_t)E, 0, 0);
    /* not floats in the model: written and read by hand */
    table_add(e, "elites", NULL, 1, (uint32_t)cfg->n_elites, 0, 0);
    table_add(e, "dims", NULL, 1, 3, 0, 0);

    for (int i = 0; i < e->n_in; i++) {
        e->in_mu[i] = 0.0f;
        e->in_sd[i] = 1.0f;
    }
    for (int i = 0; i < e->n_out; i++) {
        e->out_mu[i] = 0.0f;
        e->out_sd[i] = 1.0f;
    }
    for (int m = 0; m < E; m++) {
        e->holdout_mse[m] = INFINITY;
    }
    for (int i = 0; i < cfg->n_elites; i++) {
        e->elites[i] = i;
    }
}

/* N(0, std) truncated at two standard deviations, as tf.truncated_normal in MBPO */
static float truncated_normal(rng_t *rng, float std)
{
    for (int tries = 0; tries < 1000; tries++) {
        float z = rng_normal_f32(rng);
        if (fabsf(z) <= 2.0f) {
            return z * std;
        }
    }
    return 0.0f;
}

int ensemble_init(ensemble_t *e, const ensemble_cfg *cfg, rng_t *rng)
{
    int rc = ensemble_cfg_check(cfg);
    if (rc < 0) {
        return rc;
    }
    ensemble_alloc(e, cfg);
    for (int k = 0; k < e->n_linear; k++) {
        int in = e->sizes[k];
        size_t n = (size_t)cfg->n_members * in * e->sizes[k + 1];
        float std = 1.0f / (2.0f * sqrtf((float)in));
        for (size_t i = 0; i < n; i++) {
            e->w[k][i] = truncated_normal(rng, std);
        }
    }
    for (int j = 0; j < e->n_out; j++) {
        e->max_logvar[j] = ENSEMBLE_MAX_LV_INIT;
        e->min_logvar[j] = ENSEMBLE_MIN_LV_INIT;
    }
    return 0;
}

void ensemble_free(ensemble_t *e)
{
    free(e->params);
    free(e->stats);
    free(e->elites);
    memset(e, 0, sizeof *e);
}

void ensemble_copy(ensemble_t *dst, const ensemble_t *src)
{
    TWIG_ASSERT(dst->n_params == src->n_params && dst->n_in == src->n_in &&
                dst->n_out == src->n_out && dst->cfg.n_elites == src->cfg.n_elites &&
                dst->cfg.n_members == src->cfg.n_members);
    memcpy(dst->params, src->params, src->n_params * sizeof(float));
    size_t n_stats = 2 * (size_t)src->n_in + 2 * (size_t)src->n_out + src->cfg.n_members;
    memcpy(dst->stats, src->stats, n_stats * sizeof(float));
    memcpy(dst->elites, src->elites, (size_t)src->cfg.n_elites * sizeof(int));
}

/* ---- the Gaussian NLL with soft log-variance bounds ------------------------------------ */

/* lanes [0, n) of p, the others zero; and the reverse (full lanes without a memcpy call) */
static inline nn_v8f load_part(const float *p, int n)
{
    if (n == 8) {
        return nn_v8_load(p);
    }
    nn_v8f v = {0};
    for (int k = 0; k < n; k++) {
        v[k] = p[k];
    }
    return v;
}

static inline void store_part(float *p, nn_v8f v, int n)
{
    if (n == 8) {
        nn_v8_store(p, v);
        return;
    }
    for (int k = 0; k < n; k++) {
        p[k] = v[k];
    }
}

/* sin and cos of 2 pi u, u in [0, 1), 8 lanes: quadrant q = floor(4u), a = (4u - q) pi/2 in
 * [0, pi/2), Taylor polynomials to degree 11 / 12 (truncation below 6e-8), then rotation by
 * q quarter turns */
static inline void sincos_2pi_v8(nn_v8f u, nn_v8f *sn, nn_v8f *cs)
{
    nn_v8f x = u * 4.0f;
    nn_v8i q = __builtin_convertvector(x, nn_v8i) & 3; /* truncation: x >= 0 */
    nn_v8f a = (x - __builtin_convertvector(q, nn_v8f)) * 1.57079632679489662f;
    nn_v8f a2 = a * a;
    nn_v8f s = a2 * (-1.0f / 39916800.0f) + 1.0f / 362880.0f;
    s = s * a2 - 1.0f / 5040.0f;
    s = s * a2 + 1.0f / 120.0f;
    s = s * a2 - 1.0f / 6.0f;
    s = (s * a2 + 1.0f) * a;
    nn_v8f c = a2 * (1.0f / 479001600.0f) - 1.0f / 3628800.0f;
    c = c * a2 + 1.0f / 40320.0f;
    c = c * a2 - 1.0f / 720.0f;
    c = c * a2 + 1.0f / 24.0f;
    c = c * a2 - 0.5f;
    c = c * a2 + 1.0f;
    /* q = 1: (c, -s); q = 2: (-s, -c); q = 3: (-c, s) */
    nn_v8i odd = (q & 1) != 0;
    nn_v8f s1 = nn_v8_select(odd, c, s);
    nn_v8f c1 = nn_v8_select(odd, -s, c);
    nn_v8i half = (q & 2) != 0;
    *sn = nn_v8_select(half, -s1, s1);
    *cs = nn_v8_select(half, -c1, c1);
}

/* out[0..n) standard normals by Box-Muller on 8 lanes; each 64-bit draw of r gives the two
 * 24-bit uniforms of one pair: u1 in (0, 1] (finite log), u2 in [0, 1) */
static void fill_normal(rng_t *r, float *out, int n)
{
    for (int i = 0; i < n; i += 16) {
        nn_v8i a, b;
        for (int k = 0; k < 8; k++) {
            uint64_t x = rng_next_u64(r);
            a[k] = (int32_t)(x >> 40);
            b[k] = (int32_t)((x >> 8) & 0xffffff);
        }
        nn_v8f u1 = (__builtin_convertvector(a, nn_v8f) + 1.0f) * 0x1.0p-24f;
        nn_v8f u2 = __builtin_convertvector(b, nn_v8f) * 0x1.0p-24f;
        nn_v8f t = -2.0f * nn_v8_logf(u1);
        nn_v8f rad;
        for (int k = 0; k < 8; k++) {
            rad[k] = sqrtf(t[k] > 0.0f ? t[k] : 0.0f);
        }
        nn_v8f sn, cs;
        sincos_2pi_v8(u2, &sn, &cs);
        int left = n - i;
        store_part(out + i, rad * cs, left < 8 ? left : 8);
        if (left > 8) {
            store_part(out + i + 8, rad * sn, left - 8 < 8 ? left - 8 : 8);
        }
    }
}

/* The soft bounds in variance form. With a = e^(mx - raw):
 *   e^lv1 = e^mx / (1 + a),   var = e^lv = e^mn + e^lv1
 * and with su = s(mx - raw) = a / (1 + a), sv = s(lv1 - mn) = e^lv1 / var:
 *   dlv/draw = sv su,  dlv/dmx = sv / (1 + a),  dlv/dmn = e^mn / var = 1 - sv.
 * So sampling needs one exp per output (sd = sqrt(var)) and the loss one exp and one log,
 * instead of two softplus each. emx, emn are e^mx, e^mn of the lanes. */
static inline nn_v8f bound_var(nn_v8f raw, nn_v8f mx, nn_v8f emx, nn_v8f emn, nn_v8f *one_a)
{
    *one_a = 1.0f + nn_v8_expf(mx - raw);
    return emn + emx / *one_a;
}

static inline nn_v8f sqrt_v8(nn_v8f x)
{
    nn_v8f r;
    for (int k = 0; k < 8; k++) {
        r[k] = sqrtf(x[k]);
    }
    return r;
}

float ensemble_nll(float *dout, float *dmax, float *dmin, const float *out, const float *y,
                   const float *max_lv, const float *min_lv, int B, int n_out)
{
    const int J = n_out;
    const float scale = 1.0f / ((float)B * (float)J);
    const nn_v8i lane = {0, 1, 2, 3, 4, 5, 6, 7};
    const nn_v8f zero = {0};
    double loss = 0.0;
    /* column groups outside, rows inside: the bounds' exponentials once per group */
    for (int j0 = 0; j0 < J; j0 += 8) {
        const int n = J - j0 < 8 ? J - j0 : 8;
        const nn_v8i valid = lane < n;
        nn_v8f mx = load_part(max_lv + j0, n);
        nn_v8f emx = nn_v8_expf(mx), emn = nn_v8_expf(load_part(min_lv + j0, n));
        nn_v8f acc = zero, gmax = zero, gmin = zero;
        for (int i = 0; i < B; i++) {
            const float *o = out + (size_t)i * 2 * J;
            nn_v8f one_a;
            nn_v8f var = bound_var(load_part(o + J + j0, n), mx, emx, emn, &one_a);
            nn_v8f inv = 1.0f / var;
            nn_v8f lv = nn_v8_logf(var);
            nn_v8f diff = load_part(o + j0, n) - load_part(y + (size_t)i * J + j0, n);
            nn_v8f sq = diff * diff * inv;
            acc += nn_v8_select(valid, sq + lv, zero);
            if (dout) {
                /* d/dmu = 2 diff inv; d/dlv = 1 - diff^2 inv */
                float *d = dout + (size_t)i * 2 * J;
                nn_v8f g_lv = (1.0f - sq) * scale;
                nn_v8f sv = (var - emn) * inv;
                nn_v8f su = (one_a - 1.0f) / one_a;
                store_part(d + j0, 2.0f * diff * inv * scale, n);
                store_part(d + J + j0, g_lv * sv * su, n);
                gmax += g_lv * sv / one_a;
                gmin += g_lv * emn * inv;
            }
        }
        if (dout) {
            store_part(dmax + j0, load_part(dmax + j0, n) + gmax, n);
            store_part(dmin + j0, load_part(dmin + j0, n) + gmin, n);
        }
        for (int k = 0; k < 8; k++) {
            loss += acc[k];
        }
    }
    return (float)(loss * scale);
}

/* ---- one member's forward chain (prediction) ------------------------------------------- */

/* out(n, 2 n_out) = member m on standardised x(n, n_in), scratch from w */
static void member_forward(const ensemble_t *e, ensemble_work_t *w, float *out, const float *x,
                           int m, int n)
{
    const float *in = x;
    for (int k = 0; k < e->n_linear; k++) {
        int ni = e->sizes[k], no = e->sizes[k + 1];
        const float *wk = e->w[k] + (size_t)m * ni * no;
        const float *bk = e->b[k] + (size_t)m * no;
        if (k == e->n_linear - 1) {
            e->gemm(out, in, wk, n, no, ni, false, false, 1.0f, 0.0f, ni, no, no);
            nn_bias_act_forward(out, out, bk, NN_ACT_NONE, n, no);
        } else {
            float *h = w->h[k & 1];
            e->gemm(w->z, in, wk, n, no, ni, false, false, 1.0f, 0.0f, ni, no, no);
            nn_bias_act_forward(h, w->z, bk, NN_ACT_SWISH, n, no);
            in = h;
        }
    }
}

/* xs(n, n_in) = standardised (obs, act) of the given rows (rows NULL: 0..n) */
static void standardise_inputs(const ensemble_t *e, float *xs, const float *obs, const float *act,
                               const int *rows, int n)
{
    const int O = e->cfg.n_obs, A = e->cfg.n_act, I = e->n_in;
    for (int i = 0; i < n; i++) {
        size_t r = rows ? (size_t)rows[i] : (size_t)i;
        float *x = xs + (size_t)i * I;
        const float *o = obs + r * O;
        const float *a = act + r * A;
        for (int j = 0; j < O; j++) {
            x[j] = (o[j] - e->in_mu[j]) / e->in_sd[j];
        }
        for (int j = 0; j < A; j++) {
            x[O + j] = (a[j] - e->in_mu[O + j]) / e->in_sd[O + j];
        }
    }
}

/* from a member's output row o(2 n_out) and normals eps(n_out): next_obs row and reward.
 * y = out_mu + out_sd (mu + sample * sqrt(var) eps), written over eps as scratch; ebounds
 * holds e^max_lv then e^min_lv, each padded to a multiple of 8 */
static inline void emit_row(const ensemble_t *e, float *next_obs, float *reward, const float *o,
                            float *eps, const float *obs, const float *ebounds, bool sample)
{
    const int O = e->cfg.n_obs, J = e->n_out, Jp = (J + 7) & ~7;
    for (int j0 = 0; j0 < J; j0 += 8) {
        int n = J - j0 < 8 ? J - j0 : 8;
        nn_v8f mu = load_part(o + j0, n);
        if (sample) {
            nn_v8f one_a;
            nn_v8f var = bound_var(load_part(o + J + j0, n), load_part(e->max_logvar + j0, n),
                                   nn_v8_load(ebounds + j0), nn_v8_load(ebounds + Jp + j0), &one_a);
            mu += sqrt_v8(var) * load_part(eps + j0, n);
        }
        store_part(eps + j0, load_part(e->out_mu + j0, n) + load_part(e->out_sd + j0, n) * mu, n);
    }
    for (int j = 0; j < O; j++) {
        next_obs[j] = obs[j] + eps[j];
    }
    if (reward && J > O) {
        *reward = eps[O];
    }
}

/* ebounds (2 Jp) = e^max_lv, e^min_lv, zero padded */
static void fill_ebounds(const ensemble_t *e, float *ebounds)
{
    const int J = e->n_out, Jp = (J + 7) & ~7;
    for (int j = 0; j < Jp; j++) {
        ebounds[j] = j < J ? expf(e->max_logvar[j]) : 0.0f;
        ebounds[Jp + j] = j < J ? expf(e->min_logvar[j]) : 0.0f;
    }
}

int ensemble_work_init(ensemble_work_t *w, const ensemble_t *e, int chunk)
{
    if (chunk < 1 || chunk > (1 << 20)) {
        return err_set(-EINVAL, "ensemble chunk is %d, expected 1..%d", chunk, 1 << 20);
    }
    memset(w, 0, sizeof *w);
    w->chunk = chunk;
    const size_t C = (size_t)chunk, H = (size_t)e->cfg.n_hidden;
    /* every piece a multiple of 16 floats so each stays 64-byte aligned */
    size_t sx = (C * e->n_in + 15) & ~(size_t)15;
    size_t sh = (C * H + 15) & ~(size_t)15;
    size_t so = (C * 2 * e->n_out + 15) & ~(size_t)15;
    size_t se = (C * e->n_out + 15) & ~(size_t)15;
    size_t sb = (2 * (((size_t)e->n_out + 7) & ~(size_t)7) + 15) & ~(size_t)15;
    w->block = xmalloc_aligned((sx + 3 * sh + so + se + sb) * sizeof(float));
    float *p = w->block;
    w->x = p;
    p += sx;
    w->z = p;
    p += sh;
    w->h[0] = p;
    p += sh;
    w->h[1] = p;
    p += sh;
    w->out = p;
    p += so;
    w->eps = p;
    p += se;
    w->ebounds = p;
    w->order = xmalloc(C * sizeof(int));
    w->pick = xmalloc(C * sizeof(int));
    return 0;
}

void ensemble_work_free(ensemble_work_t *w)
{
    free(w->block);
    free(w->order);
    free(w->pick);
    memset(w, 0, sizeof *w);
}

void ensemble_predict(const ensemble_t *e, ensemble_work_t *w, rng_t *rng, float *next_obs,
                      float *reward, int *member, const float *obs, const float *act, int N,
                      bool sample)
{
    const int E = e->cfg.n_members, O = e->cfg.n_obs, A = e->cfg.n_act, J = e->n_out;
    const int two_j = 2 * J;
    int count[ENSEMBLE_MAX_MEMBERS + 1];
    fill_ebounds(e, w->ebounds);
    for (int s = 0; s < N; s += w->chunk) {
        const int n = N - s < w->chunk ? N - s : w->chunk;
        const float *o = obs + (size_t)s * O;
        const float *a = act + (size_t)s * A;

        /* one random elite per row, rows grouped by member (counting sort) */
        memset(count, 0, sizeof count);
        for (int i = 0; i < n; i++) {
            int m = e->elites[rng_uniform_u32(rng, (uint32_t)e->cfg.n_elites)];
            w->pick[i] = m;
            count[m + 1]++;
        }
        for (int m = 0; m < E; m++) {
            count[m + 1] += count[m];
        }
        int start[ENSEMBLE_MAX_MEMBERS + 1];
        memcpy(start, count, sizeof start);
        for (int i = 0; i < n; i++) {
            w->order[count[w->pick[i]]++] = i;
        }
        standardise_inputs(e, w->x, o, a, w->order, n);

        /* each member on its contiguous group */
        for (int m = 0; m < E; m++) {
            int cnt = start[m + 1] - start[m];
            if (cnt > 0) {
                member_forward(e, w, w->out + (size_t)start[m] * two_j,
                               w->x + (size_t)start[m] * e->n_in, m, cnt);
            }
        }
        if (sample) {
            fill_normal(rng, w->eps, n * J);
        }
        for (int p = 0; p < n; p++) {
            int i = w->order[p];
            size_t r = (size_t)s + i;
            emit_row(e, next_obs + r * O, reward ? reward + r : NULL, w->out + (size_t)p * two_j,
                     w->eps + (size_t)p * J, obs + r * O, w->ebounds, sample);
            if (member) {
                member[r] = w->pick[i];
            }
        }
    }
}

void ensemble_predict_all(const ensemble_t *e, ensemble_work_t *w, rng_t *rng, float *next_obs,
                          float *reward, const float *obs, const float *act, int N, bool sample)
{
    const int E = e->cfg.n_members, O = e->cfg.n_obs, A = e->cfg.n_act, J = e->n_out;
    fill_ebounds(e, w->ebounds);
    for (int s = 0; s < N; s += w->chunk) {
        const int n = N - s < w->chunk ? N - s : w->chunk;
        standardise_inputs(e, w->x, obs + (size_t)s * O, act + (size_t)s * A, NULL, n);
        for (int m = 0; m < E; m++) {
            member_forward(e, w, w->out, w->x, m, n);
            if (sample) {
                fill_normal(rng, w->eps, n * J);
            }
            for (int i = 0; i < n; i++) {
                size_t r = (size_t)s + i;
                size_t mr = (size_t)m * N + r;
                emit_row(e, next_obs + mr * O, reward ? reward + mr : NULL,
                         w->out + (size_t)i * 2 * J, w->eps + (size_t)i * J, obs + r * O,
                         w->ebounds, sample);
            }
        }
    }
}

/* standardised targets of rows (rows NULL: 0..n) into ys(n, n_out) */
static void standardise_targets(const ensemble_t *e, float *ys, const float *obs,
                                const float *next_obs, const float *reward, const int *rows, int n)
{
    const int O = e->cfg.n_obs, J = e->n_out;
    for (int i = 0; i < n; i++) {
        size_t r = rows ? (size_t)rows[i] : (size_t)i;
        float *y = ys + (size_t)i * J;
        for (int j = 0; j < O; j++) {
            y[j] = (next_obs[r * O + j] - obs[r * O + j] - e->out_mu[j]) / e->out_sd[j];
        }
        if (J > O) {
            y[O] = (reward[r] - e->out_mu[O]) / e->out_sd[O];
        }
    }
}

/* mse(E): means only, in standardised target space; xs(N, n_in), ys(N, n_out) standardised */
static void eval_mse_std(const ensemble_t *e, ensemble_work_t *w, float *mse, const float *xs,
                         const float *ys, int N)
{
    const int E = e->cfg.n_members, J = e->n_out;
    for (int m = 0; m < E; m++) {
        double acc = 0.0;
        for (int s = 0; s < N; s += w->chunk) {
            int n = N - s < w->chunk ? N - s : w->chunk;
            member_forward(e, w, w->out, xs + (size_t)s * e->n_in, m, n);
            for (int i = 0; i < n; i++) {
                const float *o = w->out + (size_t)i * 2 * J;
                const float *y = ys + (size_t)(s + i) * J;
                for (int j = 0; j < J; j++) {
                    double d = (double)o[j] - y[j];
                    acc += d * d;
                }
            }
        }
        mse[m] = N > 0 ? (float)(acc / ((double)N * J)) : 0.0f;
    }
}

void ensemble_eval_mse(const ensemble_t *e, ensemble_work_t *w, float *mse, const float *obs,
                       const float *act, const float *next_obs, const float *reward, int N)
{
    const int E = e->cfg.n_members, J = e->n_out;
    TWIG_ASSERT(reward || !e->cfg.learn_reward);
    double acc[ENSEMBLE_MAX_MEMBERS] = {0};
    float ys[ENSEMBLE_MAX_DIM + 1];
    for (int s = 0; s < N; s += w->chunk) {
        int n = N - s < w->chunk ? N - s : w->chunk;
        const float *o = obs + (size_t)s * e->cfg.n_obs;
        standardise_inputs(e, w->x, o, act + (size_t)s * e->cfg.n_act, NULL, n);
        for (int m = 0; m < E; m++) {
            member_forward(e, w, w->out, w->x, m, n);
            for (int i = 0; i < n; i++) {
                standardise_targets(e, ys, o + (size_t)i * e->cfg.n_obs,
                                    next_obs + (size_t)(s + i) * e->cfg.n_obs,
                                    reward ? reward + s + i : NULL, NULL, 1);
                const float *out = w->out + (size_t)i * 2 * J;
                for (int j = 0; j < J; j++) {
                    double d = (double)out[j] - ys[j];
                    acc[m] += d * d;
                }
            }
        }
    }
    for (int m = 0; m < E; m++) {
        mse[m] = N > 0 ? (float)(acc[m] / ((double)N * J)) : 0.0f;
    }
}

/* ---- normaliser ----------------------------------------------------------------------- */

void ensemble_fit_normaliser(ensemble_t *e, const float *obs, const float *act,
                             const float *next_obs, const float *reward, const int *idx, int n)
{
    const int O = e->cfg.n_obs, A = e->cfg.n_act, I = e->n_in, J = e->n_out;
    double *sum = xcalloc((size_t)(I + J), sizeof(double));
    double *sq = xcalloc((size_t)(I + J), sizeof(double));
    /* two passes (mean, then centred squares) in double: no cancellation */
    for (int pass = 0; pass < 2; pass++) {
        for (int j = 0; j < I + J; j++) {
            sum[j] = 0.0;
            sq[j] = 0.0;
        }
        for (int i = 0; i < n; i++) {
            size_t r = idx ? (size_t)idx[i] : (size_t)i;
            for (int j = 0; j < I + J; j++) {
                double v;
                if (j < O) {
                    v = obs[r * O + j];
                } else if (j < I) {
                    v = act[r * A + (j - O)];
                } else if (j < I + O) {
                    v = (double)next_obs[r * O + (j - I)] - obs[r * O + (j - I)];
                } else {
                    v = reward[r];
                }
                if (pass == 0) {
                    sum[j] += v;
                } else {
                    double mu = j < I ? e->in_mu[j] : e->out_mu[j - I];
                    sq[j] += (v - mu) * (v - mu);
                }
            }
        }
        for (int j = 0; j < I + J; j++) {
            if (pass == 0) {
                float mu = n > 0 ? (float)(sum[j] / n) : 0.0f;
                if (j < I) {
                    e->in_mu[j] = mu;
                } else {
                    e->out_mu[j - I] = mu;
                }
            } else {
                double sd = n > 0 ? sqrt(sq[j] / n) : 1.0;
                float v = sd < ENSEMBLE_STD_FLOOR ? 1.0f : (float)sd;
                if (j < I) {
                    e->in_sd[j] = v;
                } else {
                    e->out_sd[j - I] = v;
                }
            }
        }
    }
    free(sum);
    free(sq);
}

void ensemble_renormalise(ensemble_t *e, const float *old_in_mu, const float *old_in_sd,
                          const float *old_out_mu, const float *old_out_sd)
{
    const int E = e->cfg.n_members, I = e->n_in, J = e->n_out, L = e->n_linear - 1;
    const int H0 = e->sizes[1], HL = e->sizes[L];
    /* first layer: z = sum_i (x_i - mu_i) / sd_i W_i + b. With the new statistics, row i of
     * W scales by sd'_i / sd_i and b absorbs sum_i W_i (mu'_i - mu_i) / sd_i (old W) */
    for (int m = 0; m < E; m++) {
        float *w = e->w[0] + (size_t)m * I * H0;
        float *b = e->b[0] + (size_t)m * H0;
        for (int i = 0; i < I; i++) {
            float shift = (e->in_mu[i] - old_in_mu[i]) / old_in_sd[i];
            float scale = e->in_sd[i] / old_in_sd[i];
            float *row = w + (size_t)i * H0;
            for (int h = 0; h < H0; h++) {
                b[h] += row[h] * shift;
                row[h] *= scale;
            }
        }
    }
    /* last layer: the raw mean is out_mu + out_sd * mean, so column j of the means scales by
     * sd_j / sd'_j and its bias becomes (b sd_j + mu_j - mu'_j) / sd'_j; the log-variance in
     * standardised space shifts by c_j = 2 ln(sd_j / sd'_j), which moving the raw column's
     * bias and both bounds by c_j gives exactly (the soft bounds commute with a shift) */
    for (int j = 0; j < J; j++) {
        float ratio = old_out_sd[j] / e->out_sd[j];
        float c = 2.0f * logf(ratio);
        for (int m = 0; m < E; m++) {
            float *w = e->w[L] + (size_t)m * HL * 2 * J;
            float *b = e->b[L] + (size_t)m * 2 * J;
            for (int h = 0; h < HL; h++) {
                w[(size_t)h * 2 * J + j] *= ratio;
            }
            b[j] = (b[j] * old_out_sd[j] + old_out_mu[j] - e->out_mu[j]) / e->out_sd[j];
            b[J + j] += c;
        }
        e->max_logvar[j] += c;
        e->min_logvar[j] += c;
    }
}

/* ---- training ------------------------------------------------------------------------- */

int ensemble_trainer_init(ensemble_trainer_t *t, const ensemble_t *e, const ensemble_train_cfg *cfg)
{
    int rc = train_cfg_check(cfg, e->n_linear);
    if (rc < 0) {
        return rc;
    }
    memset(t, 0, sizeof *t);
    t->cfg = *cfg;
    t->adam_cfg = nn_adam_default(cfg->lr);
    t->adam_cfg.decoupled = false; /* MBPO adds the L2 term to the loss */
    t->adam_cfg.weight_decay = 0.0f;
    nn_adam_init(&t->adam, e->n_params);

    const int E = e->cfg.n_members;
    t->grads = xmalloc_aligned(e->n_params * sizeof(float));
    memset(t->grads, 0, e->n_params * sizeof(float));
    for (int k = 0; k < e->n_linear; k++) {
        t->dw[k] = t->grads + (e->w[k] - e->params);
        t->db[k] = t->grads + (e->b[k] - e->params);
        t->groups[k] = (nn_adam_group){
            .offset = (size_t)(e->w[k] - e->params),
            .n = (size_t)E * e->sizes[k] * e->sizes[k + 1],
            .weight_decay = cfg->weight_decay[k],
        };
    }
    t->n_groups = e->n_linear;
    t->dmax_logvar = t->grads + (e->max_logvar - e->params);
    t->dmin_logvar = t->grads + (e->min_logvar - e->params);

    const size_t B = (size_t)cfg->batch, H = (size_t)e->cfg.n_hidden;
    const size_t L = (size_t)e->cfg.n_layers;
    size_t sx = (E * B * e->n_in + 15) & ~(size_t)15;
    size_t sy = (E * B * e->n_out + 15) & ~(size_t)15;
    size_t sh = (B * H + 15) & ~(size_t)15;
    size_t so = (B * 2 * e->n_out + 15) & ~(size_t)15;
    t->block = xmalloc_aligned((sx + sy + (2 * L + 2) * sh + 2 * so) * sizeof(float));
    float *p = t->block;
    t->x = p;
    p += sx;
    t->y = p;
    p += sy;
    for (size_t k = 0; k < L; k++) {
        t->z[k] = p;
        p += sh;
        t->h[k] = p;
        p += sh;
    }
    t->dh[0] = p;
    p += sh;
    t->dh[1] = p;
    p += sh;
    t->out = p;
    p += so;
    t->dout = p;
    t->best_params = xmalloc_aligned(e->n_params * sizeof(float));
    memcpy(t->best_params, e->params, e->n_params * sizeof(float));
    return 0;
}

void ensemble_trainer_free(ensemble_trainer_t *t)
{
    nn_adam_free(&t->adam);
    free(t->grads);
    free(t->block);
    free(t->best_params);
    memset(t, 0, sizeof *t);
}

/* forward and backward of member m on its B standardised rows in t->x, t->y: writes the
 * member's gradients, adds into the shared bound gradients; returns the member's NLL */
static float member_train(const ensemble_t *e, ensemble_trainer_t *t, int m, int B)
{
    const int L = e->cfg.n_layers, H = e->cfg.n_hidden, J = e->n_out;
    const int Bmax = t->cfg.batch;
    const float *x = t->x + (size_t)m * Bmax * e->n_in;
    const float *y = t->y + (size_t)m * Bmax * J;

    /* forward, keeping pre-activations and activations */
    const float *in = x;
    for (int k = 0; k < L; k++) {
        int ni = e->sizes[k];
        const float *wk = e->w[k] + (size_t)m * ni * H;
        e->gemm(t->z[k], in, wk, B, H, ni, false, false, 1.0f, 0.0f, ni, H, H);
        nn_bias_act_forward(t->h[k], t->z[k], e->b[k] + (size_t)m * H, NN_ACT_SWISH, B, H);
        in = t->h[k];
    }
    const float *wl = e->w[L] + (size_t)m * H * 2 * J;
    e->gemm(t->out, in, wl, B, 2 * J, H, false, false, 1.0f, 0.0f, H, 2 * J, 2 * J);
    nn_bias_act_forward(t->out, t->out, e->b[L] + (size_t)m * 2 * J, NN_ACT_NONE, B, 2 * J);

    /* loss and its gradient at the output */
    float loss = ensemble_nll(t->dout, t->dmax_logvar, t->dmin_logvar, t->out, y, e->max_logvar,
                              e->min_logvar, B, J);

    /* backward: output layer */
    float *dwl = t->dw[L] + (size_t)m * H * 2 * J;
    float *dbl = t->db[L] + (size_t)m * 2 * J;
    e->gemm(dwl, t->h[L - 1], t->dout, H, 2 * J, B, true, false, 1.0f, 0.0f, H, 2 * J, 2 * J);
    nn_act_bias_backward(t->dout, dbl, t->dout, NULL, NULL, NN_ACT_NONE, B, 2 * J);
    float *dh = t->dh[0];
    e->gemm(dh, t->dout, wl, B, H, 2 * J, false, true, 1.0f, 0.0f, 2 * J, 2 * J, H);

    /* hidden layers, last to first; dz overwrites dh in place */
    for (int k = L - 1; k >= 0; k--) {
        int ni = e->sizes[k];
        nn_act_bias_backward(dh, t->db[k] + (size_t)m * H, dh, t->z[k], t->h[k], NN_ACT_SWISH, B,
                             H);
        const float *xin = k == 0 ? x : t->h[k - 1];
        float *dwk = t->dw[k] + (size_t)m * ni * H;
        e->gemm(dwk, xin, dh, ni, H, B, true, false, 1.0f, 0.0f, ni, H, H);
        if (k > 0) {
            float *dprev = dh == t->dh[0] ? t->dh[1] : t->dh[0];
            const float *wk = e->w[k] + (size_t)m * ni * H;
            e->gemm(dprev, dh, wk, B, ni, H, false, true, 1.0f, 0.0f, H, H, ni);
            dh = dprev;
        }
    }
    return loss;
}

/* loss and gradients (without the weight decay) of the standardised batches in t->x, t->y */
static float train_grad_std(const ensemble_t *e, ensemble_trainer_t *t, int B)
{
    const int E = e->cfg.n_members, J = e->n_out;
    /* weight gradients are overwritten (beta 0); the accumulated ones start at zero */
    for (int k = 0; k < e->n_linear; k++) {
        memset(t->db[k], 0, (size_t)E * e->sizes[k + 1] * sizeof(float));
    }
    memset(t->dmax_logvar, 0, 2 * (size_t)J * sizeof(float));

    double loss = 0.0;
    for (int m = 0; m < E; m++) {
        loss += member_train(e, t, m, B);
    }
    /* 0.01 (sum max_lv - sum min_lv) */
    const float pen = t->cfg.logvar_penalty;
    for (int j = 0; j < J; j++) {
        t->dmax_logvar[j] += pen;
        t->dmin_logvar[j] -= pen;
        loss += (double)pen * ((double)e->max_logvar[j] - e->min_logvar[j]);
    }
    return (float)loss;
}

/* one Adam step on the standardised batches in t->x, t->y */
static float train_step_std(ensemble_t *e, ensemble_trainer_t *t, int B)
{
    float loss = train_grad_std(e, t, B);
    nn_adam_step_groups(&t->adam_cfg, &t->adam, e->params, t->grads, e->n_params, t->groups,
                        t->n_groups);
    t->steps++;
    return loss;
}

/* t->x, t->y = standardised x (E, B, n_in), y (E, B, n_out) */
static void load_batch(const ensemble_t *e, ensemble_trainer_t *t, const float *x, const float *y,
                       int B)
{
    TWIG_ASSERT(B >= 1 && B <= t->cfg.batch);
    const int E = e->cfg.n_members, I = e->n_in, J = e->n_out, Bmax = t->cfg.batch;
    for (int m = 0; m < E; m++) {
        for (int i = 0; i < B; i++) {
            const float *xr = x + ((size_t)m * B + i) * I;
            const float *yr = y + ((size_t)m * B + i) * J;
            float *xs = t->x + ((size_t)m * Bmax + i) * I;
            float *ys = t->y + ((size_t)m * Bmax + i) * J;
            for (int j = 0; j < I; j++) {
                xs[j] = (xr[j] - e->in_mu[j]) / e->in_sd[j];
            }
            for (int j = 0; j < J; j++) {
                ys[j] = (yr[j] - e->out_mu[j]) / e->out_sd[j];
            }
        }
    }
}

float ensemble_train_grad(const ensemble_t *e, ensemble_trainer_t *t, const float *x,
                          const float *y, int B)
{
    load_batch(e, t, x, y, B);
    return train_grad_std(e, t, B);
}

float ensemble_train_step(ensemble_t *e, ensemble_trainer_t *t, const float *x, const float *y,
                          int B)
{
    load_batch(e, t, x, y, B);
    return train_step_std(e, t, B);
}

/* Fisher-Yates on a[0..n) */
static void shuffle_ints(rng_t *rng, int *a, int n)
{
    for (int i = n - 1; i > 0; i--) {
        int j = (int)rng_uniform_u32(rng, (uint32_t)i + 1);
        int tmp = a[i];
        a[i] = a[j];
        a[j] = tmp;
    }
}

/* copy member m's slices of every parameter tensor from src to dst (both params-shaped) */
static void copy_member(const ensemble_t *e, float *dst, const float *src, int m)
{
    for (int k = 0; k < e->n_linear; k++) {
        size_t nw = (size_t)e->sizes[k] * e->sizes[k + 1];
        size_t ow = (size_t)(e->w[k] - e->params) + (size_t)m * nw;
        memcpy(dst + ow, src + ow, nw * sizeof(float));
        size_t nb = (size_t)e->sizes[k + 1];
        size_t ob = (size_t)(e->b[k] - e->params) + (size_t)m * nb;
        memcpy(dst + ob, src + ob, nb * sizeof(float));
    }
}

int ensemble_train(ensemble_t *e, ensemble_trainer_t *t, rng_t *rng, ensemble_train_report *rep,
                   const float *obs, const float *act, const float *next_obs, const float *reward,
                   int N)
{
    const int E = e->cfg.n_members, I = e->n_in, J = e->n_out, Bmax = t->cfg.batch;
    if (N < ENSEMBLE_MIN_TRANSITIONS) {
        return err_set(-EINVAL, "ensemble_train got %d transitions, needs at least %d", N,
                       ENSEMBLE_MIN_TRANSITIONS);
    }
    if (e->cfg.learn_reward && !reward) {
        return err_set(-EINVAL, "ensemble_train: learn_reward is set but reward is NULL");
    }
    memset(rep, 0, sizeof *rep);

    /* split: a shuffled permutation, the holdout at its front */
    int n_hold = (int)((double)N * t->cfg.holdout_ratio);
    if (n_hold > t->cfg.max_holdout) {
        n_hold = t->cfg.max_holdout;
    }
    if (n_hold < 1) {
        n_hold = 1;
    }
    const int n_train = N - n_hold;
    int *perm = xmalloc((size_t)N * sizeof(int));
    for (int i = 0; i < N; i++) {
        perm[i] = i;
    }
    shuffle_ints(rng, perm, N);
    const int *train_rows = perm + n_hold;
    /* the stats block starts with in_mu, in_sd, out_mu, out_sd (ensemble_init) */
    float *old = NULL;
    if (t->cfg.keep_function) {
        old = xmalloc(2 * (size_t)(I + J) * sizeof(float));
        memcpy(old, e->in_mu, 2 * (size_t)(I + J) * sizeof(float));
    }
    ensemble_fit_normaliser(e, obs, act, next_obs, reward, train_rows, n_train);
    if (old) {
        ensemble_renormalise(e, old, old + I, old + 2 * I, old + 2 * I + J);
        free(old);
    }

    /* the standardised data set, holdout rows first */
    float *xs = xmalloc_aligned((size_t)N * I * sizeof(float));
    float *ys = xmalloc_aligned((size_t)N * J * sizeof(float));
    standardise_inputs(e, xs, obs, act, perm, N);
    standardise_targets(e, ys, obs, next_obs, reward, perm, N);
    const float *x_train = xs + (size_t)n_hold * I;
    const float *y_train = ys + (size_t)n_hold * J;

    /* bootstrap: each member draws n_train rows with replacement, once per call (MBPO) */
    int *boot = xmalloc((size_t)E * n_train * sizeof(int));
    for (size_t i = 0; i < (size_t)E * n_train; i++) {
        boot[i] = (int)rng_uniform_u32(rng, (uint32_t)n_train);
    }

    ensemble_work_t w = {0};
    ensemble_work_init(&w, e, n_hold < 1024 ? n_hold : 1024);
    /* Each member's best and the reference patience measures improvement against start
     * above any MSE, so the first epoch always counts (MBPO's _save_best starts at 1e10).
     * Not the MSE of the weights a continued fit starts from: this fit's holdout is a new
     * random split, most of whose rows the earlier fits trained on, so that MSE is a
     * training error the fit cannot beat, and judging by it kept continued models frozen
     * near their first fit (HalfCheetah: reward MSE 10x a fresh fit's after 20 fits). */
    float mse[ENSEMBLE_MAX_MEMBERS], best[ENSEMBLE_MAX_MEMBERS], ref[ENSEMBLE_MAX_MEMBERS];
    for (int m = 0; m < E; m++) {
        best[m] = FLT_MAX;
        ref[m] = FLT_MAX;
    }
    /* a member whose holdout MSE is never finite goes back to the weights it started from */
    memcpy(t->best_params, e->params, e->n_params * sizeof(float));

    const int n_batches = (n_train + Bmax - 1) / Bmax;
    int since_update = 0;
    int64_t steps0 = t->steps;
    for (int epoch = 0; epoch < t->cfg.max_epochs; epoch++) {
        for (int m = 0; m < E; m++) {
            shuffle_ints(rng, boot + (size_t)m * n_train, n_train);
        }
        double epoch_loss = 0.0;
        for (int bi = 0; bi < n_batches; bi++) {
            int off = bi * Bmax;
            int B = n_train - off < Bmax ? n_train - off : Bmax;
            for (int m = 0; m < E; m++) {
                const int *rows = boot + (size_t)m * n_train + off;
                for (int i = 0; i < B; i++) {
                    memcpy(t->x + ((size_t)m * Bmax + i) * I, x_train + (size_t)rows[i] * I,
                           (size_t)I * sizeof(float));
                    memcpy(t->y + ((size_t)m * Bmax + i) * J, y_train + (size_t)rows[i] * J,
                           (size_t)J * sizeof(float));
                }
            }
            epoch_loss += train_step_std(e, t, B);
        }
        rep->epochs = epoch + 1;
        rep->train_loss = (float)(epoch_loss / n_batches);

        /* holdout: snapshot each member at its best; patience counts epochs in which no
         * member improved by improve_ratio on its reference, and stops the fit when there
         * are more than `patience` of them in a row (MBPO's _save_best) */
        eval_mse_std(e, &w, mse, xs, ys, n_hold);
        bool improved = false;
        for (int m = 0; m < E; m++) {
            if (mse[m] < best[m]) {
                best[m] = mse[m];
                copy_member(e, t->best_params, e->params, m);
            }
            if ((ref[m] - mse[m]) / ref[m] > t->cfg.improve_ratio) {
                ref[m] = mse[m];
                improved = true;
            }
        }
        since_update = improved ? 0 : since_update + 1;
        if (since_update > t->cfg.patience && epoch + 1 >= t->cfg.min_epochs) {
            rep->stopped_early = true;
            break;
        }
        if (t->stop && atomic_load(t->stop)) {
            break;   /* the owner is shutting down: keep what the epochs so far gave */
        }
    }

    /* each member back to its best epoch's weights (every member has one: the first epoch
     * always counts); the shared log-variance bounds keep their trained values, as MBPO's
     * _set_state restores weights and biases only. Elites by holdout MSE. */
    for (int m = 0; m < E; m++) {
        copy_member(e, e->params, t->best_params, m);
    }
    int order[ENSEMBLE_MAX_MEMBERS];
    for (int m = 0; m < E; m++) {
        e->holdout_mse[m] = best[m];
        order[m] = m;
    }
    for (int i = 1; i < E; i++) {
        int v = order[i], j = i;
        while (j > 0 && best[order[j - 1]] > best[v]) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = v;
    }
    double elite_mse = 0.0;
    for (int i = 0; i < e->cfg.n_elites; i++) {
        e->elites[i] = order[i];
        elite_mse += best[order[i]];
    }
    rep->n_train = n_train;
    rep->n_holdout = n_hold;
    rep->steps = t->steps - steps0;
    rep->holdout_mse_elites = (float)(elite_mse / e->cfg.n_elites);

    ensemble_work_free(&w);
    free(boot);
    free(xs);
    free(ys);
    free(perm);
    return 0;
}

/* ---- file image ----------------------------------------------------------------------- */

#define IMAGE_HEADER_BYTES (8 + 4 * 8 + 8)

static size_t stats_count(const ensemble_t *e)
{
    return 2 * (size_t)e->n_in + 2 * (size_t)e->n_out + (size_t)e->cfg.n_members;
}

size_t ensemble_image_size(const ensemble_t *e)
{
    return IMAGE_HEADER_BYTES + (e->n_params + stats_count(e)) * sizeof(float) +
           (size_t)e->cfg.n_elites * 4 + 4;
}

void ensemble_image_write(uint8_t *buf, const ensemble_t *e)
{
    byte_writer w = {.buf = buf};
    bw_bytes(&w, ensemble_magic, 8);
    bw_u32(&w, ENSEMBLE_FILE_VERSION);
    bw_u32(&w, (uint32_t)e->cfg.n_obs);
    bw_u32(&w, (uint32_t)e->cfg.n_act);
    bw_u32(&w, (uint32_t)e->cfg.n_members);
    bw_u32(&w, (uint32_t)e->cfg.n_elites);
    bw_u32(&w, (uint32_t)e->cfg.n_hidden);
    bw_u32(&w, (uint32_t)e->cfg.n_layers);
    bw_u32(&w, e->cfg.learn_reward ? 1u : 0u);
    bw_u64(&w, e->n_params);
    bw_f32s(&w, e->params, e->n_params);
    bw_f32s(&w, e->stats, stats_count(e));
    for (int i = 0; i < e->cfg.n_elites; i++) {
        bw_u32(&w, (uint32_t)e->elites[i]);
    }
    bw_u32(&w, crc32c(buf, w.pos));
    TWIG_ASSERT(w.pos == ensemble_image_size(e));
}

/* finite values, positive scales, elites distinct and in range */
int ensemble_check_values(const ensemble_t *e, const char *what)
{
    for (size_t i = 0; i < e->n_params; i++) {
        if (!isfinite(e->params[i])) {
            return err_set(-EINVAL, "%s: parameter %zu is not finite", what, i);
        }
    }
    for (int j = 0; j < e->n_in; j++) {
        if (!isfinite(e->in_mu[j]) || !(e->in_sd[j] > 0.0f) || !isfinite(e->in_sd[j])) {
            return err_set(-EINVAL, "%s: input normaliser %d is invalid", what, j);
        }
    }
    for (int j = 0; j < e->n_out; j++) {
        if (!isfinite(e->out_mu[j]) || !(e->out_sd[j] > 0.0f) || !isfinite(e->out_sd[j])) {
            return err_set(-EINVAL, "%s: output normaliser %d is invalid", what, j);
        }
    }
    for (int m = 0; m < e->cfg.n_members; m++) {
        if (isnan(e->holdout_mse[m]) || e->holdout_mse[m] < 0.0f) {
            return err_set(-EINVAL, "%s: holdout_mse[%d] is invalid", what, m);
        }
    }
    uint64_t seen = 0;
    for (int i = 0; i < e->cfg.n_elites; i++) {
        int m = e->elites[i];
        if (m < 0 || m >= e->cfg.n_members || (seen >> m & 1u)) {
            return err_set(-EINVAL, "%s: elite %d is %d (out of range or repeated)", what, i, m);
        }
        seen |= 1ull << m;
    }
    return 0;
}

int ensemble_image_read(ensemble_t *e, const uint8_t *buf, size_t len)
{
    if (len < IMAGE_HEADER_BYTES + 4) {
        return err_set(TWIG_ECORRUPT, "ensemble image is %zu bytes, shorter than its header", len);
    }
    if (memcmp(buf, ensemble_magic, 8) != 0) {
        return err_set(TWIG_ECORRUPT, "ensemble image has a wrong magic (not a twig ensemble)");
    }
    uint32_t version = le32_get(buf + 8);
    if (version != ENSEMBLE_FILE_VERSION) {
        return err_set(TWIG_EVERSION, "ensemble image version %u, this build reads %u", version,
                       ENSEMBLE_FILE_VERSION);
    }
    uint32_t crc = crc32c(buf, len - 4), stored = le32_get(buf + len - 4);
    if (crc != stored) {
        return err_set(TWIG_ECORRUPT,
                       "ensemble image checksum mismatch (crc32c %08x, stored "
                       "%08x)",
                       crc, stored);
    }
    byte_reader r = {.buf = buf, .len = len - 4, .pos = 12};
    uint32_t d[7];
    for (int i = 0; i < 7; i++) {
        d[i] = br_u32(&r);
    }
    if (d[6] > 1 || d[0] > ENSEMBLE_MAX_DIM || d[1] > ENSEMBLE_MAX_DIM ||
        d[2] > ENSEMBLE_MAX_MEMBERS || d[4] > ENSEMBLE_MAX_DIM ||
        d[5] > ENSEMBLE_MAX_HIDDEN_LAYERS) {
        return err_set(-EINVAL, "ensemble image has out-of-range sizes");
    }
    ensemble_cfg cfg = {
        .n_obs = (int)d[0],
        .n_act = (int)d[1],
        .n_members = (int)d[2],
        .n_elites = (int)d[3],
        .n_hidden = (int)d[4],
        .n_layers = (int)d[5],
        .learn_reward = d[6] == 1,
    };
    int rc = ensemble_cfg_check(&cfg);
    if (rc < 0) {
        return rc;
    }
    uint64_t np = br_u64(&r);
    size_t want = IMAGE_HEADER_BYTES + (count_params(&cfg) + count_stats(&cfg)) * sizeof(float) +
                  (size_t)cfg.n_elites * 4 + 4;
    if (np != count_params(&cfg) || len != want) {
        return err_set(TWIG_ECORRUPT,
                       "ensemble image size %zu or parameter count %llu does "
                       "not match its dimensions",
                       len, (unsigned long long)np);
    }
    ensemble_alloc(e, &cfg);
    br_f32s(&r, e->params, e->n_params);
    br_f32s(&r, e->stats, stats_count(e));
    for (int i = 0; i < cfg.n_elites; i++) {
        e->elites[i] = (int)br_u32(&r);
    }
    TWIG_ASSERT(!r.bad && br_left(&r) == 0); /* len was checked against the dimensions */
    rc = ensemble_check_values(e, "ensemble image");
    if (rc < 0) {
        ensemble_free(e);
    }
    return rc;
}

/* prefix the thread's error detail with the path */
static int with_path(int rc, const char *path)
{
    char detail[256];
    snprintf(detail, sizeof detail, "%s", err_msg());
    return err_set(rc, "%s: %s", path, detail);
}

int ensemble_save_file(const ensemble_t *e, const char *path)
{
    size_t n = ensemble_image_size(e);
    uint8_t *buf = xmalloc(n);
    ensemble_image_write(buf, e);
    int rc = atomic_file_write(path, buf, n);
    free(buf);
    return rc;
}

int ensemble_load_file(ensemble_t *e, const char *path)
{
    uint8_t *buf = NULL;
    size_t n = 0;
    int rc = atomic_file_read(&buf, &n, path, ENSEMBLE_FILE_MAX);
    if (rc < 0) {
        return rc;
    }
    rc = ensemble_image_read(e, buf, n);
    free(buf);
    return rc < 0 ? with_path(rc, path) : 0;
}

/* ---- trainer state -------------------------------------------------------------------- */

static const char trainer_magic[8] = {'T', 'W', 'I', 'G', 'E', 'N', 'T', '\0'};
#define TRAINER_HEADER_BYTES (8 + 4 + 8 + 8 + 8)

size_t ensemble_trainer_image_size(const ensemble_t *e)
{
    return TRAINER_HEADER_BYTES + 2 * e->n_params * sizeof(float) + 4;
}

void ensemble_trainer_image_write(uint8_t *buf, const ensemble_t *e, const ensemble_trainer_t *t)
{
    byte_writer w = {.buf = buf};
    bw_bytes(&w, trainer_magic, 8);
    bw_u32(&w, ENSEMBLE_TRAINER_FILE_VERSION);
    bw_u64(&w, e->n_params);
    bw_u64(&w, (uint64_t)t->steps);
    bw_u64(&w, (uint64_t)t->adam.t);
    bw_f32s(&w, t->adam.m, e->n_params);
    bw_f32s(&w, t->adam.v, e->n_params);
    bw_u32(&w, crc32c(buf, w.pos));
    TWIG_ASSERT(w.pos == ensemble_trainer_image_size(e));
}

int ensemble_trainer_image_read(ensemble_trainer_t *t, const ensemble_t *e, const uint8_t *buf,
                                size_t len)
{
    if (len < TRAINER_HEADER_BYTES + 4 || memcmp(buf, trainer_magic, 8) != 0) {
        return err_set(TWIG_ECORRUPT, "not an ensemble trainer image (short or wrong magic)");
    }
    uint32_t version = le32_get(buf + 8);
    if (version != ENSEMBLE_TRAINER_FILE_VERSION) {
        return err_set(TWIG_EVERSION, "ensemble trainer image version %u, this build reads %u",
                       version, ENSEMBLE_TRAINER_FILE_VERSION);
    }
    if (crc32c(buf, len - 4) != le32_get(buf + len - 4)) {
        return err_set(TWIG_ECORRUPT, "ensemble trainer image checksum mismatch");
    }
    byte_reader r = {.buf = buf, .len = len - 4, .pos = 12};
    uint64_t np = br_u64(&r);
    int64_t steps = (int64_t)br_u64(&r), adam_t = (int64_t)br_u64(&r);
    if (np != e->n_params || len != ensemble_trainer_image_size(e)) {
        return err_set(TWIG_EMISMATCH,
                       "ensemble trainer image is for %llu parameters, the "
                       "model has %zu",
                       (unsigned long long)np, e->n_params);
    }
    if (steps < 0 || adam_t < 0) {
        return err_set(-EINVAL, "ensemble trainer image has negative step counts");
    }
    /* check before writing: a refused image leaves the trainer as it was */
    const uint8_t *p = buf + TRAINER_HEADER_BYTES;
    for (size_t i = 0; i < 2 * e->n_params; i++) {
        uint32_t bits = le32_get(p + i * sizeof(float));
        float v;
        memcpy(&v, &bits, sizeof v);
        if (!isfinite(v) || (i >= e->n_params && v < 0.0f)) {
            return err_set(-EINVAL, "ensemble trainer image: moment %zu is invalid", i);
        }
    }
    br_f32s(&r, t->adam.m, e->n_params);
    br_f32s(&r, t->adam.v, e->n_params);
    TWIG_ASSERT(!r.bad && br_left(&r) == 0); /* len was checked against n_params */
    t->steps = steps;
    t->adam.t = adam_t;
    return 0;
}

int ensemble_trainer_save_file(const ensemble_t *e, const ensemble_trainer_t *t, const char *path)
{
    size_t n = ensemble_trainer_image_size(e);
    uint8_t *buf = xmalloc(n);
    ensemble_trainer_image_write(buf, e, t);
    int rc = atomic_file_write(path, buf, n);
    free(buf);
    return rc;
}

int ensemble_trainer_load_file(ensemble_trainer_t *t, const ensemble_t *e, const char *path)
{
    uint8_t *buf = NULL;
    size_t n = 0;
    int rc = atomic_file_read(&buf, &n, path, ENSEMBLE_FILE_MAX);
    if (rc < 0) {
        return rc;
    }
    rc = ensemble_trainer_image_read(t, e, buf, n);
    free(buf);
    return rc < 0 ? with_path(rc, path) : 0;
}
