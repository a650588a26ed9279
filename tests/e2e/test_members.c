/* membership end to end: the real twig-modelserver, twig-learner and several identical
 * twig-rollout replicas (no index, one config) that join, leave cleanly, are killed (-9) and
 * paused (SIGSTOP) past their lease, while the test appends real steps. Strict pacing must
 * end with exactly rollouts_per_step branches for every real step (docs/design.md,
 * "Membership"), and a departed member may hold the run up for about its ttl, no longer. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/err.h"
#include "common/rpc/msg.h"
#include "common/rpc/rpc.h"
#include "tests/modelserver/env_data.h"
#include "tests/modelserver/fixture.h"
#include "tests/procfix.h"

#define MS_BIN TWIG_BIN_DIR "/modelserver/twig-modelserver"
#define LN_BIN TWIG_BIN_DIR "/learner/twig-learner"
#define RO_BIN TWIG_BIN_DIR "/modelserver/twig-rollout"
#define R 4         /* rollouts_per_step */
#define INIT 200    /* init_steps = the first model training point; then one every 100 */
#define TTL_MS 1500 /* the learner's lease ttl */
#define END 1000    /* real steps appended in all */

static char tmp[PROCFIX_DIR_LEN];

static void setup(void)
{
    procfix_tmpdir(tmp, sizeof tmp);
    rpc_lib_init();
}

static void teardown(void)
{
    procfix_reap_all();
    rpc_lib_shutdown(5000);
    procfix_tmpdir_done(tmp);
}

TestSuite(members, .init = setup, .fini = teardown, .timeout = 600);

/* the run's shared top level, as --set pairs */
#define RUN_SETS                                                                                   \
    "--set", "env=Pendulum-v1", "--set", "init_steps=200", "--set", "model_train_freq=100",        \
        "--set", "rollouts_per_step=4", "--set", "k_min=1", "--set", "k_max=1", "--set",           \
        "hidden=32", "--set", "real_steps=1000", "--set", "run_id=members-test"

static void files_of(procfix_t *p, const char *name)
{
    snprintf(p->port_file, sizeof p->port_file, "%s/%s.port", tmp, name);
    snprintf(p->log_file, sizeof p->log_file, "%s/%s.log", tmp, name);
}

static void start_modelserver(procfix_t *p)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/ms", tmp);
    files_of(p, "ms");
    const char *argv[] = {MS_BIN, "--listen", "127.0.0.1:0", "--data-dir", dir, "--port-file",
                          p->port_file, "--fsync", "none", "--log-level", "warn", RUN_SETS,
                          FX_SMALL_MODEL_ARGS, "--set", "modelserver.model_batch=64",
                          /* fits long enough that chunks wait for their model: departures
                           * happen with work in flight */
                          "--set", "modelserver.train_max_epochs=200", NULL};
    p->pid = procfix_spawn(argv, p->log_file);
    procfix_wait_serving(p, 30000);
}

static void start_learner(procfix_t *p, const char *ms_addr)
{
    char s_ms[128], s_pf[700], s_ck[700], s_ttl[64];
    files_of(p, "ln");
    snprintf(s_ms, sizeof s_ms, "modelserver_addr=%s", ms_addr);
    snprintf(s_pf, sizeof s_pf, "learner.port_file=%s", p->port_file);
    snprintf(s_ck, sizeof s_ck, "learner.checkpoint_dir=%s/ln.ckpt", tmp);
    snprintf(s_ttl, sizeof s_ttl, "learner.lease_ttl_ms=%d", TTL_MS);
    const char *argv[] = {LN_BIN,  RUN_SETS,
                          "--set", s_ms,
                          "--set", "learner.listen=127.0.0.1:0",
                          "--set", s_pf,
                          "--set", s_ck,
                          "--set", s_ttl,
                          "--set", "utd=1",
                          "--set", "learner.batch_size=32",
                          "--set", "learner.checkpoint_every=0",
                          "--set", "learner.fetch_wait_ms=200",
                          NULL};
    p->pid = procfix_spawn(argv, p->log_file);
    procfix_wait_live(p, 30000);
}

