/* policy: an inference-only actor allocates its parameters and a forward workspace and
 * nothing a trainer needs (no gradients, no Adam moments, no backward scratch); it acts the
 * same as the SAC actor it was copied from */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "common/base/rng.h"
#include "common/nn/nn_gemm.h"
#include "common/nn/policy.h"
#include "common/nn/sac.h"
#include "tests/common/base/alloc_count.h"

Test(policy, allocates_params_and_forward_workspace_only, .init = alloc_count_install)
{
    /* widths that are multiples of 16 floats, so no tensor is padded */
    enum { O = 16, H = 64, A = 8, B = 32 };
    const float low[A] = {-1, -1, -1, -1, -2, -2, -2, -2};
    const float high[A] = {1, 1, 1, 1, 2, 2, 2, 2};
    policy_shape sh = {O, A, H, low, high};
    policy_t p = {0};
    alloc_count_begin_all();
    int rc = policy_init(&p, &sh, B);
    long calls = alloc_count_end();
    size_t bytes = atomic_load(&alloc_counted_bytes);
    cr_assert_eq(rc, 0);

    size_t params = (size_t)O * H + H + (size_t)H * H + H + (size_t)H * 2 * A + 2 * A;
    size_t forward = 2 * (size_t)B * H;                     /* the two hidden layers' relu */
    size_t bounds = 2 * (size_t)A;                          /* act_low, act_high */
    size_t own = (size_t)B * 2 * A + 3 * (size_t)B * A + B; /* pi_out, eps, u, unit, logp */
    cr_expect_eq(p.actor.n_params, params);
    cr_expect_eq(bytes, sizeof(float) * (params + forward + bounds + own),
                 "policy_init took %zu bytes, params + forward workspace are %zu "
                 "(Adam moments alone would be %zu more)",
                 bytes, sizeof(float) * (params + forward + bounds + own),
                 2 * sizeof(float) * params);
    cr_expect_eq(calls, 5, "params, forward workspace, two bounds, own workspace");
    policy_free(&p);
}

Test(policy, acts_as_the_sac_actor_whose_parameters_it_holds)
{
    nn_gemm_set_threads(1);
    enum { O = 5, A = 2, B = 4 };
    sac_cfg cfg = sac_default_cfg(O, A);
    cfg.hidden = 32;
    cfg.batch = B;
    sac_t s = {0};
    cr_assert_eq(sac_init(&s, &cfg, 3), 0);
    const float low[A] = {-1, -1}, high[A] = {1, 1};
    policy_shape sh = {O, A, cfg.hidden, low, high};
    policy_t p = {0};
    cr_assert_eq(policy_init(&p, &sh, B), 0);
    mlp_copy_params(&p.actor, &s.actor.p);

    rng_t rng;
    rng_seed(&rng, 9);
    float obs[B * O], want[B * A], got[B * A];
    rng_fill_normal(&rng, obs, B * O);
    sac_act(&s, want, obs, B, true);
    policy_act(&p, &rng, got, obs, B, true);
    for (int i = 0; i < B * A; i++) {
        cr_expect(fabsf(got[i] - want[i]) <= 1e-6f, "[%d] %g vs %g", i, got[i], want[i]);
    }
    policy_free(&p);
    sac_free(&s);
}
