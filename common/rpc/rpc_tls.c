/* rpc_tls.c - TLS for rpc servers and clients: the PEM files of an rpc_tls read and checked,
 * and gRPC's SSL credentials made from them. The contract is in rpc.h ("TLS").
 *
 * gRPC itself checks little before a handshake: a garbage certificate makes a server whose
 * every handshake fails, a client channel that is lame. So the files are checked here, with
 * OpenSSL (the library gRPC's TLS runs on), before any credential exists: each file is read
 * with a cap, must hold PEM of the right kind, the key must belong to the certificate, and
 * the certificate must verify against the CA (which also catches an expired one). Every
 * error names the run-config key and the file.
 */
#include "common/rpc/rpc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include "common/base/atomic_file.h"
#include "common/base/err.h"
#include "common/base/mem.h"
#include "common/config/config.h"
#include "common/rpc/rpc_priv.h"
#include "common/rpc/tls_run.h"

#define RPC_TLS_FILE_MAX (1u << 20)  /* a PEM file over 1 MiB is not a certificate or key */

static bool tls_set(const char *s)
{
    return s && s[0];
}

bool rpc_tls_on(const rpc_tls *t)
{
    return t && (tls_set(t->ca_file) || tls_set(t->cert_file) || tls_set(t->key_file));
}

/* OpenSSL's first queued error as text (and the queue emptied) */
static void ossl_why(char *buf, size_t n)
{
    unsigned long e = ERR_get_error();
    if (e) {
        ERR_error_string_n(e, buf, n);
    } else {
        snprintf(buf, n, "no PEM block found");
    }
    ERR_clear_error();
}

/* the whole of path as a NUL-terminated string (owned) */
static int tls_read(char **out, const char *key, const char *path)
{
    uint8_t *data = NULL;
    size_t n = 0;
    int rc = atomic_file_read(&data, &n, path, RPC_TLS_FILE_MAX);
    if (rc < 0) {
        char why[256];
        snprintf(why, sizeof why, "%s", err_msg());
        return err_set(TWIG_ECONFIG, "%s '%s': cannot read it (%s)", key, path, why);
    }
    *out = xrealloc(data, n + 1);
    (*out)[n] = '\0';
    return 0;
}

/* the certificates of pem (at least one): into store (a CA file), or the first into *first
 * and the rest, a chain's intermediates, into rest (a certificate file); all owned */
static int tls_parse_certs(X509_STORE *store, X509 **first, STACK_OF(X509) *rest,
                           const char *pem, const char *key, const char *path)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    int n = 0;
    X509 *x;
    while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        if (store) {
            X509_STORE_add_cert(store, x);   /* takes its own reference */
            X509_free(x);
        } else if (!*first) {
            *first = x;
        } else {
            sk_X509_push(rest, x);
        }
        n++;
    }
    BIO_free(b);
    if (n == 0) {
        char why[256];
        ossl_why(why, sizeof why);
        return err_set(TWIG_ECONFIG, "%s '%s' holds no PEM certificate (%s)", key, path, why);
    }
    ERR_clear_error();   /* the end of the file reads as an error */
    return 0;
}

/* the files of t, checked as the opening comment says; on success every field is set */
static int tls_check_pem(const rpc_tls *t, const rpc_tls_pem *p)
{
    int rc = 0;
    X509_STORE *store = X509_STORE_new();
    X509 *cert = NULL;
    EVP_PKEY *pkey = NULL;
    X509_STORE_CTX *ctx = NULL;
    STACK_OF(X509) *chain = sk_X509_new_null();
    if ((rc = tls_parse_certs(store, NULL, NULL, p->ca, "tls_ca", t->ca_file)) < 0 ||
        (rc = tls_parse_certs(NULL, &cert, chain, p->cert, "tls_cert", t->cert_file)) < 0) {
        goto out;
    }
    BIO *b = BIO_new_mem_buf(p->key, -1);
    pkey = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    if (!pkey) {
        char why[256];
        ossl_why(why, sizeof why);
        rc = err_set(TWIG_ECONFIG, "tls_key '%s' holds no PEM private key (%s)", t->key_file,
                     why);
        goto out;
    }
    if (X509_check_private_key(cert, pkey) != 1) {
        ERR_clear_error();
        rc = err_set(TWIG_ECONFIG, "tls_key '%s' is not the key of tls_cert '%s'", t->key_file,
                     t->cert_file);
        goto out;
    }
    ctx = X509_STORE_CTX_new();
    if (!ctx || X509_STORE_CTX_init(ctx, store, cert, chain) != 1) {
        TWIG_PANIC("X509_STORE_CTX: out of memory");
    }
    if (X509_verify_cert(ctx) != 1) {
        int e = X509_STORE_CTX_get_error(ctx);
        ERR_clear_error();
        rc = err_set(TWIG_ECONFIG, "tls_cert '%s' does not verify against tls_ca '%s': %s",
                     t->cert_file, t->ca_file, X509_verify_cert_error_string(e));
        goto out;
    }
out:
    X509_STORE_CTX_free(ctx);
    EVP_PKEY_free(pkey);
    X509_free(cert);
    sk_X509_pop_free(chain, X509_free);
    X509_STORE_free(store);
    return rc;
}

