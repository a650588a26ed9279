/* nn_mlp.c - the MLP: parameters (one block, tensors pointed in from a size table) apart from
 * the forward workspace and the training state (grads, Adam moments, backward scratch);
 * forward/backward over a batch with whole-batch GEMMs; checkpoint images (bytes.h) */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/atomic_file.h"
#include "common/base/bytes.h"
#include "common/base/crc32c.h"
#include "common/base/err.h"
#include "common/base/mem.h"
#include "common/nn/nn.h"
#include "common/nn/nn_gemm.h"

#define MLP_ALIGN_FLOATS 16 /* each tensor starts on a 64-byte boundary */
#define MLP_MAX_WIDTH 65536

static size_t round_up(size_t n)
{
    return (n + MLP_ALIGN_FLOATS - 1) / MLP_ALIGN_FLOATS * MLP_ALIGN_FLOATS;
}

static int check_shape(const int *sizes, int n_layers, nn_act act)
{
    if (n_layers < 1 || n_layers > MLP_MAX_LAYERS) {
        return err_set(-EINVAL, "mlp: n_layers is %d, must be 1..%d", n_layers, MLP_MAX_LAYERS);
    }
    for (int l = 0; l <= n_layers; l++) {
        if (sizes[l] < 1 || sizes[l] > MLP_MAX_WIDTH) {
            return err_set(-EINVAL, "mlp: sizes[%d] is %d, must be 1..%d", l, sizes[l],
                           MLP_MAX_WIDTH);
        }
    }
    if (act != NN_ACT_NONE && act != NN_ACT_RELU && act != NN_ACT_SWISH) {
        return err_set(-EINVAL, "mlp: unknown activation %d", (int)act);
    }
    return 0;
}

static int check_batch(int max_batch)
{
    if (max_batch < 1) {
        return err_set(-EINVAL, "mlp: max_batch is %d, must be >= 1", max_batch);
    }
    return 0;
}

int mlp_params_init(mlp_params *p, const int *sizes, int n_layers, nn_act act, rng_t *rng)
{
    memset(p, 0, sizeof(*p));
    int rc = check_shape(sizes, n_layers, act);
    if (rc < 0) {
        return rc;
    }
    p->n_layers = n_layers;
    memcpy(p->sizes, sizes, sizeof(int) * (size_t)(n_layers + 1));
    p->act = act;
    p->gemm = nn_gemm;

    // size table: w0 b0 w1 b1 ... each rounded up to 64 bytes
    size_t off = 0;
    for (int l = 0; l < n_layers; l++) {
        mlp_tensor *tw = &p->tensors[2 * l];
        mlp_tensor *tb = &p->tensors[2 * l + 1];
        snprintf(tw->name, sizeof(tw->name), "w%d", l);
        snprintf(tb->name, sizeof(tb->name), "b%d", l);
        tw->rows = sizes[l];
        tw->cols = sizes[l + 1];
        tw->offset = off;
        off += round_up((size_t)sizes[l] * sizes[l + 1]);
        tb->rows = 1;
        tb->cols = sizes[l + 1];
        tb->offset = off;
        off += round_up((size_t)sizes[l + 1]);
    }
    p->n_params = off;
    p->params = xmalloc_aligned(off * sizeof(float));
    memset(p->params, 0, off * sizeof(float));
    for (int l = 0; l < n_layers; l++) {
        p->w[l] = p->params + p->tensors[2 * l].offset;
        p->b[l] = p->params + p->tensors[2 * l + 1].offset;
        // torch.nn.Linear's default: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias
        float bound = 1.0f / sqrtf((float)sizes[l]);
        size_t nw = (size_t)sizes[l] * sizes[l + 1];
        for (size_t i = 0; i < nw; i++) {
            p->w[l][i] = rng_uniform_range(rng, -bound, bound);
        }
        for (int i = 0; i < sizes[l + 1]; i++) {
            p->b[l][i] = rng_uniform_range(rng, -bound, bound);
        }
    }
    return 0;
}

void mlp_params_free(mlp_params *p)
{
    free(p->params);
    memset(p, 0, sizeof(*p));
}

