/* policy_source.c - see policy_source.h */
#include "deploy/launcher/policy_source.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "common/base/err.h"
#include "common/env/env.h"
#include "common/nn/ckpt_policy.h"

/* ckpt_bounds_fn: the bounds of a built-in or plugin env, made once to read them */
static int policy_source_bounds(void *ctx, float *low, float *high, const char *env_id,
                                int n_obs, int n_act)
{
    (void)ctx;
    env_t *e = NULL;
    int rc = env_make(&e, env_id);
    if (rc < 0) {
        return rc;
    }
    if (e->spec.n_obs != n_obs || e->spec.n_act != n_act) {
        rc = err_set(TWIG_EMISMATCH, "the checkpoint has %d obs / %d act, the env %d / %d", n_obs,
                     n_act, e->spec.n_obs, e->spec.n_act);
    } else {
        memcpy(low, e->spec.act_low, (size_t)n_act * sizeof(float));
        memcpy(high, e->spec.act_high, (size_t)n_act * sizeof(float));
    }
    env_free(e);
    return rc;
}

int policy_source_load(policy_t *p, policy_file_meta *meta, char *used, size_t n,
                       const char *path, uint64_t max_version, int max_batch)
{
    memset(p, 0, sizeof *p);
    struct stat sb;
    if (stat(path, &sb) != 0) {
        return err_set(-errno, "%s: %s", path, strerror(errno));
    }
    if (S_ISDIR(sb.st_mode)) {
        return ckpt_policy_load(p, meta, used, n, path, max_version, policy_source_bounds, NULL,
                                max_batch);
    }
    int rc = policy_file_read(p, meta, path, max_batch);
    if (rc < 0) {
        return rc;
    }
    if (meta->policy_version > max_version) {
        policy_free(p);
        return err_set(TWIG_ENOTFOUND,
                       "%s holds policy_version %" PRIu64 ", above --version %" PRIu64, path,
                       meta->policy_version, max_version);
    }
    snprintf(used, n, "%s", path);
    return 0;
}
