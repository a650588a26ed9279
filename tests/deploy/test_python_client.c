/* deploy/python/twig_client.py, the example Python client (docs/python.md), run by
 * /usr/bin/python3 with the message classes the build generated (build/gen/python):
 * - its policy forward pass against common/nn/policy.c's policy_act on fixed weights,
 * - its table of action bounds against the C envs,
 * - every command against a real `twig run` of Pendulum-v1: status, evals, and act, whose
 *   actions must be those of the C policy loaded from the same GetPolicy version, and the
 *   module's other calls (health, FetchReal, GetModel, a GetPolicy long poll). */
#include "tests/e2e/e2e_run.h"

#include <math.h>
#include <stdint.h>

#include "common/base/mem.h"
#include "common/env/env.h"
#include "common/nn/policy.h"
#include "common/rpc/nn_blob.h"
#include "common/rpc/policy_blob.h"

#define CLIENT TWIG_SRC_DIR "/deploy/python/twig_client.py"
#define ACT_HELPER TWIG_SRC_DIR "/tests/deploy/python_client_act.py"
#define CALLS_HELPER TWIG_SRC_DIR "/tests/deploy/python_client_calls.py"
#define ACT_TOL 1e-5f /* float32 numpy against float32 C, different summation orders */
#define OUT_MAX (1 << 16)

/* run `/usr/bin/python3 ARGS` with the generated messages on its path; its stdout into out.
 * returns the exit status */
static int run_python(char *out, size_t n, const char *args)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "PYTHONDONTWRITEBYTECODE=1 TWIG_PY_GEN=%s/gen/python /usr/bin/python3 %s",
             TWIG_BIN_DIR, args);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p, "popen %s", cmd);
    size_t len = fread(out, 1, n - 1, p);
    out[len] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* the value of key=VALUE in the first line of out starting with prefix (copied into v) */
static bool field(char *v, size_t n, const char *out, const char *prefix, const char *key)
{
    size_t pl = strlen(prefix);
    for (const char *line = out; *line;) {
        const char *end = strchr(line, '\n');
        end = end ? end : line + strlen(line);
        if (strncmp(line, prefix, pl) != 0 || line[pl] != ' ') {
            line = *end ? end + 1 : end;
            continue;
        }
        char pat[64];
        snprintf(pat, sizeof pat, " %s=", key);
        const char *k = strstr(line, pat);
        if (!k || k >= end) {
            return false;
        }
        k += strlen(pat);
        size_t m = strcspn(k, " \n");
        if (m >= n) {
            return false;
        }
        memcpy(v, k, m);
        v[m] = '\0';
        return true;
    }
    return false;
}

static double field_num(const char *out, const char *prefix, const char *key)
{
    char v[64];
    cr_assert(field(v, sizeof v, out, prefix, key), "no %s %s= in:\n%s", prefix, key, out);
    return strtod(v, NULL);
}

/* n comma-separated floats from s; the count read */
static int parse_floats(float *x, int n, const char *s)
{
    int k = 0;
    char *end;
    while (k < n && *s) {
        x[k++] = strtof(s, &end);
        if (end == s) {
            return k - 1;
        }
        s = *end == ',' ? end + 1 : end;
    }
    return k;
}

