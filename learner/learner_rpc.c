/* learner_rpc.c - twig-learner's handlers: twig.v1.Learner and twig.v1.Stats.
 *
 * PushSynthetic, GetProgress, ReportEval, GetEvals and GetStats run on the completion-queue
 * thread and only take l->mu briefly; GetPolicy runs on the loop, where long polls park
 * until a newer policy is published or their wait ends. Every field from a peer is checked
 * before use; a bad one is answered INVALID_ARGUMENT naming it. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/rpc/stats.h"
#include "common/base/clock.h"
#include "common/base/err.h"
#include "common/base/log.h"
#include "common/base/mem.h"
#include "common/rpc/msg.h"
#include "common/nn/policy.h"
#include "learner/learner_int.h"

/* ---- PushSynthetic ---- */

static int learner_check_push(const learner_t *l, const Twig__V1__TransitionBatch *m)
{
    int rc = msg_synth_check(m, MSG_BATCH_MAX_COUNT);
    if (rc < 0 || (rc = msg_check_source_id("source_id", m->source_id)) < 0) {
        return rc;
    }
    if (!l->quota_on && m->chunk_branches != 0) {
        return err_set(-EINVAL, "chunk_branches is %" PRIu64 ": this run has no synthetic "
                                "quota to credit (async pacing, or no rollouts)",
                       m->chunk_branches);
    }
    const env_spec *sp = &l->env->spec;
    if (strcmp(m->env_id, l->run.env) != 0) {
        return err_set(-EINVAL, "env_id is '%s', the run's is '%s'", m->env_id, l->run.env);
    }
    if (m->obs_dim != (uint32_t)sp->n_obs) {
        return err_set(-EINVAL, "obs_dim is %u, %s has %d", m->obs_dim, l->run.env, sp->n_obs);
    }
    if (m->act_dim != (uint32_t)sp->n_act) {
        return err_set(-EINVAL, "act_dim is %u, %s has %d", m->act_dim, l->run.env, sp->n_act);
    }
    return 0;
}

/* a refused push: counted (in push_rejected and, with *kind, its own counter) and logged,
 * the 1st..10th, 16th, 32nd, ... time (a flood of garbage is not a flood of lines). The
 * source id is printed only if it passes msg_check_source_id. Returns rc, err_msg kept. */
static int learner_refuse_push(learner_t *l, const Twig__V1__TransitionBatch *m, int rc,
                               uint64_t *kind)
{
    char why[512];
    snprintf(why, sizeof why, "%s", err_msg());
    bool id_ok = msg_check_source_id("source_id", m->source_id) == 0;
    pthread_mutex_lock(&l->mu);
    uint64_t n = ++l->push_rejected;
    if (kind) {
        (*kind)++;
    }
    pthread_mutex_unlock(&l->mu);
    if (n <= 10 || (n & (n - 1)) == 0) {
        log_warn("event=push_rejected count=%" PRIu64 " err=%s source_id=%s seq=%" PRIu64
                 " detail=\"%s\"",
                 n, err_name(rc), id_ok ? m->source_id : "(invalid)", m->seq, why);
    }
    return err_set(rc, "%s", why);
}

