/* trainer.h - the model server's dynamics model: trains MBPO's ensemble on the real log, on
 * its own thread, and serves the newest model as a versioned WeightBlob
 * (twig.v1.ModelServer/GetModel).
 *
 * When. At the model training points of the run (run_model_point: P0 = init_steps rounded up
 * to a multiple of model_train_freq, then every model_train_freq real steps): as soon as the
 * log's end reaches the first point above the last model's trained_on, the trainer reads the
 * rows it has not seen yet (an in-process reader of the log, never over RPC), fits the
 * ensemble on ALL real rows [0, end) (ensemble_train: holdout, bootstraps, early stopping;
 * warm-started from the previous fit as MBPO's persistent model is) and publishes version + 1.
 * If the end jumped over several points, one fit covers them all.
 *
 * Epochs. MBPO calls its fit with max_epochs=None and max_t=max_model_t (None in every
 * released config: jannerm/mbpo examples/config/<task>/0.py; mbpo.py `_train_model(...,
 * max_epochs=None, holdout_ratio=0.2, max_t=self._max_model_t)`), i.e. it trains until the
 * holdout stops improving (5 epochs without a 1% gain). twig keeps that and adds a cap,
 * `train_max_epochs`, as a bound on one fit (default 1000, never reached on MBPO's tasks).
 *
 * What is published. ensemble_blob_init's tensors (members, elites, normaliser, bounds,
 * holdout MSEs) and stats, plus
 *     WeightBlob.trained_on   real steps the fit saw (rows [0, trained_on)), an integer:
 *                             what the rollout workers' strict pacing compares (a blob
 *                             written before the field has only the float stat of the same
 *                             name, read at load and served with the field)
 *     stats trained_on, train_epochs, train_seconds   the same, the fit's epochs and wall
 *                             time, as floats for people (exact below 2^24 only)
 * Before it is served, a model is made durable (each file tmp, fsync, rename, fsync DIR):
 *     DIR/model.version  its version as decimal text, first: the highest version the data
 *                        dir ever published, whatever becomes of model.blob
 *     DIR/model.blob     format 2: "TWIGMDL\0", u32 format (2), u64 n, the packed WeightBlob
 *                        (n bytes), u32 crc32c of everything before it (little endian)
 *     DIR/model.adam     the fit's Adam moments (ensemble_trainer_save_file)
 * so a restarted server serves the same newest version and warm-starts from it when the
 * ensemble options are unchanged, with the moments (a crash between blob and moments pairs a
 * model with the moments of the fit before it, which only changes the optimiser's momentum).
 *
 * The log is the source of truth. A model.blob that is not a sound model (empty, truncated,
 * failing its checksum, in format 1 — the bare WeightBlob of earlier builds, whose stats and
 * version no checksum covered —, another format, values a model cannot have, or another
 * env or dims than the log's) is logged once (event=model_discarded, the file and what is
 * wrong) and never served; the server starts and refits from the whole log at once. A
 * model.blob that cannot be read at all (permissions, I/O) fails the start. A damaged
 * model.adam is logged (event=model_adam_discarded) and the fit starts with fresh moments.
 *
 * Versions never repeat with other weights: the next version is above the version floor,
 * the highest of model.version, a sound model.blob's version, the version a format 1 file
 * carries, and any have_version a GetModel presented that this server has not published (a
 * client of an earlier life; at most TRAINER_VERSION_HINT_MAX). With model.version gone too
 * and no client asking before the refit is published, versions start again at 1; a client
 * then gets a version lower than its own, and takes it, as rollout workers take any version
 * that differs from theirs (they judge a model by its trained_on, which a refit from the
 * whole log never lowers).
 *
 * GetModel(have_version, wait_ms): the blob when the newest version differs from
 * have_version (a have_version the server never published gets the newest, so a client of a
 * wiped server resyncs, and raises the version floor); else, after up to wait_ms (long
 * poll, at most TRAINER_WAIT_MAX_MS and never past the client's deadline), empty_reason
 * NO_VERSION; NOT_READY while shutting down. wait_ms above TRAINER_WAIT_MAX_MS or
 * have_version above TRAINER_VERSION_HINT_MAX: INVALID_ARGUMENT.
 *
 * Threads. trainer_thread fits (OpenBLAS with `train_threads`); GetModel runs on the owner's
 * loop and parks on the owner's rpc_longpoll_t (app: the trainer), which the loop notifies
 * when the trainer says it published (trainer_set_publish_notify: wake the loop from there).
 * The published blob is swapped under the lock, which is held only to swap and to answer a
 * call, so appends and fetches never wait for a fit.
 *
 *     trainer_t tr;
 *     trainer_init(&tr, &tcfg, &run, &log, dir);     // loads DIR/model.blob if sound
 *     rpc_longpoll_init(&polls, &loop, &trainer_model_poll_ops, &tr);
 *     trainer_set_publish_notify(&tr, wake_the_loop, owner);  // loop: rpc_longpoll_notify
 *     trainer_start(&tr);                            // the fit's thread
 *     ... log's notify: trainer_notify_end(&tr, end);
 *     ... RPC_RUN_ON_LOOP GetModel: return trainer_get_model(&tr, &polls, call, msg);
 *     trainer_shutdown(&tr);                         // refuses new calls, stops the fit
 *     rpc_longpoll_close(&polls);                    // loop: parked calls get NOT_READY
 *     trainer_free(&tr);                             // joins (before the log closes)
 */
