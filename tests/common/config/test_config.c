/* config: defaults, YAML sections, overrides, validation messages, dump round trip */
#include <criterion/criterion.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config/config.h"
#include "common/base/err.h"

typedef struct run_cfg {
    char env[64];
    uint64_t seed;
} run_cfg;

typedef struct learner_cfg {
    int batch_size;
    float lr_actor;
    double tau;
    bool strict;
    int mode;
} learner_cfg;

static const char *const modes[] = {"strict", "async", NULL};

static const config_opt run_opts[] = {
    {"env", CFG_STRING, offsetof(run_cfg, env), "Pendulum-v1", 1, 63, "env id", NULL},
    {"seed", CFG_U64, offsetof(run_cfg, seed), "1", 0, 1e15, "run seed", NULL},
};

static const config_opt learner_opts[] = {
    {"batch_size", CFG_INT, offsetof(learner_cfg, batch_size), "256", 1, 65536, "minibatch",
     NULL},
    {"lr_actor", CFG_FLOAT, offsetof(learner_cfg, lr_actor), "3e-4", 0, 1, "actor lr", NULL},
    {"tau", CFG_DOUBLE, offsetof(learner_cfg, tau), "0.005", 0, 1, "polyak", NULL},
    {"strict", CFG_BOOL, offsetof(learner_cfg, strict), "true", 0, 1, "wait for data", NULL},
    {"mode", CFG_ENUM, offsetof(learner_cfg, mode), "strict", 0, 0, "rate limiting", modes},
};

static run_cfg rc;
static learner_cfg lc;
static config_table tables[2];
static const char *const sections[] = {"learner", "actor", NULL};

static void setup(void)
{
    memset(&rc, 0, sizeof rc);
    memset(&lc, 0, sizeof lc);
    tables[0] = (config_table){NULL, run_opts, 2, &rc, NULL};
    tables[1] = (config_table){"learner", learner_opts, 5, &lc, NULL};
    cr_assert_eq(config_set_defaults(tables, 2), 0, "%s", err_msg());
}

static int load(const char *yaml)
{
    return config_load_string(tables, 2, yaml, strlen(yaml), "test.yaml", sections);
}

Test(config, defaults_are_applied, .init = setup)
{
    cr_expect_str_eq(rc.env, "Pendulum-v1");
    cr_expect_eq(rc.seed, 1);
    cr_expect_eq(lc.batch_size, 256);
    cr_expect_float_eq(lc.lr_actor, 3e-4f, 1e-9f);
    cr_expect(lc.strict);
    cr_expect_eq(lc.mode, 0);
}

Test(config, yaml_sets_top_level_and_own_section_and_skips_other_known_sections, .init = setup)
{
    int r = load("env: Hopper-v4\nseed: 7\nlearner:\n  batch_size: 128\n  mode: async\n"
                 "actor:\n  anything: 3\n  nested: [1, 2]\n");
    cr_assert_eq(r, 0, "%s", err_msg());
    cr_expect_str_eq(rc.env, "Hopper-v4");
    cr_expect_eq(rc.seed, 7);
    cr_expect_eq(lc.batch_size, 128);
    cr_expect_eq(lc.mode, 1);
}

Test(config, unknown_key_is_an_error_naming_key_and_line, .init = setup)
{
    int r = load("env: Hopper-v4\nlearner:\n  batch_sise: 128\n");
    cr_expect_eq(r, -ENOENT);
    cr_expect(strstr(err_msg(), "learner.batch_sise") != NULL, "%s", err_msg());
    cr_expect(strstr(err_msg(), "test.yaml:3") != NULL, "%s", err_msg());
    cr_expect_eq(lc.batch_size, 256);
}

Test(config, unknown_section_is_an_error, .init = setup)
{
    int r = load("lerner:\n  batch_size: 1\n");
    cr_expect_eq(r, -ENOENT);
    cr_expect(strstr(err_msg(), "lerner") != NULL, "%s", err_msg());
}

