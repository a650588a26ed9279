/* daemon.h - the one process skeleton of twig's daemons (twig-actor, twig-learner,
 * twig-modelserver, twig-rollout), and their SIGTERM/SIGINT handlers.
 *
 * daemon_main runs a daemon's whole life from its main():
 *   1. cli_parse of the spec's tables: --help/--print-config exit 0; a bad command line or
 *      config prints "twig-NAME: <why>" on stderr and exits 2;
 *   2. the spec's configure hook (optional; the model server's option conversion and schema
 *      check): < 0 prints "twig-NAME: <err_msg()>" and exits 2, before anything starts;
 *   3. log_init(NAME, level), launcher_link_from_env (a failure exits 1), SIGPIPE ignored
 *      (a peer or a log reader that went away is an EPIPE, never a death), rpc_lib_init;
 *   4. init (< 0: event=start_failed, free, exit 1), run, free, rpc_lib_shutdown, and
 *      event=exit status=0|1 (run < 0: 1).
 *
 *     static int my_init(void *app) { my_ctx *c = app; return thing_init(&c->t, &c->cfg); }
 *     ...
 *     const daemon_spec d = {.name = "actor", .section = "actor", .usage = "usage: ...",
 *                            .tables = tables, .n_tables = 2, .log_level = &ctx.cfg.log_level,
 *                            .init = my_init, .run = my_run, .free = my_free, .app = &ctx};
 *     return daemon_main(&d, argc, argv);
 *
 * daemon_signals is the loop's SIGTERM/SIGINT pair: each signal logs
 * `event=signal signal=SIGTERM|SIGINT` and calls the daemon's stop; the stop closes them
 * (daemon_signals_close), after which both are ignored so that the shutdown finishes
 * (launcher_link_ignore_stop_signals).
 *
 *     daemon_signals_start(&a->signals, &a->loop, actor_stop, a);    // in init, loop thread
 *     daemon_signals_close(&a->signals);                             // in the shutdown
 */
#ifndef TWIG_RPC_DAEMON_H
#define TWIG_RPC_DAEMON_H

#include <stdbool.h>
#include <uv.h>

#include "common/config/cli.h"

typedef struct daemon_spec {
    const char *name;            /* "actor": the log's role; stderr says "twig-actor: " */
    const char *section;         /* the process's own config section (cli_parse), may be NULL */
    const char *usage;           /* the first lines of --help */
    const config_table *tables;  /* what cli_parse fills; borrowed */
    int n_tables;
    const int *log_level;        /* where the parse puts the log level (a log_level value) */
    /* after a good parse, before anything starts; NULL: none. < 0: exit 2, err_msg() says why */
    int (*configure)(void *app);
    int (*init)(void *app);      /* < 0: could not start (exit 1); free runs all the same */
    int (*run)(void *app);       /* until the daemon's shutdown; < 0: exit 1 */
    void (*free)(void *app);
    void *app;                   /* passed to the hooks; borrowed */
} daemon_spec;

/* the daemon's life as above; its exit status (0, 1 or 2) */
int daemon_main(const daemon_spec *d, int argc, char **argv);

typedef struct daemon_signals {
    uv_signal_t term;            /* SIGTERM */
    uv_signal_t intr;            /* SIGINT */
    void (*on_stop)(void *app);
    void *app;
    bool open;                   /* started and not yet closed */
} daemon_signals;

/* start SIGTERM and SIGINT handlers on loop (loop thread); on either, on_stop(app) runs on
 * the loop thread after the event=signal line. s is the caller's, inside its process struct */
void daemon_signals_start(daemon_signals *s, uv_loop_t *loop, void (*on_stop)(void *app),
                          void *app);

/* close both handles if they are open (their memory is free after the loop's next turn),
 * then ignore SIGTERM and SIGINT for the rest of the process; idempotent, and safe on a
 * zeroed struct */
void daemon_signals_close(daemon_signals *s);

#endif
