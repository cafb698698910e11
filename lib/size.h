/* Sizes as people write them on command lines. */
#ifndef CAIRN_SIZE_H
#define CAIRN_SIZE_H

#include <stdint.h>

/* "4096", "512K", "10G", "2T" (binary multiples, one optional suffix);
 * 0 and *out, or -EINVAL for anything else, overflow included. */
int size_parse(const char *s, uint64_t *out);

#endif
