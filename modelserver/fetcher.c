/* fetcher.c - FetchReal's reader thread (fetcher.h) */
#include "modelserver/fetcher.h"

#include <errno.h>
#include <string.h>

#include "common/base/err.h"
#include "common/base/log.h"
#include "common/rpc/msg.h"

/* read and answer one request (reader thread) */
static void fetcher_answer(fetcher_t *f, const fetch_req *q)
{
    reallog_status st;
    reallog_get_status(f->log, &st);
    reallog_rows_t *rows = &f->rows;
    if (st.obs_dim && (rows->obs_dim != st.obs_dim || rows->act_dim != st.act_dim)) {
        /* the schema is fixed once per log: this runs once */
        reallog_rows_free(rows);
        reallog_rows_init(rows, f->rows_cap, st.obs_dim, st.act_dim);
    }
    Twig__V1__FetchRealReply r = TWIG__V1__FETCH_REAL_REPLY__INIT;
    Twig__V1__TransitionBatch b;
    r.first_offset = q->from;
    rows->count = 0;
    if (rows->cap > 0) {
        int rc = reallog_fetch(f->log, rows, q->from, q->max_count);
        if (rc < 0) {
            rpc_call_reply(q->call, rc, NULL);
            return;
        }
    }
    r.end_offset = reallog_end(f->log);
    if (rows->count > 0) {
        tbatch_t v = {
            .env_id = st.env_id, .source_id = "", .obs_dim = rows->obs_dim,
            .act_dim = rows->act_dim, .count = rows->count, .obs = rows->obs, .act = rows->act,
            .reward = rows->reward, .next_obs = rows->next_obs, .terminated = rows->terminated,
            .truncated = rows->truncated,
        };
        msg_batch_from_view(&b, &v);
        r.batch = &b;
        r.empty_reason = TWIG__V1__EMPTY_REASON__EMPTY_REASON_NONE;
    } else {
        r.empty_reason = (Twig__V1__EmptyReason)q->if_empty;
    }
    rpc_call_reply(q->call, 0, &r.base);
}

static void *fetcher_main(void *arg)
{
    fetcher_t *f = arg;
    pthread_mutex_lock(&f->mu);
    for (;;) {
        while (f->n == 0 && !f->stopping) {
            pthread_cond_wait(&f->cv, &f->mu);
        }
        if (f->n == 0) {
            break;   /* stopping and drained */
        }
        fetch_req q = f->queue[f->head];
        f->head = (f->head + 1) % FETCHER_QUEUE_MAX;
        f->n--;
        atomic_store(&f->queued, f->n);
        pthread_mutex_unlock(&f->mu);
        fetcher_answer(f, &q);
        pthread_mutex_lock(&f->mu);
        f->served++;
    }
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

int fetcher_start(fetcher_t *f, reallog_t *log, uint32_t rows_cap)
{
    memset(f, 0, sizeof *f);
    f->log = log;
    f->rows_cap = rows_cap;
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    int rc = pthread_create(&f->thread, NULL, fetcher_main, f);
    if (rc != 0) {
        pthread_cond_destroy(&f->cv);
        pthread_mutex_destroy(&f->mu);
        f->log = NULL;
        return err_set(-rc, "FetchReal reader thread: %s", strerror(rc));
    }
    f->running = true;
    return 0;
}

int fetcher_submit(fetcher_t *f, rpc_call_t *call, uint64_t from, uint32_t max_count,
                   int if_empty)
{
    pthread_mutex_lock(&f->mu);
    int rc = 0;
    if (f->stopping || !f->running) {
        rc = err_set(TWIG_ESHUTDOWN, "the model server is shutting down");
    } else if (f->n == FETCHER_QUEUE_MAX) {
        f->refused_full++;
        rc = err_set(TWIG_EFULL, "%u FetchReal calls are waiting for the log reader already: "
                     "retry later", FETCHER_QUEUE_MAX);
    } else {
        f->queue[(f->head + f->n) % FETCHER_QUEUE_MAX] =
            (fetch_req){.call = call, .from = from, .max_count = max_count, .if_empty = if_empty};
        f->n++;
        atomic_store(&f->queued, f->n);
        pthread_cond_signal(&f->cv);
    }
    pthread_mutex_unlock(&f->mu);
    return rc;
}

uint32_t fetcher_queued(fetcher_t *f)
{
    return atomic_load(&f->queued);
}

void fetcher_stop(fetcher_t *f)
{
    if (!f->log) {
        return;   /* zeroed, or stopped already */
    }
    if (f->running) {
        pthread_mutex_lock(&f->mu);
        f->stopping = true;
        pthread_cond_signal(&f->cv);
        pthread_mutex_unlock(&f->mu);
        pthread_join(f->thread, NULL);
        f->running = false;
        log_debug("event=fetcher_stopped served=%llu refused_full=%llu",
                  (unsigned long long)f->served, (unsigned long long)f->refused_full);
    }
    reallog_rows_free(&f->rows);
    pthread_cond_destroy(&f->cv);
    pthread_mutex_destroy(&f->mu);
    f->log = NULL;
}
