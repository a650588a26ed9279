/* nn_gemm: the BLAS call agrees with the naive reference for every transpose combination */
#include <criterion/criterion.h>
#include <stdbool.h>
#include <math.h>

#include "common/base/rng.h"
#include "common/nn/nn_gemm.h"

Test(nn_gemm, blas_matches_naive_for_all_transposes)
{
    rng_t r;
    rng_seed(&r, 7);
    enum { M = 13, N = 9, K = 21 };
    float a[K * K + M * K], b[K * N + N * K], c1[M * N], c2[M * N];
    for (int t = 0; t < 4; t++) {
        bool ta = t & 1, tb = t & 2;
        for (int i = 0; i < M * K; i++) {
            a[i] = rng_normal_f32(&r);
        }
        for (int i = 0; i < K * N; i++) {
            b[i] = rng_normal_f32(&r);
        }
        for (int i = 0; i < M * N; i++) {
            c1[i] = c2[i] = rng_normal_f32(&r);
        }
        int lda = ta ? M : K, ldb = tb ? K : N;
        nn_gemm(c1, a, b, M, N, K, ta, tb, 0.5f, 1.0f, lda, ldb, N);
        nn_gemm_naive(c2, a, b, M, N, K, ta, tb, 0.5f, 1.0f, lda, ldb, N);
        for (int i = 0; i < M * N; i++) {
            cr_expect(fabsf(c1[i] - c2[i]) < 1e-4f, "trans %d elem %d: %f vs %f", t, i, c1[i],
                      c2[i]);
        }
    }
}