#ifndef TWIG_MODELSERVER_TRAINER_H
#define TWIG_MODELSERVER_TRAINER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/config/config.h"
#include "common/rpc/ensemble_blob.h"
#include "common/rpc/longpoll.h"
#include "modelserver/reallog.h"
#include "common/base/rng.h"
#include "common/rpc/rpc.h"
#include "common/config/run_config.h"

#define TRAINER_SECTION "modelserver"
#define TRAINER_BLOB_FILE "model.blob"
#define TRAINER_ADAM_FILE "model.adam"
#define TRAINER_VERSION_FILE "model.version"
#define TRAINER_BLOB_MAGIC "TWIGMDL"              /* 8 bytes with its NUL */
#define TRAINER_BLOB_FORMAT 2u                    /* 1: the bare WeightBlob (refused) */
#define TRAINER_BLOB_HEADER 20                    /* magic, u32 format, u64 length */
#define TRAINER_BLOB_FILE_MAX (RPC_DEFAULT_MAX_MSG_BYTES + TRAINER_BLOB_HEADER + 4)
#define TRAINER_VERSION_HINT_MAX (1ull << 53)     /* largest have_version taken as a floor */
#define TRAINER_WAIT_MAX_MS 60000u /* longest GetModel long poll */
#define TRAINER_FETCH_ROWS 4096u   /* rows per read of the log */
/* ensemble_size x (model_layers - 1) x model_hidden^2 at most (2^28: 1 GiB of floats per
 * copy; MBPO's 7 x 3 x 200^2 is 840k, Humanoid's 400 wide 3.4M) */
#define TRAINER_MAX_HIDDEN_WEIGHTS (1u << 28)

/* the model options of the modelserver section (trainer_opts) */
typedef struct trainer_cfg {
    int ensemble_size;    /* members, MBPO 7 */
    int elites;           /* MBPO 5 */
    int model_hidden;     /* MBPO 200 */
    int model_layers;     /* hidden layers, MBPO 4 */
    int train_max_epochs; /* cap on one fit (MBPO: none) */
    float holdout_ratio;  /* MBPO 0.2 */
    int max_holdout;      /* MBPO 5000 */
    int patience;         /* stop after more epochs than this without a gain, MBPO 5 */
    int min_epochs;       /* epochs before patience may stop a fit */
    int model_batch;      /* MBPO 256 */
    float model_lr;       /* MBPO 1e-3 */
    int train_threads;    /* OpenBLAS threads of the fit */
    bool fresh_fit;       /* start every fit from new weights (default: continue, see design.md) */
} trainer_cfg;

extern const config_opt trainer_opts[];
extern const int trainer_n_opts;

/* the checks between model options (the table's check; cfg a trainer_cfg, run unused):
 * elites <= ensemble_size, min_epochs <= train_max_epochs, the hidden weights within
 * TRAINER_MAX_HIDDEN_WEIGHTS. 0, or -EINVAL naming both options and their values */
int trainer_opts_check(const void *cfg, const void *run);

