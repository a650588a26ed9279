/* learner.c - twig-learner's life: options, start-up and restore, the mirror and training
 * threads, publishing, checkpoints, shutdown. The RPC handlers are in learner_rpc.c. */
#include "learner/learner.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/base/atomic_file.h"
#include "common/base/bytes.h"
#include "common/base/clock.h"
#include "common/base/portfile.h"
#include "common/base/crc32c.h"
#include "common/base/err.h"
#include "common/base/log.h"
#include "common/base/mem.h"
#include "common/rpc/msg.h"
#include "common/rpc/tls_run.h"
#include "common/base/netaddr.h"
#include "common/nn/nn_gemm.h"
#include "common/base/ckpt.h"
#include "common/nn/ckpt_policy.h"
#include "learner/learner_int.h"

#define LEARNER_BACKOFF_MIN_MS 50
#define LEARNER_BACKOFF_MAX_MS 2000
#define LEARNER_FETCH_SLACK_MS 3000 /* FetchReal deadline beyond its long poll */
#define LEARNER_MAX_CAPACITY ((uint64_t)1 << 31)
#define LEARNER_VERSION_FILE "policy_version"
#define LEARNER_VERSION_FILE_MAX 64 /* bytes: 20 digits and a newline, with room */


#define L(field) offsetof(learner_cfg, field)
const config_opt learner_opts[] = {
    {"listen", CFG_ADDR, L(listen), "", 0, RUN_ADDR_MAX,
     "HOST:PORT to serve on (port 0: any free one); empty: the run's learner_addr", NULL},
    {"port_file", CFG_STRING, L(port_file), "", 0, LEARNER_PATH_MAX,
     "write the bound port to this file once serving; empty: none", NULL},
    {"metrics_listen", CFG_ADDR, L(metrics_listen), "", 0, RUN_ADDR_MAX,
     "HOST:PORT to serve Prometheus GET /metrics on (port 0: any free one); empty: off "
     "(twig run gives each process one, launcher.metrics_base_port)", NULL},
    {"checkpoint_dir", CFG_STRING, L(checkpoint_dir), "learner-ckpt", 1, LEARNER_PATH_MAX,
     "directory of checkpoints (created if missing); the newest valid one is loaded at start",
     NULL},
    {"checkpoint_every", CFG_INT, L(checkpoint_every), "5000", 0, 1e9,
     "SAC updates between checkpoints; 0: none", NULL},
    {"keep_checkpoints", CFG_INT, L(keep_checkpoints), "3", 1, 1000,
     "checkpoints kept; older ones are removed", NULL},
    {"final_checkpoint", CFG_BOOL, L(final_checkpoint), "true", 0, 1,
     "write a checkpoint on SIGTERM", NULL},
    {"policy_publish_every", CFG_INT, L(policy_publish_every), "100", 1, 1e9,
     "SAC updates between policy versions", NULL},
    {"batch_size", CFG_INT, L(batch_size), "256", 1, 65536, "SAC minibatch", NULL},
    {"lr_actor", CFG_FLOAT, L(lr_actor), "3e-4", 0, 1, "actor learning rate", NULL},
    {"lr_critic", CFG_FLOAT, L(lr_critic), "3e-4", 0, 1, "critic learning rate", NULL},
    {"lr_alpha", CFG_FLOAT, L(lr_alpha), "3e-4", 0, 1, "temperature learning rate", NULL},
    {"gamma", CFG_FLOAT, L(gamma), "0.99", 0, 1, "discount", NULL},
    {"tau", CFG_FLOAT, L(tau), "0.005", 0, 1, "Polyak factor of the target critics", NULL},
    {"real_capacity", CFG_U64, L(real_capacity), "0", 0, 2147483648.0,
     "real replay size; 0: the run's real_steps", NULL},
    {"synthetic_capacity", CFG_U64, L(synthetic_capacity), "0", 0, 2147483648.0,
     "synthetic FIFO size, fixed; 0: MBPO's pool (rollouts x k x retain_epochs, grows with k)",
     NULL},
    {"synthetic_max_mb", CFG_INT, L(synthetic_max_mb), "4096", 1, 1 << 20,
     "cap of the default synthetic FIFO's memory (MiB); an explicit synthetic_capacity is "
     "not capped",
     NULL},
    {"fetch_max", CFG_INT, L(fetch_max), "4096", 1, 65536,
     "real transitions asked per FetchReal call", NULL},
    {"fetch_wait_ms", CFG_INT, L(fetch_wait_ms), "500", 0, 60000,
     "FetchReal long poll at the log's end", NULL},
    {"threads", CFG_INT, L(threads), "1", 1, 256, "OpenBLAS threads for SAC updates", NULL},
    {"grace_ms", CFG_INT, L(grace_ms), "2000", 1, 600000,
     "on SIGTERM, calls in flight get this long to finish", NULL},
    {"log_every", CFG_INT, L(log_every), "1000", 0, 1e9,
     "SAC updates between progress lines; 0: none", NULL},
    {"log_level", CFG_ENUM, L(log_level), "info", 0, 0, "debug, info, warn or error",
     log_level_names},
    {"max_sources", CFG_INT, L(max_sources), "4096", 1, LEARNER_MAX_SOURCES_LIMIT,
     "PushSynthetic sources (source_id) remembered for dedup; every restarted rollout worker "
     "is a new one. A new source beyond this evicts the quietest, see source_quiet_samples",
     NULL},
    {"source_quiet_samples", CFG_U64, L(source_quiet_samples), "1000000", 0, 1e15,
     "synthetic samples accepted from all sources since a source's last push before it may "
     "be evicted for a new one (progress, not time: downtime forgets nothing); while no "
     "source is that quiet, new sources are refused with RESOURCE_EXHAUSTED",
     NULL},
    {"max_members", CFG_INT, L(max_members), "256", 1, 4096,
     "rollout workers holding a membership lease at once (Membership/Join beyond it: "
     "RESOURCE_EXHAUSTED until one leaves or expires)", NULL},
    {"lease_ttl_ms", CFG_INT, L(lease_ttl_ms), "5000", 100, 600000,
     "a rollout worker's lease ends this long after its last renewal (its pushes, chunk "
     "requests or heartbeats, every third of this); its unfinished chunk goes to the others",
     NULL},
};
#undef L
const int learner_n_opts = (int)(sizeof learner_opts / sizeof learner_opts[0]);

_Static_assert(MSG_BATCH_MAX_COUNT <= INT32_MAX, "a push's count converts to int");

int learner_opts_check(const void *cfg, const void *run_)
{
    (void)cfg;
    const run_cfg *run = run_;
    if (run->n_rollout > LEARNER_MAX_WORKERS) {
        return err_set(-EINVAL, "n_rollout %d is above the %d workers the learner keeps",
                       run->n_rollout, LEARNER_MAX_WORKERS);
    }
    return env_check_id(run->env);
}