int mlp_work_init(mlp_work *w, const mlp_params *p, int max_batch)
{
    memset(w, 0, sizeof(*w));
    int rc = check_batch(max_batch);
    if (rc < 0) {
        return rc;
    }
    w->max_batch = max_batch;
    // z and h per hidden layer (h aliases z unless swish); the output goes to the caller's y
    const int L = p->n_layers;
    size_t wsz = 0;
    for (int l = 0; l < L - 1; l++) {
        size_t one = round_up((size_t)max_batch * p->sizes[l + 1]);
        wsz += p->act == NN_ACT_SWISH ? 2 * one : one;
    }
    if (wsz == 0) {
        return 0; /* one linear layer: nothing to keep */
    }
    w->block = xmalloc_aligned(wsz * sizeof(float));
    memset(w->block, 0, wsz * sizeof(float));
    float *q = w->block;
    for (int l = 0; l < L - 1; l++) {
        size_t one = round_up((size_t)max_batch * p->sizes[l + 1]);
        w->z[l] = q;
        q += one;
        if (p->act == NN_ACT_SWISH) {
            w->h[l] = q;
            q += one;
        } else {
            w->h[l] = w->z[l];
        }
    }
    return 0;
}

void mlp_work_free(mlp_work *w)
{
    free(w->block);
    memset(w, 0, sizeof(*w));
}

int mlp_train_init(mlp_train *t, const mlp_params *p, int max_batch)
{
    memset(t, 0, sizeof(*t));
    int rc = check_batch(max_batch);
    if (rc < 0) {
        return rc;
    }
    t->max_batch = max_batch;
    const size_t n = p->n_params;
    t->grads = xmalloc_aligned(n * sizeof(float));
    memset(t->grads, 0, n * sizeof(float));
    for (int l = 0; l < p->n_layers; l++) {
        t->dw[l] = t->grads + p->tensors[2 * l].offset;
        t->db[l] = t->grads + p->tensors[2 * l + 1].offset;
    }
    nn_adam_init(&t->adam, n);
    // two gradient buffers as wide as the widest layer
    int widest = 0;
    for (int l = 0; l <= p->n_layers; l++) {
        widest = p->sizes[l] > widest ? p->sizes[l] : widest;
    }
    size_t dsz = round_up((size_t)max_batch * widest);
    t->scratch = xmalloc_aligned(2 * dsz * sizeof(float));
    memset(t->scratch, 0, 2 * dsz * sizeof(float));
    t->dh[0] = t->scratch;
    t->dh[1] = t->scratch + dsz;
    return 0;
}

void mlp_train_free(mlp_train *t)
{
    free(t->grads);
    free(t->scratch);
    nn_adam_free(&t->adam);
    memset(t, 0, sizeof(*t));
}

int mlp_init(mlp_t *net, const int *sizes, int n_layers, nn_act act, int max_batch, rng_t *rng)
{
    memset(net, 0, sizeof(*net));
    int rc = check_shape(sizes, n_layers, act);
    if (rc == 0) {
        rc = check_batch(max_batch);
    }
    if (rc < 0) {
        return rc;
    }
    mlp_params_init(&net->p, sizes, n_layers, act, rng);
    mlp_work_init(&net->work, &net->p, max_batch);
    mlp_train_init(&net->train, &net->p, max_batch);
    return 0;
}

void mlp_free(mlp_t *net)
{
    mlp_params_free(&net->p);
    mlp_work_free(&net->work);
    mlp_train_free(&net->train);
}

void mlp_forward(const mlp_params *p, mlp_work *w, float *y, const float *x, int B)
{
    TWIG_ASSERT(B >= 1 && B <= w->max_batch);
    const int L = p->n_layers;
    const int *s = p->sizes;
    w->x = x;
    w->last_batch = B;
    const float *a = x;
    for (int l = 0; l < L; l++) {
        float *z = l == L - 1 ? y : w->z[l];
        // z = a * w, then bias (+ activation on hidden layers) in one pass
        p->gemm(z, a, p->w[l], B, s[l + 1], s[l], false, false, 1.0f, 0.0f, s[l], s[l + 1],
                s[l + 1]);
        if (l == L - 1) {
            nn_bias_act_forward(z, z, p->b[l], NN_ACT_NONE, B, s[l + 1]);
        } else {
            nn_bias_act_forward(w->h[l], z, p->b[l], p->act, B, s[l + 1]);
            a = w->h[l];
        }
    }
}

typedef enum grad_mode { GRAD_NONE, GRAD_ADD, GRAD_SET } grad_mode;

