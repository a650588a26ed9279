/* twig_policy.h - load a twig policy file (.twigp, docs/policy-format.md) and act with it.
 * One header, no dependency but libc and libm: copy it into your project.
 *
 *     #include "twig_policy.h"
 *     twig_policy pol;
 *     char err[256];
 *     if (twig_policy_load(&pol, "hopper.twigp", err, sizeof err) != 0) {
 *         fprintf(stderr, "%s\n", err);
 *     }
 *     twig_policy_act(&pol, act, obs);    // act (n_act) in the env's units, obs (n_obs)
 *     twig_policy_free(&pol);
 *
 * twig_policy_act is the deterministic action twig uses to evaluate: the net's first n_act
 * outputs are mu, the next n_act log_std (unused here), and
 *     act[j] = act_low[j] + (tanh(mu[j]) + 1) * (act_high[j] - act_low[j]) / 2.
 * A loaded policy is read-only except its scratch buffer: one thread acts with it at a time.
 * Released under the same licence as twig; version 1 of the format. */
#ifndef TWIG_POLICY_LOADER_H
#define TWIG_POLICY_LOADER_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TWIG_POLICY_FORMAT_VERSION 1u
#define TWIG_POLICY_MAX_LAYERS 8
#define TWIG_POLICY_DIM_MAX 65536

typedef struct twig_policy {
    char env_id[256];
    uint64_t policy_version, updates;
    int n_obs, n_act, n_layers;
    int activation;                        /* 0 none, 1 ReLU, 2 swish (x sigmoid(x)) */
    int sizes[TWIG_POLICY_MAX_LAYERS + 1]; /* sizes[0] = n_obs ... sizes[n_layers] = 2 n_act */
    float *act_low, *act_high;             /* (n_act) each */
    float *w[TWIG_POLICY_MAX_LAYERS];      /* (sizes[l], sizes[l+1]) row-major: in x out */
    float *b[TWIG_POLICY_MAX_LAYERS];      /* (sizes[l+1]) */
    float *block;                          /* everything above, one allocation */
    double *scratch;                       /* (2, widest layer) */
} twig_policy;

static uint32_t twig_policy_crc32c(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) {
            c = (c >> 1) ^ (0x82f63b78u & (0u - (c & 1u)));
        }
    }
    return c ^ 0xffffffffu;
}

