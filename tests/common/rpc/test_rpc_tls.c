/* tests of common/rpc's TLS (rpc_tls.c): an in-process mutual-TLS server on 127.0.0.1:0 and
 * clients against it, with a CA and certificates the test makes (tests/tlsfix.h). A TLS
 * client and server talk; plaintext and TLS peers do not, fast; a client certificate of
 * another CA is refused; bad files are refused at init, naming the key and the file. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/base/err.h"
#include "common/rpc/rpc.h"
#include "common/rpc/tls_run.h"
#include "proto/health.pb-c.h"
#include "tests/procfix.h"
#include "tests/tlsfix.h"

#define P_LEN "/twig.v1.TlsTest/Len"
#define FAIL_FAST_MS 3000   /* a refused peer answers well within this (no hang) */

/* replies the length of the request's service string as the status field */
static int on_len(rpc_call_t *call, const ProtobufCMessage *msg, void *app)
{
    (void)app;
    const Grpc__Health__V1__HealthCheckRequest *q =
        (const Grpc__Health__V1__HealthCheckRequest *)msg;
    Grpc__Health__V1__HealthCheckResponse r = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    r.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)strlen(q->service);
    rpc_call_reply(call, 0, &r.base);
    return 0;
}

static const rpc_method methods[] = {
    {P_LEN, &grpc__health__v1__health_check_request__descriptor, on_len, RPC_KIND_UNARY,
     RPC_RUN_ON_CQ},
};

typedef struct fix {
    char dir[PROCFIX_DIR_LEN];
    char ca[TLSFIX_PATH_MAX], cert[TLSFIX_PATH_MAX], key[TLSFIX_PATH_MAX];
    char other_cert[TLSFIX_PATH_MAX], other_key[TLSFIX_PATH_MAX], both_cas[TLSFIX_PATH_MAX];
    rpc_tls tls;   /* ca, cert, key */
} fix;

static void fix_init(fix *f)
{
    memset(f, 0, sizeof *f);
    procfix_tmpdir(f->dir, sizeof f->dir);
    tlsfix_ca(f->dir, "ca");
    tlsfix_cert(f->dir, "ca", "host");
    tlsfix_ca(f->dir, "other");
    tlsfix_cert(f->dir, "other", "intruder");
    tlsfix_path(f->ca, sizeof f->ca, f->dir, "ca", "pem");
    tlsfix_path(f->cert, sizeof f->cert, f->dir, "host", "pem");
    tlsfix_path(f->key, sizeof f->key, f->dir, "host", "key");
    tlsfix_path(f->other_cert, sizeof f->other_cert, f->dir, "intruder", "pem");
    tlsfix_path(f->other_key, sizeof f->other_key, f->dir, "intruder", "key");
    /* a bundle of both CAs: a client that trusts our server and shows another CA's cert */
    char other_ca[TLSFIX_PATH_MAX];
    tlsfix_path(other_ca, sizeof other_ca, f->dir, "other", "pem");
    char *a = tlsfix_slurp(f->ca), *b = tlsfix_slurp(other_ca);
    size_t n = strlen(a) + strlen(b) + 1;
    char *both = malloc(n);
    cr_assert_not_null(both);
    snprintf(both, n, "%s%s", a, b);
    tlsfix_write(f->dir, "both-cas.pem", both);
    free(a);
    free(b);
    free(both);
    snprintf(f->both_cas, sizeof f->both_cas, "%s/both-cas.pem", f->dir);
    f->tls = (rpc_tls){.ca_file = f->ca, .cert_file = f->cert, .key_file = f->key};
}

static rpc_server_t *start_server(const rpc_tls *tls, char *addr, size_t n)
{
    rpc_server_cfg cfg = {.listen = "127.0.0.1:0", .tls = tls};
    rpc_server_t *srv = NULL;
    int rc = rpc_server_init(&srv, &cfg, methods, 1);
    cr_assert_eq(rc, 0, "rpc_server_init: %s", err_msg());
    cr_assert_eq(rpc_server_start(srv), 0);
    snprintf(addr, n, "127.0.0.1:%d", rpc_server_port(srv));
    return srv;
}

