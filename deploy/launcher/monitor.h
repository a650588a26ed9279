/* monitor.h - the launcher's view of a running run: health at start-up, then a periodic
 * poll of the learner and the model server that feeds the progress line, metrics.csv and
 * the TensorBoard event file, and decides when the run is over.
 *
 * It runs on its own thread (rpc clients are blocking) and talks to the loop thread only by
 * its atomic `state` and the `wake` callback the launcher gives it.
 *
 *     monitor_t m;
 *     monitor_cfg c;
 *     monitor_cfg_from_plan(&c, &run, &launcher, plan, run_dir);   // or by address
 *     monitor_init(&m, &c, on_wake, loop_data);
 *     monitor_start(&m);             // thread: wait healthy, then poll until done or stopped
 *     ...                            // on_wake: read monitor_state(&m), stop processes
 *     monitor_stop(&m);              // ask the thread to end, join it
 *     monitor_free(&m);
 */
#ifndef TWIG_MONITOR_H
#define TWIG_MONITOR_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#include "common/base/stop.h"

#include "common/rpc/rpc.h"
#include "common/rpc/tls_run.h"
#include "common/config/run_config.h"
#include "deploy/launcher/tfevents.h"
#include "deploy/launcher/run_plan.h"

typedef enum monitor_state {
    MONITOR_STARTING = 0,   /* waiting for every process to be healthy */
    MONITOR_RUNNING = 1,
    MONITOR_DONE = 2,       /* the final evaluation arrived: stop the run, exit 0 */
    MONITOR_FAILED = 3,     /* start-up timed out or the final eval never came: exit 1 */
} monitor_state;

/* what the last poll saw; also the run's summary at the end */
typedef struct monitor_snapshot {
    double wall_s;                 /* the run's, over every launch of it (--resume) */
    uint64_t real_steps;           /* the model server's log end */
    uint64_t updates;
    uint64_t synthetic_samples;
    uint64_t policy_version;
    uint64_t model_version;
    float achieved_utd;
    bool have_rates;               /* the rates below cover one whole poll interval */
    double updates_per_s;          /* over the last interval */
    double synthetic_per_s;
    double real_per_s;
    double model_holdout_loss;     /* from the model server's Stats; NAN if unknown */
    int evals;                     /* evaluations received */
    float eval_return_mean;        /* of the newest evaluation; NAN before the first */
    float eval_return_std;
    uint64_t eval_real_steps;
    uint64_t eval_policy_version;
} monitor_snapshot;

/* the real-step counter sampled about once a second, for an ETA that does not jump with one
 * slow second: the rate is taken over the last MONITOR_ETA_WINDOW_MS or more */
#define MONITOR_ETA_SAMPLES 128
#define MONITOR_ETA_SAMPLE_MS 1000
#define MONITOR_ETA_WINDOW_MS 60000

typedef struct monitor_eta {
    uint64_t t_ms[MONITOR_ETA_SAMPLES];
    uint64_t real_steps[MONITOR_ETA_SAMPLES];
    int head;                      /* next slot to write */
    int n;                         /* samples held */
} monitor_eta;

/* a process the monitor waits to be live before it polls */
typedef struct monitor_peer {
    char name[48];
    char addr[RUN_ADDR_MAX + 1];
} monitor_peer;

#define MONITOR_MAX_PEERS PLAN_MAX_PROCS

/* the run being watched: given (twig run knows its config) or learnt from the learner's
 * Progress at the first poll (twig monitor by address) */
typedef struct monitor_run {
    bool known;
    uint64_t budget;                /* real_steps */
    uint64_t updates_budget;        /* strict: updates the budget allows; 0: async */
    char env[RUN_ENV_MAX + 1];
} monitor_run;

/* what to watch and where to write. What the run itself is (budget, pacing, env) may come
 * from the learner's Progress, so a deployment is watched by address alone */
typedef struct monitor_cfg {
    char learner_addr[RUN_ADDR_MAX + 1];
    char modelserver_addr[RUN_ADDR_MAX + 1];
    monitor_peer peers[MONITOR_MAX_PEERS];   /* waited live at start (the two above if none) */
    int n_peers;
    char out_dir[PLAN_PATH_MAX];             /* metrics.csv, events, elapsed_s */
    int startup_timeout_ms;                  /* for every peer to be live */
    int final_eval_timeout_ms;               /* from the budget to the final evaluation */
    int progress_interval_ms;
    monitor_run run;                         /* known: the run's own; else from the learner */
    rpc_tls_paths tls;                       /* the run's TLS files; all empty: plaintext */
} monitor_cfg;