static uint32_t twig_policy_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static float twig_policy_f32(const uint8_t *p)
{
    uint32_t u = twig_policy_u32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* bytes [*pos, *pos + n) exist: 1, else 0 with err naming the field */
static int twig_policy_need(size_t len, size_t pos, size_t n, const char *field, char *err,
                            size_t n_err)
{
    if (pos > len || len - pos < n) {
        snprintf(err, n_err, "truncated at %s (the file has %zu bytes)", field, len);
        return 0;
    }
    return 1;
}

static void twig_policy_free(twig_policy *p)
{
    free(p->block);
    free(p->scratch);
    memset(p, 0, sizeof *p);
}

/* parse a whole file image; 0, or -1 with err (n_err bytes) naming the field */
static int twig_policy_parse(twig_policy *p, const uint8_t *d, size_t len, char *err,
                             size_t n_err)
{
    memset(p, 0, sizeof *p);
    size_t pos = 0;
#define TP_NEED(n, field)                                                                     \
    do {                                                                                      \
        if (!twig_policy_need(len, pos, (size_t)(n), field, err, n_err)) {                    \
            return -1;                                                                        \
        }                                                                                     \
    } while (0)
#define TP_FAIL(...)                                                                          \
    do {                                                                                      \
        snprintf(err, n_err, __VA_ARGS__);                                                    \
        twig_policy_free(p);                                                                  \
        return -1;                                                                            \
    } while (0)
    TP_NEED(12, "magic/format_version");
    if (memcmp(d, "TWIGPOL\0", 8) != 0) {
        TP_FAIL("magic is not \"TWIGPOL\\0\" (not a twig policy file)");
    }
    if (twig_policy_u32(d + 8) != TWIG_POLICY_FORMAT_VERSION) {
        TP_FAIL("format_version %u, this loader reads %u", twig_policy_u32(d + 8),
                TWIG_POLICY_FORMAT_VERSION);
    }
    pos = 12;
    TP_NEED(4, "env_id_len");
    uint32_t env_len = twig_policy_u32(d + pos);
    pos += 4;
    if (env_len == 0 || env_len > 255) {
        TP_FAIL("env_id_len %u is outside [1, 255]", env_len);
    }
    TP_NEED(env_len, "env_id");
    memcpy(p->env_id, d + pos, env_len);
    pos += env_len;
    TP_NEED(16, "policy_version/updates");
    p->policy_version = (uint64_t)twig_policy_u32(d + pos) |
                        (uint64_t)twig_policy_u32(d + pos + 4) << 32;
    p->updates = (uint64_t)twig_policy_u32(d + pos + 8) |
                 (uint64_t)twig_policy_u32(d + pos + 12) << 32;
    pos += 16;
    TP_NEED(8, "n_obs/n_act");
    uint32_t n_obs = twig_policy_u32(d + pos), n_act = twig_policy_u32(d + pos + 4);
    pos += 8;
    if (n_obs == 0 || n_obs > TWIG_POLICY_DIM_MAX || n_act == 0 || n_act > TWIG_POLICY_DIM_MAX) {
        TP_FAIL("n_obs %u / n_act %u outside [1, %d]", n_obs, n_act, TWIG_POLICY_DIM_MAX);
    }
    size_t bounds_at = pos;
    TP_NEED(8 * (size_t)n_act, "act_low/act_high");
    pos += 8 * (size_t)n_act;
    TP_NEED(4, "n_layers");
    uint32_t n_layers = twig_policy_u32(d + pos);
    pos += 4;
    if (n_layers == 0 || n_layers > TWIG_POLICY_MAX_LAYERS) {
        TP_FAIL("n_layers %u is outside [1, %d]", n_layers, TWIG_POLICY_MAX_LAYERS);
    }
    TP_NEED(4 * ((size_t)n_layers + 1), "sizes");
    size_t n_floats = 2 * (size_t)n_act, widest = 0;
    for (uint32_t l = 0; l <= n_layers; l++) {
        uint32_t s = twig_policy_u32(d + pos + 4 * l);
        if (s == 0 || s > TWIG_POLICY_DIM_MAX) {
            TP_FAIL("sizes[%u] %u is outside [1, %d]", l, s, TWIG_POLICY_DIM_MAX);
        }
        p->sizes[l] = (int)s;
        widest = s > widest ? s : widest;
        if (l > 0) {
            n_floats += (size_t)p->sizes[l - 1] * s + s;
        }
    }
    pos += 4 * ((size_t)n_layers + 1);
    if ((uint32_t)p->sizes[0] != n_obs || (uint32_t)p->sizes[n_layers] != 2 * n_act) {
        TP_FAIL("sizes[0] %d / sizes[%u] %d are not n_obs %u / 2 n_act %u", p->sizes[0],
                n_layers, p->sizes[n_layers], n_obs, 2 * n_act);
    }
    TP_NEED(8, "activation/head");
    uint32_t act = twig_policy_u32(d + pos), head = twig_policy_u32(d + pos + 4);
    pos += 8;
    if (act > 2) {
        TP_FAIL("activation %u is not 0, 1 or 2", act);
    }
    if (head != 1) {
        TP_FAIL("head %u is not 1 (tanh Gaussian)", head);
    }
    size_t n_tensor = n_floats - 2 * (size_t)n_act;
    if (len - pos != 4 * n_tensor + 4) {
        TP_FAIL("%s: the tensors and crc32c need %zu bytes, %zu are left",
                len - pos < 4 * n_tensor + 4 ? "truncated" : "trailing bytes",
                4 * n_tensor + 4, len - pos);
    }
    uint32_t stored = twig_policy_u32(d + len - 4), actual = twig_policy_crc32c(d, len - 4);
    if (stored != actual) {
        TP_FAIL("crc32c mismatch (stored %08x, computed %08x): corrupted", stored, actual);
    }
    p->n_obs = (int)n_obs;
    p->n_act = (int)n_act;
    p->n_layers = (int)n_layers;
    p->activation = (int)act;
    p->block = malloc(n_floats * sizeof(float));
    p->scratch = malloc(2 * widest * sizeof(double));
    if (p->block == NULL || p->scratch == NULL) {
        TP_FAIL("out of memory");
    }
    p->act_low = p->block;
    p->act_high = p->block + n_act;
    for (size_t j = 0; j < 2 * (size_t)n_act; j++) {
        p->block[j] = twig_policy_f32(d + bounds_at + 4 * j);
    }
    for (uint32_t j = 0; j < n_act; j++) {
        if (!isfinite(p->act_low[j]) || !isfinite(p->act_high[j]) ||
            !(p->act_low[j] < p->act_high[j])) {
            TP_FAIL("act_low[%u] / act_high[%u]: bounds must be finite with low < high", j, j);
        }
    }
    float *f = p->block + 2 * (size_t)n_act;
    for (uint32_t l = 0; l < n_layers; l++) {
        size_t nw = (size_t)p->sizes[l] * p->sizes[l + 1], nb = (size_t)p->sizes[l + 1];
        p->w[l] = f;
        f += nw;
        p->b[l] = f;
        f += nb;
    }
    for (size_t i = 0; i < n_tensor; i++) {
        p->block[2 * (size_t)n_act + i] = twig_policy_f32(d + pos + 4 * i);
    }
    return 0;
#undef TP_NEED
#undef TP_FAIL
}

/* read path; 0, or -1 with err naming the field (or the I/O problem) */
static int twig_policy_load(twig_policy *p, const char *path, char *err, size_t n_err)
{
    memset(p, 0, sizeof *p);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, n_err, "cannot open %s", path);
        return -1;
    }
    size_t cap = 1 << 16, len = 0;
    uint8_t *d = malloc(cap);
    for (;;) {
        if (d == NULL) {
            fclose(f);
            snprintf(err, n_err, "out of memory reading %s", path);
            return -1;
        }
        len += fread(d + len, 1, cap - len, f);
        if (len < cap) {
            break;
        }
        uint8_t *bigger = cap < ((size_t)1 << 30) ? realloc(d, cap * 2) : NULL;
        if (bigger == NULL) {
            free(d);
            d = NULL;
            continue;
        }
        d = bigger;
        cap *= 2;
    }
    int bad = ferror(f);
    fclose(f);
    int rc = bad ? -1 : twig_policy_parse(p, d, len, err, n_err);
    if (bad) {
        snprintf(err, n_err, "read error on %s", path);
    }
    free(d);
    return rc;
}

