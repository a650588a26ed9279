/* nn.h - layer primitives, Adam over a flat block, and the MLP.
 *
 * Everything here writes into caller buffers and never allocates, except the _init functions.
 * Matrices are row-major, a batch is B rows. A linear layer's weight is stored (in, out), so
 * the forward pass is one plain GEMM, y(B,out) = x(B,in) * w(in,out) + b(out).
 *
 *     mlp_t net = {0};                                     // a trainer's net
 *     const int sizes[] = {23, 256, 256, 1};
 *     mlp_init(&net, sizes, 3, NN_ACT_RELU, 256, &rng);   // params, workspace, training state
 *     mlp_forward(&net.p, &net.work, y, x, B);             // keeps activations for backward
 *     mlp_zero_grad(&net.train);
 *     mlp_backward(&net.p, &net.work, &net.train, NULL, dy, true);   // grads += ...; no dx
 *     mlp_adam_step(&net.p, &net.train, &adam_cfg);
 *     mlp_save_file("net.bin", (mlp_t *[]){&net}, 1, NULL, 0);   // params + Adam state
 *     mlp_free(&net);
 *
 *     mlp_params p = {0};  mlp_work w = {0};               // an inference user's net
 *     mlp_params_init(&p, sizes, 3, NN_ACT_RELU, &rng);
 *     mlp_work_init(&w, &p, max_batch);
 *     mlp_forward(&p, &w, y, x, B);
 *
 * Adam (nn_adam_step) and the activations are general and used by the ensemble too.
 * Parameters to and from the wire's WeightBlob: common/nn_blob.h.
 */
#ifndef TWIG_NN_H
#define TWIG_NN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/base/rng.h"

/* ---- GEMM hook -------------------------------------------------------------------------- */

/* the signature of nn_gemm (common/nn/nn_gemm.h); nets hold one so that a test or a benchmark
 * can run the same computation through nn_gemm_naive as a reference */
typedef void nn_gemm_fn(float *c, const float *a, const float *b, int M, int N, int K, bool trans_a,
                        bool trans_b, float alpha, float beta, int lda, int ldb, int ldc);

/* ---- activations ------------------------------------------------------------------------ */

typedef enum nn_act {
    NN_ACT_NONE = 0,
    NN_ACT_RELU = 1,
    NN_ACT_SWISH = 2, /* x * sigmoid(x), a.k.a. SiLU */
} nn_act;

/* h = max(z, 0); h may alias z */
void nn_relu_forward(float *h, const float *z, size_t n);
/* dz = dh * (h > 0); dz may alias dh. h is the forward output (h > 0 iff z > 0) */
void nn_relu_backward(float *dz, const float *dh, const float *h, size_t n);
/* h = z * sigmoid(z); h must not alias z (backward needs z) */
void nn_swish_forward(float *h, const float *z, size_t n);
/* dz = dh * s * (1 + z (1 - s)), s = sigmoid(z); dz may alias dh */
void nn_swish_backward(float *dz, const float *dh, const float *z, size_t n);

/* ---- fused linear-layer pieces ---------------------------------------------------------- */

/* z(B,N) += b(N) row-wise, then h = act(z). For NONE and RELU h may alias z; SWISH keeps z */
void nn_bias_act_forward(float *h, float *z, const float *b, nn_act act, int B, int N);

/* dz = dh * act'(z) (z for SWISH, h for RELU, ignored for NONE), and if db is non-NULL
 * db(N) += column sums of dz. dz may alias dh */
void nn_act_bias_backward(float *dz, float *db, const float *dh, const float *z, const float *h,
                          nn_act act, int B, int N);

/* ---- Adam ------------------------------------------------------------------------------- */

typedef struct nn_adam_cfg {
    float lr;           /* 3e-4 for SAC, 1e-3 for the ensemble */
    float beta1;        /* 0.9 */
    float beta2;        /* 0.999 */
    float eps;          /* 1e-8, added to sqrt(v_hat) as in PyTorch */
    float weight_decay; /* 0: none; default for blocks without a group */
    bool decoupled;     /* true: AdamW (p -= lr*wd*p); false: L2, g += wd*p */
    float clip_norm;    /* > 0: scale gradients so their global L2 norm is at most this */
} nn_adam_cfg;

/* PyTorch's defaults with the given learning rate */
nn_adam_cfg nn_adam_default(float lr);

