/* Ant-v4: the MJCF model's compiled facts and the env's behaviour (env-specs.md) */
#include <criterion/criterion.h>
#include <math.h>
#include <mujoco/mujoco.h>

#include "tests/common/locomotion_facts.h"

static const model_facts ant_facts = {
    .file = "ant.xml",
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

Test(ant_model, compiles_to_the_specified_bodies_masses_and_actuators, .timeout = 30)
{
    facts_check_model(&ant_facts);
}

/* MuJoCo >= 2.0 fills cfrc_ext only in mj_rnePostConstraint: after 250 substeps from qpos0
 * the sum of squares is 0 without it and 33.8 with it (env-specs.md 0) */
Test(ant_model, contact_forces_need_rne_post_constraint, .timeout = 60)
{
    mjModel *m = facts_load("ant.xml");
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
    mj_deleteModel(m);
}

/* with zero control the ant never leaves 0.2 <= z <= 1 and settles near z 0.37 */
Test(ant_model, zero_control_settles_without_falling, .timeout = 60)
{
    mjModel *m = facts_load("ant.xml");
    mjData *d = mj_makeData(m);
    double zmin = 1e9, zmax = -1e9;
    for (int t = 1; t <= 1000; t++) {
        for (int k = 0; k < 5; k++) {
            mj_step(m, d);
        }
        zmin = fmin(zmin, d->qpos[2]);
        zmax = fmax(zmax, d->qpos[2]);
    }
    cr_expect(zmin >= 0.2 && zmax <= 1.0, "z left [0.2, 1]: %g .. %g", zmin, zmax);
    cr_expect_float_eq(d->qpos[2], 0.37, 0.01, "settled z %g", d->qpos[2]);
    mj_deleteData(d);
    mj_deleteModel(m);
}