uint64_t learner_evals_bound(const run_cfg *run)
{
    /* the multiples of eval_every, the final one and the initial policy's at init_steps */
    uint64_t per_actor = run->real_steps / (uint64_t)run->eval_every + 2;
    uint64_t n = per_actor * (uint64_t)run->n_actors;
    return n < LEARNER_EVALS_CAP ? n : LEARNER_EVALS_CAP;
}

/* ---- pacing ---- */

uint64_t learner_quota_done(const learner_t *l)
{
    if (!l->quota_on) {
        return l->real_offset;
    }
    if (!l->quota_known) {
        return 0;
    }
    /* steps between quota_base and the chunks' start (P0: no model before it) count as met
     * only once the first chunk is done, so the first update waits for the first branches,
     * as MBPO never trains on an empty model pool */
    uint64_t done = quota_done(&l->quota);
    return done > l->quota.start ? done : l->quota_base;
}

/* member ids of this life start at the wall clock's microseconds at start-up: above every
 * id an earlier life of the learner handed out unless that life made more joins than it
 * lived microseconds (docs/design.md, "Membership") */
static uint64_t learner_first_member_id(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u + 1;
}

/* a rollout worker's lease ended (mu held): its unfinished chunk goes to the others */
static void learner_member_gone(void *app, const lease *ended, bool left)
{
    learner_t *l = app;
    if (quota_release(&l->quota, ended->id)) {
        log_info("event=chunk_released member_id=%" PRIu64 " why=%s quota_done=%" PRIu64,
                 ended->id, left ? "left" : "expired", learner_quota_done(l));
    }
    pthread_cond_broadcast(&l->cv_train);
}

/* the epoch a new push identity starts with (mu held) */
static uint64_t learner_member_epoch(void *app)
{
    learner_t *l = app;
    return dedup_epoch(&l->push_dedup, l->synthetic_samples);
}

pace_in learner_pace_in(const learner_t *l)
{
    return (pace_in){
        .pacing = l->run.pacing,
        .utd = l->run.utd,
        .learn_start = l->learn_start,
        .real_steps = l->real_offset,
        .updates = l->updates,
        .quota_on = l->quota_on,
        .quota_done = learner_quota_done(l),
        .refill_until = l->refill_until,
    };
}

/* the synthetic pool's size for the rollout length at the current real step (mu held) */
static void learner_update_synth_limit(learner_t *l)
{
    if (l->cfg.synthetic_capacity || l->synth_capped) {
        return; /* fixed by the option, or by the memory cap */
    }
    int k = run_rollout_length(&l->run, l->real_offset);
    synth_set_limit(&l->synth, (size_t)run_synthetic_capacity(&l->run, k));
}

/* ---- policy versions ---- */

/* the highest version ever published, kept beside the checkpoints so versions keep
 * increasing across restarts even when the newest checkpoint is older than the last
 * publication: 0 and *v (0 when there is no file), or TWIG_ECORRUPT when the file is there
 * but holds no version that can be incremented (see learner.h) */
static int learner_read_version_file(const learner_t *l, uint64_t *v)
{
    *v = 0;
    char p[CKPT_PATH_MAX];
    if (snprintf(p, sizeof p, "%s/%s", l->cfg.checkpoint_dir, LEARNER_VERSION_FILE) >=
        (int)sizeof p) {
        return err_set(-ENAMETOOLONG, "checkpoint_dir is too long");
    }
    uint8_t *data = NULL;
    size_t n = 0;
    int rc = atomic_file_read(&data, &n, p, LEARNER_VERSION_FILE_MAX);
    if (rc == -ENOENT) {
        return 0;
    }
    if (rc == TWIG_ETOOBIG) {
        return err_set(TWIG_ECORRUPT,
                       "%s is over %d bytes, no policy version: the versions published "
                       "after the newest checkpoint cannot be known; write the highest version "
                       "served into it, or remove it to continue from the checkpoint's",
                       p, LEARNER_VERSION_FILE_MAX);
    }
    if (rc < 0) {
        return rc;
    }
    /* exactly what learner_write_version_file writes: decimal digits, one newline */
    size_t digits = 0;
    while (digits < n && data[digits] >= '0' && data[digits] <= '9') {
        digits++;
    }
    bool shaped = digits > 0 && digits <= 20 &&
                  (digits == n || (digits + 1 == n && data[digits] == '\n'));
    uint64_t val = 0;
    bool overflow = false;
    for (size_t i = 0; shaped && i < digits; i++) {
        uint64_t d = (uint64_t)(data[i] - '0');
        overflow = overflow || val > (UINT64_MAX - d) / 10;
        val = val * 10 + d;
    }
    free(data);
    if (!shaped || overflow) {
        return err_set(TWIG_ECORRUPT,
                       "%s (%zu bytes) does not hold a policy version: the versions published "
                       "after the newest checkpoint cannot be known; write the highest version "
                       "served into it, or remove it to continue from the checkpoint's",
                       p, n);
    }
    if (val == UINT64_MAX) {
        return err_set(TWIG_ECORRUPT,
                       "%s holds policy version %" PRIu64 ", which cannot be incremented", p,
                       val);
    }
    *v = val;
    return 0;
}

static int learner_write_version_file(const learner_t *l, uint64_t v)
{
    char text[32], p[CKPT_PATH_MAX];
    int n = snprintf(text, sizeof text, "%" PRIu64 "\n", v);
    int a = snprintf(p, sizeof p, "%s/" LEARNER_VERSION_FILE, l->cfg.checkpoint_dir);
    if (a < 0 || a >= (int)sizeof p) {
        return err_set(-ENAMETOOLONG, "checkpoint_dir is too long");
    }
    return atomic_file_write(p, text, (size_t)n);
}

/* the policy now as the next version, encoded for GetPolicy, into *out (training thread, or
 * the loop while the threads are not running). A failure is logged. */
static int learner_policy_build(learner_t *l, nn_blob **out)
{
    *out = NULL;
    pthread_mutex_lock(&l->mu);
    uint64_t have = l->policy_built;
    if (have < UINT64_MAX) {
        l->policy_built++;
    }
    pthread_mutex_unlock(&l->mu);
    int rc = 0;
    nn_blob *b = NULL;
    if (have == UINT64_MAX) {
        rc = err_set(TWIG_EINTERNAL, "policy version %" PRIu64 " cannot be incremented", have);
    } else {
        b = xcalloc(1, sizeof *b);
        rc = policy_blob_build(b, &l->sac, have + 1, l->run.env);
    }
    if (rc < 0) {
        log_error("event=publish_failed policy_version=%" PRIu64 " err=%s detail=\"%s\"",
                  have + 1, err_name(rc), err_msg());
        free(b);
        return rc;
    }
    *out = b;
    return 0;
}

