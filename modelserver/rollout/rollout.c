/* rollout.c - twig-rollout: mirror, model, policy, branches, pushes (see rollout.h) */
#include "modelserver/rollout/rollout.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "common/rpc/ensemble_blob.h"
#include "common/base/clock.h"
#include "common/rpc/stats.h"
#include "common/base/portfile.h"
#include "common/base/err.h"
#include "common/base/log.h"
#include "common/base/mem.h"
#include "common/rpc/msg.h"
#include "common/base/netaddr.h"
#include "common/nn/nn_gemm.h"

#define P_MODEL "/twig.v1.ModelServer/GetModel"
#define P_PUSH "/twig.v1.Learner/PushSynthetic"
#define P_POLICY "/twig.v1.Learner/GetPolicy"
#define P_PROGRESS "/twig.v1.Learner/GetProgress"
#define ROLLOUT_POLICY_EVERY_S 0.5 /* GetPolicy at most this often */
#define ROLLOUT_RATE_WINDOW_S 2.0  /* samples_per_s is measured over about this long */
#define ROLLOUT_BACKOFF_MS 50      /* first wait after a failed call */

_Static_assert(ROLLOUT_ID_MAX + 1 + 16 <= MSG_MAX_ID_LEN,
               "<id>@<incarnation in hex> fits a source id");
_Static_assert(sizeof(((rollout_t *)0)->source_id) >= ROLLOUT_ID_MAX + 1 + 16 + 1,
               "the source id buffer holds <id>@<16 hex digits>");


#define C(field) offsetof(rollout_cfg, field)
const config_opt rollout_opts[] = {
    {"id", CFG_STRING, C(id), "rollout-0", 1, ROLLOUT_ID_MAX,
     "worker id; the learner sees source_id <id>@<incarnation>", NULL},
    {"index", CFG_INT, C(index), "0", 0, 255, "this worker's index j of n_rollout", NULL},
    {"listen", CFG_ADDR, C(listen), "127.0.0.1:0", 3, RUN_ADDR_MAX,
     "HOST:PORT for health and Stats (port 0: any free one)", NULL},
    {"port_file", CFG_STRING, C(port_file), "", 0, ROLLOUT_PATH_MAX,
     "write the bound port to this file once serving (atomic rename)", NULL},
    {"metrics_listen", CFG_ADDR, C(metrics_listen), "", 0, RUN_ADDR_MAX,
     "HOST:PORT to serve Prometheus GET /metrics on (port 0: any free one); empty: off "
     "(twig run gives each process one, launcher.metrics_base_port)", NULL},
    {"chunk", CFG_INT, C(chunk), "4096", 1, 1 << 20, "branches generated together", NULL},
    {"push_batch", CFG_INT, C(push_batch), "4096", 1, MSG_BATCH_MAX_COUNT,
     "transitions per PushSynthetic", NULL},
    {"wait_ms", CFG_INT, C(wait_ms), "1000", 1, 60000,
     "long polls for real data and models (bounds the reaction to SIGTERM)", NULL},
    {"deadline_ms", CFG_INT, C(deadline_ms), "10000", 100, 600000,
     "RPC deadline on top of a long poll", NULL},
    {"backoff_max_ms", CFG_INT, C(backoff_max_ms), "2000", 10, 60000,
     "cap of the retry backoff when a peer is missing", NULL},
    {"log_level", CFG_ENUM, C(log_level), "info", 0, 0, "log level", log_level_names},
};
#undef C
const int rollout_n_opts = (int)(sizeof rollout_opts / sizeof rollout_opts[0]);

int rollout_share(int rollouts_per_step, int index, int n_workers)
{
    return rollouts_per_step / n_workers + (index < rollouts_per_step % n_workers ? 1 : 0);
}

static bool stopping(rollout_t *r)
{
    return stop_flag_raised(&r->stop);
}

/* wait ms, ending early on stop */
static void nap(rollout_t *r, uint64_t ms)
{
    stop_flag_wait_ms(&r->stop, ms);
}

/* ready: the model server answers and, when the run has rollouts, the learner too */
static bool ready_now(const rollout_t *r)
{
    return r->ms_peer.up == 1 && (r->run.rollouts_per_step == 0 || r->ln_peer.up == 1);
}

/* the worker saw peer p answer (reached) or not. One line per change: readiness, once it
 * is known (both peers answered, or one did not), with its reason; else the peer's own
 * change */
