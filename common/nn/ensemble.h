/* ensemble.h - MBPO's probabilistic dynamics ensemble: train, pick elites, predict.
 *
 * E members (MBPO: 7), each an MLP in(O + A) -> L x H swish -> 2 * n_out, where the n_out
 * outputs are the Gaussian mean and log-variance of y = (next_obs - obs, reward) (reward only
 * with learn_reward). The log-variance is soft-bounded by learned bounds shared by the members:
 *     lv = max_lv - softplus(max_lv - raw);  lv = min_lv + softplus(lv - min_lv)
 * Loss (Janner et al. 2019, MBPO, and its code jannerm/mbpo bnn.py), summed over members:
 *     mean_{rows,dims} (mu - y)^2 exp(-lv) + lv  +  0.01 (sum max_lv - sum min_lv)
 *     + sum_k 0.5 d_k |W_k|^2   (d = 2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4), Adam lr 1e-3.
 * Inputs and targets are standardised with statistics fitted on the training split; the
 * network works in that space, predictions are mapped back.
 *
 * Model and data are apart (MuJoCo's split): ensemble_t holds the parameters, normaliser,
 * elites and holdout errors and is only read by prediction; each thread owns its
 * ensemble_work_t; training state (gradients, Adam moments, activations) is an
 * ensemble_trainer_t. All three are sized at _init; predict and train steps never allocate.
 * Training writes the parameters: a model server trains its own ensemble_t and publishes
 * snapshots (ensemble_copy into a second one, or a WeightBlob); predictions never read an
 * ensemble that is being trained. Threads may share one ensemble_t for prediction.
 *
 *     ensemble_cfg cfg;
 *     ensemble_cfg_default(&cfg, n_obs, n_act);
 *     ensemble_t ens = {0};
 *     ensemble_init(&ens, &cfg, &rng);
 *     ensemble_trainer_t tr = {0};
 *     ensemble_train_cfg tcfg;
 *     ensemble_train_cfg_default(&tcfg, cfg.n_layers);
 *     ensemble_trainer_init(&tr, &ens, &tcfg);
 *     ensemble_train(&ens, &tr, &rng, &report, obs, act, next_obs, reward, N);  // MBPO fit
 *     ensemble_work_t w = {0};
 *     ensemble_work_init(&w, &ens, 2048);
 *     ensemble_predict(&ens, &w, &rng, next_obs, reward, member, obs, act, N, true);
 *
 * Parameter block layout (one block each for params, grads and both Adam moments), in the
 * order of the tensor table: for k = 0..L, w[k] (E, in_k, out_k) then b[k] (E, out_k); then
 * max_logvar (n_out) and min_logvar (n_out). out_L = 2 * n_out: means first, then raw
 * log-variances.
 */
#ifndef TWIG_ENSEMBLE_H
#define TWIG_ENSEMBLE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/nn/nn.h"
#include "common/base/rng.h"

#define ENSEMBLE_MAX_HIDDEN_LAYERS 8
#define ENSEMBLE_MAX_LINEAR (ENSEMBLE_MAX_HIDDEN_LAYERS + 1)
#define ENSEMBLE_MAX_MEMBERS 64
#define ENSEMBLE_MAX_DIM 4096 /* obs, act and hidden widths */
/* tensors of the table: w, b per linear layer, 2 bounds, 4 normaliser, holdout, elites, dims */
#define ENSEMBLE_MAX_TENSORS (2 * ENSEMBLE_MAX_LINEAR + 9)

typedef struct ensemble_cfg {
    int n_obs;         /* O */
    int n_act;         /* A */
    int n_members;     /* E, MBPO 7 */
    int n_elites;      /* MBPO 5 */
    int n_hidden;      /* H, MBPO 200 */
    int n_layers;      /* hidden layers, MBPO 4 */
    bool learn_reward; /* predict the reward too: n_out = O + 1 */
} ensemble_cfg;

