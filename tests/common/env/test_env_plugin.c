/* tests of the env plugin loader (env.c, env_plugin.h) with tests/plugins/example_env.c */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/env/env.h"
#include "common/env/env_plugin.h"
#include "common/base/err.h"

#define PLUGIN_DIR TWIG_BIN_DIR "/tests/plugins/"
#define EXAMPLE "plugin:" PLUGIN_DIR "libtwig_example_env.so:PointMass"

Test(env_plugin, example_loads_and_runs_an_episode)
{
    env_t *e = NULL;
    int rc = env_make(&e, EXAMPLE);
    cr_assert_eq(rc, 0, "%s", err_msg());
    cr_expect_str_eq(e->spec.name, "PointMass");
    cr_expect_eq(e->spec.n_obs, 2);
    cr_expect_eq(e->spec.n_act, 1);
    cr_expect_eq(e->spec.max_episode_steps, 100);
    cr_expect_str_eq(e->spec.info_names[0], "reward_distance");

    float obs[2], next[2];
    env_reset(e, 42, obs);
    cr_expect(obs[0] >= -1.0f && obs[0] <= 1.0f);
    cr_expect_eq(obs[1], 0.0f);
    /* v' = 0.05, x' = x + 0.0025, reward = -(x^2 + 0.1); the 5.0 action is clipped to 1 */
    float u = 5.0f;
    env_step_result r = {.next_obs = next};
    cr_assert_eq(env_step(e, &u, &r), 0);
    cr_expect_float_eq(next[1], 0.05f, 1e-7);
    cr_expect_float_eq(next[0], obs[0] + 0.0025f, 1e-6);
    cr_expect_float_eq(r.reward, -(obs[0] * obs[0] + 0.1f), 1e-6);
    cr_expect_float_eq(r.info[0] + r.info[1], r.reward, 1e-6);

    /* pushing one way leaves |x| <= 2 within 100 steps: terminated, and the pure termination
     * agrees on every transition */
    int steps = 1;
    memcpy(obs, next, sizeof(obs));
    while (!r.terminated && !r.truncated) {
        cr_assert_eq(env_step(e, &u, &r), 0);
        bool d;
        env_termination(e, obs, &u, next, &d, 1);
        cr_expect_eq(d, r.terminated);
        memcpy(obs, next, sizeof(obs));
        steps++;
        cr_assert_leq(steps, 100);
    }
    cr_expect(r.terminated, "x %g after %d steps", (double)next[0], steps);
    float nan = NAN;
    env_reset(e, 1, obs);
    cr_expect_eq(env_step(e, &nan, &r), -EINVAL);
    env_free(e);
}

Test(env_plugin, two_instances_share_the_library)
{
    env_t *a = NULL, *b = NULL;
    cr_assert_eq(env_make(&a, EXAMPLE), 0, "%s", err_msg());
    cr_assert_eq(env_make(&b, EXAMPLE), 0, "%s", err_msg());
    float oa[2], ob[2];
    env_reset(a, 7, oa);
    env_free(a);             /* b keeps its own reference to the library */
    env_reset(b, 7, ob);
    cr_expect_arr_eq(oa, ob, sizeof(oa));
    env_free(b);
}

Test(env_plugin, wrong_abi_version_is_refused_cleanly)
{
    env_t *e = (env_t *)1;
    int rc = env_make(&e, "plugin:" PLUGIN_DIR "libtwig_wrong_abi_env.so:PointMass");
    cr_expect_eq(rc, TWIG_EVERSION);
    cr_expect_null(e);
    cr_expect(strstr(err_msg(), "ABI version 999") != NULL, "%s", err_msg());
}

Test(env_plugin, invalid_spec_is_refused)
{
    env_t *e = NULL;
    int rc = env_make(&e, "plugin:" PLUGIN_DIR "libtwig_bad_spec_env.so:PointMass");
    cr_expect_eq(rc, -EINVAL);
    cr_expect_null(e);
    cr_expect(strstr(err_msg(), "n_obs is 0") != NULL, "%s", err_msg());
}

Test(env_plugin, bad_ids_name_what_is_wrong)
{
    env_t *e = NULL;
    cr_expect_eq(env_make(&e, "plugin:" PLUGIN_DIR "libtwig_example_env.so:Nope"),
                 TWIG_ENOTFOUND);
    cr_expect(strstr(err_msg(), "Nope") != NULL, "%s", err_msg());
    cr_expect_eq(env_make(&e, "plugin:/no/such/libx.so:PointMass"), TWIG_ENOTFOUND);
    cr_expect(strstr(err_msg(), "/no/such/libx.so") != NULL, "%s", err_msg());
    cr_expect_eq(env_make(&e, "plugin:" PLUGIN_DIR "libtwig_example_env.so"), -EINVAL);
    cr_expect_eq(env_make(&e, "plugin:"), -EINVAL);
    cr_expect_eq(env_make(&e, "plugin:libm.so.6:Foo"), -EINVAL);
    cr_expect(strstr(err_msg(), ENV_PLUGIN_SYMBOL) != NULL, "%s", err_msg());
    cr_expect_null(e);
}