/* the Len call over a client made with tls: 0 and *len, or the error */
static int call_len(const char *addr, const rpc_tls *tls, const char *text, int *len)
{
    rpc_client_cfg cc = {.tls = tls};
    rpc_client_t *cl = NULL;
    int rc = rpc_client_init(&cl, addr, &cc);
    if (rc < 0) {
        return rc;
    }
    Grpc__Health__V1__HealthCheckRequest q = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    q.service = (char *)text;
    ProtobufCMessage *r = NULL;
    rpc_call_opts o = {.deadline_ms = FAIL_FAST_MS};
    rc = rpc_client_unary(cl, &r, P_LEN, &q.base,
                          &grpc__health__v1__health_check_response__descriptor, &o);
    if (rc == 0) {
        *len = (int)((Grpc__Health__V1__HealthCheckResponse *)r)->status;
        protobuf_c_message_free_unpacked(r, NULL);
    }
    rpc_client_free(cl);
    return rc;
}

static void suite_init(void)
{
    rpc_lib_init();
}

static void suite_fini(void)
{
    rpc_lib_shutdown(3000);
}

TestSuite(rpc_tls, .init = suite_init, .fini = suite_fini, .timeout = 60);

Test(rpc_tls, a_tls_client_and_a_tls_server_talk)
{
    fix f;
    fix_init(&f);
    char addr[64];
    rpc_server_t *srv = start_server(&f.tls, addr, sizeof addr);
    int len = -1;
    cr_expect_eq(call_len(addr, &f.tls, "twelve chars", &len), 0, "%s", err_msg());
    cr_expect_eq(len, 12);
    rpc_client_cfg cc = {.tls = &f.tls};
    cr_expect_eq(rpc_health_check_cfg(addr, &cc, "", 2000), RPC_HEALTH_SERVING, "%s",
                 err_msg());
    cr_expect_eq(rpc_wait_health_cfg(addr, &cc, RPC_HEALTH_READINESS, 5000), 0, "%s",
                 err_msg());
    /* the certificate's DNS name checked instead of the address's IP */
    rpc_tls named = f.tls;
    named.server_name = "localhost";
    len = -1;
    cr_expect_eq(call_len(addr, &named, "abc", &len), 0, "%s", err_msg());
    cr_expect_eq(len, 3);
    /* and a name the certificate does not carry is refused */
    named.server_name = "elsewhere.example";
    int64_t t0 = procfix_now_ms();
    cr_expect_eq(call_len(addr, &named, "abc", &len), TWIG_EUNAVAIL, "%s", err_msg());
    cr_expect_lt(procfix_now_ms() - t0, FAIL_FAST_MS);
    rpc_server_shutdown(srv, 100);
    rpc_server_free(srv);
    procfix_tmpdir_done(f.dir);
}

