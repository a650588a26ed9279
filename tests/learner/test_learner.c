/* tests of the real twig-learner binary (with the real twig-modelserver where real data is
 * needed): validation of pushes and evals, dedup, policy long polls, mirroring, strict
 * pacing with and without synthetic quotas, SIGTERM. */
#include "proc.h"
#include "tests/shims/slow_io.h"

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
    /* pushes come from members: b pushes as the member "rollout-0" from here on */
    uint64_t member = member_of(cl, "rollout-0")->id;
    b.m.member_id = 0;
    b.m.source_id = (char *)"rollout-0@m1";
    expect_invalid(cl, &b, "member_id");
    b.m.member_id = member;
    expect_invalid(cl, &b, "pushes as 'rollout-0@m"); /* a live member under another name */
    b.m.member_id = member + 1000;                    /* nobody's lease */
    int lrc = push_synth(cl, &b, NULL);
    cr_expect_eq(lrc, TWIG_ELEASE, "%s %s", err_name(lrc), err_msg());
    cr_expect(strstr(err_msg(), "lease expired") != NULL, "%s", err_msg());
    b.m.member_id = member;
    b.m.source_id = (char *)"";
    expect_invalid(cl, &b, "source_id");
    b.m.source_id = (char *)"rollout 0\" x=1";
    expect_invalid(cl, &b, "source_id");
    b.m.source_id = b.source;
    /* credit for a chunk nobody took */
    b.m.chunk_id = 5;
    b.m.chunk_branches = 1;
    expect_invalid(cl, &b, "chunk_id 5 is no open chunk");
    b.m.chunk_id = 0;
    b.m.chunk_branches = 0;

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
    push_ok(cl, "rollout-0", 2, 5);
    push_ok(cl, "rollout-1", 1, 4);

    Twig__V1__Progress *p = progress_of(cl);
    cr_expect_eq(p->synthetic_samples, 17, "8 + 5 + 4 stored, the retry not");
    cr_expect_eq(p->model_version, 3);
    cr_expect_eq(p->real_steps, 0);
    cr_expect_eq(p->updates, 0);
    protobuf_c_message_free_unpacked(&p->base, NULL);
    cr_expect_eq(stat_of(&lr, "push_rejected"), 12);
    cr_expect_eq(stat_of(&lr, "push_lease"), 1);
    cr_expect_eq(stat_of(&lr, "members"), 2);
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

    /* all this while the model server is missing: live, serving, but not ready */
    cr_expect_eq(rpc_health_check(lr.addr, RPC_HEALTH_LIVENESS, 5000), RPC_HEALTH_SERVING);
    cr_expect_eq(rpc_health_check(lr.addr, "twig.v1.Learner", 5000), RPC_HEALTH_NOT_SERVING);
    cr_expect_eq(rpc_health_check(lr.addr, "twig.v1.Stats", 5000), RPC_HEALTH_NOT_SERVING);
    rpc_client_free(cl);
    procfix_stop(&lr);
}

/* ---- dedup: nothing acknowledged that was not stored (docs/design.md "Dedup") ---- */

/* push (source, seq) of count transitions with source_epoch epoch; the rc, and on success
 * the reply's duplicate flag and accepted count */
static int push_as(rpc_client_t *cl, const char *source, uint64_t seq, uint64_t epoch,
                   uint32_t count, bool *dup, uint64_t *accepted)
{
    tb b;
    tb_make(&b, source, seq, count, 3);
    b.m.model_version = 1;
    b.m.source_epoch = epoch;
    Twig__V1__PushReply *r = NULL;
    int rc = push_synth(cl, &b, &r);
    if (rc == 0) {
        *dup = r->duplicate;
        *accepted = r->accepted;
        protobuf_c_message_free_unpacked(&r->base, NULL);
    }
    tb_free(&b);
    return rc;
}

/* a push that must be refused with rc want, its message naming what */
static void expect_push_refused(rpc_client_t *cl, const char *source, uint64_t seq, uint64_t epoch,
                                int want, const char *what)
{
    bool dup = false;
    uint64_t acc = 0;
    int rc = push_as(cl, source, seq, epoch, 3, &dup, &acc);
    cr_expect_eq(rc, want, "%s seq %" PRIu64 ": rc %s (%s), dup %d accepted %" PRIu64
                 ", expected %s",
                 source, seq, err_name(rc), err_msg(), (int)dup, acc, err_name(want));
    cr_expect(rc != want || strstr(err_msg(), what), "'%s' does not say '%s'", err_msg(), what);
}

/* a push that must be answered as a duplicate with the original count */
static void expect_push_duplicate(rpc_client_t *cl, const char *source, uint64_t seq,
                                  uint64_t epoch, uint64_t original)
{
    bool dup = false;
    uint64_t acc = 0;
    int rc = push_as(cl, source, seq, epoch, 3, &dup, &acc);
    cr_expect_eq(rc, 0, "%s seq %" PRIu64 ": %s", source, seq, err_msg());
    cr_expect(dup, "%s seq %" PRIu64 " is a duplicate", source, seq);
    cr_expect_eq(acc, original, "the original acknowledgement");
}

