/* tests of modelserver/trainer: fits at the training points on Pendulum data appended to a
 * real log, GetModel long polls over a real rpc server, the blob predicts better than "no
 * change", the newest model survives a restart, bad requests are refused */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <time.h>

#include "common/base/crc32c.h"
#include "common/config/config.h"
#include "common/nn/ensemble.h"
#include "common/rpc/ensemble_blob.h"
#include "common/base/err.h"
#include "common/rpc/longpoll.h"
#include "common/rpc/rpc.h"
#include "common/config/run_config.h"
#include "env_data.h"
#include "fixture.h"
#include "modelserver/trainer.h"
#include "tests/procfix.h"

#define MS_BIN TWIG_BIN_DIR "/modelserver/twig-modelserver"

#define GET_MODEL "/twig.v1.ModelServer/GetModel"

static char dir[PROCFIX_DIR_LEN];

static void setup(void)
{
    procfix_tmpdir(dir, sizeof dir);
    rpc_lib_init();
}

static void teardown(void)
{
    procfix_reap_all();
    rpc_lib_shutdown(5000);
    procfix_tmpdir_done(dir);
}

TestSuite(trainer, .init = setup, .fini = teardown, .timeout = 120);

/* the log, the trainer and a server answering GetModel, as the model server wires them:
 * GetModel on a loop (its own thread here), parked on a long poll the publish wakes */
typedef struct rig {
    reallog_t log;
    trainer_t tr;
    rpc_server_t *srv;
    rpc_client_t *cl;
    char addr[64];
    trainer_cfg tcfg;
    run_cfg run;
    uv_loop_t loop;
    pthread_t loop_thread;
    uv_async_t wake;          /* a model was published: notify the polls */
    uv_async_t stop;          /* rig_stop: shut down on the loop thread */
    rpc_longpoll_t polls;
    pthread_mutex_t mu;       /* guards wake_open, started, init_rc */
    pthread_cond_t cv;
    bool wake_open;
    bool started;
    int init_rc;
} rig;

static int on_get_model(rpc_call_t *call, const ProtobufCMessage *msg, void *app)
{
    rig *r = app;
    return trainer_get_model(&r->tr, &r->polls, call, msg);
}

static void on_end(void *arg, uint64_t end)
{
    trainer_notify_end(arg, end);
}

static const rpc_method methods[] = {
    {GET_MODEL, &twig__v1__get_weights_request__descriptor, on_get_model, RPC_KIND_UNARY,
     RPC_RUN_ON_LOOP},
};

/* trainer thread */
static void rig_on_published(void *arg)
{
    rig *r = arg;
    pthread_mutex_lock(&r->mu);
    if (r->wake_open) {
        uv_async_send(&r->wake);
    }
    pthread_mutex_unlock(&r->mu);
}

static void rig_on_wake(uv_async_t *h)
{
    rig *r = h->data;
    rpc_longpoll_notify(&r->polls);
}

/* the model server's order: stop serving, refuse new calls, answer parked ones */
static void rig_on_stop(uv_async_t *h)
{
    rig *r = h->data;
    rpc_server_shutdown(r->srv, 500);
    trainer_shutdown(&r->tr);
    rpc_longpoll_close(&r->polls);
    pthread_mutex_lock(&r->mu);
    r->wake_open = false;
    pthread_mutex_unlock(&r->mu);
    uv_close((uv_handle_t *)&r->wake, NULL);
    uv_close((uv_handle_t *)&r->stop, NULL);
}

static void *rig_loop_main(void *arg)
{
    rig *r = arg;
    uv_loop_init(&r->loop);
    uv_async_init(&r->loop, &r->wake, rig_on_wake);
    uv_async_init(&r->loop, &r->stop, rig_on_stop);
    r->wake.data = r;
    r->stop.data = r;
    rpc_longpoll_init(&r->polls, &r->loop, &trainer_model_poll_ops, &r->tr);
    rpc_server_cfg sc = {.listen = "127.0.0.1:0", .loop = &r->loop, .app = r};
    int rc = rpc_server_init(&r->srv, &sc, methods, 1);
    if (rc == 0) {
        rc = rpc_server_start(r->srv);
    }
    pthread_mutex_lock(&r->mu);
    r->init_rc = rc;
    r->wake_open = rc == 0;
    r->started = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (rc < 0) {
        uv_close((uv_handle_t *)&r->wake, NULL);
        uv_close((uv_handle_t *)&r->stop, NULL);
    }
    uv_run(&r->loop, UV_RUN_DEFAULT);   /* returns once the server and the asyncs closed */
    rpc_server_free(r->srv);
    uv_loop_close(&r->loop);
    return NULL;
}

/* small and quick: 3 members of 2 x 32, Pendulum; init_steps 300 rounds up to the first
 * training point 400, then every 200 */
static void rig_cfg(rig *r)
{
    config_table t[2] = {run_cfg_table(&r->run),
                         {TRAINER_SECTION, trainer_opts, trainer_n_opts, &r->tcfg, trainer_opts_check}};
    cr_assert_eq(config_set_defaults(t, 2), 0, "%s", err_msg());
    const char *sets[] = {"init_steps=300",
                          "model_train_freq=200",
                          "modelserver.ensemble_size=3",
                          "modelserver.elites=2",
                          "modelserver.model_hidden=32",
                          "modelserver.model_layers=2",
                          "modelserver.model_batch=32",
                          "modelserver.train_max_epochs=60",
                          "modelserver.patience=10"};
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++) {
        cr_assert_eq(config_set_assignment(t, 2, sets[i]), 0, "%s: %s", sets[i], err_msg());
    }
}

