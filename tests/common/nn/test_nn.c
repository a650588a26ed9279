/* tests of common/nn*: activations, MLP gradients against finite differences, Adam against
 * hand-computed steps, checkpoint images and weight blobs */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/common/nn/mlp_small.h"
#include "common/base/crc32c.h"
#include "common/base/err.h"
#include "common/nn/nn.h"
#include "common/nn/nn_gemm.h"
#include "common/base/rng.h"
#include "tests/common/nn/nn_ref.h"

/* loss = sum(y * r) */
static double ref_loss(const mlp_t *net, const double *p, const double *x, const double *r, int B)
{
    double y[64 * 64];
    nn_ref_forward(net, p, y, x, B);
    double s = 0;
    for (int i = 0; i < B * net->p.sizes[net->p.n_layers]; i++) {
        s += y[i] * r[i];
    }
    return s;
}

static void check_mlp_gradients(nn_act act)
{
    enum { B = 5 };
    const int sizes[] = {4, 7, 6, 3};
    rng_t rng;
    rng_seed(&rng, 11 + (uint64_t)act);
    mlp_t net = {0};
    cr_assert_eq(mlp_init(&net, sizes, 3, act, B, &rng), 0);
    float x[B * 4], r[B * 3], y[B * 3], dx[B * 4];
    double xd[B * 4], rd[B * 3], yd[B * 3];
    for (int i = 0; i < B * 4; i++) {
        x[i] = 2.0f * rng_normal_f32(&rng);
        xd[i] = x[i];
    }
    for (int i = 0; i < B * 3; i++) {
        r[i] = rng_normal_f32(&rng);
        rd[i] = r[i];
    }
    mlp_forward(&net.p, &net.work, y, x, B);
    double *p = calloc(net.p.n_params, sizeof(double));
    for (size_t i = 0; i < net.p.n_params; i++) {
        p[i] = net.p.params[i];
    }
    nn_ref_forward(&net, p, yd, xd, B);
    for (int i = 0; i < B * 3; i++) {
        cr_expect(fabs(y[i] - yd[i]) < 1e-5 * (1 + fabs(yd[i])), "y[%d] %f vs %f", i, y[i], yd[i]);
    }
    mlp_zero_grad(&net.train);
    mlp_backward(&net.p, &net.work, &net.train, dx, r, true);

    // every parameter of every tensor against central differences in double
    const double h = 1e-6;
    int checked = 0;
    for (int t = 0; t < 2 * net.p.n_layers; t++) {
        const mlp_tensor *ts = &net.p.tensors[t];
        for (int j = 0; j < ts->rows * ts->cols; j++) {
            size_t i = ts->offset + (size_t)j;
            double keep = p[i];
            p[i] = keep + h;
            double lp = ref_loss(&net, p, xd, rd, B);
            p[i] = keep - h;
            double lm = ref_loss(&net, p, xd, rd, B);
            p[i] = keep;
            double num = (lp - lm) / (2 * h);
            double ana = net.train.grads[i];
            cr_expect(fabs(num - ana) < 1e-4 * (1 + fabs(num)),
                      "%s[%d]: numeric %.7f analytic "
                      "%.7f",
                      ts->name, j, num, ana);
            checked++;
        }
    }
    cr_expect_eq(checked, 4 * 7 + 7 + 7 * 6 + 6 + 6 * 3 + 3);
    // and the input gradient
    for (int i = 0; i < B * 4; i++) {
        double keep = xd[i];
        xd[i] = keep + h;
        double lp = ref_loss(&net, p, xd, rd, B);
        xd[i] = keep - h;
        double lm = ref_loss(&net, p, xd, rd, B);
        xd[i] = keep;
        double num = (lp - lm) / (2 * h);
        cr_expect(fabs(num - dx[i]) < 1e-4 * (1 + fabs(num)),
                  "dx[%d]: numeric %.7f analytic "
                  "%.7f",
                  i, num, dx[i]);
    }
    // the overwriting backward gives the same grads over garbage
    float *acc = malloc(net.p.n_params * sizeof(float));
    memcpy(acc, net.train.grads, net.p.n_params * sizeof(float));
    for (size_t i = 0; i < net.p.n_params; i++) {
        net.train.grads[i] = 1e3f;
    }
    mlp_backward_set(&net.p, &net.work, &net.train, NULL, r);
    for (int t = 0; t < 2 * net.p.n_layers; t++) {
        const mlp_tensor *ts = &net.p.tensors[t];
        for (int j = 0; j < ts->rows * ts->cols; j++) {
            size_t i = ts->offset + (size_t)j;
            cr_expect(fabsf(net.train.grads[i] - acc[i]) <= 1e-6f * (1 + fabsf(acc[i])), "%s[%d]",
                      ts->name, j);
        }
    }
    free(acc);
    // a frozen pass leaves grads alone but still gives dx
    float g0 = net.train.grads[0];
    float dx2[B * 4];
    mlp_backward(&net.p, &net.work, &net.train, dx2, r, false);
    cr_expect_eq(net.train.grads[0], g0);
    cr_expect_eq(memcmp(dx, dx2, sizeof(dx)), 0);
    free(p);
    mlp_free(&net);
}

