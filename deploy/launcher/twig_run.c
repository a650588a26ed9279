/* twig_run.c - `twig run CONFIG [--run-dir DIR] [--set KEY=VALUE ...]`: a whole training on
 * this machine.
 *
 * 1. read the run config (top level + launcher section) and the overrides, check the env id;
 * 2. check the whole effective config before anything is made or started: every binary checks
 *    its own section of the user's file with the overrides (`--print-config`, the very option
 *    tables it runs with, so errors name the user's file and line), an existing run directory
 *    must hold a log of the same env (RUN/modelserver/meta), the listen ports must be free;
 * 3. make the run directory, write the config as run there (RUN/config.yaml: the overrides
 *    applied, each value as written) and each process's effective config
 *    (RUN/<proc>.config.yaml), and start the processes under supervision: restart with
 *    backoff on a crash, at most launcher.max_restarts within launcher.restart_window_ms;
 *    a process exiting 2 (a configuration error, cli.h) is never restarted;
 * 4. the monitor waits until all are healthy, then shows progress and writes metrics.csv and
 *    TensorBoard events until the final evaluation arrives;
 * 5. stop everything, draw learning_curve.png with gnuplot, print the summary.
 *
 * The run ends in one place, launcher_stop() on the loop thread, whatever ends it: the
 * monitor (final evaluation, or a failure) through the `wake` async, SIGINT/SIGTERM, a process
 * the supervisor gave up on (launcher.max_restarts), or an error while starting. The monitor
 * thread may still send on `wake` until it is joined, so that handle is unreferenced at the
 * stop and closed only after monitor_stop().
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "common/base/atomic_file.h"
#include "common/config/cli.h"
#include "common/config/config.h"
#include "common/env/env.h"
#include "common/base/err.h"
#include "common/base/fs.h"
#include "common/base/log.h"
#include "common/base/mem.h"
#include "common/rpc/rpc.h"
#include "common/rpc/tls_run.h"
#include "common/config/run_config.h"
#include "deploy/launcher/child.h"
#include "deploy/launcher/config_record.h"
#include "deploy/launcher/healthwatch.h"
#include "deploy/launcher/monitor.h"
#include "deploy/launcher/ports.h"
#include "deploy/launcher/run_plan.h"
#include "deploy/launcher/run_report.h"
#include "deploy/launcher/supervise.h"
#include "deploy/launcher/twig_cmds.h"

/* metrics_targets.json: PLAN_MAX_PROCS entries of at most ~200 bytes */
#define METRICS_TARGETS_MAX (PLAN_MAX_PROCS * 256 + 16)

typedef struct launcher {
    run_cfg run;
    launcher_cfg cfg;
    char config_src[PLAN_PATH_MAX];
    char run_dir[PLAN_PATH_MAX];
    char config_path[PLAN_PATH_MAX + 16];
    const char *overrides[PLAN_MAX_OVERRIDES];   /* recorded ones first when resuming */
    int n_overrides;
    bool resume;                   /* --resume: continue the run in run_dir */
    char recorded[PLAN_MAX_OVERRIDES][PLAN_PATH_MAX / 2];   /* RUN/overrides.txt's lines */
    char *old_configs[PLAN_MAX_PROCS];   /* RUN/<proc>.config.yaml before this launch, owned */
    char bin_paths[4][PLAN_PATH_MAX];
    char *effective[PLAN_MAX_PROCS]; /* owned: each process's --print-config output */
    size_t effective_len[PLAN_MAX_PROCS];
    run_plan *plan;                /* owned, large */
    int metrics_ports[PLAN_MAX_PROCS]; /* launcher.metrics_base_port 0: the free ports picked */
    uv_loop_t loop;
    uv_async_t wake;
    uv_signal_t sigint, sigterm;
    supervise_t sup;
    monitor_t mon;
    healthwatch_t hw;
    atomic_uint hung[PLAN_MAX_PROCS]; /* start gen of a process the watch found hung; 0: none */
    bool stopping;                 /* launcher_stop ran */
    int exit_code;
    int log_fd;                    /* RUN/twig.log; -1 before the run dir exists */
    bool plotted;                  /* learning_curve.png was written */
} launcher_t;

static const char usage[] =
    "usage: twig run CONFIG [--run-dir DIR] [--set KEY=VALUE ...]\n"
    "       twig run --resume RUN_DIR [--set KEY=VALUE ...]\n"
    "  runs a whole training on this machine: model server, learner, rollout workers and\n"
    "  actors as separate processes. KEY is a top-level option (real_steps, utd, ...) or\n"
    "  SECTION.KEY (learner.batch_size, launcher.run_dir, ...).\n"
    "  Before anything is made or started, the whole effective config is checked: each\n"
    "  section by its own process's option table (errors name CONFIG:LINE and the key, and\n"
    "  a near miss: did you mean 'learner.batch_size'?), the env id, the listen addresses,\n"
    "  and an existing run directory, whose log must be of the same env and dims; a refused\n"
    "  run creates nothing. A crashed process is restarted with backoff, at most\n"
    "  launcher.max_restarts times within launcher.restart_window_ms (5 in 10 min unless\n"
    "  set); then the run stops, saying why. A process that exits 2 (a configuration error)\n"
    "  is never restarted: the run stops and shows the reason from its log.\n"
    "  --resume continues a stopped run with its recorded config; only real_steps (a larger\n"
    "  budget), n_actors, n_rollout and launcher.* may change (docs/design.md, Resume).\n"
    "  exit status: 0 the run finished; 1 it failed (a process gave up, a port in use, a\n"
    "  binary missing); 2 a bad command line or config (twig's own, a section a process\n"
    "  refused, a run dir of another env) before any process starts, or a process that\n"
    "  exited 2 later; 128 + N interrupted by signal N.";

#define TWIG_RUN_EXIT_CONFIG 2   /* a config refused (cli.h's exit 2, a process's too) */
#define RUN_OVERRIDES_FILE "overrides.txt"