static void rig_start(rig *r)
{
    reallog_opts o = reallog_opts_default(dir);
    o.sync = REALLOG_SYNC_NONE;
    int rc = reallog_open(&r->log, &o);
    cr_assert_eq(rc, 0, "open: %s", err_msg());
    rc = trainer_init(&r->tr, &r->tcfg, &r->run, &r->log, dir);
    cr_assert_eq(rc, 0, "trainer_init: %s %s", err_name(rc), err_msg());
    reallog_set_notify(&r->log, on_end, &r->tr);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    trainer_set_publish_notify(&r->tr, rig_on_published, r);
    cr_assert_eq(trainer_start(&r->tr), 0, "%s", err_msg());
    cr_assert_eq(pthread_create(&r->loop_thread, NULL, rig_loop_main, r), 0);
    pthread_mutex_lock(&r->mu);
    while (!r->started) {
        pthread_cond_wait(&r->cv, &r->mu);
    }
    pthread_mutex_unlock(&r->mu);
    cr_assert_eq(r->init_rc, 0, "%s", err_msg());
    snprintf(r->addr, sizeof r->addr, "127.0.0.1:%d", rpc_server_port(r->srv));
    cr_assert_eq(rpc_wait_serving(r->addr, 10000), 0, "%s", err_msg());
    cr_assert_eq(rpc_client_init(&r->cl, r->addr, NULL), 0);
}

/* the model server's order: stop serving, answer parked calls, join, close the log */
static void rig_stop(rig *r)
{
    rpc_client_free(r->cl);
    uv_async_send(&r->stop);
    pthread_join(r->loop_thread, NULL);
    trainer_free(&r->tr);
    reallog_set_notify(&r->log, NULL, NULL);
    reallog_close(&r->log);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
}

static void append_rows(rig *r, const ed_data *d, int from, int to, uint64_t *seq)
{
    for (int i = from; i < to; i += 50) {
        int n = to - i < 50 ? to - i : 50;
        tbatch_t b = ed_view(d, i, n, "actor-0", (*seq)++);
        reallog_ack ack;
        int rc = reallog_append(&r->log, &ack, &b);
        cr_assert_eq(rc, 0, "append: %s", err_msg());
        cr_assert_eq(ack.first_offset, (uint64_t)i);
    }
}

/* GetModel; returns the reply (owned) or NULL with the code in *rc */
static Twig__V1__GetWeightsReply *get_model(rig *r, uint64_t have, uint32_t wait_ms, int *rc)
{
    Twig__V1__GetWeightsRequest q = TWIG__V1__GET_WEIGHTS_REQUEST__INIT;
    q.have_version = have;
    q.wait_ms = wait_ms;
    rpc_call_opts o = {.deadline_ms = (int)wait_ms + 5000};
    ProtobufCMessage *reply = NULL;
    *rc = rpc_client_unary(r->cl, &reply, GET_MODEL, &q.base,
                           &twig__v1__get_weights_reply__descriptor, &o);
    return (Twig__V1__GetWeightsReply *)reply;
}

static float stat_of(const Twig__V1__WeightBlob *b, const char *key)
{
    for (size_t i = 0; i < b->n_stats; i++) {
        if (!strcmp(b->stats[i]->key, key)) {
            return b->stats[i]->value;
        }
    }
    return NAN;
}

/* mean squared error of the model's mean prediction, and of "next = obs", on fresh data */
static void model_vs_no_change(const Twig__V1__WeightBlob *blob, double *mse_model,
                               double *mse_same)
{
    ensemble_t e = {0};
    int rc = ensemble_from_blob(&e, blob);
    cr_assert_eq(rc, 0, "ensemble_from_blob: %s", err_msg());
    ed_data test;
    cr_assert_eq(ed_collect(&test, "Pendulum-v1", 400, 77), 0);
    ensemble_work_t w = {0};
    cr_assert_eq(ensemble_work_init(&w, &e, 128), 0);
    float *pred = xmalloc((size_t)test.n * test.O * sizeof(float));
    rng_t rng;
    rng_seed(&rng, 5);
    ensemble_predict(&e, &w, &rng, pred, NULL, NULL, test.obs, test.act, test.n, false);
    double a = 0, b = 0;
    for (int i = 0; i < test.n * test.O; i++) {
        a += (pred[i] - test.next_obs[i]) * (pred[i] - test.next_obs[i]);
        b += (test.obs[i] - test.next_obs[i]) * (test.obs[i] - test.next_obs[i]);
    }
    *mse_model = a / (test.n * test.O);
    *mse_same = b / (test.n * test.O);
    free(pred);
    ensemble_work_free(&w);
    ensemble_free(&e);
    ed_free(&test);
}