Test(config, bad_values_name_the_key, .init = setup)
{
    const char *bad[] = {"learner:\n  batch_size: 0\n", "learner:\n  batch_size: 1.5\n",
                         "learner:\n  batch_size: lots\n", "learner:\n  lr_actor: nan\n",
                         "learner:\n  strict: maybe\n", "learner:\n  mode: fast\n",
                         "seed: -1\n", "env: [a, b]\n", "learner: 3\n", "- a\n- b\n",
                         "env: \"unterminated\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        setup();
        int r = load(bad[i]);
        cr_expect_lt(r, 0, "accepted: %s", bad[i]);
        cr_expect_neq(err_msg()[0], '\0', "no message for: %s", bad[i]);
    }
    setup();
    load("learner:\n  batch_size: 0\n");
    cr_expect(strstr(err_msg(), "learner.batch_size") != NULL, "%s", err_msg());
    cr_expect(strstr(err_msg(), "out of range") != NULL, "%s", err_msg());
}

Test(config, set_assignment_overrides_and_rejects_garbage, .init = setup)
{
    cr_expect_eq(config_set_assignment(tables, 2, "learner.tau=0.01"), 0, "%s", err_msg());
    cr_expect(lc.tau == 0.01);
    cr_expect_eq(config_set_assignment(tables, 2, "seed=42"), 0);
    cr_expect_eq(rc.seed, 42);
    cr_expect_eq(config_set_assignment(tables, 2, "noequals"), -EINVAL);
    cr_expect_eq(config_set_assignment(tables, 2, "=3"), -EINVAL);
    cr_expect_eq(config_set_assignment(tables, 2, "tau=0.1"), -ENOENT);
    cr_expect_eq(config_set_assignment(tables, 2, "learner.nope=1"), -ENOENT);
}

Test(config, written_yaml_loads_back_to_the_same_values, .init = setup)
{
    config_set_assignment(tables, 2, "env=yes");
    config_set_assignment(tables, 2, "learner.lr_actor=0.00123");
    config_set_assignment(tables, 2, "learner.mode=async");
    config_set_assignment(tables, 2, "learner.strict=false");
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    config_write_yaml(f, tables, 2);
    fclose(f);
    run_cfg rc0 = rc;
    learner_cfg lc0 = lc;
    setup();
    int r = config_load_string(tables, 2, buf, len, "dump", sections);
    cr_assert_eq(r, 0, "%s\n%s", err_msg(), buf);
    cr_expect_str_eq(rc.env, rc0.env);
    cr_expect_eq(lc.lr_actor, lc0.lr_actor);
    cr_expect_eq(lc.mode, lc0.mode);
    cr_expect_eq(lc.strict, lc0.strict);
    free(buf);
}

Test(config, missing_file_names_the_path, .init = setup)
{
    int r = config_load_file(tables, 2, "/nonexistent/twig.yaml", sections);
    cr_expect_eq(r, -ENOENT);
    cr_expect(strstr(err_msg(), "/nonexistent/twig.yaml") != NULL);
}

Test(config, tables_sharing_a_section_are_written_under_one_header, .init = setup)
{
    /* as the model server's own keys and its model options share "modelserver" */
    static const config_opt more_opts[] = {
        {"env2", CFG_STRING, offsetof(run_cfg, env), "x", 1, 63, "another key", NULL},
    };
    run_cfg other = {0};
    config_table t3[3] = {tables[0], tables[1], {"learner", more_opts, 1, &other, NULL}};
    cr_assert_eq(config_set_defaults(t3, 3), 0, "%s", err_msg());
    cr_assert_eq(config_set_assignment(t3, 3, "learner.env2=second"), 0, "%s", err_msg());
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    config_write_yaml(f, t3, 3);
    fclose(f);
    const char *first = strstr(buf, "learner:");
    cr_assert_not_null(first, "%s", buf);
    cr_expect_null(strstr(first + 1, "learner:"), "one header:\n%s", buf);
    memset(&other, 0, sizeof other);
    cr_assert_eq(config_load_string(t3, 3, buf, len, "dump", sections), 0, "%s", err_msg());
    cr_expect_str_eq(other.env, "second");
    free(buf);
}