static int copy_file(const char *dst, const char *src)
{
    FILE *in = fopen(src, "rb");
    if (!in) {
        return err_set(-errno, "%s: %s", src, strerror(errno));
    }
    FILE *out = fopen(dst, "wb");
    if (!out) {
        int e = errno;
        fclose(in);
        return err_set(-e, "%s: %s", dst, strerror(e));
    }
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) {
        fwrite(buf, 1, n, out);
    }
    fclose(in);
    return fclose(out) == 0 ? 0 : err_set(-EIO, "%s: write failed", dst);
}

/* RUN/config.yaml: the config as run, the --set overrides applied with their text as given
 * (config_record.h); a file it cannot rewrite is copied as it is */
static int write_run_config(const launcher_t *L)
{
    FILE *in = fopen(L->config_src, "rb");
    if (!in) {
        return err_set(-errno, "%s: %s", L->config_src, strerror(errno));
    }
    char *yaml = NULL, *text = NULL;
    size_t yaml_len = 0, len = 0;
    FILE *src = open_memstream(&yaml, &yaml_len);
    TWIG_ASSERT(src);
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) {
        fwrite(buf, 1, n, src);
    }
    fclose(in);
    fclose(src);
    FILE *out = open_memstream(&text, &len);
    TWIG_ASSERT(out);
    int rc = config_record_write(out, yaml, yaml_len, L->config_src, L->overrides,
                                 L->n_overrides);
    fclose(out);
    if (rc < 0) {
        log_warn("event=config_copied_as_is path=%s detail=\"%s\"", L->config_src, err_msg());
        rc = copy_file(L->config_path, L->config_src);
    } else {
        rc = atomic_file_write(L->config_path, text, len);
    }
    free(yaml);
    free(text);
    return rc;
}

/* a binary next to twig (installed layout) or in the build tree's folder for its role */
static int find_binary(char *out, size_t n, const char *bin_dir, plan_role role)
{
    static const char *const folders[] = {"modelserver", "learner", "modelserver", "actor"};
    const char *name = plan_binary_name(role);
    char exe_dir[PLAN_PATH_MAX / 2];
    if (bin_dir[0]) {
        if (strlen(bin_dir) >= sizeof exe_dir) {
            return err_set(-ENAMETOOLONG, "launcher.bin_dir is too long");
        }
        snprintf(exe_dir, sizeof exe_dir, "%s", bin_dir);
    } else {
        ssize_t len = readlink("/proc/self/exe", exe_dir, sizeof exe_dir - 1);
        if (len < 0) {
            return err_set(-errno, "cannot find the twig binary's folder");
        }
        exe_dir[len] = '\0';
        char *slash = strrchr(exe_dir, '/');
        if (slash) {
            *slash = '\0';
        }
    }
    snprintf(out, n, "%s/%s", exe_dir, name);
    if (access(out, X_OK) == 0) {
        return 0;
    }
    snprintf(out, n, "%s/../%s/%s", exe_dir, folders[role], name);
    if (access(out, X_OK) == 0) {
        return 0;
    }
    return err_set(-ENOENT, "%s not found in %s or %s/../%s (set launcher.bin_dir)", name,
                   exe_dir, exe_dir, folders[role]);
}