/* a published model: the unpacked blob (owned) and its GetModel reply, packed once */
typedef struct trainer_model {
    Twig__V1__WeightBlob *msg; /* owned (protobuf-c unpacked) */
    rpc_packed_t *reply;       /* one reference, owned */
    uint64_t version;
    uint64_t trained_on;
    float holdout_mse; /* of the elites */
} trainer_model;

typedef struct trainer_status {
    uint64_t version; /* newest published, 0: none */
    uint64_t trained_on;
    uint64_t trainings; /* fits published by this process */
    uint64_t reply_packs; /* GetModel replies packed: one per model published or loaded */
    bool training;      /* a fit is running */
    float holdout_mse;
    double last_train_seconds;
    int64_t adam_steps; /* Adam steps of the model's training so far (all fits) */
} trainer_status;

typedef struct trainer {
    trainer_cfg cfg;
    run_cfg run;
    reallog_t *log; /* borrowed */
    char *dir;      /* owned */

    pthread_mutex_t mu;      /* guards everything below it */
    pthread_cond_t cv_train; /* trainer thread: end moved or stopping */
    uint64_t end;            /* the log's end as last notified */
    int stopping;
    trainer_model *pub;             /* newest model, NULL before the first */
    void (*on_publish)(void *arg);  /* after each publish, outside mu (wakes the loop) */
    void *on_publish_arg;
    uint64_t trainings;
    uint64_t reply_packs;
    bool training;
    double last_train_seconds;
    int64_t adam_steps;
    uint64_t version_floor; /* every version published from now on is above it */

    atomic_int stop; /* ends a fit early */
    pthread_t train_thread;
    int threads_started;
    int mu_ready;

    /* trainer thread only */
    rng_t rng;
    ensemble_t ens; /* warm state between fits */
    ensemble_trainer_t tr;
    int ens_ready;
    int ens_fitted; /* ens holds a fitted model (trained here or loaded): fits continue it */
    uint64_t n_rows; /* rows read from the log so far */
    uint64_t cap_rows;
    float *obs, *act, *next_obs, *reward;
} trainer_t;

/* copy cfg and run, read DIR/model.version and load DIR/model.blob if present and sound
 * (it must match the log's env and dims when the log has them; one that is not is logged
 * and refitted, see above), with DIR/model.adam on a warm start. 0, or a negative code with
 * err_msg(): a bad cfg (-EINVAL naming the options), a model file that cannot be read at all
 * (-errno naming it). */
int trainer_init(trainer_t *t, const trainer_cfg *cfg, const run_cfg *run, reallog_t *log,
                 const char *dir);
/* start the fit's thread; 0 or -errno */
int trainer_start(trainer_t *t);
/* the log's end moved (from the log's notify callback, any thread) */
void trainer_notify_end(trainer_t *t, uint64_t end);
/* GetModel's long poll on the owner's loop (rpc_longpoll_init with app = the trainer):
 * news is a published version other than the caller's */
extern const rpc_longpoll_ops trainer_model_poll_ops;
/* fn(arg) runs on the fit's thread after each publish (no trainer lock held): the owner
 * wakes its loop there, which then calls rpc_longpoll_notify. fn NULL: none. Any thread */
void trainer_set_publish_notify(trainer_t *t, void (*fn)(void *arg), void *arg);
/* the GetModel handler body, on polls' loop thread: returns 0 (replied), RPC_DEFER (parked
 * on polls) or < 0 */
int trainer_get_model(trainer_t *t, rpc_longpoll_t *polls, rpc_call_t *call,
                      const ProtobufCMessage *msg);
/* refuse new calls (NOT_READY), end a running fit after its epoch; returns at once (the
 * owner closes its polls: parked calls get NOT_READY). Any thread; later calls do nothing. */
void trainer_shutdown(trainer_t *t);
/* shut down if needed, join the threads, release everything. Safe on a zeroed struct and
 * after a failed init. */
void trainer_free(trainer_t *t);

void trainer_get_status(trainer_t *t, trainer_status *st);

/* the ensemble and training settings the options give, for obs/act dims */
void trainer_ensemble_cfg(ensemble_cfg *ec, ensemble_train_cfg *tc, const trainer_cfg *cfg,
                          int n_obs, int n_act);

#endif
