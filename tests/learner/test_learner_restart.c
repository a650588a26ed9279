/* fault tests of the real twig-learner: kill -9 mid-run and restart from the newest
 * checkpoint (counters, policy versions, real offset, dedup state, evals), SIGTERM with a
 * final checkpoint, and a damaged newest checkpoint falling back to the previous one. */
#include <dirent.h>

#include "proc.h"

TestSuite(learner_restart, .init = proc_setup, .fini = proc_teardown, .timeout = 300);

/* checkpoint ids in dir, ascending (at most max) */
static size_t list_ckpts(const char *dir, uint64_t *ids, size_t max)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "no checkpoint dir %s", dir);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < max) {
        unsigned long long id;
        if (sscanf(e->d_name, "ckpt-%llu", &id) == 1) {
            ids[n++] = id;
        }
    }
    closedir(d);
    for (size_t i = 1; i < n; i++) {
        for (size_t j = i; j > 0 && ids[j - 1] > ids[j]; j--) {
            uint64_t t = ids[j];
            ids[j] = ids[j - 1];
            ids[j - 1] = t;
        }
    }
    return n;
}

static int report_eval(rpc_client_t *cl, uint64_t seq, bool *dup)
{
    Twig__V1__EvalResult e = TWIG__V1__EVAL_RESULT__INIT;
    e.source_id = (char *)"actor-0";
    e.real_steps = 100;
    e.policy_version = 1;
    e.episodes = 5;
    e.return_mean = -700.0f;
    e.return_std = 3.0f;
    e.seq = seq;
    ProtobufCMessage *reply = NULL;
    int rc = rpc_client_unary(cl, &reply, "/twig.v1.Learner/ReportEval", &e.base,
                              &twig__v1__push_reply__descriptor, &call_opts);
    if (rc == 0) {
        *dup = ((Twig__V1__PushReply *)reply)->duplicate;
        protobuf_c_message_free_unpacked(reply, NULL);
    }
    return rc;
}

