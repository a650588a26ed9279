/* policy_file.h - the exported policy file (.twigp): a trained SAC actor with everything
 * needed to act without twig, documented byte for byte in docs/policy-format.md (with
 * standalone loaders in docs/loaders/).
 *
 * Layout (version 1, every field little-endian; offsets after the env id depend on its
 * length and on the dims):
 *     magic "TWIGPOL\0" (8), u32 format_version, u32 env_id_len + env_id bytes,
 *     u64 policy_version, u64 updates, u32 n_obs, u32 n_act,
 *     f32 act_low[n_act], f32 act_high[n_act],
 *     u32 n_layers, u32 sizes[n_layers + 1], u32 activation (1 = ReLU), u32 head (1 = tanh
 *     Gaussian: the output is [mu (n_act), log_std (n_act)], the deterministic action
 *     low + (tanh(mu) + 1) (high - low) / 2),
 *     per layer l: f32 w_l (sizes[l], sizes[l+1]) row-major, f32 b_l (sizes[l+1]),
 *     u32 crc32c of every byte before it.
 *
 *     policy_file_meta m = {.policy_version = v, .updates = n};
 *     snprintf(m.env_id, sizeof m.env_id, "%s", "Hopper-v4");
 *     policy_file_write("hopper.twigp", &p, &m);              // p: a policy_t
 *     policy_t q = {0};
 *     if (policy_file_read(&q, &m, "hopper.twigp", 1) < 0) { ... err_msg() names the field }
 */
#ifndef TWIG_POLICY_FILE_H
#define TWIG_POLICY_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "common/nn/policy.h"

#define POLICY_FILE_MAGIC "TWIGPOL"      /* + NUL: 8 bytes */
#define POLICY_FILE_VERSION 1u
#define POLICY_FILE_ENV_MAX 255          /* bytes of the env id */
#define POLICY_FILE_DIM_MAX 65536        /* n_obs, n_act and every layer width */
#define POLICY_FILE_MAX ((size_t)1 << 30) /* a file over 1 GiB is refused unread */
#define POLICY_FILE_HEAD_TANH_GAUSSIAN 1u

/* what the file says besides the network */
typedef struct policy_file_meta {
    char env_id[POLICY_FILE_ENV_MAX + 1];
    uint64_t policy_version; /* the learner's published policy version */
    uint64_t updates;        /* SAC updates behind these weights (the checkpoint id) */
} policy_file_meta;

/* bytes of p's file with meta's env id */
size_t policy_file_size(const policy_t *p, const policy_file_meta *meta);
/* p and meta into buf (policy_file_size bytes) */
void policy_file_encode(uint8_t *buf, const policy_t *p, const policy_file_meta *meta);
/* a policy_t (initialised here for batches up to max_batch; p is overwritten, free it with
 * policy_free) and meta from a file image. Every field is checked: 0, or TWIG_ECORRUPT /
 * TWIG_EVERSION / -EINVAL with err_msg naming the field (and p left zeroed) */
int policy_file_decode(policy_t *p, policy_file_meta *meta, const uint8_t *buf, size_t len,
                       int max_batch);

/* the same through a file: written atomically (common/base/atomic_file.h) */
int policy_file_write(const char *path, const policy_t *p, const policy_file_meta *meta);
int policy_file_read(policy_t *p, policy_file_meta *meta, const char *path, int max_batch);

#endif
