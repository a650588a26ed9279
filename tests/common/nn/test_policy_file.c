/* policy_file: the exported policy (.twigp, docs/policy-format.md) written, read back and
 * pinned byte for byte for a tiny net; damaged or cut files refused naming the field */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/base/bytes.h"
#include "common/base/crc32c.h"
#include "common/base/err.h"
#include "common/base/rng.h"
#include "common/nn/policy_file.h"

/* the example of docs/policy-format.md: Pendulum-v1, 1 obs, 1 act, hidden 1 */
static const char tiny_hex[] =
    "54574947504f4c00010000000b00000050656e64756c756d2d76310700000000000000e803000000000000"
    "0100000001000000000000c000000040030000000100000001000000010000000200000001000000010000"
    "000000003f000080be0000803f0000003e000000c00000403f0000c03f000000bf7094553e";
#define TINY_LEN 123

static void tiny_policy(policy_t *p, policy_file_meta *m)
{
    const float low[1] = {-2.0f}, high[1] = {2.0f};
    policy_shape sh = {1, 1, 1, low, high};
    cr_assert_eq(policy_init(p, &sh, 4), 0, "%s", err_msg());
    const float vals[8] = {0.5f, -0.25f, 1.0f, 0.125f, -2.0f, 0.75f, 1.5f, -0.5f};
    int k = 0;
    for (int l = 0; l < 3; l++) {
        for (int i = 0; i < p->actor.sizes[l] * p->actor.sizes[l + 1]; i++) {
            p->actor.w[l][i] = vals[k++];
        }
        for (int i = 0; i < p->actor.sizes[l + 1]; i++) {
            p->actor.b[l][i] = vals[k++];
        }
    }
    *m = (policy_file_meta){.policy_version = 7, .updates = 1000};
    snprintf(m->env_id, sizeof m->env_id, "Pendulum-v1");
}

static void random_policy(policy_t *p, policy_file_meta *m, int O, int A, int H, uint64_t seed)
{
    float low[16], high[16];
    for (int j = 0; j < A; j++) {
        low[j] = -1.0f - (float)j;
        high[j] = 0.5f + (float)j;
    }
    policy_shape sh = {O, A, H, low, high};
    cr_assert_eq(policy_init(p, &sh, 8), 0, "%s", err_msg());
    rng_t rng;
    rng_seed(&rng, seed);
    for (int l = 0; l < 3; l++) {
        rng_fill_normal(&rng, p->actor.w[l], p->actor.sizes[l] * p->actor.sizes[l + 1]);
        rng_fill_normal(&rng, p->actor.b[l], p->actor.sizes[l + 1]);
    }
    *m = (policy_file_meta){.policy_version = 41, .updates = 123456};
    snprintf(m->env_id, sizeof m->env_id, "Hopper-v4");
}

