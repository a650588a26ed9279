/* the WeightBlob codecs (common/rpc/nn_blob.h, common/rpc/ensemble_blob.h): what is packed loads back the same,
 * and every kind of damage a peer could send is refused before anything is allocated */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/crc32c.h"
#include "common/base/err.h"
#include "common/base/mem.h"
#include "common/nn/nn_gemm.h"
#include "common/rpc/ensemble_blob.h"
#include "common/rpc/nn_blob.h"
#include "tests/common/nn/ensemble_small.h"
#include "tests/common/nn/mlp_small.h"

static void setup(void)
{
    nn_gemm_set_threads(1);
}

TestSuite(ensemble_blob, .init = setup);

Test(ensemble_blob, round_trip_and_refusals)
{
    rng_t r;
    rng_seed(&r, 10);
    ensemble_t e = {0};
    small_trained(&e, &r);
    ensemble_blob_t *b = xmalloc(sizeof *b);
    ensemble_blob_init(b, &e, 42, "Test-v0");
    size_t n = twig__v1__weight_blob__get_packed_size(&b->msg);
    uint8_t *wire = xmalloc(n);
    cr_assert_eq(twig__v1__weight_blob__pack(&b->msg, wire), n);
    ensemble_blob_free(b);

    Twig__V1__WeightBlob *msg = twig__v1__weight_blob__unpack(NULL, n, wire);
    cr_assert_not_null(msg);
    cr_expect_eq(msg->kind, TWIG__V1__WEIGHT_KIND__WEIGHT_KIND_MODEL);
    cr_expect_eq(msg->version, 42);
    cr_expect_str_eq(msg->env_id, "Test-v0");
    cr_expect_eq(msg->n_stats, 4);
    bool saw_elites_stat = false;
    for (size_t i = 0; i < msg->n_stats; i++) {
        if (strcmp(msg->stats[i]->key, "holdout_mse.1") == 0) {
            cr_expect_float_eq(msg->stats[i]->value, e.holdout_mse[1], 0.0f);
        }
        saw_elites_stat |= strcmp(msg->stats[i]->key, "holdout_mse_elites") == 0;
    }
    cr_expect(saw_elites_stat);

    ensemble_t l = {0};
    cr_assert_eq(ensemble_from_blob(&l, msg), 0, "%s", err_msg());
    cr_expect_eq(l.cfg.n_members, 3);
    cr_expect_eq(l.cfg.n_elites, 2);
    cr_expect_eq(l.cfg.n_layers, 2);
    cr_expect_eq(l.cfg.n_hidden, 16);
    cr_expect(l.cfg.learn_reward);
    expect_same_predictions(&e, &l);
    ensemble_free(&l);

    /* a damaged byte of data: crc */
    msg->data.data[msg->data.len / 3] ^= 1;
    cr_expect_eq(ensemble_from_blob(&l, msg), TWIG_ECORRUPT);
    cr_expect_null(l.params);
    msg->data.data[msg->data.len / 3] ^= 1;

    /* a wrong shape */
    Twig__V1__Tensor *t1 = msg->tensors[1]; /* l0.b (E, H) */
    t1->shape[1] = 17;
    cr_expect_eq(ensemble_from_blob(&l, msg), -EINVAL);
    cr_expect(strstr(err_msg(), "l0.b") != NULL, "%s", err_msg());
    t1->shape[1] = 16;

    /* huge claimed dimensions: refused by the data's size before allocating */
    Twig__V1__Tensor *t0 = msg->tensors[0]; /* l0.w (E, n_in, H) */
    t0->shape[2] = 4096;
    cr_expect_eq(ensemble_from_blob(&l, msg), -EINVAL);
    cr_expect(strstr(err_msg(), "need") != NULL, "%s", err_msg());
    cr_expect_null(l.params);
    t0->shape[2] = 16;

    /* a tensor running past the data */
    uint64_t keep = t1->offset;
    t1->offset = msg->data.len - 4;
    cr_expect_eq(ensemble_from_blob(&l, msg), -EINVAL);
    t1->offset = keep;

    /* a missing tensor (renamed) */
    char *name = msg->tensors[msg->n_tensors - 4]->name; /* out_sd */
    name[0] = 'x';
    cr_expect_eq(ensemble_from_blob(&l, msg), -EINVAL);
    cr_expect(strstr(err_msg(), "out_sd") != NULL, "%s", err_msg());
    name[0] = 'o';

    /* a policy blob is not a model */
    msg->kind = TWIG__V1__WEIGHT_KIND__WEIGHT_KIND_POLICY;
    cr_expect_eq(ensemble_from_blob(&l, msg), -EINVAL);
    msg->kind = TWIG__V1__WEIGHT_KIND__WEIGHT_KIND_MODEL;

    /* and it still loads after the repairs */
    cr_expect_eq(ensemble_from_blob(&l, msg), 0, "%s", err_msg());
    ensemble_free(&l);
    twig__v1__weight_blob__free_unpacked(msg, NULL);
    free(wire);
    free(b);
    ensemble_free(&e);
}

