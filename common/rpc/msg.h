/* msg.h - protobuf-c messages <-> twig structs, and validation of every field.
 *
 * Parsing is not validation: a byte string that unpacks may still carry wrong dims, short
 * arrays or NaNs. Every message from a peer goes through a msg_*_check before use; a
 * failure returns -EINVAL with err_msg() naming the field ("reward[3] is NaN").
 *
 *     Twig__V1__TransitionBatch *m = ...unpacked...;
 *     if (msg_batch_check(m, MSG_BATCH_MAX_COUNT) < 0) {
 *         reply INVALID_ARGUMENT with err_msg();
 *     }
 *     tbatch_t b;
 *     msg_batch_view(&b, m);          // points into m, copies nothing
 */
#ifndef TWIG_MSG_H
#define TWIG_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "proto/twig.pb-c.h"

/* limits on one TransitionBatch (a record of the log is one batch) */
#define MSG_BATCH_MAX_COUNT 65536u
#define MSG_MAX_DIM 4096u
#define MSG_MAX_ID_LEN 255u
/* count * (2 * obs_dim + act_dim + 1) floats must stay below this */
#define MSG_BATCH_MAX_FLOATS (16u << 20)

/* A borrowed view of a batch of transitions, row-major. Nothing here is owned. */
typedef struct tbatch {
    const char *env_id;      /* non-empty */
    const char *source_id;   /* non-empty, at most MSG_MAX_ID_LEN bytes */
    uint64_t seq;            /* per-source sequence number */
    uint64_t source_epoch;   /* the receiver's epoch when the source identity began */
    uint64_t policy_version;
    uint32_t obs_dim;
    uint32_t act_dim;
    uint32_t count;
    const float *obs;        /* (count, obs_dim) */
    const float *act;        /* (count, act_dim) */
    const float *reward;     /* (count) */
    const float *next_obs;   /* (count, obs_dim) */
    const int *terminated;   /* (count), nonzero = true (protobuf_c_boolean) */
    const int *truncated;    /* (count) */
} tbatch_t;

/* check every field of a received batch: ids, dims, count <= max_count, array lengths,
 * finite numbers. 0 or -EINVAL with err_msg() naming the field. */
int msg_batch_check(const Twig__V1__TransitionBatch *m, uint32_t max_count);

/* the checks of a synthetic push (Learner/PushSynthetic): as msg_batch_check, but
 * model_version must be set (>= 1) and member_id too (>= 1) */
int msg_synth_check(const Twig__V1__TransitionBatch *m, uint32_t max_count);

/* a source id a log line and a key=value parser can carry as it is: 1..MSG_MAX_ID_LEN
 * bytes of letters, digits and MSG_ID_PUNCT. 0 or -EINVAL naming field and the first byte
 * that is not allowed. The one id rule: msg_batch_check applies it to a batch's env_id and
 * source_id (so every id that reaches a log line or a table has passed it), actors and
 * rollout workers to their own ids at start. */
#define MSG_ID_PUNCT "-_.:@/+"
int msg_check_source_id(const char *field, const char *id);

/* the same checks on a view (for batches that did not come as a message) */
int msg_tbatch_check(const tbatch_t *b, uint32_t max_count);

/* view of a checked message; points into m */
void msg_batch_view(tbatch_t *out, const Twig__V1__TransitionBatch *m);

/* fill a message (initialised here) that points into b's arrays; b must outlive out */
void msg_batch_from_view(Twig__V1__TransitionBatch *out, const tbatch_t *b);

#endif