/* act (n_act) in the env's units for obs (n_obs): the deterministic (mean) action */
static void twig_policy_act(const twig_policy *p, float *act, const float *obs)
{
    double *x = p->scratch, *y;
    int widest = 0;
    for (int l = 0; l <= p->n_layers; l++) {
        widest = p->sizes[l] > widest ? p->sizes[l] : widest;
    }
    y = p->scratch + widest;
    for (int i = 0; i < p->n_obs; i++) {
        x[i] = obs[i];
    }
    for (int l = 0; l < p->n_layers; l++) {
        int in = p->sizes[l], out = p->sizes[l + 1];
        for (int o = 0; o < out; o++) {
            y[o] = p->b[l][o];
        }
        for (int i = 0; i < in; i++) {       /* y = x W + b, W (in, out) */
            const float *row = p->w[l] + (size_t)i * out;
            for (int o = 0; o < out; o++) {
                y[o] += x[i] * row[o];
            }
        }
        if (l + 1 < p->n_layers) {           /* hidden activation; the last layer is linear */
            for (int o = 0; o < out; o++) {
                if (p->activation == 1) {
                    y[o] = y[o] > 0.0 ? y[o] : 0.0;
                } else if (p->activation == 2) {
                    y[o] = y[o] / (1.0 + exp(-y[o]));
                }
            }
        }
        double *t = x;
        x = y;
        y = t;
    }
    for (int j = 0; j < p->n_act; j++) {     /* x = [mu, log_std] */
        double lo = p->act_low[j], hi = p->act_high[j];
        act[j] = (float)(lo + (tanh(x[j]) + 1.0) * 0.5 * (hi - lo));
    }
}

#endif
