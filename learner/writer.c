/* writer.c - the learner's writer thread (writer.h) */
#include "learner/writer.h"

#include <string.h>

#include "common/base/err.h"
#include "common/base/mem.h"

/* the kind of the next job to run, in kind order; -1 when none waits (holds mu) */
static int writer_next(const writer_t *w)
{
    for (int k = 0; k < w->n_kinds; k++) {
        if (w->waiting[k]) {
            return k;
        }
    }
    return -1;
}

static void *writer_main(void *arg)
{
    writer_t *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        int k = writer_next(w);
        if (k < 0) {
            if (w->stop) {
                break;
            }
            pthread_cond_wait(&w->cv_work, &w->mu);
            continue;
        }
        void *job = w->waiting[k];
        w->waiting[k] = NULL;
        pthread_cond_broadcast(&w->cv_taken);
        pthread_mutex_unlock(&w->mu);
        w->kinds[k].run(w->app, job);
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

int writer_start(writer_t *w, const writer_kind *kinds, int n_kinds, void *app)
{
    TWIG_ASSERT(n_kinds >= 1 && n_kinds <= WRITER_MAX_KINDS);
    memset(w, 0, sizeof *w);
    w->kinds = kinds;
    w->n_kinds = n_kinds;
    w->app = app;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv_work, NULL);
    pthread_cond_init(&w->cv_taken, NULL);
    int rc = pthread_create(&w->thread, NULL, writer_main, w);
    if (rc != 0) {
        pthread_cond_destroy(&w->cv_taken);
        pthread_cond_destroy(&w->cv_work);
        pthread_mutex_destroy(&w->mu);
        return err_set(-rc, "the writer thread: %s", strerror(rc));
    }
    w->started = true;
    return 0;
}

void writer_submit(writer_t *w, int kind, void *job)
{
    TWIG_ASSERT(w->started && kind >= 0 && kind < w->n_kinds && job);
    pthread_mutex_lock(&w->mu);
    void *old = NULL;
    if (w->waiting[kind] && w->kinds[kind].drop) {
        old = w->waiting[kind];
        atomic_fetch_add(&w->superseded[kind], 1);
    } else if (w->waiting[kind]) {
        atomic_fetch_add(&w->waited[kind], 1);
        while (w->waiting[kind]) {
            pthread_cond_wait(&w->cv_taken, &w->mu);
        }
    }
    w->waiting[kind] = job;
    pthread_cond_signal(&w->cv_work);
    pthread_mutex_unlock(&w->mu);
    if (old) {
        w->kinds[kind].drop(w->app, old);
    }
}

uint64_t writer_superseded(writer_t *w, int kind)
{
    return atomic_load(&w->superseded[kind]);
}

uint64_t writer_waited(writer_t *w, int kind)
{
    return atomic_load(&w->waited[kind]);
}

void writer_stop(writer_t *w)
{
    if (!w->started) {
        return;
    }
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_signal(&w->cv_work);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_cond_destroy(&w->cv_taken);
    pthread_cond_destroy(&w->cv_work);
    pthread_mutex_destroy(&w->mu);
    w->started = false;
}
