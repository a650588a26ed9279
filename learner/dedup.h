/* dedup.h - "seen before?" for pushes keyed by (source_id, seq), remembering the ack.
 *
 * Each source keeps its highest seq and a window of the last DEDUP_WINDOW seqs with the
 * acknowledgement each got, so a retry (the same seq) is answered with the original ack and
 * stores nothing, and pushes may arrive out of order within the window. A seq more than the
 * window below the highest is treated as a duplicate whose ack is no longer known (ack 0).
 * A source that restarts without state must use a new source_id (or continue its seqs).
 *
 *     dedup_t d = {0};
 *     dedup_init(&d, 4096);
 *     uint64_t ack;
 *     int rc = dedup_check(&d, "rollout-0", seq, &ack);  // 1: duplicate (ack set), 0: new
 *     if (rc == 0) { ...store...; dedup_record(&d, "rollout-0", seq, stored); }
 */
#ifndef TWIG_LEARNER_DEDUP_H
#define TWIG_LEARNER_DEDUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/msg.h"

#define DEDUP_WINDOW 64

typedef struct dedup_slot {
    uint64_t seq;
    uint64_t ack;
    bool used;
} dedup_slot;

typedef struct dedup_source {
    char id[MSG_MAX_ID_LEN + 1];
    uint64_t max_seq;             /* highest seq recorded */
    dedup_slot win[DEDUP_WINDOW]; /* indexed by seq % DEDUP_WINDOW */
} dedup_source;

typedef struct dedup {
    dedup_source *src; /* (n) owned */
    size_t n, cap;
    size_t max_sources;
} dedup_t;

void dedup_init(dedup_t *d, size_t max_sources);
void dedup_free(dedup_t *d);

/* 1: (id, seq) was recorded (or is older than the window): *ack is its ack (0 if unknown);
 * 0: new. id must be 1..MSG_MAX_ID_LEN bytes (the caller validated it). */
int dedup_check(const dedup_t *d, const char *id, uint64_t seq, uint64_t *ack);

/* remember (id, seq) -> ack. 0, or TWIG_EFULL when a new source would exceed max_sources */
int dedup_record(dedup_t *d, const char *id, uint64_t seq, uint64_t ack);

/* serialised size, and writing/reading it (little-endian, for checkpoints). read returns 0
 * or TWIG_ECORRUPT; d must be initialised (its contents are replaced) */
size_t dedup_image_size(const dedup_t *d);
void dedup_image_write(uint8_t *buf, const dedup_t *d);
int dedup_image_read(dedup_t *d, const uint8_t *buf, size_t len, size_t *used);

#endif