static int learner_on_push(rpc_call_t *call, const ProtobufCMessage *msg, void *app)
{
    learner_t *l = app;
    const Twig__V1__TransitionBatch *m = (const Twig__V1__TransitionBatch *)msg;
    int rc = learner_check_push(l, m);
    if (rc < 0) {
        return learner_refuse_push(l, m, rc, NULL);
    }
    Twig__V1__PushReply r = TWIG__V1__PUSH_REPLY__INIT;
    size_t A = (size_t)l->env->spec.n_act, O = (size_t)l->env->spec.n_obs;

    /* the dedup check first: a retry or a refusal is answered without allocating */
    pthread_mutex_lock(&l->mu);
    uint64_t now = l->synthetic_samples;
    dedup_entry hit;
    rc = dedup_check(&l->push_dedup, m->source_id, m->seq, m->source_epoch, now, &hit);
    if (rc == DEDUP_DUPLICATE) {
        l->push_duplicates++;
        pthread_mutex_unlock(&l->mu);
        r.accepted = hit.ack;
        r.duplicate = true;
        rpc_call_reply(call, 0, &r.base);
        return 0;
    }
    if (rc < 0) {
        pthread_mutex_unlock(&l->mu);
        uint64_t *kind = rc == TWIG_EFENCED ? &l->push_fenced
                         : rc == TWIG_EFULL ? &l->push_table_full
                                            : &l->push_stale;
        return learner_refuse_push(l, m, rc, kind);
    }
    /* new data: only from a live lease (fencing: a member paused past its ttl stores
     * nothing), under its own identity, into its own chunk */
    uint64_t now_ms = clock_now_ms();
    member_sweep(&l->members, now_ms);
    rc = member_check_push(&l->members, m->member_id, m->source_id, now_ms);
    if (rc == 0 && l->quota_on && m->chunk_branches > 0) {
        /* credit only to the member's own open chunk; a push crediting nothing (the later
         * steps of a piece's branches) may name a chunk finished meanwhile */
        rc = quota_check(&l->quota, m->member_id, m->chunk_id, m->chunk_branches);
    }
    if (rc < 0) {
        pthread_mutex_unlock(&l->mu);
        return learner_refuse_push(l, m, rc, rc == TWIG_ELEASE ? &l->push_lease : NULL);
    }
    uint64_t evicted = l->push_dedup.evictions;
    dedup_record(&l->push_dedup, m->source_id, m->seq, m->source_epoch, now, m->count, 0);
    bool eviction = l->push_dedup.evictions != evicted;
    uint64_t fence = l->push_dedup.fence;
    for (size_t i = 0; i < m->count; i++) {
        policy_unit_from_env(&l->units, l->push_unit, m->act + i * A, 1);
        replay_add(&l->synth.rb, m->obs + i * O, l->push_unit, m->reward[i],
                   m->next_obs + i * O, m->terminated[i] != 0);
    }
    l->synthetic_samples += m->count;
    l->synthetic_pushes++;
    if (l->quota_on && m->chunk_branches > 0) {
        quota_add(&l->quota, m->member_id, m->chunk_id, m->chunk_branches);
    }
    if (m->model_version > l->model_version) {
        l->model_version = m->model_version;
    }
    pthread_cond_broadcast(&l->cv_train);
    uint64_t evictions = l->push_dedup.evictions;
    pthread_mutex_unlock(&l->mu);
    if (eviction) {
        /* counted in Stats (source_evictions); logged at debug: a long run evicts often */
        log_debug("event=source_evicted for=%s evictions=%" PRIu64 " source_fence=%" PRIu64,
                  m->source_id, evictions, fence);
    }
    r.accepted = m->count;
    rpc_call_reply(call, 0, &r.base);
    return 0;
}

/* ---- GetPolicy: answered now, or parked until a newer version or the wait's end ---- */

/* the served policy (its reply packed once per version), or NO_VERSION */
static void learner_reply_policy(rpc_call_t *call, rpc_packed_t *policy_reply)
{
    if (policy_reply) {
        rpc_call_reply_packed(call, policy_reply);
        return;
    }
    Twig__V1__GetWeightsReply r = TWIG__V1__GET_WEIGHTS_REPLY__INIT;
    r.empty_reason = TWIG__V1__EMPTY_REASON__EMPTY_REASON_NO_VERSION;
    rpc_call_reply(call, 0, &r.base);
}

/* the policy served is newer than have (the one comparison, policy_version_newer) */
static bool learner_has_newer(const learner_t *l, uint64_t have)
{
    return l->blob && policy_version_newer(l->blob->msg.version, have);
}

static bool learner_poll_has_news(void *app, const rpc_poll_want *w)
{
    return learner_has_newer(app, w->have);
}

