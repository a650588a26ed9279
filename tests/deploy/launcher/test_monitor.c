/* monitor: start-up health probing is paced and gives up at the start-up timeout */
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/base/err.h"
#include "common/base/log.h"
#include "common/rpc/rpc.h"
#include "deploy/launcher/monitor.h"
#include "tests/procfix.h"

/* a TCP port that accepts every connection and closes it at once: each health probe fails
 * fast with TWIG_EUNAVAIL, and each one shows up as one accepted connection */
typedef struct closer {
    int fd;
    int port;
    atomic_int accepts;
    atomic_bool stop;
    pthread_t th;
} closer_t;

static void *closer_main(void *arg)
{
    closer_t *c = arg;
    for (int i = 0; i < 200000 && !atomic_load(&c->stop); i++) {
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        if (poll(&p, 1, 20) == 1) {
            int a = accept(c->fd, NULL, NULL);
            if (a >= 0) {
                atomic_fetch_add(&c->accepts, 1);
                close(a);
            }
        }
    }
    return NULL;
}

static void closer_start(closer_t *c)
{
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(c->fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(c->fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(c->fd, 64), 0);
    socklen_t len = sizeof a;
    cr_assert_eq(getsockname(c->fd, (struct sockaddr *)&a, &len), 0);
    c->port = ntohs(a.sin_port);
    atomic_init(&c->accepts, 0);
    atomic_init(&c->stop, false);
    cr_assert_eq(pthread_create(&c->th, NULL, closer_main, c), 0);
}

static void closer_stop(closer_t *c)
{
    atomic_store(&c->stop, true);
    pthread_join(c->th, NULL);
    close(c->fd);
}

static atomic_int wakes;

static void count_wake(void *data)
{
    (void)data;
    atomic_fetch_add(&wakes, 1);
}

/* a learner restarted from an older checkpoint reports fewer updates than the last poll:
 * the rate for that interval is 0, not (uint64_t)-N / dt */
Test(monitor, rate_of_a_counter_that_went_back_is_zero)
{
    cr_expect_float_eq(monitor_rate_per_s(300, 100, 2.0), 100.0, 1e-12);
    cr_expect_float_eq(monitor_rate_per_s(100, 100, 2.0), 0.0, 0.0);
    cr_expect_float_eq(monitor_rate_per_s(100, 20000, 1.0), 0.0, 0.0);
    cr_expect_float_eq(monitor_rate_per_s(300, 100, 0.0), 0.0, 0.0);
}

Test(monitor, startup_probes_of_a_refusing_peer_are_paced_then_fail_at_the_timeout,
     .timeout = 60)
{
    log_init("test", LOG_LEVEL_ERROR);
    rpc_lib_init();
    closer_t c = {0};
    closer_start(&c);

    run_cfg run;
    launcher_cfg lc;
    config_table t[2] = {run_cfg_table(&run),
                         {"launcher", launcher_opts, launcher_n_opts, &lc, NULL}};
    cr_assert_eq(config_set_defaults(t, 2), 0, "%s", err_msg());
    lc.startup_timeout_ms = 800;
    run_plan *plan = calloc(1, sizeof *plan);
    plan->n_procs = 1;
    snprintf(plan->procs[0].name, sizeof plan->procs[0].name, "learner");
    snprintf(plan->procs[0].addr, sizeof plan->procs[0].addr, "127.0.0.1:%d", c.port);
    char dir[PROCFIX_DIR_LEN];
    procfix_tmpdir(dir, sizeof dir);

    monitor_t m;
    atomic_store(&wakes, 0);
    cr_assert_eq(monitor_init(&m, &run, &lc, plan, dir, count_wake, NULL), 0, "%s", err_msg());
    int64_t t0 = procfix_now_ms();
    cr_assert_eq(monitor_start(&m), 0);
    while (monitor_get_state(&m) != MONITOR_FAILED && procfix_now_ms() - t0 < 20000) {
        procfix_pause_ms(10);
    }
    int64_t took = procfix_now_ms() - t0;
    monitor_stop(&m);
    closer_stop(&c);

    cr_expect_eq(monitor_get_state(&m), MONITOR_FAILED);
    cr_expect_geq(took, 800);
    cr_expect_eq(atomic_load(&wakes), 1);
    cr_expect(strstr(m.failure, "learner") != NULL, "failure: %s", m.failure);
    /* probes at most every 50 ms: about 16 in 800 ms, never a busy loop of hundreds */
    int n = atomic_load(&c.accepts);
    cr_expect_geq(n, 2, "accepts %d", n);
    cr_expect_leq(n, 40, "accepts %d: the start-up probe loop does not pause", n);

    monitor_free(&m);
    free(plan);
    procfix_tmpdir_done(dir);
    rpc_lib_shutdown(2000);
}
