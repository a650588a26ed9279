/* supervise: children are started, restarted with backoff after a crash, and stopped */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/base/log.h"
#include "deploy/launcher/supervise.h"
#include "tests/procfix.h"

typedef struct watch {
    supervise_t *s;
    int exits;
    int stop_after_exits;       /* stop the run once this many exits were seen */
    int kill_pid_once;          /* kill -9 this child's first incarnation from a timer */
    int signals_seen[16];
} watch_t;

static void on_exit_seen(supervise_t *s, int index, int64_t status, int term_signal)
{
    watch_t *w = s->data;
    if (w->exits < 16) {
        w->signals_seen[w->exits] = term_signal;
    }
    w->exits++;
    if (w->exits >= w->stop_after_exits) {
        supervise_stop(s);
    }
}

static const supervise_cfg fast = {
    .backoff_base_ms = 5, .backoff_max_ms = 40, .stable_ms = 60000, .grace_ms = 2000,
    .max_restarts = -1};

static char log_path[] = "/tmp/twig-supervise-XXXXXX";

/* how long a child's first line, or its restart, may take (a shell under ASan, on a loaded
 * machine) */
#define READY_WAIT_MS 10000

static void setup(void)
{
    log_init("test", LOG_LEVEL_ERROR);
    int fd = mkstemp(log_path);
    cr_assert_geq(fd, 0);
    close(fd);
}

static void teardown(void)
{
    unlink(log_path);
}

Test(supervise, crashing_child_is_restarted_until_the_run_stops, .init = setup,
     .fini = teardown, .timeout = 30)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    supervise_t s;
    supervise_init(&s, &loop, &fast);
    watch_t w = {.s = &s, .stop_after_exits = 4};
    s.data = &w;
    s.on_exit = on_exit_seen;
    char *argv[] = {"/bin/sh", "-c", "echo run; exit 3", NULL};
    cr_assert_eq(supervise_add(&s, "crasher", argv, log_path), 0);
    cr_assert_eq(supervise_start(&s), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_expect_eq(w.exits, 4);
    cr_expect_eq(s.procs[0].starts, 4);
    cr_expect_eq(s.procs[0].restarts, 3);
    cr_expect_eq(s.procs[0].last_exit_status, 3);
    cr_expect_eq(s.open_handles, 0);
    supervise_free(&s);
    cr_expect_eq(uv_loop_close(&loop), 0);
    /* each incarnation appended to the log */
    FILE *f = fopen(log_path, "r");
    char line[64];
    int lines = 0;
    while (fgets(line, sizeof line, f)) {
        cr_expect_str_eq(line, "run\n");
        lines++;
    }
    fclose(f);
    cr_expect_eq(lines, 4);
}

static void kill_first(uv_timer_t *t)
{
    watch_t *w = t->data;
    supervise_proc *p = &w->s->procs[0];
    if (p->running && p->starts == 1) {
        kill(p->pid, SIGKILL);
        uv_close((uv_handle_t *)t, NULL);
        return;
    }
    uv_timer_start(t, kill_first, 2, 0);
}

Test(supervise, kill_9_is_seen_and_the_child_comes_back, .init = setup, .fini = teardown,
     .timeout = 30)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    supervise_t s;
    supervise_init(&s, &loop, &fast);
    watch_t w = {.s = &s, .stop_after_exits = 2};
    s.data = &w;
    s.on_exit = on_exit_seen;
    /* a long-lived child: kill -9 its first incarnation, wait for the restart, then stop */
    char *argv[] = {"/bin/sh", "-c", "exec tail -f /dev/null", NULL};
    cr_assert_eq(supervise_add(&s, "sleeper", argv, log_path), 0);
    cr_assert_eq(supervise_start(&s), 0);
    uv_timer_t t;
    uv_timer_init(&loop, &t);
    t.data = &w;
    uv_timer_start(&t, kill_first, 1, 0);
    /* a deadline of its own, so a restart that never comes fails naming what was seen
     * instead of blocking in uv_run until the test's timeout */
    for (int64_t end = procfix_now_ms() + READY_WAIT_MS;
         s.procs[0].starts < 2 && procfix_now_ms() < end;) {
        uv_run(&loop, UV_RUN_NOWAIT);
        procfix_pause_ms(1);
    }
    if (s.procs[0].starts < 2 && s.procs[0].running) {
        kill(s.procs[0].pid, SIGKILL); /* not left behind by the failed test */
    }
    cr_assert_geq(s.procs[0].starts, 2, "no restart within %d ms: starts %d, exits %d, first "
                  "signal %d", READY_WAIT_MS, s.procs[0].starts, w.exits, w.signals_seen[0]);
    supervise_stop(&s);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_expect_eq(w.signals_seen[0], SIGKILL);
    cr_expect_eq(w.signals_seen[1], SIGTERM);
    cr_expect_eq(s.procs[0].restarts, 1);
    cr_expect_eq(s.open_handles, 0);
    supervise_free(&s);
    cr_expect_eq(uv_loop_close(&loop), 0);
}