Test(learner_restart, kill_9_resumes_from_the_newest_checkpoint)
{
    procfix_t ms = {0}, lr = {0};
    start_modelserver(&ms, "ms");
    rpc_client_t *mcl = client_of(&ms);
    const char *sets[] = {"pacing=strict",
                          "utd=4",
                          "init_steps=50",
                          "rollouts_per_step=0",
                          "learner.checkpoint_every=150",
                          "learner.keep_checkpoints=2",
                          "learner.policy_publish_every=25",
                          NULL};
    start_learner(&lr, "l", ms.addr, sets);
    rpc_client_t *cl = client_of(&lr);
    /* synthetic data and an evaluation before any checkpoint */
    push_ok(cl, "rollout-0", 1, 10, 2);
    push_ok(cl, "rollout-0", 2, 10, 2);
    bool dup = true;
    cr_assert_eq(report_eval(cl, 1, &dup), 0, "%s", err_msg());
    cr_expect_not(dup);
    for (uint64_t s = 1; s <= 3; s++) {
        append_real(mcl, "actor-0", s, 50);
    }
    /* 150 real steps allow 4 x 100 updates: checkpoints at 150 and 300 */
    Twig__V1__Progress *p = wait_reached(cl, 150, 400, 60000, "400 updates");
    protobuf_c_message_free_unpacked(&p->base, NULL);
    wait_stat(&lr, "checkpoints_written", 2, 20000);
    wait_stat(&lr, "policy_version", 17, 20000);
    p = progress_of(cl);
    cr_assert_eq(p->updates, 400);
    uint64_t pv_before = p->policy_version;
    cr_expect_eq(pv_before, 1 + 400 / 25);
    protobuf_c_message_free_unpacked(&p->base, NULL);
    rpc_client_free(cl);
    procfix_kill9(&lr);

    char dir[600];
    snprintf(dir, sizeof dir, "%s/l.ckpt", tmp);
    uint64_t ids[8];
    size_t n = list_ckpts(dir, ids, 8);
    cr_assert_eq(n, 2);
    cr_expect_eq(ids[0], 150);
    cr_expect_eq(ids[1], 300);

    start_learner(&lr, "l", ms.addr, sets);
    cl = client_of(&lr);
    cr_expect_eq(stat_of(&lr, "restored_updates"), 300);
    /* versions keep increasing across the restart, although the checkpoint had 13 */
    Twig__V1__GetWeightsReply *w = get_policy(cl, 0, 0);
    cr_assert_not_null(w->blob);
    cr_expect_gt(w->blob->version, pv_before,
                 "the first version of the new life is %" PRIu64
                 " (training may already have published more)",
                 pv_before + 1);
    protobuf_c_message_free_unpacked(&w->base, NULL);
    /* refilled from the log, trains back to the bound */
    p = wait_reached(cl, 150, 400, 60000, "refill and 400 updates");
    protobuf_c_message_free_unpacked(&p->base, NULL);
    cr_expect_eq(stat_of(&lr, "real_replay_size"), 150, "no real step twice");
    for (uint64_t s = 4; s <= 5; s++) {
        append_real(mcl, "actor-0", s, 50);
    }
    p = wait_reached(cl, 250, 800, 60000, "800 updates");
    protobuf_c_message_free_unpacked(&p->base, NULL);
    wait_stat(&lr, "policy_version", (double)(pv_before + 1 + (800 - 300) / 25), 20000);
    p = progress_of(cl);
    cr_expect_eq(p->updates, 800, "never past 4 x (250 - 50)");
    cr_expect_eq(p->real_steps, 250);
    cr_expect_eq(p->policy_version, pv_before + 1 + (800 - 300) / 25);
    cr_expect_eq(p->synthetic_samples, 20, "synthetic counters restored");
    protobuf_c_message_free_unpacked(&p->base, NULL);
    cr_expect_eq(stat_of(&lr, "real_replay_size"), 250);
    cr_expect_eq(stat_of(&lr, "real_replay_added"), 250);
    /* dedup state and evaluations came back with the checkpoint */
    tb b;
    tb_make(&b, "rollout-0", 2, 10, 2);
    b.m.model_version = 1;
    Twig__V1__PushReply *r = NULL;
    cr_assert_eq(push_synth(cl, &b, &r), 0, "%s", err_msg());
    cr_expect(r->duplicate, "seq 2 was pushed before the checkpoint");
    cr_expect_eq(r->accepted, 10);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    tb_free(&b);
    cr_assert_eq(report_eval(cl, 1, &dup), 0);
    cr_expect(dup);
    cr_expect_eq(stat_of(&lr, "evals"), 1);
    cr_expect_eq(stat_of(&lr, "synthetic_stored"), 0, "synthetic data is not checkpointed");
    rpc_client_free(cl);
    procfix_stop(&lr);
    rpc_client_free(mcl);
    procfix_stop(&ms);
}

