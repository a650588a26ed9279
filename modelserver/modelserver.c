/* modelserver.c - the model server's RPC handlers over the real-transition log */
#include "modelserver/modelserver.h"

#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/rpc/stats.h"
#include "common/base/portfile.h"
#include "common/base/err.h"
#include "common/base/log.h"
#include "common/base/mem.h"
#include "common/rpc/msg.h"
#include "common/rpc/tls_run.h"
#include "modelserver/fetcher.h"

/* ---- AppendReal ---- */

static void ms_fill_ack(Twig__V1__AppendRealReply *r, const reallog_ack *ack)
{
    twig__v1__append_real_reply__init(r);
    r->first_offset = ack->first_offset;
    r->count = ack->count;
    r->duplicate = ack->duplicate != 0;
    r->seq = ack->seq;
}

/* appender thread: the batch is durable (or the log failed) */
static void ms_on_appended(void *arg, int rc, const reallog_ack *ack, const char *text)
{
    rpc_call_t *call = arg;
    if (rc < 0) {
        err_set(rc, "%s", text);
        rpc_call_reply(call, rc, NULL);
        return;
    }
    Twig__V1__AppendRealReply r;
    ms_fill_ack(&r, ack);
    rpc_call_reply(call, 0, &r.base);
}

/* CQ thread: validate and queue; the reply comes from the appender */
static int ms_on_append(rpc_call_t *call, const ProtobufCMessage *msg, void *app)
{
    modelserver_t *ms = app;
    const Twig__V1__TransitionBatch *m = (const Twig__V1__TransitionBatch *)msg;
    int rc = msg_batch_check(m, MSG_BATCH_MAX_COUNT);
    if (rc < 0) {
        return rc;
    }
    tbatch_t b;
    msg_batch_view(&b, m);
    rc = reallog_append_async(&ms->log, &b, ms_on_appended, call);
    return rc < 0 ? rc : RPC_DEFER;   /* m stays valid until the reply */
}

/* ---- AppendRealStream ---- */

/* per-call state of a stream. References: one held by the call (dropped when the rpc layer
 * releases the call, on every path) and one per append in the log's queue. */
typedef struct ms_stream {
    pthread_mutex_t mu;
    rpc_call_t *call;
    uint32_t refs;
    uint32_t pending;         /* appends queued, not done */
    int ended;                /* end of stream seen: reply when pending reaches 0 */
    int answered;             /* the call got its reply (or an error from the handler) */
    int rc;                   /* first append failure */
    char text[320];
    Twig__V1__AppendRealReply *acks;   /* (cap_acks), by message number */
    size_t cap_acks;
    uint64_t n_msgs;
    uint64_t transitions;
} ms_stream;

/* one stream message, copied: the layer frees the message when the handler returns */
typedef struct ms_stream_item {
    ms_stream *st;
    uint64_t index;
    tbatch_t b;               /* points into data */
    char ids[2 * (MSG_MAX_ID_LEN + 1)];
    float data[];             /* obs, act, reward, next_obs, then the two flag arrays */
} ms_stream_item;

static ms_stream_item *ms_item_copy(ms_stream *st, uint64_t index, const tbatch_t *b)
{
    size_t c = b->count, O = b->obs_dim, A = b->act_dim;
    size_t nf = c * (2 * O + A + 1);
    ms_stream_item *it = xmalloc(sizeof *it + nf * sizeof(float) + 2 * c * sizeof(int));
    it->st = st;
    it->index = index;
    float *p = it->data;
    int *flags = (int *)(p + nf);
    memcpy(p, b->obs, c * O * 4);
    memcpy(p + c * O, b->act, c * A * 4);
    memcpy(p + c * (O + A), b->reward, c * 4);
    memcpy(p + c * (O + A + 1), b->next_obs, c * O * 4);
    memcpy(flags, b->terminated, c * sizeof(int));
    memcpy(flags + c, b->truncated, c * sizeof(int));
    size_t ne = strlen(b->env_id) + 1;
    memcpy(it->ids, b->env_id, ne);
    snprintf(it->ids + ne, sizeof it->ids - ne, "%s", b->source_id);
    it->b = *b;
    it->b.env_id = it->ids;
    it->b.source_id = it->ids + ne;
    it->b.obs = p;
    it->b.act = p + c * O;
    it->b.reward = p + c * (O + A);
    it->b.next_obs = p + c * (O + A + 1);
    it->b.terminated = flags;
    it->b.truncated = flags + c;
    return it;
}

