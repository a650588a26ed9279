/* healthwatch.h - the launcher's periodic health probes of a running run (docs/design.md,
 * "Health"): liveness decides restarts, readiness is only reported.
 *
 * A thread probes each planned process's `liveness` every `every_ms`. A process that was live
 * in its current start and then stops being live (no answer: stopped, hung; or NOT_SERVING: a
 * wedged loop) for `hang_ms` is reported hung once; so is a process that is not live within
 * `startup_ms` of its start (at the first start the monitor's start-up wait fails the whole
 * run at the same deadline).
 * The launcher kills a hung process and the supervisor restarts it. Readiness is probed too;
 * a process not ready on two probes in a row is reported once, and again when it is ready.
 *
 * Threads: the watch runs on its own thread with blocking probes; healthwatch_note_start is
 * called from the loop thread at every start; the callbacks run on the watch thread.
 *
 *     healthwatch_t hw;
 *     healthwatch_init(&hw, &cfg, plan, on_hung, on_ready, data);
 *     healthwatch_start(&hw);
 *     healthwatch_note_start(&hw, i);      // supervise's on_start
 *     healthwatch_stop(&hw);               // joins the thread
 *     healthwatch_free(&hw);               // after init, always
 */
#ifndef TWIG_HEALTHWATCH_H
#define TWIG_HEALTHWATCH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "common/base/stop.h"
#include "common/rpc/rpc.h"

#include "deploy/launcher/run_plan.h"

typedef struct healthwatch_cfg {
    int every_ms;     /* probe period; 0: no watch */
    int hang_ms;      /* not live this long after being live: hung */
    int startup_ms;   /* a process not live this long after its start: hung */
    rpc_tls tls;      /* the run's TLS for the probes (paths borrowed for the watch's life) */
} healthwatch_cfg;

typedef struct healthwatch_proc {
    atomic_uint gen;           /* starts so far: bumped by note_start (loop thread) */
    /* watch thread only */
    unsigned seen_gen;
    uint64_t gen_start_ms;
    bool seen_live;            /* live at least once in this start */
    uint64_t fail_since_ms;    /* first failed liveness probe since the last good one; 0: none */
    bool hung_reported;
    int not_ready_probes;      /* consecutive NOT_SERVING readiness answers */
    bool reported_not_ready;
} healthwatch_proc;

typedef struct healthwatch {
    healthwatch_cfg cfg;
    const run_plan *plan;      /* borrowed */
    healthwatch_proc procs[PLAN_MAX_PROCS];
    /* watch thread: process index hung in its start gen (why: one line for the user) */
    void (*on_hung)(void *data, int index, unsigned gen, const char *why);
    /* watch thread: readiness changed (after being reported not ready) */
    void (*on_ready)(void *data, int index, bool ready);
    void *data;
    stop_flag stop;   /* the probe thread's; its pause between rounds wakes on it */
    uv_thread_t thread;
    bool thread_started;
} healthwatch_t;

void healthwatch_init(healthwatch_t *hw, const healthwatch_cfg *cfg, const run_plan *plan,
                      void (*on_hung)(void *, int, unsigned, const char *),
                      void (*on_ready)(void *, int, bool), void *data);
/* start the thread (nothing when cfg.every_ms is 0); 0 or a negative uv error */
int healthwatch_start(healthwatch_t *hw);
/* process index was (re)started: its gen is bumped, its timers start over. Any thread */
unsigned healthwatch_note_start(healthwatch_t *hw, int index);
/* its current start gen. Any thread */
unsigned healthwatch_gen(const healthwatch_t *hw, int index);
/* stop and join the thread; safe when it never started */
void healthwatch_stop(healthwatch_t *hw);
/* stop (if still running) and release what init took */
void healthwatch_free(healthwatch_t *hw);

/* one probe round over every process at time now_ms (the thread's body; for tests) with
 * probe answers from probe(addr, service, data): RPC_HEALTH_SERVING, NOT_SERVING or < 0 */
void healthwatch_round(healthwatch_t *hw, uint64_t now_ms,
                       int (*probe)(const char *addr, const char *service, void *data),
                       void *probe_data);

#endif
