/* run_plan.c - command lines of a run's processes */
#include "deploy/launcher/run_plan.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/err.h"
#include "deploy/launcher/supervise.h"

#define L(field) offsetof(launcher_cfg, field)
const config_opt launcher_opts[] = {
    {"run_dir", CFG_STRING, L(run_dir), "", 0, PLAN_PATH_MAX - 1,
     "run directory; empty: runs/<env>-<date>", NULL},
    {"bin_dir", CFG_STRING, L(bin_dir), "", 0, PLAN_PATH_MAX - 1,
     "where the twig-* binaries are; empty: next to twig", NULL},
    {"host", CFG_STRING, L(host), "127.0.0.1", 1, 63, "address actors and workers listen on",
     NULL},
    {"actor_base_port", CFG_INT, L(actor_base_port), "7110", 1, 65535,
     "actor i listens on this port + i", NULL},
    {"rollout_base_port", CFG_INT, L(rollout_base_port), "7140", 1, 65535,
     "rollout worker j listens on this port + j", NULL},
    {"metrics_base_port", CFG_INT, L(metrics_base_port), "0", -1, 65535,
     "Prometheus GET /metrics of each process on launcher.host: 0 a free port picked at launch, "
     "N > 0 the plan's k-th process (modelserver, learner, rollout-j, actor-i) on N + k, -1 "
     "off; where they are: RUN/metrics_targets.json", NULL},
    {"progress_interval_ms", CFG_INT, L(progress_interval_ms), "1000", 50, 600000,
     "how often the progress line and metrics are updated", NULL},
    {"startup_timeout_ms", CFG_INT, L(startup_timeout_ms), "60000", 100, 3600000,
     "how long processes may take to become healthy", NULL},
    {"restart_base_ms", CFG_INT, L(restart_base_ms), "200", 1, 600000,
     "first restart delay of a crashed process", NULL},
    {"restart_max_ms", CFG_INT, L(restart_max_ms), "10000", 1, 3600000,
     "largest restart delay", NULL},
    {"restart_stable_ms", CFG_INT, L(restart_stable_ms), "30000", 1, 86400000,
     "uptime after which the restart delay resets", NULL},
    {"max_restarts", CFG_INT, L(max_restarts), "5", -1, 1e6,
     "restarts of one process within restart_window_ms before the run stops; -1: no limit",
     NULL},
    {"restart_window_ms", CFG_INT, L(restart_window_ms), "600000", 0, 86400000,
     "the window max_restarts counts in (then max_restarts <= 64); 0: the whole run", NULL},
    {"stop_grace_ms", CFG_INT, L(stop_grace_ms), "10000", 1, 600000,
     "SIGTERM to SIGKILL delay at the end", NULL},
    {"final_eval_timeout_ms", CFG_INT, L(final_eval_timeout_ms), "600000", 1000, 86400000,
     "how long to wait for the final evaluation once the budget is reached", NULL},
    {"health_every_ms", CFG_INT, L(health_every_ms), "1000", 0, 600000,
     "probe each process's liveness and readiness this often; 0: never after start-up", NULL},
    {"hang_ms", CFG_INT, L(hang_ms), "30000", 100, 86400000,
     "a process not live (no answer, or a wedged event loop) this long is killed and "
     "restarted", NULL},
};
#undef L
const int launcher_n_opts = (int)(sizeof launcher_opts / sizeof launcher_opts[0]);

int launcher_cfg_check(const void *base, const void *top)
{
    (void)top;
    const launcher_cfg *l = base;
    if (l->restart_window_ms > 0 && l->max_restarts > SUPERVISE_WINDOW_MAX) {
        return err_set(-EINVAL,
                       "launcher.max_restarts is %d but at most %d within a window "
                       "(launcher.restart_window_ms %d; 0 counts over the whole run)",
                       l->max_restarts, SUPERVISE_WINDOW_MAX, l->restart_window_ms);
    }
    return 0;
}

static const char *const binary_names[] = {"twig-modelserver", "twig-learner", "twig-rollout",
                                           "twig-actor"};
static const char *const role_sections[] = {"modelserver", "learner", "rollout", "actor"};

const char *plan_binary_name(plan_role role)
{
    return binary_names[role];
}

typedef struct argv_builder {
    run_plan *plan;
    plan_proc *p;
    int slot;
    int argc;
} argv_builder;

