/* env_locomotion.h - shared checks for the Walker2d, Ant and Humanoid tests: the compiled
 * MJCF model against the facts in env-specs.md (sections 1 and 4), measured on the reference
 * XMLs with MuJoCo 2.2.2, and a test fixture that keeps a body upright. Header-only (static
 * functions): each test executable includes it once. */
#ifndef TWIG_TESTS_ENV_LOCOMOTION_H
#define TWIG_TESTS_ENV_LOCOMOTION_H

#include <criterion/criterion.h>
#include <math.h>
#include <mujoco/mujoco.h>
#include <string.h>

#include "tests/common/env/env_testlib.h"

#define FACTS_MAX_BODY 16
#define FACTS_MAX_ACT 17
#define FACTS_MAX_Q 24

typedef struct model_facts {
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

/* m: the model an env instance runs (mjenv_model_of), borrowed */
static inline void facts_check_model(const mjModel *m, const model_facts *f)
{
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
}

/* one joint as the spec tables give it; ranges in degrees for hinges */
typedef struct joint_facts {
    const char *name;
    int type;                   /* mjtJoint */
    bool limited;
    double lo_deg, hi_deg;
    double stiffness, damping, armature;
} joint_facts;

/* every joint in qpos order: name, type, limits, stiffness, damping, armature */
static inline void facts_check_joints(const mjModel *m, const joint_facts *j, int n)
{
    cr_assert_eq(m->njnt, n, "njnt %d", m->njnt);
    for (int i = 0; i < n; i++) {
        const char *name = mj_id2name(m, mjOBJ_JOINT, i);
        cr_expect(name != NULL && strcmp(name, j[i].name) == 0, "joint %d is %s, expected %s",
                  i, name ? name : "(null)", j[i].name);
        cr_expect_eq(m->jnt_type[i], j[i].type, "%s type", j[i].name);
        cr_expect_eq(m->jnt_limited[i], j[i].limited, "%s limited", j[i].name);
        if (j[i].limited) {
            double lo = j[i].lo_deg * M_PI / 180.0, hi = j[i].hi_deg * M_PI / 180.0;
            cr_expect_float_eq(m->jnt_range[2 * i], lo, 1e-9, "%s range lo", j[i].name);
            cr_expect_float_eq(m->jnt_range[2 * i + 1], hi, 1e-9, "%s range hi", j[i].name);
        }
        int dof = m->jnt_dofadr[i];
        cr_expect_float_eq(m->jnt_stiffness[i], j[i].stiffness, 1e-12, "%s stiffness",
                           j[i].name);
        cr_expect_float_eq(m->dof_damping[dof], j[i].damping, 1e-12, "%s damping", j[i].name);
        cr_expect_float_eq(m->dof_armature[dof], j[i].armature, 1e-12, "%s armature",
                           j[i].name);
    }
}

/* contact parameters of one geom (friction's first coefficient, condim, contype/conaffinity,
 * margin) */
static inline void facts_check_geom(const mjModel *m, const char *name, double friction,
                                    int condim, int contype, int conaffinity, double margin)
{
    int g = mj_name2id(m, mjOBJ_GEOM, name);
    cr_assert_geq(g, 0, "geom %s", name);
    cr_expect_float_eq(m->geom_friction[3 * g], friction, 1e-12, "%s friction", name);
    cr_expect_eq(m->geom_condim[g], condim, "%s condim", name);
    cr_expect_eq(m->geom_contype[g], contype, "%s contype", name);
    cr_expect_eq(m->geom_conaffinity[g], conaffinity, "%s conaffinity", name);
    cr_expect_float_eq(m->geom_margin[g], margin, 1e-12, "%s margin", name);
}

/* zero action while the test writes qpos0 and zero velocity back before every step (a
 * fixture holding the body upright): never terminated, truncated exactly at the limit, and
 * the finished episode refuses another step */
static inline void loco_check_truncation_when_held(const char *id)
{
    env_t *e = envt_make(id);
    const env_spec *s = &e->spec;
    const mjModel *m = mjenv_model_of(e);
    mjData *d = mjenv_data_of(e);
    float *obs = xcalloc((size_t)s->n_obs, sizeof(float));
    float *act = xcalloc((size_t)s->n_act, sizeof(float));
    env_reset(e, 3, obs);
    env_step_result r = {.next_obs = obs};
    int last = 0;
    for (int t = 1; t <= s->max_episode_steps; t++) {
        mju_copy(d->qpos, m->qpos0, m->nq);
        mju_zero(d->qvel, m->nv);
        mj_forward(m, d);
        cr_assert_eq(env_step(e, act, &r), 0, "%s step %d: %s", id, t, err_msg());
        cr_assert_not(r.terminated, "%s terminated at step %d while held", id, t);
        last = t;
        if (r.truncated) {
            break;
        }
    }
    cr_expect_eq(last, s->max_episode_steps);
    cr_expect(r.truncated);
    cr_expect_eq(e->t, s->max_episode_steps);
    cr_expect_eq(env_step(e, act, &r), -EINVAL, "stepping past the limit");
    cr_expect_eq(mjenv_divergences(e), 0);
    free(obs);
    free(act);
    env_free(e);
}

/* one instance, reset twice with the same seed and fed the same actions, replays the same
 * observations and rewards bit for bit (nothing survives a reset in mjData) */
static inline void loco_check_replay_after_reset(const char *id, int steps)
{
    env_t *e = envt_make(id);
    const env_spec *s = &e->spec;
    size_t n_obs = (size_t)s->n_obs;
    float *obs = xcalloc(n_obs, sizeof(float));
    float *first = xcalloc(n_obs * (size_t)(steps + 1), sizeof(float));
    float *act = xcalloc((size_t)s->n_act, sizeof(float));
    float *rew = xcalloc((size_t)steps, sizeof(float));
    for (int pass = 0; pass < 2; pass++) {
        rng_t r;
        rng_seed(&r, 77);
        env_reset(e, 11, obs);
        if (pass == 0) {
            memcpy(first, obs, n_obs * sizeof(float));
        } else {
            cr_expect_arr_eq(first, obs, n_obs * sizeof(float));
        }
        for (int t = 0; t < steps; t++) {
            envt_random_action(&r, e, act);
            env_step_result res = {.next_obs = obs};
            cr_assert_eq(env_step(e, act, &res), 0, "%s", err_msg());
            if (pass == 0) {
                memcpy(first + n_obs * (size_t)(t + 1), obs, n_obs * sizeof(float));
                rew[t] = res.reward;
            } else {
                cr_expect_arr_eq(first + n_obs * (size_t)(t + 1), obs, n_obs * sizeof(float),
                                 "%s obs differ at step %d after reset", id, t);
                cr_expect_eq(rew[t], res.reward, "%s reward differs at step %d", id, t);
            }
            if (res.terminated || res.truncated) {
                break;
            }
        }
    }
    /* another seed starts elsewhere */
    float *other = xcalloc(n_obs, sizeof(float));
    env_reset(e, 12, other);
    cr_expect(memcmp(first, other, n_obs * sizeof(float)) != 0, "%s: seeds 11, 12 same", id);
    free(other);
    free(obs);
    free(first);
    free(act);
    free(rew);
    env_free(e);
}

/* the forward coordinate a task pays for, computed by the test from mjData */
typedef double (*loco_position_fn)(const mjModel *m, const mjData *d);

/* every step of a random episode: info[0] = w_fwd * (x_after - x_before) / dt recomputed
 * here, info[1] = the healthy reward (terminal step included), info[2] = -w_ctrl * sum(a^2)
 * of the clipped action; actions are drawn from twice the bounds so clipping is exercised */
static inline void loco_check_reward_terms(const char *id, loco_position_fn pos,
                                           double w_fwd, double healthy, double w_ctrl,
                                           uint64_t seed)
{
    env_t *e = envt_make(id);
    const env_spec *s = &e->spec;
    const mjModel *m = mjenv_model_of(e);
    mjData *d = mjenv_data_of(e);
    float *obs = xcalloc((size_t)s->n_obs, sizeof(float));
    float *act = xcalloc((size_t)s->n_act, sizeof(float));
    rng_t r;
    rng_seed(&r, seed);
    env_reset(e, seed, obs);
    env_step_result res = {.next_obs = obs};
    int steps = 0;
    for (int t = 0; t < 300; t++) {
        double ctrl = 0.0;
        for (int i = 0; i < s->n_act; i++) {
            act[i] = 2.0f * rng_uniform_range(&r, s->act_low[i], s->act_high[i]);
            float c = fminf(fmaxf(act[i], s->act_low[i]), s->act_high[i]);
            ctrl += (double)c * c;
        }
        double x0 = pos(m, d);
        cr_assert_eq(env_step(e, act, &res), 0, "%s", err_msg());
        double fwd = w_fwd * (pos(m, d) - x0) / s->dt;
        cr_expect_float_eq(res.info[0], fwd, 1e-5 * (1.0 + fabs(fwd)), "%s forward %g vs %g",
                           id, (double)res.info[0], fwd);
        cr_expect_float_eq(res.info[1], healthy, 0.0, "%s healthy", id);
        cr_expect_float_eq(res.info[2], -w_ctrl * ctrl, 1e-6 * (1.0 + w_ctrl * ctrl),
                           "%s ctrl %g vs %g", id, (double)res.info[2], -w_ctrl * ctrl);
        steps++;
        if (res.terminated || res.truncated) {
            break;
        }
    }
    cr_expect_gt(steps, 5);
    free(obs);
    free(act);
    env_free(e);
}

/* reset with noise 0 gives qpos0 / 0 exactly; with the default scale, qpos within U(-s, s)
 * of qpos0 except the free joint's quaternion (qpos[3..6] when free), which MuJoCo 2.2.2's
 * mj_kinematics normalises in place during the reset's mj_forward (so Gymnasium v4 on 2.2.2
 * observes it unit-norm too); qvel within (-s, s) for uniform noise, or with standard
 * deviation s for normal noise */
static inline void loco_check_reset_noise(const char *id, double scale, bool free_joint,
                                          bool normal_qvel)
{
    env_t *e = envt_make(id);
    cr_expect_float_eq(e->reset_noise_scale, scale, 1e-12);
    const mjModel *m = mjenv_model_of(e);
    mjData *d = mjenv_data_of(e);
    float *obs = xcalloc((size_t)e->spec.n_obs, sizeof(float));
    cr_assert_eq(env_set_reset_noise_scale(e, 0.0), 0);
    env_reset(e, 1, obs);
    for (int i = 0; i < m->nq; i++) {
        cr_expect_eq(d->qpos[i], m->qpos0[i], "%s qpos[%d]", id, i);
    }
    for (int i = 0; i < m->nv; i++) {
        cr_expect_eq(d->qvel[i], 0.0, "%s qvel[%d]", id, i);
    }
    cr_assert_eq(env_set_reset_noise_scale(e, scale), 0);
    double maxdev = 0.0, sum2 = 0.0, maxv = 0.0;
    int n = 0;
    for (uint64_t seed = 0; seed < 100; seed++) {
        env_reset(e, seed, obs);
        for (int i = 0; i < m->nq; i++) {
            if (free_joint && i >= 3 && i < 7) {
                continue;
            }
            double dev = fabs(d->qpos[i] - m->qpos0[i]);
            cr_expect(dev <= scale, "%s qpos[%d] moved %g", id, i, dev);
            maxdev = fmax(maxdev, dev);
        }
        if (free_joint) {
            double q2 = 0.0;
            for (int i = 3; i < 7; i++) {
                q2 += d->qpos[i] * d->qpos[i];
            }
            cr_expect_float_eq(q2, 1.0, 1e-9, "%s quaternion norm^2 %g", id, q2);
            cr_expect(d->qpos[4] != 0.0, "%s quaternion got no noise", id);
        }
        for (int i = 0; i < m->nv; i++) {
            sum2 += d->qvel[i] * d->qvel[i];
            maxv = fmax(maxv, fabs(d->qvel[i]));
            n++;
        }
    }
    cr_expect(maxdev > 0.5 * scale, "%s: qpos noise too small (%g)", id, maxdev);
    double sd = sqrt(sum2 / n);
    if (normal_qvel) {
        cr_expect(sd > 0.9 * scale && sd < 1.1 * scale, "%s qvel sd %g over %d", id, sd, n);
        cr_expect_gt(maxv, 2.0 * scale, "%s: normal noise never passed 2 sd (%g)", id, maxv);
    } else {
        /* U(-s, s) has sd s / sqrt(3) */
        cr_expect_leq(maxv, scale, "%s qvel %g outside U(-s, s)", id, maxv);
        cr_expect(sd > 0.5 * scale && sd < 0.65 * scale, "%s qvel sd %g", id, sd);
    }
    cr_expect_eq(env_set_reset_noise_scale(e, -1.0), -EINVAL);
    free(obs);
    env_free(e);
}

/* the bare model of id, stepped from qpos0 with ctrl_a(t) = 0.9 * ctrl_hi_a * sin(0.1 (t+1)
 * (a+1)) for steps env steps of frame_skip substeps, ends at want[nq]: qpos measured with
 * Gymnasium's own MJCF file (Farama-Foundation/Gymnasium@3f0476a, assets/) under MuJoCo
 * 2.2.2, to 1e-10 (on the development machine the two trajectories were bit-identical; the
 * tolerance leaves room for another CPU's libm) */
static inline void loco_check_reference_trajectory(const char *id, int frame_skip, int steps,
                                                   const double *want, int nq)
{
    env_t *e = envt_make(id);
    const mjModel *m = mjenv_model_of(e);
    cr_assert_eq(m->nq, nq);
    mjData *d = mj_makeData(m);
    for (int t = 0; t < steps; t++) {
        for (int a = 0; a < m->nu; a++) {
            d->ctrl[a] = 0.9 * m->actuator_ctrlrange[2 * a + 1] * sin(0.1 * (t + 1) * (a + 1));
        }
        for (int k = 0; k < frame_skip; k++) {
            mj_step(m, d);
        }
    }
    for (int i = 0; i < nq; i++) {
        cr_expect(fabs(d->qpos[i] - want[i]) <= 1e-10 * (1.0 + fabs(want[i])),
                  "%s qpos[%d] %.17g, Gymnasium's model %.17g", id, i, d->qpos[i], want[i]);
    }
    mj_deleteData(d);
    env_free(e);
}

#endif