Test(trainer, publishes_at_training_points_and_long_polls)
{
    rig r = {0};
    rig_cfg(&r);
    rig_start(&r);
    ed_data d;
    cr_assert_eq(ed_collect(&d, "Pendulum-v1", 600, 1), 0);
    uint64_t seq = 1;

    /* before the first point (400): nothing, also after a short long poll */
    append_rows(&r, &d, 0, 350, &seq);
    int rc;
    int64_t t0 = procfix_now_ms();
    Twig__V1__GetWeightsReply *rep = get_model(&r, 0, 300, &rc);
    cr_assert_eq(rc, 0, "%s", err_msg());
    cr_expect_eq(rep->empty_reason, TWIG__V1__EMPTY_REASON__EMPTY_REASON_NO_VERSION);
    cr_expect_null(rep->blob);
    cr_expect_geq(procfix_now_ms() - t0, 250, "the long poll waited");
    protobuf_c_message_free_unpacked(&rep->base, NULL);

    /* reaching 400 trains version 1 on exactly those rows; a long poll parked before the
     * model exists gets it */
    append_rows(&r, &d, 350, 400, &seq);
    rep = get_model(&r, 0, 60000, &rc);
    cr_assert_eq(rc, 0, "%s", err_msg());
    cr_assert_eq(rep->empty_reason, TWIG__V1__EMPTY_REASON__EMPTY_REASON_NONE);
    cr_assert_not_null(rep->blob);
    cr_expect_eq(rep->blob->version, 1);
    cr_expect_eq(rep->blob->kind, TWIG__V1__WEIGHT_KIND__WEIGHT_KIND_MODEL);
    cr_expect_str_eq(rep->blob->env_id, "Pendulum-v1");
    cr_expect_eq(stat_of(rep->blob, "trained_on"), 400.0f);
    cr_expect_eq(rep->blob->trained_on, 400u, "the integer field");
    cr_expect_geq(stat_of(rep->blob, "train_epochs"), 1.0f);
    cr_expect(isfinite(stat_of(rep->blob, "holdout_mse_elites")));
    double mse_model, mse_same;
    model_vs_no_change(rep->blob, &mse_model, &mse_same);
    cr_expect_lt(mse_model, 0.5 * mse_same, "model mse %g vs no change %g", mse_model, mse_same);
    protobuf_c_message_free_unpacked(&rep->base, NULL);

    /* have 1: nothing newer until the next point (600) */
    append_rows(&r, &d, 400, 550, &seq);
    rep = get_model(&r, 1, 0, &rc);
    cr_assert_eq(rc, 0, "%s", err_msg());
    cr_expect_eq(rep->empty_reason, TWIG__V1__EMPTY_REASON__EMPTY_REASON_NO_VERSION);
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    append_rows(&r, &d, 550, 600, &seq);
    rep = get_model(&r, 1, 60000, &rc);
    cr_assert_eq(rc, 0, "%s", err_msg());
    cr_assert_not_null(rep->blob);
    cr_expect_eq(rep->blob->version, 2);
    cr_expect_eq(stat_of(rep->blob, "trained_on"), 600.0f);
    cr_expect_eq(rep->blob->trained_on, 600u, "the integer field");
    protobuf_c_message_free_unpacked(&rep->base, NULL);

    trainer_status st;
    trainer_get_status(&r.tr, &st);
    cr_expect_eq(st.version, 2);
    cr_expect_eq(st.trainings, 2);
    rig_stop(&r);
    ed_free(&d);
}

/* GetModel replies share one encoding per version: many calls for version 1, one pack */
Test(trainer, get_model_packs_each_version_once_however_many_calls_get_it)
{
    rig r = {0};
    rig_cfg(&r);
    rig_start(&r);
    ed_data d;
    cr_assert_eq(ed_collect(&d, "Pendulum-v1", 400, 21), 0);
    uint64_t seq = 1;
    append_rows(&r, &d, 0, 400, &seq);
    const int calls = 6;
    for (int i = 0; i < calls; i++) {
        int rc;
        Twig__V1__GetWeightsReply *rep = get_model(&r, 0, 60000, &rc);
        cr_assert_eq(rc, 0, "call %d: %s", i, err_msg());
        cr_assert_not_null(rep->blob, "call %d", i);
        cr_expect_eq(rep->blob->version, 1);
        cr_expect_eq(stat_of(rep->blob, "trained_on"), 400.0f);
        cr_expect_eq(rep->blob->trained_on, 400u, "the integer field");
        protobuf_c_message_free_unpacked(&rep->base, NULL);
    }
    trainer_status st;
    trainer_get_status(&r.tr, &st);
    cr_expect_eq(st.version, 1);
    cr_expect_eq(st.trainings, 1);
    cr_expect_eq(st.reply_packs, 1, "packed %" PRIu64 " times for %d calls", st.reply_packs,
                 calls);
    ed_free(&d);
    rig_stop(&r);
}

