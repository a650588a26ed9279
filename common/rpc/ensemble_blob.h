/* ensemble_blob.h - a dynamics ensemble (common/nn/ensemble.h) to and from the wire's
 * WeightBlob of kind MODEL (proto/twig.proto), as the model server publishes it and the
 * rollout workers load it.
 *
 *     ensemble_blob_t *b = xmalloc(sizeof *b);
 *     ensemble_blob_init(b, &e, version, "HalfCheetah-v4");   ... pack b->msg ...
 *     ensemble_blob_free(b);
 *     rc = ensemble_from_blob(&e2, unpacked);                 // checked, then allocated
 */
#ifndef TWIG_ENSEMBLE_BLOB_H
#define TWIG_ENSEMBLE_BLOB_H

#include <stdint.h>

#include "common/nn/ensemble.h"
#include "proto/twig.pb-c.h"

/* a WeightBlob (kind MODEL) describing e; owns the storage its message points into */
typedef struct ensemble_blob {
    Twig__V1__WeightBlob msg;
    Twig__V1__Tensor tensors[ENSEMBLE_MAX_TENSORS];
    Twig__V1__Tensor *tensor_ptrs[ENSEMBLE_MAX_TENSORS];
    Twig__V1__WeightBlob__StatsEntry stats[ENSEMBLE_MAX_MEMBERS + 1];
    Twig__V1__WeightBlob__StatsEntry *stat_ptrs[ENSEMBLE_MAX_MEMBERS + 1];
    char stat_keys[ENSEMBLE_MAX_MEMBERS + 1][24];
    char env_id[64];
    uint8_t *data; /* owned */
} ensemble_blob_t;

/* tensors named as the table (see ensemble_tensor), stats "holdout_mse.<e>" and
 * "holdout_mse_elites". env_id copied (truncated to 63 bytes). */
void ensemble_blob_init(ensemble_blob_t *b, const ensemble_t *e, uint64_t version,
                        const char *env_id);
void ensemble_blob_free(ensemble_blob_t *b);
/* e zeroed or freed: initialised from a received blob, after checking kind, crc32c, every
 * tensor's name, shape and extent (common/rpc/weight_blob.h), and the values. TWIG_ECORRUPT
 * for a checksum, -EINVAL for anything else, with err_msg naming the tensor */
int ensemble_from_blob(ensemble_t *e, const Twig__V1__WeightBlob *msg);

#endif
