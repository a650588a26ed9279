/* bench.h - the figures twig-bench can print. Each figure prints one JSON line per result
 * ({"bench":NAME,"impl":"twig","per_s":...}) and returns 0, or nonzero when its correctness
 * check failed (then it prints no timing). */
#ifndef TWIG_BENCH_H
#define TWIG_BENCH_H

#include <stdbool.h>

typedef struct bench_opts {
    int reps;        /* timed repetitions; the median is reported */
    int iters;       /* units per repetition (0: the figure's default) */
    int warmup;      /* untimed units first (-1: the figure's default) */
    bool check_only; /* run the correctness check, skip the timing */
    int threads;     /* OpenBLAS threads (the processes' learner.threads, train_threads) */
} bench_opts;

typedef int bench_fn(const bench_opts *o);

typedef struct bench_figure {
    const char *name; /* "sac_update" */
    bench_fn *run;
} bench_figure;

/* median of v[0..n) (sorts v) */
double bench_median(double *v, int n);

/* bench_nn.c */
int bench_sac_update(const bench_opts *o);

/* bench_env.c: one figure per MuJoCo env, env_step vs bare mj_step */
int bench_env_inverted_pendulum(const bench_opts *o);
int bench_env_half_cheetah(const bench_opts *o);
int bench_env_hopper(const bench_opts *o);
int bench_env_walker2d(const bench_opts *o);
int bench_env_ant(const bench_opts *o);
int bench_env_humanoid(const bench_opts *o);

/* bench_ensemble.c */
int bench_ensemble_train_step(const bench_opts *o);
int bench_ensemble_train_step_out34(const bench_opts *o);
int bench_rollout_all_members(const bench_opts *o);
int bench_rollout_one_member(const bench_opts *o);

#endif
