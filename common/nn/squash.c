/* squash.c - see squash.h */
#include "common/nn/squash.h"

#include <math.h>
#include <stdbool.h>
#include <stddef.h>

#define HALF_LOG_2PI 0.91893853320467274f
#define LOG_2 0.69314718055994531f

/* log(1 + e^x) without overflow */
static inline float softplusf(float x)
{
    return x > 0.0f ? x + log1pf(expf(-x)) : log1pf(expf(x));
}

static inline float clamp_log_std(float v)
{
    return v < SQUASH_LOG_STD_MIN ? SQUASH_LOG_STD_MIN : v > SQUASH_LOG_STD_MAX ? SQUASH_LOG_STD_MAX : v;
}

void squash_forward(float *u, float *a, float *logp, const float *pi_out, const float *eps,
                    int B, int A)
{
    for (int i = 0; i < B; i++) {
        const float *mu = pi_out + (size_t)i * 2 * A;
        const float *ls_raw = mu + A;
        float lp = 0.0f;
        for (int j = 0; j < A; j++) {
            size_t k = (size_t)i * A + j;
            float ls = clamp_log_std(ls_raw[j]);
            float e = eps[k];
            float uk = mu[j] + expf(ls) * e;
            u[k] = uk;
            a[k] = tanhf(uk);
            // log N(u; mu, std) - log(1 - tanh(u)^2), the latter as 2 (log 2 - u - sp(-2u))
            lp += -0.5f * e * e - ls - HALF_LOG_2PI;
            lp -= 2.0f * (LOG_2 - uk - softplusf(-2.0f * uk));
        }
        logp[i] = lp;
    }
}

void squash_backward(float *dpi, const float *da, const float *dlogp, const float *pi_out,
                     const float *eps, const float *a, int B, int A)
{
    for (int i = 0; i < B; i++) {
        const float *ls_raw = pi_out + (size_t)i * 2 * A + A;
        float *dmu = dpi + (size_t)i * 2 * A;
        float *dls = dmu + A;
        for (int j = 0; j < A; j++) {
            size_t k = (size_t)i * A + j;
            // d logp / du = 2 tanh(u); d a / du = 1 - a^2
            float du = da[k] * (1.0f - a[k] * a[k]) + dlogp[i] * 2.0f * a[k];
            dmu[j] = du;
            bool live = ls_raw[j] >= SQUASH_LOG_STD_MIN && ls_raw[j] <= SQUASH_LOG_STD_MAX;
            float ls = clamp_log_std(ls_raw[j]);
            // u = mu + e^ls eps; logp has -ls directly
            dls[j] = live ? du * expf(ls) * eps[k] - dlogp[i] : 0.0f;
        }
    }
}
