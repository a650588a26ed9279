/* nn_blob.h - network parameters to and from the wire's WeightBlob (proto/twig.proto).
 *
 * A blob carries parameters only (no optimizer state): tensors named "<prefix>.w0",
 * "<prefix>.b0", ... with their shapes, packed back to back as little-endian float32 in data,
 * with the CRC32C of data. Sending:
 *
 *     nn_blob b;
 *     nn_blob_build(&b, nets, prefixes, 1, TWIG__V1__WEIGHT_KIND__WEIGHT_KIND_POLICY, ver, id);
 *     size_t n = twig__v1__weight_blob__get_packed_size(&b.msg);  ... pack b.msg ...
 *     nn_blob_free(&b);
 *
 * Receiving: nn_blob_load() checks checksum, names, shapes, offsets and finiteness before it
 * writes anything into the nets. The tensors are built and found with common/rpc/weight_blob.h.
 */
#ifndef TWIG_NN_BLOB_H
#define TWIG_NN_BLOB_H

#include "common/nn/nn.h"
#include "proto/twig.pb-c.h"

#define NN_BLOB_MAX_TENSORS (8 * 2 * MLP_MAX_LAYERS)
#define NN_BLOB_NAME_MAX 48

typedef struct nn_blob {
    Twig__V1__WeightBlob msg; /* points into the fields below */
    Twig__V1__Tensor tensors[NN_BLOB_MAX_TENSORS];
    Twig__V1__Tensor *tensor_ptrs[NN_BLOB_MAX_TENSORS];
    char names[NN_BLOB_MAX_TENSORS][NN_BLOB_NAME_MAX];
    uint32_t shapes[NN_BLOB_MAX_TENSORS][2];
    char env_id[64];
    uint8_t *data; /* owned */
} nn_blob;

/* fills b (caller's storage, may be on the heap: it is large) from the nets' parameters
 * (copied). prefixes[k] names net k ("actor", "q1"). returns 0 or -EINVAL */
int nn_blob_build(nn_blob *b, mlp_params *const *nets, const char *const *prefixes, int n_nets,
                  Twig__V1__WeightKind kind, uint64_t version, const char *env_id);
void nn_blob_free(nn_blob *b);

/* copies the blob's tensors into nets of the same shapes; on any error nothing is written and
 * the code is TWIG_ECORRUPT (checksum, offsets, a name twice), TWIG_EMISMATCH (missing
 * tensor or shape)
 * or -EINVAL (non-finite value), with err_msg naming the tensor */
int nn_blob_load(mlp_params *const *nets, const char *const *prefixes, int n_nets,
                 const Twig__V1__WeightBlob *msg);

#endif
