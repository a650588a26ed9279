/* tests for common/base/lease.c: joins, renewals, leaves and expiry on a caller-given clock */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "common/base/err.h"
#include "common/base/lease.h"

#define TTL 1000

Test(lease, ids_count_up_and_are_never_reused_after_a_leave_or_expiry)
{
    lease_table t;
    lease_table_init(&t, 2, TTL, 500);
    uint64_t a, b, c, d;
    cr_assert_eq(lease_join(&t, 0, "a", &a), 0);
    cr_assert_eq(lease_join(&t, 0, "b", &b), 0);
    cr_expect_eq(a, 500);
    cr_expect_eq(b, 501);
    cr_expect_eq(lease_join(&t, 0, "c", &c), TWIG_EFULL, "two slots, two live leases");
    cr_expect_eq(t.refused_full, 1);
    cr_assert_eq(lease_leave(&t, a, 10), 0);
    cr_assert_eq(lease_join(&t, 10, "c", &c), 0);
    cr_expect_eq(c, 502, "a's slot is reused, its id is not");
    lease gone;
    cr_assert(lease_expire_next(&t, 10 + TTL, &gone), "b (joined at 0) and c (10) are dead");
    cr_assert(lease_expire_next(&t, 10 + TTL, &gone));
    cr_expect_not(lease_expire_next(&t, 10 + TTL, &gone));
    cr_assert_eq(lease_join(&t, 2000, "d", &d), 0);
    cr_expect_eq(d, 503);
    cr_expect_eq(t.joins, 4);
    cr_expect_eq(t.leaves, 1);
    cr_expect_eq(t.expiries, 2);
    cr_expect_eq(t.n, 1);
    lease_table_free(&t);
}

Test(lease, a_renewal_within_the_ttl_keeps_a_lease_and_one_after_it_is_refused)
{
    lease_table t;
    lease_table_init(&t, 4, TTL, 1);
    uint64_t id;
    cr_assert_eq(lease_join(&t, 100, "w", &id), 0);
    cr_expect_eq(lease_renew(&t, id, 100 + TTL - 1), 0, "one ms before expiry");
    cr_expect_not_null(lease_find(&t, id, 100 + 2 * TTL - 2));
    cr_expect_null(lease_find(&t, id, 100 + 2 * TTL - 1), "dead at renewed + ttl exactly");
    /* a paused member (SIGSTOP) comes back after its ttl: refused, even before any sweep */
    cr_expect_eq(lease_renew(&t, id, 100 + 2 * TTL + 5), TWIG_ELEASE);
    cr_expect(strstr(err_msg(), "expired 6 ms ago") != NULL, "%s", err_msg());
    cr_expect_eq(lease_leave(&t, id, 100 + 2 * TTL + 5), TWIG_ELEASE, "nothing to leave");
    cr_expect_eq(t.n, 1, "still in its slot until swept");
    lease gone;
    cr_assert(lease_expire_next(&t, 100 + 2 * TTL + 5, &gone));
    cr_expect_eq(gone.id, id);
    cr_expect_str_eq(gone.name, "w");
    cr_expect_eq(lease_renew(&t, id, 100 + 2 * TTL + 6), TWIG_ELEASE);
    cr_expect(strstr(err_msg(), "holds no lease") != NULL, "%s", err_msg());
    cr_expect_eq(lease_renew(&t, 0, 0), TWIG_ELEASE, "id 0 is nobody");
    cr_expect_eq(lease_renew(&t, 77, 0), TWIG_ELEASE, "an id never handed out");
    lease_table_free(&t);
}

Test(lease, live_count_ages_and_next_expiry_follow_the_clock)
{
    lease_table t;
    lease_table_init(&t, 8, TTL, 1);
    uint64_t a, b;
    cr_assert_eq(lease_join(&t, 0, "a", &a), 0);
    cr_assert_eq(lease_join(&t, 300, "b", &b), 0);
    cr_assert_eq(lease_renew(&t, a, 400), 0);
    uint64_t oldest, stalest;
    lease_ages(&t, 500, &oldest, &stalest);
    cr_expect_eq(oldest, 500, "a joined at 0");
    cr_expect_eq(stalest, 200, "b last renewed at its join, 300");
    cr_expect_eq(lease_live(&t, 500), 2);
    cr_expect_eq(lease_next_expiry(&t, 500), 300 + TTL, "b's");
    cr_expect_eq(lease_live(&t, 300 + TTL), 1, "b dead, a renewed at 400 lives to 1400");
    cr_expect_eq(lease_next_expiry(&t, 300 + TTL), 400 + TTL);
    cr_expect_eq(lease_live(&t, 400 + TTL), 0);
    cr_expect_eq(lease_next_expiry(&t, 400 + TTL), UINT64_MAX);
    lease_ages(&t, 400 + TTL, &oldest, &stalest);
    cr_expect_eq(oldest, 0);
    cr_expect_eq(stalest, 0);
    lease_table_free(&t);
}

Test(lease, a_long_name_is_cut_to_the_bound)
{
    lease_table t;
    lease_table_init(&t, 1, TTL, 1);
    char name[200];
    memset(name, 'x', sizeof name - 1);
    name[sizeof name - 1] = 0;
    uint64_t id;
    cr_assert_eq(lease_join(&t, 0, name, &id), 0);
    cr_expect_eq(strlen(lease_find(&t, id, 0)->name), LEASE_NAME_MAX);
    lease_table_free(&t);
}
