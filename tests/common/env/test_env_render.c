/* tests of offscreen rendering (common/env/render.c): MuJoCo's renderer in an OSMesa context
 * gives pictures that are not blank, that follow the state and that repeat for the same state */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/err.h"
#include "common/env/render.h"
#include "tests/common/env/env_testlib.h"

/* variance of all the bytes of an RGB24 picture */
static double picture_variance(const unsigned char *rgb, size_t n)
{
    double sum = 0.0, sum_sq = 0.0;
    for (size_t i = 0; i < n; i++) {
        sum += rgb[i];
        sum_sq += (double)rgb[i] * rgb[i];
    }
    double mean = sum / (double)n;
    return sum_sq / (double)n - mean * mean;
}

static size_t bytes_differing(const unsigned char *a, const unsigned char *b, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        k += a[i] != b[i];
    }
    return k;
}

static void skip_without_osmesa(void)
{
    if (!env_render_available()) {
        cr_skip_test("twig built without OSMesa");
    }
}

Test(env_render, inverted_pendulum_pictures_follow_the_state_and_repeat, .timeout = 120)
{
    skip_without_osmesa();
    const int W = 160, H = 120;
    const size_t n = (size_t)W * H * 3;
    env_t *e = envt_make("InvertedPendulum-v4");
    env_render r = {0};
    cr_assert_eq(env_render_init(&r, e, W, H), 0, "%s", err_msg());
    unsigned char *a = malloc(n), *a2 = malloc(n), *b = malloc(n);
    float obs[4];
    env_reset(e, 0, obs);
    env_render_frame(&r, e, a);
    env_render_frame(&r, e, a2);
    cr_expect_gt(picture_variance(a, n), 0.0, "the picture is blank");
    cr_expect_eq(bytes_differing(a, a2, n), 0, "the same state drew two pictures");

    /* push the cart: the pole falls over, the floor slides under the tracked cart */
    float act[1] = {3.0f};
    env_step_result res = {.next_obs = obs};
    for (int t = 0; t < 20 && !res.terminated; t++) {
        cr_assert_eq(env_step(e, act, &res), 0);
    }
    env_render_frame(&r, e, b);
    cr_expect_gt(picture_variance(b, n), 0.0);
    cr_expect_gt(bytes_differing(a, b, n), n / 100, "pictures of two states are alike");
    free(a);
    free(a2);
    free(b);
    env_render_free(&r);
    env_render_free(&r);   /* safe twice: zeroed */
    env_free(e);
}

Test(env_render, half_cheetah_renders_at_another_size, .timeout = 120)
{
    skip_without_osmesa();
    const int W = 320, H = 240;
    const size_t n = (size_t)W * H * 3;
    env_t *e = envt_make("HalfCheetah-v4");
    env_render r = {0};
    cr_assert_eq(env_render_init(&r, e, W, H), 0, "%s", err_msg());
    unsigned char *a = malloc(n);
    float obs[17];
    env_reset(e, 1, obs);
    env_render_frame(&r, e, a);
    cr_expect_gt(picture_variance(a, n), 0.0, "the picture is blank");
    /* the top row is sky, the bottom row floor: not the same colour */
    cr_expect_neq(memcmp(a, a + (size_t)(H - 1) * W * 3, (size_t)W * 3), 0);
    free(a);
    env_render_free(&r);
    env_free(e);
}

Test(env_render, an_env_without_a_mujoco_model_or_a_bad_size_is_refused, .timeout = 60)
{
    skip_without_osmesa();
    env_t *e = envt_make("Pendulum-v1");
    env_render r = {0};
    cr_expect_eq(env_render_init(&r, e, 64, 64), -EINVAL);
    cr_expect_not_null(strstr(err_msg(), "no MuJoCo model"), "%s", err_msg());
    env_render_free(&r);
    env_free(e);

    e = envt_make("InvertedPendulum-v4");
    cr_expect_eq(env_render_init(&r, e, 8, 64), -EINVAL);
    cr_expect_not_null(strstr(err_msg(), "8x64"), "%s", err_msg());
    env_render_free(&r);
    env_free(e);
}
