/* rpc_priv.h - what rpc.c, rpc_server.c and rpc_client.c share; nobody else includes it.
 *
 * It names gRPC types but includes no gRPC header (those stay in common/rpc*.c): include it
 * after <grpc/grpc.h> and <grpc/byte_buffer.h>.
 */
#ifndef TWIG_RPC_PRIV_H
#define TWIG_RPC_PRIV_H

#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

#define RPC_HEALTH_PATH "/grpc.health.v1.Health/Check"

/* grpc_init, and gRPC's log lines routed into twig's log (once per process): every grpc_init
 * of the rpc layer goes through here */
void rpc_grpc_init(void);

/* msg packed into a new byte buffer (owned: grpc_byte_buffer_destroy) */
grpc_byte_buffer *rpc_bb_from_msg(const ProtobufCMessage *msg);

/* append an integer channel argument: args[*n] = {key, value}, then (*n)++ */
void rpc_arg_int(grpc_arg *args, size_t *n, const char *key, int value);

/* an rpc_tls's three files, read (NUL-terminated, owned); all NULL when TLS is off */
typedef struct rpc_tls_pem {
    char *ca, *cert, *key;
} rpc_tls_pem;
/* read and check t's files (rpc_tls_check); 0 or TWIG_ECONFIG */
int rpc_tls_load(rpc_tls_pem *p, const rpc_tls *t);
void rpc_tls_pem_free(rpc_tls_pem *p);
/* the credentials for t: SSL (mutual) when TLS is on, else insecure. 0 and *out (owned:
 * grpc_*_credentials_release), or TWIG_ECONFIG */
int rpc_tls_server_creds(struct grpc_server_credentials **out, const rpc_tls *t);
int rpc_tls_channel_creds(struct grpc_channel_credentials **out, const rpc_tls *t);

#endif
