/* bytes.h: the one little-endian encoder and decoder of the file formats */
#include <criterion/criterion.h>
#include <math.h>

#include "common/base/bytes.h"

Test(bytes, fixed_fields_are_little_endian_whatever_the_host)
{
    uint8_t b[8];
    le32_put(b, 0x04030201u);
    cr_expect(b[0] == 1 && b[1] == 2 && b[2] == 3 && b[3] == 4);
    cr_expect_eq(le32_get(b), 0x04030201u);
    le64_put(b, 0x0807060504030201ull);
    for (int i = 0; i < 8; i++) {
        cr_expect_eq(b[i], i + 1, "byte %d", i);
    }
    cr_expect_eq(le64_get(b), 0x0807060504030201ull);
    le16_put(b, 0xbeef);
    cr_expect(b[0] == 0xef && b[1] == 0xbe);
    cr_expect_eq(le16_get(b), 0xbeef);
}

Test(bytes, a_written_image_reads_back_field_by_field)
{
    uint8_t buf[64];
    float x[3] = {1.5f, -0.0f, INFINITY};
    byte_writer w = {.buf = buf};
    bw_u8(&w, 7);
    bw_u32(&w, 123456789u);
    bw_u64(&w, UINT64_MAX - 1);
    bw_f32s(&w, x, 3);
    bw_bytes(&w, "ab", 2);
    cr_assert_eq(w.pos, 1 + 4 + 8 + 12 + 2);

    byte_reader r = {.buf = buf, .len = w.pos};
    float y[3];
    char s[2];
    cr_expect_eq(br_u8(&r), 7);
    cr_expect_eq(br_u32(&r), 123456789u);
    cr_expect_eq(br_u64(&r), UINT64_MAX - 1);
    cr_expect(br_f32s(&r, y, 3));
    cr_expect(memcmp(x, y, sizeof x) == 0, "floats round-trip bit for bit");
    cr_expect(br_bytes(&r, s, 2) && s[0] == 'a' && s[1] == 'b');
    cr_expect_eq(br_left(&r), 0);
    cr_expect(!r.bad);
}

Test(bytes, a_short_buffer_sets_bad_returns_zeros_and_never_reads_past_it)
{
    uint8_t buf[6] = {1, 0, 0, 0, 0xff, 0xff};
    byte_reader r = {.buf = buf, .len = sizeof buf};
    cr_expect_eq(br_u32(&r), 1);
    cr_expect_eq(br_u32(&r), 0, "2 bytes left: no u32");
    cr_expect(r.bad);
    cr_expect_eq(br_left(&r), 0, "bad is sticky");
    cr_expect_eq(br_u8(&r), 0);
    cr_expect_null(br_view(&r, 1));

    float y[2] = {5, 5};
    byte_reader q = {.buf = buf, .len = sizeof buf};
    cr_expect(!br_f32s(&q, y, 2), "8 bytes asked, 6 there");
    cr_expect(q.bad && y[0] == 5 && y[1] == 5, "x untouched on a short read");
    byte_reader h = {.buf = buf, .len = sizeof buf};
    cr_expect(!br_f32s(&h, y, SIZE_MAX / 2), "a count from a file that would overflow n * 4");
    cr_expect(h.bad);
    byte_reader k = {.buf = buf, .len = sizeof buf};
    cr_expect(br_bytes(&k, NULL, 6), "skip");
    cr_expect(!br_bytes(&k, NULL, 1) && k.bad);
}

Test(bytes, a_string_is_a_length_and_its_bytes_and_reads_back_bounded)
{
    uint8_t buf[32];
    byte_writer w = {.buf = buf};
    bw_str(&w, "actor-0");
    bw_str(&w, "toolong");
    cr_expect_eq(w.pos, 22);
    cr_expect(buf[0] == 7 && buf[1] == 0 && buf[2] == 0 && buf[3] == 0 && buf[4] == 'a');
    byte_reader r = {.buf = buf, .len = w.pos};
    char s[8];
    cr_expect(br_str(&r, s, 7));
    cr_expect_str_eq(s, "actor-0");
    cr_expect(!br_str(&r, s, 3), "longer than max");
    cr_expect(r.bad && s[0] == '\0');

    byte_reader cut = {.buf = buf, .len = 6};
    cr_expect(!br_str(&cut, s, 7), "length says 7, 2 bytes there");
    cr_expect(cut.bad && s[0] == '\0');
    uint8_t empty[4] = {0};
    byte_reader e = {.buf = empty, .len = sizeof empty};
    cr_expect(!br_str(&e, s, 7), "an empty string is refused");
    cr_expect(e.bad);
}
