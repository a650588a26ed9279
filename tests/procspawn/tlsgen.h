/* tlsgen.h - a CA and certificates made with the openssl CLI (/usr/bin/openssl), for tests
 * (through tests/tlsfix.h) and benchmarks that need TLS files of their own.
 *
 *     tlsgen_ca(dir, "ca");               // dir/ca.pem, dir/ca.key: a self-signed CA
 *     tlsgen_cert(dir, "ca", "host");     // dir/host.pem, dir/host.key, signed by ca
 *
 * Keys are P-256, certificates valid two days; leaf certificates carry SAN IP:127.0.0.1 and
 * DNS:localhost and may serve and dial (serverAuth, clientAuth). openssl's output goes to
 * dir/openssl.log. 0, or a negative code with err_msg() naming the command and the log. */
#ifndef TWIG_TESTS_TLSGEN_H
#define TWIG_TESTS_TLSGEN_H

#include <stddef.h>

#define TLSGEN_OPENSSL "/usr/bin/openssl"
#define TLSGEN_TIMEOUT_MS 30000   /* one openssl command */
#define TLSGEN_PATH_MAX 512

/* dir/name.ext */
void tlsgen_path(char *out, size_t n, const char *dir, const char *name, const char *ext);
int tlsgen_ca(const char *dir, const char *name);
int tlsgen_cert(const char *dir, const char *ca, const char *name);

#endif