Test(rpc_tls, plaintext_and_tls_peers_fail_fast_with_unavailable)
{
    fix f;
    fix_init(&f);
    char tls_addr[64], plain_addr[64];
    rpc_server_t *tls_srv = start_server(&f.tls, tls_addr, sizeof tls_addr);
    rpc_server_t *plain_srv = start_server(NULL, plain_addr, sizeof plain_addr);
    int len = -1;
    /* plaintext client, TLS server */
    int64_t t0 = procfix_now_ms();
    int rc = call_len(tls_addr, NULL, "x", &len);
    int64_t took = procfix_now_ms() - t0;
    cr_expect_eq(rc, TWIG_EUNAVAIL, "plaintext to TLS: %s (%s)", err_name(rc), err_msg());
    cr_expect_lt(took, FAIL_FAST_MS, "plaintext to TLS took %lld ms", (long long)took);
    t0 = procfix_now_ms();
    rc = rpc_health_check(tls_addr, "", 2000);
    cr_expect_eq(rc, TWIG_EUNAVAIL, "plaintext probe of TLS: %s", err_name(rc));
    cr_expect_lt(procfix_now_ms() - t0, FAIL_FAST_MS);
    /* TLS client, plaintext server */
    t0 = procfix_now_ms();
    rc = call_len(plain_addr, &f.tls, "x", &len);
    took = procfix_now_ms() - t0;
    cr_expect_eq(rc, TWIG_EUNAVAIL, "TLS to plaintext: %s (%s)", err_name(rc), err_msg());
    cr_expect_lt(took, FAIL_FAST_MS, "TLS to plaintext took %lld ms", (long long)took);
    cr_expect_eq(len, -1, "no call got through");
    /* both still serve their own kind */
    cr_expect_eq(call_len(plain_addr, NULL, "ab", &len), 0, "%s", err_msg());
    cr_expect_eq(len, 2);
    cr_expect_eq(call_len(tls_addr, &f.tls, "abcd", &len), 0, "%s", err_msg());
    cr_expect_eq(len, 4);
    rpc_server_shutdown(tls_srv, 100);
    rpc_server_shutdown(plain_srv, 100);
    rpc_server_free(tls_srv);
    rpc_server_free(plain_srv);
    procfix_tmpdir_done(f.dir);
}

Test(rpc_tls, a_client_certificate_of_another_ca_is_refused)
{
    fix f;
    fix_init(&f);
    char addr[64];
    rpc_server_t *srv = start_server(&f.tls, addr, sizeof addr);
    /* trusts the server (both CAs) but shows a certificate our CA never signed */
    rpc_tls intruder = {.ca_file = f.both_cas, .cert_file = f.other_cert,
                        .key_file = f.other_key};
    cr_assert_eq(rpc_tls_check(&intruder), 0, "the intruder's files are valid: %s", err_msg());
    int len = -1;
    int64_t t0 = procfix_now_ms();
    int rc = call_len(addr, &intruder, "x", &len);
    cr_expect_eq(rc, TWIG_EUNAVAIL, "%s (%s)", err_name(rc), err_msg());
    cr_expect_lt(procfix_now_ms() - t0, FAIL_FAST_MS);
    cr_expect_eq(len, -1);
    /* the same client with our CA's certificate gets through */
    rpc_tls friend = {.ca_file = f.both_cas, .cert_file = f.cert, .key_file = f.key};
    cr_expect_eq(call_len(addr, &friend, "xyz", &len), 0, "%s", err_msg());
    cr_expect_eq(len, 3);
    rpc_server_shutdown(srv, 100);
    rpc_server_free(srv);
    procfix_tmpdir_done(f.dir);
}

/* rc is TWIG_ECONFIG and err_msg() holds both key and what */
static void expect_refused(int rc, const char *key, const char *what)
{
    cr_expect_eq(rc, TWIG_ECONFIG, "%s: %s (%s)", key, err_name(rc), err_msg());
    cr_expect(strstr(err_msg(), key) && strstr(err_msg(), what), "'%s' lacks '%s' or '%s'",
              err_msg(), key, what);
}