Test(mlp, relu_gradients_match_finite_differences)
{
    check_mlp_gradients(NN_ACT_RELU);
}

Test(mlp, swish_gradients_match_finite_differences)
{
    check_mlp_gradients(NN_ACT_SWISH);
}

Test(mlp, blas_and_naive_gemm_agree)
{
    const int sizes[] = {17, 64, 64, 12};
    rng_t rng;
    rng_seed(&rng, 3);
    mlp_t a = {0}, b = {0};
    cr_assert_eq(mlp_init(&a, sizes, 3, NN_ACT_SWISH, 32, &rng), 0);
    cr_assert_eq(mlp_init(&b, sizes, 3, NN_ACT_SWISH, 32, &rng), 0);
    mlp_copy_params(&b.p, &a.p);
    b.p.gemm = nn_gemm_naive;
    float x[32 * 17], ya[32 * 12], yb[32 * 12];
    rng_fill_normal(&rng, x, 32 * 17);
    mlp_forward(&a.p, &a.work, ya, x, 32);
    mlp_forward(&b.p, &b.work, yb, x, 32);
    for (int i = 0; i < 32 * 12; i++) {
        cr_expect(fabsf(ya[i] - yb[i]) < 1e-4f, "y[%d] %f vs %f", i, ya[i], yb[i]);
    }
    mlp_free(&a);
    mlp_free(&b);
}

static void check_rows_backward(nn_act act)
{
    enum { B = 9, I = 6, OUT = 2 };
    const int sizes[] = {I, 10, 7, OUT};
    rng_t rng;
    rng_seed(&rng, 21);
    mlp_t net = {0};
    cr_assert_eq(mlp_init(&net, sizes, 3, act, B, &rng), 0);
    float x[B * I], y[B * OUT], dy[B * OUT], dx[B * I], dxr[B * I];
    rng_fill_normal(&rng, x, B * I);
    rng_fill_normal(&rng, dy, B * OUT);
    const int rows[4] = {7, 0, 3, 8};
    // the full backward with every other row of dy zeroed is the reference
    float dyz[B * OUT] = {0};
    for (int r = 0; r < 4; r++) {
        memcpy(dyz + rows[r] * OUT, dy + rows[r] * OUT, sizeof(float) * OUT);
    }
    mlp_forward(&net.p, &net.work, y, x, B);
    mlp_zero_grad(&net.train);
    mlp_backward(&net.p, &net.work, &net.train, dx, dyz, false);
    mlp_backward_input_rows(&net.p, &net.work, &net.train, dxr, dy, rows, 4, 2, 3);
    for (int r = 0; r < 4; r++) {
        for (int j = 0; j < 3; j++) {
            float want = dx[rows[r] * I + 2 + j];
            cr_expect(fabsf(dxr[r * 3 + j] - want) < 1e-6f * (1 + fabsf(want)),
                      "row %d col %d: %f vs %f", rows[r], j, dxr[r * 3 + j], want);
        }
    }
    cr_expect_eq(nn_grad_norm(net.train.grads, net.p.n_params), 0.0);
    mlp_free(&net);
}

