/* monitor: start-up health probing is paced and gives up at the start-up timeout */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <math.h>
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
    monitor_cfg mc;
    monitor_cfg_from_plan(&mc, &run, &lc, plan, dir);
    cr_assert_eq(monitor_init(&m, &mc, count_wake, NULL), 0, "%s", err_msg());
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

/* a snapshot in the middle of a run, every field known */
static monitor_snapshot busy_snapshot(void)
{
    monitor_snapshot s = {.wall_s = 125.0, .real_steps = 12000, .updates = 240000,
                          .synthetic_samples = 9000000, .policy_version = 412,
                          .model_version = 37, .have_rates = true, .updates_per_s = 251.0,
                          .synthetic_per_s = 12345.0, .real_per_s = 50.0,
                          .model_holdout_loss = 0.1234, .evals = 3,
                          .eval_return_mean = -150.5f, .eval_return_std = 12.0f,
                          .eval_real_steps = 10000, .eval_policy_version = 400};
    return s;
}

Test(monitor, progress_line_fits_the_width_dropping_the_least_important_fields)
{
    monitor_snapshot s = busy_snapshot();
    char line[512];
    /* wide: everything, elapsed time and the step of the last evaluation included */
    size_t len = monitor_format_progress(line, sizeof line, &s, 20000, 40.0, 200);
    cr_expect_eq(len, strlen(line));
    cr_expect_lt(len, 200u, "%s", line);
    const char *wide[] = {"real 12000/20000", "2m05s", "ETA 3m20s", "eval -150.5 @10000",
                          "upd/s 251", "synth/s 12345", "model loss 0.1234",
                          "policy v412 model v37"};
    for (size_t i = 0; i < sizeof wide / sizeof wide[0]; i++) {
        cr_expect_neq(strstr(line, wide[i]), NULL, "'%s' missing: %s", wide[i], line);
    }
    /* 80 columns: no wrap, the versions go first, the essentials stay */
    len = monitor_format_progress(line, sizeof line, &s, 20000, 40.0, 80);
    cr_expect_leq(len, 79u, "%zu columns: %s", len, line);
    cr_expect_eq(strstr(line, "policy v"), NULL, "%s", line);
    cr_expect_neq(strstr(line, "eval -150.5 @10000"), NULL, "%s", line);
    cr_expect_neq(strstr(line, "ETA 3m20s"), NULL, "%s", line);
    /* 40 columns: real steps, elapsed and ETA only */
    len = monitor_format_progress(line, sizeof line, &s, 20000, 40.0, 40);
    cr_expect_leq(len, 39u, "%zu columns: %s", len, line);
    cr_expect_str_eq(line, "real 12000/20000 | 2m05s | ETA 3m20s");
    /* narrower than the essentials: cut, never wrapped */
    len = monitor_format_progress(line, sizeof line, &s, 20000, 40.0, 20);
    cr_expect_eq(len, 19u, "%s", line);
    cr_expect_eq(strlen(line), 19u);
}

Test(monitor, terminal_width_falls_back_to_columns_then_80)
{
    int fd = open("/dev/null", O_WRONLY);
    cr_assert_geq(fd, 0);
    setenv("COLUMNS", "132", 1);
    cr_expect_eq(monitor_term_width(fd), 132);
    unsetenv("COLUMNS");
    cr_expect_eq(monitor_term_width(fd), 80);
    close(fd);
}

Test(monitor, eta_rate_is_taken_over_the_last_minute_not_the_last_second)
{
    monitor_eta e = {0};
    cr_expect_eq(monitor_eta_rate(&e), 0.0);
    /* 50 steps/s for two minutes, samples every 500 ms (half are dropped: 1 s spacing) */
    uint64_t t = 1000000, steps = 0;
    for (int i = 0; i < 240; i++) {
        monitor_eta_add(&e, t, steps);
        t += 500;
        steps += 25;
    }
    cr_expect(fabs(monitor_eta_rate(&e) - 50.0) < 1e-9, "rate %f", monitor_eta_rate(&e));
    /* one second with a burst of 5000 steps moves the rate a little, not to 5000/s */
    t += 500;
    steps += 5000;
    monitor_eta_add(&e, t, steps);
    double r = monitor_eta_rate(&e);
    cr_expect(r > 50.0 && r < 150.0, "rate after a burst %f", r);
    /* a stalled last second does not make the ETA infinite */
    monitor_eta_add(&e, t + 1000, steps);
    cr_expect_gt(monitor_eta_rate(&e), 50.0);
    /* a short run: the rate over what is held */
    monitor_eta y = {0};
    monitor_eta_add(&y, 5000, 500);
    monitor_eta_add(&y, 15000, 1500);
    cr_expect(fabs(monitor_eta_rate(&y) - 100.0) < 1e-9, "rate %f", monitor_eta_rate(&y));
    /* the counter went back (a restarted process): 0, not a wrapped huge rate */
    monitor_eta_add(&y, 25000, 10);
    cr_expect_eq(monitor_eta_rate(&y), 0.0);
}
