/* Pool lifecycle: format, open (load every in-memory index), close. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"
#include "log.h"
#include "sds_internal.h"
#include "util.h"

uint32_t sds_crc(const void *buf, size_t len)
{
	return crc32c(buf, len);
}

void sds_pool_set_err(struct sds_pool *p, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p->errmsg, sizeof(p->errmsg), fmt, ap);
	va_end(ap);
}

const char *sds_pool_errmsg(const struct sds_pool *p)
{
	return p->errmsg;
}

void sds_pool_uuid(const struct sds_pool *p, uint8_t out[16])
{
	memcpy(out, p->uuid, 16);
}

static void sds_pool__meta_path(const char *dir, char *out, size_t len)
{
	snprintf(out, len, "%s/meta", dir);
}

/* Creates a missing disk file with its space reserved, so that data
 * writes never wait for the filesystem to allocate. */
static int sds_pool__create_file(const char *path, uint64_t size, char *err,
				 size_t errlen)
{
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		if (errno == EEXIST)
			return 0;
		snprintf(err, errlen, "create %s: %s", path, strerror(errno));
		return -errno;
	}
	int rc = posix_fallocate(fd, 0, (off_t)size);
	if (rc == EOPNOTSUPP || rc == EINVAL)
		rc = ftruncate(fd, (off_t)size) ? errno : 0;
	close(fd);
	if (rc) {
		snprintf(err, errlen, "size %s: %s", path, strerror(rc));
		unlink(path);
		return -rc;
	}
	return 0;
}

int sds_pool_format(const char *dir, const char *const *disks,
		    const uint64_t *sizes, unsigned ndisks, char *err,
		    size_t errlen)
{
	if (ndisks == 0 || ndisks > SDS_MAX_DISKS) {
		snprintf(err, errlen, "a pool needs 1 to %d disks",
			 SDS_MAX_DISKS);
		return -EINVAL;
	}
	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		snprintf(err, errlen, "mkdir %s: %s", dir, strerror(errno));
		return -errno;
	}
	uint8_t uuid[16];
	if (getrandom(uuid, sizeof(uuid), 0) != sizeof(uuid)) {
		snprintf(err, errlen, "getrandom: %s", strerror(errno));
		return -EIO;
	}
	struct sds_disk *d = calloc(ndisks, sizeof(*d));
	if (!d)
		return -ENOMEM;
	int rc = 0;
	unsigned opened = 0;
	for (; opened < ndisks; opened++) {
		if (sizes && sizes[opened] &&
		    (rc = sds_pool__create_file(disks[opened], sizes[opened],
						err, errlen)))
			goto out;
		if ((rc = sds_disk_open(&d[opened], disks[opened], err,
					errlen)))
			goto out;
		struct sds_label l = {.index = opened,
				      .version = SDS_FORMAT_VERSION,
				      .nblocks = d[opened].nblocks};
		memcpy(l.magic, SDS_MAGIC, 8);
		memcpy(l.uuid, uuid, 16);
		if ((rc = sds_disk_label_rw(&d[opened], &l, true))) {
			snprintf(err, errlen, "write label on %s: %s",
				 disks[opened], strerror(-rc));
			opened++;
			goto out;
		}
	}
	char path[4096];
	sds_pool__meta_path(dir, path, sizeof(path));
	struct sds_meta m;
	if ((rc = sds_meta_open(&m, path, true, false, err, errlen)))
		goto out;
	rocksdb_writebatch_t *b = rocksdb_writebatch_create();
	/* The superblock: what commit.c writes, with empty counters. */
	uint8_t sv[48];
	memcpy(sv, SDS_MAGIC, 8);
	put_be32(sv + 8, SDS_FORMAT_VERSION);
	memcpy(sv + 12, uuid, 16);
	put_be32(sv + 28, ndisks);
	put_be64(sv + 32, 1);
	put_be64(sv + 40, 1);
	rocksdb_writebatch_put(b, "S", 1, (const char *)sv, sizeof(sv));
	for (unsigned i = 0; i < ndisks; i++) {
		uint8_t k[5] = {SDS_K_DISK};
		put_be32(k + 1, i);
		/* Recorded absolute: cairnd may run from another directory. */
		char *abs = realpath(disks[i], NULL);
		size_t pl = abs ? strlen(abs) : 0;
		uint8_t *v = abs ? malloc(8 + pl) : NULL;
		if (!v) {
			snprintf(err, errlen, "%s: %s", disks[i],
				 abs ? "out of memory" : strerror(errno));
			free(abs);
			rc = -EINVAL;
			break;
		}
		put_be64(v, d[i].nblocks);
		memcpy(v + 8, abs, pl);
		free(abs);
		rocksdb_writebatch_put(b, (const char *)k, 5, (const char *)v,
				       8 + pl);
		free(v);
	}
	if (!rc)
		rc = sds_meta_write(&m, b, true, err, errlen);
	rocksdb_writebatch_destroy(b);
	sds_meta_close(&m);
