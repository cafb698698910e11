/* Extents: the block tables of 1 MiB of vdisk address space, shared by
 * reference between vdisks (snapshots, clones, copy_range). Two levels of
 * sharing, as in qcow2: a whole extent is shared through its refcount (C
 * keys, kept in memory); after a copy on write the two tables share
 * physical blocks, counted per block (R keys, kept in memory) and flagged
 * SDS_BLK_SHARED in the tables so that unshared blocks never look up R. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "sds_internal.h"
#include "util.h"

void sds_extent_encode_shard(const struct sds_extent *e, unsigned shard,
			     uint8_t *v)
{
	put_be64(v, e->version);
	for (unsigned i = 0; i < SDS_SHARD_BLOCKS; i++) {
		const struct sds_blkent *be = &e->blk[shard * SDS_SHARD_BLOCKS + i];
		uint8_t *b = v + 8 + (size_t)i * 16;
		put_be64(b, be->pba);
		put_be32(b + 8, be->crc);
		put_be32(b + 12, be->flags);
	}
}

struct sds_extent__load {
	struct sds_extent *e;
	unsigned shards;
};

static int sds_extent__decode_shard(void *arg, const uint8_t *k, size_t kl,
				    const uint8_t *v, size_t vl)
{
	struct sds_extent__load *l = arg;
	struct sds_extent *e = l->e;
	if (kl != 10 || vl != SDS_SHARD_VALUE_LEN ||
	    k[9] >= SDS_EXTENT_SHARDS)
		return -EINVAL;
	e->version = MAX(e->version, get_be64(v));
	for (unsigned i = 0; i < SDS_SHARD_BLOCKS; i++) {
		const uint8_t *b = v + 8 + (size_t)i * 16;
		struct sds_blkent *be = &e->blk[k[9] * SDS_SHARD_BLOCKS + i];
		be->pba = get_be64(b);
		be->crc = get_be32(b + 8);
		be->flags = get_be32(b + 12);
	}
	l->shards++;
	return 0;
}

static int sds_extent__insert(struct sds_pool *p, struct sds_extent *e)
{
	int rc = hmap_put(&p->ext_cache, e->id, (uint64_t)(uintptr_t)e);
	if (rc)
		return rc;
	TAILQ_INSERT_HEAD(&p->lru, e, lru);
	p->ncached++;
	return 0;
}

struct sds_extent *sds_extent_get(struct sds_pool *p, uint64_t id, int *rc)
{
	uint64_t v;
	if (hmap_get(&p->ext_cache, id, &v)) {
		struct sds_extent *e = (struct sds_extent *)(uintptr_t)v;
		TAILQ_REMOVE(&p->lru, e, lru);
		TAILQ_INSERT_HEAD(&p->lru, e, lru);
		return e;
	}
	struct sds_extent *e = calloc(1, sizeof(*e));
	if (!e) {
		*rc = -ENOMEM;
		return NULL;
	}
	uint8_t prefix[9];
	sds_key_u64(prefix, SDS_K_EXTENT, id);
	struct sds_extent__load l = {.e = e};
	int src = sds_meta_scan(&p->meta, prefix, sizeof(prefix),
				sds_extent__decode_shard, &l);
	if (src || !l.shards) {
		log_error("sds", "extent %llu: %s", (unsigned long long)id,
			  src ? "bad record" : "missing record");
		free(e);
		*rc = -EIO;
		return NULL;
	}
	e->id = id;
	if ((*rc = sds_extent__insert(p, e)) != 0) {
		free(e);
		return NULL;
	}
	return e;
}

struct sds_extent *sds_extent_new(struct sds_pool *p)
{
	struct sds_extent *e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->id = p->next_extent_id++;
	p->super_dirty = true;
	if (sds_extent__insert(p, e)) {
		free(e);
		return NULL;
	}
	/* Shard 0 is always stored: it is what makes the extent exist. */
	sds_extent_mark_dirty(p, e, 0);
	return e;
}

void sds_extent_mark_dirty(struct sds_pool *p, struct sds_extent *e,
			   unsigned idx)
{
	if (!e->dirty)
		TAILQ_INSERT_TAIL(&p->ext_dirty, e, dirty_link);
	e->dirty |= idx >= SDS_EXTENT_BLOCKS
		? SDS_SHARDS_ALL
		: (uint16_t)(1u << (idx / SDS_SHARD_BLOCKS));
	sds_commit_mark(p);
}

uint32_t sds_extent_refs(struct sds_pool *p, uint64_t id)
{
	uint64_t rc;
	return hmap_get(&p->ext_rc, id, &rc) ? (uint32_t)rc : 1;
}

static void sds_extent__set_refs(struct sds_pool *p, uint64_t id,
				 uint32_t refs)
{
	if (refs > 1)
		hmap_put(&p->ext_rc, id, refs);
	else
		hmap_del(&p->ext_rc, id);
	hmap_put(&p->ext_rc_dirty, id, 1);
	sds_commit_mark(p);
}

