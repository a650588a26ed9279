/* Humanoid-v4: the MJCF model's compiled facts and the env's behaviour (env-specs.md) */
#include <criterion/criterion.h>
#include <math.h>
#include <mujoco/mujoco.h>

#include "tests/common/locomotion_facts.h"

static const model_facts humanoid_facts = {
    .file = "humanoid.xml",
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

Test(humanoid_model, compiles_to_the_specified_bodies_masses_and_actuators, .timeout = 30)
{
    facts_check_model(&humanoid_facts);
}

/* joint order (qpos order) is the observation's angle order (env-specs.md 3) */
Test(humanoid_model, joints_are_in_observation_order, .timeout = 30)
{
    static const char *const joints[] = {
        "root", "abdomen_z", "abdomen_y", "abdomen_x", "right_hip_x", "right_hip_z",
        "right_hip_y", "right_knee", "left_hip_x", "left_hip_z", "left_hip_y", "left_knee",
        "right_shoulder1", "right_shoulder2", "right_elbow", "left_shoulder1",
        "left_shoulder2", "left_elbow"};
    mjModel *m = facts_load("humanoid.xml");
    cr_assert_eq(m->njnt, 18);
    for (int j = 0; j < m->njnt; j++) {
        cr_expect_str_eq(mj_id2name(m, mjOBJ_JOINT, j), joints[j]);
        cr_expect_eq(m->jnt_qposadr[j], j == 0 ? 0 : 6 + j);
    }
    cr_expect_eq(m->ntendon, 2);
    mj_deleteModel(m);
}

/* with zero control from qpos0 the torso drops below z = 1 first at step 40 (5 substeps a
 * step), at z 0.996 (env-specs.md 6) */
Test(humanoid_model, zero_control_falls_at_step_40, .timeout = 60)
{
    mjModel *m = facts_load("humanoid.xml");
    mjData *d = mj_makeData(m);
    int fell = 0;
    for (int t = 1; t <= 1000 && fell == 0; t++) {
        for (int k = 0; k < 5; k++) {
            mj_step(m, d);
        }
        if (!(d->qpos[2] > 1.0 && d->qpos[2] < 2.0)) {
            fell = t;
        }
    }
    cr_expect_eq(fell, 40, "fell at step %d", fell);
    cr_expect_float_eq(d->qpos[2], 0.996, 1e-3, "z %g", d->qpos[2]);
    mj_deleteData(d);
    mj_deleteModel(m);
}
