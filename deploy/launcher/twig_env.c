/* twig_env.c - `twig env ENV_ID ...`: step one episode and print the trajectory as CSV.
 *
 * Columns (docs/envs.md): step, obs_0..obs_{n_obs-1}, act_0..act_{n_act-1}, reward, the
 * env's reward components by name, terminated, truncated. Row 0 is the reset observation
 * (action, reward and flags empty); row t >= 1 holds the observation after step t, the action
 * that led to it (as given, before clipping), its reward and flags. Floats use %.9g, enough to
 * read back a float exactly.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/env/env.h"
#include "common/base/err.h"
#include "common/base/mem.h"
#include "common/base/rng.h"
#include "common/nn/policy.h"
#include "deploy/launcher/policy_source.h"
#include "deploy/launcher/twig_cmds.h"

#define ENV_CMD_LINE_MAX 65536
#define ENV_CMD_STEPS_MAX 100000000L

typedef enum env_policy {
    ENV_POLICY_ZERO,
    ENV_POLICY_RANDOM,
    ENV_POLICY_FILE,
    ENV_POLICY_NET,             /* a trained policy (docs/policy-format.md), deterministic */
} env_policy;

typedef struct env_cmd_opts {
    const char *env_id;
    uint64_t seed;
    long steps;                 /* < 0: the env's max_episode_steps */
    env_policy policy;
    const char *actions_path;
    const char *policy_path;    /* ENV_POLICY_NET: a policy file or a run/checkpoint dir */
    double reset_noise_scale;   /* NAN: the env's default */
} env_cmd_opts;

static void env_cmd_usage(FILE *f)
{
    fprintf(f,
            "usage: twig env ENV_ID [--seed N] [--steps N]\n"
            "                [--actions FILE | --policy random|zero|FILE]\n"
            "                [--reset-noise-scale X]\n"
            "  ENV_ID                  a Gymnasium id (Hopper-v4, ...) or plugin:PATH.so:Name\n"
            "  --seed N                reset seed; the random policy uses a stream of it (0)\n"
            "  --steps N               stop after N steps (default and maximum: one episode)\n"
            "  --actions FILE          one action per line, comma-separated floats\n"
            "  --policy random|zero    actions uniform in the bounds, or all zero (zero)\n"
            "  --policy FILE           a trained policy's mean action: a `twig export` file,\n"
            "                          a run or checkpoint directory (./random for a file\n"
            "                          named random)\n"
            "  --reset-noise-scale X   Gymnasium's reset_noise_scale; 0 starts exactly at the\n"
            "                          model's initial pose\n"
            "known ids:");
    for (const char *const *id = env_list(); *id != NULL; id++) {
        fprintf(f, " %s", *id);
    }
    fprintf(f, "\n");
}

static int env_cmd_parse(env_cmd_opts *o, int argc, char **argv)
{
    *o = (env_cmd_opts){.steps = -1, .policy = ENV_POLICY_ZERO, .reset_noise_scale = NAN};
    bool have_policy = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            env_cmd_usage(stdout);
            return 1;
        } else if (strcmp(a, "--seed") == 0) {
            if (twig_flag_u64("env", &o->seed, a, v, 0, UINT64_MAX) < 0) {
                return -EINVAL;
            }
            i++;
        } else if (strcmp(a, "--steps") == 0) {
            uint64_t n = 0;
            if (twig_flag_u64("env", &n, a, v, 1, (uint64_t)ENV_CMD_STEPS_MAX) < 0) {
                return -EINVAL;
            }
            o->steps = (long)n;
            i++;
        } else if (strcmp(a, "--actions") == 0) {
            if (v == NULL || have_policy) {
                fprintf(stderr, "twig env: --actions needs a FILE and excludes --policy\n");
                return -EINVAL;
            }
            o->policy = ENV_POLICY_FILE;
            o->actions_path = v;
            have_policy = true;
            i++;
        } else if (strcmp(a, "--policy") == 0) {
            if (v == NULL || have_policy) {
                fprintf(stderr, "twig env: --policy needs random|zero and excludes --actions\n");
                return -EINVAL;
            }
            if (strcmp(v, "random") == 0) {
                o->policy = ENV_POLICY_RANDOM;
            } else if (strcmp(v, "zero") == 0) {
                o->policy = ENV_POLICY_ZERO;
            } else {
                o->policy = ENV_POLICY_NET;
                o->policy_path = v;
            }
            have_policy = true;
            i++;
        } else if (strcmp(a, "--reset-noise-scale") == 0) {
            char *end = NULL;
            double x = v != NULL ? strtod(v, &end) : NAN;
            if (v == NULL || *end != '\0' || v[0] == '\0' || !isfinite(x) || x < 0.0) {
                fprintf(stderr, "twig env: --reset-noise-scale needs a finite number >= 0\n");
                return -EINVAL;
            }
            o->reset_noise_scale = x;
            i++;
        } else if (a[0] == '-' && a[1] == '-') {
            fprintf(stderr, "twig env: unknown option '%s'\n", a);
            return -EINVAL;
        } else if (o->env_id == NULL) {
            o->env_id = a;
        } else {
            fprintf(stderr, "twig env: unexpected argument '%s'\n", a);
            return -EINVAL;
        }
    }
    if (o->env_id == NULL) {
        fprintf(stderr, "twig env: ENV_ID is missing\n");
        return -EINVAL;
    }
    return 0;
}