static void backward(const mlp_params *p, const mlp_work *w, mlp_train *t, float *dx,
                     const float *dy, grad_mode mode)
{
    const int L = p->n_layers;
    const int *s = p->sizes;
    const int B = w->last_batch;
    TWIG_ASSERT(B >= 1 && B <= t->max_batch);
    const bool params = mode != GRAD_NONE;
    const float beta = mode == GRAD_SET ? 0.0f : 1.0f;
    if (mode == GRAD_SET) {
        for (int l = 0; l < L; l++) {
            memset(t->db[l], 0, sizeof(float) * (size_t)s[l + 1]);
        }
    }
    const float *dz = dy;
    if (params) {
        // column sums of dy into db
        float *db = t->db[L - 1];
        for (int i = 0; i < B; i++) {
            for (int j = 0; j < s[L]; j++) {
                db[j] += dy[(size_t)i * s[L] + j];
            }
        }
    }
    int buf = 0;
    for (int l = L - 1; l >= 0; l--) {
        const float *a = l == 0 ? w->x : w->h[l - 1];
        if (params) {
            // dw (+)= a^T dz
            p->gemm(t->dw[l], a, dz, s[l], s[l + 1], B, true, false, 1.0f, beta, s[l], s[l + 1],
                    s[l + 1]);
        }
        if (l == 0 && !dx) {
            break;
        }
        // da = dz w^T
        float *da = l == 0 ? dx : t->dh[buf];
        p->gemm(da, dz, p->w[l], B, s[l], s[l + 1], false, true, 1.0f, 0.0f, s[l + 1], s[l + 1],
                s[l]);
        if (l > 0) {
            nn_act_bias_backward(da, params ? t->db[l - 1] : NULL, da, w->z[l - 1], w->h[l - 1],
                                 p->act, B, s[l]);
            dz = da;
            buf ^= 1;
        }
    }
}

void mlp_backward(const mlp_params *p, const mlp_work *w, mlp_train *t, float *dx, const float *dy,
                  bool accumulate_params)
{
    backward(p, w, t, dx, dy, accumulate_params ? GRAD_ADD : GRAD_NONE);
}

void mlp_backward_set(const mlp_params *p, const mlp_work *w, mlp_train *t, float *dx,
                      const float *dy)
{
    backward(p, w, t, dx, dy, GRAD_SET);
}

void mlp_backward_input_rows(const mlp_params *p, const mlp_work *w, mlp_train *t, float *dx,
                             const float *dy, const int *rows, int n_rows, int col0, int ncols)
{
    const int L = p->n_layers;
    const int *s = p->sizes;
    const int B = w->last_batch;
    TWIG_ASSERT(n_rows >= 0 && n_rows <= B && B <= t->max_batch && col0 >= 0 && ncols >= 1 &&
                col0 + ncols <= s[0]);
    if (n_rows == 0) {
        return;
    }
    // gather the wanted rows of dy
    float *dz = t->dh[0];
    for (int r = 0; r < n_rows; r++) {
        TWIG_ASSERT(rows[r] >= 0 && rows[r] < B);
        memcpy(dz + (size_t)r * s[L], dy + (size_t)rows[r] * s[L], sizeof(float) * s[L]);
    }
    int buf = 1;
    for (int l = L - 1; l > 0; l--) {
        // da = dz w^T, then through the activation of the gathered rows
        float *da = t->dh[buf];
        p->gemm(da, dz, p->w[l], n_rows, s[l], s[l + 1], false, true, 1.0f, 0.0f, s[l + 1],
                s[l + 1], s[l]);
        for (int r = 0; r < n_rows; r++) {
            size_t src = (size_t)rows[r] * s[l], dst = (size_t)r * s[l];
            nn_act_bias_backward(da + dst, NULL, da + dst, w->z[l - 1] + src, w->h[l - 1] + src,
                                 p->act, 1, s[l]);
        }
        dz = da;
        buf ^= 1;
    }
    // the first layer: only the wanted input columns, rows col0.. of w0 (in, out)
    p->gemm(dx, dz, p->w[0] + (size_t)col0 * s[1], n_rows, ncols, s[1], false, true, 1.0f, 0.0f,
            s[1], s[1], ncols);
}

void mlp_zero_grad(mlp_train *t)
{
    memset(t->grads, 0, t->adam.n * sizeof(float));
}

void mlp_adam_step(mlp_params *p, mlp_train *t, const nn_adam_cfg *cfg)
{
    TWIG_ASSERT(t->adam.n == p->n_params);
    nn_adam_step(cfg, &t->adam, p->params, t->grads, p->n_params);
}

static bool same_shape(const mlp_params *a, const mlp_params *b)
{
    if (a->n_layers != b->n_layers) {
        return false;
    }
    for (int l = 0; l <= a->n_layers; l++) {
        if (a->sizes[l] != b->sizes[l]) {
            return false;
        }
    }
    return true;
}

