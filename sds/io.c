/* The vdisk IO path. Every request is a small state machine stepped from
 * the pool's run queue and from io_uring completions, on the loop thread.
 *
 * Writes are redirect-on-write: data goes to freshly allocated blocks, and
 * only when it is on disk does the block table point to it (and release the
 * old block). Each block carries a crc32c kept in the table beside its
 * pointer, so the two can never disagree after a crash (SDS-NOTES 1, 3). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h> /* RWF_DSYNC */

#include "log.h"
#include "sds_internal.h"
#include "util.h"

enum {
	PH_BEGIN,      /* take the range locks, dispatch on the opcode */
	PH_READ_DONE,  /* READ: blocks read */
	PH_RMW_DONE,   /* write piece: partial edge blocks read */
	PH_ALLOC,      /* write piece: allocate and write (retried on space) */
	PH_WRITE_DONE, /* write piece: data on disk */
	PH_CAW_READ,   /* COMPARE_AND_WRITE: current data read */
	PH_LOOP,       /* long operations: next piece */
	PH_COPY_READ,  /* COPY_RANGE (unaligned): source piece read */
	PH_DONE,       /* complete with r->status */
};

#define SDS_PIECE_BLOCKS SDS_EXTENT_BLOCKS /* data pieces of long ops */

static bool is_aligned_ptr(const void *p)
{
	return ((uintptr_t)p % SDS_BLOCK_SIZE) == 0;
}

/* (Re)sizes the per-block arrays for a piece of n blocks. */
static int io__arrays(struct sds_req *r, uint64_t n)
{
	if (n <= r->cap)
		return 0;
	free(r->pba);
	free(r->crc);
	free(r->subs);
	r->pba = calloc(n, sizeof(*r->pba));
	r->crc = calloc(n, sizeof(*r->crc));
	r->subs = calloc(n, sizeof(*r->subs));
	r->cap = (r->pba && r->crc && r->subs) ? n : 0;
	return r->cap ? 0 : -ENOMEM;
}

static uint8_t *io__bounce(struct sds_req *r, uint64_t nblk)
{
	free(r->bounce);
	void *b = NULL;
	if (posix_memalign(&b, SDS_BLOCK_SIZE, nblk * SDS_BLOCK_SIZE))
		b = NULL;
	r->bounce = b;
	return b;
}

void sds_req_complete(struct sds_req *r, int status)
{
	struct sds_pool *p = r->pool;
	if (p->in_submit) {
		/* Never call back from inside sds_vdisk_submit(). */
		r->status = status;
		r->phase = PH_DONE;
		sds_req_continue(r);
		return;
	}
	sds_lock_release(r);
	free(r->bounce);
	free(r->rbuf);
	free(r->pba);
	free(r->crc);
	free(r->subs);
	struct sds_io *io = r->io;
	free(r);
	p->inflight--;
	io->cb(io, status);
	if (p->closing)
		sds_pool_maybe_closed(p);
}

static void io__fail(struct sds_req *r, int status)
{
	r->status = status;
	r->phase = PH_DONE;
	sds_req_continue(r);
}

/* ---- reading blocks ------------------------------------------------------ */

static void io__sub_done(struct sds_uring_op *op, int res)
{
	struct sds_sub *s = container_of(op, struct sds_sub, op);
	struct sds_req *r = s->req;
	if (res < 0) {
		log_error("sds", "%s %s block %llu+%u: %s",
			  op->opcode == IORING_OP_READ ? "read" : "write",
			  r->pool->disks[pba_disk(s->pba)].path,
			  (unsigned long long)pba_block(s->pba), s->n,
			  strerror(-res));
		r->pool->st.io_errors++;
		r->status = -EIO;
	}
	if (--r->pending == 0)
		sds_io_start(r);
}

/* Looks up blocks [i0, i1) of the piece and reads them into buf; holes
 * read as zeroes without IO. Physically contiguous blocks go as one IO. */