static void learner_blob_release(nn_blob *b)
{
    if (b) {
        nn_blob_free(b);
        free(b);
    }
}

/* record b's version (fsync), then hand b and its GetPolicy reply to the loop: a version is
 * on disk before it is served, so a restart never serves one again. One record covers every
 * version built before it; a version superseded before it was recorded is never served.
 * (Writer thread, or the loop while the threads are not running.) Takes b. */
static int learner_publish_blob(learner_t *l, nn_blob *b)
{
    uint64_t v = b->msg.version;
    int rc = learner_write_version_file(l, v);
    if (rc < 0) {
        log_error("event=publish_failed policy_version=%" PRIu64 " err=%s detail=\"%s\"", v,
                  err_name(rc), err_msg());
        learner_blob_release(b);
        return rc;
    }
    /* GetPolicy's reply, packed once here for every call that gets this version */
    Twig__V1__GetWeightsReply r = TWIG__V1__GET_WEIGHTS_REPLY__INIT;
    r.blob = &b->msg;
    rpc_packed_t *reply = rpc_packed_from_msg(&r.base);
    pthread_mutex_lock(&l->mu);
    l->policy_version = v;
    l->policy_reply_packs++;
    nn_blob *old = l->pending_blob;
    rpc_packed_t *old_reply = l->pending_reply;
    l->pending_blob = b;
    l->pending_reply = reply;
    if (l->wake_open) {
        uv_async_send(&l->wake);
    }
    pthread_mutex_unlock(&l->mu);
    learner_blob_release(old);
    rpc_packed_unref(old_reply);
    log_debug("event=policy_published policy_version=%" PRIu64, v);
    return 0;
}

/* publish the policy now (the loop, while the threads are not running) */
static int learner_publish(learner_t *l)
{
    nn_blob *b;
    int rc = learner_policy_build(l, &b);
    return rc < 0 ? rc : learner_publish_blob(l, b);
}

/* loop thread: take the pending blob, serve it */
static void learner_on_wake(uv_async_t *h)
{
    learner_t *l = h->data;
    pthread_mutex_lock(&l->mu);
    nn_blob *b = l->pending_blob;
    rpc_packed_t *reply = l->pending_reply;
    l->pending_blob = NULL;
    l->pending_reply = NULL;
    pthread_mutex_unlock(&l->mu);
    if (!b) {
        return;
    }
    if (l->blob) {
        nn_blob_free(l->blob);
        free(l->blob);
    }
    rpc_packed_unref(l->blob_reply);
    l->blob = b;
    l->blob_reply = reply;
    rpc_longpoll_notify(&l->policy_polls);
}

/* ---- checkpoints ---- */

/* the bytes learner_state_image writes (mu held) */
static size_t learner_state_image_size(const learner_t *l)
{
    size_t n = 8 + 4 + 4 + strlen(l->run.env) + 3 * 4 + 6 * 8 + 4 * 8 + 8;
    for (size_t i = 0; i < l->n_evals; i++) {
        n += 4 + strlen(l->evals[i].source_id) + 3 * 8 + 4 + 2 * 4;
    }
    n += 8 + dedup_image_size(&l->push_dedup) + 8 + dedup_image_size(&l->eval_dedup);
    return n + 4;
}

/* counters, rng, evaluations and dedup tables as one image into *img (owned, free) of *len
 * bytes (mu held; rng is the training thread's, which is the caller or stopped) */
static void learner_state_image(uint8_t **img, size_t *len, const learner_t *l)
{
    *len = learner_state_image_size(l);
    *img = xmalloc(*len);
    byte_writer w = {.buf = *img};
    bw_bytes(&w, LEARNER_STATE_MAGIC, 8);
    bw_u32(&w, LEARNER_STATE_VERSION);
    bw_str(&w, l->run.env);
    bw_u32(&w, (uint32_t)l->env->spec.n_obs);
    bw_u32(&w, (uint32_t)l->env->spec.n_act);
    bw_u32(&w, (uint32_t)l->run.hidden);
    bw_u64(&w, l->updates);
    bw_u64(&w, l->policy_version);
    /* mid-refill the mirror is below the restored offset, which stays the one to resume */
    bw_u64(&w, l->real_offset > l->refill_until ? l->real_offset : l->refill_until);
    bw_u64(&w, l->synthetic_samples);
    bw_u64(&w, l->synthetic_pushes);
    bw_u64(&w, l->model_version);
    for (int i = 0; i < 4; i++) {
        bw_u64(&w, l->rng.s[i]);
    }
    bw_u64(&w, l->n_evals);
    for (size_t i = 0; i < l->n_evals; i++) {
        const learner_eval *e = &l->evals[i];
        bw_str(&w, e->source_id);
        bw_u64(&w, e->real_steps);
        bw_u64(&w, e->policy_version);
        bw_u64(&w, e->seq);
        bw_u32(&w, e->episodes);
        bw_f32s(&w, &e->return_mean, 1);
        bw_f32s(&w, &e->return_std, 1);
    }
    const dedup_t *tables[2] = {&l->push_dedup, &l->eval_dedup};
    for (int t = 0; t < 2; t++) {
        size_t n = dedup_image_size(tables[t]);
        bw_u64(&w, n);
        dedup_image_write(w.buf + w.pos, tables[t]);
        w.pos += n;
    }
    bw_u32(&w, crc32c(w.buf, w.pos));
    TWIG_ASSERT(w.pos == *len);
}

/* what a state image restores, checked before anything is applied */
typedef struct learner_state {
    uint64_t updates, policy_version, real_offset, synthetic_samples, synthetic_pushes;
    uint64_t model_version;
    uint64_t rng[4];
    learner_eval *evals;
    size_t n_evals;
    dedup_t push_dedup, eval_dedup;
} learner_state;

/* the learner's tables: the last DEDUP_WINDOW seqs per source (slot seq % DEDUP_WINDOW, as in
 * state.bin), seqs from 1 */
static void learner_dedup_init(dedup_t *d, size_t max_sources, uint64_t quiet)
{
    dedup_init(d, &(dedup_opts){.max_sources = max_sources, .quiet = quiet,
                                .history = DEDUP_HISTORY_WINDOW, .first_seq = 1});
}

static void learner_state_free(learner_state *s)
{
    free(s->evals);
    dedup_free(&s->push_dedup);
    dedup_free(&s->eval_dedup);
    memset(s, 0, sizeof *s);
}

