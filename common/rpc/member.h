/* member.h - twig.v1.Membership, the one handler for both servers that have members: the
 * learner (rollout workers) and the model server (actors). docs/design.md, "Membership".
 *
 * The server owns a member_svc inside its process struct and serves the three methods by
 * forwarding to member_on_join / member_on_renew / member_on_leave. The leases are a
 * lease_table (common/base/lease.h) under the owner's lock (cfg.mu, borrowed), so the owner's
 * own state that hangs on a membership (a rollout chunk, a step chunk) changes with it in one
 * critical section: the `gone` hook runs with that lock held, once per lease that ends, left
 * or expired.
 *
 * - Join checks run_id (TWIG_EMISMATCH, INVALID_ARGUMENT), protocol_version (TWIG_EVERSION,
 *   FAILED_PRECONDITION), role and identity (-EINVAL naming the field); a full table after
 *   the sweep is TWIG_EFULL (RESOURCE_EXHAUSTED: retry later). The reply names the member,
 *   its ttl, its push identity `<identity>@m<id in hex>` and that identity's source epoch.
 * - Renew and Leave of a dead or unknown lease: TWIG_ELEASE (UNAUTHENTICATED).
 * - A push names its source_id; member_check_push (lock held) accepts it only from a live
 *   lease whose identity it is, and renews the lease: traffic is a heartbeat.
 * - member_sweep (lock held) ends every lease past its ttl; every handler sweeps first, and
 *   the owner sweeps from its own threads too so a vanished member is noticed without traffic.
 *
 *     member_svc_cfg mc = {.role = "rollout", .run_id = run->run_id, .ttl_ms = 5000,
 *                          .capacity = 256, .mu = &l->mu, .gone = on_gone, .epoch = epoch_now,
 *                          .app = l};
 *     member_svc_init(&l->members, &mc);
 *     static int on_join(rpc_call_t *c, const ProtobufCMessage *m, void *app)
 *     { return member_on_join(&((learner_t *)app)->members, c, m); }
 */
#ifndef TWIG_MEMBER_H
#define TWIG_MEMBER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/base/lease.h"
#include "common/rpc/rpc.h"

/* the wire protocol's version: a Join of another build's version is refused */
#define MSG_PROTOCOL_VERSION 2u
#define MEMBER_ROLE_ROLLOUT "rollout"
#define MEMBER_ROLE_ACTOR "actor"
#define MEMBER_SOURCE_MAX (LEASE_NAME_MAX + 3 + 16) /* <identity>@m<16 hex digits> */

typedef struct member_svc_cfg {
    const char *role;    /* the role this server admits; copied */
    const char *run_id;  /* copied */
    uint64_t ttl_ms;     /* > 0 */
    size_t capacity;     /* leases at once, > 0 */
    uint64_t first_id;   /* > 0, above every id an earlier life handed out */
    pthread_mutex_t *mu; /* the owner's lock; borrowed */
    /* a lease ended: left (true) or expired. Lock held. May be NULL */
    void (*gone)(void *app, const lease *ended, bool left);
    /* the epoch a new push identity starts with now. Lock held */
    uint64_t (*epoch)(void *app);
    void *app;
} member_svc_cfg;

typedef struct member_svc {
    member_svc_cfg cfg;
    char role[16];
    char run_id[64];
    lease_table leases;     /* under cfg.mu */
    uint64_t refused;       /* joins refused (another run, version, role, identity) */
    uint64_t lease_refused; /* calls and pushes refused for a dead or unknown lease */
} member_svc;

/* the one allocation (the lease table). 0 or -EINVAL naming what is wrong */
int member_svc_init(member_svc *s, const member_svc_cfg *cfg);
void member_svc_free(member_svc *s);

/* the handlers (any thread; they take cfg.mu) */
int member_on_join(member_svc *s, rpc_call_t *call, const ProtobufCMessage *msg);
int member_on_renew(member_svc *s, rpc_call_t *call, const ProtobufCMessage *msg);
int member_on_leave(member_svc *s, rpc_call_t *call, const ProtobufCMessage *msg);

/* lock held: end every lease dead at now_ms (the gone hook, one log line each); how many */
size_t member_sweep(member_svc *s, uint64_t now_ms);

/* lock held: member_id holds a live lease and source_id is its identity; renews it. 0,
 * TWIG_ELEASE (dead or unknown, counted), or -EINVAL (a live member pushing under another
 * identity) */
int member_check_push(member_svc *s, uint64_t member_id, const char *source_id, uint64_t now_ms);

/* the push identity of member id named name: "<name>@m<id hex>" into out (>= MEMBER_SOURCE_MAX
 * + 1 bytes) */
void member_source_id(char *out, size_t cap, const char *name, uint64_t id);

#endif
