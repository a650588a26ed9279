/* weight_blob.h - the one codec of a WeightBlob's named tensors (proto/twig.proto): every
 * tensor is little-endian float32, packed back to back in data at its offset, with its
 * shape; the blob carries the CRC32C of data. nn_blob.c (networks) and ensemble_blob.c (the
 * dynamics ensemble) build and read their tensors only through it.
 *
 * Writing sizes everything up front: the caller gives the storage for cap tensors and a
 * data buffer of weight_blob_bytes() for all of them, adds each tensor, then ends:
 *
 *     weight_blob_writer wr;
 *     weight_blob_begin(&wr, &msg, tensors, ptrs, cap, data, size);
 *     weight_blob_add(&wr, "actor.w0", 2, shape, w0);     // name and shape borrowed
 *     weight_blob_end(&wr);                                // data.len, crc32c; all filled
 *
 * Reading checks each tensor against the shape the reader expects before handing out its
 * bytes, and names the tensor and what was wrong:
 *
 *     const uint8_t *w0;
 *     rc = weight_blob_find(&w0, msg, "policy blob", "actor.w0", 2, shape);  // + _get_f32s
 */
#ifndef TWIG_WEIGHT_BLOB_H
#define TWIG_WEIGHT_BLOB_H

#include <stddef.h>
#include <stdint.h>

#include "common/base/bytes.h"
#include "proto/twig.pb-c.h"

/* the elements of a tensor of ndim dims shape (1 for ndim 0) */
size_t weight_blob_count(int ndim, const uint32_t *shape);

/* the bytes of data a tensor of that shape takes */
static inline size_t weight_blob_bytes(int ndim, const uint32_t *shape)
{
    return weight_blob_count(ndim, shape) * sizeof(float);
}

typedef struct weight_blob_writer {
    Twig__V1__WeightBlob *msg; /* borrowed: its tensors and data are set here */
    Twig__V1__Tensor *tensors; /* borrowed storage for cap tensors */
    Twig__V1__Tensor **ptrs;   /* borrowed storage for cap pointers */
    size_t cap;
    size_t size;   /* bytes of data, all of which the tensors must fill */
    byte_writer w; /* over data (borrowed) */
} weight_blob_writer;

/* start filling msg's tensors and data (msg initialised by the caller; kind, version, env_id
 * and stats are the caller's) */
void weight_blob_begin(weight_blob_writer *wr, Twig__V1__WeightBlob *msg, Twig__V1__Tensor *tensors,
                       Twig__V1__Tensor **ptrs, size_t cap, uint8_t *data, size_t size);

/* add tensor name of ndim dims shape and its weight_blob_count floats x (copied); name and
 * shape are borrowed by the message. Adding past cap or size is a bug (asserts). */
void weight_blob_add(weight_blob_writer *wr, const char *name, int ndim, const uint32_t *shape,
                     const float *x);

/* set data and its crc32c into the message; the tensors must have filled size (asserts) */
void weight_blob_end(weight_blob_writer *wr);

/* 0 when the blob's crc32c matches its data, else TWIG_ECORRUPT naming both ("weight blob"
 * or what as the subject) */
int weight_blob_check_crc(const Twig__V1__WeightBlob *msg, const char *what);

/* the tensor called name whatever its shape (to read a shape the reader does not know yet),
 * with *n_found how many are called so; NULL when there is none */
const Twig__V1__Tensor *weight_blob_lookup(const Twig__V1__WeightBlob *msg, const char *name,
                                           int *n_found);

/* the tensor called name, checked to be there once with exactly ndim dims equal to shape,
 * at a 4-byte offset with all its floats inside data: 0 with *data pointing at its first
 * byte in msg->data (little-endian float32, read with weight_blob_get_f32s), or
 *   TWIG_EMISMATCH  missing, or another number of dims or another size along one,
 *   TWIG_ECORRUPT   named twice, a misaligned offset, or its bytes running past data,
 * with err_msg naming the tensor and what was wrong ("what" as the subject) */
int weight_blob_find(const uint8_t **data, const Twig__V1__WeightBlob *msg, const char *what,
                     const char *name, int ndim, const uint32_t *shape);

/* n floats from the bytes weight_blob_find gave (possibly unaligned) into x */
void weight_blob_get_f32s(float *x, const uint8_t *data, size_t n);

#endif