/* the moments of one flat parameter block: m and v each one block of n floats */
typedef struct nn_adam_state {
    float *m; /* (n) first moment, owned */
    float *v; /* (n) second moment, owned */
    size_t n;
    int64_t t; /* steps taken */
} nn_adam_state;

/* a range of the block with its own weight decay (the ensemble's per-layer L2) */
typedef struct nn_adam_group {
    size_t offset;
    size_t n;
    float weight_decay;
} nn_adam_group;

/* zeroed moments for n parameters (64-byte aligned) */
void nn_adam_init(nn_adam_state *st, size_t n);
void nn_adam_free(nn_adam_state *st);
void nn_adam_reset(nn_adam_state *st);

/* L2 norm of g(n), accumulated in double */
double nn_grad_norm(const float *g, size_t n);

/* one step over params(n) with grads(n): t += 1, bias-corrected update as torch.optim.Adam
 * (or AdamW when decoupled). Clipping uses the norm of this block. */
void nn_adam_step(const nn_adam_cfg *cfg, nn_adam_state *st, float *params, const float *grads,
                  size_t n);

/* the same, but each group uses its own weight decay; ranges outside every group use
 * cfg->weight_decay. Groups are sorted by offset and do not overlap. */
void nn_adam_step_groups(const nn_adam_cfg *cfg, nn_adam_state *st, float *params,
                         const float *grads, size_t n, const nn_adam_group *groups, int n_groups);

/* ---- MLP -------------------------------------------------------------------------------- */

/* MuJoCo's model/data split, for networks. A net is its parameters (mlp_params: shape and one
 * block of weights, read-only while in use, shareable between threads) plus, per user:
 *   mlp_work   the forward pass' activations for up to max_batch rows (every user)
 *   mlp_train  grads, Adam moments and the backward scratch (trainers only)
 * An inference user (common/nn/policy.h) allocates params + work and nothing else; a trainer
 * (common/nn/sac.h) holds the three together in an mlp_t. */

#define MLP_MAX_LAYERS 8

/* one tensor of the parameter block: layer l's weight (in, out) or bias (out) */
typedef struct mlp_tensor {
    char name[16];  /* "w0", "b0", ... */
    int rows, cols; /* bias: rows 1 */
    size_t offset;  /* in floats, into params (and grads, m, v, which share the layout) */
} mlp_tensor;

typedef struct mlp_params {
    int n_layers;                  /* linear layers */
    int sizes[MLP_MAX_LAYERS + 1]; /* sizes[0] input ... sizes[n_layers] output */
    nn_act act;                    /* hidden activation; the output layer is linear */
    nn_gemm_fn *gemm;              /* nn_gemm unless a test swaps in the naive one */

    /* one block, tensors pointed in from the table */
    size_t n_params;
    float *params; /* (n_params) owned */
    mlp_tensor tensors[2 * MLP_MAX_LAYERS];
    float *w[MLP_MAX_LAYERS]; /* (sizes[l], sizes[l+1]) into params */
    float *b[MLP_MAX_LAYERS]; /* (sizes[l+1]) into params */
} mlp_params;

/* the forward pass' workspace: what the last forward kept for a backward */
typedef struct mlp_work {
    int max_batch;
    float *block;             /* owned, one block */
    const float *x;           /* borrowed input of the last forward */
    float *z[MLP_MAX_LAYERS]; /* (max_batch, sizes[l+1]) pre-activations of hidden layers */
    float *h[MLP_MAX_LAYERS]; /* (max_batch, sizes[l+1]) activations (== z unless swish) */
    int last_batch;
} mlp_work;

/* the training state: gradients, Adam moments (m, v, step count) and backward scratch */
typedef struct mlp_train {
    int max_batch;
    float *grads;              /* (n_params) owned, laid out as params */
    float *dw[MLP_MAX_LAYERS]; /* into grads */
    float *db[MLP_MAX_LAYERS];
    nn_adam_state adam; /* m, v: (n_params) each, owned; t: steps taken */
    float *scratch;     /* owned: dh[0], dh[1] */
    float *dh[2];       /* (max_batch, max width) ping-pong gradient buffers */
} mlp_train;

/* a net of a trainer: its parameters with a workspace and the training state. A net that is
 * never stepped (SAC's Polyak targets) may leave train zeroed: its image then carries step 0
 * and zero moments, and reading one skips them */
typedef struct mlp {
    mlp_params p;
    mlp_work work;
    mlp_train train;
} mlp_t;