/* one action per line: comma-separated floats. 1 = got one, 0 = end of file, < 0 = bad line */
static int env_cmd_read_action(float *act, int n_act, FILE *f, char *line, long *lineno,
                               const char *path)
{
    while (fgets(line, ENV_CMD_LINE_MAX, f) != NULL) {
        (*lineno)++;
        size_t len = strlen(line);
        if (len == ENV_CMD_LINE_MAX - 1 && line[len - 1] != '\n') {
            fprintf(stderr, "twig env: %s:%ld: line longer than %d bytes\n", path, *lineno,
                    ENV_CMD_LINE_MAX);
            return -EINVAL;
        }
        char *p = line;
        while (*p == ' ' || *p == '\t') {
            p++;
        }
        if (*p == '\n' || *p == '\r' || *p == '\0' || *p == '#') {
            continue;       /* blank line or comment */
        }
        int n = 0;
        for (;;) {
            char *end = NULL;
            errno = 0;
            float x = strtof(p, &end);
            if (end == p) {
                fprintf(stderr, "twig env: %s:%ld: value %d is not a number\n", path, *lineno,
                        n);
                return -EINVAL;
            }
            if (n < n_act) {
                act[n] = x;
            }
            n++;
            p = end;
            while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') {
                p++;
            }
            if (*p == '\0') {
                break;
            }
            if (*p != ',') {
                fprintf(stderr, "twig env: %s:%ld: expected ',' after value %d\n", path,
                        *lineno, n - 1);
                return -EINVAL;
            }
            p++;
        }
        if (n != n_act) {
            fprintf(stderr, "twig env: %s:%ld: %d values, the env's action has %d\n", path,
                    *lineno, n, n_act);
            return -EINVAL;
        }
        return 1;
    }
    if (ferror(f)) {
        fprintf(stderr, "twig env: reading %s: %s\n", path, strerror(errno));
        return -EIO;
    }
    return 0;
}

static void env_cmd_print_header(const env_spec *s)
{
    printf("step");
    for (int i = 0; i < s->n_obs; i++) {
        printf(",obs_%d", i);
    }
    for (int i = 0; i < s->n_act; i++) {
        printf(",act_%d", i);
    }
    printf(",reward");
    for (int i = 0; i < s->n_info; i++) {
        printf(",%s", s->info_names[i]);
    }
    printf(",terminated,truncated\n");
}

static void env_cmd_print_obs(long step, const float *obs, int n_obs)
{
    printf("%ld", step);
    for (int i = 0; i < n_obs; i++) {
        printf(",%.9g", (double)obs[i]);
    }
}

