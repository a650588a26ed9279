/* ensemble_blob.c - see ensemble_blob.h */
#include "common/rpc/ensemble_blob.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/err.h"
#include "common/base/mem.h"
#include "common/rpc/weight_blob.h"

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
    b->data = xmalloc(nbytes ? nbytes : 1);
    weight_blob_writer wr;
    weight_blob_begin(&wr, &b->msg, b->tensors, b->tensor_ptrs, ENSEMBLE_MAX_TENSORS, b->data,
                      nbytes);
    for (int i = 0; i < e->n_tensors; i++) {
        const ensemble_tensor *et = &e->tensors[i];
        float v[ENSEMBLE_MAX_MEMBERS > 3 ? ENSEMBLE_MAX_MEMBERS : 3];
        const float *x = et->data;
        if (!x && strcmp(et->name, "elites") == 0) {
            for (size_t j = 0; j < et->count; j++) {
                v[j] = (float)e->elites[j];
            }
            x = v;
        } else if (!x) { /* dims */
            v[0] = (float)e->cfg.n_obs;
            v[1] = (float)e->cfg.n_act;
            v[2] = e->cfg.learn_reward ? 1.0f : 0.0f;
            x = v;
        }
        weight_blob_add(&wr, et->name, et->ndim, et->shape, x);
    }
    weight_blob_end(&wr);

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

/* the floats of tensor name, checked against the expected shape and the data's extent
 * (weight_blob_find); any mismatch is a malformed blob here, -EINVAL, as its dims tensors
 * are what the ensemble is made from */
static int blob_tensor(const uint8_t **out, const Twig__V1__WeightBlob *msg, const char *name,
                       int ndim, const uint32_t *shape)
{
    if (weight_blob_find(out, msg, "model blob", name, ndim, shape) < 0) {
        char detail[256];
        snprintf(detail, sizeof detail, "%s", err_msg());
        return err_set(-EINVAL, "%s", detail);
    }
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
    int rc = weight_blob_check_crc(msg, "model blob");
    if (rc < 0) {
        return rc;
    }
    if (msg->n_tensors > ENSEMBLE_MAX_TENSORS) {
        return err_set(-EINVAL, "model blob has %zu tensors, at most %d", msg->n_tensors,
                       ENSEMBLE_MAX_TENSORS);
    }

    /* dimensions: dims = (n_obs, n_act, learn_reward); l0.w = (E, n_in, H); elites (n_elites) */
    int n_w, n_el;
    const Twig__V1__Tensor *tw = weight_blob_lookup(msg, "l0.w", &n_w);
    const Twig__V1__Tensor *tel = weight_blob_lookup(msg, "elites", &n_el);
    if (!tw || !tel || tw->n_shape != 3 || tel->n_shape != 1) {
        return err_set(-EINVAL, "model blob lacks dims, l0.w or elites with their shapes");
    }
    const uint8_t *dims;
    uint32_t s3 = 3;
    rc = blob_tensor(&dims, msg, "dims", 1, &s3);
    if (rc < 0) {
        return rc;
    }
    float dv[3];
    weight_blob_get_f32s(dv, dims, 3);
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
            weight_blob_get_f32s(et->data, src, et->count);
        } else if (strcmp(et->name, "elites") == 0) {
            for (size_t j = 0; j < et->count; j++) {
                float v;
                weight_blob_get_f32s(&v, src + j * sizeof(float), 1);
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
