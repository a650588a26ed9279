/* fault tests of the real twig-learner: kill -9 mid-run and restart from the newest
 * checkpoint (counters, policy versions, real offset, dedup state, evals), SIGTERM with a
 * final checkpoint, and a damaged newest checkpoint falling back to the previous one. */
#include <dirent.h>

#include "common/base/bytes.h"
#include "common/base/crc32c.h"
#include "common/nn/sac.h"
#include "common/base/ckpt.h"
#include "common/base/dedup.h"
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
    push_ok(cl, "rollout-0", 1, 10);
    push_ok(cl, "rollout-0", 2, 10);
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

    snprintf(state, sizeof state, "%s/ckpt-%020d/state.bin", dir, 100);
    /* the state image's layout, pinned: magic, version 2, the env as length and bytes, the
     * sizes, then updates, all little-endian */
    size_t n_img = 0;
    uint8_t *img = NULL;
    cr_assert_eq(ckpt_read_file(state, &img, &n_img), 0, "%s", err_msg());
    const uint8_t head[] = {'T', 'W', 'I', 'G', 'L', 'R', 'N', 0, 2, 0, 0, 0, 11, 0, 0, 0,
                            'P', 'e', 'n', 'd', 'u', 'l', 'u', 'm', '-', 'v', '1',
                            O, 0, 0, 0, A, 0, 0, 0, 32, 0, 0, 0, 100, 0, 0, 0, 0, 0, 0, 0};
    cr_assert_gt(n_img, sizeof head);
    cr_expect_eq(memcmp(img, head, sizeof head), 0, "state.bin header");
    cr_expect_eq(le32_get(img + n_img - 4), crc32c(img, n_img - 4));
    free(img);

    /* damage the newest: one byte of its state */
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
    /* cut off from the model server: not ready, but live and serving */
    int64_t deadline = procfix_now_ms() + 30000;
    while (rpc_health_check(lr.addr, RPC_HEALTH_READINESS, 2000) != RPC_HEALTH_NOT_SERVING) {
        cr_assert_lt(procfix_now_ms(), deadline, "still ready without its model server");
        procfix_pause_ms(PROCFIX_POLL_MS);
    }
    cr_expect_eq(rpc_health_check(lr.addr, RPC_HEALTH_LIVENESS, 2000), RPC_HEALTH_SERVING);
    cr_expect_eq(stat_of(&lr, "ready"), 0);
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
    cr_expect_eq(rpc_wait_serving(lr.addr, 10000), 0, "ready again: %s", err_msg());
    cr_expect_eq(stat_of(&lr, "real_replay_size"), 160, "nothing mirrored twice");
    rpc_client_free(cl);
    procfix_stop(&lr);
    /* one line when the peer went (not ready), one each time it was reached (ready) */
    FILE *f = fopen(lr.log_file, "r");
    cr_assert_not_null(f);
    char line[2048];
    int gone = 0, back = 0;
    while (fgets(line, sizeof line, f)) {
        gone += strstr(line, "event=not_ready reason=modelserver_unreachable") != NULL;
        back += strstr(line, "event=ready reason=modelserver_reached") != NULL;
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
    protobuf_c_message_free_unpacked(&p->base, NULL);
    /* checkpoints are written by the learner's writer thread while training goes on: the one
     * of update 200 is on disk once two were written (100, 200) */
    wait_stat(&lr, "checkpoints_written", 2, 60000);
    p = progress_of(cl);
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
    /* checkpoint 200 was on disk before the kill (checkpoints_written reached 2) */
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

/* ---- dedup state, policy versions and old checkpoints across restarts ---- */

/* push (source, seq) of count with epoch; the rc, and the reply's duplicate flag. raw: as
 * exactly that source_id under no lease (member 1), as a sender of an earlier life retries;
 * else as the member named source */
static int push_epoch_as(rpc_client_t *cl, const char *source, uint64_t seq, uint64_t epoch,
                         uint32_t count, bool *dup, bool raw)
{
    tb b;
    tb_make(&b, source, seq, count, 4);
    b.m.model_version = 1;
    b.m.source_epoch = epoch;
    char exact[sizeof b.source];
    if (raw) {
        snprintf(exact, sizeof exact, "%s", source);
        b.m.source_id = exact;
        b.m.member_id = 1;
    }
    Twig__V1__PushReply *r = NULL;
    int rc = push_synth(cl, &b, &r);
    if (rc == 0) {
        *dup = r->duplicate;
        protobuf_c_message_free_unpacked(&r->base, NULL);
    }
    tb_free(&b);
    return rc;
}

static int push_epoch(rpc_client_t *cl, const char *source, uint64_t seq, uint64_t epoch,
                      uint32_t count, bool *dup)
{
    return push_epoch_as(cl, source, seq, epoch, count, dup, false);
}

static uint64_t source_epoch_of(rpc_client_t *cl)
{
    Twig__V1__Progress *p = progress_of(cl);
    uint64_t e = p->source_epoch;
    protobuf_c_message_free_unpacked(&p->base, NULL);
    return e;
}

Test(learner_restart, the_source_table_its_fence_and_epochs_come_back_with_the_checkpoint)
{
    procfix_t ms = {0}, lr = {0};
    start_modelserver(&ms, "ms");
    rpc_client_t *mcl = client_of(&ms);
    append_real(mcl, "actor-0", 1, 100);
    const char *sets[] = {"pacing=strict",
                          "utd=1",
                          "init_steps=50",
                          "rollouts_per_step=0",
                          "learner.checkpoint_every=0",
                          "learner.max_sources=2",
                          "learner.source_quiet_samples=100",
                          NULL};
    start_learner(&lr, "l", ms.addr, sets);
    rpc_client_t *cl = client_of(&lr);
    bool dup = true;
    cr_assert_eq(push_epoch(cl, "a", 1, 0, 10, &dup), 0, "%s", err_msg());
    cr_assert_eq(push_epoch(cl, "b", 1, 0, 10, &dup), 0, "%s", err_msg());
    cr_assert_eq(push_epoch(cl, "b", 2, 0, 100, &dup), 0, "%s", err_msg());
    cr_assert_eq(push_epoch(cl, "c", 1, source_epoch_of(cl), 10, &dup), 0, "%s", err_msg());
    cr_expect_eq(stat_of(&lr, "source_fence"), 1, "a evicted");
    Twig__V1__Progress *p = wait_reached(cl, 100, 50, 60000, "50 updates");
    protobuf_c_message_free_unpacked(&p->base, NULL);
    rpc_client_free(cl);
    procfix_stop(&lr); /* the final checkpoint */

    start_learner(&lr, "l", ms.addr, sets);
    cl = client_of(&lr);
    cr_expect_eq(stat_of(&lr, "restored_updates"), 50);
    cr_expect_eq(stat_of(&lr, "source_fence"), 1);
    cr_expect_eq(stat_of(&lr, "source_evictions"), 1);
    cr_expect_eq(stat_of(&lr, "sources"), 2);
    cr_expect_eq(source_epoch_of(cl), 130, "10 + 10 + 100 + 10 samples");
    /* the forgotten identity is still fenced; the remembered ones still proven */
    int rc = push_epoch(cl, "a", 1, 0, 10, &dup);
    cr_expect_eq(rc, TWIG_EFENCED, "a: %s %s", err_name(rc), err_msg());
    cr_assert_eq(push_epoch(cl, "c", 1, 120, 10, &dup), 0, "%s", err_msg());
    cr_expect(dup);
    cr_assert_eq(push_epoch(cl, "b", 2, 0, 100, &dup), 0, "%s", err_msg());
    cr_expect(dup);
    /* b's quiet is still counted in samples: a new source evicts it only after 100 more */
    rc = push_epoch(cl, "d", 1, source_epoch_of(cl), 10, &dup);
    cr_expect_eq(rc, 0, "b has been quiet since 20: %s", err_msg());
    cr_expect_eq(stat_of(&lr, "source_fence"), 11);
    rpc_client_free(cl);
    procfix_stop(&lr);
    rpc_client_free(mcl);
    procfix_stop(&ms);
}

/* write text into tmp/<name>.ckpt/policy_version (the directory created) */
static void write_version_file(const char *name, const char *text, size_t n)
{
    char dir[600], path[700];
    snprintf(dir, sizeof dir, "%s/%s.ckpt", tmp, name);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/policy_version", dir);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s", path);
    cr_assert_eq(fwrite(text, 1, n, f), n);
    fclose(f);
}

