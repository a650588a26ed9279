/* tests for common/base/dedup.c: (source, seq) windows, eviction, fences and their images */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/base/err.h"
#include "common/base/dedup.h"

/* a table as the learner makes them: the last DEDUP_WINDOW seqs per source, seqs from 1 */
static void window_table_init(dedup_t *d, size_t max_sources, uint64_t quiet)
{
    dedup_init(d, &(dedup_opts){.max_sources = max_sources, .quiet = quiet,
                                .history = DEDUP_HISTORY_WINDOW, .first_seq = 1});
}

/* a push of (id, seq) at progress now as the learner makes it: check, then record if new.
 * The check's verdict */
static int push_at(dedup_t *d, const char *id, uint64_t seq, uint64_t epoch, uint64_t now,
                   uint64_t count, dedup_entry *hit)
{
    int rc = dedup_check(d, id, seq, epoch, now, hit);
    if (rc == DEDUP_NEW) {
        dedup_record(d, id, seq, epoch, now, count, 0);
    }
    return rc;
}

Test(dedup, retry_gets_the_original_ack_and_new_seqs_are_new)
{
    dedup_t d;
    window_table_init(&d, 4, DEDUP_NEVER);
    dedup_entry hit = {.ack = 99};
    cr_expect_eq(dedup_check(&d, "w0", 1, 0, 0, &hit), DEDUP_NEW);
    cr_expect_eq(hit.ack, 0);
    dedup_record(&d, "w0", 1, 0, 0, 400, 0);
    cr_expect_eq(dedup_check(&d, "w0", 1, 0, 0, &hit), DEDUP_DUPLICATE);
    cr_expect_eq(hit.ack, 400);
    cr_expect_eq(dedup_check(&d, "w1", 1, 0, 0, &hit), DEDUP_NEW, "another source's seq 1");
    cr_expect_eq(dedup_check(&d, "w0", 2, 0, 0, &hit), DEDUP_NEW);
    cr_expect_eq(dedup_check(&d, "w0", 0, 0, 0, &hit), -EINVAL, "seqs start at 1");
    cr_expect(strstr(err_msg(), "seq is 0"), "%s", err_msg());
    /* gaps are allowed going up; each stored seq in the window is proven */
    cr_assert_eq(push_at(&d, "w0", 10, 0, 0, 7, &hit), DEDUP_NEW);
    cr_expect_eq(dedup_check(&d, "w0", 10, 0, 0, &hit), DEDUP_DUPLICATE);
    cr_expect_eq(hit.ack, 7);
    cr_expect_eq(dedup_check(&d, "w0", 1, 0, 0, &hit), DEDUP_DUPLICATE);
    cr_expect_eq(hit.ack, 400);
    dedup_free(&d);
}

Test(dedup, a_lower_seq_not_provably_stored_is_refused_never_acknowledged)
{
    dedup_t d;
    window_table_init(&d, 4, DEDUP_NEVER);
    dedup_entry hit = {0};
    cr_assert_eq(push_at(&d, "w0", 1, 0, 0, 11, &hit), DEDUP_NEW);
    cr_assert_eq(push_at(&d, "w0", 10, 0, 0, 7, &hit), DEDUP_NEW);
    /* a gap filled late: seq 5 was never stored */
    hit.ack = 99;
    cr_expect_eq(dedup_check(&d, "w0", 5, 0, 0, &hit), -EINVAL);
    cr_expect_eq(hit.ack, 0);
    cr_expect(strstr(err_msg(), "seq 5 of source 'w0'") && strstr(err_msg(), "newest 10"), "%s",
              err_msg());
    /* 64 or more above: seq 1's slot (1 % 64) is still its own, so it is still proven ... */
    cr_assert_eq(push_at(&d, "w0", 100, 0, 0, 3, &hit), DEDUP_NEW);
    cr_expect_eq(dedup_check(&d, "w0", 1, 0, 0, &hit), DEDUP_DUPLICATE);
    cr_expect_eq(hit.ack, 11);
    /* ... until seq 65 takes that slot: then seq 1 is refused, not acknowledged */
    cr_assert_eq(push_at(&d, "w0", 129, 0, 0, 3, &hit), DEDUP_NEW);
    cr_expect_eq(dedup_check(&d, "w0", 1, 0, 0, &hit), -EINVAL);
    cr_expect_eq(dedup_check(&d, "w0", 65, 0, 0, &hit), -EINVAL, "never stored");
    cr_expect_eq(dedup_check(&d, "w0", 120, 0, 0, &hit), -EINVAL, "a gap");
    cr_expect_eq(dedup_check(&d, "w0", 100, 0, 0, &hit), DEDUP_DUPLICATE);
    cr_expect_eq(hit.ack, 3);
    cr_expect_eq(d.n, 1);
    cr_expect_eq(d.src[0].max_seq, 129);
    dedup_free(&d);
}

