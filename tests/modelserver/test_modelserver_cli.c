/* tests of twig-modelserver's single option table: every server option is seen by --help,
 * --print-config, --set and the YAML file, flags win over the file, and options that came
 * only from the file reach the running server */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/rpc/rpc.h"
#include "tests/procfix.h"

#define MS_BIN TWIG_BIN_DIR "/modelserver/twig-modelserver"

static char tmp[PROCFIX_DIR_LEN];

static void make_tmp(void)
{
    procfix_tmpdir(tmp, sizeof tmp);
    rpc_lib_init(); /* the health check of the server the last test starts */
}

static void remove_tmp(void)
{
    procfix_reap_all(); /* a server a failed assertion left running */
    rpc_lib_shutdown(2000);
    procfix_tmpdir_done(tmp);
}

/* every test runs twig-modelserver: a run takes about a second under ASan. The timeout is
 * for a hang and sits above the waits' own deadlines (20 s an exit, 30 s the port and the
 * health), so those fail first, naming what they waited for */
TestSuite(modelserver_cli, .init = make_tmp, .fini = remove_tmp, .timeout = 120);

/* start the server with args (NULL-terminated), stdout and stderr into tmp/out (emptied
 * first: each run reads only its own output) */
static pid_t start(const char *const *args)
{
    char out[256];
    snprintf(out, sizeof out, "%s/out", tmp);
    return procfix_spawn_bin(MS_BIN, args, out);
}

/* run to completion; exit status, output (stdout + stderr) into out */
static int run(char *out, size_t n, const char *const *args)
{
    int rc = procfix_exit_code(start(args), 20000);
    char path[256];
    snprintf(path, sizeof path, "%s/out", tmp);
    procfix_read_text(out, n, path);
    return rc;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    cr_assert_eq(fclose(f), 0);
}

static const char *const server_keys[] = {"listen",      "data_dir",          "fsync",
                                          "segment_mb",  "port_file",         "grace_ms",
                                          "log_level",   "max_sources",       "source_quiet_steps"};

Test(modelserver_cli, help_and_print_config_list_every_server_option)
{
    static char out[1 << 16];
    const char *help[] = {"--help", NULL};
    cr_assert_eq(run(out, sizeof out, help), 0, "%s", out);
    for (size_t i = 0; i < sizeof server_keys / sizeof *server_keys; i++) {
        char key[64];
        snprintf(key, sizeof key, "modelserver.%s ", server_keys[i]);
        cr_expect_neq(strstr(out, key), NULL, "--help lacks %s", key);
    }
    cr_expect_neq(strstr(out, "modelserver.ensemble_size "), NULL, "the model options too");
    cr_expect_neq(strstr(out, "batch|group|none"), NULL, "fsync's choices");

    const char *print[] = {"--print-config", NULL};
    cr_assert_eq(run(out, sizeof out, print), 0, "%s", out);
    char *sec = strstr(out, "\nmodelserver:\n");
    cr_assert_not_null(sec, "%s", out);
    for (size_t i = 0; i < sizeof server_keys / sizeof *server_keys; i++) {
        char key[64];
        snprintf(key, sizeof key, "\n  %s: ", server_keys[i]);
        cr_expect_neq(strstr(sec, key), NULL, "--print-config lacks %s", server_keys[i]);
    }
    cr_expect_neq(strstr(sec, "\n  fsync: batch\n"), NULL, "%s", sec);
    cr_expect_neq(strstr(sec, "\n  segment_mb: 64\n"), NULL, "%s", sec);
    cr_expect_neq(strstr(sec, "\n  grace_ms: 2000\n"), NULL, "%s", sec);
    cr_expect_neq(strstr(sec, "\n  max_sources: 4096\n"), NULL, "%s", sec);
    cr_expect_neq(strstr(sec, "\n  source_quiet_steps: 1000000\n"), NULL, "%s", sec);
    /* the log's env is the run's (top level), not a server option of its own */
    cr_expect_eq(strstr(sec, "env_id"), NULL, "%s", sec);
}