static bool log_says(const char *path, const char *a, const char *b)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s", path);
    char line[4096];
    bool found = false;
    while (fgets(line, sizeof line, f)) {
        found = found || (strstr(line, a) && strstr(line, b));
    }
    fclose(f);
    return found;
}

Test(learner_restart, a_damaged_or_unincrementable_policy_version_file_stops_the_start)
{
    static const struct {
        const char *text;
        size_t n;
        const char *says;
    } bad[] = {
        {"garbage\n", 8, "does not hold a policy version"},
        {"", 0, "does not hold a policy version"},
        {"12 13\n", 6, "does not hold a policy version"},
        {"99999999999999999999999\n", 24, "does not hold a policy version"},
        {"18446744073709551615\n", 21, "cannot be incremented"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "v%zu", i);
        write_version_file(name, bad[i].text, bad[i].n);
        procfix_t lr = {0};
        spawn_learner(&lr, name, "127.0.0.1:1", NULL);
        cr_expect_eq(procfix_exit_code(lr.pid, 30000), 1, "'%s': the learner must not start",
                     bad[i].text);
        cr_expect(log_says(lr.log_file, "event=start_failed", "policy_version"),
                  "'%s': the log names the file (%s)", bad[i].text, lr.log_file);
        cr_expect(log_says(lr.log_file, "event=start_failed", bad[i].says), "'%s': says %s",
                  bad[i].text, bad[i].says);
    }
    /* a good file: versions continue above it */
    write_version_file("good", "41\n", 3);
    procfix_t lr = {0};
    start_learner(&lr, "good", "127.0.0.1:1", NULL);
    rpc_client_t *cl = client_of(&lr);
    Twig__V1__GetWeightsReply *w = get_policy(cl, 0, 0);
    cr_assert_not_null(w->blob);
    cr_expect_eq(w->blob->version, 42);
    protobuf_c_message_free_unpacked(&w->base, NULL);
    rpc_client_free(cl);
    procfix_stop(&lr);
}