static void push_new(rpc_client_t *cl, const char *source, uint64_t seq, uint64_t epoch,
                     uint32_t count)
{
    bool dup = true;
    uint64_t acc = 0;
    int rc = push_as(cl, source, seq, epoch, count, &dup, &acc);
    cr_assert_eq(rc, 0, "%s seq %" PRIu64 ": %s", source, seq, err_msg());
    cr_expect_not(dup);
    cr_expect_eq(acc, count);
}

/* ReportEval of (source, seq); the rc and, on success, the duplicate flag */
static int eval_as(rpc_client_t *cl, const Twig__V1__EvalResult *e, bool *dup)
{
    ProtobufCMessage *reply = NULL;
    int rc = rpc_client_unary(cl, &reply, "/twig.v1.Learner/ReportEval", &e->base,
                              &twig__v1__push_reply__descriptor, &call_opts);
    if (rc == 0) {
        *dup = ((Twig__V1__PushReply *)reply)->duplicate;
        protobuf_c_message_free_unpacked(reply, NULL);
    }
    return rc;
}

static Twig__V1__EvalResult eval_of(const char *source, uint64_t seq)
{
    Twig__V1__EvalResult e = TWIG__V1__EVAL_RESULT__INIT;
    e.source_id = (char *)source;
    e.seq = seq;
    e.real_steps = seq;
    e.policy_version = 1;
    e.episodes = 5;
    e.return_mean = -150.0f;
    e.return_std = 12.5f;
    return e;
}

static uint64_t synthetic_of(rpc_client_t *cl)
{
    Twig__V1__Progress *p = progress_of(cl);
    uint64_t n = p->synthetic_samples;
    protobuf_c_message_free_unpacked(&p->base, NULL);
    return n;
}

Test(learner, a_lower_seq_not_provably_stored_is_refused_never_acknowledged)
{
    procfix_t lr = {0};
    start_learner(&lr, "l", "127.0.0.1:1", NULL);
    rpc_client_t *cl = client_of(&lr);
    const char *w = "rollout-0@1";
    push_new(cl, w, 1, 0, 8);
    push_new(cl, w, 100, 0, 5);
    /* a gap below the newest, never pushed: not stored, so not acknowledged */
    expect_push_refused(cl, w, 50, 0, -EINVAL, "not known to be stored");
    /* 99 below the newest, but seq 1's window slot is still its own: proven */
    expect_push_duplicate(cl, w, 1, 0, 8);
    /* seq 129 takes that slot: seq 1 can no longer be proven and is refused */
    push_new(cl, w, 129, 0, 4);
    expect_push_refused(cl, w, 1, 0, -EINVAL, "seq 1 of source 'rollout-0@1@m");
    expect_push_refused(cl, w, 120, 0, -EINVAL, "newest 129");
    expect_push_duplicate(cl, w, 129, 0, 4);
    cr_expect_eq(synthetic_of(cl), 17, "8 + 5 + 4: no refused push was stored");
    cr_expect_eq(stat_of(&lr, "push_stale"), 3);
    cr_expect_eq(stat_of(&lr, "push_rejected"), 3);
    cr_expect_eq(stat_of(&lr, "push_duplicates"), 2);
    cr_expect_eq(stat_of(&lr, "synthetic_stored"), 17);

    /* ReportEval: the same rule */
    bool dup = true;
    Twig__V1__EvalResult e = eval_of("actor-0", 1);
    cr_assert_eq(eval_as(cl, &e, &dup), 0, "%s", err_msg());
    e = eval_of("actor-0", 129);
    cr_assert_eq(eval_as(cl, &e, &dup), 0, "%s", err_msg());
    cr_expect_not(dup);
    e = eval_of("actor-0", 50);
    int rc = eval_as(cl, &e, &dup);
    cr_expect_eq(rc, -EINVAL, "a gap: %s %s", err_name(rc), err_msg());
    e = eval_of("actor-0", 1);
    rc = eval_as(cl, &e, &dup);
    cr_expect_eq(rc, -EINVAL, "slot taken by 129: %s dup %d", err_name(rc), (int)dup);
    e = eval_of("actor-0", 129);
    cr_assert_eq(eval_as(cl, &e, &dup), 0, "%s", err_msg());
    cr_expect(dup);
    cr_expect_eq(stat_of(&lr, "evals"), 2);
    cr_expect_eq(stat_of(&lr, "eval_rejected"), 2);
    rpc_client_free(cl);
    procfix_stop(&lr);
}

static uint64_t epoch_of(rpc_client_t *cl)
{
    Twig__V1__Progress *p = progress_of(cl);
    uint64_t e = p->source_epoch;
    protobuf_c_message_free_unpacked(&p->base, NULL);
    return e;
}

