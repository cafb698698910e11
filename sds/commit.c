/* Group commit. Writes put their data on disk first and change only the
 * in-memory metadata; a commit then carries one generation of changes to
 * RocksDB in a single batch:
 *   1. on the loop thread, serialize every dirty object into a batch and
 *      start the next generation (writes go on meanwhile);
 *   2. on a worker thread, fdatasync every data disk, then write the batch
 *      with sync=true;
 *   3. back on the loop, blocks released by that generation become
 *      allocatable and FLUSH/FUA waiters complete.
 * So metadata never reaches disk before the data it points to, and a block
 * the durable metadata points to is never overwritten (SDS-NOTES 1-3).
 *
 * The log (SDS_IO_LOGGED): a request that must survive a crash of this
 * process, but not of the machine, waits only until its metadata is in
 * RocksDB's WAL through write(2) (sync=false): once per loop turn, on the
 * loop thread, everything dirty goes into one unsynced batch and every
 * waiter completes. Its data is already on the device (O_DIRECT
 * completion). The batch frees nothing: blocks it releases stay busy until
 * the next group commit, whose synced write makes the whole WAL, this
 * batch included, durable (sds_commit__start runs while anything logged is
 * unsynced). RocksDB applies writes in WAL order, so no logged batch may be
 * written while a group commit's batch is on the worker (it would land
 * first and be overwritten by the older state). So a pool opened in log
 * mode (opts.log) writes a group commit's batch on the loop thread too,
 * unsynced, in order with the log's, and the worker only fdatasyncs the
 * data disks and then syncs the WAL; the log never waits for a commit.
 * Metadata can then reach the WAL (and the kernel can write the WAL back)
 * before any fdatasync, so in log mode every data write is RWF_DSYNC (io.c):
 * its data is stable when its completion makes the metadata dirty, and no
 * metadata ever lands before its data (SDS-NOTES 1). A pool not in log mode
 * keeps the strict order above, and treats SDS_IO_LOGGED as SDS_IO_FUA. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "sds_internal.h"
#include "util.h"

void sds_commit_mark(struct sds_pool *p)
{
	p->dirty = true;
}

static void sds_commit__put_super(struct sds_pool *p, rocksdb_writebatch_t *b)
{
	uint8_t v[8 + 4 + 16 + 4 + 8 + 8];
	memcpy(v, SDS_MAGIC, 8);
	put_be32(v + 8, SDS_FORMAT_VERSION);
	memcpy(v + 12, p->uuid, 16);
	put_be32(v + 28, p->ndisks);
	put_be64(v + 32, p->next_vdisk_id);
	put_be64(v + 40, p->next_extent_id);
	rocksdb_writebatch_put(b, "S", 1, (const char *)v, sizeof(v));
}

static void sds_commit__put_vd(struct sds_vd *vd, rocksdb_writebatch_t *b)
{
	uint8_t k[13];
	size_t kl;
	uint64_t nchunks = DIV_ROUND_UP(vd->nvb, SDS_MAP_CHUNK);
	if (vd->removed) {
		kl = sds_key_u64(k, SDS_K_VDISK, vd->id);
		rocksdb_writebatch_delete(b, (const char *)k, kl);
		uint8_t end[13];
		sds_key_u64_u32(k, SDS_K_MAP, vd->id, 0);
		sds_key_u64_u32(end, SDS_K_MAP, vd->id, UINT32_MAX);
		rocksdb_writebatch_delete_range(b, (const char *)k, 13,
						(const char *)end, 13);
		return;
	}
	if (vd->rec_dirty) {
		uint8_t v[128];
		sds_vd_encode(vd, v);
		kl = sds_key_u64(k, SDS_K_VDISK, vd->id);
		rocksdb_writebatch_put(b, (const char *)k, kl, (const char *)v,
				       sds_vd_rec_len());
		vd->rec_dirty = false;
	}
	uint8_t v[SDS_MAP_CHUNK * 8];
	/* A 1 TiB vdisk has 2048 chunks: scan them only when one changed. */
	for (uint64_t c = 0; vd->maps_dirty && c < nchunks; c++) {
		if (!vd->map_dirty[c])
			continue;
		vd->map_dirty[c] = 0;
		uint64_t first = c * SDS_MAP_CHUNK;
		uint64_t n = MIN((uint64_t)SDS_MAP_CHUNK, vd->nvb - first);
		bool empty = true;
		for (uint64_t i = 0; i < n; i++) {
			put_be64(v + i * 8, vd->map[first + i]);
			empty &= vd->map[first + i] == 0;
		}
		kl = sds_key_u64_u32(k, SDS_K_MAP, vd->id, (uint32_t)c);
		if (empty)
			rocksdb_writebatch_delete(b, (const char *)k, kl);
		else
			rocksdb_writebatch_put(b, (const char *)k, kl,
					       (const char *)v, n * 8);
		if (c + 1 > vd->map_chunks_on_disk)
			vd->map_chunks_on_disk = c + 1;
	}
	vd->maps_dirty = false;
	for (uint64_t c = nchunks; c < vd->map_chunks_on_disk; c++) {
		kl = sds_key_u64_u32(k, SDS_K_MAP, vd->id, (uint32_t)c);
		rocksdb_writebatch_delete(b, (const char *)k, kl);
	}
	if (vd->map_chunks_on_disk > nchunks)
		vd->map_chunks_on_disk = nchunks;
}

