/* weight_blob.c - see weight_blob.h */
#include "common/rpc/weight_blob.h"

#include <string.h>

#include "common/base/crc32c.h"
#include "common/base/err.h"
#include "common/base/mem.h"

size_t weight_blob_count(int ndim, const uint32_t *shape)
{
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        n *= shape[i];
    }
    return n;
}

void weight_blob_begin(weight_blob_writer *wr, Twig__V1__WeightBlob *msg, Twig__V1__Tensor *tensors,
                       Twig__V1__Tensor **ptrs, size_t cap, uint8_t *data, size_t size)
{
    *wr = (weight_blob_writer){
        .msg = msg,
        .tensors = tensors,
        .ptrs = ptrs,
        .cap = cap,
        .size = size,
        .w = {.buf = data},
    };
    msg->n_tensors = 0;
    msg->tensors = ptrs;
}

void weight_blob_add(weight_blob_writer *wr, const char *name, int ndim, const uint32_t *shape,
                     const float *x)
{
    size_t i = wr->msg->n_tensors, n = weight_blob_count(ndim, shape);
    TWIG_ASSERT(i < wr->cap && n * sizeof(float) <= wr->size - wr->w.pos);
    Twig__V1__Tensor *t = &wr->tensors[i];
    twig__v1__tensor__init(t);
    t->name = (char *)name;
    t->n_shape = (size_t)ndim;
    t->shape = (uint32_t *)shape;
    t->offset = wr->w.pos;
    bw_f32s(&wr->w, x, n);
    wr->ptrs[i] = t;
    wr->msg->n_tensors = i + 1;
}

void weight_blob_end(weight_blob_writer *wr)
{
    TWIG_ASSERT(wr->w.pos == wr->size);
    wr->msg->data.data = wr->w.buf;
    wr->msg->data.len = wr->size;
    wr->msg->crc32c = crc32c(wr->w.buf, wr->size);
}

int weight_blob_check_crc(const Twig__V1__WeightBlob *msg, const char *what)
{
    if (msg->data.len > 0 && !msg->data.data) {
        return err_set(TWIG_ECORRUPT, "%s has no data", what);
    }
    uint32_t crc = crc32c(msg->data.data, msg->data.len);
    if (crc != msg->crc32c) {
        return err_set(TWIG_ECORRUPT, "%s: data checksum %08x, the blob says %08x", what, crc,
                       msg->crc32c);
    }
    return 0;
}

const Twig__V1__Tensor *weight_blob_lookup(const Twig__V1__WeightBlob *msg, const char *name,
                                           int *n_found)
{
    const Twig__V1__Tensor *t = NULL;
    *n_found = 0;
    for (size_t i = 0; i < msg->n_tensors; i++) {
        const Twig__V1__Tensor *c = msg->tensors[i];
        if (c && c->name && strcmp(c->name, name) == 0) {
            t = t ? t : c;
            ++*n_found;
        }
    }
    return t;
}

int weight_blob_find(const uint8_t **data, const Twig__V1__WeightBlob *msg, const char *what,
                     const char *name, int ndim, const uint32_t *shape)
{
    *data = NULL;
    int n_found;
    const Twig__V1__Tensor *t = weight_blob_lookup(msg, name, &n_found);
    if (n_found > 1) {
        return err_set(TWIG_ECORRUPT, "%s: tensor %s appears %d times", what, name, n_found);
    }
    if (!t) {
        return err_set(TWIG_EMISMATCH, "%s: tensor %s missing", what, name);
    }
    if (t->n_shape != (size_t)ndim) {
        return err_set(TWIG_EMISMATCH, "%s: tensor %s has %zu dims, expected %d", what, name,
                       t->n_shape, ndim);
    }
    for (int i = 0; i < ndim; i++) {
        if (t->shape[i] != shape[i]) {
            return err_set(TWIG_EMISMATCH,
                           "%s: tensor %s has the wrong shape (dim %d is %u, "
                           "expected %u)",
                           what, name, i, t->shape[i], shape[i]);
        }
    }
    uint64_t bytes = (uint64_t)weight_blob_bytes(ndim, shape);
    if (t->offset % sizeof(float) != 0) {
        return err_set(TWIG_ECORRUPT, "%s: tensor %s at offset %llu, not a multiple of 4", what,
                       name, (unsigned long long)t->offset);
    }
    if (t->offset > msg->data.len || bytes > msg->data.len - t->offset) {
        return err_set(
            TWIG_ECORRUPT, "%s: tensor %s (offset %llu, %llu bytes) overruns data of %zu bytes",
            what, name, (unsigned long long)t->offset, (unsigned long long)bytes, msg->data.len);
    }
    *data = msg->data.data + t->offset;
    return 0;
}

void weight_blob_get_f32s(float *x, const uint8_t *data, size_t n)
{
    byte_reader r = {.buf = data, .len = n * sizeof(float)};
    br_f32s(&r, x, n);
}
