/* policy_file.c - see policy_file.h; the format is docs/policy-format.md */
#include "common/nn/policy_file.h"

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

#define PF_HEAD_BYTES 12 /* magic + format_version */

size_t policy_file_size(const policy_t *p, const policy_file_meta *meta)
{
    const mlp_params *a = &p->actor;
    size_t n = PF_HEAD_BYTES + 4 + strlen(meta->env_id) + 8 + 8 + 4 + 4;
    n += 2 * (size_t)p->n_act * 4;
    n += 4 + 4 * (size_t)(a->n_layers + 1) + 4 + 4;
    for (int l = 0; l < a->n_layers; l++) {   /* the tensors, without the block's padding */
        n += 4 * ((size_t)a->sizes[l] * a->sizes[l + 1] + a->sizes[l + 1]);
    }
    return n + 4;
}

void policy_file_encode(uint8_t *buf, const policy_t *p, const policy_file_meta *meta)
{
    const mlp_params *a = &p->actor;
    byte_writer w = {.buf = buf};
    bw_bytes(&w, POLICY_FILE_MAGIC, 8);
    bw_u32(&w, POLICY_FILE_VERSION);
    bw_str(&w, meta->env_id);
    bw_u64(&w, meta->policy_version);
    bw_u64(&w, meta->updates);
    bw_u32(&w, (uint32_t)p->n_obs);
    bw_u32(&w, (uint32_t)p->n_act);
    bw_f32s(&w, p->act_low, (size_t)p->n_act);
    bw_f32s(&w, p->act_high, (size_t)p->n_act);
    bw_u32(&w, (uint32_t)a->n_layers);
    for (int l = 0; l <= a->n_layers; l++) {
        bw_u32(&w, (uint32_t)a->sizes[l]);
    }
    bw_u32(&w, (uint32_t)a->act);
    bw_u32(&w, POLICY_FILE_HEAD_TANH_GAUSSIAN);
    /* w0, b0, w1, b1, ...: the order of the params block */
    for (int l = 0; l < a->n_layers; l++) {
        bw_f32s(&w, a->w[l], (size_t)a->sizes[l] * (size_t)a->sizes[l + 1]);
        bw_f32s(&w, a->b[l], (size_t)a->sizes[l + 1]);
    }
    bw_u32(&w, crc32c(buf, w.pos));
    TWIG_ASSERT(w.pos == policy_file_size(p, meta));
}

/* a read that ran out of bytes: name the field */
static int pf_truncated(const byte_reader *r, size_t len, const char *field)
{
    (void)r; /* bad already: how far it got is len */
    return err_set(TWIG_ECORRUPT, "policy file: truncated at %s (the file has %zu bytes)", field,
                   len);
}

static int pf_check_floats(const float *x, size_t n, const char *field, int layer)
{
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i])) {
            return layer >= 0 ? err_set(TWIG_ECORRUPT, "policy file: %s%d[%zu] is not finite",
                                        field, layer, i)
                              : err_set(TWIG_ECORRUPT, "policy file: %s[%zu] is not finite",
                                        field, i);
        }
    }
    return 0;
}

/* the fields up to the tensors, checked; the reader is left at w0 */
typedef struct pf_header {
    uint32_t n_obs, n_act, n_layers, act, head;
    uint32_t sizes[MLP_MAX_LAYERS + 1];
    const uint8_t *low, *high;   /* (n_act) f32 each, in buf */
} pf_header;

