/* tests of modelserver_init's failure paths (modelserver/modelserver.c): whichever step of the
 * start fails, modelserver_free releases what was set up and nothing else (no libuv handle
 * that was never initialised is closed), and the data dir can be opened again at once */
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/config.h"
#include "common/err.h"
#include "common/rpc.h"
#include "common/run_config.h"
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
    config_table t[2] = {{NULL, run_opts, run_n_opts, &s->run},
                         {TRAINER_SECTION, trainer_opts, trainer_n_opts, &s->tc}};
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
