/* ensemble_blob.c - see ensemble_blob.h */
#include "common/rpc/ensemble_blob.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/crc32c.h"
#include "common/base/err.h"
#include "common/base/mem.h"

static size_t blob_data_bytes(const ensemble_t *e)
{
    size_t n = 0;
    for (int i = 0; i < e->n_tensors; i++) {
        n += e->tensors[i].count * sizeof(float);
    }
    return n;
}

void ensemble_blob_init(ensemble_blob_t *b, const ensemble_t *e, uint64_t version,
                        const char *env_id)
{
    memset(b, 0, sizeof *b);
    twig__v1__weight_blob__init(&b->msg);
    b->msg.kind = TWIG__V1__WEIGHT_KIND__WEIGHT_KIND_MODEL;
    b->msg.version = version;
    snprintf(b->env_id, sizeof b->env_id, "%s", env_id ? env_id : "");
    b->msg.env_id = b->env_id;

    size_t nbytes = blob_data_bytes(e);
    b->data = xmalloc(nbytes);
    size_t off = 0;
    for (int i = 0; i < e->n_tensors; i++) {
        const ensemble_tensor *et = &e->tensors[i];
        Twig__V1__Tensor *t = &b->tensors[i];
        twig__v1__tensor__init(t);
        t->name = (char *)et->name;
        t->n_shape = (size_t)et->ndim;
        t->shape = (uint32_t *)et->shape;
        t->offset = off;
        float *dst = (float *)(b->data + off);
        if (et->data) {
            memcpy(dst, et->data, et->count * sizeof(float));
        } else if (strcmp(et->name, "elites") == 0) {
            for (size_t j = 0; j < et->count; j++) {
                dst[j] = (float)e->elites[j];
            }
        } else { /* dims */
            dst[0] = (float)e->cfg.n_obs;
            dst[1] = (float)e->cfg.n_act;
            dst[2] = e->cfg.learn_reward ? 1.0f : 0.0f;
        }
        off += et->count * sizeof(float);
        b->tensor_ptrs[i] = t;
    }
    b->msg.n_tensors = (size_t)e->n_tensors;
    b->msg.tensors = b->tensor_ptrs;
    b->msg.data.data = b->data;
    b->msg.data.len = nbytes;
    b->msg.crc32c = crc32c(b->data, nbytes);

    int ns = 0;
    double elite_mse = 0.0;
    for (int i = 0; i < e->cfg.n_elites; i++) {
        elite_mse += e->holdout_mse[e->elites[i]];
    }
    for (int m = 0; m <= e->cfg.n_members; m++) {
        Twig__V1__WeightBlob__StatsEntry *s = &b->stats[ns];
        twig__v1__weight_blob__stats_entry__init(s);
        if (m < e->cfg.n_members) {
            snprintf(b->stat_keys[ns], sizeof b->stat_keys[ns], "holdout_mse.%d", m);
            s->value = e->holdout_mse[m];
        } else {
            snprintf(b->stat_keys[ns], sizeof b->stat_keys[ns], "holdout_mse_elites");
            s->value = (float)(elite_mse / e->cfg.n_elites);
        }
        s->key = b->stat_keys[ns];
        b->stat_ptrs[ns] = s;
        ns++;
    }
    b->msg.n_stats = (size_t)ns;
    b->msg.stats = b->stat_ptrs;
}