void mlp_polyak(mlp_params *dst, const mlp_params *src, float tau)
{
    TWIG_ASSERT(same_shape(dst, src));
    float *restrict d = dst->params;
    const float *restrict s = src->params;
    const float keep = 1.0f - tau;
    for (size_t i = 0; i < dst->n_params; i++) {
        d[i] = d[i] * keep + tau * s[i];
    }
}

void mlp_copy_params(mlp_params *dst, const mlp_params *src)
{
    TWIG_ASSERT(same_shape(dst, src));
    memcpy(dst->params, src->params, dst->n_params * sizeof(float));
}

/* ---- checkpoint images ---- */

static const char MLP_MAGIC[8] = {'T', 'W', 'I', 'G', 'N', 'N', 0, 0};
#define MLP_MAX_FILE ((size_t)1 << 31)

size_t mlp_image_size(mlp_t *const *nets, int n_nets, size_t n_extra)
{
    size_t n = sizeof(MLP_MAGIC) + 3 * sizeof(uint32_t);
    for (int k = 0; k < n_nets; k++) {
        n += 2 * sizeof(uint32_t) + sizeof(uint32_t) * (size_t)(nets[k]->p.n_layers + 1);
        n += sizeof(int64_t) + sizeof(uint64_t) + 3 * nets[k]->p.n_params * sizeof(float);
    }
    return n + n_extra + sizeof(uint32_t);
}

/* a net without training state (never stepped) has moments of zeros and step 0 */
static void put_zero_moments(byte_writer *w, size_t n_params)
{
    size_t n = 2 * n_params * sizeof(float);
    memset(w->buf + w->pos, 0, n);
    w->pos += n;
}

void mlp_image_write(uint8_t *buf, mlp_t *const *nets, int n_nets, const void *extra,
                     size_t n_extra)
{
    byte_writer w = {.buf = buf};
    bw_bytes(&w, MLP_MAGIC, sizeof(MLP_MAGIC));
    bw_u32(&w, MLP_FILE_VERSION);
    bw_u32(&w, (uint32_t)n_nets);
    bw_u32(&w, (uint32_t)n_extra);
    for (int k = 0; k < n_nets; k++) {
        const mlp_params *p = &nets[k]->p;
        const nn_adam_state *adam = &nets[k]->train.adam;
        const bool trained = adam->m != NULL;
        TWIG_ASSERT(!trained || adam->n == p->n_params);
        bw_u32(&w, (uint32_t)p->n_layers);
        bw_u32(&w, (uint32_t)p->act);
        for (int l = 0; l <= p->n_layers; l++) {
            bw_u32(&w, (uint32_t)p->sizes[l]);
        }
        bw_u64(&w, trained ? (uint64_t)adam->t : 0);
        bw_u64(&w, p->n_params);
        bw_f32s(&w, p->params, p->n_params);
        if (trained) {
            bw_f32s(&w, adam->m, p->n_params);
            bw_f32s(&w, adam->v, p->n_params);
        } else {
            put_zero_moments(&w, p->n_params);
        }
    }
    bw_bytes(&w, extra, n_extra);
    bw_u32(&w, crc32c(buf, w.pos));
}