/* news: the new policy; the wait's end: NO_VERSION; shutdown: whichever of the two is true */
static void learner_poll_answer(void *app, rpc_call_t *call, const rpc_poll_want *w,
                                rpc_poll_end why)
{
    learner_t *l = app;
    bool newer = why != RPC_POLL_END_TIMEOUT && learner_has_newer(l, w->have);
    learner_reply_policy(call, newer ? l->blob_reply : NULL);
}

const rpc_longpoll_ops learner_policy_poll_ops = {learner_poll_has_news, learner_poll_answer};

static int learner_on_get_policy(rpc_call_t *call, const ProtobufCMessage *msg, void *app)
{
    learner_t *l = app;
    const Twig__V1__GetWeightsRequest *q = (const Twig__V1__GetWeightsRequest *)msg;
    if (q->wait_ms > LEARNER_WAIT_MAX_MS) {
        return err_set(-EINVAL, "wait_ms is %u, at most %u", q->wait_ms, LEARNER_WAIT_MAX_MS);
    }
    return rpc_longpoll_park(&l->policy_polls, call, q->wait_ms,
                             &(rpc_poll_want){.have = q->have_version});
}

/* ---- GetProgress ---- */

static int learner_on_progress(rpc_call_t *call, const ProtobufCMessage *msg, void *app)
{
    learner_t *l = app;
    Twig__V1__Progress r = TWIG__V1__PROGRESS__INIT;
    pthread_mutex_lock(&l->mu);
    r.updates = l->updates;
    r.real_steps = l->real_offset;
    r.synthetic_samples = l->synthetic_samples;
    r.policy_version = l->policy_version;
    r.model_version = l->model_version;
    r.learn_start = l->learn_start;
    r.utd = l->run.utd;
    r.achieved_utd = (float)pace_achieved_utd(l->updates, l->real_offset, l->learn_start);
    r.rollout_quota_done = learner_quota_done(l);
    r.source_epoch = dedup_epoch(&l->push_dedup, l->synthetic_samples);
    r.real_steps_budget = l->run.real_steps;
    r.strict_pacing = l->run.pacing == RUN_PACING_STRICT;
    r.env_id = l->run.env;   /* borrowed: lives as long as the learner */
    if (r.strict_pacing) {
        uint64_t past = l->run.real_steps > l->learn_start ? l->run.real_steps - l->learn_start : 0;
        r.updates_budget = run_utd_credit(l->run.utd, past);
    }
    pthread_mutex_unlock(&l->mu);
    rpc_call_reply(call, 0, &r.base);
    return 0;
}

/* ---- ReportEval / GetEvals ---- */

/* every field of an evaluation against the run (caller holds l->mu for the policy version) */
static int learner_check_eval(const learner_t *l, const Twig__V1__EvalResult *e)
{
    int rc = msg_check_source_id("source_id", e->source_id);
    if (rc < 0) {
        return rc;
    }
    if (e->seq == 0 || e->seq > l->run.real_steps) {
        return err_set(-EINVAL, "seq is %" PRIu64 ", an eval point is 1..real_steps (%" PRIu64 ")",
                       e->seq, l->run.real_steps);
    }
    if (e->real_steps > l->run.real_steps) {
        return err_set(-EINVAL, "real_steps is %" PRIu64 ", beyond the run's budget of %" PRIu64,
                       e->real_steps, l->run.real_steps);
    }
    if (e->episodes == 0 || e->episodes > LEARNER_MAX_EVAL_EPISODES) {
        return err_set(-EINVAL, "episodes is %u, expected 1..%u", e->episodes,
                       LEARNER_MAX_EVAL_EPISODES);
    }
    if (!isfinite(e->return_mean) || fabsf(e->return_mean) > LEARNER_MAX_ABS_RETURN) {
        return err_set(-EINVAL, "return_mean is %g, expected finite and within +-%g",
                       e->return_mean, LEARNER_MAX_ABS_RETURN);
    }
    if (!isfinite(e->return_std) || e->return_std < 0.0f ||
        e->return_std > LEARNER_MAX_ABS_RETURN) {
        return err_set(-EINVAL, "return_std is %g, expected finite and in 0..%g", e->return_std,
                       LEARNER_MAX_ABS_RETURN);
    }
    if (e->policy_version > l->policy_version) {
        return err_set(-EINVAL, "policy_version is %" PRIu64 ", the newest published is %" PRIu64,
                       e->policy_version, l->policy_version);
    }
    return 0;
}

