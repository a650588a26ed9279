/* tfevents: records read back with valid CRCs and decode to the scalars written */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/base/bytes.h"
#include "common/base/err.h"
#include "deploy/launcher/tfevents.h"
#include "proto/tfevent.pb-c.h"

static char dir[] = "/tmp/twig-tfevents-XXXXXX";

static void setup(void)
{
    cr_assert_not_null(mkdtemp(dir));
}

Test(tfevents, scalars_round_trip_through_framed_records, .init = setup)
{
    tfevents_t t = {0};
    cr_assert_eq(tfevents_open(&t, dir), 0, "%s", err_msg());
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(tfevents_write_scalar(&t, "eval/return", i * 100, 1000.0 + i, -10.0f * i),
                     0);
    }
    char path[512];
    snprintf(path, sizeof path, "%s", t.path);
    tfevents_close(&t);
    cr_expect(strstr(path, "events.out.tfevents.") != NULL);

    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    uint8_t *buf = NULL;
    size_t cap = 0;
    long n = tfevents_read_record(f, &buf, &cap);
    cr_assert_gt(n, 0);
    Twig__Tfevent__Event *ev = twig__tfevent__event__unpack(NULL, (size_t)n, buf);
    cr_assert_not_null(ev);
    cr_expect_eq(ev->what_case, TWIG__TFEVENT__EVENT__WHAT_FILE_VERSION);
    cr_expect_str_eq(ev->file_version, "brain.Event:2");
    twig__tfevent__event__free_unpacked(ev, NULL);
    for (int i = 0; i < 5; i++) {
        n = tfevents_read_record(f, &buf, &cap);
        cr_assert_gt(n, 0);
        ev = twig__tfevent__event__unpack(NULL, (size_t)n, buf);
        cr_assert_not_null(ev);
        cr_expect_eq(ev->step, i * 100);
        cr_expect_eq(ev->wall_time, 1000.0 + i);
        cr_assert_eq(ev->what_case, TWIG__TFEVENT__EVENT__WHAT_SUMMARY);
        cr_assert_eq(ev->summary->n_value, 1);
        cr_expect_str_eq(ev->summary->value[0]->tag, "eval/return");
        cr_expect_eq(ev->summary->value[0]->simple_value, -10.0f * i);
        twig__tfevent__event__free_unpacked(ev, NULL);
    }
    cr_expect_eq(tfevents_read_record(f, &buf, &cap), 0);
    fclose(f);
    free(buf);
    unlink(path);
    rmdir(dir);
}

Test(tfevents, flipped_byte_is_reported_corrupt, .init = setup)
{
    tfevents_t t = {0};
    cr_assert_eq(tfevents_open(&t, dir), 0);
    cr_assert_eq(tfevents_write_scalar(&t, "x", 1, 1.0, 2.0f), 0);
    char path[512];
    snprintf(path, sizeof path, "%s", t.path);
    tfevents_close(&t);
    FILE *f = fopen(path, "r+b");
    cr_assert_not_null(f);
    fseek(f, -6, SEEK_END);
    int c = fgetc(f);
    fseek(f, -6, SEEK_END);
    fputc(c ^ 0x40, f);
    rewind(f);
    uint8_t *buf = NULL;
    size_t cap = 0;
    cr_expect_gt(tfevents_read_record(f, &buf, &cap), 0);
    cr_expect_eq(tfevents_read_record(f, &buf, &cap), TWIG_ECORRUPT);
    fclose(f);
    free(buf);
    unlink(path);
    rmdir(dir);
}

/* an empty record: zero length, and the data CRC is crc32c("") = 0 masked, 0xa282ead8 */
Test(tfevents, empty_record_frame_has_the_masked_empty_crc)
{
    uint8_t out[16];
    tfevents_frame(out, (const uint8_t *)"", 0);
    for (int i = 0; i < 8; i++) {
        cr_expect_eq(out[i], 0);
    }
    cr_expect_eq(le32_get(out + 12), 0xa282ead8u);
}

/* the fields of one protobuf message: the first one numbered `field` as a varint, fixed or
 * length-delimited value; 0 when absent. A reader of our own, so the test does not trust
 * the generated code it checks */
typedef struct wire_field {
    int wire_type;
    const uint8_t *data;   /* length-delimited: the bytes; fixed32/64: the value's bytes */
    size_t len;
} wire_field;

static uint64_t wire_varint(const uint8_t **p, const uint8_t *end)
{
    uint64_t v = 0;
    for (int shift = 0; *p < end && shift < 64; shift += 7) {
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            break;
        }
    }
    return v;
}

static int wire_find(wire_field *out, const uint8_t *p, size_t n, int field)
{
    const uint8_t *end = p + n;
    while (p < end) {
        uint64_t key = wire_varint(&p, end);
        wire_field f = {.wire_type = (int)(key & 7), .data = p};
        switch (f.wire_type) {
        case 0: wire_varint(&p, end); f.len = (size_t)(p - f.data); break;
        case 1: f.len = 8; p += 8; break;
        case 2: f.len = (size_t)wire_varint(&p, end); f.data = p; p += f.len; break;
        case 5: f.len = 4; p += 4; break;
        default: return 0;
        }
        if ((int)(key >> 3) == field) {
            *out = f;
            return 1;
        }
    }
    return 0;
}

/* TensorBoard drops a Summary.Value without simple_value: a 0 (a stalled rate) must be
 * written, as fixed32 field 2 of the value, like any other */
Test(tfevents, a_zero_scalar_still_carries_its_simple_value, .init = setup)
{
    tfevents_t t = {0};
    cr_assert_eq(tfevents_open(&t, dir), 0, "%s", err_msg());
    cr_assert_eq(tfevents_write_scalar(&t, "rate/real_per_s", 7, 1000.25, 0.0f), 0);
    char path[512];
    snprintf(path, sizeof path, "%s", t.path);
    tfevents_close(&t);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    uint8_t *buf = NULL;
    size_t cap = 0;
    cr_assert_gt(tfevents_read_record(f, &buf, &cap), 0);   /* file_version */
    long n = tfevents_read_record(f, &buf, &cap);
    cr_assert_gt(n, 0);
    wire_field summary, value, simple, wall;
    cr_assert(wire_find(&wall, buf, (size_t)n, 1) && wall.wire_type == 1);
    double w;
    memcpy(&w, wall.data, 8);
    cr_expect_eq(w, 1000.25, "wall_time keeps its fraction: %f", w);
    cr_assert(wire_find(&summary, buf, (size_t)n, 5));
    cr_assert(wire_find(&value, summary.data, summary.len, 1));
    cr_assert(wire_find(&simple, value.data, value.len, 2), "no simple_value for a 0");
    cr_expect_eq(simple.wire_type, 5);
    cr_expect_eq(le32_get(simple.data), 0u);
    fclose(f);
    free(buf);
    unlink(path);
    rmdir(dir);
}

Test(tfevents, wall_time_has_sub_second_precision)
{
    /* two readings a few milliseconds apart are not both whole seconds */
    int whole = 0;
    for (int i = 0; i < 5; i++) {
        double w = tfevents_wall_now();
        whole += w == (double)(int64_t)w;
        struct timespec ts = {0, 3000000};
        nanosleep(&ts, NULL);
    }
    cr_expect_lt(whole, 5);
}
