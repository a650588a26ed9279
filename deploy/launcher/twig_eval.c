/* twig_eval.c - `twig eval POLICY [--episodes N] [--seed S] [--version V] [--csv FILE]`:
 * episodes of the deterministic policy (the mean action: tanh(mu), scaled into the env's
 * bounds), each episode's return and their mean and standard deviation (docs/eval.md).
 *
 * Episode i is reset with seed S + i, so the same policy and S give the same returns. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/err.h"
#include "common/base/mem.h"
#include "common/base/rng.h"
#include "common/env/env.h"
#include "common/nn/policy.h"
#include "deploy/launcher/policy_source.h"
#include "deploy/launcher/twig_cmds.h"

#define EVAL_EPISODES_DEFAULT 10
#define EVAL_EPISODES_MAX 1000000ULL

typedef struct eval_opts {
    const char *source;
    uint64_t episodes, seed, max_version;
    const char *csv_path;
} eval_opts;

/* what one episode gave */
typedef struct eval_episode {
    uint64_t seed;
    double ret;
    long steps;
    bool terminated;
} eval_episode;

static void eval_usage(FILE *f)
{
    fprintf(f,
            "usage: twig eval RUN_DIR|CHECKPOINT_DIR|POLICY_FILE [--episodes N] [--seed S]\n"
            "                 [--version V] [--csv FILE]\n"
            "  POLICY          a run directory, a checkpoint directory or a `twig export` file\n"
            "  --episodes N    episodes to run (%d)\n"
            "  --seed S        episode i is reset with seed S + i (0)\n"
            "  --version V     the newest checkpoint whose policy_version is <= V\n"
            "  --csv FILE      also write episode,seed,return,steps,terminated rows to FILE\n"
            "Actions are deterministic: the policy's mean, tanh(mu) scaled into the bounds.\n",
            EVAL_EPISODES_DEFAULT);
}

static int eval_parse_u64(uint64_t *out, const char *v, const char *flag)
{
    char *end = NULL;
    errno = 0;
    if (v == NULL || v[0] == '-' || v[0] == '\0') {
        fprintf(stderr, "twig eval: %s needs a non-negative integer\n", flag);
        return -EINVAL;
    }
    unsigned long long x = strtoull(v, &end, 10);
    if (errno != 0 || *end != '\0') {
        fprintf(stderr, "twig eval: %s '%s' is not a non-negative integer\n", flag, v);
        return -EINVAL;
    }
    *out = (uint64_t)x;
    return 0;
}

/* 0, 1 for --help, < 0 for bad usage (reported) */
static int eval_parse(eval_opts *o, int argc, char **argv)
{
    *o = (eval_opts){.episodes = EVAL_EPISODES_DEFAULT, .max_version = UINT64_MAX};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            eval_usage(stdout);
            return 1;
        } else if (strcmp(a, "--episodes") == 0) {
            if (eval_parse_u64(&o->episodes, v, a) < 0) {
                return -EINVAL;
            }
            if (o->episodes < 1 || o->episodes > EVAL_EPISODES_MAX) {
                fprintf(stderr, "twig eval: --episodes %s is outside [1, %llu]\n", v,
                        EVAL_EPISODES_MAX);
                return -EINVAL;
            }
            i++;
        } else if (strcmp(a, "--seed") == 0) {
            if (eval_parse_u64(&o->seed, v, a) < 0) {
                return -EINVAL;
            }
            i++;
        } else if (strcmp(a, "--version") == 0) {
            if (eval_parse_u64(&o->max_version, v, a) < 0) {
                return -EINVAL;
            }
            i++;
        } else if (strcmp(a, "--csv") == 0) {
            if (v == NULL) {
                fprintf(stderr, "twig eval: --csv needs a FILE\n");
                return -EINVAL;
            }
            o->csv_path = v;
            i++;
        } else if (strcmp(a, "--video") == 0) {
            fprintf(stderr, "twig eval: --video is not implemented yet (OSMesa offscreen "
                            "rendering works here, EGL does not: docs/eval.md)\n");
            return -EINVAL;
        } else if (a[0] == '-') {
            fprintf(stderr, "twig eval: unknown option '%s'\n", a);
            return -EINVAL;
        } else if (o->source == NULL) {
            o->source = a;
        } else {
            fprintf(stderr, "twig eval: unexpected argument '%s'\n", a);
            return -EINVAL;
        }
    }
    if (o->source == NULL) {
        fprintf(stderr, "twig eval: RUN_DIR or POLICY_FILE is missing\n");
        return -EINVAL;
    }
    return 0;
}

