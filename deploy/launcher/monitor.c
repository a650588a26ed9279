/* monitor.c - health at start-up, periodic progress, metrics and the end of the run */
#include "deploy/launcher/monitor.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "common/base/atomic_file.h"
#include "common/base/clock.h"
#include "common/base/err.h"
#include "common/base/log.h"
#include "common/rpc/tls_run.h"
#include "proto/twig.pb-c.h"

#define MONITOR_CALL_DEADLINE_MS 2000
#define MONITOR_HEALTH_PROBE_MS 1000
#define MONITOR_HEALTH_POLL_MS 50   /* at least this long between two probes of one process */

const char monitor_metrics_header[] =
    "real_steps,wall_s,eval_return_mean,eval_return_std,updates,synthetic_samples,"
    "policy_version,model_version,eval_policy_version,achieved_utd,model_holdout_loss\n";

static void set_state(monitor_t *m, monitor_state s)
{
    atomic_store(&m->state, (int)s);
    m->wake(m->wake_data);
}

double monitor_rate_per_s(uint64_t now, uint64_t before, double dt_s)
{
    if (now < before || !(dt_s > 0)) {
        return 0.0;   /* unsigned now - before would wrap to ~1.8e19 */
    }
    return (double)(now - before) / dt_s;
}

void monitor_write_metrics_row(FILE *f, const monitor_snapshot *s)
{
    fprintf(f, "%llu,%.3f,%.4f,%.4f,%llu,%llu,%llu,%llu,%llu,%.3f,%.6g\n",
            (unsigned long long)s->eval_real_steps, s->wall_s, (double)s->eval_return_mean,
            (double)s->eval_return_std, (unsigned long long)s->updates,
            (unsigned long long)s->synthetic_samples, (unsigned long long)s->policy_version,
            (unsigned long long)s->model_version, (unsigned long long)s->eval_policy_version,
            (double)s->achieved_utd, s->model_holdout_loss);
    fflush(f);
}

int monitor_read_metrics(const char *path, monitor_snapshot *last, int *rows)
{
    *rows = 0;
    FILE *f = fopen(path, "r+");
    if (!f) {
        return errno == ENOENT ? 0 : err_set(-errno, "%s: %s", path, strerror(errno));
    }
    /* the rows are whole lines; a line cut by a kill mid-write is dropped */
    char line[1024];
    long end_of_whole = 0;
    bool header = true;
    while (fgets(line, sizeof line, f)) {
        size_t n = strlen(line);
        if (n == 0 || line[n - 1] != '\n') {
            break;
        }
        end_of_whole = ftell(f);
        if (header) {
            header = false;
            continue;
        }
        (*rows)++;
        /* real_steps,wall_s,eval_return_mean,eval_return_std,... */
        char *p = line;
        last->eval_real_steps = strtoull(p, &p, 10);
        strtod(p + (*p == ','), &p);
        last->eval_return_mean = strtof(p + (*p == ','), &p);
        last->eval_return_std = strtof(p + (*p == ','), &p);
    }
    fseek(f, 0, SEEK_END);
    if (ftell(f) != end_of_whole) {
        log_warn("event=metrics_partial_row_dropped path=%s at=%ld", path, end_of_whole);
        if (ftruncate(fileno(f), end_of_whole) < 0) {
            int e = errno;
            fclose(f);
            return err_set(-e, "%s: %s", path, strerror(e));
        }
    }
    fclose(f);
    return 0;
}

double monitor_read_elapsed(const char *path)
{
    double s = 0;
    FILE *f = fopen(path, "r");
    if (f) {
        if (fscanf(f, "%lf", &s) != 1 || !(s >= 0) || !isfinite(s)) {
            s = 0;
        }
        fclose(f);
    }
    return s;
}

