/* vdisks: thin block devices mapping 1 MiB slots of their address space to
 * extents. Snapshots and clones copy the map and take a reference on each
 * extent: O(size / 1 MiB) in-memory work and no data IO. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "sds_internal.h"
#include "util.h"

#define SDS_VD_REC_LEN (64 + 8 + 4 + 4 + 8 + 8)
#define SDS_VD_MAX_SIZE (16ULL << 40) /* in-memory map: 128 MiB at most */

static bool sds_vd__name_ok(const char *n)
{
	size_t l = strlen(n);
	if (l < 1 || l > SDS_NAME_MAX)
		return false;
	for (size_t i = 0; i < l; i++) {
		char c = n[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		      c == '-'))
			return false;
	}
	return true;
}

struct sds_vd *sds_vd_find(struct sds_pool *p, const char *name)
{
	struct sds_vd *vd;
	TAILQ_FOREACH(vd, &p->vds, link)
		if (!(vd->flags & SDS_VD_DELETING) && !strcmp(vd->name, name))
			return vd;
	return NULL;
}

void sds_vd_map_set(struct sds_pool *p, struct sds_vd *vd, uint64_t vb,
		    uint64_t eid)
{
	vd->map[vb] = eid;
	vd->map_dirty[vb / SDS_MAP_CHUNK] = 1;
	vd->maps_dirty = true;
	sds_commit_mark(p);
}

static struct sds_vd *sds_vd__alloc(uint64_t size)
{
	struct sds_vd *vd = calloc(1, sizeof(*vd));
	if (!vd)
		return NULL;
	vd->size = size;
	vd->nvb = DIV_ROUND_UP(size, SDS_EXTENT_SIZE);
	vd->map = calloc(vd->nvb ? vd->nvb : 1, sizeof(uint64_t));
	vd->map_dirty = calloc(DIV_ROUND_UP(vd->nvb, SDS_MAP_CHUNK) + 1, 1);
	if (!vd->map || !vd->map_dirty) {
		free(vd->map);
		free(vd->map_dirty);
		free(vd);
		return NULL;
	}
	return vd;
}

static void sds_vd__free(struct sds_vd *vd)
{
	free(vd->map);
	free(vd->map_dirty);
	free(vd);
}

void sds_vd_encode(const struct sds_vd *vd, uint8_t *v)
{
	memset(v, 0, SDS_VD_REC_LEN);
	memcpy(v, vd->name, strlen(vd->name));
	put_be64(v + 64, vd->size);
	put_be32(v + 72, vd->sector_size);
	put_be32(v + 76, vd->flags);
	put_be64(v + 80, vd->parent_id);
	put_be64(v + 88, (uint64_t)vd->created);
}

size_t sds_vd_rec_len(void)
{
	return SDS_VD_REC_LEN;
}

static int sds_vd__load_map(void *arg, const uint8_t *k, size_t kl,
			    const uint8_t *v, size_t vl)
{
	struct sds_vd *vd = arg;
	if (kl != 13 || vl % 8)
		return -EINVAL;
	uint64_t chunk = get_be32(k + 9);
	for (size_t i = 0; i < vl / 8; i++) {
		uint64_t vb = chunk * SDS_MAP_CHUNK + i;
		if (vb < vd->nvb)
			vd->map[vb] = get_be64(v + i * 8);
	}
	if (chunk + 1 > vd->map_chunks_on_disk)
		vd->map_chunks_on_disk = chunk + 1;
	return 0;
}

static int sds_vd__load_one(void *arg, const uint8_t *k, size_t kl,
			    const uint8_t *v, size_t vl)
{
	struct sds_pool *p = arg;
	if (kl != 9 || vl != SDS_VD_REC_LEN || v[63] != 0)
		return -EINVAL;
	struct sds_vd *vd = sds_vd__alloc(get_be64(v + 64));
	if (!vd)
		return -ENOMEM;
	vd->id = get_be64(k + 1);
	memcpy(vd->name, v, 64);
	vd->sector_size = get_be32(v + 72);
	vd->flags = get_be32(v + 76);
	vd->parent_id = get_be64(v + 80);
	vd->created = (int64_t)get_be64(v + 88);
	uint8_t prefix[9];
	sds_key_u64(prefix, SDS_K_MAP, vd->id);
	int rc = sds_meta_scan(&p->meta, prefix, 9, sds_vd__load_map, vd);
	if (rc) {
		sds_vd__free(vd);
		return rc;
	}
	TAILQ_INSERT_TAIL(&p->vds, vd, link);
	return 0;
}