Test(trainer, continued_fits_keep_the_model_as_good_as_the_first)
{
    /* MBPO's way (fresh_fit false): each fit goes on from the last weights, re-expressed
     * under the refitted normaliser; the model must not get worse on fresh data */
    rig r = {0};
    rig_cfg(&r);
    config_table t[1] = {{TRAINER_SECTION, trainer_opts, trainer_n_opts, &r.tcfg, trainer_opts_check}};
    cr_assert_eq(config_set_assignment(t, 1, "modelserver.fresh_fit=false"), 0, "%s", err_msg());
    rig_start(&r);
    ed_data d;
    cr_assert_eq(ed_collect(&d, "Pendulum-v1", 1000, 3), 0);
    uint64_t seq = 1;
    append_rows(&r, &d, 0, 400, &seq);
    int rc;
    Twig__V1__GetWeightsReply *rep = get_model(&r, 0, 60000, &rc);
    cr_assert_eq(rc, 0, "%s", err_msg());
    cr_assert_not_null(rep->blob);
    double first, same;
    model_vs_no_change(rep->blob, &first, &same);
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    for (uint64_t v = 2; v <= 4; v++) {
        append_rows(&r, &d, (int)(400 + 200 * (v - 2)), (int)(400 + 200 * (v - 1)), &seq);
        rep = get_model(&r, v - 1, 60000, &rc);
        cr_assert_eq(rc, 0, "%s", err_msg());
        cr_assert_not_null(rep->blob);
        cr_expect_eq(rep->blob->version, v);
        cr_expect_eq(stat_of(rep->blob, "trained_on"), (float)(400 + 200 * (v - 1)));
        cr_expect_eq(rep->blob->trained_on, (uint64_t)(400 + 200 * (v - 1)), "the integer field");
        double mse, unused;
        model_vs_no_change(rep->blob, &mse, &unused);
        cr_expect_lt(mse, 1.5 * first + 1e-4, "version %llu: mse %g, first fit %g",
                     (unsigned long long)v, mse, first);
        cr_expect_lt(mse, 0.5 * same, "version %llu: mse %g vs no change %g",
                     (unsigned long long)v, mse, same);
        protobuf_c_message_free_unpacked(&rep->base, NULL);
    }
    rig_stop(&r);
    ed_free(&d);
}

Test(trainer, restart_serves_the_same_newest_model)
{
    rig r = {0};
    rig_cfg(&r);
    rig_start(&r);
    ed_data d;
    cr_assert_eq(ed_collect(&d, "Pendulum-v1", 600, 2), 0);
    uint64_t seq = 1;
    append_rows(&r, &d, 0, 400, &seq);
    int rc;
    Twig__V1__GetWeightsReply *a = get_model(&r, 0, 60000, &rc);
    cr_assert_eq(rc, 0, "%s", err_msg());
    cr_assert_not_null(a->blob);
    trainer_status st1;
    trainer_get_status(&r.tr, &st1);
    cr_expect_gt(st1.adam_steps, 0);
    rig_stop(&r);
    char adam[512];
    snprintf(adam, sizeof adam, "%s/%s", dir, TRAINER_ADAM_FILE);
    cr_expect_eq(access(adam, F_OK), 0, "the fit's Adam state is kept beside the model");

    rig r2 = {0};
    rig_cfg(&r2);
    rig_start(&r2);
    Twig__V1__GetWeightsReply *b = get_model(&r2, 0, 0, &rc);
    cr_assert_eq(rc, 0, "%s", err_msg());
    cr_assert_not_null(b->blob, "the restarted server serves the model at once");
    cr_expect_eq(b->blob->version, a->blob->version);
    cr_expect_eq(b->blob->crc32c, a->blob->crc32c);
    cr_expect_eq(b->blob->data.len, a->blob->data.len);
    cr_expect_eq(memcmp(b->blob->data.data, a->blob->data.data, a->blob->data.len), 0);
    cr_expect_eq(stat_of(b->blob, "trained_on"), 400.0f);
    cr_expect_eq(b->blob->trained_on, 400u, "the integer field");
    /* a client holding a version the server never published is resynced, and the next
     * version goes above the one it holds */
    Twig__V1__GetWeightsReply *c = get_model(&r2, 99, 0, &rc);
    cr_assert_eq(rc, 0, "%s", err_msg());
    cr_assert_not_null(c->blob);
    cr_expect_eq(c->blob->version, a->blob->version);
    protobuf_c_message_free_unpacked(&a->base, NULL);
    protobuf_c_message_free_unpacked(&b->base, NULL);
    protobuf_c_message_free_unpacked(&c->base, NULL);

    /* the next fit continues the version sequence, above the client's 99 */
    append_rows(&r2, &d, 400, 600, &seq);
    Twig__V1__GetWeightsReply *n = get_model(&r2, 1, 60000, &rc);
    cr_assert_eq(rc, 0, "%s", err_msg());
    cr_assert_not_null(n->blob);
    cr_expect_eq(n->blob->version, 100);
    cr_expect_eq(stat_of(n->blob, "trained_on"), 600.0f);
    cr_expect_eq(n->blob->trained_on, 600u, "the integer field");
    trainer_status st2;
    trainer_get_status(&r2.tr, &st2);
    cr_expect_gt(st2.adam_steps, st1.adam_steps, "the restarted fit went on from the moments");
    protobuf_c_message_free_unpacked(&n->base, NULL);
    rig_stop(&r2);
    ed_free(&d);
}

