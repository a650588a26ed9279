/* tlsgen.c - see tlsgen.h */
#include "tests/procspawn/tlsgen.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "common/base/err.h"
#include "tests/procspawn/procspawn.h"

void tlsgen_path(char *out, size_t n, const char *dir, const char *name, const char *ext)
{
    snprintf(out, n, "%s/%s.%s", dir, name, ext);
}

/* one openssl command to its end, within TLSGEN_TIMEOUT_MS */
static int tlsgen_run(const char *dir, const char *const *argv)
{
    char log[TLSGEN_PATH_MAX];
    snprintf(log, sizeof log, "%s/openssl.log", dir);
    pid_t pid = procspawn_start(argv, log, log);
    if (pid < 0) {
        return (int)pid;
    }
    int st = 0;
    if (!procspawn_poll_exit(&st, pid, TLSGEN_TIMEOUT_MS)) {
        procspawn_signal_reap(&st, pid, SIGKILL, TLSGEN_TIMEOUT_MS);
        return err_set(TWIG_EDEADLINE, "openssl %s: still running after %d ms (see %s)",
                       argv[1], TLSGEN_TIMEOUT_MS, log);
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        return err_set(-EIO, "openssl %s failed (status %d, see %s)", argv[1], st, log);
    }
    return 0;
}

int tlsgen_ca(const char *dir, const char *name)
{
    char pem[TLSGEN_PATH_MAX], key[TLSGEN_PATH_MAX], subj[128];
    tlsgen_path(pem, sizeof pem, dir, name, "pem");
    tlsgen_path(key, sizeof key, dir, name, "key");
    snprintf(subj, sizeof subj, "/CN=twig-test-%s", name);
    const char *argv[] = {TLSGEN_OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                          "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", pem,
                          "-days", "2", "-subj", subj, NULL};
    return tlsgen_run(dir, argv);
}

int tlsgen_cert(const char *dir, const char *ca, const char *name)
{
    char pem[TLSGEN_PATH_MAX], key[TLSGEN_PATH_MAX], csr[TLSGEN_PATH_MAX];
    char ca_pem[TLSGEN_PATH_MAX], ca_key[TLSGEN_PATH_MAX], ext[TLSGEN_PATH_MAX];
    char serial[TLSGEN_PATH_MAX];
    tlsgen_path(pem, sizeof pem, dir, name, "pem");
    tlsgen_path(key, sizeof key, dir, name, "key");
    tlsgen_path(csr, sizeof csr, dir, name, "csr");
    tlsgen_path(ext, sizeof ext, dir, name, "ext");
    tlsgen_path(ca_pem, sizeof ca_pem, dir, ca, "pem");
    tlsgen_path(ca_key, sizeof ca_key, dir, ca, "key");
    tlsgen_path(serial, sizeof serial, dir, ca, "srl");
    FILE *f = fopen(ext, "w");
    if (!f) {
        return err_set(-errno, "%s: %s", ext, strerror(errno));
    }
    fputs("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
          "extendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n", f);
    if (fclose(f) != 0) {
        return err_set(-EIO, "%s: write failed", ext);
    }
    const char *req[] = {TLSGEN_OPENSSL, "req", "-newkey", "ec", "-pkeyopt",
                         "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", csr,
                         "-subj", "/CN=localhost", NULL};
    int rc = tlsgen_run(dir, req);
    if (rc < 0) {
        return rc;
    }
    const char *sign[] = {TLSGEN_OPENSSL, "x509", "-req", "-in", csr, "-CA", ca_pem, "-CAkey",
                          ca_key, "-CAserial", serial, "-CAcreateserial", "-out", pem, "-days",
                          "2", "-extfile", ext, NULL};
    return tlsgen_run(dir, sign);
}