/* the whole of f (rewound) as a malloc'd string, *len its length; owned by the caller */
static char *read_all(FILE *f, size_t *len)
{
    rewind(f);
    size_t cap = 4096, n = 0;
    char *buf = xmalloc(cap);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (n + 1 == cap) {
            cap *= 2;
            buf = xrealloc(buf, cap);
        }
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* run `bin --config CONFIG --set ... --print-config`: the process checks its own section of
 * the user's file with the overrides, through the option tables it runs with. Its output is
 * kept in memory (L->effective[i]) and written into the run directory only once every check
 * passed: a refused run leaves nothing behind */
static int check_process_config(launcher_t *L, int i, const plan_proc *p)
{
    char *argv[PLAN_MAX_ARGS + 2];
    int argc = 0;
    while (p->argv[argc]) {
        argv[argc] = p->argv[argc];
        argc++;
    }
    argv[argc++] = "--print-config";
    argv[argc] = NULL;
    FILE *out = tmpfile(), *err = tmpfile();   /* unlinked at once: nothing is left */
    if (!out || !err) {
        int e = errno;
        if (out) {
            fclose(out);
        }
        return err_set(-e, "tmpfile: %s", strerror(e));
    }
    int status = child_run(argv, fileno(out), fileno(err), false);
    if (status < 0) {
        fclose(out);
        fclose(err);
        return status;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        L->effective[i] = read_all(out, &L->effective_len[i]);
        fclose(out);
        fclose(err);
        return 0;
    }
    size_t n;
    char *detail = read_all(err, &n);
    fclose(out);
    fclose(err);
    while (n > 0 && (detail[n - 1] == '\n' || detail[n - 1] == ' ')) {
        detail[--n] = '\0';
    }
    /* "twig-learner: FILE:3: ..." names the binary once more: drop the prefix */
    const char *msg = detail;
    const char *bin = plan_binary_name(p->role);
    if (strncmp(msg, bin, strlen(bin)) == 0 && strncmp(msg + strlen(bin), ": ", 2) == 0) {
        msg += strlen(bin) + 2;
    }
    char how[64];
    child_describe_status(how, sizeof how, status);
    int rc = err_set(-EINVAL, "%s refused the config (%s): %s", p->name, how,
                     msg[0] ? msg : "no message");
    free(detail);
    return rc;
}

/* the env id, with a near miss among the built-in ids when it is none of them */
static int check_env_id(const char *id)
{
    int rc = env_check_id(id);
    if (rc != TWIG_ENOTFOUND) {
        return rc;
    }
    char why[700], near[RUN_ENV_MAX + 1];
    snprintf(why, sizeof why, "%s", err_msg());
    if (config_nearest_word(env_list(), id, near, sizeof near)) {
        return err_set(rc, "env: %s; did you mean '%s'?", why, near);
    }
    return err_set(rc, "env: %s", why);
}

/* the model server's data dir from its effective config (`  data_dir: "..."`, quoted as
 * config_write_yaml writes strings: \" and \\), into out; 0, or -ENOENT when not found */
static int effective_data_dir(char *out, size_t n, const launcher_t *L)
{
    for (int i = 0; i < L->plan->n_procs; i++) {
        const char *cfg = L->effective[i];
        if (L->plan->procs[i].role != PLAN_ROLE_MODELSERVER || !cfg) {
            continue;
        }
        const char *sec = strstr(cfg, "\nmodelserver:\n");
        const char *at = sec ? strstr(sec, "\n  data_dir: \"") : NULL;
        if (!at) {
            return -ENOENT;
        }
        at += strlen("\n  data_dir: \"");
        size_t k = 0;
        for (; *at && *at != '"' && *at != '\n' && k + 1 < n; at++) {
            if (*at == '\\' && at[1]) {
                at++;
            }
            out[k++] = *at;
        }
        out[k] = '\0';
        return *at == '"' && k > 0 ? 0 : -ENOENT;
    }
    return -ENOENT;
}

/* an existing run directory continues its run: its real-transition log (the model server's
 * data dir, RUN/modelserver unless set otherwise, whose meta file modelserver/reallog.c writes
 * as "twig-reallog 1\nenv_id=ID\nobs_dim=N\nact_dim=M\n") must be of this run's env and dims */
static int check_run_dir(const launcher_t *L)
{
    char data_dir[PLAN_PATH_MAX + 16], path[PLAN_PATH_MAX + 32];
    if (effective_data_dir(data_dir, sizeof data_dir, L) < 0) {
        snprintf(data_dir, sizeof data_dir, "%s/modelserver", L->run_dir);
    }
    snprintf(path, sizeof path, "%s/meta", data_dir);
    FILE *f = fopen(path, "r");
    if (!f) {
        return 0;   /* a new run directory, or one without a log yet */
    }
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    char env[RUN_ENV_MAX + 1];
    unsigned obs = 0, act = 0;
    if (sscanf(buf, "twig-reallog 1\nenv_id=%255[^\n]\nobs_dim=%u\nact_dim=%u", env, &obs,
               &act) != 3) {
        return err_set(TWIG_ECORRUPT,
                       "%s is not a twig-reallog meta file: is %s a twig run's data dir? "
                       "(use another --run-dir)",
                       path, data_dir);
    }
    if (strcmp(env, L->run.env) != 0) {
        return err_set(TWIG_EMISMATCH,
                       "the run's data dir %s holds a log of env '%s' (%s), not '%s': use "
                       "another --run-dir (launcher.run_dir), or env %s",
                       data_dir, env, path, L->run.env, env);
    }
    env_t *e = NULL;
    int rc = env_make(&e, L->run.env);
    if (rc < 0) {
        return err_set(rc, "env %s: %s", L->run.env, err_msg());
    }
    unsigned want_obs = (unsigned)e->spec.n_obs, want_act = (unsigned)e->spec.n_act;
    env_free(e);
    if (obs != want_obs || act != want_act) {
        return err_set(TWIG_EMISMATCH,
                       "the run's data dir %s holds a log of %s with obs_dim %u, act_dim %u "
                       "(%s), but %s now has obs_dim %u, act_dim %u: use another --run-dir",
                       data_dir, env, obs, act, path, L->run.env, want_obs, want_act);
    }
    return 0;
}

/* the last error lines of a process's log (at most max_lines <= 8, joined by " | "), or its
 * last line when none is an error: what the terminal shows when a process ends a run */
static void log_reason(char *out, size_t n, const char *log_path, int max_lines)
{
    FILE *f = fopen(log_path, "r");
    if (!f) {
        snprintf(out, n, "no log at %s", log_path);
        return;
    }
    static char tail[8192];   /* loop thread only */
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    long from = size > (long)sizeof tail - 1 ? size - (long)sizeof tail + 1 : 0;
    fseek(f, from, SEEK_SET);
    size_t got = fread(tail, 1, sizeof tail - 1, f);
    tail[got] = '\0';
    fclose(f);
    const char *picked[8];
    int n_picked = 0;
    const char *last = NULL;
    for (char *line = strtok(tail, "\n"); line; line = strtok(NULL, "\n")) {
        last = line;
        /* a log line at level error, or a program's own "twig-learner: ..." message */
        bool error = strstr(line, " error ") != NULL || strncmp(line, "twig-", 5) == 0;
        if (error) {
            if (n_picked == max_lines) {
                memmove(picked, picked + 1, (size_t)(max_lines - 1) * sizeof picked[0]);
                n_picked--;
            }
            picked[n_picked++] = line;
        }
    }
    if (n_picked == 0 && last) {
        picked[n_picked++] = last;
    }
    if (n_picked == 0) {
        snprintf(out, n, "nothing in its log");
        return;
    }
    size_t at = 0;
    out[0] = '\0';
    for (int i = 0; i < n_picked && at < n; i++) {
        at += (size_t)snprintf(out + at, n - at, "%s%s", i ? " | " : "", picked[i]);
    }
}

/* "10m", "90s", "2h", "250ms" */
static void describe_ms(char *out, size_t n, uint64_t ms)
{
    uint64_t s = ms / 1000;
    if (ms % 3600000 == 0) {
        snprintf(out, n, "%lluh", (unsigned long long)(s / 3600));
    } else if (ms % 60000 == 0) {
        snprintf(out, n, "%llum", (unsigned long long)(s / 60));
    } else if (ms % 1000 == 0) {
        snprintf(out, n, "%llus", (unsigned long long)s);
    } else {
        snprintf(out, n, "%llums", (unsigned long long)ms);
    }
}

/* loop thread: end the run with exit code `code` (reason: why, when code != 0); the first call
 * wins. The loop returns once every child is gone */
static void launcher_stop(launcher_t *L, int code, const char *reason)
{
    if (L->stopping) {
        return;
    }
    L->stopping = true;
    L->exit_code = code;
    if (code != 0) {
        log_error("event=run_failed exit=%d reason=\"%s\"", code, reason);
        fprintf(stderr, "\ntwig: run failed: %s\n", reason);
    }
    stop_flag_raise(&L->mon.stop);   /* the monitor winds down while the children stop */
    stop_flag_raise(&L->hw.stop);
    supervise_stop(&L->sup);
    uv_close((uv_handle_t *)&L->sigint, NULL);
    uv_close((uv_handle_t *)&L->sigterm, NULL);
    uv_unref((uv_handle_t *)&L->wake);   /* closed after monitor_stop: the thread may send */
}

/* loop thread: kill what the health watch found hung in its current start; the supervisor
 * restarts it as after any crash */
static void kill_hung(launcher_t *L)
{
    for (int i = 0; i < L->sup.n_procs && !L->stopping; i++) {
        unsigned gen = atomic_exchange(&L->hung[i], 0);
        supervise_proc *p = &L->sup.procs[i];
        if (gen == 0 || gen != healthwatch_gen(&L->hw, i) || !p->running) {
            continue;   /* restarted or gone meanwhile */
        }
        log_info("event=hung_killed proc=%s pid=%d", p->name, p->pid);
        if (supervise_kill(&L->sup, i, SIGKILL) < 0) {
            log_warn("event=kill_failed proc=%s detail=\"%s\"", p->name, err_msg());
        }
    }
}

/* watch thread */
static void on_hung(void *data, int index, unsigned gen, const char *why)
{
    launcher_t *L = data;
    log_warn("event=hung proc=%s detail=\"%s\"", L->plan->procs[index].name, why);
    fprintf(stderr, "\ntwig: %s is hung (%s); killing and restarting it\n",
            L->plan->procs[index].name, why);
    atomic_store(&L->hung[index], gen);
    uv_async_send(&L->wake);
}

/* watch thread */
static void on_ready(void *data, int index, bool ready)
{
    launcher_t *L = data;
    const plan_proc *p = &L->plan->procs[index];
    log_info("event=%s proc=%s", ready ? "ready_again" : "not_ready", p->name);
    if (ready) {
        fprintf(stderr, "\ntwig: %s is ready again\n", p->name);
    } else {
        fprintf(stderr, "\ntwig: %s is live but not ready (it cannot do its job now; see %s)\n",
                p->name, p->log_path);
    }
}

static void on_wake(uv_async_t *h)
{
    launcher_t *L = h->data;
    kill_hung(L);
    monitor_state st = monitor_get_state(&L->mon);
    if (st == MONITOR_DONE) {
        launcher_stop(L, 0, NULL);
    } else if (st == MONITOR_FAILED) {
        launcher_stop(L, 1, L->mon.failure);
    }
}

static void wake_from_monitor(void *data)
{
    launcher_t *L = data;
    uv_async_send(&L->wake);
}

static void on_signal(uv_signal_t *h, int signum)
{
    launcher_t *L = h->data;
    char reason[PLAN_PATH_MAX + 96];
    snprintf(reason, sizeof reason,
             "interrupted by signal %d; continue it with: twig run --resume %s", signum,
             L->run_dir);
    launcher_stop(L, 128 + signum, reason);   /* the shell's convention: 130 for Ctrl-C */
}

static void on_proc_exit(supervise_t *s, int index, int64_t status, int term_signal)
{
    launcher_t *L = s->data;
    const supervise_proc *p = &s->procs[index];
    if (s->stopping) {
        return;
    }
    char how[48], why[1024], reason[1400];
    if (term_signal != 0) {
        snprintf(how, sizeof how, "killed by signal %d", term_signal);
    } else {
        snprintf(how, sizeof how, "exit status %lld", (long long)status);
    }
    log_reason(why, sizeof why, p->log_path, p->fatal ? 3 : 1);
    if (p->fatal) {
        /* a configuration error: a restart would fail the same way */
        snprintf(reason, sizeof reason,
                 "%s exited with a configuration error (%s) and is not restarted: %s (see %s)",
                 p->name, how, why, p->log_path);
        launcher_stop(L, TWIG_RUN_EXIT_CONFIG, reason);
        return;
    }
    if (p->gave_up) {
        /* it stays down: without it the run can never finish, so end it now */
        char window[40] = "";
        if (s->cfg.restart_window_ms > 0) {
            char w[24];
            describe_ms(w, sizeof w, s->cfg.restart_window_ms);
            snprintf(window, sizeof window, " in %s", w);
        }
        snprintf(reason, sizeof reason,
                 "%s restarted %d time%s%s; last %s: %s (see %s; launcher.max_restarts)",
                 p->name, p->window_restarts, p->window_restarts == 1 ? "" : "s", window, how,
                 why, p->log_path);
        launcher_stop(L, 1, reason);
        return;
    }
    fprintf(stderr, "\ntwig: %s exited (%s): %s; restarting it\n", p->name, how, why);
}

/* RUN/procs.tsv: name, pid, starts of every process, rewritten at each start, so tools and
 * fault tests can find (and kill) a process by name */
static void on_proc_start(supervise_t *s, int index)
{
    launcher_t *L = s->data;
    healthwatch_note_start(&L->hw, index);
    char path[PLAN_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/procs.tsv", L->run_dir);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    TWIG_ASSERT(f);
    fprintf(f, "name\tpid\tstarts\trunning\n");
    for (int i = 0; i < s->n_procs; i++) {
        const supervise_proc *p = &s->procs[i];
        fprintf(f, "%s\t%d\t%d\t%d\n", p->name, p->pid, p->starts, p->running ? 1 : 0);
    }
    fclose(f);
    if (atomic_file_write(path, text, len) < 0) {
        log_warn("event=procs_file_failed path=%s detail=\"%s\"", path, err_msg());
    }
    free(text);
    /* a restart's start is in twig.log (event=started); stderr had its exit already */
}

static void print_summary(const launcher_t *L)
{
    report_restart r[PLAN_MAX_PROCS];
    int n = 0;
    for (int i = 0; i < L->sup.n_procs && n < PLAN_MAX_PROCS; i++) {
        if (L->sup.procs[i].restarts > 0) {
            r[n++] = (report_restart){.name = L->sup.procs[i].name,
                                      .restarts = L->sup.procs[i].restarts};
        }
    }
    report_summary(stdout, &L->mon.last, &L->mon.run, L->exit_code == 0, L->run_dir, L->plotted,
                   r, n);
}

/* ---- resume ---- */

/* the text before '=' of a --set assignment */
static size_t override_key_len(const char *o)
{
    const char *eq = strchr(o, '=');
    return eq ? (size_t)(eq - o) : strlen(o);
}

/* add o to the overrides; one with the same key is replaced (the newest value wins) */
static int override_put(launcher_t *L, const char *o)
{
    size_t k = override_key_len(o);
    for (int i = 0; i < L->n_overrides; i++) {
        if (override_key_len(L->overrides[i]) == k && strncmp(L->overrides[i], o, k) == 0) {
            L->overrides[i] = o;
            return 0;
        }
    }
    if (L->n_overrides == PLAN_MAX_OVERRIDES) {
        return err_set(-E2BIG, "more than %d --set options", PLAN_MAX_OVERRIDES);
    }
    L->overrides[L->n_overrides++] = o;
    return 0;
}

/* --resume DIR: the config as recorded (DIR/config.yaml) and the overrides the run was
 * started with (DIR/overrides.txt, one per line), ahead of this command line's */
static int resume_load(launcher_t *L, const char *dir)
{
    char path[PLAN_PATH_MAX + 32];
    if (strlen(dir) + sizeof "/config.yaml" > sizeof L->config_src) {
        return err_set(-ENAMETOOLONG, "--resume: %s is too long", dir);
    }
    snprintf(path, sizeof path, "%s/config.yaml", dir);
    if (access(path, R_OK) != 0) {
        return err_set(-ENOENT, "%s is not a run directory (no config.yaml)", dir);
    }
    memcpy(L->config_src, path, strlen(path) + 1);
    L->resume = true;
    const char *given[PLAN_MAX_OVERRIDES];
    int n_given = L->n_overrides;
    memcpy(given, L->overrides, sizeof given);
    L->n_overrides = 0;
    snprintf(path, sizeof path, "%s/" RUN_OVERRIDES_FILE, dir);
    FILE *f = fopen(path, "r");
    int n = 0;
    while (f && n < PLAN_MAX_OVERRIDES && fgets(L->recorded[n], sizeof L->recorded[n], f)) {
        L->recorded[n][strcspn(L->recorded[n], "\n")] = '\0';
        if (L->recorded[n][0]) {
            L->overrides[L->n_overrides++] = L->recorded[n];
            n++;
        }
    }
    if (f) {
        fclose(f);
    }
    for (int i = 0; i < n_given; i++) {
        int rc = override_put(L, given[i]);
        if (rc < 0) {
            return rc;
        }
    }
    return 0;
}

/* the keys a resumed run may change: what it does next, not what it did (TLS files: a
 * renewed certificate changes how processes talk, not what they computed) */
static bool resume_key_safe(const char *key)
{
    static const char *const safe[] = {"real_steps", "n_actors", "n_rollout", "tls_ca",
                                       "tls_cert", "tls_key", "tls_server_name"};
    for (size_t i = 0; i < sizeof safe / sizeof *safe; i++) {
        if (strcmp(key, safe[i]) == 0) {
            return true;
        }
    }
    /* where a process serves its metrics is not what it did (free ports differ per launch) */
    const char *dot = strrchr(key, '.');
    if (dot && strcmp(dot + 1, "metrics_listen") == 0) {
        return true;
    }
    return strncmp(key, "launcher.", 9) == 0;
}

/* an effective config as --print-config writes it (top-level scalars, then one level of
 * sections), one line at a time: the next "key: value" line from *pos into c->key ("name"
 * or "section.name") and c->value; a section header only sets c->section (start zeroed).
 * false at the end */
typedef struct config_line {
    char section[64];
    char key[160];
    char value[256];
} config_line;

static bool config_text_next(const char **pos, config_line *c)
{
    while (*pos && **pos) {
        const char *line = *pos;
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        *pos = end ? end + 1 : NULL;
        const char *colon = memchr(line, ':', len);
        if (!colon) {
            continue;
        }
        bool indented = line[0] == ' ';
        const char *k = line;
        while (*k == ' ') {
            k++;
        }
        const char *v = colon + 1;
        while (*v == ' ') {
            v++;
        }
        int klen = (int)(colon - k), vlen = (int)(len - (size_t)(v - line));
        if (!indented && vlen == 0) {
            snprintf(c->section, sizeof c->section, "%.*s", klen, k);
            continue;
        }
        snprintf(c->key, sizeof c->key, "%s%s%.*s", indented ? c->section : "",
                 indented ? "." : "", klen, k);
        snprintf(c->value, sizeof c->value, "%.*s", vlen, v);
        return true;
    }
    return false;
}

/* value of key in an effective config's text into out; false when absent */
static bool config_text_value(const char *text, const char *key, char *out, size_t n)
{
    config_line c = {0};
    for (const char *pos = text; config_text_next(&pos, &c);) {
        if (strcmp(c.key, key) == 0) {
            snprintf(out, n, "%s", c.value);
            return true;
        }
    }
    return false;
}

/* every key of process i's new effective config that differs from the run's recorded one
 * must be a safe one; 0 or -EINVAL naming the key, the recorded and the new value */
static int resume_check_config(const launcher_t *L, int i, const char *new_text)
{
    const char *old_text = L->old_configs[i];
    if (!old_text) {
        return 0;   /* a process this run did not have (n_actors or n_rollout grew) */
    }
    config_line c = {0};
    char before[256];
    for (const char *pos = new_text; config_text_next(&pos, &c);) {
        if (!resume_key_safe(c.key) && config_text_value(old_text, c.key, before, sizeof before) &&
            strcmp(before, c.value) != 0) {
            return err_set(-EINVAL,
                           "--resume: %s was %s in this run and would be %s; only real_steps, "
                           "n_actors, n_rollout and launcher.* may change (start a new run for "
                           "another config)",
                           c.key, before, c.value);
        }
    }
    return 0;
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        return NULL;
    }
    size_t len;
    char *text = read_all(f, &len);
    fclose(f);
    return text;
}

/* RUN/overrides.txt: the --set options in effect, for the next --resume */
static int write_overrides(const launcher_t *L)
{
    char path[PLAN_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/" RUN_OVERRIDES_FILE, L->run_dir);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    TWIG_ASSERT(f);
    for (int i = 0; i < L->n_overrides; i++) {
        fprintf(f, "%s\n", L->overrides[i]);
    }
    fclose(f);
    int rc = atomic_file_write(path, text, len);
    free(text);
    return rc;
}

static int parse_args(launcher_t *L, int argc, char **argv)
{
    config_table t[2] = {run_cfg_table(&L->run),
                         {"launcher", launcher_opts, launcher_n_opts, &L->cfg, launcher_cfg_check}};
    int rc = config_set_defaults(t, 2);
    if (rc < 0) {
        return rc;
    }
    const char *run_dir_flag = NULL, *resume_dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("%s\n\nrun options (top level) and launcher options:\n", usage);
            config_write_help(stdout, t, 2);
            return 1;
        } else if (strcmp(argv[i], "--run-dir") == 0 || strcmp(argv[i], "--set") == 0 ||
                   strcmp(argv[i], "--resume") == 0) {
            if (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0) {
                return err_set(-EINVAL, "%s needs a value (see twig run --help)", argv[i]);
            }
            if (strcmp(argv[i], "--run-dir") == 0) {
                run_dir_flag = argv[++i];
            } else if (strcmp(argv[i], "--resume") == 0) {
                resume_dir = argv[++i];
            } else if (L->n_overrides == PLAN_MAX_OVERRIDES) {
                return err_set(-E2BIG, "more than %d --set options", PLAN_MAX_OVERRIDES);
            } else {
                L->overrides[L->n_overrides++] = argv[++i];
            }
        } else if (argv[i][0] == '-') {
            return err_set(-EINVAL, "unknown option '%s' (see twig run --help)", argv[i]);
        } else if (!L->config_src[0]) {
            snprintf(L->config_src, sizeof L->config_src, "%s", argv[i]);
        } else {
            return err_set(-EINVAL, "unexpected argument '%s' (see twig run --help)", argv[i]);
        }
    }
    if (resume_dir) {
        if (L->config_src[0] || run_dir_flag) {
            return err_set(-EINVAL, "--resume takes the run's recorded config and directory: "
                                    "give neither CONFIG nor --run-dir with it");
        }
        rc = resume_load(L, resume_dir);
        if (rc < 0) {
            return rc;
        }
        run_dir_flag = resume_dir;
    }
    if (!L->config_src[0]) {
        return err_set(-EINVAL, "no CONFIG given\n%s", usage);
    }
    rc = config_load_file(t, 2, L->config_src, run_sections);
    if (rc < 0) {
        return rc;
    }
    for (int i = 0; i < L->n_overrides; i++) {
        const char *o = L->overrides[i];
        const char *eq = strchr(o, '=');
        const char *dot = strchr(o, '.');
        /* a section key (the value may hold dots too: learner_addr=127.0.0.1:7102) */
        bool other = dot && (!eq || dot < eq) && strncmp(o, "launcher.", 9) != 0;
        rc = other ? 0 : config_set_assignment(t, 2, o);   /* others: checked by each binary */
        rc = rc < 0 ? cli_err_from_set(rc, o) : rc;
        if (rc < 0) {
            return rc;
        }
    }
    if ((rc = config_check(t, 2)) < 0) {
        return rc;
    }
    if ((rc = check_env_id(L->run.env)) < 0) {
        for (int i = L->n_overrides - 1; i >= 0; i--) {
            if (strncmp(L->overrides[i], "env=", 4) == 0) {   /* the env came from --set */
                return cli_err_from_set(rc, L->overrides[i]);
            }
        }
        return rc;
    }
    if (run_dir_flag) {
        snprintf(L->run_dir, sizeof L->run_dir, "%s", run_dir_flag);
    } else if (L->cfg.run_dir[0]) {
        snprintf(L->run_dir, sizeof L->run_dir, "%s", L->cfg.run_dir);
    } else {
        char stamp[32];
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
        snprintf(L->run_dir, sizeof L->run_dir, "runs/%s-%s", L->run.env, stamp);
        for (char *p = L->run_dir + 5; *p; p++) {   /* plugin ids have '/' and ':' */
            if (*p == '/' || *p == ':') {
                *p = '_';
            }
        }
    }
    return 0;
}

