/* trainer.c - fits the dynamics ensemble on the real log and serves it (see trainer.h) */
#include "modelserver/trainer.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/base/atomic_file.h"
#include "common/base/bytes.h"
#include "common/base/clock.h"
#include "common/base/crc32c.h"
#include "common/base/err.h"
#include "common/base/log.h"
#include "common/base/mem.h"
#include "common/nn/nn_gemm.h"

#define T(field) offsetof(trainer_cfg, field)
const config_opt trainer_opts[] = {
    {"ensemble_size", CFG_INT, T(ensemble_size), "7", 1, ENSEMBLE_MAX_MEMBERS,
     "dynamics ensemble members (MBPO 7)", NULL},
    {"elites", CFG_INT, T(elites), "5", 1, ENSEMBLE_MAX_MEMBERS,
     "members used for rollouts, best holdout first (MBPO 5)", NULL},
    {"model_hidden", CFG_INT, T(model_hidden), "200", 1, ENSEMBLE_MAX_DIM,
     "hidden width of each member (MBPO 200)", NULL},
    {"model_layers", CFG_INT, T(model_layers), "4", 1, ENSEMBLE_MAX_HIDDEN_LAYERS,
     "hidden layers of each member (MBPO 4)", NULL},
    {"train_max_epochs", CFG_INT, T(train_max_epochs), "1000", 1, 1e6,
     "cap on the epochs of one fit (MBPO: none, early stopping only)", NULL},
    {"holdout_ratio", CFG_FLOAT, T(holdout_ratio), "0.2", 0.001, 0.9,
     "share of real rows held out for early stopping and elites (MBPO 0.2)", NULL},
    {"max_holdout", CFG_INT, T(max_holdout), "5000", 1, 1e8,
     "at most this many holdout rows (MBPO 5000)", NULL},
    {"patience", CFG_INT, T(patience), "5", 1, 1000,
     "a fit stops after more epochs than this without a 1% holdout gain (MBPO 5)", NULL},
    {"min_epochs", CFG_INT, T(min_epochs), "0", 0, 1000000,
     "epochs every fit trains before patience may stop it (patience alone gives at least patience + 2)", NULL},
    {"model_batch", CFG_INT, T(model_batch), "256", 1, 65536,
     "rows per member per Adam step (MBPO 256)", NULL},
    {"model_lr", CFG_FLOAT, T(model_lr), "1e-3", 1e-7, 1, "ensemble Adam learning rate", NULL},
    {"train_threads", CFG_INT, T(train_threads), "1", 1, 256, "OpenBLAS threads of the model fit",
     NULL},
    {"fresh_fit", CFG_BOOL, T(fresh_fit), "false", 0, 1,
     "start every model fit from new weights; false continues from the last model as MBPO "
     "does, its weights re-expressed under each refitted normaliser (docs/design.md)", NULL},
};
#undef T
const int trainer_n_opts = (int)(sizeof trainer_opts / sizeof trainer_opts[0]);

void trainer_ensemble_cfg(ensemble_cfg *ec, ensemble_train_cfg *tc, const trainer_cfg *cfg,
                          int n_obs, int n_act)
{
    ensemble_cfg_default(ec, n_obs, n_act);
    ec->n_members = cfg->ensemble_size;
    ec->n_elites = cfg->elites;
    ec->n_hidden = cfg->model_hidden;
    ec->n_layers = cfg->model_layers;
    ensemble_train_cfg_default(tc, cfg->model_layers);
    tc->max_epochs = cfg->train_max_epochs;
    tc->holdout_ratio = cfg->holdout_ratio;
    tc->max_holdout = cfg->max_holdout;
    tc->patience = cfg->patience;
    tc->min_epochs = cfg->min_epochs;
    tc->batch = cfg->model_batch;
    tc->lr = cfg->model_lr;
}

static void model_free(trainer_model *m)
{
    if (m) {
        rpc_packed_unref(m->reply);
        if (m->msg) {
            protobuf_c_message_free_unpacked(&m->msg->base, NULL);
        }
        free(m);
    }
}

static float blob_stat(const Twig__V1__WeightBlob *msg, const char *key, float dflt)
{
    for (size_t i = 0; i < msg->n_stats; i++) {
        if (msg->stats[i]->key && strcmp(msg->stats[i]->key, key) == 0) {
            return msg->stats[i]->value;
        }
    }
    return dflt;
}

/* ---- model.blob, model.version ---- */

static int path_join(char *out, size_t n, const char *dir, const char *name)
{
    if (snprintf(out, n, "%s/%s", dir, name) >= (int)n) {
        return err_set(-ENAMETOOLONG, "path %s/%s is too long", dir, name);
    }
    return 0;
}