static int arg_push(argv_builder *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int arg_push(argv_builder *b, const char *fmt, ...)
{
    if (b->argc >= PLAN_MAX_ARGS) {
        return err_set(-EINVAL, "%s: more than %d arguments", b->p->name, PLAN_MAX_ARGS);
    }
    char *dst = b->plan->strings[b->slot][b->argc];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(dst, PLAN_PATH_MAX / 2, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= PLAN_PATH_MAX / 2) {
        return err_set(-EINVAL, "%s: argument %d is too long", b->p->name, b->argc);
    }
    b->p->argv[b->argc++] = dst;
    b->p->argv[b->argc] = NULL;
    return 0;
}

static int add_proc(run_plan *plan, plan_role role, int index, const char *addr,
                    const char *metrics_addr, const char *run_dir, const char *run_id,
                    const char *config_path,
                    const char *const *overrides, int n_overrides,
                    const char *const bin_paths[4])
{
    if (plan->n_procs >= PLAN_MAX_PROCS) {
        return err_set(-EINVAL, "more than %d processes", PLAN_MAX_PROCS);
    }
    plan_proc *p = &plan->procs[plan->n_procs];
    memset(p, 0, sizeof *p);
    p->role = role;
    p->index = index;
    const char *sec = role_sections[role];
    if (role == PLAN_ROLE_ACTOR || role == PLAN_ROLE_ROLLOUT) {
        snprintf(p->name, sizeof p->name, "%s-%d", sec, index);
    } else {
        snprintf(p->name, sizeof p->name, "%s", sec);
    }
    size_t addr_len = strlen(addr);
    if (addr_len >= sizeof p->addr) {
        return err_set(-EINVAL, "%s: address '%s' is too long", p->name, addr);
    }
    memcpy(p->addr, addr, addr_len + 1);
    if (strlen(metrics_addr) >= sizeof p->metrics_addr) {
        return err_set(-EINVAL, "%s: metrics address '%s' is too long", p->name, metrics_addr);
    }
    snprintf(p->metrics_addr, sizeof p->metrics_addr, "%s", metrics_addr);
    char name[sizeof p->name];
    memcpy(name, p->name, sizeof name);
    snprintf(p->log_path, sizeof p->log_path, "%s/%s.log", run_dir, name);
    argv_builder b = {.plan = plan, .p = p, .slot = plan->n_procs};
    int rc = arg_push(&b, "%s", bin_paths[role]);
    rc = rc ? rc : arg_push(&b, "--config");
    rc = rc ? rc : arg_push(&b, "%s", config_path);
    rc = rc ? rc : arg_push(&b, "--set");
    rc = rc ? rc : arg_push(&b, "%s.listen=%s", sec, addr);
    if (run_id) {
        /* members of another run (a stray worker of an earlier run on these ports) are
         * refused when they join */
        rc = rc ? rc : arg_push(&b, "--set");
        rc = rc ? rc : arg_push(&b, "run_id=%s", run_id);
    }
    if (role == PLAN_ROLE_MODELSERVER) {
        rc = rc ? rc : arg_push(&b, "--set");
        rc = rc ? rc : arg_push(&b, "modelserver.data_dir=%s/modelserver", run_dir);
    } else if (role == PLAN_ROLE_LEARNER) {
        rc = rc ? rc : arg_push(&b, "--set");
        rc = rc ? rc : arg_push(&b, "learner.checkpoint_dir=%s/learner", run_dir);
    } else {
        rc = rc ? rc : arg_push(&b, "--set");
        rc = rc ? rc : arg_push(&b, "%s.id=%s", sec, p->name);
        rc = rc ? rc : arg_push(&b, "--set");
        rc = rc ? rc : arg_push(&b, "%s.index=%d", sec, index);
    }
    if (p->metrics_addr[0]) {
        rc = rc ? rc : arg_push(&b, "--set");
        rc = rc ? rc : arg_push(&b, "%s.metrics_listen=%s", sec, p->metrics_addr);
    }
    for (int i = 0; i < n_overrides && rc == 0; i++) {
        rc = arg_push(&b, "--set");
        rc = rc ? rc : arg_push(&b, "%s", overrides[i]);
    }
    if (rc < 0) {
        return rc;
    }
    plan->n_procs++;
    return 0;
}

int plan_n_procs(const run_cfg *r)
{
    return 2 + r->n_rollout + r->n_actors;
}

/* the plan's k-th metrics address into out ("" when metrics are off) */
static void metrics_addr_of(char *out, size_t n, const launcher_cfg *l, const int *ports, int k)
{
    int port = l->metrics_base_port > 0 ? l->metrics_base_port + k
               : l->metrics_base_port == 0 && ports ? ports[k]
                                                    : 0;
    if (port > 0) {
        snprintf(out, n, "%s:%d", l->host, port);
    } else {
        out[0] = '\0';
    }
}

/* a port of modelserver_addr / learner_addr (0 when it has none) */
static int addr_port(const char *addr)
{
    const char *colon = strrchr(addr, ':');
    return colon ? atoi(colon + 1) : 0;
}

/* launcher.metrics_base_port's range misses the other planned ports */
static int check_metrics_range(const run_cfg *r, const launcher_cfg *l)
{
    int lo = l->metrics_base_port, hi = lo + plan_n_procs(r);
    if (lo <= 0) {
        return 0;
    }
    if (hi > 65536) {
        return err_set(-EINVAL, "launcher.metrics_base_port %d + %d processes exceeds 65535", lo,
                       plan_n_procs(r));
    }
    if ((lo < l->actor_base_port + r->n_actors && l->actor_base_port < hi) ||
        (lo < l->rollout_base_port + r->n_rollout && l->rollout_base_port < hi)) {
        return err_set(-EINVAL, "launcher.metrics_base_port's range %d..%d overlaps the actor or "
                       "rollout ports", lo, hi - 1);
    }
    const char *peers[2][2] = {{"modelserver_addr", r->modelserver_addr},
                               {"learner_addr", r->learner_addr}};
    for (int i = 0; i < 2; i++) {
        int port = addr_port(peers[i][1]);
        if (port >= lo && port < hi) {
            return err_set(-EINVAL, "launcher.metrics_base_port's range %d..%d holds %s's port %d",
                           lo, hi - 1, peers[i][0], port);
        }
    }
    return 0;
}

int plan_build(run_plan *plan, const run_cfg *r, const launcher_cfg *l, const char *run_dir,
               const char *config_path, const char *const *overrides, int n_overrides,
               const char *const bin_paths[4], const int *metrics_ports)
{
    plan->n_procs = 0;
    if (l->actor_base_port + r->n_actors > 65536 ||
        l->rollout_base_port + r->n_rollout > 65536) {
        return err_set(-EINVAL, "launcher base ports + process counts exceed 65535");
    }
    bool overlap = l->actor_base_port < l->rollout_base_port + r->n_rollout &&
                   l->rollout_base_port < l->actor_base_port + r->n_actors;
    if (overlap) {
        return err_set(-EINVAL, "launcher.actor_base_port and rollout_base_port ranges overlap");
    }
    int rc = check_metrics_range(r, l);
    if (rc < 0) {
        return rc;
    }
    char addr[RUN_ADDR_MAX + 1], maddr[RUN_ADDR_MAX + 1];
    /* a run without a run_id is named after its run directory (the same on --resume) */
    char id_buf[RUN_ID_MAX + 1];
    const char *run_id = NULL;
    if (!r->run_id[0]) {
        const char *slash = strrchr(run_dir, '/');
        const char *base = slash && slash[1] ? slash + 1 : run_dir;
        snprintf(id_buf, sizeof id_buf, "%s", base);
        run_id = id_buf;
    }
    int k = 0;
    metrics_addr_of(maddr, sizeof maddr, l, metrics_ports, k++);
    rc = add_proc(plan, PLAN_ROLE_MODELSERVER, 0, r->modelserver_addr, maddr, run_dir, run_id,
                  config_path, overrides, n_overrides, bin_paths);
    metrics_addr_of(maddr, sizeof maddr, l, metrics_ports, k++);
    rc = rc ? rc
            : add_proc(plan, PLAN_ROLE_LEARNER, 0, r->learner_addr, maddr, run_dir, run_id,
                       config_path, overrides, n_overrides, bin_paths);
    for (int j = 0; j < r->n_rollout && rc == 0; j++) {
        snprintf(addr, sizeof addr, "%s:%d", l->host, l->rollout_base_port + j);
        metrics_addr_of(maddr, sizeof maddr, l, metrics_ports, k++);
        rc = add_proc(plan, PLAN_ROLE_ROLLOUT, j, addr, maddr, run_dir, run_id, config_path, overrides,
                      n_overrides, bin_paths);
    }
    for (int i = 0; i < r->n_actors && rc == 0; i++) {
        snprintf(addr, sizeof addr, "%s:%d", l->host, l->actor_base_port + i);
        metrics_addr_of(maddr, sizeof maddr, l, metrics_ports, k++);
        rc = add_proc(plan, PLAN_ROLE_ACTOR, i, addr, maddr, run_dir, run_id, config_path, overrides,
                      n_overrides, bin_paths);
    }
    return rc;
}
