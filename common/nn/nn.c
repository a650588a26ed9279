/* nn.c - activations and the fused bias/activation passes around a GEMM */
#include "common/nn/nn.h"

#include <math.h>
#include <string.h>

#include "common/nn/nn_math.h"

/* ---- activations ---- */

void nn_relu_forward(float *h, const float *z, size_t n)
{
#pragma GCC ivdep
    for (size_t i = 0; i < n; i++) {
        h[i] = z[i] > 0.0f ? z[i] : 0.0f;
    }
}

void nn_relu_backward(float *dz, const float *dh, const float *h, size_t n)
{
#pragma GCC ivdep
    for (size_t i = 0; i < n; i++) {
        dz[i] = h[i] > 0.0f ? dh[i] : 0.0f;
    }
}

void nn_swish_forward(float *h, const float *z, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        nn_v8f v = nn_v8_load(z + i);
        nn_v8_store(h + i, v * nn_v8_sigmoidf(v));
    }
    for (; i < n; i++) {
        h[i] = z[i] * nn_sigmoidf(z[i]);
    }
}

void nn_swish_backward(float *dz, const float *dh, const float *z, size_t n)
{
    // d/dz z s(z) = s + z s (1 - s)
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        nn_v8f v = nn_v8_load(z + i);
        nn_v8f s = nn_v8_sigmoidf(v);
        nn_v8_store(dz + i, nn_v8_load(dh + i) * s * (1.0f + v * (1.0f - s)));
    }
    for (; i < n; i++) {
        float s = nn_sigmoidf(z[i]);
        dz[i] = dh[i] * s * (1.0f + z[i] * (1.0f - s));
    }
}

void nn_bias_act_forward(float *h, float *z, const float *b, nn_act act, int B, int N)
{
    for (int i = 0; i < B; i++) {
        float *zr = z + (size_t)i * N;
        float *hr = h + (size_t)i * N;
        switch (act) {
        case NN_ACT_NONE:
#pragma GCC ivdep
            for (int j = 0; j < N; j++) {
                hr[j] = zr[j] + b[j];
            }
            break;
        case NN_ACT_RELU:
#pragma GCC ivdep
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
    // one pass per row: dz = dh * act'(.), and the column sums for db; dz may alias dh, db
    // never does, so the inner loops carry no dependence (ivdep lets them vectorise)
    for (int i = 0; i < B; i++) {
        size_t o = (size_t)i * N;
        const float *dhr = dh + o;
        float *dzr = dz + o;
        switch (act) {
        case NN_ACT_NONE:
            if (dz != dh) {
                memcpy(dzr, dhr, sizeof(float) * (size_t)N);
            }
            break;
        case NN_ACT_RELU: {
            const float *hr = h + o;
#pragma GCC ivdep
            for (int j = 0; j < N; j++) {
                dzr[j] = hr[j] > 0.0f ? dhr[j] : 0.0f;
            }
            break;
        }
        case NN_ACT_SWISH:
            nn_swish_backward(dzr, dhr, z + o, (size_t)N);
            break;
        }
        if (db) {
#pragma GCC ivdep
            for (int j = 0; j < N; j++) {
                db[j] += dzr[j];
            }
        }
    }
}
