/* tests of InvertedPendulum-v4 (common/env/tasks/inverted_pendulum.c) against env-specs.md */
#include "tests/common/env/env_testlib.h"

#define ID "InvertedPendulum-v4"

Test(env_inverted_pendulum, spec_model_and_mass, .timeout = 60)
{
    env_t *e = envt_make(ID);
    const mjModel *m = mjenv_model_of(e);
    cr_expect_eq(e->spec.n_obs, 4);
    cr_expect_eq(e->spec.n_act, 1);
    cr_expect_float_eq(e->spec.act_low[0], -3.0f, 0.0f);
    cr_expect_float_eq(e->spec.act_high[0], 3.0f, 0.0f);
    cr_expect_float_eq(e->spec.dt, 0.04, 1e-12);
    cr_expect_eq(e->spec.max_episode_steps, 1000);
    cr_expect_eq(m->nq, 2);
    cr_expect_eq(m->nv, 2);
    cr_expect_eq(m->nu, 1);
    cr_expect_eq(m->nbody, 3);
    cr_expect_eq(m->opt.integrator, mjINT_RK4);
    cr_expect_float_eq(envt_total_mass(e), 15.491, 1e-3);
    cr_expect_float_eq(m->body_mass[1], 10.472, 1e-3);
    cr_expect_float_eq(m->body_mass[2], 5.0186, 1e-4);
    cr_expect_eq(m->qpos0[0], 0.0);
    cr_expect_eq(m->qpos0[1], 0.0);
    env_free(e);
}

/* env-specs.md 6: zero action from the initial pose terminates at step 30, angle 0.2265 */
Test(env_inverted_pendulum, zero_action_terminates_at_step_30, .timeout = 60)
{
    float obs[4];
    int t = envt_zero_action_terminal_step(ID, 1000, obs);
    cr_expect_eq(t, 30);
    cr_expect_float_eq(obs[1], 0.2265f, 5e-4);
}

Test(env_inverted_pendulum, random_transitions_agree_and_are_deterministic, .timeout = 120)
{
    int terminals = envt_check_random_transitions(ID, 10000, 77);
    cr_expect_gt(terminals, 10);
}

Test(env_inverted_pendulum, reward_is_one_including_the_terminal_step, .timeout = 60)
{
    env_t *e = envt_make(ID);
    float obs[4], next[4], act[1] = {3.0f};
    env_reset(e, 2, obs);
    env_step_result r = {.next_obs = next};
    int n = 0;
    for (int t = 0; t < 1000; t++) {
        cr_assert_eq(env_step(e, act, &r), 0);
        n++;
        cr_expect_eq(r.reward, 1.0f);
        if (r.terminated || r.truncated) {
            break;
        }
    }
    cr_expect(r.terminated);
    cr_expect(n < 1000);
    env_free(e);
}

Test(env_inverted_pendulum, bad_actions_and_reset_noise, .timeout = 60)
{
    envt_check_bad_actions(ID);
    envt_check_reset_noise(ID, 0.01);
}

/* a PD controller on (x, angle, x', angle') keeps the pole up: truncated at exactly 1000 */
Test(env_inverted_pendulum, balanced_pole_is_truncated_at_1000, .timeout = 60)
{
    env_t *e = envt_make(ID);
    float obs[4], act[1];
    env_reset(e, 1, obs);
    env_step_result r = {.next_obs = obs};
    int n = 0;
    double ret = 0;
    for (int t = 0; t < 2000; t++) {
        act[0] = 0.5f * obs[0] + 5.0f * obs[1] + 0.5f * obs[2] + 0.5f * obs[3];
        cr_assert_eq(env_step(e, act, &r), 0);
        n++;
        ret += r.reward;
        cr_assert_not(r.terminated, "fell at step %d", n);
        if (r.truncated) {
            break;
        }
    }
    cr_expect_eq(n, 1000);
    cr_expect_float_eq(ret, 1000.0, 1e-9);
    cr_expect_eq(env_step(e, act, &r), -EINVAL);
    env_free(e);
}
