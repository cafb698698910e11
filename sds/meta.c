/* RocksDB holds every piece of pool metadata. The write-ahead log is on;
 * commits are written with sync=true only from the group commit (commit.c),
 * after the data they point to has been made durable. The log of
 * SDS_IO_LOGGED requests writes with sync=false (commit.c explains why that
 * is safe for the allocator).
 *
 * In-place memtable updates (pools in log mode). Each log batch (one per
 * loop turn) puts the 264-byte shard of every extent a write changed; the
 * memtable skip list kept every version of those keys, ~55000 entries in a
 * 16 MiB memtable, and inserting into it was the largest user-space cost of
 * a guest's write (perf: ~17% of cairnd's CPU under bench/vhost.sh
 * randwrite). With inplace_update_support a put over a key whose newest
 * entry in the mutable memtable is a value at least as long overwrites that
 * value, so the memtable holds about one entry per live key. What RocksDB
 * requires for it, and why it holds here:
 *  - no concurrent readers or writers (its iterators and reads are not
 *    point-in-time against an in-place update): in log mode every write
 *    and read runs on the loop thread; the commit worker only syncs the
 *    WAL (commit.c). A pool not in log mode writes commit batches on the
 *    worker and keeps the option off.
 *  - allow_concurrent_memtable_write off (checked by RocksDB at open).
 *  - no snapshots and no backward iteration: none are used.
 *  - DeleteRange: a put of a key under a range tombstone already in the
 *    memtable could update the covered older value in place and stay
 *    hidden. Range deletes here cover only keys of a dead extent, a
 *    removed vdisk's map and a deleted vdisk's attributes, and extent and
 *    vdisk ids are never reused (the counters travel in the same batch as
 *    the first record of a new id), so no key is put again under one.
 * An in-place update does not grow the memtable, so it would never fill
 * and the WAL behind it would never be released: past SDS_META_WAL_FLUSH
 * bytes written, a flush is requested (without waiting). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "sds_internal.h"
#include "util.h"

#define SDS_META_WAL_FLUSH (64u << 20) /* 4x the memtable, as RocksDB's
					      * max_total_wal_size default */

int sds_meta_open(struct sds_meta *m, const char *path, bool create,
		  bool inplace, char *err, size_t errlen)
{
	memset(m, 0, sizeof(*m));
	m->opts = rocksdb_options_create();
	if (inplace) {
		rocksdb_options_set_allow_concurrent_memtable_write(m->opts, 0);
		rocksdb_options_set_inplace_update_support(m->opts, 1);
		m->fopts = rocksdb_flushoptions_create();
		rocksdb_flushoptions_set_wait(m->fopts, 0);
		m->inplace = true;
	}
	rocksdb_options_set_create_if_missing(m->opts, create);
	rocksdb_options_set_error_if_exists(m->opts, create);
	/* Small, point-lookup heavy values: a bloom filter and a modest block
	 * cache serve cache misses of the extent cache in one lookup. */
	rocksdb_block_based_table_options_t *t =
		rocksdb_block_based_options_create();
	rocksdb_block_based_options_set_filter_policy(
		t, rocksdb_filterpolicy_create_bloom(10));
	m->cache = rocksdb_cache_create_lru(32u << 20);
	rocksdb_block_based_options_set_block_cache(t, m->cache);
	rocksdb_options_set_block_based_table_factory(m->opts, t);
	rocksdb_block_based_options_destroy(t);
	rocksdb_options_set_write_buffer_size(m->opts, 16u << 20);
	rocksdb_options_set_max_background_jobs(m->opts, 2);
	rocksdb_options_set_keep_log_file_num(m->opts, 2);
	char *e = NULL;
	m->db = rocksdb_open(m->opts, path, &e);
	if (e) {
		snprintf(err, errlen, "rocksdb open %s: %s", path, e);
		free(e);
		sds_meta_close(m);
		return -EIO;
	}
	m->ropts = rocksdb_readoptions_create();
	m->wopts_sync = rocksdb_writeoptions_create();
	rocksdb_writeoptions_set_sync(m->wopts_sync, 1);
	m->wopts_nosync = rocksdb_writeoptions_create();
	rocksdb_writeoptions_set_sync(m->wopts_nosync, 0);
	return 0;
}