static int pf_read_header(pf_header *h, policy_file_meta *meta, byte_reader *r, size_t len)
{
    memset(meta, 0, sizeof *meta);
    uint32_t env_len = br_u32(r);
    if (r->bad) {
        return pf_truncated(r, len, "env_id_len");
    }
    if (env_len == 0 || env_len > POLICY_FILE_ENV_MAX) {
        return err_set(TWIG_ECORRUPT, "policy file: env_id_len %u is outside [1, %d]", env_len,
                       POLICY_FILE_ENV_MAX);
    }
    if (!br_bytes(r, meta->env_id, env_len)) {
        return pf_truncated(r, len, "env_id");
    }
    for (uint32_t i = 0; i < env_len; i++) {
        unsigned char c = (unsigned char)meta->env_id[i];
        if (c < 0x20 || c > 0x7e) {
            return err_set(TWIG_ECORRUPT, "policy file: env_id byte %u is not printable ASCII",
                           i);
        }
    }
    meta->policy_version = br_u64(r);
    if (r->bad) {
        return pf_truncated(r, len, "policy_version");
    }
    meta->updates = br_u64(r);
    if (r->bad) {
        return pf_truncated(r, len, "updates");
    }
    h->n_obs = br_u32(r);
    if (r->bad) {
        return pf_truncated(r, len, "n_obs");
    }
    if (h->n_obs == 0 || h->n_obs > POLICY_FILE_DIM_MAX) {
        return err_set(TWIG_ECORRUPT, "policy file: n_obs %u is outside [1, %d]", h->n_obs,
                       POLICY_FILE_DIM_MAX);
    }
    h->n_act = br_u32(r);
    if (r->bad) {
        return pf_truncated(r, len, "n_act");
    }
    if (h->n_act == 0 || h->n_act > POLICY_FILE_DIM_MAX) {
        return err_set(TWIG_ECORRUPT, "policy file: n_act %u is outside [1, %d]", h->n_act,
                       POLICY_FILE_DIM_MAX);
    }
    if ((h->low = br_view(r, 4 * (size_t)h->n_act)) == NULL) {
        return pf_truncated(r, len, "act_low");
    }
    if ((h->high = br_view(r, 4 * (size_t)h->n_act)) == NULL) {
        return pf_truncated(r, len, "act_high");
    }
    for (uint32_t j = 0; j < h->n_act; j++) {
        float lo, hi;
        uint32_t bl = le32_get(h->low + 4 * j), bh = le32_get(h->high + 4 * j);
        memcpy(&lo, &bl, 4);
        memcpy(&hi, &bh, 4);
        if (!isfinite(lo) || !isfinite(hi) || !(lo < hi)) {
            return err_set(TWIG_ECORRUPT,
                           "policy file: act_low[%u] %g / act_high[%u] %g: bounds must be "
                           "finite with low < high",
                           j, (double)lo, j, (double)hi);
        }
    }
    h->n_layers = br_u32(r);
    if (r->bad) {
        return pf_truncated(r, len, "n_layers");
    }
    if (h->n_layers == 0 || h->n_layers > MLP_MAX_LAYERS) {
        return err_set(TWIG_ECORRUPT, "policy file: n_layers %u is outside [1, %d]", h->n_layers,
                       MLP_MAX_LAYERS);
    }
    for (uint32_t l = 0; l <= h->n_layers; l++) {
        h->sizes[l] = br_u32(r);
        if (r->bad) {
            return pf_truncated(r, len, "sizes");
        }
        if (h->sizes[l] == 0 || h->sizes[l] > POLICY_FILE_DIM_MAX) {
            return err_set(TWIG_ECORRUPT, "policy file: sizes[%u] %u is outside [1, %d]", l,
                           h->sizes[l], POLICY_FILE_DIM_MAX);
        }
    }
    if (h->sizes[0] != h->n_obs) {
        return err_set(TWIG_ECORRUPT, "policy file: sizes[0] %u is not n_obs %u", h->sizes[0],
                       h->n_obs);
    }
    if (h->sizes[h->n_layers] != 2 * h->n_act) {
        return err_set(TWIG_ECORRUPT, "policy file: sizes[%u] %u is not 2 n_act = %u",
                       h->n_layers, h->sizes[h->n_layers], 2 * h->n_act);
    }
    h->act = br_u32(r);
    if (r->bad) {
        return pf_truncated(r, len, "activation");
    }
    if (h->act != NN_ACT_RELU && h->act != NN_ACT_SWISH && h->act != NN_ACT_NONE) {
        return err_set(TWIG_ECORRUPT, "policy file: activation %u is not 0, 1 or 2", h->act);
    }
    h->head = br_u32(r);
    if (r->bad) {
        return pf_truncated(r, len, "head");
    }
    if (h->head != POLICY_FILE_HEAD_TANH_GAUSSIAN) {
        return err_set(TWIG_ECORRUPT, "policy file: head %u is not 1 (tanh Gaussian)", h->head);
    }
    return 0;
}

