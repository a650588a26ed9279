/* configs/example.yaml lists every option at its default: every program must accept it,
 * so the example can never drift into keys nobody knows. The task configs are checked too. */
#include <criterion/criterion.h>
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
