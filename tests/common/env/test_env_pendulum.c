/* tests of the env interface (registry, action checks, time limit) on Pendulum-v1 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "common/env/env.h"
#include "common/base/err.h"

static env_t *make_pendulum(void)
{
    env_t *e = NULL;
    int rc = env_make(&e, "Pendulum-v1");
    cr_assert_eq(rc, 0, "env_make: %s", err_msg());
    return e;
}

Test(env_pendulum, spec_matches_gymnasium)
{
    env_t *e = make_pendulum();
    cr_expect_str_eq(e->spec.name, "Pendulum-v1");
    cr_expect_eq(e->spec.n_obs, 3);
    cr_expect_eq(e->spec.n_act, 1);
    cr_expect_float_eq(e->spec.act_low[0], -2.0f, 0.0f);
    cr_expect_float_eq(e->spec.act_high[0], 2.0f, 0.0f);
    cr_expect_eq(e->spec.max_episode_steps, 200);
    cr_expect_float_eq(e->spec.dt, 0.05, 1e-15);
    cr_expect_eq(e->spec.n_info, 3);
    cr_expect_eq(env_set_reset_noise_scale(e, 0.0), TWIG_EUNIMPL);
    env_free(e);
}

Test(env_pendulum, unknown_id_is_refused_naming_the_known_ones)
{
    env_t *e = (env_t *)1;
    cr_expect_eq(env_make(&e, "Pendulum-v0"), TWIG_ENOTFOUND);
    cr_expect_null(e);
    cr_expect(strstr(err_msg(), "Pendulum-v1") != NULL, "%s", err_msg());
    cr_expect_eq(env_make(&e, ""), -EINVAL);
    const char *const *ids = env_list();
    bool found = false;
    for (int i = 0; ids[i] != NULL; i++) {
        found = found || strcmp(ids[i], "Pendulum-v1") == 0;
    }
    cr_expect(found);
}

/* th 0.5, thdot 0.3, u 1: acc = 15 sin 0.5 + 3 = 10.191383079063045,
 * thdot' = 0.3 + 0.05 acc = 0.8095691539531523, th' = 0.5 + 0.05 thdot' = 0.5404784576976576,
 * reward = -(0.25 + 0.009 + 0.001) = -0.26 */
Test(env_pendulum, one_step_matches_hand_computed_values)
{
    env_t *e = make_pendulum();
    float obs[3], next[3];
    env_reset(e, 1, obs);
    cr_assert_eq(env_pendulum_set_state(e, 0.5, 0.3), 0);
    env_step_result r = {.next_obs = next};
    float u = 1.0f;
    cr_assert_eq(env_step(e, &u, &r), 0);
    cr_expect_float_eq(next[0], (float)cos(0.5404784576976576), 1e-7);
    cr_expect_float_eq(next[1], (float)sin(0.5404784576976576), 1e-7);
    cr_expect_float_eq(next[2], 0.8095691539531523f, 1e-7);
    cr_expect_float_eq(r.reward, -0.26f, 1e-7);
    cr_expect_float_eq(r.info[0], -0.25f, 1e-7);
    cr_expect_float_eq(r.info[1], -0.009f, 1e-8);
    cr_expect_float_eq(r.info[2], -0.001f, 1e-9);
    cr_expect_not(r.terminated);
    cr_expect_not(r.truncated);
    env_free(e);
}

/* speed clip before the angle update (v1): th 0, thdot 7.9, u 2 -> thdot' = 8.2 -> 8,
 * th' = 0 + 8 * 0.05 = 0.4; reward = -(0.1 * 62.41 + 0.004) = -6.245 */
Test(env_pendulum, speed_is_clipped_before_the_angle_update)
{
    env_t *e = make_pendulum();
    float obs[3], next[3];
    env_reset(e, 1, obs);
    cr_assert_eq(env_pendulum_set_state(e, 0.0, 7.9), 0);
    env_step_result r = {.next_obs = next};
    float u = 2.0f;
    cr_assert_eq(env_step(e, &u, &r), 0);
    cr_expect_float_eq(next[2], 8.0f, 0.0f);
    cr_expect_float_eq(next[1], (float)sin(0.4), 1e-7);
    cr_expect_float_eq(r.reward, -6.245f, 1e-6);
    env_free(e);
}

