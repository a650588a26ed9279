/* test_daemon.c - the process skeleton (common/rpc/daemon.h): daemon_main's exit statuses
 * and hooks in-process on a made-up daemon, daemon_signals on a loop, and every real daemon
 * ignoring SIGPIPE (its log's reader gone, the shutdown still ends with status 0).
 */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/base/err.h"
#include "common/base/log.h"
#include "common/rpc/daemon.h"
#include "tests/procfix.h"

/* ---- daemon_main on a made-up daemon ---- */

typedef struct fake_cfg {
    int log_level;
    int n;
} fake_cfg;

static const config_opt fake_opts[] = {
    {"log_level", CFG_ENUM, offsetof(fake_cfg, log_level), "error", 0, 0, "level",
     log_level_names},
    {"n", CFG_INT, offsetof(fake_cfg, n), "1", 0, 100, "a number", NULL},
};

/* what the hooks saw, and what they return */
typedef struct fake {
    fake_cfg cfg;
    int configure_rc, init_rc, run_rc;
    int configured, inited, ran, freed;
    bool sigpipe_ignored_in_run;
} fake;

static int fake_configure(void *app)
{
    fake *f = app;
    f->configured++;
    return f->configure_rc < 0 ? err_set(f->configure_rc, "n must be even") : 0;
}

static int fake_init(void *app)
{
    fake *f = app;
    f->inited++;
    return f->init_rc < 0 ? err_set(f->init_rc, "could not start") : 0;
}

static int fake_run(void *app)
{
    fake *f = app;
    f->ran++;
    struct sigaction sa;
    sigaction(SIGPIPE, NULL, &sa);
    f->sigpipe_ignored_in_run = sa.sa_handler == SIG_IGN;
    return f->run_rc;
}

static void fake_free(void *app)
{
    ((fake *)app)->freed++;
}

/* daemon_main of the fake with argv "twig-fake" + args (NULL-terminated) */
static int fake_main(fake *f, const char *const *args)
{
    char *argv[16] = {"twig-fake"};
    int argc = 1;
    for (int i = 0; args[i]; i++) {
        argv[argc++] = (char *)args[i];
    }
    const config_table t = {NULL, fake_opts, 2, &f->cfg, NULL};
    const daemon_spec d = {
        .name = "fake",
        .usage = "usage: twig-fake [--n N]",
        .tables = &t,
        .n_tables = 1,
        .log_level = &f->cfg.log_level,
        .configure = fake_configure,
        .init = fake_init,
        .run = fake_run,
        .free = fake_free,
        .app = f,
    };
    return daemon_main(&d, argc, argv);
}

TestSuite(daemon_main, .timeout = 30);

Test(daemon_main, a_bad_option_exits_2_before_any_hook)
{
    fake f = {0};
    const char *args[] = {"--n", "500", NULL};
    cr_expect_eq(fake_main(&f, args), 2);
    cr_expect_eq(f.configured + f.inited + f.ran + f.freed, 0);
}

Test(daemon_main, help_exits_0_and_starts_nothing)
{
    fake f = {0};
    const char *args[] = {"--help", NULL};
    cr_redirect_stdout();
    cr_expect_eq(fake_main(&f, args), 0);
    cr_expect_eq(f.configured + f.inited + f.ran + f.freed, 0);
}

Test(daemon_main, a_refusing_configure_hook_exits_2_and_nothing_starts)
{
    fake f = {.configure_rc = -EINVAL};
    const char *args[] = {"--n", "3", NULL};
    cr_expect_eq(fake_main(&f, args), 2);
    cr_expect_eq(f.configured, 1);
    cr_expect_eq(f.inited + f.ran + f.freed, 0);
}

Test(daemon_main, a_failed_init_exits_1_and_free_still_runs)
{
    fake f = {.init_rc = -EADDRINUSE};
    const char *args[] = {NULL};
    cr_expect_eq(fake_main(&f, args), 1);
    cr_expect_eq(f.inited, 1);
    cr_expect_eq(f.ran, 0);
    cr_expect_eq(f.freed, 1);
}

Test(daemon_main, run_decides_the_status_and_sigpipe_is_ignored_while_it_runs)
{
    fake f = {0};
    const char *args[] = {"--n", "4", NULL};
    cr_expect_eq(fake_main(&f, args), 0);
    cr_expect_eq(f.cfg.n, 4);
    cr_expect_eq(f.configured, 1);
    cr_expect_eq(f.ran, 1);
    cr_expect_eq(f.freed, 1);
    cr_expect(f.sigpipe_ignored_in_run);
    fake g = {.run_rc = -EIO};
    cr_expect_eq(fake_main(&g, args), 1);
    cr_expect_eq(g.freed, 1);
}

/* ---- daemon_signals ---- */

typedef struct sig_app {
    daemon_signals sig;
    int stops;
} sig_app;

/* what a daemon's stop does: its shutdown, which closes the signals */
static void sig_app_stop(void *app)
{
    sig_app *a = app;
    a->stops++;
    daemon_signals_close(&a->sig);
}