Test(python_client, act_matches_policy_act_on_fixed_weights, .timeout = 60)
{
    /* a policy of 5 observations and 2 actions with random weights, bounds not symmetric */
    enum { O = 5, A = 2, H = 16, B = 4 };
    const float low[A] = {-1.0f, 0.0f}, high[A] = {3.0f, 0.5f};
    policy_t p;
    policy_shape sh = {O, A, H, low, high};
    cr_assert_eq(policy_init(&p, &sh, B), 0, "%s", err_msg());
    rng_t rng;
    rng_seed(&rng, 11);
    /* bigger than the init's so some outputs saturate and the ReLUs cut */
    for (size_t i = 0; i < p.actor.n_params; i++) {
        p.actor.params[i] = rng_uniform_range(&rng, -0.8f, 0.8f);
    }
    nn_blob nb;
    mlp_params *nets[1] = {&p.actor};
    const char *prefixes[1] = {POLICY_BLOB_PREFIX};
    cr_assert_eq(nn_blob_build(&nb, nets, prefixes, 1, TWIG__V1__WEIGHT_KIND__WEIGHT_KIND_POLICY, 3,
                               "Test-v0"),
                 0, "%s", err_msg());
    char dir[PROCFIX_DIR_LEN], path[PROCFIX_DIR_LEN + 16];
    procfix_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/blob.pb", dir);
    size_t len = twig__v1__weight_blob__get_packed_size(&nb.msg);
    uint8_t *buf = xmalloc(len);
    twig__v1__weight_blob__pack(&nb.msg, buf);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(buf, 1, len, f), len);
    fclose(f);
    free(buf);
    nn_blob_free(&nb);

    float obs[B * O], want[B * A];
    char args[2048];
    int at = snprintf(args, sizeof args, "%s %s -1,0 3,0.5", ACT_HELPER, path);
    for (int i = 0; i < B; i++) {
        at += snprintf(args + at, sizeof args - at, " ");
        for (int j = 0; j < O; j++) {
            obs[i * O + j] = rng_uniform_range(&rng, -3.0f, 3.0f);
            at += snprintf(args + at, sizeof args - at, "%s%.9g", j ? "," : "", obs[i * O + j]);
        }
    }
    policy_act(&p, &rng, want, obs, B, true);

    static char out[OUT_MAX];
    int rc = run_python(out, sizeof out, args);
    cr_assert_eq(rc, 0, "python_client_act.py exited %d:\n%s", rc, out);
    const char *line = out;
    int saturated = 0;
    for (int i = 0; i <= B; i++) { /* B single rows, then the batch */
        float got[B * A];
        int n = i < B ? A : B * A;
        cr_assert_eq(parse_floats(got, n, line), n, "line %d of:\n%s", i, out);
        const float *w = i < B ? want + i * A : want;
        for (int k = 0; k < n; k++) {
            cr_expect(fabsf(got[k] - w[k]) <= ACT_TOL, "row %d action %d: python %.9g, C %.9g", i,
                      k, got[k], w[k]);
            saturated += i == B && (w[k] == low[k % A] || w[k] == high[k % A]);
        }
        line = strchr(line, '\n');
        cr_assert_not_null(line);
        line++;
    }
    cr_expect_lt(saturated, B * A, "every action is at a bound: the check would be weak");
    policy_free(&p);
    procfix_tmpdir_done(dir);
}

Test(python_client, action_bounds_are_those_of_the_c_envs, .timeout = 120)
{
    static char out[OUT_MAX];
    for (const char *const *id = env_list(); *id != NULL; id++) {
        env_t *e = NULL;
        cr_assert_eq(env_make(&e, *id), 0, "%s: %s", *id, err_msg());
        char args[512], v[4096];
        snprintf(args, sizeof args, "%s bounds %s", CLIENT, *id);
        int rc = run_python(out, sizeof out, args);
        cr_assert_eq(rc, 0, "bounds %s exited %d", *id, rc);
        const env_spec *s = &e->spec;
        cr_expect_eq((int)field_num(out, "bounds", "n_act"), s->n_act, "%s", *id);
        float lo[ENV_DIM_MAX], hi[ENV_DIM_MAX];
        cr_assert(field(v, sizeof v, out, "bounds", "low"));
        cr_assert_eq(parse_floats(lo, s->n_act, v), s->n_act, "%s", *id);
        cr_assert(field(v, sizeof v, out, "bounds", "high"));
        cr_assert_eq(parse_floats(hi, s->n_act, v), s->n_act, "%s", *id);
        for (int j = 0; j < s->n_act; j++) {
            cr_expect(lo[j] == s->act_low[j] && hi[j] == s->act_high[j],
                      "%s action %d: python [%g, %g], C [%g, %g]", *id, j, lo[j], hi[j],
                      s->act_low[j], s->act_high[j]);
        }
        env_free(e);
    }
}

/* a small run, slowed to 200 real steps/s so it is still going while the client reads it
 * (stopped by SIGTERM): 200 random steps (the initial policy evaluated at their end), then
 * SAC; the next evaluation at 400 real steps;
 * a new policy version every 5 s, so the client and the C side mostly read the same one */
static const char short_run[] =
    "env: Pendulum-v1\nseed: 5\nreal_steps: 20000\ninit_steps: 200\nutd: 1\n"
    "model_train_freq: 200\nrollouts_per_step: 4\nepoch_length: 200\n"
    "hidden: 32\neval_every: 400\neval_episodes: 1\nn_actors: 1\nn_rollout: 1\n"
    "learner:\n  batch_size: 32\n  policy_publish_every: 1000\n"
    "modelserver:\n  model_hidden: 32\n  train_max_epochs: 5\n"
    "actor:\n  push_every: 25\n  steps_per_s: 200\n";