Test(learner_restart, sigterm_checkpoints_and_a_damaged_newest_falls_back)
{
    procfix_t ms = {0}, lr = {0};
    start_modelserver(&ms, "ms");
    rpc_client_t *mcl = client_of(&ms);
    append_real(mcl, "actor-0", 1, 100);
    const char *sets[] = {"pacing=strict",
                          "utd=2",
                          "init_steps=50",
                          "rollouts_per_step=0",
                          "learner.checkpoint_every=40",
                          "learner.keep_checkpoints=3",
                          "learner.policy_publish_every=10",
                          NULL};
    start_learner(&lr, "l", ms.addr, sets);
    rpc_client_t *cl = client_of(&lr);
    Twig__V1__Progress *p = wait_reached(cl, 100, 100, 60000, "100 updates");
    protobuf_c_message_free_unpacked(&p->base, NULL);
    wait_stat(&lr, "policy_version", 11, 20000);
    rpc_client_free(cl);
    procfix_stop(&lr); /* exit 0, with a final checkpoint at 100 */

    char dir[600], state[700];
    snprintf(dir, sizeof dir, "%s/l.ckpt", tmp);
    uint64_t ids[8];
    size_t n = list_ckpts(dir, ids, 8);
    cr_assert_eq(n, 3);
    cr_expect_eq(ids[0], 40);
    cr_expect_eq(ids[1], 80);
    cr_expect_eq(ids[2], 100);

    /* damage the newest: one byte of its state */
    snprintf(state, sizeof state, "%s/ckpt-%020d/state.bin", dir, 100);
    FILE *f = fopen(state, "r+b");
    cr_assert_not_null(f, "%s", state);
    cr_assert_eq(fseek(f, 40, SEEK_SET), 0);
    int c = fgetc(f);
    cr_assert_eq(fseek(f, 40, SEEK_SET), 0);
    fputc(c ^ 0x5a, f);
    fclose(f);

    start_learner(&lr, "l", ms.addr, sets);
    cl = client_of(&lr);
    cr_expect_eq(stat_of(&lr, "restored_updates"), 80, "fell back to the previous checkpoint");
    Twig__V1__GetWeightsReply *w = get_policy(cl, 0, 0);
    cr_assert_not_null(w->blob);
    cr_expect_geq(w->blob->version, 12, "after the 11 versions of the first life");
    protobuf_c_message_free_unpacked(&w->base, NULL);
    p = wait_reached(cl, 100, 100, 60000, "back to 100 updates");
    cr_expect_eq(p->updates, 100);
    protobuf_c_message_free_unpacked(&p->base, NULL);
    /* 12 at start, then one at 90 and one at 100 */
    wait_stat(&lr, "policy_version", 14, 20000);
    p = progress_of(cl);
    cr_expect_eq(p->policy_version, 14);
    cr_expect_eq(p->updates, 100);
    protobuf_c_message_free_unpacked(&p->base, NULL);
    rpc_client_free(cl);
    procfix_stop(&lr);
    /* the log says what happened, once */
    f = fopen(lr.log_file, "r");
    cr_assert_not_null(f);
    char line[2048];
    int bad = 0;
    while (fgets(line, sizeof line, f)) {
        bad += strstr(line, "event=checkpoint_bad") != NULL;
    }
    fclose(f);
    cr_expect_eq(bad, 1);
    rpc_client_free(mcl);
    procfix_stop(&ms);
}

Test(learner_restart, model_server_killed_and_restarted_the_mirror_reconnects)
{
    procfix_t ms = {0}, lr = {0};
    start_modelserver(&ms, "ms");
    rpc_client_t *mcl = client_of(&ms);
    append_real(mcl, "actor-0", 1, 100);
    const char *sets[] = {"pacing=strict",
                          "utd=1",
                          "init_steps=20",
                          "rollouts_per_step=0",
                          "learner.checkpoint_every=0",
                          NULL};
    start_learner(&lr, "l", ms.addr, sets);
    rpc_client_t *cl = client_of(&lr);
    Twig__V1__Progress *p = wait_reached(cl, 100, 80, 60000, "first 100");
    protobuf_c_message_free_unpacked(&p->base, NULL);
    rpc_client_free(mcl);
    procfix_kill9(&ms);
    /* the learner keeps serving while its peer is gone */
    p = progress_of(cl);
    cr_expect_eq(p->real_steps, 100);
    protobuf_c_message_free_unpacked(&p->base, NULL);
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", ms.port);
    start_modelserver_at(&ms, "ms", listen); /* same data dir, same address */
    mcl = client_of(&ms);
    append_real(mcl, "actor-0", 2, 60);
    p = wait_reached(cl, 160, 140, 60000, "after the restart");
    cr_expect_eq(p->real_steps, 160);
    protobuf_c_message_free_unpacked(&p->base, NULL);
    cr_expect_eq(stat_of(&lr, "real_replay_size"), 160, "nothing mirrored twice");
    rpc_client_free(cl);
    procfix_stop(&lr);
    /* one line when the peer went, one when it came back */
    FILE *f = fopen(lr.log_file, "r");
    cr_assert_not_null(f);
    char line[2048];
    int gone = 0, back = 0;
    while (fgets(line, sizeof line, f)) {
        gone += strstr(line, "event=modelserver_unavailable") != NULL;
        back += strstr(line, "event=modelserver_connected") != NULL;
    }
    fclose(f);
    cr_expect_eq(gone, 1);
    cr_expect_eq(back, 2);
    rpc_client_free(mcl);
    procfix_stop(&ms);
}

