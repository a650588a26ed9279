/* configs/example.yaml lists every option at its default: every program must accept it,
 * so the example can never drift into keys nobody knows. The task configs are checked too. */
#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/procfix.h"

static const char *const programs[] = {
    TWIG_BIN_DIR "/modelserver/twig-modelserver",
    TWIG_BIN_DIR "/learner/twig-learner",
    TWIG_BIN_DIR "/modelserver/twig-rollout",
    TWIG_BIN_DIR "/actor/twig-actor",
};

/* exit code of `prog --config path --print-config` (within 30 s), output discarded */
static int print_config(const char *prog, const char *path)
{
    const char *argv[] = {prog, "--config", path, "--print-config", NULL};
    return procfix_exit_code(procfix_spawn_io(argv, "/dev/null", NULL), 30000);
}

Test(example_config, every_program_accepts_every_documented_option, .timeout = 60)
{
    for (size_t i = 0; i < sizeof programs / sizeof programs[0]; i++) {
        int rc = print_config(programs[i], TWIG_SRC_DIR "/configs/example.yaml");
        cr_expect_eq(rc, 0, "%s refused configs/example.yaml (exit %d)", programs[i], rc);
    }
}

Test(example_config, every_task_config_is_accepted, .timeout = 120)
{
    static const char *const tasks[] = {"pendulum", "inverted_pendulum", "halfcheetah", "hopper",
                                        "walker2d", "ant", "humanoid"};
    for (size_t t = 0; t < sizeof tasks / sizeof tasks[0]; t++) {
        char path[512];
        snprintf(path, sizeof path, TWIG_SRC_DIR "/configs/%s.yaml", tasks[t]);
        for (size_t i = 0; i < sizeof programs / sizeof programs[0]; i++) {
            int rc = print_config(programs[i], path);
            cr_expect_eq(rc, 0, "%s refused %s (exit %d)", programs[i], path, rc);
        }
    }
}

/* the keys of a YAML text as printed by --print-config and written in the example: "key"
 * for top-level options, "section.key" inside a section; one per line into keys */
static void yaml_keys(char *keys, size_t n, const char *text)
{
    char section[64] = "";
    size_t used = 0;
    keys[0] = '\0';
    for (const char *line = text; *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        size_t indent = strspn(line, " ");
        const char *colon = memchr(line, ':', len);
        if (indent < len && line[indent] != '#' && colon) {
            size_t klen = (size_t)(colon - line) - indent;
            bool header = indent == 0 && colon + 1 == line + len;
            if (header) {
                snprintf(section, sizeof section, "%.*s", (int)klen, line);
            } else {
                if (indent == 0) {
                    section[0] = '\0';
                }
                int w = snprintf(keys + used, n - used, "%s%s%.*s\n", section,
                                 section[0] ? "." : "", (int)klen, line + indent);
                cr_assert(w > 0 && (size_t)w < n - used, "key list overflows");
                used += (size_t)w;
            }
        }
        line += len + (end ? 1 : 0);
    }
}

/* stdout of `prog --print-config` (every option at its default) */
static void print_defaults(char *out, size_t n, const char *prog)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s --print-config", prog);
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f);
    size_t got = fread(out, 1, n - 1, f);
    out[got] = '\0';
    cr_assert_eq(pclose(f), 0, "%s --print-config failed", prog);
}

Test(example_config, the_example_lists_every_option_of_every_program, .timeout = 60)
{
    static char example[1 << 16], text[1 << 16], have[1 << 16], want[1 << 16];
    FILE *f = fopen(TWIG_SRC_DIR "/configs/example.yaml", "r");
    cr_assert_not_null(f);
    example[fread(example, 1, sizeof example - 1, f)] = '\0';
    fclose(f);
    yaml_keys(have, sizeof have, example);
    int checked = 0;
    for (size_t i = 0; i < sizeof programs / sizeof programs[0]; i++) {
        print_defaults(text, sizeof text, programs[i]);
        yaml_keys(want, sizeof want, text);
        for (char *k = strtok(want, "\n"); k; k = strtok(NULL, "\n")) {
            char line[160];
            snprintf(line, sizeof line, "\n%s\n", k);
            bool found = strncmp(have, line + 1, strlen(line + 1)) == 0 || strstr(have, line);
            cr_expect(found, "%s has option %s, configs/example.yaml does not", programs[i], k);
            checked++;
        }
    }
    cr_expect_gt(checked, 100, "only %d options read", checked);
}

/* the check fails when it should: an unknown key is refused by its own program */
Test(example_config, an_unknown_key_is_refused, .timeout = 60)
{
    char path[] = "/tmp/twig-example-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    const char *yaml = "env: Pendulum-v1\nlearner:\n  batch_sise: 64\n";
    cr_assert_eq(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
    close(fd);
    cr_expect_neq(print_config(TWIG_BIN_DIR "/learner/twig-learner", path), 0);
    unlink(path);
}
