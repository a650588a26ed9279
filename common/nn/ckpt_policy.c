/* ckpt_policy.c - see ckpt_policy.h */
#include "common/nn/ckpt_policy.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/base/bytes.h"
#include "common/base/crc32c.h"
#include "common/base/err.h"
#include "common/base/mem.h"
#include "common/nn/sac.h"
#include "common/base/ckpt.h"

int ckpt_state_info_read(ckpt_state_info *out, const char *state_path)
{
    memset(out, 0, sizeof *out);
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = ckpt_read_file(state_path, &data, &len);
    if (rc < 0) {
        return rc;
    }
    rc = 0;
    if (len < 16 || memcmp(data, LEARNER_STATE_MAGIC, 8) != 0) {
        rc = err_set(TWIG_ECORRUPT, "%s: not a learner state file", state_path);
    } else if (crc32c(data, len - 4) != le32_get(data + len - 4)) {
        rc = err_set(TWIG_ECORRUPT, "%s: checksum mismatch", state_path);
    } else {
        byte_reader b = {.buf = data, .len = len - 4, .pos = 8};
        uint32_t version = br_u32(&b);
        br_str(&b, out->env, POLICY_FILE_ENV_MAX);
        out->n_obs = br_u32(&b);
        out->n_act = br_u32(&b);
        out->hidden = br_u32(&b);
        out->updates = br_u64(&b);
        out->policy_version = br_u64(&b);
        if (version < 1 || version > LEARNER_STATE_VERSION) {
            rc = err_set(TWIG_EVERSION, "%s: state version %u, this build reads 1..%u",
                         state_path, version, LEARNER_STATE_VERSION);
        } else if (b.bad) {
            rc = err_set(TWIG_ECORRUPT, "%s: truncated header", state_path);
        }
    }
    free(data);
    return rc;
}

int ckpt_policy_load_one(policy_t *p, policy_file_meta *meta, const char *ckpt,
                         ckpt_bounds_fn *bounds, void *ctx, int max_batch)
{
    memset(p, 0, sizeof *p);
    char sp[CKPT_PATH_MAX], stp[CKPT_PATH_MAX];
    if (snprintf(sp, sizeof sp, "%s/%s", ckpt, LEARNER_SAC_FILE) >= (int)sizeof sp ||
        snprintf(stp, sizeof stp, "%s/%s", ckpt, LEARNER_STATE_FILE) >= (int)sizeof stp) {
        return err_set(-ENAMETOOLONG, "checkpoint path %s is too long", ckpt);
    }
    ckpt_state_info st;
    int rc = ckpt_state_info_read(&st, stp);
    if (rc < 0) {
        return rc;
    }
    if (st.n_obs == 0 || st.n_obs > POLICY_FILE_DIM_MAX || st.n_act == 0 ||
        st.n_act > POLICY_FILE_DIM_MAX || st.hidden == 0 || st.hidden > POLICY_FILE_DIM_MAX) {
        return err_set(TWIG_ECORRUPT, "%s: n_obs %u / n_act %u / hidden %u out of range", stp,
                       st.n_obs, st.n_act, st.hidden);
    }
    float *low = xmalloc(2 * (size_t)st.n_act * sizeof(float)), *high = low + st.n_act;
    if ((rc = bounds(ctx, low, high, st.env, (int)st.n_obs, (int)st.n_act)) < 0) {
        char detail[512];
        snprintf(detail, sizeof detail, "%s", err_msg());
        free(low);
        return err_set(rc, "%s: env %s (for its action bounds): %s", stp, st.env, detail);
    }
    sac_cfg cfg = sac_default_cfg((int)st.n_obs, (int)st.n_act);
    cfg.hidden = (int)st.hidden;
    cfg.batch = 1;
    sac_t s = {0};
    if ((rc = sac_init(&s, &cfg, 0)) == 0 && (rc = sac_load(&s, sp)) == 0 &&
        (uint64_t)s.n_updates != st.updates) {
        rc = err_set(TWIG_ECORRUPT, "%s has %" PRId64 " updates, state.bin %" PRIu64, sp,
                     s.n_updates, st.updates);
    }
    if (rc == 0) {
        policy_shape sh = {(int)st.n_obs, (int)st.n_act, (int)st.hidden, low, high};
        rc = policy_init(p, &sh, max_batch);
        if (rc == 0) {
            mlp_copy_params(&p->actor, &s.actor.p);
            p->version = st.policy_version;
        }
    }
    sac_free(&s);
    free(low);
    if (rc < 0) {
        policy_free(p);
        return rc;
    }
    memset(meta, 0, sizeof *meta);
    snprintf(meta->env_id, sizeof meta->env_id, "%s", st.env);
    meta->policy_version = st.policy_version;
    meta->updates = st.updates;
    return 0;
}