static int learner_on_report_eval(rpc_call_t *call, const ProtobufCMessage *msg, void *app)
{
    learner_t *l = app;
    const Twig__V1__EvalResult *e = (const Twig__V1__EvalResult *)msg;
    Twig__V1__PushReply r = TWIG__V1__PUSH_REPLY__INIT;
    pthread_mutex_lock(&l->mu);
    int rc = learner_check_eval(l, e);
    bool id_ok = rc == 0 || msg_check_source_id("source_id", e->source_id) == 0;
    uint64_t now = l->n_evals;
    dedup_entry hit;
    if (rc == 0) {
        /* EvalResult carries no epoch: the table never evicts, its fence stays 0 */
        rc = dedup_check(&l->eval_dedup, e->source_id, e->seq, 0, now, &hit);
    }
    if (rc == DEDUP_DUPLICATE) {
        l->eval_duplicates++;
        pthread_mutex_unlock(&l->mu);
        r.accepted = hit.ack;
        r.duplicate = true;
        rpc_call_reply(call, 0, &r.base);
        return 0;
    }
    if (rc == DEDUP_NEW && l->n_evals >= l->evals_bound) {
        rc = err_set(TWIG_EFULL,
                     "already %zu evaluations, the most this run keeps (n_actors %d x "
                     "(real_steps %" PRIu64 " / eval_every %d + 2), at most %u)",
                     l->n_evals, l->run.n_actors, l->run.real_steps, l->run.eval_every,
                     LEARNER_EVALS_CAP);
    }
    if (rc < 0) {
        uint64_t n = ++l->eval_rejected;
        pthread_mutex_unlock(&l->mu);
        if (n <= 10 || (n & (n - 1)) == 0) {
            char why[512];
            snprintf(why, sizeof why, "%s", err_msg());
            log_warn("event=eval_rejected count=%" PRIu64 " err=%s source_id=%s seq=%" PRIu64
                     " detail=\"%s\"",
                     n, err_name(rc), id_ok ? e->source_id : "(invalid)", e->seq, why);
            err_set(rc, "%s", why);
        }
        return rc;
    }
    dedup_record(&l->eval_dedup, e->source_id, e->seq, 0, now, 1, 0);
    if (l->n_evals == l->cap_evals) {
        l->cap_evals = l->cap_evals ? 2 * l->cap_evals : 64;
        l->evals = xrealloc(l->evals, l->cap_evals * sizeof *l->evals);
    }
    learner_eval *d = &l->evals[l->n_evals++];
    memset(d, 0, sizeof *d);
    snprintf(d->source_id, sizeof d->source_id, "%s", e->source_id);
    d->real_steps = e->real_steps;
    d->policy_version = e->policy_version;
    d->seq = e->seq;
    d->episodes = e->episodes;
    d->return_mean = e->return_mean;
    d->return_std = e->return_std;
    size_t idx = l->n_evals;
    pthread_mutex_unlock(&l->mu);
    log_info("event=eval source_id=%s real_steps=%" PRIu64 " policy_version=%" PRIu64
             " episodes=%u return_mean=%.2f return_std=%.2f index=%zu",
             e->source_id, e->real_steps, e->policy_version, e->episodes, e->return_mean,
             e->return_std, idx - 1);
    r.accepted = 1;
    rpc_call_reply(call, 0, &r.base);
    return 0;
}

