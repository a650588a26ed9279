/* cli.c - --config, --set and --KEY VALUE over option tables */
#include "common/config/cli.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/err.h"
#include "common/config/run_config.h"

#define CLI_KEY_MAX 256
#define CLI_MAX_TABLES 16

/* the option key (section.key or top-level key) a bare key names for this process: its
 * section's key if it has one, else the top-level key; 0, or -ENOENT */
static int resolve_key(const config_table *t, int n, const char *section, const char *key,
                       char *full, size_t full_n)
{
    char buf[CLI_KEY_MAX];
    if (section) {
        snprintf(full, full_n, "%s.%s", section, key);
        if (config_get_text(t, n, full, buf, sizeof buf) == 0) {
            return 0;
        }
    }
    snprintf(full, full_n, "%s", key);
    return config_get_text(t, n, full, buf, sizeof buf) == 0 ? 0 : -ENOENT;
}

/* the --flag nearest to key among this process's options, as "--data-dir"; 1 or 0 */
static int flag_nearest(const config_table *t, int n, const char *section, const char *key,
                        char *out, size_t out_n)
{
    config_table bare[CLI_MAX_TABLES];
    int nb = 0;
    for (int i = 0; i < n && nb < CLI_MAX_TABLES; i++) {
        if (!t[i].section || (section && strcmp(t[i].section, section) == 0)) {
            bare[nb] = t[i];
            bare[nb].section = NULL;   /* compare with the names as flags spell them */
            nb++;
        }
    }
    char name[CLI_KEY_MAX - 8];   /* room for the "--" in out */
    if (!config_nearest(bare, nb, key, name, sizeof name)) {
        return 0;
    }
    for (char *p = name; *p; p++) {
        if (*p == '_') {
            *p = '-';
        }
    }
    snprintf(out, out_n, "--%s", name);
    return 1;
}

/* "unknown option '--flag'", with a near miss when there is one */
static int unknown_flag(const config_table *t, int n, const char *section, const char *flag,
                        const char *key)
{
    char near[CLI_KEY_MAX];
    if (flag_nearest(t, n, section, key, near, sizeof near)) {
        return err_set(-EINVAL, "unknown option '--%s' (did you mean '%s'?)", flag, near);
    }
    return err_set(-EINVAL, "unknown option '--%s' (see --help)", flag);
}

/* --flag VALUE (flag as typed, full the option it names); a bad value's error names the flag */
static int apply_flag(const config_table *t, int n, const char *flag, const char *full,
                      const char *value)
{
    int rc = config_set(t, n, full, value);
    if (rc < 0) {
        char detail[CLI_KEY_MAX * 2];
        snprintf(detail, sizeof detail, "%s", err_msg());
        return err_set(rc, "--%s '%s': %s", flag, value, detail);
    }
    return 0;
}

/* "sec.key" where sec is a run section no table here owns: another process's option */
static bool foreign_assignment(const config_table *t, int n, const char *assignment)
{
    const char *dot = strchr(assignment, '.');
    const char *eq = strchr(assignment, '=');
    if (!dot || (eq && eq < dot)) {
        return false;
    }
    size_t len = (size_t)(dot - assignment);
    for (int i = 0; i < n; i++) {
        if (t[i].section && strlen(t[i].section) == len &&
            strncmp(t[i].section, assignment, len) == 0) {
            return false;
        }
    }
    for (int i = 0; run_sections[i]; i++) {
        if (strlen(run_sections[i]) == len && strncmp(run_sections[i], assignment, len) == 0) {
            return true;
        }
    }
    return false;
}

/* --set KEY=VALUE: SECTION.KEY as given; a bare KEY as --KEY would take it */
static int apply_set(const config_table *t, int n, const char *section, const char *assignment)
{
    if (foreign_assignment(t, n, assignment)) {
        return 0;   /* the launcher passes every --set to every process */
    }
    const char *eq = strchr(assignment, '=');
    const char *dot = strchr(assignment, '.');
    if (!eq || eq == assignment || (dot && dot < eq)) {
        return config_set_assignment(t, n, assignment);
    }
    char key[CLI_KEY_MAX], full[CLI_KEY_MAX + 64];
    snprintf(key, sizeof key, "%.*s", (int)(eq - assignment), assignment);
    if (resolve_key(t, n, section, key, full, sizeof full) < 0) {
        return config_set_assignment(t, n, assignment);   /* names it, with a near miss */
    }
    return config_set(t, n, full, eq + 1);
}