Test(trainer, a_model_file_that_is_not_a_model_is_refitted_from_the_log)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, TRAINER_BLOB_FILE);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("not a weight blob at all", f);
    fclose(f);
    rig r = {0};
    rig_cfg(&r);
    rig_start(&r);   /* trainer_init succeeds: the log is the source of truth */
    int rc;
    Twig__V1__GetWeightsReply *rep = get_model(&r, 0, 0, &rc);
    cr_assert_eq(rc, 0, "%s", err_msg());
    cr_expect_null(rep->blob, "the damaged model is never served");
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    ed_data d;
    cr_assert_eq(ed_collect(&d, "Pendulum-v1", 400, 6), 0);
    uint64_t seq = 1;
    append_rows(&r, &d, 0, 400, &seq);
    rep = get_model(&r, 0, 60000, &rc);
    cr_assert_eq(rc, 0, "%s", err_msg());
    cr_assert_not_null(rep->blob);
    cr_expect_eq(rep->blob->version, 1);
    cr_expect_eq(stat_of(rep->blob, "trained_on"), 400.0f);
    cr_expect_eq(rep->blob->trained_on, 400u, "the integer field");
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    rig_stop(&r);

    /* the refit replaced it with a sound file, and its version is on record */
    uint8_t head[8];
    f = fopen(path, "rb");
    cr_assert_not_null(f);
    cr_assert_eq(fread(head, 1, 8, f), 8);
    fclose(f);
    cr_expect_eq(memcmp(head, TRAINER_BLOB_MAGIC, 8), 0);
    char vpath[512], text[32] = "";
    snprintf(vpath, sizeof vpath, "%s/%s", dir, TRAINER_VERSION_FILE);
    f = fopen(vpath, "r");
    cr_assert_not_null(f);
    cr_expect_not_null(fgets(text, sizeof text, f));
    fclose(f);
    cr_expect_str_eq(text, "1\n");
    ed_free(&d);
}

Test(trainer, versions_go_on_above_model_version_whatever_became_of_the_blob)
{
    rig r = {0};
    rig_cfg(&r);
    rig_start(&r);
    ed_data d;
    cr_assert_eq(ed_collect(&d, "Pendulum-v1", 600, 12), 0);
    uint64_t seq = 1;
    append_rows(&r, &d, 0, 400, &seq);
    int rc;
    Twig__V1__GetWeightsReply *rep = get_model(&r, 0, 60000, &rc);
    cr_assert_eq(rc, 0, "%s", err_msg());
    cr_assert_not_null(rep->blob);
    cr_expect_eq(rep->blob->version, 1);
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    rig_stop(&r);

    /* model.version says 41 (a later blob was lost): the next fit is 42 */
    char vpath[512];
    snprintf(vpath, sizeof vpath, "%s/%s", dir, TRAINER_VERSION_FILE);
    FILE *f = fopen(vpath, "w");
    cr_assert_not_null(f);
    fputs("41\n", f);
    fclose(f);
    rig r2 = {0};
    rig_cfg(&r2);
    rig_start(&r2);
    append_rows(&r2, &d, 400, 600, &seq);
    rep = get_model(&r2, 1, 60000, &rc);
    cr_assert_eq(rc, 0, "%s", err_msg());
    cr_assert_not_null(rep->blob);
    cr_expect_eq(rep->blob->version, 42);
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    rig_stop(&r2);

    /* a damaged model.version is ignored (logged); the sound blob still numbers the next */
    f = fopen(vpath, "w");
    cr_assert_not_null(f);
    fputs("forty-two\n", f);
    fclose(f);
    rig r3 = {0};
    rig_cfg(&r3);
    rig_start(&r3);
    rep = get_model(&r3, 0, 0, &rc);
    cr_assert_eq(rc, 0, "%s", err_msg());
    cr_assert_not_null(rep->blob, "the blob is sound and served");
    cr_expect_eq(rep->blob->version, 42);
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    /* a client's version above anything the server knows is refused past 2^53 */
    rep = get_model(&r3, TRAINER_VERSION_HINT_MAX + 1, 0, &rc);
    cr_expect_eq(rc, -EINVAL, "%s", err_name(rc));
    cr_expect_neq(strstr(err_msg(), "have_version"), NULL, "%s", err_msg());
    rig_stop(&r3);
    ed_free(&d);
}

Test(trainer, bad_requests_and_options_are_refused)
{
    rig r = {0};
    rig_cfg(&r);
    rig_start(&r);
    int rc;
    Twig__V1__GetWeightsReply *rep = get_model(&r, 0, TRAINER_WAIT_MAX_MS + 1, &rc);
    cr_expect_eq(rc, -EINVAL, "%s", err_name(rc));
    cr_expect_null(rep);
    cr_expect_neq(strstr(err_msg(), "wait_ms"), NULL, "%s", err_msg());
    /* garbage bytes: INVALID_ARGUMENT, and the server goes on */
    uint8_t junk[] = {0xff, 0xff, 0xff, 0x01};
    uint8_t *out = NULL;
    size_t n_out = 0;
    rc = rpc_client_unary_bytes(r.cl, &out, &n_out, GET_MODEL, junk, sizeof junk, NULL);
    cr_expect_eq(rc, -EINVAL, "%s", err_name(rc));
    free(out);
    rep = get_model(&r, 0, 0, &rc);
    cr_expect_eq(rc, 0, "%s", err_msg());
    if (rep) {
        cr_expect_eq(rep->empty_reason, TWIG__V1__EMPTY_REASON__EMPTY_REASON_NO_VERSION);
        protobuf_c_message_free_unpacked(&rep->base, NULL);
    }
    rig_stop(&r);

    /* more elites than members */
    rig bad = {0};
    rig_cfg(&bad);
    bad.tcfg.elites = bad.tcfg.ensemble_size + 1;
    cr_assert_eq(reallog_open(&bad.log, &(reallog_opts){.dir = dir,
                                                        .segment_bytes = 1 << 20,
                                                        .group_max = 16,
                                                        .max_queue_bytes = 1 << 20}),
                 0, "%s", err_msg());
    rc = trainer_init(&bad.tr, &bad.tcfg, &bad.run, &bad.log, dir);
    cr_expect_eq(rc, -EINVAL);
    cr_expect_neq(strstr(err_msg(), "elites"), NULL, "%s", err_msg());
    trainer_free(&bad.tr);
    reallog_close(&bad.log);
}