/* one deterministic episode from reset seed; 0 or a negative code (err_msg) */
static int eval_episode_run(eval_episode *ep, env_t *e, policy_t *p, float *obs, float *act,
                            uint64_t seed)
{
    *ep = (eval_episode){.seed = seed};
    env_reset(e, seed, obs);
    env_step_result r = {.next_obs = obs};
    for (long t = 1; t <= e->spec.max_episode_steps; t++) {
        policy_act(p, NULL, act, obs, 1, true);
        int rc = env_step(e, act, &r);
        if (rc < 0) {
            return rc;
        }
        ep->ret += r.reward;
        ep->steps = t;
        if (r.terminated || r.truncated) {
            ep->terminated = r.terminated;
            break;
        }
    }
    return 0;
}

int twig_cmd_eval(int argc, char **argv)
{
    eval_opts o;
    int rc = eval_parse(&o, argc, argv);
    if (rc != 0) {
        if (rc < 0) {
            eval_usage(stderr);
            return 2;
        }
        return 0;
    }
    policy_t p = {0};
    policy_file_meta meta;
    char used[4096];
    rc = policy_source_load(&p, &meta, used, sizeof used, o.source, o.max_version, 1);
    if (rc < 0) {
        fprintf(stderr, "twig eval: %s (%s)\n", err_msg(), err_name(rc));
        return 1;
    }
    env_t *e = NULL;
    rc = env_make(&e, meta.env_id);
    if (rc < 0) {
        fprintf(stderr, "twig eval: env %s: %s\n", meta.env_id, err_msg());
        policy_free(&p);
        return 1;
    }
    if (e->spec.n_obs != p.n_obs || e->spec.n_act != p.n_act) {
        fprintf(stderr, "twig eval: the policy has %d obs / %d act, env %s has %d / %d\n",
                p.n_obs, p.n_act, meta.env_id, e->spec.n_obs, e->spec.n_act);
        env_free(e);
        policy_free(&p);
        return 1;
    }
    FILE *csv = NULL;
    if (o.csv_path != NULL) {
        csv = fopen(o.csv_path, "w");
        if (csv == NULL) {
            fprintf(stderr, "twig eval: cannot write %s: %s\n", o.csv_path, strerror(errno));
            env_free(e);
            policy_free(&p);
            return 1;
        }
        fprintf(csv, "episode,seed,return,steps,terminated\n");
    }
    printf("policy %s env=%s policy_version=%" PRIu64 " updates=%" PRIu64 " episodes=%" PRIu64
           " seed=%" PRIu64 "\n",
           used, meta.env_id, meta.policy_version, meta.updates, o.episodes, o.seed);
    float *obs = xcalloc((size_t)p.n_obs, sizeof(float));
    float *act = xcalloc((size_t)p.n_act, sizeof(float));
    double sum = 0.0, sum_sq = 0.0;
    int status = 0;
    for (uint64_t i = 0; i < o.episodes; i++) {
        eval_episode ep;
        rc = eval_episode_run(&ep, e, &p, obs, act, o.seed + i);
        if (rc < 0) {
            fprintf(stderr, "twig eval: episode %" PRIu64 ": %s\n", i, err_msg());
            status = 1;
            break;
        }
        sum += ep.ret;
        sum_sq += ep.ret * ep.ret;
        printf("episode %" PRIu64 " seed %" PRIu64 " return %.6g steps %ld%s\n", i, ep.seed,
               ep.ret, ep.steps, ep.terminated ? " terminated" : "");
        if (csv != NULL) {
            fprintf(csv, "%" PRIu64 ",%" PRIu64 ",%.9g,%ld,%d\n", i, ep.seed, ep.ret, ep.steps,
                    ep.terminated ? 1 : 0);
        }
    }
    if (status == 0) {
        /* the population standard deviation (divide by N), as numpy.std */
        double n = (double)o.episodes, mean = sum / n;
        double var = sum_sq / n - mean * mean;
        printf("return mean %.6g std %.6g over %" PRIu64 " episodes\n", mean,
               var > 0.0 ? sqrt(var) : 0.0, o.episodes);
    }
    if (csv != NULL && fclose(csv) != 0) {
        fprintf(stderr, "twig eval: writing %s: %s\n", o.csv_path, strerror(errno));
        status = 1;
    }
    if (fflush(stdout) != 0) {
        status = 1;
    }
    free(obs);
    free(act);
    env_free(e);
    policy_free(&p);
    return status;
}
