/* tlsfix.h - a test's own CA and certificates, made with the openssl CLI into its temp dir.
 *
 *     tlsfix_ca(dir, "ca");                          // dir/ca.pem, dir/ca.key
 *     tlsfix_cert(dir, "ca", "host");                // dir/host.pem, dir/host.key, signed by ca
 *     char pem[512];
 *     tlsfix_path(pem, sizeof pem, dir, "host", "pem");
 *
 * The Criterion face of tests/procspawn/tlsgen.h (what the certificates hold is said
 * there): a failure fails the test. Header-only. */
#ifndef TWIG_TESTS_TLSFIX_H
#define TWIG_TESTS_TLSFIX_H

#include <criterion/criterion.h>
#include <stdio.h>

#include "tests/procfix.h"
#include "tests/procspawn/tlsgen.h"

#define TLSFIX_PATH_MAX TLSGEN_PATH_MAX

/* dir/name.ext */
static inline void tlsfix_path(char *out, size_t n, const char *dir, const char *name,
                               const char *ext)
{
    tlsgen_path(out, n, dir, name, ext);
}

/* a self-signed CA: dir/name.pem and dir/name.key */
static inline void tlsfix_ca(const char *dir, const char *name)
{
    cr_assert_eq(tlsgen_ca(dir, name), 0, "CA %s: %s", name, err_msg());
}

/* a leaf certificate signed by CA ca (made by tlsfix_ca in dir): dir/name.pem, .key */
static inline void tlsfix_cert(const char *dir, const char *ca, const char *name)
{
    cr_assert_eq(tlsgen_cert(dir, ca, name), 0, "certificate %s: %s", name, err_msg());
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
