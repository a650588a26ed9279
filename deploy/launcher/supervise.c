/* supervise.c - child processes with restart on exit and exponential backoff */
#include "deploy/launcher/supervise.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/base/err.h"
#include "common/base/backoff.h"
#include "common/base/launcher_link.h"
#include "common/base/log.h"
#include "common/base/mem.h"

extern char **environ; /* POSIX: the process's environment */

static void on_handle_closed(uv_handle_t *h)
{
    supervise_t *s = h->data;
    s->open_handles--;
}

static void on_process_closed(uv_handle_t *h)
{
    supervise_proc *p = h->data;
    p->handle_open = false;
}

static void on_restart_timer_closed(uv_handle_t *h)
{
    supervise_proc *p = h->data;
    p->owner->open_handles--;
}

static bool any_running(const supervise_t *s)
{
    for (int i = 0; i < s->n_procs; i++) {
        if (s->procs[i].running) {
            return true;
        }
    }
    return false;
}

/* once stopping and every child is gone, close the kill timer: the loop may end */
static void finish_stop_if_done(supervise_t *s)
{
    if (s->stopping && !s->kill_timer_closed && !any_running(s)) {
        s->kill_timer_closed = true;
        uv_timer_stop(&s->kill_timer);
        uv_close((uv_handle_t *)&s->kill_timer, on_handle_closed);
    }
}

static int spawn_proc(supervise_proc *p);

/* how many of p's restarts fall in the window ending now (all of them without a window) */
static int restarts_in_window(const supervise_proc *p, uint64_t now)
{
    const supervise_cfg *c = &p->owner->cfg;
    if (c->restart_window_ms == 0) {
        return p->restarts;
    }
    int kept = p->restarts < SUPERVISE_WINDOW_MAX ? p->restarts : SUPERVISE_WINDOW_MAX;
    int n = 0;
    for (int i = 0; i < kept; i++) {
        n += now - p->restart_ms[i] < c->restart_window_ms;
    }
    return n;
}

static void on_restart_timer(uv_timer_t *t)
{
    supervise_proc *p = t->data;
    if (p->owner->stopping || p->running) {
        return;
    }
    if (p->handle_open) {   /* the old handle's close callback has not run yet */
        uv_timer_start(&p->restart_timer, on_restart_timer, 1, 0);
        return;
    }
    int rc = spawn_proc(p);
    if (rc < 0) {
        p->consecutive_failures++;
        const supervise_cfg *c = &p->owner->cfg;
        uint64_t d =
            backoff_delay_ms(c->backoff_base_ms, c->backoff_max_ms, p->consecutive_failures);
        log_error("event=spawn_failed proc=%s err=%s detail=\"%s\" retry_ms=%llu", p->name,
                  err_name(rc), err_msg(), (unsigned long long)d);
        uv_timer_start(&p->restart_timer, on_restart_timer, d, 0);
    }
}

static void on_exit_cb(uv_process_t *h, int64_t status, int term_signal)
{
    supervise_proc *p = h->data;
    supervise_t *s = p->owner;
    p->running = false;
    p->last_exit_status = status;
    p->last_term_signal = term_signal;
    uv_close((uv_handle_t *)h, on_process_closed);
    /* decided before the callback, so it can tell a last exit from one that is restarted */
    p->fatal = !s->stopping && s->cfg.fatal_status != 0 && term_signal == 0 &&
               status == s->cfg.fatal_status;
    p->window_restarts = restarts_in_window(p, uv_now(s->loop));
    p->gave_up = p->fatal || (!s->stopping && s->cfg.max_restarts >= 0 &&
                              p->window_restarts >= s->cfg.max_restarts);
    int index = (int)(p - s->procs);
    if (s->on_exit) {
        s->on_exit(s, index, status, term_signal);
    }
    if (s->stopping) {
        log_info("event=exited proc=%s pid=%d status=%lld signal=%d", p->name, p->pid,
                 (long long)status, term_signal);
        finish_stop_if_done(s);
        return;
    }
    uint64_t up = uv_now(s->loop) - p->started_ms;
    p->consecutive_failures = up >= s->cfg.stable_ms ? 1 : p->consecutive_failures + 1;
    if (p->gave_up) {
        log_error("event=gave_up proc=%s pid=%d status=%lld signal=%d restarts=%d fatal=%d",
                  p->name, p->pid, (long long)status, term_signal, p->restarts, p->fatal);
        return;
    }
    uint64_t d =
        backoff_delay_ms(s->cfg.backoff_base_ms, s->cfg.backoff_max_ms, p->consecutive_failures);
    log_warn("event=crashed proc=%s pid=%d status=%lld signal=%d uptime_ms=%llu restart_in_ms=%llu",
             p->name, p->pid, (long long)status, term_signal, (unsigned long long)up,
             (unsigned long long)d);
    uv_timer_start(&p->restart_timer, on_restart_timer, d, 0);
}

