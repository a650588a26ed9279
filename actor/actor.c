/* actor.c - twig-actor: stepping, batches, pushes, pulls, pacing, evaluation (see actor.h) */
#include "actor/actor.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/base/clock.h"
#include "common/rpc/stats.h"
#include "common/base/portfile.h"
#include "common/base/err.h"
#include "common/base/backoff.h"
#include "common/base/log.h"
#include "common/base/mem.h"
#include "common/rpc/msg.h"
#include "common/rpc/tls_run.h"
#include "common/base/netaddr.h"

#define ACTOR_GRACE_MS 500      /* health/Stats calls in flight at shutdown */
#define ACTOR_IDLE_WAIT_MS 1000 /* a wait that only ends on a change or stop */


#define A(field) offsetof(actor_cfg, field)
const config_opt actor_opts[] = {
    {"id", CFG_STRING, A(id), "", 0, ACTOR_ID_MAX,
     "source id in the real log; empty: actor-<index>", NULL},
    {"index", CFG_INT, A(index), "0", 0, 255,
     "this actor's index, 0..n_actors-1 (its share of the budget)", NULL},
    {"listen", CFG_ADDR, A(listen), "127.0.0.1:0", 3, RUN_ADDR_MAX,
     "host:port serving health and Stats (port 0: any free one)", NULL},
    {"port_file", CFG_STRING, A(port_file), "", 0, ACTOR_PATH_MAX,
     "file that gets the bound port once serving; empty: none", NULL},
    {"metrics_listen", CFG_ADDR, A(metrics_listen), "", 0, RUN_ADDR_MAX,
     "HOST:PORT to serve Prometheus GET /metrics on (port 0: any free one); empty: off "
     "(twig run gives each process one, launcher.metrics_base_port)", NULL},
    {"push_every", CFG_INT, A(push_every), "50", 1, 65536,
     "transitions per AppendReal batch (a batch also ends when the policy changes)", NULL},
    {"max_pending", CFG_INT, A(max_pending), "8", 1, 4096,
     "batches stepped but not yet acknowledged before stepping waits", NULL},
    {"eval_seed_offset", CFG_U64, A(eval_seed_offset), "1000000", 0, 1e15,
     "evaluation episode e runs on env seed seed + eval_seed_offset + e", NULL},
    {"eval_index", CFG_INT, A(eval_index), "0", -1, 255,
     "index of the actor that evaluates; -1: no evaluation", NULL},
    {"policy_poll_ms", CFG_INT, A(policy_poll_ms), "500", 1, 60000,
     "policy poll period (async mode: GetPolicy long-polls this long)", NULL},
    {"progress_poll_ms", CFG_INT, A(progress_poll_ms), "20", 1, 60000,
     "GetProgress period while strict pacing waits", NULL},
    {"rpc_deadline_ms", CFG_INT, A(rpc_deadline_ms), "2000", 10, 600000,
     "deadline of each call to the model server or the learner", NULL},
    {"backoff_min_ms", CFG_INT, A(backoff_min_ms), "50", 1, 60000,
     "first wait before retrying a failed call", NULL},
    {"backoff_max_ms", CFG_INT, A(backoff_max_ms), "2000", 1, 600000,
     "longest wait between retries", NULL},
    {"flush_ms", CFG_INT, A(flush_ms), "3000", 0, 600000,
     "on SIGTERM, unacknowledged batches get this long to be stored", NULL},
    {"exit_when_done", CFG_BOOL, A(exit_when_done), "false", 0, 0,
     "exit 0 once the share (and final evaluation) is done instead of idling until SIGTERM", NULL},
    {"steps_per_s", CFG_DOUBLE, A(steps_per_s), "0", 0, 1e9,
     "cap on real env steps per second, as a robot's control rate would set it (async runs "
     "use it to stand for real time); 0: no cap", NULL},
    {"log_level", CFG_ENUM, A(log_level), "info", 0, 0, "debug, info, warn or error",
     log_level_names},
};
#undef A
const int actor_n_opts = (int)(sizeof actor_opts / sizeof actor_opts[0]);

/* ---- pure pieces ---- */

uint64_t actor_share(uint64_t total, int index, int n)
{
    TWIG_ASSERT(n > 0 && index >= 0 && index < n);
    return total / (uint64_t)n + ((uint64_t)index < total % (uint64_t)n ? 1 : 0);
}

bool actor_pace_allows(int pacing, double utd, uint64_t learn_start, uint64_t slack, uint64_t steps,
                       bool have_progress, uint64_t updates)
{
    if (pacing == RUN_PACING_ASYNC) {
        return true;
    }
    /* updates needed: utd * (steps - learn_start - slack), nothing while that is <= 0 */
    if (steps <= learn_start + slack) {
        return true;
    }
    if (!have_progress) {
        return false;
    }
    double need = utd * (double)(steps - learn_start - slack);
    return (double)updates >= need;
}

uint64_t actor_next_eval(uint64_t steps, uint64_t every)
{
    TWIG_ASSERT(every > 0);
    return (steps / every + 1) * every;
}

uint64_t actor_first_eval(uint64_t steps, uint64_t init_steps, uint64_t every)
{
    uint64_t next = actor_next_eval(steps, every);
    return init_steps > steps && init_steps < next ? init_steps : next;
}

uint64_t actor_start_eval(uint64_t steps, uint64_t init_steps, uint64_t every)
{
    uint64_t passed = steps >= every ? steps / every * every : 0;
    if (init_steps > passed && init_steps <= steps) {
        passed = init_steps;
    }
    return passed > 0 ? passed : actor_first_eval(steps, init_steps, every);
}

void actor_batch_init(actor_batch_t *b, int cap, int n_obs, int n_act)
{
    TWIG_ASSERT(cap > 0 && n_obs > 0 && n_act > 0);
    memset(b, 0, sizeof *b);
    b->cap = cap;
    b->n_obs = n_obs;
    b->n_act = n_act;
    size_t nf = (size_t)cap * (size_t)(2 * n_obs + n_act + 1);
    b->block = xmalloc(nf * sizeof(float) + 2 * (size_t)cap * sizeof(int));
    float *f = b->block;
    b->obs = f;
    b->act = b->obs + (size_t)cap * n_obs;
    b->reward = b->act + (size_t)cap * n_act;
    b->next_obs = b->reward + cap;
    b->terminated = (int *)(b->next_obs + (size_t)cap * n_obs);
    b->truncated = b->terminated + cap;
}

void actor_batch_free(actor_batch_t *b)
{
    free(b->block);
    memset(b, 0, sizeof *b);
}

void actor_batch_clear(actor_batch_t *b, uint64_t policy_version)
{
    b->count = 0;
    b->seq = 0;
    b->attempts = 0;
    b->policy_version = policy_version;
}

void actor_batch_add(actor_batch_t *b, const float *obs, const float *act, float reward,
                     const float *next_obs, bool terminated, bool truncated)
{
    TWIG_ASSERT(b->count < b->cap);
    size_t i = (size_t)b->count;
    memcpy(b->obs + i * b->n_obs, obs, (size_t)b->n_obs * sizeof(float));
    memcpy(b->act + i * b->n_act, act, (size_t)b->n_act * sizeof(float));
    b->reward[i] = reward;
    memcpy(b->next_obs + i * b->n_obs, next_obs, (size_t)b->n_obs * sizeof(float));
    b->terminated[i] = terminated;
    b->truncated[i] = truncated;
    b->count++;
}

