/* tlsfix.h - a test's own CA and certificates, made with the openssl CLI into its temp dir.
 *
 *     tlsfix_ca(dir, "ca");                          // dir/ca.pem, dir/ca.key
 *     tlsfix_cert(dir, "ca", "host");                // dir/host.pem, dir/host.key, signed by ca
 *     char pem[512];
 *     tlsfix_path(pem, sizeof pem, dir, "host", "pem");
 *
 * Keys are P-256, certificates valid two days; leaf certificates carry
 * SAN IP:127.0.0.1 and DNS:localhost and may serve and dial (serverAuth, clientAuth).
 * openssl's output goes to dir/openssl.log. Header-only, Criterion (asserts on failure). */
#ifndef TWIG_TESTS_TLSFIX_H
#define TWIG_TESTS_TLSFIX_H

#include <criterion/criterion.h>
#include <stdio.h>

#include "tests/procfix.h"

#define TLSFIX_OPENSSL "/usr/bin/openssl"
#define TLSFIX_TIMEOUT_MS 30000
#define TLSFIX_PATH_MAX 512

/* dir/name.ext */
static inline void tlsfix_path(char *out, size_t n, const char *dir, const char *name,
                               const char *ext)
{
    snprintf(out, n, "%s/%s.%s", dir, name, ext);
}

static inline void tlsfix_run(const char *dir, const char *const *argv)
{
    char log[TLSFIX_PATH_MAX];
    snprintf(log, sizeof log, "%s/openssl.log", dir);
    int code = procfix_exit_code(procfix_spawn(argv, log), TLSFIX_TIMEOUT_MS);
    cr_assert_eq(code, 0, "%s %s exited %d (see %s)", argv[0], argv[1], code, log);
}

/* a self-signed CA: dir/name.pem and dir/name.key */
static inline void tlsfix_ca(const char *dir, const char *name)
{
    char pem[TLSFIX_PATH_MAX], key[TLSFIX_PATH_MAX], subj[128];
    tlsfix_path(pem, sizeof pem, dir, name, "pem");
    tlsfix_path(key, sizeof key, dir, name, "key");
    snprintf(subj, sizeof subj, "/CN=twig-test-%s", name);
    const char *argv[] = {TLSFIX_OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                          "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", pem,
                          "-days", "2", "-subj", subj, NULL};
    tlsfix_run(dir, argv);
}

/* a leaf certificate signed by CA ca (made by tlsfix_ca in dir): dir/name.pem, .key */
static inline void tlsfix_cert(const char *dir, const char *ca, const char *name)
{
    char pem[TLSFIX_PATH_MAX], key[TLSFIX_PATH_MAX], csr[TLSFIX_PATH_MAX];
    char ca_pem[TLSFIX_PATH_MAX], ca_key[TLSFIX_PATH_MAX], ext[TLSFIX_PATH_MAX];
    char serial[TLSFIX_PATH_MAX];
    tlsfix_path(pem, sizeof pem, dir, name, "pem");
    tlsfix_path(key, sizeof key, dir, name, "key");
    tlsfix_path(csr, sizeof csr, dir, name, "csr");
    tlsfix_path(ext, sizeof ext, dir, name, "ext");
    tlsfix_path(ca_pem, sizeof ca_pem, dir, ca, "pem");
    tlsfix_path(ca_key, sizeof ca_key, dir, ca, "key");
    tlsfix_path(serial, sizeof serial, dir, ca, "srl");
    FILE *f = fopen(ext, "w");
    cr_assert_not_null(f, "%s", ext);
    fputs("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
          "extendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n", f);
    fclose(f);
    const char *req[] = {TLSFIX_OPENSSL, "req", "-newkey", "ec", "-pkeyopt",
                         "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", csr,
                         "-subj", "/CN=localhost", NULL};
    tlsfix_run(dir, req);
    const char *sign[] = {TLSFIX_OPENSSL, "x509", "-req", "-in", csr, "-CA", ca_pem, "-CAkey",
                          ca_key, "-CAserial", serial, "-CAcreateserial", "-out", pem, "-days",
                          "2", "-extfile", ext, NULL};
    tlsfix_run(dir, sign);
}

/* write text to dir/name (a garbage or concatenated file) */
static inline void tlsfix_write(const char *dir, const char *name, const char *text)
{
    char path[TLSFIX_PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    fputs(text, f);
    fclose(f);
}

/* the whole of a small file as a string (owned; free) */
static inline char *tlsfix_slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    static const size_t cap = 1 << 20;
    char *buf = malloc(cap + 1);
    cr_assert_not_null(buf);
    size_t n = fread(buf, 1, cap, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

#endif
