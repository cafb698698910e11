/* Block allocator: two bitmaps per disk.
 *   used  what the metadata says is allocated (persisted per chunk of
 *         SDS_ALLOC_CHUNK blocks under key A, in the same commit as the
 *         block tables that point to the blocks);
 *   busy  used, plus blocks being written whose pointer is not yet in the
 *         metadata, plus blocks released whose release is not yet durable.
 * Only blocks clear in `busy` are handed out, so a block that the durable
 * metadata still points to is never overwritten (SDS-NOTES invariant 1). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "sds_internal.h"
#include "util.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
	       "bitmap records are stored as little-endian words");

#define WORD_BITS 64u

static inline bool bit_get(const uint64_t *m, uint64_t i)
{
	return (m[i / WORD_BITS] >> (i % WORD_BITS)) & 1u;
}
static inline void bit_set(uint64_t *m, uint64_t i)
{
	m[i / WORD_BITS] |= 1ULL << (i % WORD_BITS);
}
static inline void bit_clr(uint64_t *m, uint64_t i)
{
	m[i / WORD_BITS] &= ~(1ULL << (i % WORD_BITS));
}

static int sds_alloc__load_chunk(void *arg, const uint8_t *k, size_t kl,
				 const uint8_t *v, size_t vl)
{
	struct sds_disk *d = arg;
	if (kl != 9 || vl != SDS_ALLOC_CHUNK / 8)
		return -EINVAL;
	uint32_t chunk = get_be32(k + 5);
	if (chunk >= d->nchunks)
		return -EINVAL;
	memcpy((uint8_t *)d->used + (size_t)chunk * (SDS_ALLOC_CHUNK / 8), v,
	       vl);
	return 0;
}

/* From a freshly loaded `used`: nothing is in flight or waiting on a
 * commit, so busy = used, plus the bits past the end of the disk. */
static void sds_alloc__derive(struct sds_disk *d)
{
	size_t words = d->nchunks * (SDS_ALLOC_CHUNK / WORD_BITS);
	memcpy(d->busy, d->used, words * sizeof(uint64_t));
	for (uint64_t b = d->nblocks; b < d->nchunks * SDS_ALLOC_CHUNK; b++)
		bit_set(d->busy, b);
	d->nused = 0;
	for (size_t w = 0; w < words; w++)
		d->nused += (uint64_t)__builtin_popcountll(d->used[w]);
	d->nbusy = d->nused;
}

int sds_alloc_load(struct sds_pool *p)
{
	for (unsigned i = 0; i < p->ndisks; i++) {
		struct sds_disk *d = &p->disks[i];
		d->nchunks = DIV_ROUND_UP(d->nblocks, SDS_ALLOC_CHUNK);
		size_t words = d->nchunks * (SDS_ALLOC_CHUNK / WORD_BITS);
		d->used = calloc(words, sizeof(uint64_t));
		d->busy = calloc(words, sizeof(uint64_t));
		d->dirty = calloc(d->nchunks, 1);
		if (!d->used || !d->busy || !d->dirty)
			return -ENOMEM;
		uint8_t prefix[5] = {SDS_K_ALLOC};
		put_be32(prefix + 1, i);
		int rc = sds_meta_scan(&p->meta, prefix, sizeof(prefix),
				       sds_alloc__load_chunk, d);
		if (rc)
			return rc;
		bit_set(d->used, 0); /* the label */
		sds_alloc__derive(d);
	}
	return 0;
}

/* The block tables' view of one shard record: every pba it names is used. */
static int sds_alloc__rebuild_shard(void *arg, const uint8_t *k, size_t kl,
				    const uint8_t *v, size_t vl)
{
	struct sds_pool *p = arg;
	(void)k;
	if (kl != 10 || vl != SDS_SHARD_VALUE_LEN)
		return -EINVAL;
	for (unsigned i = 0; i < SDS_SHARD_BLOCKS; i++) {
		uint64_t pba = get_be64(v + 8 + (size_t)i * 16);
		if (!pba)
			continue;
		if (pba_disk(pba) >= p->ndisks ||
		    pba_block(pba) >= p->disks[pba_disk(pba)].nblocks)
			return -EINVAL;
		bit_set(p->disks[pba_disk(pba)].used, pba_block(pba));
	}
	return 0;
}

/* Log mode leaves the A records to the group commit (commit.c): after a
 * crash they may be older than the block tables the log carried, so the
 * bitmaps are recomputed from the tables (shared blocks are simply set
 * twice) and every chunk is rewritten by the next commit. */