Test(learner, a_full_source_table_evicts_the_quietest_once_quiet_and_fences_it)
{
    procfix_t lr = {0};
    const char *sets[] = {"learner.max_sources=2", "learner.source_quiet_samples=100", NULL};
    start_learner(&lr, "l", "127.0.0.1:1", sets);
    rpc_client_t *cl = client_of(&lr);
    cr_expect_eq(epoch_of(cl), 0);
    push_new(cl, "a", 1, 0, 10); /* admitted at progress 0 */
    push_new(cl, "b", 1, 0, 10); /* admitted at 10 */
    /* full, and a has been quiet for 10 samples only: refused, retry later, counted */
    expect_push_refused(cl, "c", 1, epoch_of(cl), TWIG_EFULL, "'c@m");
    cr_expect_eq(stat_of(&lr, "push_table_full"), 1);
    cr_expect_eq(stat_of(&lr, "push_rejected"), 1);
    cr_expect_eq(stat_of(&lr, "sources"), 2);
    /* b goes on; a stays quiet for 100 samples: now c evicts it */
    push_new(cl, "b", 2, 0, 100);
    uint64_t e = epoch_of(cl);
    cr_expect_eq(e, 120);
    push_new(cl, "c", 1, e, 10);
    cr_expect_eq(stat_of(&lr, "source_evictions"), 1);
    cr_expect_eq(stat_of(&lr, "source_fence"), 1, "above a's epoch, 0");
    /* a's retry and its next push: a was forgotten, its epoch 0 is below the fence */
    expect_push_refused(cl, "a", 1, 0, TWIG_EFENCED, "below the fence");
    expect_push_refused(cl, "a", 2, 0, TWIG_EFENCED, "start a new identity");
    cr_expect_eq(stat_of(&lr, "push_fenced"), 2);
    /* a new identity at the current epoch: b (last push at 20) is the quietest by 110 */
    e = epoch_of(cl);
    cr_expect_eq(e, 130);
    push_new(cl, "a@2", 1, e, 10);
    cr_expect_eq(stat_of(&lr, "source_fence"), 11, "above b's epoch, 10");
    expect_push_refused(cl, "b", 2, 0, TWIG_EFENCED, "'b@m");
    expect_push_duplicate(cl, "c", 1, 120, 10);
    expect_push_duplicate(cl, "a@2", 1, 130, 10);
    cr_expect_eq(synthetic_of(cl), 140, "10 + 10 + 100 + 10 + 10, nothing refused stored");
    cr_expect_eq(epoch_of(cl), 140);
    cr_expect_eq(stat_of(&lr, "push_rejected"), 4);
    cr_expect_eq(stat_of(&lr, "push_fenced"), 3);
    cr_expect_eq(stat_of(&lr, "sources"), 2);
    rpc_client_free(cl);
    procfix_stop(&lr);
}

Test(learner, the_default_table_of_4096_sources_counts_the_refusal_of_one_more)
{
    procfix_t lr = {0};
    /* 4096 members at once, long-lived: the dedup table is what is measured */
    const char *sets[] = {"learner.max_members=4096", "learner.lease_ttl_ms=600000", NULL};
    start_learner(&lr, "l", "127.0.0.1:1", sets);
    rpc_client_t *cl = client_of(&lr);
    char id[32];
    for (int i = 0; i < 4096; i++) {
        snprintf(id, sizeof id, "rollout-0@%x", i);
        push_new(cl, id, 1, 0, 1);
    }
    /* one member leaves (its dedup identity stays, bounded apart); nobody has been quiet
     * for the default 1,000,000 samples */
    cr_assert_eq(member_leave_name(cl, "rollout-0@0"), 0, "%s", err_msg());
    expect_push_refused(cl, "rollout-0@fffff", 1, 4096, TWIG_EFULL, "4096 sources");
    cr_expect_eq(stat_of(&lr, "push_rejected"), 1, "the refusal is counted");
    cr_expect_eq(stat_of(&lr, "push_table_full"), 1);
    cr_expect_eq(stat_of(&lr, "sources"), 4096);
    expect_push_duplicate(cl, "rollout-0@0", 1, 0, 1);
    rpc_client_free(cl);
    procfix_stop(&lr);
}

/* ---- GetPolicy, evaluations, start-up ---- */

Test(learner, get_policy_says_no_version_before_the_clients_deadline)
{
    procfix_t lr = {0};
    start_learner(&lr, "l", "127.0.0.1:1", NULL);
    rpc_client_t *cl = client_of(&lr);
    /* a wait longer than the deadline: "nothing newer" comes RPC_POLL_MARGIN_MS before the
     * deadline (an answer at the deadline races the client's timer: DEADLINE_EXCEEDED, or
     * a reply a few ms later) */
    for (int i = 0; i < 3; i++) {
        Twig__V1__GetWeightsRequest q = TWIG__V1__GET_WEIGHTS_REQUEST__INIT;
        q.have_version = 1;
        q.wait_ms = 5000;
        const int deadline = 400;
        rpc_call_opts o = {.deadline_ms = deadline};
        ProtobufCMessage *reply = NULL;
        int64_t t0 = procfix_now_ms();
        int rc = rpc_client_unary(cl, &reply, "/twig.v1.Learner/GetPolicy", &q.base,
                                  &twig__v1__get_weights_reply__descriptor, &o);
        int64_t took = procfix_now_ms() - t0;
        cr_assert_eq(rc, 0, "GetPolicy: %s %s", err_name(rc), err_msg());
        const Twig__V1__GetWeightsReply *w = (const Twig__V1__GetWeightsReply *)reply;
        cr_expect_null(w->blob);
        cr_expect_eq(w->empty_reason, TWIG__V1__EMPTY_REASON__EMPTY_REASON_NO_VERSION);
        cr_expect(took >= deadline - 3 * RPC_POLL_MARGIN_MS && took <= deadline - 15,
                  "answered %lld ms after the call, the deadline is %d ms", (long long)took,
                  deadline);
        protobuf_c_message_free_unpacked(reply, NULL);
    }
    /* have_version 0: version 1 is newer, at once */
    Twig__V1__GetWeightsReply *g = get_policy(cl, 0, 5000);
    cr_assert_not_null(g->blob);
    cr_expect_eq(g->blob->version, 1);
    protobuf_c_message_free_unpacked(&g->base, NULL);
    rpc_client_free(cl);
    procfix_stop(&lr);
}