Test(rpc_tls, bad_files_are_refused_at_init_naming_key_and_file)
{
    fix f;
    fix_init(&f);
    char missing[TLSFIX_PATH_MAX], garbage[TLSFIX_PATH_MAX];
    snprintf(missing, sizeof missing, "%s/no-such.pem", f.dir);
    snprintf(garbage, sizeof garbage, "%s/garbage.pem", f.dir);
    tlsfix_write(f.dir, "garbage.pem", "this is not a certificate\n");
    rpc_client_cfg cc;
    rpc_client_t *cl = (rpc_client_t *)&cc;   /* must come back NULL */

    rpc_tls t = f.tls;
    t.cert_file = missing;
    cc = (rpc_client_cfg){.tls = &t};
    expect_refused(rpc_client_init(&cl, "127.0.0.1:1", &cc), "tls_cert", missing);
    cr_expect_null(cl);
    cr_expect(strstr(err_msg(), "No such file"), "%s", err_msg());
    rpc_server_t *srv = (rpc_server_t *)&cc;
    rpc_server_cfg sc = {.listen = "127.0.0.1:0", .tls = &t};
    expect_refused(rpc_server_init(&srv, &sc, methods, 1), "tls_cert", missing);
    cr_expect_null(srv);

    t = f.tls;
    t.ca_file = garbage;
    expect_refused(rpc_tls_check(&t), "tls_ca", garbage);
    cr_expect(strstr(err_msg(), "no PEM certificate"), "%s", err_msg());
    t = f.tls;
    t.cert_file = garbage;
    expect_refused(rpc_tls_check(&t), "tls_cert", garbage);
    t = f.tls;
    t.key_file = garbage;
    expect_refused(rpc_tls_check(&t), "tls_key", garbage);
    cr_expect(strstr(err_msg(), "no PEM private key"), "%s", err_msg());
    /* a key of another certificate */
    t = f.tls;
    t.key_file = f.other_key;
    expect_refused(rpc_tls_check(&t), "tls_key", "is not the key of tls_cert");
    /* a certificate our CA did not sign */
    t = (rpc_tls){.ca_file = f.ca, .cert_file = f.other_cert, .key_file = f.other_key};
    expect_refused(rpc_tls_check(&t), "tls_cert", "does not verify against tls_ca");
    /* one file without the others, and a server name alone */
    t = (rpc_tls){.cert_file = f.cert};
    expect_refused(rpc_tls_check(&t), "tls_ca", "is empty");
    t = (rpc_tls){.server_name = "localhost"};
    expect_refused(rpc_tls_check(&t), "tls_server_name", "without tls_ca");
    /* nothing at all: plaintext, fine */
    t = (rpc_tls){0};
    cr_expect_eq(rpc_tls_check(&t), 0);
    cr_expect_eq(rpc_tls_check(NULL), 0);
    cr_expect_eq(rpc_tls_check(&f.tls), 0, "%s", err_msg());
    procfix_tmpdir_done(f.dir);
}

/* exit code of deploy/health_check.py ADDR with tls's files as flags (tls NULL: plaintext) */
static int run_health_py(const fix *f, const char *addr, const rpc_tls *tls)
{
    char log[TLSFIX_PATH_MAX];
    snprintf(log, sizeof log, "%s/health_check.log", f->dir);
    const char *argv[16] = {"/usr/bin/python3", TWIG_SRC_DIR "/deploy/health_check.py", addr,
                            "--timeout", "2"};
    int n = 5;
    if (tls) {
        argv[n++] = "--tls-ca";
        argv[n++] = tls->ca_file;
        argv[n++] = "--tls-cert";
        argv[n++] = tls->cert_file;
        argv[n++] = "--tls-key";
        argv[n++] = tls->key_file;
    }
    argv[n] = NULL;
    return procfix_exit_code(procfix_spawn(argv, log), 30000);
}

Test(rpc_tls, python_health_check_probes_a_tls_server_only_with_the_files)
{
    fix f;
    fix_init(&f);
    char addr[64];
    rpc_server_t *srv = start_server(&f.tls, addr, sizeof addr);
    cr_expect_eq(run_health_py(&f, addr, &f.tls), 0);
    cr_expect_eq(run_health_py(&f, addr, NULL), 1, "a plaintext probe is refused");
    rpc_tls intruder = {.ca_file = f.both_cas, .cert_file = f.other_cert,
                        .key_file = f.other_key};
    cr_expect_eq(run_health_py(&f, addr, &intruder), 1, "another CA's certificate is refused");
    rpc_server_shutdown(srv, 100);
    rpc_server_free(srv);
    procfix_tmpdir_done(f.dir);
}

