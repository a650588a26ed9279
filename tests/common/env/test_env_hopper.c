/* tests of Hopper-v4 (common/env/tasks/hopper.c) against env-specs.md */
#include "tests/common/env/env_testlib.h"

#define ID "Hopper-v4"

Test(env_hopper, spec_model_and_masses, .timeout = 60)
{
    env_t *e = envt_make(ID);
    const mjModel *m = mjenv_model_of(e);
    cr_expect_eq(e->spec.n_obs, 11);
    cr_expect_eq(e->spec.n_act, 3);
    for (int i = 0; i < 3; i++) {
        cr_expect_float_eq(e->spec.act_low[i], -1.0f, 0.0f);
        cr_expect_float_eq(e->spec.act_high[i], 1.0f, 0.0f);
        cr_expect_eq(m->actuator_gear[6 * i], 200.0);
    }
    cr_expect_float_eq(e->spec.dt, 0.008, 1e-12);
    cr_expect_eq(e->spec.max_episode_steps, 1000);
    cr_expect_eq(m->nq, 6);
    cr_expect_eq(m->nv, 6);
    cr_expect_eq(m->nu, 3);
    cr_expect_eq(m->nbody, 5);
    cr_expect_eq(m->opt.integrator, mjINT_RK4);
    cr_expect_float_eq(envt_total_mass(e), 15.820, 1e-3);
    const char *names[] = {"torso", "thigh", "leg", "foot"};
    const double mass[] = {3.6652, 4.0579, 2.7814, 5.3156};
    for (int i = 0; i < 4; i++) {
        int id = mj_name2id(m, mjOBJ_BODY, names[i]);
        cr_assert_geq(id, 1, "%s", names[i]);
        cr_expect_float_eq(m->body_mass[id], mass[i], 1e-4, "%s %g", names[i],
                           m->body_mass[id]);
    }
    const double qpos0[] = {0, 1.25, 0, 0, 0, 0};
    for (int i = 0; i < 6; i++) {
        cr_expect_eq(m->qpos0[i], qpos0[i], "qpos0[%d] %g", i, m->qpos0[i]);
    }
    /* the foot's friction is 2, the others 0.9, torsional/rolling MuJoCo defaults */
    int foot = mj_name2id(m, mjOBJ_GEOM, "foot_geom");
    cr_assert_geq(foot, 0);
    cr_expect_eq(m->geom_friction[3 * foot], 2.0);
    cr_expect_float_eq(m->geom_friction[3 * foot + 1], 0.005, 1e-12);
    cr_expect_eq(m->geom_condim[foot], 1);
    env_free(e);
}

/* env-specs.md 6: zero action from the initial pose terminates at step 141,
 * z 1.195 and angle -0.2046 */
Test(env_hopper, zero_action_terminates_at_step_141, .timeout = 60)
{
    float obs[11];
    int t = envt_zero_action_terminal_step(ID, 1000, obs);
    cr_expect_eq(t, 141);
    cr_expect_float_eq(obs[0], 1.195f, 1e-3);
    cr_expect_float_eq(obs[1], -0.2046f, 2e-4);
}

Test(env_hopper, random_transitions_agree_and_are_deterministic, .timeout = 300)
{
    int terminals = envt_check_random_transitions(ID, 10000, 5);
    cr_expect_gt(terminals, 10);
}

/* the healthy reward is paid on the terminating step, velocities are clipped in obs */
Test(env_hopper, terminal_step_pays_healthy_reward_and_velocities_are_clipped, .timeout = 60)
{
    env_t *e = envt_make(ID);
    mjData *d = mjenv_data_of(e);
    float obs[11], act[3] = {1.0f, -1.0f, 1.0f};
    env_reset(e, 9, obs);
    env_step_result r = {.next_obs = obs};
    for (int t = 0; t < 1000; t++) {
        cr_assert_eq(env_step(e, act, &r), 0);
        cr_expect_eq(r.info[1], 1.0f);
        for (int i = 0; i < 6; i++) {
            cr_expect(obs[5 + i] >= -10.0f && obs[5 + i] <= 10.0f);
            cr_expect_float_eq(obs[5 + i], (float)fmin(fmax(d->qvel[i], -10), 10), 0.0f);
        }
        if (r.terminated || r.truncated) {
            break;
        }
    }
    cr_expect(r.terminated);
    env_free(e);
}

