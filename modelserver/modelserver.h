/* modelserver.h - twig-modelserver: owns the run's durable log of real transitions and
 * serves it over gRPC (service twig.v1.ModelServer, see proto/twig.proto).
 *
 *   AppendReal        one batch; answered once durable (reallog's sync policy) with its offsets;
 *                     idempotent on (source_id, seq)
 *   AppendRealStream  client stream of batches; one reply with an ack per message once all
 *                     are durable
 *   FetchReal         transitions from from_offset on; wait_ms > 0 long-polls at the end
 *   LogStatus         end offset, sources, env id, dims, the source epoch and fence
 *   GetModel          the newest dynamics model (modelserver/trainer.h: fits on its own thread
 *                     at the run's model training points, long polls with wait_ms)
 *   grpc.health.v1.Health/Check (by the rpc layer)
 *
 * The log's schema is the run's (cfg->env_id and dims, fixed before the first batch). When
 * the log cannot be written (disk full, I/O error), appends fail with that error (ENOSPC:
 * RESOURCE_EXHAUSTED), the server reports not ready (health "readiness" and "" NOT_SERVING,
 * Stats ready 0; "liveness" stays SERVING) and logs the change once; the first append
 * written after that makes it ready again. Nothing needs a restart.
 *
 * Threads: the libuv loop on the caller's thread (signals, FetchReal and its long polls), the
 * rpc layer's completion-queue thread (AppendReal*, LogStatus: validation and queueing, never
 * blocking on the disk) and the log's appender thread (writes, syncs, sends append replies).
 *
 *     modelserver_t ms;
 *     rc = modelserver_init(&ms, &cfg);    // opens the log, binds, starts serving
 *     rc = modelserver_run(&ms);           // until SIGTERM/SIGINT, then a clean shutdown
 *     modelserver_free(&ms);
 */
#ifndef TWIG_MODELSERVER_H
#define TWIG_MODELSERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

#include "modelserver/fetcher.h"
#include "modelserver/reallog.h"
#include "common/rpc/daemon.h"
#include "common/rpc/longpoll.h"
#include "common/rpc/metrics.h"
#include "common/rpc/rpc.h"
#include "common/config/run_config.h"
#include "modelserver/trainer.h"

#define MODELSERVER_SERVICE "twig.v1.ModelServer"
#define MODELSERVER_FETCH_DEFAULT 4096u   /* FetchReal rows when max_count is 0 */
#define MODELSERVER_FETCH_MAX 65536u      /* and at most this many */
#define MODELSERVER_WAIT_MAX_MS 60000u    /* longest FetchReal long poll */
#define MODELSERVER_GRACE_MS 2000         /* shutdown: calls in flight get this long */
#define MODELSERVER_ROOM_WAIT_MS 5000     /* a stream waits this long for room in the log queue */

typedef struct modelserver_cfg {
    const char *listen;       /* "HOST:PORT" (port 0: any free one); borrowed */
    const char *data_dir;     /* borrowed */
    const char *env_id;       /* the run's env id (required); borrowed */
    uint32_t obs_dim;         /* its spec's dims: the log's schema */
    uint32_t act_dim;
    const char *port_file;    /* NULL or a file that gets the bound port; borrowed */
    const char *metrics_listen; /* Prometheus /metrics "HOST:PORT"; NULL or "": off; borrowed */
    reallog_sync sync;
    uint64_t segment_bytes;
    uint32_t max_sources;        /* the log's source table (reallog_opts); 0: default */
    uint64_t source_quiet_steps; /* 0: default */
    int grace_ms;
    const run_cfg *run;       /* model_train_freq, init_steps, seed; borrowed */
    const trainer_cfg *train; /* the model options (trainer_opts); borrowed */
} modelserver_cfg;

typedef struct modelserver {
    modelserver_cfg cfg;
    uv_loop_t loop;
    reallog_t log;
    rpc_server_t *srv;
    int port;
    metrics_t metrics;               /* GET /metrics on cfg.metrics_listen */

    daemon_signals signals;          /* SIGTERM, SIGINT */
    uv_async_t wake;                 /* the log's end moved: answer long polls */
    pthread_mutex_t wake_mu;         /* guards wake_open against the appender's notify */
    int wake_open;
    int shutting_down;               /* loop thread */
    int loop_ready;
    int wake_ready;                  /* uv_async_init(wake) ran: close it */
    int log_open;

    rpc_longpoll_t fetch_polls;      /* parked FetchReal calls */
    rpc_longpoll_t model_polls;      /* parked GetModel calls (app: trainer) */
    fetcher_t fetcher;               /* FetchReal's reader thread: no pread on the loop */
    trainer_t trainer;               /* the model: fits, GetModel */
    int trainer_open;                /* guarded by wake_mu: the notify may reach the trainer */
} modelserver_t;

/* open the log in cfg->data_dir, bind cfg->listen, start serving, write the port file.
 * 0 or a negative code with err_msg() (bad config, log corrupt or in use, port taken). */
int modelserver_init(modelserver_t *ms, const modelserver_cfg *cfg);

/* run the loop until SIGTERM or SIGINT has shut the server down cleanly: stop accepting,
 * let calls in flight finish (grace_ms), drain the log's queue. 0 on a clean exit. */
int modelserver_run(modelserver_t *ms);

/* begin the shutdown from the loop thread (what the signals do) */
void modelserver_shutdown(modelserver_t *ms);

/* release everything; safe on a zeroed struct, after a failed init, and after an init that
 * was never run (it shuts down first) */
void modelserver_free(modelserver_t *ms);

#endif
