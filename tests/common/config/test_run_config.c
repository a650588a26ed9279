/* run config: MBPO's k schedule, pool capacity, cross checks, and the shared command line */
#include <criterion/criterion.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/config/cli.h"
#include "common/base/err.h"
#include "common/config/run_config.h"

typedef struct proc_cfg {
    char listen[64];
    int batch;
} proc_cfg;

static const config_opt proc_opts[] = {
    {"listen", CFG_STRING, offsetof(proc_cfg, listen), "127.0.0.1:0", 3, 63, "address", NULL},
    {"batch", CFG_INT, offsetof(proc_cfg, batch), "256", 1, 4096, "batch", NULL},
};

static run_cfg run;
static proc_cfg proc;
static config_table tables[2];

static void setup(void)
{
    tables[0] = run_cfg_table(&run);
    tables[1] = (config_table){"learner", proc_opts, 2, &proc, NULL};
    cr_assert_eq(config_set_defaults(tables, 2), 0, "%s", err_msg());
}

Test(run_config, k_schedule_follows_mbpo_hopper, .init = setup)
{
    /* Hopper: rollout_schedule [20, 150, 1, 15], epoch 1000 */
    run.epoch_length = 1000;
    run.k_epoch_start = 20;
    run.k_epoch_end = 150;
    run.k_min = 1;
    run.k_max = 15;
    cr_expect_eq(run_rollout_length(&run, 0), 1);
    cr_expect_eq(run_rollout_length(&run, 20999), 1);
    cr_expect_eq(run_rollout_length(&run, 21000), 1);    /* int(1/130 * 14 + 1) = 1 */
    cr_expect_eq(run_rollout_length(&run, 85000), 8);    /* int(65/130 * 14 + 1) = 8 */
    cr_expect_eq(run_rollout_length(&run, 150000), 15);
    cr_expect_eq(run_rollout_length(&run, 900000), 15);
}

Test(run_config, synthetic_capacity_matches_mbpo_model_pool, .init = setup)
{
    /* MBPO: rollout_batch_size 100k per training, 4 trainings per 1000-step epoch */
    run.rollouts_per_step = 400;
    run.model_train_freq = 250;
    run.epoch_length = 1000;
    run.retain_epochs = 1;
    cr_expect_eq(run_synthetic_capacity(&run, 1), 400000u);
    cr_expect_eq(run_synthetic_capacity(&run, 15), 6000000u);
}

Test(run_config, cross_checks_name_the_options, .init = setup)
{
    cr_expect_eq(run_cfg_check(&run), 0, "%s", err_msg());
    run.k_min = 5;
    run.k_max = 2;
    cr_expect_eq(run_cfg_check(&run), -EINVAL);
    cr_expect(strstr(err_msg(), "k_min") != NULL);
}

Test(run_config, tls_keys_come_all_three_or_none, .init = setup)
{
    cr_expect_str_empty(run.tls_ca);   /* the default: plaintext */
    cr_expect_eq(run_cfg_check(&run), 0, "%s", err_msg());
    snprintf(run.tls_cert, sizeof run.tls_cert, "/etc/twig/host.pem");
    cr_expect_eq(run_cfg_check(&run), -EINVAL);
    cr_expect(strstr(err_msg(), "tls_cert is set but tls_ca is empty"), "%s", err_msg());
    snprintf(run.tls_ca, sizeof run.tls_ca, "/etc/twig/ca.pem");
    cr_expect_eq(run_cfg_check(&run), -EINVAL);
    cr_expect(strstr(err_msg(), "tls_key is empty"), "%s", err_msg());
    snprintf(run.tls_key, sizeof run.tls_key, "/etc/twig/host.key");
    snprintf(run.tls_server_name, sizeof run.tls_server_name, "twig.internal");
    cr_expect_eq(run_cfg_check(&run), 0, "%s", err_msg());
    run.tls_ca[0] = run.tls_cert[0] = run.tls_key[0] = '\0';
    cr_expect_eq(run_cfg_check(&run), -EINVAL);
    cr_expect(strstr(err_msg(), "tls_server_name 'twig.internal' is set without"), "%s",
              err_msg());
}