/* drop a reference (st->mu held); frees st at zero. Returns 1 if freed. */
static int ms_stream_unref_locked(ms_stream *st)
{
    if (--st->refs > 0) {
        return 0;
    }
    pthread_mutex_unlock(&st->mu);
    pthread_mutex_destroy(&st->mu);
    free(st->acks);
    free(st);
    return 1;
}

/* the rpc layer released the call */
static void ms_stream_release(void *data)
{
    ms_stream *st = data;
    pthread_mutex_lock(&st->mu);
    st->call = NULL;
    if (!ms_stream_unref_locked(st)) {
        pthread_mutex_unlock(&st->mu);
    }
}

/* send the stream's reply (st->mu held) */
static void ms_stream_reply(ms_stream *st)
{
    st->answered = 1;
    if (st->rc < 0) {
        err_set(st->rc, "%s", st->text);
        rpc_call_reply(st->call, st->rc, NULL);
        return;
    }
    Twig__V1__AppendRealStreamReply r = TWIG__V1__APPEND_REAL_STREAM_REPLY__INIT;
    Twig__V1__AppendRealReply **ptrs = xmalloc((st->n_msgs ? st->n_msgs : 1) * sizeof *ptrs);
    for (uint64_t i = 0; i < st->n_msgs; i++) {
        ptrs[i] = &st->acks[i];
    }
    r.n_acks = st->n_msgs;
    r.acks = ptrs;
    r.transitions = st->transitions;
    rpc_call_reply(st->call, 0, &r.base);
    free(ptrs);
}

/* appender thread */
static void ms_on_stream_appended(void *arg, int rc, const reallog_ack *ack, const char *text)
{
    ms_stream_item *it = arg;
    ms_stream *st = it->st;
    pthread_mutex_lock(&st->mu);
    st->pending--;
    if (rc < 0 && st->rc == 0) {
        st->rc = rc;
        snprintf(st->text, sizeof st->text, "message #%" PRIu64 ": %s", it->index, text);
    } else if (rc == 0) {
        ms_fill_ack(&st->acks[it->index], ack);
        st->transitions += ack->duplicate ? 0 : ack->count;
    }
    if (st->pending == 0 && st->ended && !st->answered && st->call) {
        ms_stream_reply(st);
    }
    free(it);
    if (!ms_stream_unref_locked(st)) {
        pthread_mutex_unlock(&st->mu);
    }
}

/* CQ thread: once per message, then once with msg == NULL */
static int ms_on_append_stream(rpc_call_t *call, const ProtobufCMessage *msg, void *app)
{
    modelserver_t *ms = app;
    ms_stream *st = rpc_call_data(call);
    if (!st) {
        st = xcalloc(1, sizeof *st);
        pthread_mutex_init(&st->mu, NULL);
        st->call = call;
        st->refs = 1;
        rpc_call_set_data(call, st);
        rpc_call_set_data_free(call, ms_stream_release);
    }
    const Twig__V1__TransitionBatch *m = (const Twig__V1__TransitionBatch *)msg;
    tbatch_t b;
    int rc = 0;
    if (m) {
        rc = msg_batch_check(m, MSG_BATCH_MAX_COUNT);
        if (rc == 0) {
            msg_batch_view(&b, m);
            /* flow control: the stream is not read further while the log's queue is full;
             * this holds the CQ thread at most until the disk makes room (no lock held) */
            rc = reallog_wait_room(&ms->log, reallog_batch_bytes(&b), MODELSERVER_ROOM_WAIT_MS);
        }
    }
    pthread_mutex_lock(&st->mu);
    if (st->answered) {
        pthread_mutex_unlock(&st->mu);
        return 0;
    }
    if (!m) {
        /* end of stream: reply now, or when the last append is durable */
        st->ended = 1;
        int now = st->pending == 0;
        if (now) {
            ms_stream_reply(st);
        }
        pthread_mutex_unlock(&st->mu);
        return now ? 0 : RPC_DEFER;
    }
    uint64_t index = st->n_msgs;
    if (rc == 0 && st->rc < 0) {
        rc = err_set(st->rc, "%s", st->text);   /* an earlier append failed */
    } else if (rc == 0) {
        if (st->n_msgs == st->cap_acks) {
            st->cap_acks = st->cap_acks ? 2 * st->cap_acks : 64;
            st->acks = xrealloc(st->acks, st->cap_acks * sizeof *st->acks);
        }
        twig__v1__append_real_reply__init(&st->acks[index]);
        st->n_msgs++;
        ms_stream_item *it = ms_item_copy(st, index, &b);
        rc = reallog_append_async(&ms->log, &it->b, ms_on_stream_appended, it);
        if (rc < 0) {
            free(it);
        } else {
            st->pending++;
            st->refs++;
        }
    }
    if (rc < 0) {
        if (!strstr(err_msg(), "message #")) {
            char why[320];
            snprintf(why, sizeof why, "%s", err_msg());
            err_set(rc, "message #%" PRIu64 ": %s", index, why);
        }
        st->answered = 1;   /* the layer answers the call with this error */
    }
    pthread_mutex_unlock(&st->mu);
    return rc < 0 ? rc : 0;
}