static int learner_on_get_evals(rpc_call_t *call, const ProtobufCMessage *msg, void *app)
{
    learner_t *l = app;
    const Twig__V1__GetEvalsRequest *q = (const Twig__V1__GetEvalsRequest *)msg;
    pthread_mutex_lock(&l->mu);
    size_t total = l->n_evals;
    if (q->from_index > total) {
        pthread_mutex_unlock(&l->mu);
        return err_set(-EINVAL, "from_index is %u, only %zu evaluations exist", q->from_index,
                       total);
    }
    size_t n = total - q->from_index;
    if (n > LEARNER_EVALS_PER_REPLY) {
        n = LEARNER_EVALS_PER_REPLY;
    }
    Twig__V1__EvalResult *ev = xcalloc(n ? n : 1, sizeof *ev);
    Twig__V1__EvalResult **ptrs = xcalloc(n ? n : 1, sizeof *ptrs);
    for (size_t i = 0; i < n; i++) {
        const learner_eval *s = &l->evals[q->from_index + i];
        twig__v1__eval_result__init(&ev[i]);
        ev[i].source_id = (char *)s->source_id;
        ev[i].real_steps = s->real_steps;
        ev[i].policy_version = s->policy_version;
        ev[i].episodes = s->episodes;
        ev[i].return_mean = s->return_mean;
        ev[i].return_std = s->return_std;
        ev[i].seq = s->seq;
        ptrs[i] = &ev[i];
    }
    Twig__V1__GetEvalsReply r = TWIG__V1__GET_EVALS_REPLY__INIT;
    r.n_evals = n;
    r.evals = ptrs;
    r.total = (uint32_t)total;
    rpc_call_reply(call, 0, &r.base); /* packed now, while the strings are held */
    pthread_mutex_unlock(&l->mu);
    free(ptrs);
    free(ev);
    return 0;
}

/* ---- TakeChunk: a rollout worker's share of the synthetic quota ---- */

/* where a new chunk from step s0 may end for a worker that has mirrored have steps: not
 * past the next model training point (its branches need one model) or the next epoch
 * (one rollout length k) */
static uint64_t learner_chunk_limit(const learner_t *l, uint64_t s0, uint64_t have)
{
    uint64_t el = (uint64_t)l->run.epoch_length;
    uint64_t end = have;
    uint64_t next_point = run_model_next_point(&l->run, s0);
    uint64_t next_epoch = (s0 / el + 1) * el;
    end = end < next_point ? end : next_point;
    return end < next_epoch ? end : next_epoch;
}

static int learner_on_take_chunk(rpc_call_t *call, const ProtobufCMessage *msg, void *app)
{
    learner_t *l = app;
    const Twig__V1__ChunkRequest *q = (const Twig__V1__ChunkRequest *)msg;
    if (!l->quota_on) {
        return err_set(-EINVAL, "TakeChunk: this run has no synthetic quota (async pacing, "
                                "rollouts_per_step 0 or n_rollout 0)");
    }
    if (q->max_steps == 0) {
        return err_set(-EINVAL, "max_steps is 0, a chunk has at least one real step");
    }
    if (q->have_real > l->run.real_steps) {
        return err_set(-EINVAL, "have_real is %" PRIu64 ", beyond the run's budget of %" PRIu64,
                       q->have_real, l->run.real_steps);
    }
    Twig__V1__ChunkReply r = TWIG__V1__CHUNK_REPLY__INIT;
    uint64_t now = clock_now_ms();
    pthread_mutex_lock(&l->mu);
    member_sweep(&l->members, now);
    int rc = lease_renew(&l->members.leases, q->member_id, now);
    if (rc < 0) {
        l->members.lease_refused++;
        pthread_mutex_unlock(&l->mu);
        return rc;
    }
    quota_chunk c;
    bool adopted = false;
    if (l->quota_known) {
        uint64_t before = l->quota.adopted;
        uint64_t limit = learner_chunk_limit(l, l->quota.next_step, q->have_real);
        if (quota_take(&l->quota, q->member_id, q->have_real, limit, q->max_steps, &c) == 1) {
            r.chunk_id = c.id;
            r.step_begin = c.begin;
            r.step_end = c.end;
            r.chunk_branches = c.need;
            r.done = c.done;
            adopted = l->quota.adopted != before;
        }
    }
    pthread_mutex_unlock(&l->mu);
    if (adopted) {
        log_info("event=chunk_adopted member_id=%" PRIu64 " chunk_id=%" PRIu64 " steps=%" PRIu64
                 "..%" PRIu64 " done=%" PRIu64 " need=%" PRIu64,
                 q->member_id, c.id, c.begin, c.end, c.done, c.need);
    }
    rpc_call_reply(call, 0, &r.base);
    return 0;
}