/* the learner's evaluations so far (GetEvals total); -1 when the call failed */
static int evals_total(const e2e_run *r)
{
    rpc_client_t *cl = NULL;
    if (rpc_client_init(&cl, r->learner_addr, NULL) < 0) {
        return -1;
    }
    Twig__V1__GetEvalsRequest q = TWIG__V1__GET_EVALS_REQUEST__INIT;
    ProtobufCMessage *reply = NULL;
    rpc_call_opts o = {.deadline_ms = 1000};
    int n = -1;
    if (rpc_client_unary(cl, &reply, "/twig.v1.Learner/GetEvals", &q.base,
                         &twig__v1__get_evals_reply__descriptor, &o) == 0) {
        n = (int)((Twig__V1__GetEvalsReply *)reply)->total;
        protobuf_c_message_free_unpacked(reply, NULL);
    }
    rpc_client_free(cl);
    return n;
}

/* the served policy, loaded into p (Pendulum's bounds); its version */
static uint64_t load_served_policy(const e2e_run *r, policy_t *p)
{
    rpc_client_t *cl = NULL;
    cr_assert_eq(rpc_client_init(&cl, r->learner_addr, NULL), 0, "%s", err_msg());
    Twig__V1__GetWeightsRequest q = TWIG__V1__GET_WEIGHTS_REQUEST__INIT;
    ProtobufCMessage *reply = NULL;
    rpc_call_opts o = {.deadline_ms = 5000};
    cr_assert_eq(rpc_client_unary(cl, &reply, "/twig.v1.Learner/GetPolicy", &q.base,
                                  &twig__v1__get_weights_reply__descriptor, &o),
                 0, "GetPolicy: %s", err_msg());
    const Twig__V1__GetWeightsReply *w = (const Twig__V1__GetWeightsReply *)reply;
    cr_assert_not_null(w->blob, "GetPolicy has no blob");
    p->version = 0;
    cr_assert_eq(policy_load_blob(p, w->blob), 0, "%s", err_msg());
    protobuf_c_message_free_unpacked(reply, NULL);
    rpc_client_free(cl);
    return p->version;
}