static int io__read_blocks(struct sds_req *r, uint8_t *buf, uint64_t i0,
			   uint64_t i1)
{
	struct sds_pool *p = r->pool;
	struct sds_vd *vd = r->pvd;
	for (uint64_t i = i0; i < i1; i++) {
		uint64_t blk = r->b0 + i, vb = blk / SDS_EXTENT_BLOCKS;
		r->pba[i] = 0;
		if (vd->map[vb]) {
			int rc;
			struct sds_extent *e = sds_extent_get(p, vd->map[vb], &rc);
			if (!e)
				return rc;
			const struct sds_blkent *b =
				&e->blk[blk % SDS_EXTENT_BLOCKS];
			r->pba[i] = b->pba;
			r->crc[i] = b->crc;
		}
		if (!r->pba[i])
			memset(buf + i * SDS_BLOCK_SIZE, 0, SDS_BLOCK_SIZE);
	}
	for (uint64_t i = i0; i < i1;) {
		if (!r->pba[i]) {
			i++;
			continue;
		}
		unsigned n = 1;
		while (i + n < i1 && r->pba[i + n] == r->pba[i] + n)
			n++;
		struct sds_sub *s = &r->subs[r->nsubs++];
		s->req = r;
		s->blk = i;
		s->n = n;
		s->pba = r->pba[i];
		s->op.cb = io__sub_done;
		r->pending++;
		sds_uring_read(&p->uring, &s->op, p->disks[pba_disk(s->pba)].fd,
			       buf + i * SDS_BLOCK_SIZE, n * SDS_BLOCK_SIZE,
			       pba_block(s->pba) * SDS_BLOCK_SIZE);
		i += n;
	}
	return 0;
}

/* A checksum mismatch is an IO error, counted and logged: never data. */
static int io__verify(struct sds_req *r, const uint8_t *buf, uint64_t i0,
		      uint64_t i1)
{
	struct sds_pool *p = r->pool;
	if (p->opts.no_checksum)
		return 0;
	int rc = 0;
	for (uint64_t i = i0; i < i1; i++) {
		if (!r->pba[i])
			continue;
		uint32_t c = sds_crc(buf + i * SDS_BLOCK_SIZE, SDS_BLOCK_SIZE);
		if (c != r->crc[i]) {
			p->st.crc_errors++;
			log_error("sds", "checksum mismatch: vdisk %s block "
					 "%llu (disk %u block %llu): "
					 "%08x != %08x",
				  r->pvd->name,
				  (unsigned long long)(r->b0 + i),
				  pba_disk(r->pba[i]),
				  (unsigned long long)pba_block(r->pba[i]), c,
				  r->crc[i]);
			rc = -EIO;
		}
	}
	return rc;
}

/* Starts reading the blocks covering bytes [off, off+len) of vd into
 * r->data (the caller's buffer when aligned, else a bounce buffer). */
static int io__read_piece(struct sds_req *r, struct sds_vd *vd, uint64_t off,
			  uint64_t len, uint8_t *direct)
{
	r->pvd = vd;
	r->b0 = off / SDS_BLOCK_SIZE;
	r->nblk = DIV_ROUND_UP(off + len, SDS_BLOCK_SIZE) - r->b0;
	r->nsubs = 0;
	int rc = io__arrays(r, r->nblk);
	if (rc)
		return rc;
	r->data = direct ? direct : io__bounce(r, r->nblk);
	if (!r->data)
		return -ENOMEM;
	return io__read_blocks(r, r->data, 0, r->nblk);
}

/* ---- writing blocks --------------------------------------------------------- */

/* Sets up a write of len bytes at byte offset off of vd from src (NULL:
 * zeroes); reads the partial edge blocks first when there are any. */
static int io__write_piece(struct sds_req *r, struct sds_vd *vd, uint64_t off,
			   uint64_t len, const uint8_t *src, int after)
{
	r->pvd = vd;
	r->b0 = off / SDS_BLOCK_SIZE;
	r->nblk = DIV_ROUND_UP(off + len, SDS_BLOCK_SIZE) - r->b0;
	r->head = (uint32_t)(off % SDS_BLOCK_SIZE);
	r->wlen = len;
	r->wsrc = src;
	r->after_write = after;
	r->nsubs = 0;
	int rc = io__arrays(r, r->nblk);
	if (rc)
		return rc;
	bool head_part = r->head != 0;
	bool tail_part = (off + len) % SDS_BLOCK_SIZE != 0;
	if (src && !head_part && !tail_part && is_aligned_ptr(src)) {
		r->data = (uint8_t *)src; /* written as is: no copy */
		r->phase = PH_ALLOC;
		sds_io_start(r);
		return 0;
	}
	if (!(r->data = io__bounce(r, r->nblk)))
		return -ENOMEM;
	r->phase = PH_RMW_DONE;
	r->pending++; /* hold the step until both edges are queued */
	if (head_part)
		rc = io__read_blocks(r, r->data, 0, 1);
	if (!rc && tail_part && (r->nblk > 1 || !head_part))
		rc = io__read_blocks(r, r->data, r->nblk - 1, r->nblk);
	if (rc)
		r->status = rc;
	if (--r->pending == 0)
		sds_io_start(r);
	return 0;
}