out:
	for (unsigned i = 0; i < opened; i++)
		sds_disk_close(&d[i]);
	free(d);
	return rc;
}

static int sds_pool__load_count(void *arg, const uint8_t *k, size_t kl,
				const uint8_t *v, size_t vl)
{
	struct hmap *m = arg;
	if (kl != 9 || vl != 4)
		return -EINVAL;
	return hmap_put(m, get_be64(k + 1), get_be32(v));
}

/* After a crash in log mode, what RocksDB recovered from its WAL may never
 * have been synced, and the data it points to may sit in the device's
 * cache: make both durable before anything is freed or overwritten on the
 * strength of it (frees become allocatable only when durable). */
static int sds_pool__sync_recovered(struct sds_pool *p, char *err,
				    size_t errlen)
{
	for (unsigned i = 0; i < p->ndisks; i++)
		if (fdatasync(p->disks[i].fd) != 0) {
			snprintf(err, errlen, "fdatasync %s: %s",
				 p->disks[i].path, strerror(errno));
			return -EIO;
		}
	return sds_meta_sync_wal(&p->meta, err, errlen);
}

static int sds_pool__load(struct sds_pool *p, char *err, size_t errlen)
{
	size_t vl;
	uint8_t *sv = sds_meta_get(&p->meta, (const uint8_t *)"S", 1, &vl);
	if (!sv || vl != 48 || memcmp(sv, SDS_MAGIC, 8) ||
	    get_be32(sv + 8) != SDS_FORMAT_VERSION) {
		snprintf(err, errlen, "%s: not a Cairn pool (bad superblock)",
			 p->dir);
		free(sv);
		return -EINVAL;
	}
	memcpy(p->uuid, sv + 12, 16);
	p->ndisks = get_be32(sv + 28);
	p->next_vdisk_id = get_be64(sv + 32);
	p->next_extent_id = get_be64(sv + 40);
	free(sv);
	if (p->ndisks == 0 || p->ndisks > SDS_MAX_DISKS) {
		snprintf(err, errlen, "bad disk count %u", p->ndisks);
		return -EINVAL;
	}
	for (unsigned i = 0; i < p->ndisks; i++) {
		uint8_t k[5] = {SDS_K_DISK};
		put_be32(k + 1, i);
		uint8_t *dv = sds_meta_get(&p->meta, k, 5, &vl);
		if (!dv || vl <= 8 || vl > 8 + 4095) {
			snprintf(err, errlen, "disk %u: missing record", i);
			free(dv);
			return -EINVAL;
		}
		char path[4096];
		memcpy(path, dv + 8, vl - 8);
		path[vl - 8] = 0;
		uint64_t nblocks = get_be64(dv);
		free(dv);
		int rc = sds_disk_open(&p->disks[i], path, err, errlen);
		if (rc)
			return rc;
		struct sds_label l;
		rc = sds_disk_label_rw(&p->disks[i], &l, false);
		if (rc || memcmp(l.uuid, p->uuid, 16) || l.index != i) {
			snprintf(err, errlen, "%s: not disk %u of this pool",
				 path, i);
			return -EINVAL;
		}
		if (p->disks[i].nblocks < nblocks) {
			snprintf(err, errlen, "%s: shrank", path);
			return -EINVAL;
		}
		p->disks[i].nblocks = nblocks;
	}
	int rc = sds_alloc_load(p);
	const uint8_t lkey = SDS_K_LOGGED;
	size_t ll;
	void *lv = rc ? NULL : sds_meta_get(&p->meta, &lkey, 1, &ll);
	free(lv);
	if (!rc && ll == SIZE_MAX)
		rc = -EIO;
	if (!rc && lv) {
		/* Log mode and no clean close: see sds_alloc_rebuild. */
		log_warn("sds", "pool %s: not closed cleanly after logged "
				"writes: rebuilding the allocation bitmaps",
			 p->dir);
		p->log_marked = true;
		rc = sds_alloc_rebuild(p);
	}
	if (!rc)
		rc = sds_pool__sync_recovered(p, err, errlen);
	uint8_t pre = SDS_K_EXTRC;
	if (!rc)
		rc = sds_meta_scan(&p->meta, &pre, 1, sds_pool__load_count,
				   &p->ext_rc);
	pre = SDS_K_PBARC;
	if (!rc)
		rc = sds_meta_scan(&p->meta, &pre, 1, sds_pool__load_count,
				   &p->pba_rc);
	if (!rc)
		rc = sds_vd_load_all(p);
	if (rc)
		snprintf(err, errlen, "loading metadata: %s", strerror(-rc));
	return rc;
}

