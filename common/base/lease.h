/* lease.h - membership leases: who is a member of a run right now.
 *
 * A member joins and gets an id and a lease: it stays a member while it renews the lease
 * within ttl_ms (by its traffic or a heartbeat), and stops being one when it leaves or when
 * ttl_ms pass without a renewal. Time is the caller's: every call takes `now_ms`, a reading
 * of the server's monotonic clock (clock_now_ms), so a member's clock never matters and the
 * table is tested without sleeping. The table is pure: no clock, no lock, no I/O; the caller
 * holds its own lock around it.
 *
 * - Capacity is fixed at init (the one allocation); a join into a full table, after the
 *   caller has swept the expired leases, is TWIG_EFULL.
 * - Ids are never reused within a run: they count up from first_id, which the caller picks
 *   above every id an earlier life of the server can have handed out (docs/design.md,
 *   "Membership").
 * - A lease past its expiry is dead even before it is swept: renew, leave and find refuse it
 *   (TWIG_ELEASE / NULL). lease_expire_next takes the dead ones out one by one, so the caller
 *   can hand back what each held (its rollout chunk, its step chunk).
 *
 *     lease_table t;
 *     lease_table_init(&t, 256, 5000, first_id);
 *     uint64_t id;
 *     rc = lease_join(&t, clock_now_ms(), "rollout-7", &id);       // 0 or TWIG_EFULL
 *     rc = lease_renew(&t, id, clock_now_ms());                    // 0 or TWIG_ELEASE
 *     lease gone;
 *     while (lease_expire_next(&t, clock_now_ms(), &gone)) { ...hand back gone.id's work... }
 *     lease_table_free(&t);
 */
#ifndef TWIG_LEASE_H
#define TWIG_LEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LEASE_NAME_MAX 63 /* a member's name (its identity hint), for logs and Stats */

typedef struct lease {
    uint64_t id;         /* 0: a free slot */
    uint64_t joined_ms;  /* server monotonic time of the join */
    uint64_t renewed_ms; /* of the last renewal (the join counts as one) */
    uint64_t expires_ms; /* renewed_ms + ttl_ms: dead from this time on */
    char name[LEASE_NAME_MAX + 1];
} lease;

typedef struct lease_table {
    lease *slot; /* (cap) owned */
    size_t cap;
    size_t n;                                       /* slots in use (live or not yet swept) */
    uint64_t ttl_ms;                                /* > 0 */
    uint64_t next_id;                               /* the id the next join gets */
    uint64_t joins, leaves, expiries, refused_full; /* counters, this life */
} lease_table;

/* an empty table of cap slots (cap > 0, ttl_ms > 0, first_id > 0) */
void lease_table_init(lease_table *t, size_t cap, uint64_t ttl_ms, uint64_t first_id);
/* release it; safe on a zeroed table */
void lease_table_free(lease_table *t);

/* a new member named name (copied, cut at LEASE_NAME_MAX bytes): *id set. 0, or TWIG_EFULL
 * when every slot holds a lease (live or expired but not yet swept: sweep first) */
int lease_join(lease_table *t, uint64_t now_ms, const char *name, uint64_t *id);

/* extend id's lease to now_ms + ttl_ms. 0, or TWIG_ELEASE (err_msg names the id and says
 * whether it expired or is unknown) */
int lease_renew(lease_table *t, uint64_t id, uint64_t now_ms);

/* id leaves: its slot is freed. 0, or TWIG_ELEASE as lease_renew (a lease that already
 * expired has nothing to leave; the caller's sweep hands its work back) */
int lease_leave(lease_table *t, uint64_t id, uint64_t now_ms);

/* id's live lease, or NULL (unknown, left, or expired at now_ms) */
const lease *lease_find(const lease_table *t, uint64_t id, uint64_t now_ms);

/* take one lease that is dead at now_ms out of the table into *gone (counted in expiries).
 * false when none is left */
bool lease_expire_next(lease_table *t, uint64_t now_ms, lease *gone);

/* live leases at now_ms */
size_t lease_live(const lease_table *t, uint64_t now_ms);

/* the age of the oldest live lease and the longest time since a live lease's renewal, in
 * ms at now_ms (0 when none is live) */
void lease_ages(const lease_table *t, uint64_t now_ms, uint64_t *oldest_ms, uint64_t *stalest_ms);

/* the earliest expiry among live leases at now_ms, UINT64_MAX when none */
uint64_t lease_next_expiry(const lease_table *t, uint64_t now_ms);

#endif