/* ---- FetchReal ---- */

/* hand a fetch to the reader thread, which replies (loop thread): RPC_DEFER, or the
 * refusal (queue full, shutting down) for the caller to answer with */
static int ms_queue_fetch(modelserver_t *ms, rpc_call_t *call, uint64_t from, uint32_t max_count,
                          Twig__V1__EmptyReason if_empty)
{
    int rc = fetcher_submit(&ms->fetcher, call, from, max_count, (int)if_empty);
    return rc < 0 ? rc : RPC_DEFER;
}

/* shutting down: no rows, NOT_READY (the reader thread has stopped) */
static void ms_reply_not_ready(modelserver_t *ms, rpc_call_t *call, uint64_t from)
{
    Twig__V1__FetchRealReply r = TWIG__V1__FETCH_REAL_REPLY__INIT;
    r.first_offset = from;
    r.end_offset = reallog_end(&ms->log);
    r.empty_reason = TWIG__V1__EMPTY_REASON__EMPTY_REASON_NOT_READY;
    rpc_call_reply(call, 0, &r.base);
}

/* a parked FetchReal waits for rows past its from_offset (want.have) */
static bool ms_fetch_has_news(void *app, const rpc_poll_want *w)
{
    return w->have < reallog_end(&((modelserver_t *)app)->log);
}

/* rows or the wait's end: what the log has (AT_END when nothing); shutdown: NOT_READY */
static void ms_fetch_answer(void *app, rpc_call_t *call, const rpc_poll_want *w,
                            rpc_poll_end why)
{
    int rc = ms_queue_fetch(app, call, w->have, (uint32_t)w->arg,
                            why == RPC_POLL_END_SHUTDOWN
                                ? TWIG__V1__EMPTY_REASON__EMPTY_REASON_NOT_READY
                                : TWIG__V1__EMPTY_REASON__EMPTY_REASON_AT_END);
    if (rc < 0) {
        rpc_call_reply(call, rc, NULL);
    }
}

static const rpc_longpoll_ops ms_fetch_poll_ops = {ms_fetch_has_news, ms_fetch_answer};

/* the log's end moved or a model was published: answer the long polls it concerns (loop
 * thread; one wake may stand for both) */
static void ms_on_wake(uv_async_t *h)
{
    modelserver_t *ms = h->data;
    rpc_longpoll_notify(&ms->fetch_polls);
    rpc_longpoll_notify(&ms->model_polls);
}

/* appender thread: wake the loop (sends coalesce; on_wake looks at the end itself) */
static void ms_on_log_end(void *arg, uint64_t end)
{
    modelserver_t *ms = arg;
    pthread_mutex_lock(&ms->wake_mu);
    if (ms->trainer_open) {
        trainer_notify_end(&ms->trainer, end);
    }
    if (ms->wake_open) {
        uv_async_send(&ms->wake);
    }
    pthread_mutex_unlock(&ms->wake_mu);
}

