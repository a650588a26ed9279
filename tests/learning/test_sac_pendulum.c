/* the learner's correctness anchor: SAC alone (no model) on Pendulum-v1 with a fixed seed
 * reaches a mean deterministic evaluation return >= -250 over 10 episodes within 20k env
 * steps. Standard SAC settings (sac_default_cfg: 2 x 256, batch 256, lr 3e-4, gamma 0.99,
 * tau 0.005, auto entropy); 1000 random steps first, then one update per env step. Evaluated
 * every 1000 steps from step 5000; the test passes at the first evaluation that reaches the
 * bar and fails if none does by step 20000. Slow: labelled so the sanitizer run skips it. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>

#include "common/env/env.h"
#include "common/base/err.h"
#include "common/nn/nn_gemm.h"
#include "common/nn/replay.h"
#include "common/base/rng.h"
#include "common/nn/sac.h"

#define TOTAL_STEPS 20000
#define RANDOM_STEPS 1000
#define EVAL_FROM 5000
#define EVAL_EVERY 1000
#define EVAL_EPISODES 10
#define PASS_RETURN (-250.0)

/* [-1, 1] policy output to the env's bounds */
static void to_env_action(const env_spec *sp, float *out, const float *a)
{
    for (int j = 0; j < sp->n_act; j++) {
        out[j] = sp->act_low[j] + 0.5f * (a[j] + 1.0f) * (sp->act_high[j] - sp->act_low[j]);
    }
}

static double evaluate(sac_t *s, env_t *e, uint64_t seed0)
{
    const env_spec *sp = &e->spec;
    float obs[8], next[8], a[8], ae[8];
    double total = 0.0;
    for (int ep = 0; ep < EVAL_EPISODES; ep++) {
        env_reset(e, seed0 + (uint64_t)ep, obs);
        env_step_result res = {.next_obs = next};
        for (int t = 0; t < sp->max_episode_steps; t++) {
            sac_act(s, a, obs, 1, true);
            to_env_action(sp, ae, a);
            cr_assert_eq(env_step(e, ae, &res), 0, "%s", err_msg());
            total += res.reward;
            for (int j = 0; j < sp->n_obs; j++) {
                obs[j] = next[j];
            }
            if (res.terminated || res.truncated) {
                break;
            }
        }
    }
    return total / EVAL_EPISODES;
}

Test(sac_pendulum, reaches_minus_250_within_20k_steps, .timeout = 880)
{
    nn_gemm_set_threads(1); // reproducible, and the machine is shared
    env_t *e = NULL, *eval_env = NULL;
    cr_assert_eq(env_make(&e, "Pendulum-v1"), 0, "%s", err_msg());
    cr_assert_eq(env_make(&eval_env, "Pendulum-v1"), 0, "%s", err_msg());
    const env_spec *sp = &e->spec;
    cr_assert_eq(sp->n_obs, 3);
    cr_assert_eq(sp->n_act, 1);

    sac_cfg cfg = sac_default_cfg(sp->n_obs, sp->n_act);
    sac_t s;
    cr_assert_eq(sac_init(&s, &cfg, 1), 0, "%s", err_msg());
    replay_t rb;
    cr_assert_eq(replay_init(&rb, TOTAL_STEPS, sp->n_obs, sp->n_act), 0);
    replay_batch batch;
    cr_assert_eq(replay_batch_init(&batch, cfg.batch, sp->n_obs, sp->n_act), 0);
    rng_t rng;
    rng_seed(&rng, 2);

    float obs[8], next[8], a[8], ae[8];
    uint64_t episode = 0;
    env_reset(e, 1000 + episode, obs);
    env_step_result res = {.next_obs = next};
    double best = -INFINITY;
    int reached_at = -1;
    for (int step = 1; step <= TOTAL_STEPS && reached_at < 0; step++) {
        if (step <= RANDOM_STEPS) {
            for (int j = 0; j < sp->n_act; j++) {
                a[j] = rng_uniform_range(&rng, -1.0f, 1.0f);
            }
        } else {
            sac_act(&s, a, obs, 1, false);
        }
        to_env_action(sp, ae, a);
        cr_assert_eq(env_step(e, ae, &res), 0, "%s", err_msg());
        // only termination is stored as terminal; the 200-step truncation bootstraps
        replay_add(&rb, obs, a, res.reward, next, res.terminated);
        if (res.terminated || res.truncated) {
            episode++;
            env_reset(e, 1000 + episode, obs);
        } else {
            for (int j = 0; j < sp->n_obs; j++) {
                obs[j] = next[j];
            }
        }
        if (step >= RANDOM_STEPS) {
            replay_sample_batch(&batch, &rb, &rng, cfg.batch);
            sac_update(&s, &batch);
            cr_assert(isfinite(s.stats.q_loss) && isfinite(s.stats.pi_loss), "diverged at step %d",
                      step);
        }
        if (step >= EVAL_FROM && step % EVAL_EVERY == 0) {
            double ret = evaluate(&s, eval_env, 1000000);
            best = ret > best ? ret : best;
            fprintf(stderr, "sac_pendulum step=%d eval_return=%.1f alpha=%.3f q_loss=%.3f\n", step,
                    ret, s.stats.alpha, s.stats.q_loss);
            if (ret >= PASS_RETURN) {
                reached_at = step;
            }
        }
    }
    cr_expect(reached_at > 0 && reached_at <= TOTAL_STEPS,
              "best mean eval return %.1f over %d episodes, needed >= %.0f within %d steps", best,
              EVAL_EPISODES, PASS_RETURN, TOTAL_STEPS);
    cr_expect_eq(rb.size, (size_t)(reached_at > 0 ? reached_at : TOTAL_STEPS));
    replay_batch_free(&batch);
    replay_free(&rb);
    sac_free(&s);
    env_free(e);
    env_free(eval_env);
}
