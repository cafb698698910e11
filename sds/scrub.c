/* The background scrubber: walks every extent on record (in key order,
 * from RocksDB), reads each referenced block and verifies its crc32c, at a
 * bounded rate so foreground IO keeps the disks. A block found bad is
 * counted and logged with its vdisk-independent address; repair needs a
 * good copy, which replication brings.
 *
 * No lock is taken: after a read completes, the block is judged only if
 * its extent still points to the same block with the same checksum.
 * Otherwise a write replaced it meanwhile (redirect on write never changes
 * a block in place), and the block is skipped. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "sds_internal.h"
#include "util.h"

#define SCRUB_TICK_MS 100
#define SCRUB_MAX_INFLIGHT 16
#define SCRUB_BATCH_EXTENTS 8

struct sds_scrub_io {
	struct sds_uring_op op;
	struct sds_scrub *s;
	uint64_t extent;
	unsigned idx;
	uint64_t pba;
	uint32_t crc;
	void *buf;
};

struct sds_scrub {
	struct sds_pool *p;
	uv_timer_t timer;
	unsigned rate; /* blocks per second */
	uint64_t next_extent; /* scan position */
	uint64_t *queue;      /* extents to scrub, from the last scan */
	size_t nqueue, qpos;
	unsigned qidx;        /* next block index in queue[qpos] */
	unsigned inflight;
	bool stopping;
};

static void scrub__done(struct sds_uring_op *op, int res)
{
	struct sds_scrub_io *io = container_of(op, struct sds_scrub_io, op);
	struct sds_scrub *s = io->s;
	struct sds_pool *p = s->p;
	s->inflight--;
	int rc;
	struct sds_extent *e = s->stopping
		? NULL
		: sds_extent_get(p, io->extent, &rc);
	if (e && e->blk[io->idx].pba == io->pba &&
	    e->blk[io->idx].crc == io->crc) {
		p->st.scrub_blocks++;
		bool bad = res < 0 ||
			   (!p->opts.no_checksum &&
			    sds_crc(io->buf, SDS_BLOCK_SIZE) != io->crc);
		if (bad) {
			p->st.scrub_errors++;
			log_error("scrub", "extent %llu block %u (disk %u block "
					   "%llu): %s",
				  (unsigned long long)io->extent, io->idx,
				  pba_disk(io->pba),
				  (unsigned long long)pba_block(io->pba),
				  res < 0 ? "read error" : "checksum mismatch");
		}
	}
	free(io->buf);
	free(io);
	if (p->closing && !s->inflight)
		sds_pool_maybe_closed(p);
}

/* The next extent ids in key order from RocksDB: E be64 id u8 shard. */
static void scrub__scan(struct sds_scrub *s)
{
	struct sds_meta *m = &s->p->meta;
	uint8_t start[10];
	sds_key_shard(start, s->next_extent, 0);
	rocksdb_iterator_t *it = rocksdb_create_iterator(m->db, m->ropts);
	s->nqueue = s->qpos = 0;
	s->qidx = 0;
	for (rocksdb_iter_seek(it, (const char *)start, sizeof(start));
	     rocksdb_iter_valid(it) && s->nqueue < SCRUB_BATCH_EXTENTS;
	     rocksdb_iter_next(it)) {
		size_t kl;
		const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
		if (kl != 10 || k[0] != SDS_K_EXTENT)
			break;
		uint64_t id = get_be64(k + 1);
		if (!s->nqueue || s->queue[s->nqueue - 1] != id)
			s->queue[s->nqueue++] = id;
	}
	rocksdb_iter_destroy(it);
	if (s->nqueue) {
		s->next_extent = s->queue[s->nqueue - 1] + 1;
	} else {
		s->next_extent = 0; /* wrapped: a pass is complete */
		s->p->st.scrub_passes++;
	}
}

static void scrub__tick(uv_timer_t *t)
{
	struct sds_scrub *s = t->data;
	struct sds_pool *p = s->p;
	unsigned budget = MAX(1u, s->rate * SCRUB_TICK_MS / 1000);
	while (budget && s->inflight < SCRUB_MAX_INFLIGHT && !p->closing) {
		if (s->qpos >= s->nqueue) {
			scrub__scan(s);
			if (!s->nqueue)
				return; /* the next tick starts a new pass */
		}
		int rc;
		struct sds_extent *e = sds_extent_get(p, s->queue[s->qpos], &rc);
		for (; e && s->qidx < SDS_EXTENT_BLOCKS && budget &&
		       s->inflight < SCRUB_MAX_INFLIGHT;
		     s->qidx++) {
			const struct sds_blkent *b = &e->blk[s->qidx];
			if (!b->pba)
				continue;
			struct sds_scrub_io *io = calloc(1, sizeof(*io));
			if (!io || posix_memalign(&io->buf, SDS_BLOCK_SIZE,
						  SDS_BLOCK_SIZE)) {
				free(io);
				return;
			}
			io->s = s;
			io->extent = e->id;
			io->idx = s->qidx;
			io->pba = b->pba;
			io->crc = b->crc;
			io->op.cb = scrub__done;
			s->inflight++;
			budget--;
			sds_uring_read(&p->uring, &io->op,
				       p->disks[pba_disk(b->pba)].fd, io->buf,
				       SDS_BLOCK_SIZE,
				       pba_block(b->pba) * SDS_BLOCK_SIZE);
		}
		if (!e || s->qidx >= SDS_EXTENT_BLOCKS) {
			s->qpos++;
			s->qidx = 0;
		}
	}
}

void sds_pool_scrub(struct sds_pool *p, unsigned blocks_per_sec)
{
	struct sds_scrub *s = p->scrub;
	if (!s && blocks_per_sec) {
		s = calloc(1, sizeof(*s));
		if (!s || !(s->queue = calloc(SCRUB_BATCH_EXTENTS,
					      sizeof(uint64_t)))) {
			free(s);
			return;
		}
		s->p = p;
		uv_timer_init(p->loop, &s->timer);
		s->timer.data = s;
		p->scrub = s;
	}
	if (!s)
		return;
	s->rate = blocks_per_sec;
	if (blocks_per_sec)
		uv_timer_start(&s->timer, scrub__tick, 0, SCRUB_TICK_MS);
	else
		uv_timer_stop(&s->timer);
}

static void scrub__closed(uv_handle_t *h)
{
	struct sds_scrub *s = h->data;
	struct sds_pool *p = s->p;
	free(s->queue);
	free(s);
	p->scrub = NULL;
	sds_pool_maybe_closed(p);
}

/* Pool close: returns true once the scrubber is gone; until then its
 * in-flight reads finish and its timer closes, each calling
 * sds_pool_maybe_closed again. */
bool sds_scrub_close(struct sds_pool *p)
{
	struct sds_scrub *s = p->scrub;
	if (!s)
		return true;
	uv_timer_stop(&s->timer);
	if (!s->inflight && !s->stopping) {
		s->stopping = true;
		uv_close((uv_handle_t *)&s->timer, scrub__closed);
	}
	return false;
}