Test(nn_blob, round_trip_through_protobuf_and_refuse_damage)
{
    mlp_t a = {0}, b = {0}, a2 = {0}, b2 = {0};
    make_trained(&a, &b, 5);
    make_trained(&a2, &b2, 77);
    mlp_params *src[2] = {&a.p, &b.p}, *dst[2] = {&a2.p, &b2.p};
    const char *names[2] = {"pi", "q"};
    nn_blob *blob = calloc(1, sizeof(*blob));
    cr_assert_eq(nn_blob_build(blob, src, names, 2, TWIG__V1__WEIGHT_KIND__WEIGHT_KIND_POLICY, 7,
                               "Pendulum-v1"),
                 0, "%s", err_msg());
    cr_expect_eq(blob->msg.n_tensors, 10);
    size_t len = twig__v1__weight_blob__get_packed_size(&blob->msg);
    uint8_t *wire = malloc(len);
    cr_assert_eq(twig__v1__weight_blob__pack(&blob->msg, wire), len);
    Twig__V1__WeightBlob *got = twig__v1__weight_blob__unpack(NULL, len, wire);
    cr_assert(got);
    cr_expect_eq(got->version, 7);
    cr_expect_str_eq(got->env_id, "Pendulum-v1");
    cr_assert_eq(nn_blob_load(dst, names, 2, got), 0, "%s", err_msg());
    for (int k = 0; k < 2; k++) {
        for (int t = 0; t < 2 * src[k]->n_layers; t++) {
            const mlp_tensor *ts = &src[k]->tensors[t];
            cr_expect_eq(memcmp(src[k]->params + ts->offset, dst[k]->params + ts->offset,
                                sizeof(float) * ts->rows * ts->cols),
                         0);
        }
    }

    // damaged data, a wrong shape, a missing tensor, a NaN (with a matching crc)
    got->data.data[5] ^= 1;
    cr_expect_eq(nn_blob_load(dst, names, 2, got), TWIG_ECORRUPT);
    got->data.data[5] ^= 1;
    got->tensors[0]->shape[1] += 1;
    cr_expect_eq(nn_blob_load(dst, names, 2, got), TWIG_EMISMATCH);
    cr_expect(strstr(err_msg(), "pi.w0") != NULL, "%s", err_msg());
    got->tensors[0]->shape[1] -= 1;
    const char *other[2] = {"pi", "nope"};
    cr_expect_eq(nn_blob_load(dst, other, 2, got), TWIG_EMISMATCH);
    cr_expect(strstr(err_msg(), "nope.w0") != NULL, "%s", err_msg());
    float nan = NAN;
    memcpy(got->data.data, &nan, sizeof(nan));
    got->crc32c = crc32c(got->data.data, got->data.len);
    cr_expect_eq(nn_blob_load(dst, names, 2, got), -EINVAL);
    cr_expect(strstr(err_msg(), "not finite") != NULL, "%s", err_msg());
    twig__v1__weight_blob__free_unpacked(got, NULL);
    free(wire);
    nn_blob_free(blob);
    free(blob);
    mlp_free(&a);
    mlp_free(&b);
    mlp_free(&a2);
    mlp_free(&b2);
}
