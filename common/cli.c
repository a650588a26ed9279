/* cli.c - --config, --set and --KEY VALUE over option tables */
#include "common/cli.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "common/err.h"
#include "common/run_config.h"

#define CLI_KEY_MAX 256

/* --flag VALUE (flag as typed, key its name with '_' for '-'): the process's section's key if
 * it has one, else the top-level key; a bad value's error names the flag */
static int apply_flag(const config_table *t, int n, const char *section, const char *flag,
                      const char *key, const char *value)
{
    int rc = -ENOENT;
    if (section) {
        char full[CLI_KEY_MAX];
        snprintf(full, sizeof full, "%s.%s", section, key);
        rc = config_set(t, n, full, value);
    }
    if (rc == -ENOENT) {
        rc = config_set(t, n, key, value);
    }
    if (rc == -ENOENT) {
        return err_set(-EINVAL, "unknown flag --%s (see --help)", flag);
    }
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

int cli_parse(const config_table *t, int n, const char *section, int argc, char **argv,
              const char *usage)
{
    int rc = config_set_defaults(t, n);
    if (rc < 0) {
        return rc;
    }
    /* pass 1: the config file, so flags override it wherever they stand */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc) {
                return err_set(-EINVAL, "--config needs a file");
            }
            rc = config_load_file(t, n, argv[++i], run_sections);
            if (rc < 0) {
                return rc;
            }
        }
    }
    bool print = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            printf("%s\n\noptions (--KEY VALUE, --set [SECTION.]KEY=VALUE, or in --config FILE):\n",
                   usage);
            config_write_help(stdout, t, n);
            return CLI_EXIT;
        }
        if (strcmp(a, "--print-config") == 0) {
            print = true;
            continue;
        }
        if (strcmp(a, "--config") == 0) {
            i++;
            continue;
        }
        if (strcmp(a, "--set") == 0) {
            if (i + 1 >= argc) {
                return err_set(-EINVAL, "--set needs KEY=VALUE");
            }
            const char *assignment = argv[++i];
            if (foreign_assignment(t, n, assignment)) {
                continue;   /* the launcher passes every --set to every process */
            }
            rc = config_set_assignment(t, n, assignment);
            if (rc < 0) {
                return rc;
            }
            continue;
        }
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            return err_set(-EINVAL, "unexpected argument '%s' (see --help)", a);
        }
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        char flag[CLI_KEY_MAX / 2];
        const char *value;
        if (eq) {   /* --key=value */
            snprintf(flag, sizeof flag, "%.*s", (int)(eq - name), name);
            value = eq + 1;
        } else {
            if (i + 1 >= argc) {
                return err_set(-EINVAL, "--%s needs a value", name);
            }
            snprintf(flag, sizeof flag, "%s", name);
            value = argv[++i];
        }
        char key[sizeof flag];
        snprintf(key, sizeof key, "%s", flag);
        for (char *p = key; *p; p++) {   /* --data-dir is data_dir */
            if (*p == '-') {
                *p = '_';
            }
        }
        rc = apply_flag(t, n, section, flag, key, value);
        if (rc < 0) {
            return rc;
        }
    }
    if (print) {
        config_write_yaml(stdout, t, n);
        return CLI_EXIT;
    }
    return CLI_RUN;
}
