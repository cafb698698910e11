/* Open-addressing hash map from uint64_t keys to uint64_t values (or
 * pointers), linear probing with backward-shift deletion: no tombstones,
 * so lookups stay short however many deletes happen. Key 0 is reserved. */
#ifndef CAIRN_HMAP_H
#define CAIRN_HMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct hmap_slot {
	uint64_t key;
	uint64_t val;
};

struct hmap {
	struct hmap_slot *slots;
	size_t cap; /* power of two, 0 when empty */
	size_t count;
};

void hmap_init(struct hmap *m);
void hmap_free(struct hmap *m);
bool hmap_get(const struct hmap *m, uint64_t key, uint64_t *val);
/* Returns 0, or -ENOMEM. Replaces an existing value. */
int hmap_put(struct hmap *m, uint64_t key, uint64_t val);
bool hmap_del(struct hmap *m, uint64_t key);

/* Iteration: for (size_t i = 0; hmap_next(m, &i, &k, &v);) ...
 * The map must not change during the walk. */
bool hmap_next(const struct hmap *m, size_t *pos, uint64_t *key,
	       uint64_t *val);

#endif