/* sizes[0..n_layers]; weights as torch.nn.Linear (U(+-1/sqrt(in)) for w and b).
 * returns 0 or -EINVAL (err_msg names the bad size) */
int mlp_params_init(mlp_params *p, const int *sizes, int n_layers, nn_act act, rng_t *rng);
void mlp_params_free(mlp_params *p);

/* activations for batches up to max_batch of p's shape; 0 or -EINVAL */
int mlp_work_init(mlp_work *w, const mlp_params *p, int max_batch);
void mlp_work_free(mlp_work *w);

/* zeroed grads and moments and backward scratch for batches up to max_batch; 0 or -EINVAL */
int mlp_train_init(mlp_train *t, const mlp_params *p, int max_batch);
void mlp_train_free(mlp_train *t);

/* all three of a trained net; 0 or -EINVAL. mlp_free is safe on a zeroed net */
int mlp_init(mlp_t *net, const int *sizes, int n_layers, nn_act act, int max_batch, rng_t *rng);
void mlp_free(mlp_t *net);

/* y(B, out) = p(x(B, in)), B <= w->max_batch; keeps x (borrowed) and the activations in w
 * for a backward */
void mlp_forward(const mlp_params *p, mlp_work *w, float *y, const float *x, int B);

/* gradients of w's last forward: t->grads += dL/dparams for dy = dL/dy (B, out); if dx is
 * non-NULL writes dL/dx (B, in). With accumulate_params false, grads are left alone (a frozen
 * net that only passes gradients back to its input). */
void mlp_backward(const mlp_params *p, const mlp_work *w, mlp_train *t, float *dx, const float *dy,
                  bool accumulate_params);

/* the same with accumulate_params, but the grads are overwritten instead of added to: one
 * backward per step needs no mlp_zero_grad first */
void mlp_backward_set(const mlp_params *p, const mlp_work *w, mlp_train *t, float *dx,
                      const float *dy);

/* the input gradient of the last forward for some rows only (a frozen net): rows(n_rows)
 * index the batch, dy is the full (B, out) gradient whose other rows count as zero, and only
 * input columns [col0, col0 + ncols) are wanted. Writes dx(n_rows, ncols) in rows' order.
 * Grads untouched (t lends its scratch). Cost scales with n_rows: SAC's actor step
 * back-propagates each row through the one critic that is the minimum there. */
void mlp_backward_input_rows(const mlp_params *p, const mlp_work *w, mlp_train *t, float *dx,
                             const float *dy, const int *rows, int n_rows, int col0, int ncols);

void mlp_zero_grad(mlp_train *t);
/* p -= Adam's step for t's grads */
void mlp_adam_step(mlp_params *p, mlp_train *t, const nn_adam_cfg *cfg);

/* params = (1 - tau) params + tau src, the Polyak average of a target network */
void mlp_polyak(mlp_params *dst, const mlp_params *src, float tau);
/* dst's parameters become src's (same sizes) */
void mlp_copy_params(mlp_params *dst, const mlp_params *src);

/* ---- saving -------------------------------------------------------------------------- */

/* binary format (little endian): magic "TWIGNN\0\0", u32 version, u32 n_nets, then per net
 * u32 n_layers, u32 act, u32 sizes[n_layers+1], i64 adam_t, u64 n_params, f32 params, m, v
 * (n_params each); then the caller's extra bytes; finally u32 crc32c of everything before it. */
#define MLP_FILE_VERSION 1u

/* save several nets (with their Adam state) into one file, atomically (tmp + rename).
 * extra (n_extra bytes) rides along (SAC's temperature, counters, rng). returns 0 or -errno */
int mlp_save_file(const char *path, mlp_t *const *nets, int n_nets, const void *extra,
                  size_t n_extra);
/* load into nets already initialised with the same shapes; refuses a wrong magic, version,
 * shape, a short file, or a checksum mismatch with -TWIG_E* and err_msg naming the problem */
int mlp_load_file(const char *path, mlp_t *const *nets, int n_nets, void *extra, size_t n_extra);

/* the same, in memory: size of the image, and writing/reading one */
size_t mlp_image_size(mlp_t *const *nets, int n_nets, size_t n_extra);
void mlp_image_write(uint8_t *buf, mlp_t *const *nets, int n_nets, const void *extra,
                     size_t n_extra);
int mlp_image_read(const uint8_t *buf, size_t len, mlp_t *const *nets, int n_nets, void *extra,
                   size_t n_extra);

#endif
