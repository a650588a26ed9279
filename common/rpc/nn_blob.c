/* nn_blob.c - MLP parameters <-> WeightBlob */
#include "common/rpc/nn_blob.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/err.h"
#include "common/base/mem.h"
#include "common/rpc/weight_blob.h"

int nn_blob_build(nn_blob *b, mlp_params *const *nets, const char *const *prefixes, int n_nets,
                  Twig__V1__WeightKind kind, uint64_t version, const char *env_id)
{
    memset(b, 0, sizeof(*b));
    twig__v1__weight_blob__init(&b->msg);
    int n_t = 0;
    size_t bytes = 0;
    for (int k = 0; k < n_nets; k++) {
        n_t += 2 * nets[k]->n_layers;
        for (int l = 0; l < nets[k]->n_layers; l++) {
            bytes += sizeof(float) * (size_t)nets[k]->sizes[l + 1] * (nets[k]->sizes[l] + 1);
        }
    }
    if (n_nets < 1 || n_t > NN_BLOB_MAX_TENSORS) {
        return err_set(-EINVAL, "nn blob: %d nets with %d tensors (max %d)", n_nets, n_t,
                       NN_BLOB_MAX_TENSORS);
    }
    if (env_id && strlen(env_id) >= sizeof(b->env_id)) {
        return err_set(-EINVAL, "nn blob: env id longer than %zu", sizeof(b->env_id) - 1);
    }
    int t = 0;
    for (int k = 0; k < n_nets; k++) {
        for (int i = 0; i < 2 * nets[k]->n_layers; i++, t++) {
            if (snprintf(b->names[t], NN_BLOB_NAME_MAX, "%s.%s", prefixes[k],
                         nets[k]->tensors[i].name) >= NN_BLOB_NAME_MAX) {
                return err_set(-EINVAL, "nn blob: prefix \"%s\" too long", prefixes[k]);
            }
        }
    }
    b->data = xmalloc(bytes ? bytes : 1);
    weight_blob_writer wr;
    weight_blob_begin(&wr, &b->msg, b->tensors, b->tensor_ptrs, NN_BLOB_MAX_TENSORS, b->data,
                      bytes);
    t = 0;
    for (int k = 0; k < n_nets; k++) {
        const mlp_params *n = nets[k];
        for (int i = 0; i < 2 * n->n_layers; i++, t++) {
            const mlp_tensor *src = &n->tensors[i];
            bool bias = i % 2 == 1; /* (cols); a weight (rows, cols) */
            b->shapes[t][0] = bias ? (uint32_t)src->cols : (uint32_t)src->rows;
            b->shapes[t][1] = (uint32_t)src->cols;
            weight_blob_add(&wr, b->names[t], bias ? 1 : 2, b->shapes[t], n->params + src->offset);
        }
    }
    weight_blob_end(&wr);
    b->msg.kind = kind;
    b->msg.version = version;
    if (env_id) {
        strcpy(b->env_id, env_id);
        b->msg.env_id = b->env_id;
    }
    return 0;
}

void nn_blob_free(nn_blob *b)
{
    free(b->data);
    b->data = NULL;
}

/* one pass validates, the second copies */
static int blob_walk(mlp_params *const *nets, const char *const *prefixes, int n_nets,
                     const Twig__V1__WeightBlob *msg, bool apply)
{
    for (int k = 0; k < n_nets; k++) {
        mlp_params *n = nets[k];
        for (int i = 0; i < 2 * n->n_layers; i++) {
            const mlp_tensor *want = &n->tensors[i];
            char name[NN_BLOB_NAME_MAX];
            snprintf(name, sizeof(name), "%s.%s", prefixes[k], want->name);
            bool bias = i % 2 == 1;
            uint32_t shape[2] = {bias ? (uint32_t)want->cols : (uint32_t)want->rows,
                                 (uint32_t)want->cols};
            const uint8_t *src;
            int rc = weight_blob_find(&src, msg, "weight blob", name, bias ? 1 : 2, shape);
            if (rc < 0) {
                return rc;
            }
            size_t cnt = (size_t)want->rows * want->cols;
            if (apply) {
                weight_blob_get_f32s(n->params + want->offset, src, cnt);
                continue;
            }
            for (size_t j = 0; j < cnt; j++) {
                float v;
                weight_blob_get_f32s(&v, src + j * sizeof(float), 1);
                if (!isfinite(v)) {
                    return err_set(-EINVAL, "weight blob: tensor %s element %zu is not finite",
                                   name, j);
                }
            }
        }
    }
    return 0;
}

int nn_blob_load(mlp_params *const *nets, const char *const *prefixes, int n_nets,
                 const Twig__V1__WeightBlob *msg)
{
    int rc = weight_blob_check_crc(msg, "weight blob");
    if (rc < 0) {
        return rc;
    }
    rc = blob_walk(nets, prefixes, n_nets, msg, false);
    if (rc < 0) {
        return rc;
    }
    return blob_walk(nets, prefixes, n_nets, msg, true);
}
