/* tests for learner/quota.c: chunks of the synthetic quota across joins, leaves and expiry */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "common/base/err.h"
#include "common/base/rng.h"
#include "learner/quota.h"

#define R 10 /* branches per real step */

Test(quota, chunks_cover_each_step_once_and_the_watermark_is_the_lowest_unfinished)
{
    quota_t q;
    quota_init(&q, 8, R, 100);
    quota_chunk a, b;
    cr_assert_eq(quota_take(&q, 1, 200, 200, 4, &a), 1);
    cr_assert_eq(quota_take(&q, 2, 200, 200, 4, &b), 1);
    cr_expect_eq(a.begin, 100);
    cr_expect_eq(a.end, 104);
    cr_expect_eq(a.need, 4 * R);
    cr_expect_eq(b.begin, 104);
    cr_expect_eq(b.end, 108);
    quota_chunk again;
    cr_assert_eq(quota_take(&q, 1, 200, 200, 4, &again), 1);
    cr_expect_eq(again.id, a.id, "a member holds one chunk until it is done");
    cr_expect_eq(quota_done(&q), 100);
    cr_assert_eq(quota_check(&q, 2, b.id, 4 * R), 0);
    quota_add(&q, 2, b.id, 4 * R);
    cr_expect_eq(quota_done(&q), 100, "b done, a still open: the watermark waits for a");
    cr_expect_eq(quota_check(&q, 1, a.id, 4 * R + 1), -EINVAL, "more than the chunk needs");
    cr_expect_eq(quota_check(&q, 2, a.id, 1), -EINVAL, "not member 2's chunk");
    cr_expect_eq(quota_check(&q, 2, b.id, 1), -EINVAL, "a done chunk takes nothing more");
    quota_add(&q, 1, a.id, 3 * R);
    quota_add(&q, 1, a.id, R);
    cr_expect_eq(quota_done(&q), 108);
    cr_expect_eq(q.branches, 8 * R);
    cr_expect_eq(q.chunks_done, 2);
    cr_expect_eq(quota_take(&q, 1, 108, 108, 4, &a), 0, "no steps mirrored past 108 yet");
    quota_free(&q);
}

Test(quota, a_released_half_done_chunk_is_finished_by_the_next_taker_exactly)
{
    quota_t q;
    quota_init(&q, 8, R, 0);
    quota_chunk a, b, c;
    cr_assert_eq(quota_take(&q, 1, 50, 50, 5, &a), 1);
    quota_add(&q, 1, a.id, 2 * R + 3); /* part of its work arrived, then it vanished */
    cr_expect_eq(quota_release(&q, 1), 1);
    cr_expect_eq(quota_release(&q, 1), 0, "nothing left to release");
    cr_expect_eq(quota_check(&q, 1, a.id, 1), -EINVAL, "the gone member's chunk is not its own");
    cr_expect_eq(quota_done(&q), 0, "an orphan holds the watermark");
    cr_assert_eq(quota_take(&q, 2, 3, 50, 5, &b), 1);
    cr_expect_neq(b.id, a.id, "an orphan ending past what the taker mirrored is not given");
    cr_expect_eq(b.begin, 5);
    cr_assert_eq(quota_take(&q, 3, 50, 50, 5, &c), 1);
    cr_expect_eq(c.id, a.id, "the orphan goes first");
    cr_expect_eq(c.need - c.done, 5 * R - (2 * R + 3), "only its remainder");
    quota_add(&q, 3, c.id, c.need - c.done);
    quota_add(&q, 2, b.id, b.need);
    cr_expect_eq(quota_done(&q), 10);
    cr_expect_eq(q.branches, 10 * R, "exactly R per step");
    cr_expect_eq(q.orphaned, 1);
    cr_expect_eq(q.adopted, 1);
    quota_free(&q);
}

Test(quota, a_full_table_hands_out_only_orphans)
{
    quota_t q;
    quota_init(&q, 2, R, 0);
    quota_chunk a, b, c;
    cr_assert_eq(quota_take(&q, 1, 100, 100, 1, &a), 1);
    cr_assert_eq(quota_take(&q, 2, 100, 100, 1, &b), 1);
    cr_expect_eq(quota_take(&q, 3, 100, 100, 1, &c), 0, "both slots hold open chunks");
    quota_release(&q, 2);
    cr_assert_eq(quota_take(&q, 3, 100, 100, 1, &c), 1);
    cr_expect_eq(c.id, b.id);
    quota_free(&q);
}

/* members join, work, leave or vanish at random; each real step must end with exactly R */
Test(quota, random_churn_keeps_exactly_r_branches_per_step)
{
    enum { M = 6, STEPS = 3000 };
    quota_t q;
    quota_init(&q, 2 * M, R, 500);
    uint64_t per_step[STEPS] = {0};
    uint64_t member[M];
    quota_chunk held[M];
    int has[M] = {0};
    uint64_t next_member = 1;
    for (int i = 0; i < M; i++) {
        member[i] = next_member++;
    }
    rng_t rng;
    rng_seed(&rng, 7);
    uint64_t mirrored = 500;
    for (int round = 0; round < 200000 && quota_done(&q) < STEPS; round++) {
        if (mirrored < STEPS) {
            mirrored++;
        }
        int i = (int)rng_uniform_u32(&rng, M);
        uint32_t what = rng_uniform_u32(&rng, 100);
        if (what < 3) {
            /* leaves or vanishes: either way its chunk is released, a new member takes
             * the slot under a new id */
            quota_release(&q, member[i]);
            member[i] = next_member++;
            has[i] = 0;
            continue;
        }
        if (!has[i]) {
            uint64_t limit =
                mirrored < (q.next_step / 250 + 1) * 250 ? mirrored : (q.next_step / 250 + 1) * 250;
            has[i] =
                quota_take(&q, member[i], mirrored, limit, 1 + rng_uniform_u32(&rng, 7), &held[i]);
            continue;
        }
        const quota_chunk *c = quota_find(&q, member[i], held[i].id);
        cr_assert_not_null(c);
        uint64_t left = c->need - c->done;
        uint64_t n = 1 + rng_uniform_u32(&rng, (uint32_t)left);
        cr_assert_eq(quota_check(&q, member[i], c->id, n), 0);
        /* credit the branches to the chunk's steps in order, as the test's own tally */
        uint64_t from = c->done;
        for (uint64_t k = from; k < from + n; k++) {
            per_step[c->begin + k / R]++;
        }
        quota_add(&q, member[i], held[i].id, n);
        if (n == left) {
            has[i] = 0;
        }
    }
    cr_assert_geq(quota_done(&q), STEPS, "the churn finished every step");
    for (uint64_t s = 500; s < STEPS; s++) {
        cr_expect_eq(per_step[s], R, "step %d has %d branches", (int)s, (int)per_step[s]);
    }
    cr_expect_gt(q.orphaned, 0, "the run had departures");
    quota_free(&q);
}
