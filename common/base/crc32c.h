/* crc32c.h - CRC-32C (Castagnoli), as used by the log's records, weight blobs and the
 * TensorBoard tfevents framing. Check value: crc32c("123456789") == 0xe3069283. */
#ifndef TWIG_CRC32C_H
#define TWIG_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* crc of buf, continuing from crc (start with 0) */
uint32_t crc32c_update(uint32_t crc, const void *buf, size_t n);

static inline uint32_t crc32c(const void *buf, size_t n)
{
    return crc32c_update(0, buf, n);
}

/* TensorBoard/TFRecord's masked form: rotate right by 15 and add a constant */
static inline uint32_t crc32c_masked(uint32_t crc)
{
    return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

#endif
