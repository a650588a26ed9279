/* policy_blob.c - see policy_blob.h */
#include "common/rpc/policy_blob.h"

#include "common/base/err.h"

int policy_load_blob(policy_t *p, const Twig__V1__WeightBlob *blob)
{
    if (blob->kind != TWIG__V1__WEIGHT_KIND__WEIGHT_KIND_POLICY) {
        return err_set(TWIG_EMISMATCH, "policy blob: kind is %d, expected POLICY", blob->kind);
    }
    if (!policy_version_newer(blob->version, p->version)) {
        return err_set(TWIG_EMISMATCH, "policy blob: version %llu is not newer than %llu",
                       (unsigned long long)blob->version, (unsigned long long)p->version);
    }
    mlp_params *nets[1] = {&p->actor};
    const char *prefixes[1] = {POLICY_BLOB_PREFIX};
    int rc = nn_blob_load(nets, prefixes, 1, blob);
    if (rc < 0) {
        return rc;
    }
    p->version = blob->version;
    return 0;
}

int policy_blob_build(nn_blob *b, sac_t *s, uint64_t version, const char *env_id)
{
    mlp_params *nets[1] = {&s->actor.p};
    const char *prefixes[1] = {POLICY_BLOB_PREFIX};
    return nn_blob_build(b, nets, prefixes, 1, TWIG__V1__WEIGHT_KIND__WEIGHT_KIND_POLICY, version,
                         env_id);
}