static void sds_pool__free(struct sds_pool *p)
{
	sds_vd_free_all(p);
	sds_extent_cache_free(p);
	hmap_free(&p->ext_rc);
	hmap_free(&p->ext_rc_dirty);
	hmap_free(&p->ext_dead);
	hmap_free(&p->pba_rc);
	hmap_free(&p->pba_rc_dirty);
	for (unsigned i = 0; i < SDS_MAX_DISKS; i++)
		if (p->disks[i].fd >= 0)
			sds_disk_close(&p->disks[i]);
	sds_meta_close(&p->meta);
	free(p->free_cur);
	free(p->free_committing);
	free(p->dir);
	free(p);
}

static void sds_pool__runq(uv_idle_t *h);

int sds_pool_open(uv_loop_t *loop, const char *dir,
		  const struct sds_pool_opts *opts, struct sds_pool **out,
		  char *err, size_t errlen)
{
	struct sds_pool *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->loop = loop;
	p->dir = strdup(dir);
	if (opts)
		p->opts = *opts;
	if (!p->opts.commit_interval_ms)
		p->opts.commit_interval_ms = SDS_DEFAULT_COMMIT_MS;
	if (!p->opts.cache_extents)
		p->opts.cache_extents = SDS_DEFAULT_CACHE_EXTENTS;
	for (unsigned i = 0; i < SDS_MAX_DISKS; i++)
		p->disks[i].fd = -1;
	TAILQ_INIT(&p->vds);
	TAILQ_INIT(&p->lru);
	TAILQ_INIT(&p->ext_dirty);
	TAILQ_INIT(&p->runq);
	TAILQ_INIT(&p->locked);
	TAILQ_INIT(&p->lock_waiters);
	hmap_init(&p->ext_cache);
	hmap_init(&p->ext_rc);
	hmap_init(&p->ext_rc_dirty);
	hmap_init(&p->ext_dead);
	hmap_init(&p->pba_rc);
	hmap_init(&p->pba_rc_dirty);
	uv_timer_init(loop, &p->gc_timer);
	p->gc_timer.data = p;
	char path[4096];
	sds_pool__meta_path(dir, path, sizeof(path));
	int rc = p->dir ? sds_meta_open(&p->meta, path, false, p->opts.log, err,
						 errlen)
			: -ENOMEM;
	if (!rc)
		rc = sds_pool__load(p, err, errlen);
	if (!rc && (rc = sds_uring_init(&p->uring, loop, 256)))
		snprintf(err, errlen, "io_uring: %s", strerror(-rc));
	if (rc) {
		/* Only the gc timer is registered with the loop so far. */
		uv_timer_stop(&p->gc_timer);
		uv_close((uv_handle_t *)&p->gc_timer, NULL);
		uv_run(loop, UV_RUN_NOWAIT);
		sds_pool__free(p);
		return rc;
	}
	sds_commit_init(p);
	uv_idle_init(loop, &p->runq_idle);
	p->runq_idle.data = p;
	*out = p;
	log_info("sds", "pool %s open: %u disk(s)", dir, p->ndisks);
	return 0;
}

/* ---- continuations ------------------------------------------------------ */