typedef struct ensemble_train_cfg {
    float lr;                                /* Adam, 1e-3 */
    float weight_decay[ENSEMBLE_MAX_LINEAR]; /* L2 per linear layer (weights only) */
    float logvar_penalty;                    /* 0.01 on sum max_lv - sum min_lv */
    int batch;                               /* rows per member per step, 256 */
    float holdout_ratio;                     /* 0.2 */
    int max_holdout;                         /* 5000 */
    int patience;                            /* a fit stops after more epochs than this
                                              * without improvement, 5 */
    float improve_ratio;                     /* relative improvement that counts, 0.01 */
    int max_epochs;                          /* hard bound on one ensemble_train call */
    int min_epochs;                          /* patience may stop a fit only after these */
    bool keep_function; /* the weights come from an earlier fit: when ensemble_train refits
                         * the normaliser, re-express them so training starts from the same
                         * function (ensemble_renormalise) instead of a rescaled one */
} ensemble_train_cfg;

/* one tensor of the table that drives sizes, pointers, the file image and the WeightBlob */
typedef struct ensemble_tensor {
    char name[16]; /* "l0.w", "max_logvar", "in_mu", ... */
    int ndim;
    uint32_t shape[3];
    size_t count; /* product of shape */
    float *data;  /* into the ensemble's blocks; NULL for elites and dims */
} ensemble_tensor;

typedef struct ensemble {
    ensemble_cfg cfg;
    nn_gemm_fn *gemm;                   /* nn_gemm; a check may swap in nn_gemm_naive */
    int n_in;                           /* O + A */
    int n_out;                          /* O + learn_reward */
    int n_linear;                       /* n_layers + 1 */
    int sizes[ENSEMBLE_MAX_LINEAR + 1]; /* n_in, H, ..., H, 2 * n_out */

    size_t n_params;
    float *params;                 /* (n_params) owned, one block */
    float *w[ENSEMBLE_MAX_LINEAR]; /* (E, sizes[k], sizes[k+1]) into params */
    float *b[ENSEMBLE_MAX_LINEAR]; /* (E, sizes[k+1]) into params */
    float *max_logvar;             /* (n_out) into params */
    float *min_logvar;             /* (n_out) into params */

    float *stats;           /* owned block of the arrays below */
    float *in_mu, *in_sd;   /* (n_in) input standardisation */
    float *out_mu, *out_sd; /* (n_out) target standardisation */
    float *holdout_mse;     /* (E) per member, standardised targets */
    int *elites;            /* (n_elites) members, best first, owned */

    int n_tensors;
    ensemble_tensor tensors[ENSEMBLE_MAX_TENSORS];
} ensemble_t;

/* per-thread prediction workspace for chunks of up to `chunk` rows */
typedef struct ensemble_work {
    int chunk;
    float *block;   /* owned, everything below points into it */
    float *x;       /* (chunk, n_in) standardised inputs, grouped by member */
    float *z;       /* (chunk, H) pre-activation */
    float *h[2];    /* (chunk, H) ping-pong activations */
    float *out;     /* (chunk, 2 n_out) */
    float *eps;     /* (chunk, n_out) normals */
    float *ebounds; /* (2, n_out rounded up to 8) e^max_logvar, e^min_logvar */
    int *order;     /* (chunk) original row of each grouped row, owned */
    int *pick;      /* (chunk) member of each row, owned */
} ensemble_work_t;

/* training state: gradients, Adam moments, activations of one member's batch, snapshots */
typedef struct ensemble_trainer {
    ensemble_train_cfg cfg;
    nn_adam_cfg adam_cfg;
    nn_adam_state adam; /* m, v: (n_params) each */
    nn_adam_group groups[ENSEMBLE_MAX_LINEAR];
    int n_groups;
    float *grads; /* (n_params) owned, pointers as in params */
    float *dw[ENSEMBLE_MAX_LINEAR];
    float *db[ENSEMBLE_MAX_LINEAR];
    float *dmax_logvar, *dmin_logvar;
    float *block;                         /* owned: batches and activations below */
    float *x;                             /* (E, batch, n_in) standardised inputs */
    float *y;                             /* (E, batch, n_out) standardised targets */
    float *z[ENSEMBLE_MAX_HIDDEN_LAYERS]; /* (batch, H) pre-activations of one member */
    float *h[ENSEMBLE_MAX_HIDDEN_LAYERS]; /* (batch, H) activations of one member */
    float *out;                           /* (batch, 2 n_out) */
    float *dout;                          /* (batch, 2 n_out) */
    float *dh[2];                         /* (batch, H) */
    float *best_params;                   /* (n_params) owned: each member's best */
    int64_t steps;                        /* Adam steps taken */
    const atomic_int *stop;               /* NULL, or set nonzero by any thread to end
                                           * ensemble_train after the current epoch */
} ensemble_trainer_t;