typedef struct monitor {
    monitor_cfg cfg;
    monitor_run run;               /* written by the thread; read after monitor_stop */
    rpc_client_t *learner;         /* owned */
    rpc_client_t *modelserver;     /* owned */
    FILE *metrics;                 /* metrics.csv, owned */
    tfevents_t tf;
    uv_thread_t thread;
    bool thread_started;
    atomic_int state;              /* monitor_state */
    stop_flag stop;                /* raised by monitor_stop; the thread's pauses wake on it */
    void (*wake)(void *data);      /* called from the thread when state changes */
    void *wake_data;
    bool tty;                      /* progress line with \r on a terminal */
    monitor_eta eta;
    uint64_t budget_reached_ms;    /* when real_steps first reached the budget; 0: not yet */
    uint64_t started_ms;
    bool evals_resync;             /* rereading the learner's evaluations after it lost some */
    int resumed_rows;              /* metrics.csv rows from earlier launches (--resume) */
    double elapsed_before_s;       /* wall time of earlier launches, from RUN/elapsed_s */
    char elapsed_path[PLAN_PATH_MAX + 32];
    monitor_snapshot last;         /* written by the thread; read after monitor_stop */
    char failure[256];             /* why MONITOR_FAILED */
} monitor_t;

/* the run's wall time over all its launches, written at each progress tick */
#define MONITOR_ELAPSED_FILE "elapsed_s"

/* opens metrics.csv and the event file in run_dir. A metrics.csv of an earlier launch
 * (twig run --resume) is kept as it is and continued: rows go on after its last real step,
 * wall time after RUN/elapsed_s; 0 or -errno (err_msg names the file) */
int monitor_init(monitor_t *m, const monitor_cfg *cfg, void (*wake)(void *), void *data);

/* twig run's monitor: its run's learner and model server, every process of the plan as a
 * peer, the launcher's timeouts, out_dir = run_dir */
void monitor_cfg_from_plan(monitor_cfg *cfg, const run_cfg *run, const launcher_cfg *launcher,
                           const run_plan *plan, const char *run_dir);
int monitor_start(monitor_t *m);
void monitor_stop(monitor_t *m);
void monitor_free(monitor_t *m);

static inline monitor_state monitor_get_state(monitor_t *m)
{
    return (monitor_state)atomic_load(&m->state);
}

/* growth of a counter per second over dt_s; 0 when it went back (a restarted process that
 * lost some progress) or dt_s <= 0 (exposed for tests) */
double monitor_rate_per_s(uint64_t now, uint64_t before, double dt_s);

/* record real_steps at t_ms; a sample closer than MONITOR_ETA_SAMPLE_MS to the previous one
 * is dropped, the oldest is overwritten when the ring is full (exposed for tests) */
void monitor_eta_add(monitor_eta *e, uint64_t t_ms, uint64_t real_steps);
/* real steps per second from the newest sample back to the newest one at least
 * MONITOR_ETA_WINDOW_MS older (the oldest held, while the run is younger); 0 with fewer than
 * two samples or when the counter went back (exposed for tests) */
double monitor_eta_rate(const monitor_eta *e);

/* the progress line into out (no \r, no newline), at most width - 1 columns so a terminal
 * never wraps it; width <= 0: no limit. Fields that do not fit are left out, the least
 * important first (versions, model loss, synthetic rate, update rate, eval step); real
 * steps, elapsed time and ETA always stay. eta_rate: real steps per second for the ETA
 * (monitor_eta_rate). Returns the length written (exposed for tests) */
size_t monitor_format_progress(char *out, size_t n, const monitor_snapshot *s, uint64_t budget,
                               double eta_rate, int width);

/* the width of the terminal on fd (TIOCGWINSZ), else $COLUMNS, else 80 */
int monitor_term_width(int fd);

/* one metrics.csv row for an evaluation (exposed for tests) */
void monitor_write_metrics_row(FILE *f, const monitor_snapshot *s);
extern const char monitor_metrics_header[];

/* metrics.csv's number of rows, and its last row's real steps and return into last's eval_
 * fields (untouched, *rows 0 when there is no file); a last line without its newline (cut by
 * a kill) is removed. 0 or -errno */
int monitor_read_metrics(const char *path, monitor_snapshot *last, int *rows);
/* seconds in an elapsed file; 0 when missing or unreadable */
double monitor_read_elapsed(const char *path);

#endif
