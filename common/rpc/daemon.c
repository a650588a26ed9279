/* daemon.c - see daemon.h */
#include "common/rpc/daemon.h"

#include <signal.h>
#include <stdio.h>

#include "common/base/err.h"
#include "common/base/launcher_link.h"
#include "common/base/log.h"
#include "common/rpc/rpc.h"

#define DAEMON_RPC_UNLOAD_MS 2000   /* longest wait for gRPC to unload at exit */

int daemon_main(const daemon_spec *d, int argc, char **argv)
{
    /* 1-2. the command line and config: nothing has started yet */
    int rc = cli_parse(d->tables, d->n_tables, d->section, argc, argv, d->usage);
    if (rc == CLI_EXIT) {   /* --help or --print-config went to stdout */
        return 0;
    }
    if (rc == 0 && d->configure) {
        rc = d->configure(d->app);
    }
    if (rc < 0) {
        fprintf(stderr, "twig-%s: %s\n", d->name, err_msg());
        return 2;
    }

    /* 3. what every daemon needs */
    log_init(d->name, (log_level)*d->log_level);
    if (launcher_link_from_env() < 0) {
        log_error("event=start_failed detail=\"%s\"", err_msg());
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    rpc_lib_init();

    /* 4. the daemon itself */
    rc = d->init(d->app);
    if (rc < 0) {
        log_error("event=start_failed err=%s detail=\"%s\"", err_name(rc), err_msg());
        d->free(d->app);
        rpc_lib_shutdown(DAEMON_RPC_UNLOAD_MS);
        return rc == TWIG_ECONFIG ? 2 : 1;   /* a restart cannot mend the config */
    }
    rc = d->run(d->app);
    d->free(d->app);
    rpc_lib_shutdown(DAEMON_RPC_UNLOAD_MS);
    log_info("event=exit status=%d", rc < 0 ? 1 : 0);
    return rc < 0 ? 1 : 0;
}

/* ---- SIGTERM / SIGINT ---- */

static void daemon_on_signal(uv_signal_t *h, int signum)
{
    daemon_signals *s = h->data;
    log_info("event=signal signal=%s", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    s->on_stop(s->app);
}

void daemon_signals_start(daemon_signals *s, uv_loop_t *loop, void (*on_stop)(void *app),
                          void *app)
{
    s->on_stop = on_stop;
    s->app = app;
    uv_signal_init(loop, &s->term);
    uv_signal_init(loop, &s->intr);
    s->term.data = s->intr.data = s;
    uv_signal_start(&s->term, daemon_on_signal, SIGTERM);
    uv_signal_start(&s->intr, daemon_on_signal, SIGINT);
    s->open = true;
}

void daemon_signals_close(daemon_signals *s)
{
    if (s->open) {
        uv_close((uv_handle_t *)&s->term, NULL);
        uv_close((uv_handle_t *)&s->intr, NULL);
        s->open = false;
    }
    launcher_link_ignore_stop_signals();
}