/* trainer thread: a model was published, wake the loop for the parked GetModel calls */
static void ms_on_model_published(void *arg)
{
    modelserver_t *ms = arg;
    pthread_mutex_lock(&ms->wake_mu);
    if (ms->wake_open) {
        uv_async_send(&ms->wake);
    }
    pthread_mutex_unlock(&ms->wake_mu);
}

/* appender thread: the log stopped being writable (disk full, I/O error) or writes again.
 * Readiness follows it; liveness does not (the process is fine and recovers by itself). */
static void ms_on_log_health(void *arg, int writable, const char *why)
{
    modelserver_t *ms = arg;
    pthread_mutex_lock(&ms->wake_mu);
    if (ms->wake_open && ms->srv) {   /* wake_open: not shutting down (srv still there) */
        rpc_server_set_ready(ms->srv, writable != 0);
    }
    pthread_mutex_unlock(&ms->wake_mu);
    if (writable) {
        log_info("event=ready reason=log_writable");
    } else {
        log_warn("event=not_ready reason=log_not_writable detail=\"%s\"", why);
    }
}

/* loop thread */
static int ms_on_fetch(rpc_call_t *call, const ProtobufCMessage *msg, void *app)
{
    modelserver_t *ms = app;
    const Twig__V1__FetchRealRequest *q = (const Twig__V1__FetchRealRequest *)msg;
    if (q->max_count > MODELSERVER_FETCH_MAX) {
        return err_set(-EINVAL, "max_count is %u, at most %u", q->max_count,
                       MODELSERVER_FETCH_MAX);
    }
    if (q->wait_ms > MODELSERVER_WAIT_MAX_MS) {
        return err_set(-EINVAL, "wait_ms is %u, at most %u", q->wait_ms,
                       MODELSERVER_WAIT_MAX_MS);
    }
    uint32_t max_count = q->max_count ? q->max_count : MODELSERVER_FETCH_DEFAULT;
    uint64_t end = reallog_end(&ms->log);
    if (q->from_offset > end) {
        return err_set(-ERANGE, "from_offset %" PRIu64 " is past the log's end %" PRIu64,
                       q->from_offset, end);
    }
    if (ms->shutting_down) {
        ms_reply_not_ready(ms, call, q->from_offset);
        return 0;
    }
    if (q->from_offset < end || q->wait_ms == 0) {
        return ms_queue_fetch(ms, call, q->from_offset, max_count,
                              TWIG__V1__EMPTY_REASON__EMPTY_REASON_AT_END);
    }
    /* long poll: park until data arrives or the wait (or the client's deadline) is up;
     * data that arrived since reading the end is seen by the park itself */
    return rpc_longpoll_park(&ms->fetch_polls, call, q->wait_ms,
                             &(rpc_poll_want){.have = q->from_offset, .arg = max_count});
}

/* ---- LogStatus ---- */

static int ms_on_status(rpc_call_t *call, const ProtobufCMessage *msg, void *app)
{
    modelserver_t *ms = app;
    reallog_status st;
    reallog_get_status(&ms->log, &st);
    Twig__V1__LogStatusReply r = TWIG__V1__LOG_STATUS_REPLY__INIT;
    r.end_offset = st.end_offset;
    r.sources = st.sources;
    r.env_id = st.env_id;
    r.obs_dim = st.obs_dim;
    r.act_dim = st.act_dim;
    r.segments = st.segments;
    r.bytes = st.bytes;
    r.parked_fetches = rpc_longpoll_parked(&ms->fetch_polls);
    r.source_epoch = st.epoch;
    r.source_fence = st.fence;
    const Twig__V1__LogStatusRequest *q = (const Twig__V1__LogStatusRequest *)msg;
    if (q->source_id && q->source_id[0]) {
        if (strlen(q->source_id) > MSG_MAX_ID_LEN) {
            return err_set(-EINVAL, "LogStatus: source_id is longer than %u bytes",
                           MSG_MAX_ID_LEN);
        }
        reallog_source_status(&ms->log, q->source_id, &r.source_seq, &r.source_transitions);
    }
    rpc_call_reply(call, 0, &r.base);
    return 0;
}

/* ---- GetModel ---- */

static int ms_on_get_model(rpc_call_t *call, const ProtobufCMessage *msg, void *app)
{
    modelserver_t *ms = app;
    return trainer_get_model(&ms->trainer, &ms->model_polls, call, msg);
}