void ensemble_blob_free(ensemble_blob_t *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

/* the tensor named name, or NULL; -EINVAL when it appears twice */
static const Twig__V1__Tensor *blob_find(const Twig__V1__WeightBlob *msg, const char *name,
                                         int *dup)
{
    const Twig__V1__Tensor *found = NULL;
    for (size_t i = 0; i < msg->n_tensors; i++) {
        const Twig__V1__Tensor *t = msg->tensors[i];
        if (t && t->name && strcmp(t->name, name) == 0) {
            if (found) {
                *dup = 1;
            }
            found = t;
        }
    }
    return found;
}

/* the floats of tensor name, checked against the expected shape and the data's extent */
static int blob_tensor(const uint8_t **out, const Twig__V1__WeightBlob *msg, const char *name,
                       int ndim, const uint32_t *shape)
{
    int dup = 0;
    const Twig__V1__Tensor *t = blob_find(msg, name, &dup);
    if (!t) {
        return err_set(-EINVAL, "model blob has no tensor \"%s\"", name);
    }
    if (dup) {
        return err_set(-EINVAL, "model blob has tensor \"%s\" twice", name);
    }
    if ((int)t->n_shape != ndim) {
        return err_set(-EINVAL, "model blob tensor \"%s\" has %zu dims, expected %d", name,
                       t->n_shape, ndim);
    }
    uint64_t count = 1;
    for (int i = 0; i < ndim; i++) {
        if (t->shape[i] != shape[i]) {
            return err_set(-EINVAL, "model blob tensor \"%s\" dim %d is %u, expected %u", name, i,
                           t->shape[i], shape[i]);
        }
        count *= shape[i];
    }
    uint64_t bytes = count * sizeof(float);
    if (t->offset > msg->data.len || bytes > msg->data.len - t->offset) {
        return err_set(-EINVAL,
                       "model blob tensor \"%s\" (offset %llu, %llu bytes) runs past "
                       "the data (%zu bytes)",
                       name, (unsigned long long)t->offset, (unsigned long long)bytes,
                       msg->data.len);
    }
    *out = msg->data.data + t->offset;
    return 0;
}

/* a float holding a small non-negative integer, or -1 */
static int float_to_count(float v, int max)
{
    if (!isfinite(v) || v < 0.0f || v > (float)max || v != floorf(v)) {
        return -1;
    }
    return (int)v;
}

int ensemble_from_blob(ensemble_t *e, const Twig__V1__WeightBlob *msg)
{
    memset(e, 0, sizeof *e);
    if (msg->kind != TWIG__V1__WEIGHT_KIND__WEIGHT_KIND_MODEL) {
        return err_set(-EINVAL, "weight blob kind is %d, expected MODEL", (int)msg->kind);
    }
    if (msg->data.len > 0 && !msg->data.data) {
        return err_set(-EINVAL, "model blob has no data");
    }
    uint32_t crc = crc32c(msg->data.data, msg->data.len);
    if (crc != msg->crc32c) {
        return err_set(TWIG_ECORRUPT, "model blob crc32c %08x does not match its data (%08x)",
                       msg->crc32c, crc);
    }
    if (msg->n_tensors > ENSEMBLE_MAX_TENSORS) {
        return err_set(-EINVAL, "model blob has %zu tensors, at most %d", msg->n_tensors,
                       ENSEMBLE_MAX_TENSORS);
    }

    /* dimensions: dims = (n_obs, n_act, learn_reward); l0.w = (E, n_in, H); elites (n_elites) */
    int dup = 0;
    const Twig__V1__Tensor *td = blob_find(msg, "dims", &dup);
    const Twig__V1__Tensor *tw = blob_find(msg, "l0.w", &dup);
    const Twig__V1__Tensor *tel = blob_find(msg, "elites", &dup);
    if (!td || !tw || !tel || tw->n_shape != 3 || tel->n_shape != 1) {
        return err_set(-EINVAL, "model blob lacks dims, l0.w or elites with their shapes");
    }
    const uint8_t *dims;
    uint32_t s3 = 3;
    int rc = blob_tensor(&dims, msg, "dims", 1, &s3);
    if (rc < 0) {
        return rc;
    }
    float dv[3];
    memcpy(dv, dims, sizeof dv);
    int n_layers = 0;
    for (size_t i = 0; i < msg->n_tensors; i++) {
        const char *nm = msg->tensors[i] ? msg->tensors[i]->name : NULL;
        size_t len = nm ? strlen(nm) : 0;
        if (len > 3 && nm[0] == 'l' && strcmp(nm + len - 2, ".w") == 0) {
            n_layers++;
        }
    }
    ensemble_cfg cfg = {
        .n_obs = float_to_count(dv[0], ENSEMBLE_MAX_DIM),
        .n_act = float_to_count(dv[1], ENSEMBLE_MAX_DIM),
        .n_members = (int)(tw->shape[0] > ENSEMBLE_MAX_MEMBERS ? 0 : tw->shape[0]),
        .n_elites = (int)(tel->shape[0] > ENSEMBLE_MAX_MEMBERS ? 0 : tel->shape[0]),
        .n_hidden = (int)(tw->shape[2] > ENSEMBLE_MAX_DIM ? 0 : tw->shape[2]),
        .n_layers = n_layers - 1,
        .learn_reward = dv[2] == 1.0f,
    };
    if (!(dv[2] == 0.0f || dv[2] == 1.0f)) {
        return err_set(-EINVAL, "model blob dims[2] (learn_reward) is %g", dv[2]);
    }
    rc = ensemble_cfg_check(&cfg);
    if (rc < 0) {
        return rc;
    }
    /* params, stats, elites and dims are all in data: refuse before allocating for them */
    size_t need = ensemble_tensor_floats(&cfg) * sizeof(float);
    if (msg->data.len < need) {
        return err_set(-EINVAL, "model blob data is %zu bytes, its dimensions need %zu",
                       msg->data.len, need);
    }
    ensemble_alloc(e, &cfg);
    if (msg->n_tensors != (size_t)e->n_tensors) {
        int n = e->n_tensors;
        ensemble_free(e);
        return err_set(-EINVAL, "model blob has %zu tensors, its dimensions need %d",
                       msg->n_tensors, n);
    }
    for (int i = 0; i < e->n_tensors; i++) {
        const ensemble_tensor *et = &e->tensors[i];
        const uint8_t *src;
        rc = blob_tensor(&src, msg, et->name, et->ndim, et->shape);
        if (rc < 0) {
            ensemble_free(e);
            return rc;
        }
        if (et->data) {
            memcpy(et->data, src, et->count * sizeof(float));
        } else if (strcmp(et->name, "elites") == 0) {
            for (size_t j = 0; j < et->count; j++) {
                float v;
                memcpy(&v, src + j * sizeof(float), sizeof v);
                e->elites[j] = float_to_count(v, ENSEMBLE_MAX_MEMBERS);
            }
        }
    }
    rc = ensemble_check_values(e, "model blob");
    if (rc < 0) {
        ensemble_free(e);
    }
    return rc;
}