/* Writes "tag key -> be32 count" for each dirty key, deleting keys whose
 * count fell back to 1. */
static void sds_commit__put_counts(rocksdb_writebatch_t *b, char tag,
				   struct hmap *counts, struct hmap *dirty)
{
	uint64_t key, unused;
	for (size_t pos = 0; hmap_next(dirty, &pos, &key, &unused);) {
		uint8_t k[9], v[4];
		size_t kl = sds_key_u64(k, tag, key);
		uint64_t n;
		if (hmap_get(counts, key, &n)) {
			put_be32(v, (uint32_t)n);
			rocksdb_writebatch_put(b, (const char *)k, kl,
					       (const char *)v, 4);
		} else {
			rocksdb_writebatch_delete(b, (const char *)k, kl);
		}
	}
	hmap_free(dirty);
}

static void sds_commit__put_extent(struct sds_pool *p, struct sds_extent *e,
				   rocksdb_writebatch_t *b)
{
	uint8_t k[10], ev[SDS_SHARD_VALUE_LEN];
	for (unsigned s = 0; s < SDS_EXTENT_SHARDS; s++) {
		if (!(e->dirty & (1u << s)))
			continue;
		sds_extent_encode_shard(e, s, ev);
		size_t kl = sds_key_shard(k, e->id, s);
		rocksdb_writebatch_put(b, (const char *)k, kl,
				       (const char *)ev, sizeof(ev));
	}
	TAILQ_REMOVE(&p->ext_dirty, e, dirty_link);
	e->dirty = 0;
	e->saved_gen = p->cur_gen;
}

/* The dirty extents' shards, from the list of what is dirty: never a scan
 * of the cache, which this ran once per loop turn in log mode. */
static void sds_commit__put_extents(struct sds_pool *p, rocksdb_writebatch_t *b)
{
	struct sds_extent *e;
	while ((e = TAILQ_FIRST(&p->ext_dirty)) != NULL)
		sds_commit__put_extent(p, e, b);
}

/* Serializes everything dirty. A log batch (log = true) leaves the
 * allocation bitmaps dirty for the group commit: they are 4 KiB records,
 * and writing one per loop turn made RocksDB ingest ~20 MB/s and flush
 * its memtable every second under a guest's random writes. Instead the
 * first log batch records the L key, and a pool opened with L on record
 * rebuilds its bitmaps from the block tables (sds_alloc_rebuild); the
 * last commit of a clean close deletes L. */