void actor_batch_to_msg(Twig__V1__TransitionBatch *m, const actor_batch_t *b, const char *env_id,
                        const char *source_id)
{
    tbatch_t v = {
        .env_id = env_id,
        .source_id = source_id,
        .seq = b->seq,
        .policy_version = b->policy_version,
        .obs_dim = (uint32_t)b->n_obs,
        .act_dim = (uint32_t)b->n_act,
        .count = (uint32_t)b->count,
        .obs = b->obs,
        .act = b->act,
        .reward = b->reward,
        .next_obs = b->next_obs,
        .terminated = b->terminated,
        .truncated = b->truncated,
    };
    msg_batch_from_view(m, &v);
}

/* ---- time, waits, backoff ---- */

/* wait on a->cv for at most ms (a->mu held); any broadcast ends it early */
static void actor_wait_locked(actor_t *a, uint64_t ms)
{
    struct timespec ts = clock_deadline_ms((int64_t)ms);
    pthread_cond_timedwait(&a->cv, &a->mu, &ts);
}

/* sleep ms unless stop comes first (a->mu not held); true if stop was asked */
static bool actor_pause(actor_t *a, uint64_t ms)
{
    uint64_t end = clock_now_ms() + ms;
    pthread_mutex_lock(&a->mu);
    for (uint64_t t = clock_now_ms(); !atomic_load(&a->stop) && t < end; t = clock_now_ms()) {
        actor_wait_locked(a, end - t);
    }
    pthread_mutex_unlock(&a->mu);
    return atomic_load(&a->stop) != 0;
}

/* the actor's retry waits: backoff_min_ms doubling to backoff_max_ms, jittered */
static void actor_backoff_init(backoff_t *b, const actor_cfg *c, uint64_t seed)
{
    backoff_init(b, (uint64_t)c->backoff_min_ms, (uint64_t)c->backoff_max_ms, seed);
}

/* ---- calls ---- */

static rpc_call_opts actor_opts_call(const actor_t *a, int extra_ms)
{
    rpc_call_opts o = {.deadline_ms = a->cfg.rpc_deadline_ms + extra_ms};
    return o;
}

/* LogStatus with our source id: the log's end, our highest seq and count, the epoch a new
 * identity starts with, the log's env id (env_id may be NULL) */
typedef struct actor_log_info {
    uint64_t end, source_seq, source_transitions, source_epoch;
} actor_log_info;

static int actor_log_status(actor_t *a, actor_log_info *li, char *env_id, size_t n_env)
{
    Twig__V1__LogStatusRequest q = TWIG__V1__LOG_STATUS_REQUEST__INIT;
    q.source_id = a->id;
    ProtobufCMessage *reply = NULL;
    rpc_call_opts o = actor_opts_call(a, 0);
    int rc = rpc_client_unary(a->ms, &reply, "/twig.v1.ModelServer/LogStatus", &q.base,
                              &twig__v1__log_status_reply__descriptor, &o);
    if (rc < 0) {
        return rc;
    }
    const Twig__V1__LogStatusReply *r = (const Twig__V1__LogStatusReply *)reply;
    li->end = r->end_offset;
    li->source_seq = r->source_seq;
    li->source_transitions = r->source_transitions;
    li->source_epoch = r->source_epoch;
    if (env_id) {
        snprintf(env_id, n_env, "%s", r->env_id ? r->env_id : "");
    }
    protobuf_c_message_free_unpacked(reply, NULL);
    return 0;
}

/* could the peer not be reached at all (as opposed to an answer we did not like)? */
static bool actor_unreachable(int rc)
{
    return rc == TWIG_EUNAVAIL || rc == TWIG_EDEADLINE || rc == TWIG_ECANCELLED;
}

/* a thread saw a peer answer (reached) or not (rc: why). Readiness follows: both peers
 * answered. One line per change: readiness once it is known (both answered, or one did
 * not), with its reason; else the peer's own change */
static void actor_peer_seen(actor_t *a, actor_peer peer, bool reached, int rc)
{
    static const char *const names[2] = {"modelserver", "learner"};
    const char *addr = peer == ACTOR_PEER_MS ? a->run.modelserver_addr : a->run.learner_addr;
    int now = reached ? 1 : 0;
    pthread_mutex_lock(&a->mu);
    int was = a->peer_up[peer];
    if (was == now) {
        pthread_mutex_unlock(&a->mu);
        return;
    }
    a->peer_up[peer] = now;
    int ms = a->peer_up[ACTOR_PEER_MS], ln = a->peer_up[ACTOR_PEER_LEARNER];
    int state = ms == 1 && ln == 1 ? 1 : ms == 0 || ln == 0 ? 0 : -1;
    bool changed = state != -1 && state != a->ready_state;
    if (changed) {
        a->ready_state = state;
        rpc_server_set_ready(a->srv, state == 1);
    }
    pthread_mutex_unlock(&a->mu);
    if (changed && state == 1) {
        log_info("event=ready reason=peers_reached modelserver=%s learner=%s",
                 a->run.modelserver_addr, a->run.learner_addr);
    } else if (changed) {
        log_warn("event=not_ready reason=%s_unreachable addr=%s err=%s detail=\"%s\"",
                 names[peer], addr, err_name(rc), err_msg());
    } else if (!reached) {
        log_warn("event=peer_down peer=%s addr=%s err=%s detail=\"%s\"", names[peer], addr,
                 err_name(rc), err_msg());
    } else if (was == 0) {
        log_info("event=peer_up peer=%s addr=%s", names[peer], addr);
    }
}

static void actor_peer_call(actor_t *a, actor_peer peer, int rc)
{
    actor_peer_seen(a, peer, !actor_unreachable(rc), rc);
}

/* ---- shutdown from a thread ---- */

static void actor_fail(actor_t *a, int rc, const char *what)
{
    log_error("event=fatal what=%s err=%s detail=\"%s\"", what, err_name(rc), err_msg());
    pthread_mutex_lock(&a->mu);
    if (a->fatal == 0) {
        a->fatal = rc;
    }
    pthread_mutex_unlock(&a->mu);
    uv_async_send(&a->wake);
}

/* ---- pusher: queued batches -> AppendReal, in order, until acknowledged ---- */

/* the server holds seqs we did not send in this life (an earlier run's batch landed after
 * our count was read; why "stale"), or it forgot our identity (why "fenced"): drop what is
 * queued (none of it is stored) and continue from the server's count and seq, as the
 * identity whose epoch LogStatus gave */
