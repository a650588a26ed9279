/* tests of HalfCheetah-v4 (common/env/tasks/half_cheetah.c) against env-specs.md */
#include "tests/common/env/env_testlib.h"

#define ID "HalfCheetah-v4"

Test(env_half_cheetah, spec_model_and_masses, .timeout = 60)
{
    env_t *e = envt_make(ID);
    const mjModel *m = mjenv_model_of(e);
    cr_expect_eq(e->spec.n_obs, 17);
    cr_expect_eq(e->spec.n_act, 6);
    for (int i = 0; i < 6; i++) {
        cr_expect_float_eq(e->spec.act_low[i], -1.0f, 0.0f);
        cr_expect_float_eq(e->spec.act_high[i], 1.0f, 0.0f);
    }
    cr_expect_float_eq(e->spec.dt, 0.05, 1e-12);
    cr_expect_eq(e->spec.max_episode_steps, 1000);
    cr_expect_eq(m->nq, 9);
    cr_expect_eq(m->nv, 9);
    cr_expect_eq(m->nu, 6);
    cr_expect_eq(m->nbody, 8);
    cr_expect_eq(m->opt.integrator, mjINT_EULER);
    cr_expect_float_eq(envt_total_mass(e), 14.0, 1e-9);
    const char *names[] = {"torso", "bthigh", "bshin", "bfoot", "fthigh", "fshin", "ffoot"};
    const double mass[] = {6.2502, 1.5435, 1.5874, 1.0954, 1.4381, 1.2008, 0.8845};
    for (int i = 0; i < 7; i++) {
        int id = mj_name2id(m, mjOBJ_BODY, names[i]);
        cr_assert_geq(id, 1, "%s", names[i]);
        cr_expect_float_eq(m->body_mass[id], mass[i], 1e-4, "%s %g", names[i],
                           m->body_mass[id]);
    }
    const double gear[] = {120, 90, 60, 120, 60, 30};
    for (int i = 0; i < 6; i++) {
        cr_expect_eq(m->actuator_gear[6 * i], gear[i]);
    }
    for (int i = 0; i < m->nq; i++) {
        cr_expect_eq(m->qpos0[i], 0.0);
    }
    env_free(e);
}

/* never terminates: zero action for the whole episode, truncated exactly at 1000 */
Test(env_half_cheetah, zero_action_runs_to_truncation_at_1000, .timeout = 60)
{
    float obs[17];
    cr_expect_eq(envt_zero_action_terminal_step(ID, 1000, obs), 0);
    env_t *e = envt_make(ID);
    float act[6] = {0};
    env_reset(e, 3, obs);
    env_step_result r = {.next_obs = obs};
    int n = 0;
    for (int t = 0; t < 2000; t++) {
        cr_assert_eq(env_step(e, act, &r), 0);
        n++;
        cr_assert_not(r.terminated);
        if (r.truncated) {
            break;
        }
    }
    cr_expect_eq(n, 1000);
    env_free(e);
}

/* reward = forward velocity of qpos[0] - 0.1 |a|^2, checked against the model's own state */
Test(env_half_cheetah, reward_is_x_velocity_minus_control_cost, .timeout = 60)
{
    env_t *e = envt_make(ID);
    mjData *d = mjenv_data_of(e);
    float obs[17], act[6] = {0.5f, -0.5f, 1.0f, -1.0f, 0.25f, 0.0f};
    env_reset(e, 4, obs);
    env_step_result r = {.next_obs = obs};
    for (int t = 0; t < 20; t++) {
        double x0 = d->qpos[0];
        cr_assert_eq(env_step(e, act, &r), 0);
        double fwd = (d->qpos[0] - x0) / 0.05;
        double want = fwd - 0.1 * (0.25 + 0.25 + 1 + 1 + 0.0625);
        cr_expect(fabs(r.reward - want) < 1e-5, "t %d reward %g want %g", t, (double)r.reward,
                  want);
        cr_expect_float_eq(r.info[1], -0.25625f, 1e-6);
        cr_expect_float_eq(obs[0], (float)d->qpos[1], 0.0f);
        cr_expect_float_eq(obs[8], (float)d->qvel[0], 0.0f);
    }
    env_free(e);
}

Test(env_half_cheetah, random_transitions_agree_and_are_deterministic, .timeout = 120)
{
    cr_expect_eq(envt_check_random_transitions(ID, 10000, 91), 0);
}

Test(env_half_cheetah, bad_actions_and_reset_noise, .timeout = 60)
{
    envt_check_bad_actions(ID);
    envt_check_reset_noise(ID, 0.1);
}

/* joints as in env-specs.md 4.1: ranges (rad), stiffness, damping, armature */
Test(env_half_cheetah, joints_match_the_spec_table, .timeout = 60)
{
    env_t *e = envt_make(ID);
    const mjModel *m = mjenv_model_of(e);
    static const struct {
        const char *name;
        int limited;
        double lo, hi, stiffness, damping, armature;
    } j[] = {
        {"rootx", 0, 0, 0, 0, 0, 0},           {"rootz", 0, 0, 0, 0, 0, 0},
        {"rooty", 0, 0, 0, 0, 0, 0},           {"bthigh", 1, -0.52, 1.05, 240, 6, 0.1},
        {"bshin", 1, -0.785, 0.785, 180, 4.5, 0.1}, {"bfoot", 1, -0.4, 0.785, 120, 3, 0.1},
        {"fthigh", 1, -1, 0.7, 180, 4.5, 0.1}, {"fshin", 1, -1.2, 0.87, 120, 3, 0.1},
        {"ffoot", 1, -0.5, 0.5, 60, 1.5, 0.1},
    };
    cr_assert_eq(m->njnt, 9);
    for (int i = 0; i < 9; i++) {
        int id = mj_name2id(m, mjOBJ_JOINT, j[i].name);
        cr_assert_eq(id, i, "%s is joint %d", j[i].name, id);
        int dof = m->jnt_dofadr[id];
        cr_expect_eq(m->jnt_limited[id], j[i].limited, "%s", j[i].name);
        if (j[i].limited) {
            cr_expect_float_eq(m->jnt_range[2 * id], j[i].lo, 1e-12, "%s", j[i].name);
            cr_expect_float_eq(m->jnt_range[2 * id + 1], j[i].hi, 1e-12, "%s", j[i].name);
        }
        cr_expect_float_eq(m->jnt_stiffness[id], j[i].stiffness, 1e-12, "%s", j[i].name);
        cr_expect_float_eq(m->dof_damping[dof], j[i].damping, 1e-12, "%s", j[i].name);
        cr_expect_float_eq(m->dof_armature[dof], j[i].armature, 1e-12, "%s", j[i].name);
    }
    /* contacts: body geoms collide only with the floor (conaffinity 0), friction 0.4 */
    int torso = mj_name2id(m, mjOBJ_GEOM, "torso");
    cr_expect_eq(m->geom_conaffinity[torso], 0);
    cr_expect_float_eq(m->geom_friction[3 * torso], 0.4, 1e-12);
    cr_expect_eq(m->opt.timestep, 0.01);
    env_free(e);
}