/* every address the run will listen on is free now, or a refusal naming the option to change
 * (another run on the same ports would be talked to instead of ours, see deploy/launcher/ports.h) */
static int check_ports_free(const run_plan *plan)
{
    static const char *const option[] = {
        [PLAN_ROLE_MODELSERVER] = "modelserver_addr",
        [PLAN_ROLE_LEARNER] = "learner_addr",
        [PLAN_ROLE_ROLLOUT] = "launcher.rollout_base_port",
        [PLAN_ROLE_ACTOR] = "launcher.actor_base_port",
    };
    for (int i = 0; i < plan->n_procs; i++) {
        const plan_proc *p = &plan->procs[i];
        int rc = ports_check_free(p->addr);
        if (rc < 0) {
            char why[256];
            snprintf(why, sizeof why, "%s", err_msg());
            return err_set(rc, "%s cannot listen: %s; set %s to a free one", p->name, why,
                           option[p->role]);
        }
        rc = p->metrics_addr[0] ? ports_check_free(p->metrics_addr) : 0;
        if (rc < 0) {
            char why[256];
            snprintf(why, sizeof why, "%s", err_msg());
            return err_set(rc, "%s cannot serve its metrics: %s; set launcher.metrics_base_port "
                           "to a free range, 0 (free ports) or -1 (off)", p->name, why);
        }
    }
    return 0;
}