static void peer_seen(rollout_t *r, rollout_peer *p, bool reached, int rc)
{
    int now = reached ? 1 : 0;
    int was = p->up;
    if (was == now) {
        return;
    }
    p->up = now;
    bool need_ln = r->run.rollouts_per_step > 0;
    int state = ready_now(r) ? 1
                : (r->ms_peer.up == 0 || (need_ln && r->ln_peer.up == 0)) ? 0
                                                                            : -1;
    pthread_mutex_lock(&r->stats_mu);
    bool changed = state != -1 && state != r->ready_state;
    if (changed) {
        r->ready_state = state;
        r->stats.ready = state;
    }
    pthread_mutex_unlock(&r->stats_mu);
    if (changed) {
        rpc_server_set_ready(r->srv, state == 1);
        if (state == 1) {
            log_info("event=ready reason=peers_reached modelserver=%s learner=%s",
                     r->run.modelserver_addr, r->run.learner_addr);
        } else {
            log_warn("event=not_ready reason=%s_unreachable addr=%s err=%s detail=\"%s\"", p->name,
                     p->addr, err_name(rc), err_msg());
        }
    } else if (!reached) {
        log_warn("event=peer_missing peer=%s addr=%s err=%s detail=\"%s\"", p->name, p->addr,
                 err_name(rc), err_msg());
    } else if (was == 0) {
        log_info("event=peer_back peer=%s addr=%s", p->name, p->addr);
    }
}

/* a call to p failed: note it (an unreachable peer), back off (doubling, capped, jittered) */
static void peer_failed(rollout_t *r, rollout_peer *p, int rc)
{
    peer_seen(r, p, !rpc_err_unreachable(rc), rc);
    nap(r, backoff_next(&p->backoff));
}

static void peer_ok(rollout_t *r, rollout_peer *p)
{
    peer_seen(r, p, true, 0);
    backoff_reset(&p->backoff);
}

static int call(rollout_t *r, rpc_client_t *cl, ProtobufCMessage **reply, const char *path,
                const ProtobufCMessage *req, const ProtobufCMessageDescriptor *type, int wait_ms)
{
    rpc_call_opts o = {
        .deadline_ms = wait_ms + r->cfg.deadline_ms, .idempotent = true, .max_attempts = 2};
    return rpc_client_unary(cl, reply, path, req, type, &o);
}

static bool refused(int rc)
{
    return rc == -EINVAL || rc == TWIG_EMISMATCH || rc == TWIG_ETOOBIG || rc == TWIG_EPROTO;
}

/* ---- mirror ---- */

static bool row_finite(const float *x, int n)
{
    for (int i = 0; i < n; i++) {
        if (!isfinite(x[i])) {
            return false;
        }
    }
    return true;
}

/* the mirror's take: the observations of checked rows become start states */
static void mirror_take(void *app, const real_mirror_rows *rows)
{
    rollout_t *r = app;
    if (rows->count == 0) {
        return;
    }
    uint64_t need = r->n_real + rows->count;
    if (need > r->cap_real) {
        /* the log grows for the whole run: double, so copies stay rare */
        uint64_t cap = r->cap_real ? r->cap_real : ROLLOUT_FETCH_ROWS;
        while (cap < need) {
            cap *= 2;
        }
        r->real_obs = xrealloc(r->real_obs, cap * (size_t)r->n_obs * sizeof(float));
        r->cap_real = cap;
    }
    memcpy(r->real_obs + r->n_real * (size_t)r->n_obs, rows->obs,
           (size_t)rows->count * (size_t)r->n_obs * sizeof(float));
    r->n_real = need;
    pthread_mutex_lock(&r->stats_mu);
    r->stats.real_mirrored = r->n_real;
    pthread_mutex_unlock(&r->stats_mu);
}

/* the mirror's peer: the model server answered a FetchReal, or not */
static void mirror_peer(void *app, bool reached, int rc, uint64_t offset)
{
    (void)offset;
    rollout_t *r = app;
    peer_seen(r, &r->ms_peer, reached, rc);
}

/* one long poll for real rows (the mirror noted the peer and backed off on failure): 0 or < 0 */
static int mirror_wait(rollout_t *r)
{
    int rc = real_mirror_step(&r->mirror, r->cfg.wait_ms);
    return rc < 0 ? rc : 0;
}

/* ---- model and policy ---- */

