/* mlp_small.h - two small nets with non-trivial Adam moments, for the nn tests (test_nn.c)
 * and the wire codec's (tests/common/rpc/test_weight_blobs.c) */
#ifndef TWIG_TEST_MLP_SMALL_H
#define TWIG_TEST_MLP_SMALL_H

#include <criterion/criterion.h>

#include "common/base/rng.h"
#include "common/nn/nn.h"

/* two nets trained a few Adam steps so the moments are non-trivial */
static inline void make_trained(mlp_t *a, mlp_t *b, uint64_t seed)
{
    rng_t rng;
    rng_seed(&rng, seed);
    const int sa[] = {5, 16, 16, 2};
    const int sb[] = {5, 8, 1};
    cr_assert_eq(mlp_init(a, sa, 3, NN_ACT_SWISH, 8, &rng), 0);
    cr_assert_eq(mlp_init(b, sb, 2, NN_ACT_RELU, 8, &rng), 0);
    float x[8 * 5], y[16], dy[16];
    rng_fill_normal(&rng, x, 40);
    nn_adam_cfg cfg = nn_adam_default(1e-2f);
    for (int s = 0; s < 3; s++) {
        mlp_t *nets[2] = {a, b};
        for (int k = 0; k < 2; k++) {
            mlp_forward(&nets[k]->p, &nets[k]->work, y, x, 8);
            for (int i = 0; i < 8 * nets[k]->p.sizes[nets[k]->p.n_layers]; i++) {
                dy[i] = y[i] - 1.0f;
            }
            mlp_zero_grad(&nets[k]->train);
            mlp_backward(&nets[k]->p, &nets[k]->work, &nets[k]->train, NULL, dy, true);
            mlp_adam_step(&nets[k]->p, &nets[k]->train, &cfg);
        }
    }
}

#endif
