/* Walker2d-v4: the MJCF model's compiled facts and the env's behaviour (env-specs.md) */
#include <criterion/criterion.h>
#include <math.h>
#include <mujoco/mujoco.h>

#include "tests/common/locomotion_facts.h"

static const model_facts walker2d_facts = {
    .file = "walker2d.xml",
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

Test(walker2d_model, compiles_to_the_specified_bodies_masses_and_actuators, .timeout = 30)
{
    facts_check_model(&walker2d_facts);
}

Test(walker2d_model, feet_frictions_are_right_0_9_left_1_9, .timeout = 30)
{
    mjModel *m = facts_load("walker2d.xml");
    int right = mj_name2id(m, mjOBJ_GEOM, "foot_geom");
    int left = mj_name2id(m, mjOBJ_GEOM, "foot_left_geom");
    cr_assert(right >= 0 && left >= 0);
    cr_expect_float_eq(m->geom_friction[3 * right], 0.9, 1e-12);
    cr_expect_float_eq(m->geom_friction[3 * left], 1.9, 1e-12);
    mj_deleteModel(m);
}

/* the bare model, stepped 4 substeps a step with zero control from qpos0, leaves the
 * healthy range (0.8 < z < 2, -1 < angle < 1) first at step 131 (env-specs.md 6) */
Test(walker2d_model, zero_control_falls_at_step_131, .timeout = 60)
{
    mjModel *m = facts_load("walker2d.xml");
    mjData *d = mj_makeData(m);
    int fell = 0;
    double z = 0.0, angle = 0.0;
    for (int t = 1; t <= 1000 && fell == 0; t++) {
        for (int k = 0; k < 4; k++) {
            mj_step(m, d);
        }
        z = d->qpos[1];
        angle = d->qpos[2];
        if (!(z > 0.8 && z < 2.0 && angle > -1.0 && angle < 1.0)) {
            fell = t;
        }
    }
    cr_expect_eq(fell, 131, "fell at step %d", fell);
    cr_expect_float_eq(z, 1.104, 1e-3, "z %g", z);
    cr_expect_float_eq(angle, -1.032, 1e-3, "angle %g", angle);
    mj_deleteData(d);
    mj_deleteModel(m);
}