Test(mlp, input_gradient_of_selected_rows_matches_full_backward)
{
    check_rows_backward(NN_ACT_RELU);
    check_rows_backward(NN_ACT_SWISH);
}

Test(mlp, init_rejects_bad_sizes)
{
    rng_t rng;
    rng_seed(&rng, 1);
    mlp_t n = {0};
    const int bad[] = {4, 0, 3};
    cr_expect_eq(mlp_init(&n, bad, 2, NN_ACT_RELU, 8, &rng), -EINVAL);
    cr_expect(strstr(err_msg(), "sizes[1]") != NULL, "%s", err_msg());
    const int ok[] = {4, 3};
    cr_expect_eq(mlp_init(&n, ok, 0, NN_ACT_RELU, 8, &rng), -EINVAL);
    cr_expect_eq(mlp_init(&n, ok, 1, NN_ACT_RELU, 0, &rng), -EINVAL);
    mlp_free(&n);
}

/* ---- activations ---- */

Test(nn, swish_backward_matches_finite_differences)
{
    float z[7] = {-30.0f, -3.0f, -0.5f, 0.0f, 0.7f, 2.5f, 30.0f};
    float h[7], dz[7], ones[7] = {1, 1, 1, 1, 1, 1, 1};
    nn_swish_forward(h, z, 7);
    nn_swish_backward(dz, ones, z, 7);
    for (int i = 0; i < 7; i++) {
        double zd = z[i], e = 1e-4;
        double num =
            (nn_ref_act(NN_ACT_SWISH, zd + e) - nn_ref_act(NN_ACT_SWISH, zd - e)) / (2 * e);
        cr_expect(fabs(num - dz[i]) < 1e-4, "z=%f: %f vs %f", z[i], num, dz[i]);
        cr_expect(fabs(nn_ref_act(NN_ACT_SWISH, zd) - h[i]) < 1e-5, "h(%f)", z[i]);
        cr_expect(isfinite(h[i]) && isfinite(dz[i]));
    }
    float r[3] = {-1.0f, 0.0f, 2.0f}, rh[3], rd[3];
    nn_relu_forward(rh, r, 3);
    nn_relu_backward(rd, ones, rh, 3);
    cr_expect(rh[0] == 0.0f && rh[1] == 0.0f && rh[2] == 2.0f);
    cr_expect(rd[0] == 0.0f && rd[1] == 0.0f && rd[2] == 1.0f);
}

/* ---- Adam ---- */

Test(adam, matches_hand_computed_steps_on_a_quadratic)
{
    // f(p) = 0.5 * a * p^2 per coordinate; g = a p
    float p[2] = {1.0f, -0.5f};
    const float a[2] = {2.0f, 4.0f};
    nn_adam_state st = {0};
    nn_adam_init(&st, 2);
    nn_adam_cfg cfg = nn_adam_default(0.1f);
    // by hand for p0 = 1, a = 2: 0.9, 0.80041223, 0.70158627
    const double want0[3] = {0.9000000005, 0.8004122286917927, 0.70158627294603};
    double pd = -0.5, m = 0, v = 0;
    for (int t = 1; t <= 3; t++) {
        float g[2] = {a[0] * p[0], a[1] * p[1]};
        nn_adam_step(&cfg, &st, p, g, 2);
        cr_expect(fabs(p[0] - want0[t - 1]) < 1e-6, "step %d: %.8f vs %.8f", t, p[0], want0[t - 1]);
        double gd = 4.0 * pd;
        m = 0.9 * m + 0.1 * gd;
        v = 0.999 * v + 0.001 * gd * gd;
        pd -= 0.1 / (1 - pow(0.9, t)) * m / (sqrt(v) / sqrt(1 - pow(0.999, t)) + 1e-8);
        cr_expect(fabs(p[1] - pd) < 1e-6, "coordinate 1 step %d: %.8f vs %.8f", t, p[1], pd);
    }
    cr_expect_eq(st.t, 3);
    nn_adam_free(&st);
}

