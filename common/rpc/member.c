/* member.c - twig.v1.Membership's handlers (see member.h) */
#include "common/rpc/member.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/base/clock.h"
#include "common/base/err.h"
#include "common/base/log.h"
#include "common/rpc/msg.h"

int member_svc_init(member_svc *s, const member_svc_cfg *cfg)
{
    memset(s, 0, sizeof *s);
    if (!cfg->role || strlen(cfg->role) >= sizeof s->role || !cfg->run_id ||
        strlen(cfg->run_id) >= sizeof s->run_id) {
        return err_set(-EINVAL, "membership: role or run_id too long");
    }
    if (cfg->ttl_ms == 0 || cfg->capacity == 0 || cfg->first_id == 0 || !cfg->mu || !cfg->epoch) {
        return err_set(-EINVAL, "membership: ttl_ms, capacity, first_id, mu and epoch are needed");
    }
    s->cfg = *cfg;
    snprintf(s->role, sizeof s->role, "%s", cfg->role);
    snprintf(s->run_id, sizeof s->run_id, "%s", cfg->run_id);
    s->cfg.role = s->role;
    s->cfg.run_id = s->run_id;
    lease_table_init(&s->leases, cfg->capacity, cfg->ttl_ms, cfg->first_id);
    return 0;
}

void member_svc_free(member_svc *s)
{
    lease_table_free(&s->leases);
    memset(s, 0, sizeof *s);
}

void member_source_id(char *out, size_t cap, const char *name, uint64_t id)
{
    snprintf(out, cap, "%s@m%" PRIx64, name, id);
}

size_t member_sweep(member_svc *s, uint64_t now_ms)
{
    size_t n = 0;
    lease gone;
    while (lease_expire_next(&s->leases, now_ms, &gone)) {
        n++;
        log_info("event=member_expired role=%s member_id=%" PRIu64 " name=%s age_ms=%" PRIu64
                 " silent_ms=%" PRIu64 " ttl_ms=%" PRIu64,
                 s->role, gone.id, gone.name, now_ms - gone.joined_ms, now_ms - gone.renewed_ms,
                 s->leases.ttl_ms);
        if (s->cfg.gone) {
            s->cfg.gone(s->cfg.app, &gone, false);
        }
    }
    return n;
}

/* a Join's fields against this server's run. 0 or a refusal naming the field */
static int member_check_join(const member_svc *s, const Twig__V1__JoinRequest *q)
{
    if (strcmp(q->run_id, s->run_id) != 0) {
        return err_set(TWIG_EMISMATCH,
                       "run_id is '%.64s', this server's run is '%s': a "
                       "member of another run",
                       q->run_id, s->run_id);
    }
    if (q->protocol_version != MSG_PROTOCOL_VERSION) {
        return err_set(TWIG_EVERSION,
                       "protocol_version is %u, this server speaks %u: a build "
                       "of another version",
                       q->protocol_version, MSG_PROTOCOL_VERSION);
    }
    if (strcmp(q->role, s->role) != 0) {
        return err_set(-EINVAL, "role is '%.32s', this server admits '%s' members", q->role,
                       s->role);
    }
    if (strlen(q->identity) > LEASE_NAME_MAX) {
        return err_set(-EINVAL, "identity is %zu bytes, at most %d", strlen(q->identity),
                       LEASE_NAME_MAX);
    }
    return msg_check_source_id("identity", q->identity);
}

