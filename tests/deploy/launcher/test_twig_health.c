/* test_twig_health.c - `twig health ADDR [--service NAME] [--timeout-ms N]` against a real
 * gRPC server in this test process (common/rpc's health service): each answer is its exit
 * status, and bad arguments are refused before anything is asked. */
#include "tests/procfix.h"

#define TWIG TWIG_BIN_DIR "/deploy/twig"
#define RUN_MS 20000 /* a probe's whole run (its own timeout is much shorter) */

static char tmp[PROCFIX_DIR_LEN];
static char out_file[PROCFIX_DIR_LEN + 16], err_file[PROCFIX_DIR_LEN + 16];

static void suite_init(void)
{
    procfix_tmpdir(tmp, sizeof tmp);
    snprintf(out_file, sizeof out_file, "%s/out", tmp);
    snprintf(err_file, sizeof err_file, "%s/err", tmp);
}

static void suite_fini(void)
{
    procfix_reap_all();
    procfix_tmpdir_done(tmp);
}

TestSuite(twig_health, .init = suite_init, .fini = suite_fini, .timeout = 120);

/* a server on 127.0.0.1:<free port> with only the built-in health service */
static rpc_server_t *serve(char *addr, size_t n)
{
    rpc_lib_init();
    rpc_server_cfg cfg = {.listen = "127.0.0.1:0"};
    rpc_method none[1] = {{0}};
    rpc_server_t *srv = NULL;
    cr_assert_eq(rpc_server_init(&srv, &cfg, none, 0), 0, "%s", err_msg());
    cr_assert_eq(rpc_server_start(srv), 0, "%s", err_msg());
    snprintf(addr, n, "127.0.0.1:%d", rpc_server_port(srv));
    return srv;
}

static void unserve(rpc_server_t *srv)
{
    rpc_server_shutdown(srv, 100);
    rpc_server_free(srv);
    rpc_lib_shutdown(5000);
}

/* run twig with args (NULL-terminated after argv[0] = "health"); its exit code, its stdout
 * and stderr in out/err (truncated to n), how long it took in *ms */
static int run_health(char *out, char *err, size_t n, int64_t *ms, const char *const *args)
{
    const char *argv[16] = {TWIG};
    int k = 1;
    for (; args[k - 1] != NULL && k < 15; k++) {
        argv[k] = args[k - 1];
    }
    argv[k] = NULL;
    unlink(out_file);
    unlink(err_file);
    int64_t t0 = procfix_now_ms();
    pid_t pid = procfix_spawn_io(argv, out_file, err_file);
    int code = procfix_exit_code(pid, RUN_MS);
    if (ms) {
        *ms = procfix_now_ms() - t0;
    }
    const char *files[2] = {out_file, err_file};
    char *bufs[2] = {out, err};
    for (int i = 0; i < 2; i++) {
        bufs[i][0] = '\0';
        FILE *f = fopen(files[i], "r");
        if (f) {
            size_t got = fread(bufs[i], 1, n - 1, f);
            bufs[i][got] = '\0';
            fclose(f);
        }
    }
    return code;
}

Test(twig_health, serving_server_and_liveness)
{
    char addr[64], out[4096], err[4096];
    rpc_server_t *srv = serve(addr, sizeof addr);
    int code = run_health(out, err, sizeof out, NULL, (const char *const[]){"health", addr, NULL});
    cr_expect_eq(code, 0, "exit %d, stderr: %s", code, err);
    cr_expect(strstr(out, "SERVING") != NULL && strstr(out, addr) != NULL, "stdout: %s", out);
    code = run_health(out, err, sizeof out, NULL,
                      (const char *const[]){"health", addr, "--service", "liveness", "--timeout-ms",
                                            "3000", NULL});
    cr_expect_eq(code, 0, "liveness: exit %d, stderr: %s", code, err);
    cr_expect(strstr(out, "\"liveness\": SERVING") != NULL, "stdout: %s", out);
    unserve(srv);
}

