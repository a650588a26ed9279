/* a retried or refused append is answered without a heap allocation before the dedup check
 * decides it (issue 12, item 5): the allocations reallog_append_async makes in the calling
 * thread are counted (tests/alloc_count.h; the appender thread is not counted) */
#include <criterion/criterion.h>
#include <pthread.h>

#include "common/base/err.h"
#include "modelserver/reallog.h"
#include "fixture.h"
#include "tests/common/base/alloc_count.h"
#include "tests/procfix.h"

#define ENV "Pendulum-v1"
#define O 3
#define A 1
#define C 4

static char dir[PROCFIX_DIR_LEN];

static void setup(void)
{
    procfix_tmpdir(dir, sizeof dir);
    alloc_count_install();
}

static void teardown(void)
{
    procfix_tmpdir_done(dir);
}

TestSuite(reallog_noalloc, .init = setup, .fini = teardown, .timeout = 60);

static void append_ok(reallog_t *lg, int src, uint64_t seq, uint64_t epoch)
{
    fx_batch b;
    fx_batch_make(&b, ENV, src, seq, C, O, A);
    b.v.source_epoch = epoch;
    reallog_ack ack;
    int rc = reallog_append(lg, &ack, &b.v);
    cr_assert_eq(rc, 0, "append: %s %s", err_name(rc), err_msg());
    fx_batch_free(&b);
}

static void never_done(void *arg, int rc, const reallog_ack *ack, const char *text)
{
    (void)arg;
    (void)rc;
    (void)ack;
    (void)text;
    cr_assert_fail("a refused append ran its callback");
}

/* append (src, seq) of `count` rows, expecting the refusal want; the allocations it made */
static long refused_allocations(reallog_t *lg, int src, uint64_t seq, uint32_t count,
                                uint64_t epoch, int want, const char *what)
{
    fx_batch b;
    fx_batch_make(&b, ENV, src, seq, count, O, A);
    b.v.source_epoch = epoch;
    alloc_count_begin();
    int rc = reallog_append_async(lg, &b.v, never_done, NULL);
    long n = alloc_count_end();
    cr_expect_eq(rc, want, "%s: %s %s", what, err_name(rc), err_msg());
    fx_batch_free(&b);
    return n;
}

typedef struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int finished, rc;
    reallog_ack ack;
} waiter;

static void waiter_done(void *arg, int rc, const reallog_ack *ack, const char *text)
{
    (void)text;
    waiter *w = arg;
    pthread_mutex_lock(&w->mu);
    w->rc = rc;
    if (ack) {
        w->ack = *ack;
    }
    w->finished = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

Test(reallog_noalloc, refused_retries_and_refused_sources_allocate_nothing)
{
    reallog_opts o = reallog_opts_default(dir);
    o.env_id = ENV;
    o.obs_dim = O;
    o.act_dim = A;
    o.max_sources = 2;
    o.quiet_steps = 2 * C + 1;
    reallog_t lg;
    int rc = reallog_open(&lg, &o);
    cr_assert_eq(rc, 0, "open: %s %s", err_name(rc), err_msg());
    append_ok(&lg, 1, 1, 0); /* [0, 4) */
    append_ok(&lg, 1, 3, 0); /* [4, 8): seq 2 is a gap */
    append_ok(&lg, 2, 1, 0); /* [8, 12) */

    /* a gap filled late, and a retry whose count differs: -EINVAL */
    cr_expect_eq(refused_allocations(&lg, 1, 2, C, 0, -EINVAL, "gap"), 0);
    cr_expect_eq(refused_allocations(&lg, 1, 1, C + 1, 0, -EINVAL, "count"), 0);
    /* a new source, the table full and actor-1 quiet for 12 - 8 = 4 < 9: TWIG_EFULL */
    cr_expect_eq(refused_allocations(&lg, 3, 1, C, 0, TWIG_EFULL, "full"), 0);
    /* actor-2 goes on until actor-1 is quiet enough; actor-3 evicts it (fence 0 + 1) */
    append_ok(&lg, 2, 2, 0);
    append_ok(&lg, 2, 3, 0);
    append_ok(&lg, 3, 1, 0);
    reallog_status st;
    reallog_get_status(&lg, &st);
    cr_assert_eq(st.evictions, 1);
    cr_assert_eq(st.fence, 1);
    /* actor-1's retry of its stored seq 1: forgotten, below the fence: TWIG_EFENCED */
    cr_expect_eq(refused_allocations(&lg, 1, 1, C, 0, TWIG_EFENCED, "fenced"), 0);
    reallog_get_status(&lg, &st);
    cr_expect_eq(st.fenced, 1);
    cr_expect_eq(st.sources_full, 1);
    cr_expect_eq(st.end_offset, 6 * C, "nothing refused was stored");
    reallog_close(&lg);
}

Test(reallog_noalloc, a_duplicate_is_decided_before_anything_is_allocated)
{
    reallog_opts o = reallog_opts_default(dir);
    reallog_t lg;
    int rc = reallog_open(&lg, &o);
    cr_assert_eq(rc, 0, "open: %s %s", err_name(rc), err_msg());
    append_ok(&lg, 1, 1, 0);
    append_ok(&lg, 1, 2, 0);

    fx_batch b;
    fx_batch_make(&b, ENV, 1, 1, C, O, A);
    waiter w = {.finished = 0};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    alloc_count_begin();
    rc = reallog_append_async(&lg, &b.v, waiter_done, &w);
    long n = alloc_count_end();
    cr_assert_eq(rc, 0, "%s", err_msg());
    /* at most the queue item that carries its acknowledgement behind the queued appends
     * (before, the item was allocated first, and freed again for every refusal) */
    cr_expect_leq(n, 1);
    pthread_mutex_lock(&w.mu);
    while (!w.finished) {
        pthread_cond_wait(&w.cv, &w.mu);
    }
    pthread_mutex_unlock(&w.mu);
    cr_expect_eq(w.rc, 0);
    cr_expect_eq(w.ack.duplicate, 1);
    cr_expect_eq(w.ack.first_offset, 0);
    cr_expect_eq(w.ack.count, C);
    pthread_cond_destroy(&w.cv);
    pthread_mutex_destroy(&w.mu);
    fx_batch_free(&b);
    reallog_close(&lg);
}
