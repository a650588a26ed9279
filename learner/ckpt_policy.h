/* ckpt_policy.h - the trained policy out of learner checkpoints, for `twig export` and
 * `twig eval` (deploy/launcher/): the actor of sac.bin, the env id, counters of state.bin,
 * and the action bounds of the env it names.
 *
 *     policy_t p = {0};
 *     policy_file_meta m;
 *     char used[CKPT_PATH_MAX];
 *     rc = ckpt_policy_load(&p, &m, used, sizeof used, "runs/x", UINT64_MAX, 1);
 */
#ifndef TWIG_LEARNER_CKPT_POLICY_H
#define TWIG_LEARNER_CKPT_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "common/nn/policy.h"
#include "common/nn/policy_file.h"

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
int ckpt_policy_load_one(policy_t *p, policy_file_meta *meta, const char *ckpt, int max_batch);

/* from path: a run directory (its learner/ checkpoints), a learner checkpoint directory
 * (holding ckpt-<id> directories) or one ckpt-<id> directory. Takes the newest checkpoint
 * that loads and whose policy_version is <= max_version (UINT64_MAX: any); a damaged one is
 * reported on stderr and the previous one tried. The directory used goes into used (n).
 * TWIG_ENOTFOUND when no checkpoint qualifies */
int ckpt_policy_load(policy_t *p, policy_file_meta *meta, char *used, size_t n,
                     const char *path, uint64_t max_version, int max_batch);

#endif
