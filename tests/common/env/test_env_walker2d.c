/* tests of Walker2d-v4 (common/env/tasks/walker2d.c, common/env/assets/walker2d.xml) against
 * env-specs.md */
#include "tests/common/env/env_locomotion.h"

#define ID "Walker2d-v4"

static const model_facts walker2d_facts = {
    .nq = 9, .nv = 9, .nu = 6, .nbody = 8,
    .timestep = 0.002, .integrator = mjINT_RK4, .solver = mjSOL_NEWTON, .iterations = 100,
    .total_mass = 23.677,
    .body_name = {"world", "torso", "thigh", "leg", "foot", "thigh_left", "leg_left",
                  "foot_left"},
    .body_mass = {0.0, 3.6652, 4.0579, 2.7814, 3.1667, 4.0579, 2.7814, 3.1667},
    .act_joint = {"thigh_joint", "leg_joint", "foot_joint", "thigh_left_joint",
                  "leg_left_joint", "foot_left_joint"},
    .act_gear = {100, 100, 100, 100, 100, 100},
    .ctrl_lo = -1.0, .ctrl_hi = 1.0,
    .qpos0 = {0, 1.25, 0, 0, 0, 0, 0, 0, 0},
};

static double walker2d_x(const mjModel *m, const mjData *d)
{
    return d->qpos[0];
}

Test(env_walker2d, spec_model_and_masses, .timeout = 60)
{
    env_t *e = envt_make(ID);
    const env_spec *s = &e->spec;
    cr_expect_eq(s->n_obs, 17);
    cr_expect_eq(s->n_act, 6);
    for (int i = 0; i < 6; i++) {
        cr_expect_eq(s->act_low[i], -1.0f);
        cr_expect_eq(s->act_high[i], 1.0f);
    }
    cr_expect_float_eq(s->dt, 0.008, 1e-12);
    cr_expect_eq(s->max_episode_steps, 1000);
    cr_expect_eq(s->n_info, 3);
    cr_expect_str_eq(s->info_names[0], "reward_forward");
    cr_expect_str_eq(s->info_names[1], "reward_survive");
    cr_expect_str_eq(s->info_names[2], "reward_ctrl");
    const mjModel *m = mjenv_model_of(e);
    facts_check_model(m, &walker2d_facts);
    cr_expect_float_eq(envt_total_mass(e), 23.677, 1e-3);
    /* feet friction: right 0.9, left 1.9 (v2..v4) */
    int right = mj_name2id(m, mjOBJ_GEOM, "foot_geom");
    int left = mj_name2id(m, mjOBJ_GEOM, "foot_left_geom");
    cr_assert(right >= 0 && left >= 0);
    cr_expect_eq(m->geom_friction[3 * right], 0.9);
    cr_expect_eq(m->geom_friction[3 * left], 1.9);
    env_free(e);
}

/* env-specs.md 4.3: joints (root unlimited and undamped; legs armature 0.01, damping 0.1) and
 * contact parameters (condim 3, only the floor has conaffinity) */
Test(env_walker2d, joints_and_contacts_follow_the_spec_tables, .timeout = 60)
{
    static const joint_facts joints[] = {
        {"rootx", mjJNT_SLIDE, false, 0, 0, 0, 0, 0},
        {"rootz", mjJNT_SLIDE, false, 0, 0, 0, 0, 0},
        {"rooty", mjJNT_HINGE, false, 0, 0, 0, 0, 0},
        {"thigh_joint", mjJNT_HINGE, true, -150, 0, 0, 0.1, 0.01},
        {"leg_joint", mjJNT_HINGE, true, -150, 0, 0, 0.1, 0.01},
        {"foot_joint", mjJNT_HINGE, true, -45, 45, 0, 0.1, 0.01},
        {"thigh_left_joint", mjJNT_HINGE, true, -150, 0, 0, 0.1, 0.01},
        {"leg_left_joint", mjJNT_HINGE, true, -150, 0, 0, 0.1, 0.01},
        {"foot_left_joint", mjJNT_HINGE, true, -45, 45, 0, 0.1, 0.01},
    };
    env_t *e = envt_make(ID);
    const mjModel *m = mjenv_model_of(e);
    facts_check_joints(m, joints, 9);
    /* hinge axes: the root pitch turns about +y, the leg joints about -y */
    cr_expect_eq(m->jnt_axis[3 * 2 + 1], 1.0);
    for (int j = 3; j < 9; j++) {
        cr_expect_eq(m->jnt_axis[3 * j + 1], -1.0, "joint %d axis", j);
    }
    facts_check_geom(m, "floor", 0.7, 3, 1, 1, 0.0);
    facts_check_geom(m, "torso_geom", 0.9, 3, 1, 0, 0.0);
    facts_check_geom(m, "thigh_geom", 0.9, 3, 1, 0, 0.0);
    facts_check_geom(m, "leg_left_geom", 0.9, 3, 1, 0, 0.0);
    facts_check_geom(m, "foot_geom", 0.9, 3, 1, 0, 0.0);
    facts_check_geom(m, "foot_left_geom", 1.9, 3, 1, 0, 0.0);
    env_free(e);
}

/* the initial pose: z 1.25, everything else 0 */
Test(env_walker2d, noiseless_reset_observes_the_initial_pose, .timeout = 60)
{
    env_t *e = envt_make(ID);
    cr_assert_eq(env_set_reset_noise_scale(e, 0.0), 0);
    float obs[17];
    env_reset(e, 4, obs);
    for (int i = 0; i < 17; i++) {
        cr_expect_eq(obs[i], i == 0 ? 1.25f : 0.0f, "obs[%d] %g", i, (double)obs[i]);
    }
    env_free(e);
}

