/* the WeightBlob codecs (common/rpc/ensemble_blob.h): what is packed loads back the same,
 * and every kind of damage a peer could send is refused before anything is allocated */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/err.h"
#include "common/base/mem.h"
#include "common/nn/nn_gemm.h"
#include "common/rpc/ensemble_blob.h"
#include "tests/common/nn/ensemble_small.h"

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
