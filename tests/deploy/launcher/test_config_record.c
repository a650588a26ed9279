/* config_record: the run's config.yaml has the --set overrides applied, values as written */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/err.h"
#include "deploy/launcher/config_record.h"

static char *record(const char *yaml, const char *const *sets, int n_sets, int *rc)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    *rc = config_record_write(f, yaml, strlen(yaml), "in.yaml", sets, n_sets);
    fclose(f);
    return buf;
}

Test(config_record, overrides_replace_or_join_their_section_with_the_text_as_written)
{
    const char *yaml = "# a comment\nenv: Pendulum-v1\nreal_ratio: 0.1   # mixed\n"
                       "learner:\n  batch_size: 256\n  lr_actor: 3e-4\n"
                       "launcher:\n  bin_dir: '/opt/twig bin'\n";
    const char *sets[] = {"real_ratio=0.05", "learner.batch_size=128", "learner.tau=0.005",
                          "modelserver.elites=5", "utd=20", "launcher.run_dir=runs/a b"};
    int rc;
    char *out = record(yaml, sets, 6, &rc);
    cr_assert_eq(rc, 0, "%s", err_msg());
    const char *want =
        "# the config of this run: in.yaml with --set real_ratio=0.05 --set "
        "learner.batch_size=128 --set learner.tau=0.005 --set modelserver.elites=5 --set "
        "utd=20 --set launcher.run_dir=runs/a b\n"
        "env: Pendulum-v1\n"
        "real_ratio: 0.05\n"
        "utd: 20\n"
        "learner:\n"
        "  batch_size: 128\n"
        "  lr_actor: 3e-4\n"
        "  tau: 0.005\n"
        "launcher:\n"
        "  bin_dir: '/opt/twig bin'\n"
        "  run_dir: \"runs/a b\"\n"
        "modelserver:\n"
        "  elites: 5\n";
    cr_expect_str_eq(out, want);
    free(out);
}

Test(config_record, an_empty_file_or_empty_section_takes_overrides)
{
    int rc;
    const char *sets[] = {"learner.batch_size=64"};
    char *out = record("", sets, 1, &rc);
    cr_assert_eq(rc, 0, "%s", err_msg());
    cr_expect_str_eq(out, "# the config of this run: in.yaml with --set learner.batch_size=64\n"
                          "learner:\n  batch_size: 64\n");
    free(out);
    out = record("learner:\nactor: {}\n", sets, 1, &rc);
    cr_assert_eq(rc, 0, "%s", err_msg());
    cr_expect_str_eq(out, "# the config of this run: in.yaml with --set learner.batch_size=64\n"
                          "actor: {}\nlearner:\n  batch_size: 64\n");
    free(out);
}

Test(config_record, a_nested_mapping_or_a_list_is_refused)
{
    int rc;
    char *out = record("learner:\n  x:\n    y: 1\n", NULL, 0, &rc);
    cr_expect_eq(rc, -EINVAL);
    free(out);
    out = record("env: [a, b]\n", NULL, 0, &rc);
    cr_expect_eq(rc, -EINVAL);
    free(out);
}