static rocksdb_writebatch_t *sds_commit__build(struct sds_pool *p, bool log)
{
	rocksdb_writebatch_t *b = rocksdb_writebatch_create();
	uint8_t k[13];
	size_t kl;
	if (p->super_dirty) {
		sds_commit__put_super(p, b);
		p->super_dirty = false;
	}
	struct sds_vd *vd, *tmp;
	TAILQ_FOREACH_SAFE(vd, &p->vds, link, tmp) {
		sds_commit__put_vd(vd, b);
		if (vd->removed) {
			TAILQ_REMOVE(&p->vds, vd, link);
			free(vd->map);
			free(vd->map_dirty);
			free(vd);
		}
	}
	sds_commit__put_extents(p, b);
	uint64_t id, val;
	for (size_t pos = 0; hmap_next(&p->ext_dead, &pos, &id, &val);) {
		uint8_t end[10];
		sds_key_shard(k, id, 0);
		sds_key_shard(end, id, 0xff);
		rocksdb_writebatch_delete_range(b, (const char *)k, 10,
						(const char *)end, 10);
	}
	hmap_free(&p->ext_dead);
	sds_commit__put_counts(b, SDS_K_EXTRC, &p->ext_rc, &p->ext_rc_dirty);
	sds_commit__put_counts(b, SDS_K_PBARC, &p->pba_rc, &p->pba_rc_dirty);
	const char lkey = SDS_K_LOGGED;
	if (log) {
		if (!p->log_marked)
			rocksdb_writebatch_put(b, &lkey, 1, "", 0);
		p->log_marked = true;
		return b;
	}
	if (p->log_marked && p->closing && !p->inflight) {
		/* The bitmaps below are the last word: nothing follows. */
		rocksdb_writebatch_delete(b, &lkey, 1);
		p->log_marked = false;
	}
	for (unsigned i = 0; i < p->ndisks; i++) {
		struct sds_disk *d = &p->disks[i];
		for (uint64_t c = 0; c < d->nchunks; c++) {
			if (!d->dirty[c])
				continue;
			d->dirty[c] = 0;
			kl = sds_key_alloc(k, i, (uint32_t)c);
			rocksdb_writebatch_put(
				b, (const char *)k, kl,
				(const char *)d->used +
					c * (SDS_ALLOC_CHUNK / 8),
				SDS_ALLOC_CHUNK / 8);
		}
	}
	return b;
}

static void sds_commit__work(uv_work_t *w)
{
	struct sds_pool *p = w->data;
	p->commit_status = 0;
	for (unsigned i = 0; i < p->ndisks; i++) {
		if (fdatasync(p->disks[i].fd) != 0) {
			p->commit_status = -errno;
			snprintf(p->commit_err, sizeof(p->commit_err),
				 "fdatasync %s: %s", p->disks[i].path,
				 strerror(errno));
			return;
		}
	}
	if (p->opts.fault) {
		int f = p->opts.fault(p->opts.fault_arg, "commit");
		if (f) {
			p->commit_status = -f;
			snprintf(p->commit_err, sizeof(p->commit_err),
				 "injected fault: %s", strerror(f));
			return;
		}
	}
	p->commit_status =
	    p->commit_batch
		? sds_meta_write(&p->meta, p->commit_batch, true,
				 p->commit_err, sizeof(p->commit_err))
		: sds_meta_sync_wal(&p->meta, p->commit_err,
				    sizeof(p->commit_err));
}

static void sds_commit__wake(struct sds_pool *p, bool all, int status)
{
	struct sds_req *r, *tmp;
	TAILQ_FOREACH_SAFE(r, &p->commit_waiters, link, tmp) {
		if (all || r->target_gen <= p->durable_gen) {
			TAILQ_REMOVE(&p->commit_waiters, r, link);
			if (status)
				r->status = status;
			sds_req_continue(r);
		}
	}
}