Test(modelserver_cli, file_set_and_flags_reach_the_same_options_in_order)
{
    static char out[1 << 16];
    char yaml[256];
    snprintf(yaml, sizeof yaml, "%s/run.yaml", tmp);
    write_text(yaml, "modelserver:\n  data_dir: /from/file\n  fsync: group\n  segment_mb: 8\n"
                     "  grace_ms: 300\n");
    const char *args[] = {"--config",      yaml,         "--segment-mb", "16",
                          "--set",         "modelserver.grace_ms=500",   "--env",
                          "Hopper-v4",     "--log-level=warn",           "--print-config",
                          NULL};
    cr_assert_eq(run(out, sizeof out, args), 0, "%s", out);
    char *sec = strstr(out, "\nmodelserver:\n");
    cr_assert_not_null(sec, "%s", out);
    cr_expect_neq(strstr(sec, "\n  data_dir: \"/from/file\"\n"), NULL, "%s", sec);
    cr_expect_neq(strstr(sec, "\n  fsync: group\n"), NULL, "%s", sec);
    cr_expect_neq(strstr(sec, "\n  segment_mb: 16\n"), NULL, "the flag wins: %s", sec);
    cr_expect_neq(strstr(sec, "\n  grace_ms: 500\n"), NULL, "--set wins: %s", sec);
    const char *env_line = "env: \"Hopper-v4\"\n";
    cr_expect(strncmp(out, env_line, strlen(env_line)) == 0 || strstr(out, "\nenv: \"Hopper-v4\"\n"),
              "the run's env: %s", out);
    cr_expect_neq(strstr(sec, "\n  log_level: warn\n"), NULL, "%s", sec);
}

Test(modelserver_cli, bad_values_exit_2_naming_the_option)
{
    static char out[4096];
    const char *bad_set[] = {"--set", "modelserver.fsync=sometimes", NULL};
    cr_expect_eq(run(out, sizeof out, bad_set), 2);
    cr_expect_neq(strstr(out, "modelserver.fsync: 'sometimes' is not one of batch, group, none"),
                  NULL, "%s", out);
    char yaml[256];
    snprintf(yaml, sizeof yaml, "%s/bad.yaml", tmp);
    write_text(yaml, "modelserver:\n  segment_mb: 5000\n");
    const char *bad_file[] = {"--config", yaml, NULL};
    cr_expect_eq(run(out, sizeof out, bad_file), 2);
    cr_expect_neq(strstr(out, "segment_mb"), NULL, "%s", out);
    cr_expect_neq(strstr(out, "out of range"), NULL, "%s", out);
    const char *bad_grace[] = {"--listen", "127.0.0.1:0", "--data-dir", tmp, "--grace-ms", "0",
                               NULL};
    cr_expect_eq(run(out, sizeof out, bad_grace), 2);
    cr_expect_neq(strstr(out, "--grace-ms '0'"), NULL, "%s", out);
    const char *no_dir[] = {"--listen", "127.0.0.1:0", NULL};
    cr_expect_eq(run(out, sizeof out, no_dir), 2);
    cr_expect_neq(strstr(out, "--data-dir is required"), NULL, "%s", out);
}

Test(modelserver_cli, a_server_configured_only_by_its_file_serves_with_those_options)
{
    char yaml[256], data[256], port_file[256], text[1024];
    snprintf(yaml, sizeof yaml, "%s/run.yaml", tmp);
    snprintf(data, sizeof data, "%s/data", tmp);
    snprintf(port_file, sizeof port_file, "%s/port", tmp);
    snprintf(text, sizeof text,
             "modelserver:\n  listen: 127.0.0.1:0\n  data_dir: %s\n  port_file: %s\n"
             "  fsync: none\n  grace_ms: 100\n",
             data, port_file);
    write_text(yaml, text);
    const char *args[] = {"--config", yaml, NULL};
    procfix_t ms = {0};
    snprintf(ms.port_file, sizeof ms.port_file, "%s", port_file);
    snprintf(ms.log_file, sizeof ms.log_file, "%s/out", tmp);
    ms.pid = start(args);
    /* the port file, then health SERVING: a server that wrote its port and cannot serve
     * (no writable log) fails here, naming its log */
    procfix_wait_serving(&ms, 30000);
    int port = ms.port;
    cr_expect_gt(port, 0, "no port in %s", port_file);
    cr_assert_eq(kill(ms.pid, SIGTERM), 0);
    cr_expect_eq(procfix_exit_code(ms.pid, 20000), 0, "a clean exit on SIGTERM");
    struct stat st;
    cr_expect_eq(stat(data, &st), 0, "the data dir from the file was created");
    char out[256], log[1 << 14];
    snprintf(out, sizeof out, "%s/out", tmp);
    FILE *f = fopen(out, "r");
    cr_assert_not_null(f);
    size_t got = fread(log, 1, sizeof log - 1, f);
    log[got] = '\0';
    fclose(f);
    char want[512];
    snprintf(want, sizeof want, "port=%d data_dir=%s fsync=none", port, data);
    cr_expect_neq(strstr(log, want), NULL, "started line with '%s' in:\n%s", want, log);
}
