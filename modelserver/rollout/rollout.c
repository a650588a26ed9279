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
#include "common/rpc/member.h"
#include "common/rpc/msg.h"
#include "common/rpc/tls_run.h"
#include "common/base/netaddr.h"
#include "common/nn/nn_gemm.h"

#define P_MODEL "/twig.v1.ModelServer/GetModel"
#define P_PUSH "/twig.v1.Learner/PushSynthetic"
#define P_POLICY "/twig.v1.Learner/GetPolicy"
#define P_CHUNK "/twig.v1.Learner/TakeChunk"
#define P_JOIN "/twig.v1.Membership/Join"
#define P_RENEW "/twig.v1.Membership/Renew"
#define P_LEAVE "/twig.v1.Membership/Leave"
#define ROLLOUT_LEAVE_DEADLINE_MS 1000 /* a Leave at shutdown waits at most this long */
#define ROLLOUT_POLICY_EVERY_S 0.5 /* GetPolicy at most this often */
#define ROLLOUT_RATE_WINDOW_S 2.0  /* samples_per_s is measured over about this long */
#define ROLLOUT_BACKOFF_MS 50      /* first wait after a failed call */

_Static_assert(ROLLOUT_ID_MAX <= LEASE_NAME_MAX, "a worker id is a member name");
_Static_assert(sizeof(((rollout_t *)0)->source_id) >= MEMBER_SOURCE_MAX + 1,
               "the source id buffer holds <id>@m<16 hex digits>");