/* an error of a --set value says where the value came from: "--set K=V: why" */
int cli_err_from_set(int rc, const char *assignment)
{
    char why[512];
    snprintf(why, sizeof why, "%s", err_msg());
    return err_set(rc, "--set %s: %s", assignment, why);
}

int cli_flag_u64(uint64_t *out, const char *flag, const char *v, uint64_t lo, uint64_t hi)
{
    if (v == NULL) {
        return err_set(-EINVAL, "%s needs a value", flag);
    }
    char *end = NULL;
    errno = 0;
    unsigned long long x = v[0] >= '0' && v[0] <= '9' ? strtoull(v, &end, 10) : 0;
    if (end == NULL || *end != '\0' || errno != 0 || x < lo || x > hi) {
        return err_set(-EINVAL, "%s '%s' is not an integer in [%llu, %llu]", flag, v,
                       (unsigned long long)lo, (unsigned long long)hi);
    }
    *out = (uint64_t)x;
    return 0;
}

/* a flag's value: the next argument, unless there is none or it is itself an option */
static int take_value(const char **value, int argc, char **argv, int *i, const char *flag)
{
    if (*i + 1 >= argc || strncmp(argv[*i + 1], "--", 2) == 0) {
        return err_set(-EINVAL, "--%s needs a value", flag);
    }
    *value = argv[++*i];
    return 0;
}

int cli_parse(const config_table *t, int n, const char *section, int argc, char **argv,
              const char *usage)
{
    int rc = config_set_defaults(t, n);
    if (rc < 0) {
        return rc;
    }
    /* pass 1: the config file, so flags override it wherever they stand */
    for (int i = 1; i < argc; i++) {
        const char *path = NULL;
        if (strcmp(argv[i], "--config") == 0) {
            if ((rc = take_value(&path, argc, argv, &i, "config")) < 0) {
                return rc;
            }
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            path = argv[i] + 9;
        } else if (strcmp(argv[i], "--set") == 0) {
            i++;   /* its value is never a file, even if it reads "--config" */
        }
        if (path && (rc = config_load_file(t, n, path, run_sections)) < 0) {
            return rc;
        }
    }
    bool print = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            printf("%s\n\noptions (--KEY VALUE, --set [SECTION.]KEY=VALUE, or in --config FILE):\n",
                   usage);
            config_write_help(stdout, t, n);
            printf("\n%s\n", CLI_EXIT_STATUS_HELP);
            return CLI_EXIT;
        }
        if (strcmp(a, "--print-config") == 0) {
            print = true;
            continue;
        }
        const char *value = NULL;
        if (strcmp(a, "--config") == 0) {
            i++;
            continue;
        }
        if (strncmp(a, "--config=", 9) == 0) {
            continue;
        }
        if (strcmp(a, "--set") == 0 || strncmp(a, "--set=", 6) == 0) {
            if (a[5] == '=') {
                value = a + 6;
            } else if ((rc = take_value(&value, argc, argv, &i, "set")) < 0) {
                return err_set(rc, "--set needs KEY=VALUE");
            }
            if ((rc = apply_set(t, n, section, value)) < 0) {
                return cli_err_from_set(rc, value);
            }
            continue;
        }
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            return err_set(-EINVAL, "unexpected argument '%s' (see --help)", a);
        }
        /* --key value or --key=value; the key is looked up before a value is taken, so an
         * unknown option is named as such and never swallows the next argument */
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        char flag[CLI_KEY_MAX / 2];
        snprintf(flag, sizeof flag, "%.*s", eq ? (int)(eq - name) : (int)strlen(name), name);
        char key[sizeof flag], full[CLI_KEY_MAX];
        snprintf(key, sizeof key, "%s", flag);
        for (char *p = key; *p; p++) {   /* --data-dir is data_dir */
            if (*p == '-') {
                *p = '_';
            }
        }
        if (resolve_key(t, n, section, key, full, sizeof full) < 0) {
            return unknown_flag(t, n, section, flag, key);
        }
        if (eq) {
            value = eq + 1;
        } else if ((rc = take_value(&value, argc, argv, &i, flag)) < 0) {
            return rc;
        }
        if ((rc = apply_flag(t, n, flag, full, value)) < 0) {
            return rc;
        }
    }
    /* the checks between options, before --print-config: a launcher that has each process
     * print its config learns of a bad combination before it starts anything */
    if ((rc = config_check(t, n)) < 0) {
        return rc;
    }
    if (print) {
        config_write_yaml(stdout, t, n);
        return CLI_EXIT;
    }
    return CLI_RUN;
}