static const char blob_magic[8] = TRAINER_BLOB_MAGIC;

/* write the packed WeightBlob payload(n) to DIR/model.blob atomically, framed (trainer.h) */
static int blob_write_file(const char *dir, const uint8_t *payload, size_t n)
{
    char path[4096];
    int rc = path_join(path, sizeof path, dir, TRAINER_BLOB_FILE);
    if (rc < 0) {
        return rc;
    }
    size_t total = TRAINER_BLOB_HEADER + n + 4;
    uint8_t *img = xmalloc(total);
    byte_writer w = {.buf = img};
    bw_bytes(&w, blob_magic, 8);
    bw_u32(&w, TRAINER_BLOB_FORMAT);
    bw_u64(&w, n);
    bw_bytes(&w, payload, n);
    bw_u32(&w, crc32c(img, w.pos));
    TWIG_ASSERT(w.pos == total);
    rc = atomic_file_write(path, img, total);
    free(img);
    return rc;
}

/* the payload of a model.blob image: 0 with *payload, *n pointing into buf, or TWIG_ECORRUPT /
 * TWIG_EVERSION naming what is wrong (path prefixed). A bare WeightBlob (format 1, before
 * the frame) is refused: nothing vouches for its stats and version; its version, if it
 * parses, goes to *legacy_version as a hint for the version floor */
static int blob_unframe(const uint8_t **payload, size_t *n, uint64_t *legacy_version,
                        const uint8_t *buf, size_t len, const char *path)
{
    if (len == 0) {
        return err_set(TWIG_ECORRUPT, "%s is empty", path);
    }
    if (len < TRAINER_BLOB_HEADER + 4 || memcmp(buf, blob_magic, 8) != 0) {
        Twig__V1__WeightBlob *old = twig__v1__weight_blob__unpack(NULL, len, buf);
        if (old) {
            *legacy_version = old->version;
            protobuf_c_message_free_unpacked(&old->base, NULL);
            return err_set(TWIG_EVERSION,
                           "%s is in format 1 (a bare WeightBlob, version %" PRIu64 "): no "
                           "checksum covers its stats and version",
                           path, *legacy_version);
        }
        return err_set(TWIG_ECORRUPT, "%s is not a model blob (%zu bytes, no " TRAINER_BLOB_MAGIC
                       " header)", path, len);
    }
    uint32_t format = le32_get(buf + 8);
    uint64_t body = le64_get(buf + 12);
    if (format != TRAINER_BLOB_FORMAT) {
        return err_set(TWIG_EVERSION, "%s is in format %u, this build reads format %u", path,
                       format, TRAINER_BLOB_FORMAT);
    }
    if (body != len - TRAINER_BLOB_HEADER - 4) {
        return err_set(TWIG_ECORRUPT,
                       "%s is %zu bytes, its header says %" PRIu64 " bytes of model and %d of "
                       "framing (truncated or extended)",
                       path, len, body, TRAINER_BLOB_HEADER + 4);
    }
    uint32_t crc = le32_get(buf + len - 4);
    if (crc != crc32c(buf, len - 4)) {
        return err_set(TWIG_ECORRUPT, "%s fails its checksum (crc32c %08x, the file says %08x)",
                       path, crc32c(buf, len - 4), crc);
    }
    *payload = buf + TRAINER_BLOB_HEADER;
    *n = (size_t)body;
    return 0;
}

/* read DIR/model.blob: 0 with *out (owned) and e set, 1 when there is none, < 0 on an error:
 * TWIG_ECORRUPT / TWIG_EVERSION / TWIG_ETOOBIG for a file that is not a sound model (the
 * caller refits), another code when it cannot be read at all */