/* ---- Stats: what the launcher's progress line shows ---- */

/* the figures of GetStats and /metrics (metrics_collect_fn) */
static int ms_collect_stats(stats_kv *out, int max, void *app)
{
    modelserver_t *ms = app;
    trainer_status ts;
    trainer_get_status(&ms->trainer, &ts);
    reallog_status ls;
    reallog_get_status(&ms->log, &ls);
    /* doubles: counts stay exact up to 2^53 */
    const stats_kv v[] = {
        {"log_end", (double)ls.end_offset},
        {"ready", ls.writable ? 1.0 : 0.0},
        {"log_write_failures", (double)ls.write_failures},
        {"sources", (double)ls.sources},
        {"max_sources", (double)ls.max_sources},
        {"source_epoch", (double)ls.epoch},
        {"source_fence", (double)ls.fence},
        {"sources_evicted", (double)ls.evictions},
        {"sources_fenced", (double)ls.fenced},
        {"sources_refused_full", (double)ls.sources_full},
        {"fetch_queued", (double)fetcher_queued(&ms->fetcher)},
        {"model_version", (double)ts.version},
        {"model_trained_on", (double)ts.trained_on},
        {"model_holdout_loss", ts.version ? (double)ts.holdout_mse : NAN},
        {"model_trainings", (double)ts.trainings},
        {"model_reply_packs", (double)ts.reply_packs},
        {"model_training", ts.training ? 1.0 : 0.0},
        {"model_last_train_s", ts.last_train_seconds},
    };
    return stats_copy(out, max, v, STATS_COUNT(v));
}

static int ms_on_stats(rpc_call_t *call, const ProtobufCMessage *msg, void *app)
{
    (void)msg;
    stats_kv v[STATS_MAX];
    stats_reply(call, "modelserver", v, ms_collect_stats(v, STATS_MAX, app));
    return 0;
}

/* /metrics (common/rpc/metrics.h): one row a series, over the Stats keys above */
#define C METRICS_COUNTER
#define G METRICS_GAUGE
static const metrics_series ms_series[] = {
    {"twig_modelserver_log_end", G, "real transitions in the durable log (its end offset)",
     "log_end"},
    {"twig_modelserver_ready", G, "1 while the log is writable", "ready"},
    {"twig_modelserver_log_write_failures_total", C, "failed log writes", "log_write_failures"},
    {"twig_modelserver_sources", G, "sources (actors) in the log's dedup table", "sources"},
    {"twig_modelserver_sources_evicted_total", C, "sources evicted from the dedup table",
     "sources_evicted"},
    {"twig_modelserver_sources_refused_full_total", C,
     "appends of new sources refused: dedup table full", "sources_refused_full"},
    {"twig_modelserver_fetch_queued", G, "FetchReal long polls parked", "fetch_queued"},
    {"twig_modelserver_model_version", G, "newest model version served", "model_version"},
    {"twig_modelserver_model_trained_on", G, "real transitions the newest model was trained on",
     "model_trained_on"},
    {"twig_modelserver_model_holdout_loss", G, "holdout MSE of the newest model (NaN before one)",
     "model_holdout_loss"},
    {"twig_modelserver_model_trainings_total", C, "ensemble trainings finished",
     "model_trainings"},
    {"twig_modelserver_model_training", G, "1 while the ensemble trains", "model_training"},
    {"twig_modelserver_model_last_train_seconds", G, "duration of the last training",
     "model_last_train_s"},
};
#undef C
#undef G

static const rpc_method ms_methods[] = {
    {"/twig.v1.ModelServer/AppendReal", &twig__v1__transition_batch__descriptor, ms_on_append,
     RPC_KIND_UNARY, RPC_RUN_ON_CQ},
    {"/twig.v1.ModelServer/AppendRealStream", &twig__v1__transition_batch__descriptor,
     ms_on_append_stream, RPC_KIND_CLIENT_STREAM, RPC_RUN_ON_CQ},
    {"/twig.v1.ModelServer/FetchReal", &twig__v1__fetch_real_request__descriptor, ms_on_fetch,
     RPC_KIND_UNARY, RPC_RUN_ON_LOOP},
    {"/twig.v1.ModelServer/LogStatus", &twig__v1__log_status_request__descriptor, ms_on_status,
     RPC_KIND_UNARY, RPC_RUN_ON_CQ},
    {"/twig.v1.ModelServer/GetModel", &twig__v1__get_weights_request__descriptor,
     ms_on_get_model, RPC_KIND_UNARY, RPC_RUN_ON_LOOP},
    {"/twig.v1.Stats/GetStats", &twig__v1__stats_request__descriptor, ms_on_stats,
     RPC_KIND_UNARY, RPC_RUN_ON_CQ},
};