/* the real binary: the model it serves survives kill -9 (persisted before it is served),
 * and SIGTERM with a parked GetModel exits 0 */
static void start_binary(procfix_t *p, const char *data_dir)
{
    snprintf(p->port_file, sizeof p->port_file, "%s/ms.port", dir);
    snprintf(p->log_file, sizeof p->log_file, "%s/ms.log", dir);
    unlink(p->port_file);
    const char *argv[] = {MS_BIN,
                          "--listen",
                          "127.0.0.1:0",
                          "--data-dir",
                          data_dir,
                          "--port-file",
                          p->port_file,
                          "--fsync",
                          "none",
                          "--log-level",
                          "warn",
                          "--set",
                          "init_steps=300",
                          "--set",
                          "model_train_freq=200",
                          FX_SMALL_MODEL_ARGS,
                          NULL};
    p->pid = procfix_spawn(argv, p->log_file);
    procfix_wait_serving(p, 20000);
}

Test(trainer, modelserver_binary_serves_the_same_model_after_kill9)
{
    char data_dir[600];
    snprintf(data_dir, sizeof data_dir, "%s/data", dir);
    procfix_t ms = {0};
    start_binary(&ms, data_dir);
    rig r = {0};
    cr_assert_eq(rpc_client_init(&r.cl, ms.addr, NULL), 0);
    ed_data d;
    cr_assert_eq(ed_collect(&d, "Pendulum-v1", 400, 4), 0);
    for (int i = 0; i < 400; i += 100) {
        tbatch_t v = ed_view(&d, i, 100, "actor-0", (uint64_t)i / 100 + 1);
        Twig__V1__TransitionBatch m;
        msg_batch_from_view(&m, &v);
        ProtobufCMessage *reply = NULL;
        rpc_call_opts o = {.deadline_ms = 10000, .idempotent = true};
        int rc = rpc_client_unary(r.cl, &reply, "/twig.v1.ModelServer/AppendReal", &m.base,
                                  &twig__v1__append_real_reply__descriptor, &o);
        cr_assert_eq(rc, 0, "append: %s", err_msg());
        protobuf_c_message_free_unpacked(reply, NULL);
    }
    int rc;
    Twig__V1__GetWeightsReply *a = get_model(&r, 0, 60000, &rc);
    cr_assert_eq(rc, 0, "%s", err_msg());
    cr_assert_not_null(a->blob);
    cr_expect_eq(a->blob->version, 1);
    cr_expect_eq(stat_of(a->blob, "trained_on"), 400.0f);
    cr_expect_eq(a->blob->trained_on, 400u, "the integer field");
    rpc_client_free(r.cl);
    procfix_kill9(&ms);

    start_binary(&ms, data_dir);
    cr_assert_eq(rpc_client_init(&r.cl, ms.addr, NULL), 0);
    Twig__V1__GetWeightsReply *b = get_model(&r, 0, 0, &rc);
    cr_assert_eq(rc, 0, "%s", err_msg());
    cr_assert_not_null(b->blob, "served at once after the restart");
    cr_expect_eq(b->blob->version, 1);
    cr_expect_eq(b->blob->crc32c, a->blob->crc32c);
    cr_expect_eq(stat_of(b->blob, "trained_on"), 400.0f);
    cr_expect_eq(b->blob->trained_on, 400u, "the integer field");
    protobuf_c_message_free_unpacked(&a->base, NULL);
    protobuf_c_message_free_unpacked(&b->base, NULL);

    /* a parked long poll, then SIGTERM: answered, exit 0 */
    Twig__V1__GetWeightsRequest q = TWIG__V1__GET_WEIGHTS_REQUEST__INIT;
    q.have_version = 1;
    q.wait_ms = 30000;
    uint8_t buf[64];
    size_t n = twig__v1__get_weights_request__pack(&q, buf);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        procfix_pause_ms(300);
        kill(ms.pid, SIGTERM);
        _exit(0);
    }
    uint8_t *out = NULL;
    size_t n_out = 0;
    rpc_call_opts o = {.deadline_ms = 35000};
    int64_t t0 = procfix_now_ms();
    rc = rpc_client_unary_bytes(r.cl, &out, &n_out, GET_MODEL, buf, n, &o);
    cr_expect_lt(procfix_now_ms() - t0, 20000, "the parked call was answered at shutdown");
    free(out);
    int st;
    waitpid(pid, &st, 0);
    st = procfix_wait_status(ms.pid, 20000);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d", st);
    rpc_client_free(r.cl);
    ed_free(&d);
}