/* signum to this process once the handlers run: the stop runs once, the loop ends (the
 * handles closed), and a second signum is ignored */
static void expect_stop_on(int signum)
{
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    sig_app a = {0};
    daemon_signals_start(&a.sig, &loop, sig_app_stop, &a);
    cr_assert_eq(kill(getpid(), signum), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_expect_eq(a.stops, 1);
    cr_expect(!a.sig.open);
    cr_expect_eq(kill(getpid(), signum), 0);   /* ignored now: this process lives on */
    cr_expect_eq(a.stops, 1);
    daemon_signals_close(&a.sig);              /* idempotent */
    cr_expect_eq(uv_loop_close(&loop), 0, "every handle closed");
}

Test(daemon_signals, sigterm_stops_once_then_is_ignored, .timeout = 10)
{
    expect_stop_on(SIGTERM);
}

Test(daemon_signals, sigint_stops_once_then_is_ignored, .timeout = 10)
{
    expect_stop_on(SIGINT);
}

Test(daemon_signals, close_on_a_zeroed_struct_only_ignores_the_signals, .timeout = 10)
{
    daemon_signals s = {0};
    daemon_signals_close(&s);
    cr_expect_eq(kill(getpid(), SIGTERM), 0);
    cr_expect_eq(kill(getpid(), SIGINT), 0);
}

/* ---- the real daemons and SIGPIPE ---- */

#define MS TWIG_BIN_DIR "/modelserver/twig-modelserver"
#define LEARNER TWIG_BIN_DIR "/learner/twig-learner"
#define ACTOR TWIG_BIN_DIR "/actor/twig-actor"
#define ROLLOUT TWIG_BIN_DIR "/modelserver/twig-rollout"
#define DAEMON_UP_MS 30000

static char tmp[PROCFIX_DIR_LEN];

static void setup(void)
{
    procfix_tmpdir(tmp, sizeof tmp);
}

static void teardown(void)
{
    procfix_reap_all();
    procfix_tmpdir_done(tmp);
}

TestSuite(daemon_process, .init = setup, .fini = teardown, .timeout = 120);

/* bin (its own dirs in tmp, peers at a port nobody serves) with stderr, where its log goes,
 * into a pipe whose reader closes once bin is live: SIGTERM then makes it log into a pipe
 * without a reader (EPIPE, or death by SIGPIPE unless ignored); it must still exit 0 */
static void expect_survives_its_log_reader(const char *bin, const char *name)
{
    char fifo[PROCFIX_DIR_LEN + 32], dir[PROCFIX_DIR_LEN + 32], peer[64];
    procfix_t p = {0};
    snprintf(fifo, sizeof fifo, "%s/%s.stderr", tmp, name);
    snprintf(dir, sizeof dir, "%s/%s-dir", tmp, name);
    snprintf(p.port_file, sizeof p.port_file, "%s/%s.port", tmp, name);
    snprintf(p.log_file, sizeof p.log_file, "%s (stderr: a pipe)", name);
    snprintf(peer, sizeof peer, "127.0.0.1:%d", procfix_free_port());
    cr_assert_eq(mkfifo(fifo, 0600), 0, "mkfifo: %s", strerror(errno));
    const char *argv[16] = {bin, "--listen", "127.0.0.1:0", "--port-file", p.port_file,
                            "--modelserver-addr", peer, "--learner-addr", peer};
    int n = 9;
    if (strcmp(bin, MS) == 0) {
        argv[n++] = "--data-dir";
        argv[n++] = dir;
    } else if (strcmp(bin, LEARNER) == 0) {
        argv[n++] = "--checkpoint-dir";
        argv[n++] = dir;
    }
    argv[n] = NULL;
    p.pid = procfix_spawn_io(argv, NULL, fifo);
    int rd = open(fifo, O_RDONLY);   /* returns once the child has opened it for writing */
    cr_assert_geq(rd, 0, "open %s: %s", fifo, strerror(errno));
    procfix_wait_live(&p, DAEMON_UP_MS);
    close(rd);
    cr_assert_eq(kill(p.pid, SIGTERM), 0);
    int code = procfix_exit_code(p.pid, PROCFIX_STOP_MS);
    cr_expect_eq(code, 0, "%s: exit code %d (%d: killed by SIGPIPE)", name, code,
                 256 + SIGPIPE);
}

Test(daemon_process, the_model_server_survives_its_log_reader)
{
    expect_survives_its_log_reader(MS, "modelserver");
}

Test(daemon_process, the_learner_survives_its_log_reader)
{
    expect_survives_its_log_reader(LEARNER, "learner");
}

Test(daemon_process, the_actor_survives_its_log_reader)
{
    expect_survives_its_log_reader(ACTOR, "actor");
}

Test(daemon_process, the_rollout_worker_survives_its_log_reader)
{
    expect_survives_its_log_reader(ROLLOUT, "rollout");
}