static int learner_state_parse(learner_state *s, const learner_t *l, const uint8_t *data,
                               size_t len)
{
    memset(s, 0, sizeof *s);
    learner_dedup_init(&s->push_dedup, l->push_dedup.max_sources, l->push_dedup.quiet);
    learner_dedup_init(&s->eval_dedup, l->eval_dedup.max_sources, l->eval_dedup.quiet);
    if (len < 16 || memcmp(data, LEARNER_STATE_MAGIC, 8) != 0) {
        return err_set(TWIG_ECORRUPT, "not a learner state file");
    }
    if (crc32c(data, len - 4) != le32_get(data + len - 4)) {
        return err_set(TWIG_ECORRUPT, "checksum mismatch");
    }
    byte_reader b = {.buf = data, .len = len - 4, .pos = 8};
    uint32_t version = br_u32(&b);
    if (version != 1 && version != LEARNER_STATE_VERSION) {
        return err_set(TWIG_EVERSION, "state version is %u, this learner reads 1..%u", version,
                       LEARNER_STATE_VERSION);
    }
    char env[RUN_ENV_MAX + 1];
    br_str(&b, env, RUN_ENV_MAX);
    uint32_t n_obs = br_u32(&b), n_act = br_u32(&b), hidden = br_u32(&b);
    if (b.bad || strcmp(env, l->run.env) != 0 || n_obs != (uint32_t)l->env->spec.n_obs ||
        n_act != (uint32_t)l->env->spec.n_act || hidden != (uint32_t)l->run.hidden) {
        return err_set(TWIG_EMISMATCH,
                       "made for env %s (%u obs, %u act, hidden %u), this run is "
                       "%s (%d, %d, %d)",
                       env, n_obs, n_act, hidden, l->run.env, l->env->spec.n_obs,
                       l->env->spec.n_act, l->run.hidden);
    }
    s->updates = br_u64(&b);
    s->policy_version = br_u64(&b);
    s->real_offset = br_u64(&b);
    s->synthetic_samples = br_u64(&b);
    s->synthetic_pushes = br_u64(&b);
    s->model_version = br_u64(&b);
    for (int i = 0; i < 4; i++) {
        s->rng[i] = br_u64(&b);
    }
    uint64_t n_evals = br_u64(&b);
    if (b.bad || n_evals > (version == 1 ? LEARNER_EVALS_CAP_V1 : LEARNER_EVALS_CAP)) {
        return err_set(TWIG_ECORRUPT, "bad counters or evaluation count");
    }
    s->evals = xcalloc(n_evals ? n_evals : 1, sizeof *s->evals);
    for (uint64_t i = 0; i < n_evals && !b.bad; i++) {
        learner_eval *e = &s->evals[i];
        br_str(&b, e->source_id, MSG_MAX_ID_LEN);
        e->real_steps = br_u64(&b);
        e->policy_version = br_u64(&b);
        e->seq = br_u64(&b);
        e->episodes = br_u32(&b);
        br_f32s(&b, &e->return_mean, 1);
        br_f32s(&b, &e->return_std, 1);
    }
    s->n_evals = (size_t)n_evals;
    /* each table's progress: a version-1 image's sources count as active now */
    dedup_t *tables[2] = {&s->push_dedup, &s->eval_dedup};
    uint64_t progress[2] = {s->synthetic_samples, s->n_evals};
    unsigned layout = version == 1 ? DEDUP_IMAGE_V1 : DEDUP_IMAGE_V2;
    for (int t = 0; t < 2 && !b.bad; t++) {
        uint64_t n = br_u64(&b);
        size_t used = 0;
        const uint8_t *img = n <= br_left(&b) ? br_view(&b, (size_t)n) : NULL;
        if (!img || dedup_image_read(tables[t], img, (size_t)n, layout, progress[t], &used) < 0 ||
            used != n) {
            return err_set(TWIG_ECORRUPT, "bad dedup table %d", t);
        }
    }
    if (b.bad || br_left(&b) != 0) {
        return err_set(TWIG_ECORRUPT, "truncated or trailing bytes");
    }
    return 0;
}

/* a checkpoint's bytes, taken at one update count */
typedef struct learner_snapshot {
    const char *why;   /* static */
    uint64_t id, policy_version, real_offset;
    uint8_t *sac;      /* sac.bin: sac_image_write */
    size_t sac_len;
    uint8_t *state;    /* state.bin: learner_state_image */
    size_t state_len;
} learner_snapshot;

static void learner_snapshot_free(learner_snapshot *s)
{
    if (s) {
        free(s->sac);
        free(s->state);
        free(s);
    }
}

/* the trainer and the state as they are now (training thread, or the loop while the threads
 * are not running); a memory copy, no I/O */
static learner_snapshot *learner_snapshot_take(learner_t *l, const char *why)
{
    learner_snapshot *s = xcalloc(1, sizeof *s);
    s->why = why;
    s->sac_len = sac_image_size(&l->sac);
    s->sac = xmalloc(s->sac_len);
    sac_image_write(s->sac, &l->sac);
    pthread_mutex_lock(&l->mu);
    learner_state_image(&s->state, &s->state_len, l);
    s->id = l->updates;
    s->policy_version = l->policy_version;
    s->real_offset = l->real_offset;
    pthread_mutex_unlock(&l->mu);
    return s;
}

/* write snapshot s as checkpoint ckpt-<id>, then prune (writer thread, or the loop while the
 * threads are not running) */
static int learner_snapshot_write(learner_t *l, const learner_snapshot *s)
{
    double t0 = clock_now_s();
    char tmp[CKPT_PATH_MAX];
    int rc = ckpt_begin(tmp, sizeof tmp, l->cfg.checkpoint_dir, s->id);
    if (rc == 0) {
        rc = ckpt_write_file(tmp, LEARNER_SAC_FILE, s->sac, s->sac_len);
    }
    if (rc == 0) {
        rc = ckpt_write_file(tmp, LEARNER_STATE_FILE, s->state, s->state_len);
    }
    if (rc == 0) {
        rc = ckpt_commit(l->cfg.checkpoint_dir, s->id);
    }
    if (rc < 0) {
        log_error("event=checkpoint_failed why=%s updates=%" PRIu64 " err=%s detail=\"%s\"",
                  s->why, s->id, err_name(rc), err_msg());
        return rc;
    }
    int pruned = ckpt_prune(l->cfg.checkpoint_dir, l->cfg.keep_checkpoints);
    pthread_mutex_lock(&l->mu);
    l->checkpoints_written++;
    pthread_mutex_unlock(&l->mu);
    log_info("event=checkpoint why=%s updates=%" PRIu64 " policy_version=%" PRIu64
             " real_offset=%" PRIu64 " pruned=%d ms=%.0f",
             s->why, s->id, s->policy_version, s->real_offset, pruned < 0 ? 0 : pruned,
             1e3 * (clock_now_s() - t0));
    return 0;
}