Test(trainer, a_running_fit_never_stalls_appends_or_get_model_and_stops_at_shutdown)
{
    rig r = {0};
    rig_cfg(&r);
    /* a fit that would run for ages: no early stop, a huge cap */
    r.tcfg.train_max_epochs = 1000000;
    r.tcfg.patience = 1000000;
    rig_start(&r);
    ed_data d;
    cr_assert_eq(ed_collect(&d, "Pendulum-v1", 800, 9), 0);
    uint64_t seq = 1;
    append_rows(&r, &d, 0, 400, &seq);
    trainer_status st;
    int64_t deadline = procfix_now_ms() + 20000;
    for (trainer_get_status(&r.tr, &st); !st.training && procfix_now_ms() < deadline;
         trainer_get_status(&r.tr, &st)) {
        procfix_pause_ms(2);
    }
    cr_assert(st.training, "the fit started");

    /* appends and model polls go on while it runs, each answered quickly */
    for (int i = 400; i < 800; i += 50) {
        int64_t t0 = procfix_now_ms();
        append_rows(&r, &d, i, i + 50, &seq);
        int rc;
        Twig__V1__GetWeightsReply *rep = get_model(&r, 0, 0, &rc);
        cr_assert_eq(rc, 0, "%s", err_msg());
        cr_expect_eq(rep->empty_reason, TWIG__V1__EMPTY_REASON__EMPTY_REASON_NO_VERSION);
        protobuf_c_message_free_unpacked(&rep->base, NULL);
        cr_expect_lt(procfix_now_ms() - t0, 1000, "append + GetModel took %lld ms",
                     (long long)(procfix_now_ms() - t0));
    }
    trainer_get_status(&r.tr, &st);
    cr_expect(st.training, "still fitting: the calls overlapped it");
    cr_expect_eq(reallog_end(&r.log), 800);

    /* shutdown ends the fit after its epoch; nothing half-trained is published */
    int64_t t0 = procfix_now_ms();
    rig_stop(&r);
    cr_expect_lt(procfix_now_ms() - t0, 5000);
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, TRAINER_BLOB_FILE);
    cr_expect_neq(access(path, F_OK), 0, "no model.blob from an abandoned fit");
    ed_free(&d);
}

/* ---- damaged model files, with the real binary ---- */