static int blob_read_file(trainer_model **out, ensemble_t *e, uint64_t *legacy_version,
                          const char *dir)
{
    *out = NULL;
    char path[4096];
    int rc = path_join(path, sizeof path, dir, TRAINER_BLOB_FILE);
    if (rc < 0) {
        return rc;
    }
    uint8_t *buf;
    size_t len;
    rc = atomic_file_read(&buf, &len, path, TRAINER_BLOB_FILE_MAX);
    if (rc == -ENOENT) {
        return 1;
    }
    if (rc < 0) {
        return rc;
    }
    const uint8_t *payload = NULL;
    size_t n = 0;
    rc = blob_unframe(&payload, &n, legacy_version, buf, len, path);
    Twig__V1__WeightBlob *msg = NULL;
    if (rc == 0 && !(msg = twig__v1__weight_blob__unpack(NULL, n, payload))) {
        rc = err_set(TWIG_ECORRUPT, "%s does not parse as a WeightBlob", path);
    }
    free(buf);
    if (rc < 0) {
        return rc;
    }
    /* the checksum vouches for the bytes; these are the writer's mistakes, should one happen */
    char why[300] = "";
    /* blobs written before the integer field carry the count only as a float stat */
    float legacy = blob_stat(msg, "trained_on", NAN);
    if ((rc = ensemble_from_blob(e, msg)) < 0) {
        snprintf(why, sizeof why, "%s", err_msg());
    } else if (msg->version == 0) {
        snprintf(why, sizeof why, "version 0");
    } else if (msg->trained_on == 0 &&
               !(legacy >= 0.0f && legacy == floorf(legacy) && legacy <= 0x1p53f)) {
        snprintf(why, sizeof why, "trained_on is %g, not a count of rows", (double)legacy);
    } else if (msg->trained_on == 0) {
        msg->trained_on = (uint64_t)legacy;   /* served with the field from now on */
    }
    if (why[0]) {
        if (rc == 0) {
            ensemble_free(e);
        }
        protobuf_c_message_free_unpacked(&msg->base, NULL);
        return err_set(TWIG_ECORRUPT, "%s: %s", path, why);
    }
    trainer_model *m = xcalloc(1, sizeof *m);
    m->msg = msg;
    m->version = msg->version;
    m->trained_on = msg->trained_on;
    m->holdout_mse = blob_stat(msg, "holdout_mse_elites", NAN);
    *out = m;
    return 0;
}

/* DIR/model.version: the highest version this data dir ever published, as decimal text.
 * 0 with *v (0 when there is no file), or TWIG_ECORRUPT / -errno naming the file */
static int version_read_file(uint64_t *v, const char *dir)
{
    *v = 0;
    char path[4096];
    int rc = path_join(path, sizeof path, dir, TRAINER_VERSION_FILE);
    if (rc < 0) {
        return rc;
    }
    uint8_t *buf;
    size_t len;
    rc = atomic_file_read(&buf, &len, path, 64);
    if (rc == -ENOENT) {
        return 0;
    }
    if (rc < 0) {
        return rc == TWIG_ETOOBIG ? err_set(TWIG_ECORRUPT, "%s is too long", path) : rc;
    }
    char text[65];
    memcpy(text, buf, len);
    text[len] = '\0';
    free(buf);
    char *end = NULL;
    errno = 0;
    unsigned long long u = strtoull(text, &end, 10);
    if (len == 0 || text[0] < '0' || text[0] > '9' || errno != 0 || strcmp(end, "\n") != 0 ||
        u == 0) {
        return err_set(TWIG_ECORRUPT, "%s does not hold a version (\"%.*s\")", path,
                       (int)strcspn(text, "\n"), text);
    }
    *v = u;
    return 0;
}

static int version_write_file(const char *dir, uint64_t v)
{
    char path[4096], text[32];
    int rc = path_join(path, sizeof path, dir, TRAINER_VERSION_FILE);
    if (rc < 0) {
        return rc;
    }
    int n = snprintf(text, sizeof text, "%" PRIu64 "\n", v);
    return atomic_file_write(path, text, (size_t)n);
}

/* ---- publishing ---- */

#define TRAINER_EXTRA_STATS 3

/* the blob of the trainer's ensemble as version, with the fit's stats; packed into *bytes
 * (owned) and unpacked into a model (owned) */
static trainer_model *model_build(trainer_t *t, uint8_t **bytes, size_t *n_bytes, uint64_t version,
                                  uint64_t trained_on, int epochs, double seconds,
                                  const char *env_id)
{
    ensemble_blob_t *b = xmalloc(sizeof *b);
    ensemble_blob_init(b, &t->ens, version, env_id);
    size_t ns = b->msg.n_stats;
    Twig__V1__WeightBlob__StatsEntry extra[TRAINER_EXTRA_STATS];
    Twig__V1__WeightBlob__StatsEntry **ptrs = xmalloc((ns + TRAINER_EXTRA_STATS) * sizeof *ptrs);
    memcpy(ptrs, b->msg.stats, ns * sizeof *ptrs);
    static const char *const keys[TRAINER_EXTRA_STATS] = {"trained_on", "train_epochs",
                                                          "train_seconds"};
    const float vals[TRAINER_EXTRA_STATS] = {(float)trained_on, (float)epochs, (float)seconds};
    for (int i = 0; i < TRAINER_EXTRA_STATS; i++) {
        twig__v1__weight_blob__stats_entry__init(&extra[i]);
        extra[i].key = (char *)keys[i];
        extra[i].value = vals[i];
        ptrs[ns + (size_t)i] = &extra[i];
    }
    b->msg.stats = ptrs;
    b->msg.n_stats = ns + TRAINER_EXTRA_STATS;
    b->msg.trained_on = trained_on;   /* what peers act on; the stat is for people */
    size_t n = twig__v1__weight_blob__get_packed_size(&b->msg);
    uint8_t *buf = xmalloc(n);
    twig__v1__weight_blob__pack(&b->msg, buf);
    b->msg.stats = b->stat_ptrs;
    free(ptrs);
    ensemble_blob_free(b);
    free(b);

    trainer_model *m = xcalloc(1, sizeof *m);
    m->msg = twig__v1__weight_blob__unpack(NULL, n, buf);
    TWIG_ASSERT(m->msg != NULL); /* we just packed it */
    m->version = version;
    m->trained_on = trained_on;
    m->holdout_mse = blob_stat(m->msg, "holdout_mse_elites", NAN);
    *bytes = buf;
    *n_bytes = n;
    return m;
}

