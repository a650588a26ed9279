/* policy_blob.h - the SAC actor to and from the wire's WeightBlob of kind POLICY
 * (proto/twig.proto): the learner builds one per published version, the actors and rollout
 * workers load it into their inference-only policy (common/nn/policy.h). The actor's tensors
 * are named POLICY_BLOB_PREFIX ".<layer>.w|b" (common/rpc/nn_blob.h).
 */
#ifndef TWIG_POLICY_BLOB_H
#define TWIG_POLICY_BLOB_H

#include <stdint.h>

#include "common/nn/policy.h"
#include "common/nn/sac.h"
#include "common/rpc/nn_blob.h"
#include "proto/twig.pb-c.h"

#define POLICY_BLOB_PREFIX "actor"

/* take the actor's parameters from a policy blob; checks the kind, the version (must be newer
 * than the loaded one), shapes, checksum and finiteness before changing anything.
 * returns 0, or TWIG_EMISMATCH / TWIG_ECORRUPT / -EINVAL with err_msg naming the problem */
int policy_load_blob(policy_t *p, const Twig__V1__WeightBlob *blob);

/* a policy blob of the learner's actor (parameters copied into b; free with nn_blob_free) */
int policy_blob_build(nn_blob *b, sac_t *s, uint64_t version, const char *env_id);

#endif
