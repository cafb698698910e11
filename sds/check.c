/* Offline consistency check (fsck) of a pool's metadata, and optionally of
 * every referenced block's checksum. The crash tests run it after every
 * restart: it is the proof that metadata is consistent, not just readable.
 *
 * Invariants checked:
 *  - every extent a map references exists, and its refcount equals the
 *    number of map slots referencing it (absent C key = 1);
 *  - every block a table references is marked used, its reference count
 *    equals the number of table entries pointing at it (absent R key = 1),
 *    and when shared, every entry carries SDS_BLK_SHARED;
 *  - no block is marked used that nothing references (a leak). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sds_internal.h"

#define CHECK_BIT(m, i) ((m[(i) / 64] >> ((i) % 64)) & 1u)

static void sds_check__err(struct sds_check_report *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void sds_check__err(struct sds_check_report *r, const char *fmt, ...)
{
	if (r->errors++ == 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(r->first_error, sizeof(r->first_error), fmt, ap);
		va_end(ap);
	}
}

/* pba -> (entries << 1) | all_entries_flagged_shared */
static void sds_check__count_pba(struct hmap *m, const struct sds_blkent *b)
{
	uint64_t v;
	bool flagged = b->flags & SDS_BLK_SHARED;
	if (hmap_get(m, b->pba, &v))
		v = (((v >> 1) + 1) << 1) | ((v & 1) & flagged);
	else
		v = (1u << 1) | flagged;
	hmap_put(m, b->pba, v);
}

static void sds_check__deep(struct sds_pool *p, const struct sds_blkent *b,
			    void *buf, struct sds_check_report *r)
{
	struct sds_disk *d = &p->disks[pba_disk(b->pba)];
	if (pread(d->fd, buf, SDS_BLOCK_SIZE,
		  (off_t)(pba_block(b->pba) * SDS_BLOCK_SIZE)) !=
	    SDS_BLOCK_SIZE) {
		sds_check__err(r, "block %u:%llu unreadable", pba_disk(b->pba),
			       (unsigned long long)pba_block(b->pba));
		return;
	}
	r->blocks_verified++;
	if (!p->opts.no_checksum && sds_crc(buf, SDS_BLOCK_SIZE) != b->crc)
		sds_check__err(r, "block %u:%llu checksum mismatch",
			       pba_disk(b->pba),
			       (unsigned long long)pba_block(b->pba));
}

int sds_pool_check(struct sds_pool *p, bool deep,
		   struct sds_check_report *r)
{
	memset(r, 0, sizeof(*r));
	if (p->inflight) {
		sds_pool_set_err(p, "check needs an idle pool");
		return -EBUSY;
	}
	struct hmap erefs, prefs;
	hmap_init(&erefs);
	hmap_init(&prefs);
	void *buf = NULL;
	if (deep && posix_memalign(&buf, SDS_BLOCK_SIZE, SDS_BLOCK_SIZE))
		return -ENOMEM;
	struct sds_vd *vd;
	TAILQ_FOREACH(vd, &p->vds, link) {
		r->vdisks++;
		for (uint64_t vb = 0; vb < vd->nvb; vb++) {
			uint64_t eid = vd->map[vb], n = 0;
			if (!eid)
				continue;
			hmap_get(&erefs, eid, &n);
			hmap_put(&erefs, eid, n + 1);
		}
	}
	uint64_t eid, n;
	for (size_t pos = 0; hmap_next(&erefs, &pos, &eid, &n);) {
		r->extents++;
		if (sds_extent_refs(p, eid) != n)
			sds_check__err(r, "extent %llu: refcount %u, %llu "
					  "references",
				       (unsigned long long)eid,
				       sds_extent_refs(p, eid),
				       (unsigned long long)n);
		int rc;
		struct sds_extent *e = sds_extent_get(p, eid, &rc);
		if (!e) {
			sds_check__err(r, "extent %llu: unreadable",
				       (unsigned long long)eid);
			continue;
		}
		/* Copy the table: the next get may evict this one. */
		struct sds_blkent blk[SDS_EXTENT_BLOCKS];
		memcpy(blk, e->blk, sizeof(blk));
		for (unsigned i = 0; i < SDS_EXTENT_BLOCKS; i++) {
			if (!blk[i].pba)
				continue;
			unsigned d = pba_disk(blk[i].pba);
			uint64_t b = pba_block(blk[i].pba);
			if (d >= p->ndisks || b == 0 ||
			    b >= p->disks[d].nblocks) {
				sds_check__err(r, "extent %llu block %u: bad "
						  "address %u:%llu",
					       (unsigned long long)eid, i, d,
					       (unsigned long long)b);
				continue;
			}
			/* A table shared by k slots counts once: its blocks
			 * are referenced through the extent refcount. */
			sds_check__count_pba(&prefs, &blk[i]);
			if (deep)
				sds_check__deep(p, &blk[i], buf, r);
		}
		sds_extent_cache_trim(p);
	}
	for (size_t pos = 0; hmap_next(&p->ext_rc, &pos, &eid, &n);)
		if (!hmap_get(&erefs, eid, NULL))
			sds_check__err(r, "extent %llu: refcount %llu but "
					  "unreferenced",
				       (unsigned long long)eid,
				       (unsigned long long)n);
	uint64_t pba, v;
	for (size_t pos = 0; hmap_next(&prefs, &pos, &pba, &v);) {
		uint64_t entries = v >> 1, rc = 1;
		hmap_get(&p->pba_rc, pba, &rc);
		r->blocks_referenced++;
		if (rc != entries)
			sds_check__err(r, "block %u:%llu: refcount %llu, %llu "
					  "entries",
				       pba_disk(pba),
				       (unsigned long long)pba_block(pba),
				       (unsigned long long)rc,
				       (unsigned long long)entries);
		if (entries > 1 && !(v & 1))
			sds_check__err(r, "block %u:%llu: shared but not "
					  "flagged",
				       pba_disk(pba),
				       (unsigned long long)pba_block(pba));
		if (!CHECK_BIT(p->disks[pba_disk(pba)].used, pba_block(pba)))
			sds_check__err(r, "block %u:%llu: referenced but free",
				       pba_disk(pba),
				       (unsigned long long)pba_block(pba));
	}
	for (size_t pos = 0; hmap_next(&p->pba_rc, &pos, &pba, &v);)
		if (!hmap_get(&prefs, pba, NULL))
			sds_check__err(r, "block %u:%llu: refcount %llu but "
					  "unreferenced",
				       pba_disk(pba),
				       (unsigned long long)pba_block(pba),
				       (unsigned long long)v);
	for (unsigned d = 0; d < p->ndisks; d++) {
		for (uint64_t b = 1; b < p->disks[d].nblocks; b++) {
			if (!CHECK_BIT(p->disks[d].used, b))
				continue;
			r->blocks_used++;
			if (!hmap_get(&prefs, pba_make(d, b), NULL))
				r->blocks_leaked++;
		}
	}
	if (r->blocks_leaked)
		sds_check__err(r, "%llu block(s) used but unreferenced",
			       (unsigned long long)r->blocks_leaked);
	hmap_free(&erefs);
	hmap_free(&prefs);
	free(buf);
	return 0;
}