/* m's GetModel reply, packed once for every call that gets this version (before m is
 * published: off the lock and off the loop) */
static void model_pack_reply(trainer_model *m)
{
    Twig__V1__GetWeightsReply r = TWIG__V1__GET_WEIGHTS_REPLY__INIT;
    r.blob = m->msg;
    r.empty_reason = TWIG__V1__EMPTY_REASON__EMPTY_REASON_NONE;
    m->reply = rpc_packed_from_msg(&r.base);
}

/* reply to a parked or new call with the model (mu held: m stays published meanwhile) */
static void reply_model(rpc_call_t *call, const trainer_model *m)
{
    rpc_call_reply_packed(call, m->reply);
}

static void reply_empty(rpc_call_t *call, Twig__V1__EmptyReason why)
{
    Twig__V1__GetWeightsReply r = TWIG__V1__GET_WEIGHTS_REPLY__INIT;
    r.empty_reason = why;
    rpc_call_reply(call, 0, &r.base);
}

static bool model_newer_for(const trainer_model *m, uint64_t have)
{
    return m && m->version != have;
}

/* ---- the fit ---- */

/* append rows [t->n_rows, end) of the log to the training arrays */
static int read_new_rows(trainer_t *t, uint64_t end, reallog_rows_t *rows)
{
    if (end > t->cap_rows) {
        uint64_t cap = t->cap_rows ? t->cap_rows : 4096;
        while (cap < end) {
            cap *= 2;
        }
        size_t O = rows->obs_dim, A = rows->act_dim;
        t->obs = xrealloc(t->obs, cap * O * sizeof(float));
        t->next_obs = xrealloc(t->next_obs, cap * O * sizeof(float));
        t->act = xrealloc(t->act, cap * A * sizeof(float));
        t->reward = xrealloc(t->reward, cap * sizeof(float));
        t->cap_rows = cap;
    }
    while (t->n_rows < end) {
        uint64_t want = end - t->n_rows;
        int rc = reallog_fetch(t->log, rows, t->n_rows,
                               want < TRAINER_FETCH_ROWS ? (uint32_t)want : TRAINER_FETCH_ROWS);
        if (rc < 0) {
            return rc;
        }
        if (rows->count == 0) {
            return err_set(-ERANGE, "log ends at %" PRIu64 " before %" PRIu64, t->n_rows, end);
        }
        size_t O = rows->obs_dim, A = rows->act_dim, c = rows->count, at = t->n_rows;
        memcpy(t->obs + at * O, rows->obs, c * O * sizeof(float));
        memcpy(t->next_obs + at * O, rows->next_obs, c * O * sizeof(float));
        memcpy(t->act + at * A, rows->act, c * A * sizeof(float));
        memcpy(t->reward + at, rows->reward, c * sizeof(float));
        t->n_rows += c;
    }
    return 0;
}

/* a fresh ensemble for the log's dims, or keep the warm one */
static int ensure_ensemble(trainer_t *t, int n_obs, int n_act)
{
    if (t->ens_ready) {
        return 0;
    }
    ensemble_cfg ec;
    ensemble_train_cfg tc;
    trainer_ensemble_cfg(&ec, &tc, &t->cfg, n_obs, n_act);
    int rc = ensemble_init(&t->ens, &ec, &t->rng);
    if (rc < 0) {
        return rc;
    }
    t->ens_ready = 1;
    return 0;
}