Test(cli, file_then_flags_in_order_and_dashes_become_underscores, .init = setup)
{
    char path[] = "/tmp/twig-cli-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    const char *yaml = "env: Hopper-v4\nreal_steps: 100000\nlearner:\n  batch: 64\n"
                       "actor:\n  whatever: 1\n";
    cr_assert_eq(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
    close(fd);
    char *argv[] = {"twig-learner", "--listen", "0.0.0.0:7102", "--set", "learner.batch=128",
                    "--config", path, "--init-steps", "777", "--seed=9", "--set",
                    "actor.push_every=5", NULL};
    int rc = cli_parse(tables, 2, "learner", 12, argv, "usage");
    cr_assert_eq(rc, CLI_RUN, "%s", err_msg());
    cr_expect_str_eq(run.env, "Hopper-v4");
    cr_expect_eq(run.real_steps, 100000u);
    cr_expect_eq(proc.batch, 128);           /* --set after the file wins */
    cr_expect_str_eq(proc.listen, "0.0.0.0:7102");
    cr_expect_eq(run.init_steps, 777u);
    cr_expect_eq(run.seed, 9u);
    unlink(path);
}

Test(cli, garbage_is_refused_with_a_message, .init = setup)
{
    char *bad1[] = {"p", "--nope", "1", NULL};
    cr_expect_lt(cli_parse(tables, 2, "learner", 3, bad1, "u"), 0);
    cr_expect(strstr(err_msg(), "--nope") != NULL, "%s", err_msg());
    char *bad2[] = {"p", "--batch", "zero", NULL};
    cr_expect_eq(cli_parse(tables, 2, "learner", 3, bad2, "u"), -EINVAL);
    cr_expect(strstr(err_msg(), "learner.batch") != NULL, "%s", err_msg());
    char *bad3[] = {"p", "--config", NULL};
    cr_expect_eq(cli_parse(tables, 2, "learner", 2, bad3, "u"), -EINVAL);
    char *bad4[] = {"p", "stray", NULL};
    cr_expect_eq(cli_parse(tables, 2, "learner", 2, bad4, "u"), -EINVAL);
    char *bad5[] = {"p", "--config", "/nonexistent.yaml", NULL};
    cr_expect_eq(cli_parse(tables, 2, "learner", 3, bad5, "u"), -ENOENT);
    char *bad6[] = {"p", "--pacing", "fast", NULL};
    cr_expect_eq(cli_parse(tables, 2, "learner", 3, bad6, "u"), -EINVAL);
    char *bad7[] = {"p", "--set", "lerner.batch=3", NULL};
    cr_expect_eq(cli_parse(tables, 2, "learner", 3, bad7, "u"), -ENOENT);
}

Test(run_config, model_points_start_at_init_steps_rounded_up, .init = setup)
{
    run.model_train_freq = 250;
    run.init_steps = 5000;   /* MBPO: first fit right after the random steps */
    cr_expect_eq(run_model_point(&run, 4999), 0);
    cr_expect_eq(run_model_point(&run, 5000), 5000);
    cr_expect_eq(run_model_point(&run, 5249), 5000);
    cr_expect_eq(run_model_point(&run, 5250), 5250);
    cr_expect_eq(run_model_next_point(&run, 0), 5000);
    cr_expect_eq(run_model_next_point(&run, 5000), 5250);
    cr_expect_eq(run_model_next_point(&run, 5100), 5250);
    run.init_steps = 300;
    run.model_train_freq = 200;
    cr_expect_eq(run_model_next_point(&run, 0), 400);
    cr_expect_eq(run_model_point(&run, 399), 0);
    cr_expect_eq(run_model_point(&run, 650), 600);
    run.init_steps = 0;      /* no random phase: the first fit needs model_train_freq rows */
    cr_expect_eq(run_model_next_point(&run, 0), 200);
}

Test(run_config, addresses_split_into_host_and_port_or_are_refused_by_name)
{
    char host[RUN_ADDR_MAX + 1];
    int port = -1;
    cr_expect_eq(netaddr_split(host, sizeof host, &port, "127.0.0.1:7101"), 0, "%s", err_msg());
    cr_expect_str_eq(host, "127.0.0.1");
    cr_expect_eq(port, 7101);
    cr_expect_eq(netaddr_split(host, sizeof host, &port, "[::1]:0"), 0, "%s", err_msg());
    cr_expect_str_eq(host, "::1");
    cr_expect_eq(port, 0);
    static const char *const bad[] = {"127.0.0.1", ":7101", "127.0.0.1:", "127.0.0.1:65536",
                                      "127.0.0.1:-1", "127.0.0.1:7x", "[]:7101", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_expect_eq(netaddr_split(host, sizeof host, &port, bad[i]), -EINVAL, "'%s'", bad[i]);
        cr_expect(strstr(err_msg(), bad[i]) != NULL, "names '%s': %s", bad[i], err_msg());
    }
    char small[4];
    cr_expect_eq(netaddr_split(small, sizeof small, &port, "localhost:80"), -EINVAL);
}