/* env-specs.md 6: zero action from the initial pose terminates at step 131, z 1.104,
 * angle -1.032 */
Test(env_walker2d, zero_action_terminates_at_step_131, .timeout = 60)
{
    float obs[17];
    int t = envt_zero_action_terminal_step(ID, 1000, obs);
    cr_expect_eq(t, 131);
    cr_expect_float_eq(obs[0], 1.104f, 1e-3, "z %g", (double)obs[0]);
    cr_expect_float_eq(obs[1], -1.032f, 1e-3, "angle %g", (double)obs[1]);
}

Test(env_walker2d, random_transitions_agree_and_are_deterministic, .timeout = 300)
{
    int terminals = envt_check_random_transitions(ID, 10000, 21);
    cr_expect_gt(terminals, 10);
}

Test(env_walker2d, same_seed_replays_after_reset, .timeout = 60)
{
    loco_check_replay_after_reset(ID, 80);
}

/* components: forward from qpos[0], healthy 1 on every step (terminal included), ctrl */
Test(env_walker2d, reward_components_follow_v4, .timeout = 60)
{
    loco_check_reward_terms(ID, walker2d_x, 1.0, 1.0, 1e-3, 31);
}

Test(env_walker2d, velocities_are_clipped_to_10_and_positions_are_not, .timeout = 60)
{
    env_t *e = envt_make(ID);
    mjData *d = mjenv_data_of(e);
    float obs[17];
    float act[6] = {1, -1, 1, -1, 1, -1};
    env_reset(e, 2, obs);
    env_step_result r = {.next_obs = obs};
    int clipped = 0;
    for (int t = 0; t < 1000; t++) {
        cr_assert_eq(env_step(e, act, &r), 0);
        for (int i = 0; i < 8; i++) {
            cr_expect_eq(obs[i], (float)d->qpos[1 + i]);
        }
        for (int i = 0; i < 9; i++) {
            double v = d->qvel[i] < -10 ? -10 : d->qvel[i] > 10 ? 10 : d->qvel[i];
            cr_expect_eq(obs[8 + i], (float)v);
            clipped += fabs(d->qvel[i]) > 10;
        }
        if (r.terminated || r.truncated) {
            break;
        }
    }
    cr_expect(r.terminated);
    cr_expect_gt(clipped, 0, "no velocity above 10: the clip was not exercised");
    env_free(e);
}

Test(env_walker2d, truncated_at_1000_when_held_upright, .timeout = 120)
{
    loco_check_truncation_when_held(ID);
}

/* hand-built observations at the edges of the healthy ranges (strict) */
Test(env_walker2d, termination_function_ranges_are_strict)
{
    env_t *e = envt_make(ID);
    float o[10][17] = {{0}};
    const float zs[10] = {1.2f, 0.8f, 2.0f, 0.8001f, 1.9999f, 1.2f, 1.2f, 1.2f, 1.2f, NAN};
    const float as[10] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 1.0f, -1.0f, 0.9999f, NAN, 0.0f};
    const bool want[10] = {false, true, true, false, false, true, true, false, true, true};
    for (int i = 0; i < 10; i++) {
        o[i][0] = zs[i];
        o[i][1] = as[i];
        o[i][8] = 200.0f;      /* v4 checks no other entry (MBPO's (-100, 100) test would) */
    }
    bool done[10];
    float act[10 * 6] = {0};
    env_termination(e, &o[0][0], act, &o[0][0], done, 10);
    for (int i = 0; i < 10; i++) {
        cr_expect_eq(done[i], want[i], "case %d (z %g, angle %g)", i, (double)zs[i],
                     (double)as[i]);
    }
    env_free(e);
}

/* qpos, qvel += U(-5e-3, 5e-3) */
Test(env_walker2d, bad_actions_and_reset_noise, .timeout = 60)
{
    envt_check_bad_actions(ID);
    loco_check_reset_noise(ID, 5e-3, false, false);
}

/* twig's walker2d.xml compiles to Gymnasium's model: 100 steps of a fixed control end at the
 * qpos Gymnasium's file reaches (env_locomotion.h) */
Test(env_walker2d, trajectory_matches_gymnasium_model, .timeout = 60)
{
    static const double want[9] = {
        -0.44123874186951034, 0.36885307792123179, -2.3135286582482872,
        0.0490229474623603, -2.485913801884069, -0.077983285321723869,
        -0.94600534808121461, -0.57494141850862501, -0.32161631928100698,
    };
    loco_check_reference_trajectory(ID, 4, 100, want, 9);
    /* the local offsets are the double results of the world coordinates, as Gymnasium's
     * rewrite has them (a plain -0.2 moves the trajectory by ~1e-14) */
    env_t *e = envt_make(ID);
    const mjModel *m = mjenv_model_of(e);
    int thigh = mj_name2id(m, mjOBJ_BODY, "thigh");
    int leg = mj_name2id(m, mjOBJ_BODY, "leg_left");
    int torso = mj_name2id(m, mjOBJ_GEOM, "torso_geom");
    cr_expect_eq(m->body_pos[3 * thigh + 2], 1.05 - 1.25);
    cr_expect_eq(m->body_pos[3 * leg + 2], 0.35 - 1.05);
    cr_expect_eq(m->geom_size[3 * torso + 1], (1.45 - 1.05) / 2);
    env_free(e);
}