/* the fit's training state for t->ens, fresh moments, unless it exists already */
static int trainer_setup_fit(trainer_t *t)
{
    if (t->tr.grads) {
        return 0;
    }
    ensemble_cfg ec;
    ensemble_train_cfg tc;
    trainer_ensemble_cfg(&ec, &tc, &t->cfg, t->ens.cfg.n_obs, t->ens.cfg.n_act);
    int rc = ensemble_trainer_init(&t->tr, &t->ens, &tc);
    if (rc < 0) {
        return rc;
    }
    t->tr.stop = &t->stop;
    return 0;
}

/* a warm start (at init): the Adam moments of the fit that made the loaded model, from
 * DIR/model.adam; one line says what became of them */
static void trainer_resume_adam(trainer_t *t)
{
    char path[4096];
    int rc = path_join(path, sizeof path, t->dir, TRAINER_ADAM_FILE);
    if (rc == 0 && (rc = trainer_setup_fit(t)) == 0) {
        rc = ensemble_trainer_load_file(&t->tr, &t->ens, path);
    }
    if (rc == -ENOENT) {
        log_warn("event=model_adam_missing file=%s action=fresh_moments", path);
    } else if (rc < 0) {
        log_warn("event=model_adam_discarded file=%s err=%s detail=\"%s\" action=fresh_moments",
                 path, err_name(rc), err_msg());
    } else {
        t->adam_steps = t->tr.steps;
        log_info("event=model_adam_resumed file=%s steps=%lld", path, (long long)t->tr.steps);
    }
}

/* one fit on rows [0, end) and its publication; 0, 1 when stopped, or < 0 */
static int trainer_fit(trainer_t *t, uint64_t end, reallog_rows_t *rows)
{
    reallog_status st;
    reallog_get_status(t->log, &st);
    if (rows->cap == 0) {
        reallog_rows_init(rows, TRAINER_FETCH_ROWS, st.obs_dim, st.act_dim);
    }
    int rc = read_new_rows(t, end, rows);
    if (rc < 0) {
        return rc;
    }
    if (t->cfg.fresh_fit && t->ens_ready) {
        /* new weights and optimiser state; the published blob is a copy and stays served */
        ensemble_trainer_free(&t->tr);
        memset(&t->tr, 0, sizeof t->tr);
        ensemble_free(&t->ens);
        t->ens_ready = 0;
        t->ens_fitted = 0;
    }
    if ((rc = ensure_ensemble(t, (int)st.obs_dim, (int)st.act_dim)) < 0 ||
        (rc = trainer_setup_fit(t)) < 0) {
        return rc;
    }
    if (end > (uint64_t)INT32_MAX) {
        return err_set(-ERANGE, "%" PRIu64 " real rows exceed one fit's int range", end);
    }
    /* a continued fit re-expresses the weights under the refitted normaliser; a new
     * ensemble's random weights are left as drawn */
    t->tr.cfg.keep_function = t->ens_fitted;
    double t0 = clock_now_s();
    ensemble_train_report rep;
    rc = ensemble_train(&t->ens, &t->tr, &t->rng, &rep, t->obs, t->act, t->next_obs, t->reward,
                        (int)end);
    double secs = clock_now_s() - t0;
    if (rc < 0) {
        return rc;
    }
    t->ens_fitted = 1;
    if (atomic_load(&t->stop)) {
        log_info("event=model_fit_abandoned reason=shutdown rows=%" PRIu64 " epochs=%d", end,
                 rep.epochs);
        return 1;
    }
    /* above everything published here and every version known to have been (the floor) */
    pthread_mutex_lock(&t->mu);
    uint64_t newest = t->pub ? t->pub->version : 0;
    uint64_t version = (newest > t->version_floor ? newest : t->version_floor) + 1;
    pthread_mutex_unlock(&t->mu);

    uint8_t *bytes;
    size_t n_bytes;
    trainer_model *m = model_build(t, &bytes, &n_bytes, version, end, rep.epochs, secs, st.env_id);
    /* the version first: whatever happens to model.blob later, a restart numbers above it */
    rc = version_write_file(t->dir, version);
    if (rc == 0) {
        rc = blob_write_file(t->dir, bytes, n_bytes);
    }
    free(bytes);
    char adam[4096];
    if (rc == 0 && (rc = path_join(adam, sizeof adam, t->dir, TRAINER_ADAM_FILE)) == 0) {
        rc = ensemble_trainer_save_file(&t->ens, &t->tr, adam);
    }
    if (rc < 0) {
        /* served anyway: a restart then serves the previous version until the next fit */
        log_warn("event=model_persist_failed version=%" PRIu64 " err=%s detail=\"%s\"", version,
                 err_name(rc), err_msg());
    }
    model_pack_reply(m);
    pthread_mutex_lock(&t->mu);
    trainer_model *old = t->pub;
    t->pub = m;
    t->reply_packs++;
    t->trainings++;
    t->last_train_seconds = secs;
    t->adam_steps = t->tr.steps;
    void (*notify)(void *) = t->on_publish;
    void *notify_arg = t->on_publish_arg;
    pthread_mutex_unlock(&t->mu);
    model_free(old);
    if (notify) {
        notify(notify_arg);   /* outside mu: the owner's wake lock is taken before mu */
    }
    log_info("event=model_published version=%" PRIu64 " trained_on=%" PRIu64
             " n_train=%d n_holdout=%d epochs=%d stopped_early=%d holdout_mse=%.5g"
             " train_loss=%.5g seconds=%.2f bytes=%zu",
             version, end, rep.n_train, rep.n_holdout, rep.epochs, (int)rep.stopped_early,
             rep.holdout_mse_elites, rep.train_loss, secs, n_bytes);
    return 0;
}