Test(dedup, a_full_table_waits_for_a_quiet_source_then_evicts_it_and_fences_it)
{
    dedup_t d;
    window_table_init(&d, 2, 100); /* quiet for 100 progress units */
    dedup_entry hit;
    cr_assert_eq(push_at(&d, "a", 1, 0, 0, 10, &hit), DEDUP_NEW);   /* admitted at 0 */
    cr_assert_eq(push_at(&d, "b", 1, 0, 10, 10, &hit), DEDUP_NEW);  /* admitted at 10 */
    cr_expect_eq(dedup_epoch(&d, 20), 20);
    /* full, and a has been quiet for 20 only */
    cr_expect_eq(dedup_check(&d, "c", 1, 20, 20, &hit), TWIG_EFULL);
    cr_expect(strstr(err_msg(), "'c'") && strstr(err_msg(), "'a'"), "%s", err_msg());
    cr_expect_eq(d.n, 2, "a refusal changes nothing");
    /* b keeps pushing; a stays quiet */
    for (uint64_t q = 2; q <= 11; q++) {
        cr_assert_eq(push_at(&d, "b", q, 0, 10 * q, 10, &hit), DEDUP_NEW);
    }
    cr_expect_eq(dedup_check(&d, "c", 1, 20, 99, &hit), TWIG_EFULL, "a quiet for 99 < 100");
    cr_assert_eq(push_at(&d, "c", 1, 20, 120, 10, &hit), DEDUP_NEW, "%s", err_msg());
    cr_expect_eq(d.n, 2);
    cr_expect_eq(d.evictions, 1);
    cr_expect_eq(d.fence, 1, "above a's epoch (admitted at 0)");
    /* a's retry of its stored seq: a is forgotten and below the fence */
    cr_expect_eq(dedup_check(&d, "a", 1, 0, 130, &hit), TWIG_EFENCED);
    cr_expect(strstr(err_msg(), "'a'") && strstr(err_msg(), "fence 1"), "%s", err_msg());
    /* a new identity starts at the current epoch and is admitted once someone is quiet */
    uint64_t e = dedup_epoch(&d, 130);
    cr_expect_eq(e, 130);
    cr_expect_eq(dedup_check(&d, "a@2", 1, e, 130, &hit), TWIG_EFULL, "nobody quiet yet");
    cr_assert_eq(push_at(&d, "a@2", 1, e, 240, 10, &hit), DEDUP_NEW, "%s", err_msg());
    cr_expect_eq(d.fence, 11, "b (admitted at 10) was the quietest");
    cr_expect_eq(dedup_check(&d, "b", 11, 0, 250, &hit), TWIG_EFENCED);
    cr_expect_eq(dedup_check(&d, "c", 1, 20, 250, &hit), DEDUP_DUPLICATE, "c is still known");
    dedup_free(&d);
}

