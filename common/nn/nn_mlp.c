/* nn_mlp.c - the MLP: one block each for params, grads and Adam moments, tensors pointed in
 * from a size table; forward/backward over a batch with whole-batch GEMMs; checkpoint images */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/atomic_file.h"
#include "common/base/crc32c.h"
#include "common/base/err.h"
#include "common/base/mem.h"
#include "common/nn/nn.h"
#include "common/nn/nn_gemm.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "images are little-endian floats");

#define MLP_ALIGN_FLOATS 16 /* each tensor starts on a 64-byte boundary */
#define MLP_MAX_WIDTH 65536

static size_t round_up(size_t n)
{
    return (n + MLP_ALIGN_FLOATS - 1) / MLP_ALIGN_FLOATS * MLP_ALIGN_FLOATS;
}

int mlp_init(mlp_t *net, const int *sizes, int n_layers, nn_act act, int max_batch, rng_t *rng)
{
    memset(net, 0, sizeof(*net));
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
    if (max_batch < 1) {
        return err_set(-EINVAL, "mlp: max_batch is %d, must be >= 1", max_batch);
    }
    net->n_layers = n_layers;
    memcpy(net->sizes, sizes, sizeof(int) * (size_t)(n_layers + 1));
    net->act = act;
    net->max_batch = max_batch;
    net->gemm = nn_gemm;

    // size table: w0 b0 w1 b1 ... each rounded up to 64 bytes
    size_t off = 0;
    for (int l = 0; l < n_layers; l++) {
        mlp_tensor *tw = &net->tensors[2 * l];
        mlp_tensor *tb = &net->tensors[2 * l + 1];
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
    net->n_params = off;
    net->params = xmalloc_aligned(off * sizeof(float));
    net->grads = xmalloc_aligned(off * sizeof(float));
    memset(net->params, 0, off * sizeof(float));
    memset(net->grads, 0, off * sizeof(float));
    nn_adam_init(&net->adam, off);
    for (int l = 0; l < n_layers; l++) {
        net->w[l] = net->params + net->tensors[2 * l].offset;
        net->b[l] = net->params + net->tensors[2 * l + 1].offset;
        net->dw[l] = net->grads + net->tensors[2 * l].offset;
        net->db[l] = net->grads + net->tensors[2 * l + 1].offset;
        // torch.nn.Linear's default: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias
        float bound = 1.0f / sqrtf((float)sizes[l]);
        size_t nw = (size_t)sizes[l] * sizes[l + 1];
        for (size_t i = 0; i < nw; i++) {
            net->w[l][i] = rng_uniform_range(rng, -bound, bound);
        }
        for (int i = 0; i < sizes[l + 1]; i++) {
            net->b[l][i] = rng_uniform_range(rng, -bound, bound);
        }
    }

    // workspace: z and h per hidden layer (h aliases z unless swish), two gradient buffers
    int widest = 0;
    for (int l = 0; l <= n_layers; l++) {
        widest = sizes[l] > widest ? sizes[l] : widest;
    }
    size_t wsz = 0;
    for (int l = 0; l < n_layers - 1; l++) {
        size_t one = round_up((size_t)max_batch * sizes[l + 1]);
        wsz += act == NN_ACT_SWISH ? 2 * one : one;
    }
    size_t dsz = round_up((size_t)max_batch * widest);
    wsz += 2 * dsz;
    net->work = xmalloc_aligned(wsz * sizeof(float));
    memset(net->work, 0, wsz * sizeof(float));
    float *p = net->work;
    for (int l = 0; l < n_layers - 1; l++) {
        size_t one = round_up((size_t)max_batch * sizes[l + 1]);
        net->z[l] = p;
        p += one;
        if (act == NN_ACT_SWISH) {
            net->h[l] = p;
            p += one;
        } else {
            net->h[l] = net->z[l];
        }
    }
    net->dh[0] = p;
    net->dh[1] = p + dsz;
    return 0;
}

void mlp_free(mlp_t *net)
{
    free(net->params);
    free(net->grads);
    free(net->work);
    nn_adam_free(&net->adam);
    memset(net, 0, sizeof(*net));
}

void mlp_forward(mlp_t *net, float *y, const float *x, int B)
{
    TWIG_ASSERT(B >= 1 && B <= net->max_batch);
    const int L = net->n_layers;
    const int *s = net->sizes;
    net->x = x;
    net->last_batch = B;
    const float *a = x;
    for (int l = 0; l < L; l++) {
        float *z = l == L - 1 ? y : net->z[l];
        // z = a * w, then bias (+ activation on hidden layers) in one pass
        net->gemm(z, a, net->w[l], B, s[l + 1], s[l], false, false, 1.0f, 0.0f, s[l], s[l + 1],
                  s[l + 1]);
        if (l == L - 1) {
            nn_bias_act_forward(z, z, net->b[l], NN_ACT_NONE, B, s[l + 1]);
        } else {
            nn_bias_act_forward(net->h[l], z, net->b[l], net->act, B, s[l + 1]);
            a = net->h[l];
        }
    }
}

typedef enum grad_mode { GRAD_NONE, GRAD_ADD, GRAD_SET } grad_mode;

static void backward(mlp_t *net, float *dx, const float *dy, grad_mode mode)
{
    const int L = net->n_layers;
    const int *s = net->sizes;
    const int B = net->last_batch;
    TWIG_ASSERT(B >= 1);
    const bool params = mode != GRAD_NONE;
    const float beta = mode == GRAD_SET ? 0.0f : 1.0f;
    if (mode == GRAD_SET) {
        for (int l = 0; l < L; l++) {
            memset(net->db[l], 0, sizeof(float) * (size_t)s[l + 1]);
        }
    }
    const float *dz = dy;
    if (params) {
        // column sums of dy into db
        float *db = net->db[L - 1];
        for (int i = 0; i < B; i++) {
            for (int j = 0; j < s[L]; j++) {
                db[j] += dy[(size_t)i * s[L] + j];
            }
        }
    }
    int buf = 0;
    for (int l = L - 1; l >= 0; l--) {
        const float *a = l == 0 ? net->x : net->h[l - 1];
        if (params) {
            // dw (+)= a^T dz
            net->gemm(net->dw[l], a, dz, s[l], s[l + 1], B, true, false, 1.0f, beta, s[l], s[l + 1],
                      s[l + 1]);
        }
        if (l == 0 && !dx) {
            break;
        }
        // da = dz w^T
        float *da = l == 0 ? dx : net->dh[buf];
        net->gemm(da, dz, net->w[l], B, s[l], s[l + 1], false, true, 1.0f, 0.0f, s[l + 1], s[l + 1],
                  s[l]);
        if (l > 0) {
            nn_act_bias_backward(da, params ? net->db[l - 1] : NULL, da, net->z[l - 1],
                                 net->h[l - 1], net->act, B, s[l]);
            dz = da;
            buf ^= 1;
        }
    }
}

void mlp_backward(mlp_t *net, float *dx, const float *dy, bool accumulate_params)
{
    backward(net, dx, dy, accumulate_params ? GRAD_ADD : GRAD_NONE);
}

void mlp_backward_set(mlp_t *net, float *dx, const float *dy)
{
    backward(net, dx, dy, GRAD_SET);
}

void mlp_backward_input_rows(mlp_t *net, float *dx, const float *dy, const int *rows, int n_rows,
                             int col0, int ncols)
{
    const int L = net->n_layers;
    const int *s = net->sizes;
    const int B = net->last_batch;
    TWIG_ASSERT(n_rows >= 0 && n_rows <= B && col0 >= 0 && ncols >= 1 && col0 + ncols <= s[0]);
    if (n_rows == 0) {
        return;
    }
    // gather the wanted rows of dy
    float *dz = net->dh[0];
    for (int r = 0; r < n_rows; r++) {
        TWIG_ASSERT(rows[r] >= 0 && rows[r] < B);
        memcpy(dz + (size_t)r * s[L], dy + (size_t)rows[r] * s[L], sizeof(float) * s[L]);
    }
    int buf = 1;
    for (int l = L - 1; l > 0; l--) {
        // da = dz w^T, then through the activation of the gathered rows
        float *da = net->dh[buf];
        net->gemm(da, dz, net->w[l], n_rows, s[l], s[l + 1], false, true, 1.0f, 0.0f, s[l + 1],
                  s[l + 1], s[l]);
        for (int r = 0; r < n_rows; r++) {
            size_t src = (size_t)rows[r] * s[l], dst = (size_t)r * s[l];
            nn_act_bias_backward(da + dst, NULL, da + dst, net->z[l - 1] + src, net->h[l - 1] + src,
                                 net->act, 1, s[l]);
        }
        dz = da;
        buf ^= 1;
    }
    // the first layer: only the wanted input columns, rows col0.. of w0 (in, out)
    net->gemm(dx, dz, net->w[0] + (size_t)col0 * s[1], n_rows, ncols, s[1], false, true, 1.0f, 0.0f,
              s[1], s[1], ncols);
}

void mlp_zero_grad(mlp_t *net)
{
    memset(net->grads, 0, net->n_params * sizeof(float));
}

void mlp_adam_step(mlp_t *net, const nn_adam_cfg *cfg)
{
    nn_adam_step(cfg, &net->adam, net->params, net->grads, net->n_params);
}

static bool same_shape(const mlp_t *a, const mlp_t *b)
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

void mlp_polyak(mlp_t *dst, const mlp_t *src, float tau)
{
    TWIG_ASSERT(same_shape(dst, src));
    float *restrict d = dst->params;
    const float *restrict s = src->params;
    const float keep = 1.0f - tau;
    for (size_t i = 0; i < dst->n_params; i++) {
        d[i] = d[i] * keep + tau * s[i];
    }
}

void mlp_copy_params(mlp_t *dst, const mlp_t *src)
{
    TWIG_ASSERT(same_shape(dst, src));
    memcpy(dst->params, src->params, dst->n_params * sizeof(float));
}

/* ---- checkpoint images ---- */

static const char MLP_MAGIC[8] = {'T', 'W', 'I', 'G', 'N', 'N', 0, 0};
#define MLP_MAX_FILE ((size_t)1 << 31)

typedef struct cursor {
    uint8_t *w;       /* writing */
    const uint8_t *r; /* reading */
    size_t pos, len;
} cursor;

static void put(cursor *c, const void *p, size_t n)
{
    memcpy(c->w + c->pos, p, n);
    c->pos += n;
}

static void put_u32(cursor *c, uint32_t v)
{
    put(c, &v, sizeof(v));
}

static bool get(cursor *c, void *p, size_t n)
{
    if (c->len - c->pos < n) {
        return false;
    }
    if (p) {
        memcpy(p, c->r + c->pos, n);
    }
    c->pos += n;
    return true;
}

size_t mlp_image_size(mlp_t *const *nets, int n_nets, size_t n_extra)
{
    size_t n = sizeof(MLP_MAGIC) + 3 * sizeof(uint32_t);
    for (int k = 0; k < n_nets; k++) {
        n += 2 * sizeof(uint32_t) + sizeof(uint32_t) * (size_t)(nets[k]->n_layers + 1);
        n += sizeof(int64_t) + sizeof(uint64_t) + 3 * nets[k]->n_params * sizeof(float);
    }
    return n + n_extra + sizeof(uint32_t);
}

void mlp_image_write(uint8_t *buf, mlp_t *const *nets, int n_nets, const void *extra,
                     size_t n_extra)
{
    cursor c = {.w = buf};
    put(&c, MLP_MAGIC, sizeof(MLP_MAGIC));
    put_u32(&c, MLP_FILE_VERSION);
    put_u32(&c, (uint32_t)n_nets);
    put_u32(&c, (uint32_t)n_extra);
    for (int k = 0; k < n_nets; k++) {
        const mlp_t *n = nets[k];
        put_u32(&c, (uint32_t)n->n_layers);
        put_u32(&c, (uint32_t)n->act);
        for (int l = 0; l <= n->n_layers; l++) {
            put_u32(&c, (uint32_t)n->sizes[l]);
        }
        put(&c, &n->adam.t, sizeof(int64_t));
        uint64_t np = n->n_params;
        put(&c, &np, sizeof(np));
        put(&c, n->params, np * sizeof(float));
        put(&c, n->adam.m, np * sizeof(float));
        put(&c, n->adam.v, np * sizeof(float));
    }
    if (n_extra > 0) {
        put(&c, extra, n_extra);
    }
    put_u32(&c, crc32c(buf, c.pos));
}

/* one pass checks everything (apply false), a second copies (apply true) */
static int image_walk(cursor *c, mlp_t *const *nets, int n_nets, void *extra, size_t n_extra,
                      bool apply)
{
    uint32_t u = 0;
    if (!get(c, NULL, sizeof(MLP_MAGIC) + sizeof(uint32_t)) || !get(c, &u, sizeof(u))) {
        return err_set(TWIG_ECORRUPT, "nn image: header truncated");
    }
    if (u != (uint32_t)n_nets) {
        return err_set(TWIG_EMISMATCH, "nn image: holds %u nets, expected %d", u, n_nets);
    }
    if (!get(c, &u, sizeof(u))) {
        return err_set(TWIG_ECORRUPT, "nn image: header truncated");
    }
    if (u != (uint32_t)n_extra) {
        return err_set(TWIG_EMISMATCH, "nn image: holds %u extra bytes, expected %zu", u, n_extra);
    }
    for (int k = 0; k < n_nets; k++) {
        mlp_t *n = nets[k];
        uint32_t nl = 0, act = 0;
        if (!get(c, &nl, sizeof(nl)) || !get(c, &act, sizeof(act))) {
            return err_set(TWIG_ECORRUPT, "nn image: net %d header truncated", k);
        }
        if (nl != (uint32_t)n->n_layers || act != (uint32_t)n->act) {
            return err_set(TWIG_EMISMATCH,
                           "nn image: net %d has %u layers act %u, expected %d "
                           "layers act %d",
                           k, nl, act, n->n_layers, (int)n->act);
        }
        for (int l = 0; l <= n->n_layers; l++) {
            if (!get(c, &u, sizeof(u))) {
                return err_set(TWIG_ECORRUPT, "nn image: net %d sizes truncated", k);
            }
            if (u != (uint32_t)n->sizes[l]) {
                return err_set(TWIG_EMISMATCH, "nn image: net %d sizes[%d] is %u, expected %d", k,
                               l, u, n->sizes[l]);
            }
        }
        int64_t t = 0;
        uint64_t np = 0;
        if (!get(c, &t, sizeof(t)) || !get(c, &np, sizeof(np))) {
            return err_set(TWIG_ECORRUPT, "nn image: net %d header truncated", k);
        }
        if (np != n->n_params || t < 0) {
            return err_set(TWIG_EMISMATCH,
                           "nn image: net %d has %llu params (step %lld), "
                           "expected %zu",
                           k, (unsigned long long)np, (long long)t, n->n_params);
        }
        size_t bytes = np * sizeof(float);
        if (!get(c, apply ? n->params : NULL, bytes) || !get(c, apply ? n->adam.m : NULL, bytes) ||
            !get(c, apply ? n->adam.v : NULL, bytes)) {
            return err_set(TWIG_ECORRUPT, "nn image: net %d data truncated", k);
        }
        if (apply) {
            n->adam.t = t;
        }
    }
    if (n_extra > 0 && !get(c, apply ? extra : NULL, n_extra)) {
        return err_set(TWIG_ECORRUPT, "nn image: extra bytes truncated");
    }
    if (c->len - c->pos != sizeof(uint32_t)) {
        return err_set(TWIG_ECORRUPT, "nn image: %zu bytes after the data, expected 4",
                       c->len - c->pos);
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
    uint32_t version;
    memcpy(&version, buf + sizeof(MLP_MAGIC), sizeof(version));
    if (version != MLP_FILE_VERSION) {
        return err_set(TWIG_EVERSION, "nn image: version %u, this build reads version %u", version,
                       MLP_FILE_VERSION);
    }
    uint32_t stored;
    memcpy(&stored, buf + len - sizeof(stored), sizeof(stored));
    uint32_t actual = crc32c(buf, len - sizeof(stored));
    if (stored != actual) {
        return err_set(TWIG_ECORRUPT,
                       "nn image: checksum mismatch (stored %08x, computed %08x):"
                       " truncated or corrupted",
                       stored, actual);
    }
    cursor c = {.r = buf, .len = len};
    int rc = image_walk(&c, nets, n_nets, extra, n_extra, false);
    if (rc < 0) {
        return rc;
    }
    c.pos = 0;
    return image_walk(&c, nets, n_nets, extra, n_extra, true);
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