static void *trainer_thread(void *arg)
{
    trainer_t *t = arg;
    nn_gemm_set_threads(t->cfg.train_threads);
    reallog_rows_t rows = {0};
    pthread_mutex_lock(&t->mu);
    for (;;) {
        uint64_t have = t->pub ? t->pub->trained_on : 0;
        uint64_t point = run_model_next_point(&t->run, have);
        while (!t->stopping && t->end < point) {
            pthread_cond_wait(&t->cv_train, &t->mu);
        }
        if (t->stopping) {
            break;
        }
        uint64_t end = t->end;
        t->training = true;
        pthread_mutex_unlock(&t->mu);
        int rc = trainer_fit(t, end, &rows);
        pthread_mutex_lock(&t->mu);
        t->training = false;
        if (rc == 1) {
            break;
        }
        if (rc < 0) {
            /* e.g. too few rows for a holdout: wait for the next point past this end */
            log_warn("event=model_fit_failed rows=%" PRIu64 " err=%s detail=\"%s\"", end,
                     err_name(rc), err_msg());
            uint64_t next = run_model_next_point(&t->run, end);
            while (!t->stopping && t->end < next) {
                pthread_cond_wait(&t->cv_train, &t->mu);
            }
        }
    }
    pthread_mutex_unlock(&t->mu);
    reallog_rows_free(&rows);
    return NULL;
}

/* ---- long polls ---- */

static bool trainer_poll_has_news(void *app, const rpc_poll_want *w)
{
    trainer_t *t = app;
    pthread_mutex_lock(&t->mu);
    bool newer = model_newer_for(t->pub, w->have);
    pthread_mutex_unlock(&t->mu);
    return newer;
}

/* a newer model whenever there is one (a fit may have landed just before the wait ended);
 * else NO_VERSION, or NOT_READY once shutting down */
static void trainer_poll_answer(void *app, rpc_call_t *call, const rpc_poll_want *w,
                                rpc_poll_end why)
{
    trainer_t *t = app;
    pthread_mutex_lock(&t->mu);
    if (why == RPC_POLL_END_SHUTDOWN) {
        reply_empty(call, TWIG__V1__EMPTY_REASON__EMPTY_REASON_NOT_READY);
    } else if (model_newer_for(t->pub, w->have)) {
        reply_model(call, t->pub);
    } else {
        reply_empty(call, TWIG__V1__EMPTY_REASON__EMPTY_REASON_NO_VERSION);
    }
    pthread_mutex_unlock(&t->mu);
}

const rpc_longpoll_ops trainer_model_poll_ops = {trainer_poll_has_news, trainer_poll_answer};

void trainer_set_publish_notify(trainer_t *t, void (*fn)(void *arg), void *arg)
{
    pthread_mutex_lock(&t->mu);
    t->on_publish = fn;
    t->on_publish_arg = arg;
    pthread_mutex_unlock(&t->mu);
}

int trainer_get_model(trainer_t *t, rpc_longpoll_t *polls, rpc_call_t *call,
                      const ProtobufCMessage *msg)
{
    const Twig__V1__GetWeightsRequest *q = (const Twig__V1__GetWeightsRequest *)msg;
    if (q->wait_ms > TRAINER_WAIT_MAX_MS) {
        return err_set(-EINVAL, "wait_ms is %u, at most %u", q->wait_ms, TRAINER_WAIT_MAX_MS);
    }
    if (q->have_version > TRAINER_VERSION_HINT_MAX) {
        return err_set(-EINVAL, "have_version is %" PRIu64 ", at most %llu", q->have_version,
                       TRAINER_VERSION_HINT_MAX);
    }
    pthread_mutex_lock(&t->mu);
    uint64_t newest = t->pub ? t->pub->version : 0;
    if (q->have_version > newest && q->have_version > t->version_floor) {
        /* a client holds a version this server does not know (an earlier life's, its model
         * lost): number the next one above it, so no client ever meets its version again
         * with other weights */
        t->version_floor = q->have_version;
        log_info("event=model_version_floor version_floor=%" PRIu64 " from=client",
                 t->version_floor);
    }
    if (t->stopping) {
        pthread_mutex_unlock(&t->mu);
        reply_empty(call, TWIG__V1__EMPTY_REASON__EMPTY_REASON_NOT_READY);
        return 0;
    }
    if (model_newer_for(t->pub, q->have_version)) {
        reply_model(call, t->pub);
        pthread_mutex_unlock(&t->mu);
        return 0;
    }
    pthread_mutex_unlock(&t->mu);
    return rpc_longpoll_park(polls, call, q->wait_ms, &(rpc_poll_want){.have = q->have_version});
}

