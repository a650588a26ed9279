/* deploy/launcher/healthwatch.c: the decisions of one probe round, with scripted probe answers and a
 * clock the test moves (no sockets, no sleeps) */
#include <criterion/criterion.h>
#include <string.h>

#include "common/base/err.h"
#include "common/rpc/rpc.h"
#include "deploy/launcher/healthwatch.h"

typedef struct script {
    int live[PLAN_MAX_PROCS];    /* what each process answers to "liveness" */
    int ready[PLAN_MAX_PROCS];   /* and to "readiness" */
    int probes;
} script;

typedef struct seen {
    int hung;                    /* on_hung calls */
    int hung_index;
    unsigned hung_gen;
    char why[160];
    int ready_calls;
    bool last_ready;
} seen;

static int probe(const char *addr, const char *service, void *data)
{
    script *s = data;
    int i = addr[0] - 'a';
    s->probes++;
    return strcmp(service, RPC_HEALTH_LIVENESS) == 0 ? s->live[i] : s->ready[i];
}

static void on_hung(void *data, int index, unsigned gen, const char *why)
{
    seen *v = data;
    v->hung++;
    v->hung_index = index;
    v->hung_gen = gen;
    snprintf(v->why, sizeof v->why, "%s", why);
}

static void on_ready(void *data, int index, bool ready)
{
    seen *v = data;
    v->ready_calls++;
    v->last_ready = ready;
}

static run_plan plan;

static void setup(healthwatch_t *hw, seen *v, int n)
{
    memset(&plan, 0, sizeof plan);
    plan.n_procs = n;
    for (int i = 0; i < n; i++) {
        snprintf(plan.procs[i].addr, sizeof plan.procs[i].addr, "%c", 'a' + i);
        snprintf(plan.procs[i].name, sizeof plan.procs[i].name, "p%d", i);
    }
    healthwatch_cfg cfg = {.every_ms = 100, .hang_ms = 1000, .startup_ms = 5000};
    memset(v, 0, sizeof *v);
    healthwatch_init(hw, &cfg, &plan, on_hung, on_ready, v);
}

Test(healthwatch, a_process_not_yet_started_is_not_probed)
{
    healthwatch_t hw;
    seen v;
    setup(&hw, &v, 2);
    script s = {.live = {RPC_HEALTH_SERVING, TWIG_EUNAVAIL}};
    healthwatch_note_start(&hw, 0);
    healthwatch_round(&hw, 1000, probe, &s);
    healthwatch_round(&hw, 100000, probe, &s);
    cr_expect_eq(v.hung, 0);
    cr_expect_eq(s.probes, 4, "two probes (liveness, readiness) of p0 per round");
    healthwatch_free(&hw);
}

Test(healthwatch, live_then_silent_for_hang_ms_is_hung_once_and_a_restart_starts_over)
{
    healthwatch_t hw;
    seen v;
    setup(&hw, &v, 1);
    script s = {.live = {RPC_HEALTH_SERVING}, .ready = {RPC_HEALTH_SERVING}};
    cr_assert_eq(healthwatch_note_start(&hw, 0), 1u);
    healthwatch_round(&hw, 0, probe, &s);
    s.live[0] = TWIG_EDEADLINE;                  /* stopped: the probe times out */
    healthwatch_round(&hw, 100, probe, &s);
    healthwatch_round(&hw, 1099, probe, &s);
    cr_expect_eq(v.hung, 0, "999 ms is below hang_ms");
    healthwatch_round(&hw, 1100, probe, &s);
    cr_expect_eq(v.hung, 1);
    cr_expect_eq(v.hung_gen, 1u);
    cr_expect(strstr(v.why, "not answering its health check for 1000 ms") != NULL, "%s", v.why);
    healthwatch_round(&hw, 9000, probe, &s);
    cr_expect_eq(v.hung, 1, "reported once per start");
    /* restarted: the timers start over */
    cr_assert_eq(healthwatch_note_start(&hw, 0), 2u);
    s.live[0] = RPC_HEALTH_SERVING;
    healthwatch_round(&hw, 9100, probe, &s);
    s.live[0] = RPC_HEALTH_NOT_SERVING;          /* a wedged loop answers NOT_SERVING */
    healthwatch_round(&hw, 9200, probe, &s);
    healthwatch_round(&hw, 10200, probe, &s);
    cr_expect_eq(v.hung, 2);
    cr_expect_eq(v.hung_gen, 2u);
    cr_expect(strstr(v.why, "event loop has not turned for 1000 ms") != NULL, "%s", v.why);
    healthwatch_free(&hw);
}

Test(healthwatch, a_good_probe_in_between_resets_the_hang_timer)
{
    healthwatch_t hw;
    seen v;
    setup(&hw, &v, 1);
    script s = {.live = {RPC_HEALTH_SERVING}, .ready = {RPC_HEALTH_SERVING}};
    healthwatch_note_start(&hw, 0);
    healthwatch_round(&hw, 0, probe, &s);
    for (uint64_t t = 100; t < 5000; t += 100) {
        s.live[0] = (t / 100) % 5 == 0 ? RPC_HEALTH_SERVING : TWIG_EDEADLINE;
        healthwatch_round(&hw, t, probe, &s);
    }
    cr_expect_eq(v.hung, 0, "never 1000 ms without a good answer");
    healthwatch_free(&hw);
}

Test(healthwatch, a_process_never_live_after_its_start_is_hung_after_startup_ms)
{
    healthwatch_t hw;
    seen v;
    setup(&hw, &v, 1);
    script s = {.live = {TWIG_EUNAVAIL}};
    healthwatch_note_start(&hw, 0);
    healthwatch_round(&hw, 0, probe, &s);
    healthwatch_round(&hw, 4999, probe, &s);
    cr_expect_eq(v.hung, 0);
    healthwatch_round(&hw, 5000, probe, &s);
    cr_expect_eq(v.hung, 1);
    cr_expect(strstr(v.why, "not live 5000 ms after its start") != NULL, "%s", v.why);
    healthwatch_free(&hw);
}

Test(healthwatch, not_ready_twice_in_a_row_is_reported_once_and_ready_again_too)
{
    healthwatch_t hw;
    seen v;
    setup(&hw, &v, 1);
    script s = {.live = {RPC_HEALTH_SERVING}, .ready = {RPC_HEALTH_NOT_SERVING}};
    healthwatch_note_start(&hw, 0);
    healthwatch_round(&hw, 0, probe, &s);
    cr_expect_eq(v.ready_calls, 0, "one NOT_SERVING is not reported (start-up)");
    healthwatch_round(&hw, 100, probe, &s);
    cr_expect_eq(v.ready_calls, 1);
    cr_expect_eq(v.last_ready, false);
    healthwatch_round(&hw, 200, probe, &s);
    healthwatch_round(&hw, 300, probe, &s);
    cr_expect_eq(v.ready_calls, 1, "reported once");
    s.ready[0] = RPC_HEALTH_SERVING;
    healthwatch_round(&hw, 400, probe, &s);
    cr_expect_eq(v.ready_calls, 2);
    cr_expect_eq(v.last_ready, true);
    cr_expect_eq(v.hung, 0, "not ready is never a reason to restart");
    healthwatch_free(&hw);
}
