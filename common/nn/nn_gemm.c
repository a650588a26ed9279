/* nn_gemm.c - sgemm through OpenBLAS, and the naive reference */
#include "common/nn/nn_gemm.h"

#include <cblas.h>

void nn_gemm(float *c, const float *a, const float *b, int M, int N, int K, bool trans_a,
             bool trans_b, float alpha, float beta, int lda, int ldb, int ldc)
{
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha, a, lda, b, ldb, beta, c,
                ldc);
}

void nn_gemm_naive(float *c, const float *a, const float *b, int M, int N, int K, bool trans_a,
                   bool trans_b, float alpha, float beta, int lda, int ldb, int ldc)
{
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            double acc = 0.0;
            for (int k = 0; k < K; k++) {
                float av = trans_a ? a[k * lda + i] : a[i * lda + k];
                float bv = trans_b ? b[j * ldb + k] : b[k * ldb + j];
                acc += (double)av * bv;
            }
            float prev = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
            c[i * ldc + j] = alpha * (float)acc + prev;
        }
    }
}

void nn_gemm_set_threads(int n)
{
    openblas_set_num_threads(n);
}

const char *nn_gemm_core_name(void)
{
    return openblas_get_corename();
}
