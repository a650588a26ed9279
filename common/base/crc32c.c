/* crc32c.c - CRC-32C with the SSE4.2 instruction (x86-64-v3 has it) */
#include "common/base/crc32c.h"

#include <nmmintrin.h>
#include <string.h>

uint32_t crc32c_update(uint32_t crc, const void *buf, size_t n)
{
    const unsigned char *p = buf;
    uint64_t c = ~crc;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = _mm_crc32_u64(c, v);
        p += 8;
        n -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (n--) {
        c32 = _mm_crc32_u8(c32, *p++);
    }
    return ~c32;
}
