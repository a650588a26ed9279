/* healthwatch.c - see healthwatch.h */
#include "deploy/launcher/healthwatch.h"

#include <stdio.h>
#include <string.h>

#include "common/base/clock.h"
#include "common/base/log.h"
#include "common/rpc/rpc.h"

#define HEALTHWATCH_PROBE_MAX_MS 2000   /* longest single probe */
#define HEALTHWATCH_NOT_READY_PROBES 2  /* not ready on this many probes in a row: report */

void healthwatch_init(healthwatch_t *hw, const healthwatch_cfg *cfg, const run_plan *plan,
                      void (*on_hung)(void *, int, unsigned, const char *),
                      void (*on_ready)(void *, int, bool), void *data)
{
    memset(hw, 0, sizeof *hw);
    hw->cfg = *cfg;
    hw->plan = plan;
    hw->on_hung = on_hung;
    hw->on_ready = on_ready;
    hw->data = data;
    for (int i = 0; i < PLAN_MAX_PROCS; i++) {
        atomic_init(&hw->procs[i].gen, 0);
    }
    stop_flag_init(&hw->stop);
}

unsigned healthwatch_note_start(healthwatch_t *hw, int index)
{
    return atomic_fetch_add(&hw->procs[index].gen, 1) + 1;
}

unsigned healthwatch_gen(const healthwatch_t *hw, int index)
{
    return atomic_load(&((healthwatch_t *)hw)->procs[index].gen);
}

static void proc_hung(healthwatch_t *hw, int i, healthwatch_proc *p, const char *fmt,
                      uint64_t ms)
{
    char why[160];
    snprintf(why, sizeof why, fmt, (unsigned long long)ms);
    p->hung_reported = true;
    if (hw->on_hung) {
        hw->on_hung(hw->data, i, p->seen_gen, why);
    }
}

/* one process: liveness decides, readiness is reported */
static void probe_proc(healthwatch_t *hw, int i, uint64_t now,
                       int (*probe)(const char *, const char *, void *), void *probe_data)
{
    healthwatch_proc *p = &hw->procs[i];
    const char *addr = hw->plan->procs[i].addr;
    unsigned gen = atomic_load(&p->gen);
    if (gen == 0) {
        return;   /* not started yet */
    }
    if (gen != p->seen_gen) {
        p->seen_gen = gen;
        p->gen_start_ms = now;
        p->seen_live = false;
        p->fail_since_ms = 0;
        p->hung_reported = false;
        p->not_ready_probes = 0;
    }
    if (p->hung_reported) {
        return;   /* the launcher is killing it; the next start resets this */
    }
    int live = probe(addr, RPC_HEALTH_LIVENESS, probe_data);
    if (live == RPC_HEALTH_SERVING) {
        if (!p->seen_live) {
            log_info("event=live proc=%s start=%u", hw->plan->procs[i].name, gen);
        } else if (p->fail_since_ms) {
            log_info("event=live_again proc=%s down_ms=%llu", hw->plan->procs[i].name,
                     (unsigned long long)(now - p->fail_since_ms));
        }
        p->seen_live = true;
        p->fail_since_ms = 0;
    } else if (!p->seen_live) {
        if (now - p->gen_start_ms >= (uint64_t)hw->cfg.startup_ms) {
            proc_hung(hw, i, p, "not live %llu ms after its start", now - p->gen_start_ms);
        }
        return;
    } else {
        if (p->fail_since_ms == 0) {
            p->fail_since_ms = now;
        }
        uint64_t down = now - p->fail_since_ms;
        if (down >= (uint64_t)hw->cfg.hang_ms) {
            proc_hung(hw, i, p,
                      live == RPC_HEALTH_NOT_SERVING
                          ? "its event loop has not turned for %llu ms (liveness NOT_SERVING)"
                          : "not answering its health check for %llu ms",
                      down);
        }
        return;
    }
    int ready = probe(addr, RPC_HEALTH_READINESS, probe_data);
    if (ready == RPC_HEALTH_SERVING) {
        p->not_ready_probes = 0;
        if (p->reported_not_ready) {
            p->reported_not_ready = false;
            if (hw->on_ready) {
                hw->on_ready(hw->data, i, true);
            }
        }
    } else if (ready == RPC_HEALTH_NOT_SERVING &&
               ++p->not_ready_probes == HEALTHWATCH_NOT_READY_PROBES && !p->reported_not_ready) {
        p->reported_not_ready = true;
        if (hw->on_ready) {
            hw->on_ready(hw->data, i, false);
        }
    }
}

void healthwatch_round(healthwatch_t *hw, uint64_t now_ms,
                       int (*probe)(const char *, const char *, void *), void *probe_data)
{
    for (int i = 0; i < hw->plan->n_procs && !stop_flag_raised(&hw->stop); i++) {
        probe_proc(hw, i, now_ms, probe, probe_data);
    }
}

static int rpc_probe(const char *addr, const char *service, void *data)
{
    const healthwatch_t *hw = data;
    int ms = hw->cfg.every_ms < HEALTHWATCH_PROBE_MAX_MS ? hw->cfg.every_ms
                                                         : HEALTHWATCH_PROBE_MAX_MS;
    rpc_client_cfg cc = {.tls = &hw->cfg.tls};
    return rpc_health_check_cfg(addr, &cc, service, ms);
}

static void healthwatch_main(void *arg)
{
    healthwatch_t *hw = arg;
    while (!stop_flag_raised(&hw->stop)) {
        uint64_t t0 = clock_now_ms();
        healthwatch_round(hw, t0, rpc_probe, hw);
        uint64_t took = clock_now_ms() - t0;
        if (took < (uint64_t)hw->cfg.every_ms) {
            stop_flag_wait_ms(&hw->stop, (uint64_t)hw->cfg.every_ms - took);
        }
    }
}

int healthwatch_start(healthwatch_t *hw)
{
    if (hw->cfg.every_ms <= 0) {
        return 0;
    }
    int rc = uv_thread_create(&hw->thread, healthwatch_main, hw);
    if (rc == 0) {
        hw->thread_started = true;
    }
    return rc;
}

void healthwatch_stop(healthwatch_t *hw)
{
    stop_flag_raise(&hw->stop);
    if (hw->thread_started) {
        uv_thread_join(&hw->thread);
        hw->thread_started = false;
    }
}

void healthwatch_free(healthwatch_t *hw)
{
    healthwatch_stop(hw);
    stop_flag_destroy(&hw->stop);
}
