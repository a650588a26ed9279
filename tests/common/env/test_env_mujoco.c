/* tests of the MuJoCo base (common/env/env_mujoco.c): shared models, divergence, assets */
#include <pthread.h>

#include "tests/common/env/env_testlib.h"

static void *make_and_report_model(void *arg)
{
    env_t *e = NULL;
    if (env_make(&e, "Hopper-v4") < 0) {
        return NULL;
    }
    float obs[11], next[11], act[3] = {0.1f, 0.2f, 0.3f};
    env_reset(e, 1, obs);
    env_step_result r = {.next_obs = next};
    env_step(e, act, &r);
    const mjModel *m = mjenv_model_of(e);
    *(float *)arg = next[0];
    env_free(e);
    return (void *)m;
}

Test(env_mujoco, instances_and_threads_share_one_model, .timeout = 60)
{
    pthread_t th[4];
    float z[4];
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(pthread_create(&th[i], NULL, make_and_report_model, &z[i]), 0);
    }
    const mjModel *models[4];
    for (int i = 0; i < 4; i++) {
        void *ret = NULL;
        pthread_join(th[i], &ret);
        models[i] = ret;
        cr_assert_not_null(models[i]);
    }
    env_t *a = envt_make("Hopper-v4");
    env_t *b = envt_make("Hopper-v4");
    env_t *c = envt_make("HalfCheetah-v4");
    cr_expect_eq(mjenv_model_of(a), mjenv_model_of(b));
    cr_expect_neq(mjenv_model_of(a), mjenv_model_of(c));
    cr_expect_neq(mjenv_data_of(a), mjenv_data_of(b));
    for (int i = 0; i < 4; i++) {
        cr_expect_eq(models[i], mjenv_model_of(a));
        cr_expect_eq(z[i], z[0]);     /* same seed, same action, same result in every thread */
    }
    env_free(a);
    env_free(b);
    env_free(c);
}

/* a blown-up state makes MuJoCo warn (and reset); twig ends the episode as truncated */
Test(env_mujoco, divergence_ends_the_episode_truncated_with_zero_reward, .timeout = 60)
{
    env_t *e = envt_make("Hopper-v4");
    float obs[11], next[11], act[3] = {0};
    env_reset(e, 1, obs);
    mjData *d = mjenv_data_of(e);
    d->qvel[3] = 1e300;
    env_step_result r = {.next_obs = next};
    cr_assert_eq(env_step(e, act, &r), 0);
    cr_expect(r.truncated);
    cr_expect_not(r.terminated);
    cr_expect_eq(r.reward, 0.0f);
    for (int i = 0; i < ENV_INFO_MAX; i++) {
        cr_expect_eq(r.info[i], 0.0f);
    }
    cr_expect_eq(mjenv_divergences(e), 1);
    cr_expect_eq(env_step(e, act, &r), -EINVAL);
    /* a reset clears the warnings: the next episode steps normally */
    env_reset(e, 2, obs);
    cr_assert_eq(env_step(e, act, &r), 0);
    cr_expect_not(r.truncated);
    cr_expect_eq(mjenv_divergences(e), 1);
    env_free(e);
}

Test(env_mujoco, batched_termination_equals_row_by_row, .timeout = 60)
{
    env_t *e = envt_make("Hopper-v4");
    enum { B = 64 };
    static float obs[B * 11], next[B * 11], act[B * 3];
    rng_t r;
    rng_seed(&r, 3);
    for (int i = 0; i < B * 11; i++) {
        next[i] = rng_uniform_range(&r, -0.3f, 1.5f);
        obs[i] = next[i];
    }
    bool all[B], one;
    env_termination(e, obs, act, next, all, B);
    int n_done = 0;
    for (int b = 0; b < B; b++) {
        env_termination(e, obs + 11 * b, act + 3 * b, next + 11 * b, &one, 1);
        cr_expect_eq(all[b], one, "row %d", b);
        n_done += all[b];
    }
    cr_expect(n_done > 0 && n_done < B, "%d of %d", n_done, B);
    env_free(e);
}

Test(env_mujoco, assets_are_embedded_and_pendulum_is_not_mujoco)
{
    const char *want[] = {"half_cheetah.xml", "hopper.xml", "inverted_pendulum.xml"};
    for (int k = 0; k < 3; k++) {
        bool found = false;
        for (int i = 0; i < env_n_assets; i++) {
            if (strcmp(env_assets[i].name, want[k]) == 0) {
                found = true;
                cr_expect_eq((int)strlen(env_assets[i].data), env_assets[i].size);
                cr_expect(strstr(env_assets[i].data, "<mujoco") != NULL);
            }
        }
        cr_expect(found, "%s not embedded", want[k]);
    }
    env_t *p = envt_make("Pendulum-v1");
    cr_expect_null(mjenv_model_of(p));
    cr_expect_null(mjenv_data_of(p));
    cr_expect_null(mjenv_task_of(p));
    env_free(p);
}