/* u64 options hold every integer exactly, past the 2^53 a double holds */
Test(config, u64_values_are_exact_up_to_the_maximum)
{
    typedef struct big {
        uint64_t n;
    } big;
    static const config_opt big_opts[] = {
        {"n", CFG_U64, offsetof(big, n), "0", 0, 18446744073709551615.0, "any u64", NULL},
    };
    big b = {0};
    config_table t = {NULL, big_opts, 1, &b, NULL};
    cr_assert_eq(config_set(&t, 1, "n", "9007199254740993"), 0, "%s", err_msg());
    cr_expect_eq(b.n, 9007199254740993ull);
    cr_assert_eq(config_set(&t, 1, "n", "18446744073709551615"), 0, "%s", err_msg());
    cr_expect_eq(b.n, UINT64_MAX);
    cr_expect_eq(config_set(&t, 1, "n", "18446744073709551616"), -EINVAL);
    cr_expect_eq(config_set(&t, 1, "n", "1e6"), 0, "%s", err_msg());
    cr_expect_eq(b.n, 1000000u);
    cr_expect_eq(config_set(&t, 1, "n", "-1"), -EINVAL);
    char buf[32];
    cr_assert_eq(config_set(&t, 1, "n", "12345678901234567"), 0);
    cr_assert_eq(config_get_text(&t, 1, "n", buf, sizeof buf), 0);
    cr_expect_str_eq(buf, "12345678901234567");
}

Test(config, a_key_given_twice_is_refused_naming_the_file_both_lines_and_the_key, .init = setup)
{
    int r = load("env: Hopper-v4\nseed: 7\nseed: 8\n");
    cr_expect_eq(r, -EINVAL);
    cr_expect(strstr(err_msg(), "test.yaml:3: 'seed' is given twice (first at line 2)") != NULL,
              "%s", err_msg());

    setup();
    r = load("learner:\n  batch_size: 128\n  mode: async\n  batch_size: 64\n");
    cr_expect_eq(r, -EINVAL);
    cr_expect(strstr(err_msg(), "test.yaml:4: 'learner.batch_size' is given twice (first at "
                                "line 2)") != NULL,
              "%s", err_msg());

    /* a section twice is a key twice, also one this process skips */
    setup();
    r = load("learner:\n  batch_size: 128\nseed: 3\nlearner:\n  mode: async\n");
    cr_expect_eq(r, -EINVAL);
    cr_expect(strstr(err_msg(), "test.yaml:4: 'learner' is given twice") != NULL, "%s",
              err_msg());
    setup();
    r = load("actor:\n  a: 1\nactor:\n  b: 2\n");
    cr_expect_eq(r, -EINVAL);
    cr_expect(strstr(err_msg(), "test.yaml:3: 'actor' is given twice") != NULL, "%s", err_msg());

    /* the same name in two mappings is two keys */
    setup();
    r = load("env: Hopper-v4\nlearner:\n  mode: async\nactor:\n  mode: x\n");
    cr_expect_eq(r, 0, "%s", err_msg());
}

Test(config, an_unknown_key_names_its_near_miss, .init = setup)
{
    cr_expect_eq(config_set_assignment(tables, 2, "learner.batch_sise=3"), -ENOENT);
    cr_expect(strstr(err_msg(), "unknown option 'learner.batch_sise' (did you mean "
                                "'learner.batch_size'?)") != NULL,
              "%s", err_msg());
    cr_expect_eq(config_set_assignment(tables, 2, "sede=3"), -ENOENT);
    cr_expect(strstr(err_msg(), "did you mean 'seed'") != NULL, "a swap is one edit: %s",
              err_msg());
    cr_expect_eq(config_set_assignment(tables, 2, "completely_else=3"), -ENOENT);
    cr_expect_null(strstr(err_msg(), "did you mean"), "no near miss: %s", err_msg());
    char near[64];
    cr_expect_eq(config_nearest(tables, 2, "xy", near, sizeof near), 0, "too short to guess");
    cr_expect_eq(config_nearest(tables, 2, "learner.tua", near, sizeof near), 1);
    cr_expect_str_eq(near, "learner.tau");
}