/* out-of-range torque is clipped to +-2: cost and dynamics see 2 */
Test(env_pendulum, torque_is_clipped_to_the_bounds)
{
    env_t *e = make_pendulum();
    float obs[3], next[3];
    env_reset(e, 1, obs);
    cr_assert_eq(env_pendulum_set_state(e, 0.0, 0.0), 0);
    env_step_result r = {.next_obs = next};
    float u = 50.0f;
    cr_assert_eq(env_step(e, &u, &r), 0);
    /* thdot' = 3 * 2 * 0.05 = 0.3 */
    cr_expect_float_eq(next[2], 0.3f, 1e-7);
    cr_expect_float_eq(r.reward, -0.004f, 1e-9);
    env_free(e);
}

/* cost uses ((th + pi) mod 2pi) - pi in [-pi, pi) */
Test(env_pendulum, angle_is_normalised_in_the_cost)
{
    const double cases[][2] = {
        {4.0, 4.0 - 2.0 * M_PI},
        {-4.0, -4.0 + 2.0 * M_PI},
        {M_PI, -M_PI},
        {-M_PI, -M_PI},
        {7.0 * M_PI + 0.25, -M_PI + 0.25},
        {-2.0 * M_PI - 0.5, -0.5},
    };
    env_t *e = make_pendulum();
    float obs[3], next[3];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        env_reset(e, 1, obs);
        cr_assert_eq(env_pendulum_set_state(e, cases[i][0], 0.0), 0);
        env_step_result r = {.next_obs = next};
        float u = 0.0f;
        cr_assert_eq(env_step(e, &u, &r), 0);
        double want = -cases[i][1] * cases[i][1];
        cr_expect(fabs(r.reward - want) < 1e-5, "th %g: reward %g want %g", cases[i][0],
                  (double)r.reward, want);
    }
    /* the worst reward: th = pi, |thdot| = 8, |u| = 2 */
    env_reset(e, 1, obs);
    cr_assert_eq(env_pendulum_set_state(e, M_PI, 8.0), 0);
    env_step_result r = {.next_obs = next};
    float u = -2.0f;
    cr_assert_eq(env_step(e, &u, &r), 0);
    cr_expect_float_eq(r.reward, -16.2736044f, 1e-5);
    env_free(e);
}

Test(env_pendulum, truncates_at_200_and_refuses_steps_after)
{
    env_t *e = make_pendulum();
    float obs[3], next[3];
    env_reset(e, 7, obs);
    env_step_result r = {.next_obs = next};
    float u = 0.5f;
    int n = 0;
    for (int i = 0; i < 1000; i++) {
        cr_assert_eq(env_step(e, &u, &r), 0);
        n++;
        cr_assert_not(r.terminated);
        if (r.truncated) {
            break;
        }
    }
    cr_expect_eq(n, 200);
    cr_expect_eq(e->t, 200);
    cr_expect_eq(env_step(e, &u, &r), -EINVAL);
    env_reset(e, 8, obs);
    cr_expect_eq(e->t, 0);
    cr_expect_eq(env_step(e, &u, &r), 0);
    env_free(e);
}

Test(env_pendulum, step_before_reset_is_refused)
{
    env_t *e = make_pendulum();
    float next[3];
    env_step_result r = {.next_obs = next};
    float u = 0.0f;
    cr_expect_eq(env_step(e, &u, &r), -EINVAL);
    env_free(e);
}