/* ---- Membership (common/rpc/member.h does the work) ---- */

static int learner_on_join(rpc_call_t *call, const ProtobufCMessage *msg, void *app)
{
    return member_on_join(&((learner_t *)app)->members, call, msg);
}

static int learner_on_renew(rpc_call_t *call, const ProtobufCMessage *msg, void *app)
{
    return member_on_renew(&((learner_t *)app)->members, call, msg);
}

static int learner_on_leave(rpc_call_t *call, const ProtobufCMessage *msg, void *app)
{
    return member_on_leave(&((learner_t *)app)->members, call, msg);
}

/* ---- Stats ---- */

int learner_collect_stats(stats_kv *out, int max, void *app)
{
    learner_t *l = app;
    uint64_t now = clock_now_ms();
    pthread_mutex_lock(&l->mu);
    member_sweep(&l->members, now);
    uint64_t lease_oldest, lease_stalest;
    lease_ages(&l->members.leases, now, &lease_oldest, &lease_stalest);
    size_t orphans = 0, chunks_open = quota_open(&l->quota, &orphans);
    const lease_table *lt = &l->members.leases;
    const stats_kv v[] = {
        {"members", (double)(lease_live(lt, now))},
        {"member_joins", (double)(lt->joins)},
        {"member_leaves", (double)(lt->leaves)},
        {"member_expiries", (double)(lt->expiries)},
        {"member_join_refused", (double)(l->members.refused + lt->refused_full)},
        {"lease_refused", (double)(l->members.lease_refused)},
        {"lease_oldest_s", (double)lease_oldest / 1000.0},
        {"lease_stalest_s", (double)lease_stalest / 1000.0},
        {"push_lease", (double)(l->push_lease)},
        {"quota_branches", (double)(l->quota.branches)},
        {"quota_chunks_done", (double)(l->quota.chunks_done)},
        {"quota_chunks_open", (double)chunks_open},
        {"quota_orphans", (double)orphans},
        {"quota_orphaned", (double)(l->quota.orphaned)},
        {"quota_adopted", (double)(l->quota.adopted)},
        {"quota_start", (double)(l->quota.start)},
        {"quota_wait_max_s", (double)(l->quota_wait_max_ms) / 1000.0},
        {"updates", (double)(l->updates)},
        {"real_steps", (double)(l->real_offset)},
        {"real_replay_size", (double)(l->real.size)},
        {"real_replay_added", (double)(l->real.total)},
        {"log_end", (double)(l->log_end)},
        {"synthetic_samples", (double)(l->synthetic_samples)},
        {"synthetic_stored", (double)(synth_size(&l->synth))},
        {"synthetic_pushes", (double)(l->synthetic_pushes)},
        {"push_duplicates", (double)(l->push_duplicates)},
        {"push_rejected", (double)(l->push_rejected)},
        {"push_stale", (double)(l->push_stale)},
        {"push_fenced", (double)(l->push_fenced)},
        {"push_table_full", (double)(l->push_table_full)},
        {"sources", (double)(l->push_dedup.n)},
        {"source_evictions", (double)(l->push_dedup.evictions)},
        {"source_fence", (double)(l->push_dedup.fence)},
        {"source_epoch", (double)(dedup_epoch(&l->push_dedup, l->synthetic_samples))},
        {"ready", (double)(l->ready == 1)},
        {"rollout_quota_done", (double)(learner_quota_done(l))},
        {"policy_version", (double)(l->policy_version)},
        {"policy_built", (double)(l->policy_built)},
        {"publishes_superseded", (double)writer_superseded(&l->writer, LEARNER_WRITE_PUBLISH)},
        {"checkpoint_waits", (double)writer_waited(&l->writer, LEARNER_WRITE_CHECKPOINT)},
        {"policy_reply_packs", (double)(l->policy_reply_packs)},
        {"model_version", (double)(l->model_version)},
        {"achieved_utd", (double)(pace_achieved_utd(l->updates, l->real_offset, l->learn_start))},
        {"updates_per_s", (double)(l->updates_per_s)},
        {"q_loss", (double)(l->stats.q_loss)},
        {"pi_loss", (double)(l->stats.pi_loss)},
        {"alpha", (double)(l->stats.alpha)},
        {"checkpoints_written", (double)(l->checkpoints_written)},
        {"restored_updates", (double)(l->restored_updates)},
        {"evals", (double)(l->n_evals)},
        {"evals_bound", (double)(l->evals_bound)},
        {"eval_duplicates", (double)(l->eval_duplicates)},
        {"eval_rejected", (double)(l->eval_rejected)},
        {"train_wait_real_s", l->wait_real_s},
        {"train_wait_synthetic_s", l->wait_synthetic_s},
    };
    pthread_mutex_unlock(&l->mu);
    return stats_copy(out, max, v, STATS_COUNT(v));
}

