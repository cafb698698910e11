/* virtio-blk (virtio 1.2 § 5.2): device features, the config space, and
 * requests mapped to sds IOs. The engine takes one buffer per request:
 * a READ whose data is one segment (a Linux guest's 4 KiB read is one
 * page) is read straight into guest memory; other READs, and every WRITE,
 * go through a 4096-aligned bounce buffer. WRITEs always do: the engine
 * computes each block's checksum from the buffer and then writes it, and
 * a guest may change a page while it is being written (virtio-blk does not
 * ask for stable pages), which would store a checksum that does not match
 * the data; the copy makes the two agree.
 *
 * Errors: a request the guest built badly but whose status byte we can
 * find fails with VIRTIO_BLK_S_IOERR (bad range, length or segments) or
 * VIRTIO_BLK_S_UNSUPP (unknown type or flags); a chain the walker refuses,
 * or one without a header or a status byte, breaks the queue. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"
#include "vhost_int.h"

#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_T_DISCARD 11
#define VIRTIO_BLK_T_WRITE_ZEROES 13
#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2
#define VIRTIO_BLK_ID_BYTES 20
#define VIRTIO_BLK_WZ_UNMAP 1u

#define VIRTIO_BLK_F_SIZE_MAX 1
#define VHOST_BLK_SEG_MAX 126u	       /* QEMU's default queue size - 2 */
#define VHOST_BLK_SIZE_MAX (256u << 10) /* 126 x 256 KiB < SDS_MAX_IO */
#define VHOST_BLK_MAX_DWZ_SEG 16u
#define VHOST_BLK_MAX_DWZ_SECTORS (1u << 22) /* 2 GiB per segment */
#define VHOST_BLK_IO_ALIGN 4096u

struct virtio_blk_outhdr {
	uint32_t type;
	uint32_t ioprio;
	uint64_t sector;
};

struct virtio_blk_dwz {
	uint64_t sector;
	uint32_t num_sectors;
	uint32_t flags;
};

struct vhost_blk_req {
	struct sds_io io;
	struct vhost_vq *q;
	uint16_t head;
	uint32_t type;
	uint8_t *status;
	uint32_t used_len;
	unsigned nseg, seg; /* DISCARD / WRITE_ZEROES */
	struct virtio_blk_dwz segs[VHOST_BLK_MAX_DWZ_SEG];
	bool guest_buf;	     /* IN: io.buf points into guest memory */
	unsigned niov;	     /* IN: where the data goes */
	struct vring_iov iov[];
};

uint64_t vhost_blk_features(const struct vhost_blk *s)
{
	uint64_t f = (1ull << VIRTIO_F_VERSION_1) |
		     (1ull << VIRTIO_RING_F_INDIRECT_DESC) |
		     (1ull << VIRTIO_RING_F_EVENT_IDX) |
		     (1ull << VIRTIO_BLK_F_SIZE_MAX) |
		     (1ull << VIRTIO_BLK_F_SEG_MAX) |
		     (1ull << VIRTIO_BLK_F_BLK_SIZE) |
		     (1ull << VIRTIO_BLK_F_FLUSH) |
		     (1ull << VIRTIO_BLK_F_TOPOLOGY) | (1ull << VIRTIO_BLK_F_MQ);
	if (sds_vdisk_readonly(s->vd))
		f |= 1ull << VIRTIO_BLK_F_RO;
	else
		f |= (1ull << VIRTIO_BLK_F_DISCARD) |
		     (1ull << VIRTIO_BLK_F_WRITE_ZEROES);
	return f;
}

static void put_le16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void put_le32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put_le64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