/* hand-built observations at the edges of the healthy ranges */
Test(env_hopper, termination_function_ranges_are_strict_and_abs_is_applied)
{
    env_t *e = envt_make(ID);
    const float ok[11] = {1.2f, 0.1f, -0.5f, -0.5f, 0.2f, 1, -1, 2, 3, -4, 5};
    float o[8][11];
    for (int i = 0; i < 8; i++) {
        memcpy(o[i], ok, sizeof(ok));
    }
    o[1][0] = 0.7f;        /* z must be > 0.7 */
    o[2][1] = 0.2f;        /* |angle| < 0.2 strictly */
    o[3][1] = -0.2f;
    o[4][2] = -100.0f;     /* qpos[2:] in (-100, 100): MBPO's misplaced abs lets this pass */
    o[5][7] = NAN;
    o[6][0] = 0.7001f;     /* just healthy */
    o[7][4] = 99.0f;
    bool done[8];
    float act[8 * 3] = {0};
    env_termination(e, &o[0][0], act, &o[0][0], done, 8);
    const bool want[8] = {false, true, true, true, true, true, false, false};
    for (int i = 0; i < 8; i++) {
        cr_expect_eq(done[i], want[i], "case %d", i);
    }
    env_free(e);
}

Test(env_hopper, bad_actions_and_reset_noise, .timeout = 60)
{
    envt_check_bad_actions(ID);
    envt_check_reset_noise(ID, 5e-3);
}

/* the time limit applies to Hopper like any env: with a limit of 100 the zero-action fall
 * (terminal at 141) is cut at 100, truncated and not terminated */
Test(env_hopper, time_limit_truncates_before_the_fall, .timeout = 60)
{
    env_t *e = envt_make(ID);
    e->spec.max_episode_steps = 100;
    cr_assert_eq(env_set_reset_noise_scale(e, 0.0), 0);
    float obs[11], act[3] = {0};
    env_reset(e, 0, obs);
    env_step_result r = {.next_obs = obs};
    int n = 0;
    for (int t = 0; t < 1000; t++) {
        cr_assert_eq(env_step(e, act, &r), 0);
        n++;
        if (r.terminated || r.truncated) {
            break;
        }
    }
    cr_expect_eq(n, 100);
    cr_expect(r.truncated);
    cr_expect_not(r.terminated);
    env_free(e);
}

/* joints as in env-specs.md 4.2 (degrees in the spec, radians compiled) */
Test(env_hopper, joints_match_the_spec_table, .timeout = 60)
{
    env_t *e = envt_make(ID);
    const mjModel *m = mjenv_model_of(e);
    const double deg = M_PI / 180.0;
    static const char *names[] = {"rootx", "rootz", "rooty", "thigh_joint", "leg_joint",
                                  "foot_joint"};
    const double lo[] = {0, 0, 0, -150 * deg, -150 * deg, -45 * deg};
    const double hi[] = {0, 0, 0, 0, 0, 45 * deg};
    cr_assert_eq(m->njnt, 6);
    for (int i = 0; i < 6; i++) {
        int id = mj_name2id(m, mjOBJ_JOINT, names[i]);
        cr_assert_eq(id, i, "%s is joint %d", names[i], id);
        int dof = m->jnt_dofadr[id];
        bool root = i < 3;
        cr_expect_eq(m->jnt_limited[id], !root, "%s", names[i]);
        if (!root) {
            cr_expect_float_eq(m->jnt_range[2 * id], lo[i], 1e-12, "%s", names[i]);
            cr_expect_float_eq(m->jnt_range[2 * id + 1], hi[i], 1e-12, "%s", names[i]);
        }
        cr_expect_float_eq(m->dof_damping[dof], root ? 0.0 : 1.0, 1e-12, "%s", names[i]);
        cr_expect_float_eq(m->dof_armature[dof], root ? 0.0 : 1.0, 1e-12, "%s", names[i]);
        cr_expect_eq(m->jnt_stiffness[id], 0.0);
    }
    int floor = mj_name2id(m, mjOBJ_GEOM, "floor");
    cr_expect_eq(m->geom_condim[floor], 3);
    cr_expect_float_eq(m->geom_margin[mj_name2id(m, mjOBJ_GEOM, "thigh_geom")], 0.001, 1e-12);
    cr_expect_eq(m->opt.timestep, 0.002);
    env_free(e);
}

/* the observation clips velocities to +-10 as np.clip does: a NaN stays NaN (visible to the
 * divergence check), it does not become -10 */
Test(env_hopper, observation_clips_velocities_and_keeps_nan, .timeout = 60)
{
    env_t *e = envt_make(ID);
    float obs[11];
    env_reset(e, 3, obs);
    mjData *d = mjenv_data_of(e);
    const mjModel *m = mjenv_model_of(e);
    d->qvel[0] = 25.0;
    d->qvel[1] = -25.0;
    d->qvel[2] = NAN;
    d->qvel[3] = 3.5;
    mjenv_task_of(e)->observe(m, d, obs);
    cr_expect_eq(obs[5], 10.0f);
    cr_expect_eq(obs[6], -10.0f);
    cr_expect(isnan(obs[7]), "obs[7] %g", (double)obs[7]);
    cr_expect_eq(obs[8], 3.5f);
    cr_expect_eq(obs[0], (float)d->qpos[1]);
    env_free(e);
}