Test(dedup, the_epoch_is_never_below_the_fence_and_an_identity_keeps_its_epoch)
{
    dedup_t d;
    window_table_init(&d, 1, 0); /* quiet 0: a new source always evicts the other */
    dedup_entry hit;
    /* x read epoch 500 (a learner life whose progress got lost): its epoch is 500, so its
     * eviction fences 500 even though the progress is only 7 */
    cr_assert_eq(push_at(&d, "x", 1, 500, 7, 1, &hit), DEDUP_NEW);
    cr_expect_eq(d.src[0].epoch, 500);
    cr_assert_eq(push_at(&d, "y", 1, 0, 8, 1, &hit), DEDUP_NEW);
    cr_expect_eq(d.fence, 501);
    cr_expect_eq(dedup_check(&d, "x", 2, 500, 9, &hit), TWIG_EFENCED);
    cr_expect_eq(dedup_epoch(&d, 9), 501, "the fence, while the progress is below it");
    cr_expect_eq(dedup_epoch(&d, 600), 600);
    cr_expect_eq(dedup_check(&d, "z", 1, 501, 9, &hit), DEDUP_NEW);
    /* the fence only rises: y's epoch is 8 */
    cr_assert_eq(push_at(&d, "z", 1, 501, 9, 1, &hit), DEDUP_NEW);
    cr_expect_eq(d.fence, 501);
    dedup_free(&d);
}

/* the image layout of learner state version 1 (no fences): u64 n, then per source u32
 * id_len, id, u64 max_seq, 64 x (u64 seq, u64 ack, u8 used) */
static size_t v1_image(uint8_t *out, const char *const *ids, int n, uint64_t seq, uint64_t ack)
{
    uint8_t *p = out;
#define PUT(v, k)                                                                                  \
    do {                                                                                           \
        for (int b_ = 0; b_ < (k); b_++) {                                                         \
            *p++ = (uint8_t)((uint64_t)(v) >> (8 * b_));                                           \
        }                                                                                          \
    } while (0)
    PUT(n, 8);
    for (int i = 0; i < n; i++) {
        size_t len = strlen(ids[i]);
        PUT(len, 4);
        memcpy(p, ids[i], len);
        p += len;
        PUT(seq, 8);
        for (int w = 0; w < DEDUP_WINDOW; w++) {
            bool used = (uint64_t)w == seq % DEDUP_WINDOW;
            PUT(used ? seq : 0, 8);
            PUT(used ? ack : 0, 8);
            PUT(used, 1);
        }
    }
#undef PUT
    return (size_t)(p - out);
}

Test(dedup, image_round_trip_and_damage)
{
    dedup_t d, e;
    window_table_init(&d, 3, 5);
    window_table_init(&e, 3, 5);
    dedup_entry hit;
    uint64_t now = 0;
    for (int s = 0; s < 4; s++) {
        char id[16];
        snprintf(id, sizeof id, "src-%d", s);
        for (uint64_t q = 1; q <= 70; q++) {
            cr_assert_eq(push_at(&d, id, q * (uint64_t)(s + 1), 0, now, q + 100 * (uint64_t)s,
                                 &hit),
                         DEDUP_NEW, "%s", err_msg());
            now++;
        }
    }
    cr_assert_eq(d.evictions, 1, "src-0 made room for src-3");
    size_t n = dedup_image_size(&d);
    uint8_t *img = malloc(n);
    dedup_image_write(img, &d);
    size_t used = 0;
    cr_assert_eq(dedup_image_read(&e, img, n, DEDUP_IMAGE_V2, now, &used), 0, "%s", err_msg());
    cr_expect_eq(used, n);
    cr_expect_eq(e.n, 3);
    cr_expect_eq(e.fence, d.fence);
    cr_expect_eq(e.evictions, 1);
    cr_expect_eq(dedup_check(&e, "src-2", 70 * 3, 0, now, &hit), DEDUP_DUPLICATE);
    cr_expect_eq(hit.ack, 270);
    cr_expect_eq(dedup_check(&e, "src-1", 71 * 2, 0, now, &hit), DEDUP_NEW);
    cr_expect_eq(dedup_check(&e, "src-0", 1, 0, now, &hit), TWIG_EFENCED);
    for (size_t i = 0; i < e.n; i++) {
        cr_expect_eq(e.src[i].epoch, d.src[i].epoch);
        cr_expect_eq(e.src[i].active, d.src[i].active);
    }
    cr_expect_eq(dedup_image_read(&e, img, n - 5, DEDUP_IMAGE_V2, now, &used), TWIG_ECORRUPT);
    /* a count no image of that size can hold */
    img[7] = 0x7f;
    cr_expect_eq(dedup_image_read(&e, img, n, DEDUP_IMAGE_V2, now, &used), TWIG_ECORRUPT);
    cr_expect_eq(dedup_image_read(&e, img, n, 3, now, &used), TWIG_ECORRUPT, "no layout 3");
    free(img);
    dedup_free(&d);
    dedup_free(&e);
}