/* the policy_version of the last "event=started" line of a learner log */
static uint64_t started_version(const char *log_file)
{
    FILE *f = fopen(log_file, "r");
    cr_assert_not_null(f);
    char line[4096];
    unsigned long long v = 0;
    bool found = false;
    while (fgets(line, sizeof line, f)) {
        const char *s = strstr(line, "event=started ");
        const char *pv = s ? strstr(s, " policy_version=") : NULL;
        if (pv && sscanf(pv, " policy_version=%llu", &v) == 1) {
            found = true;
        }
    }
    fclose(f);
    cr_assert(found, "no started line in %s", log_file);
    return v;
}

Test(learner_restart, kill_9_while_training_loses_only_the_updates_after_the_checkpoint)
{
    procfix_t ms = {0}, lr = {0};
    start_modelserver(&ms, "ms");
    rpc_client_t *mcl = client_of(&ms);
    /* nets large enough that 1500 updates take a while */
    const char *sets[] = {"pacing=strict",
                          "utd=5",
                          "init_steps=100",
                          "rollouts_per_step=0",
                          "hidden=128",
                          "learner.batch_size=128",
                          "learner.checkpoint_every=100",
                          "learner.keep_checkpoints=3",
                          "learner.policy_publish_every=20",
                          NULL};
    start_learner(&lr, "l", ms.addr, sets);
    rpc_client_t *cl = client_of(&lr);
    for (uint64_t s = 1; s <= 4; s++) {
        append_real(mcl, "actor-0", s, 100); /* 400 real steps: 5 x 300 = 1500 updates */
    }
    Twig__V1__Progress *p = wait_reached(cl, 400, 250, 120000, "250 updates");
    uint64_t at_kill = p->updates;
    protobuf_c_message_free_unpacked(&p->base, NULL);
    rpc_client_free(cl);
    procfix_kill9(&lr);
    uint64_t pv_last = 0;
    {
        /* the versions the first life published: its watermark file */
        char vf[700];
        snprintf(vf, sizeof vf, "%s/l.ckpt/policy_version", tmp);
        FILE *f = fopen(vf, "r");
        cr_assert_not_null(f);
        cr_assert_eq(fscanf(f, "%" SCNu64, &pv_last), 1);
        fclose(f);
    }
    char dir[600];
    snprintf(dir, sizeof dir, "%s/l.ckpt", tmp);
    uint64_t ids[8];
    size_t n = list_ckpts(dir, ids, 8);
    cr_assert_geq(n, 1);
    cr_assert_leq(n, 3, "old checkpoints pruned");
    uint64_t newest = ids[n - 1];
    /* checkpoint 200 was written before update 201, so it exists once 250 were seen */
    cr_expect_geq(newest, 200);
    cr_expect_eq(newest % 100, 0);
    cr_expect_geq(pv_last, 1 + newest / 20);

    start_learner(&lr, "l", ms.addr, sets);
    cl = client_of(&lr);
    cr_expect_eq(stat_of(&lr, "restored_updates"), (double)newest);
    uint64_t pv_start = started_version(lr.log_file);
    cr_expect_eq(pv_start, pv_last + 1, "versions continue above every published one");
    p = wait_reached(cl, 400, 1500, 240000, "1500 updates");
    protobuf_c_message_free_unpacked(&p->base, NULL);
    wait_stat(&lr, "policy_version", (double)(pv_start + (1500 - newest) / 20), 20000);
    p = progress_of(cl);
    cr_expect_eq(p->updates, 1500, "5 x (400 - 100), no more");
    cr_expect_eq(p->real_steps, 400);
    cr_expect_eq(p->policy_version, pv_start + (1500 - newest) / 20);
    protobuf_c_message_free_unpacked(&p->base, NULL);
    cr_expect_eq(stat_of(&lr, "real_replay_size"), 400, "no real step twice");
    cr_expect(at_kill >= 250 && at_kill < 1500, "killed at %" PRIu64 " updates", at_kill);
    rpc_client_free(cl);
    procfix_stop(&lr);
    rpc_client_free(mcl);
    procfix_stop(&ms);
}