Test(supervise, child_ignoring_sigterm_is_killed_after_grace, .init = setup, .fini = teardown,
     .timeout = 30)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    supervise_cfg cfg = fast;
    cfg.grace_ms = 50;
    supervise_t s;
    supervise_init(&s, &loop, &cfg);
    watch_t w = {.s = &s, .stop_after_exits = 100};
    s.data = &w;
    s.on_exit = on_exit_seen;
    char *argv[] = {"/bin/sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.05; done",
                    NULL};
    cr_assert_eq(supervise_add(&s, "stubborn", argv, log_path), 0);
    cr_assert_eq(supervise_start(&s), 0);
    /* wait until the trap is installed: the child prints "ready" after it. Stopping it
     * before that would test a plain SIGTERM, not the grace: a miss fails here, naming what
     * the log held and whether the child still ran */
    char line[16] = "";
    bool ready = false;
    for (int64_t end = procfix_now_ms() + READY_WAIT_MS; !ready && procfix_now_ms() < end;) {
        FILE *f = fopen(log_path, "r");
        line[0] = '\0';
        if (f) {
            if (!fgets(line, sizeof line, f)) {
                line[0] = '\0';
            }
            fclose(f);
        }
        ready = strcmp(line, "ready\n") == 0;
        if (!ready) {
            uv_run(&loop, UV_RUN_NOWAIT);
            procfix_pause_ms(1);
        }
    }
    if (!ready && s.procs[0].running) {
        kill(s.procs[0].pid, SIGKILL); /* it ignores SIGTERM: it would outlive the test */
    }
    cr_assert(ready, "no \"ready\" line from the child within %d ms: the log holds '%s', "
              "running %d, exits %d", READY_WAIT_MS, line, (int)s.procs[0].running, w.exits);
    supervise_stop(&s);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_expect_eq(w.exits, 1);
    cr_expect_eq(w.signals_seen[0], SIGKILL);
    cr_expect_eq(s.open_handles, 0);
    supervise_free(&s);
    cr_expect_eq(uv_loop_close(&loop), 0);
}

/* a spawn that fails at once; the timeout is for a supervisor that tries again forever */
Test(supervise, missing_binary_is_a_clear_error, .init = setup, .fini = teardown,
     .timeout = 30)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    supervise_t s;
    supervise_init(&s, &loop, &fast);
    char *argv[] = {"/nonexistent/twig-nothing", NULL};
    cr_assert_eq(supervise_add(&s, "ghost", argv, log_path), 0);
    int rc = supervise_start(&s);
    cr_expect_eq(rc, -ENOENT);
    supervise_stop(&s);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_expect_eq(s.open_handles, 0);
    supervise_free(&s);
    cr_expect_eq(uv_loop_close(&loop), 0);
}

typedef struct give_up_watch {
    int exits;
    bool gave_up_at[8];
} give_up_watch;

static void on_exit_give_up(supervise_t *s, int index, int64_t status, int term_signal)
{
    give_up_watch *w = s->data;
    bool last = s->procs[index].gave_up;
    if (w->exits < 8) {
        w->gave_up_at[w->exits] = last;
    }
    w->exits++;
    if (last) {
        supervise_stop(s);   /* what the launcher does: the run cannot finish without it */
    }
}

Test(supervise, the_exit_that_uses_up_max_restarts_is_marked_gave_up, .init = setup,
     .fini = teardown, .timeout = 30)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    supervise_cfg cfg = fast;
    cfg.max_restarts = 2;
    supervise_t s;
    supervise_init(&s, &loop, &cfg);
    give_up_watch w = {0};
    s.data = &w;
    s.on_exit = on_exit_give_up;
    char *argv[] = {"/bin/sh", "-c", "exit 5", NULL};
    cr_assert_eq(supervise_add(&s, "crasher", argv, log_path), 0);
    cr_assert_eq(supervise_start(&s), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_expect_eq(w.exits, 3);
    cr_expect_not(w.gave_up_at[0]);
    cr_expect_not(w.gave_up_at[1]);
    cr_expect(w.gave_up_at[2]);
    cr_expect_eq(s.procs[0].starts, 3);
    cr_expect_eq(s.procs[0].restarts, 2);
    cr_expect_eq(s.open_handles, 0);
    supervise_free(&s);
    cr_expect_eq(uv_loop_close(&loop), 0);
}

Test(supervise, an_exit_with_the_fatal_status_is_never_restarted, .init = setup,
     .fini = teardown, .timeout = 30)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    supervise_cfg cfg = fast;   /* unlimited restarts otherwise */
    cfg.fatal_status = 2;
    supervise_t s;
    supervise_init(&s, &loop, &cfg);
    give_up_watch w = {0};
    s.data = &w;
    s.on_exit = on_exit_give_up;
    char *argv[] = {"/bin/sh", "-c", "exit 2", NULL};
    cr_assert_eq(supervise_add(&s, "misconfigured", argv, log_path), 0);
    cr_assert_eq(supervise_start(&s), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_expect_eq(w.exits, 1);
    cr_expect(w.gave_up_at[0]);
    cr_expect(s.procs[0].fatal);
    cr_expect_eq(s.procs[0].starts, 1);
    cr_expect_eq(s.open_handles, 0);
    supervise_free(&s);
    cr_expect_eq(uv_loop_close(&loop), 0);
}

Test(supervise, restarts_older_than_the_window_do_not_count_toward_max_restarts, .init = setup,
     .fini = teardown, .timeout = 30)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    supervise_cfg cfg = fast;
    cfg.max_restarts = 2;
    cfg.restart_window_ms = 1;   /* each incarnation lives >= 50 ms: its start is outside */
    supervise_t s;
    supervise_init(&s, &loop, &cfg);
    watch_t w = {.s = &s, .stop_after_exits = 5};
    s.data = &w;
    s.on_exit = on_exit_seen;
    char *argv[] = {"/bin/sh", "-c", "sleep 0.05; exit 5", NULL};
    cr_assert_eq(supervise_add(&s, "slow-crasher", argv, log_path), 0);
    cr_assert_eq(supervise_start(&s), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_expect_eq(w.exits, 5, "gave up early: %d exits", w.exits);
    cr_expect_eq(s.procs[0].restarts, 4);
    cr_expect_not(s.procs[0].gave_up);
    cr_expect_eq(s.open_handles, 0);
    supervise_free(&s);
    cr_expect_eq(uv_loop_close(&loop), 0);
}