/* ---- lifetime ---- */

static void ms_on_stop(void *ms)
{
    modelserver_shutdown(ms);
}


int modelserver_init(modelserver_t *ms, const modelserver_cfg *cfg)
{
    memset(ms, 0, sizeof *ms);
    ms->cfg = *cfg;
    if (ms->cfg.grace_ms <= 0) {
        ms->cfg.grace_ms = MODELSERVER_GRACE_MS;
    }
    pthread_mutex_init(&ms->wake_mu, NULL);
    int rc = uv_loop_init(&ms->loop);
    if (rc < 0) {
        return err_set(rc, "uv_loop_init: %s", uv_strerror(rc));
    }
    ms->loop_ready = 1;
    rpc_longpoll_init(&ms->fetch_polls, &ms->loop, &ms_fetch_poll_ops, ms);

    reallog_opts o = reallog_opts_default(cfg->data_dir);
    o.env_id = cfg->env_id;
    o.obs_dim = cfg->obs_dim;
    o.act_dim = cfg->act_dim;
    o.sync = cfg->sync;
    if (cfg->max_sources) {
        o.max_sources = cfg->max_sources;
    }
    if (cfg->source_quiet_steps) {
        o.quiet_steps = cfg->source_quiet_steps;
    }
    if (cfg->segment_bytes) {
        o.segment_bytes = cfg->segment_bytes;
    }
    if ((rc = reallog_open(&ms->log, &o)) < 0) {
        if (rc == TWIG_EMISMATCH) {   /* a log of another env: the config, not the machine */
            char why[512];
            snprintf(why, sizeof why, "%s", err_msg());
            return err_set(TWIG_ECONFIG, "%s", why);
        }
        return rc;
    }
    ms->log_open = 1;
    if (cfg->run && reallog_end(&ms->log) > cfg->run->real_steps) {
        return err_set(TWIG_ECONFIG,
                       "the log in %s holds %" PRIu64 " real steps, more than real_steps %" PRIu64
                       ": a run's budget can grow, not shrink (give real_steps %" PRIu64
                       " or more, or start a new run)",
                       cfg->data_dir, reallog_end(&ms->log), cfg->run->real_steps,
                       reallog_end(&ms->log));
    }
    if ((rc = fetcher_start(&ms->fetcher, &ms->log, MODELSERVER_FETCH_MAX)) < 0) {
        return rc;
    }
    if ((rc = trainer_init(&ms->trainer, cfg->train, cfg->run, &ms->log, cfg->data_dir)) < 0) {
        return rc;
    }
    rpc_longpoll_init(&ms->model_polls, &ms->loop, &trainer_model_poll_ops, &ms->trainer);
    trainer_set_publish_notify(&ms->trainer, ms_on_model_published, ms);
    if ((rc = trainer_start(&ms->trainer)) < 0) {
        return rc;
    }
    ms->trainer_open = 1;

    uv_async_init(&ms->loop, &ms->wake, ms_on_wake);
    ms->wake.data = ms;
    ms->wake_ready = 1;
    ms->wake_open = 1;
    reallog_set_notify(&ms->log, ms_on_log_end, ms);
    daemon_signals_start(&ms->signals, &ms->loop, ms_on_stop, ms);

    rpc_tls tls = rpc_tls_of_run(cfg->run);
    rpc_server_cfg sc = {.listen = cfg->listen, .loop = &ms->loop, .app = ms, .tls = &tls};
    if ((rc = rpc_server_init(&ms->srv, &sc, ms_methods,
                              sizeof ms_methods / sizeof ms_methods[0])) < 0) {
        ms->srv = NULL;
        return rc;
    }
    if ((rc = rpc_server_start(ms->srv)) < 0) {
        return rc;
    }
    reallog_set_health(&ms->log, ms_on_log_health, ms);
    ms->port = rpc_server_port(ms->srv);
    if (cfg->port_file && (rc = portfile_write(cfg->port_file, ms->port)) < 0) {
        return rc;
    }
    metrics_cfg mcfg = {.listen = cfg->metrics_listen, .series = ms_series,
                        .n_series = STATS_COUNT(ms_series), .collect = ms_collect_stats,
                        .app = ms, .srv = ms->srv};
    if ((rc = metrics_init(&ms->metrics, &mcfg)) < 0) {
        return rc;
    }
    reallog_status st;
    reallog_get_status(&ms->log, &st);
    log_info("event=started listen=%s port=%d data_dir=%s fsync=%s end_offset=%" PRIu64
             " sources=%u segments=%u env_id=%s obs_dim=%u act_dim=%u max_sources=%u"
             " source_fence=%" PRIu64,
             cfg->listen, ms->port, cfg->data_dir, reallog_sync_name(cfg->sync), st.end_offset,
             st.sources, st.segments, st.env_id, st.obs_dim, st.act_dim, st.max_sources,
             st.fence);
    return 0;
}