/* GetPolicy replies share one encoding per version: many calls for version 1, one pack */
Test(learner, get_policy_packs_each_version_once_however_many_calls_get_it)
{
    procfix_t lr = {0};
    start_learner(&lr, "l", "127.0.0.1:1", NULL);   /* no model server: version 1 only */
    rpc_client_t *cl = client_of(&lr);
    const int calls = 6;
    for (int i = 0; i < calls; i++) {
        Twig__V1__GetWeightsReply *g = get_policy(cl, 0, 5000);
        cr_assert_not_null(g->blob, "call %d", i);
        cr_expect_eq(g->blob->version, 1);
        cr_expect_eq(g->empty_reason, TWIG__V1__EMPTY_REASON__EMPTY_REASON_NONE);
        protobuf_c_message_free_unpacked(&g->base, NULL);
    }
    cr_expect_eq(stat_of(&lr, "policy_version"), 1.0);
    cr_expect_eq(stat_of(&lr, "policy_reply_packs"), 1.0, "packed %g times for %d calls",
                 stat_of(&lr, "policy_reply_packs"), calls);
    rpc_client_free(cl);
    procfix_stop(&lr);
}

/* an evaluation that must be refused with want, its message naming field */
static void expect_eval_refused(rpc_client_t *cl, const Twig__V1__EvalResult *e, int want,
                                const char *field)
{
    bool dup = false;
    int rc = eval_as(cl, e, &dup);
    cr_expect_eq(rc, want, "rc %s (%s), expected %s naming %s", err_name(rc), err_msg(),
                 err_name(want), field);
    cr_expect(strstr(err_msg(), field) != NULL, "'%s' does not name %s", err_msg(), field);
}

Test(learner, report_eval_refuses_garbage_and_keeps_at_most_the_runs_bound)
{
    procfix_t lr = {0};
    /* 3000 steps, an eval every 1000, one actor: 3 + 2 evaluations at most */
    const char *sets[] = {"real_steps=3000", "eval_every=1000", "n_actors=1", NULL};
    start_learner(&lr, "l", "127.0.0.1:1", sets);
    rpc_client_t *cl = client_of(&lr);
    Twig__V1__EvalResult e = eval_of("actor-0", 1000);
    e.real_steps = UINT64_MAX;
    expect_eval_refused(cl, &e, -EINVAL, "real_steps");
    e = eval_of("actor-0", 1000);
    e.return_mean = 3.4e38f;
    expect_eval_refused(cl, &e, -EINVAL, "return_mean");
    e = eval_of("actor-0", 1000);
    e.return_std = 3.4e38f;
    expect_eval_refused(cl, &e, -EINVAL, "return_std");
    e = eval_of("actor-0", 1000);
    e.episodes = UINT32_MAX;
    expect_eval_refused(cl, &e, -EINVAL, "episodes");
    e = eval_of("actor 0\"\nevent=forged", 1000);
    expect_eval_refused(cl, &e, -EINVAL, "source_id");
    e = eval_of("actor-0", 0);
    expect_eval_refused(cl, &e, -EINVAL, "seq");
    e = eval_of("actor-0", 3001);
    e.real_steps = 3000;
    expect_eval_refused(cl, &e, -EINVAL, "seq");
    /* the run's own: stored; a second source is one more than n_actors */
    bool dup = true;
    for (uint64_t s = 1000; s <= 1004; s++) {
        e = eval_of("actor-0", s);
        cr_assert_eq(eval_as(cl, &e, &dup), 0, "seq %" PRIu64 ": %s", s, err_msg());
        cr_expect_not(dup);
    }
    e = eval_of("actor-1", 1000);
    expect_eval_refused(cl, &e, TWIG_EFULL, "'actor-1' is new");
    /* the bound: 5 kept (3 multiples, the final and the initial), the next is refused */
    e = eval_of("actor-0", 2000);
    expect_eval_refused(cl, &e, TWIG_EFULL, "the most this run keeps");
    e = eval_of("actor-0", 1004);
    cr_assert_eq(eval_as(cl, &e, &dup), 0, "a retry is still answered: %s", err_msg());
    cr_expect(dup);
    cr_expect_eq(stat_of(&lr, "evals"), 5);
    cr_expect_eq(stat_of(&lr, "evals_bound"), 5);
    cr_expect_eq(stat_of(&lr, "eval_rejected"), 9);
    Twig__V1__GetEvalsRequest gq = TWIG__V1__GET_EVALS_REQUEST__INIT;
    ProtobufCMessage *reply = NULL;
    cr_assert_eq(rpc_client_unary(cl, &reply, "/twig.v1.Learner/GetEvals", &gq.base,
                                  &twig__v1__get_evals_reply__descriptor, &call_opts),
                 0);
    const Twig__V1__GetEvalsReply *ge = (const Twig__V1__GetEvalsReply *)reply;
    cr_expect_eq(ge->total, 5);
    for (size_t i = 0; i < ge->n_evals; i++) {
        cr_expect_str_eq(ge->evals[i]->source_id, "actor-0");
        cr_expect_leq(ge->evals[i]->real_steps, 3000);
    }
    protobuf_c_message_free_unpacked(reply, NULL);
    rpc_client_free(cl);
    procfix_stop(&lr);
    /* no line of the log was forged by a source id */
    FILE *f = fopen(lr.log_file, "r");
    cr_assert_not_null(f);
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        cr_expect(strncmp(line, "event=forged", 12) != 0, "a forged line: %s", line);
    }
    fclose(f);
}

