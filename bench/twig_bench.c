/* twig_bench.c - twig-bench: figures of twig's hot paths, one JSON line each.
 *
 * usage: twig-bench SUBCOMMAND [--reps N] [--iters N] [--warmup N] [--threads N] [--check-only]
 *        [FIGURE...]
 *   nn   sac_update (and the ensemble's figures): learning-core throughput on one core
 * With FIGURE names only those run. Each figure checks its results against a naive reference
 * before timing and exits nonzero on a mismatch, so a benchmark command may change the BLAS
 * kernels (env -u OPENBLAS_CORETYPE ...) without hiding a wrong answer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/bench.h"
#include "common/nn/nn_gemm.h"

/* figures of `twig-bench nn`: append new ones here */
static const bench_figure nn_figures[] = {
    {"sac_update", bench_sac_update},
    {"ensemble_train_step", bench_ensemble_train_step},
    {"ensemble_train_step_out34", bench_ensemble_train_step_out34},
    {"rollout_all_members", bench_rollout_all_members},
    {"rollout_one_member", bench_rollout_one_member},
};

/* figures of `twig-bench env`: one per MuJoCo env, append new ones here */
static const bench_figure env_figures[] = {
    {"InvertedPendulum-v4", bench_env_inverted_pendulum},
    {"HalfCheetah-v4", bench_env_half_cheetah},
    {"Hopper-v4", bench_env_hopper},
    {"Walker2d-v4", bench_env_walker2d},
    {"Ant-v4", bench_env_ant},
    {"Humanoid-v4", bench_env_humanoid},
};

typedef struct bench_cmd {
    const char *name;
    const bench_figure *figures;
    int n_figures;
    const char *help;
} bench_cmd;

static const bench_cmd cmds[] = {
    {"nn", nn_figures, (int)(sizeof(nn_figures) / sizeof(nn_figures[0])),
     "learning core: SAC update, ensemble training and rollouts"},
    {"env", env_figures, (int)(sizeof(env_figures) / sizeof(env_figures[0])),
     "env steps/s per MuJoCo env next to bare mj_step x frame_skip"},
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: twig-bench SUBCOMMAND [--reps N] [--iters N] [--warmup N] [--threads N] "
               "[--check-only] [FIGURE...]\n");
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        fprintf(f, "  %-6s %s:", cmds[i].name, cmds[i].help);
        for (int k = 0; k < cmds[i].n_figures; k++) {
            fprintf(f, " %s", cmds[i].figures[k].name);
        }
        fprintf(f, "\n");
    }
}

static int parse_int(const char *flag, const char *v, int lo, int hi, int *out)
{
    char *end = NULL;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || *end != '\0' || x < lo || x > hi) {
        fprintf(stderr, "twig-bench: %s needs an integer in [%d, %d]\n", flag, lo, hi);
        return -1;
    }
    *out = (int)x;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const bench_cmd *cmd = NULL;
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        if (strcmp(argv[1], cmds[i].name) == 0) {
            cmd = &cmds[i];
        }
    }
    if (!cmd) {
        fprintf(stderr, "twig-bench: unknown subcommand '%s'\n", argv[1]);
        usage(stderr);
        return 2;
    }
    bench_opts o = {.reps = 7, .iters = 0, .warmup = -1, .check_only = false, .threads = 1};
    const char *only[16];
    int n_only = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--reps") == 0) {
            if (parse_int(a, i + 1 < argc ? argv[++i] : NULL, 1, 1000, &o.reps) < 0) {
                return 2;
            }
        } else if (strcmp(a, "--iters") == 0) {
            if (parse_int(a, i + 1 < argc ? argv[++i] : NULL, 1, 1000000, &o.iters) < 0) {
                return 2;
            }
        } else if (strcmp(a, "--warmup") == 0) {
            if (parse_int(a, i + 1 < argc ? argv[++i] : NULL, 0, 1000000, &o.warmup) < 0) {
                return 2;
            }
        } else if (strcmp(a, "--threads") == 0) {
            if (parse_int(a, i + 1 < argc ? argv[++i] : NULL, 1, 256, &o.threads) < 0) {
                return 2;
            }
        } else if (strcmp(a, "--check-only") == 0) {
            o.check_only = true;
        } else if (a[0] == '-') {
            fprintf(stderr, "twig-bench: unknown flag '%s'\n", a);
            return 2;
        } else if (n_only < 16) {
            only[n_only++] = a;
        }
    }
    for (int k = 0; k < n_only; k++) {
        bool known = false;
        for (int f = 0; f < cmd->n_figures; f++) {
            known = known || strcmp(only[k], cmd->figures[f].name) == 0;
        }
        if (!known) {
            fprintf(stderr, "twig-bench: %s has no figure '%s'\n", cmd->name, only[k]);
            return 2;
        }
    }
    nn_gemm_set_threads(o.threads);
    int rc = 0;
    for (int f = 0; f < cmd->n_figures; f++) {
        bool run = n_only == 0;
        for (int k = 0; k < n_only; k++) {
            run = run || strcmp(only[k], cmd->figures[f].name) == 0;
        }
        if (run && cmd->figures[f].run(&o) != 0) {
            rc = 1;
        }
    }
    return rc;
}
