/* tests of the real twig-learner binary (with the real twig-modelserver where real data is
 * needed): validation of pushes and evals, dedup, policy long polls, mirroring, strict
 * pacing with and without synthetic quotas, SIGTERM. */
#include "proc.h"

TestSuite(learner, .init = proc_setup, .fini = proc_teardown, .timeout = 240);

/* a push that must fail with -EINVAL whose message names `field` */
static void expect_invalid(rpc_client_t *cl, tb *b, const char *field)
{
    int rc = push_synth(cl, b, NULL);
    cr_expect_eq(rc, -EINVAL, "rc %s (%s), expected EINVAL naming %s", err_name(rc), err_msg(),
                 field);
    cr_expect(strstr(err_msg(), field) != NULL, "'%s' does not name %s", err_msg(), field);
}

Test(learner, bad_pushes_get_invalid_argument_duplicates_are_stored_once)
{
    procfix_t lr = {0};
    /* no model server: the mirror waits, the services answer */
    start_learner(&lr, "l", "127.0.0.1:1", NULL);
    rpc_client_t *cl = client_of(&lr);

    tb b;
    tb_make(&b, "rollout-0", 1, 8, 2);
    b.m.model_version = 3;
    b.m.env_id = (char *)"Hopper-v4";
    expect_invalid(cl, &b, "env_id");
    b.m.env_id = (char *)ENV;
    b.m.obs_dim = 4;
    b.m.n_obs = b.m.n_next_obs = 32;
    float big[32] = {0};
    b.m.obs = b.m.next_obs = big;
    expect_invalid(cl, &b, "obs_dim");
    tb_free(&b);
    tb_make(&b, "rollout-0", 1, 8, 2);
    b.m.model_version = 3;
    b.m.act_dim = 2;
    b.m.n_act = 16;
    float act2[16] = {0};
    b.m.act = act2;
    expect_invalid(cl, &b, "act_dim");
    b.m.act_dim = 1;
    b.m.n_act = 5;
    expect_invalid(cl, &b, "act");
    b.m.n_act = 8;
    b.m.act = b.act;
    b.reward[3] = NAN;
    expect_invalid(cl, &b, "reward[3]");
    b.reward[3] = 0;
    b.m.model_version = 0;
    expect_invalid(cl, &b, "model_version");
    b.m.model_version = 3;
    b.m.worker_index = 1;
    expect_invalid(cl, &b, "worker_index");
    b.m.worker_index = 0;
    b.m.n_workers = 2;
    expect_invalid(cl, &b, "n_workers");
    b.m.n_workers = 1;
    b.m.source_id = (char *)"";
    expect_invalid(cl, &b, "source_id");
    b.m.source_id = b.source;

    /* bytes that are no TransitionBatch */
    uint8_t junk[] = {0xff, 0xff, 0xff, 0x0f, 0x12, 0x99};
    uint8_t *out = NULL;
    size_t n_out = 0;
    int rc = rpc_client_unary_bytes(cl, &out, &n_out, "/twig.v1.Learner/PushSynthetic", junk,
                                    sizeof junk, &call_opts);
    cr_expect_eq(rc, -EINVAL, "junk: %s", err_name(rc));
    free(out);

    /* the learner still serves: a good push, then its retry */
    Twig__V1__PushReply *r = NULL;
    cr_assert_eq(push_synth(cl, &b, &r), 0, "%s", err_msg());
    cr_expect_eq(r->accepted, 8);
    cr_expect_not(r->duplicate);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    cr_assert_eq(push_synth(cl, &b, &r), 0);
    cr_expect(r->duplicate);
    cr_expect_eq(r->accepted, 8, "a retry gets the original ack");
    protobuf_c_message_free_unpacked(&r->base, NULL);
    tb_free(&b);
    push_ok(cl, "rollout-0", 2, 5, 1);
    push_ok(cl, "rollout-1", 1, 4, 4);

    Twig__V1__Progress *p = progress_of(cl);
    cr_expect_eq(p->synthetic_samples, 17, "8 + 5 + 4 stored, the retry not");
    cr_expect_eq(p->model_version, 3);
    cr_expect_eq(p->real_steps, 0);
    cr_expect_eq(p->updates, 0);
    protobuf_c_message_free_unpacked(&p->base, NULL);
    cr_expect_eq(stat_of(&lr, "push_rejected"), 9);
    cr_expect_eq(stat_of(&lr, "push_duplicates"), 1);
    cr_expect_eq(stat_of(&lr, "synthetic_stored"), 17);

    /* evaluations: validated, deduped, listed */
    Twig__V1__EvalResult e = TWIG__V1__EVAL_RESULT__INIT;
    e.source_id = (char *)"actor-0";
    e.real_steps = 1000;
    e.policy_version = 1;
    e.episodes = 10;
    e.return_mean = -300.5f;
    e.return_std = 20.0f;
    e.seq = 1;
    ProtobufCMessage *reply = NULL;
    e.episodes = 0;
    rc = rpc_client_unary(cl, &reply, "/twig.v1.Learner/ReportEval", &e.base,
                          &twig__v1__push_reply__descriptor, &call_opts);
    cr_expect_eq(rc, -EINVAL);
    cr_expect(strstr(err_msg(), "episodes"), "%s", err_msg());
    e.episodes = 10;
    e.policy_version = 99;
    rc = rpc_client_unary(cl, &reply, "/twig.v1.Learner/ReportEval", &e.base,
                          &twig__v1__push_reply__descriptor, &call_opts);
    cr_expect_eq(rc, -EINVAL);
    cr_expect(strstr(err_msg(), "policy_version"), "%s", err_msg());
    e.policy_version = 1;
    e.return_mean = NAN;
    rc = rpc_client_unary(cl, &reply, "/twig.v1.Learner/ReportEval", &e.base,
                          &twig__v1__push_reply__descriptor, &call_opts);
    cr_expect_eq(rc, -EINVAL);
    cr_expect(strstr(err_msg(), "return_mean"), "%s", err_msg());
    e.return_mean = -300.5f;
    for (int i = 0; i < 2; i++) {
        rc = rpc_client_unary(cl, &reply, "/twig.v1.Learner/ReportEval", &e.base,
                              &twig__v1__push_reply__descriptor, &call_opts);
        cr_assert_eq(rc, 0, "%s", err_msg());
        cr_expect_eq(((Twig__V1__PushReply *)reply)->duplicate, i == 1);
        protobuf_c_message_free_unpacked(reply, NULL);
    }
    Twig__V1__GetEvalsRequest gq = TWIG__V1__GET_EVALS_REQUEST__INIT;
    rc = rpc_client_unary(cl, &reply, "/twig.v1.Learner/GetEvals", &gq.base,
                          &twig__v1__get_evals_reply__descriptor, &call_opts);
    cr_assert_eq(rc, 0);
    Twig__V1__GetEvalsReply *ge = (Twig__V1__GetEvalsReply *)reply;
    cr_assert_eq(ge->total, 1);
    cr_assert_eq(ge->n_evals, 1);
    cr_expect_str_eq(ge->evals[0]->source_id, "actor-0");
    cr_expect_eq(ge->evals[0]->real_steps, 1000);
    cr_expect_float_eq(ge->evals[0]->return_mean, -300.5f, 1e-6);
    protobuf_c_message_free_unpacked(reply, NULL);
    gq.from_index = 2;
    rc = rpc_client_unary(cl, &reply, "/twig.v1.Learner/GetEvals", &gq.base,
                          &twig__v1__get_evals_reply__descriptor, &call_opts);
    cr_expect_eq(rc, -EINVAL);

    /* the first policy is there at once; nothing newer: NO_VERSION after the long poll */
    Twig__V1__GetWeightsReply *w = get_policy(cl, 0, 0);
    cr_assert_not_null(w->blob);
    cr_expect_eq(w->blob->version, 1);
    cr_expect_eq(w->blob->kind, TWIG__V1__WEIGHT_KIND__WEIGHT_KIND_POLICY);
    cr_expect_str_eq(w->blob->env_id, ENV);
    protobuf_c_message_free_unpacked(&w->base, NULL);
    int64_t t0 = procfix_now_ms();
    w = get_policy(cl, 1, 300);
    int64_t waited = procfix_now_ms() - t0;
    cr_expect_null(w->blob);
    cr_expect_eq(w->empty_reason, TWIG__V1__EMPTY_REASON__EMPTY_REASON_NO_VERSION);
    cr_expect_geq(waited, 250, "the long poll waited %lld ms", (long long)waited);
    protobuf_c_message_free_unpacked(&w->base, NULL);

    cr_expect_eq(rpc_health_check(lr.addr, "twig.v1.Learner", 5000), RPC_HEALTH_SERVING);
    cr_expect_eq(rpc_health_check(lr.addr, "twig.v1.Stats", 5000), RPC_HEALTH_SERVING);
    rpc_client_free(cl);
    procfix_stop(&lr);
}

