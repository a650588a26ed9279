/* tests of Ant-v4 (common/env/tasks/ant.c, common/env/assets/ant.xml) against env-specs.md */
#include "tests/common/env/env_locomotion.h"

#define ID "Ant-v4"

static const model_facts ant_facts = {
    .nq = 15, .nv = 14, .nu = 8, .nbody = 14,
    .timestep = 0.01, .integrator = mjINT_RK4, .solver = mjSOL_NEWTON, .iterations = 100,
    .total_mass = 0.9109,
    .body_name = {"world", "torso", "front_left_leg", "aux_1", NULL, "front_right_leg",
                  "aux_2", NULL, "back_leg", "aux_3", NULL, "right_back_leg", "aux_4", NULL},
    .body_mass = {0.0, 0.3272, 0.03916, 0.03916, 0.06759, 0.03916, 0.03916, 0.06759, 0.03916,
                  0.03916, 0.06759, 0.03916, 0.03916, 0.06759},
    .act_joint = {"hip_4", "ankle_4", "hip_1", "ankle_1", "hip_2", "ankle_2", "hip_3",
                  "ankle_3"},
    .act_gear = {150, 150, 150, 150, 150, 150, 150, 150},
    .ctrl_lo = -1.0, .ctrl_hi = 1.0,
    .qpos0 = {0, 0, 0.75, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
};

/* x of body "torso"'s frame origin, as Gymnasium's get_body_com */
static double ant_x(const mjModel *m, const mjData *d)
{
    int torso = mj_name2id(m, mjOBJ_BODY, "torso");
    return d->xpos[3 * torso];
}

Test(env_ant, spec_model_and_masses, .timeout = 60)
{
    env_t *e = envt_make(ID);
    const env_spec *s = &e->spec;
    cr_expect_eq(s->n_obs, 27);
    cr_expect_eq(s->n_act, 8);
    for (int i = 0; i < 8; i++) {
        cr_expect_eq(s->act_low[i], -1.0f);
        cr_expect_eq(s->act_high[i], 1.0f);
    }
    cr_expect_float_eq(s->dt, 0.05, 1e-12);
    cr_expect_eq(s->max_episode_steps, 1000);
    cr_expect_eq(s->n_info, 3);
    cr_expect_str_eq(s->info_names[0], "reward_forward");
    cr_expect_str_eq(s->info_names[1], "reward_survive");
    cr_expect_str_eq(s->info_names[2], "reward_ctrl");
    const mjModel *m = mjenv_model_of(e);
    facts_check_model(m, &ant_facts);
    cr_expect_float_eq(envt_total_mass(e), 0.9109, 1e-4);
    cr_expect_eq(mj_name2id(m, mjOBJ_BODY, "torso"), 1);   /* env_ant.c reads body 1 */
    /* density 5, margin 0.01, friction (1, 0.5, 0.5) on every geom */
    for (int g = 0; g < m->ngeom; g++) {
        cr_expect_eq(m->geom_margin[g], 0.01, "geom %d margin", g);
        cr_expect_eq(m->geom_friction[3 * g + 1], 0.5, "geom %d friction", g);
    }
    env_free(e);
}

/* env-specs.md 4.4: joints (armature 1, damping 1; free root undamped) and contact
 * parameters (condim 3, margin 0.01, friction 1, only the floor has conaffinity) */
Test(env_ant, joints_and_contacts_follow_the_spec_tables, .timeout = 60)
{
    static const joint_facts joints[] = {
        {"root", mjJNT_FREE, false, 0, 0, 0, 0, 0},
        {"hip_1", mjJNT_HINGE, true, -30, 30, 0, 1, 1},
        {"ankle_1", mjJNT_HINGE, true, 30, 70, 0, 1, 1},
        {"hip_2", mjJNT_HINGE, true, -30, 30, 0, 1, 1},
        {"ankle_2", mjJNT_HINGE, true, -70, -30, 0, 1, 1},
        {"hip_3", mjJNT_HINGE, true, -30, 30, 0, 1, 1},
        {"ankle_3", mjJNT_HINGE, true, -70, -30, 0, 1, 1},
        {"hip_4", mjJNT_HINGE, true, -30, 30, 0, 1, 1},
        {"ankle_4", mjJNT_HINGE, true, 30, 70, 0, 1, 1},
    };
    env_t *e = envt_make(ID);
    const mjModel *m = mjenv_model_of(e);
    facts_check_joints(m, joints, 9);
    /* ankle axes (-1, 1, 0), (1, 1, 0), (-1, 1, 0), (1, 1, 0), normalised by the compiler */
    const double sx[4] = {-1, 1, -1, 1};
    for (int leg = 0; leg < 4; leg++) {
        int j = 2 + 2 * leg;
        cr_expect_float_eq(m->jnt_axis[3 * j], sx[leg] * M_SQRT1_2, 1e-12, "ankle %d", leg);
        cr_expect_float_eq(m->jnt_axis[3 * j + 1], M_SQRT1_2, 1e-12, "ankle %d", leg);
        cr_expect_eq(m->jnt_axis[3 * (j - 1) + 2], 1.0, "hip %d about z", leg);
    }
    facts_check_geom(m, "floor", 1.0, 3, 1, 1, 0.01);
    facts_check_geom(m, "torso_geom", 1.0, 3, 1, 0, 0.01);
    facts_check_geom(m, "aux_1_geom", 1.0, 3, 1, 0, 0.01);
    facts_check_geom(m, "rightback_leg_geom", 1.0, 3, 1, 0, 0.01);
    env_free(e);
}

/* obs = qpos[2:], qvel: z 0.75 and the identity quaternion at the initial pose */
Test(env_ant, noiseless_reset_observes_the_initial_pose, .timeout = 60)
{
    env_t *e = envt_make(ID);
    cr_assert_eq(env_set_reset_noise_scale(e, 0.0), 0);
    float obs[27];
    env_reset(e, 4, obs);
    for (int i = 0; i < 27; i++) {
        float want = i == 0 ? 0.75f : i == 1 ? 1.0f : 0.0f;
        cr_expect_eq(obs[i], want, "obs[%d] %g", i, (double)obs[i]);
    }
    env_free(e);
}

/* MuJoCo >= 2.0 fills cfrc_ext only in mj_rnePostConstraint: after 250 substeps from qpos0
 * the sum of squares is 0 without it and 33.8 with it (env-specs.md 0) */
Test(env_ant, contact_forces_need_rne_post_constraint, .timeout = 60)
{
    env_t *e = envt_make(ID);
    const mjModel *m = mjenv_model_of(e);
    mjData *d = mj_makeData(m);
    for (int k = 0; k < 250; k++) {
        mj_step(m, d);
    }
    double before = 0.0, after = 0.0;
    for (int i = 0; i < 6 * m->nbody; i++) {
        before += d->cfrc_ext[i] * d->cfrc_ext[i];
    }
    mj_rnePostConstraint(m, d);
    for (int i = 0; i < 6 * m->nbody; i++) {
        after += d->cfrc_ext[i] * d->cfrc_ext[i];
    }
    cr_expect_eq(before, 0.0);
    cr_expect_float_eq(after, 33.8, 0.05, "sum cfrc_ext^2 = %g", after);
    mj_deleteData(d);
    env_free(e);
}

/* env-specs.md 6: with zero action the ant never terminates, is truncated at exactly step
 * 1000 and settles near z 0.37 */
Test(env_ant, zero_action_never_terminates_and_truncates_at_1000, .timeout = 60)
{
    env_t *e = envt_make(ID);
    cr_assert_eq(env_set_reset_noise_scale(e, 0.0), 0);
    float obs[27], act[8] = {0};
    env_reset(e, 0, obs);
    env_step_result r = {.next_obs = obs};
    int t = 0;
    double ret = 0.0;
    while (t < 2000) {
        cr_assert_eq(env_step(e, act, &r), 0, "%s", err_msg());
        t++;
        ret += r.reward;
        cr_assert_not(r.terminated, "terminated at step %d, z %g", t, (double)obs[0]);
        if (r.truncated) {
            break;
        }
    }
    cr_expect_eq(t, 1000);
    cr_expect_float_eq(obs[0], 0.37f, 0.01f, "z %g", (double)obs[0]);
    /* nearly no drift: the return is about 1000 survive rewards */
    cr_expect_float_eq(ret, 1000.0, 5.0, "return %g", ret);
    cr_expect_eq(env_step(e, act, &r), -EINVAL);
    cr_expect_eq(mjenv_divergences(e), 0);
    env_free(e);
}

/* a random policy flips or bounces the ant out of [0.2, 1] every ~125 steps */
Test(env_ant, random_transitions_agree_and_are_deterministic, .timeout = 300)
{
    int terminals = envt_check_random_transitions(ID, 10000, 22);
    cr_expect_gt(terminals, 10);
}

Test(env_ant, same_seed_replays_after_reset, .timeout = 60)
{
    loco_check_replay_after_reset(ID, 80);
}

/* components: forward from the torso's xpos (read after the substeps), survive 1, ctrl 0.5 */
Test(env_ant, reward_components_follow_v4, .timeout = 60)
{
    loco_check_reward_terms(ID, ant_x, 1.0, 1.0, 0.5, 32);
}

/* the action order is the actuator order: action 0 drives hip_4 (qpos 13), 2 drives hip_1 */
Test(env_ant, action_order_is_actuator_order, .timeout = 60)
{
    env_t *e = envt_make(ID);
    cr_assert_eq(env_set_reset_noise_scale(e, 0.0), 0);
    const mjModel *m = mjenv_model_of(e);
    mjData *d = mjenv_data_of(e);
    float obs[27], act[8] = {1.0f};
    env_reset(e, 0, obs);
    env_step_result r = {.next_obs = obs};
    cr_assert_eq(env_step(e, act, &r), 0);
    int hip4 = m->jnt_dofadr[mj_name2id(m, mjOBJ_JOINT, "hip_4")];
    cr_expect_eq(d->qfrc_actuator[hip4], 150.0);
    /* hip_4 (obs 11 = qpos[13]) turns; hip_1 (obs 5 = qpos[7]) only feels the reaction */
    cr_expect_gt(obs[11], 10.0f * fabsf(obs[5]), "hip_4 %g, hip_1 %g", (double)obs[11],
                 (double)obs[5]);
    env_free(e);
}

/* hand-built observations: 0.2 <= z <= 1.0 inclusive, every entry finite */
Test(env_ant, termination_function_bounds_are_inclusive_and_nan_ends)
{
    env_t *e = envt_make(ID);
    float o[8][27] = {{0}};
    const float zs[8] = {0.5f, 0.2f, 1.0f, 0.19999f, 1.00001f, 0.5f, 0.5f, NAN};
    const bool want[8] = {false, false, false, true, true, true, true, true};
    for (int i = 0; i < 8; i++) {
        o[i][0] = zs[i];
        o[i][1] = 1.0f;
        o[i][20] = 500.0f;     /* large but finite is fine */
    }
    o[5][26] = INFINITY;
    o[6][13] = NAN;
    bool done[8];
    float act[8 * 8] = {0};
    env_termination(e, &o[0][0], act, &o[0][0], done, 8);
    for (int i = 0; i < 8; i++) {
        cr_expect_eq(done[i], want[i], "case %d", i);
    }
    env_free(e);
}

/* qpos += U(-0.1, 0.1), qvel = 0.1 * N(0, 1); the env does not renormalise the quaternion but
 * MuJoCo 2.2.2 does during the reset's mj_forward */
Test(env_ant, reset_noise_is_uniform_on_qpos_and_normal_on_qvel, .timeout = 60)
{
    loco_check_reset_noise(ID, 0.1, true, true);
}

Test(env_ant, bad_actions_are_refused_or_clipped, .timeout = 60)
{
    envt_check_bad_actions(ID);
}

/* twig's ant.xml compiles to Gymnasium's model: 100 steps of a fixed control end at the qpos
 * Gymnasium's file reaches (env_locomotion.h) */
Test(env_ant, trajectory_matches_gymnasium_model, .timeout = 60)
{
    static const double want[15] = {
        1.6050046110296479, -2.4300829110838218, 0.31094288108417995,
        -0.15759388308138519, -0.95920023455428449, -0.23025989211764616,
        -0.045601097884879774, -0.5323087840439833, 1.2249824336622468,
        -0.52789444970486676, -0.57741273357057565, -0.22692113486702514,
        -1.0688020151811291, -0.61094031596450205, 1.2287620863872315,
    };
    loco_check_reference_trajectory(ID, 5, 100, want, 15);
}