static void sds_pool__runq(uv_idle_t *h)
{
	struct sds_pool *p = h->data;
	struct sds_reqq q = TAILQ_HEAD_INITIALIZER(q);
	TAILQ_CONCAT(&q, &p->runq, link);
	struct sds_req *r;
	while ((r = TAILQ_FIRST(&q)) != NULL) {
		TAILQ_REMOVE(&q, r, link);
		sds_io_start(r);
	}
	if (TAILQ_EMPTY(&p->runq))
		uv_idle_stop(&p->runq_idle);
	sds_extent_cache_trim(p);
}

void sds_req_continue(struct sds_req *r)
{
	struct sds_pool *p = r->pool;
	TAILQ_INSERT_TAIL(&p->runq, r, link);
	uv_idle_start(&p->runq_idle, sds_pool__runq);
}

/* ---- close ----------------------------------------------------------------- */

static void sds_pool__handle_closed(uv_handle_t *h)
{
	struct sds_pool *p = h->data;
	if (--p->closing_handles == 0) {
		void (*cb)(void *) = p->close_cb;
		void *arg = p->close_arg;
		sds_pool__free(p);
		if (cb)
			cb(arg);
	}
}

void sds_pool_maybe_closed(struct sds_pool *p)
{
	if (!p->closing || p->inflight || p->committing ||
	    !TAILQ_EMPTY(&p->runq) || !sds_scrub_close(p))
		return;
	if ((p->dirty || p->logged || p->log_marked) && !p->failed) {
		p->dirty = true; /* log_marked alone: a commit deletes L */
		sds_commit_request(p);
		return;
	}
	if (uv_is_closing((uv_handle_t *)&p->commit_timer))
		return;
	p->closing_handles = 7;
	uv_timer_stop(&p->commit_timer);
	uv_timer_stop(&p->gc_timer);
	uv_idle_stop(&p->runq_idle);
	p->commit_timer.data = p;
	p->gc_timer.data = p;
	p->runq_idle.data = p;
	uv_close((uv_handle_t *)&p->commit_timer, sds_pool__handle_closed);
	uv_close((uv_handle_t *)&p->gc_timer, sds_pool__handle_closed);
	uv_close((uv_handle_t *)&p->runq_idle, sds_pool__handle_closed);
	uv_check_stop(&p->log_check);
	p->log_check.data = p;
	uv_close((uv_handle_t *)&p->log_check, sds_pool__handle_closed);
	sds_uring_close(&p->uring, sds_pool__handle_closed, p);
}

void sds_pool_close(struct sds_pool *p, void (*cb)(void *arg), void *arg)
{
	if (p->handles_open)
		log_error("sds", "pool closed with %u vdisk handle(s) open",
			  p->handles_open);
	p->closing = true;
	p->close_cb = cb;
	p->close_arg = arg;
	uv_timer_stop(&p->gc_timer);
	sds_pool_maybe_closed(p);
}

/* ---- flush and stats ---------------------------------------------------- */

struct sds_pool__flush {
	struct sds_io io;
	void (*cb)(void *arg, int status);
	void *arg;
};

static void sds_pool__flushed(struct sds_io *io, int status)
{
	struct sds_pool__flush *f = container_of(io, struct sds_pool__flush, io);
	f->cb(f->arg, status);
	free(f);
}

void sds_pool_flush(struct sds_pool *p, void (*cb)(void *arg, int status),
		    void *arg)
{
	struct sds_pool__flush *f = calloc(1, sizeof(*f));
	if (!f) {
		cb(arg, -ENOMEM);
		return;
	}
	f->cb = cb;
	f->arg = arg;
	f->io.op = SDS_OP_FLUSH;
	f->io.cb = sds_pool__flushed;
	struct sds_vdisk h = {.pool = p, .vd = NULL};
	sds_vdisk_submit(&h, &f->io);
}

void sds_pool_stats(const struct sds_pool *p, struct sds_pool_stats *o)
{
	*o = p->st;
	o->ndisks = p->ndisks;
	o->total_bytes = o->used_bytes = 0;
	for (unsigned i = 0; i < p->ndisks; i++) {
		o->total_bytes += (p->disks[i].nblocks - 1) * SDS_BLOCK_SIZE;
		o->used_bytes += (p->disks[i].nused - 1) * SDS_BLOCK_SIZE;
	}
	o->free_bytes = o->total_bytes - o->used_bytes;
}
