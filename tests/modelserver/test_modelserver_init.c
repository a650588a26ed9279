/* tests of modelserver_init's failure paths (modelserver/modelserver.c): whichever step of the
 * start fails, modelserver_free releases what was set up and nothing else (no libuv handle
 * that was never initialised is closed), and the data dir can be opened again at once */
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/config/config.h"
#include "common/base/err.h"
#include "common/rpc/rpc.h"
#include "common/config/run_config.h"
#include "modelserver/modelserver.h"
#include "tests/procfix.h"

static char tmp[PROCFIX_DIR_LEN];

static void setup(void)
{
    procfix_tmpdir(tmp, sizeof tmp);
    rpc_lib_init();
}

static void teardown(void)
{
    rpc_lib_shutdown(5000);
    procfix_tmpdir_done(tmp);
}

TestSuite(modelserver_init, .init = setup, .fini = teardown, .timeout = 60);

/* the defaults of the run and model options, and a server config on tmp/data */
typedef struct ms_setup {
    run_cfg run;
    trainer_cfg tc;
    modelserver_cfg cfg;
    char data_dir[256];
} ms_setup;

static void ms_setup_defaults(ms_setup *s)
{
    config_table t[2] = {run_cfg_table(&s->run),
                         {TRAINER_SECTION, trainer_opts, trainer_n_opts, &s->tc, trainer_opts_check}};
    cr_assert_eq(config_set_defaults(t, 2), 0, "%s", err_msg());
    snprintf(s->data_dir, sizeof s->data_dir, "%s/data", tmp);
    s->cfg = (modelserver_cfg){.listen = "127.0.0.1:0",
                               .data_dir = s->data_dir,
                               .sync = REALLOG_SYNC_NONE,
                               .grace_ms = 200,
                               .run = &s->run,
                               .train = &s->tc};
}

/* init must fail naming why; free must come back; then a good init on the same dir works */
static void expect_failed_init_frees_cleanly(ms_setup *s, const char *why)
{
    modelserver_t ms;
    int rc = modelserver_init(&ms, &s->cfg);
    cr_expect_lt(rc, 0, "modelserver_init succeeded");
    cr_expect_neq(strstr(err_msg(), why), NULL, "err_msg \"%s\" lacks \"%s\"", err_msg(), why);
    modelserver_free(&ms);

    ms_setup good;
    ms_setup_defaults(&good);
    rc = modelserver_init(&ms, &good.cfg);
    cr_expect_eq(rc, 0, "the data dir opens again: %s", err_msg());
    modelserver_free(&ms);
}

Test(modelserver_init, a_data_dir_that_cannot_be_made_fails_before_any_handle)
{
    ms_setup s;
    ms_setup_defaults(&s);
    char file[300];
    snprintf(file, sizeof file, "%s/plain-file", tmp);
    FILE *f = fopen(file, "w");
    cr_assert_not_null(f);
    fclose(f);
    char bad[320];
    snprintf(bad, sizeof bad, "%s/data", file);
    s.cfg.data_dir = bad;
    expect_failed_init_frees_cleanly(&s, "plain-file");
}

Test(modelserver_init, a_trainer_that_fails_to_start_is_freed_without_an_abort)
{
    /* the option checks refuse this at parse time; modelserver_init must still survive it */
    ms_setup s;
    ms_setup_defaults(&s);
    s.tc.elites = s.tc.ensemble_size + 2;
    expect_failed_init_frees_cleanly(&s, "elites");

    ms_setup e;
    ms_setup_defaults(&e);
    e.tc.min_epochs = e.tc.train_max_epochs + 1;
    expect_failed_init_frees_cleanly(&e, "min_epochs");
}

Test(modelserver_init, a_taken_port_fails_after_the_handles_and_frees_them)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(fd, 1), 0);
    socklen_t len = sizeof a;
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    char listen_addr[64];
    snprintf(listen_addr, sizeof listen_addr, "127.0.0.1:%d", ntohs(a.sin_port));
    ms_setup s;
    ms_setup_defaults(&s);
    s.cfg.listen = listen_addr;
    expect_failed_init_frees_cleanly(&s, "in use");
    close(fd);
}