static void io__rmw_merge(struct sds_req *r)
{
	uint64_t last = r->nblk - 1;
	if (r->head)
		r->status = io__verify(r, r->data, 0, 1);
	if (!r->status && (r->head + r->wlen) % SDS_BLOCK_SIZE)
		r->status = io__verify(r, r->data, last, last + 1);
	if (r->status)
		return;
	if (r->wsrc)
		memcpy(r->data + r->head, r->wsrc, r->wlen);
	else
		memset(r->data + r->head, 0, r->wlen);
}

static void io__abort_alloc(struct sds_req *r)
{
	for (unsigned i = 0; i < r->nsubs; i++)
		sds_alloc_abort(r->pool, r->subs[i].pba, r->subs[i].n);
	r->nsubs = 0;
}

/* Allocates new blocks for the whole piece and writes them. */
static void io__alloc_and_write(struct sds_req *r)
{
	struct sds_pool *p = r->pool;
	r->nsubs = 0;
	if (p->failed) {
		io__fail(r, -EIO); /* nothing written now could become durable */
		return;
	}
	for (uint64_t i = 0; i < r->nblk;) {
		uint64_t pba;
		int n = sds_alloc_run(p, (unsigned)MIN(r->nblk - i, 65536u), &pba);
		if (n < 0) {
			io__abort_alloc(r);
			if (p->nfree_cur || p->nfree_committing) {
				/* Space is waiting on a commit: retry then. */
				TAILQ_INSERT_TAIL(&p->space_waiters, r, link);
				sds_commit_request(p);
				return;
			}
			io__fail(r, -ENOSPC);
			return;
		}
		struct sds_sub *s = &r->subs[r->nsubs++];
		s->req = r;
		s->blk = i;
		s->n = (unsigned)n;
		s->pba = pba;
		s->op.cb = io__sub_done;
		for (int j = 0; j < n; j++) {
			r->pba[i + j] = pba + (uint64_t)j;
			r->crc[i + j] = p->opts.no_checksum
				? 0
				: sds_crc(r->data + (i + j) * SDS_BLOCK_SIZE,
					  SDS_BLOCK_SIZE);
		}
		i += (uint64_t)n;
	}
	r->phase = PH_WRITE_DONE;
	r->pending += r->nsubs;
	for (unsigned k = 0; k < r->nsubs; k++) {
		struct sds_sub *s = &r->subs[k];
		sds_uring_write(&p->uring, &s->op,
				p->disks[pba_disk(s->pba)].fd,
				r->data + s->blk * SDS_BLOCK_SIZE,
				s->n * SDS_BLOCK_SIZE,
				pba_block(s->pba) * SDS_BLOCK_SIZE,
				p->opts.log ? RWF_DSYNC : 0);
	}
}

/* The data is on disk: point the block tables at it. */
static int io__write_commit(struct sds_req *r)
{
	struct sds_pool *p = r->pool;
	struct sds_extent *e = NULL;
	uint64_t cur_vb = UINT64_MAX;
	for (uint64_t i = 0; i < r->nblk; i++) {
		uint64_t blk = r->b0 + i, vb = blk / SDS_EXTENT_BLOCKS;
		if (vb != cur_vb) {
			int rc;
			e = sds_extent_for_write(p, r->pvd, vb, &rc);
			if (!e) {
				/* Return what was not linked in yet. */
				for (uint64_t j = i; j < r->nblk; j++)
					sds_alloc_abort(p, r->pba[j], 1);
				return rc;
			}
			cur_vb = vb;
		}
		sds_alloc_commit_block(p, r->pba[i]);
		sds_extent_set(p, e, (unsigned)(blk % SDS_EXTENT_BLOCKS),
			       r->pba[i], r->crc[i], 0);
	}
	p->st.writes++;
	return 0;
}