Test(adam, decoupled_decay_groups_and_clipping)
{
    nn_adam_state st = {0};
    nn_adam_init(&st, 4);
    // zero gradient: AdamW only shrinks, by 1 - lr*wd per group
    float p[4] = {1, 1, 1, 1};
    const float g0[4] = {0, 0, 0, 0};
    nn_adam_cfg cfg = nn_adam_default(0.1f);
    cfg.decoupled = true;
    cfg.weight_decay = 0.5f;
    const nn_adam_group groups[1] = {{.offset = 1, .n = 2, .weight_decay = 0.1f}};
    nn_adam_step_groups(&cfg, &st, p, g0, 4, groups, 1);
    cr_expect(fabsf(p[0] - 0.95f) < 1e-7f && fabsf(p[3] - 0.95f) < 1e-7f, "%f %f", p[0], p[3]);
    cr_expect(fabsf(p[1] - 0.99f) < 1e-7f && fabsf(p[2] - 0.99f) < 1e-7f, "%f %f", p[1], p[2]);

    // coupled L2: g += wd p, so a zero gradient still moves p by ~lr
    nn_adam_reset(&st);
    float q[1] = {1.0f};
    nn_adam_cfg l2 = nn_adam_default(0.1f);
    l2.weight_decay = 0.01f;
    nn_adam_step(&l2, &st, q, g0, 1);
    cr_expect(fabsf(q[0] - 0.9f) < 1e-5f, "%f", q[0]);

    // clipping: the first step's size is lr*sign(g) either way, but moments see clipped g
    nn_adam_reset(&st);
    float c[2] = {0, 0};
    const float big[2] = {30.0f, 40.0f};
    nn_adam_cfg clip = nn_adam_default(0.1f);
    clip.clip_norm = 5.0f;
    nn_adam_step(&clip, &st, c, big, 2);
    cr_expect(fabsf(st.m[0] - 0.1f * 3.0f) < 1e-4f && fabsf(st.m[1] - 0.1f * 4.0f) < 1e-4f,
              "m %f %f", st.m[0], st.m[1]);
    cr_expect(fabs(nn_grad_norm(big, 2) - 50.0) < 1e-9);
    nn_adam_free(&st);
}

/* ---- checkpoint images ---- */

static char tmpdir[256];

static void make_tmp(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/twig_test_nn_XXXXXX");
    cr_assert(mkdtemp(tmpdir) != NULL);
}

static void rm_tmp(void)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    cr_expect_eq(system(cmd), 0);
}

static size_t file_size(const char *path)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return (size_t)n;
}

/* the image of version 1 is pinned: its checksum, over everything before it, is the one the
 * format had when params, grads and moments still lived in one struct, so old checkpoints
 * load and new ones read the same. Every value is set exactly (no GEMM, no rounding that
 * depends on the build), so it holds on every CPU and in every build. */
