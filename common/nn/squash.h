/* squash.h - the tanh-squashed Gaussian policy head (Haarnoja et al. 2018, appendix C): the
 * actor network's output (B, 2A) is a mean and a log std per action dimension; a sample is
 * a = tanh(mu + std * eps). Shared by the SAC update (common/nn/sac.h, forward and backward)
 * and by acting with a published policy (common/nn/policy.h, forward only), so acting needs
 * none of the trainer.
 */
#ifndef TWIG_SQUASH_H
#define TWIG_SQUASH_H

#define SQUASH_LOG_STD_MIN (-20.0f)   /* log stds are clamped to this range */
#define SQUASH_LOG_STD_MAX 2.0f

/* from pi_out (B, 2A) and eps (B, A) writes u (pre-squash), a = tanh(u) (B, A) and logp (B),
 * the log-density of a with the tanh correction */
void squash_forward(float *u, float *a, float *logp, const float *pi_out, const float *eps,
                    int B, int A);
/* dpi (B, 2A) from dL/da (B, A) and dL/dlogp (B) for the head above */
void squash_backward(float *dpi, const float *da, const float *dlogp, const float *pi_out,
                     const float *eps, const float *a, int B, int A);

#endif