/* how many lines of path contain needle */
static int log_count(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s", path);
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        n += strstr(line, needle) != NULL;
    }
    fclose(f);
    return n;
}

Test(learner, a_malformed_modelserver_addr_exits_2_naming_the_option_and_value)
{
    static const char *const bad[] = {"nonsense", "127.0.0.1:0", "bad host!:7101",
                                       "127.0.0.1:70000"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char log[512], set[256], dir[600];
        snprintf(log, sizeof log, "%s/bad-addr-%zu.log", tmp, i);
        snprintf(set, sizeof set, "modelserver_addr=%s", bad[i]);
        snprintf(dir, sizeof dir, "learner.checkpoint_dir=%s/bad-addr.ckpt", tmp);
        const char *argv[] = {LEARNER_BIN, "--set", set, "--set", dir, "--set",
                              "learner.listen=127.0.0.1:0", NULL};
        cr_expect_eq(procfix_exit_code(procfix_spawn(argv, log), 20000), 2, "%s", bad[i]);
        cr_expect_eq(log_count(log, "modelserver_addr"), 1, "%s: the option is named", bad[i]);
        cr_expect_geq(log_count(log, bad[i]), 1, "%s: the value is named", bad[i]);
    }
    char log[512];
    snprintf(log, sizeof log, "%s/bad-addr-0.log", tmp);
    cr_expect_eq(log_count(log, "modelserver_addr: address 'nonsense' is not HOST:PORT"), 1,
                 "and what is wrong with it");
}

