/* TLS on every connection of a run (docs/deploy.md, "TLS"): a short strict `twig run` on
 * Pendulum-v1 with tls_ca/tls_cert/tls_key reaches its budget, while a plaintext health probe
 * of each of its servers is refused and a TLS one answers; every daemon and `twig run` given
 * a missing or garbage TLS file exits 2 at start, naming the key and the file. The CA and
 * certificates are the test's own (tests/tlsfix.h). */
#include "tests/e2e/e2e_run.h"

#include "tests/tlsfix.h"

#define BUDGET 6000   /* long enough for every check below to run while it runs */
#define DAEMON_EXIT_MS 30000

static const char tls_run[] =
    "env: Pendulum-v1\nseed: 5\nreal_steps: 6000\ninit_steps: 300\nutd: 2\npacing: strict\n"
    "model_train_freq: 300\nrollouts_per_step: 8\nepoch_length: 300\n"
    "hidden: 32\neval_every: 1000\neval_episodes: 2\nn_actors: 1\nn_rollout: 1\n"
    "learner:\n  batch_size: 64\n  policy_publish_every: 50\n"
    "modelserver:\n  model_hidden: 32\n  train_max_epochs: 20\n"
    "actor:\n  push_every: 25\n";

typedef struct certs {
    char dir[PROCFIX_DIR_LEN];
    char ca[TLSFIX_PATH_MAX], cert[TLSFIX_PATH_MAX], key[TLSFIX_PATH_MAX];
    char garbage[TLSFIX_PATH_MAX], missing[TLSFIX_PATH_MAX];
} certs;

static void certs_make(certs *c)
{
    memset(c, 0, sizeof *c);
    procfix_tmpdir(c->dir, sizeof c->dir);
    tlsfix_ca(c->dir, "ca");
    tlsfix_cert(c->dir, "ca", "host");
    tlsfix_path(c->ca, sizeof c->ca, c->dir, "ca", "pem");
    tlsfix_path(c->cert, sizeof c->cert, c->dir, "host", "pem");
    tlsfix_path(c->key, sizeof c->key, c->dir, "host", "key");
    tlsfix_write(c->dir, "garbage.pem", "-----BEGIN CERTIFICATE-----\nnot base64 at all\n");
    snprintf(c->garbage, sizeof c->garbage, "%s/garbage.pem", c->dir);
    snprintf(c->missing, sizeof c->missing, "%s/missing.pem", c->dir);
}