Test(dedup, an_image_before_fences_reads_with_its_sources_active_now)
{
    const char *ids[3] = {"rollout-0@1", "rollout-0@2", "rollout-1@3"};
    uint8_t img[3 * (4 + 16 + 8 + DEDUP_WINDOW * 17) + 8];
    size_t n = v1_image(img, ids, 3, 9, 44);
    dedup_t d;
    window_table_init(&d, 2, 50);
    size_t used = 0;
    cr_assert_eq(dedup_image_read(&d, img, n, DEDUP_IMAGE_V1, 1000, &used), 0, "%s", err_msg());
    cr_expect_eq(used, n);
    cr_expect_eq(d.n, 3, "every source is read, whatever max_sources");
    cr_expect_eq(d.fence, 0);
    dedup_entry hit;
    cr_expect_eq(dedup_check(&d, "rollout-1@3", 9, 0, 1000, &hit), DEDUP_DUPLICATE);
    cr_expect_eq(hit.ack, 44);
    cr_expect_eq(d.src[0].epoch, 1000, "no source can have read an epoch above the progress");
    cr_expect_eq(d.src[0].active, 1000);
    /* too many for max_sources 2: the quietest goes, above its epoch */
    cr_expect_eq(dedup_trim(&d), 1);
    cr_expect_eq(d.n, 2);
    cr_expect_eq(d.fence, 1001);
    cr_expect_eq(dedup_check(&d, "rollout-0@1", 10, 0, 1000, &hit), TWIG_EFENCED);
    cr_expect_eq(dedup_epoch(&d, 1000), 1001);
    dedup_free(&d);
}

/* ---- the real log's policy through the same table: every entry kept ---- */

static void all_table_init(dedup_t *d, size_t max_sources, uint64_t quiet)
{
    dedup_init(d, &(dedup_opts){.max_sources = max_sources, .quiet = quiet,
                                .history = DEDUP_HISTORY_ALL, .first_seq = 0});
}

/* a batch of count transitions stored at offset now (its ack), as the log records it, from
 * a sender that read the current epoch */
static int store_at(dedup_t *d, const char *id, uint64_t seq, uint64_t now, uint32_t count)
{
    dedup_entry hit;
    int rc = dedup_check(d, id, seq, dedup_epoch(d, now), now, &hit);
    if (rc == DEDUP_NEW) {
        dedup_record(d, id, seq, 0, now, now, count);
    }
    return rc;
}

Test(dedup, the_full_history_proves_any_old_retry_with_its_count)
{
    dedup_t d;
    all_table_init(&d, 4, DEDUP_NEVER);
    uint64_t off = 0;
    cr_assert_eq(store_at(&d, "actor-0", 0, off, 3), DEDUP_NEW, "seq 0 is a seq here");
    off += 3;
    for (uint64_t q = 1; q <= 1000; q++) {
        cr_assert_eq(store_at(&d, "actor-0", 2 * q, off, 3), DEDUP_NEW, "%s", err_msg());
        off += 3;
    }
    dedup_entry hit;
    /* far older than any window, and seq 65 shares seq 1's slot mod 64: still proven */
    cr_expect_eq(dedup_check(&d, "actor-0", 2, 0, off, &hit), DEDUP_DUPLICATE);
    cr_expect_eq(hit.ack, 3);
    cr_expect_eq(hit.count, 3);
    cr_expect_eq(dedup_check(&d, "actor-0", 0, 0, off, &hit), DEDUP_DUPLICATE);
    cr_expect_eq(hit.ack, 0);
    cr_expect_eq(dedup_check(&d, "actor-0", 130, 0, off, &hit), DEDUP_DUPLICATE);
    cr_expect_eq(hit.ack, 3 + 64 * 3);
    cr_expect_eq(dedup_check(&d, "actor-0", 3, 0, off, &hit), -EINVAL, "a gap is never proven");
    const dedup_source *s = dedup_find(&d, "actor-0");
    cr_assert_not_null(s);
    cr_expect_eq(s->n_hist, 1001);
    cr_expect_eq(s->total, 3003);
    cr_expect_eq(s->epoch, 0, "its first record's offset");
    cr_expect_eq(s->active, off, "the end of its newest record");
    dedup_free(&d);
}