/* ---- lifetime ---- */

int trainer_opts_check(const void *cfg, const void *run)
{
    (void)run;
    const trainer_cfg *c = cfg;
    if (c->elites > c->ensemble_size) {
        return err_set(-EINVAL, "modelserver.elites (%d) exceeds modelserver.ensemble_size (%d)",
                       c->elites, c->ensemble_size);
    }
    if (c->min_epochs > c->train_max_epochs) {
        return err_set(-EINVAL,
                       "modelserver.min_epochs (%d) exceeds modelserver.train_max_epochs (%d)",
                       c->min_epochs, c->train_max_epochs);
    }
    /* the weights between hidden layers alone; params, grads and two Adam moments each hold
     * them, so past this the first fit would exhaust memory (and abort) instead */
    double hidden_weights = (double)c->ensemble_size * (c->model_layers - 1) *
                            (double)c->model_hidden * c->model_hidden;
    if (hidden_weights > TRAINER_MAX_HIDDEN_WEIGHTS) {
        return err_set(-EINVAL,
                       "modelserver.ensemble_size (%d) x (modelserver.model_layers (%d) - 1) x "
                       "modelserver.model_hidden (%d)^2 is %.3g weights, at most %.3g",
                       c->ensemble_size, c->model_layers, c->model_hidden, hidden_weights,
                       (double)TRAINER_MAX_HIDDEN_WEIGHTS);
    }
    return 0;
}

/* a loaded model must be for the log's env and dims, when the log has them: 0, or
 * TWIG_EMISMATCH (m and e released) */
static int model_check_log(trainer_model *m, ensemble_t *e, reallog_t *log, const char *dir)
{
    reallog_status st;
    reallog_get_status(log, &st);
    if (st.obs_dim && ((uint32_t)e->cfg.n_obs != st.obs_dim ||
                       (uint32_t)e->cfg.n_act != st.act_dim || strcmp(m->msg->env_id, st.env_id))) {
        int rc = err_set(TWIG_EMISMATCH, "%s/%s is for %s (%d, %d), the log for %s (%u, %u)",
                         dir, TRAINER_BLOB_FILE, m->msg->env_id, e->cfg.n_obs, e->cfg.n_act,
                         st.env_id, st.obs_dim, st.act_dim);
        ensemble_free(e);
        model_free(m);
        return rc;
    }
    return 0;
}