/* a replica: every worker gets the same options (no index, no id): only its files differ */
static void start_worker(procfix_t *p, const char *name, const char *ms_addr, const char *ln_addr)
{
    char s_ms[128], s_ln[128], s_pf[700];
    files_of(p, name);
    snprintf(s_ms, sizeof s_ms, "modelserver_addr=%s", ms_addr);
    snprintf(s_ln, sizeof s_ln, "learner_addr=%s", ln_addr);
    snprintf(s_pf, sizeof s_pf, "rollout.port_file=%s", p->port_file);
    const char *argv[] = {RO_BIN,
                          RUN_SETS,
                          "--set",
                          s_ms,
                          "--set",
                          s_ln,
                          "--set",
                          s_pf,
                          "--listen",
                          "127.0.0.1:0",
                          "--chunk",
                          "128",
                          "--push-batch",
                          "50",
                          "--wait-ms",
                          "200",
                          "--backoff-max-ms",
                          "200",
                          "--log-level",
                          "info",
                          NULL};
    p->pid = procfix_spawn(argv, p->log_file);
    procfix_wait_live(p, 30000);
}

typedef struct world {
    procfix_t ms, ln;
    rpc_client_t *ms_cl, *ln_cl;
    ed_data d;
    uint64_t seq;
    int appended;
} world;

/* append real rows [w->appended, to) as actor-0 */
static void append_to(world *w, int to)
{
    for (int i = w->appended; i < to; i += 50) {
        int n = to - i < 50 ? to - i : 50;
        tbatch_t v = ed_view(&w->d, i, n, "actor-0", w->seq++);
        Twig__V1__TransitionBatch m;
        msg_batch_from_view(&m, &v);
        ProtobufCMessage *reply = NULL;
        rpc_call_opts o = {.deadline_ms = 10000, .idempotent = true};
        int rc = rpc_client_unary(w->ms_cl, &reply, "/twig.v1.ModelServer/AppendReal", &m.base,
                                  &twig__v1__append_real_reply__descriptor, &o);
        cr_assert_eq(rc, 0, "append: %s", err_msg());
        protobuf_c_message_free_unpacked(reply, NULL);
    }
    w->appended = to;
}

static uint64_t quota_done(const world *w)
{
    Twig__V1__ProgressRequest q = TWIG__V1__PROGRESS_REQUEST__INIT;
    ProtobufCMessage *reply = NULL;
    rpc_call_opts o = {.deadline_ms = 5000};
    int rc = rpc_client_unary(w->ln_cl, &reply, "/twig.v1.Learner/GetProgress", &q.base,
                              &twig__v1__progress__descriptor, &o);
    cr_assert_eq(rc, 0, "GetProgress: %s", err_msg());
    uint64_t done = ((Twig__V1__Progress *)reply)->rollout_quota_done;
    protobuf_c_message_free_unpacked(reply, NULL);
    return done;
}

/* poll until the learner's quota reaches want; the ms it took */
static int64_t wait_quota(const world *w, uint64_t want, int ms, const char *what)
{
    int64_t t0 = procfix_now_ms(), deadline = t0 + ms;
    uint64_t got = 0;
    while ((got = quota_done(w)) < want) {
        cr_assert_lt(procfix_now_ms(), deadline,
                     "%s: quota %" PRIu64 " did not reach %" PRIu64 " in %d ms", what, got, want,
                     ms);
        procfix_pause_ms(20);
    }
    return procfix_now_ms() - t0;
}

/* poll worker p until it holds a chunk (up to ms); whether it did. Not asserted: a chunk
 * may be done before the poll sees it, and the test goes on either way */
static bool holds_chunk(const procfix_t *p, int ms)
{
    int64_t deadline = procfix_now_ms() + ms;
    double v = 0;
    while (procfix_stat_get(&v, p->addr, "rollout", "chunk_open") != 0 || v < 1) {
        if (procfix_now_ms() > deadline) {
            return false;
        }
        procfix_pause_ms(5);
    }
    return true;
}

static double ln_stat(const world *w, const char *key)
{
    return procfix_stat(w->ln.addr, "learner", key);
}