static void hex_decode(uint8_t *out, const char *hex, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        cr_assert_eq(sscanf(hex + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
}

Test(policy_file, tiny_net_bytes_are_pinned_including_the_crc)
{
    policy_t p = {0};
    policy_file_meta m;
    tiny_policy(&p, &m);
    cr_assert_eq(policy_file_size(&p, &m), TINY_LEN);
    uint8_t got[TINY_LEN], want[TINY_LEN];
    policy_file_encode(got, &p, &m);
    hex_decode(want, tiny_hex, TINY_LEN);
    for (size_t i = 0; i < TINY_LEN; i++) {
        cr_expect_eq(got[i], want[i], "byte %zu: %02x, want %02x", i, got[i], want[i]);
    }
    cr_expect_eq(le32_get(got + TINY_LEN - 4), 0x3e559470u);
    cr_expect_eq(crc32c(got, TINY_LEN - 4), 0x3e559470u);
    policy_free(&p);
}

Test(policy_file, round_trip_through_a_file_keeps_every_field_and_action)
{
    enum { O = 11, A = 3, H = 32, B = 8 };
    policy_t p = {0}, q = {0};
    policy_file_meta m, mq;
    random_policy(&p, &m, O, A, H, 5);
    char dir[] = "/tmp/twig-test-pfile-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/p.twigp", dir);
    cr_assert_eq(policy_file_write(path, &p, &m), 0, "%s", err_msg());
    cr_assert_eq(policy_file_read(&q, &mq, path, B), 0, "%s", err_msg());
    cr_expect_str_eq(mq.env_id, "Hopper-v4");
    cr_expect_eq(mq.policy_version, 41);
    cr_expect_eq(mq.updates, 123456);
    cr_expect_eq(q.version, 41);
    cr_expect_eq(q.n_obs, O);
    cr_expect_eq(q.n_act, A);
    cr_expect_eq(q.hidden, H);
    cr_expect_eq(q.max_batch, B);
    for (int j = 0; j < A; j++) {
        cr_expect_eq(q.act_low[j], p.act_low[j]);
        cr_expect_eq(q.act_high[j], p.act_high[j]);
    }
    for (int l = 0; l < 3; l++) {
        size_t nw = (size_t)p.actor.sizes[l] * p.actor.sizes[l + 1];
        cr_expect_eq(memcmp(q.actor.w[l], p.actor.w[l], nw * 4), 0, "w%d", l);
        cr_expect_eq(memcmp(q.actor.b[l], p.actor.b[l], (size_t)p.actor.sizes[l + 1] * 4), 0);
    }
    float obs[B * O], a1[B * A], a2[B * A];
    rng_t rng;
    rng_seed(&rng, 9);
    rng_fill_normal(&rng, obs, B * O);
    policy_act(&p, NULL, a1, obs, B, true);
    policy_act(&q, NULL, a2, obs, B, true);
    cr_expect_eq(memcmp(a1, a2, sizeof a1), 0);
    policy_free(&p);
    policy_free(&q);
    unlink(path);
    rmdir(dir);
}

/* decode buf with one byte changed (or cut to len) and expect refusal naming field */
static void expect_refused(const uint8_t *good, size_t len, size_t at, int delta,
                           const char *field)
{
    uint8_t *buf = malloc(len + 1);
    memcpy(buf, good, len);
    if (delta != 0) {
        buf[at] = (uint8_t)(buf[at] + delta);
    }
    policy_t p = {0};
    policy_file_meta m;
    int rc = policy_file_decode(&p, &m, buf, len, 1);
    cr_expect_lt(rc, 0, "byte %zu %+d len %zu accepted", at, delta, len);
    if (rc < 0) {
        cr_expect_not_null(strstr(err_msg(), field), "byte %zu: '%s' does not name %s", at,
                           err_msg(), field);
    }
    cr_expect_eq(p.n_obs, 0, "p left initialised after a refusal");
    policy_free(&p);
    free(buf);
}

Test(policy_file, a_damaged_field_is_refused_by_name)
{
    uint8_t good[TINY_LEN];
    hex_decode(good, tiny_hex, TINY_LEN);
    /* offsets: docs/policy-format.md's table for env_id "Pendulum-v1" (11 bytes) */
    expect_refused(good, TINY_LEN, 0, 1, "magic");
    expect_refused(good, TINY_LEN, 8, 1, "format_version");
    expect_refused(good, TINY_LEN, 15, 1, "env_id_len");          /* 0x0b000001 */
    expect_refused(good, TINY_LEN, 16, -0x40, "env_id");          /* 'P' -> control byte */
    expect_refused(good, TINY_LEN, 43, -1, "n_obs");              /* 0 */
    expect_refused(good, TINY_LEN, 50, 0x10, "n_act");            /* 0x10000001 */
    expect_refused(good, TINY_LEN, 58, 0x80, "act_low");          /* high 2 -> -2 = low */
    expect_refused(good, TINY_LEN, 59, 6, "n_layers");            /* 9 > MLP_MAX_LAYERS */
    expect_refused(good, TINY_LEN, 63, 1, "sizes[0]");
    expect_refused(good, TINY_LEN, 75, 1, "sizes[3]");
    expect_refused(good, TINY_LEN, 79, 6, "activation");
    expect_refused(good, TINY_LEN, 83, 1, "head");
    expect_refused(good, TINY_LEN, 90, 1, "crc32c");              /* a weight byte */
    expect_refused(good, TINY_LEN, TINY_LEN - 1, 1, "crc32c");
}

Test(policy_file, every_truncation_and_trailing_bytes_are_refused)
{
    uint8_t good[TINY_LEN + 1];
    hex_decode(good, tiny_hex, TINY_LEN);
    for (size_t len = 0; len < TINY_LEN; len++) {
        expect_refused(good, len, 0, 0, len < 12 ? "truncated" : "");
        if (len >= 12) {
            cr_expect_not_null(strstr(err_msg(), "truncated"), "len %zu: '%s'", len, err_msg());
        }
    }
    good[TINY_LEN] = 0;
    expect_refused(good, TINY_LEN + 1, 0, 0, "trailing");
    /* the field a cut lands in is named */
    expect_refused(good, 20, 0, 0, "env_id");
    expect_refused(good, 45, 0, 0, "n_obs");
    expect_refused(good, 65, 0, 0, "sizes");
    expect_refused(good, 100, 0, 0, "tensors");
}

Test(policy_file, a_missing_file_or_garbage_is_an_error_not_a_crash)
{
    policy_t p = {0};
    policy_file_meta m;
    cr_expect_lt(policy_file_read(&p, &m, "/nonexistent/x.twigp", 1), 0);
    uint8_t junk[4096];
    rng_t rng;
    rng_seed(&rng, 3);
    for (int trial = 0; trial < 200; trial++) {
        for (size_t i = 0; i < sizeof junk; i++) {
            junk[i] = (uint8_t)rng_next_u64(&rng);
        }
        if (trial % 2) {
            memcpy(junk, "TWIGPOL\0\1\0\0\0", 12);   /* past the magic, garbage after */
        }
        cr_expect_lt(policy_file_decode(&p, &m, junk, (size_t)(trial * 20), 1), 0);
    }
}
