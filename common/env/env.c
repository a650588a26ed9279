/* env.c - env registry by Gymnasium id, plugin loading, and the checks around every step */
#include "common/env/env.h"

#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/env/env_plugin.h"
#include "common/base/err.h"
#include "common/base/mem.h"

/* X(id, create): built-in tasks, by Gymnasium id */
#define ENV_REGISTRY(X)                                     \
    X("Pendulum-v1", env_pendulum_create)                   \
    X("InvertedPendulum-v4", env_inverted_pendulum_create)  \
    X("HalfCheetah-v4", env_half_cheetah_create)            \
    X("Hopper-v4", env_hopper_create)                       \
    X("Walker2d-v4", env_walker2d_create)                   \
    X("Ant-v4", env_ant_create)                             \
    X("Humanoid-v4", env_humanoid_create)

typedef struct env_entry {
    const char *id;
    env_create_fn create;
} env_entry;

static const env_entry env_registry[] = {
#define ENV_ENTRY(id, fn) {id, fn},
    ENV_REGISTRY(ENV_ENTRY)
#undef ENV_ENTRY
};
#define ENV_N_REGISTRY ((int)(sizeof(env_registry) / sizeof(env_registry[0])))

static const char *const env_ids[] = {
#define ENV_ID(id, fn) id,
    ENV_REGISTRY(ENV_ID)
#undef ENV_ID
    NULL,
};

const char *const *env_list(void)
{
    return env_ids;
}

/* a declared spec is outside input for plugins: check everything env.c relies on */
static int env_check_spec(const env_t *e, const char *id)
{
    const env_spec *s = &e->spec;
    if (e->ops == NULL || e->ops->reset == NULL || e->ops->step == NULL ||
        e->ops->termination == NULL) {
        return err_set(-EINVAL, "env %s: vtable is missing reset, step or termination", id);
    }
    if (memchr(s->name, '\0', sizeof(s->name)) == NULL || s->name[0] == '\0') {
        return err_set(-EINVAL, "env %s: spec.name is empty or not terminated", id);
    }
    if (s->n_obs < 1 || s->n_obs > ENV_DIM_MAX) {
        return err_set(-EINVAL, "env %s: n_obs is %d, must be in [1, %d]", id, s->n_obs,
                       ENV_DIM_MAX);
    }
    if (s->n_act < 1 || s->n_act > ENV_DIM_MAX) {
        return err_set(-EINVAL, "env %s: n_act is %d, must be in [1, %d]", id, s->n_act,
                       ENV_DIM_MAX);
    }
    if (s->act_low == NULL || s->act_high == NULL) {
        return err_set(-EINVAL, "env %s: action bounds are missing", id);
    }
    for (int i = 0; i < s->n_act; i++) {
        if (!isfinite(s->act_low[i]) || !isfinite(s->act_high[i]) ||
            s->act_low[i] > s->act_high[i]) {
            return err_set(-EINVAL, "env %s: action bound %d is [%g, %g]", id, i,
                           (double)s->act_low[i], (double)s->act_high[i]);
        }
    }
    if (s->max_episode_steps < 1) {
        return err_set(-EINVAL, "env %s: max_episode_steps is %d", id, s->max_episode_steps);
    }
    if (!(s->dt > 0.0) || !isfinite(s->dt)) {
        return err_set(-EINVAL, "env %s: dt is %g", id, s->dt);
    }
    if (s->n_info < 0 || s->n_info > ENV_INFO_MAX) {
        return err_set(-EINVAL, "env %s: n_info is %d, must be in [0, %d]", id, s->n_info,
                       ENV_INFO_MAX);
    }
    for (int i = 0; i < s->n_info; i++) {
        if (s->info_names[i] == NULL || s->info_names[i][0] == '\0') {
            return err_set(-EINVAL, "env %s: info_names[%d] is empty", id, i);
        }
    }
    return 0;
}

/* "plugin:/path/lib.so:Name": dlopen, find the register function, check the ABI */
static int env_load_plugin(env_t *e, env_create_fn *create, const char *spec)
{
    const char *rest = spec + strlen(ENV_PLUGIN_PREFIX);
    const char *colon = strrchr(rest, ':');   /* env_check_id checked the form */
    size_t path_len = (size_t)(colon - rest);
    char *path = xmalloc(path_len + 1);
    memcpy(path, rest, path_len);
    path[path_len] = '\0';
    const char *name = colon + 1;

    dlerror();
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        const char *why = dlerror();
        int rc = err_set(TWIG_ENOTFOUND, "cannot load plugin %s: %s", path,
                         why != NULL ? why : "unknown error");
        free(path);
        return rc;
    }
    env_plugin_register_fn reg;
    /* POSIX: dlsym's object pointer converts to a function pointer */
    *(void **)&reg = dlsym(h, ENV_PLUGIN_SYMBOL);
    if (reg == NULL) {
        int rc = err_set(-EINVAL, "plugin %s does not export %s", path, ENV_PLUGIN_SYMBOL);
        dlclose(h);
        free(path);
        return rc;
    }
    const env_plugin *p = reg(name);
    int rc = 0;
    if (p == NULL) {
        rc = err_set(TWIG_ENOTFOUND, "plugin %s has no env named '%s'", path, name);
    } else if (p->abi_version != ENV_PLUGIN_ABI_VERSION) {
        rc = err_set(TWIG_EVERSION, "plugin %s was built for env ABI version %u, twig has %u",
                     path, p->abi_version, ENV_PLUGIN_ABI_VERSION);
    } else if (p->struct_size != sizeof(env_plugin) || p->create == NULL) {
        rc = err_set(TWIG_EVERSION, "plugin %s: descriptor size %u, expected %zu", path,
                     p->struct_size, sizeof(env_plugin));
    }
    free(path);
    if (rc < 0) {
        dlclose(h);
        return rc;
    }
    e->dl_handle = h;
    *create = p->create;
    return 0;
}

