/* nn.c - activations and the fused bias/activation passes around a GEMM */
#include "common/nn.h"

#include <math.h>

/* ---- activations ---- */

void nn_relu_forward(float *h, const float *z, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h[i] = z[i] > 0.0f ? z[i] : 0.0f;
    }
}

void nn_relu_backward(float *dz, const float *dh, const float *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        dz[i] = h[i] > 0.0f ? dh[i] : 0.0f;
    }
}

/* sigmoid without overflow for large |z| */
static inline float sigmoidf(float z)
{
    if (z >= 0.0f) {
        return 1.0f / (1.0f + expf(-z));
    }
    float e = expf(z);
    return e / (1.0f + e);
}

void nn_swish_forward(float *h, const float *z, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h[i] = z[i] * sigmoidf(z[i]);
    }
}

void nn_swish_backward(float *dz, const float *dh, const float *z, size_t n)
{
    // d/dz z s(z) = s + z s (1 - s)
    for (size_t i = 0; i < n; i++) {
        float s = sigmoidf(z[i]);
        dz[i] = dh[i] * s * (1.0f + z[i] * (1.0f - s));
    }
}

/* ---- fused passes ---- */

void nn_bias_act_forward(float *h, float *z, const float *b, nn_act act, int B, int N)
{
    for (int i = 0; i < B; i++) {
        float *zr = z + (size_t)i * N;
        float *hr = h + (size_t)i * N;
        switch (act) {
        case NN_ACT_NONE:
            for (int j = 0; j < N; j++) {
                hr[j] = zr[j] + b[j];
            }
            break;
        case NN_ACT_RELU:
            for (int j = 0; j < N; j++) {
                float v = zr[j] + b[j];
                hr[j] = v > 0.0f ? v : 0.0f;
            }
            break;
        case NN_ACT_SWISH:
            for (int j = 0; j < N; j++) {
                zr[j] += b[j];
            }
            nn_swish_forward(hr, zr, (size_t)N);
            break;
        }
    }
}

void nn_act_bias_backward(float *dz, float *db, const float *dh, const float *z, const float *h,
                          nn_act act, int B, int N)
{
    for (int i = 0; i < B; i++) {
        size_t o = (size_t)i * N;
        switch (act) {
        case NN_ACT_NONE:
            if (dz != dh) {
                for (int j = 0; j < N; j++) {
                    dz[o + j] = dh[o + j];
                }
            }
            break;
        case NN_ACT_RELU:
            nn_relu_backward(dz + o, dh + o, h + o, (size_t)N);
            break;
        case NN_ACT_SWISH:
            nn_swish_backward(dz + o, dh + o, z + o, (size_t)N);
            break;
        }
        if (db) {
            for (int j = 0; j < N; j++) {
                db[j] += dz[o + j];
            }
        }
    }
}
