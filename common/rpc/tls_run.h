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

#endif