static void sds_commit__start(struct sds_pool *p);
static void sds_commit__log(struct sds_pool *p);

static void sds_commit__done(uv_work_t *w, int status)
{
	struct sds_pool *p = w->data;
	if (p->commit_batch)
		rocksdb_writebatch_destroy(p->commit_batch);
	p->commit_batch = NULL;
	p->committing = false;
	int st = status ? status : p->commit_status;
	if (st) {
		/* The metadata on disk is still the previous generation and
		 * consistent, but the changes of this one are no longer
		 * tracked as dirty: fail everything from now on; a restart
		 * recovers the last durable state. */
		log_error("sds", "commit failed: %s; pool is now failed",
			  p->commit_err);
		p->failed = true;
		sds_commit__wake(p, true, -EIO);
		sds_commit__log(p); /* fails the log waiters */
		p->st.io_errors++;
		struct sds_req *sw;
		while ((sw = TAILQ_FIRST(&p->space_waiters)) != NULL) {
			TAILQ_REMOVE(&p->space_waiters, sw, link);
			sds_req_continue(sw); /* fails in PH_ALLOC */
		}
		if (p->closing)
			sds_pool_maybe_closed(p);
		return;
	}
	p->durable_gen = p->cur_gen - 1;
	p->st.commits++;
	sds_alloc_durable(p, p->free_committing, p->nfree_committing);
	free(p->free_committing);
	p->free_committing = NULL;
	p->nfree_committing = 0;
	sds_commit__wake(p, false, 0);
	/* Requests that ran out of space retry now that frees are durable. */
	struct sds_req *r;
	while ((r = TAILQ_FIRST(&p->space_waiters)) != NULL) {
		TAILQ_REMOVE(&p->space_waiters, r, link);
		sds_req_continue(r);
	}
	sds_extent_cache_trim(p);
	sds_commit__log(p); /* held while the batch was on the worker */
	if (p->commit_again || !TAILQ_EMPTY(&p->commit_waiters)) {
		p->commit_again = false;
		sds_commit__start(p);
	} else if (p->closing) {
		sds_pool_maybe_closed(p);
	}
}

static void sds_commit__start(struct sds_pool *p)
{
	if (p->failed) {
		/* Never write a batch after a lost one: it would land on top
		 * of metadata that lacks the lost changes. */
		sds_commit__wake(p, true, -EIO);
		return;
	}
	if (p->committing) {
		p->commit_again = true;
		return;
	}
	if (!p->dirty && !p->logged) {
		sds_commit__wake(p, true, 0);
		return;
	}
	rocksdb_writebatch_t *b = sds_commit__build(p, false);
	p->dirty = false;
	p->logged = false;
	int wst = 0;
	if (p->opts.log) {
		/* In order with the log's batches, on this thread; the worker
		 * then syncs the WAL after the data (see the top). */
		if (rocksdb_writebatch_count(b) > 0)
			wst = sds_meta_write(&p->meta, b, false, p->commit_err,
					     sizeof(p->commit_err));
		rocksdb_writebatch_destroy(b);
	} else {
		p->commit_batch = b;
	}
	p->free_committing = p->free_cur;
	p->nfree_committing = p->nfree_cur;
	p->free_cur = NULL;
	p->nfree_cur = p->cap_free_cur = 0;
	p->cur_gen++;
	p->committing = true;
	p->commit_work.data = p;
	if (wst) {
		p->commit_status = wst;
		sds_commit__done(&p->commit_work, 0);
		return;
	}
	int rc = uv_queue_work(p->loop, &p->commit_work, sds_commit__work,
			       sds_commit__done);
	if (rc) {
		p->commit_status = rc;
		snprintf(p->commit_err, sizeof(p->commit_err),
			 "uv_queue_work: %s", uv_strerror(rc));
		sds_commit__done(&p->commit_work, rc);
	}
}