int trainer_init(trainer_t *t, const trainer_cfg *cfg, const run_cfg *run, reallog_t *log,
                 const char *dir)
{
    memset(t, 0, sizeof *t);
    int rc = trainer_opts_check(cfg, run);
    if (rc < 0) {
        return rc;
    }
    t->cfg = *cfg;
    t->run = *run;
    t->log = log;
    t->dir = xstrdup(dir);
    atomic_init(&t->stop, 0);
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv_train, NULL);
    t->mu_ready = 1;
    rng_seed(&t->rng, run->seed ^ 0x6d6f64656c5f7472ull); /* "model_tr" */
    t->end = reallog_end(log);

    /* the highest version this data dir published: the next one goes above it */
    char vpath[4096];
    uint64_t floor_file = 0;
    if ((rc = version_read_file(&floor_file, dir)) < 0) {
        if (rc != TWIG_ECORRUPT) {
            return rc;
        }
        log_warn("event=model_version_file_ignored err=%s detail=\"%s\"", err_name(rc),
                 err_msg());
    }
    t->version_floor = floor_file;

    /* the newest model of an earlier run of this server; the log is the source of truth, so
     * a model that is not sound is named and refitted from it, never served or fatal */
    ensemble_t loaded = {0};
    trainer_model *m = NULL;
    uint64_t legacy_version = 0;
    rc = blob_read_file(&m, &loaded, &legacy_version, dir);
    if (rc == 0) {
        rc = model_check_log(m, &loaded, log, dir);
    }
    if (rc == TWIG_ECORRUPT || rc == TWIG_EVERSION || rc == TWIG_ETOOBIG ||
        rc == TWIG_EMISMATCH) {
        if (legacy_version > t->version_floor && legacy_version <= TRAINER_VERSION_HINT_MAX) {
            t->version_floor = legacy_version;
        }
        path_join(vpath, sizeof vpath, dir, TRAINER_BLOB_FILE);
        log_warn("event=model_discarded file=%s err=%s detail=\"%s\" action=refit_from_log"
                 " end_offset=%" PRIu64 " version_floor=%" PRIu64,
                 vpath, err_name(rc), err_msg(), t->end, t->version_floor);
        return 0;
    }
    if (rc < 0) {
        return rc;   /* not readable at all (permissions, I/O): the operator's to fix */
    }
    if (rc == 1) {
        log_info("event=model_none dir=%s version_floor=%" PRIu64, dir, t->version_floor);
        return 0;
    }
    if (m->trained_on > t->end) {
        log_warn("event=model_ahead_of_log version=%" PRIu64 " trained_on=%" PRIu64
                 " end_offset=%" PRIu64,
                 m->version, m->trained_on, t->end);
    }
    /* warm start when the options still describe the same ensemble */
    ensemble_cfg ec;
    ensemble_train_cfg tc;
    trainer_ensemble_cfg(&ec, &tc, cfg, loaded.cfg.n_obs, loaded.cfg.n_act);
    bool warm = ec.n_members == loaded.cfg.n_members && ec.n_elites == loaded.cfg.n_elites &&
                ec.n_hidden == loaded.cfg.n_hidden && ec.n_layers == loaded.cfg.n_layers &&
                ec.learn_reward == loaded.cfg.learn_reward;
    model_pack_reply(m);
    t->pub = m;
    t->reply_packs++;
    log_info("event=model_loaded version=%" PRIu64 " trained_on=%" PRIu64 " holdout_mse=%.5g"
             " version_floor=%" PRIu64,
             m->version, m->trained_on, m->holdout_mse, t->version_floor);
    if (warm) {
        t->ens = loaded;
        t->ens_ready = 1;
        t->ens_fitted = 1;
        if (!cfg->fresh_fit) {
            trainer_resume_adam(t);
        }
    } else {
        log_warn("event=model_options_changed version=%" PRIu64 " action=cold_start", m->version);
        ensemble_free(&loaded);
    }
    return 0;
}

int trainer_start(trainer_t *t)
{
    int rc = pthread_create(&t->train_thread, NULL, trainer_thread, t);
    if (rc != 0) {
        return err_set(-rc, "trainer thread: %s", strerror(rc));
    }
    t->threads_started = 1;
    return 0;
}

void trainer_notify_end(trainer_t *t, uint64_t end)
{
    pthread_mutex_lock(&t->mu);
    if (end > t->end) {
        t->end = end;
        pthread_cond_signal(&t->cv_train);
    }
    pthread_mutex_unlock(&t->mu);
}

void trainer_shutdown(trainer_t *t)
{
    if (!t->mu_ready) {
        return;
    }
    atomic_store(&t->stop, 1);
    pthread_mutex_lock(&t->mu);
    if (!t->stopping) {
        t->stopping = 1;
        pthread_cond_broadcast(&t->cv_train);
    }
    pthread_mutex_unlock(&t->mu);
}

void trainer_free(trainer_t *t)
{
    if (t->mu_ready) {
        trainer_shutdown(t);
        if (t->threads_started) {
            pthread_join(t->train_thread, NULL);
        }
        pthread_mutex_destroy(&t->mu);
        pthread_cond_destroy(&t->cv_train);
    }
    model_free(t->pub);
    ensemble_trainer_free(&t->tr);
    ensemble_free(&t->ens);
    free(t->obs);
    free(t->act);
    free(t->next_obs);
    free(t->reward);
    free(t->dir);
    memset(t, 0, sizeof *t);
}

void trainer_get_status(trainer_t *t, trainer_status *st)
{
    memset(st, 0, sizeof *st);
    pthread_mutex_lock(&t->mu);
    if (t->pub) {
        st->version = t->pub->version;
        st->trained_on = t->pub->trained_on;
        st->holdout_mse = t->pub->holdout_mse;
    }
    st->trainings = t->trainings;
    st->reply_packs = t->reply_packs;
    st->training = t->training;
    st->last_train_seconds = t->last_train_seconds;
    st->adam_steps = t->adam_steps;
    pthread_mutex_unlock(&t->mu);
}