static void ms_close_quiet(uv_handle_t *h)
{
    if (!uv_is_closing(h)) {
        uv_close(h, NULL);
    }
}

void modelserver_shutdown(modelserver_t *ms)
{
    if (ms->shutting_down) {
        return;
    }
    ms->shutting_down = 1;
    log_info("event=shutdown_begin grace_ms=%d parked_fetches=%u", ms->cfg.grace_ms,
             rpc_longpoll_parked(&ms->fetch_polls));
    if (ms->srv) {
        rpc_server_shutdown(ms->srv, ms->cfg.grace_ms);
    }
    trainer_shutdown(&ms->trainer);   /* refuses new GetModel calls, ends a fit */
    rpc_longpoll_close(&ms->model_polls);   /* parked GetModel calls: NOT_READY now */
    rpc_longpoll_close(&ms->fetch_polls);   /* parked FetchReal calls: NOT_READY now */
    fetcher_stop(&ms->fetcher);             /* answers what is queued (those, too) */
    /* only the handles init reached: a failed init may stop before any of them */
    daemon_signals_close(&ms->signals);
    pthread_mutex_lock(&ms->wake_mu);
    ms->wake_open = 0;
    pthread_mutex_unlock(&ms->wake_mu);
    if (ms->wake_ready) {
        ms_close_quiet((uv_handle_t *)&ms->wake);
    }
}

int modelserver_run(modelserver_t *ms)
{
    uv_run(&ms->loop, UV_RUN_DEFAULT);
    return 0;
}

void modelserver_free(modelserver_t *ms)
{
    metrics_free(&ms->metrics);   /* first: a scrape reads what the rest releases */
    if (ms->loop_ready && !ms->shutting_down) {
        /* a failed init, or one never run: close what init opened, then let the loop run
         * the closes and the rpc server's end (its handles close once its calls are over) */
        modelserver_shutdown(ms);
        uv_run(&ms->loop, UV_RUN_DEFAULT);
    }
    if (ms->srv) {
        rpc_server_free(ms->srv);   /* waits for the CQ thread */
        ms->srv = NULL;
    }
    if (ms->loop_ready) {
        uv_run(&ms->loop, UV_RUN_DEFAULT);   /* pending close callbacks */
    }
    pthread_mutex_lock(&ms->wake_mu);
    ms->trainer_open = 0;
    pthread_mutex_unlock(&ms->wake_mu);
    trainer_free(&ms->trainer);       /* joins the fit: before the log closes */
    fetcher_stop(&ms->fetcher);       /* stopped by the shutdown already; before the log closes */
    if (ms->log_open) {
        reallog_status st;
        reallog_get_status(&ms->log, &st);
        reallog_close(&ms->log);
        log_info("event=log_closed end_offset=%" PRIu64 " segments=%u", st.end_offset,
                 st.segments);
    }
    if (ms->loop_ready) {
        int rc = uv_loop_close(&ms->loop);
        if (rc < 0) {
            log_warn("event=loop_close_failed err=%s", uv_strerror(rc));
        }
    }
    pthread_mutex_destroy(&ms->wake_mu);
    memset(ms, 0, sizeof *ms);
}