int sds_vd_load_all(struct sds_pool *p)
{
	uint8_t prefix[1] = {SDS_K_VDISK};
	int rc = sds_meta_scan(&p->meta, prefix, 1, sds_vd__load_one, p);
	if (rc)
		return rc;
	sds_gc_kick(p);
	return 0;
}

void sds_vd_free_all(struct sds_pool *p)
{
	struct sds_vd *vd;
	while ((vd = TAILQ_FIRST(&p->vds)) != NULL) {
		TAILQ_REMOVE(&p->vds, vd, link);
		sds_vd__free(vd);
	}
}

/* ---- metadata operations ---------------------------------------------- */

static int sds_vd__check_new_name(struct sds_pool *p, const char *name)
{
	if (!sds_vd__name_ok(name)) {
		sds_pool_set_err(p, "invalid vdisk name '%s' (1-%d of "
				    "[A-Za-z0-9._-])", name, SDS_NAME_MAX);
		return -EINVAL;
	}
	if (sds_vd_find(p, name)) {
		sds_pool_set_err(p, "vdisk '%s' already exists", name);
		return -EEXIST;
	}
	return 0;
}

static struct sds_vd *sds_vd__lookup(struct sds_pool *p, const char *name)
{
	struct sds_vd *vd = name ? sds_vd_find(p, name) : NULL;
	if (!vd)
		sds_pool_set_err(p, "no vdisk '%s'", name ? name : "");
	return vd;
}

static int sds_vd__check_size(struct sds_pool *p, uint64_t size)
{
	if (size == 0 || size % SDS_BLOCK_SIZE || size > SDS_VD_MAX_SIZE) {
		sds_pool_set_err(p, "invalid size %llu: must be a non-zero "
				    "multiple of 4096 up to 16 TiB",
				 (unsigned long long)size);
		return -EINVAL;
	}
	return 0;
}

static struct sds_vd *sds_vd__add(struct sds_pool *p, const char *name,
				  uint64_t size, uint32_t sector_size)
{
	struct sds_vd *vd = sds_vd__alloc(size);
	if (!vd) {
		sds_pool_set_err(p, "out of memory");
		return NULL;
	}
	vd->id = p->next_vdisk_id++;
	p->super_dirty = true;
	str_copy(vd->name, name, sizeof(vd->name));
	vd->sector_size = sector_size;
	vd->created = (int64_t)time(NULL);
	vd->rec_dirty = true;
	TAILQ_INSERT_TAIL(&p->vds, vd, link);
	sds_commit_mark(p);
	return vd;
}

int sds_vdisk_create(struct sds_pool *p, const char *name, uint64_t size,
		     uint32_t sector_size)
{
	int rc = sds_vd__check_new_name(p, name);
	if (rc)
		return rc;
	if ((rc = sds_vd__check_size(p, size)) != 0)
		return rc;
	if (sector_size != 512 && sector_size != 4096) {
		sds_pool_set_err(p, "sector size must be 512 or 4096");
		return -EINVAL;
	}
	return sds_vd__add(p, name, size, sector_size) ? 0 : -ENOMEM;
}

/* Snapshot and clone: copy the map, reference every extent. */
static int sds_vd__copy(struct sds_pool *p, const char *src, const char *name,
			bool snapshot)
{
	struct sds_vd *s = sds_vd__lookup(p, src);
	if (!s)
		return -ENOENT;
	int rc = sds_vd__check_new_name(p, name);
	if (rc)
		return rc;
	struct sds_vd *vd = sds_vd__add(p, name, s->size, s->sector_size);
	if (!vd)
		return -ENOMEM;
	vd->flags = snapshot ? SDS_VD_SNAPSHOT : 0;
	vd->parent_id = s->id;
	for (uint64_t vb = 0; vb < s->nvb; vb++) {
		if (!s->map[vb])
			continue;
		sds_extent_ref(p, s->map[vb]);
		sds_vd_map_set(p, vd, vb, s->map[vb]);
	}
	return 0;
}

int sds_vdisk_snapshot(struct sds_pool *p, const char *src,
		       const char *snap_name)
{
	return sds_vd__copy(p, src, snap_name, true);
}

int sds_vdisk_clone(struct sds_pool *p, const char *src,
		    const char *clone_name)
{
	return sds_vd__copy(p, src, clone_name, false);
}

