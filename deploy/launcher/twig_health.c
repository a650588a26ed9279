/* twig_health.c - `twig health ADDR [--service NAME] [--timeout-ms N]`: one grpc.health.v1
 * Check of a twig process (docs/design.md, "Health"), its answer as the exit status. It is the
 * container image's HEALTHCHECK (docs/deploy.md) and works against any grpc.health.v1 server.
 *
 * One probe, no retries: the caller (Docker, a script) decides how often to ask. The probe does
 * not wait for the channel to connect, so nothing listening is an answer at once, not a wait
 * for the whole timeout. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/err.h"
#include "common/base/netaddr.h"
#include "common/rpc/rpc.h"
#include "common/rpc/tls_run.h"
#include "deploy/launcher/twig_cmds.h"

#define HEALTH_TIMEOUT_MS_DEFAULT 2000
#define HEALTH_TIMEOUT_MS_MAX 600000
#define HEALTH_SERVICE_MAX 200
#define HEALTH_UNLOAD_MS 1000 /* gRPC unload wait at the end (the answer is already known) */

/* exit statuses (listed in --help and docs/deploy.md) */
enum {
    HEALTH_EXIT_SERVING = 0,
    HEALTH_EXIT_NOT_SERVING = 1,
    HEALTH_EXIT_USAGE = 2,
    HEALTH_EXIT_UNREACHABLE = 3,
    HEALTH_EXIT_UNKNOWN_SERVICE = 4,
};

typedef struct health_opts {
    const char *addr;
    const char *service;
    int timeout_ms;
    rpc_tls_paths tls;   /* --tls-*: all empty for plaintext */
} health_opts;

static void health_usage(FILE *f)
{
    fprintf(f,
            "usage: twig health ADDR [--service NAME] [--timeout-ms N] [--tls-from RUNFILE]\n"
            "                        [--tls-ca FILE --tls-cert FILE --tls-key FILE\n"
            "                        [--tls-server-name NAME]]\n"
            "  ADDR            HOST:PORT (or [V6]:PORT) of a twig process's listen address\n"
            "  --service NAME  the health service to ask: \"\" (the whole server, default),\n"
            "                  \"liveness\" (the process's loop turns), \"readiness\", or a\n"
            "                  service of its method table (\"twig.v1.ModelServer\")\n"
            "  --timeout-ms N  give up after N ms, 1..%d (%d)\n"
            "%s"
            "  (a run with TLS refuses a probe without them: docs/deploy.md, \"TLS\")\n"
            "Prints the answer on stdout. Exit status:\n"
            "  0  SERVING\n"
            "  1  NOT_SERVING (or an answer other than SERVING)\n"
            "  2  bad arguments or TLS files (nothing was asked)\n"
            "  3  unreachable: nothing listening, no answer within the timeout, or the\n"
            "     host does not resolve\n"
            "  4  the server does not know the service (NOT_FOUND)\n",
            HEALTH_TIMEOUT_MS_MAX, HEALTH_TIMEOUT_MS_DEFAULT, rpc_tls_flags_help);
}

/* 0, 1 for --help, < 0 for bad usage (reported) */
static int health_parse(health_opts *o, int argc, char **argv)
{
    *o = (health_opts){.service = "", .timeout_ms = HEALTH_TIMEOUT_MS_DEFAULT};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int tls = rpc_tls_paths_flag(&o->tls, a, v);
        if (tls < 0) {
            fprintf(stderr, "twig health: %s\n", err_msg());
            return -EINVAL;
        }
        if (tls > 0) {
            i++;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            health_usage(stdout);
            return 1;
        } else if (strcmp(a, "--service") == 0) {
            if (v == NULL) {
                fprintf(stderr, "twig health: --service needs a NAME (\"\" for the server)\n");
                return -EINVAL;
            }
            if (strlen(v) > HEALTH_SERVICE_MAX) {
                fprintf(stderr, "twig health: --service is longer than %d characters\n",
                        HEALTH_SERVICE_MAX);
                return -EINVAL;
            }
            o->service = v;
            i++;
        } else if (strcmp(a, "--timeout-ms") == 0) {
            uint64_t x = 0;
            if (twig_flag_u64("health", &x, a, v, 1, HEALTH_TIMEOUT_MS_MAX) < 0) {
                return -EINVAL;
            }
            o->timeout_ms = (int)x;
            i++;
        } else if (a[0] == '-') {
            fprintf(stderr, "twig health: unknown option '%s'\n", a);
            return -EINVAL;
        } else if (o->addr == NULL) {
            o->addr = a;
        } else {
            fprintf(stderr, "twig health: unexpected argument '%s'\n", a);
            return -EINVAL;
        }
    }
    if (o->addr == NULL) {
        fprintf(stderr, "twig health: ADDR (HOST:PORT) is missing\n");
        return -EINVAL;
    }
    if (netaddr_check_peer(o->addr) < 0) {
        fprintf(stderr, "twig health: ADDR: %s\n", err_msg());
        return -EINVAL;
    }
    rpc_tls t = rpc_tls_of_paths(&o->tls);
    if (rpc_tls_check(&t) < 0) {
        fprintf(stderr, "twig health: %s\n", err_msg());
        return -EINVAL;
    }
    return 0;
}

int twig_cmd_health(int argc, char **argv)
{
    health_opts o;
    int rc = health_parse(&o, argc, argv);
    if (rc != 0) {
        if (rc < 0) {
            health_usage(stderr);
        }
        return rc > 0 ? 0 : HEALTH_EXIT_USAGE;
    }
    rpc_lib_init();
    rpc_tls tls = rpc_tls_of_paths(&o.tls);
    rpc_client_cfg cc = {.tls = &tls};
    rc = rpc_health_check_cfg(o.addr, &cc, o.service, o.timeout_ms);
    int status;
    if (rc == RPC_HEALTH_SERVING) {
        printf("%s service \"%s\": SERVING\n", o.addr, o.service);
        status = HEALTH_EXIT_SERVING;
    } else if (rc == RPC_HEALTH_NOT_SERVING) {
        printf("%s service \"%s\": NOT_SERVING\n", o.addr, o.service);
        status = HEALTH_EXIT_NOT_SERVING;
    } else if (rc == TWIG_ENOTFOUND) {
        fprintf(stderr, "twig health: %s does not know service \"%s\" (NOT_FOUND)\n", o.addr,
                o.service);
        status = HEALTH_EXIT_UNKNOWN_SERVICE;
    } else {
        fprintf(stderr, "twig health: %s unreachable within %d ms: %s (%s)\n", o.addr, o.timeout_ms,
                err_msg(), err_name(rc));
        status = HEALTH_EXIT_UNREACHABLE;
    }
    fflush(stdout);
    rpc_lib_shutdown(HEALTH_UNLOAD_MS);
    return status;
}
