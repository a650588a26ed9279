/* msg.c - conversions between protobuf-c messages and twig structs, with validation */
#include "common/rpc/msg.h"

#include <ctype.h>
#include <math.h>
#include <string.h>

#include "common/base/dedup.h"
#include "common/base/err.h"

/* the dedup tables (base) hold any id a message may carry */
_Static_assert(MSG_MAX_ID_LEN == DEDUP_MAX_ID_LEN, "source ids fit the dedup tables");

/* first non-finite element of x, or -1 */
static long msg_find_nonfinite(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i])) {
            return (long)i;
        }
    }
    return -1;
}

static int msg_check_floats(const char *field, const float *x, size_t n, uint32_t cols)
{
    long i = msg_find_nonfinite(x, n);
    if (i < 0) {
        return 0;
    }
    const char *what = isnan(x[i]) ? "NaN" : "Inf";
    if (cols > 1) {
        return err_set(-EINVAL, "%s[%ld][%ld] is %s", field, i / (long)cols, i % (long)cols,
                       what);
    }
    return err_set(-EINVAL, "%s[%ld] is %s", field, i, what);
}

int msg_check_source_id(const char *field, const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0) {
        return err_set(-EINVAL, "%s is empty", field);
    }
    if (n > MSG_MAX_ID_LEN) {
        return err_set(-EINVAL, "%s is %zu bytes long, at most %u allowed", field, n,
                       MSG_MAX_ID_LEN);
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)id[i];
        if (!isalnum(c) && !strchr(MSG_ID_PUNCT, c)) {
            return err_set(-EINVAL,
                           "%s has byte 0x%02x at %zu; allowed are letters, digits and \"%s\"",
                           field, c, i, MSG_ID_PUNCT);
        }
    }
    return 0;
}

/* dims and count, before any array is looked at */
static int msg_check_shape(uint32_t obs_dim, uint32_t act_dim, uint32_t count, uint32_t max_count)
{
    if (obs_dim == 0 || obs_dim > MSG_MAX_DIM) {
        return err_set(-EINVAL, "obs_dim is %u, expected 1..%u", obs_dim, MSG_MAX_DIM);
    }
    if (act_dim == 0 || act_dim > MSG_MAX_DIM) {
        return err_set(-EINVAL, "act_dim is %u, expected 1..%u", act_dim, MSG_MAX_DIM);
    }
    if (count == 0 || count > max_count) {
        return err_set(-EINVAL, "count is %u, expected 1..%u", count, max_count);
    }
    uint64_t floats = (uint64_t)count * (2ull * obs_dim + act_dim + 1);
    if (floats > MSG_BATCH_MAX_FLOATS) {
        return err_set(-EINVAL, "count %u x (2 obs_dim + act_dim + 1) = %llu floats, at most %u",
                       count, (unsigned long long)floats, MSG_BATCH_MAX_FLOATS);
    }
    return 0;
}

static int msg_check_len(const char *field, size_t got, uint64_t want)
{
    if (got != want) {
        return err_set(-EINVAL, "%s has %zu elements, expected %llu (count x dim)", field, got,
                       (unsigned long long)want);
    }
    return 0;
}

static int msg_check_values(const tbatch_t *b)
{
    size_t c = b->count;
    int rc;
    if ((rc = msg_check_floats("obs", b->obs, c * b->obs_dim, b->obs_dim)) < 0 ||
        (rc = msg_check_floats("act", b->act, c * b->act_dim, b->act_dim)) < 0 ||
        (rc = msg_check_floats("reward", b->reward, c, 1)) < 0 ||
        (rc = msg_check_floats("next_obs", b->next_obs, c * b->obs_dim, b->obs_dim)) < 0) {
        return rc;
    }
    return 0;
}