static bool is_file(const char *dir, const char *name)
{
    char p[CKPT_PATH_MAX];
    struct stat sb;
    return snprintf(p, sizeof p, "%s/%s", dir, name) < (int)sizeof p && stat(p, &sb) == 0;
}

int ckpt_policy_load(policy_t *p, policy_file_meta *meta, char *used, size_t n,
                     const char *path, uint64_t max_version, ckpt_bounds_fn *bounds, void *ctx,
                     int max_batch)
{
    memset(p, 0, sizeof *p);
    /* one checkpoint */
    if (is_file(path, LEARNER_SAC_FILE)) {
        int rc = ckpt_policy_load_one(p, meta, path, bounds, ctx, max_batch);
        if (rc == 0 && meta->policy_version > max_version) {
            policy_free(p);
            return err_set(TWIG_ENOTFOUND, "%s has policy_version %" PRIu64 ", above %" PRIu64,
                           path, meta->policy_version, max_version);
        }
        if (rc == 0) {
            snprintf(used, n, "%s", path);
        }
        return rc;
    }
    /* a run directory: its learner's checkpoints (run_plan.c: learner.checkpoint_dir) */
    char dir[CKPT_PATH_MAX];
    struct stat sb;
    if (snprintf(dir, sizeof dir, "%s/learner", path) < (int)sizeof dir && stat(dir, &sb) == 0 &&
        S_ISDIR(sb.st_mode)) {
        /* dir as it is */
    } else {
        snprintf(dir, sizeof dir, "%s", path);
    }
    uint64_t *ids = NULL;
    size_t n_ids = 0;
    int rc = ckpt_list(dir, &ids, &n_ids);
    if (rc < 0) {
        return rc;
    }
    size_t skipped_version = 0, bad = 0;
    for (size_t i = n_ids; i-- > 0;) {
        char one[CKPT_PATH_MAX], stp[CKPT_PATH_MAX];
        if (ckpt_path(one, sizeof one, dir, ids[i], NULL) < 0 ||
            ckpt_path(stp, sizeof stp, dir, ids[i], LEARNER_STATE_FILE) < 0) {
            continue;
        }
        ckpt_state_info st;
        rc = ckpt_state_info_read(&st, stp);
        if (rc == 0 && st.policy_version > max_version) {
            skipped_version++;
            continue;
        }
        if (rc == 0) {
            rc = ckpt_policy_load_one(p, meta, one, bounds, ctx, max_batch);
        }
        if (rc == 0) {
            snprintf(used, n, "%s", one);
            free(ids);
            return 0;
        }
        bad++;
        fprintf(stderr, "twig: skipping damaged checkpoint %s: %s\n", one, err_msg());
    }
    free(ids);
    if (n_ids == 0) {
        return err_set(TWIG_ENOTFOUND, "no checkpoint (ckpt-<id> with sac.bin) under %s", path);
    }
    return err_set(TWIG_ENOTFOUND,
                   "no usable checkpoint under %s: %zu found, %zu above policy_version %" PRIu64
                   ", %zu damaged",
                   dir, n_ids, skipped_version, max_version, bad);
}