Test(modelserver_init, an_unwritable_port_file_fails_after_serving_began_and_frees_it_all)
{
    ms_setup s;
    ms_setup_defaults(&s);
    char port_file[300];
    snprintf(port_file, sizeof port_file, "%s/no-such-dir/port", tmp);
    s.cfg.port_file = port_file;
    expect_failed_init_frees_cleanly(&s, "no-such-dir");
}

/* ---- the binary: each trigger of a failed start ends in an exit code, never a signal ---- */

#define MS_BIN TWIG_BIN_DIR "/modelserver/twig-modelserver"

/* run twig-modelserver on tmp/data with extra args (NULL-terminated) to its end: the exit
 * code (256 + the signal if one ended it) and its output in out */
static int run_binary(char *out, size_t n, const char *const *extra)
{
    char data[300], log[300];
    snprintf(data, sizeof data, "%s/data", tmp);
    snprintf(log, sizeof log, "%s/ms.out", tmp);
    unlink(log);
    const char *argv[32] = {MS_BIN, "--listen", "127.0.0.1:0", "--data-dir", data};
    int k = 5;
    for (int i = 0; extra[i]; i++) {
        argv[k++] = extra[i];
    }
    argv[k] = NULL;
    int code = procfix_exit_code(procfix_spawn(argv, log), 30000);
    out[0] = '\0';
    FILE *f = fopen(log, "r");
    if (f) {
        size_t got = fread(out, 1, n - 1, f);
        out[got] = '\0';
        fclose(f);
    }
    return code;
}

Test(modelserver_init, more_elites_than_members_exits_2_naming_both_before_anything_starts)
{
    static char out[1 << 14];
    const char *elites[] = {"--set", "modelserver.elites=9", NULL};
    int code = run_binary(out, sizeof out, elites);
    cr_expect_eq(code, 2, "exit %d (>= 256: a signal)\n%s", code, out);
    cr_expect_neq(strstr(out, "modelserver.elites (9) exceeds modelserver.ensemble_size (7)"),
                  NULL, "%s", out);
    char data[300];
    snprintf(data, sizeof data, "%s/data", tmp);
    cr_expect_neq(access(data, F_OK), 0, "the data dir was made: something started");
    /* what twig run asks each process before it starts any */
    const char *print[] = {"--set", "modelserver.elites=9", "--print-config", NULL};
    code = run_binary(out, sizeof out, print);
    cr_expect_eq(code, 2, "--print-config: exit %d\n%s", code, out);
    cr_expect_neq(strstr(out, "modelserver.elites (9)"), NULL, "%s", out);
}

Test(modelserver_init, min_epochs_above_the_cap_exits_2_naming_both)
{
    static char out[1 << 14];
    const char *args[] = {"--set", "modelserver.train_max_epochs=10", "--set",
                          "modelserver.min_epochs=11", NULL};
    int code = run_binary(out, sizeof out, args);
    cr_expect_eq(code, 2, "exit %d\n%s", code, out);
    cr_expect_neq(
        strstr(out, "modelserver.min_epochs (11) exceeds modelserver.train_max_epochs (10)"),
        NULL, "%s", out);
}

Test(modelserver_init, an_unwritable_port_file_exits_1_saying_so)
{
    static char out[1 << 14];
    char port_file[300];
    snprintf(port_file, sizeof port_file, "%s/no-such-dir/port", tmp);
    const char *args[] = {"--port-file", port_file, NULL};
    int code = run_binary(out, sizeof out, args);
    cr_expect_eq(code, 1, "exit %d\n%s", code, out);
    cr_expect_neq(strstr(out, "event=start_failed"), NULL, "%s", out);
    cr_expect_neq(strstr(out, "no-such-dir"), NULL, "%s", out);
    cr_expect_null(strstr(out, "panic"), "%s", out);
}