/* write checkpoint ckpt-<updates> now (the loop, while the threads are not running) */
static int learner_checkpoint(learner_t *l, const char *why)
{
    learner_snapshot *s = learner_snapshot_take(l, why);
    int rc = learner_snapshot_write(l, s);
    learner_snapshot_free(s);
    return rc;
}

/* ---- the writer thread's jobs (learner/writer.h) ---- */

static void learner_run_publish(void *app, void *job)
{
    learner_publish_blob(app, job);
}

static void learner_drop_publish(void *app, void *job)
{
    (void)app;
    learner_blob_release(job);
}

static void learner_run_checkpoint(void *app, void *job)
{
    learner_snapshot_write(app, job);
    learner_snapshot_free(job);
}

static const writer_kind learner_write_kinds[] = {
    [LEARNER_WRITE_PUBLISH] = {learner_run_publish, learner_drop_publish},
    [LEARNER_WRITE_CHECKPOINT] = {learner_run_checkpoint, NULL},   /* every one is kept */
};

/* the newest checkpoint that loads; a damaged one is logged and the previous one tried.
 * Before the threads start. */
static int learner_restore(learner_t *l)
{
    uint64_t *ids;
    size_t n;
    int rc = ckpt_list(l->cfg.checkpoint_dir, &ids, &n);
    if (rc < 0) {
        return rc;
    }
    bool loaded = false, touched = false;
    for (size_t i = n; i-- > 0 && !loaded;) {
        char sp[CKPT_PATH_MAX], stp[CKPT_PATH_MAX];
        if (ckpt_path(sp, sizeof sp, l->cfg.checkpoint_dir, ids[i], LEARNER_SAC_FILE) < 0 ||
            ckpt_path(stp, sizeof stp, l->cfg.checkpoint_dir, ids[i], LEARNER_STATE_FILE) < 0) {
            continue;
        }
        uint8_t *data = NULL;
        size_t len = 0;
        learner_state st;
        rc = ckpt_read_file(stp, &data, &len);
        if (rc == 0) {
            rc = learner_state_parse(&st, l, data, len);
            if (rc == 0) {
                touched = true;
                rc = sac_load(&l->sac, sp);
            }
            if (rc == 0 && (uint64_t)l->sac.n_updates != st.updates) {
                rc = err_set(TWIG_ECORRUPT, "sac.bin has %" PRId64 " updates, state.bin %" PRIu64,
                             l->sac.n_updates, st.updates);
            }
            if (rc < 0) {
                learner_state_free(&st);
            }
        }
        free(data);
        if (rc < 0) {
            log_error("event=checkpoint_bad id=%" PRIu64 " err=%s detail=\"%s\" action=%s", ids[i],
                      err_name(rc), err_msg(), i > 0 ? "try_previous" : "start_fresh");
            continue;
        }
        l->updates = st.updates;
        l->policy_version = st.policy_version;
        l->refill_until = st.real_offset;
        l->synthetic_samples = st.synthetic_samples;
        l->synthetic_pushes = st.synthetic_pushes;
        l->model_version = st.model_version;
        memcpy(l->rng.s, st.rng, sizeof st.rng);
        free(l->evals);
        l->evals = st.evals;
        l->n_evals = l->cap_evals = st.n_evals;
        st.evals = NULL;
        dedup_free(&l->push_dedup);
        dedup_free(&l->eval_dedup);
        l->push_dedup = st.push_dedup;
        l->eval_dedup = st.eval_dedup;
        memset(&st.push_dedup, 0, sizeof st.push_dedup);
        memset(&st.eval_dedup, 0, sizeof st.eval_dedup);
        learner_state_free(&st);
        /* a smaller max_sources than the checkpoint's: the quietest go (the fence rises);
         * the eval table keeps every source it had (it cannot fence, see learner.h) */
        size_t trimmed = dedup_trim(&l->push_dedup);
        if (l->eval_dedup.n > l->eval_dedup.max_sources) {
            l->eval_dedup.max_sources = l->eval_dedup.n;
        }
        if (l->n_evals > l->evals_bound) {
            l->evals_bound = l->n_evals;
        }
        l->restored_updates = l->updates;
        loaded = true;
        log_info("event=checkpoint_loaded id=%" PRIu64 " updates=%" PRIu64
                 " policy_version=%" PRIu64 " real_offset=%" PRIu64 " synthetic_samples=%" PRIu64
                 " evals=%zu sources=%zu source_fence=%" PRIu64 " sources_trimmed=%zu",
                 ids[i], l->updates, l->policy_version, l->refill_until, l->synthetic_samples,
                 l->n_evals, l->push_dedup.n, l->push_dedup.fence, trimmed);
    }
    free(ids);
    if (!loaded && touched) {
        /* a damaged sac.bin may have been half read: start from fresh nets */
        sac_cfg sc = l->sac.cfg;
        sac_free(&l->sac);
        if ((rc = sac_init(&l->sac, &sc, l->run.seed)) < 0) {
            return rc;
        }
    }
    return 0;
}

/* ---- mirror thread: the model server's real log -> the real replay ---- */

/* the mirror's take: rows of a checked FetchReal reply into the real replay (count 0 too:
 * the log's end is news for pacing) */
static void learner_take_real(void *app, const real_mirror_rows *rows)
{
    learner_t *l = app;
    pthread_mutex_lock(&l->mu);
    l->log_end = rows->end_offset;
    if (!l->quota_known) {
        /* branches for real steps already in the log when this process first looks were
         * either counted by an earlier life or lost with it: their quota counts as met */
        l->quota_base = rows->end_offset > l->learn_start ? rows->end_offset : l->learn_start;
        l->quota_known = true;
        /* chunks start there, or at the first model training point: no step before it has
         * a model to branch from */
        uint64_t p0 = run_model_next_point(&l->run, 0);
        quota_set_start(&l->quota, l->quota_base > p0 ? l->quota_base : p0);
        pthread_cond_broadcast(&l->cv_train);
        log_info("event=quota_base real_steps=%" PRIu64 " log_end=%" PRIu64, l->quota_base,
                 rows->end_offset);
    }
    pthread_mutex_unlock(&l->mu);
    if (rows->count == 0) {
        return;
    }
    /* converted outside mu: the training thread samples meanwhile */
    policy_unit_from_env(&l->units, l->mirror_unit, rows->act, (int)rows->count);
    size_t O = (size_t)l->env->spec.n_obs, A = (size_t)l->env->spec.n_act;
    uint64_t off = rows->first_offset;
    pthread_mutex_lock(&l->mu);
    for (size_t i = 0; i < rows->count; i++) {
        replay_add(&l->real, rows->obs + i * O, l->mirror_unit + i * A, rows->reward[i],
                   rows->next_obs + i * O, rows->terminated[i] != 0);
    }
    l->real_offset = off + rows->count;
    learner_update_synth_limit(l);
    bool refilled = l->refill_until && off < l->refill_until && l->real_offset >= l->refill_until;
    pthread_cond_broadcast(&l->cv_train);
    uint64_t now_off = l->real_offset;
    pthread_mutex_unlock(&l->mu);
    if (refilled) {
        log_info("event=refill_done real_offset=%" PRIu64 " from=%" PRIu64, now_off,
                 l->refill_from);
    }
}