Test(config, addr_options_take_host_port_and_refuse_the_rest)
{
    typedef struct addrs {
        char must[32];
        char may[32];
    } addrs;
    static const config_opt addr_opts[] = {
        {"must", CFG_ADDR, offsetof(addrs, must), "127.0.0.1:1", 3, 31, "required", NULL},
        {"may", CFG_ADDR, offsetof(addrs, may), "", 0, 31, "empty: unset", NULL},
    };
    addrs a;
    config_table t = {NULL, addr_opts, 2, &a, NULL};
    cr_assert_eq(config_set_defaults(&t, 1), 0, "%s", err_msg());
    cr_expect_str_eq(a.may, "");
    cr_expect_eq(config_set(&t, 1, "must", "[::1]:0"), 0, "%s", err_msg());
    cr_expect_eq(config_set(&t, 1, "may", "example.org:65535"), 0, "%s", err_msg());
    const char *bad[] = {"localhost", ":80", "host:", "host:65536", "host:8o", "[]:1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_expect_eq(config_set(&t, 1, "may", bad[i]), -EINVAL, "accepted '%s'", bad[i]);
        cr_expect(strstr(err_msg(), "may: address") != NULL, "%s", err_msg());
    }
    cr_expect_str_eq(a.may, "example.org:65535", "a refused value changes nothing");
    cr_expect_eq(config_set(&t, 1, "must", ""), -EINVAL, "min length 3");
    char buf[512] = "";
    FILE *f = fmemopen(buf, sizeof buf - 1, "w");
    config_write_yaml(f, &t, 1);
    fclose(f);
    cr_expect(strstr(buf, "must: \"[::1]:0\"\n") != NULL, "written quoted: %s", buf);
}

/* a check sees its own struct and the top level's */
static int lr_below_tau(const void *base, const void *top)
{
    const learner_cfg *l = base;
    const run_cfg *r = top;
    if (r == NULL || r->seed == 0) {
        return err_set(-EINVAL, "the check got no top-level struct");
    }
    if ((double)l->lr_actor > l->tau) {
        return err_set(-EINVAL, "learner.lr_actor (%g) exceeds learner.tau (%g)",
                       (double)l->lr_actor, l->tau);
    }
    return 0;
}

Test(config, config_check_runs_each_tables_check_with_the_top_level, .init = setup)
{
    tables[1].check = lr_below_tau;
    cr_expect_eq(config_check(tables, 2), 0, "%s", err_msg());
    cr_assert_eq(config_set_assignment(tables, 2, "learner.lr_actor=0.5"), 0);
    cr_expect_eq(config_check(tables, 2), -EINVAL);
    cr_expect_str_eq(err_msg(), "learner.lr_actor (0.5) exceeds learner.tau (0.005)");
    config_table section_only = tables[1];
    cr_expect_eq(config_check(&section_only, 1), -EINVAL);
    cr_expect_str_eq(err_msg(), "the check got no top-level struct");
}

/* floats print in the fewest digits that read back the same: 0.05, not 0.0500000007 */
Test(config, floats_are_written_as_the_shortest_text_that_reads_back, .init = setup)
{
    const char *cases[][2] = {{"learner.lr_actor=0.05", "0.05"}, {"learner.lr_actor=3e-4", "0.0003"},
                              {"learner.lr_actor=0.1", "0.1"},   {"learner.tau=0.005", "0.005"},
                              {"learner.tau=0.1", "0.1"},        {"learner.lr_actor=1", "1"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cr_assert_eq(config_set_assignment(tables, 2, cases[i][0]), 0, "%s", err_msg());
        char key[32], buf[64];
        snprintf(key, sizeof key, "%.*s", (int)(strchr(cases[i][0], '=') - cases[i][0]),
                 cases[i][0]);
        cr_assert_eq(config_get_text(tables, 2, key, buf, sizeof buf), 0);
        cr_expect_str_eq(buf, cases[i][1], "%s", cases[i][0]);
    }
    /* a value that needs every digit keeps them, and still reads back exactly */
    lc.lr_actor = 0.1f + 1e-8f;
    lc.tau = 1.0 / 3.0;
    char buf[64];
    config_get_text(tables, 2, "learner.lr_actor", buf, sizeof buf);
    cr_expect_eq(strtof(buf, NULL), lc.lr_actor, "%s", buf);
    config_get_text(tables, 2, "learner.tau", buf, sizeof buf);
    cr_expect_eq(strtod(buf, NULL), lc.tau, "%s", buf);
}
