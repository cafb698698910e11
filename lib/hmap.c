#include "hmap.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>

static size_t hmap__hash(uint64_t k, size_t cap)
{
	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdULL;
	k ^= k >> 33;
	k *= 0xc4ceb9fe1a85ec53ULL;
	k ^= k >> 33;
	return (size_t)k & (cap - 1);
}

void hmap_init(struct hmap *m)
{
	m->slots = NULL;
	m->cap = 0;
	m->count = 0;
}

void hmap_free(struct hmap *m)
{
	free(m->slots);
	hmap_init(m);
}

static int hmap__grow(struct hmap *m)
{
	size_t ncap = m->cap ? m->cap * 2 : 16;
	struct hmap_slot *ns = calloc(ncap, sizeof(*ns));
	if (!ns)
		return -ENOMEM;
	for (size_t i = 0; i < m->cap; i++) {
		if (!m->slots[i].key)
			continue;
		size_t j = hmap__hash(m->slots[i].key, ncap);
		while (ns[j].key)
			j = (j + 1) & (ncap - 1);
		ns[j] = m->slots[i];
	}
	free(m->slots);
	m->slots = ns;
	m->cap = ncap;
	return 0;
}

bool hmap_get(const struct hmap *m, uint64_t key, uint64_t *val)
{
	assert(key != 0);
	if (!m->cap)
		return false;
	for (size_t i = hmap__hash(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
		if (!m->slots[i].key)
			return false;
		if (m->slots[i].key == key) {
			if (val)
				*val = m->slots[i].val;
			return true;
		}
	}
}

int hmap_put(struct hmap *m, uint64_t key, uint64_t val)
{
	assert(key != 0);
	if ((m->count + 1) * 4 > m->cap * 3) {
		int rc = hmap__grow(m);
		if (rc)
			return rc;
	}
	size_t i = hmap__hash(key, m->cap);
	while (m->slots[i].key && m->slots[i].key != key)
		i = (i + 1) & (m->cap - 1);
	if (!m->slots[i].key)
		m->count++;
	m->slots[i].key = key;
	m->slots[i].val = val;
	return 0;
}

bool hmap_del(struct hmap *m, uint64_t key)
{
	if (!m->cap)
		return false;
	size_t mask = m->cap - 1;
	size_t i = hmap__hash(key, m->cap);
	while (m->slots[i].key != key) {
		if (!m->slots[i].key)
			return false;
		i = (i + 1) & mask;
	}
	/* Backward-shift: pull later members of the probe run into the gap. */
	size_t j = i;
	for (;;) {
		j = (j + 1) & mask;
		if (!m->slots[j].key)
			break;
		size_t h = hmap__hash(m->slots[j].key, m->cap);
		bool movable = (i <= j) ? (h <= i || h > j) : (h <= i && h > j);
		if (movable) {
			m->slots[i] = m->slots[j];
			i = j;
		}
	}
	m->slots[i].key = 0;
	m->slots[i].val = 0;
	m->count--;
	return true;
}

bool hmap_next(const struct hmap *m, size_t *pos, uint64_t *key, uint64_t *val)
{
	for (; *pos < m->cap; (*pos)++) {
		if (m->slots[*pos].key) {
			*key = m->slots[*pos].key;
			*val = m->slots[*pos].val;
			(*pos)++;
			return true;
		}
	}
	return false;
}