void monitor_cfg_from_plan(monitor_cfg *cfg, const run_cfg *run, const launcher_cfg *launcher,
                           const run_plan *plan, const char *run_dir)
{
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->learner_addr, sizeof cfg->learner_addr, "%s", run->learner_addr);
    snprintf(cfg->modelserver_addr, sizeof cfg->modelserver_addr, "%s", run->modelserver_addr);
    for (int i = 0; i < plan->n_procs && i < MONITOR_MAX_PEERS; i++) {
        snprintf(cfg->peers[i].name, sizeof cfg->peers[i].name, "%s", plan->procs[i].name);
        snprintf(cfg->peers[i].addr, sizeof cfg->peers[i].addr, "%s", plan->procs[i].addr);
        cfg->n_peers++;
    }
    snprintf(cfg->out_dir, sizeof cfg->out_dir, "%s", run_dir);
    rpc_tls_paths_of_run(&cfg->tls, run);
    cfg->startup_timeout_ms = launcher->startup_timeout_ms;
    cfg->final_eval_timeout_ms = launcher->final_eval_timeout_ms;
    cfg->progress_interval_ms = launcher->progress_interval_ms;
    /* the updates strict pacing allows for the whole budget (learner/pace.c counts the same) */
    uint64_t past = run->real_steps > run->init_steps ? run->real_steps - run->init_steps : 0;
    cfg->run = (monitor_run){.known = true, .budget = run->real_steps,
                             .updates_budget = run->pacing == RUN_PACING_STRICT
                                                   ? run_utd_credit(run->utd, past)
                                                   : 0};
    snprintf(cfg->run.env, sizeof cfg->run.env, "%s", run->env);
}

