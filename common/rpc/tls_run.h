/* tls_run.h - the run config's TLS keys (tls_ca, tls_cert, tls_key, tls_server_name) as the
 * rpc_tls every server and client of a process is made with:
 *
 *     rpc_tls tls = rpc_tls_of_run(run);
 *     rpc_server_cfg sc = {.listen = cfg->listen, .tls = &tls, ...};
 *     rpc_client_cfg cc = {.tls = &tls};
 *
 * The paths point into r (borrowed); an rpc_tls is read only while a server or client is
 * made, so a local one is enough. Empty keys: TLS off (plaintext). */
#ifndef TWIG_RPC_TLS_RUN_H
#define TWIG_RPC_TLS_RUN_H

#include "common/config/run_config.h"
#include "common/rpc/rpc.h"

/* r NULL: TLS off */
rpc_tls rpc_tls_of_run(const run_cfg *r);

/* the same keys by value, for what outlives its run_cfg or has none (a command's flags) */
typedef struct rpc_tls_paths {
    char ca[RUN_PATH_MAX + 1];
    char cert[RUN_PATH_MAX + 1];
    char key[RUN_PATH_MAX + 1];
    char server_name[RUN_TLS_NAME_MAX + 1];
} rpc_tls_paths;

/* out: r's TLS keys (r NULL: all empty) */
void rpc_tls_paths_of_run(rpc_tls_paths *out, const run_cfg *r);
/* an rpc_tls pointing into p (borrowed) */
rpc_tls rpc_tls_of_paths(const rpc_tls_paths *p);
/* a command's TLS flag: --tls-ca, --tls-cert, --tls-key, --tls-server-name FILE|NAME, or
 * --tls-from RUNFILE (the run file's four keys, for what no --tls-* flag sets; a bad run file
 * is -EINVAL naming it).
 * 1: flag was one of them and value went into p (the caller skips the value); 0: another
 * flag; -EINVAL: no value or one too long (err_msg() names the flag). Check the files with
 * rpc_tls_check(rpc_tls_of_paths(p)) once every flag is parsed. */
int rpc_tls_paths_flag(rpc_tls_paths *p, const char *flag, const char *value);
/* "  --tls-ca FILE ..." lines for a command's --help */
extern const char rpc_tls_flags_help[];

#endif
