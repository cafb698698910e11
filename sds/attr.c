/* Per-vdisk attributes: small values that front ends keep with a vdisk
 * (include/cairn/sds.h). Key: 'X', the vdisk id (be64), the name. Each
 * change is its own synced RocksDB write, outside the group commit: an
 * attribute says nothing about data blocks, so it needs no ordering with
 * them, and its caller (PERSISTENT RESERVE OUT with APTPL) must not
 * answer before it is durable. They are rare, so the loop may block for
 * that sync.
 *
 * Dropped when the vdisk is deleted (at the request, not when its blocks
 * are released: a crash in between leaves a vdisk that is still there
 * without its attributes; a vdisk being deleted needs none). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sds_internal.h"

/* The key of attribute `name` of vdisk `id`; 0 when the name is bad. */
static size_t sds_attr_key(uint8_t *k, uint64_t id, const char *name)
{
	size_t nl = name ? strlen(name) : 0;
	if (!nl || nl > SDS_ATTR_NAME_MAX)
		return 0;
	size_t n = sds_key_u64(k, SDS_K_ATTR, id);
	memcpy(k + n, name, nl);
	return n + nl;
}

int sds_vdisk_attr_set(struct sds_vdisk *v, const char *name,
		       const void *val, size_t len)
{
	uint8_t k[9 + SDS_ATTR_NAME_MAX];
	size_t kl = sds_attr_key(k, v->vd->id, name);
	if (!kl || len > SDS_ATTR_VALUE_MAX || (len && !val))
		return -EINVAL;
	rocksdb_writebatch_t *b = rocksdb_writebatch_create();
	if (len)
		rocksdb_writebatch_put(b, (const char *)k, kl, val, len);
	else
		rocksdb_writebatch_delete(b, (const char *)k, kl);
	char err[256];
	int rc = sds_meta_write(&v->pool->meta, b, true, err, sizeof(err));
	rocksdb_writebatch_destroy(b);
	if (rc)
		sds_pool_set_err(v->pool, "vdisk '%s' attribute %s: %s",
				 v->vd->name, name, err);
	return rc;
}

int sds_vdisk_attr_get(struct sds_vdisk *v, const char *name, void **val,
		       size_t *len)
{
	uint8_t k[9 + SDS_ATTR_NAME_MAX];
	size_t kl = sds_attr_key(k, v->vd->id, name);
	*val = NULL;
	*len = 0;
	if (!kl)
		return -EINVAL;
	size_t vl;
	void *p = sds_meta_get(&v->pool->meta, k, kl, &vl);
	if (!p)
		return vl == SIZE_MAX ? -EIO : -ENOENT;
	*val = p;
	*len = vl;
	return 0;
}

void sds_attr_drop_all(struct sds_pool *p, uint64_t vdisk_id)
{
	uint8_t from[9], to[9];
	sds_key_u64(from, SDS_K_ATTR, vdisk_id);
	sds_key_u64(to, SDS_K_ATTR, vdisk_id + 1);
	rocksdb_writebatch_t *b = rocksdb_writebatch_create();
	rocksdb_writebatch_delete_range(b, (const char *)from, sizeof(from),
					(const char *)to, sizeof(to));
	char err[256];
	if (sds_meta_write(&p->meta, b, true, err, sizeof(err)))
		sds_pool_set_err(p, "dropping attributes of vdisk %llu: %s",
				 (unsigned long long)vdisk_id, err);
	rocksdb_writebatch_destroy(b);
}