typedef struct ensemble_train_report {
    int n_train;
    int n_holdout;
    int epochs;               /* completed epochs */
    int64_t steps;            /* Adam steps in this call */
    bool stopped_early;       /* patience ran out before max_epochs */
    float train_loss;         /* mean loss of the last epoch (NLL + bound penalty) */
    float holdout_mse_elites; /* mean holdout MSE of the elites after training */
} ensemble_train_report;

/* MBPO's defaults: 7 members, 5 elites, 4 x 200, learn_reward */
void ensemble_cfg_default(ensemble_cfg *cfg, int n_obs, int n_act);
/* MBPO's defaults, weight decays laid out for n_layers hidden layers */
void ensemble_train_cfg_default(ensemble_train_cfg *cfg, int n_layers);
/* 0, or -EINVAL naming the bad field */
int ensemble_cfg_check(const ensemble_cfg *cfg);

/* allocate and initialise: weights truncated normal with std 1/(2 sqrt(in)) (MBPO), biases 0,
 * max_lv 0.5, min_lv -10, identity normaliser, elites 0..n_elites-1. 0 or -EINVAL */
int ensemble_init(ensemble_t *e, const ensemble_cfg *cfg, rng_t *rng);
/* safe on a zeroed struct */
void ensemble_free(ensemble_t *e);
/* dst (initialised with the same cfg) becomes a copy of src */
void ensemble_copy(ensemble_t *dst, const ensemble_t *src);

int ensemble_work_init(ensemble_work_t *w, const ensemble_t *e, int chunk);
void ensemble_work_free(ensemble_work_t *w);

/* one random elite per row (only that member runs), mean + (sample ? sd * N(0,1) : 0).
 * next_obs (N, O) = obs + delta; reward (N) or NULL; member (N) or NULL gets the member used.
 * obs (N, O), act (N, A) borrowed. Works in chunks of w->chunk rows. */
void ensemble_predict(const ensemble_t *e, ensemble_work_t *w, rng_t *rng, float *next_obs,
                      float *reward, int *member, const float *obs, const float *act, int N,
                      bool sample);
/* every member on every row: next_obs (E, N, O), reward (E, N) or NULL */
void ensemble_predict_all(const ensemble_t *e, ensemble_work_t *w, rng_t *rng, float *next_obs,
                          float *reward, const float *obs, const float *act, int N, bool sample);
/* holdout-style error: mse (E) per member, mean over rows and dims of the squared error of the
 * predicted mean in standardised target space. reward may be NULL without learn_reward */
void ensemble_eval_mse(const ensemble_t *e, ensemble_work_t *w, float *mse, const float *obs,
                       const float *act, const float *next_obs, const float *reward, int N);

/* fit the normaliser on rows idx[0..n) (all rows when idx is NULL): mean and std of the inputs
 * (obs, act) and targets (next_obs - obs, reward); a std below 1e-12 becomes 1 (MBPO) */
void ensemble_fit_normaliser(ensemble_t *e, const float *obs, const float *act,
                             const float *next_obs, const float *reward, const int *idx, int n);

/* the normaliser changed from (old_in_mu, old_in_sd, old_out_mu, old_out_sd) to e's current
 * one: rewrite the first layer, the mean and log-variance columns of the last layer and the
 * log-variance bounds so that every member predicts the same mean and variance of the raw
 * targets for every raw input as before (exact up to rounding) */
void ensemble_renormalise(ensemble_t *e, const float *old_in_mu, const float *old_in_sd,
                          const float *old_out_mu, const float *old_out_sd);

int ensemble_trainer_init(ensemble_trainer_t *t, const ensemble_t *e,
                          const ensemble_train_cfg *cfg);
void ensemble_trainer_free(ensemble_trainer_t *t);

/* one Adam step on every member: x (E, B, n_in) raw inputs (obs then act), y (E, B, n_out)
 * raw targets (delta obs then reward), B <= cfg.batch. Returns the loss (NLL summed over
 * members + bound penalty, without the weight decay term). */
float ensemble_train_step(ensemble_t *e, ensemble_trainer_t *t, const float *x, const float *y,
                          int B);

/* the loss of ensemble_train_step and its gradients in t->grads (weight decay excluded: Adam
 * adds it), without stepping. For gradient checks. */
float ensemble_train_grad(const ensemble_t *e, ensemble_trainer_t *t, const float *x,
                          const float *y, int B);