Test(dedup, rollback_forgets_the_voided_tail_without_fencing)
{
    dedup_t d;
    all_table_init(&d, 4, 0);
    cr_assert_eq(store_at(&d, "a", 1, 0, 4), DEDUP_NEW);  /* [0, 4) durable */
    cr_assert_eq(store_at(&d, "a", 2, 4, 4), DEDUP_NEW);  /* [4, 8) */
    cr_assert_eq(store_at(&d, "b", 1, 8, 2), DEDUP_NEW);  /* [8, 10): b's only entry */
    cr_assert_eq(store_at(&d, "a", 3, 10, 4), DEDUP_NEW); /* [10, 14) */
    /* the write from offset 4 on failed */
    dedup_rollback(&d, "a", 4);
    dedup_rollback(&d, "b", 4);
    dedup_rollback(&d, "nobody", 4);
    cr_expect_eq(d.n, 1, "b had nothing durable: gone");
    cr_expect_eq(d.evictions, 0, "a rollback is not an eviction");
    cr_expect_eq(d.fence, 0, "nothing stored was forgotten");
    const dedup_source *a = dedup_find(&d, "a");
    cr_assert_not_null(a);
    cr_expect_eq(a->max_seq, 1);
    cr_expect_eq(a->active, 4);
    cr_expect_eq(a->total, 4);
    cr_expect_null(dedup_find(&d, "b"));
    /* the retries are new again, and b comes back as a new source at its first epoch */
    dedup_entry hit;
    cr_expect_eq(dedup_check(&d, "a", 2, 0, 4, &hit), DEDUP_NEW);
    cr_expect_eq(dedup_check(&d, "a", 1, 0, 4, &hit), DEDUP_DUPLICATE);
    cr_expect_eq(store_at(&d, "b", 1, 4, 2), DEDUP_NEW);
    cr_expect_eq(dedup_find(&d, "b")->epoch, 4);
    dedup_free(&d);
}

Test(dedup, evicting_through_the_index_keeps_every_other_source_found)
{
    enum { N = 300 };
    dedup_t d;
    all_table_init(&d, N, 0);
    char id[32];
    for (uint64_t i = 0; i < N; i++) {
        snprintf(id, sizeof id, "src-%" PRIu64, i);
        cr_assert_eq(store_at(&d, id, 1, i, 1), DEDUP_NEW);
    }
    cr_expect_eq(d.cap_index >= 2 * N, true);
    /* N more: each evicts the quietest, the oldest, and raises the fence above its epoch */
    for (uint64_t i = N; i < 2 * N; i++) {
        snprintf(id, sizeof id, "src-%" PRIu64, i);
        cr_assert_eq(store_at(&d, id, 1, i, 1), DEDUP_NEW, "%s", err_msg());
        cr_expect_eq(d.fence, i - N + 1);
    }
    cr_expect_eq(d.evictions, N);
    cr_expect_eq(d.n, N);
    dedup_entry hit;
    for (uint64_t i = 0; i < 2 * N; i++) {
        snprintf(id, sizeof id, "src-%" PRIu64, i);
        bool kept = i >= N;
        cr_expect_eq(dedup_find(&d, id) != NULL, kept, "%s", id);
        cr_expect_eq(dedup_check(&d, id, 1, 0, 2 * N, &hit),
                     kept ? DEDUP_DUPLICATE : TWIG_EFENCED, "%s", id);
    }
    dedup_free(&d);
}

Test(dedup, an_image_naming_a_source_twice_is_damage)
{
    const char *ids[2] = {"twin", "twin"};
    uint8_t img[2 * (4 + 4 + 8 + DEDUP_WINDOW * 17) + 8];
    size_t n = v1_image(img, ids, 2, 3, 1);
    dedup_t d;
    window_table_init(&d, 4, 0);
    size_t used = 0;
    cr_expect_eq(dedup_image_read(&d, img, n, DEDUP_IMAGE_V1, 0, &used), TWIG_ECORRUPT);
    dedup_free(&d);
}