/* the episode loop; returns the exit status */
static int env_cmd_run(const env_cmd_opts *o, env_t *e, FILE *actions, policy_t *net)
{
    const env_spec *s = &e->spec;
    float *obs = xcalloc((size_t)s->n_obs, sizeof(float));
    float *act = xcalloc((size_t)s->n_act, sizeof(float));
    char *line = o->policy == ENV_POLICY_FILE ? xmalloc(ENV_CMD_LINE_MAX) : NULL;
    rng_t policy_rng;
    rng_seed(&policy_rng, o->seed);
    policy_rng = rng_split(&policy_rng, 1);
    long max_steps = o->steps < 0 || o->steps > s->max_episode_steps ? s->max_episode_steps
                                                                     : o->steps;
    int status = 0;
    long lineno = 0;

    env_reset(e, o->seed, obs);
    env_cmd_print_header(s);
    env_cmd_print_obs(0, obs, s->n_obs);
    for (int i = 0; i < s->n_act + 1 + s->n_info + 2; i++) {
        printf(",");
    }
    printf("\n");
    env_step_result r = {.next_obs = obs};
    for (long t = 1; t <= max_steps; t++) {
        if (o->policy == ENV_POLICY_RANDOM) {
            for (int i = 0; i < s->n_act; i++) {
                act[i] = rng_uniform_range(&policy_rng, s->act_low[i], s->act_high[i]);
            }
        } else if (o->policy == ENV_POLICY_NET) {
            policy_act(net, NULL, act, obs, 1, true);
        } else if (o->policy == ENV_POLICY_FILE) {
            int rc = env_cmd_read_action(act, s->n_act, actions, line, &lineno, o->actions_path);
            if (rc <= 0) {
                status = rc < 0 ? 1 : 0;
                break;
            }
        }
        int rc = env_step(e, act, &r);
        if (rc < 0) {
            if (o->policy == ENV_POLICY_FILE) {
                fprintf(stderr, "twig env: %s:%ld: %s\n", o->actions_path, lineno, err_msg());
            } else {
                fprintf(stderr, "twig env: step %ld: %s\n", t, err_msg());
            }
            status = 1;
            break;
        }
        env_cmd_print_obs(t, obs, s->n_obs);
        for (int i = 0; i < s->n_act; i++) {
            printf(",%.9g", (double)act[i]);
        }
        printf(",%.9g", (double)r.reward);
        for (int i = 0; i < s->n_info; i++) {
            printf(",%.9g", (double)r.info[i]);
        }
        printf(",%d,%d\n", r.terminated ? 1 : 0, r.truncated ? 1 : 0);
        if (r.terminated || r.truncated) {
            break;
        }
    }
    if (fflush(stdout) != 0) {
        fprintf(stderr, "twig env: writing the CSV: %s\n", strerror(errno));
        status = 1;
    }
    free(obs);
    free(act);
    free(line);
    return status;
}

/* the --policy FILE net, checked against the env; 0 or < 0 (reported) */
static int env_cmd_load_policy(policy_t *net, const env_cmd_opts *o, const env_spec *s)
{
    policy_file_meta meta;
    char used[4096];
    int rc = policy_source_load(net, &meta, used, sizeof used, o->policy_path, UINT64_MAX, 1);
    if (rc < 0) {
        fprintf(stderr, "twig env: --policy %s (%s)\n", err_msg(), err_name(rc));
        return rc;
    }
    if (strcmp(meta.env_id, o->env_id) != 0 || net->n_obs != s->n_obs ||
        net->n_act != s->n_act) {
        fprintf(stderr,
                "twig env: --policy %s is for env_id %s (%d obs, %d act), not %s (%d, %d)\n",
                used, meta.env_id, net->n_obs, net->n_act, o->env_id, s->n_obs, s->n_act);
        policy_free(net);
        return -EINVAL;
    }
    return 0;
}

int twig_cmd_env(int argc, char **argv)
{
    env_cmd_opts o;
    int rc = env_cmd_parse(&o, argc, argv);
    if (rc != 0) {
        if (rc < 0) {
            env_cmd_usage(stderr);
            return 2;
        }
        return 0;   /* --help */
    }
    env_t *e = NULL;
    rc = env_make(&e, o.env_id);
    if (rc < 0) {
        fprintf(stderr, "twig env: %s (%s)\n", err_msg(), err_name(rc));
        return rc == TWIG_ENOTFOUND || rc == -EINVAL ? 2 : 1;
    }
    if (!isnan(o.reset_noise_scale)) {
        rc = env_set_reset_noise_scale(e, o.reset_noise_scale);
        if (rc < 0) {
            fprintf(stderr, "twig env: --reset-noise-scale: %s\n", err_msg());
            env_free(e);
            return 2;
        }
    }
    FILE *actions = NULL;
    if (o.policy == ENV_POLICY_FILE) {
        actions = fopen(o.actions_path, "r");
        if (actions == NULL) {
            fprintf(stderr, "twig env: cannot open %s: %s\n", o.actions_path, strerror(errno));
            env_free(e);
            return 2;
        }
    }
    policy_t net = {0};
    if (o.policy == ENV_POLICY_NET) {
        rc = env_cmd_load_policy(&net, &o, &e->spec);
        if (rc < 0) {
            env_free(e);
            return 2;
        }
    }
    int status = env_cmd_run(&o, e, actions, &net);
    policy_free(&net);
    if (actions != NULL) {
        fclose(actions);
    }
    env_free(e);
    return status;
}