#define C(field) offsetof(rollout_cfg, field)
const config_opt rollout_opts[] = {
    {"id", CFG_STRING, C(id), "rollout-0", 1, ROLLOUT_ID_MAX,
     "worker name (identical replicas may share it); the learner sees source_id "
     "<id>@m<member id>", NULL},
    {"index", CFG_INT, C(index), "0", 0, 255,
     "salt of this worker's seeds only (pacing needs no index: members take chunks)", NULL},
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

/* ---- membership (docs/design.md "Membership") ---- */

/* a refusal no retry mends: another run, another protocol version, a bad identity. The
 * worker stops (exit 1) with the learner's words */
static void member_fatal(rollout_t *r, int rc)
{
    log_error("event=join_refused learner=%s run_id=%s err=%s detail=\"%s\"",
              r->run.learner_addr, r->run.run_id, err_name(rc), err_msg());
    r->fatal = rc;
    rollout_stop(r);
    kill(getpid(), SIGTERM); /* the loop's shutdown, as a signal would start it */
}

/* Membership/Join: a member id, its lease's ttl, its push identity and that identity's
 * epoch; seqs from 1, no chunk. 0 or < 0 (backed off already; fatal refusals stop) */
static int member_join(rollout_t *r)
{
    Twig__V1__JoinRequest q = TWIG__V1__JOIN_REQUEST__INIT;
    q.run_id = r->run.run_id;
    q.protocol_version = MSG_PROTOCOL_VERSION;
    q.role = (char *)MEMBER_ROLE_ROLLOUT;
    q.identity = r->cfg.id;
    ProtobufCMessage *m = NULL;
    /* not retried inside the call: a Join whose reply was lost would leave a second lease
     * (harmless, it expires unused, but counted) */
    rpc_call_opts o = {.deadline_ms = r->cfg.deadline_ms};
    int rc = rpc_client_unary(r->learner, &m, P_JOIN, &q.base, &twig__v1__join_reply__descriptor,
                              &o);
    if (rc == TWIG_EMISMATCH || rc == TWIG_EVERSION || rc == -EINVAL) {
        member_fatal(r, rc);
        return rc;
    }
    if (rc < 0) {
        peer_failed(r, &r->ln_peer, rc); /* missing, or a full table: retry later */
        return rc;
    }
    peer_ok(r, &r->ln_peer);
    const Twig__V1__JoinReply *j = (const Twig__V1__JoinReply *)m;
    pthread_mutex_lock(&r->member_mu);
    r->member_id = j->member_id;
    r->ttl_ms = j->ttl_ms ? j->ttl_ms : 1000;
    r->lease_lost = false;
    pthread_mutex_unlock(&r->member_mu);
    snprintf(r->source_id, sizeof r->source_id, "%s", j->source_id);
    r->epoch = j->source_epoch;
    r->seq = 0;
    r->chunk_id = 0;
    protobuf_c_message_free_unpacked(m, NULL);
    pthread_mutex_lock(&r->stats_mu);
    r->stats.identities++;
    r->stats.member_id = r->member_id;
    r->stats.source_epoch = r->epoch;
    pthread_mutex_unlock(&r->stats_mu);
    log_info("event=joined member_id=%" PRIu64 " source_id=%s source_epoch=%" PRIu64
             " ttl_ms=%" PRIu64,
             r->member_id, r->source_id, r->epoch, r->ttl_ms);
    return 0;
}

/* the lease is gone (expired while paused, a learner restart, fenced): drop the member
 * and its chunk; the next step joins again */
static void member_lost(rollout_t *r, const char *why)
{
    log_warn("event=lease_lost member_id=%" PRIu64 " source_id=%s why=%s detail=\"%s\"",
             r->member_id, r->source_id, why, err_msg());
    pthread_mutex_lock(&r->member_mu);
    r->member_id = 0;
    r->lease_lost = false;
    pthread_mutex_unlock(&r->member_mu);
    r->chunk_id = 0;
    r->p_n = 0; /* the piece's unpushed rows: not stored, and no chunk to credit them to */
    r->p_starts = 0;
    pthread_mutex_lock(&r->stats_mu);
    r->stats.chunk_open = 0;
    r->stats.lease_lost++;
    pthread_mutex_unlock(&r->stats_mu);
}

/* a member now (joined, lease not lost). 0 or < 0 */
static int member_ensure(rollout_t *r)
{
    pthread_mutex_lock(&r->member_mu);
    bool lost = r->member_id != 0 && r->lease_lost;
    bool joined = r->member_id != 0;
    pthread_mutex_unlock(&r->member_mu);
    if (lost) {
        err_set(TWIG_ELEASE, "the heartbeat's Renew was refused");
        member_lost(r, "renew_refused");
        joined = false;
    }
    return joined ? 0 : member_join(r);
}

/* Membership/Leave on a clean stop: the learner hands the chunk to the others at once */
static void member_leave(rollout_t *r)
{
    pthread_mutex_lock(&r->member_mu);
    uint64_t id = r->member_id;
    r->member_id = 0;
    pthread_mutex_unlock(&r->member_mu);
    if (id == 0) {
        return;
    }
    Twig__V1__MemberRequest q = TWIG__V1__MEMBER_REQUEST__INIT;
    q.member_id = id;
    ProtobufCMessage *m = NULL;
    rpc_call_opts o = {.deadline_ms = ROLLOUT_LEAVE_DEADLINE_MS};
    int rc = rpc_client_unary(r->learner, &m, P_LEAVE, &q.base,
                              &twig__v1__leave_reply__descriptor, &o);
    if (rc == 0) {
        protobuf_c_message_free_unpacked(m, NULL);
        log_info("event=left member_id=%" PRIu64, id);
    } else {
        log_warn("event=leave_failed member_id=%" PRIu64 " err=%s detail=\"%s\" (the lease "
                 "expires instead)", id, err_name(rc), err_msg());
    }
}

/* the heartbeat thread: Renew every third of the ttl, so a lease outlives long polls and
 * model waits; a refused renewal is left to the worker thread (lease_lost) */
static void *heartbeat_thread(void *arg)
{
    rollout_t *r = arg;
    while (!stopping(r)) {
        pthread_mutex_lock(&r->member_mu);
        uint64_t id = r->lease_lost ? 0 : r->member_id;
        uint64_t every = r->ttl_ms ? r->ttl_ms / 3 : 1000;
        pthread_mutex_unlock(&r->member_mu);
        if (id != 0) {
            Twig__V1__MemberRequest q = TWIG__V1__MEMBER_REQUEST__INIT;
            q.member_id = id;
            ProtobufCMessage *m = NULL;
            rpc_call_opts o = {.deadline_ms = (int)every};
            int rc = rpc_client_unary(r->learner, &m, P_RENEW, &q.base,
                                      &twig__v1__renew_reply__descriptor, &o);
            if (rc == 0) {
                protobuf_c_message_free_unpacked(m, NULL);
            } else if (rc == TWIG_ELEASE) {
                pthread_mutex_lock(&r->member_mu);
                if (r->member_id == id) {
                    r->lease_lost = true;
                }
                pthread_mutex_unlock(&r->member_mu);
            }
        }
        nap(r, every);
    }
    return NULL;
}

/* strict: this member's chunk (Learner/TakeChunk). 1 with a chunk, 0 when there is none
 * now, < 0 on a failed call (backed off) or a lost lease */
static int chunk_take(rollout_t *r)
{
    if (r->chunk_id != 0) {
        return 1;
    }
    Twig__V1__ChunkRequest q = TWIG__V1__CHUNK_REQUEST__INIT;
    q.member_id = r->member_id;
    q.have_real = r->n_real;
    uint64_t steps = (uint64_t)(r->cfg.chunk / r->run.rollouts_per_step);
    q.max_steps = (uint32_t)(steps < 1 ? 1 : steps);
    ProtobufCMessage *m = NULL;
    int rc = call(r, r->learner, &m, P_CHUNK, &q.base, &twig__v1__chunk_reply__descriptor, 0);
    if (rc == TWIG_ELEASE) {
        member_lost(r, "take_chunk_refused");
        return rc;
    }
    if (rc < 0) {
        peer_failed(r, &r->ln_peer, rc);
        return rc;
    }
    peer_ok(r, &r->ln_peer);
    const Twig__V1__ChunkReply *c = (const Twig__V1__ChunkReply *)m;
    int got = 0;
    if (c->chunk_id != 0 && c->step_begin < c->step_end && c->done < c->chunk_branches) {
        r->chunk_id = c->chunk_id;
        r->chunk_begin = c->step_begin;
        r->chunk_end = c->step_end;
        r->chunk_left = c->chunk_branches - c->done;
        got = 1;
        pthread_mutex_lock(&r->stats_mu);
        r->stats.chunk_open = 1;
        pthread_mutex_unlock(&r->stats_mu);
        log_debug("event=chunk chunk_id=%" PRIu64 " steps=%" PRIu64 "..%" PRIu64 " left=%" PRIu64,
                  r->chunk_id, r->chunk_begin, r->chunk_end, r->chunk_left);
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return got;
}

/* ---- pushes ---- */

/* push the buffer (p_n rows), crediting the branches that start in it (p_starts: a branch
 * counts once its first transition is stored) to the chunk (strict), retrying with the same
 * seq until acknowledged. 0; TWIG_ELEASE when the lease is gone (the rows are dropped: the
 * chunk's uncredited remainder is the learner's to hand out again); TWIG_ESHUTDOWN when
 * stopped */
static int push_flush(rollout_t *r)
{
    if (r->p_n == 0) {
        return 0;
    }
    uint64_t branches = r->chunk_id != 0 ? r->p_starts : 0;
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
    m.source_id = r->source_id;
    m.seq = ++r->seq;
    m.source_epoch = r->epoch;
    m.member_id = r->member_id;
    m.chunk_id = r->chunk_id;
    m.chunk_branches = branches;
    for (;;) {
        ProtobufCMessage *rep = NULL;
        rpc_call_opts o = {.deadline_ms = r->cfg.deadline_ms, .idempotent = true};
        int rc = rpc_client_unary(r->learner, &rep, P_PUSH, &m.base,
                                  &twig__v1__push_reply__descriptor, &o);
        if (rc == 0) {
            protobuf_c_message_free_unpacked(rep, NULL);
            peer_ok(r, &r->ln_peer);
            double now = clock_now_s();
            pthread_mutex_lock(&r->stats_mu);
            r->stats.transitions += c;
            r->stats.pushes++;
            r->stats.chunk_branches += branches;
            r->chunk_left -= branches;
            if (now - r->rate_t0 >= ROLLOUT_RATE_WINDOW_S) {
                r->stats.samples_per_s =
                    (double)(r->stats.transitions - r->rate_n0) / (now - r->rate_t0);
                r->rate_t0 = now;
                r->rate_n0 = r->stats.transitions;
            }
            pthread_mutex_unlock(&r->stats_mu);
            break;
        }
        if (rc == TWIG_ELEASE || rc == TWIG_EFENCED) {
            /* fencing: this identity may not store anything new. Nothing of the batch was
             * stored; the member joins again and its chunk's remainder is handed out anew */
            pthread_mutex_lock(&r->stats_mu);
            r->stats.push_fenced += rc == TWIG_EFENCED;
            r->stats.push_lease += rc == TWIG_ELEASE;
            pthread_mutex_unlock(&r->stats_mu);
            peer_ok(r, &r->ln_peer);
            if (rc == TWIG_EFENCED) {
                member_leave(r); /* the lease is alive: give its chunk back now */
            }
            member_lost(r, rc == TWIG_EFENCED ? "fenced" : "push_refused");
            return TWIG_ELEASE;
        }
        if (refused(rc)) {
            log_error("event=push_refused seq=%" PRIu64 " count=%zu err=%s detail=\"%s\"", m.seq, c,
                      err_name(rc), err_msg());
            pthread_mutex_lock(&r->stats_mu);
            r->stats.push_refused += c;
            pthread_mutex_unlock(&r->stats_mu);
            if (r->chunk_id != 0) {
                /* the chunk cannot take this credit: start over with what TakeChunk says */
                r->chunk_id = 0;
                r->p_n = 0;
                return rc;
            }
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
    r->p_starts = 0;
    return 0;
}

/* ---- branches ---- */

/* n branches of k steps from uniformly drawn mirrored states, pushed as they fill the
 * buffer; each push credits the branches whose first step it holds (a branch whose first
 * prediction is not finite is not credited, so the chunk gets another). 0, TWIG_ELEASE
 * (lease gone: the piece's unpushed rows dropped) or TWIG_ESHUTDOWN */
static int rollout_piece(rollout_t *r, int n, int k)
{
    const int O = r->n_obs, A = r->n_act;
    for (int i = 0; i < n; i++) {
        uint32_t row = rng_uniform_u32(&r->rng, (uint32_t)r->n_real);
        memcpy(r->cur + (size_t)i * O, r->real_obs + (size_t)row * O, (size_t)O * sizeof(float));
    }
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
                int rc = push_flush(r);
                if (rc < 0) {
                    return rc;
                }
            }
            r->p_starts += step == 0;
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
    return push_flush(r);
}

/* ---- the worker ---- */

/* one unit of work. 0, or < 0 after a failed call to a peer (backed off already) */
static int rollout_step(rollout_t *r)
{
    rollout_peer *ms = &r->ms_peer;
    int rc = real_mirror_catch_up(&r->mirror);
    if (rc < 0) {
        return rc;
    }
    peer_ok(r, ms); /* it answered: GetModel's backoff starts over too */
    if (r->run.rollouts_per_step == 0) {
        /* no model rollouts in this run: keep the mirror warm, nothing else */
        return mirror_wait(r);
    }
    /* a member as early as can be (its lease is its registration); a missing learner is a
     * wait that the mirror and the model do not share */
    int joined = member_ensure(r);
    if (r->fatal) {
        return joined;
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
    if (joined < 0 && (joined = member_ensure(r)) < 0) {
        return joined; /* nothing is pushed without a lease */
    }
    if (r->run.pacing == RUN_PACING_ASYNC) {
        int k = run_rollout_length(&r->run, r->n_real);
        return rollout_piece(r, r->cfg.chunk, k);
    }

    /* strict: this member's chunk of the quota */
    if ((rc = chunk_take(r)) <= 0) {
        return rc < 0 ? rc : mirror_wait(r); /* none now: wait for real steps */
    }
    uint64_t s0 = r->chunk_begin;
    if (r->n_real < r->chunk_end) {
        return mirror_wait(r); /* an adopted chunk past our mirror: catch up first */
    }
    if (r->model_trained_on < run_model_point(&r->run, s0)) {
        rc = model_refresh(r, r->cfg.wait_ms); /* wait for that point's model */
        if (rc < 0) {
            peer_failed(r, ms, rc);
        }
        return rc;
    }
    int k = run_rollout_length(&r->run, s0);
    uint64_t n = r->chunk_left < (uint64_t)r->cfg.chunk ? r->chunk_left : (uint64_t)r->cfg.chunk;
    rc = rollout_piece(r, (int)n, k);
    if (rc == 0 && r->chunk_id != 0) {
        if (r->chunk_left == 0) {
            r->chunk_id = 0;
            pthread_mutex_lock(&r->stats_mu);
            r->stats.chunk_open = 0;
            r->stats.chunks++;
            r->stats.quota_done = r->chunk_end > r->stats.quota_done ? r->chunk_end
                                                                      : r->stats.quota_done;
            pthread_mutex_unlock(&r->stats_mu);
        }
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
    member_leave(r); /* a clean stop hands the chunk back at once */
    log_info("event=worker_stopped source_id=%s seq=%" PRIu64 " quota_done=%" PRIu64,
             r->source_id, r->seq, r->stats.quota_done);
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
        {"member_id", (double)s.member_id},
        {"lease_lost", (double)s.lease_lost},
        {"push_lease", (double)s.push_lease},
        {"chunks", (double)s.chunks},
        {"chunk_open", (double)s.chunk_open},
        {"chunk_branches", (double)s.chunk_branches},
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
    {"twig_rollout_member_id", MG, "the worker's membership id at the learner (0: none)",
     "member_id"},
    {"twig_rollout_identities_total", MC, "times the worker joined (a lost lease rejoins)",
     "identities"},
    {"twig_rollout_push_lease_refused_total", MC, "pushes refused for an expired lease",
     "push_lease"},
    {"twig_rollout_chunks_total", MC, "quota chunks taken from the learner", "chunks"},
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
    pthread_mutex_init(&r->member_mu, NULL);
    int rc = run_cfg_check(run);
    if (rc < 0 || (rc = rollout_opts_check(cfg, run)) < 0) {
        return rc;
    }
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

    /* seeds: the run's, the index salt and the start time, so identical replicas differ */
    struct timeval tv;
    gettimeofday(&tv, NULL);
    uint64_t start_us = (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
    rng_seed(&r->rng, run->seed * 1000003u + (uint64_t)cfg->index * 7919u + start_us);
    snprintf(r->source_id, sizeof r->source_id, "(not-joined)");

    int cap = cfg->chunk;
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

    rpc_tls tls = rpc_tls_of_run(run);
    rpc_client_cfg cc = {.tls = &tls};
    if ((rc = rpc_client_init(&r->ms, run->modelserver_addr, &cc)) < 0 ||
        (rc = rpc_client_init(&r->learner, run->learner_addr, &cc)) < 0) {
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
    rpc_server_cfg sc = {.listen = cfg->listen, .loop = &r->loop, .app = r, .tls = &tls};
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
    log_info("event=started id=%s run_id=%s index=%d pacing=%s env=%s "
             "modelserver=%s learner=%s port=%d chunk=%d push_batch=%d",
             cfg->id, run->run_id, cfg->index,
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
    if (r->run.rollouts_per_step > 0) {
        rc = pthread_create(&r->hb_thread, NULL, heartbeat_thread, r);
        if (rc != 0) {
            rollout_stop(r);
            return err_set(-rc, "heartbeat thread: %s", strerror(rc));
        }
        r->hb_started = 1;
    }
    uv_run(&r->loop, UV_RUN_DEFAULT); /* until a signal has shut the server down */
    rollout_stop(r);
    pthread_join(r->thread, NULL);
    r->thread_started = 0;
    if (r->hb_started) {
        pthread_join(r->hb_thread, NULL);
        r->hb_started = 0;
    }
    return r->fatal;
}

void rollout_free(rollout_t *r)
{
    metrics_free(&r->metrics);   /* first: a scrape reads what the rest releases */
    rollout_stop(r);
    if (r->thread_started) {
        pthread_join(r->thread, NULL);
    }
    if (r->hb_started) {
        pthread_join(r->hb_thread, NULL);
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
    pthread_mutex_destroy(&r->member_mu);
    stop_flag_destroy(&r->stop);
    memset(r, 0, sizeof *r);
}
