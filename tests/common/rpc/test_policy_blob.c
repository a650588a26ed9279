/* policy blobs (common/rpc/policy_blob.h): a learner's actor published as a blob acts the same
 * in another process's inference-only policy (common/nn/policy.h) */
#include <criterion/criterion.h>
#include <math.h>

#include "common/base/err.h"
#include "common/nn/policy.h"
#include "common/nn/sac.h"
#include "common/rpc/policy_blob.h"

static const float low2[2] = {-2.0f, 0.0f};
static const float high2[2] = {2.0f, 1.0f};
/* O 3, A 2 within these bounds, H hidden units */
#define SHAPE2(H) (&(const policy_shape){3, 2, (H), low2, high2})

Test(policy, blob_from_sac_gives_the_same_deterministic_actions_in_env_units)
{
    sac_t s = {0};
    sac_cfg cfg = sac_default_cfg(3, 2);
    cfg.hidden = 32;
    cfg.batch = 8;
    cr_assert_eq(sac_init(&s, &cfg, 5), 0, "%s", err_msg());
    nn_blob b;
    cr_assert_eq(policy_blob_build(&b, &s, 7, "Test-v0"), 0, "%s", err_msg());

    policy_t p = {0};
    cr_assert_eq(policy_init(&p, SHAPE2(32), 8), 0, "%s", err_msg());
    cr_assert_eq(policy_load_blob(&p, &b.msg), 0, "%s", err_msg());
    cr_expect_eq(p.version, 7);

    float obs[4 * 3], unit[4 * 2], act[4 * 2];
    rng_t r;
    rng_seed(&r, 1);
    for (int i = 0; i < 12; i++) {
        obs[i] = rng_normal_f32(&r);
    }
    sac_act(&s, unit, obs, 4, true);
    policy_act(&p, &r, act, obs, 4, true);
    for (int i = 0; i < 4; i++) {
        for (int j = 0; j < 2; j++) {
            float want = low2[j] + (unit[i * 2 + j] + 1.0f) * 0.5f * (high2[j] - low2[j]);
            cr_expect(fabsf(act[i * 2 + j] - want) < 1e-5f, "row %d dim %d: %f vs %f", i, j,
                      act[i * 2 + j], want);
        }
    }
    /* sampled actions stay inside the bounds */
    for (int k = 0; k < 50; k++) {
        policy_act(&p, &r, act, obs, 4, false);
        for (int i = 0; i < 8; i++) {
            cr_expect(act[i] >= low2[i % 2] && act[i] <= high2[i % 2]);
        }
    }
    /* the same version again is refused, and nothing changes */
    cr_expect_eq(policy_load_blob(&p, &b.msg), TWIG_EMISMATCH);
    cr_expect_eq(p.version, 7);
    nn_blob_free(&b);
    policy_free(&p);
    sac_free(&s);
}

Test(policy, model_blob_or_damaged_blob_is_refused)
{
    sac_t s = {0};
    sac_cfg cfg = sac_default_cfg(3, 2);
    cfg.hidden = 16;
    cfg.batch = 4;
    cr_assert_eq(sac_init(&s, &cfg, 5), 0);
    policy_t p = {0};
    cr_assert_eq(policy_init(&p, SHAPE2(16), 4), 0);
    nn_blob b;
    cr_assert_eq(policy_blob_build(&b, &s, 3, "Test-v0"), 0);
    b.msg.kind = TWIG__V1__WEIGHT_KIND__WEIGHT_KIND_MODEL;
    cr_expect_eq(policy_load_blob(&p, &b.msg), TWIG_EMISMATCH);
    b.msg.kind = TWIG__V1__WEIGHT_KIND__WEIGHT_KIND_POLICY;
    b.msg.data.data[5] ^= 0x10;
    cr_expect_eq(policy_load_blob(&p, &b.msg), TWIG_ECORRUPT);
    cr_expect_eq(p.version, 0);
    nn_blob_free(&b);
    /* a policy of another width does not fit */
    policy_t wide = {0};
    cr_assert_eq(policy_init(&wide, SHAPE2(32), 4), 0);
    cr_assert_eq(policy_blob_build(&b, &s, 4, "Test-v0"), 0);
    cr_expect_eq(policy_load_blob(&wide, &b.msg), TWIG_EMISMATCH);
    nn_blob_free(&b);
    policy_free(&wide);
    policy_free(&p);
    sac_free(&s);
}

Test(policy, unit_conversion_round_trips_and_clamps)
{
    policy_t p = {0};
    cr_assert_eq(policy_init(&p, SHAPE2(8), 2), 0);
    float act[4] = {-2.0f, 0.25f, 1.0f, 1.0f}, unit[4], back[4];
    policy_unit_from_env(&p, unit, act, 2);
    cr_expect_float_eq(unit[0], -1.0f, 1e-6f);
    cr_expect_float_eq(unit[1], -0.5f, 1e-6f);
    cr_expect_float_eq(unit[2], 0.5f, 1e-6f);
    cr_expect_float_eq(unit[3], 1.0f, 1e-6f);
    policy_env_from_unit(&p, back, unit, 2);
    for (int i = 0; i < 4; i++) {
        cr_expect_float_eq(back[i], act[i], 1e-6f);
    }
    float outside[2] = {5.0f, -3.0f};
    policy_unit_from_env(&p, unit, outside, 1);
    cr_expect_eq(unit[0], 1.0f);
    cr_expect_eq(unit[1], -1.0f);
    rng_t r;
    rng_seed(&r, 2);
    for (int k = 0; k < 100; k++) {
        policy_act_random(&p, &r, act, 2);
        for (int i = 0; i < 4; i++) {
            cr_expect(act[i] >= low2[i % 2] && act[i] <= high2[i % 2]);
        }
    }
    policy_free(&p);
}