Test(rpc_tls, tls_from_takes_a_run_files_keys_and_flags_given_win_in_either_order)
{
    char dir[PROCFIX_DIR_LEN];
    procfix_tmpdir(dir, sizeof dir);
    tlsfix_write(dir, "run.yaml",
                 "env: Pendulum-v1\ntls_ca: /x/ca.pem\ntls_cert: /x/host.pem\n"
                 "tls_key: /x/host.key\ntls_server_name: twig.internal\nlearner:\n"
                 "  batch_size: 64\n");
    tlsfix_write(dir, "plain.yaml", "env: Pendulum-v1\n");
    tlsfix_write(dir, "bad.yaml", "tls_ca: /x/ca.pem\n");
    tlsfix_write(dir, "typo.yaml", "tls_cas: /x/ca.pem\n");
    char run[PROCFIX_DIR_LEN + 16], plain[PROCFIX_DIR_LEN + 16], bad[PROCFIX_DIR_LEN + 16],
        typo[PROCFIX_DIR_LEN + 16], missing[PROCFIX_DIR_LEN + 16];
    snprintf(run, sizeof run, "%s/run.yaml", dir);
    snprintf(plain, sizeof plain, "%s/plain.yaml", dir);
    snprintf(bad, sizeof bad, "%s/bad.yaml", dir);
    snprintf(typo, sizeof typo, "%s/typo.yaml", dir);
    snprintf(missing, sizeof missing, "%s/missing.yaml", dir);

    rpc_tls_paths p;
    memset(&p, 0, sizeof p);
    cr_assert_eq(rpc_tls_paths_flag(&p, "--tls-from", run), 1, "%s", err_msg());
    cr_expect_str_eq(p.ca, "/x/ca.pem");
    cr_expect_str_eq(p.cert, "/x/host.pem");
    cr_expect_str_eq(p.key, "/x/host.key");
    cr_expect_str_eq(p.server_name, "twig.internal");
    /* a flag after the file overwrites it; one before the file is kept */
    cr_assert_eq(rpc_tls_paths_flag(&p, "--tls-cert", "/y/mine.pem"), 1);
    cr_expect_str_eq(p.cert, "/y/mine.pem");
    memset(&p, 0, sizeof p);
    cr_assert_eq(rpc_tls_paths_flag(&p, "--tls-key", "/y/mine.key"), 1);
    cr_assert_eq(rpc_tls_paths_flag(&p, "--tls-from", run), 1);
    cr_expect_str_eq(p.key, "/y/mine.key");
    cr_expect_str_eq(p.ca, "/x/ca.pem");
    /* a run file without TLS leaves plaintext */
    memset(&p, 0, sizeof p);
    cr_assert_eq(rpc_tls_paths_flag(&p, "--tls-from", plain), 1, "%s", err_msg());
    cr_expect_str_eq(p.ca, "");
    cr_expect_str_eq(p.cert, "");
    /* refused, naming the file and what is wrong with it */
    cr_expect_eq(rpc_tls_paths_flag(&p, "--tls-from", NULL), -EINVAL);
    cr_expect_str_eq(err_msg(), "--tls-from needs a run file");
    cr_expect_eq(rpc_tls_paths_flag(&p, "--tls-from", bad), -EINVAL);
    cr_expect(strstr(err_msg(), bad) && strstr(err_msg(), "tls_cert"), "%s", err_msg());
    cr_expect_eq(rpc_tls_paths_flag(&p, "--tls-from", typo), -EINVAL);
    cr_expect(strstr(err_msg(), typo) && strstr(err_msg(), "tls_cas"), "%s", err_msg());
    cr_expect_eq(rpc_tls_paths_flag(&p, "--tls-from", missing), -EINVAL);
    cr_expect(strstr(err_msg(), missing), "%s", err_msg());
    procfix_tmpdir_done(dir);
}