/* ---- long operations: zeroes, unmap, copy ------------------------------- */

/* Performs the next piece of a long operation; returns true when done. */
static bool io__long_step(struct sds_req *r)
{
	struct sds_io *io = r->io;
	struct sds_pool *p = r->pool;
	struct sds_vd *vd = r->vd;
	uint64_t pos = io->offset + r->cursor, end = io->offset + io->len;
	uint64_t step = (uint64_t)SDS_WORK_STEP * SDS_EXTENT_SIZE;
	int rc = 0;
	if (pos >= end)
		return true;
	switch (io->op) {
	case SDS_OP_UNMAP: {
		/* Advisory (SBC-4 5.32, NBD TRIM): partial blocks stay. */
		uint64_t b0 = DIV_ROUND_UP(pos, SDS_BLOCK_SIZE);
		uint64_t bend = end / SDS_BLOCK_SIZE;
		uint64_t b1 = MIN(bend, b0 + step / SDS_BLOCK_SIZE);
		if (b1 > b0)
			rc = sds_vd_release(p, vd, b0, b1);
		r->cursor = (b1 > b0 && b1 < bend)
			? b1 * SDS_BLOCK_SIZE - io->offset
			: io->len;
		break;
	}
	case SDS_OP_WRITE_ZEROES:
		if (!(io->flags & SDS_IO_NO_UNMAP) && pos % SDS_BLOCK_SIZE == 0 &&
		    end - pos >= SDS_BLOCK_SIZE) {
			uint64_t n = MIN(end - pos, step);
			n -= n % SDS_BLOCK_SIZE;
			rc = sds_vd_release(p, vd, pos / SDS_BLOCK_SIZE,
					    (pos + n) / SDS_BLOCK_SIZE);
			r->cursor += n;
			break;
		}
		/* A partial block, or space must stay allocated: write. */
		{
			uint64_t lim = (io->flags & SDS_IO_NO_UNMAP)
				? SDS_PIECE_BLOCKS * SDS_BLOCK_SIZE
				: SDS_BLOCK_SIZE - pos % SDS_BLOCK_SIZE;
			uint64_t n = MIN(end - pos, lim);
			r->cursor += n;
			rc = io__write_piece(r, vd, pos, n, NULL, PH_LOOP);
			if (!rc)
				return false;
		}
		break;
	case SDS_OP_COPY_RANGE: {
		uint64_t spos = io->src_offset + r->cursor;
		struct sds_vd *src = io->src->vd;
		if (pos % SDS_BLOCK_SIZE == 0 && spos % SDS_BLOCK_SIZE == 0 &&
		    (end - pos) % SDS_BLOCK_SIZE == 0) {
			uint64_t n = MIN(end - pos, step);
			rc = sds_vd_share(p, vd, pos / SDS_BLOCK_SIZE, src,
					  spos / SDS_BLOCK_SIZE,
					  n / SDS_BLOCK_SIZE);
			r->cursor += n;
			break;
		}
		/* Not block-aligned: the data has to move. */
		uint64_t n = MIN(end - pos, (uint64_t)SDS_PIECE_BLOCKS *
						    SDS_BLOCK_SIZE);
		free(r->rbuf);
		r->rbuf = NULL;
		r->phase = PH_COPY_READ;
		r->pending++;
		rc = io__read_piece(r, src, spos, n, NULL);
		/* Keep the source data apart: the write piece reuses r->data
		 * and the bounce buffer. */
		r->rbuf = r->bounce;
		r->bounce = NULL;
		if (rc)
			r->status = rc;
		if (--r->pending == 0)
			sds_io_start(r);
		return false;
	}
	default:
		rc = -EINVAL;
	}
	if (rc) {
		io__fail(r, rc);
		return false;
	}
	/* Yield between steps: one request never holds the loop for long. */
	r->phase = PH_LOOP;
	sds_req_continue(r);
	return false;
}

/* ---- the state machine ---------------------------------------------------- */

/* A finished change with FUA waits for the group commit, with LOGGED for
 * the log (commit.c); returns true when r now waits. */
