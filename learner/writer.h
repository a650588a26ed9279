/* writer.h - the learner's writer thread: the writes that end in fsync (the record of the
 * newest policy version, checkpoints) run here, never on the training thread, so SAC
 * updates go on while the disk syncs.
 *
 * Jobs come in kinds (publish, checkpoint); each kind has at most one job waiting and one
 * running, so memory stays bounded however slow the disk. What happens when a job of a kind
 * is handed over while another one waits is the kind's choice:
 *   - supersede (publications): the newer job replaces the waiting one, whose drop callback
 *     releases it: a newer policy makes an unrecorded older one worthless, and one record
 *     covers every version built meanwhile (group commit). Training never waits.
 *   - keep every job (checkpoints: each is a promise of how little a crash loses): the
 *     submitter waits until the waiting job has started. Training waits only when the disk
 *     is slower than two checkpoints' worth of updates.
 *
 *     static const writer_kind kinds[] = {{run_publish, drop_publish}, {run_ckpt, drop_ckpt}};
 *     writer_start(&w, kinds, 2, app);
 *     writer_submit(&w, KIND_PUBLISH, blob);      // training thread: returns at once
 *     writer_stop(&w);                            // run what waits, then join
 */
#ifndef TWIG_LEARNER_WRITER_H
#define TWIG_LEARNER_WRITER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define WRITER_MAX_KINDS 4

typedef struct writer_kind {
    void (*run)(void *app, void *job);  /* writer thread; owns job from here on */
    void (*drop)(void *app, void *job); /* a waiting job superseded (submitter's thread);
                                         * NULL: keep every job, the submitter waits */
} writer_kind;

typedef struct writer {
    const writer_kind *kinds;
    int n_kinds;
    void *app;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv_work;   /* a job or stop, for the thread */
    pthread_cond_t cv_taken;  /* the thread took a waiting job */
    void *waiting[WRITER_MAX_KINDS];
    bool stop;
    bool started;
    /* atomics: read without the lock, also after writer_stop (Stats during a shutdown) */
    atomic_uint_fast64_t superseded[WRITER_MAX_KINDS];
    atomic_uint_fast64_t waited[WRITER_MAX_KINDS];    /* submissions that waited for room */
} writer_t;

/* start the thread; kinds (borrowed) has n_kinds <= WRITER_MAX_KINDS entries */
int writer_start(writer_t *w, const writer_kind *kinds, int n_kinds, void *app);

/* hand job (non-NULL) of kind to the thread; a job of that kind still waiting is dropped
 * (a kind with drop) or waited for until it starts (one without) */
void writer_submit(writer_t *w, int kind, void *job);

/* of kind so far: jobs dropped unrun because a newer one came, submissions that waited
 * (any thread, any time, also on a zeroed or stopped writer) */
uint64_t writer_superseded(writer_t *w, int kind);
uint64_t writer_waited(writer_t *w, int kind);

/* run what waits, join the thread; safe on a zeroed struct and twice */
void writer_stop(writer_t *w);

#endif