int sds_vdisk_delete(struct sds_pool *p, const char *name)
{
	struct sds_vd *vd = sds_vd__lookup(p, name);
	if (!vd)
		return -ENOENT;
	if (vd->opens) {
		sds_pool_set_err(p, "vdisk '%s' is open", name);
		return -EBUSY;
	}
	vd->flags |= SDS_VD_DELETING;
	vd->rec_dirty = true;
	sds_attr_drop_all(p, vd->id);
	sds_commit_mark(p);
	sds_gc_kick(p);
	return 0;
}

int sds_vd_release(struct sds_pool *p, struct sds_vd *vd, uint64_t b0,
		   uint64_t b1)
{
	while (b0 < b1) {
		uint64_t vb = b0 / SDS_EXTENT_BLOCKS;
		unsigned from = (unsigned)(b0 % SDS_EXTENT_BLOCKS);
		unsigned to = (unsigned)MIN((uint64_t)SDS_EXTENT_BLOCKS,
					    b1 - vb * SDS_EXTENT_BLOCKS);
		b0 = vb * SDS_EXTENT_BLOCKS + to;
		if (!vd->map[vb])
			continue;
		int rc = 0;
		if (from == 0 && to == SDS_EXTENT_BLOCKS) {
			rc = sds_extent_unref(p, vd->map[vb]);
			sds_vd_map_set(p, vd, vb, 0);
			if (rc)
				return rc;
			continue;
		}
		struct sds_extent *e = sds_extent_for_write(p, vd, vb, &rc);
		if (!e)
			return rc;
		for (unsigned i = from; i < to; i++)
			if (e->blk[i].pba)
				sds_extent_set(p, e, i, 0, 0, 0);
	}
	return 0;
}

int sds_vd_share(struct sds_pool *p, struct sds_vd *dst, uint64_t db,
		 struct sds_vd *src, uint64_t sb, uint64_t n)
{
	int rc = 0;
	while (n) {
		uint64_t dvb = db / SDS_EXTENT_BLOCKS, svb = sb / SDS_EXTENT_BLOCKS;
		if (db % SDS_EXTENT_BLOCKS == 0 && sb % SDS_EXTENT_BLOCKS == 0 &&
		    n >= SDS_EXTENT_BLOCKS) {
			/* A whole slot: share the extent itself. Reference
			 * before dropping, in case both are the same. */
			uint64_t eid = src->map[svb], old = dst->map[dvb];
			if (eid)
				sds_extent_ref(p, eid);
			if (old && (rc = sds_extent_unref(p, old)))
				return rc;
			sds_vd_map_set(p, dst, dvb, eid);
			db += SDS_EXTENT_BLOCKS;
			sb += SDS_EXTENT_BLOCKS;
			n -= SDS_EXTENT_BLOCKS;
			continue;
		}
		struct sds_blkent b = {0};
		struct sds_extent *se = NULL;
		if (src->map[svb]) {
			se = sds_extent_get(p, src->map[svb], &rc);
			if (!se)
				return rc;
			b = se->blk[sb % SDS_EXTENT_BLOCKS];
		}
		if (b.pba || dst->map[dvb]) {
			struct sds_extent *de =
				sds_extent_for_write(p, dst, dvb, &rc);
			if (!de)
				return rc;
			if (b.pba) {
				sds_pba_ref(p, b.pba);
				/* The source may have been copied on write
				 * just now (same vdisk): flag its live entry. */
				if (src->map[svb] &&
				    (se = sds_extent_get(p, src->map[svb], &rc))) {
					unsigned si = (unsigned)(sb % SDS_EXTENT_BLOCKS);
					se->blk[si].flags |= SDS_BLK_SHARED;
					sds_extent_mark_dirty(p, se, si);
				}
			}
			sds_extent_set(p, de, (unsigned)(db % SDS_EXTENT_BLOCKS),
				       b.pba, b.crc, SDS_BLK_SHARED);
		}
		db++;
		sb++;
		n--;
	}
	return 0;
}