/* everything a run can be refused for, checked before anything is made or started: the
 * binaries, every process's section (of the user's file, so errors name it and its lines),
 * the run directory's env, the ports. 0, or a negative code with err_msg; *config_error tells
 * a bad config (exit 2) from a machine that cannot run it (exit 1) */
static int preflight(launcher_t *L, bool *config_error)
{
    *config_error = false;
    const char *bins[4];
    for (int role = 0; role < 4; role++) {
        int rc = find_binary(L->bin_paths[role], sizeof L->bin_paths[role], L->cfg.bin_dir,
                             (plan_role)role);
        if (rc < 0) {
            return rc;
        }
        bins[role] = L->bin_paths[role];
    }
    /* a run that started once (its overrides are written once nothing refused it) goes on
     * only with --resume */
    char started[PLAN_PATH_MAX + 32], metrics[PLAN_PATH_MAX + 32];
    snprintf(started, sizeof started, "%s/" RUN_OVERRIDES_FILE, L->run_dir);
    snprintf(metrics, sizeof metrics, "%s/metrics.csv", L->run_dir);
    if (!L->resume && (access(started, F_OK) == 0 || access(metrics, F_OK) == 0)) {
        *config_error = true;
        return err_set(-EEXIST,
                       "%s already holds a run; continue it with: twig run --resume %s "
                       "(or give another --run-dir)",
                       L->run_dir, L->run_dir);
    }
    L->plan = xcalloc(1, sizeof *L->plan);
    int rc = 0;
    if (L->cfg.metrics_base_port == 0 && plan_n_procs(&L->run) <= PLAN_MAX_PROCS) {
        rc = ports_pick_free(L->cfg.host, L->metrics_ports, plan_n_procs(&L->run));
    }
    rc = rc < 0 ? rc : plan_build(L->plan, &L->run, &L->cfg, L->run_dir, L->config_src,
                                  L->overrides, L->n_overrides, bins, L->metrics_ports);
    for (int i = 0; rc == 0 && i < L->plan->n_procs; i++) {
        rc = check_process_config(L, i, &L->plan->procs[i]);
        if (rc == 0 && L->resume) {
            /* each process's config as this run recorded it: only safe keys may differ */
            char path[PLAN_PATH_MAX + 64];
            snprintf(path, sizeof path, "%s/%s.config.yaml", L->run_dir,
                     L->plan->procs[i].name);
            L->old_configs[i] = read_text(path);
            rc = resume_check_config(L, i, L->effective[i]);
        }
    }
    rc = rc < 0 ? rc : check_run_dir(L);
    /* the launcher dials every process (monitor, health watch): its TLS files first */
    rpc_tls tls = rpc_tls_of_run(&L->run);
    rc = rc < 0 ? rc : rpc_tls_check(&tls);
    if (rc < 0) {
        *config_error = true;   /* the config, not the machine */
        return rc;
    }
    return check_ports_free(L->plan);
}