/* GetModel(have our version); loads a newer one. 0 (new or not), or < 0 */
static int model_refresh(rollout_t *r, int wait_ms)
{
    Twig__V1__GetWeightsRequest q = TWIG__V1__GET_WEIGHTS_REQUEST__INIT;
    q.have_version = r->model_version;
    q.wait_ms = (uint32_t)wait_ms;
    ProtobufCMessage *m = NULL;
    int rc =
        call(r, r->ms, &m, P_MODEL, &q.base, &twig__v1__get_weights_reply__descriptor, wait_ms);
    if (rc < 0) {
        return rc;
    }
    Twig__V1__GetWeightsReply *rep = (Twig__V1__GetWeightsReply *)m;
    if (rep->blob) {
        ensemble_t e = {0};
        rc = ensemble_from_blob(&e, rep->blob);
        if (rc == 0 &&
            (e.cfg.n_obs != r->n_obs || e.cfg.n_act != r->n_act || !e.cfg.learn_reward)) {
            rc = err_set(TWIG_EMISMATCH, "model for (%d, %d)%s, the env is (%d, %d)", e.cfg.n_obs,
                         e.cfg.n_act, e.cfg.learn_reward ? "" : " without reward", r->n_obs,
                         r->n_act);
            ensemble_free(&e);
        }
        if (rc == 0) {
            ensemble_work_free(&r->work);
            ensemble_free(&r->ens);
            r->ens = e;
            ensemble_work_init(&r->work, &r->ens, 1024);
            r->ens_ready = 1;
            r->model_version = rep->blob->version;
            r->model_trained_on = rep->blob->trained_on;   /* an integer on the wire */
            pthread_mutex_lock(&r->stats_mu);
            r->stats.model_version = r->model_version;
            r->stats.model_trained_on = r->model_trained_on;
            pthread_mutex_unlock(&r->stats_mu);
            log_info("event=model_loaded version=%" PRIu64 " trained_on=%" PRIu64, r->model_version,
                     r->model_trained_on);
        } else {
            log_error("event=model_refused version=%" PRIu64 " err=%s detail=\"%s\"",
                      rep->blob->version, err_name(rc), err_msg());
            rc = TWIG_EMISMATCH;
        }
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return rc;
}

/* GetPolicy without waiting, at most every ROLLOUT_POLICY_EVERY_S; failures only keep the
 * policy we have (random before the first), and tell whether the learner answers */
static void policy_refresh(rollout_t *r)
{
    double now = clock_now_s();
    if (now - r->policy_checked < ROLLOUT_POLICY_EVERY_S) {
        return;
    }
    r->policy_checked = now;
    Twig__V1__GetWeightsRequest q = TWIG__V1__GET_WEIGHTS_REQUEST__INIT;
    q.have_version = r->pol.version;
    ProtobufCMessage *m = NULL;
    rpc_call_opts o = {.deadline_ms = r->cfg.deadline_ms};
    int rc = rpc_client_unary(r->learner, &m, P_POLICY, &q.base,
                              &twig__v1__get_weights_reply__descriptor, &o);
    peer_seen(r, &r->ln_peer, !rpc_err_unreachable(rc), rc);
    if (rc < 0) {
        log_debug("event=policy_unavailable err=%s detail=\"%s\"", err_name(rc), err_msg());
        return;
    }
    Twig__V1__GetWeightsReply *rep = (Twig__V1__GetWeightsReply *)m;
    if (rep->blob && policy_version_newer(rep->blob->version, r->pol.version)) {
        rc = policy_load_blob(&r->pol, rep->blob);
        if (rc < 0) {
            log_error("event=policy_refused version=%" PRIu64 " err=%s detail=\"%s\"",
                      rep->blob->version, err_name(rc), err_msg());
        } else {
            pthread_mutex_lock(&r->stats_mu);
            r->stats.policy_version = r->pol.version;
            pthread_mutex_unlock(&r->stats_mu);
            log_debug("event=policy_loaded version=%" PRIu64, r->pol.version);
        }
    }
    protobuf_c_message_free_unpacked(m, NULL);
}

/* the learner's Progress: rollout_quota_done and source_epoch. 0 or < 0 */
static int learner_progress(rollout_t *r, uint64_t *quota_done, uint64_t *source_epoch)
{
    Twig__V1__ProgressRequest q = TWIG__V1__PROGRESS_REQUEST__INIT;
    ProtobufCMessage *m = NULL;
    int rc = call(r, r->learner, &m, P_PROGRESS, &q.base, &twig__v1__progress__descriptor, 0);
    if (rc < 0) {
        return rc;
    }
    const Twig__V1__Progress *p = (const Twig__V1__Progress *)m;
    *quota_done = p->rollout_quota_done;
    *source_epoch = p->source_epoch;
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}

/* begin a push identity: a new incarnation (later than any before), seqs from 1, its epoch
 * still to be read */
static void identity_begin(rollout_t *r)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    uint64_t inc = (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
    r->incarnation = inc > r->incarnation ? inc : r->incarnation + 1;
    snprintf(r->source_id, sizeof r->source_id, "%s@%" PRIx64, r->cfg.id, r->incarnation);
    r->seq = 0;
    r->epoch_known = false;
    pthread_mutex_lock(&r->stats_mu);
    r->stats.identities++;
    pthread_mutex_unlock(&r->stats_mu);
}

/* the epoch of the current identity, read once before its first push. 0 or < 0 */
static int identity_epoch(rollout_t *r)
{
    if (r->epoch_known) {
        return 0;
    }
    uint64_t quota_done, epoch;
    int rc = learner_progress(r, &quota_done, &epoch);
    if (rc < 0) {
        return rc;
    }
    r->epoch = epoch;
    r->epoch_known = true;
    pthread_mutex_lock(&r->stats_mu);
    r->stats.source_epoch = epoch;
    pthread_mutex_unlock(&r->stats_mu);
    log_info("event=identity source_id=%s source_epoch=%" PRIu64, r->source_id, epoch);
    return 0;
}

/* strict: where to start, from what the learner has acknowledged. 0 or < 0 */
static int quota_resume(rollout_t *r)
{
    uint64_t done, epoch;
    int rc = learner_progress(r, &done, &epoch);
    if (rc < 0) {
        return rc;
    }
    uint64_t p0 = run_model_next_point(&r->run, 0);
    r->quota_done = done > p0 ? done : p0;
    r->quota_known = 1;
    log_info("event=quota_resumed quota_done=%" PRIu64 " learner_quota_done=%" PRIu64,
             r->quota_done, done);
    return 0;
}

/* ---- pushes ---- */

/* push the buffer (p_n rows) with quota_end, retrying with the same seq until acknowledged.
 * 0, or TWIG_ESHUTDOWN when stopped first */
static int push_flush(rollout_t *r, uint64_t quota_end)
{
    if (r->p_n == 0) {
        return 0;
    }
    size_t c = (size_t)r->p_n, O = (size_t)r->n_obs, A = (size_t)r->n_act;
    Twig__V1__TransitionBatch m = TWIG__V1__TRANSITION_BATCH__INIT;
    m.env_id = r->run.env;
    m.obs_dim = (uint32_t)O;
    m.act_dim = (uint32_t)A;
    m.count = (uint32_t)c;
    m.n_obs = c * O;
    m.obs = r->p_obs;
    m.n_act = c * A;
    m.act = r->p_act;
    m.n_reward = c;
    m.reward = r->p_rew;
    m.n_next_obs = c * O;
    m.next_obs = r->p_next;
    m.n_terminated = c;
    m.terminated = r->p_term;
    m.n_truncated = c;
    m.truncated = r->p_trunc;
    m.model_version = r->model_version;
    m.policy_version = r->pol.version;
    m.quota_end = quota_end;
    m.worker_index = (uint32_t)r->cfg.index;
    m.n_workers = (uint32_t)r->run.n_rollout;
    bool numbered = false;
    for (;;) {
        /* the identity's epoch before its first push; then this batch's seq, kept for its
         * retries */
        int rc = identity_epoch(r);
        if (rc < 0) {
            if (stopping(r)) {
                return TWIG_ESHUTDOWN;
            }
            peer_failed(r, &r->ln_peer, rc);
            continue;
        }
        if (!numbered) {
            m.source_id = r->source_id;
            m.seq = ++r->seq;
            m.source_epoch = r->epoch;
            numbered = true;
        }
        ProtobufCMessage *rep = NULL;
        rpc_call_opts o = {.deadline_ms = r->cfg.deadline_ms, .idempotent = true};
        rc = rpc_client_unary(r->learner, &rep, P_PUSH, &m.base, &twig__v1__push_reply__descriptor,
                              &o);
        if (rc == 0) {
            protobuf_c_message_free_unpacked(rep, NULL);
            peer_ok(r, &r->ln_peer);
            double now = clock_now_s();
            pthread_mutex_lock(&r->stats_mu);
            r->stats.transitions += c;
            r->stats.pushes++;
            if (quota_end > r->stats.quota_done) {
                r->stats.quota_done = quota_end;
            }
            if (now - r->rate_t0 >= ROLLOUT_RATE_WINDOW_S) {
                r->stats.samples_per_s =
                    (double)(r->stats.transitions - r->rate_n0) / (now - r->rate_t0);
                r->rate_t0 = now;
                r->rate_n0 = r->stats.transitions;
            }
            pthread_mutex_unlock(&r->stats_mu);
            break;
        }
        if (rc == TWIG_EFENCED) {
            /* the learner forgot this identity: the batch was not stored; send it again
             * under a new identity */
            log_warn("event=identity_fenced source_id=%s seq=%" PRIu64 " source_epoch=%" PRIu64
                     " detail=\"%s\"",
                     m.source_id, m.seq, m.source_epoch, err_msg());
            pthread_mutex_lock(&r->stats_mu);
            r->stats.push_fenced++;
            pthread_mutex_unlock(&r->stats_mu);
            peer_ok(r, &r->ln_peer);
            identity_begin(r);
            numbered = false;
            continue;
        }
        if (refused(rc)) {
            log_error("event=push_refused seq=%" PRIu64 " count=%zu err=%s detail=\"%s\"", m.seq, c,
                      err_name(rc), err_msg());
            pthread_mutex_lock(&r->stats_mu);
            r->stats.push_refused += c;
            pthread_mutex_unlock(&r->stats_mu);
            break;
        }
        if (stopping(r)) {
            return TWIG_ESHUTDOWN;
        }
        pthread_mutex_lock(&r->stats_mu);
        r->stats.push_retries++;
        pthread_mutex_unlock(&r->stats_mu);
        peer_failed(r, &r->ln_peer, rc); /* same message, same seq, next round */
    }
    r->p_n = 0;
    return 0;
}

/* ---- branches ---- */

/* n branches of k steps from uniformly drawn mirrored states; the last push carries
 * quota_end (earlier ones the quota completed before). 0 or TWIG_ESHUTDOWN */
static int rollout_piece(rollout_t *r, int n, int k, uint64_t quota_end)
{
    const int O = r->n_obs, A = r->n_act;
    for (int i = 0; i < n; i++) {
        uint32_t row = rng_uniform_u32(&r->rng, (uint32_t)r->n_real);
        memcpy(r->cur + (size_t)i * O, r->real_obs + (size_t)row * O, (size_t)O * sizeof(float));
    }
    uint64_t before = r->quota_done;
    uint64_t terminated = 0, dropped = 0;
    int alive = n;
    for (int step = 0; step < k && alive > 0; step++) {
        if (r->pol.version > 0) {
            policy_act(&r->pol, &r->rng, r->act, r->cur, alive, false);
        } else {
            policy_act_random(&r->pol, &r->rng, r->act, alive);
        }
        ensemble_predict(&r->ens, &r->work, &r->rng, r->next, r->rew, NULL, r->cur, r->act, alive,
                         true);
        env_termination(r->env, r->cur, r->act, r->next, r->done, alive);
        for (int i = 0; i < alive; i++) {
            const float *nx = r->next + (size_t)i * O;
            if (!row_finite(nx, O) || !isfinite(r->rew[i])) {
                dropped++;
                r->done[i] = true;
                continue;
            }
            if (r->p_n == r->cfg.push_batch) {
                int rc = push_flush(r, before);
                if (rc < 0) {
                    return rc;
                }
            }
            size_t p = (size_t)r->p_n++;
            memcpy(r->p_obs + p * O, r->cur + (size_t)i * O, (size_t)O * sizeof(float));
            memcpy(r->p_act + p * A, r->act + (size_t)i * A, (size_t)A * sizeof(float));
            memcpy(r->p_next + p * O, nx, (size_t)O * sizeof(float));
            r->p_rew[p] = r->rew[i];
            r->p_term[p] = r->done[i];
            r->p_trunc[p] = 0;
            terminated += r->done[i];
        }
        /* the branches that go on, from their predicted states */
        int j = 0;
        for (int i = 0; i < alive; i++) {
            if (!r->done[i]) {
                memmove(r->cur + (size_t)j * O, r->next + (size_t)i * O, (size_t)O * sizeof(float));
                j++;
            }
        }
        alive = j;
    }
    pthread_mutex_lock(&r->stats_mu);
    r->stats.branches += (uint64_t)n;
    r->stats.terminated += terminated;
    r->stats.dropped_nonfinite += dropped;
    r->stats.k = k;
    pthread_mutex_unlock(&r->stats_mu);
    /* a piece that produced nothing leaves its quota_end to the next push */
    return push_flush(r, quota_end);
}

/* ---- the worker ---- */

/* one unit of work. 0, or < 0 after a failed call to a peer (backed off already) */
static int rollout_step(rollout_t *r)
{
    rollout_peer *ms = &r->ms_peer, *ln = &r->ln_peer;
    int rc = real_mirror_catch_up(&r->mirror);
    if (rc < 0) {
        return rc;
    }
    peer_ok(r, ms); /* it answered: GetModel's backoff starts over too */
    if (r->run.rollouts_per_step == 0) {
        /* no model rollouts in this run: keep the mirror warm, nothing else */
        return mirror_wait(r);
    }
    policy_refresh(r); /* also tells whether the learner answers, model or not */
    if (!r->ens_ready) {
        rc = model_refresh(r, r->cfg.wait_ms);
        if (rc < 0) {
            peer_failed(r, ms, rc);
        }
        return rc;
    }
    if ((rc = model_refresh(r, 0)) < 0) {
        peer_failed(r, ms, rc);
        return rc;
    }
    if (r->n_real == 0) {
        return mirror_wait(r); /* a model but no start states yet: wait for real data */
    }
    if (r->run.pacing == RUN_PACING_ASYNC) {
        int k = run_rollout_length(&r->run, r->n_real);
        r->quota_done = r->n_real;
        return rollout_piece(r, r->cfg.chunk, k, r->n_real);
    }

    /* strict */
    if (!r->quota_known) {
        if ((rc = quota_resume(r)) < 0) {
            peer_failed(r, ln, rc);
            return rc;
        }
        peer_ok(r, ln);
    }
    uint64_t s0 = r->quota_done;
    if (s0 >= r->n_real) {
        return mirror_wait(r); /* wait for real steps */
    }
    if (r->model_trained_on < run_model_point(&r->run, s0)) {
        rc = model_refresh(r, r->cfg.wait_ms); /* wait for that point's model */
        if (rc < 0) {
            peer_failed(r, ms, rc);
        }
        return rc;
    }
    uint64_t el = (uint64_t)r->run.epoch_length;
    uint64_t s_end = r->n_real;
    uint64_t next_point = run_model_next_point(&r->run, s0);
    uint64_t next_epoch = (s0 / el + 1) * el;
    s_end = s_end < next_point ? s_end : next_point;
    s_end = s_end < next_epoch ? s_end : next_epoch;
    uint64_t steps = (uint64_t)(r->cfg.chunk / r->share);
    steps = steps < 1 ? 1 : steps;
    steps = steps < s_end - s0 ? steps : s_end - s0;
    int k = run_rollout_length(&r->run, s0);
    rc = rollout_piece(r, (int)(steps * (uint64_t)r->share), k, s0 + steps);
    if (rc == 0) {
        r->quota_done = s0 + steps;
    }
    return rc;
}

static void *rollout_thread(void *arg)
{
    rollout_t *r = arg;
    nn_gemm_set_threads(1); /* rollouts: one BLAS thread per worker process */
    while (!stopping(r)) {
        rollout_step(r);
    }
    log_info("event=worker_stopped source_id=%s seq=%" PRIu64 " quota_done=%" PRIu64,
             r->source_id, r->seq, r->quota_done);
    return NULL;
}

/* ---- server: health and Stats ---- */

void rollout_get_stats(rollout_t *r, rollout_stats *st)
{
    pthread_mutex_lock(&r->stats_mu);
    double now = clock_now_s(), elapsed = now - r->rate_t0;
    if (elapsed >= 0.05 && (r->stats.samples_per_s == 0 || elapsed >= 2 * ROLLOUT_RATE_WINDOW_S)) {
        /* the first window still running, or no push for a while (the rate decays) */
        r->stats.samples_per_s = (double)(r->stats.transitions - r->rate_n0) / elapsed;
    }
    *st = r->stats;
    pthread_mutex_unlock(&r->stats_mu);
}

/* the figures of GetStats and /metrics (metrics_collect_fn) */
static int rollout_collect_stats(stats_kv *out, int max, void *app)
{
    rollout_t *r = app;
    rollout_stats s;
    rollout_get_stats(r, &s);
    const stats_kv v[] = {
        {"samples_per_s", s.samples_per_s},
        {"transitions", (double)s.transitions},
        {"branches", (double)s.branches},
        {"pushes", (double)s.pushes},
        {"push_retries", (double)s.push_retries},
        {"push_refused", (double)s.push_refused},
        {"terminated", (double)s.terminated},
        {"dropped_nonfinite", (double)s.dropped_nonfinite},
        {"real_mirrored", (double)s.real_mirrored},
        {"model_version", (double)s.model_version},
        {"model_trained_on", (double)s.model_trained_on},
        {"policy_version", (double)s.policy_version},
        {"quota_done", (double)s.quota_done},
        {"k", (double)s.k},
        {"identities", (double)s.identities},
        {"push_fenced", (double)s.push_fenced},
        {"source_epoch", (double)s.source_epoch},
        {"ready", (double)s.ready},
    };
    return stats_copy(out, max, v, STATS_COUNT(v));
}

static int on_stats(rpc_call_t *call, const ProtobufCMessage *msg, void *app)
{
    (void)msg;
    stats_kv v[STATS_MAX];
    stats_reply(call, "rollout", v, rollout_collect_stats(v, STATS_MAX, app));
    return 0;
}

/* /metrics (common/rpc/metrics.h): one row a series, over the Stats keys above */
#define MC METRICS_COUNTER
#define MG METRICS_GAUGE
static const metrics_series rollout_series[] = {
    {"twig_rollout_samples_per_second", MG, "synthetic transitions pushed per second (recent)",
     "samples_per_s"},
    {"twig_rollout_transitions_total", MC, "synthetic transitions pushed to the learner",
     "transitions"},
    {"twig_rollout_branches_total", MC, "model rollout branches started", "branches"},
    {"twig_rollout_pushes_total", MC, "PushSynthetic calls the learner accepted", "pushes"},
    {"twig_rollout_push_retries_total", MC, "pushes sent again after a failure", "push_retries"},
    {"twig_rollout_push_refused_total", MC, "pushes the learner refused", "push_refused"},
    {"twig_rollout_terminated_total", MC, "branches ended by a predicted terminal state",
     "terminated"},
    {"twig_rollout_dropped_nonfinite_total", MC, "branches dropped for a non-finite prediction",
     "dropped_nonfinite"},
    {"twig_rollout_real_mirrored", MG, "real transitions mirrored from the model server",
     "real_mirrored"},
    {"twig_rollout_model_version", MG, "model version the worker rolls out with",
     "model_version"},
    {"twig_rollout_policy_version", MG, "policy version the worker acts with", "policy_version"},
    {"twig_rollout_quota_done", MG, "real steps whose synthetic quota this worker has met",
     "quota_done"},
    {"twig_rollout_horizon_steps", MG, "rollout length k now (MBPO's schedule)", "k"},
    {"twig_rollout_ready", MG, "1 while the worker is ready (peers answered)", "ready"},
};
#undef MC
#undef MG

static const rpc_method rollout_methods[] = {
    {"/twig.v1.Stats/GetStats", &twig__v1__stats_request__descriptor, on_stats, RPC_KIND_UNARY,
     RPC_RUN_ON_CQ},
};

/* ---- lifetime ---- */

static void on_stop(void *app)
{
    rollout_t *r = app;
    rollout_stop(r);
    daemon_signals_close(&r->signals);
    if (r->srv) {
        rpc_server_shutdown(r->srv, 500);
    }
}

int rollout_opts_check(const void *cfg_, const void *run_)
{
    const rollout_cfg *cfg = cfg_;
    const run_cfg *run = run_;
    if (run->n_rollout < 1 || cfg->index >= run->n_rollout) {
        return err_set(-EINVAL, "rollout.index (%d) must be below n_rollout (%d)", cfg->index,
                       run->n_rollout);
    }
    if (msg_check_source_id("rollout.id", cfg->id) < 0) {
        return -EINVAL;
    }
    return env_check_id(run->env);
}

int rollout_init(rollout_t *r, const rollout_cfg *cfg, const run_cfg *run)
{
    memset(r, 0, sizeof *r);
    r->cfg = *cfg;
    r->run = *run;
    stop_flag_init(&r->stop);
    pthread_mutex_init(&r->stats_mu, NULL);
    int rc = run_cfg_check(run);
    if (rc < 0 || (rc = rollout_opts_check(cfg, run)) < 0) {
        return rc;
    }
    r->share = rollout_share(run->rollouts_per_step, cfg->index, run->n_rollout);
    if ((rc = env_make(&r->env, run->env)) < 0) {
        return rc;
    }
    r->n_obs = r->env->spec.n_obs;
    r->n_act = r->env->spec.n_act;
    r->ready_state = -1;
    r->ms_peer = (rollout_peer){.name = "modelserver", .addr = run->modelserver_addr, .up = -1};
    r->ln_peer = (rollout_peer){.name = "learner", .addr = run->learner_addr, .up = -1};
    backoff_init(&r->ms_peer.backoff, ROLLOUT_BACKOFF_MS, (uint64_t)cfg->backoff_max_ms,
                 run->seed ^ 0x4d53ull ^ (uint64_t)cfg->index);
    backoff_init(&r->ln_peer.backoff, ROLLOUT_BACKOFF_MS, (uint64_t)cfg->backoff_max_ms,
                 run->seed ^ 0x4c4eull ^ (uint64_t)cfg->index);

    /* the first identity: a new incarnation per start, so seqs never meet acknowledged ones */
    identity_begin(r);
    rng_seed(&r->rng, run->seed * 1000003u + (uint64_t)cfg->index * 7919u + r->incarnation);

    int cap = cfg->chunk > r->share ? cfg->chunk : r->share;
    size_t O = (size_t)r->n_obs, A = (size_t)r->n_act, B = (size_t)cap;
    size_t P = (size_t)cfg->push_batch;
    const env_spec *sp = &r->env->spec;
    policy_shape shape = {sp->n_obs, sp->n_act, run->hidden, sp->act_low, sp->act_high};
    if ((rc = policy_init(&r->pol, &shape, cap)) < 0) {
        return rc;
    }
    r->cur = xmalloc(B * O * sizeof(float));
    r->next = xmalloc(B * O * sizeof(float));
    r->act = xmalloc(B * A * sizeof(float));
    r->rew = xmalloc(B * sizeof(float));
    r->done = xmalloc(B * sizeof(bool));
    r->p_obs = xmalloc(P * O * sizeof(float));
    r->p_next = xmalloc(P * O * sizeof(float));
    r->p_act = xmalloc(P * A * sizeof(float));
    r->p_rew = xmalloc(P * sizeof(float));
    r->p_term = xmalloc(P * sizeof(int));
    r->p_trunc = xmalloc(P * sizeof(int));

    if ((rc = rpc_client_init(&r->ms, run->modelserver_addr, NULL)) < 0 ||
        (rc = rpc_client_init(&r->learner, run->learner_addr, NULL)) < 0) {
        return rc;
    }
    real_mirror_cfg mc = {
        .client = r->ms,
        .env_id = run->env,
        .n_obs = r->n_obs,
        .n_act = r->n_act,
        .max_count = ROLLOUT_FETCH_ROWS,
        .wait_ms = cfg->wait_ms,
        .deadline_slack_ms = cfg->deadline_ms,
        .backoff_min_ms = ROLLOUT_BACKOFF_MS,
        .backoff_max_ms = (uint64_t)cfg->backoff_max_ms,
        .seed = run->seed ^ 0x524dull ^ (uint64_t)cfg->index, /* "RM" */
        .stop = &r->stop,
        .take = mirror_take,
        .peer = mirror_peer,
        .app = r,
    };
    real_mirror_init(&r->mirror, &mc, 0);

    if ((rc = uv_loop_init(&r->loop)) < 0) {
        return err_set(rc, "uv_loop_init: %s", uv_strerror(rc));
    }
    r->loop_ready = 1;
    daemon_signals_start(&r->signals, &r->loop, on_stop, r);
    rpc_server_cfg sc = {.listen = cfg->listen, .loop = &r->loop, .app = r};
    if ((rc = rpc_server_init(&r->srv, &sc, rollout_methods, 1)) < 0) {
        r->srv = NULL;
        return rc;
    }
    rpc_server_set_ready(r->srv, false); /* until the peers answer */
    if ((rc = rpc_server_start(r->srv)) < 0) {
        return rc;
    }
    r->port = rpc_server_port(r->srv);
    if (cfg->port_file[0] && (rc = portfile_write(cfg->port_file, r->port)) < 0) {
        return rc;
    }
    r->rate_t0 = clock_now_s();
    metrics_cfg mcfg = {.listen = cfg->metrics_listen, .series = rollout_series,
                        .n_series = STATS_COUNT(rollout_series),
                        .collect = rollout_collect_stats, .app = r, .srv = r->srv,
                        .clients = {r->ms, r->learner}};
    if ((rc = metrics_init(&r->metrics, &mcfg)) < 0) {
        return rc;
    }
    log_info("event=started source_id=%s index=%d n_rollout=%d share=%d pacing=%s env=%s "
             "modelserver=%s learner=%s port=%d chunk=%d push_batch=%d",
             r->source_id, cfg->index, run->n_rollout, r->share,
             run->pacing == RUN_PACING_STRICT ? "strict" : "async", run->env, run->modelserver_addr,
             run->learner_addr, r->port, cfg->chunk, cfg->push_batch);
    return 0;
}

void rollout_stop(rollout_t *r)
{
    stop_flag_raise(&r->stop);
}

int rollout_run(rollout_t *r)
{
    int rc = pthread_create(&r->thread, NULL, rollout_thread, r);
    if (rc != 0) {
        return err_set(-rc, "worker thread: %s", strerror(rc));
    }
    r->thread_started = 1;
    uv_run(&r->loop, UV_RUN_DEFAULT); /* until a signal has shut the server down */
    rollout_stop(r);
    pthread_join(r->thread, NULL);
    r->thread_started = 0;
    return 0;
}

void rollout_free(rollout_t *r)
{
    metrics_free(&r->metrics);   /* first: a scrape reads what the rest releases */
    rollout_stop(r);
    if (r->thread_started) {
        pthread_join(r->thread, NULL);
    }
    if (r->loop_ready) {
        daemon_signals_close(&r->signals);
        if (r->srv) {
            rpc_server_shutdown(r->srv, 500);
        }
        uv_run(&r->loop, UV_RUN_DEFAULT);
    }
    rpc_server_free(r->srv);
    if (r->loop_ready) {
        uv_run(&r->loop, UV_RUN_DEFAULT);
        uv_loop_close(&r->loop);
    }
    rpc_client_free(r->ms);
    rpc_client_free(r->learner);
    ensemble_work_free(&r->work);
    ensemble_free(&r->ens);
    policy_free(&r->pol);
    env_free(r->env);
    free(r->real_obs);
    free(r->cur);
    free(r->next);
    free(r->act);
    free(r->rew);
    free(r->done);
    free(r->p_obs);
    free(r->p_next);
    free(r->p_act);
    free(r->p_rew);
    free(r->p_term);
    free(r->p_trunc);
    pthread_mutex_destroy(&r->stats_mu);
    stop_flag_destroy(&r->stop);
    memset(r, 0, sizeof *r);
}
