/* run_config.c - the run's shared option table and the MBPO schedule */
#include "common/config/run_config.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/err.h"
#include "common/base/netaddr.h"

static const char *const pacing_names[] = {"strict", "async", NULL};

const char *const run_sections[] = {"actor", "learner", "modelserver", "rollout", "launcher",
                                    NULL};

#define R(field) offsetof(run_cfg, field)
const config_opt run_opts[] = {
    {"run_id", CFG_STRING, R(run_id), "", 0, RUN_ID_MAX,
     "the run's name: a rollout worker or actor of another run is refused when it joins", NULL},
    {"env", CFG_STRING, R(env), "Pendulum-v1", 1, RUN_ENV_MAX, "environment id", NULL},
    {"seed", CFG_U64, R(seed), "1", 0, 1e15, "seed of the whole run", NULL},
    {"real_steps", CFG_U64, R(real_steps), "6000", 1, 1e12, "budget of real env steps", NULL},
    {"init_steps", CFG_U64, R(init_steps), "1000", 0, 1e12,
     "random-action real steps before learning starts", NULL},
    {"utd", CFG_FLOAT, R(utd), "20", 0.01, 1e4, "SAC updates per real step", NULL},
    {"pacing", CFG_ENUM, R(pacing), "strict", 0, 0,
     "strict: wait to keep MBPO's ratios; async: run free and report ratios", pacing_names},
    {"model_train_freq", CFG_INT, R(model_train_freq), "250", 1, 1e9,
     "retrain the model every this many new real steps", NULL},
    {"rollouts_per_step", CFG_INT, R(rollouts_per_step), "400", 0, 1e7,
     "model branches started per real step", NULL},
    {"epoch_length", CFG_INT, R(epoch_length), "1000", 1, 1e9,
     "real steps per epoch (unit of the k schedule)", NULL},
    {"k_epoch_start", CFG_INT, R(k_epoch_start), "20", 0, 1e9,
     "epoch where the rollout length starts to grow", NULL},
    {"k_epoch_end", CFG_INT, R(k_epoch_end), "100", 0, 1e9,
     "epoch where the rollout length reaches k_max", NULL},
    {"k_min", CFG_INT, R(k_min), "1", 1, 1000, "rollout length at the start", NULL},
    {"k_max", CFG_INT, R(k_max), "1", 1, 1000, "rollout length at the end", NULL},
    {"retain_epochs", CFG_INT, R(retain_epochs), "1", 1, 1000,
     "epochs of synthetic data the learner keeps", NULL},
    {"real_ratio", CFG_FLOAT, R(real_ratio), "0.05", 0, 1,
     "share of real transitions in a SAC batch", NULL},
    {"hidden", CFG_INT, R(hidden), "256", 1, 4096, "policy and critic hidden width", NULL},
    {"target_entropy", CFG_FLOAT, R(target_entropy), "0", -1e4, 0,
     "SAC entropy target; 0 means -act_dim", NULL},
    {"eval_every", CFG_INT, R(eval_every), "1000", 1, 1e9, "real steps between evaluations",
     NULL},
    {"eval_episodes", CFG_INT, R(eval_episodes), "10", 1, 1000, "episodes per evaluation",
     NULL},
    {"n_actors", CFG_INT, R(n_actors), "1", 1, 256, "actor processes", NULL},
    {"n_rollout", CFG_INT, R(n_rollout), "1", 0, 256, "rollout worker processes", NULL},
    {"modelserver_addr", CFG_ADDR, R(modelserver_addr), "127.0.0.1:7101", 3, RUN_ADDR_MAX,
     "host:port of twig-modelserver", NULL},
    {"learner_addr", CFG_ADDR, R(learner_addr), "127.0.0.1:7102", 3, RUN_ADDR_MAX,
     "host:port of twig-learner", NULL},
    {"tls_ca", CFG_STRING, R(tls_ca), "", 0, RUN_PATH_MAX,
     "PEM CA certificate for mutual TLS on every connection; empty: plaintext (trusted "
     "network only)", NULL},
    {"tls_cert", CFG_STRING, R(tls_cert), "", 0, RUN_PATH_MAX,
     "PEM certificate of this process, signed by tls_ca (per host: --set tls_cert=...)", NULL},
    {"tls_key", CFG_STRING, R(tls_key), "", 0, RUN_PATH_MAX, "PEM private key of tls_cert",
     NULL},
    {"tls_server_name", CFG_STRING, R(tls_server_name), "", 0, RUN_TLS_NAME_MAX,
     "name the servers' certificates must carry; empty: the host of the address dialled",
     NULL},
};
#undef R
const int run_n_opts = (int)(sizeof run_opts / sizeof run_opts[0]);

