/* sac.h - Soft Actor-Critic as MBPO uses it (Haarnoja et al. 2018, "Soft Actor-Critic
 * Algorithms and Applications"): twin Q critics with Polyak-averaged targets, a tanh-squashed
 * Gaussian actor, automatic entropy tuning.
 *
 * Actions live in [-1, 1]^n_act; the caller maps them to the env's bounds. One sac_update is
 * exactly one update of ../shared/reference/torch/sac_ref.py: critic step, actor step (critic
 * frozen), temperature step, Polyak update, on a batch the caller sampled.
 *
 *     sac_t s = {0};
 *     sac_cfg cfg = sac_default_cfg(n_obs, n_act);
 *     sac_init(&s, &cfg, seed);
 *     replay_sample_batch(&batch, &rb, &rng, cfg.batch);
 *     sac_update(&s, &batch);                      // no allocation
 *     sac_act(&s, act, obs, 1, false);            // sample; true = deterministic tanh(mu)
 *     sac_save(&s, "ckpt/sac.bin");
 *     sac_free(&s);
 */
#ifndef TWIG_SAC_H
#define TWIG_SAC_H

#include <stdbool.h>
#include <stdint.h>

#include "common/nn/nn.h"
#include "common/nn/replay.h"
#include "common/nn/squash.h"
#include "common/base/rng.h"


typedef struct sac_cfg {
    int n_obs, n_act;
    int hidden;           /* 256: two hidden layers of this width, ReLU */
    int batch;            /* 256: the largest batch sac_update and sac_act take */
    float gamma;          /* 0.99 */
    float tau;            /* 0.005 Polyak factor of the target critics */
    float lr_actor;       /* 3e-4 */
    float lr_critic;      /* 3e-4 */
    float lr_alpha;       /* 3e-4 */
    float init_log_alpha; /* 0: alpha starts at 1 */
    float target_entropy; /* -n_act */
} sac_cfg;

sac_cfg sac_default_cfg(int n_obs, int n_act);

/* what the last update measured */
typedef struct sac_stats {
    float q_loss;  /* MSE(Q1, y) + MSE(Q2, y) */
    float pi_loss; /* mean(alpha logp - min Q) */
    float alpha_loss;
    float alpha;   /* exp(log_alpha) used by the update */
    float entropy; /* -mean(logp) of the actor step */
    float q_mean;  /* mean Q1 on the batch */
} sac_stats;

typedef struct sac {
    sac_cfg cfg;
    mlp_t actor;     /* O -> H -> H -> 2A (mu, log_std) */
    mlp_t q[2];      /* O+A -> H -> H -> 1 */
    mlp_t q_targ[2]; /* Polyak copies, never trained: p and work, train zeroed */
    float log_alpha;
    nn_adam_state alpha_adam; /* n = 1 */
    nn_adam_cfg adam_actor, adam_critic, adam_alpha;
    rng_t rng; /* exploration and reparameterisation noise */
    int64_t n_updates;
    sac_stats stats;

    /* workspace, one block, sized for cfg.batch rows */
    float *work;
    float *x;           /* (B, O+A) critic input */
    float *pi_out;      /* (B, 2A) actor output */
    float *eps;         /* (B, A) noise */
    float *u;           /* (B, A) pre-squash sample */
    float *a;           /* (B, A) squashed action */
    float *logp;        /* (B) */
    float *q1, *q2;     /* (B) */
    float *y;           /* (B) critic target */
    float *dq1, *dq2;   /* (B) */
    float *da;          /* (B, A) gradient at the action */
    float *dlogp;       /* (B) */
    int *rows1, *rows2; /* (B) rows where Q1 / Q2 is the minimum, owned */
    float *dx;          /* (B, O+A) gradient at the critic input */
    float *dpi;         /* (B, 2A) gradient at the actor output */
} sac_t;

/* returns 0 or -EINVAL naming the bad field */
int sac_init(sac_t *s, const sac_cfg *cfg, uint64_t seed);
void sac_free(sac_t *s);

/* one update on b (b->n rows, <= cfg.batch, actions in [-1, 1]); fills s->stats */
void sac_update(sac_t *s, const replay_batch *b);

/* act(B, A) in [-1, 1] for obs(B, O), B <= cfg.batch: tanh(mu) if deterministic, else a sample.
 * Uses the actor's workspace (not concurrently with sac_update). */
void sac_act(sac_t *s, float *act, const float *obs, int B, bool deterministic);

/* full learner state: actor, critics, targets, Adam moments, temperature, counters, rng.
 * load refuses a file of other dimensions or a damaged one (see mlp_load_file) */
/* the whole trainer (nets, Adam, temperature, update count, rng) as sac_save writes it, into
 * memory: sac_image_size bytes; a checkpoint takes it on the training thread and writes it
 * elsewhere */
size_t sac_image_size(sac_t *s);
void sac_image_write(uint8_t *buf, sac_t *s);
int sac_save(sac_t *s, const char *path);
int sac_load(sac_t *s, const char *path);

/* ---- the pieces of an update, exposed for the gradient tests ---- */

/* the tanh-Gaussian head: squash_forward / squash_backward (common/nn/squash.h) */

/* y(B) = r + gamma (1 - terminated) (min Q'(o', a') - alpha logp'), a' from the actor on o'
 * with noise eps (B, A). Only termination cuts the bootstrap: a time-limit truncation is
 * stored as not terminated. Also leaves logp' in s->logp. y must not be a workspace buffer
 * other than s->y */
void sac_target(sac_t *s, float *y, const replay_batch *b, const float *eps, float alpha);

/* critic loss on a batch with a given target y; when accumulate, adds its gradients to the
 * critics' grads. returns the loss */
float sac_critic_loss(sac_t *s, const replay_batch *b, const float *y, bool accumulate);
/* actor loss for noise eps (B, A) at temperature alpha; when accumulate, adds its gradients
 * to the actor's grads (critics untouched). writes s->logp. returns the loss */
float sac_actor_loss(sac_t *s, const float *obs, const float *eps, float alpha, int B,
                     bool accumulate);
/* temperature loss -mean(log_alpha (logp + target_entropy)) and its gradient */
float sac_alpha_loss(const sac_t *s, const float *logp, int B, float *grad);

#endif
