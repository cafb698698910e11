/* CRC-32C (Castagnoli), the iSCSI polynomial, computed by isa-l. */
#ifndef CAIRN_CRC32C_H
#define CAIRN_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Standard CRC-32C of buf (RFC 3720 B.4: init ~0, final complement):
 * crc32c("123456789") == 0xe3069283. */
uint32_t crc32c(const void *buf, size_t len);

#endif