int sds_vdisk_resize(struct sds_pool *p, const char *name, uint64_t size)
{
	struct sds_vd *vd = sds_vd__lookup(p, name);
	if (!vd)
		return -ENOENT;
	int rc = sds_vd__check_size(p, size);
	if (rc)
		return rc;
	if (vd->flags & SDS_VD_SNAPSHOT) {
		sds_pool_set_err(p, "'%s' is a snapshot", name);
		return -EROFS;
	}
	if (vd->opens) {
		sds_pool_set_err(p, "vdisk '%s' is open", name);
		return -EBUSY;
	}
	uint64_t nvb = DIV_ROUND_UP(size, SDS_EXTENT_SIZE);
	if (size < vd->size) {
		for (uint64_t vb = nvb; vb < vd->nvb; vb++) {
			if (vd->map[vb] && (rc = sds_extent_unref(p, vd->map[vb])))
				return rc;
			sds_vd_map_set(p, vd, vb, 0);
		}
		uint64_t end = MIN(vd->nvb, nvb) * SDS_EXTENT_BLOCKS;
		if ((rc = sds_vd_release(p, vd, size / SDS_BLOCK_SIZE, end)))
			return rc;
	}
	uint64_t *map = realloc(vd->map, nvb * sizeof(uint64_t));
	uint8_t *dirty = realloc(vd->map_dirty,
				 DIV_ROUND_UP(nvb, SDS_MAP_CHUNK) + 1);
	if (!map || !dirty) {
		/* Whichever succeeded is still valid at its new size; the map
		 * only ever shrinks here after its slots were released. */
		if (map)
			vd->map = map;
		if (dirty)
			vd->map_dirty = dirty;
		sds_pool_set_err(p, "out of memory");
		return -ENOMEM;
	}
	uint64_t oldc = DIV_ROUND_UP(vd->nvb, SDS_MAP_CHUNK) + 1;
	uint64_t newc = DIV_ROUND_UP(nvb, SDS_MAP_CHUNK) + 1;
	for (uint64_t c = oldc; c < newc; c++)
		dirty[c] = 0;
	/* New slots are rewritten at the next commit: a shrink not yet
	 * committed may have left older entries in the records on disk. */
	for (uint64_t vb = vd->nvb; vb < nvb; vb++) {
		map[vb] = 0;
		dirty[vb / SDS_MAP_CHUNK] = 1;
	}
	vd->map = map;
	vd->map_dirty = dirty;
	vd->maps_dirty = true;
	vd->nvb = nvb;
	vd->size = size;
	vd->rec_dirty = true;
	sds_commit_mark(p);
	return 0;
}

static void sds_vd__info(struct sds_pool *p, struct sds_vd *vd,
			 struct sds_vdisk_info *o, bool space)
{
	memset(o, 0, sizeof(*o));
	o->id = vd->id;
	str_copy(o->name, vd->name, sizeof(o->name));
	o->size = vd->size;
	o->sector_size = vd->sector_size;
	o->snapshot = vd->flags & SDS_VD_SNAPSHOT;
	o->parent_id = vd->parent_id;
	o->created = vd->created;
	if (!space)
		return;
	for (uint64_t vb = 0; vb < vd->nvb; vb++) {
		if (!vd->map[vb])
			continue;
		int rc;
		struct sds_extent *e = sds_extent_get(p, vd->map[vb], &rc);
		if (!e)
			continue;
		bool whole_shared = sds_extent_refs(p, vd->map[vb]) > 1;
		for (unsigned i = 0; i < SDS_EXTENT_BLOCKS; i++) {
			const struct sds_blkent *b = &e->blk[i];
			if (!b->pba)
				continue;
			if (whole_shared || ((b->flags & SDS_BLK_SHARED) &&
					     hmap_get(&p->pba_rc, b->pba, NULL)))
				o->shared_bytes += SDS_BLOCK_SIZE;
			else
				o->exclusive_bytes += SDS_BLOCK_SIZE;
		}
	}
	o->allocated_bytes = o->shared_bytes + o->exclusive_bytes;
}

int sds_vdisk_stat(struct sds_pool *p, const char *name,
		   struct sds_vdisk_info *out)
{
	struct sds_vd *vd = sds_vd__lookup(p, name);
	if (!vd)
		return -ENOENT;
	sds_vd__info(p, vd, out, true);
	return 0;
}

int sds_vdisk_list(struct sds_pool *p, struct sds_vdisk_info **out,
		   size_t *count)
{
	size_t n = 0, i = 0;
	struct sds_vd *vd;
	TAILQ_FOREACH(vd, &p->vds, link)
		if (!(vd->flags & SDS_VD_DELETING))
			n++;
	*out = calloc(n ? n : 1, sizeof(**out));
	if (!*out)
		return -ENOMEM;
	TAILQ_FOREACH(vd, &p->vds, link)
		if (!(vd->flags & SDS_VD_DELETING))
			sds_vd__info(p, vd, &(*out)[i++], false);
	*count = n;
	return 0;
}

