/* model_replay.c - twig-model-replay: how good are the model server's fits on a real log?
 *
 * usage: twig-model-replay DATA_DIR [--start N] [--fits K] [--every M] [--eval E] [--seed S]
 *        (defaults: 5000, 20, 250, 1000, 1)
 *
 * Replays a run's real-transition log (a model server's data dir, not in use) the way the
 * model server fits it: a fresh fit on the first N transitions, then K - 1 fits continued
 * from the previous weights every M transitions, each on all transitions so far, with the
 * model server's default `modelserver` options (MBPO's: 7 members, 5 elites, 4 x 200, early
 * stopping), mapped by trainer_ensemble_cfg as the server maps them. After each
 * fit it scores the elites' mean prediction on the next E transitions of the log, which the
 * fit has not seen and which the policy of that time produced: one-step MSE of next_obs and
 * of the reward, in the env's units. Last, a fresh fit on the same transitions as the last
 * continued one is the reference: continued fits should come close to it.
 *
 * One JSON line per fit:
 *   {"bench":"model_replay","fit":"continued"|"fresh","trained_on":N,"epochs":..,
 *    "seconds":..,"holdout_mse":..,"next_obs_mse":..,"next_reward_mse":..,"reward_var":..}
 * and a last line with the ratios of the last continued fit's errors to the fresh fit's.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/base/clock.h"
#include "common/config/config.h"
#include "common/nn/ensemble.h"
#include "common/base/err.h"
#include "common/base/log.h"
#include "modelserver/reallog.h"
#include "modelserver/trainer.h"

typedef struct replay_args {
    const char *dir;
    int start, fits, every, eval;
    unsigned long long seed;
} replay_args;

typedef struct fit_score {
    double obs_mse, reward_mse, reward_var;
} fit_score;

static int parse_args(replay_args *a, int argc, char **argv)
{
    *a = (replay_args){.start = 5000, .fits = 20, .every = 250, .eval = 1000, .seed = 1};
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (f[0] != '-') {
            if (a->dir) {
                fprintf(stderr, "twig-model-replay: one DATA_DIR, got '%s' and '%s'\n", a->dir, f);
                return -1;
            }
            a->dir = f;
            continue;
        }
        int *dst = !strcmp(f, "--start") ? &a->start
                   : !strcmp(f, "--fits") ? &a->fits
                   : !strcmp(f, "--every") ? &a->every
                   : !strcmp(f, "--eval") ? &a->eval
                   : NULL;
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        long long x = v ? strtoll(v, &end, 10) : 0;
        if (!strcmp(f, "--seed") && v && *end == '\0' && x >= 0) {
            a->seed = (unsigned long long)x;
        } else if (dst && v && *end == '\0' && x >= 1 && x <= 100000000) {
            *dst = (int)x;
        } else {
            fprintf(stderr, "twig-model-replay: %s %s: %s\n", f, v ? v : "",
                    dst || !strcmp(f, "--seed") ? "needs a positive integer" : "unknown flag");
            return -1;
        }
        i++;
    }
    if (!a->dir) {
        fprintf(stderr, "usage: twig-model-replay DATA_DIR [--start N] [--fits K] [--every M] "
                        "[--eval E] [--seed S]\n");
        return -1;
    }
    return 0;
}

/* errors of the elites' mean predictions on rows [from, from + n) of rows */
static fit_score score(const ensemble_t *e, ensemble_work_t *w, rng_t *rng,
                       const reallog_rows_t *rows, int from, int n, float *next, float *rew)
{
    const int O = e->cfg.n_obs, A = e->cfg.n_act;
    const float *obs = rows->obs + (size_t)from * O;
    ensemble_predict_all(e, w, rng, next, rew, obs, rows->act + (size_t)from * A, n, false);
    double so = 0.0, sr = 0.0, mean_r = 0.0, var_r = 0.0;
    for (int i = 0; i < n; i++) {
        mean_r += rows->reward[from + i];
    }
    mean_r /= n;
    for (int i = 0; i < n; i++) {
        double d = rows->reward[from + i] - mean_r;
        var_r += d * d;
    }
    for (int k = 0; k < e->cfg.n_elites; k++) {
        const int m = e->elites[k];
        for (int i = 0; i < n; i++) {
            const float *want = rows->next_obs + (size_t)(from + i) * O;
            const float *got = next + ((size_t)m * n + i) * O;
            for (int j = 0; j < O; j++) {
                so += (double)(got[j] - want[j]) * (got[j] - want[j]);
            }
            double d = rew[(size_t)m * n + i] - rows->reward[from + i];
            sr += d * d;
        }
    }
    const double cells = (double)n * e->cfg.n_elites;
    return (fit_score){so / (cells * O), sr / cells, var_r / n};
}