/* MBPO's fit on N transitions (borrowed): shuffle, hold out min(ratio N, max_holdout) rows,
 * fit the normaliser on the rest (with cfg.keep_function the weights follow it), draw a
 * bootstrap of the training rows per member, train in epochs (bootstraps reshuffled per
 * epoch) until no member's holdout MSE improved by
 * improve_ratio for `patience` epochs or max_epochs; each member then gets back its weights
 * of best holdout MSE (the shared log-variance bounds keep their last values; holdout MSE
 * depends on the means only), and the elites are the n_elites members with the lowest
 * holdout MSE.
 * Allocates its index arrays (not the steps). 0, or -EINVAL when N is too small */
int ensemble_train(ensemble_t *e, ensemble_trainer_t *t, rng_t *rng, ensemble_train_report *rep,
                   const float *obs, const float *act, const float *next_obs, const float *reward,
                   int N);

/* the Gaussian NLL with bounded log-variance for rows of one member, as in the header comment:
 * returns the mean over (B, n_out) of (mu - y)^2 exp(-lv) + lv; if dout is non-NULL writes
 * dL/d(out) (B, 2 n_out) and adds dL/dmax_lv, dL/dmin_lv (n_out) into dmax/dmin. Exposed for
 * the gradient check. */
float ensemble_nll(float *dout, float *dmax, float *dmin, const float *out, const float *y,
                   const float *max_lv, const float *min_lv, int B, int n_out);

/* ---- saving ---------------------------------------------------------------------------- */

/* file image (little endian): magic "TWIGENS\0", u32 version, u32 n_obs, n_act, n_members,
 * n_elites, n_hidden, n_layers, learn_reward, u64 n_params, f32 params, in_mu, in_sd, out_mu,
 * out_sd, holdout_mse, u32 elites[n_elites], u32 crc32c of everything before it */
#define ENSEMBLE_FILE_VERSION 1u

size_t ensemble_image_size(const ensemble_t *e);
void ensemble_image_write(uint8_t *buf, const ensemble_t *e);
/* e zeroed or freed: initialised from the image. refuses a short image, wrong magic or
 * version, bad sizes, a checksum mismatch or non-finite values: TWIG_ECORRUPT,
 * TWIG_EVERSION or -EINVAL with err_msg naming the problem */
int ensemble_image_read(ensemble_t *e, const uint8_t *buf, size_t len);
/* atomically (tmp + rename); 0 or -errno */
int ensemble_save_file(const ensemble_t *e, const char *path);
int ensemble_load_file(ensemble_t *e, const char *path);

/* the trainer's Adam state, so a model server resumes training where it stopped (the model
 * itself goes through ensemble_save_file). Image: magic "TWIGENT\0", u32 version, u64 n_params,
 * i64 steps, i64 adam_t, f32 m[n_params], v[n_params], u32 crc32c of everything before it */
#define ENSEMBLE_TRAINER_FILE_VERSION 1u

size_t ensemble_trainer_image_size(const ensemble_t *e);
void ensemble_trainer_image_write(uint8_t *buf, const ensemble_t *e, const ensemble_trainer_t *t);
/* t initialised for e; a refused image (TWIG_ECORRUPT, TWIG_EVERSION, TWIG_EMISMATCH for
 * another model's size, -EINVAL for non-finite moments) leaves t unchanged */
int ensemble_trainer_image_read(ensemble_trainer_t *t, const ensemble_t *e, const uint8_t *buf,
                                size_t len);
int ensemble_trainer_save_file(const ensemble_t *e, const ensemble_trainer_t *t, const char *path);
int ensemble_trainer_load_file(ensemble_trainer_t *t, const ensemble_t *e, const char *path);

/* for loaders (the file images here, the WeightBlob codec in common/rpc/ensemble_blob.h):
 * the floats of every tensor of a valid cfg (parameters, stats, elites, dims), computed
 * without allocating, so a loader refuses a short input before it allocates; e allocated for
 * a valid cfg with zero parameters, to be filled; and the values a loaded model must have
 * (finite, positive scales, distinct elites in range): 0 or -EINVAL naming what */
size_t ensemble_tensor_floats(const ensemble_cfg *cfg);
void ensemble_alloc(ensemble_t *e, const ensemble_cfg *cfg);
int ensemble_check_values(const ensemble_t *e, const char *what);

#endif
