/* locomotion_facts.h - shared checks for the Walker2d, Ant and Humanoid tests: the compiled
 * MJCF model against the facts in env-specs.md (sections 1, 4 and 6), measured on the
 * reference XMLs with MuJoCo 2.2.2. Included by one test file each; everything is static. */
#ifndef TWIG_TESTS_LOCOMOTION_FACTS_H
#define TWIG_TESTS_LOCOMOTION_FACTS_H

#include <criterion/criterion.h>
#include <math.h>
#include <mujoco/mujoco.h>
#include <stdio.h>
#include <string.h>

#define FACTS_MAX_BODY 16
#define FACTS_MAX_ACT 17
#define FACTS_MAX_Q 24

typedef struct model_facts {
    const char *file;                        /* under common/env_assets */
    int nq, nv, nu, nbody;
    double timestep;
    int integrator;                          /* mjtIntegrator */
    int solver;                              /* mjtSolver */
    int iterations;
    double total_mass;
    const char *body_name[FACTS_MAX_BODY];   /* (nbody) NULL for an unnamed body */
    double body_mass[FACTS_MAX_BODY];        /* (nbody) 4 decimals, as measured */
    const char *act_joint[FACTS_MAX_ACT];    /* (nu) joint each motor drives, action order */
    double act_gear[FACTS_MAX_ACT];          /* (nu) */
    double ctrl_lo, ctrl_hi;                 /* same range on every actuator */
    double qpos0[FACTS_MAX_Q];               /* (nq) */
} model_facts;

static mjModel *facts_load(const char *file)
{
    char path[1024];
    char err[1024] = "";
    snprintf(path, sizeof(path), "%s/common/env_assets/%s", TWIG_SRC_DIR, file);
    mjModel *m = mj_loadXML(path, NULL, err, sizeof(err));
    cr_assert_not_null(m, "mj_loadXML(%s): %s", path, err);
    return m;
}

static void facts_check_model(const model_facts *f)
{
    mjModel *m = facts_load(f->file);
    cr_expect_eq(m->nq, f->nq, "nq");
    cr_expect_eq(m->nv, f->nv, "nv");
    cr_expect_eq(m->nu, f->nu, "nu");
    cr_assert_eq(m->nbody, f->nbody, "nbody");
    cr_expect_float_eq(m->opt.timestep, f->timestep, 1e-12, "timestep");
    cr_expect_eq(m->opt.integrator, f->integrator, "integrator");
    cr_expect_eq(m->opt.solver, f->solver, "solver");
    cr_expect_eq(m->opt.iterations, f->iterations, "iterations");
    cr_expect_eq(m->opt.cone, mjCONE_PYRAMIDAL, "cone");
    cr_expect_float_eq(m->opt.gravity[2], -9.81, 1e-12, "gravity");

    double total = 0.0;
    for (int b = 0; b < m->nbody; b++) {
        const char *name = mj_id2name(m, mjOBJ_BODY, b);
        if (f->body_name[b] == NULL) {
            cr_expect_null(name, "body %d should be unnamed", b);
        } else {
            cr_expect(name != NULL && strcmp(name, f->body_name[b]) == 0,
                      "body %d is %s, expected %s", b, name ? name : "(null)", f->body_name[b]);
        }
        cr_expect_float_eq(m->body_mass[b], f->body_mass[b], 5e-5, "mass of body %d (%s): %g",
                           b, f->body_name[b] ? f->body_name[b] : "-", m->body_mass[b]);
        total += m->body_mass[b];
    }
    cr_expect_float_eq(total, f->total_mass, 5e-4, "total mass %g", total);

    for (int a = 0; a < m->nu; a++) {
        cr_expect_eq(m->actuator_trntype[a], mjTRN_JOINT);
        const char *joint = mj_id2name(m, mjOBJ_JOINT, m->actuator_trnid[2 * a]);
        cr_expect(joint != NULL && strcmp(joint, f->act_joint[a]) == 0,
                  "actuator %d drives %s, expected %s", a, joint ? joint : "(null)",
                  f->act_joint[a]);
        cr_expect_float_eq(m->actuator_gear[6 * a], f->act_gear[a], 1e-12, "gear %d", a);
        cr_expect(m->actuator_ctrllimited[a], "actuator %d ctrllimited", a);
        cr_expect_float_eq(m->actuator_ctrlrange[2 * a], f->ctrl_lo, 1e-12);
        cr_expect_float_eq(m->actuator_ctrlrange[2 * a + 1], f->ctrl_hi, 1e-12);
    }
    for (int i = 0; i < m->nq; i++) {
        cr_expect_float_eq(m->qpos0[i], f->qpos0[i], 1e-12, "qpos0[%d] = %g", i, m->qpos0[i]);
    }
    mj_deleteModel(m);
}

#endif