Test(members, replicas_join_leave_die_and_pause_and_every_step_gets_exactly_r_branches)
{
    world w = {.seq = 1};
    start_modelserver(&w.ms);
    start_learner(&w.ln, w.ms.addr);
    cr_assert_eq(rpc_client_init(&w.ms_cl, w.ms.addr, NULL), 0);
    cr_assert_eq(rpc_client_init(&w.ln_cl, w.ln.addr, NULL), 0);
    cr_assert_eq(ed_collect(&w.d, "Pendulum-v1", END, 91), 0);
    procfix_t a = {0}, b = {0}, c = {0}, d = {0};

    /* two replicas from the start */
    start_worker(&a, "a", w.ms.addr, w.ln.addr);
    start_worker(&b, "b", w.ms.addr, w.ln.addr);
    procfix_wait_stat(w.ln.addr, "learner", "members", 2, 30000);
    /* the learner must have looked at the (empty) log before the first append: real steps
     * already in the log when it first looks count as met (learner_take_real), so a late
     * first fetch under load would start the quota past INIT and the count below would miss
     * R branches for each step before it */
    procfix_wait_stat(w.ln.addr, "learner", "quota_start", INIT, 30000);
    cr_assert_eq(ln_stat(&w, "quota_start"), INIT, "the chunks start at the first model point");
    append_to(&w, 400);
    wait_quota(&w, 400, 120000, "two members");

    /* a third joins: it takes chunks from the next boundary on */
    start_worker(&c, "c", w.ms.addr, w.ln.addr);
    procfix_wait_stat(w.ln.addr, "learner", "members", 3, 30000);
    append_to(&w, 600);
    wait_quota(&w, 600, 120000, "three members");
    cr_expect_gt(procfix_stat(c.addr, "rollout", "chunks"), 0, "the newcomer took chunks");

    /* a leaves cleanly with work in flight (a chunk waiting for the model of step 600): its
     * chunk is handed back at once */
    append_to(&w, 700);
    int in_flight = holds_chunk(&a, 5000);
    procfix_stop(&a);
    cr_expect_eq(ln_stat(&w, "member_leaves"), 1);
    wait_quota(&w, 700, 120000, "after a clean leave");

    /* b is killed with work in flight: its chunk waits for its lease's end, no longer */
    start_worker(&d, "d", w.ms.addr, w.ln.addr);
    procfix_wait_stat(w.ln.addr, "learner", "members", 3, 30000);
    append_to(&w, 800);
    in_flight += holds_chunk(&b, 5000);
    procfix_kill9(&b);
    int64_t waited = wait_quota(&w, 800, 120000, "after kill -9");
    cr_expect_leq(waited, TTL_MS + 3000, "a vanished member holds the quota %" PRId64 " ms",
                  waited);
    procfix_wait_stat(w.ln.addr, "learner", "member_expiries", 1, 20000);

    /* c is paused past its ttl: d finishes its chunk; c, resumed, is fenced and rejoins */
    append_to(&w, 900);
    in_flight += holds_chunk(&c, 5000);
    cr_assert_eq(kill(c.pid, SIGSTOP), 0);
    waited = wait_quota(&w, 900, 120000, "while c is stopped");
    cr_expect_leq(waited, TTL_MS + 3000, "a paused member holds the quota %" PRId64 " ms", waited);
    procfix_wait_stat(w.ln.addr, "learner", "member_expiries", 2, 20000);
    cr_assert_eq(kill(c.pid, SIGCONT), 0);
    procfix_wait_stat(c.addr, "rollout", "lease_lost", 1, 20000);
    append_to(&w, END);
    wait_quota(&w, END, 120000, "the end");

    /* exactly R per real step: every chunk is done (none open), each step in one chunk,
     * and the branches counted are R x the steps; k = 1, so one transition a branch */
    procfix_wait_stat(w.ln.addr, "learner", "quota_chunks_open", 0, 20000);
    double branches = ln_stat(&w, "quota_branches");
    cr_expect_eq(branches, (double)(R * (END - INIT)), "%.0f branches", branches);
    cr_expect_eq(ln_stat(&w, "quota_chunks_open"), 0);
    cr_expect_eq(ln_stat(&w, "quota_orphans"), 0);
    cr_expect_eq(ln_stat(&w, "synthetic_samples"), (double)(R * (END - INIT)),
                 "nothing stored twice, nothing from a dead lease");
    cr_expect_geq(ln_stat(&w, "push_lease") + ln_stat(&w, "lease_refused"), 1,
                  "the paused member was fenced");
    cr_expect_geq(ln_stat(&w, "member_joins"), 5, "a, b, c, d and c again");
    fprintf(stderr,
            "members: departures_with_a_chunk=%d joins=%.0f leaves=%.0f expiries=%.0f "
            "orphaned=%.0f adopted=%.0f "
            "quota_wait_max_s=%.3f\n",
            in_flight, ln_stat(&w, "member_joins"), ln_stat(&w, "member_leaves"),
            ln_stat(&w, "member_expiries"), ln_stat(&w, "quota_orphaned"),
            ln_stat(&w, "quota_adopted"), ln_stat(&w, "quota_wait_max_s"));

    procfix_stop(&c);
    procfix_stop(&d);
    procfix_stop(&w.ln);
    procfix_stop(&w.ms);
    rpc_client_free(w.ms_cl);
    rpc_client_free(w.ln_cl);
    ed_free(&w.d);
}