int policy_file_decode(policy_t *p, policy_file_meta *meta, const uint8_t *buf, size_t len,
                       int max_batch)
{
    memset(p, 0, sizeof *p);
    if (len < PF_HEAD_BYTES) {
        return err_set(TWIG_ECORRUPT,
                       "policy file: truncated at magic/format_version (the file has %zu bytes)",
                       len);
    }
    if (memcmp(buf, POLICY_FILE_MAGIC, 8) != 0) {
        return err_set(TWIG_ECORRUPT, "policy file: magic is not \"TWIGPOL\\0\" (not a twig "
                                      "policy file)");
    }
    uint32_t version = le32_get(buf + 8);
    if (version != POLICY_FILE_VERSION) {
        return err_set(TWIG_EVERSION, "policy file: format_version %u, this build reads %u",
                       version, POLICY_FILE_VERSION);
    }
    byte_reader r = {.buf = buf, .len = len, .pos = PF_HEAD_BYTES};
    pf_header h = {0};
    int rc = pf_read_header(&h, meta, &r, len);
    if (rc < 0) {
        return rc;
    }
    /* twig's own policy_t is O -> H -> H -> 2A with ReLU; the format allows more */
    if (h.n_layers != 3 || h.sizes[1] != h.sizes[2] || h.act != NN_ACT_RELU) {
        return err_set(-EINVAL,
                       "policy file: n_layers %u / sizes / activation %u: twig acts with "
                       "O -> H -> H -> 2A ReLU nets only (the loaders in docs/loaders take any)",
                       h.n_layers, h.act);
    }
    size_t n_params = 0;
    for (uint32_t l = 0; l < h.n_layers; l++) {
        n_params += (size_t)h.sizes[l] * h.sizes[l + 1] + h.sizes[l + 1];
    }
    if (br_left(&r) < n_params * 4 + 4) {
        return err_set(TWIG_ECORRUPT,
                       "policy file: truncated in the tensors (w0 .. b%u need %zu bytes and the "
                       "crc32c 4, %zu are left)",
                       h.n_layers - 1, n_params * 4, br_left(&r));
    }
    if (br_left(&r) > n_params * 4 + 4) {
        return err_set(TWIG_ECORRUPT, "policy file: %zu trailing bytes after crc32c",
                       br_left(&r) - n_params * 4 - 4);
    }
    uint32_t stored = le32_get(buf + len - 4), actual = crc32c(buf, len - 4);
    if (stored != actual) {
        return err_set(TWIG_ECORRUPT,
                       "policy file: crc32c mismatch (stored %08x, computed %08x): corrupted",
                       stored, actual);
    }
    float *bounds = xmalloc(2 * (size_t)h.n_act * sizeof(float));
    byte_reader br = {.buf = h.low, .len = 8 * (size_t)h.n_act};
    br_f32s(&br, bounds, 2 * (size_t)h.n_act); /* act_high follows act_low */
    policy_shape sh = {(int)h.n_obs, (int)h.n_act, (int)h.sizes[1], bounds, bounds + h.n_act};
    rc = policy_init(p, &sh, max_batch);
    free(bounds);
    if (rc < 0) {
        policy_free(p);
        return rc;
    }
    mlp_params *a = &p->actor;
    for (int l = 0; l < a->n_layers && rc == 0; l++) {
        size_t nw = (size_t)a->sizes[l] * a->sizes[l + 1], nb = (size_t)a->sizes[l + 1];
        br_f32s(&r, a->w[l], nw);
        br_f32s(&r, a->b[l], nb);
        rc = pf_check_floats(a->w[l], nw, "w", l);
        rc = rc ? rc : pf_check_floats(a->b[l], nb, "b", l);
    }
    if (rc < 0) {
        policy_free(p);
        return rc;
    }
    TWIG_ASSERT(!r.bad && br_left(&r) == 4);
    p->version = meta->policy_version;
    return 0;
}

int policy_file_write(const char *path, const policy_t *p, const policy_file_meta *meta)
{
    size_t n = policy_file_size(p, meta);
    uint8_t *buf = xmalloc(n);
    policy_file_encode(buf, p, meta);
    int rc = atomic_file_write(path, buf, n);
    free(buf);
    return rc;
}

int policy_file_read(policy_t *p, policy_file_meta *meta, const char *path, int max_batch)
{
    memset(p, 0, sizeof *p);
    uint8_t *buf = NULL;
    size_t n = 0;
    int rc = atomic_file_read(&buf, &n, path, POLICY_FILE_MAX);
    if (rc < 0) {
        return rc;
    }
    rc = policy_file_decode(p, meta, buf, n, max_batch);
    free(buf);
    if (rc < 0) {
        char detail[512];
        snprintf(detail, sizeof detail, "%s", err_msg());
        return err_set(rc, "%s: %s", path, detail);
    }
    return 0;
}