/* one pass checks everything (apply false), a second copies (apply true) */
static int image_walk(byte_reader *r, mlp_t *const *nets, int n_nets, void *extra, size_t n_extra,
                      bool apply)
{
    br_bytes(r, NULL, sizeof(MLP_MAGIC) + sizeof(uint32_t));
    uint32_t u = br_u32(r);
    if (r->bad) {
        return err_set(TWIG_ECORRUPT, "nn image: header truncated");
    }
    if (u != (uint32_t)n_nets) {
        return err_set(TWIG_EMISMATCH, "nn image: holds %u nets, expected %d", u, n_nets);
    }
    u = br_u32(r);
    if (r->bad) {
        return err_set(TWIG_ECORRUPT, "nn image: header truncated");
    }
    if (u != (uint32_t)n_extra) {
        return err_set(TWIG_EMISMATCH, "nn image: holds %u extra bytes, expected %zu", u, n_extra);
    }
    for (int k = 0; k < n_nets; k++) {
        mlp_params *p = &nets[k]->p;
        nn_adam_state *adam = &nets[k]->train.adam;
        const bool trained = adam->m != NULL;
        TWIG_ASSERT(!trained || adam->n == p->n_params);
        uint32_t nl = br_u32(r), act = br_u32(r);
        if (r->bad) {
            return err_set(TWIG_ECORRUPT, "nn image: net %d header truncated", k);
        }
        if (nl != (uint32_t)p->n_layers || act != (uint32_t)p->act) {
            return err_set(TWIG_EMISMATCH,
                           "nn image: net %d has %u layers act %u, expected %d "
                           "layers act %d",
                           k, nl, act, p->n_layers, (int)p->act);
        }
        for (int l = 0; l <= p->n_layers; l++) {
            u = br_u32(r);
            if (r->bad) {
                return err_set(TWIG_ECORRUPT, "nn image: net %d sizes truncated", k);
            }
            if (u != (uint32_t)p->sizes[l]) {
                return err_set(TWIG_EMISMATCH, "nn image: net %d sizes[%d] is %u, expected %d", k,
                               l, u, p->sizes[l]);
            }
        }
        int64_t t = (int64_t)br_u64(r);
        uint64_t np = br_u64(r);
        if (r->bad) {
            return err_set(TWIG_ECORRUPT, "nn image: net %d header truncated", k);
        }
        if (np != p->n_params || t < 0) {
            return err_set(TWIG_EMISMATCH,
                           "nn image: net %d has %llu params (step %lld), "
                           "expected %zu",
                           k, (unsigned long long)np, (long long)t, p->n_params);
        }
        if (apply && trained) {
            br_f32s(r, p->params, np);
            br_f32s(r, adam->m, np);
            br_f32s(r, adam->v, np);
            adam->t = t;
        } else if (apply) {
            br_f32s(r, p->params, np);
            br_bytes(r, NULL, 2 * np * sizeof(float)); /* moments of a net never stepped */
        } else {
            br_bytes(r, NULL, 3 * np * sizeof(float));
        }
        if (r->bad) {
            return err_set(TWIG_ECORRUPT, "nn image: net %d data truncated", k);
        }
    }
    br_bytes(r, apply ? extra : NULL, n_extra);
    if (r->bad) {
        return err_set(TWIG_ECORRUPT, "nn image: extra bytes truncated");
    }
    if (br_left(r) != sizeof(uint32_t)) {
        return err_set(TWIG_ECORRUPT, "nn image: %zu bytes after the data, expected 4", br_left(r));
    }
    return 0;
}

int mlp_image_read(const uint8_t *buf, size_t len, mlp_t *const *nets, int n_nets, void *extra,
                   size_t n_extra)
{
    size_t head = sizeof(MLP_MAGIC) + sizeof(uint32_t);
    if (len < head + sizeof(uint32_t)) {
        return err_set(TWIG_ECORRUPT, "nn image: %zu bytes, too short for a header", len);
    }
    if (memcmp(buf, MLP_MAGIC, sizeof(MLP_MAGIC)) != 0) {
        return err_set(TWIG_ECORRUPT, "nn image: bad magic (not a twig network file)");
    }
    uint32_t version = le32_get(buf + sizeof(MLP_MAGIC));
    if (version != MLP_FILE_VERSION) {
        return err_set(TWIG_EVERSION, "nn image: version %u, this build reads version %u", version,
                       MLP_FILE_VERSION);
    }
    uint32_t stored = le32_get(buf + len - sizeof(uint32_t));
    uint32_t actual = crc32c(buf, len - sizeof(uint32_t));
    if (stored != actual) {
        return err_set(TWIG_ECORRUPT,
                       "nn image: checksum mismatch (stored %08x, computed %08x):"
                       " truncated or corrupted",
                       stored, actual);
    }
    byte_reader check = {.buf = buf, .len = len};
    int rc = image_walk(&check, nets, n_nets, extra, n_extra, false);
    if (rc < 0) {
        return rc;
    }
    byte_reader copy = {.buf = buf, .len = len};
    return image_walk(&copy, nets, n_nets, extra, n_extra, true);
}

int mlp_save_file(const char *path, mlp_t *const *nets, int n_nets, const void *extra,
                  size_t n_extra)
{
    size_t n = mlp_image_size(nets, n_nets, n_extra);
    uint8_t *buf = xmalloc(n);
    mlp_image_write(buf, nets, n_nets, extra, n_extra);
    int rc = atomic_file_write(path, buf, n);
    free(buf);
    return rc;
}

int mlp_load_file(const char *path, mlp_t *const *nets, int n_nets, void *extra, size_t n_extra)
{
    uint8_t *buf;
    size_t n;
    int rc = atomic_file_read(&buf, &n, path, MLP_MAX_FILE);
    if (rc < 0) {
        return rc;
    }
    rc = mlp_image_read(buf, n, nets, n_nets, extra, n_extra);
    free(buf);
    return rc;
}
