/* nn_gemm.h - the one door to BLAS. Only nn_gemm.c includes cblas.h.
 *
 * Row-major single-precision GEMM: C(M,N) = alpha * op(A) * op(B) + beta * C, where op(X) is
 * X or X^T. Leading dimensions are the row strides of the matrices as stored.
 */
#ifndef TWIG_NN_GEMM_H
#define TWIG_NN_GEMM_H

#include <stdbool.h>

/* c: (M, ldc) written; a: (M,K) or (K,M) if trans_a; b: (K,N) or (N,K) if trans_b */
void nn_gemm(float *c, const float *a, const float *b, int M, int N, int K, bool trans_a,
             bool trans_b, float alpha, float beta, int lda, int ldb, int ldc);

/* the naive triple loop, kept beside the fast one as the reference for tests */
void nn_gemm_naive(float *c, const float *a, const float *b, int M, int N, int K, bool trans_a,
                   bool trans_b, float alpha, float beta, int lda, int ldb, int ldc);

/* set OpenBLAS's thread count for the calling process (1 in rollout workers and tests) */
void nn_gemm_set_threads(int n);

/* the kernel set OpenBLAS chose ("Haswell", "SkylakeX", ...), for benchmark reports */
const char *nn_gemm_core_name(void);

#endif