void rpc_tls_pem_free(rpc_tls_pem *p)
{
    free(p->ca);
    free(p->cert);
    free(p->key);
    *p = (rpc_tls_pem){0};
}

int rpc_tls_load(rpc_tls_pem *p, const rpc_tls *t)
{
    *p = (rpc_tls_pem){0};
    if (!rpc_tls_on(t)) {
        if (t && tls_set(t->server_name)) {
            return err_set(TWIG_ECONFIG, "tls_server_name '%s' is set without tls_ca, "
                           "tls_cert and tls_key", t->server_name);
        }
        return 0;
    }
    const char *const keys[3] = {"tls_ca", "tls_cert", "tls_key"};
    const char *const paths[3] = {t->ca_file, t->cert_file, t->key_file};
    char **dst[3] = {&p->ca, &p->cert, &p->key};
    for (int i = 0; i < 3; i++) {
        if (!tls_set(paths[i])) {
            return err_set(TWIG_ECONFIG, "%s is empty: TLS needs tls_ca, tls_cert and tls_key "
                           "(all three, or none for plaintext)", keys[i]);
        }
    }
    int rc = 0;
    for (int i = 0; i < 3 && rc == 0; i++) {
        rc = tls_read(dst[i], keys[i], paths[i]);
    }
    if (rc == 0) {
        rc = tls_check_pem(t, p);
    }
    if (rc < 0) {
        rpc_tls_pem_free(p);
    }
    return rc;
}

rpc_tls rpc_tls_of_run(const run_cfg *r)
{
    if (!r) {
        return (rpc_tls){0};
    }
    return (rpc_tls){.ca_file = r->tls_ca, .cert_file = r->tls_cert, .key_file = r->tls_key,
                     .server_name = r->tls_server_name};
}

void rpc_tls_paths_of_run(rpc_tls_paths *out, const run_cfg *r)
{
    memset(out, 0, sizeof *out);
    if (r) {
        snprintf(out->ca, sizeof out->ca, "%s", r->tls_ca);
        snprintf(out->cert, sizeof out->cert, "%s", r->tls_cert);
        snprintf(out->key, sizeof out->key, "%s", r->tls_key);
        snprintf(out->server_name, sizeof out->server_name, "%s", r->tls_server_name);
    }
}

rpc_tls rpc_tls_of_paths(const rpc_tls_paths *p)
{
    return (rpc_tls){.ca_file = p->ca, .cert_file = p->cert, .key_file = p->key,
                     .server_name = p->server_name};
}

const char rpc_tls_flags_help[] =
    "  --tls-ca FILE     the run's tls_ca (PEM): mutual TLS, with --tls-cert and --tls-key\n"
    "  --tls-cert FILE   a certificate the run's CA signed (PEM)\n"
    "  --tls-key FILE    its private key (PEM)\n"
    "  --tls-server-name NAME  the name the server's certificate carries (default: the host)\n"
    "  --tls-from FILE   take the four from a run file's tls_ca, tls_cert, tls_key and\n"
    "                    tls_server_name (a container's probe: the file its process runs with);\n"
    "                    --tls-* flags given as well win\n";

/* --tls-from FILE: the run file's TLS keys fill what no --tls-* flag set (flags win in any
 * order: a later flag overwrites, an earlier one is kept) */