/* poll Progress while the learner trains towards real steps and updates, checking the
 * strict bound each time */
static void expect_strict_until(rpc_client_t *cl, uint64_t real, uint64_t updates, uint64_t init,
                                double utd, int ms)
{
    int64_t deadline = procfix_now_ms() + ms;
    for (;;) {
        Twig__V1__Progress *p = progress_of(cl);
        uint64_t bound =
            p->real_steps > init ? (uint64_t)(utd * (double)(p->real_steps - init)) : 0;
        cr_assert_leq(p->updates, bound, "updates %" PRIu64 " > utd x (real %" PRIu64 " - init)",
                      p->updates, p->real_steps);
        bool done = p->real_steps >= real && p->updates >= updates;
        uint64_t u = p->updates, r = p->real_steps;
        protobuf_c_message_free_unpacked(&p->base, NULL);
        if (done) {
            return;
        }
        cr_assert(procfix_now_ms() < deadline,
                  "not reached in %d ms: updates %" PRIu64 " real %" PRIu64, ms, u, r);
        procfix_pause_ms(10);
    }
}

Test(learner, mirrors_the_real_log_and_strict_updates_reach_utd_times_real_steps_exactly)
{
    procfix_t ms = {0}, lr = {0};
    start_modelserver(&ms, "ms");
    rpc_client_t *mcl = client_of(&ms);
    append_real(mcl, "actor-0", 1, 120); /* some data before the learner starts */
    const char *sets[] = {"pacing=strict",
                          "utd=3",
                          "init_steps=100",
                          "rollouts_per_step=0",
                          "learner.policy_publish_every=50",
                          "learner.checkpoint_every=0",
                          NULL};
    start_learner(&lr, "l", ms.addr, sets);
    rpc_client_t *cl = client_of(&lr);
    expect_strict_until(cl, 120, 60, 100, 3, 60000);
    for (uint64_t s = 2; s <= 5; s++) {
        append_real(mcl, "actor-0", s, 45);
    }
    expect_strict_until(cl, 300, 600, 100, 3, 120000);
    /* every 50 updates a version, after the first one (published at start) */
    wait_stat(&lr, "policy_version", 13, 10000);
    /* it stops exactly at the bound: the count stays while no real data comes */
    for (int i = 0; i < 20; i++) {
        Twig__V1__Progress *p = progress_of(cl);
        cr_expect_eq(p->updates, 600);
        cr_expect_eq(p->real_steps, 300);
        cr_expect_float_eq(p->achieved_utd, 3.0f, 1e-6);
        cr_expect_eq(p->learn_start, 100);
        cr_expect_eq(p->policy_version, 1 + 600 / 50);
        protobuf_c_message_free_unpacked(&p->base, NULL);
        procfix_pause_ms(10);
    }
    cr_expect_eq(stat_of(&lr, "real_replay_size"), 300, "every real step mirrored once");
    cr_expect_eq(stat_of(&lr, "log_end"), 300);
    /* a newer policy comes out of a long poll */
    Twig__V1__GetWeightsReply *w = get_policy(cl, 1, 1000);
    cr_assert_not_null(w->blob);
    cr_expect_eq(w->blob->version, 13);
    protobuf_c_message_free_unpacked(&w->base, NULL);
    rpc_client_free(cl);
    procfix_stop(&lr);
    rpc_client_free(mcl);
    procfix_stop(&ms);
}