/* what real and synthetic batches share: ids, shape, array lengths */
static int msg_check_common(const Twig__V1__TransitionBatch *m, uint32_t max_count)
{
    int rc;
    if (!m) {
        return err_set(-EINVAL, "no message");
    }
    if ((rc = msg_check_source_id("env_id", m->env_id)) < 0 ||
        (rc = msg_check_source_id("source_id", m->source_id)) < 0 ||
        (rc = msg_check_shape(m->obs_dim, m->act_dim, m->count, max_count)) < 0) {
        return rc;
    }
    uint64_t c = m->count;
    if ((rc = msg_check_len("obs", m->n_obs, c * m->obs_dim)) < 0 ||
        (rc = msg_check_len("act", m->n_act, c * m->act_dim)) < 0 ||
        (rc = msg_check_len("reward", m->n_reward, c)) < 0 ||
        (rc = msg_check_len("next_obs", m->n_next_obs, c * m->obs_dim)) < 0 ||
        (rc = msg_check_len("terminated", m->n_terminated, c)) < 0 ||
        (rc = msg_check_len("truncated", m->n_truncated, c)) < 0) {
        return rc;
    }
    return 0;
}

int msg_batch_check(const Twig__V1__TransitionBatch *m, uint32_t max_count)
{
    int rc = msg_check_common(m, max_count);
    if (rc < 0) {
        return rc;
    }
    if (m->model_version != 0) {
        return err_set(-EINVAL, "model_version is %llu, a real transition must have 0",
                       (unsigned long long)m->model_version);
    }
    tbatch_t b;
    msg_batch_view(&b, m);
    return msg_check_values(&b);
}

int msg_synth_check(const Twig__V1__TransitionBatch *m, uint32_t max_count)
{
    int rc = msg_check_common(m, max_count);
    if (rc < 0) {
        return rc;
    }
    if (m->model_version == 0) {
        return err_set(-EINVAL, "model_version is 0, a synthetic transition needs its model");
    }
    if (m->member_id == 0) {
        return err_set(-EINVAL, "member_id is 0: a synthetic push comes from a member "
                                "(Membership/Join)");
    }

    tbatch_t b;
    msg_batch_view(&b, m);
    return msg_check_values(&b);
}

int msg_tbatch_check(const tbatch_t *b, uint32_t max_count)
{
    int rc;
    if ((rc = msg_check_source_id("env_id", b->env_id)) < 0 ||
        (rc = msg_check_source_id("source_id", b->source_id)) < 0 ||
        (rc = msg_check_shape(b->obs_dim, b->act_dim, b->count, max_count)) < 0) {
        return rc;
    }
    if (!b->obs || !b->act || !b->reward || !b->next_obs || !b->terminated || !b->truncated) {
        return err_set(-EINVAL, "a batch array is missing");
    }
    return msg_check_values(b);
}

void msg_batch_view(tbatch_t *out, const Twig__V1__TransitionBatch *m)
{
    *out = (tbatch_t){
        .env_id = m->env_id,
        .source_id = m->source_id,
        .seq = m->seq,
        .source_epoch = m->source_epoch,
        .policy_version = m->policy_version,
        .obs_dim = m->obs_dim,
        .act_dim = m->act_dim,
        .count = m->count,
        .obs = m->obs,
        .act = m->act,
        .reward = m->reward,
        .next_obs = m->next_obs,
        .terminated = m->terminated,
        .truncated = m->truncated,
    };
}

void msg_batch_from_view(Twig__V1__TransitionBatch *out, const tbatch_t *b)
{
    twig__v1__transition_batch__init(out);
    size_t c = b->count;
    out->env_id = (char *)b->env_id;
    out->source_id = (char *)b->source_id;
    out->seq = b->seq;
    out->source_epoch = b->source_epoch;
    out->policy_version = b->policy_version;
    out->obs_dim = b->obs_dim;
    out->act_dim = b->act_dim;
    out->count = b->count;
    out->n_obs = c * b->obs_dim;
    out->obs = (float *)b->obs;
    out->n_act = c * b->act_dim;
    out->act = (float *)b->act;
    out->n_reward = c;
    out->reward = (float *)b->reward;
    out->n_next_obs = c * b->obs_dim;
    out->next_obs = (float *)b->next_obs;
    out->n_terminated = c;
    out->terminated = (protobuf_c_boolean *)b->terminated;
    out->n_truncated = c;
    out->truncated = (protobuf_c_boolean *)b->truncated;
}
