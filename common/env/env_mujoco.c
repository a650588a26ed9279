/* env_mujoco.c - the shared MuJoCo base: model cache, reset with noise, frame-skipped step,
 * divergence check. Semantics: Gymnasium's MujocoEnv (v4 path), see env_mujoco.h */
#include "common/env/env_mujoco.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/err.h"
#include "common/base/log.h"
#include "common/base/mem.h"
#include "common/base/rng.h"

#define MJENV_MAX_TASKS 32
#define MJENV_ERR_LEN 512

/* one compiled model per task; written once under the lock, then read-only for good */
typedef struct mjenv_shared {
    const mjenv_task *task;
    mjModel *m;
    float *act_low;     /* (nu) from actuator_ctrlrange */
    float *act_high;    /* (nu) */
} mjenv_shared;

static struct {
    pthread_mutex_t lock;
    int n;
    mjenv_shared tasks[MJENV_MAX_TASKS];
} mjenv_cache = {.lock = PTHREAD_MUTEX_INITIALIZER};

typedef struct mjenv {
    const mjenv_task *task;
    const mjenv_shared *shared;
    mjData *d;
    rng_t rng;
    int n_diverged;
    env_ops ops;        /* the task's vtable: generic reset/step, the task's termination */
} mjenv_t;

/* MuJoCo prints warnings to stdout and MUJOCO_LOG.TXT; twig counts them in d->warning[] */
static void mjenv_on_warning(const char *msg)
{
    log_debug("event=mujoco_warning msg=\"%s\"", msg);
}

static const env_asset *mjenv_find_asset(const char *name)
{
    for (int i = 0; i < env_n_assets; i++) {
        if (strcmp(env_assets[i].name, name) == 0) {
            return &env_assets[i];
        }
    }
    return NULL;
}

/* compile an embedded MJCF file through a one-file virtual file system */
static int mjenv_load(mjModel **out, const char *asset_name)
{
    const env_asset *a = mjenv_find_asset(asset_name);
    if (a == NULL) {
        return err_set(TWIG_ENOTFOUND, "MJCF asset %s is not embedded", asset_name);
    }
    mjVFS *vfs = xmalloc(sizeof(*vfs));     /* ~2 MB of name slots: never on the stack */
    mj_defaultVFS(vfs);
    if (mj_makeEmptyFileVFS(vfs, a->name, a->size) != 0) {
        free(vfs);
        return err_set(TWIG_EINTERNAL, "cannot make VFS file %s", a->name);
    }
    memcpy(vfs->filedata[vfs->nfile - 1], a->data, (size_t)a->size);
    char err[MJENV_ERR_LEN] = "";
    mjModel *m = mj_loadXML(a->name, vfs, err, sizeof(err));
    mj_deleteVFS(vfs);
    free(vfs);
    if (m == NULL) {
        return err_set(TWIG_EINTERNAL, "MJCF %s does not compile: %s", a->name, err);
    }
    *out = m;
    return 0;
}

static pthread_once_t mjenv_hook_once = PTHREAD_ONCE_INIT;

/* MuJoCo's warning hook is process-wide: set once, before any model of ours exists */
static void mjenv_install_hook(void)
{
    mju_user_warning = mjenv_on_warning;
}

static int mjenv_shared_get(const mjenv_shared **out, const mjenv_task *task)
{
    int rc = 0;
    pthread_once(&mjenv_hook_once, mjenv_install_hook);
    pthread_mutex_lock(&mjenv_cache.lock);
    mjenv_shared *sh = NULL;
    for (int i = 0; i < mjenv_cache.n; i++) {
        if (mjenv_cache.tasks[i].task == task) {
            sh = &mjenv_cache.tasks[i];
        }
    }
    if (sh == NULL) {
        mjModel *m = NULL;
        if (mjenv_cache.n == MJENV_MAX_TASKS) {
            rc = err_set(TWIG_EFULL, "more than %d MuJoCo tasks", MJENV_MAX_TASKS);
        } else {
            rc = mjenv_load(&m, task->asset);
        }
        if (rc == 0 && m->nu < 1) {
            rc = err_set(TWIG_EINTERNAL, "%s: model has no actuators", task->id);
            mj_deleteModel(m);
        }
        if (rc == 0) {
            sh = &mjenv_cache.tasks[mjenv_cache.n++];
            sh->task = task;
            sh->m = m;
            sh->act_low = xmalloc((size_t)m->nu * sizeof(float));
            sh->act_high = xmalloc((size_t)m->nu * sizeof(float));
            for (int i = 0; i < m->nu; i++) {
                bool lim = m->actuator_ctrllimited[i];
                sh->act_low[i] = lim ? (float)m->actuator_ctrlrange[2 * i] : -INFINITY;
                sh->act_high[i] = lim ? (float)m->actuator_ctrlrange[2 * i + 1] : INFINITY;
            }
        }
    }
    pthread_mutex_unlock(&mjenv_cache.lock);
    *out = sh;
    return rc;
}

int mjenv_model(const mjModel **out, const mjenv_task *task)
{
    const mjenv_shared *sh = NULL;
    int rc = mjenv_shared_get(&sh, task);
    *out = rc == 0 ? sh->m : NULL;
    return rc;
}

double mjenv_position_qpos0(const mjModel *m, const mjData *d)
{
    (void)m;
    return d->qpos[0];
}