/* deploy/python/twig_client.py status ARGS...: its exit code, its output in *text (owned) */
static int py_status(const e2e_run *r, char **text, const char *const *args)
{
    char out[400];
    snprintf(out, sizeof out, "%s/py-status.out", r->dir);
    unlink(out);
    const char *argv[16] = {"/usr/bin/python3", TWIG_SRC_DIR "/deploy/python/twig_client.py",
                            "status"};
    int n = 3;
    for (int i = 0; args[i] && n < 15; i++) {
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    setenv("TWIG_PY_GEN", TWIG_BIN_DIR "/gen/python", 1);
    setenv("PYTHONDONTWRITEBYTECODE", "1", 1);
    int code = procfix_exit_code(procfix_spawn(argv, out), 30000);
    *text = tlsfix_slurp(out);
    return code;
}

/* `twig CMD ARGS...` (NULL-terminated) with the TLS flags of c when tls: its exit code */
static int twig_cmd(const e2e_run *r, const char *const *args, const rpc_tls *tls)
{
    char out[400];
    snprintf(out, sizeof out, "%s/twig-cmd.out", r->dir);
    const char *argv[20] = {TWIG_BIN_DIR "/deploy/twig"};
    int n = 1;
    for (int i = 0; args[i] && n < 12; i++) {
        argv[n++] = args[i];
    }
    if (tls) {
        argv[n++] = "--tls-ca";
        argv[n++] = tls->ca_file;
        argv[n++] = "--tls-cert";
        argv[n++] = tls->cert_file;
        argv[n++] = "--tls-key";
        argv[n++] = tls->key_file;
    }
    argv[n] = NULL;
    return procfix_exit_code(procfix_spawn(argv, out), 30000);
}

static void teardown(void)
{
    procfix_reap_all();
}

TestSuite(tls_run, .fini = teardown);

Test(tls_run, a_strict_run_with_tls_everywhere_reaches_its_budget, .timeout = 240)
{
    certs c;
    certs_make(&c);
    char yaml[4096];
    snprintf(yaml, sizeof yaml, "%stls_ca: %s\ntls_cert: %s\ntls_key: %s\n", tls_run, c.ca,
             c.cert, c.key);
    e2e_run r;
    e2e_init(&r, yaml);
    rpc_tls tls = {.ca_file = c.ca, .cert_file = c.cert, .key_file = c.key};
    r.tls = &tls;
    e2e_start(&r);
    e2e_wait_real_steps(&r, 400, 120000);

    /* every server of the run: TLS answers, plaintext is refused */
    char addrs[4][64];
    snprintf(addrs[0], sizeof addrs[0], "%s", r.ms_addr);
    snprintf(addrs[1], sizeof addrs[1], "%s", r.learner_addr);
    snprintf(addrs[2], sizeof addrs[2], "127.0.0.1:%d", r.base_port + 10);   /* actor-0 */
    snprintf(addrs[3], sizeof addrs[3], "127.0.0.1:%d", r.base_port + 40);   /* rollout-0 */
    rpc_client_cfg cc = {.tls = &tls};
    for (int i = 0; i < 4; i++) {
        int rc = rpc_health_check_cfg(addrs[i], &cc, RPC_HEALTH_LIVENESS, 2000);
        cr_expect_eq(rc, RPC_HEALTH_SERVING, "TLS probe of %s: %s", addrs[i], err_msg());
        int64_t t0 = procfix_now_ms();
        rc = rpc_health_check(addrs[i], RPC_HEALTH_LIVENESS, 2000);
        cr_expect_eq(rc, TWIG_EUNAVAIL, "plaintext probe of %s: %s (%s)", addrs[i],
                     err_name(rc), err_msg());
        cr_expect_lt(procfix_now_ms() - t0, 2000, "plaintext probe of %s hung", addrs[i]);
    }

    /* the Python client: the run dir's TLS keys, or none (refused) */
    char *text = NULL;
    const char *with_run[] = {"--run-dir", r.run_dir, NULL};
    int code = py_status(&r, &text, with_run);
    cr_expect_eq(code, 0, "twig_client.py status --run-dir: exit %d: %s", code, text);
    cr_expect(strstr(text, "real_steps="), "%s", text);
    free(text);
    const char *plain[] = {"--learner", r.learner_addr, "--modelserver", r.ms_addr, NULL};
    code = py_status(&r, &text, plain);
    cr_expect_eq(code, 1, "plaintext twig_client.py status: exit %d: %s", code, text);
    cr_expect(strstr(text, "UNAVAILABLE"), "%s", text);
    free(text);

    /* twig health and twig status: with the files they answer, without them they cannot */
    const char *health[] = {"health", r.learner_addr, "--service", "liveness", NULL};
    cr_expect_eq(twig_cmd(&r, health, &tls), 0, "twig health over TLS");
    cr_expect_eq(twig_cmd(&r, health, NULL), 3, "plaintext twig health: unreachable");
    const char *status[] = {"status", r.ms_addr, NULL};
    cr_expect_eq(twig_cmd(&r, status, &tls), 0, "twig status over TLS");
    cr_expect_eq(twig_cmd(&r, status, NULL), 1, "plaintext twig status");
    rpc_tls missing = tls;
    missing.cert_file = c.missing;
    cr_expect_eq(twig_cmd(&r, health, &missing), 2, "twig health with a missing --tls-cert");
    /* a container's probe: the TLS keys from the run file its process runs with */
    char run_file[sizeof r.run_dir + 16];
    snprintf(run_file, sizeof run_file, "%s/config.yaml", r.run_dir);
    const char *from[] = {"health", r.learner_addr, "--service", "liveness", "--tls-from",
                          run_file, NULL};
    cr_expect_eq(twig_cmd(&r, from, NULL), 0, "twig health --tls-from the run file");
    const char *status_from[] = {"status", r.ms_addr, "--tls-from", run_file, NULL};
    cr_expect_eq(twig_cmd(&r, status_from, NULL), 0, "twig status --tls-from the run file");
    const char *from_over[] = {"health", r.learner_addr, "--tls-cert", c.missing, "--tls-from",
                               run_file, NULL};
    cr_expect_eq(twig_cmd(&r, from_over, NULL), 2, "a --tls-cert given wins over --tls-from");

    code = e2e_wait_exit(&r, 180000);
    cr_expect_eq(code, 0, "twig run exited %d (see %s)", code, r.dir);
    double cols[2] = {0, 0};
    int rows = e2e_metrics_last(&r, cols, 2);
    cr_expect_gt(rows, 0);
    cr_expect_eq((uint64_t)cols[0], BUDGET, "metrics.csv ends at %.0f real steps", cols[0]);
    if (code == 0) {
        procfix_tmpdir_done(r.dir);
    }
    procfix_tmpdir_done(c.dir);
}

/* bin with the run's TLS keys, key set to bad: exit 2, stderr names key and bad */
static void expect_exit_2(const certs *c, const char *bin, const char *key, const char *bad,
                          const char *extra_flag, const char *extra_value)
{
    char log[TLSFIX_PATH_MAX], set_ca[TLSFIX_PATH_MAX + 16], set_cert[TLSFIX_PATH_MAX + 16];
    char set_key[TLSFIX_PATH_MAX + 16], peer[64];
    snprintf(log, sizeof log, "%s/%s.log", c->dir, strrchr(bin, '/') + 1);
    unlink(log);
    snprintf(set_ca, sizeof set_ca, "tls_ca=%s", strcmp(key, "tls_ca") ? c->ca : bad);
    snprintf(set_cert, sizeof set_cert, "tls_cert=%s", strcmp(key, "tls_cert") ? c->cert : bad);
    snprintf(set_key, sizeof set_key, "tls_key=%s", strcmp(key, "tls_key") ? c->key : bad);
    snprintf(peer, sizeof peer, "127.0.0.1:%d", procfix_free_port());
    const char *argv[20] = {bin, "--listen", "127.0.0.1:0", "--modelserver-addr", peer,
                            "--learner-addr", peer, "--set", set_ca, "--set", set_cert,
                            "--set", set_key};
    int n = 13;
    if (extra_flag) {
        argv[n++] = extra_flag;
        argv[n++] = extra_value;
    }
    argv[n] = NULL;
    int code = procfix_exit_code(procfix_spawn(argv, log), DAEMON_EXIT_MS);
    char *text = tlsfix_slurp(log);
    cr_expect_eq(code, 2, "%s with a bad %s exited %d: %s", bin, key, code, text);
    cr_expect(strstr(text, key) && strstr(text, bad), "%s: the error names neither %s nor %s: %s",
              bin, key, bad, text);
    free(text);
}

Test(tls_run, every_daemon_exits_2_on_a_missing_or_garbage_tls_file, .timeout = 120)
{
    certs c;
    certs_make(&c);
    char ms_dir[TLSFIX_PATH_MAX], ck_dir[TLSFIX_PATH_MAX];
    snprintf(ms_dir, sizeof ms_dir, "%s/ms-data", c.dir);
    snprintf(ck_dir, sizeof ck_dir, "%s/ckpt", c.dir);
    expect_exit_2(&c, TWIG_BIN_DIR "/modelserver/twig-modelserver", "tls_cert", c.missing,
                  "--data-dir", ms_dir);
    expect_exit_2(&c, TWIG_BIN_DIR "/learner/twig-learner", "tls_key", c.garbage,
                  "--checkpoint-dir", ck_dir);
    expect_exit_2(&c, TWIG_BIN_DIR "/actor/twig-actor", "tls_ca", c.garbage, NULL, NULL);
    expect_exit_2(&c, TWIG_BIN_DIR "/modelserver/twig-rollout", "tls_cert", c.garbage, NULL,
                  NULL);
    procfix_tmpdir_done(c.dir);
}

Test(tls_run, twig_run_with_a_missing_tls_file_exits_2_and_starts_nothing, .timeout = 60)
{
    certs c;
    certs_make(&c);
    char yaml[4096];
    snprintf(yaml, sizeof yaml, "%stls_ca: %s\ntls_cert: %s\ntls_key: %s\n", tls_run, c.ca,
             c.missing, c.key);
    e2e_run r;
    e2e_init(&r, yaml);
    e2e_start(&r);
    int code = e2e_wait_exit(&r, 30000);
    char out[400];
    snprintf(out, sizeof out, "%s/twig-run.out", r.dir);
    char *text = tlsfix_slurp(out);
    cr_expect_eq(code, 2, "twig run exited %d: %s", code, text);
    cr_expect(strstr(text, "tls_cert") && strstr(text, c.missing), "%s", text);
    free(text);
    cr_expect_neq(access(r.run_dir, F_OK), 0, "%s was made", r.run_dir);
    procfix_tmpdir_done(r.dir);
    procfix_tmpdir_done(c.dir);
}