static int learner_on_stats(rpc_call_t *call, const ProtobufCMessage *msg, void *app)
{
    (void)msg;
    stats_kv v[STATS_MAX];
    stats_reply(call, "learner", v, learner_collect_stats(v, STATS_MAX, app));
    return 0;
}

/* ---- /metrics (common/rpc/metrics.h): one row a series, over the Stats keys above ---- */

#define C METRICS_COUNTER
#define G METRICS_GAUGE
const metrics_series learner_series[] = {
    {"twig_learner_updates_total", C, "SAC updates made (all lifetimes)", "updates"},
    {"twig_learner_real_steps", G, "real transitions mirrored from the model server's log",
     "real_steps"},
    {"twig_learner_real_replay_size", G, "transitions in the real replay", "real_replay_size"},
    {"twig_learner_log_end", G, "the model server's log end at the last fetch", "log_end"},
    {"twig_learner_synthetic_samples_total", C, "synthetic transitions accepted (all lifetimes)",
     "synthetic_samples"},
    {"twig_learner_synthetic_stored", G, "synthetic transitions held in the pool",
     "synthetic_stored"},
    {"twig_learner_synthetic_pushes_total", C, "PushSynthetic calls accepted",
     "synthetic_pushes"},
    {"twig_learner_push_duplicates_total", C, "pushes already stored (retries)",
     "push_duplicates"},
    {"twig_learner_push_rejected_total", C, "pushes refused (stale, fenced, table full, invalid)",
     "push_rejected"},
    {"twig_learner_sources", G, "push sources remembered", "sources"},
    {"twig_learner_ready", G, "1 while the learner is ready", "ready"},
    {"twig_learner_rollout_quota_done", G, "real steps whose synthetic quota has arrived",
     "rollout_quota_done"},
    {"twig_learner_policy_version", G, "newest policy version published", "policy_version"},
    {"twig_learner_model_version", G, "newest model version seen in synthetic data",
     "model_version"},
    {"twig_learner_achieved_utd", G, "updates per real step since learning started",
     "achieved_utd"},
    {"twig_learner_updates_per_second", G, "update rate over the last progress period",
     "updates_per_s"},
    {"twig_learner_q_loss", G, "critic loss of the last update", "q_loss"},
    {"twig_learner_pi_loss", G, "actor loss of the last update", "pi_loss"},
    {"twig_learner_alpha", G, "SAC entropy temperature", "alpha"},
    {"twig_learner_checkpoints_written_total", C, "checkpoints written", "checkpoints_written"},
    {"twig_learner_evals", G, "evaluations held", "evals"},
    {"twig_learner_train_wait_real_seconds_total", C,
     "time the training thread waited for real steps (pacing, warm-up)", "train_wait_real_s"},
    {"twig_learner_train_wait_synthetic_seconds_total", C,
     "time the training thread waited for the rollout workers' synthetic quota alone: when it "
     "grows, add rollout workers",
     "train_wait_synthetic_s"},
    {"twig_learner_members", G, "rollout workers with a live lease", "members"},
    {"twig_learner_member_joins_total", C, "rollout workers that joined", "member_joins"},
    {"twig_learner_member_leaves_total", C, "rollout workers that left cleanly", "member_leaves"},
    {"twig_learner_member_expiries_total", C, "leases that expired (a worker vanished)",
     "member_expiries"},
    {"twig_learner_member_join_refused_total", C,
     "joins refused (another run or build, or the table full)", "member_join_refused"},
    {"twig_learner_lease_oldest_seconds", G, "age of the oldest live lease", "lease_oldest_s"},
    {"twig_learner_lease_stalest_seconds", G, "longest time since a live lease was renewed",
     "lease_stalest_s"},
    {"twig_learner_push_lease_refused_total", C, "pushes refused under an expired or unknown lease",
     "push_lease"},
    {"twig_learner_quota_wait_max_seconds", G, "longest wait of the training thread on the quota",
     "quota_wait_max_s"},
    {"twig_learner_quota_chunks_open", G, "quota chunks handed out and not yet complete",
     "quota_chunks_open"},
};
#undef C
#undef G
const int learner_n_series = STATS_COUNT(learner_series);


