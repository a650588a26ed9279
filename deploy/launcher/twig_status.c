/* twig_status.c - `twig status ADDR...`: one screen about running twig processes, whatever
 * started them. For each address: its health (liveness, readiness), its role and pid and
 * every figure of its Stats (members, lease ages, queue depths, ... as each role reports
 * them), and by role: the learner's Progress and newest evaluation, the model server's log. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/err.h"
#include "common/base/log.h"
#include "common/base/netaddr.h"
#include "common/rpc/rpc.h"
#include "common/rpc/tls_run.h"
#include "deploy/launcher/twig_cmds.h"
#include "proto/twig.pb-c.h"

#define STATUS_DEFAULT_TIMEOUT_MS 2000
#define STATUS_MAX_ADDRS 64
#define STATUS_UNLOAD_MS 2000
#define STATUS_TIMEOUT_MS_MAX 600000

static void status_usage(FILE *f)
{
    fprintf(f,
            "usage: twig status ADDR... [--timeout-ms N] [--tls-from RUNFILE] [--tls-ca FILE\n"
            "                   --tls-cert FILE --tls-key FILE [--tls-server-name NAME]]\n"
            "  ADDR   HOST:PORT of any twig process (model server, learner, actor, rollout)\n"
            "  --timeout-ms N   per call (default %d)\n"
            "%s"
            "  exit status: 0 every address answered; 1 one did not; 2 bad usage or TLS files\n",
            STATUS_DEFAULT_TIMEOUT_MS, rpc_tls_flags_help);
}

static const char *health_word(const char *addr, const rpc_client_cfg *cc, const char *service,
                               int timeout_ms)
{
    int rc = rpc_health_check_cfg(addr, cc, service, timeout_ms);
    return rc == RPC_HEALTH_SERVING       ? "SERVING"
           : rc == RPC_HEALTH_NOT_SERVING ? "NOT_SERVING"
           : rc == TWIG_ENOTFOUND         ? "unknown service"
                                          : "no answer";
}

static int cmp_stat(const void *a, const void *b)
{
    const Twig__V1__StatsReply__ValuesEntry *x = *(Twig__V1__StatsReply__ValuesEntry *const *)a;
    const Twig__V1__StatsReply__ValuesEntry *y = *(Twig__V1__StatsReply__ValuesEntry *const *)b;
    return strcmp(x->key, y->key);
}

static void print_learner(rpc_client_t *cl, const rpc_call_opts *o)
{
    ProtobufCMessage *reply = NULL;
    Twig__V1__ProgressRequest pq = TWIG__V1__PROGRESS_REQUEST__INIT;
    if (rpc_client_unary(cl, &reply, "/twig.v1.Learner/GetProgress", &pq.base,
                         &twig__v1__progress__descriptor, o) == 0) {
        const Twig__V1__Progress *p = (const Twig__V1__Progress *)reply;
        printf("  run       %s, %llu real steps, %s pacing\n", p->env_id,
               (unsigned long long)p->real_steps_budget, p->strict_pacing ? "strict" : "async");
        printf("  progress  %llu real steps mirrored, %llu updates", (unsigned long long)p->real_steps,
               (unsigned long long)p->updates);
        if (p->updates_budget) {
            printf(" of %llu", (unsigned long long)p->updates_budget);
        }
        printf(" (UTD %.2f of %.2f)\n", (double)p->achieved_utd, (double)p->utd);
        printf("  versions  policy v%llu, model v%llu; %llu synthetic samples; quota done to "
               "step %llu\n",
               (unsigned long long)p->policy_version, (unsigned long long)p->model_version,
               (unsigned long long)p->synthetic_samples,
               (unsigned long long)p->rollout_quota_done);
        protobuf_c_message_free_unpacked(reply, NULL);
    }
    Twig__V1__GetEvalsRequest eq = TWIG__V1__GET_EVALS_REQUEST__INIT;
    if (rpc_client_unary(cl, &reply, "/twig.v1.Learner/GetEvals", &eq.base,
                         &twig__v1__get_evals_reply__descriptor, o) == 0) {
        const Twig__V1__GetEvalsReply *r = (const Twig__V1__GetEvalsReply *)reply;
        if (r->n_evals > 0) {
            const Twig__V1__EvalResult *e = r->evals[r->n_evals - 1];
            printf("  eval      %.2f +- %.2f at %llu real steps (policy v%llu, %u episodes; %u "
                   "evaluations)\n",
                   (double)e->return_mean, (double)e->return_std,
                   (unsigned long long)e->real_steps, (unsigned long long)e->policy_version,
                   e->episodes, r->total);
        } else {
            printf("  eval      none yet\n");
        }
        protobuf_c_message_free_unpacked(reply, NULL);
    }
}

static void print_modelserver(rpc_client_t *cl, const rpc_call_opts *o)
{
    ProtobufCMessage *reply = NULL;
    Twig__V1__LogStatusRequest q = TWIG__V1__LOG_STATUS_REQUEST__INIT;
    if (rpc_client_unary(cl, &reply, "/twig.v1.ModelServer/LogStatus", &q.base,
                         &twig__v1__log_status_reply__descriptor, o) == 0) {
        const Twig__V1__LogStatusReply *r = (const Twig__V1__LogStatusReply *)reply;
        printf("  log       %s: %llu transitions from %u sources, %u segments, %llu bytes\n",
               r->env_id, (unsigned long long)r->end_offset, r->sources, r->segments,
               (unsigned long long)r->bytes);
        protobuf_c_message_free_unpacked(reply, NULL);
    }
}

/* one address: 0 when it answered Stats */
static int print_one(const char *addr, const rpc_client_cfg *cc, int timeout_ms)
{
    printf("%s\n", addr);
    printf("  health    liveness %s, readiness %s\n",
           health_word(addr, cc, RPC_HEALTH_LIVENESS, timeout_ms),
           health_word(addr, cc, RPC_HEALTH_READINESS, timeout_ms));
    rpc_client_t *cl = NULL;
    if (rpc_client_init(&cl, addr, cc) < 0) {
        printf("  error     %s\n", err_msg());
        return -1;
    }
    const rpc_call_opts o = {.deadline_ms = timeout_ms, .idempotent = true};
    ProtobufCMessage *reply = NULL;
    Twig__V1__StatsRequest sq = TWIG__V1__STATS_REQUEST__INIT;
    int rc = rpc_client_unary(cl, &reply, "/twig.v1.Stats/GetStats", &sq.base,
                              &twig__v1__stats_reply__descriptor, &o);
    if (rc < 0) {
        printf("  error     Stats: %s\n", err_msg());
        rpc_client_free(cl);
        return rc;
    }
    Twig__V1__StatsReply *st = (Twig__V1__StatsReply *)reply;
    printf("  role      %s (pid %u)\n", st->role, st->pid);
    if (strcmp(st->role, "learner") == 0) {
        print_learner(cl, &o);
    } else if (strcmp(st->role, "modelserver") == 0) {
        print_modelserver(cl, &o);
    }
    qsort(st->values, st->n_values, sizeof *st->values, cmp_stat);
    /* the figures, several to a line, as wide as a terminal */
    int col = 0;
    for (size_t i = 0; i < st->n_values; i++) {
        char cell[96];
        int w = snprintf(cell, sizeof cell, "%s=%.6g", st->values[i]->key, st->values[i]->value);
        if (col > 0 && col + 2 + w > 100) {
            putchar('\n');
            col = 0;
        }
        col += printf("%s%s", col == 0 ? "  stats     " : "  ", cell);
    }
    if (col > 0) {
        putchar('\n');
    }
    protobuf_c_message_free_unpacked(reply, NULL);
    rpc_client_free(cl);
    return 0;
}