Test(mlp_file, image_bytes_are_those_of_format_version_1)
{
    rng_t rng;
    rng_seed(&rng, 12);
    mlp_t a = {0}, b = {0};
    const int sa[] = {5, 16, 16, 2}, sb[] = {3, 8, 1};
    cr_assert_eq(mlp_init(&a, sa, 3, NN_ACT_SWISH, 4, &rng), 0);
    cr_assert_eq(mlp_init(&b, sb, 2, NN_ACT_RELU, 4, &rng), 0);
    mlp_t *nets[2] = {&a, &b};
    for (int k = 0; k < 2; k++) {
        nn_adam_state *adam = &nets[k]->train.adam;
        for (size_t i = 0; i < nets[k]->p.n_params; i++) {
            nets[k]->p.params[i] = (float)((i * 7 + (size_t)k) % 13) * 0.125f - 0.75f;
            adam->m[i] = 0.25f * (float)i - 3.0f;
            adam->v[i] = 1.0f / (float)(i + 1);
        }
        adam->t = 7 + k;
    }
    const char extra[5] = "twig";
    size_t n = mlp_image_size(nets, 2, sizeof(extra));
    cr_assert_eq(n, 6057);
    uint8_t *img = malloc(n);
    mlp_image_write(img, nets, 2, extra, sizeof(extra));
    cr_expect_eq(crc32c(img, n - 4), 0xc15fe95eu);

    // and it reads back into fresh nets of the same shapes
    mlp_t a2 = {0}, b2 = {0};
    cr_assert_eq(mlp_init(&a2, sa, 3, NN_ACT_SWISH, 4, &rng), 0);
    cr_assert_eq(mlp_init(&b2, sb, 2, NN_ACT_RELU, 4, &rng), 0);
    mlp_t *dst[2] = {&a2, &b2};
    char extra2[5] = {0};
    cr_assert_eq(mlp_image_read(img, n, dst, 2, extra2, sizeof(extra2)), 0, "%s", err_msg());
    cr_expect_eq(memcmp(b.p.params, b2.p.params, b.p.n_params * sizeof(float)), 0);
    cr_expect_eq(memcmp(a.train.adam.v, a2.train.adam.v, a.p.n_params * sizeof(float)), 0);
    cr_expect_eq(b2.train.adam.t, 8);
    cr_expect_str_eq(extra2, "twig");
    free(img);
    mlp_free(&a);
    mlp_free(&b);
    mlp_free(&a2);
    mlp_free(&b2);
}

/* a net never stepped (no training state) saves as one whose moments are still zero */
Test(mlp_file, net_without_training_state_saves_zero_moments)
{
    rng_t rng;
    rng_seed(&rng, 4);
    const int sizes[] = {3, 8, 2};
    mlp_t full = {0}, frozen = {0};
    cr_assert_eq(mlp_init(&full, sizes, 2, NN_ACT_RELU, 4, &rng), 0);
    cr_assert_eq(mlp_params_init(&frozen.p, sizes, 2, NN_ACT_RELU, &rng), 0);
    cr_assert_eq(mlp_work_init(&frozen.work, &frozen.p, 4), 0);
    cr_expect_null(frozen.train.grads);
    mlp_copy_params(&frozen.p, &full.p);
    mlp_t *a[1] = {&full}, *b[1] = {&frozen};
    size_t n = mlp_image_size(a, 1, 0);
    cr_assert_eq(mlp_image_size(b, 1, 0), n);
    uint8_t *ia = malloc(n), *ib = malloc(n);
    mlp_image_write(ia, a, 1, NULL, 0);
    mlp_image_write(ib, b, 1, NULL, 0);
    cr_expect_eq(memcmp(ia, ib, n), 0);
    // and reading one into a net without training state takes the parameters only
    full.p.params[0] += 1.0f;
    mlp_image_write(ia, a, 1, NULL, 0);
    cr_assert_eq(mlp_image_read(ia, n, b, 1, NULL, 0), 0, "%s", err_msg());
    cr_expect_eq(frozen.p.params[0], full.p.params[0]);
    free(ia);
    free(ib);
    mlp_free(&full);
    mlp_free(&frozen);
}

Test(mlp_file, save_then_load_gives_identical_outputs_and_optimizer_state)
{
    make_tmp();
    mlp_t a = {0}, b = {0}, a2 = {0}, b2 = {0};
    make_trained(&a, &b, 5);
    make_trained(&a2, &b2, 99); // same shapes, different values
    char path[300];
    snprintf(path, sizeof(path), "%s/nets.bin", tmpdir);
    float extra[3] = {0.25f, -1.0f, 7.0f}, extra2[3] = {0};
    mlp_t *src[2] = {&a, &b}, *dst[2] = {&a2, &b2};
    cr_assert_eq(mlp_save_file(path, src, 2, extra, sizeof(extra)), 0, "%s", err_msg());
    cr_expect_eq(file_size(path), mlp_image_size(src, 2, sizeof(extra)));
    cr_assert_eq(mlp_load_file(path, dst, 2, extra2, sizeof(extra2)), 0, "%s", err_msg());
    cr_expect_eq(memcmp(extra, extra2, sizeof(extra)), 0);
    cr_expect_eq(memcmp(a.p.params, a2.p.params, a.p.n_params * sizeof(float)), 0);
    cr_expect_eq(memcmp(a.train.adam.m, a2.train.adam.m, a.p.n_params * sizeof(float)), 0);
    cr_expect_eq(memcmp(b.train.adam.v, b2.train.adam.v, b.p.n_params * sizeof(float)), 0);
    cr_expect_eq(a2.train.adam.t, 3);
    float x[4 * 5], y1[8], y2[8];
    rng_t rng;
    rng_seed(&rng, 8);
    rng_fill_normal(&rng, x, 20);
    mlp_forward(&a.p, &a.work, y1, x, 4);
    mlp_forward(&a2.p, &a2.work, y2, x, 4);
    cr_expect_eq(memcmp(y1, y2, sizeof(y1)), 0);
    mlp_free(&a);
    mlp_free(&b);
    mlp_free(&a2);
    mlp_free(&b2);
    rm_tmp();
}