/* the mirror's peer: did the model server answer? Readiness follows (the learner cannot do
 * its job without the real log), each change logged once with its reason (rc: the failure) */
static void learner_note_modelserver(void *app, bool reached, int rc, uint64_t off)
{
    learner_t *l = app;
    int now = reached ? 1 : 0;
    pthread_mutex_lock(&l->mu);
    int was = l->ready;
    l->ready = now;
    pthread_mutex_unlock(&l->mu);
    if (was == now) {
        return;
    }
    rpc_server_set_ready(l->srv, reached);
    if (reached) {
        log_info("event=ready reason=modelserver_reached addr=%s from_offset=%" PRIu64,
                 l->run.modelserver_addr, off);
    } else {
        log_warn("event=not_ready reason=modelserver_unreachable addr=%s err=%s detail=\"%s\"",
                 l->run.modelserver_addr, err_name(rc), err_msg());
    }
}

static void *learner_mirror_main(void *arg)
{
    learner_t *l = arg;
    real_mirror_run(&l->mirror);
    return NULL;
}

/* ---- training thread ---- */

static void learner_log_progress(learner_t *l)
{
    pace_in in = learner_pace_in(l);
    log_info("event=progress updates=%" PRIu64 " real_steps=%" PRIu64 " synthetic=%zu"
             " synthetic_samples=%" PRIu64 " policy_version=%" PRIu64 " model_version=%" PRIu64
             " utd=%.2f updates_per_s=%.1f q_loss=%.4g pi_loss=%.4g alpha=%.4g entropy=%.3g",
             l->updates, l->real_offset, synth_size(&l->synth), l->synthetic_samples,
             l->policy_version, l->model_version,
             pace_achieved_utd(l->updates, in.real_steps, in.learn_start), l->updates_per_s,
             l->stats.q_loss, l->stats.pi_loss, l->stats.alpha, l->stats.entropy);
}