int twig_cmd_status(int argc, char **argv)
{
    const char *addrs[STATUS_MAX_ADDRS];
    int n = 0, timeout_ms = STATUS_DEFAULT_TIMEOUT_MS;
    rpc_tls_paths paths;
    memset(&paths, 0, sizeof paths);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int tls_flag = rpc_tls_paths_flag(&paths, a, v);
        if (tls_flag < 0) {
            fprintf(stderr, "twig status: %s\n", err_msg());
            return 2;
        }
        if (tls_flag > 0) {
            i++;
            continue;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            status_usage(stdout);
            return 0;
        }
        if (strcmp(a, "--timeout-ms") == 0) {
            uint64_t x = 0;
            if (twig_flag_u64("status", &x, a, v, 1, STATUS_TIMEOUT_MS_MAX) < 0) {
                return 2;
            }
            timeout_ms = (int)x;
            i++;
        } else if (a[0] == '-') {
            fprintf(stderr, "twig status: unknown option '%s'\n", a);
            status_usage(stderr);
            return 2;
        } else if (netaddr_check_peer(a) < 0) {
            fprintf(stderr, "twig status: '%s': %s\n", a, err_msg());
            return 2;
        } else if (n == STATUS_MAX_ADDRS) {
            fprintf(stderr, "twig status: at most %d addresses\n", STATUS_MAX_ADDRS);
            return 2;
        } else {
            addrs[n++] = a;
        }
    }
    if (n == 0) {
        fprintf(stderr, "twig status: needs at least one ADDR\n");
        status_usage(stderr);
        return 2;
    }
    rpc_tls tls = rpc_tls_of_paths(&paths);
    if (rpc_tls_check(&tls) < 0) {
        fprintf(stderr, "twig status: %s\n", err_msg());
        return 2;
    }
    rpc_client_cfg cc = {.tls = &tls};
    log_init("status", LOG_LEVEL_ERROR);
    rpc_lib_init();
    int failed = 0;
    for (int i = 0; i < n; i++) {
        failed += print_one(addrs[i], &cc, timeout_ms) < 0;
    }
    rpc_lib_shutdown(STATUS_UNLOAD_MS);
    return failed ? 1 : 0;
}