int sds_vdisk_open(struct sds_pool *p, const char *name,
		   struct sds_vdisk **out)
{
	struct sds_vd *vd = sds_vd__lookup(p, name);
	if (!vd)
		return -ENOENT;
	struct sds_vdisk *h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->pool = p;
	h->vd = vd;
	vd->opens++;
	p->handles_open++;
	*out = h;
	return 0;
}

void sds_vdisk_close(struct sds_vdisk *h)
{
	if (!h)
		return;
	h->vd->opens--;
	h->pool->handles_open--;
	free(h);
}

static int sds_vd__block_mapped(struct sds_pool *p, struct sds_vd *vd,
				uint64_t blk, bool *mapped)
{
	uint64_t eid = vd->map[blk / SDS_EXTENT_BLOCKS];
	*mapped = false;
	if (!eid)
		return 0;
	int rc;
	struct sds_extent *e = sds_extent_get(p, eid, &rc);
	if (!e)
		return rc;
	*mapped = e->blk[blk % SDS_EXTENT_BLOCKS].pba != 0;
	return 0;
}

int sds_vdisk_lba_status(struct sds_vdisk *v, uint64_t offset,
			 uint64_t max_len, bool *mapped, uint64_t *len)
{
	struct sds_pool *p = v->pool;
	struct sds_vd *vd = v->vd;
	if (offset >= vd->size || !max_len)
		return -EINVAL;
	uint64_t end = offset + MIN(max_len, vd->size - offset);
	uint64_t blk = offset / SDS_BLOCK_SIZE;
	int rc = sds_vd__block_mapped(p, vd, blk, mapped);
	if (rc)
		return rc;
	/* Bounded scan: at most 64 extents' worth per call. */
	uint64_t limit = blk + (uint64_t)SDS_WORK_STEP * SDS_EXTENT_BLOCKS;
	uint64_t b = blk + 1;
	for (; b * SDS_BLOCK_SIZE < end && b < limit; b++) {
		bool m;
		if (!vd->map[b / SDS_EXTENT_BLOCKS] && !*mapped &&
		    b % SDS_EXTENT_BLOCKS == 0) {
			b += SDS_EXTENT_BLOCKS - 1; /* a whole unmapped slot */
			continue;
		}
		if ((rc = sds_vd__block_mapped(p, vd, b, &m)))
			return rc;
		if (m != *mapped)
			break;
	}
	*len = MIN(b * SDS_BLOCK_SIZE, end) - offset;
	return 0;
}

uint64_t sds_vdisk_size(const struct sds_vdisk *v)
{
	return v->vd->size;
}

uint32_t sds_vdisk_sector_size(const struct sds_vdisk *v)
{
	return v->vd->sector_size;
}

bool sds_vdisk_readonly(const struct sds_vdisk *v)
{
	return v->vd->flags & SDS_VD_SNAPSHOT;
}

const char *sds_vdisk_name(const struct sds_vdisk *v)
{
	return v->vd->name;
}

/* ---- background release of deleted vdisks ------------------------------ */

static void sds_gc__run(uv_timer_t *t)
{
	struct sds_pool *p = t->data;
	struct sds_vd *vd;
	TAILQ_FOREACH(vd, &p->vds, link)
		if ((vd->flags & SDS_VD_DELETING) && !vd->removed)
			break;
	if (!vd)
		return;
	unsigned budget = SDS_WORK_STEP;
	while (vd->gc_cursor < vd->nvb && budget) {
		uint64_t vb = vd->gc_cursor;
		if (vd->map[vb]) {
			if (sds_extent_unref(p, vd->map[vb]) != 0) {
				/* A missing extent must not wedge deletion:
				 * the space leaks, the metadata goes. */
				log_error("sds", "gc: vdisk %llu slot %llu: "
						 "extent unreadable, skipped",
					  (unsigned long long)vd->id,
					  (unsigned long long)vb);
			}
			sds_vd_map_set(p, vd, vb, 0);
			budget--;
		}
		vd->gc_cursor++;
	}
	if (vd->gc_cursor >= vd->nvb) {
		vd->removed = true;
		sds_commit_mark(p);
	}
	uv_timer_start(&p->gc_timer, sds_gc__run, 1, 0);
}

void sds_gc_kick(struct sds_pool *p)
{
	if (!p->closing && !uv_is_active((uv_handle_t *)&p->gc_timer))
		uv_timer_start(&p->gc_timer, sds_gc__run, 0, 0);
}