static void *learner_train_main(void *arg)
{
    learner_t *l = arg;
    nn_gemm_set_threads(l->cfg.threads);
    int B = l->cfg.batch_size;
    double t_rate = clock_now_s();
    uint64_t u_rate = 0;
    bool waiting = false;
    uint64_t wait_t0 = 0;
    pthread_mutex_lock(&l->mu);
    u_rate = l->updates;
    while (!stop_flag_raised(&l->stop)) {
        pace_in in = learner_pace_in(l);
        if (l->diverged || !pace_may_update(&in)) {
            bool on_quota = l->quota_on && in.quota_done < in.real_steps;
            if (!waiting) {
                log_debug("event=train_wait updates=%" PRIu64 " real_steps=%" PRIu64
                          " quota_done=%" PRIu64,
                          in.updates, in.real_steps, in.quota_done);
                waiting = true;
                wait_t0 = clock_now_ms();
            }
            /* a wait counts for what held it back when it began */
            bool for_synthetic = !l->diverged && pace_waits_for_synthetic(&in);
            double t_wait = clock_now_s();
            if (on_quota) {
                /* a vanished worker holds the quota until its lease expires: sweep while
                 * waiting, so its chunk is released within a quarter ttl of the expiry */
                uint64_t now = clock_now_ms();
                member_sweep(&l->members, now);
                if (now - wait_t0 > l->quota_wait_max_ms) {
                    l->quota_wait_max_ms = now - wait_t0;
                }
                struct timespec dl = clock_deadline_ms(l->cfg.lease_ttl_ms / 4);
                pthread_cond_timedwait(&l->cv_train, &l->mu, &dl);
            } else {
                pthread_cond_wait(&l->cv_train, &l->mu);
            }
            double waited = clock_now_s() - t_wait;
            if (l->diverged) {
                continue;
            }
            if (for_synthetic) {
                l->wait_synthetic_s += waited;
            } else {
                l->wait_real_s += waited;
            }
            continue;
        }
        waiting = false;
        TWIG_ASSERT(l->real.size > 0);
        /* MBPO's mix; real only while no synthetic data has arrived */
        size_t ns = synth_size(&l->synth);
        int n_real = ns ? replay_real_rows(l->run.real_ratio, B) : B;
        if (n_real > 0) {
            replay_sample_rows(&l->batch, &l->real, &l->rng, 0, n_real);
        }
        if (n_real < B) {
            synth_sample_rows(&l->batch, &l->synth, &l->rng, n_real, B - n_real);
        }
        l->batch.n = B;
        pthread_mutex_unlock(&l->mu);

        sac_update(&l->sac, &l->batch);
        sac_stats st = l->sac.stats;
        bool finite = isfinite(st.q_loss) && isfinite(st.pi_loss) && isfinite(st.alpha);

        pthread_mutex_lock(&l->mu);
        if (!finite) {
            l->diverged = true;
            log_error("event=diverged updates=%" PRIu64 " q_loss=%g pi_loss=%g alpha=%g "
                      "action=stop_training",
                      l->updates, st.q_loss, st.pi_loss, st.alpha);
            continue;
        }
        l->updates++;
        l->stats = st;
        uint64_t u = l->updates;
        if (u % 64 == 0) {
            double t = clock_now_s();
            if (t - t_rate >= 1.0) {
                l->updates_per_s = (double)(u - u_rate) / (t - t_rate);
                t_rate = t;
                u_rate = u;
            }
        }
        /* encoded here, written (fsync) by the writer thread: training goes on meanwhile */
        if (u % (uint64_t)l->cfg.policy_publish_every == 0) {
            pthread_mutex_unlock(&l->mu);
            nn_blob *b;
            if (learner_policy_build(l, &b) == 0) {
                writer_submit(&l->writer, LEARNER_WRITE_PUBLISH, b);
            }
            pthread_mutex_lock(&l->mu);
        }
        if (l->cfg.checkpoint_every > 0 && u % (uint64_t)l->cfg.checkpoint_every == 0) {
            pthread_mutex_unlock(&l->mu);
            writer_submit(&l->writer, LEARNER_WRITE_CHECKPOINT,
                          learner_snapshot_take(l, "periodic"));
            pthread_mutex_lock(&l->mu);
        }
        if (l->cfg.log_every > 0 && u % (uint64_t)l->cfg.log_every == 0) {
            learner_log_progress(l);
        }
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

/* ---- life ---- */

static void learner_on_stop(void *l)
{
    learner_shutdown(l);
}


static uint64_t cap_capacity(uint64_t c)
{
    if (c == 0) {
        return 1;
    }
    return c > LEARNER_MAX_CAPACITY ? LEARNER_MAX_CAPACITY : c;
}

int learner_init(learner_t *l, const run_cfg *run, const learner_cfg *cfg)
{
    memset(l, 0, sizeof *l);
    l->run = *run;
    l->cfg = *cfg;
    pthread_mutex_init(&l->mu, NULL);
    clock_cond_init(&l->cv_train); /* timed waits: the quota wait sweeps leases */
    stop_flag_init(&l->stop);
    l->ready = -1;
    if (!l->cfg.listen[0]) {
        snprintf(l->cfg.listen, sizeof l->cfg.listen, "%s", run->learner_addr);
    }
    int rc = run_cfg_check(run);
    if (rc < 0 || (rc = learner_opts_check(cfg, run)) < 0) {
        return rc;
    }
    /* push sources: bounded, measured in synthetic samples; eval sources: the actors */
    learner_dedup_init(&l->push_dedup, (size_t)cfg->max_sources, cfg->source_quiet_samples);
    learner_dedup_init(&l->eval_dedup, (size_t)run->n_actors, DEDUP_NEVER);
    l->evals_bound = learner_evals_bound(run);
    rpc_tls tls = rpc_tls_of_run(&l->run);
    rpc_client_cfg cc = {.tls = &tls};
    if ((rc = rpc_client_init(&l->ms, run->modelserver_addr, &cc)) < 0) {
        return rc;
    }
    l->learn_start = run->init_steps;
    l->quota_on =
        run->pacing == RUN_PACING_STRICT && run->rollouts_per_step > 0 && run->n_rollout > 0;
    /* rollout workers' leases: ids above any an earlier life handed out (see
     * learner_first_member_id); at most one chunk per member plus as many orphans */
    member_svc_cfg msc = {.role = MEMBER_ROLE_ROLLOUT, .run_id = run->run_id,
                         .ttl_ms = (uint64_t)cfg->lease_ttl_ms,
                         .capacity = (size_t)cfg->max_members,
                         .first_id = learner_first_member_id(), .mu = &l->mu,
                         .gone = learner_member_gone, .epoch = learner_member_epoch, .app = l};
    if ((rc = member_svc_init(&l->members, &msc)) < 0) {
        return rc;
    }
    quota_init(&l->quota, 2 * (size_t)cfg->max_members,
               run->rollouts_per_step > 0 ? (uint64_t)run->rollouts_per_step : 1, 0);

    if ((rc = env_make(&l->env, run->env)) < 0) {
        return rc;
    }
    const env_spec *sp = &l->env->spec;
    policy_shape shape = {sp->n_obs, sp->n_act, run->hidden, sp->act_low, sp->act_high};
    if ((rc = policy_init(&l->units, &shape, 1)) < 0) {
        return rc;
    }
    l->push_unit = xmalloc(sizeof(float) * (size_t)sp->n_act);
    sac_cfg sc = sac_default_cfg(sp->n_obs, sp->n_act);
    sc.hidden = run->hidden;
    sc.batch = cfg->batch_size;
    sc.gamma = cfg->gamma;
    sc.tau = cfg->tau;
    sc.lr_actor = cfg->lr_actor;
    sc.lr_critic = cfg->lr_critic;
    sc.lr_alpha = cfg->lr_alpha;
    sc.target_entropy = run->target_entropy != 0.0f ? run->target_entropy : -(float)sp->n_act;
    if ((rc = sac_init(&l->sac, &sc, run->seed)) < 0) {
        return rc;
    }
    if ((rc = replay_batch_init(&l->batch, cfg->batch_size, sp->n_obs, sp->n_act)) < 0) {
        return rc;
    }
    rng_t root;
    rng_seed(&root, run->seed);
    l->rng = rng_split(&root, 0x4c4541524e4552ull); /* "LEARNER" */
    uint64_t real_cap = cap_capacity(cfg->real_capacity ? cfg->real_capacity : run->real_steps);
    uint64_t synth_cap =
        cap_capacity(cfg->synthetic_capacity ? cfg->synthetic_capacity
                                             : run_synthetic_capacity(run, run->k_max));
    uint64_t row_bytes = sizeof(float) * (2 * (uint64_t)sp->n_obs + (uint64_t)sp->n_act + 2);
    uint64_t max_rows = ((uint64_t)cfg->synthetic_max_mb << 20) / row_bytes;
    if (!cfg->synthetic_capacity && synth_cap > max_rows) {
        log_warn("event=synthetic_capped mbpo_pool=%" PRIu64 " capacity=%" PRIu64
                 " synthetic_max_mb=%d",
                 synth_cap, max_rows, cfg->synthetic_max_mb);
        synth_cap = cap_capacity(max_rows);
        l->synth_capped = true;
    }
    l->mirror_unit = xmalloc(sizeof(float) * (size_t)cfg->fetch_max * (size_t)sp->n_act);
    if ((rc = replay_init(&l->real, (size_t)real_cap, sp->n_obs, sp->n_act)) < 0 ||
        (rc = synth_init(&l->synth, (size_t)synth_cap, sp->n_obs, sp->n_act)) < 0) {
        return rc;
    }
    learner_update_synth_limit(l);

    /* the newest valid checkpoint */
    if ((rc = ckpt_dir_prepare(cfg->checkpoint_dir)) < 0) {
        return rc;
    }
    if ((rc = learner_restore(l)) < 0) {
        return rc;
    }
    l->refill_from = l->refill_until > real_cap ? l->refill_until - real_cap : 0;
    l->real_offset = l->refill_from;
    l->log_end = 0;
    uint64_t watermark = 0;
    if ((rc = learner_read_version_file(l, &watermark)) < 0) {
        return rc;
    }
    if (watermark > l->policy_version) {
        l->policy_version = watermark; /* versions published after the checkpoint */
    }
    l->policy_built = l->policy_version;
    /* the first version: the loaded (or fresh) actor, so workers can roll out at once */
    if ((rc = learner_publish(l)) < 0) {
        return rc;
    }
    l->blob = l->pending_blob;
    l->blob_reply = l->pending_reply;
    l->pending_blob = NULL;
    l->pending_reply = NULL;

    /* loop, signals, server */
    if ((rc = uv_loop_init(&l->loop)) < 0) {
        return err_set(rc, "uv_loop_init: %s", uv_strerror(rc));
    }
    l->loop_ready = 1;
    rpc_longpoll_init(&l->policy_polls, &l->loop, &learner_policy_poll_ops, l);
    uv_async_init(&l->loop, &l->wake, learner_on_wake);
    l->wake.data = l;
    l->wake_open = 1;
    daemon_signals_start(&l->signals, &l->loop, learner_on_stop, l);
    rpc_server_cfg rc_cfg = {.listen = l->cfg.listen, .loop = &l->loop, .app = l, .tls = &tls};
    if ((rc = rpc_server_init(&l->srv, &rc_cfg, learner_methods, learner_n_methods)) < 0) {
        l->srv = NULL;
        return rc;
    }
    rpc_server_set_ready(l->srv, false); /* until the model server answers the mirror */
    if ((rc = rpc_server_start(l->srv)) < 0) {
        return rc;
    }
    l->port = rpc_server_port(l->srv);
    if (l->cfg.port_file[0] && (rc = portfile_write(l->cfg.port_file, l->port)) < 0) {
        return rc;
    }

    real_mirror_cfg mc = {
        .client = l->ms,
        .env_id = l->run.env,
        .n_obs = sp->n_obs,
        .n_act = sp->n_act,
        .max_count = (uint32_t)cfg->fetch_max,
        .wait_ms = cfg->fetch_wait_ms,
        .deadline_slack_ms = LEARNER_FETCH_SLACK_MS,
        .backoff_min_ms = LEARNER_BACKOFF_MIN_MS,
        .backoff_max_ms = LEARNER_BACKOFF_MAX_MS,
        .seed = run->seed ^ 0x4d49ull,
        .stop = &l->stop,
        .take = learner_take_real,
        .peer = learner_note_modelserver,
        .app = l,
    };
    real_mirror_init(&l->mirror, &mc, l->real_offset);
    if ((rc = writer_start(&l->writer, learner_write_kinds, 2, l)) < 0) {
        return rc;
    }
    if (pthread_create(&l->mirror_thr, NULL, learner_mirror_main, l) != 0) {
        return err_set(-EAGAIN, "cannot start the mirror thread");
    }
    l->mirror_started = 1;
    if (pthread_create(&l->train_thr, NULL, learner_train_main, l) != 0) {
        return err_set(-EAGAIN, "cannot start the training thread");
    }
    l->train_started = 1;
    metrics_cfg mcfg = {.listen = cfg->metrics_listen, .series = learner_series,
                        .n_series = learner_n_series, .collect = learner_collect_stats, .app = l,
                        .srv = l->srv, .clients = {l->ms}};
    if ((rc = metrics_init(&l->metrics, &mcfg)) < 0) {
        return rc;
    }
    log_info("event=started listen=%s port=%d env=%s obs=%d act=%d pacing=%s utd=%g "
             "learn_start=%" PRIu64 " quota=%s real_capacity=%" PRIu64
             " synthetic_capacity=%" PRIu64 " updates=%" PRIu64 " policy_version=%" PRIu64
             " refill=%" PRIu64 "..%" PRIu64 " modelserver=%s checkpoint_dir=%s",
             l->cfg.listen, l->port, run->env, sp->n_obs, sp->n_act,
             run->pacing == RUN_PACING_STRICT ? "strict" : "async", run->utd, l->learn_start,
             l->quota_on ? "on" : "off", real_cap, synth_cap, l->updates, l->policy_version,
             l->refill_from, l->refill_until, run->modelserver_addr, cfg->checkpoint_dir);
    return 0;
}

static void learner_close_quiet(uv_handle_t *h)
{
    if (!uv_is_closing(h)) {
        uv_close(h, NULL);
    }
}

/* stop and join the threads (any thread but those two) */
static void learner_stop_threads(learner_t *l)
{
    stop_flag_raise(&l->stop);
    pthread_mutex_lock(&l->mu);   /* the training thread checks the flag under mu, then waits */
    pthread_cond_broadcast(&l->cv_train);
    pthread_mutex_unlock(&l->mu);
    if (l->train_started) {
        pthread_join(l->train_thr, NULL);
        l->train_started = 0;
    }
    if (l->mirror_started) {
        pthread_join(l->mirror_thr, NULL);
        l->mirror_started = 0;
    }
    writer_stop(&l->writer);   /* writes what the training thread handed over */
}

void learner_shutdown(learner_t *l)
{
    if (l->shutting_down) {
        return;
    }
    l->shutting_down = 1;
    log_info("event=shutdown_begin grace_ms=%d", l->cfg.grace_ms);
    learner_stop_threads(l);
    if (l->cfg.final_checkpoint && !l->diverged && l->updates > 0) {
        learner_checkpoint(l, "final");
    }
    if (l->srv) {
        rpc_server_shutdown(l->srv, l->cfg.grace_ms);
    }
    rpc_longpoll_close(&l->policy_polls);   /* parked GetPolicy calls answered now */
    daemon_signals_close(&l->signals);
    pthread_mutex_lock(&l->mu);
    l->wake_open = 0;
    pthread_mutex_unlock(&l->mu);
    learner_close_quiet((uv_handle_t *)&l->wake);
}

int learner_run(learner_t *l)
{
    uv_run(&l->loop, UV_RUN_DEFAULT);
    return l->exit_code;
}

void learner_free(learner_t *l)
{
    metrics_free(&l->metrics);   /* first: a scrape reads what the rest releases */
    learner_stop_threads(l);
    if (l->loop_ready && !l->shutting_down) {
        /* a failed init: close what was opened */
        learner_shutdown(l);
        if (!l->srv) {
            uv_run(&l->loop, UV_RUN_DEFAULT);
        }
    }
    if (l->srv) {
        rpc_server_free(l->srv);
        l->srv = NULL;
    }
    if (l->loop_ready) {
        uv_run(&l->loop, UV_RUN_DEFAULT);
        int rc = uv_loop_close(&l->loop);
        if (rc < 0) {
            log_warn("event=loop_close_failed err=%s", uv_strerror(rc));
        }
    }
    rpc_packed_unref(l->blob_reply);
    rpc_packed_unref(l->pending_reply);
    nn_blob *blobs[2] = {l->blob, l->pending_blob};
    for (int i = 0; i < 2; i++) {
        if (blobs[i]) {
            nn_blob_free(blobs[i]);
            free(blobs[i]);
        }
    }
    sac_free(&l->sac);
    replay_batch_free(&l->batch);
    replay_free(&l->real);
    synth_free(&l->synth);
    dedup_free(&l->push_dedup);
    dedup_free(&l->eval_dedup);
    member_svc_free(&l->members);
    quota_free(&l->quota);
    rpc_client_free(l->ms);
    free(l->mirror_unit);
    free(l->push_unit);
    free(l->evals);
    policy_free(&l->units);
    env_free(l->env);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv_train);
    stop_flag_destroy(&l->stop);
    memset(l, 0, sizeof *l);
}