/* one fit on the first n rows, scored on the next a->eval; prints its JSON line */
static int fit_and_score(ensemble_t *e, ensemble_trainer_t *t, ensemble_work_t *w, rng_t *rng,
                         const reallog_rows_t *rows, int n, int eval, bool continued,
                         float *next, float *rew, fit_score *out)
{
    t->cfg.keep_function = continued;
    ensemble_train_report rep;
    double t0 = clock_now_s();
    int rc = ensemble_train(e, t, rng, &rep, rows->obs, rows->act, rows->next_obs, rows->reward,
                            n);
    if (rc < 0) {
        fprintf(stderr, "twig-model-replay: fit on %d transitions: %s\n", n, err_msg());
        return rc;
    }
    double secs = clock_now_s() - t0;
    *out = score(e, w, rng, rows, n, eval, next, rew);
    printf("{\"bench\":\"model_replay\",\"fit\":\"%s\",\"trained_on\":%d,\"epochs\":%d,"
           "\"seconds\":%.2f,\"holdout_mse\":%.5f,\"next_obs_mse\":%.5f,"
           "\"next_reward_mse\":%.6f,\"reward_var\":%.4f}\n",
           continued ? "continued" : "fresh", n, rep.epochs, secs, rep.holdout_mse_elites,
           out->obs_mse, out->reward_mse, out->reward_var);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    replay_args a;
    if (parse_args(&a, argc, argv) < 0) {
        return 2;
    }
    log_init("model-replay", LOG_LEVEL_WARN);
    char meta[4096];
    snprintf(meta, sizeof meta, "%s/meta", a.dir);
    if (access(meta, R_OK) != 0) { /* reallog_open would make a new, empty log there */
        fprintf(stderr, "twig-model-replay: %s is no model server data dir (no %s: %s)\n",
                a.dir, meta, strerror(errno));
        return 2;
    }
    reallog_t lg;
    reallog_opts lo = reallog_opts_default(a.dir);
    int rc = reallog_open(&lg, &lo);
    if (rc < 0) {
        fprintf(stderr, "twig-model-replay: %s\n", err_msg());
        return 1;
    }
    reallog_status st;
    reallog_get_status(&lg, &st);
    const long long last = (long long)a.start + (long long)(a.fits - 1) * a.every;
    if (st.obs_dim == 0 || last + a.eval > (long long)st.end_offset) {
        fprintf(stderr, "twig-model-replay: %s holds %llu transitions; --start %d --fits %d "
                        "--every %d --eval %d need %lld\n", a.dir,
                (unsigned long long)st.end_offset, a.start, a.fits, a.every, a.eval,
                last + a.eval);
        reallog_close(&lg);
        return 2;
    }
    const int N = (int)(last + a.eval);
    reallog_rows_t rows;
    reallog_rows_init(&rows, (uint32_t)N, st.obs_dim, st.act_dim);
    rc = reallog_fetch(&lg, &rows, 0, (uint32_t)N);
    reallog_close(&lg);
    if (rc < 0 || rows.count != (uint32_t)N) {
        fprintf(stderr, "twig-model-replay: reading %d transitions: %s\n", N, err_msg());
        return 1;
    }

    rng_t rng;
    rng_seed(&rng, a.seed);
    /* the model server's own defaults (its `modelserver` options), mapped as it maps them */
    trainer_cfg trc;
    config_table trt = {TRAINER_SECTION, trainer_opts, trainer_n_opts, &trc, trainer_opts_check};
    if (config_set_defaults(&trt, 1) < 0) {
        fprintf(stderr, "twig-model-replay: %s\n", err_msg());
        return 1;
    }
    ensemble_cfg ec;
    ensemble_train_cfg tc;
    trainer_ensemble_cfg(&ec, &tc, &trc, (int)st.obs_dim, (int)st.act_dim);
    ensemble_t e = {0}, ref = {0};
    ensemble_trainer_t t = {0}, tref = {0};
    ensemble_work_t w = {0};
    if (ensemble_init(&e, &ec, &rng) < 0 || ensemble_init(&ref, &ec, &rng) < 0 ||
        ensemble_trainer_init(&t, &e, &tc) < 0 || ensemble_trainer_init(&tref, &ref, &tc) < 0 ||
        ensemble_work_init(&w, &e, 1024) < 0) {
        fprintf(stderr, "twig-model-replay: %s\n", err_msg());
        return 1;
    }
    float *next = malloc(sizeof(float) * (size_t)ec.n_members * a.eval * st.obs_dim);
    float *rew = malloc(sizeof(float) * (size_t)ec.n_members * a.eval);
    fit_score cont = {0}, fresh = {0};
    for (int k = 0; k < a.fits && rc == 0; k++) {
        rc = fit_and_score(&e, &t, &w, &rng, &rows, a.start + k * a.every, a.eval, k > 0, next,
                           rew, &cont);
    }
    if (rc == 0) {
        rc = fit_and_score(&ref, &tref, &w, &rng, &rows, (int)last, a.eval, false, next, rew,
                           &fresh);
    }
    if (rc == 0) {
        printf("{\"bench\":\"model_replay_ratio\",\"trained_on\":%lld,"
               "\"next_obs_mse_continued_over_fresh\":%.3f,"
               "\"next_reward_mse_continued_over_fresh\":%.3f}\n",
               last, cont.obs_mse / fresh.obs_mse, cont.reward_mse / fresh.reward_mse);
    }
    free(next);
    free(rew);
    ensemble_work_free(&w);
    ensemble_trainer_free(&t);
    ensemble_trainer_free(&tref);
    ensemble_free(&e);
    ensemble_free(&ref);
    reallog_rows_free(&rows);
    return rc < 0 ? 1 : 0;
}