void mjenv_observe_qpos_qvel(const mjModel *m, const mjData *d, float *obs, int skip,
                             double vel_clip)
{
    for (int i = skip; i < m->nq; i++) {
        obs[i - skip] = (float)d->qpos[i];
    }
    float *vel = obs + (m->nq - skip);
    for (int i = 0; i < m->nv; i++) {
        double v = d->qvel[i];
        vel[i] = (float)(v < -vel_clip ? -vel_clip : v > vel_clip ? vel_clip : v);
    }
}

double mjenv_sum_sq(const float *a, int n)
{
    double s = 0.0;
    for (int i = 0; i < n; i++) {
        s += (double)a[i] * a[i];
    }
    return s;
}

/* sum of the warning counters that mean the physics went wrong (all but VGEOMFULL) */
static int mjenv_warnings(const mjData *d)
{
    int n = 0;
    for (int i = 0; i < mjNWARNING; i++) {
        if (i != mjWARN_VGEOMFULL) {
            n += d->warning[i].number;
        }
    }
    return n;
}

static void mjenv_reset(env_t *e, uint64_t seed, float *obs)
{
    mjenv_t *me = e->impl;
    const mjModel *m = me->shared->m;
    mjData *d = me->d;
    double s = e->reset_noise_scale;
    rng_seed(&me->rng, seed);
    mj_resetData(m, d);
    /* qpos = qpos0 + U(-s, s); qvel = U(-s, s) or s * N(0, 1) */
    for (int i = 0; i < m->nq; i++) {
        d->qpos[i] = m->qpos0[i] + (-s + 2.0 * s * rng_uniform_f64(&me->rng));
    }
    for (int i = 0; i < m->nv; i++) {
        if (me->task->qvel_noise == MJENV_NOISE_NORMAL) {
            d->qvel[i] = s * rng_normal_f32(&me->rng);
        } else {
            d->qvel[i] = -s + 2.0 * s * rng_uniform_f64(&me->rng);
        }
    }
    mj_forward(m, d);
    me->task->observe(m, d, obs);
}

static void mjenv_step(env_t *e, const float *act, env_step_result *res)
{
    mjenv_t *me = e->impl;
    const mjenv_task *task = me->task;
    const mjModel *m = me->shared->m;
    mjData *d = me->d;

    double x_before = task->position != NULL ? task->position(m, d) : 0.0;
    for (int i = 0; i < m->nu; i++) {
        d->ctrl[i] = act[i];
    }
    int warn_before = mjenv_warnings(d);
    for (int k = 0; k < task->frame_skip; k++) {
        mj_step(m, d);
    }
    if (task->rne_post) {
        mj_rnePostConstraint(m, d);     /* fills cfrc_ext (2.2.2 does not in mj_step) */
    }
    double x_after = task->position != NULL ? task->position(m, d) : 0.0;
    task->observe(m, d, res->next_obs);

    bool diverged = mjenv_warnings(d) != warn_before || !isfinite(x_after);
    for (int i = 0; i < task->n_obs && !diverged; i++) {
        diverged = !isfinite(res->next_obs[i]);
    }
    if (diverged) {
        /* MuJoCo may have reset the state already: end the episode, pay nothing */
        me->n_diverged++;
        res->truncated = true;
        return;
    }
    task->score(m, d, act, x_before, x_after, e->spec.dt, res->next_obs, res);
}

static void mjenv_destroy(env_t *e)
{
    mjenv_t *me = e->impl;
    if (me != NULL) {
        mj_deleteData(me->d);
        free(me);
    }
    e->impl = NULL;
}

int mjenv_create(env_t *e, const mjenv_task *task)
{
    const mjenv_shared *sh = NULL;
    int rc = mjenv_shared_get(&sh, task);
    if (rc < 0) {
        return rc;
    }
    const mjModel *m = sh->m;
    mjenv_t *me = xcalloc(1, sizeof(*me));
    me->task = task;
    me->shared = sh;
    me->d = mj_makeData(m);
    if (me->d == NULL) {
        free(me);
        return err_set(TWIG_EFULL, "%s: mj_makeData failed", task->id);
    }
    me->ops.reset = mjenv_reset;
    me->ops.step = mjenv_step;
    me->ops.termination = task->termination;
    me->ops.destroy = mjenv_destroy;

    e->ops = &me->ops;
    e->impl = me;
    e->reset_noise_scale = task->reset_noise_scale;
    env_spec *s = &e->spec;
    snprintf(s->name, sizeof(s->name), "%s", task->id);
    s->n_obs = task->n_obs;
    s->n_act = m->nu;
    s->act_low = sh->act_low;
    s->act_high = sh->act_high;
    s->max_episode_steps = task->max_episode_steps;
    s->dt = m->opt.timestep * task->frame_skip;
    s->n_info = task->n_info;
    for (int i = 0; i < task->n_info; i++) {
        s->info_names[i] = task->info_names[i];
    }
    return 0;
}

static bool mjenv_is(const env_t *e)
{
    return e != NULL && e->ops != NULL && e->ops->step == mjenv_step;
}

const mjModel *mjenv_model_of(const env_t *e)
{
    return mjenv_is(e) ? ((const mjenv_t *)e->impl)->shared->m : NULL;
}

mjData *mjenv_data_of(env_t *e)
{
    return mjenv_is(e) ? ((mjenv_t *)e->impl)->d : NULL;
}

const mjenv_task *mjenv_task_of(const env_t *e)
{
    return mjenv_is(e) ? ((const mjenv_t *)e->impl)->task : NULL;
}

int mjenv_divergences(const env_t *e)
{
    return mjenv_is(e) ? ((const mjenv_t *)e->impl)->n_diverged : 0;
}