Test(learner, strict_waits_for_the_synthetic_quota_of_each_real_step)
{
    procfix_t ms = {0}, lr = {0};
    start_modelserver(&ms, "ms");
    const char *sets[] = {"pacing=strict",
                          "utd=2",
                          "init_steps=100",
                          "rollouts_per_step=10",
                          "n_rollout=1",
                          "learner.checkpoint_every=0",
                          NULL};
    start_learner(&lr, "l", ms.addr, sets);
    rpc_client_t *cl = client_of(&lr);
    rpc_client_t *mcl = client_of(&ms);
    /* the learner's first look at the log finds it empty: quotas count from init_steps */
    wait_stat(&lr, "rollout_quota_done", 100, 20000); /* it reached the model server */
    for (uint64_t s = 1; s <= 3; s++) {
        append_real(mcl, "actor-0", s, 50);
    }
    Twig__V1__Progress *p = wait_reached(cl, 150, 0, 30000, "mirror");
    protobuf_c_message_free_unpacked(&p->base, NULL);
    /* real data for 50 learning steps, no branches: nothing may run */
    for (int i = 0; i < 10; i++) {
        p = progress_of(cl);
        cr_expect_eq(p->updates, 0);
        cr_expect_eq(p->rollout_quota_done, 100);
        protobuf_c_message_free_unpacked(&p->base, NULL);
        procfix_pause_ms(10);
    }
    /* the worker's watermark moves to 110, then 120: 20 real steps have their branches */
    push_ok(cl, "rollout-0", 1, 300, 110);
    push_ok(cl, "rollout-0", 2, 100, 120);
    p = wait_reached(cl, 150, 40, 60000, "quota 120");
    cr_expect_eq(p->rollout_quota_done, 120);
    protobuf_c_message_free_unpacked(&p->base, NULL);
    for (int i = 0; i < 10; i++) {
        p = progress_of(cl);
        cr_expect_eq(p->updates, 40, "2 x (120 - 100)");
        protobuf_c_message_free_unpacked(&p->base, NULL);
        procfix_pause_ms(10);
    }
    /* quota beyond the real steps: the real steps bound again */
    push_ok(cl, "rollout-0", 3, 1000, 10000);
    p = wait_reached(cl, 150, 100, 60000, "real 150");
    cr_expect_eq(p->updates, 100);
    cr_expect_eq(p->synthetic_samples, 1400);
    protobuf_c_message_free_unpacked(&p->base, NULL);
    rpc_client_free(cl);
    rpc_client_free(mcl);
    procfix_stop(&lr);
    procfix_stop(&ms);
}

