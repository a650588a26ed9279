/* tfevents: records read back with valid CRCs and decode to the scalars written */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