int env_check_id(const char *id)
{
    if (id == NULL || id[0] == '\0') {
        return err_set(-EINVAL, "env id is empty");
    }
    if (strncmp(id, ENV_PLUGIN_PREFIX, strlen(ENV_PLUGIN_PREFIX)) == 0) {
        const char *rest = id + strlen(ENV_PLUGIN_PREFIX);
        const char *colon = strrchr(rest, ':');
        if (colon == NULL || colon == rest || colon[1] == '\0') {
            return err_set(-EINVAL, "plugin id '%s' must be plugin:/path/lib.so:Name", id);
        }
        return 0;
    }
    for (int i = 0; i < ENV_N_REGISTRY; i++) {
        if (strcmp(env_registry[i].id, id) == 0) {
            return 0;
        }
    }
    char known[512] = "";
    for (int i = 0; env_ids[i] != NULL; i++) {
        size_t n = strlen(known);
        snprintf(known + n, sizeof(known) - n, "%s%s", i ? ", " : "", env_ids[i]);
    }
    return err_set(TWIG_ENOTFOUND, "unknown env id '%s' (known: %s, or plugin:PATH:NAME)", id,
                   known);
}

int env_make(env_t **out, const char *id)
{
    *out = NULL;
    int rc = env_check_id(id);
    if (rc < 0) {
        return rc;
    }
    env_t *e = xcalloc(1, sizeof(*e));
    e->reset_noise_scale = NAN;
    e->done = true;
    env_create_fn create = NULL;
    if (strncmp(id, ENV_PLUGIN_PREFIX, strlen(ENV_PLUGIN_PREFIX)) == 0) {
        rc = env_load_plugin(e, &create, id);
    } else {
        for (int i = 0; i < ENV_N_REGISTRY; i++) {
            if (strcmp(env_registry[i].id, id) == 0) {
                create = env_registry[i].create;
            }
        }
    }
    if (rc == 0) {
        rc = create(e);
        if (rc == 0) {
            rc = env_check_spec(e, id);
        } else {
            e->ops = NULL;      /* create released what it took */
        }
    }
    if (rc < 0) {
        env_free(e);
        return rc;
    }
    e->act_buf = xcalloc((size_t)e->spec.n_act, sizeof(float));
    *out = e;
    return 0;
}

void env_free(env_t *e)
{
    if (e == NULL) {
        return;
    }
    if (e->ops != NULL && e->ops->destroy != NULL) {
        e->ops->destroy(e);
    }
    free(e->act_buf);
    if (e->dl_handle != NULL) {
        dlclose(e->dl_handle);
    }
    free(e);
}

void env_reset(env_t *e, uint64_t seed, float *obs)
{
    e->t = 0;
    e->done = false;
    e->ops->reset(e, seed, obs);
}

int env_check_action(const env_t *e, const float *act, int n_act)
{
    if (n_act != e->spec.n_act) {
        return err_set(-EINVAL, "action has %d values, %s expects %d", n_act, e->spec.name,
                       e->spec.n_act);
    }
    for (int i = 0; i < n_act; i++) {
        if (!isfinite(act[i])) {
            return err_set(-EINVAL, "action[%d] is %g, not a finite number", i, (double)act[i]);
        }
    }
    return 0;
}

int env_step(env_t *e, const float *act, env_step_result *res)
{
    const env_spec *s = &e->spec;
    if (e->done) {
        return err_set(-EINVAL, "%s: episode is over (or not started); call env_reset",
                       s->name);
    }
    int rc = env_check_action(e, act, s->n_act);
    if (rc < 0) {
        return rc;
    }
    for (int i = 0; i < s->n_act; i++) {
        float a = act[i];
        e->act_buf[i] = a < s->act_low[i] ? s->act_low[i] : a > s->act_high[i] ? s->act_high[i] : a;
    }
    res->reward = 0.0f;
    res->terminated = false;
    res->truncated = false;
    memset(res->info, 0, sizeof(res->info));
    e->ops->step(e, e->act_buf, res);
    e->t++;
    if (e->t >= s->max_episode_steps) {
        res->truncated = true;
    }
    if (res->terminated || res->truncated) {
        e->done = true;
    }
    return 0;
}

int env_set_reset_noise_scale(env_t *e, double x)
{
    if (isnan(e->reset_noise_scale)) {
        return err_set(TWIG_EUNIMPL, "%s has no reset noise scale", e->spec.name);
    }
    if (!(x >= 0.0) || !isfinite(x)) {
        return err_set(-EINVAL, "reset noise scale is %g, must be finite and >= 0", x);
    }
    e->reset_noise_scale = x;
    return 0;
}

void env_termination_never(const env_spec *s, const float *obs, const float *act,
                           const float *next_obs, bool *done, int B)
{
    (void)s, (void)obs, (void)act, (void)next_obs;
    for (int b = 0; b < B; b++) {
        done[b] = false;
    }
}

void env_termination(const env_t *e, const float *obs, const float *act, const float *next_obs,
                     bool *done, int B)
{
    e->ops->termination(&e->spec, obs, act, next_obs, done, B);
}