static void write_bytes(const char *path, const uint8_t *buf, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert(f);
    cr_assert_eq(fwrite(buf, 1, n, f), n);
    fclose(f);
}

Test(mlp_file, corrupted_truncated_or_wrong_version_file_is_refused)
{
    make_tmp();
    mlp_t a = {0}, b = {0}, a2 = {0}, b2 = {0};
    make_trained(&a, &b, 5);
    make_trained(&a2, &b2, 99);
    mlp_t *src[2] = {&a, &b}, *dst[2] = {&a2, &b2};
    size_t n = mlp_image_size(src, 2, 0);
    uint8_t *img = malloc(n), *bad = malloc(n);
    mlp_image_write(img, src, 2, NULL, 0);
    float before = a2.p.params[0];
    char path[300];
    snprintf(path, sizeof(path), "%s/bad.bin", tmpdir);

    // one flipped bit in the middle
    memcpy(bad, img, n);
    bad[n / 2] ^= 0x10;
    write_bytes(path, bad, n);
    cr_expect_eq(mlp_load_file(path, dst, 2, NULL, 0), TWIG_ECORRUPT);
    cr_expect(strstr(err_msg(), "checksum") != NULL, "%s", err_msg());

    // truncated
    write_bytes(path, img, n - 100);
    cr_expect_eq(mlp_load_file(path, dst, 2, NULL, 0), TWIG_ECORRUPT);
    write_bytes(path, img, 10);
    cr_expect_eq(mlp_load_file(path, dst, 2, NULL, 0), TWIG_ECORRUPT);

    // wrong version
    memcpy(bad, img, n);
    bad[8] = 9;
    write_bytes(path, bad, n);
    cr_expect_eq(mlp_load_file(path, dst, 2, NULL, 0), TWIG_EVERSION);
    cr_expect(strstr(err_msg(), "version 9") != NULL, "%s", err_msg());

    // wrong magic
    memcpy(bad, img, n);
    bad[0] = 'X';
    write_bytes(path, bad, n);
    cr_expect_eq(mlp_load_file(path, dst, 2, NULL, 0), TWIG_ECORRUPT);
    cr_expect(strstr(err_msg(), "magic") != NULL, "%s", err_msg());

    // a valid file for other shapes
    mlp_t *swapped[2] = {&b2, &a2};
    write_bytes(path, img, n);
    cr_expect_eq(mlp_load_file(path, swapped, 2, NULL, 0), TWIG_EMISMATCH);
    cr_expect_eq(mlp_load_file(path, dst, 1, NULL, 0), TWIG_EMISMATCH);

    // missing file
    char missing[300];
    snprintf(missing, sizeof(missing), "%s/none.bin", tmpdir);
    cr_expect_eq(mlp_load_file(missing, dst, 2, NULL, 0), -ENOENT);

    // nothing was written by any refused load
    cr_expect_eq(a2.p.params[0], before);
    free(img);
    free(bad);
    mlp_free(&a);
    mlp_free(&b);
    mlp_free(&a2);
    mlp_free(&b2);
    rm_tmp();
}

/* ---- weight blobs ---- */