/* a learner state image of version 1 (before fences), as the learner of that version wrote
 * it: Pendulum-v1, hidden 32, 0 updates, policy version 7, 500 synthetic samples, one
 * evaluation, one push source "rollout-0@1" whose seq 3 was acknowledged with 44 */
static void write_v1_checkpoint(const char *name)
{
    char dir[600], tmpdir[CKPT_PATH_MAX], sac_path[CKPT_PATH_MAX + 16];
    snprintf(dir, sizeof dir, "%s/%s.ckpt", tmp, name);
    cr_assert_eq(ckpt_dir_prepare(dir), 0, "%s", err_msg());
    cr_assert_eq(ckpt_begin(tmpdir, sizeof tmpdir, dir, 0), 0, "%s", err_msg());
    sac_cfg sc = sac_default_cfg(O, A);
    sc.hidden = 32;
    sc.batch = 32;
    sac_t sac;
    cr_assert_eq(sac_init(&sac, &sc, 5), 0, "%s", err_msg());
    snprintf(sac_path, sizeof sac_path, "%s/sac.bin", tmpdir);
    cr_assert_eq(sac_save(&sac, sac_path), 0, "%s", err_msg());
    sac_free(&sac);

    static uint8_t buf[8192], tbuf[4096];
    byte_writer b = {.buf = buf};
    bw_bytes(&b, "TWIGLRN", 8);
    bw_u32(&b, 1);
    bw_str(&b, ENV);
    bw_u32(&b, O);
    bw_u32(&b, A);
    bw_u32(&b, 32);
    bw_u64(&b, 0);   /* updates */
    bw_u64(&b, 7);   /* policy_version */
    bw_u64(&b, 0);   /* real_offset */
    bw_u64(&b, 500); /* synthetic_samples */
    bw_u64(&b, 3);   /* synthetic_pushes */
    bw_u64(&b, 2);   /* model_version */
    for (int i = 0; i < 4; i++) {
        bw_u64(&b, 0x1234567ull + (uint64_t)i);
    }
    bw_u64(&b, 1); /* evaluations */
    bw_str(&b, "actor-0");
    bw_u64(&b, 1000);
    bw_u64(&b, 5);
    bw_u64(&b, 1000);
    bw_u32(&b, 10);
    bw_f32s(&b, &(float){-321.5f}, 1);
    bw_f32s(&b, &(float){4.0f}, 1);
    /* push table, v1 layout: u64 n, u32 id_len, id, u64 max_seq, 64 slots */
    byte_writer t = {.buf = tbuf};
    bw_u64(&t, 1);
    bw_str(&t, "rollout-0@1");
    bw_u64(&t, 3);
    for (int w = 0; w < DEDUP_WINDOW; w++) {
        uint8_t used = w == 3;
        bw_u64(&t, used ? 3 : 0);
        bw_u64(&t, used ? 44 : 0);
        bw_u8(&t, used);
    }
    bw_u64(&b, t.pos);
    bw_bytes(&b, t.buf, t.pos);
    t.pos = 0;
    /* eval table: actor-0, seq 1000 */
    bw_u64(&t, 1);
    bw_str(&t, "actor-0");
    bw_u64(&t, 1000);
    for (int w = 0; w < DEDUP_WINDOW; w++) {
        uint8_t used = w == 1000 % DEDUP_WINDOW;
        bw_u64(&t, used ? 1000 : 0);
        bw_u64(&t, used ? 1 : 0);
        bw_u8(&t, used);
    }
    bw_u64(&b, t.pos);
    bw_bytes(&b, t.buf, t.pos);
    t.pos = 0;
    bw_u32(&b, crc32c(buf, b.pos));
    cr_assert_eq(ckpt_write_file(tmpdir, "state.bin", buf, b.pos), 0, "%s", err_msg());
    cr_assert_eq(ckpt_commit(dir, 0), 0, "%s", err_msg());
}

