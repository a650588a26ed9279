/* tests of common/replay: ring semantics, sampling invariants, real/synthetic mixing */
#include <criterion/criterion.h>
#include <string.h>

#include "common/base/err.h"
#include "common/nn/replay.h"
#include "common/base/rng.h"

enum { O = 3, A = 2 };

/* transition number id: every field derived from id, so a sampled row can be checked whole */
static void add_id(replay_t *rb, float id)
{
    float obs[O] = {id, id, id}, next[O] = {id + 0.5f, id + 0.5f, id + 0.5f};
    float act[A] = {-id, -id};
    replay_add(rb, obs, act, 10.0f * id, next, ((int)id) % 3 == 0);
}

static void expect_row_consistent(const replay_batch *b, int k)
{
    float id = b->obs[k * O];
    for (int j = 0; j < O; j++) {
        cr_expect_eq(b->obs[k * O + j], id);
        cr_expect_eq(b->next_obs[k * O + j], id + 0.5f);
    }
    cr_expect_eq(b->act[k * A], -id);
    cr_expect_eq(b->act[k * A + 1], -id);
    cr_expect_eq(b->reward[k], 10.0f * id);
    cr_expect_eq(b->terminated[k], ((int)id) % 3 == 0 ? 1.0f : 0.0f);
}

Test(replay, sample_never_returns_unwritten_slot)
{
    replay_t rb = {0};
    cr_assert_eq(replay_init(&rb, 10, O, A), 0);
    for (int i = 0; i < 5; i++) {
        add_id(&rb, (float)i);
    }
    cr_expect_eq(rb.size, 5);
    cr_expect_eq(rb.head, 5);
    replay_batch b = {0};
    cr_assert_eq(replay_batch_init(&b, 64, O, A), 0);
    rng_t rng;
    rng_seed(&rng, 1);
    int seen[5] = {0};
    for (int round = 0; round < 50; round++) {
        replay_sample_batch(&b, &rb, &rng, 64);
        cr_assert_eq(b.n, 64);
        for (int k = 0; k < 64; k++) {
            float id = b.obs[k * O];
            cr_assert(id >= 0.0f && id <= 4.0f, "row %d has id %f", k, id);
            seen[(int)id]++;
            expect_row_consistent(&b, k);
        }
    }
    // uniform: 3200 draws over 5 slots
    for (int i = 0; i < 5; i++) {
        cr_expect(seen[i] > 500 && seen[i] < 780, "slot %d drawn %d times", i, seen[i]);
    }
    replay_batch_free(&b);
    replay_free(&rb);
}

Test(replay, ring_wraps_and_keeps_the_newest)
{
    replay_t rb = {0};
    cr_assert_eq(replay_init(&rb, 10, O, A), 0);
    for (int i = 0; i < 25; i++) {
        add_id(&rb, (float)i);
    }
    cr_expect_eq(rb.size, 10);
    cr_expect_eq(rb.head, 5);
    cr_expect_eq(rb.total, 25);
    // slot 4 holds id 24, slot 5 holds id 15 (the oldest kept)
    cr_expect_eq(rb.obs[4 * O], 24.0f);
    cr_expect_eq(rb.obs[5 * O], 15.0f);
    replay_batch b = {0};
    cr_assert_eq(replay_batch_init(&b, 100, O, A), 0);
    rng_t rng;
    rng_seed(&rng, 2);
    int seen[25] = {0};
    for (int round = 0; round < 20; round++) {
        replay_sample_batch(&b, &rb, &rng, 100);
        for (int k = 0; k < 100; k++) {
            int id = (int)b.obs[k * O];
            cr_assert(id >= 15 && id <= 24, "overwritten id %d sampled", id);
            seen[id]++;
            expect_row_consistent(&b, k);
        }
    }
    for (int id = 15; id < 25; id++) {
        cr_expect_gt(seen[id], 0, "id %d never sampled", id);
    }
    replay_clear(&rb);
    cr_expect_eq(rb.size, 0);
    replay_batch_free(&b);
    replay_free(&rb);
}

Test(replay, mixed_sampling_respects_the_real_ratio)
{
    replay_t real = {0}, syn = {0};
    cr_assert_eq(replay_init(&real, 100, O, A), 0);
    cr_assert_eq(replay_init(&syn, 100, O, A), 0);
    replay_batch b = {0};
    cr_assert_eq(replay_batch_init(&b, 256, O, A), 0);
    rng_t rng;
    rng_seed(&rng, 3);
    for (int i = 1; i <= 50; i++) {
        add_id(&real, (float)i); // real ids positive
    }
    // synthetic empty: everything from real
    replay_sample_mixed(&b, &real, &syn, 0.05f, &rng, 256);
    for (int k = 0; k < 256; k++) {
        cr_assert_gt(b.obs[k * O], 0.0f);
    }
    for (int i = 1; i <= 80; i++) {
        add_id(&syn, (float)(-i)); // synthetic ids negative
    }
    cr_expect_eq(replay_real_rows(0.05f, 256), 12); // MBPO: int(256 * 0.05)
    cr_expect_eq(replay_real_rows(0.0f, 256), 0);
    cr_expect_eq(replay_real_rows(1.0f, 256), 256);
    replay_sample_mixed(&b, &real, &syn, 0.05f, &rng, 256);
    int n_real = 0;
    for (int k = 0; k < 256; k++) {
        if (b.obs[k * O] > 0.0f) {
            n_real++;
            cr_expect_lt(k, 12, "real row at %d", k);
        }
        expect_row_consistent(&b, k);
    }
    cr_expect_eq(n_real, 12);
    replay_sample_mixed(&b, &real, &syn, 0.5f, &rng, 100);
    cr_expect_eq(b.n, 100);
    for (int k = 0; k < 100; k++) {
        cr_expect_eq(b.obs[k * O] > 0.0f, k < 50, "row %d", k);
    }
    replay_batch_free(&b);
    replay_free(&real);
    replay_free(&syn);
}

Test(replay, init_rejects_bad_sizes)
{
    replay_t rb = {0};
    cr_expect_eq(replay_init(&rb, 0, O, A), -EINVAL);
    cr_expect(strstr(err_msg(), "capacity") != NULL, "%s", err_msg());
    cr_expect_eq(replay_init(&rb, 10, 0, A), -EINVAL);
    replay_free(&rb);
    replay_batch b = {0};
    cr_expect_eq(replay_batch_init(&b, 0, O, A), -EINVAL);
    replay_batch_free(&b);
}