static uint8_t *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = xmalloc((size_t)len + 1);
    cr_assert_eq(fread(buf, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return buf;
}

static void write_all(const char *path, const uint8_t *buf, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s", path);
    cr_assert_eq(fwrite(buf, 1, n, f), n);
    cr_assert_eq(fclose(f), 0);
}

/* where the packed WeightBlob starts in a model.blob (after the frame, when there is one) */
static size_t payload_at(const uint8_t *buf, size_t n)
{
    return n >= 8 && memcmp(buf, TRAINER_BLOB_MAGIC, 8) == 0 ? TRAINER_BLOB_HEADER : 0;
}

/* the offset of the float value of stats["trained_on"] in a packed WeightBlob: the map entry
 * is {1: "trained_on", 2: fixed32} */
static size_t trained_on_at(const uint8_t *buf, size_t n)
{
    for (size_t i = 0; i + 15 <= n; i++) {
        if (memcmp(buf + i, "trained_on", 10) == 0 && buf[i + 10] == 0x15) {
            return i + 11;
        }
    }
    cr_assert_fail("no trained_on entry in the blob");
    return 0;
}

/* append rows [0, n) of d to the server at addr in batches of 100 */
static void append_over_rpc(rpc_client_t *cl, const ed_data *d, int n)
{
    for (int i = 0; i < n; i += 100) {
        tbatch_t v = ed_view(d, i, 100, "actor-0", (uint64_t)i / 100 + 1);
        Twig__V1__TransitionBatch m;
        msg_batch_from_view(&m, &v);
        ProtobufCMessage *reply = NULL;
        rpc_call_opts o = {.deadline_ms = 10000, .idempotent = true};
        int rc = rpc_client_unary(cl, &reply, "/twig.v1.ModelServer/AppendReal", &m.base,
                                  &twig__v1__append_real_reply__descriptor, &o);
        cr_assert_eq(rc, 0, "append: %s", err_msg());
        protobuf_c_message_free_unpacked(reply, NULL);
    }
}

/* start the binary on data_dir, wait for a model (long poll): its version and trained_on;
 * the server's log (warn and up) into log, then SIGTERM and exit 0 */
static uint64_t serve_once(const char *data_dir, float *trained_on, char *log, size_t log_n)
{
    procfix_t ms = {0};
    start_binary(&ms, data_dir);
    rig r = {0};
    cr_assert_eq(rpc_client_init(&r.cl, ms.addr, NULL), 0);
    int rc;
    Twig__V1__GetWeightsReply *rep = get_model(&r, 0, 60000, &rc);
    cr_assert_eq(rc, 0, "%s", err_msg());
    cr_assert_not_null(rep->blob, "a model is served (log %s)", ms.log_file);
    uint64_t version = rep->blob->version;
    *trained_on = stat_of(rep->blob, "trained_on");
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    rpc_client_free(r.cl);
    procfix_stop(&ms);
    size_t n;
    uint8_t *text = read_all(ms.log_file, &n);
    snprintf(log, log_n, "%.*s", (int)n, (const char *)text);
    free(text);
    unlink(ms.log_file);
    return version;
}

Test(trainer, a_damaged_model_blob_is_logged_and_refitted_from_the_log_by_the_binary,
     .timeout = 240)
{
    char data_dir[600], blob[700], log[1 << 14];
    snprintf(data_dir, sizeof data_dir, "%s/data", dir);
    snprintf(blob, sizeof blob, "%s/%s", data_dir, TRAINER_BLOB_FILE);

    /* version 1, trained on the whole log */
    procfix_t ms = {0};
    start_binary(&ms, data_dir);
    rig r = {0};
    cr_assert_eq(rpc_client_init(&r.cl, ms.addr, NULL), 0);
    ed_data d;
    cr_assert_eq(ed_collect(&d, "Pendulum-v1", 400, 8), 0);
    append_over_rpc(r.cl, &d, 400);
    rpc_client_free(r.cl);
    procfix_stop(&ms);
    float trained_on = 0;
    uint64_t served = serve_once(data_dir, &trained_on, log, sizeof log);
    cr_assert_eq(served, 1, "the model of the first fit: %s", log);
    cr_expect_null(strstr(log, "model_discarded"), "%s", log);
    size_t n_good;
    uint8_t *good = read_all(blob, &n_good);
    size_t p0 = payload_at(good, n_good);
    cr_assert(good[p0] == 0x08 && good[p0 + 2] == 0x10 && good[p0 + 3] == 0x01,
              "kind, then version 1, lead the packed blob");

    enum { FLIP_TRAINED_ON, FLIP_VERSION, FLIP_WEIGHT, TRUNCATE, EMPTY, N_CASES };
    static const char *const names[N_CASES] = {"trained_on flipped", "version flipped",
                                               "a weight flipped", "truncated", "empty"};
    static const char *const why[N_CASES] = {"fails its checksum", "fails its checksum",
                                             "fails its checksum", "truncated", "is empty"};
    for (int c = 0; c < N_CASES; c++) {
        uint8_t *bad = xmalloc(n_good);
        memcpy(bad, good, n_good);
        size_t n_bad = n_good;
        if (c == FLIP_TRAINED_ON) {
            bad[trained_on_at(bad, n_bad) + 3] ^= 0x5e;   /* the float's sign and exponent */
        } else if (c == FLIP_VERSION) {
            bad[p0 + 3] = 0x7f;                            /* version 1 -> 127 */
        } else if (c == FLIP_WEIGHT) {
            bad[p0 + (n_bad - p0) / 2] ^= 0x01;            /* inside the tensors' data */
        } else if (c == TRUNCATE) {
            n_bad = n_good / 2;
        } else {
            n_bad = 0;
        }
        write_all(blob, bad, n_bad);
        free(bad);
        uint64_t v = serve_once(data_dir, &trained_on, log, sizeof log);
        char want[800];
        snprintf(want, sizeof want, "event=model_discarded file=%s", blob);
        cr_expect_neq(strstr(log, want), NULL, "%s: the damage is logged: %s", names[c], log);
        cr_expect_neq(strstr(log, why[c]), NULL, "%s: says what is wrong: %s", names[c], log);
        cr_expect_neq(strstr(log, "action=refit_from_log"), NULL, "%s: %s", names[c], log);
        cr_expect_eq(trained_on, 400.0f, "%s: refitted on the whole log", names[c]);
        cr_expect_gt(v, served, "%s: version %llu after %llu", names[c], (unsigned long long)v,
                     (unsigned long long)served);
        served = v;
    }

    /* the format before the frame (a bare WeightBlob) is refused the same way, and numbered
     * above the version it carries */
    write_all(blob, good + p0, n_good - p0 - 4);
    uint64_t v = serve_once(data_dir, &trained_on, log, sizeof log);
    cr_expect_neq(strstr(log, "is in format 1"), NULL, "%s", log);
    cr_expect_gt(v, served);
    cr_expect_eq(trained_on, 400.0f);
    served = v;

    /* a damaged model.adam: the sound model is served as it is, and the log says the moments
     * start afresh */
    char adam[700];
    snprintf(adam, sizeof adam, "%s/%s", data_dir, TRAINER_ADAM_FILE);
    write_all(adam, (const uint8_t *)"not adam moments", 16);
    v = serve_once(data_dir, &trained_on, log, sizeof log);
    cr_expect_eq(v, served, "the model itself was sound");
    char want[800];
    snprintf(want, sizeof want, "event=model_adam_discarded file=%s", adam);
    cr_expect_neq(strstr(log, want), NULL, "%s", log);
    cr_expect_neq(strstr(log, "action=fresh_moments"), NULL, "%s", log);
    free(good);
    ed_free(&d);
}

/* model.blob's frame, pinned: magic, format 2 and the payload length little-endian, the
 * crc32c of everything before it last */
Test(trainer, model_blob_frame_layout_is_pinned)
{
    rig r = {0};
    rig_cfg(&r);
    rig_start(&r);
    ed_data d;
    cr_assert_eq(ed_collect(&d, "Pendulum-v1", 400, 2), 0);
    uint64_t seq = 1;
    append_rows(&r, &d, 0, 400, &seq);
    int rc;
    Twig__V1__GetWeightsReply *a = get_model(&r, 0, 60000, &rc);
    cr_assert_eq(rc, 0, "%s", err_msg());
    cr_assert_not_null(a->blob);
    protobuf_c_message_free_unpacked(&a->base, NULL);
    rig_stop(&r);
    ed_free(&d);

    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, TRAINER_BLOB_FILE);
    size_t n;
    uint8_t *img = read_all(path, &n);
    cr_assert_gt(n, 24);
    const uint8_t head[12] = {'T', 'W', 'I', 'G', 'M', 'D', 'L', 0, 2, 0, 0, 0};
    cr_expect_eq(memcmp(img, head, sizeof head), 0);
    uint64_t body = n - 24;
    for (int i = 0; i < 8; i++) {
        cr_expect_eq(img[12 + i], (uint8_t)(body >> (8 * i)), "length byte %d", i);
    }
    uint32_t crc = crc32c(img, n - 4);
    for (int i = 0; i < 4; i++) {
        cr_expect_eq(img[n - 4 + i], (uint8_t)(crc >> (8 * i)), "crc byte %d", i);
    }
    free(img);
}