Test(learner, an_unreachable_model_server_is_live_not_ready_until_it_comes_up)
{
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", procfix_free_port());
    procfix_t lr = {0}, ms = {0};
    const char *sets[] = {"pacing=strict", "utd=1", "init_steps=50", "rollouts_per_step=0",
                          "learner.checkpoint_every=0", NULL};
    start_learner(&lr, "l", addr, sets);
    /* alive and answering, but it cannot do its job: not ready, and it keeps trying */
    cr_expect_eq(rpc_health_check(lr.addr, RPC_HEALTH_LIVENESS, 5000), RPC_HEALTH_SERVING);
    cr_expect_eq(rpc_health_check(lr.addr, RPC_HEALTH_READINESS, 5000), RPC_HEALTH_NOT_SERVING);
    cr_expect_eq(rpc_health_check(lr.addr, "", 5000), RPC_HEALTH_NOT_SERVING);
    cr_expect_eq(rpc_health_check(lr.addr, "twig.v1.Learner", 5000), RPC_HEALTH_NOT_SERVING);
    cr_expect_eq(stat_of(&lr, "ready"), 0);
    rpc_client_t *cl = client_of(&lr);
    cr_expect_eq(synthetic_of(cl), 0, "it serves meanwhile");
    cr_expect(procfix_runs_for(lr.pid, 500), "a missing model server is a wait");

    /* the model server comes up on that address: the same learner becomes ready, mirrors */
    start_modelserver_at(&ms, "ms", addr);
    cr_assert_eq(rpc_wait_serving(lr.addr, 30000), 0, "ready: %s", err_msg());
    cr_expect_eq(stat_of(&lr, "ready"), 1);
    rpc_client_t *mcl = client_of(&ms);
    append_real(mcl, "actor-0", 1, 100);
    Twig__V1__Progress *p = wait_reached(cl, 100, 50, 60000, "mirrored and trained");
    protobuf_c_message_free_unpacked(&p->base, NULL);
    cr_expect(procfix_runs_for(lr.pid, 0), "never restarted");
    rpc_client_free(mcl);
    rpc_client_free(cl);
    procfix_stop(&lr);
    procfix_stop(&ms);
    cr_expect_eq(log_count(lr.log_file, "event=not_ready reason=modelserver_unreachable"), 1,
                 "the change logged once");
    cr_expect_eq(log_count(lr.log_file, "event=ready reason=modelserver_reached"), 1);
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

/* take member name's chunk with have mirrored steps and fill it in one push of seq */
static void fill_chunk(rpc_client_t *cl, const char *name, uint64_t seq, uint64_t have,
                       uint64_t want_begin, uint64_t want_end)
{
    Twig__V1__ChunkReply *c = take_chunk(cl, name, have, 10);
    cr_assert_neq(c->chunk_id, 0, "a chunk from %" PRIu64, want_begin);
    cr_expect_eq(c->step_begin, want_begin);
    cr_expect_eq(c->step_end, want_end);
    cr_expect_eq(c->chunk_branches, (want_end - want_begin) * 10);
    cr_expect_eq(c->done, 0);
    push_chunk(cl, name, seq, (uint32_t)c->chunk_branches, c->chunk_id, c->chunk_branches);
    protobuf_c_message_free_unpacked(&c->base, NULL);
}

Test(learner, strict_waits_for_the_synthetic_quota_of_each_real_step)
{
    procfix_t ms = {0}, lr = {0};
    start_modelserver(&ms, "ms");
    const char *sets[] = {"pacing=strict",
                          "utd=2",
                          "init_steps=100",
                          "model_train_freq=100",
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
    /* a member's chunks of 10 steps x 10 branches: the quota moves to 110, then 120 */
    fill_chunk(cl, "w", 1, 150, 100, 110);
    fill_chunk(cl, "w", 2, 150, 110, 120);
    p = wait_reached(cl, 150, 40, 60000, "quota 120");
    cr_expect_eq(p->rollout_quota_done, 120);
    protobuf_c_message_free_unpacked(&p->base, NULL);
    for (int i = 0; i < 10; i++) {
        p = progress_of(cl);
        cr_expect_eq(p->updates, 40, "2 x (120 - 100)");
        protobuf_c_message_free_unpacked(&p->base, NULL);
        procfix_pause_ms(10);
    }
    /* a second member half-fills a chunk and leaves: its remainder goes to the first */
    Twig__V1__ChunkReply *c = take_chunk(cl, "v", 150, 10);
    cr_assert_eq(c->step_begin, 120);
    push_chunk(cl, "v", 1, 40, c->chunk_id, 40);
    uint64_t half = c->chunk_id;
    protobuf_c_message_free_unpacked(&c->base, NULL);
    cr_assert_eq(member_leave_name(cl, "v"), 0, "%s", err_msg());
    cr_expect_eq(stat_of(&lr, "quota_orphans"), 1);
    c = take_chunk(cl, "w", 150, 10);
    cr_expect_eq(c->chunk_id, half, "the orphan goes first");
    cr_expect_eq(c->done, 40);
    cr_expect_eq(c->chunk_branches, 100);
    /* more than the rest is refused, the rest exactly is taken */
    tb b;
    tb_make(&b, "w", 3, 61, 5);
    b.m.model_version = 1;
    b.m.chunk_id = half;
    b.m.chunk_branches = 61;
    cr_expect_eq(push_synth(cl, &b, NULL), -EINVAL, "61 > 60 left");
    tb_free(&b);
    push_chunk(cl, "w", 4, 60, half, 60);
    protobuf_c_message_free_unpacked(&c->base, NULL);
    /* the last chunks: the real steps bound again */
    fill_chunk(cl, "w", 5, 150, 130, 140);
    fill_chunk(cl, "w", 6, 150, 140, 150);
    c = take_chunk(cl, "w", 150, 10);
    cr_expect_eq(c->chunk_id, 0, "no real steps past 150 yet");
    protobuf_c_message_free_unpacked(&c->base, NULL);
    p = wait_reached(cl, 150, 100, 60000, "real 150");
    cr_expect_eq(p->updates, 100);
    cr_expect_eq(p->rollout_quota_done, 150);
    cr_expect_eq(p->synthetic_samples, 500, "10 branches for each of the 50 steps");
    protobuf_c_message_free_unpacked(&p->base, NULL);
    cr_expect_eq(stat_of(&lr, "quota_branches"), 500);
    cr_expect_eq(stat_of(&lr, "quota_orphaned"), 1);
    cr_expect_eq(stat_of(&lr, "quota_adopted"), 1);
    cr_expect_eq(stat_of(&lr, "member_leaves"), 1);
    rpc_client_free(cl);
    rpc_client_free(mcl);
    procfix_stop(&lr);
    procfix_stop(&ms);
}

Test(learner, steps_before_the_first_model_wait_for_the_first_chunk)
{
    /* init_steps 150, models every 100: the first one at 200, so steps 150..200 owe no
     * branches, yet no update may run before the first branches (MBPO never trains on an
     * empty model pool) */
    procfix_t ms = {0}, lr = {0};
    start_modelserver(&ms, "ms");
    const char *sets[] = {"pacing=strict", "utd=2", "init_steps=150", "model_train_freq=100",
                          "rollouts_per_step=10", "learner.checkpoint_every=0", NULL};
    start_learner(&lr, "l", ms.addr, sets);
    rpc_client_t *cl = client_of(&lr);
    rpc_client_t *mcl = client_of(&ms);
    wait_stat(&lr, "rollout_quota_done", 150, 20000);
    for (uint64_t s = 1; s <= 5; s++) {
        append_real(mcl, "actor-0", s, 50);
    }
    Twig__V1__Progress *p = wait_reached(cl, 250, 0, 30000, "mirror");
    protobuf_c_message_free_unpacked(&p->base, NULL);
    cr_expect_eq(stat_of(&lr, "quota_start"), 200);
    for (int i = 0; i < 10; i++) {
        p = progress_of(cl);
        cr_expect_eq(p->updates, 0, "no branches yet");
        cr_expect_eq(p->rollout_quota_done, 150);
        protobuf_c_message_free_unpacked(&p->base, NULL);
        procfix_pause_ms(10);
    }
    fill_chunk(cl, "w", 1, 250, 200, 210);
    p = wait_reached(cl, 250, 120, 60000, "quota 210");
    cr_expect_eq(p->rollout_quota_done, 210);
    cr_expect_eq(p->updates, 120, "2 x (210 - 150)");
    protobuf_c_message_free_unpacked(&p->base, NULL);
    rpc_client_free(cl);
    rpc_client_free(mcl);
    procfix_stop(&lr);
    procfix_stop(&ms);
}

Test(learner, a_vanished_members_half_done_chunk_goes_to_another_after_its_ttl)
{
    procfix_t ms = {0}, lr = {0};
    start_modelserver(&ms, "ms");
    const char *sets[] = {"pacing=strict", "utd=1", "init_steps=100", "model_train_freq=100",
                          "rollouts_per_step=10", "learner.checkpoint_every=0",
                          "learner.lease_ttl_ms=400", NULL};
    start_learner(&lr, "l", ms.addr, sets);
    rpc_client_t *cl = client_of(&lr);
    rpc_client_t *mcl = client_of(&ms);
    wait_stat(&lr, "rollout_quota_done", 100, 20000);
    append_real(mcl, "actor-0", 1, 120);
    Twig__V1__Progress *p = wait_reached(cl, 120, 0, 30000, "mirror");
    protobuf_c_message_free_unpacked(&p->base, NULL);
    /* v takes [100, 110), stores 30 of its 100 branches, then is never heard again */
    Twig__V1__ChunkReply *c = take_chunk(cl, "v", 120, 10);
    cr_assert_eq(c->step_begin, 100);
    uint64_t lost = c->chunk_id;
    push_chunk(cl, "v", 1, 30, lost, 30);
    protobuf_c_message_free_unpacked(&c->base, NULL);
    int64_t t0 = procfix_now_ms();
    wait_stat(&lr, "member_expiries", 1, 10000);
    int64_t took = procfix_now_ms() - t0;
    cr_expect_geq(took, 300, "not before its ttl (%" PRId64 " ms)", took);
    cr_expect_eq(stat_of(&lr, "quota_orphans"), 1);
    cr_expect_eq(stat_of(&lr, "rollout_quota_done"), 100, "the orphan holds the quota");
    /* w gets the rest of v's chunk, not more, and the quota moves */
    c = take_chunk(cl, "w", 120, 10);
    cr_expect_eq(c->chunk_id, lost);
    cr_expect_eq(c->done, 30);
    push_chunk(cl, "w", 1, 70, lost, 70);
    protobuf_c_message_free_unpacked(&c->base, NULL);
    /* v, back from its pause, is fenced: nothing of it is stored */
    tb b;
    tb_make(&b, "v", 2, 5, 7);
    b.m.model_version = 1;
    int rc = push_synth(cl, &b, NULL);
    cr_expect_eq(rc, TWIG_ELEASE, "%s %s", err_name(rc), err_msg());
    tb_free(&b);
    p = wait_reached(cl, 120, 10, 30000, "quota 110");
    cr_expect_eq(p->rollout_quota_done, 110);
    cr_expect_eq(p->synthetic_samples, 100, "30 + 70: exactly 10 a step, v's late push refused");
    protobuf_c_message_free_unpacked(&p->base, NULL);
    cr_expect_eq(stat_of(&lr, "quota_branches"), 100);
    cr_expect_eq(stat_of(&lr, "quota_adopted"), 1);
    rpc_client_free(cl);
    rpc_client_free(mcl);
    procfix_stop(&lr);
    procfix_stop(&ms);
}

Test(learner, membership_refuses_another_run_or_build_and_fences_an_expired_lease)
{
    procfix_t lr = {0};
    const char *sets[] = {"run_id=run-a", "learner.lease_ttl_ms=300", NULL};
    start_learner(&lr, "l", "127.0.0.1:1", sets);
    rpc_client_t *cl = client_of(&lr);
    int rc = join_raw(cl, "run-b", MSG_PROTOCOL_VERSION, MEMBER_ROLE_ROLLOUT, "w", NULL);
    cr_expect_eq(rc, -EINVAL, "another run: %s", err_name(rc));
    cr_expect(strstr(err_msg(), "run_id is 'run-b', this server's run is 'run-a'"), "%s",
              err_msg());
    rc = join_raw(cl, "run-a", MSG_PROTOCOL_VERSION + 1, MEMBER_ROLE_ROLLOUT, "w", NULL);
    cr_expect_eq(rc, TWIG_EVERSION, "another build: %s", err_name(rc));
    cr_expect(strstr(err_msg(), "protocol_version"), "%s", err_msg());
    rc = join_raw(cl, "run-a", MSG_PROTOCOL_VERSION, MEMBER_ROLE_ACTOR, "w", NULL);
    cr_expect_eq(rc, -EINVAL, "an actor at the learner: %s", err_name(rc));
    cr_expect(strstr(err_msg(), "role"), "%s", err_msg());
    cr_expect_eq(stat_of(&lr, "member_join_refused"), 3);

    Twig__V1__JoinReply *j = NULL;
    cr_assert_eq(join_raw(cl, "run-a", MSG_PROTOCOL_VERSION, MEMBER_ROLE_ROLLOUT, "w", &j), 0,
                 "%s", err_msg());
    cr_expect_eq(j->ttl_ms, 300);
    char want[64];
    snprintf(want, sizeof want, "w@m%" PRIx64, j->member_id);
    cr_expect_str_eq(j->source_id, want);
    tb b;
    tb_make(&b, "w", 1, 4, 6);
    b.m.model_version = 1;
    b.m.member_id = j->member_id;
    b.m.source_id = j->source_id;
    b.m.source_epoch = j->source_epoch;
    Twig__V1__PushReply *r = NULL;
    cr_assert_eq(push_synth(cl, &b, &r), 0, "%s", err_msg());
    protobuf_c_message_free_unpacked(&r->base, NULL);
    /* silent past the ttl (a SIGSTOPped worker): until the lease is dead */
    int64_t deadline = procfix_now_ms() + 10000;
    while (stat_of(&lr, "members") > 0) {
        cr_assert_lt(procfix_now_ms(), deadline, "the lease never expired");
        procfix_pause_ms(50);
    }
    /* its retry is still proven (nothing stored twice); anything new is fenced */
    cr_assert_eq(push_synth(cl, &b, &r), 0, "%s", err_msg());
    cr_expect(r->duplicate);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    b.m.seq = 2;
    rc = push_synth(cl, &b, NULL);
    cr_expect_eq(rc, TWIG_ELEASE, "%s %s", err_name(rc), err_msg());
    cr_expect(strstr(err_msg(), "lease expired"), "%s", err_msg());
    Twig__V1__MemberRequest q = TWIG__V1__MEMBER_REQUEST__INIT;
    q.member_id = j->member_id;
    ProtobufCMessage *rr = NULL;
    rc = rpc_client_unary(cl, &rr, "/twig.v1.Membership/Renew", &q.base,
                          &twig__v1__renew_reply__descriptor, &call_opts);
    cr_expect_eq(rc, TWIG_ELEASE, "a renewal after the ttl: %s", err_name(rc));
    tb_free(&b);
    protobuf_c_message_free_unpacked(&j->base, NULL);
    cr_expect_eq(stat_of(&lr, "member_expiries"), 1);
    cr_expect_eq(stat_of(&lr, "push_lease"), 1);
    cr_expect_eq(stat_of(&lr, "synthetic_samples"), 4);
    rpc_client_free(cl);
    procfix_stop(&lr);
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

/* the fsyncs of publishing (the version record) run on the writer thread: with every fsync
 * slowed to 500 ms (tests/shims/slow_io.c preloaded into the learner), 1,000 updates with a
 * publication every 10 still take seconds, not the 100 publications x 2 fsyncs x 500 ms =
 * 100 s they took on the training thread; the versions built meanwhile are recorded together
 * (superseded ones are never served) and the newest is recorded in the end */
Test(learner, a_slow_disk_does_not_slow_training)
{
    procfix_t ms = {0}, lr = {0};
    start_modelserver(&ms, "ms");
    rpc_client_t *mcl = client_of(&ms);
    for (uint64_t s = 1; s <= 11; s++) {
        append_real(mcl, "actor-0", s, 100);
    }
    const char *sets[] = {"pacing=strict",
                          "utd=1",
                          "init_steps=100",
                          "rollouts_per_step=0",
                          "learner.policy_publish_every=10",
                          "learner.checkpoint_every=0",
                          "learner.final_checkpoint=false",
                          NULL};
    slow_io_preload();
    setenv("TWIG_TEST_SLOW_FSYNC_MS", "500", 1);
    start_learner(&lr, "l", ms.addr, sets);
    slow_io_unload();
    unsetenv("TWIG_TEST_SLOW_FSYNC_MS");
    rpc_client_t *cl = client_of(&lr);
    Twig__V1__Progress *p = wait_reached(cl, 1100, 1000, 40000, "1000 updates on a slow disk");
    protobuf_c_message_free_unpacked(&p->base, NULL);
    cr_expect_eq(stat_of(&lr, "policy_built"), 1 + 1000 / 10, "a version every 10 updates");
    cr_expect_gt(stat_of(&lr, "publishes_superseded"), 0,
                 "a 500 ms record cannot keep up with 10 updates: one covers several");
    wait_stat(&lr, "policy_version", 1 + 1000 / 10, 20000);
    Twig__V1__GetWeightsReply *w = get_policy(cl, 1, 1000);
    cr_assert_not_null(w->blob);
    cr_expect_eq(w->blob->version, 101, "the newest is served");
    protobuf_c_message_free_unpacked(&w->base, NULL);
    rpc_client_free(cl);
    rpc_client_free(mcl);
    procfix_stop(&lr);
    procfix_stop(&ms);
}
