/* lease.c - membership leases (see lease.h) */
#include "common/base/lease.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/err.h"
#include "common/base/mem.h"

void lease_table_init(lease_table *t, size_t cap, uint64_t ttl_ms, uint64_t first_id)
{
    TWIG_ASSERT(cap > 0 && ttl_ms > 0 && first_id > 0);
    memset(t, 0, sizeof *t);
    t->slot = xcalloc(cap, sizeof *t->slot);
    t->cap = cap;
    t->ttl_ms = ttl_ms;
    t->next_id = first_id;
}

void lease_table_free(lease_table *t)
{
    free(t->slot);
    memset(t, 0, sizeof *t);
}

static bool lease_alive(const lease *s, uint64_t now_ms)
{
    return s->id != 0 && now_ms < s->expires_ms;
}

/* the slot holding id (live or not), or NULL */
static lease *lease_slot(const lease_table *t, uint64_t id)
{
    if (id == 0) {
        return NULL;
    }
    for (size_t i = 0; i < t->cap; i++) {
        if (t->slot[i].id == id) {
            return &t->slot[i];
        }
    }
    return NULL;
}

int lease_join(lease_table *t, uint64_t now_ms, const char *name, uint64_t *id)
{
    lease *free_slot = NULL;
    for (size_t i = 0; i < t->cap && !free_slot; i++) {
        if (t->slot[i].id == 0) {
            free_slot = &t->slot[i];
        }
    }
    if (!free_slot) {
        t->refused_full++;
        return err_set(TWIG_EFULL, "all %zu membership leases are held", t->cap);
    }
    memset(free_slot, 0, sizeof *free_slot);
    free_slot->id = t->next_id++;
    free_slot->joined_ms = now_ms;
    free_slot->renewed_ms = now_ms;
    free_slot->expires_ms = now_ms + t->ttl_ms;
    snprintf(free_slot->name, sizeof free_slot->name, "%s", name ? name : "");
    t->n++;
    t->joins++;
    *id = free_slot->id;
    return 0;
}

/* the live slot of id, or NULL with err_msg saying why */
static lease *lease_live_slot(const lease_table *t, uint64_t id, uint64_t now_ms)
{
    lease *s = lease_slot(t, id);
    if (!s) {
        err_set(TWIG_ELEASE,
                "member %" PRIu64 " holds no lease (never joined, left, or "
                "expired and swept)",
                id);
        return NULL;
    }
    if (!lease_alive(s, now_ms)) {
        err_set(TWIG_ELEASE,
                "the lease of member %" PRIu64 " expired %" PRIu64 " ms ago "
                "(ttl %" PRIu64 " ms)",
                id, now_ms - s->expires_ms, t->ttl_ms);
        return NULL;
    }
    return s;
}

int lease_renew(lease_table *t, uint64_t id, uint64_t now_ms)
{
    lease *s = lease_live_slot(t, id, now_ms);
    if (!s) {
        return TWIG_ELEASE;
    }
    s->renewed_ms = now_ms;
    s->expires_ms = now_ms + t->ttl_ms;
    return 0;
}

int lease_leave(lease_table *t, uint64_t id, uint64_t now_ms)
{
    lease *s = lease_live_slot(t, id, now_ms);
    if (!s) {
        return TWIG_ELEASE;
    }
    memset(s, 0, sizeof *s);
    t->n--;
    t->leaves++;
    return 0;
}

const lease *lease_find(const lease_table *t, uint64_t id, uint64_t now_ms)
{
    lease *s = lease_slot(t, id);
    return s && lease_alive(s, now_ms) ? s : NULL;
}

bool lease_expire_next(lease_table *t, uint64_t now_ms, lease *gone)
{
    for (size_t i = 0; i < t->cap; i++) {
        lease *s = &t->slot[i];
        if (s->id != 0 && !lease_alive(s, now_ms)) {
            *gone = *s;
            memset(s, 0, sizeof *s);
            t->n--;
            t->expiries++;
            return true;
        }
    }
    return false;
}

size_t lease_live(const lease_table *t, uint64_t now_ms)
{
    size_t n = 0;
    for (size_t i = 0; i < t->cap; i++) {
        n += lease_alive(&t->slot[i], now_ms);
    }
    return n;
}

void lease_ages(const lease_table *t, uint64_t now_ms, uint64_t *oldest_ms, uint64_t *stalest_ms)
{
    uint64_t oldest = 0, stalest = 0;
    for (size_t i = 0; i < t->cap; i++) {
        const lease *s = &t->slot[i];
        if (!lease_alive(s, now_ms)) {
            continue;
        }
        uint64_t age = now_ms - s->joined_ms, quiet = now_ms - s->renewed_ms;
        oldest = age > oldest ? age : oldest;
        stalest = quiet > stalest ? quiet : stalest;
    }
    *oldest_ms = oldest;
    *stalest_ms = stalest;
}

uint64_t lease_next_expiry(const lease_table *t, uint64_t now_ms)
{
    uint64_t next = UINT64_MAX;
    for (size_t i = 0; i < t->cap; i++) {
        const lease *s = &t->slot[i];
        if (lease_alive(s, now_ms) && s->expires_ms < next) {
            next = s->expires_ms;
        }
    }
    return next;
}