/* struct virtio_blk_config, § 5.2.4 (offsets spelled out). */
size_t vhost_blk_config(const struct vhost_blk *s, uint8_t *cfg, size_t len)
{
	uint8_t c[60] = {0};
	uint32_t bs = sds_vdisk_sector_size(s->vd);
	put_le64(c + 0, sds_vdisk_size(s->vd) / 512); /* capacity */
	put_le32(c + 8, VHOST_BLK_SIZE_MAX);
	put_le32(c + 12, VHOST_BLK_SEG_MAX);
	put_le32(c + 20, bs); /* blk_size */
	/* topology: the engine's 4 KiB block is the physical block. */
	c[24] = bs == 512 ? 3 : 0; /* physical_block_exp */
	c[25] = 0;		   /* alignment_offset */
	put_le16(c + 26, (uint16_t)(SDS_BLOCK_SIZE / bs)); /* min_io_size */
	put_le32(c + 28, 0);				 /* opt_io_size */
	c[32] = !s->write_through; /* writeback (read only without CONFIG_WCE) */
	put_le16(c + 34, (uint16_t)s->max_queues);
	put_le32(c + 36, VHOST_BLK_MAX_DWZ_SECTORS);
	put_le32(c + 40, VHOST_BLK_MAX_DWZ_SEG);
	put_le32(c + 44, SDS_BLOCK_SIZE / 512); /* discard_sector_alignment */
	put_le32(c + 48, VHOST_BLK_MAX_DWZ_SECTORS);
	put_le32(c + 52, VHOST_BLK_MAX_DWZ_SEG);
	c[56] = 1; /* write_zeroes_may_unmap */
	memcpy(cfg, c, MIN(len, sizeof(c)));
	return sizeof(c);
}

/* Copies len bytes of the readable segments, starting `skip` bytes in. */
static void vhost_blk_gather(const struct vring_chain *ch, uint64_t skip,
			     void *dst, uint64_t len)
{
	uint8_t *d = dst;
	for (unsigned i = 0; i < ch->nout && len; i++) {
		const struct vring_iov *v = &ch->iov[i];
		if (skip >= v->len) {
			skip -= v->len;
			continue;
		}
		uint64_t n = MIN((uint64_t)v->len - skip, len);
		memcpy(d, v->base + skip, n);
		d += n;
		len -= n;
		skip = 0;
	}
}

static void vhost_blk_scatter(const struct vring_iov *iov, unsigned niov,
			      const void *src, uint64_t len)
{
	const uint8_t *p = src;
	for (unsigned i = 0; i < niov && len; i++) {
		uint64_t n = MIN((uint64_t)iov[i].len, len);
		memcpy(iov[i].base, p, n);
		p += n;
		len -= n;
	}
}

static void vhost_blk_free(struct vhost_blk_req *r)
{
	if (!r->guest_buf)
		free(r->io.buf);
	free(r);
}

static uint8_t vhost_blk_status(int err)
{
	if (!err)
		return VIRTIO_BLK_S_OK;
	return err == -EOPNOTSUPP ? VIRTIO_BLK_S_UNSUPP : VIRTIO_BLK_S_IOERR;
}

static void vhost_blk_submit(struct vhost_blk_req *r);

static void vhost_blk_done(struct sds_io *io, int status)
{
	struct vhost_blk_req *r = container_of(io, struct vhost_blk_req, io);
	struct vhost_vq *q = r->q;
	struct vhost_conn *c = q->c;
	if (status == 0 && !c->closing && r->nseg && ++r->seg < r->nseg) {
		vhost_blk_submit(r); /* next DISCARD / WRITE_ZEROES range */
		return;
	}
	if (status < 0)
		log_debug(VHOST_LOG, "%s: type %u offset %llu len %llu: %s",
			  c->srv->path, r->type,
			  (unsigned long long)io->offset,
			  (unsigned long long)io->len, strerror(-status));
	/* Guest memory stays mapped while requests are in the engine; once
	 * the connection is closing the ring is no longer ours to write. */
	if (!c->closing && q->started) {
		if (status == 0 && r->type == VIRTIO_BLK_T_IN && !r->guest_buf)
			vhost_blk_scatter(r->iov, r->niov, io->buf, io->len);
		*r->status = vhost_blk_status(status);
		vhost_vq_complete(q, r->head, r->used_len);
	}
	q->inflight--;
	c->inflight--;
	vhost_blk_free(r);
	vhost_conn_io_done(c);
}

