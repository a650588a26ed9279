/* tests of the vectorisable exp and sigmoid (common/nn/nn_math.h) against libm */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>

#include "common/nn/nn_math.h"

/* relative error of the scalar and 8-lane exp over the clamped range, and the clamps */
Test(nn_math, expf_matches_libm_to_a_few_ulp)
{
    double worst = 0.0;
    float lanes[8], out[8];
    int n = 0;
    for (float x = -87.0f; x <= 88.0f; x += 0.01173f) {
        double ref = exp((double)x);
        double rel = fabs((double)nn_expf(x) - ref) / ref;
        worst = rel > worst ? rel : worst;
        lanes[n % 8] = x;
        if (++n % 8 == 0) {
            nn_v8_store(out, nn_v8_expf(nn_v8_load(lanes)));
            for (int k = 0; k < 8; k++) {
                double rk = exp((double)lanes[k]);
                double e = fabs((double)out[k] - rk) / rk;
                worst = e > worst ? e : worst;
            }
        }
    }
    cr_expect_gt(n, 10000);
    cr_expect_lt(worst, 4.0 * FLT_EPSILON, "worst relative error %g", worst);
    /* far outside: finite, saturating */
    cr_expect(isfinite(nn_expf(1000.0f)) && nn_expf(1000.0f) > 1e38f);
    cr_expect(nn_expf(-1000.0f) >= 0.0f && nn_expf(-1000.0f) < 2e-38f);
    cr_expect_float_eq(nn_sigmoidf(-1000.0f), 0.0f, 1e-30f);
    cr_expect_float_eq(nn_sigmoidf(1000.0f), 1.0f, 0.0f);
    cr_expect_float_eq(nn_sigmoidf(0.0f), 0.5f, 0.0f);
}

/* log over many decades, and softplus/sigmoid against libm for both signs */
Test(nn_math, logf_and_softplus_match_libm)
{
    double worst_log = 0.0, worst_sp = 0.0, worst_sig = 0.0;
    float xs[8], out[8];
    int n = 0;
    for (float x = 1e-30f; x < 1e30f; x *= 1.0137f) {
        xs[n % 8] = x;
        if (++n % 8 == 0) {
            nn_v8_store(out, nn_v8_logf(nn_v8_load(xs)));
            for (int k = 0; k < 8; k++) {
                double ref = log((double)xs[k]);
                double err = fabs(out[k] - ref) / fmax(fabs(ref), 1.0);
                worst_log = err > worst_log ? err : worst_log;
            }
        }
    }
    cr_expect_gt(n, 5000);
    cr_expect_lt(worst_log, 4.0 * FLT_EPSILON, "log: worst error %g", worst_log);
    for (float x = -60.0f; x < 60.0f; x += 8 * 0.0371f) {
        for (int k = 0; k < 8; k++) {
            xs[k] = x + 0.0371f * k;
        }
        nn_v8f sig;
        nn_v8_store(out, nn_v8_softplus_sigmoid(nn_v8_load(xs), &sig));
        for (int k = 0; k < 8; k++) {
            double ref = log1p(exp(-fabs((double)xs[k]))) + fmax((double)xs[k], 0.0);
            double err = fabs(out[k] - ref) / fmax(ref, 1e-3);
            worst_sp = err > worst_sp ? err : worst_sp;
            double rs = 1.0 / (1.0 + exp(-(double)xs[k]));
            double es = fabs(sig[k] - rs) / rs;
            worst_sig = es > worst_sig ? es : worst_sig;
        }
    }
    cr_expect_lt(worst_sp, 1e-5, "softplus: worst error %g", worst_sp);
    cr_expect_lt(worst_sig, 4.0 * FLT_EPSILON, "sigmoid: worst error %g", worst_sig);
}