int sds_alloc_rebuild(struct sds_pool *p)
{
	for (unsigned i = 0; i < p->ndisks; i++) {
		struct sds_disk *d = &p->disks[i];
		memset(d->used, 0, d->nchunks * (SDS_ALLOC_CHUNK / 8));
		bit_set(d->used, 0); /* the label */
	}
	uint8_t prefix = SDS_K_EXTENT;
	int rc = sds_meta_scan(&p->meta, &prefix, 1, sds_alloc__rebuild_shard,
			       p);
	if (rc)
		return rc;
	for (unsigned i = 0; i < p->ndisks; i++) {
		struct sds_disk *d = &p->disks[i];
		sds_alloc__derive(d);
		memset(d->dirty, 1, d->nchunks);
	}
	sds_commit_mark(p);
	return 0;
}

/* Next clear bit in busy at or after `from`, or nblocks. */
static uint64_t sds_alloc__find(const struct sds_disk *d, uint64_t from)
{
	uint64_t words = d->nchunks * (SDS_ALLOC_CHUNK / WORD_BITS);
	uint64_t w = from / WORD_BITS;
	if (w >= words)
		return d->nblocks;
	uint64_t cur = ~d->busy[w] & (~0ULL << (from % WORD_BITS));
	while (!cur) {
		if (++w >= words)
			return d->nblocks;
		cur = ~d->busy[w];
	}
	uint64_t b = w * WORD_BITS + (uint64_t)__builtin_ctzll(cur);
	return b < d->nblocks ? b : d->nblocks;
}

static int sds_alloc__on_disk(struct sds_disk *d, unsigned want,
			      uint64_t *first)
{
	if (d->nbusy >= d->nblocks)
		return 0;
	uint64_t b = sds_alloc__find(d, d->cursor);
	if (b >= d->nblocks)
		b = sds_alloc__find(d, 1);
	if (b >= d->nblocks)
		return 0;
	unsigned n = 0;
	while (n < want && b + n < d->nblocks && !bit_get(d->busy, b + n)) {
		bit_set(d->busy, b + n);
		n++;
	}
	d->nbusy += n;
	d->cursor = b + n;
	*first = b;
	return (int)n;
}

int sds_alloc_run(struct sds_pool *p, unsigned want, uint64_t *pba)
{
	for (unsigned t = 0; t < p->ndisks; t++) {
		unsigned i = (p->alloc_next_disk + t) % p->ndisks;
		uint64_t b;
		int n = sds_alloc__on_disk(&p->disks[i], want, &b);
		if (n > 0) {
			/* Alternate disks between requests to spread load. */
			p->alloc_next_disk = (i + 1) % p->ndisks;
			*pba = pba_make(i, b);
			return n;
		}
	}
	return -ENOSPC;
}

void sds_alloc_commit_block(struct sds_pool *p, uint64_t pba)
{
	struct sds_disk *d = &p->disks[pba_disk(pba)];
	uint64_t b = pba_block(pba);
	if (!bit_get(d->used, b)) {
		bit_set(d->used, b);
		d->nused++;
	}
	d->dirty[b / SDS_ALLOC_CHUNK] = 1;
	sds_commit_mark(p);
}

void sds_alloc_abort(struct sds_pool *p, uint64_t pba, unsigned n)
{
	struct sds_disk *d = &p->disks[pba_disk(pba)];
	for (unsigned i = 0; i < n; i++) {
		uint64_t b = pba_block(pba) + i;
		if (bit_get(d->busy, b) && !bit_get(d->used, b)) {
			bit_clr(d->busy, b);
			d->nbusy--;
		}
	}
}

void sds_alloc_release(struct sds_pool *p, uint64_t pba)
{
	struct sds_disk *d = &p->disks[pba_disk(pba)];
	uint64_t b = pba_block(pba);
	if (!bit_get(d->used, b)) {
		log_error("alloc", "release of free block %u:%llu",
			  pba_disk(pba), (unsigned long long)b);
		return;
	}
	bit_clr(d->used, b);
	d->nused--;
	d->dirty[b / SDS_ALLOC_CHUNK] = 1;
	if (p->nfree_cur == p->cap_free_cur) {
		size_t ncap = p->cap_free_cur ? p->cap_free_cur * 2 : 1024;
		uint64_t *n = realloc(p->free_cur, ncap * sizeof(*n));
		if (!n) {
			/* Keeping the block busy leaks it until restart, which
			 * is safe; reusing it early would not be. */
			log_error("alloc", "out of memory: block leaked");
			return;
		}
		p->free_cur = n;
		p->cap_free_cur = ncap;
	}
	p->free_cur[p->nfree_cur++] = pba;
	sds_commit_mark(p);
}

void sds_alloc_durable(struct sds_pool *p, uint64_t *pbas, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct sds_disk *d = &p->disks[pba_disk(pbas[i])];
		uint64_t b = pba_block(pbas[i]);
		/* Busy blocks are never handed out, so a released block is
		 * still unused here and may now be reused. */
		if (!bit_get(d->used, b) && bit_get(d->busy, b)) {
			bit_clr(d->busy, b);
			d->nbusy--;
		}
	}
}