void sds_commit_request(struct sds_pool *p)
{
	sds_commit__start(p);
}

/* A FLUSH or FUA write waits for the generation holding every change made
 * so far; nothing dirty and nothing committing means it is durable now. */
void sds_commit_wait(struct sds_pool *p, struct sds_req *r)
{
	bool pending = p->dirty || p->logged;
	if (!pending && !p->committing) {
		sds_req_continue(r);
		return;
	}
	r->target_gen = pending ? p->cur_gen : p->cur_gen - 1;
	TAILQ_INSERT_TAIL(&p->commit_waiters, r, link);
	if (pending)
		sds_commit__start(p);
}

/* Writes everything dirty to the WAL without sync and completes the log
 * waiters; with a commit's batch on the worker, waits for it to land. */
static void sds_commit__log(struct sds_pool *p)
{
	if (TAILQ_EMPTY(&p->log_waiters)) {
		uv_check_stop(&p->log_check);
		return;
	}
	if (p->commit_batch && !p->failed)
		return; /* sds_commit__done calls again */
	int st = p->failed ? -EIO : 0;
	if (!st && p->dirty) {
		rocksdb_writebatch_t *b = sds_commit__build(p, true);
		/* What the batch left (the bitmaps) goes with the group commit
		 * that `logged` guarantees. */
		p->dirty = false;
		st = sds_meta_write(&p->meta, b, false, p->commit_err,
				    sizeof(p->commit_err));
		rocksdb_writebatch_destroy(b);
		if (st) {
			/* As a failed commit: these changes are no longer
			 * tracked as dirty, so nothing after may be promised. */
			log_error("sds", "log write failed: %s; pool is now "
					 "failed", p->commit_err);
			p->failed = true;
			p->st.io_errors++;
			sds_commit__wake(p, true, -EIO);
		} else {
			p->logged = true;
			p->st.log_writes++;
		}
	}
	/* Complete now, not on the next turn: the front end can still send
	 * its replies before the loop blocks. Waiters added by callbacks wait
	 * for the next turn's write. */
	struct sds_reqq q = TAILQ_HEAD_INITIALIZER(q);
	TAILQ_CONCAT(&q, &p->log_waiters, link);
	uv_check_stop(&p->log_check);
	struct sds_req *r;
	while ((r = TAILQ_FIRST(&q)) != NULL) {
		TAILQ_REMOVE(&q, r, link);
		if (st)
			r->status = st;
		sds_io_start(r); /* PH_DONE: completes */
	}
}

static void sds_commit__on_check(uv_check_t *h)
{
	sds_commit__log(h->data);
}

/* Runs after the loop's poll phase, so every write that completed in that
 * phase shares one WAL write. */
void sds_commit_log_wait(struct sds_pool *p, struct sds_req *r)
{
	if (!p->opts.log) {
		sds_commit_wait(p, r); /* not a log-mode pool: as FUA */
		return;
	}
	TAILQ_INSERT_TAIL(&p->log_waiters, r, link);
	uv_check_start(&p->log_check, sds_commit__on_check);
}

static void sds_commit__tick(uv_timer_t *t)
{
	struct sds_pool *p = t->data;
	if ((p->dirty || p->logged) && !p->committing)
		sds_commit__start(p);
}

int sds_commit_init(struct sds_pool *p)
{
	TAILQ_INIT(&p->commit_waiters);
	TAILQ_INIT(&p->space_waiters);
	TAILQ_INIT(&p->log_waiters);
	uv_check_init(p->loop, &p->log_check);
	p->log_check.data = p;
	p->cur_gen = 1;
	p->durable_gen = 0;
	uv_timer_init(p->loop, &p->commit_timer);
	p->commit_timer.data = p;
	return uv_timer_start(&p->commit_timer, sds_commit__tick,
			      p->opts.commit_interval_ms,
			      p->opts.commit_interval_ms);
}