int monitor_init(monitor_t *m, const monitor_cfg *cfg, void (*wake)(void *), void *data)
{
    memset(m, 0, sizeof *m);
    stop_flag_init(&m->stop);
    m->cfg = *cfg;
    m->run = cfg->run;
    if (m->cfg.n_peers == 0) {   /* by address: the two it polls */
        m->cfg.peers[0] = (monitor_peer){.name = "learner"};
        m->cfg.peers[1] = (monitor_peer){.name = "modelserver"};
        snprintf(m->cfg.peers[0].addr, sizeof m->cfg.peers[0].addr, "%s", cfg->learner_addr);
        snprintf(m->cfg.peers[1].addr, sizeof m->cfg.peers[1].addr, "%s", cfg->modelserver_addr);
        m->cfg.n_peers = 2;
    }
    m->wake = wake;
    m->wake_data = data;
    m->tty = isatty(STDOUT_FILENO);
    m->last.model_holdout_loss = NAN;
    m->last.eval_return_mean = NAN;
    m->last.eval_return_std = NAN;
    const char *dir = m->cfg.out_dir;
    char path[PLAN_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/metrics.csv", dir);
    int rc = monitor_read_metrics(path, &m->last, &m->resumed_rows);
    if (rc < 0) {
        return rc;
    }
    m->metrics = fopen(path, "a");   /* rows already written stay as they are */
    if (!m->metrics) {
        int e = errno;
        return err_set(-e, "%s: %s", path, strerror(e));
    }
    if (ftell(m->metrics) == 0) {
        fputs(monitor_metrics_header, m->metrics);
        fflush(m->metrics);
    }
    if (m->resumed_rows > 0) {
        /* a resumed run: the learner's evaluations are read from the start and only those
         * past the last row written are added (as after a learner that lost some) */
        m->evals_resync = true;
    }
    snprintf(m->elapsed_path, sizeof m->elapsed_path, "%s/" MONITOR_ELAPSED_FILE, dir);
    m->elapsed_before_s = monitor_read_elapsed(m->elapsed_path);
    m->last.wall_s = m->elapsed_before_s;
    rc = tfevents_open(&m->tf, dir);
    if (rc < 0) {
        return rc;
    }
    rpc_tls tls = rpc_tls_of_paths(&m->cfg.tls);
    rpc_client_cfg cc = {.tls = &tls};
    rc = rpc_client_init(&m->learner, m->cfg.learner_addr, &cc);
    return rc < 0 ? rc : rpc_client_init(&m->modelserver, m->cfg.modelserver_addr, &cc);
}

/* every peer is live (docs/design.md, Health) within the start-up timeout */
static int wait_healthy(monitor_t *m)
{
    uint64_t deadline = clock_now_ms() + (uint64_t)m->cfg.startup_timeout_ms;
    rpc_tls tls = rpc_tls_of_paths(&m->cfg.tls);
    rpc_client_cfg cc = {.tls = &tls};
    for (int i = 0; i < m->cfg.n_peers; i++) {
        const monitor_peer *p = &m->cfg.peers[i];
        for (;;) {
            if (stop_flag_raised(&m->stop)) {
                return TWIG_ECANCELLED;
            }
            uint64_t probe_start = clock_now_ms();
            int rc = rpc_health_check_cfg(p->addr, &cc, RPC_HEALTH_LIVENESS,
                                          MONITOR_HEALTH_PROBE_MS);
            if (rc == RPC_HEALTH_SERVING) {
                log_info("event=monitor_sees_live proc=%s addr=%s", p->name, p->addr);
                break;
            }
            if (clock_now_ms() >= deadline) {
                snprintf(m->failure, sizeof m->failure, "%s at %s not live after %d ms: %s",
                         p->name, p->addr, m->cfg.startup_timeout_ms,
                         rc < 0 ? err_msg() : "NOT_SERVING");
                return TWIG_EDEADLINE;
            }
            /* a refused connection fails in well under a millisecond: pause before the next
             * probe whatever the answer, or start-up becomes a busy loop of new channels */
            uint64_t took = clock_now_ms() - probe_start;
            if (took < MONITOR_HEALTH_POLL_MS) {
                stop_flag_wait_ms(&m->stop, MONITOR_HEALTH_POLL_MS - took);
            }
        }
    }
    return 0;
}

static const rpc_call_opts poll_opts = {.deadline_ms = MONITOR_CALL_DEADLINE_MS,
                                        .idempotent = true};

/* the newest counters; a peer that does not answer leaves its fields as they were */
static void poll_counters(monitor_t *m, monitor_snapshot *s)
{
    ProtobufCMessage *reply = NULL;
    Twig__V1__ProgressRequest pq = TWIG__V1__PROGRESS_REQUEST__INIT;
    if (rpc_client_unary(m->learner, &reply, "/twig.v1.Learner/GetProgress", &pq.base,
                         &twig__v1__progress__descriptor, &poll_opts) == 0) {
        const Twig__V1__Progress *p = (const Twig__V1__Progress *)reply;
        s->updates = p->updates;
        s->synthetic_samples = p->synthetic_samples;
        s->policy_version = p->policy_version;
        s->model_version = p->model_version > s->model_version ? p->model_version
                                                                : s->model_version;
        s->achieved_utd = p->achieved_utd;
        if (!m->run.known && p->real_steps_budget > 0) {
            m->run.known = true;
            m->run.budget = p->real_steps_budget;
            m->run.updates_budget = p->strict_pacing ? p->updates_budget : 0;
            snprintf(m->run.env, sizeof m->run.env, "%s", p->env_id ? p->env_id : "");
            log_info("event=monitor_run env=%s real_steps=%llu updates_budget=%llu", m->run.env,
                     (unsigned long long)m->run.budget,
                     (unsigned long long)m->run.updates_budget);
        }
        protobuf_c_message_free_unpacked(reply, NULL);
    }
    Twig__V1__LogStatusRequest lq = TWIG__V1__LOG_STATUS_REQUEST__INIT;
    if (rpc_client_unary(m->modelserver, &reply, "/twig.v1.ModelServer/LogStatus", &lq.base,
                         &twig__v1__log_status_reply__descriptor, &poll_opts) == 0) {
        s->real_steps = ((const Twig__V1__LogStatusReply *)reply)->end_offset;
        protobuf_c_message_free_unpacked(reply, NULL);
    }
    Twig__V1__StatsRequest sq = TWIG__V1__STATS_REQUEST__INIT;
    if (rpc_client_unary(m->modelserver, &reply, "/twig.v1.Stats/GetStats", &sq.base,
                         &twig__v1__stats_reply__descriptor, &poll_opts) == 0) {
        const Twig__V1__StatsReply *st = (const Twig__V1__StatsReply *)reply;
        for (size_t i = 0; i < st->n_values; i++) {
            if (strcmp(st->values[i]->key, "model_holdout_loss") == 0) {
                s->model_holdout_loss = st->values[i]->value;
            } else if (strcmp(st->values[i]->key, "model_version") == 0 &&
                       st->values[i]->value > (double)s->model_version) {
                s->model_version = (uint64_t)st->values[i]->value;
            }
        }
        protobuf_c_message_free_unpacked(reply, NULL);
    }
}

static void write_scalars(monitor_t *m, const monitor_snapshot *s)
{
    int64_t step = (int64_t)s->real_steps;
    double wall = tfevents_wall_now();
    tfevents_write_scalar(&m->tf, "progress/updates", step, wall, (float)s->updates);
    if (s->have_rates) {
        tfevents_write_scalar(&m->tf, "rate/updates_per_s", step, wall, (float)s->updates_per_s);
        tfevents_write_scalar(&m->tf, "rate/synthetic_per_s", step, wall,
                              (float)s->synthetic_per_s);
        tfevents_write_scalar(&m->tf, "rate/real_per_s", step, wall, (float)s->real_per_s);
    }
    tfevents_write_scalar(&m->tf, "progress/achieved_utd", step, wall, s->achieved_utd);
    if (!isnan(s->model_holdout_loss)) {
        tfevents_write_scalar(&m->tf, "model/holdout_loss", step, wall,
                              (float)s->model_holdout_loss);
    }
}

/* new evaluations since the last poll: metrics rows, event scalars, log lines.
 * A learner restarted from a checkpoint older than its last evaluations holds fewer than we
 * have read and refuses our from_index (INVALID_ARGUMENT): then read its list again from the
 * start, writing only what lies beyond the last evaluation already written */
static void poll_evals(monitor_t *m, monitor_snapshot *s)
{
    Twig__V1__GetEvalsRequest q = TWIG__V1__GET_EVALS_REQUEST__INIT;
    q.from_index = (uint32_t)s->evals;
    ProtobufCMessage *reply = NULL;
    int rc = rpc_client_unary(m->learner, &reply, "/twig.v1.Learner/GetEvals", &q.base,
                              &twig__v1__get_evals_reply__descriptor, &poll_opts);
    if (rc == -EINVAL && s->evals > 0) {
        log_warn("event=evals_lost seen=%d detail=\"%s\"", s->evals, err_msg());
        s->evals = 0;
        m->evals_resync = true;
        return;
    }
    if (rc != 0) {
        return;
    }
    const Twig__V1__GetEvalsReply *r = (const Twig__V1__GetEvalsReply *)reply;
    double wall = tfevents_wall_now();
    for (size_t i = 0; i < r->n_evals; i++) {
        const Twig__V1__EvalResult *e = r->evals[i];
        s->evals++;
        /* written before the learner lost it. An evaluation is named by its point (seq: a
         * multiple of eval_every, or init_steps) and may have started some steps past it
         * (real_steps); an actor repeats the newest point after a restart, later than the
         * first time, so the point decides, not the step it ran at */
        uint64_t point = e->seq > 0 && e->seq <= e->real_steps ? e->seq : e->real_steps;
        if (m->evals_resync && point <= s->eval_real_steps) {
            continue;
        }
        m->evals_resync = false;
        s->eval_return_mean = e->return_mean;
        s->eval_return_std = e->return_std;
        s->eval_real_steps = e->real_steps;
        s->eval_policy_version = e->policy_version;
        monitor_write_metrics_row(m->metrics, s);
        tfevents_write_scalar(&m->tf, "eval/return_mean", (int64_t)e->real_steps, wall,
                              e->return_mean);
        tfevents_write_scalar(&m->tf, "eval/return_std", (int64_t)e->real_steps, wall,
                              e->return_std);
        log_info("event=eval real_steps=%llu return_mean=%.2f return_std=%.2f episodes=%u "
                 "policy_version=%llu",
                 (unsigned long long)e->real_steps, (double)e->return_mean,
                 (double)e->return_std, e->episodes, (unsigned long long)e->policy_version);
    }
    protobuf_c_message_free_unpacked(reply, NULL);
}

void monitor_eta_add(monitor_eta *e, uint64_t t_ms, uint64_t real_steps)
{
    if (e->n > 0) {
        int last = (e->head + MONITOR_ETA_SAMPLES - 1) % MONITOR_ETA_SAMPLES;
        if (t_ms < e->t_ms[last] + MONITOR_ETA_SAMPLE_MS) {
            return;
        }
    }
    e->t_ms[e->head] = t_ms;
    e->real_steps[e->head] = real_steps;
    e->head = (e->head + 1) % MONITOR_ETA_SAMPLES;
    if (e->n < MONITOR_ETA_SAMPLES) {
        e->n++;
    }
}

double monitor_eta_rate(const monitor_eta *e)
{
    if (e->n < 2) {
        return 0.0;
    }
    int newest = (e->head + MONITOR_ETA_SAMPLES - 1) % MONITOR_ETA_SAMPLES;
    int from = (e->head + MONITOR_ETA_SAMPLES - e->n) % MONITOR_ETA_SAMPLES;   /* the oldest */
    /* walk from the newest back to the first sample a whole window old */
    for (int k = 1; k < e->n; k++) {
        int i = (newest + MONITOR_ETA_SAMPLES - k) % MONITOR_ETA_SAMPLES;
        if (e->t_ms[newest] - e->t_ms[i] >= MONITOR_ETA_WINDOW_MS) {
            from = i;
            break;
        }
    }
    return monitor_rate_per_s(e->real_steps[newest], e->real_steps[from],
                              (double)(e->t_ms[newest] - e->t_ms[from]) / 1000.0);
}

int monitor_term_width(int fd)
{
    struct winsize ws;
    if (isatty(fd) && ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) {
        return ws.ws_col;
    }
    const char *cols = getenv("COLUMNS");
    int c = cols ? atoi(cols) : 0;
    return c > 0 ? c : 80;
}

/* "42s", "3m07s", "2h05m" */
static void format_duration(char *out, size_t n, double sec)
{
    long s = (long)sec;
    if (s < 60) {
        snprintf(out, n, "%lds", s);
    } else if (s < 3600) {
        snprintf(out, n, "%ldm%02lds", s / 60, s % 60);
    } else {
        snprintf(out, n, "%ldh%02ldm", s / 3600, (s / 60) % 60);
    }
}

/* the fields of the progress line, most important first */
enum {
    PROGRESS_REAL,
    PROGRESS_ELAPSED,
    PROGRESS_ETA,
    PROGRESS_EVAL,
    PROGRESS_EVAL_STEP,   /* appended to PROGRESS_EVAL */
    PROGRESS_UPD,
    PROGRESS_SYNTH,
    PROGRESS_LOSS,
    PROGRESS_VERSIONS,
    PROGRESS_N_FIELDS,
};
#define PROGRESS_ALWAYS 3   /* real steps, elapsed and ETA are never left out */

/* the line with the first `keep` fields */
static size_t progress_join(char *out, size_t n, char field[][48], int keep)
{
    size_t len = 0;
    out[0] = '\0';
    for (int i = 0; i < keep && i < PROGRESS_N_FIELDS; i++) {
        if (!field[i][0]) {
            continue;
        }
        const char *sep = i == 0 ? "" : i == PROGRESS_EVAL_STEP ? " " : " | ";
        int w = snprintf(out + len, len < n ? n - len : 0, "%s%s", sep, field[i]);
        len += w > 0 ? (size_t)w : 0;
    }
    return len < n ? len : n - 1;
}

size_t monitor_format_progress(char *out, size_t n, const monitor_snapshot *s, uint64_t budget,
                               double eta_rate, int width)
{
    char field[PROGRESS_N_FIELDS][48] = {{0}};
    snprintf(field[PROGRESS_REAL], 48, "real %llu/%llu", (unsigned long long)s->real_steps,
             (unsigned long long)budget);
    char d[24];
    format_duration(d, sizeof d, s->wall_s);
    snprintf(field[PROGRESS_ELAPSED], 48, "%s", d);
    double left = (double)budget - (double)s->real_steps;
    if (left <= 0) {
        snprintf(field[PROGRESS_ETA], 48, "ETA final eval");
    } else if (eta_rate > 0 && left / eta_rate < 1e8) {
        format_duration(d, sizeof d, left / eta_rate);
        snprintf(field[PROGRESS_ETA], 48, "ETA %s", d);
    } else {
        snprintf(field[PROGRESS_ETA], 48, "ETA ?");
    }
    if (s->evals > 0) {
        snprintf(field[PROGRESS_EVAL], 48, "eval %.1f", (double)s->eval_return_mean);
        snprintf(field[PROGRESS_EVAL_STEP], 48, "@%llu", (unsigned long long)s->eval_real_steps);
    } else {
        snprintf(field[PROGRESS_EVAL], 48, "eval -");
    }
    snprintf(field[PROGRESS_UPD], 48, "upd/s %.0f", s->updates_per_s);
    snprintf(field[PROGRESS_SYNTH], 48, "synth/s %.0f", s->synthetic_per_s);
    if (!isnan(s->model_holdout_loss)) {
        snprintf(field[PROGRESS_LOSS], 48, "model loss %.4g", s->model_holdout_loss);
    } else {
        snprintf(field[PROGRESS_LOSS], 48, "model loss -");
    }
    snprintf(field[PROGRESS_VERSIONS], 48, "policy v%llu model v%llu",
             (unsigned long long)s->policy_version, (unsigned long long)s->model_version);
    /* the last column stays empty: a character there wraps the line on some terminals */
    int keep = PROGRESS_N_FIELDS;
    size_t len = progress_join(out, n, field, keep);
    while (width > 0 && len > (size_t)(width - 1) && keep > PROGRESS_ALWAYS) {
        len = progress_join(out, n, field, --keep);
    }
    if (width > 0 && len > (size_t)(width - 1)) {
        len = width > 1 ? (size_t)(width - 1) : 0;   /* a very narrow terminal: cut */
        if (len < n) {
            out[len] = '\0';
        }
    }
    return len;
}

static void print_progress(monitor_t *m, const monitor_snapshot *s)
{
    char line[512];
    /* a terminal gets one line rewritten in place, cut to its width; a file every line */
    int width = m->tty ? monitor_term_width(STDOUT_FILENO) : 0;
    monitor_format_progress(line, sizeof line, s, m->run.budget, monitor_eta_rate(&m->eta),
                            width);
    printf("%s%s%s", m->tty ? "\r\033[K" : "", line, m->tty ? "" : "\n");
    fflush(stdout);
}

/* RUN/elapsed_s: the run's wall time over all its launches, for the next --resume */
static void monitor_write_elapsed(monitor_t *m, double wall_s)
{
    char text[64];
    int n = snprintf(text, sizeof text, "%.3f\n", wall_s);
    if (atomic_file_write(m->elapsed_path, text, (size_t)n) < 0) {
        log_warn("event=elapsed_file_failed path=%s detail=\"%s\"", m->elapsed_path, err_msg());
    }
}

/* the run's end as the monitor sees it at t: true once the state is DONE or FAILED */
static bool monitor_check_end(monitor_t *m, const monitor_snapshot *s, uint64_t t)
{
    if (s->real_steps >= m->run.budget && m->budget_reached_ms == 0) {
        m->budget_reached_ms = t;
        log_info("event=budget_reached real_steps=%llu", (unsigned long long)s->real_steps);
    }
    /* done: the final evaluation is in and, under strict pacing, the learner has made every
     * update the budget allows (so a run, resumed or not, ends with exact counts) */
    bool final_eval = s->evals > 0 && s->eval_real_steps >= m->run.budget;
    bool updates_done = s->updates >= m->run.updates_budget;
    if (final_eval && updates_done) {
        if (m->tty) {
            putchar('\n');
        }
        set_state(m, MONITOR_DONE);
        return true;
    }
    if (!m->budget_reached_ms || t - m->budget_reached_ms <= (uint64_t)m->cfg.final_eval_timeout_ms) {
        return false;
    }
    if (!final_eval) {
        snprintf(m->failure, sizeof m->failure,
                 "no final evaluation within %d ms of reaching the budget",
                 m->cfg.final_eval_timeout_ms);
    } else {
        snprintf(m->failure, sizeof m->failure,
                 "the learner made %llu of its %llu updates within %d ms of reaching the budget",
                 (unsigned long long)s->updates, (unsigned long long)m->run.updates_budget,
                 m->cfg.final_eval_timeout_ms);
    }
    set_state(m, MONITOR_FAILED);
    return true;
}

static void monitor_main(void *arg)
{
    monitor_t *m = arg;
    m->started_ms = clock_now_ms();
    if (wait_healthy(m) < 0) {
        if (!stop_flag_raised(&m->stop)) {
            set_state(m, MONITOR_FAILED);
        }
        return;
    }
    set_state(m, MONITOR_RUNNING);
    monitor_snapshot s = m->last;
    /* no poll yet: the first one gives no rate (after a resume too: the counters then hold
     * the earlier launches' work, and a rate from them would be a spike) */
    uint64_t prev_ms = 0;
    monitor_snapshot prev = s;
    int ticks = 0;
    while (!stop_flag_raised(&m->stop)) {
        poll_counters(m, &s);
        s.wall_s = m->elapsed_before_s + (double)(clock_now_ms() - m->started_ms) / 1000.0;
        poll_evals(m, &s);
        uint64_t t = clock_now_ms();
        /* a rate over the few milliseconds since start-up would count the whole random phase
         * as one interval (90000 steps/s): rates start from the second poll */
        double dt = prev_ms ? (double)(t - prev_ms) / 1000.0 : 0.0;
        s.have_rates = dt > 0;
        if (s.have_rates) {
            s.updates_per_s = monitor_rate_per_s(s.updates, prev.updates, dt);
            s.synthetic_per_s = monitor_rate_per_s(s.synthetic_samples, prev.synthetic_samples,
                                                   dt);
            s.real_per_s = monitor_rate_per_s(s.real_steps, prev.real_steps, dt);
        }
        s.wall_s = m->elapsed_before_s + (double)(t - m->started_ms) / 1000.0;
        monitor_eta_add(&m->eta, t, s.real_steps);
        monitor_write_elapsed(m, s.wall_s);
        prev = s;
        prev_ms = t;
        m->last = s;
        write_scalars(m, &s);
        /* a line at each tick on a terminal; every 10th tick in a log */
        if (m->tty || ticks % 10 == 0) {
            print_progress(m, &s);
        }
        ticks++;
        /* the end is judged once the learner has said what the run is */
        if (m->run.known && monitor_check_end(m, &s, t)) {
            return;
        }
        /* sleep the rest of the interval; a stop ends it at once */
        uint64_t until = t + (uint64_t)m->cfg.progress_interval_ms, now = clock_now_ms();
        if (now < until) {
            stop_flag_wait_ms(&m->stop, until - now);
        }
    }
}

int monitor_start(monitor_t *m)
{
    int rc = uv_thread_create(&m->thread, monitor_main, m);
    if (rc < 0) {
        return err_set(rc, "cannot start the monitor thread: %s", uv_strerror(rc));
    }
    m->thread_started = true;
    return 0;
}

void monitor_stop(monitor_t *m)
{
    stop_flag_raise(&m->stop);
    if (m->thread_started) {
        uv_thread_join(&m->thread);
        m->thread_started = false;
    }
}

void monitor_free(monitor_t *m)
{
    monitor_stop(m);
    rpc_client_free(m->learner);
    rpc_client_free(m->modelserver);
    m->learner = m->modelserver = NULL;
    if (m->metrics) {
        fclose(m->metrics);
        m->metrics = NULL;
    }
    tfevents_close(&m->tf);
    stop_flag_destroy(&m->stop);
}
