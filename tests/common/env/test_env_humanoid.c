/* tests of Humanoid-v4 (common/env/tasks/humanoid.c, common/env/assets/humanoid.xml) against
 * env-specs.md */
#include "tests/common/env/env_locomotion.h"

#define ID "Humanoid-v4"

/* observation segments (env-specs.md 3) */
#define OBS_QPOS 0        /* 22 */
#define OBS_QVEL 22       /* 23 */
#define OBS_CINERT 45     /* 14 x 10 */
#define OBS_CVEL 185      /* 14 x 6 */
#define OBS_QFRC 269      /* 23 */
#define OBS_CFRC 292      /* 14 x 6 */

static const model_facts humanoid_facts = {
    .nq = 24, .nv = 23, .nu = 17, .nbody = 14,
    .timestep = 0.003, .integrator = mjINT_RK4, .solver = mjSOL_PGS, .iterations = 50,
    .total_mass = 42.116,
    .body_name = {"world", "torso", "lwaist", "pelvis", "right_thigh", "right_shin",
                  "right_foot", "left_thigh", "left_shin", "left_foot", "right_upper_arm",
                  "right_lower_arm", "left_upper_arm", "left_lower_arm"},
    .body_mass = {0.0, 8.9075, 2.2619, 6.6162, 4.7518, 2.7557, 1.7671, 4.7518, 2.7557, 1.7671,
                  1.6611, 1.2295, 1.6611, 1.2295},
    .act_joint = {"abdomen_y", "abdomen_z", "abdomen_x", "right_hip_x", "right_hip_z",
                  "right_hip_y", "right_knee", "left_hip_x", "left_hip_z", "left_hip_y",
                  "left_knee", "right_shoulder1", "right_shoulder2", "right_elbow",
                  "left_shoulder1", "left_shoulder2", "left_elbow"},
    .act_gear = {100, 100, 100, 100, 100, 300, 200, 100, 100, 300, 200, 25, 25, 25, 25, 25, 25},
    .ctrl_lo = -0.4, .ctrl_hi = 0.4,
    .qpos0 = {0, 0, 1.4, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
};

/* x of the centre of mass over all bodies, from xipos (as Gymnasium's mass_center) */
static double humanoid_com_x(const mjModel *m, const mjData *d)
{
    double mx = 0.0, mass = 0.0;
    for (int b = 0; b < m->nbody; b++) {
        mx += m->body_mass[b] * d->xipos[3 * b];
        mass += m->body_mass[b];
    }
    return mx / mass;
}

Test(env_humanoid, spec_model_and_masses, .timeout = 60)
{
    env_t *e = envt_make(ID);
    const env_spec *s = &e->spec;
    cr_expect_eq(s->n_obs, 376);
    cr_expect_eq(s->n_act, 17);
    for (int i = 0; i < 17; i++) {
        cr_expect_eq(s->act_low[i], -0.4f);
        cr_expect_eq(s->act_high[i], 0.4f);
    }
    cr_expect_float_eq(s->dt, 0.015, 1e-12);
    cr_expect_eq(s->max_episode_steps, 1000);
    cr_expect_eq(s->n_info, 3);
    cr_expect_str_eq(s->info_names[0], "reward_linvel");
    cr_expect_str_eq(s->info_names[1], "reward_alive");
    cr_expect_str_eq(s->info_names[2], "reward_quadctrl");
    const mjModel *m = mjenv_model_of(e);
    facts_check_model(m, &humanoid_facts);
    cr_expect_float_eq(envt_total_mass(e), 42.116, 1e-3);
    /* joint (qpos) order is the observation's angle order */
    static const char *const joints[] = {
        "root", "abdomen_z", "abdomen_y", "abdomen_x", "right_hip_x", "right_hip_z",
        "right_hip_y", "right_knee", "left_hip_x", "left_hip_z", "left_hip_y", "left_knee",
        "right_shoulder1", "right_shoulder2", "right_elbow", "left_shoulder1",
        "left_shoulder2", "left_elbow"};
    cr_assert_eq(m->njnt, 18);
    for (int j = 0; j < m->njnt; j++) {
        cr_expect_str_eq(mj_id2name(m, mjOBJ_JOINT, j), joints[j]);
        cr_expect_eq(m->jnt_qposadr[j], j == 0 ? 0 : 6 + j);
    }
    /* the file's asymmetries and the two hip-knee tendons are kept */
    int rhy = mj_name2id(m, mjOBJ_JOINT, "right_hip_y");
    int lhy = mj_name2id(m, mjOBJ_JOINT, "left_hip_y");
    int lkn = mj_name2id(m, mjOBJ_JOINT, "left_knee");
    cr_expect_float_eq(m->dof_armature[m->jnt_dofadr[rhy]], 0.008, 1e-12);
    cr_expect_float_eq(m->dof_armature[m->jnt_dofadr[lhy]], 0.01, 1e-12);
    cr_expect_eq(m->jnt_stiffness[lkn], 1.0);
    cr_expect_eq(m->ntendon, 2);
    env_free(e);
}

/* env-specs.md 4.5: every joint's range, stiffness, damping and armature, and the contact
 * parameters (bodies condim 1 with margin 0.001, the floor condim 3) */
Test(env_humanoid, joints_and_contacts_follow_the_spec_tables, .timeout = 60)
{
    static const joint_facts joints[] = {
        {"root", mjJNT_FREE, false, 0, 0, 0, 0, 0},
        {"abdomen_z", mjJNT_HINGE, true, -45, 45, 20, 5, 0.02},
        {"abdomen_y", mjJNT_HINGE, true, -75, 30, 10, 5, 0.02},
        {"abdomen_x", mjJNT_HINGE, true, -35, 35, 10, 5, 0.02},
        {"right_hip_x", mjJNT_HINGE, true, -25, 5, 10, 5, 0.01},
        {"right_hip_z", mjJNT_HINGE, true, -60, 35, 10, 5, 0.01},
        {"right_hip_y", mjJNT_HINGE, true, -110, 20, 20, 5, 0.008},
        {"right_knee", mjJNT_HINGE, true, -160, -2, 0, 1, 0.006},
        {"left_hip_x", mjJNT_HINGE, true, -25, 5, 10, 5, 0.01},
        {"left_hip_z", mjJNT_HINGE, true, -60, 35, 10, 5, 0.01},
        {"left_hip_y", mjJNT_HINGE, true, -110, 20, 20, 5, 0.01},
        {"left_knee", mjJNT_HINGE, true, -160, -2, 1, 1, 0.006},
        {"right_shoulder1", mjJNT_HINGE, true, -85, 60, 1, 1, 0.0068},
        {"right_shoulder2", mjJNT_HINGE, true, -85, 60, 1, 1, 0.0051},
        {"right_elbow", mjJNT_HINGE, true, -90, 50, 0, 1, 0.0028},
        {"left_shoulder1", mjJNT_HINGE, true, -60, 85, 1, 1, 0.0068},
        {"left_shoulder2", mjJNT_HINGE, true, -60, 85, 1, 1, 0.0051},
        {"left_elbow", mjJNT_HINGE, true, -90, 50, 0, 1, 0.0028},
    };
    env_t *e = envt_make(ID);
    const mjModel *m = mjenv_model_of(e);
    facts_check_joints(m, joints, 18);
    /* mirrored axes on the left: hip_x (-1, 0, 0), hip_z (0, 0, -1), elbow (0, -1, -1) */
    int lhx = mj_name2id(m, mjOBJ_JOINT, "left_hip_x");
    int lhz = mj_name2id(m, mjOBJ_JOINT, "left_hip_z");
    int lel = mj_name2id(m, mjOBJ_JOINT, "left_elbow");
    cr_expect_eq(m->jnt_axis[3 * lhx], -1.0);
    cr_expect_eq(m->jnt_axis[3 * lhz + 2], -1.0);
    cr_expect_float_eq(m->jnt_axis[3 * lel + 1], -M_SQRT1_2, 1e-12);
    cr_expect_float_eq(m->jnt_axis[3 * lel + 2], -M_SQRT1_2, 1e-12);
    facts_check_geom(m, "floor", 1.0, 3, 1, 1, 0.001);
    facts_check_geom(m, "torso1", 1.0, 1, 1, 1, 0.001);
    facts_check_geom(m, "right_foot", 1.0, 1, 1, 1, 0.001);
    facts_check_geom(m, "left_hand", 1.0, 1, 1, 1, 0.001);
    env_free(e);
}

/* z 1.4 and the identity quaternion; world rows and free-joint forces are 0 */
Test(env_humanoid, noiseless_reset_observes_the_initial_pose, .timeout = 60)
{
    env_t *e = envt_make(ID);
    cr_assert_eq(env_set_reset_noise_scale(e, 0.0), 0);
    const mjModel *m = mjenv_model_of(e);
    mjData *d = mjenv_data_of(e);
    float obs[376];
    env_reset(e, 4, obs);
    cr_expect_eq(obs[0], 1.4f);
    cr_expect_eq(obs[1], 1.0f);
    for (int i = 2; i < OBS_CINERT; i++) {
        cr_expect_eq(obs[i], 0.0f, "obs[%d] %g", i, (double)obs[i]);
    }
    for (int i = 0; i < 140; i++) {
        cr_expect_eq(obs[OBS_CINERT + i], (float)d->cinert[i], "cinert %d", i);
    }
    cr_expect_gt(obs[OBS_CINERT + 10], 0.0f, "torso inertia is in the obs");
    cr_expect_eq(m->nbody * 10, 140);
    env_free(e);
}

/* env-specs.md 6: zero action from the initial pose terminates at step 40, z 0.996 */
Test(env_humanoid, zero_action_terminates_at_step_40, .timeout = 60)
{
    float obs[376];
    int t = envt_zero_action_terminal_step(ID, 1000, obs);
    cr_expect_eq(t, 40);
    cr_expect_float_eq(obs[0], 0.996f, 1e-3, "z %g", (double)obs[0]);
}

/* each segment is the (float) mjData field after the step; world rows, free-joint actuator
 * forces stay 0; qfrc_actuator = gear * action on the actuated dofs (actuator order differs
 * from dof order: action 0 is abdomen_y, dof 7); cfrc_ext is filled (mj_rnePostConstraint) */
Test(env_humanoid, observation_layout_follows_v4, .timeout = 120)
{
    env_t *e = envt_make(ID);
    const mjModel *m = mjenv_model_of(e);
    mjData *d = mjenv_data_of(e);
    float obs[376], act[17];
    rng_t r;
    rng_seed(&r, 5);
    env_reset(e, 5, obs);
    env_step_result res = {.next_obs = obs};
    double cfrc2 = 0.0;
    int steps = 0;
    for (int t = 0; t < 200; t++) {
        envt_random_action(&r, e, act);
        cr_assert_eq(env_step(e, act, &res), 0);
        steps++;
        for (int i = 0; i < 22; i++) {
            cr_expect_eq(obs[OBS_QPOS + i], (float)d->qpos[2 + i]);
        }
        for (int i = 0; i < 23; i++) {
            cr_expect_eq(obs[OBS_QVEL + i], (float)d->qvel[i]);
            cr_expect_eq(obs[OBS_QFRC + i], (float)d->qfrc_actuator[i]);
        }
        for (int i = 0; i < 140; i++) {
            cr_expect_eq(obs[OBS_CINERT + i], (float)d->cinert[i]);
        }
        for (int i = 0; i < 84; i++) {
            cr_expect_eq(obs[OBS_CVEL + i], (float)d->cvel[i]);
            cr_expect_eq(obs[OBS_CFRC + i], (float)d->cfrc_ext[i]);
            cfrc2 += (double)obs[OBS_CFRC + i] * obs[OBS_CFRC + i];
        }
        for (int i = 0; i < 10; i++) {
            cr_expect_eq(obs[OBS_CINERT + i], 0.0f, "world cinert %d", i);
        }
        for (int i = 0; i < 6; i++) {
            cr_expect_eq(obs[OBS_CVEL + i], 0.0f, "world cvel %d", i);
            cr_expect_eq(obs[OBS_QFRC + i], 0.0f, "free joint qfrc_actuator %d", i);
            cr_expect_eq(obs[OBS_CFRC + i], 0.0f, "world cfrc_ext %d", i);
        }
        for (int a = 0; a < m->nu; a++) {
            int dof = m->jnt_dofadr[m->actuator_trnid[2 * a]];
            cr_expect_float_eq(obs[OBS_QFRC + dof], m->actuator_gear[6 * a] * act[a], 1e-3,
                               "actuator %d on dof %d", a, dof);
        }
        cr_expect_float_eq(obs[OBS_QFRC + 7], 100.0f * act[0], 1e-3, "abdomen_y is action 0");
        if (res.terminated) {
            break;
        }
    }
    cr_expect_gt(cfrc2, 1.0, "cfrc_ext stayed 0 over %d steps", steps);
    env_free(e);
}

Test(env_humanoid, random_transitions_agree_and_are_deterministic, .timeout = 600)
{
    int terminals = envt_check_random_transitions(ID, 10000, 23);
    cr_expect_gt(terminals, 10);
}

Test(env_humanoid, same_seed_replays_after_reset, .timeout = 60)
{
    loco_check_replay_after_reset(ID, 60);
}

/* components: 1.25 * COM velocity (xipos after the substeps), alive 5, ctrl 0.1 */
Test(env_humanoid, reward_components_follow_v4, .timeout = 60)
{
    loco_check_reward_terms(ID, humanoid_com_x, 1.25, 5.0, 0.1, 33);
}

Test(env_humanoid, truncated_at_1000_when_held_upright, .timeout = 300)
{
    loco_check_truncation_when_held(ID);
}

/* hand-built observations: healthy <=> 1 < z < 2 (strict); mbrl-lib's z < 1 || z > 2
 * would keep z = 1.0 and 2.0 alive */
Test(env_humanoid, termination_function_bounds_are_strict)
{
    env_t *e = envt_make(ID);
    static float o[8][376];
    const float zs[8] = {1.4f, 1.0f, 2.0f, 1.0001f, 1.9999f, 0.5f, 2.5f, NAN};
    const bool want[8] = {false, true, true, false, false, true, true, true};
    for (int i = 0; i < 8; i++) {
        o[i][0] = zs[i];
        o[i][OBS_CFRC + 10] = 1e6f;    /* nothing but z matters */
    }
    bool done[8];
    float act[8 * 17] = {0};
    env_termination(e, &o[0][0], act, &o[0][0], done, 8);
    for (int i = 0; i < 8; i++) {
        cr_expect_eq(done[i], want[i], "case %d (z %g)", i, (double)zs[i]);
    }
    env_free(e);
}

/* qpos, qvel += U(-0.01, 0.01) (quaternion normalised by MuJoCo 2.2.2's mj_forward) */
Test(env_humanoid, bad_actions_and_reset_noise, .timeout = 60)
{
    envt_check_bad_actions(ID);
    loco_check_reset_noise(ID, 1e-2, true, false);
}

/* twig's humanoid.xml compiles to Gymnasium's model: 100 steps of a fixed control end at the
 * qpos Gymnasium's file reaches (env_locomotion.h) */
Test(env_humanoid, trajectory_matches_gymnasium_model, .timeout = 60)
{
    static const double want[24] = {
        -1.1406023123128359, -0.23867305765259558, 0.085117772543683121,
        0.69061660584416551, 0.051921398234349221, -0.69255113755674569,
        0.20180632796454187, -0.064379439572899835, -0.39386842713070014,
        -0.25422553060050773, -0.16718696568819169, -0.46094977689947714,
        -0.30709034700359272, -2.2916004950196154, -0.2996013645885135,
        0.13328974131523805, -0.48142463770219285, -2.08620843347133,
        -0.41718163234581968, -0.86740383711300106, -1.0614023515750182,
        -0.51704632023392771, 0.48006627634673554, -1.3853956488418777,
    };
    loco_check_reference_trajectory(ID, 5, 100, want, 24);
}
