/* supervise.h - start, watch and restart the processes of a run (libuv process handles).
 *
 * The launcher adds each process with its argv and log file, starts them all, and runs the
 * libuv loop. Each process gets this process's environment plus TWIG_LAUNCHER_PID, so the
 * twig programs end with the launcher (common/base/launcher_link.h). A process that exits while
 * the run is not stopping is restarted after an
 * exponential backoff (base, doubled per consecutive quick failure, capped); a process that
 * stayed up for `stable_ms` gets its backoff reset. Every start, exit and restart is one log
 * line. A process that exits with max_restarts used up (within restart_window_ms, or over
 * the whole run when that is 0) stays down, and so does one that exits with `fatal_status`
 * (the twig programs' 2: a bad configuration, which a restart cannot mend): gave_up is set
 * and the on_exit callback decides what that means for the run. supervise_stop() sends
 * SIGTERM to all, then SIGKILL to those still alive after `grace_ms`; the loop then ends once
 * every handle is closed.
 *
 *     supervise_t s;
 *     supervise_init(&s, &loop, &cfg);
 *     int i = supervise_add(&s, "learner", argv, "runs/x/learner.log");
 *     supervise_start(&s);
 *     uv_run(&loop, UV_RUN_DEFAULT);     // until supervise_stop() and all exits
 *     supervise_free(&s);
 */
#ifndef TWIG_SUPERVISE_H
#define TWIG_SUPERVISE_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#define SUPERVISE_MAX_PROCS 64
#define SUPERVISE_MAX_ARGS 64
#define SUPERVISE_NAME_MAX 48
#define SUPERVISE_WINDOW_MAX 64   /* the most restarts a sliding window can count */

typedef struct supervise_cfg {
    uint64_t backoff_base_ms;   /* first restart delay */
    uint64_t backoff_max_ms;    /* cap on the delay */
    uint64_t stable_ms;         /* uptime after which the backoff resets */
    uint64_t grace_ms;          /* SIGTERM -> SIGKILL delay at stop */
    int max_restarts;           /* per process (within restart_window_ms); -1: unlimited */
    uint64_t restart_window_ms; /* max_restarts counts the restarts of this long a window
                                 * (then max_restarts <= SUPERVISE_WINDOW_MAX); 0: the run */
    int fatal_status;           /* an exit status never restarted (0: none) */
} supervise_cfg;

typedef struct supervise_proc {
    char name[SUPERVISE_NAME_MAX];
    char *argv[SUPERVISE_MAX_ARGS + 1];   /* owned copies, NULL-terminated */
    char *log_path;                       /* owned; stdout and stderr are appended there */
    uv_process_t handle;
    uv_timer_t restart_timer;
    bool running;
    bool handle_open;                     /* handle needs uv_close */
    int pid;
    int starts;                           /* how many times it was started */
    int restarts;                         /* starts after the first */
    int consecutive_failures;
    bool gave_up;                         /* exited with max_restarts used up, or with
                                           * fatal_status: stays down */
    bool fatal;                           /* gave up because it exited with fatal_status */
    int window_restarts;                  /* restarts within the window, this exit's included
                                           * (set with gave_up) */
    uint64_t restart_ms[SUPERVISE_WINDOW_MAX]; /* ring: loop time of the latest restarts */
    uint64_t started_ms;
    int64_t last_exit_status;
    int last_term_signal;
    struct supervise *owner;
} supervise_proc;

typedef struct supervise {
    uv_loop_t *loop;                      /* borrowed */
    supervise_cfg cfg;
    supervise_proc procs[SUPERVISE_MAX_PROCS];
    int n_procs;
    bool stopping;
    uv_timer_t kill_timer;
    bool kill_timer_closed;
    int open_handles;                     /* handles still to be closed */
    /* called after each start (first or restart), e.g. to record pids */
    void (*on_start)(struct supervise *s, int index);
    /* called on each exit, e.g. so the launcher can print "restarting learner"; the process's
     * gave_up is already set when this exit was its last. May call supervise_stop */
    void (*on_exit)(struct supervise *s, int index, int64_t status, int term_signal);
    void *data;                           /* for the caller */
    char **env;                           /* owned array, borrowed strings: this process's
                                           * environment plus launcher_env */
    char launcher_env[48];                /* TWIG_LAUNCHER_PID=<our pid> (launcher_link.h) */
} supervise_t;

void supervise_init(supervise_t *s, uv_loop_t *loop, const supervise_cfg *cfg);
/* argv copied; returns the index, or -E2BIG / -ENOSPC */
int supervise_add(supervise_t *s, const char *name, char *const argv[], const char *log_path);
/* start every process; returns 0 or the first spawn error (e.g. -ENOENT for a missing
 * binary, err_msg names it) */
int supervise_start(supervise_t *s);
/* send signum to process index if it runs (the launcher kills a hung one: its exit is then
 * handled as any crash, restart included); 0, -ESRCH (not running) or a uv error */
int supervise_kill(supervise_t *s, int index, int signum);
/* SIGTERM all, SIGKILL after grace, close every handle */
void supervise_stop(supervise_t *s);
/* free the copies; call after uv_run returned */
void supervise_free(supervise_t *s);

/* index of a process by name, or -1 */
int supervise_find(const supervise_t *s, const char *name);

#endif
