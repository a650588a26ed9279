/* nn_ref.h - double-precision reference forward of an mlp_t, for finite-difference tests.
 * Parameters are passed as a double copy of net->p.params (same layout), so a test can perturb
 * one coordinate and re-evaluate a loss exactly. Small nets only: B * width <= NN_REF_MAX. */
#ifndef TWIG_TESTS_NN_REF_H
#define TWIG_TESTS_NN_REF_H

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/nn/nn.h"

#define NN_REF_MAX 4096

static inline double nn_ref_act(nn_act act, double z)
{
    switch (act) {
    case NN_ACT_RELU:
        return z > 0 ? z : 0;
    case NN_ACT_SWISH:
        return z / (1.0 + exp(-z));
    default:
        return z;
    }
}

/* y(B, out) from x(B, in) with the parameters p laid out as net's */
static inline void nn_ref_forward(const mlp_t *net, const double *p, double *y, const double *x,
                                  int B)
{
    double a[NN_REF_MAX], nxt[NN_REF_MAX];
    int in = net->p.sizes[0];
    memcpy(a, x, sizeof(double) * (size_t)B * in);
    for (int l = 0; l < net->p.n_layers; l++) {
        int out = net->p.sizes[l + 1];
        const double *w = p + net->p.tensors[2 * l].offset;
        const double *b = p + net->p.tensors[2 * l + 1].offset;
        for (int i = 0; i < B; i++) {
            for (int j = 0; j < out; j++) {
                double s = b[j];
                for (int k = 0; k < in; k++) {
                    s += a[i * in + k] * w[k * out + j];
                }
                nxt[i * out + j] = l == net->p.n_layers - 1 ? s : nn_ref_act(net->p.act, s);
            }
        }
        memcpy(a, nxt, sizeof(double) * (size_t)B * out);
        in = out;
    }
    memcpy(y, a, sizeof(double) * (size_t)B * in);
}

/* a double copy of a net's parameters (free it) */
static inline double *nn_ref_params(const mlp_t *net)
{
    double *p = calloc(net->p.n_params, sizeof(double));
    for (size_t i = 0; i < net->p.n_params; i++) {
        p[i] = net->p.params[i];
    }
    return p;
}

#endif