Test(twig_health, not_serving_is_exit_1)
{
    char addr[64], out[4096], err[4096];
    rpc_server_t *srv = serve(addr, sizeof addr);
    rpc_server_set_ready(srv, false);
    int code = run_health(out, err, sizeof out, NULL, (const char *const[]){"health", addr, NULL});
    cr_expect_eq(code, 1, "exit %d, stderr: %s", code, err);
    cr_expect(strstr(out, "NOT_SERVING") != NULL, "stdout: %s", out);
    code = run_health(out, err, sizeof out, NULL,
                      (const char *const[]){"health", addr, "--service", "readiness", NULL});
    cr_expect_eq(code, 1, "readiness: exit %d", code);
    /* liveness is apart from readiness: still SERVING */
    code = run_health(out, err, sizeof out, NULL,
                      (const char *const[]){"health", addr, "--service", "liveness", NULL});
    cr_expect_eq(code, 0, "liveness of a not-ready server: exit %d, stderr: %s", code, err);
    unserve(srv);
}

Test(twig_health, unknown_service_is_exit_4)
{
    char addr[64], out[4096], err[4096];
    rpc_server_t *srv = serve(addr, sizeof addr);
    int code = run_health(out, err, sizeof out, NULL,
                          (const char *const[]){"health", addr, "--service", "no.Such", NULL});
    cr_expect_eq(code, 4, "exit %d, stderr: %s", code, err);
    cr_expect(strstr(err, "no.Such") != NULL && strstr(err, "NOT_FOUND") != NULL, "stderr: %s",
              err);
    unserve(srv);
}

Test(twig_health, nothing_listening_is_exit_3_at_once)
{
    char addr[64], out[4096], err[4096];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", procfix_free_port());
    int64_t ms = 0;
    int code = run_health(out, err, sizeof out, &ms,
                          (const char *const[]){"health", addr, "--timeout-ms", "10000", NULL});
    cr_expect_eq(code, 3, "exit %d, stderr: %s", code, err);
    cr_expect(strstr(err, "unreachable") != NULL && strstr(err, addr) != NULL, "stderr: %s", err);
    /* a refused connection is an answer: no wait for the 10 s timeout */
    cr_expect_lt(ms, 8000, "took %lld ms", (long long)ms);
}

Test(twig_health, bad_arguments_are_exit_2)
{
    char out[4096], err[4096];
    static const struct {
        const char *args[6];
        const char *says;
    } cases[] = {
        {{"health", NULL}, "ADDR"},
        {{"health", "localhost", NULL}, "localhost"},
        {{"health", "127.0.0.1:99999", NULL}, "99999"},
        {{"health", "127.0.0.1:0", NULL}, "127.0.0.1:0"},
        {{"health", "127.0.0.1:7101", "--timeout-ms", "0", NULL}, "--timeout-ms"},
        {{"health", "127.0.0.1:7101", "--timeout-ms", "5s", NULL}, "--timeout-ms"},
        {{"health", "127.0.0.1:7101", "--service", NULL}, "--service"},
        {{"health", "127.0.0.1:7101", "--nope", NULL}, "--nope"},
        {{"health", "127.0.0.1:7101", "127.0.0.1:7102", NULL}, "unexpected"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int code = run_health(out, err, sizeof out, NULL, cases[i].args);
        cr_expect_eq(code, 2, "case %zu: exit %d, stderr: %s", i, code, err);
        cr_expect(strstr(err, cases[i].says) != NULL, "case %zu: stderr lacks '%s': %s", i,
                  cases[i].says, err);
        cr_expect_eq(out[0], '\0', "case %zu printed on stdout: %s", i, out);
    }
}

Test(twig_health, help_lists_the_exit_codes)
{
    char out[4096], err[4096];
    int code =
        run_health(out, err, sizeof out, NULL, (const char *const[]){"health", "--help", NULL});
    cr_expect_eq(code, 0, "exit %d", code);
    cr_expect(strstr(out, "usage: twig health ADDR") != NULL, "%s", out);
    cr_expect(strstr(out, "0  SERVING") && strstr(out, "1  NOT_SERVING") &&
                  strstr(out, "2  bad arguments") && strstr(out, "3  unreachable") &&
                  strstr(out, "4  the server does not know"),
              "%s", out);
    code = run_health(out, err, sizeof out, NULL, (const char *const[]){"--help", NULL});
    cr_expect_eq(code, 0);
    cr_expect(strstr(out, "health") != NULL, "twig --help lacks health: %s", out);
}