void sds_meta_close(struct sds_meta *m)
{
	if (m->db)
		rocksdb_close(m->db);
	if (m->ropts)
		rocksdb_readoptions_destroy(m->ropts);
	if (m->wopts_sync)
		rocksdb_writeoptions_destroy(m->wopts_sync);
	if (m->wopts_nosync)
		rocksdb_writeoptions_destroy(m->wopts_nosync);
	if (m->fopts)
		rocksdb_flushoptions_destroy(m->fopts);
	if (m->opts)
		rocksdb_options_destroy(m->opts);
	if (m->cache)
		rocksdb_cache_destroy(m->cache);
	memset(m, 0, sizeof(*m));
}

void *sds_meta_get(struct sds_meta *m, const uint8_t *key, size_t klen,
		   size_t *len)
{
	char *e = NULL;
	size_t vl = 0;
	char *v = rocksdb_get(m->db, m->ropts, (const char *)key, klen, &vl,
			      &e);
	if (e) {
		free(e);
		*len = SIZE_MAX;
		return NULL;
	}
	*len = v ? vl : 0;
	return v;
}

int sds_meta_write(struct sds_meta *m, rocksdb_writebatch_t *b, bool sync,
		   char *err, size_t errlen)
{
	char *e = NULL;
	rocksdb_write(m->db, sync ? m->wopts_sync : m->wopts_nosync, b, &e);
	if (e) {
		snprintf(err, errlen, "rocksdb write: %s", e);
		free(e);
		return -EIO;
	}
	if (m->inplace) {
		size_t n;
		rocksdb_writebatch_data(b, &n);
		m->wal_bytes += n;
		if (m->wal_bytes >= SDS_META_WAL_FLUSH) {
			/* A failed request only delays the release of old WAL
			 * files: nothing written is at stake. */
			m->wal_bytes = 0;
			rocksdb_flush(m->db, m->fopts, &e);
			if (e) {
				log_warn("sds", "rocksdb flush: %s", e);
				free(e);
			}
		}
	}
	return 0;
}

/* Makes every WAL record written so far durable (after a write(2)-only
 * batch from the log). Thread-safe against concurrent writers. */
int sds_meta_sync_wal(struct sds_meta *m, char *err, size_t errlen)
{
	char *e = NULL;
	rocksdb_flush_wal(m->db, 1, &e);
	if (e) {
		snprintf(err, errlen, "rocksdb wal sync: %s", e);
		free(e);
		return -EIO;
	}
	return 0;
}

int sds_meta_scan(struct sds_meta *m, const uint8_t *prefix, size_t plen,
		  int (*fn)(void *arg, const uint8_t *k, size_t kl,
			    const uint8_t *v, size_t vl),
		  void *arg)
{
	rocksdb_iterator_t *it = rocksdb_create_iterator(m->db, m->ropts);
	int rc = 0;
	for (rocksdb_iter_seek(it, (const char *)prefix, plen);
	     rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
		size_t kl, vl;
		const char *k = rocksdb_iter_key(it, &kl);
		if (kl < plen || memcmp(k, prefix, plen) != 0)
			break;
		const char *v = rocksdb_iter_value(it, &vl);
		rc = fn(arg, (const uint8_t *)k, kl, (const uint8_t *)v, vl);
		if (rc)
			break;
	}
	char *e = NULL;
	rocksdb_iter_get_error(it, &e);
	if (e) {
		free(e);
		rc = -EIO;
	}
	rocksdb_iter_destroy(it);
	return rc;
}

size_t sds_key_u64(uint8_t *k, char tag, uint64_t a)
{
	k[0] = (uint8_t)tag;
	put_be64(k + 1, a);
	return 9;
}

size_t sds_key_u64_u32(uint8_t *k, char tag, uint64_t a, uint32_t b)
{
	k[0] = (uint8_t)tag;
	put_be64(k + 1, a);
	put_be32(k + 9, b);
	return 13;
}

size_t sds_key_alloc(uint8_t *k, unsigned disk, uint32_t chunk)
{
	k[0] = SDS_K_ALLOC;
	put_be32(k + 1, disk);
	put_be32(k + 5, chunk);
	return 9;
}

size_t sds_key_shard(uint8_t *k, uint64_t extent, unsigned shard)
{
	k[0] = SDS_K_EXTENT;
	put_be64(k + 1, extent);
	k[9] = (uint8_t)shard;
	return 10;
}