Test(env_pendulum, reset_draws_th_and_thdot_in_their_ranges)
{
    env_t *e = make_pendulum();
    float obs[3];
    double min_th = 10, max_th = -10, min_v = 10, max_v = -10;
    for (uint64_t seed = 0; seed < 2000; seed++) {
        env_reset(e, seed, obs);
        cr_assert(fabsf(obs[0] * obs[0] + obs[1] * obs[1] - 1.0f) < 1e-5);
        double th = atan2(obs[1], obs[0]);
        min_th = fmin(min_th, th);
        max_th = fmax(max_th, th);
        min_v = fmin(min_v, obs[2]);
        max_v = fmax(max_v, obs[2]);
        cr_assert(obs[2] >= -1.0f && obs[2] <= 1.0f, "thdot %g", (double)obs[2]);
    }
    /* 2000 uniform draws cover both ranges to within a few percent */
    cr_expect(min_th < -3.0 && max_th > 3.0, "th range [%g, %g]", min_th, max_th);
    cr_expect(min_v < -0.95 && max_v > 0.95, "thdot range [%g, %g]", min_v, max_v);
    env_free(e);
}

static void run_episode(float *obs_trace, float *rew_trace, uint64_t seed)
{
    env_t *e = make_pendulum();
    float obs[3];
    env_reset(e, seed, obs);
    memcpy(obs_trace, obs, sizeof(obs));
    env_step_result r = {.next_obs = obs};
    for (int t = 0; t < 200; t++) {
        float u = (float)sin(0.1 * t) * 2.5f;
        cr_assert_eq(env_step(e, &u, &r), 0);
        memcpy(obs_trace + 3 * (t + 1), obs, sizeof(obs));
        rew_trace[t] = r.reward;
    }
    env_free(e);
}

Test(env_pendulum, same_seed_same_trajectory_other_seed_differs)
{
    static float oa[603], ob[603], oc[603], ra[200], rb[200], rc[200];
    run_episode(oa, ra, 11);
    run_episode(ob, rb, 11);
    run_episode(oc, rc, 12);
    cr_expect_arr_eq(oa, ob, sizeof(oa));
    cr_expect_arr_eq(ra, rb, sizeof(ra));
    cr_expect(memcmp(oa, oc, sizeof(oa)) != 0);
    double sum = 0;
    for (int t = 0; t < 200; t++) {
        cr_expect(ra[t] <= 0.0f && ra[t] >= -16.2736045f);
        sum += ra[t];
    }
    cr_expect(sum < 0.0);
}

Test(env_pendulum, nan_or_inf_action_is_rejected_and_nothing_steps)
{
    env_t *e = make_pendulum();
    float obs[3], next[3], next2[3];
    env_reset(e, 3, obs);
    env_step_result r = {.next_obs = next};
    float bad[] = {NAN, INFINITY, -INFINITY};
    for (int i = 0; i < 3; i++) {
        cr_expect_eq(env_step(e, &bad[i], &r), -EINVAL);
        cr_expect(strstr(err_msg(), "action[0]") != NULL, "%s", err_msg());
    }
    cr_expect_eq(e->t, 0);
    /* the state did not move: the next good step equals a fresh episode's first step */
    float u = 0.3f;
    cr_assert_eq(env_step(e, &u, &r), 0);
    env_t *f = make_pendulum();
    env_reset(f, 3, obs);
    env_step_result r2 = {.next_obs = next2};
    cr_assert_eq(env_step(f, &u, &r2), 0);
    cr_expect_arr_eq(next, next2, sizeof(next));
    /* length check for actions from outside */
    float two[2] = {0, 0};
    cr_expect_eq(env_check_action(e, two, 2), -EINVAL);
    cr_expect_eq(env_check_action(e, two, 1), 0);
    env_free(e);
    env_free(f);
}

Test(env_pendulum, termination_is_always_false)
{
    env_t *e = make_pendulum();
    float obs[6] = {1, 0, 0, -1, 0, 8}, act[2] = {2, -2};
    bool done[2] = {true, true};
    env_termination(e, obs, act, obs, done, 2);
    cr_expect_not(done[0]);
    cr_expect_not(done[1]);
    env_free(e);
}
