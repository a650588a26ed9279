/* tests for learner/synth.c: the synthetic FIFO keeps and samples only the newest data */
#include <criterion/criterion.h>

#include "common/base/rng.h"
#include "learner/synth.h"

#define O 3
#define A 2

/* add rows whose obs[0] is their global index */
static void add_rows(synth_t *s, int from, int n)
{
    for (int i = from; i < from + n; i++) {
        float obs[O] = {(float)i, 0.5f, -0.5f}, next[O] = {(float)i + 0.25f, 1, 2};
        float act[A] = {0.1f, -0.1f}, r = (float)i * 2.0f;
        int term = i % 3 == 0;
        synth_add(s, obs, act, &r, next, &term, 1);
    }
}

Test(synth, fifo_overwrites_oldest_and_samples_only_stored_rows)
{
    synth_t s = {0};
    cr_assert_eq(synth_init(&s, 100, O, A), 0);
    cr_expect_eq(synth_size(&s), 0);
    add_rows(&s, 0, 250);
    cr_expect_eq(synth_size(&s), 100);
    cr_expect_eq(s.rb.total, 250);
    replay_batch b = {0};
    cr_assert_eq(replay_batch_init(&b, 256, O, A), 0);
    rng_t rng;
    rng_seed(&rng, 7);
    int seen[100] = {0};
    synth_sample_rows(&b, &s, &rng, 0, 256);
    for (int i = 0; i < 256; i++) {
        int idx = (int)b.obs[i * O];
        cr_expect(idx >= 150 && idx < 250, "row %d came from transition %d", i, idx);
        cr_expect_float_eq(b.reward[i], 2.0f * idx, 1e-6);
        cr_expect_float_eq(b.next_obs[i * O], idx + 0.25f, 1e-6);
        cr_expect_eq(b.terminated[i], idx % 3 == 0 ? 1.0f : 0.0f);
        seen[idx - 150] = 1;
    }
    int distinct = 0;
    for (int i = 0; i < 100; i++) {
        distinct += seen[i];
    }
    cr_expect_gt(distinct, 80, "256 uniform draws over 100 rows hit %d", distinct);
    replay_batch_free(&b);
    synth_free(&s);
}

Test(synth, limit_restricts_sampling_to_the_newest_rows)
{
    synth_t s = {0};
    cr_assert_eq(synth_init(&s, 1000, O, A), 0);
    add_rows(&s, 0, 700);
    synth_set_limit(&s, 50);
    cr_expect_eq(synth_size(&s), 50);
    replay_batch b = {0};
    cr_assert_eq(replay_batch_init(&b, 64, O, A), 0);
    rng_t rng;
    rng_seed(&rng, 3);
    for (int rep = 0; rep < 20; rep++) {
        synth_sample_rows(&b, &s, &rng, 10, 54); /* rows 10..63 only */
        for (int i = 10; i < 64; i++) {
            int idx = (int)b.obs[i * O];
            cr_expect(idx >= 650 && idx < 700, "transition %d is older than the limit", idx);
        }
    }
    /* a limit above the storage is clamped; below 1 becomes 1 */
    synth_set_limit(&s, 5000);
    cr_expect_eq(s.limit, 1000);
    cr_expect_eq(synth_size(&s), 700);
    synth_set_limit(&s, 0);
    cr_expect_eq(synth_size(&s), 1);
    synth_sample_rows(&b, &s, &rng, 0, 8);
    for (int i = 0; i < 8; i++) {
        cr_expect_float_eq(b.obs[i * O], 699.0f, 0.0);
    }
    replay_batch_free(&b);
    synth_free(&s);
}

Test(synth, wraps_around_the_ring_with_a_limit)
{
    synth_t s = {0};
    cr_assert_eq(synth_init(&s, 16, O, A), 0);
    add_rows(&s, 0, 21); /* head wrapped to slot 5 */
    synth_set_limit(&s, 8);
    replay_batch b = {0};
    cr_assert_eq(replay_batch_init(&b, 200, O, A), 0);
    rng_t rng;
    rng_seed(&rng, 11);
    synth_sample_rows(&b, &s, &rng, 0, 200);
    int seen[8] = {0};
    for (int i = 0; i < 200; i++) {
        int idx = (int)b.obs[i * O];
        cr_assert(idx >= 13 && idx <= 20, "transition %d outside the newest 8", idx);
        seen[idx - 13] = 1;
    }
    for (int i = 0; i < 8; i++) {
        cr_expect(seen[i], "transition %d never sampled in 200 draws", 13 + i);
    }
    replay_batch_free(&b);
    synth_free(&s);
}