const rpc_method learner_methods[] = {
    {"/twig.v1.Learner/PushSynthetic", &twig__v1__transition_batch__descriptor, learner_on_push,
     RPC_KIND_UNARY, RPC_RUN_ON_CQ},
    {"/twig.v1.Learner/GetPolicy", &twig__v1__get_weights_request__descriptor,
     learner_on_get_policy, RPC_KIND_UNARY, RPC_RUN_ON_LOOP},
    {"/twig.v1.Learner/GetProgress", &twig__v1__progress_request__descriptor, learner_on_progress,
     RPC_KIND_UNARY, RPC_RUN_ON_CQ},
    {"/twig.v1.Learner/ReportEval", &twig__v1__eval_result__descriptor, learner_on_report_eval,
     RPC_KIND_UNARY, RPC_RUN_ON_CQ},
    {"/twig.v1.Learner/GetEvals", &twig__v1__get_evals_request__descriptor, learner_on_get_evals,
     RPC_KIND_UNARY, RPC_RUN_ON_CQ},
    {"/twig.v1.Learner/TakeChunk", &twig__v1__chunk_request__descriptor, learner_on_take_chunk,
     RPC_KIND_UNARY, RPC_RUN_ON_CQ},
    {"/twig.v1.Membership/Join", &twig__v1__join_request__descriptor, learner_on_join,
     RPC_KIND_UNARY, RPC_RUN_ON_CQ},
    {"/twig.v1.Membership/Renew", &twig__v1__member_request__descriptor, learner_on_renew,
     RPC_KIND_UNARY, RPC_RUN_ON_CQ},
    {"/twig.v1.Membership/Leave", &twig__v1__member_request__descriptor, learner_on_leave,
     RPC_KIND_UNARY, RPC_RUN_ON_CQ},
    {"/twig.v1.Stats/GetStats", &twig__v1__stats_request__descriptor, learner_on_stats,
     RPC_KIND_UNARY, RPC_RUN_ON_CQ},
};
const size_t learner_n_methods = sizeof learner_methods / sizeof learner_methods[0];