void sds_extent_ref(struct sds_pool *p, uint64_t id)
{
	sds_extent__set_refs(p, id, sds_extent_refs(p, id) + 1);
}

static void sds_extent__drop(struct sds_pool *p, struct sds_extent *e)
{
	hmap_del(&p->ext_cache, e->id);
	TAILQ_REMOVE(&p->lru, e, lru);
	if (e->dirty)
		TAILQ_REMOVE(&p->ext_dirty, e, dirty_link);
	p->ncached--;
	free(e);
}

int sds_extent_unref(struct sds_pool *p, uint64_t id)
{
	uint32_t refs = sds_extent_refs(p, id);
	if (refs > 1) {
		sds_extent__set_refs(p, id, refs - 1);
		return 0;
	}
	int rc;
	struct sds_extent *e = sds_extent_get(p, id, &rc);
	if (!e)
		return rc;
	for (unsigned i = 0; i < SDS_EXTENT_BLOCKS; i++)
		if (e->blk[i].pba)
			sds_pba_unref(p, &e->blk[i]);
	sds_extent__drop(p, e);
	hmap_put(&p->ext_dead, id, 1);
	sds_commit_mark(p);
	return 0;
}

void sds_pba_ref(struct sds_pool *p, uint64_t pba)
{
	uint64_t rc;
	hmap_put(&p->pba_rc, pba, hmap_get(&p->pba_rc, pba, &rc) ? rc + 1 : 2);
	hmap_put(&p->pba_rc_dirty, pba, 1);
	sds_commit_mark(p);
}

void sds_pba_unref(struct sds_pool *p, const struct sds_blkent *b)
{
	uint64_t rc;
	if ((b->flags & SDS_BLK_SHARED) && hmap_get(&p->pba_rc, b->pba, &rc)) {
		if (rc > 2)
			hmap_put(&p->pba_rc, b->pba, rc - 1);
		else
			hmap_del(&p->pba_rc, b->pba);
		hmap_put(&p->pba_rc_dirty, b->pba, 1);
		sds_commit_mark(p);
		return;
	}
	sds_alloc_release(p, b->pba);
}

struct sds_extent *sds_extent_for_write(struct sds_pool *p, struct sds_vd *vd,
					uint64_t vb, int *rc)
{
	uint64_t id = vd->map[vb];
	struct sds_extent *e;
	if (!id) {
		e = sds_extent_new(p);
		if (!e) {
			*rc = -ENOMEM;
			return NULL;
		}
		sds_vd_map_set(p, vd, vb, e->id);
		return e;
	}
	e = sds_extent_get(p, id, rc);
	if (!e || sds_extent_refs(p, id) == 1)
		return e;
	/* Copy on write of the table only: the blocks become shared. The
	 * work is bounded by SDS_EXTENT_BLOCKS, whatever the sharing. */
	struct sds_extent *n = sds_extent_new(p);
	if (!n) {
		*rc = -ENOMEM;
		return NULL;
	}
	for (unsigned i = 0; i < SDS_EXTENT_BLOCKS; i++) {
		if (!e->blk[i].pba)
			continue;
		sds_pba_ref(p, e->blk[i].pba);
		e->blk[i].flags |= SDS_BLK_SHARED;
		n->blk[i] = e->blk[i];
	}
	n->version = e->version + 1;
	sds_extent_mark_dirty(p, e, SDS_EXTENT_BLOCKS);
	sds_extent_mark_dirty(p, n, SDS_EXTENT_BLOCKS);
	sds_extent_unref(p, id);
	sds_vd_map_set(p, vd, vb, n->id);
	return n;
}

void sds_extent_set(struct sds_pool *p, struct sds_extent *e, unsigned idx,
		    uint64_t pba, uint32_t crc, uint32_t flags)
{
	struct sds_blkent old = e->blk[idx];
	e->blk[idx].pba = pba;
	e->blk[idx].crc = crc;
	e->blk[idx].flags = pba ? flags : 0;
	e->version++;
	if (old.pba)
		sds_pba_unref(p, &old);
	sds_extent_mark_dirty(p, e, idx);
}

/* Evicts clean extents whose last change is durable. Called only between
 * requests' steps, never while a caller holds an extent pointer. */
void sds_extent_cache_trim(struct sds_pool *p)
{
	struct sds_extent *e = TAILQ_LAST(&p->lru, sds_extentq);
	size_t budget = 4096;
	while (e && p->ncached > p->opts.cache_extents && budget--) {
		struct sds_extent *prev = TAILQ_PREV(e, sds_extentq, lru);
		if (!e->dirty && e->saved_gen <= p->durable_gen)
			sds_extent__drop(p, e);
		e = prev;
	}
}

void sds_extent_cache_free(struct sds_pool *p)
{
	struct sds_extent *e;
	while ((e = TAILQ_FIRST(&p->lru)) != NULL)
		sds_extent__drop(p, e);
	hmap_free(&p->ext_cache);
}