static void actor_resync_locked(actor_t *a, const char *why, uint64_t batch_seq,
                                const actor_log_info *li)
{
    log_warn("event=seq_resync source=%s batch_seq=%" PRIu64 " server_seq=%" PRIu64
             " dropped_batches=%d why=%s source_epoch=%" PRIu64 " server_transitions=%" PRIu64,
             a->id, batch_seq, li->source_seq, a->ring_n, why, li->source_epoch,
             li->source_transitions);
    uint64_t server_transitions = li->source_transitions;
    a->ring_n = 0;
    a->ring_head = 0;
    a->base = server_transitions;
    a->next_seq = li->source_seq + 1;
    a->epoch = li->source_epoch;
    a->st.source_epoch = li->source_epoch;
    a->resync_gen++;
    a->st.steps = server_transitions;
    a->st.acked = server_transitions;
    pthread_cond_broadcast(&a->cv);
}

static void *actor_pusher_main(void *arg)
{
    actor_t *a = arg;
    backoff_t bo;
    actor_backoff_init(&bo, &a->cfg, a->run.seed ^ 0x5055534845ull ^ (uint64_t)a->cfg.index);
    uint64_t failures = 0;
    pthread_mutex_lock(&a->mu);
    for (;;) {
        while (a->ring_n == 0 && !(atomic_load(&a->stop) && a->stepper_done)) {
            actor_wait_locked(a, ACTOR_IDLE_WAIT_MS);
        }
        if (a->ring_n == 0) {
            break;
        }
        if (atomic_load(&a->stop) && clock_now_ms() >= a->flush_deadline_ms) {
            log_warn("event=flush_gave_up pending_batches=%d", a->ring_n);
            break;
        }
        actor_batch_t *b = &a->ring[a->ring_head];
        uint64_t gen = a->resync_gen;
        uint64_t epoch = a->epoch;
        b->attempts++;
        pthread_mutex_unlock(&a->mu);

        Twig__V1__TransitionBatch m;
        actor_batch_to_msg(&m, b, a->run.env, a->id);
        m.source_epoch = epoch;
        ProtobufCMessage *reply = NULL;
        rpc_call_opts o = actor_opts_call(a, 0);
        int rc = rpc_client_unary(a->ms, &reply, "/twig.v1.ModelServer/AppendReal", &m.base,
                                  &twig__v1__append_real_reply__descriptor, &o);
        Twig__V1__AppendRealReply ack = TWIG__V1__APPEND_REAL_REPLY__INIT;
        if (rc == 0) {
            ack = *(const Twig__V1__AppendRealReply *)reply;
            protobuf_c_message_free_unpacked(reply, NULL);
            if (ack.seq != b->seq || ack.count != (uint32_t)b->count) {
                rc = err_set(TWIG_EPROTO,
                             "AppendReal ack for seq %" PRIu64 " count %u, sent"
                             " seq %" PRIu64 " count %d",
                             ack.seq, ack.count, b->seq, b->count);
            }
        }
        bool stale = false, fenced = false;
        actor_log_info li = {0};
        actor_peer_call(a, ACTOR_PEER_MS, rc);
        if (rc == TWIG_EFENCED) {
            /* the model server forgot this identity (nothing of the batch is stored): ask
             * again and go on as a new identity from what it reports now */
            log_warn("event=identity_fenced source=%s seq=%" PRIu64 " source_epoch=%" PRIu64
                     " detail=\"%s\"",
                     a->id, b->seq, epoch, err_msg());
            int rs = actor_log_status(a, &li, NULL, 0);
            actor_peer_call(a, ACTOR_PEER_MS, rs);
            fenced = rs == 0;
            rc = rs == 0 ? rc : rs; /* cannot tell: ask again later */
        } else if ((rc == 0 && ack.duplicate && b->attempts == 1) || rc == -EINVAL) {
            /* a first send found as duplicate, or refused: is our count behind the log's? */
            char why[320];
            snprintf(why, sizeof why, "%s", err_msg());
            int rs = actor_log_status(a, &li, NULL, 0);
            actor_peer_call(a, ACTOR_PEER_MS, rs);
            if (rs == 0 && li.source_seq >= b->seq) {
                stale = true;
            } else if (rc == -EINVAL) {
                err_set(-EINVAL, "%s", why);
                actor_fail(a, rc, "append_refused");
                pthread_mutex_lock(&a->mu);
                break;
            } else if (rs < 0) {
                rc = rs; /* cannot tell: retry the batch later */
            }
        }

        pthread_mutex_lock(&a->mu);
        if (gen != a->resync_gen) {
            continue;
        }
        if (stale || fenced) {
            if (fenced) {
                a->st.fenced++;
            }
            actor_resync_locked(a, fenced ? "fenced" : "stale", b->seq, &li);
            continue;
        }
        if (rc == 0) {
            a->ring_head = (a->ring_head + 1) % a->cfg.max_pending;
            a->ring_n--;
            a->st.acked += (uint64_t)b->count;
            a->st.batches_acked++;
            a->st.duplicates += ack.duplicate ? 1 : 0;
            uint64_t end = ack.first_offset + ack.count;
            if (end > a->st.global_end) {
                a->st.global_end = end;
            }
            log_debug("event=batch_acked seq=%" PRIu64 " count=%u first_offset=%" PRIu64
                      " duplicate=%d",
                      ack.seq, ack.count, ack.first_offset, (int)ack.duplicate);
            failures = 0;
            backoff_reset(&bo);
            pthread_cond_broadcast(&a->cv);
            continue;
        }
        a->st.append_retries++;
        failures++;
        if (failures == 1) {
            log_warn("event=append_retry seq=%" PRIu64 " err=%s detail=\"%s\"", b->seq,
                     err_name(rc), err_msg());
        }
        uint64_t wait = backoff_next(&bo);
        uint64_t end = clock_now_ms() + wait;
        for (uint64_t t = clock_now_ms(); t < end; t = clock_now_ms()) {
            if (atomic_load(&a->stop) && t >= a->flush_deadline_ms) {
                break;
            }
            actor_wait_locked(a, end - t);
        }
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

/* ---- puller: the learner's policy and progress, and our eval reports ---- */

static int actor_report_eval(actor_t *a, const actor_eval_item *it)
{
    Twig__V1__EvalResult q = TWIG__V1__EVAL_RESULT__INIT;
    q.source_id = a->id;
    q.real_steps = it->real_steps;
    q.policy_version = it->policy_version;
    q.episodes = it->episodes;
    q.return_mean = it->mean;
    q.return_std = it->std;
    q.seq = it->seq;
    ProtobufCMessage *reply = NULL;
    rpc_call_opts o = actor_opts_call(a, 0);
    int rc = rpc_client_unary(a->learner, &reply, "/twig.v1.Learner/ReportEval", &q.base,
                              &twig__v1__push_reply__descriptor, &o);
    if (rc == 0) {
        protobuf_c_message_free_unpacked(reply, NULL);
    }
    return rc;
}

static int actor_pull_progress(actor_t *a)
{
    Twig__V1__ProgressRequest q = TWIG__V1__PROGRESS_REQUEST__INIT;
    ProtobufCMessage *reply = NULL;
    rpc_call_opts o = actor_opts_call(a, 0);
    int rc = rpc_client_unary(a->learner, &reply, "/twig.v1.Learner/GetProgress", &q.base,
                              &twig__v1__progress__descriptor, &o);
    if (rc < 0) {
        return rc;
    }
    const Twig__V1__Progress *p = (const Twig__V1__Progress *)reply;
    pthread_mutex_lock(&a->mu);
    a->have_progress = true;
    a->progress = *p; /* scalars only are read */
    a->progress.base.descriptor = NULL;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
    protobuf_c_message_free_unpacked(reply, NULL);
    return 0;
}

/* GetPolicy newer than *have; a newer blob is handed to the stepper (replacing one it has
 * not loaded yet) */
static int actor_pull_policy(actor_t *a, uint64_t *have, int wait_ms)
{
    Twig__V1__GetWeightsRequest q = TWIG__V1__GET_WEIGHTS_REQUEST__INIT;
    q.have_version = *have;
    q.wait_ms = (uint32_t)wait_ms;
    ProtobufCMessage *reply = NULL;
    rpc_call_opts o = actor_opts_call(a, wait_ms);
    int rc = rpc_client_unary(a->learner, &reply, "/twig.v1.Learner/GetPolicy", &q.base,
                              &twig__v1__get_weights_reply__descriptor, &o);
    if (rc < 0) {
        return rc;
    }
    Twig__V1__GetWeightsReply *r = (Twig__V1__GetWeightsReply *)reply;
    if (!r->blob || !policy_version_newer(r->blob->version, *have)) {
        protobuf_c_message_free_unpacked(reply, NULL);
        return 0;
    }
    *have = r->blob->version;
    pthread_mutex_lock(&a->mu);
    Twig__V1__GetWeightsReply *old = a->policy_reply;
    a->policy_reply = r;
    pthread_cond_broadcast(&a->cv); /* a stepper in a pacing wait loads it */
    pthread_mutex_unlock(&a->mu);
    if (old) {
        protobuf_c_message_free_unpacked(&old->base, NULL);
    }
    return 0;
}

static void *actor_puller_main(void *arg)
{
    actor_t *a = arg;
    backoff_t bo;
    actor_backoff_init(&bo, &a->cfg, a->run.seed ^ 0x50554c4cull ^ (uint64_t)a->cfg.index);
    uint64_t have = 0;
    while (!atomic_load(&a->stop)) {
        uint64_t t0 = clock_now_ms();
        int rc = 0;

        /* the oldest eval result waiting for the learner */
        pthread_mutex_lock(&a->mu);
        bool has_eval = a->evalq_n > 0;
        actor_eval_item it = has_eval ? a->evalq[a->evalq_head] : (actor_eval_item){0};
        bool waiting = a->pace_waiting;
        pthread_mutex_unlock(&a->mu);
        if (has_eval) {
            /* retried until taken; a refusal (the learner finds it invalid, or keeps no
             * more evaluations: both for good) drops it */
            int re = actor_report_eval(a, &it);
            if (re == 0 || re == -EINVAL || re == TWIG_EFULL) {
                if (re == 0) {
                    log_info("event=eval_reported seq=%" PRIu64 " real_steps=%" PRIu64
                             " policy_version=%" PRIu64,
                             it.seq, it.real_steps, it.policy_version);
                } else {
                    log_error("event=eval_refused seq=%" PRIu64 " detail=\"%s\"", it.seq,
                              err_msg());
                }
                pthread_mutex_lock(&a->mu);
                a->evalq_head = (a->evalq_head + 1) % ACTOR_EVAL_QUEUE;
                a->evalq_n--;
                a->evals_acked++;
                pthread_cond_broadcast(&a->cv);
                pthread_mutex_unlock(&a->mu);
            } else {
                rc = re;
            }
        }
        if (rc == 0) {
            rc = actor_pull_progress(a);
        }
        if (rc == 0) {
            /* long poll only in async mode: in strict mode a pacing wait must not sit behind
             * it (the period below is a wait the stepper can cut short) */
            bool long_poll = a->run.pacing == RUN_PACING_ASYNC && !waiting;
            rc = actor_pull_policy(a, &have, long_poll ? a->cfg.policy_poll_ms : 0);
        }
        actor_peer_call(a, ACTOR_PEER_LEARNER, rc);

        uint64_t period =
            rc == 0 ? (uint64_t)(waiting ? a->cfg.progress_poll_ms : a->cfg.policy_poll_ms)
                    : backoff_next(&bo);
        if (rc == 0) {
            backoff_reset(&bo);
        }
        uint64_t end = t0 + period;
        pthread_mutex_lock(&a->mu);
        for (uint64_t t = clock_now_ms(); !atomic_load(&a->stop) && t < end; t = clock_now_ms()) {
            if ((a->pace_waiting && !waiting) || (a->evalq_n > 0 && !has_eval && rc == 0)) {
                break; /* pacing started to wait, or an eval arrived: go now */
            }
            actor_wait_locked(a, end - t);
        }
        pthread_mutex_unlock(&a->mu);
    }
    return NULL;
}

/* ---- stepper ---- */

/* load the newest pulled policy, if any (stepper thread) */
static void actor_take_policy(actor_t *a)
{
    pthread_mutex_lock(&a->mu);
    Twig__V1__GetWeightsReply *r = a->policy_reply;
    a->policy_reply = NULL;
    pthread_mutex_unlock(&a->mu);
    if (!r) {
        return;
    }
    int rc = policy_load_blob(&a->pol, r->blob);
    if (rc < 0) {
        log_warn("event=policy_refused version=%" PRIu64 " err=%s detail=\"%s\"", r->blob->version,
                 err_name(rc), err_msg());
    } else {
        pthread_mutex_lock(&a->mu);
        a->st.policy_version = a->pol.version;
        uint64_t loads = ++a->st.policy_loads;
        pthread_mutex_unlock(&a->mu);
        /* the first load is an event; later ones are counted in Stats (policy_loads) */
        if (loads == 1) {
            log_info("event=policy_loaded version=%" PRIu64, a->pol.version);
        } else {
            log_debug("event=policy_loaded version=%" PRIu64, a->pol.version);
        }
    }
    protobuf_c_message_free_unpacked(&r->base, NULL);
}

/* the run's real steps as this actor knows them: the log's end as last acknowledged plus
 * its own steps not acknowledged yet (a->mu held) */
static uint64_t actor_global_locked(const actor_t *a, uint64_t count)
{
    return a->st.global_end + (count - a->st.acked);
}

/* may a step bringing the run to `steps` be taken now? (a->mu held) */
static bool actor_pace_ready_locked(const actor_t *a, uint64_t steps)
{
    uint64_t slack = (uint64_t)a->cfg.push_every * (uint64_t)a->run.n_actors;
    /* the learner's learn_start if it says so, never below the run's init_steps (a learner
     * that reports 0 must not stop the random phase) */
    uint64_t learn_start = a->run.init_steps;
    if (a->have_progress && a->progress.learn_start > learn_start) {
        learn_start = a->progress.learn_start;
    }
    return actor_pace_allows(a->run.pacing, a->run.utd, learn_start, slack, steps, a->have_progress,
                             a->progress.updates);
}

static bool actor_pace_ready(actor_t *a, uint64_t steps)
{
    pthread_mutex_lock(&a->mu);
    bool ok = actor_pace_ready_locked(a, steps);
    pthread_mutex_unlock(&a->mu);
    return ok;
}

/* strict pacing: wait until a step bringing the run to `steps` is allowed. false on stop */
static bool actor_pace_wait(actor_t *a, uint64_t steps)
{
    pthread_mutex_lock(&a->mu);
    uint64_t t0 = 0;
    for (;;) {
        if (actor_pace_ready_locked(a, steps) || atomic_load(&a->stop)) {
            break;
        }
        if (t0 == 0) {
            t0 = clock_now_ms();
            a->pace_waiting = true;
            a->st.pace_waits++;
            pthread_cond_broadcast(&a->cv);
            log_debug("event=pace_wait steps=%" PRIu64 " updates=%" PRIu64, steps,
                      a->progress.updates);
        }
        if (a->policy_reply) {
            /* a policy pulled during the wait is loaded now, not at the first step after it:
             * Stats report the policy the actor will act with */
            pthread_mutex_unlock(&a->mu);
            actor_take_policy(a);
            pthread_mutex_lock(&a->mu);
            continue;
        }
        actor_wait_locked(a, ACTOR_IDLE_WAIT_MS);
    }
    if (t0 != 0) {
        a->pace_waiting = false;
        a->st.pace_wait_s += (double)(clock_now_ms() - t0) / 1000.0;
    }
    pthread_mutex_unlock(&a->mu);
    return !atomic_load(&a->stop);
}

/* queue the filled batch for the pusher (waits while max_pending are queued); false on stop
 * with no room, or when a resync dropped the numbering it was made with */
static bool actor_hand_off(actor_t *a, actor_batch_t *fill, uint64_t gen)
{
    pthread_mutex_lock(&a->mu);
    while (a->ring_n == a->cfg.max_pending && !atomic_load(&a->stop) && gen == a->resync_gen) {
        actor_wait_locked(a, ACTOR_IDLE_WAIT_MS);
    }
    if (a->ring_n == a->cfg.max_pending || gen != a->resync_gen) {
        pthread_mutex_unlock(&a->mu);
        return false;
    }
    int slot = (a->ring_head + a->ring_n) % a->cfg.max_pending;
    actor_batch_t tmp = a->ring[slot];
    a->ring[slot] = *fill;
    *fill = tmp;
    a->ring[slot].seq = a->next_seq++;
    a->ring[slot].attempts = 0;
    a->base += (uint64_t)a->ring[slot].count;
    a->ring_n++;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
    actor_batch_clear(fill, 0);
    return true;
}

static uint64_t actor_episode_seed(const actor_t *a, uint64_t count)
{
    /* distinct per actor and per start point, so a restarted actor gets new episodes */
    return a->run.seed * 1000003ull + (uint64_t)a->cfg.index * 1000000007ull + count;
}

/* eval_episodes deterministic episodes on the eval env; queued for the learner. false on
 * stop (nothing queued) */
static bool actor_evaluate(actor_t *a, uint64_t seq, uint64_t steps)
{
    const env_spec *s = &a->eval_env->spec;
    float *obs = xmalloc((size_t)(2 * s->n_obs + s->n_act) * sizeof(float));
    float *next_obs = obs + s->n_obs;
    float *act = next_obs + s->n_obs;
    rng_t r;
    rng_seed(&r, a->run.seed + a->cfg.eval_seed_offset);
    uint64_t version = a->pol.version;
    double sum = 0, sum2 = 0;
    int n = a->run.eval_episodes;
    uint64_t t0 = clock_now_ms();
    bool stopped = false;
    for (int e = 0; e < n && !stopped; e++) {
        env_reset(a->eval_env, a->run.seed + a->cfg.eval_seed_offset + (uint64_t)e, obs);
        double ret = 0;
        env_step_result res = {.next_obs = next_obs};
        for (int t = 0; t <= s->max_episode_steps; t++) {
            if (version > 0) {
                policy_act(&a->pol, &r, act, obs, 1, true);
            } else {
                policy_act_random(&a->pol, &r, act, 1); /* no policy yet: the random one */
            }
            if (env_step(a->eval_env, act, &res) < 0) {
                TWIG_PANIC("eval env refused the policy's action: %s", err_msg());
            }
            ret += res.reward;
            if (res.terminated || res.truncated) {
                break;
            }
            memcpy(obs, next_obs, (size_t)s->n_obs * sizeof(float));
        }
        sum += ret;
        sum2 += ret * ret;
        stopped = atomic_load(&a->stop) != 0;
    }
    free(obs);
    if (stopped) {
        return false;
    }
    double mean = sum / n;
    double var = sum2 / n - mean * mean;
    double sd = var > 0 ? sqrt(var) : 0;
    log_info("event=eval seq=%" PRIu64 " real_steps=%" PRIu64 " policy_version=%" PRIu64
             " episodes=%d return_mean=%.3f return_std=%.3f wall_ms=%" PRIu64,
             seq, steps, version, n, mean, sd, clock_now_ms() - t0);
    actor_eval_item it = {.seq = seq,
                          .real_steps = steps,
                          .policy_version = version,
                          .episodes = (uint32_t)n,
                          .mean = (float)mean,
                          .std = (float)sd};
    pthread_mutex_lock(&a->mu);
    if (a->evalq_n == ACTOR_EVAL_QUEUE) {
        log_warn("event=eval_dropped seq=%" PRIu64 " reason=queue_full",
                 a->evalq[a->evalq_head].seq);
        a->evalq_head = (a->evalq_head + 1) % ACTOR_EVAL_QUEUE;
        a->evalq_n--;
    }
    a->evalq[(a->evalq_head + a->evalq_n) % ACTOR_EVAL_QUEUE] = it;
    a->evalq_n++;
    a->st.evals++;
    a->st.last_eval_mean = mean;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
    return true;
}

/* learn our count and the log's end from the model server; waits while it is missing */
static bool actor_sync_start(actor_t *a)
{
    backoff_t bo;
    actor_backoff_init(&bo, &a->cfg, a->run.seed ^ 0x53594e43ull ^ (uint64_t)a->cfg.index);
    bool logged = false;
    for (;;) {
        actor_log_info li = {0};
        char env_id[MSG_MAX_ID_LEN + 1];
        int rc = actor_log_status(a, &li, env_id, sizeof env_id);
        actor_peer_call(a, ACTOR_PEER_MS, rc);
        uint64_t end = li.end, seq = li.source_seq, stored = li.source_transitions;
        if (rc == 0) {
            if (env_id[0] && strcmp(env_id, a->run.env) != 0) {
                err_set(TWIG_EMISMATCH, "the model server's log holds env '%s', this run is '%s'",
                        env_id, a->run.env);
                actor_fail(a, TWIG_EMISMATCH, "env_mismatch");
                return false;
            }
            if (stored > a->share) {
                err_set(TWIG_EMISMATCH,
                        "the log holds %" PRIu64 " steps of %s, more than its"
                        " share %" PRIu64 " (n_actors or real_steps changed?)",
                        stored, a->id, a->share);
                actor_fail(a, TWIG_EMISMATCH, "share_exceeded");
                return false;
            }
            pthread_mutex_lock(&a->mu);
            a->base = stored;
            a->next_seq = seq + 1;
            a->epoch = li.source_epoch;
            a->st.source_epoch = li.source_epoch;
            a->st.steps = stored;
            a->st.acked = stored;
            a->st.global_end = end;
            pthread_mutex_unlock(&a->mu);
            log_info("event=synced source=%s stored=%" PRIu64 " last_seq=%" PRIu64 " share=%" PRIu64
                     " log_end=%" PRIu64 " source_epoch=%" PRIu64,
                     a->id, stored, seq, a->share, end, li.source_epoch);
            return true;
        }
        if (!logged) {
            log_warn("event=waiting_for_modelserver addr=%s err=%s detail=\"%s\"",
                     a->run.modelserver_addr, err_name(rc), err_msg());
            logged = true;
        }
        if (actor_pause(a, backoff_next(&bo))) {
            return false;
        }
    }
}

/* after the share: wait for every ack; the evaluating actor then waits for the whole budget
 * in the log, runs the final evaluation and waits for the learner to take it */
static void actor_finish(actor_t *a)
{
    pthread_mutex_lock(&a->mu);
    while (a->ring_n > 0 && !atomic_load(&a->stop)) {
        actor_wait_locked(a, ACTOR_IDLE_WAIT_MS);
    }
    pthread_mutex_unlock(&a->mu);
    if (atomic_load(&a->stop)) {
        return;
    }
    log_info("event=share_stored steps=%" PRIu64, a->share);
    if (a->evaluates) {
        backoff_t bo;
        actor_backoff_init(&bo, &a->cfg, a->run.seed ^ 0x46494eull);
        uint64_t end = 0;
        for (;;) {
            pthread_mutex_lock(&a->mu);
            end = a->st.global_end;
            pthread_mutex_unlock(&a->mu);
            if (end >= a->run.real_steps) {
                break;
            }
            actor_log_info li = {0};
            int rc = actor_log_status(a, &li, NULL, 0);
            actor_peer_call(a, ACTOR_PEER_MS, rc);
            end = li.end;
            if (rc == 0) {
                pthread_mutex_lock(&a->mu);
                if (end > a->st.global_end) {
                    a->st.global_end = end;
                }
                pthread_mutex_unlock(&a->mu);
                if (end >= a->run.real_steps) {
                    break;
                }
            }
            if (actor_pause(a, backoff_next(&bo))) {
                return;
            }
        }
        actor_take_policy(a);
        if (!actor_evaluate(a, a->run.real_steps, end)) {
            return;
        }
        pthread_mutex_lock(&a->mu);
        while (a->evalq_n > 0 && !atomic_load(&a->stop)) {
            actor_wait_locked(a, ACTOR_IDLE_WAIT_MS);
        }
        pthread_mutex_unlock(&a->mu);
        if (atomic_load(&a->stop)) {
            return;
        }
    }
    pthread_mutex_lock(&a->mu);
    a->st.done = 1;
    pthread_mutex_unlock(&a->mu);
    log_info("event=done steps=%" PRIu64 " exit=%d", a->share, (int)a->cfg.exit_when_done);
    if (a->cfg.exit_when_done) {
        uv_async_send(&a->wake);
    }
}

static void actor_record_episode(actor_t *a, double ret, int len, uint64_t count)
{
    pthread_mutex_lock(&a->mu);
    actor_stats *st = &a->st;
    int slot = (int)(st->episodes % 10);
    st->return_sum_10 += ret - (st->episodes >= 10 ? st->returns_10[slot] : 0);
    st->returns_10[slot] = ret;
    st->episodes++;
    st->last_return = ret;
    uint64_t episodes = st->episodes;
    pthread_mutex_unlock(&a->mu);
    log_info("event=episode n=%" PRIu64 " return=%.3f length=%d steps=%" PRIu64, episodes, ret, len,
             count);
}

static void *actor_stepper_main(void *arg)
{
    actor_t *a = arg;
    const env_spec *s = &a->env->spec;
    float *obs = xmalloc((size_t)(2 * s->n_obs + s->n_act) * sizeof(float));
    float *next_obs = obs + s->n_obs;
    float *act = next_obs + s->n_obs;
    actor_batch_t fill;
    actor_batch_init(&fill, a->cfg.push_every, s->n_obs, s->n_act);
    actor_batch_clear(&fill, 0);

    if (!actor_sync_start(a)) {
        goto out;
    }
    pthread_mutex_lock(&a->mu);
    uint64_t count = a->base; /* own steps taken: stored, queued or in fill */
    uint64_t gen = a->resync_gen;
    /* a restart (or twig run --resume) repeats the newest point already passed: its report
     * may have been lost with the stop, and a repeat the learner holds is stored once */
    uint64_t next_eval = actor_start_eval(a->st.global_end, a->run.init_steps,
                                          (uint64_t)a->run.eval_every);
    pthread_mutex_unlock(&a->mu);
    rng_seed(&a->rng, a->run.seed * 0x9E3779B97F4A7C15ull ^ ((uint64_t)a->cfg.index << 40) ^ count);

    /* the rate cap: the next real step is due period_ms after the previous one (no bursts
     * to catch up after a pacing wait) */
    const double period_ms = a->cfg.steps_per_s > 0 ? 1000.0 / a->cfg.steps_per_s : 0.0;
    double next_due_ms = 0.0;
    bool new_episode = true;
    double ep_ret = 0;
    int ep_len = 0;
    bool warned_no_policy = false;
    while (!atomic_load(&a->stop)) {
        actor_take_policy(a);
        pthread_mutex_lock(&a->mu);
        if (gen != a->resync_gen) {
            /* the pusher renumbered from the server: our unsent steps are dropped */
            gen = a->resync_gen;
            count = a->base;
            actor_batch_clear(&fill, 0);
            new_episode = true;
        }
        uint64_t global = actor_global_locked(a, count);
        pthread_mutex_unlock(&a->mu);

        if (a->evaluates && global >= next_eval) {
            if (next_eval < a->run.real_steps && !actor_evaluate(a, next_eval, global)) {
                break;
            }
            next_eval = actor_next_eval(global, (uint64_t)a->run.eval_every);
            continue;
        }
        if (count >= a->share) {
            break;
        }
        if (new_episode) {
            env_reset(a->env, actor_episode_seed(a, count), obs);
            new_episode = false;
            ep_ret = 0;
            ep_len = 0;
        }
        if (!actor_pace_ready(a, global + 1)) {
            /* about to wait for the learner: let it see every step we took first */
            if (fill.count > 0) {
                actor_hand_off(a, &fill, gen);
                continue;
            }
            if (!actor_pace_wait(a, global + 1)) {
                break;
            }
        }

        /* act: random for our share of init_steps, then the newest policy */
        uint64_t version = 0;
        if (count >= a->init_share && a->pol.version > 0) {
            policy_act(&a->pol, &a->rng, act, obs, 1, false);
            version = a->pol.version;
        } else {
            if (count >= a->init_share && !warned_no_policy) {
                log_info("event=no_policy_yet steps=%" PRIu64 " acting=random", count);
                warned_no_policy = true;
            }
            policy_act_random(&a->pol, &a->rng, act, 1);
        }
        if (fill.count > 0 && version != fill.policy_version) {
            if (!actor_hand_off(a, &fill, gen)) {
                continue; /* stop, or a resync: the loop's top sorts it out */
            }
        }
        if (fill.count == 0) {
            fill.policy_version = version;
        }

        if (period_ms > 0) {
            double now = (double)clock_now_ms();
            if (next_due_ms > now) {
                if (actor_pause(a, (uint64_t)ceil(next_due_ms - now))) {
                    break;
                }
                now = next_due_ms; /* on schedule: no drift from the pause's rounding */
            }
            next_due_ms = now + period_ms;
        }
        env_step_result res = {.next_obs = next_obs};
        if (env_step(a->env, act, &res) < 0) {
            TWIG_PANIC("env refused the actor's action: %s", err_msg());
        }
        actor_batch_add(&fill, obs, act, res.reward, next_obs, res.terminated, res.truncated);
        count++;
        ep_ret += res.reward;
        ep_len++;
        pthread_mutex_lock(&a->mu);
        if (gen == a->resync_gen) {
            a->st.steps = count;
        }
        pthread_mutex_unlock(&a->mu);
        if (res.terminated || res.truncated) {
            actor_record_episode(a, ep_ret, ep_len, count);
            new_episode = true;
        } else {
            memcpy(obs, next_obs, (size_t)s->n_obs * sizeof(float));
        }
        if (fill.count == fill.cap || count == a->share) {
            actor_hand_off(a, &fill, gen); /* on failure the loop's top sorts it out */
        }
    }
    if (atomic_load(&a->stop)) {
        /* SIGTERM: hand the partial batch to the pusher if there is room */
        if (fill.count > 0) {
            actor_hand_off(a, &fill, gen);
        }
    } else if (count >= a->share) {
        actor_finish(a);
    }
out:
    pthread_mutex_lock(&a->mu);
    a->stepper_done = true;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
    actor_batch_free(&fill);
    free(obs);
    return NULL;
}

/* ---- health + Stats ---- */

/* the figures of GetStats and /metrics (metrics_collect_fn) */
static int actor_collect_stats(stats_kv *out, int max, void *app)
{
    actor_t *a = app;
    pthread_mutex_lock(&a->mu);
    actor_stats st = a->st;
    int pending = a->ring_n;
    int evals_waiting = a->evalq_n;
    uint64_t evals_reported = a->evals_acked;
    int ready = a->ready_state == 1;
    pthread_mutex_unlock(&a->mu);
    uint64_t recent = st.episodes < 10 ? st.episodes : 10;
    const stats_kv v[] = {
        {"steps", (double)(st.steps)},
        {"acked", (double)(st.acked)},
        {"share", (double)(a->share)},
        {"log_end", (double)(st.global_end)},
        {"episodes", (double)(st.episodes)},
        {"episode_return_last", (double)(st.last_return)},
        {"episode_return_mean10", (double)(recent ? st.return_sum_10 / (double)recent : 0.0)},
        {"batches_acked", (double)(st.batches_acked)},
        {"batches_pending", (double)(pending)},
        {"append_retries", (double)(st.append_retries)},
        {"duplicates", (double)(st.duplicates)},
        {"policy_version", (double)(st.policy_version)},
        {"policy_loads", (double)(st.policy_loads)},
        {"evals", (double)(st.evals)},
        {"evals_waiting", (double)(evals_waiting)},
        {"evals_reported", (double)(evals_reported)},
        {"eval_return_last", (double)(st.last_eval_mean)},
        {"pace_waits", (double)(st.pace_waits)},
        {"pace_wait_s", (double)(st.pace_wait_s)},
        {"done", (double)(st.done)},
        {"fenced", (double)(st.fenced)},
        {"source_epoch", (double)(st.source_epoch)},
        {"ready", (double)(ready)},
    };
    return stats_copy(out, max, v, STATS_COUNT(v));
}

static int actor_on_stats(rpc_call_t *call, const ProtobufCMessage *msg, void *app)
{
    (void)msg;
    stats_kv v[STATS_MAX];
    stats_reply(call, "actor", v, actor_collect_stats(v, STATS_MAX, app));
    return 0;
}

/* /metrics (common/rpc/metrics.h): one row a series, over the Stats keys above */
#define C METRICS_COUNTER
#define G METRICS_GAUGE
static const metrics_series actor_series[] = {
    {"twig_actor_steps_total", C, "real environment steps taken", "steps"},
    {"twig_actor_acked_steps_total", C, "real steps the model server has acknowledged", "acked"},
    {"twig_actor_share_steps", G, "this actor's share of the real-step budget", "share"},
    {"twig_actor_log_end", G, "the model server's log end at the last append", "log_end"},
    {"twig_actor_episodes_total", C, "episodes finished", "episodes"},
    {"twig_actor_episode_return_last", G, "return of the last finished episode",
     "episode_return_last"},
    {"twig_actor_episode_return_mean10", G, "mean return of the last 10 episodes",
     "episode_return_mean10"},
    {"twig_actor_batches_pending", G, "append batches waiting to be sent", "batches_pending"},
    {"twig_actor_append_retries_total", C, "appends sent again after a failure",
     "append_retries"},
    {"twig_actor_duplicates_total", C, "appends the log already had (retries)", "duplicates"},
    {"twig_actor_policy_version", G, "policy version the actor acts with", "policy_version"},
    {"twig_actor_evals_total", C, "evaluations run", "evals"},
    {"twig_actor_eval_return_last", G, "mean return of the last evaluation", "eval_return_last"},
    {"twig_actor_pace_wait_seconds_total", C, "time stepping waited for the learner (pacing)",
     "pace_wait_s"},
    {"twig_actor_done", G, "1 once the actor has taken its share", "done"},
    {"twig_actor_ready", G, "1 while the actor is ready (both peers answered)", "ready"},
};
#undef C
#undef G

static const rpc_method actor_methods[] = {
    {"/twig.v1.Stats/GetStats", &twig__v1__stats_request__descriptor, actor_on_stats,
     RPC_KIND_UNARY, RPC_RUN_ON_CQ},
};

/* ---- lifetime ---- */


static void actor_on_close(uv_handle_t *h)
{
    (void)h;
}

static void actor_shutdown(actor_t *a)
{
    if (a->shutting_down) {
        return;
    }
    a->shutting_down = true;
    log_info("event=shutdown");
    pthread_mutex_lock(&a->mu);
    a->flush_deadline_ms = clock_now_ms() + (uint64_t)a->cfg.flush_ms;
    atomic_store(&a->stop, 1);
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
    /* the threads end within a call's deadline (the pusher: flush_ms more) */
    pthread_t *th[3] = {&a->stepper, &a->pusher, &a->puller};
    for (int i = 0; i < a->threads_started; i++) {
        pthread_join(*th[i], NULL);
    }
    a->threads_started = 0;
    pthread_mutex_lock(&a->mu);
    int pending = a->ring_n;
    pthread_mutex_unlock(&a->mu);
    log_info("event=threads_stopped unacked_batches=%d", pending);
    if (a->srv) {
        rpc_server_shutdown(a->srv, ACTOR_GRACE_MS);
    }
    daemon_signals_close(&a->signals);
    uv_close((uv_handle_t *)&a->wake, actor_on_close);
}

static void actor_on_stop(void *a)
{
    actor_shutdown(a);
}

static void actor_on_wake(uv_async_t *h)
{
    actor_shutdown(h->data);
}

_Static_assert(ACTOR_ID_MAX <= MSG_MAX_ID_LEN, "an actor id is a source id");

int actor_opts_check(const void *cfg_, const void *run_)
{
    const actor_cfg *cfg = cfg_;
    const run_cfg *run = run_;
    if (cfg->index >= run->n_actors) {
        return err_set(-EINVAL, "actor.index (%d) must be below n_actors (%d)", cfg->index,
                       run->n_actors);
    }
    if (cfg->eval_index >= run->n_actors) {
        return err_set(-EINVAL, "actor.eval_index (%d) must be below n_actors (%d) or -1",
                       cfg->eval_index, run->n_actors);
    }
    if (actor_share(run->real_steps, cfg->index, run->n_actors) == 0) {
        return err_set(-EINVAL, "real_steps (%" PRIu64 ") leaves actor %d of %d no steps",
                       run->real_steps, cfg->index, run->n_actors);
    }
    if (cfg->id[0] && msg_check_source_id("actor.id", cfg->id) < 0) {
        return -EINVAL;
    }
    return env_check_id(run->env);
}

int actor_init(actor_t *a, const run_cfg *run, const actor_cfg *cfg)
{
    memset(a, 0, sizeof *a);
    a->run = *run;
    a->cfg = *cfg;
    pthread_mutex_init(&a->mu, NULL);
    clock_cond_init(&a->cv);
    atomic_init(&a->stop, 0);

    a->peer_up[ACTOR_PEER_MS] = a->peer_up[ACTOR_PEER_LEARNER] = -1;
    a->ready_state = -1;
    int rc = actor_opts_check(cfg, run);
    if (rc < 0) {
        return rc;
    }
    if (cfg->id[0]) {
        snprintf(a->id, sizeof a->id, "%s", cfg->id);
    } else {
        snprintf(a->id, sizeof a->id, "actor-%d", cfg->index);
    }
    a->share = actor_share(run->real_steps, cfg->index, run->n_actors);
    a->init_share = actor_share(run->init_steps, cfg->index, run->n_actors);
    a->evaluates = cfg->eval_index == cfg->index;

    rc = env_make(&a->env, run->env);
    if (rc == 0) {
        rc = env_make(&a->eval_env, run->env);
    }
    if (rc < 0) {
        return rc;
    }
    const env_spec *sp = &a->env->spec;
    policy_shape shape = {sp->n_obs, sp->n_act, run->hidden, sp->act_low, sp->act_high};
    rc = policy_init(&a->pol, &shape, 1);
    if (rc < 0) {
        return rc;
    }
    a->ring = xcalloc((size_t)cfg->max_pending, sizeof *a->ring);
    for (int i = 0; i < cfg->max_pending; i++) {
        actor_batch_init(&a->ring[i], cfg->push_every, a->env->spec.n_obs, a->env->spec.n_act);
    }

    rpc_tls tls = rpc_tls_of_run(run);
    rpc_client_cfg cc = {.seed = run->seed ^ (uint64_t)cfg->index, .tls = &tls};
    rc = rpc_client_init(&a->ms, run->modelserver_addr, &cc);
    if (rc == 0) {
        rc = rpc_client_init(&a->learner, run->learner_addr, &cc);
    }
    if (rc < 0) {
        return rc;
    }

    rc = uv_loop_init(&a->loop);
    if (rc < 0) {
        return err_set(rc, "uv_loop_init: %s", uv_strerror(rc));
    }
    a->loop_ready = 1;
    daemon_signals_start(&a->signals, &a->loop, actor_on_stop, a);
    uv_async_init(&a->loop, &a->wake, actor_on_wake);
    a->wake.data = a;

    rpc_server_cfg sc = {.listen = cfg->listen, .loop = &a->loop, .app = a, .tls = &tls};
    rc = rpc_server_init(&a->srv, &sc, actor_methods,
                         sizeof actor_methods / sizeof actor_methods[0]);
    if (rc < 0) {
        return rc;
    }
    rpc_server_set_ready(a->srv, false); /* until both peers answered */
    rc = rpc_server_start(a->srv);
    if (rc < 0) {
        return rc;
    }
    a->port = rpc_server_port(a->srv);
    if (cfg->port_file[0]) {
        rc = portfile_write(cfg->port_file, a->port);
        if (rc < 0) {
            return rc;
        }
    }
    metrics_cfg mcfg = {.listen = cfg->metrics_listen, .series = actor_series,
                        .n_series = STATS_COUNT(actor_series), .collect = actor_collect_stats,
                        .app = a, .srv = a->srv, .clients = {a->ms, a->learner}};
    rc = metrics_init(&a->metrics, &mcfg);
    if (rc < 0) {
        return rc;
    }
    log_info("event=serving port=%d id=%s env=%s share=%" PRIu64 " init_share=%" PRIu64
             " pacing=%s evaluates=%d modelserver=%s learner=%s",
             a->port, a->id, run->env, a->share, a->init_share,
             run->pacing == RUN_PACING_STRICT ? "strict" : "async", (int)a->evaluates,
             run->modelserver_addr, run->learner_addr);
    return 0;
}

int actor_run(actor_t *a)
{
    void *(*fns[3])(void *) = {actor_stepper_main, actor_pusher_main, actor_puller_main};
    pthread_t *th[3] = {&a->stepper, &a->pusher, &a->puller};
    for (int i = 0; i < 3; i++) {
        int rc = pthread_create(th[i], NULL, fns[i], a);
        if (rc != 0) {
            err_set(-rc, "pthread_create: %s", strerror(rc));
            a->fatal = -rc;
            actor_shutdown(a);
            break;
        }
        a->threads_started++;
    }
    uv_run(&a->loop, UV_RUN_DEFAULT);
    return a->fatal;
}

void actor_free(actor_t *a)
{
    metrics_free(&a->metrics);   /* first: a scrape reads what the rest releases */
    if (a->threads_started > 0 || (a->loop_ready && !a->shutting_down)) {
        /* a failed init or run: stop what was started */
        if (a->loop_ready && !a->shutting_down) {
            actor_shutdown(a);
            uv_run(&a->loop, UV_RUN_DEFAULT);
        }
    }
    rpc_server_free(a->srv);
    a->srv = NULL;
    if (a->loop_ready) {
        uv_run(&a->loop, UV_RUN_NOWAIT);
        uv_loop_close(&a->loop);
        a->loop_ready = 0;
    }
    rpc_client_free(a->ms);
    rpc_client_free(a->learner);
    a->ms = a->learner = NULL;
    if (a->policy_reply) {
        protobuf_c_message_free_unpacked(&a->policy_reply->base, NULL);
        a->policy_reply = NULL;
    }
    if (a->ring) {
        for (int i = 0; i < a->cfg.max_pending; i++) {
            actor_batch_free(&a->ring[i]);
        }
        free(a->ring);
        a->ring = NULL;
    }
    policy_free(&a->pol);
    env_free(a->env);
    env_free(a->eval_env);
    a->env = a->eval_env = NULL;
    pthread_cond_destroy(&a->cv);
    pthread_mutex_destroy(&a->mu);
}
