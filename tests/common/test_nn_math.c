/* tests of the vectorisable exp and sigmoid (common/nn_math.h) against libm */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>

#include "common/nn_math.h"

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
