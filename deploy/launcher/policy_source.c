/* policy_source.c - see policy_source.h */
#include "deploy/launcher/policy_source.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "common/base/err.h"
#include "learner/ckpt_policy.h"

int policy_source_load(policy_t *p, policy_file_meta *meta, char *used, size_t n,
                       const char *path, uint64_t max_version, int max_batch)
{
    memset(p, 0, sizeof *p);
    struct stat sb;
    if (stat(path, &sb) != 0) {
        return err_set(-errno, "%s: %s", path, strerror(errno));
    }
    if (S_ISDIR(sb.st_mode)) {
        return ckpt_policy_load(p, meta, used, n, path, max_version, max_batch);
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