static int tls_paths_from_run_file(rpc_tls_paths *p, const char *path)
{
    run_cfg r;
    config_table t = run_cfg_table(&r);
    int rc = config_set_defaults(&t, 1);
    if (rc >= 0) {
        rc = config_load_file(&t, 1, path, run_sections);
    }
    if (rc >= 0) {
        rc = config_check(&t, 1);
    }
    if (rc < 0) {
        char why[512];
        snprintf(why, sizeof why, "%s", err_msg());
        return err_set(-EINVAL, "--tls-from %s: %s", path, why);
    }
    rpc_tls_paths file;
    rpc_tls_paths_of_run(&file, &r);
    char *const dst[4] = {p->ca, p->cert, p->key, p->server_name};
    const char *const src[4] = {file.ca, file.cert, file.key, file.server_name};
    const size_t cap[4] = {sizeof p->ca, sizeof p->cert, sizeof p->key, sizeof p->server_name};
    for (int i = 0; i < 4; i++) {
        if (!dst[i][0]) {
            snprintf(dst[i], cap[i], "%s", src[i]);
        }
    }
    return 1;
}

int rpc_tls_paths_flag(rpc_tls_paths *p, const char *flag, const char *value)
{
    if (strcmp(flag, "--tls-from") == 0) {
        if (!value || !value[0]) {
            return err_set(-EINVAL, "--tls-from needs a run file");
        }
        return tls_paths_from_run_file(p, value);
    }
    static const char *const flags[4] = {"--tls-ca", "--tls-cert", "--tls-key",
                                         "--tls-server-name"};
    char *const dst[4] = {p->ca, p->cert, p->key, p->server_name};
    const size_t cap[4] = {sizeof p->ca, sizeof p->cert, sizeof p->key, sizeof p->server_name};
    for (int i = 0; i < 4; i++) {
        if (strcmp(flag, flags[i]) != 0) {
            continue;
        }
        if (!value || !value[0] || strlen(value) >= cap[i]) {
            return err_set(-EINVAL, "%s needs a %s of at most %zu bytes", flag,
                           i < 3 ? "file" : "name", cap[i] - 1);
        }
        snprintf(dst[i], cap[i], "%s", value);
        return 1;
    }
    return 0;
}

int rpc_tls_check(const rpc_tls *t)
{
    rpc_tls_pem p;
    int rc = rpc_tls_load(&p, t);
    rpc_tls_pem_free(&p);
    return rc;
}

int rpc_tls_server_creds(struct grpc_server_credentials **out, const rpc_tls *t)
{
    *out = NULL;
    rpc_tls_pem p;
    int rc = rpc_tls_load(&p, t);
    if (rc < 0) {
        return rc;
    }
    if (!p.ca) {
        *out = grpc_insecure_server_credentials_create();
        return 0;
    }
    /* mutual TLS: a client must show a certificate the CA signed */
    grpc_ssl_pem_key_cert_pair pair = {.private_key = p.key, .cert_chain = p.cert};
    *out = grpc_ssl_server_credentials_create_ex(
        p.ca, &pair, 1, GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY, NULL);
    rpc_tls_pem_free(&p);   /* the credentials hold their own copies */
    if (!*out) {
        return err_set(TWIG_ECONFIG, "gRPC refused the TLS files tls_cert '%s', tls_key '%s'",
                       t->cert_file, t->key_file);
    }
    return 0;
}

int rpc_tls_channel_creds(struct grpc_channel_credentials **out, const rpc_tls *t)
{
    *out = NULL;
    rpc_tls_pem p;
    int rc = rpc_tls_load(&p, t);
    if (rc < 0) {
        return rc;
    }
    if (!p.ca) {
        *out = grpc_insecure_credentials_create();
        return 0;
    }
    /* the CA is the only trust root (never the system's); our certificate for the server */
    grpc_ssl_pem_key_cert_pair pair = {.private_key = p.key, .cert_chain = p.cert};
    *out = grpc_ssl_credentials_create(p.ca, &pair, NULL, NULL);
    rpc_tls_pem_free(&p);
    if (!*out) {
        return err_set(TWIG_ECONFIG, "gRPC refused the TLS files tls_cert '%s', tls_key '%s'",
                       t->cert_file, t->key_file);
    }
    return 0;
}
