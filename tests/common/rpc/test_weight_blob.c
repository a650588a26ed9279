/* the WeightBlob tensor codec (common/rpc/weight_blob.h): tensors added by name and shape read
 * back bit for bit through protobuf, at the pinned layout; every way a tensor can differ
 * from what the reader expects is refused with an error naming the tensor */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/err.h"
#include "common/rpc/weight_blob.h"

static const uint32_t W_SHAPE[2] = {2, 3}, B_SHAPE[1] = {3};
static const float W[6] = {1.0f, -2.0f, 0.5f, 3.0f, 0.0f, -0.25f}, B[3] = {7.0f, 8.0f, 9.0f};

/* a blob of "w" (2, 3) then "b" (3), packed and unpacked: what a peer receives */
static Twig__V1__WeightBlob *two_tensors(void)
{
    Twig__V1__WeightBlob msg;
    twig__v1__weight_blob__init(&msg);
    Twig__V1__Tensor tensors[2], *ptrs[2];
    size_t size = weight_blob_bytes(2, W_SHAPE) + weight_blob_bytes(1, B_SHAPE);
    cr_assert_eq(size, 36);
    uint8_t data[36];
    weight_blob_writer wr;
    weight_blob_begin(&wr, &msg, tensors, ptrs, 2, data, size);
    weight_blob_add(&wr, "w", 2, W_SHAPE, W);
    weight_blob_add(&wr, "b", 1, B_SHAPE, B);
    weight_blob_end(&wr);
    cr_assert_eq(msg.n_tensors, 2);
    size_t n = twig__v1__weight_blob__get_packed_size(&msg);
    uint8_t *wire = malloc(n);
    cr_assert_eq(twig__v1__weight_blob__pack(&msg, wire), n);
    Twig__V1__WeightBlob *got = twig__v1__weight_blob__unpack(NULL, n, wire);
    free(wire);
    cr_assert_not_null(got);
    return got;
}

Test(weight_blob, tensors_round_trip_at_their_offsets_as_little_endian_floats)
{
    Twig__V1__WeightBlob *m = two_tensors();
    cr_expect_eq(weight_blob_check_crc(m, "blob"), 0, "%s", err_msg());
    cr_expect_eq(m->data.len, 36);
    cr_expect_eq(m->tensors[0]->offset, 0);
    cr_expect_eq(m->tensors[1]->offset, 24);
    const uint8_t one[4] = {0x00, 0x00, 0x80, 0x3f}; /* 1.0f, little-endian */
    cr_expect_eq(memcmp(m->data.data, one, 4), 0);
    const uint8_t *p;
    cr_assert_eq(weight_blob_find(&p, m, "blob", "w", 2, W_SHAPE), 0, "%s", err_msg());
    float w[6];
    weight_blob_get_f32s(w, p, 6);
    cr_expect_eq(memcmp(w, W, sizeof w), 0);
    cr_assert_eq(weight_blob_find(&p, m, "blob", "b", 1, B_SHAPE), 0, "%s", err_msg());
    float b[3];
    weight_blob_get_f32s(b, p, 3);
    cr_expect_eq(memcmp(b, B, sizeof b), 0);
    twig__v1__weight_blob__free_unpacked(m, NULL);
}

Test(weight_blob, a_missing_name_is_a_mismatch_naming_it)
{
    Twig__V1__WeightBlob *m = two_tensors();
    const uint8_t *p = (const uint8_t *)"x";
    cr_expect_eq(weight_blob_find(&p, m, "blob", "w2", 2, W_SHAPE), TWIG_EMISMATCH);
    cr_expect(strstr(err_msg(), "tensor w2 missing") != NULL, "%s", err_msg());
    cr_expect_null(p);
    twig__v1__weight_blob__free_unpacked(m, NULL);
}

Test(weight_blob, wrong_dims_are_a_mismatch_naming_the_tensor_and_the_dim)
{
    Twig__V1__WeightBlob *m = two_tensors();
    const uint8_t *p;
    /* another number of dims */
    uint32_t flat[1] = {6};
    cr_expect_eq(weight_blob_find(&p, m, "blob", "w", 1, flat), TWIG_EMISMATCH);
    cr_expect(strstr(err_msg(), "tensor w has 2 dims, expected 1") != NULL, "%s", err_msg());
    /* another size along one */
    uint32_t wide[2] = {2, 4};
    cr_expect_eq(weight_blob_find(&p, m, "blob", "w", 2, wide), TWIG_EMISMATCH);
    cr_expect(strstr(err_msg(), "dim 1 is 3, expected 4") != NULL, "%s", err_msg());
    twig__v1__weight_blob__free_unpacked(m, NULL);
}

Test(weight_blob, a_short_data_or_a_stray_offset_is_corrupt_never_an_overread)
{
    Twig__V1__WeightBlob *m = two_tensors();
    const uint8_t *p;
    /* data cut short: b's 12 bytes at 24 no longer fit */
    m->data.len = 32;
    cr_expect_eq(weight_blob_find(&p, m, "blob", "b", 1, B_SHAPE), TWIG_ECORRUPT);
    cr_expect(strstr(err_msg(), "tensor b (offset 24, 12 bytes) overruns data of 32 bytes") != NULL,
              "%s", err_msg());
    cr_expect_eq(weight_blob_check_crc(m, "blob"), TWIG_ECORRUPT, "nor does the checksum hold");
    m->data.len = 36;
    /* an offset past the end, and a huge one */
    m->tensors[1]->offset = 40;
    cr_expect_eq(weight_blob_find(&p, m, "blob", "b", 1, B_SHAPE), TWIG_ECORRUPT);
    m->tensors[1]->offset = UINT64_MAX - 3;
    cr_expect_eq(weight_blob_find(&p, m, "blob", "b", 1, B_SHAPE), TWIG_ECORRUPT);
    /* every tensor is float32: an offset off the 4-byte grid is not one */
    m->tensors[1]->offset = 22;
    cr_expect_eq(weight_blob_find(&p, m, "blob", "b", 1, B_SHAPE), TWIG_ECORRUPT);
    cr_expect(strstr(err_msg(), "not a multiple of 4") != NULL, "%s", err_msg());
    m->tensors[1]->offset = 24;
    cr_expect_eq(weight_blob_find(&p, m, "blob", "b", 1, B_SHAPE), 0, "%s", err_msg());
    twig__v1__weight_blob__free_unpacked(m, NULL);
}

Test(weight_blob, a_name_twice_or_a_damaged_byte_is_corrupt)
{
    Twig__V1__WeightBlob *m = two_tensors();
    const uint8_t *p;
    m->data.data[5] ^= 1;
    cr_expect_eq(weight_blob_check_crc(m, "blob"), TWIG_ECORRUPT);
    cr_expect(strstr(err_msg(), "checksum") != NULL, "%s", err_msg());
    m->data.data[5] ^= 1;
    m->tensors[1]->name[0] = 'w';
    cr_expect_eq(weight_blob_find(&p, m, "blob", "w", 2, W_SHAPE), TWIG_ECORRUPT);
    cr_expect(strstr(err_msg(), "tensor w appears 2 times") != NULL, "%s", err_msg());
    int n_found;
    cr_expect_eq(weight_blob_lookup(m, "w", &n_found), m->tensors[0]);
    cr_expect_eq(n_found, 2);
    cr_expect_null(weight_blob_lookup(m, "b", &n_found));
    cr_expect_eq(n_found, 0);
    twig__v1__weight_blob__free_unpacked(m, NULL);
}