Test(python_client, reads_status_evals_and_the_policy_of_a_live_pendulum_run, .timeout = 600)
{
    e2e_run r;
    e2e_init(&r, short_run);
    e2e_start(&r);
    /* the baseline (at init_steps) and the first evaluation at 400 are in (poll with a
     * deadline) */
    for (int64_t until = procfix_now_ms() + 400000; evals_total(&r) < 2;) {
        cr_assert_lt(procfix_now_ms(), until, "no evaluation in 400 s (see %s)", r.dir);
        cr_assert(procfix_runs_for(r.pid, 200), "twig run ended early (see %s)", r.dir);
    }
    static char out[OUT_MAX];
    char args[1024];

    /* status, addresses from the run directory */
    snprintf(args, sizeof args, "%s status --run-dir %s", CLIENT, r.run_dir);
    int rc = run_python(out, sizeof out, args);
    cr_assert_eq(rc, 0, "status exited %d:\n%s", rc, out);
    cr_expect_gt(field_num(out, "learner", "real_steps"), 0, "%s", out);
    cr_expect_gt(field_num(out, "learner", "updates"), 0, "%s", out);
    cr_expect_geq(field_num(out, "learner", "policy_version"), 1, "%s", out);
    char v[64];
    cr_expect(field(v, sizeof v, out, "learner_stats", "role") && strcmp(v, "learner") == 0, "%s",
              out);
    cr_expect_gt(field_num(out, "modelserver", "end_offset"), 0, "%s", out);
    cr_expect(field(v, sizeof v, out, "modelserver", "env_id") && strcmp(v, "Pendulum-v1") == 0,
              "%s", out);
    cr_expect_eq(field_num(out, "modelserver", "obs_dim"), 3, "%s", out);
    cr_expect(field(v, sizeof v, out, "modelserver_stats", "role") && strcmp(v, "modelserver") == 0,
              "%s", out);

    /* evals, with explicit addresses */
    snprintf(args, sizeof args, "%s evals --learner %s", CLIENT, r.learner_addr);
    rc = run_python(out, sizeof out, args);
    cr_assert_eq(rc, 0, "evals exited %d:\n%s", rc, out);
    /* the initial policy's evaluation at init_steps (200), then one every 400 */
    cr_expect_geq(field_num(out, "evals", "count"), 2, "%s", out);
    cr_expect_eq(field_num(out, "eval", "real_steps"), 200, "%s", out);
    cr_expect_neq(strstr(out, "eval source_id=actor-0 real_steps=400 "), NULL, "%s", out);
    cr_expect_eq(field_num(out, "eval", "episodes"), 1, "%s", out);
    double ret = field_num(out, "eval", "return_mean");
    cr_expect(isfinite(ret) && ret < 0, "Pendulum returns are negative: %s", out);

    /* act: the C policy of the same version gives the same actions */
    enum { B = 4 };
    const float obs[B][3] = {
        {1.0f, 0.0f, 0.0f}, {-1.0f, 0.0f, 0.5f}, {0.6f, 0.8f, -3.0f}, {0.0f, -1.0f, 8.0f}};
    env_t *e = NULL;
    cr_assert_eq(env_make(&e, "Pendulum-v1"), 0);
    policy_t p;
    policy_shape sh = {3, 1, 32, e->spec.act_low, e->spec.act_high};
    cr_assert_eq(policy_init(&p, &sh, B), 0, "%s", err_msg());
    int at = snprintf(args, sizeof args, "%s act --learner %s", CLIENT, r.learner_addr);
    for (int i = 0; i < B; i++) {
        at += snprintf(args + at, sizeof args - at, " --obs=%.9g,%.9g,%.9g", obs[i][0], obs[i][1],
                       obs[i][2]);
    }
    bool compared = false;
    for (int attempt = 0; attempt < 10 && !compared; attempt++) {
        /* a new version may be published between the two reads: then again */
        rc = run_python(out, sizeof out, args);
        cr_assert_eq(rc, 0, "act exited %d:\n%s", rc, out);
        uint64_t py_version = (uint64_t)field_num(out, "policy", "version");
        uint64_t c_version = load_served_policy(&r, &p);
        cr_expect_geq(py_version, 1, "%s", out);
        if (py_version != c_version) {
            continue;
        }
        float want[B];
        rng_t rng;
        rng_seed(&rng, 1);
        policy_act(&p, &rng, want, &obs[0][0], B, true);
        const char *line = out;
        for (int i = 0; i < B; i++) {
            line = strstr(line, "\nact ");
            cr_assert_not_null(line, "%s", out);
            line++;
            char a[64];
            cr_assert(field(a, sizeof a, line, "act", "action"), "%s", out);
            float got = strtof(a, NULL);
            cr_expect(fabsf(got - want[i]) <= ACT_TOL, "obs %d: python %.9g, C %.9g (v%llu)", i,
                      got, want[i], (unsigned long long)c_version);
            cr_expect(got >= -2.0f && got <= 2.0f, "action %g outside Pendulum's bounds", got);
        }
        compared = true;
    }
    cr_expect(compared, "the policy version changed between every two reads");
    policy_free(&p);
    env_free(e);

    /* the module's other calls: health, FetchReal, GetModel, a GetPolicy long poll */
    snprintf(args, sizeof args, "%s %s", CALLS_HELPER, r.run_dir);
    rc = run_python(out, sizeof out, args);
    cr_assert_eq(rc, 0, "python_client_calls.py exited %d:\n%s", rc, out);
    const char *want_calls[] = {"learner_ready=1\n",          "modelserver_health=1\n",
                                "unknown_service_health=0\n", "fetch_rows=64 obs_cols=3 act_cols=1",
                                "fetch_continuous=1\n",       "far_future_policy=0\n"};
    for (size_t i = 0; i < sizeof want_calls / sizeof want_calls[0]; i++) {
        cr_expect(strstr(out, want_calls[i]) != NULL, "no %s in:\n%s", want_calls[i], out);
    }
    const char *mv = strstr(out, "model_version=");
    cr_expect(mv && strtoull(mv + 14, NULL, 10) >= 1, "%s", out);
    const char *mt = strstr(out, "model_tensors=");
    cr_expect(mt && atoi(mt + 14) > 0, "%s", out);

    /* an address nobody answers on fails with status 1, the reason on stderr */
    snprintf(args, sizeof args, "%s evals --learner 127.0.0.1:%d --timeout 1 2>/dev/null", CLIENT,
             procfix_free_port());
    cr_expect_eq(run_python(out, sizeof out, args), 1, "%s", out);

    cr_assert_eq(kill(r.pid, SIGTERM), 0);
    int code = e2e_wait_exit(&r, 120000);
    cr_expect_eq(code, 128 + SIGTERM, "twig run exited %d (see %s)", code, r.dir);
    procfix_reap_all();
    procfix_tmpdir_done(r.dir);
}
