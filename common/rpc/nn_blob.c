/* nn_blob.c - MLP parameters <-> WeightBlob */
#include "common/rpc/nn_blob.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/crc32c.h"
#include "common/base/err.h"
#include "common/base/mem.h"

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
    b->data = xmalloc(bytes ? bytes : 1);
    size_t off = 0;
    int t = 0;
    for (int k = 0; k < n_nets; k++) {
        const mlp_params *n = nets[k];
        for (int i = 0; i < 2 * n->n_layers; i++, t++) {
            const mlp_tensor *src = &n->tensors[i];
            Twig__V1__Tensor *dst = &b->tensors[t];
            twig__v1__tensor__init(dst);
            if (snprintf(b->names[t], NN_BLOB_NAME_MAX, "%s.%s", prefixes[k], src->name) >=
                NN_BLOB_NAME_MAX) {
                nn_blob_free(b);
                return err_set(-EINVAL, "nn blob: prefix \"%s\" too long", prefixes[k]);
            }
            dst->name = b->names[t];
            bool bias = i % 2 == 1;
            b->shapes[t][0] = bias ? (uint32_t)src->cols : (uint32_t)src->rows;
            b->shapes[t][1] = (uint32_t)src->cols;
            dst->shape = b->shapes[t];
            dst->n_shape = bias ? 1 : 2;
            dst->offset = off;
            size_t nb = sizeof(float) * (size_t)src->rows * src->cols;
            memcpy(b->data + off, n->params + src->offset, nb);
            off += nb;
            b->tensor_ptrs[t] = dst;
        }
    }
    b->msg.kind = kind;
    b->msg.version = version;
    b->msg.n_tensors = (size_t)n_t;
    b->msg.tensors = b->tensor_ptrs;
    b->msg.data.data = b->data;
    b->msg.data.len = off;
    b->msg.crc32c = crc32c(b->data, off);
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

static const Twig__V1__Tensor *find_tensor(const Twig__V1__WeightBlob *msg, const char *name)
{
    for (size_t i = 0; i < msg->n_tensors; i++) {
        if (msg->tensors[i] && msg->tensors[i]->name && strcmp(msg->tensors[i]->name, name) == 0) {
            return msg->tensors[i];
        }
    }
    return NULL;
}

/* one pass validates (dst NULL), the second copies */
static int blob_walk(mlp_params *const *nets, const char *const *prefixes, int n_nets,
                     const Twig__V1__WeightBlob *msg, bool apply)
{
    for (int k = 0; k < n_nets; k++) {
        mlp_params *n = nets[k];
        for (int i = 0; i < 2 * n->n_layers; i++) {
            const mlp_tensor *want = &n->tensors[i];
            char name[NN_BLOB_NAME_MAX];
            snprintf(name, sizeof(name), "%s.%s", prefixes[k], want->name);
            const Twig__V1__Tensor *t = find_tensor(msg, name);
            if (!t) {
                return err_set(TWIG_EMISMATCH, "weight blob: tensor %s missing", name);
            }
            bool bias = i % 2 == 1;
            bool shape_ok = bias ? t->n_shape == 1 && t->shape[0] == (uint32_t)want->cols
                                 : t->n_shape == 2 && t->shape[0] == (uint32_t)want->rows &&
                                       t->shape[1] == (uint32_t)want->cols;
            if (!shape_ok) {
                return err_set(TWIG_EMISMATCH,
                               "weight blob: tensor %s has the wrong shape "
                               "(expected %d x %d)",
                               name, bias ? 1 : want->rows, want->cols);
            }
            size_t cnt = (size_t)want->rows * want->cols;
            size_t nb = cnt * sizeof(float);
            if (t->offset % sizeof(float) != 0 || t->offset > msg->data.len ||
                msg->data.len - t->offset < nb) {
                return err_set(TWIG_ECORRUPT,
                               "weight blob: tensor %s at offset %llu overruns "
                               "data of %zu bytes",
                               name, (unsigned long long)t->offset, msg->data.len);
            }
            const uint8_t *src = msg->data.data + t->offset;
            if (apply) {
                memcpy(n->params + want->offset, src, nb);
                continue;
            }
            for (size_t j = 0; j < cnt; j++) {
                float v;
                memcpy(&v, src + j * sizeof(float), sizeof(v));
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
    uint32_t crc = crc32c(msg->data.data, msg->data.len);
    if (crc != msg->crc32c) {
        return err_set(TWIG_ECORRUPT, "weight blob: data checksum %08x, blob says %08x", crc,
                       msg->crc32c);
    }
    int rc = blob_walk(nets, prefixes, n_nets, msg, false);
    if (rc < 0) {
        return rc;
    }
    return blob_walk(nets, prefixes, n_nets, msg, true);
}