int run_rollout_length(const run_cfg *r, uint64_t real_steps)
{
    /* MBPO's _set_rollout_length: whole epochs, linear growth, truncated to an int */
    uint64_t epoch = real_steps / (uint64_t)r->epoch_length;
    if (epoch <= (uint64_t)r->k_epoch_start) {
        return r->k_min;
    }
    double frac = r->k_epoch_end > r->k_epoch_start
                      ? (double)(epoch - (uint64_t)r->k_epoch_start) /
                            (r->k_epoch_end - r->k_epoch_start)
                      : 1.0;
    if (frac > 1.0) {
        frac = 1.0;
    }
    return (int)(frac * (r->k_max - r->k_min) + r->k_min);
}

static uint64_t run_first_model_point(const run_cfg *r)
{
    uint64_t f = (uint64_t)r->model_train_freq;
    uint64_t p0 = (r->init_steps + f - 1) / f * f;
    return p0 < f ? f : p0;
}

uint64_t run_model_point(const run_cfg *r, uint64_t real_steps)
{
    uint64_t p0 = run_first_model_point(r), f = (uint64_t)r->model_train_freq;
    if (real_steps < p0) {
        return 0;
    }
    return p0 + (real_steps - p0) / f * f;
}

uint64_t run_model_next_point(const run_cfg *r, uint64_t real_steps)
{
    uint64_t p0 = run_first_model_point(r);
    if (real_steps < p0) {
        return p0;
    }
    return run_model_point(r, real_steps) + (uint64_t)r->model_train_freq;
}

uint64_t run_synthetic_capacity(const run_cfg *r, int k)
{
    uint64_t per_training = (uint64_t)r->rollouts_per_step * (uint64_t)r->model_train_freq;
    uint64_t trainings = (uint64_t)(r->epoch_length / r->model_train_freq);
    if (trainings == 0) {
        trainings = 1;
    }
    return per_training * (uint64_t)k * (uint64_t)r->retain_epochs * trainings;
}

uint64_t run_utd_credit(double utd, uint64_t steps)
{
    double c = floor(utd * (double)steps);
    if (c <= 0.0) {
        return 0;
    }
    if (c >= 1.8e19) {
        return UINT64_MAX - 1;
    }
    return (uint64_t)c;
}

int run_cfg_check(const run_cfg *r)
{
    if (r->k_min > r->k_max) {
        return err_set(-EINVAL, "k_min (%d) is larger than k_max (%d)", r->k_min, r->k_max);
    }
    if (r->k_epoch_start > r->k_epoch_end) {
        return err_set(-EINVAL, "k_epoch_start (%d) is after k_epoch_end (%d)", r->k_epoch_start,
                       r->k_epoch_end);
    }
    if (r->init_steps >= r->real_steps) {
        return err_set(-EINVAL, "init_steps (%llu) leaves nothing of real_steps (%llu)",
                       (unsigned long long)r->init_steps, (unsigned long long)r->real_steps);
    }
    if (r->pacing == RUN_PACING_STRICT && r->rollouts_per_step > 0 &&
        r->rollouts_per_step < r->n_rollout) {
        return err_set(-EINVAL,
                       "rollouts_per_step (%d) is below n_rollout (%d) with pacing strict: a "
                       "worker would have no share of the quota",
                       r->rollouts_per_step, r->n_rollout);
    }
    const char *tls[3][2] = {
        {"tls_ca", r->tls_ca}, {"tls_cert", r->tls_cert}, {"tls_key", r->tls_key}};
    int n_tls = !!r->tls_ca[0] + !!r->tls_cert[0] + !!r->tls_key[0];
    for (int i = 0; i < 3 && n_tls > 0 && n_tls < 3; i++) {
        if (!tls[i][1][0]) {
            const char *given = r->tls_ca[0] ? "tls_ca" : r->tls_cert[0] ? "tls_cert" : "tls_key";
            return err_set(-EINVAL, "%s is set but %s is empty: TLS needs tls_ca, tls_cert and "
                           "tls_key (or none of them, for plaintext)", given, tls[i][0]);
        }
    }
    if (n_tls == 0 && r->tls_server_name[0]) {
        return err_set(-EINVAL, "tls_server_name '%s' is set without tls_ca, tls_cert and "
                       "tls_key", r->tls_server_name);
    }
    const char *peers[2][2] = {{"modelserver_addr", r->modelserver_addr},
                               {"learner_addr", r->learner_addr}};
    for (int i = 0; i < 2; i++) {
        if (netaddr_check_peer(peers[i][1]) < 0) {
            char why[256];
            snprintf(why, sizeof why, "%s", err_msg());
            return err_set(-EINVAL, "%s '%s' is not a peer address: %s", peers[i][0],
                           peers[i][1], why);
        }
    }
    return 0;
}

int run_cfg_table_check(const void *base, const void *top)
{
    (void)top;
    return run_cfg_check(base);
}

config_table run_cfg_table(run_cfg *r)
{
    return (config_table){NULL, run_opts, run_n_opts, r, run_cfg_table_check};
}