static bool io__wait_durable(struct sds_req *r)
{
	if (r->io->flags & SDS_IO_FUA) {
		sds_commit_wait(r->pool, r);
		return true;
	}
	if (r->io->flags & SDS_IO_LOGGED) {
		sds_commit_log_wait(r->pool, r);
		return true;
	}
	return false;
}

static void io__begin(struct sds_req *r)
{
	struct sds_io *io = r->io;
	struct sds_pool *p = r->pool;
	int rc = 0;
	switch (io->op) {
	case SDS_OP_FLUSH:
		r->phase = PH_DONE;
		sds_commit_wait(p, r);
		return;
	case SDS_OP_READ: {
		bool direct = io->offset % SDS_BLOCK_SIZE == 0 &&
			      io->len % SDS_BLOCK_SIZE == 0 &&
			      is_aligned_ptr(io->buf);
		r->phase = PH_READ_DONE;
		r->pending++;
		rc = io__read_piece(r, r->vd, io->offset, io->len,
				    direct ? io->buf : NULL);
		if (rc)
			r->status = rc;
		if (--r->pending == 0)
			sds_io_start(r);
		return;
	}
	case SDS_OP_WRITE:
		rc = io__write_piece(r, r->vd, io->offset, io->len, io->buf,
				     PH_DONE);
		break;
	case SDS_OP_COMPARE_AND_WRITE:
		r->phase = PH_CAW_READ;
		r->pending++;
		rc = io__read_piece(r, r->vd, io->offset, io->len, NULL);
		if (rc)
			r->status = rc;
		if (--r->pending == 0)
			sds_io_start(r);
		return;
	default:
		r->phase = PH_LOOP;
		sds_io_start(r);
		return;
	}
	if (rc)
		io__fail(r, rc);
}

void sds_io_start(struct sds_req *r)
{
	struct sds_io *io = r->io;
	switch (r->phase) {
	case PH_BEGIN:
		if (!r->locked && sds_lock_try(r))
			return; /* queued; continued when granted */
		io__begin(r);
		return;
	case PH_READ_DONE: {
		int rc = r->status ? r->status
				   : io__verify(r, r->data, 0, r->nblk);
		if (!rc && r->data != io->buf)
			memcpy(io->buf,
			       r->data + io->offset % SDS_BLOCK_SIZE, io->len);
		if (!rc)
			r->pool->st.reads++;
		sds_req_complete(r, rc);
		return;
	}
	case PH_CAW_READ: {
		int rc = r->status ? r->status
				   : io__verify(r, r->data, 0, r->nblk);
		if (rc) {
			sds_req_complete(r, rc);
			return;
		}
		const uint8_t *cur = r->data + io->offset % SDS_BLOCK_SIZE;
		const uint8_t *cmp = io->buf;
		if (memcmp(cur, cmp, io->len) != 0) {
			uint64_t i = 0;
			while (cur[i] == cmp[i])
				i++;
			io->miscompare_offset = i;
			sds_req_complete(r, -EILSEQ);
			return;
		}
		/* The edges are already in the buffer: write it whole. */
		memcpy(r->data + io->offset % SDS_BLOCK_SIZE,
		       (const uint8_t *)io->buf + io->len, io->len);
		r->after_write = PH_DONE;
		r->phase = PH_ALLOC;
		sds_io_start(r);
		return;
	}
	case PH_RMW_DONE:
		if (!r->status)
			io__rmw_merge(r);
		if (r->status) {
			sds_req_complete(r, r->status);
			return;
		}
		r->phase = PH_ALLOC;
		/* fall through */
	case PH_ALLOC:
		io__alloc_and_write(r);
		return;
	case PH_WRITE_DONE: {
		int rc = r->status;
		if (rc)
			io__abort_alloc(r);
		else
			rc = io__write_commit(r);
		if (rc) {
			sds_req_complete(r, rc);
			return;
		}
		r->phase = r->after_write;
		if (r->phase == PH_DONE && io__wait_durable(r))
			return;
		sds_io_start(r);
		return;
	}
	case PH_COPY_READ: {
		/* r->rbuf holds the source blocks read with r->pba/crc. */
		int rc = r->status ? r->status
				   : io__verify(r, r->rbuf, 0, r->nblk);
		if (rc) {
			sds_req_complete(r, rc);
			return;
		}
		uint64_t pos = io->offset + r->cursor;
		uint64_t n = MIN(io->offset + io->len - pos,
				 (uint64_t)SDS_PIECE_BLOCKS * SDS_BLOCK_SIZE);
		const uint8_t *src = r->rbuf + (io->src_offset + r->cursor) %
						       SDS_BLOCK_SIZE;
		r->cursor += n;
		rc = io__write_piece(r, r->vd, pos, n, src, PH_LOOP);
		if (rc)
			sds_req_complete(r, rc);
		return;
	}
	case PH_LOOP:
		if (r->status) {
			sds_req_complete(r, r->status);
			return;
		}
		if (io__long_step(r)) {
			r->phase = PH_DONE;
			if (io__wait_durable(r))
				return;
			sds_req_complete(r, 0);
		}
		return;
	case PH_DONE:
		sds_req_complete(r, r->status);
		return;
	}
}

