/* monitor.h - the launcher's view of a running run: health at start-up, then a periodic
 * poll of the learner and the model server that feeds the progress line, metrics.csv and
 * the TensorBoard event file, and decides when the run is over.
 *
 * It runs on its own thread (rpc clients are blocking) and talks to the loop thread only by
 * its atomic `state` and the `wake` callback the launcher gives it.
 *
 *     monitor_t m;
 *     monitor_init(&m, &run, &launcher, plan, run_dir, on_wake, loop_data);
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

typedef struct monitor {
    const run_cfg *run;            /* borrowed */
    const launcher_cfg *launcher;  /* borrowed */
    const run_plan *plan;          /* borrowed */
    char run_dir[PLAN_PATH_MAX];
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
int monitor_init(monitor_t *m, const run_cfg *run, const launcher_cfg *launcher,
                 const run_plan *plan, const char *run_dir, void (*wake)(void *), void *data);
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
