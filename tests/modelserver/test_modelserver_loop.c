/* the model server's event loop never waits for the disk: while FetchReal reads a cold log
 * (every segment pread slowed to SLOW_MS by tests/shims/slow_io.c, preloaded
 * into the real twig-modelserver), calls served on the loop (GetModel) are answered at once
 * and a second fetch queues behind the first instead of stalling the loop. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/base/err.h"
#include "common/rpc/rpc.h"
#include "fixture.h"
#include "tests/procfix.h"
#include "tests/shims/slow_io.h"

#define SERVER_BIN TWIG_BIN_DIR "/modelserver/twig-modelserver"
#define ENV "Pendulum-v1"
#define SLOW_MS 400   /* per segment pread; a fetch makes six */

static char tmp[PROCFIX_DIR_LEN];

static void setup(void)
{
    procfix_tmpdir(tmp, sizeof tmp);
    rpc_lib_init();
}

static void teardown(void)
{
    procfix_reap_all();
    rpc_lib_shutdown(2000);
    procfix_tmpdir_done(tmp);
}

TestSuite(modelserver_loop, .init = setup, .fini = teardown, .timeout = 120);

typedef struct fetch_call {
    const char *addr;
    int64_t took_ms;
    int rc;
    uint32_t rows;
} fetch_call;

static void *fetch_all(void *arg)
{
    fetch_call *f = arg;
    rpc_client_t *cl;
    cr_assert_eq(rpc_client_init(&cl, f->addr, NULL), 0);
    Twig__V1__FetchRealRequest q = TWIG__V1__FETCH_REAL_REQUEST__INIT;
    q.from_offset = 0;
    ProtobufCMessage *r = NULL;
    int64_t t0 = procfix_now_ms();
    f->rc = rpc_client_unary(cl, &r, "/twig.v1.ModelServer/FetchReal", &q.base,
                             &twig__v1__fetch_real_reply__descriptor,
                             &(rpc_call_opts){.deadline_ms = 30000});
    f->took_ms = procfix_now_ms() - t0;
    if (f->rc == 0) {
        Twig__V1__FetchRealReply *fr = (Twig__V1__FetchRealReply *)r;
        f->rows = fr->batch ? fr->batch->count : 0;
        protobuf_c_message_free_unpacked(r, NULL);
    }
    rpc_client_free(cl);
    return NULL;
}

Test(modelserver_loop, a_slow_log_read_stalls_neither_get_model_nor_the_next_fetch)
{
    procfix_t ms = {0};
    char data_dir[256], flag[256], slow[16];
    snprintf(data_dir, sizeof data_dir, "%s/data", tmp);
    snprintf(flag, sizeof flag, "%s/slow-read-began", tmp);
    snprintf(ms.port_file, sizeof ms.port_file, "%s/ms.port", tmp);
    snprintf(ms.log_file, sizeof ms.log_file, "%s/ms.log", tmp);
    snprintf(slow, sizeof slow, "%d", SLOW_MS);
    slow_io_preload();
    setenv("TWIG_TEST_SLOW_PREAD_MS", slow, 1);
    setenv("TWIG_TEST_SLOW_PREAD_FLAG", flag, 1);
    const char *argv[] = {SERVER_BIN, "--listen", "127.0.0.1:0", "--data-dir", data_dir,
                          "--port-file", ms.port_file, "--log-level", "warn", "--env", ENV,
                          /* no fit during the test: the trainer reads the log too */
                          "--set", "real_steps=2000000", "--set", "init_steps=1000000", NULL};
    ms.pid = procfix_spawn(argv, ms.log_file);
    slow_io_unload();
    procfix_wait_serving(&ms, 20000);

    rpc_client_t *cl;
    cr_assert_eq(rpc_client_init(&cl, ms.addr, NULL), 0);
    fx_batch b;
    fx_batch_make(&b, ENV, 1, 1, 200, 3, 1);
    Twig__V1__TransitionBatch m;
    msg_batch_from_view(&m, &b.v);
    ProtobufCMessage *r = NULL;
    cr_assert_eq(rpc_client_unary(cl, &r, "/twig.v1.ModelServer/AppendReal", &m.base,
                                  &twig__v1__append_real_reply__descriptor,
                                  &(rpc_call_opts){.deadline_ms = 10000}),
                 0, "append: %s", err_msg());
    protobuf_c_message_free_unpacked(r, NULL);
    fx_batch_free(&b);
    cr_assert(access(flag, F_OK) != 0, "nothing read a segment yet");

    fetch_call f1 = {.addr = ms.addr}, f2 = {.addr = ms.addr};
    pthread_t t1, t2;
    pthread_create(&t1, NULL, fetch_all, &f1);
    int64_t deadline = procfix_now_ms() + 10000;
    while (access(flag, F_OK) != 0) {
        cr_assert(procfix_now_ms() < deadline, "the fetch never read the log");
        procfix_pause_ms(PROCFIX_POLL_MS);
    }
    /* the first fetch is now inside its slow reads: the loop must still answer */
    pthread_create(&t2, NULL, fetch_all, &f2);
    Twig__V1__GetWeightsRequest gq = TWIG__V1__GET_WEIGHTS_REQUEST__INIT;
    int64_t t0 = procfix_now_ms();
    r = NULL;
    int rc = rpc_client_unary(cl, &r, "/twig.v1.ModelServer/GetModel", &gq.base,
                              &twig__v1__get_weights_reply__descriptor,
                              &(rpc_call_opts){.deadline_ms = 10000});
    int64_t get_model_ms = procfix_now_ms() - t0;
    cr_assert_eq(rc, 0, "GetModel: %s", err_msg());
    cr_expect_eq(((Twig__V1__GetWeightsReply *)r)->blob, NULL, "no model was fitted");
    protobuf_c_message_free_unpacked(r, NULL);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);

    /* a fetch makes six segment reads: SLOW_MS each */
    cr_assert_eq(f1.rc, 0, "first fetch: %s", err_name(f1.rc));
    cr_assert_eq(f2.rc, 0, "second fetch: %s", err_name(f2.rc));
    cr_expect_eq(f1.rows, 200);
    cr_expect_eq(f2.rows, 200);
    cr_expect_geq(f1.took_ms, 5 * SLOW_MS, "the shim slowed the reads (%lld ms)",
                  (long long)f1.took_ms);
    cr_expect_lt(get_model_ms, 2 * SLOW_MS,
                 "GetModel waited %lld ms behind a log read on the loop thread",
                 (long long)get_model_ms);
    rpc_client_free(cl);
    procfix_stop(&ms);
}
