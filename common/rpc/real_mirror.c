/* real_mirror.c - the FetchReal loop: checks, offset, backoff, reachability (see real_mirror.h) */
#include "common/rpc/real_mirror.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "common/base/err.h"
#include "common/base/log.h"
#include "common/rpc/msg.h"
#include "proto/twig.pb-c.h"

void real_mirror_init(real_mirror_t *m, const real_mirror_cfg *cfg, uint64_t from_offset)
{
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    backoff_init(&m->backoff, cfg->backoff_min_ms, cfg->backoff_max_ms, cfg->seed);
    atomic_store(&m->offset, from_offset);
}

uint64_t real_mirror_offset(const real_mirror_t *m)
{
    return atomic_load(&((real_mirror_t *)m)->offset);
}

/* check a reply asked from off against the run: 0 and *rows (count 0 for an empty reply), or
 * -EINVAL naming what is wrong. A fetched range spans sources, so it carries no source id. */
static int real_mirror_check(const real_mirror_t *m, real_mirror_rows *rows,
                             const Twig__V1__FetchRealReply *r, uint64_t off)
{
    const real_mirror_cfg *c = &m->cfg;
    *rows = (real_mirror_rows){.first_offset = off, .end_offset = r->end_offset};
    /* a log that ends before rows we hold lost them (a new data dir?): following it would
     * mirror other rows under the same offsets */
    if (r->end_offset < off) {
        return err_set(-EINVAL,
                       "the log ends at %" PRIu64 ", before offset %" PRIu64 " mirrored already",
                       r->end_offset, off);
    }
    const Twig__V1__TransitionBatch *b = r->batch;
    if (!b || b->count == 0 || r->empty_reason != TWIG__V1__EMPTY_REASON__EMPTY_REASON_NONE) {
        return 0;
    }
    uint64_t n = b->count;
    if (n > c->max_count) {
        return err_set(-EINVAL, "count is %u, asked for at most %u", b->count, c->max_count);
    }
    if (b->n_obs != n * b->obs_dim || b->n_next_obs != n * b->obs_dim ||
        b->n_act != n * b->act_dim || b->n_reward != n || b->n_terminated != n) {
        return err_set(-EINVAL, "array lengths do not match count %u x dims %ux%u", b->count,
                       b->obs_dim, b->act_dim);
    }
    tbatch_t v;
    msg_batch_view(&v, b);
    v.source_id = "fetch";
    if (!v.truncated) {
        v.truncated = b->terminated; /* an older log may leave it out; the mirror drops it */
    }
    int rc = msg_tbatch_check(&v, c->max_count);
    if (rc < 0) {
        return rc;
    }
    if (strcmp(b->env_id, c->env_id) != 0) {
        return err_set(-EINVAL, "env_id is '%s', the run's is '%s'", b->env_id, c->env_id);
    }
    if (b->obs_dim != (uint32_t)c->n_obs || b->act_dim != (uint32_t)c->n_act) {
        return err_set(-EINVAL, "dims %ux%u, the run's env has %dx%d", b->obs_dim, b->act_dim,
                       c->n_obs, c->n_act);
    }
    if (r->first_offset != off) {
        return err_set(-EINVAL, "first_offset is %" PRIu64 ", asked for %" PRIu64, r->first_offset,
                       off);
    }
    if (r->end_offset < off + n) {
        return err_set(-EINVAL, "%u rows from %" PRIu64 " past the log's end %" PRIu64, b->count,
                       off, r->end_offset);
    }
    rows->count = b->count;
    rows->obs = b->obs;
    rows->act = b->act;
    rows->reward = b->reward;
    rows->next_obs = b->next_obs;
    rows->terminated = b->terminated;
    return 0;
}

static void real_mirror_note_peer(real_mirror_t *m, bool reached, int rc, uint64_t off)
{
    if (m->cfg.peer) {
        m->cfg.peer(m->cfg.app, reached, rc, off);
    }
}

int real_mirror_step(real_mirror_t *m, int wait_ms)
{
    const real_mirror_cfg *c = &m->cfg;
    uint64_t off = real_mirror_offset(m);
    Twig__V1__FetchRealRequest q = TWIG__V1__FETCH_REAL_REQUEST__INIT;
    q.from_offset = off;
    q.max_count = c->max_count;
    q.wait_ms = (uint32_t)wait_ms;
    /* a read: safe to repeat once when the connection drops under it */
    rpc_call_opts o = {
        .deadline_ms = wait_ms + c->deadline_slack_ms, .idempotent = true, .max_attempts = 2};
    ProtobufCMessage *reply = NULL;
    int rc = rpc_client_unary(c->client, &reply, REAL_MIRROR_PATH, &q.base,
                              &twig__v1__fetch_real_reply__descriptor, &o);
    if (rc < 0) {
        atomic_fetch_add(&m->failures, 1);
        m->at_end = false;
        real_mirror_note_peer(m, !rpc_err_unreachable(rc), rc, off);
        stop_flag_wait_ms(c->stop, backoff_next(&m->backoff));
        return rc;
    }
    real_mirror_note_peer(m, true, 0, off);
    const Twig__V1__FetchRealReply *r = (const Twig__V1__FetchRealReply *)reply;
    real_mirror_rows rows;
    rc = real_mirror_check(m, &rows, r, off);
    bool at_end = r->empty_reason == TWIG__V1__EMPTY_REASON__EMPTY_REASON_AT_END;
    if (rc == 0) {
        c->take(c->app, &rows);
        atomic_store(&m->offset, off + rows.count);
        atomic_fetch_add(&m->rows, rows.count);
    }
    protobuf_c_message_free_unpacked(reply, NULL);
    if (rc < 0) {
        /* a server that sends this will send it again: log each (the backoff spaces them) */
        atomic_fetch_add(&m->refused, 1);
        m->at_end = false;
        log_error("event=bad_real_batch from_offset=%" PRIu64 " err=%s detail=\"%s\"", off,
                  err_name(rc), err_msg());
        stop_flag_wait_ms(c->stop, backoff_next(&m->backoff));
        return rc;
    }
    m->at_end = rows.count == 0 && at_end;
    if (rows.count == 0 && !at_end) {
        /* not ready (starting, draining): back off rather than ask again at once */
        stop_flag_wait_ms(c->stop, backoff_next(&m->backoff));
        return 0;
    }
    backoff_reset(&m->backoff);
    return (int)rows.count;
}

int real_mirror_catch_up(real_mirror_t *m)
{
    for (int i = 0; i < REAL_MIRROR_CATCH_UP_ROUNDS && !stop_flag_raised(m->cfg.stop); i++) {
        int rc = real_mirror_step(m, 0);
        if (rc < 0 || (uint32_t)rc < m->cfg.max_count) {
            return rc < 0 ? rc : 0;
        }
    }
    return 0;
}

void real_mirror_run(real_mirror_t *m)
{
    while (!stop_flag_raised(m->cfg.stop)) {
        int rc = real_mirror_step(m, m->cfg.wait_ms);
        if (rc == 0 && m->at_end && m->cfg.wait_ms == 0) {
            /* no long poll: pace the polling */
            stop_flag_wait_ms(m->cfg.stop, m->cfg.backoff_min_ms);
        }
    }
}
