/* ckpt_files.h - what a learner checkpoint directory ckpt-<updates> holds (learner/learner.c
 * writes it, learner/ckpt_policy.c reads the policy out of it for `twig export` / `twig eval`):
 *   sac.bin    sac_image_write: the actor, the critics, their targets, Adam, temperature
 *   state.bin  "TWIGLRN\0", u32 version, str env, u32 n_obs, u32 n_act, u32 hidden,
 *              u64 updates, u64 policy_version, ... counters, evals, dedup tables, u32 crc32c
 */
#ifndef TWIG_LEARNER_CKPT_FILES_H
#define TWIG_LEARNER_CKPT_FILES_H

#define LEARNER_STATE_MAGIC "TWIGLRN" /* + NUL: 8 bytes */
#define LEARNER_STATE_VERSION 2u      /* 1: dedup images without fences (still read) */
#define LEARNER_SAC_FILE "sac.bin"
#define LEARNER_STATE_FILE "state.bin"

#endif