static void vhost_blk_submit(struct vhost_blk_req *r)
{
	struct vhost_blk *s = r->q->c->srv;
	if (r->nseg) {
		const struct virtio_blk_dwz *d = &r->segs[r->seg];
		r->io.offset = d->sector * 512;
		r->io.len = (uint64_t)d->num_sectors * 512;
		r->io.flags = r->type == VIRTIO_BLK_T_WRITE_ZEROES &&
				      !(d->flags & VIRTIO_BLK_WZ_UNMAP)
				  ? SDS_IO_NO_UNMAP
				  : 0;
	}
	/* Never acknowledge a change a back-end restart could lose: the
	 * guest keeps running and would read the old data back. */
	if (r->io.op != SDS_OP_READ && r->io.op != SDS_OP_FLUSH)
		r->io.flags |= s->write_through ? SDS_IO_FUA : SDS_IO_LOGGED;
	r->io.cb = vhost_blk_done;
	sds_vdisk_submit(s->vd, &r->io);
}

static void vhost_blk_finish(struct vhost_vq *q, uint16_t head,
			     uint8_t *status, uint8_t st, uint32_t used_len)
{
	*status = st;
	vhost_vq_complete(q, head, used_len);
}

/* Whether [sector, sector + bytes/512) lies inside the disk. */
static bool vhost_blk_range_ok(const struct vhost_blk *s, uint64_t sector,
			       uint64_t bytes)
{
	uint64_t size = sds_vdisk_size(s->vd);
	if (sector > size / 512)
		return false;
	return bytes <= size - sector * 512;
}

static bool vhost_blk_parse_dwz(struct vhost_blk *s, struct vhost_blk_req *r,
				const struct vring_chain *ch, uint8_t *st)
{
	uint64_t bytes = ch->out_bytes - sizeof(struct virtio_blk_outhdr);
	if (bytes == 0 || bytes % sizeof(struct virtio_blk_dwz) ||
	    bytes / sizeof(struct virtio_blk_dwz) > VHOST_BLK_MAX_DWZ_SEG) {
		*st = VIRTIO_BLK_S_IOERR;
		return false;
	}
	r->nseg = (unsigned)(bytes / sizeof(struct virtio_blk_dwz));
	vhost_blk_gather(ch, sizeof(struct virtio_blk_outhdr), r->segs, bytes);
	uint32_t allowed = r->type == VIRTIO_BLK_T_WRITE_ZEROES
			       ? VIRTIO_BLK_WZ_UNMAP
			       : 0;
	for (unsigned i = 0; i < r->nseg; i++) {
		const struct virtio_blk_dwz *d = &r->segs[i];
		/* § 5.2.6.2: unknown flags, or unmap on DISCARD: UNSUPP. */
		if (d->flags & ~allowed) {
			*st = VIRTIO_BLK_S_UNSUPP;
			return false;
		}
		if (d->num_sectors == 0 ||
		    d->num_sectors > VHOST_BLK_MAX_DWZ_SECTORS ||
		    !vhost_blk_range_ok(s, d->sector,
					(uint64_t)d->num_sectors * 512)) {
			*st = VIRTIO_BLK_S_IOERR;
			return false;
		}
	}
	return true;
}