/* RUN/metrics_targets.json: where each process serves GET /metrics, in Prometheus's file_sd
 * format (a scrape config's file_sd_configs can read it as is), and one log line each. A
 * process whose --set overrides moved its metrics is listed where the plan put it */
static void write_metrics_targets(const launcher_t *L)
{
    char *json = xmalloc(METRICS_TARGETS_MAX);
    size_t n = 0;
    n += (size_t)snprintf(json + n, METRICS_TARGETS_MAX - n, "[\n");
    int listed = 0;
    for (int i = 0; i < L->plan->n_procs; i++) {
        const plan_proc *p = &L->plan->procs[i];
        if (!p->metrics_addr[0]) {
            continue;
        }
        log_info("event=metrics proc=%s url=http://%s/metrics", p->name, p->metrics_addr);
        n += (size_t)snprintf(json + n, METRICS_TARGETS_MAX - n,
                              "%s  {\"targets\": [\"%s\"], \"labels\": {\"twig_proc\": \"%s\", "
                              "\"twig_role\": \"%s\"}}",
                              listed ? ",\n" : "", p->metrics_addr, p->name,
                              plan_binary_name(p->role) + 5);
        listed++;
    }
    n += (size_t)snprintf(json + n, METRICS_TARGETS_MAX - n, "\n]\n");
    char path[PLAN_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/metrics_targets.json", L->run_dir);
    if (listed && atomic_file_write(path, json, n) < 0) {
        log_warn("event=metrics_targets_failed path=%s detail=\"%s\"", path, err_msg());
    }
    free(json);
}

static int launch(launcher_t *L)
{
    int rc = fs_mkdir_p(L->run_dir);
    if (rc < 0) {
        return rc;
    }
    /* the launcher's own events, in full, beside its terse stderr */
    char log_path[PLAN_PATH_MAX + 16];
    snprintf(log_path, sizeof log_path, "%s/twig.log", L->run_dir);
    L->log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (L->log_fd < 0) {
        return err_set(-errno, "%s: %s", log_path, strerror(errno));
    }
    /* from here on each event is one line in twig.log, and stderr has the short human line
     * of those the user must see (a crash, a restart, a hang, the failure), not both */
    log_init("twig", LOG_LEVEL_OFF);
    log_add_file(L->log_fd, LOG_LEVEL_INFO);
    snprintf(L->config_path, sizeof L->config_path, "%s/config.yaml", L->run_dir);
    rc = L->resume ? 0 : write_run_config(L);   /* resume: as recorded */
    if (rc < 0) {
        return rc;
    }
    for (int i = 0; i < L->plan->n_procs; i++) {
        char path[PLAN_PATH_MAX + 64];
        snprintf(path, sizeof path, "%s/%s.config.yaml", L->run_dir, L->plan->procs[i].name);
        if (atomic_file_write(path, L->effective[i], L->effective_len[i]) < 0) {
            log_warn("event=config_copy_failed path=%s detail=\"%s\"", path, err_msg());
        }
    }
    /* from now on the processes read the run directory's copy of the config */
    const char *bins[4] = {L->bin_paths[0], L->bin_paths[1], L->bin_paths[2], L->bin_paths[3]};
    rc = plan_build(L->plan, &L->run, &L->cfg, L->run_dir, L->config_path, L->overrides,
                    L->n_overrides, bins, L->metrics_ports);
    if (rc < 0) {
        return rc;
    }
    write_metrics_targets(L);
    rc = write_overrides(L);
    if (rc < 0) {
        return rc;
    }
    printf("twig: %s, %llu real steps, %d actor(s), %d rollout worker(s), pacing %s\n",
           L->run.env, (unsigned long long)L->run.real_steps, L->run.n_actors, L->run.n_rollout,
           L->run.pacing == RUN_PACING_STRICT ? "strict" : "async");
    printf("twig: run directory %s%s\n", L->run_dir, L->resume ? " (resumed)" : "");
    if (L->plan->n_procs > 0 && L->plan->procs[0].metrics_addr[0]) {
        printf("twig: Prometheus metrics of each process: %s/metrics_targets.json "
               "(docs/metrics.md)\n", L->run_dir);
    }
    fflush(stdout);

    uv_loop_init(&L->loop);
    uv_async_init(&L->loop, &L->wake, on_wake);
    L->wake.data = L;
    uv_signal_init(&L->loop, &L->sigint);
    uv_signal_init(&L->loop, &L->sigterm);
    L->sigint.data = L->sigterm.data = L;
    uv_signal_start(&L->sigint, on_signal, SIGINT);
    uv_signal_start(&L->sigterm, on_signal, SIGTERM);
    supervise_cfg scfg = {.backoff_base_ms = (uint64_t)L->cfg.restart_base_ms,
                          .backoff_max_ms = (uint64_t)L->cfg.restart_max_ms,
                          .stable_ms = (uint64_t)L->cfg.restart_stable_ms,
                          .grace_ms = (uint64_t)L->cfg.stop_grace_ms,
                          .max_restarts = L->cfg.max_restarts,
                          .restart_window_ms = (uint64_t)L->cfg.restart_window_ms,
                          .fatal_status = TWIG_RUN_EXIT_CONFIG};
    supervise_init(&L->sup, &L->loop, &scfg);
    L->sup.on_exit = on_proc_exit;
    L->sup.on_start = on_proc_start;
    L->sup.data = L;
    for (int i = 0; i < L->plan->n_procs && rc == 0; i++) {
        const plan_proc *p = &L->plan->procs[i];
        int index = supervise_add(&L->sup, p->name, p->argv, p->log_path);
        rc = index < 0 ? index : 0;   /* an index, not 0: the loop used to stop after two */
    }
    monitor_cfg mc;
    monitor_cfg_from_plan(&mc, &L->run, &L->cfg, L->plan, L->run_dir);
    rc = rc < 0 ? rc : monitor_init(&L->mon, &mc, wake_from_monitor, L);
    healthwatch_cfg hcfg = {.every_ms = L->cfg.health_every_ms, .hang_ms = L->cfg.hang_ms,
                            .startup_ms = L->cfg.startup_timeout_ms,
                            .tls = rpc_tls_of_run(&L->run)};
    healthwatch_init(&L->hw, &hcfg, L->plan, on_hung, on_ready, L);
    rc = rc < 0 ? rc : supervise_start(&L->sup);
    rc = rc < 0 ? rc : monitor_start(&L->mon);
    if (rc == 0 && (rc = healthwatch_start(&L->hw)) < 0) {
        rc = err_set(rc, "cannot start the health watch: %s", uv_strerror(rc));
    }
    if (rc < 0) {
        /* stop whatever started; the loop then ends */
        char reason[sizeof L->mon.failure];
        snprintf(reason, sizeof reason, "%s", err_msg());
        launcher_stop(L, 1, reason);
    }
    uv_run(&L->loop, UV_RUN_DEFAULT);
    monitor_stop(&L->mon);
    healthwatch_stop(&L->hw);
    uv_close((uv_handle_t *)&L->wake, NULL);
    uv_run(&L->loop, UV_RUN_DEFAULT);   /* the close callback */
    if (L->exit_code == 0) {
        L->plotted = report_plot(L->run_dir, L->run.env);
    }
    print_summary(L);
    monitor_free(&L->mon);
    healthwatch_free(&L->hw);
    supervise_free(&L->sup);
    if (uv_loop_close(&L->loop) != 0) {
        log_error("event=loop_not_closed detail=\"a handle is still open\"");
    }
    return 0;   /* from here on, failures were reported by launcher_stop: see exit_code */
}

int twig_cmd_run(int argc, char **argv)
{
    log_init("twig", LOG_LEVEL_WARN);
    launcher_t *L = xcalloc(1, sizeof *L);
    L->log_fd = -1;
    int rc = parse_args(L, argc, argv);
    if (rc == 1) {
        free(L);
        return 0;
    }
    if (rc < 0) {
        fprintf(stderr, "twig run: %s\n", err_msg());
        free(L);
        return TWIG_RUN_EXIT_CONFIG;
    }
    rpc_lib_init();
    bool config_error = false;
    rc = preflight(L, &config_error);
    if (rc < 0) {
        L->exit_code = config_error ? TWIG_RUN_EXIT_CONFIG : 1;
    } else {
        rc = launch(L);
    }
    if (rc < 0) {
        fprintf(stderr, "twig run: %s\n", err_msg());
    }
    int code = rc < 0 && L->exit_code == 0 ? 1 : L->exit_code;
    if (L->log_fd >= 0) {
        log_add_file(-1, LOG_LEVEL_INFO);
        close(L->log_fd);
    }
    for (int i = 0; i < PLAN_MAX_PROCS; i++) {
        free(L->effective[i]);
        free(L->old_configs[i]);
    }
    free(L->plan);
    free(L);
    rpc_lib_shutdown(2000);
    return code;
}