int member_on_join(member_svc *s, rpc_call_t *call, const ProtobufCMessage *msg)
{
    const Twig__V1__JoinRequest *q = (const Twig__V1__JoinRequest *)msg;
    int rc = member_check_join(s, q);
    if (rc < 0) {
        char why[512];
        snprintf(why, sizeof why, "%s", err_msg());
        pthread_mutex_lock(s->cfg.mu);
        uint64_t n = ++s->refused;
        pthread_mutex_unlock(s->cfg.mu);
        if (n <= 10 || (n & (n - 1)) == 0) {
            log_warn("event=join_refused role=%s count=%" PRIu64 " err=%s detail=\"%s\"", s->role,
                     n, err_name(rc), why);
        }
        return err_set(rc, "%s", why);
    }
    uint64_t now = clock_now_ms();
    pthread_mutex_lock(s->cfg.mu);
    member_sweep(s, now);
    uint64_t id = 0;
    rc = lease_join(&s->leases, now, q->identity, &id);
    uint64_t epoch = rc == 0 ? s->cfg.epoch(s->cfg.app) : 0;
    size_t live = s->leases.n;
    pthread_mutex_unlock(s->cfg.mu);
    if (rc < 0) {
        return rc;
    }
    char source[MEMBER_SOURCE_MAX + 1];
    member_source_id(source, sizeof source, q->identity, id);
    log_info("event=member_joined role=%s member_id=%" PRIu64 " name=%s source_id=%s "
             "members=%zu ttl_ms=%" PRIu64,
             s->role, id, q->identity, source, live, s->leases.ttl_ms);
    Twig__V1__JoinReply r = TWIG__V1__JOIN_REPLY__INIT;
    r.member_id = id;
    r.ttl_ms = (uint32_t)s->leases.ttl_ms;
    r.source_id = source;
    r.source_epoch = epoch;
    rpc_call_reply(call, 0, &r.base);
    return 0;
}

int member_on_renew(member_svc *s, rpc_call_t *call, const ProtobufCMessage *msg)
{
    const Twig__V1__MemberRequest *q = (const Twig__V1__MemberRequest *)msg;
    uint64_t now = clock_now_ms();
    pthread_mutex_lock(s->cfg.mu);
    member_sweep(s, now);
    int rc = lease_renew(&s->leases, q->member_id, now);
    if (rc < 0) {
        s->lease_refused++;
    }
    pthread_mutex_unlock(s->cfg.mu);
    if (rc < 0) {
        return rc;
    }
    Twig__V1__RenewReply r = TWIG__V1__RENEW_REPLY__INIT;
    r.ttl_ms = (uint32_t)s->leases.ttl_ms;
    rpc_call_reply(call, 0, &r.base);
    return 0;
}

int member_on_leave(member_svc *s, rpc_call_t *call, const ProtobufCMessage *msg)
{
    const Twig__V1__MemberRequest *q = (const Twig__V1__MemberRequest *)msg;
    uint64_t now = clock_now_ms();
    pthread_mutex_lock(s->cfg.mu);
    member_sweep(s, now);
    const lease *l = lease_find(&s->leases, q->member_id, now);
    lease left = {0};
    if (l) {
        left = *l;
    }
    int rc = lease_leave(&s->leases, q->member_id, now);
    if (rc == 0 && s->cfg.gone) {
        s->cfg.gone(s->cfg.app, &left, true);
    }
    if (rc < 0) {
        s->lease_refused++;
    }
    size_t live = s->leases.n;
    pthread_mutex_unlock(s->cfg.mu);
    if (rc < 0) {
        return rc;
    }
    log_info("event=member_left role=%s member_id=%" PRIu64 " name=%s age_ms=%" PRIu64
             " members=%zu",
             s->role, left.id, left.name, now - left.joined_ms, live);
    Twig__V1__LeaveReply r = TWIG__V1__LEAVE_REPLY__INIT;
    rpc_call_reply(call, 0, &r.base);
    return 0;
}

int member_check_push(member_svc *s, uint64_t member_id, const char *source_id, uint64_t now_ms)
{
    const lease *l = lease_find(&s->leases, member_id, now_ms);
    if (!l) {
        s->lease_refused++;
        lease_renew(&s->leases, member_id, now_ms); /* only for its err_msg: why it is dead */
        return err_set(TWIG_ELEASE, "lease expired: %s; join again", err_msg());
    }
    char source[MEMBER_SOURCE_MAX + 1];
    member_source_id(source, sizeof source, l->name, l->id);
    if (strcmp(source, source_id) != 0) {
        return err_set(-EINVAL, "source_id is '%.64s', member %" PRIu64 " pushes as '%s'",
                       source_id, member_id, source);
    }
    return lease_renew(&s->leases, member_id, now_ms);
}
