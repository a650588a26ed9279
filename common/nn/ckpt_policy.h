/* ckpt_policy.h - the trained policy out of learner checkpoints, for `twig export` and
 * `twig eval` (deploy/launcher/policy_source.c): the actor of sac.bin with the env id and
 * counters of state.bin; the action bounds come from the caller, who knows the envs.
 *
 * A learner checkpoint is a directory ckpt-<updates> (common/base/ckpt.h) holding
 *   sac.bin    sac_image_write: the actor, the critics, their targets, Adam, temperature
 *   state.bin  "TWIGLRN\0", u32 version, str env, u32 n_obs, u32 n_act, u32 hidden,
 *              u64 updates, u64 policy_version, ... counters, evals, dedup tables, u32 crc32c
 * (learner/learner.c writes both; the names below are the one place they are spelled).
 *
 *     policy_t p = {0};
 *     policy_file_meta m;
 *     char used[CKPT_PATH_MAX];
 *     rc = ckpt_policy_load(&p, &m, used, sizeof used, "runs/x", UINT64_MAX, bounds, ctx, 1);
 */
#ifndef TWIG_NN_CKPT_POLICY_H
#define TWIG_NN_CKPT_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "common/nn/policy.h"
#include "common/nn/policy_file.h"

#define LEARNER_STATE_MAGIC "TWIGLRN" /* + NUL: 8 bytes */
#define LEARNER_STATE_VERSION 2u      /* 1: dedup images without fences (still read) */
#define LEARNER_SAC_FILE "sac.bin"
#define LEARNER_STATE_FILE "state.bin"

/* the action bounds of env_id into low, high (n_act each), checking its dims; 0 or a
 * negative code with err_set detail */
typedef int ckpt_bounds_fn(void *ctx, float *low, float *high, const char *env_id, int n_obs,
                           int n_act);

/* what state.bin says, checked (magic, version, crc32c) */
typedef struct ckpt_state_info {
    char env[POLICY_FILE_ENV_MAX + 1];
    uint32_t n_obs, n_act, hidden;
    uint64_t updates, policy_version;
} ckpt_state_info;

int ckpt_state_info_read(ckpt_state_info *out, const char *state_path);

/* the actor of one checkpoint directory (.../ckpt-<id>, holding sac.bin and state.bin) into p
 * (initialised here for batches up to max_batch) and meta. 0 or a negative code, err_msg
 * naming the file and what is wrong */
int ckpt_policy_load_one(policy_t *p, policy_file_meta *meta, const char *ckpt,
                         ckpt_bounds_fn *bounds, void *ctx, int max_batch);

/* from path: a run directory (its learner/ checkpoints), a learner checkpoint directory
 * (holding ckpt-<id> directories) or one ckpt-<id> directory. Takes the newest checkpoint
 * that loads and whose policy_version is <= max_version (UINT64_MAX: any); a damaged one is
 * reported on stderr and the previous one tried. The directory used goes into used (n).
 * TWIG_ENOTFOUND when no checkpoint qualifies */
int ckpt_policy_load(policy_t *p, policy_file_meta *meta, char *used, size_t n,
                     const char *path, uint64_t max_version, ckpt_bounds_fn *bounds, void *ctx,
                     int max_batch);

#endif