Test(learner, async_trains_past_the_ratio_and_reports_it)
{
    procfix_t ms = {0}, lr = {0};
    start_modelserver(&ms, "ms");
    rpc_client_t *mcl = client_of(&ms);
    append_real(mcl, "actor-0", 1, 60);
    const char *sets[] = {"pacing=async", "utd=1", "init_steps=50", "learner.checkpoint_every=0",
                          NULL};
    start_learner(&lr, "l", ms.addr, sets);
    rpc_client_t *cl = client_of(&lr);
    /* 10 x the strict bound of 10 */
    Twig__V1__Progress *p = wait_reached(cl, 60, 100, 60000, "async");
    cr_expect_gt(p->achieved_utd, 5.0f);
    protobuf_c_message_free_unpacked(&p->base, NULL);
    rpc_client_free(cl);
    rpc_client_free(mcl);
    procfix_stop(&lr);
    procfix_stop(&ms);
}

Test(learner, bad_config_exits_2_naming_the_key)
{
    char log[512];
    snprintf(log, sizeof log, "%s/bad.log", tmp);
    const char *argv[] = {LEARNER_BIN, "--set", "learner.batch_size=0", NULL};
    cr_expect_eq(procfix_exit_code(procfix_spawn(argv, log), 20000), 2);
    FILE *f = fopen(log, "r");
    cr_assert_not_null(f);
    char buf[1024] = {0};
    cr_expect_gt(fread(buf, 1, sizeof buf - 1, f), 0);
    fclose(f);
    cr_expect(strstr(buf, "batch_size") != NULL, "stderr: %s", buf);
    const char *argv2[] = {LEARNER_BIN, "--learner.nonsense", "1", NULL};
    cr_expect_eq(procfix_exit_code(procfix_spawn(argv2, log), 20000), 2);
}