void vhost_blk_handle(struct vhost_vq *q, uint16_t head)
{
	struct vhost_conn *c = q->c;
	struct vhost_blk *s = c->srv;
	struct vring_chain *ch = &c->scratch;
	int rc = vring_walk(&c->mem, q->vr.desc, q->vr.num, head,
			    c->features & (1ull << VIRTIO_RING_F_INDIRECT_DESC),
			    ch);
	if (rc < 0) {
		vhost_vq_break(q, "descriptor chain", rc);
		return;
	}
	/* § 5.2.6: header first (device-readable), status byte last
	 * (device-writable). */
	struct virtio_blk_outhdr h;
	if (ch->out_bytes < sizeof(h) || ch->in_bytes < 1) {
		vhost_vq_break(q, "request without header or status",
			       -EINVAL);
		return;
	}
	vhost_blk_gather(ch, 0, &h, sizeof(h));
	struct vring_iov *last = &ch->iov[ch->nout + ch->nin - 1];
	uint8_t *status = last->base + last->len - 1;
	uint64_t in_data = ch->in_bytes - 1;
	uint64_t out_data = ch->out_bytes - sizeof(h);
	unsigned niov = h.type == VIRTIO_BLK_T_IN ? ch->nin : 0;

	struct vhost_blk_req *r =
	    calloc(1, sizeof(*r) + niov * sizeof(struct vring_iov));
	if (!r) {
		vhost_blk_finish(q, head, status, VIRTIO_BLK_S_IOERR, 1);
		return;
	}
	r->q = q;
	r->head = head;
	r->type = h.type;
	r->status = status;
	r->used_len = 1;
	uint8_t st = VIRTIO_BLK_S_OK;
	uint64_t len = 0;

	switch (h.type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT:
		len = h.type == VIRTIO_BLK_T_IN ? in_data : out_data;
		if (len % 512 || len > SDS_MAX_IO ||
		    !vhost_blk_range_ok(s, h.sector, len)) {
			st = VIRTIO_BLK_S_IOERR;
			break;
		}
		if (len == 0)
			break;
		r->io.offset = h.sector * 512;
		r->io.len = len;
		if (h.type == VIRTIO_BLK_T_IN) {
			r->io.op = SDS_OP_READ;
			r->used_len = (uint32_t)ch->in_bytes;
			/* The data segments: every writable one, the last
			 * shortened by the status byte. */
			memcpy(r->iov, &ch->iov[ch->nout],
			       niov * sizeof(struct vring_iov));
			r->iov[niov - 1].len--;
			r->niov = niov;
			/* One segment: no copy (the engine bounces on its own
			 * if it is not 4096-aligned). Guest memory stays
			 * mapped while the request is in the engine. */
			if (r->iov[0].len == len) {
				r->io.buf = r->iov[0].base;
				r->guest_buf = true;
				break;
			}
		}
		if (posix_memalign(&r->io.buf, VHOST_BLK_IO_ALIGN, len)) {
			r->io.buf = NULL;
			st = VIRTIO_BLK_S_IOERR;
			break;
		}
		if (h.type == VIRTIO_BLK_T_OUT) {
			r->io.op = SDS_OP_WRITE;
			vhost_blk_gather(ch, sizeof(h), r->io.buf, len);
		}
		break;
	case VIRTIO_BLK_T_FLUSH:
		r->io.op = SDS_OP_FLUSH;
		len = 1;
		break;
	case VIRTIO_BLK_T_GET_ID: {
		uint8_t id[VIRTIO_BLK_ID_BYTES] = {0};
		memcpy(id, s->serial, strnlen(s->serial, sizeof(id)));
		uint64_t n = MIN(in_data, (uint64_t)sizeof(id));
		vhost_blk_scatter(&ch->iov[ch->nout], ch->nin, id, n);
		r->used_len = (uint32_t)n + 1;
		break;
	}
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		if (sds_vdisk_readonly(s->vd)) {
			st = VIRTIO_BLK_S_IOERR;
			break;
		}
		if (!vhost_blk_parse_dwz(s, r, ch, &st))
			break;
		r->io.op = h.type == VIRTIO_BLK_T_DISCARD ? SDS_OP_UNMAP
							  : SDS_OP_WRITE_ZEROES;
		len = 1;
		break;
	default:
		st = VIRTIO_BLK_S_UNSUPP;
		break;
	}
	if (st != VIRTIO_BLK_S_OK || len == 0) {
		uint32_t used = r->used_len;
		vhost_blk_free(r);
		vhost_blk_finish(q, head, status, st,
				 st == VIRTIO_BLK_S_OK ? used : 1);
		return;
	}
	q->inflight++;
	c->inflight++;
	vhost_blk_submit(r);
}
