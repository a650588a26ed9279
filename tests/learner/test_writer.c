/* learner/writer.h: slow writes off the training thread; per kind one job runs and one waits;
 * a superseding kind drops the waiting job, a keeping kind makes the submitter wait */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>

#include "learner/writer.h"
#include "tests/procfix.h"

typedef struct app {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool open;             /* the gate every run waits at */
    atomic_int started;    /* runs that began */
    int ran[16], n_ran;    /* job ids in the order they ran */
    int dropped[16], n_dropped;
} app;

static void run_job(void *a_, void *job)
{
    app *a = a_;
    atomic_fetch_add(&a->started, 1);
    pthread_mutex_lock(&a->mu);
    while (!a->open) {
        pthread_cond_wait(&a->cv, &a->mu);
    }
    a->ran[a->n_ran++] = *(int *)job;
    pthread_mutex_unlock(&a->mu);
}

static void drop_job(void *a_, void *job)
{
    app *a = a_;
    pthread_mutex_lock(&a->mu);
    a->dropped[a->n_dropped++] = *(int *)job;
    pthread_mutex_unlock(&a->mu);
}

static void open_gate(app *a)
{
    pthread_mutex_lock(&a->mu);
    a->open = true;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

static void wait_started(app *a, int n)
{
    int64_t deadline = procfix_now_ms() + 10000;
    while (atomic_load(&a->started) < n) {
        cr_assert(procfix_now_ms() < deadline, "job %d never started", n);
        procfix_pause_ms(1);
    }
}

static app *app_new(void)
{
    static app a;
    memset(&a, 0, sizeof a);
    pthread_mutex_init(&a.mu, NULL);
    pthread_cond_init(&a.cv, NULL);
    return &a;
}

Test(writer, a_newer_job_supersedes_the_waiting_one_and_the_running_one_finishes)
{
    static const writer_kind kinds[] = {{run_job, drop_job}};
    app *a = app_new();
    writer_t w;
    cr_assert_eq(writer_start(&w, kinds, 1, a), 0);
    int ids[4] = {1, 2, 3, 4};
    writer_submit(&w, 0, &ids[0]);
    wait_started(a, 1);              /* job 1 runs (held at the gate) */
    writer_submit(&w, 0, &ids[1]);   /* waits */
    writer_submit(&w, 0, &ids[2]);   /* supersedes 2 */
    writer_submit(&w, 0, &ids[3]);   /* supersedes 3 */
    cr_expect_eq(writer_superseded(&w, 0), 2);
    open_gate(a);
    writer_stop(&w);                 /* runs what waits */
    cr_assert_eq(a->n_ran, 2);
    cr_expect_eq(a->ran[0], 1);
    cr_expect_eq(a->ran[1], 4, "the newest ran");
    cr_assert_eq(a->n_dropped, 2);
    cr_expect(a->dropped[0] == 2 && a->dropped[1] == 3);
    writer_stop(&w);                 /* twice is fine */
}

typedef struct submitter {
    writer_t *w;
    int *job;
    atomic_int done;
} submitter;

static void *submit_main(void *p)
{
    submitter *s = p;
    writer_submit(s->w, 1, s->job);
    atomic_store(&s->done, 1);
    return NULL;
}

Test(writer, a_keeping_kind_runs_every_job_in_order_and_the_third_waits_for_room)
{
    static const writer_kind kinds[] = {{run_job, drop_job}, {run_job, NULL}};
    app *a = app_new();
    writer_t w;
    cr_assert_eq(writer_start(&w, kinds, 2, a), 0);
    int ids[3] = {10, 20, 30};
    writer_submit(&w, 1, &ids[0]);
    wait_started(a, 1);              /* 10 runs */
    writer_submit(&w, 1, &ids[1]);   /* 20 waits: room for one */
    submitter s = {.w = &w, .job = &ids[2]};
    pthread_t th;
    pthread_create(&th, NULL, submit_main, &s);
    /* 30 cannot be handed over while 20 waits: the submitter blocks until 20 starts */
    int64_t deadline = procfix_now_ms() + 10000;
    while (writer_waited(&w, 1) < 1) {
        cr_assert(procfix_now_ms() < deadline, "the third submission never waited");
        procfix_pause_ms(1);
    }
    cr_expect_eq(atomic_load(&s.done), 0);
    open_gate(a);
    pthread_join(th, NULL);
    cr_expect_eq(writer_superseded(&w, 1), 0);
    writer_stop(&w);
    cr_assert_eq(a->n_ran, 3, "every job of a keeping kind runs");
    cr_expect(a->ran[0] == 10 && a->ran[1] == 20 && a->ran[2] == 30);
    cr_expect_eq(a->n_dropped, 0);
}