static int spawn_proc(supervise_proc *p)
{
    supervise_t *s = p->owner;
    int fd = open(p->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        return err_set(-e, "%s: %s", p->log_path, strerror(e));
    }
    uv_stdio_container_t stdio[3] = {
        {.flags = UV_IGNORE},
        {.flags = UV_INHERIT_FD, .data.fd = fd},
        {.flags = UV_INHERIT_FD, .data.fd = fd},
    };
    uv_process_options_t opt = {
        .exit_cb = on_exit_cb,
        .file = p->argv[0],
        .args = p->argv,
        .env = s->env,
        .stdio_count = 3,
        .stdio = stdio,
    };
    memset(&p->handle, 0, sizeof p->handle);
    p->handle.data = p;
    int rc = uv_spawn(s->loop, &p->handle, &opt);
    close(fd);
    if (rc < 0) {
        /* libuv still wants the handle closed after a failed spawn */
        p->handle_open = true;
        uv_close((uv_handle_t *)&p->handle, on_process_closed);
        return err_set(rc, "cannot start %s (%s): %s", p->name, p->argv[0], uv_strerror(rc));
    }
    p->handle_open = true;
    p->running = true;
    p->pid = p->handle.pid;
    p->started_ms = uv_now(s->loop);
    if (p->starts > 0) {
        p->restart_ms[p->restarts % SUPERVISE_WINDOW_MAX] = p->started_ms;
        p->restarts++;
    }
    p->starts++;
    log_info("event=started proc=%s pid=%d start=%d", p->name, p->pid, p->starts);
    if (s->on_start) {
        s->on_start(s, (int)(p - s->procs));
    }
    return 0;
}

void supervise_init(supervise_t *s, uv_loop_t *loop, const supervise_cfg *cfg)
{
    memset(s, 0, sizeof *s);
    s->loop = loop;
    s->cfg = *cfg;
    /* the environment as it is now, an inherited TWIG_LAUNCHER_PID replaced by ours */
    const size_t prefix = strlen(LAUNCHER_PID_ENV "=");
    size_t n = 0;
    while (environ[n]) {
        n++;
    }
    s->env = xmalloc((n + 2) * sizeof *s->env);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(environ[i], LAUNCHER_PID_ENV "=", prefix) != 0) {
            s->env[k++] = environ[i];
        }
    }
    snprintf(s->launcher_env, sizeof s->launcher_env, "%s=%ld", LAUNCHER_PID_ENV,
             (long)getpid());
    s->env[k++] = s->launcher_env;
    s->env[k] = NULL;
    uv_timer_init(loop, &s->kill_timer);
    s->kill_timer.data = s;
    s->open_handles = 1;
}

int supervise_add(supervise_t *s, const char *name, char *const argv[], const char *log_path)
{
    if (s->n_procs == SUPERVISE_MAX_PROCS) {
        return err_set(-ENOSPC, "more than %d processes", SUPERVISE_MAX_PROCS);
    }
    int argc = 0;
    while (argv[argc]) {
        if (++argc > SUPERVISE_MAX_ARGS) {
            return err_set(-E2BIG, "%s: more than %d arguments", name, SUPERVISE_MAX_ARGS);
        }
    }
    supervise_proc *p = &s->procs[s->n_procs];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    for (int i = 0; i < argc; i++) {
        p->argv[i] = xstrdup(argv[i]);
    }
    p->log_path = xstrdup(log_path);
    p->owner = s;
    uv_timer_init(s->loop, &p->restart_timer);
    p->restart_timer.data = p;
    s->open_handles++;
    return s->n_procs++;
}

int supervise_start(supervise_t *s)
{
    for (int i = 0; i < s->n_procs; i++) {
        int rc = spawn_proc(&s->procs[i]);
        if (rc < 0) {
            return rc;
        }
    }
    return 0;
}

static void on_kill_timer(uv_timer_t *t)
{
    supervise_t *s = t->data;
    for (int i = 0; i < s->n_procs; i++) {
        supervise_proc *p = &s->procs[i];
        if (p->running) {
            log_warn("event=kill proc=%s pid=%d reason=grace_expired", p->name, p->pid);
            uv_process_kill(&p->handle, SIGKILL);
        }
    }
}

int supervise_kill(supervise_t *s, int index, int signum)
{
    supervise_proc *p = &s->procs[index];
    if (!p->running) {
        return err_set(-ESRCH, "%s is not running", p->name);
    }
    int rc = uv_process_kill(&p->handle, signum);
    return rc < 0 ? err_set(rc, "kill %s (pid %d): %s", p->name, p->pid, uv_strerror(rc)) : 0;
}

void supervise_stop(supervise_t *s)
{
    if (s->stopping) {
        return;
    }
    s->stopping = true;
    for (int i = 0; i < s->n_procs; i++) {
        supervise_proc *p = &s->procs[i];
        uv_timer_stop(&p->restart_timer);
        uv_close((uv_handle_t *)&p->restart_timer, on_restart_timer_closed);
        if (p->running) {
            uv_process_kill(&p->handle, SIGTERM);
        }
    }
    uv_timer_start(&s->kill_timer, on_kill_timer, s->cfg.grace_ms, 0);
    finish_stop_if_done(s);
}

void supervise_free(supervise_t *s)
{
    for (int i = 0; i < s->n_procs; i++) {
        supervise_proc *p = &s->procs[i];
        for (int j = 0; p->argv[j]; j++) {
            free(p->argv[j]);
        }
        free(p->log_path);
        memset(p->argv, 0, sizeof p->argv);
        p->log_path = NULL;
    }
    s->n_procs = 0;
    free(s->env);
    s->env = NULL;
}

int supervise_find(const supervise_t *s, const char *name)
{
    for (int i = 0; i < s->n_procs; i++) {
        if (strcmp(s->procs[i].name, name) == 0) {
            return i;
        }
    }
    return -1;
}