Test(learner_restart, a_checkpoint_of_the_state_layout_before_fences_still_loads)
{
    write_v1_checkpoint("old");
    procfix_t lr = {0};
    start_learner(&lr, "old", "127.0.0.1:1", NULL);
    rpc_client_t *cl = client_of(&lr);
    Twig__V1__Progress *p = progress_of(cl);
    cr_expect_eq(p->synthetic_samples, 500);
    cr_expect_eq(p->policy_version, 8, "above the checkpoint's 7");
    cr_expect_eq(p->model_version, 2);
    cr_expect_eq(p->source_epoch, 500, "no fence yet: the progress");
    protobuf_c_message_free_unpacked(&p->base, NULL);
    cr_expect_eq(stat_of(&lr, "evals"), 1);
    cr_expect_eq(stat_of(&lr, "sources"), 1);
    cr_expect_eq(stat_of(&lr, "source_fence"), 0);
    /* the old table's proofs still hold (the dedup check comes before any lease's) */
    bool dup = false;
    cr_assert_eq(push_epoch_as(cl, "rollout-0@1", 3, 0, 9, &dup, true), 0, "%s", err_msg());
    cr_expect(dup, "seq 3 was acknowledged before the upgrade");
    int rc = push_epoch_as(cl, "rollout-0@1", 2, 0, 9, &dup, true);
    cr_expect_eq(rc, -EINVAL, "seq 2 was never proven: %s", err_name(rc));
    Twig__V1__EvalResult e = TWIG__V1__EVAL_RESULT__INIT;
    e.source_id = (char *)"actor-0";
    e.seq = 1000;
    e.real_steps = 1000;
    e.policy_version = 5;
    e.episodes = 10;
    e.return_mean = -321.5f;
    e.return_std = 4.0f;
    ProtobufCMessage *reply = NULL;
    cr_assert_eq(rpc_client_unary(cl, &reply, "/twig.v1.Learner/ReportEval", &e.base,
                                  &twig__v1__push_reply__descriptor, &call_opts),
                 0, "%s", err_msg());
    cr_expect(((Twig__V1__PushReply *)reply)->duplicate);
    protobuf_c_message_free_unpacked(reply, NULL);
    rpc_client_free(cl);
    procfix_stop(&lr);
    /* the final checkpoint is not written (no update), so the old one is untouched */
}