/* ---- submission -------------------------------------------------------------- */

static bool io__range_ok(const struct sds_vd *vd, uint64_t off, uint64_t len)
{
	return len && off % vd->sector_size == 0 &&
	       len % vd->sector_size == 0 && off <= vd->size &&
	       len <= vd->size - off;
}

static int io__validate(struct sds_pool *p, struct sds_vd *vd,
			struct sds_io *io)
{
	if (p->closing)
		return -ESHUTDOWN;
	if (p->failed)
		return -EIO;
	if (io->op == SDS_OP_FLUSH)
		return 0;
	if (!vd || (vd->flags & SDS_VD_DELETING))
		return -EINVAL;
	if (!io__range_ok(vd, io->offset, io->len))
		return -EINVAL;
	if (io->op != SDS_OP_READ && (vd->flags & SDS_VD_SNAPSHOT))
		return -EROFS;
	switch (io->op) {
	case SDS_OP_READ:
	case SDS_OP_WRITE:
		return io->len <= SDS_MAX_IO && io->buf ? 0 : -EINVAL;
	case SDS_OP_COMPARE_AND_WRITE:
		return io->len <= SDS_EXTENT_SIZE && io->buf ? 0 : -EINVAL;
	case SDS_OP_WRITE_ZEROES:
	case SDS_OP_UNMAP:
		return 0;
	case SDS_OP_COPY_RANGE: {
		if (!io->src || io->src->pool != p)
			return -EINVAL;
		struct sds_vd *s = io->src->vd;
		if (!io__range_ok(s, io->src_offset, io->len))
			return -EINVAL;
		if (s == vd && io->src_offset < io->offset + io->len &&
		    io->offset < io->src_offset + io->len)
			return -EINVAL; /* overlapping copy within a vdisk */
		return 0;
	}
	default:
		return -EINVAL;
	}
}

static void io__set_range(struct sds_range *lk, struct sds_vd *vd,
			  uint64_t off, uint64_t len, bool excl)
{
	lk->vd = vd;
	lk->b0 = off / SDS_BLOCK_SIZE;
	lk->b1 = DIV_ROUND_UP(off + len, SDS_BLOCK_SIZE);
	lk->excl = excl;
}

void sds_vdisk_submit(struct sds_vdisk *v, struct sds_io *io)
{
	struct sds_pool *p = v->pool;
	struct sds_req *r = calloc(1, sizeof(*r));
	if (!r) {
		/* Nothing to queue on: complete inline as the one exception. */
		io->cb(io, -ENOMEM);
		return;
	}
	r->pool = p;
	r->io = io;
	r->vd = v->vd;
	p->inflight++;
	int rc = io__validate(p, v->vd, io);
	if (rc) {
		r->status = rc;
		r->phase = PH_DONE;
	} else if (io->op != SDS_OP_FLUSH) {
		io__set_range(&r->lk[0], v->vd, io->offset, io->len,
			      io->op != SDS_OP_READ);
		if (io->op == SDS_OP_COPY_RANGE)
			io__set_range(&r->lk[1], io->src->vd, io->src_offset,
				      io->len, false);
		if (io->op == SDS_OP_READ || io->op == SDS_OP_WRITE) {
			/* The hot path starts at once: its IO is queued to
			 * io_uring in this loop phase, not the next turn. */
			p->in_submit++;
			sds_io_start(r);
			p->in_submit--;
			return;
		}
	}
	sds_req_continue(r);
}
