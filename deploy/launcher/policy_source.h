/* policy_source.h - the POLICY argument of `twig export`, `twig eval` and `twig env --policy`:
 * an exported policy file (.twigp, docs/policy-format.md), a run directory, a learner
 * checkpoint directory or one ckpt-<id> directory (common/nn/ckpt_policy.h) */
#ifndef TWIG_DEPLOY_POLICY_SOURCE_H
#define TWIG_DEPLOY_POLICY_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "common/nn/policy.h"
#include "common/nn/policy_file.h"

/* p initialised here (batches up to max_batch) with meta; used (n) says what was read.
 * max_version (UINT64_MAX: newest) picks among checkpoints; a file must be at or below it.
 * 0 or a negative code with err_msg naming the problem */
int policy_source_load(policy_t *p, policy_file_meta *meta, char *used, size_t n,
                       const char *path, uint64_t max_version, int max_batch);

#endif
