/* Transmission phase (§ Transmission, § Request types): each request is
 * validated by nbd_proto_check_request, dispatched through a table indexed
 * by command type to one sds IO, and answered with a simple reply when the
 * engine completes it, in completion order. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "nbd_int.h"
#include "util.h"

static void nbd_cmd_read(struct nbd_conn *c, const struct nbd_request *rq);
static void nbd_cmd_write(struct nbd_conn *c, const struct nbd_request *rq);
static void nbd_cmd_disc(struct nbd_conn *c, const struct nbd_request *rq);
static void nbd_cmd_block_status(struct nbd_conn *c,
				 const struct nbd_request *rq);
static void nbd_cmd_io(struct nbd_conn *c, const struct nbd_request *rq);

/* Only types nbd_proto_check_request accepts reach this table. */
static const struct {
	void (*start)(struct nbd_conn *c, const struct nbd_request *rq);
	enum sds_op op;
} nbd_cmd_table[NBD_CMD_COUNT] = {
    [NBD_CMD_READ] = {nbd_cmd_read, SDS_OP_READ},
    [NBD_CMD_WRITE] = {nbd_cmd_write, SDS_OP_WRITE},
    [NBD_CMD_DISC] = {nbd_cmd_disc},
    [NBD_CMD_FLUSH] = {nbd_cmd_io, SDS_OP_FLUSH},
    [NBD_CMD_TRIM] = {nbd_cmd_io, SDS_OP_UNMAP},
    [NBD_CMD_WRITE_ZEROES] = {nbd_cmd_io, SDS_OP_WRITE_ZEROES},
    [NBD_CMD_BLOCK_STATUS] = {nbd_cmd_block_status},
};

/* A request with a buffer of `buflen` bytes (0: none), counted against the
 * connection's in-flight caps until nbd_conn_req_done. */
static struct nbd_req *
nbd_cmd_new(struct nbd_conn *c, const struct nbd_request *rq, uint32_t buflen)
{
	struct nbd_req *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	if (buflen && posix_memalign(&r->buf, NBD_IO_ALIGN, buflen)) {
		free(r);
		return NULL;
	}
	r->conn = c;
	r->rq = *rq;
	c->nreq++;
	c->nbytes += buflen;
	return r;
}

/* § Simple reply message; a READ's data follows only when error is 0.
 * Once structured replies are negotiated, READ and BLOCK_STATUS answer
 * with one chunk flagged DONE (§ Structured reply chunk message: "the
 * server MUST NOT send a simple reply" to them): OFFSET_DATA, BLOCK_STATUS
 * or ERROR. Other commands keep simple replies, which the spec allows. */
static void nbd_cmd_reply(struct nbd_req *r, uint32_t err)
{
	struct nbd_conn *c = r->conn;
	if (c->hard) {
		nbd_conn_req_done(c, r);
		return;
	}
	r->err = err;
	uint16_t type = r->rq.type;
	if (!c->structured ||
	    (type != NBD_CMD_READ && type != NBD_CMD_BLOCK_STATUS)) {
		nbd_proto_put_simple_reply(r->reply, err, r->rq.cookie);
		r->reply_len = NBD_SIMPLE_REPLY_SIZE;
	} else if (err) {
		/* error, then a zero-length message */
		nbd_proto_put_structured_reply(r->reply, NBD_REPLY_FLAG_DONE,
					       NBD_REPLY_TYPE_ERROR,
					       r->rq.cookie, 6);
		put_be32(r->reply + NBD_STRUCTURED_REPLY_SIZE, err);
		put_be16(r->reply + NBD_STRUCTURED_REPLY_SIZE + 4, 0);
		r->reply_len = NBD_STRUCTURED_REPLY_SIZE + 6;
		r->extra_len = 0;
	} else if (type == NBD_CMD_READ) {
		nbd_proto_put_structured_reply(r->reply, NBD_REPLY_FLAG_DONE,
					       NBD_REPLY_TYPE_OFFSET_DATA,
					       r->rq.cookie, 8 + r->rq.len);
		put_be64(r->reply + NBD_STRUCTURED_REPLY_SIZE, r->rq.offset);
		r->reply_len = NBD_STRUCTURED_REPLY_SIZE + 8;
	} else {
		nbd_proto_put_structured_reply(r->reply, NBD_REPLY_FLAG_DONE,
					       NBD_REPLY_TYPE_BLOCK_STATUS,
					       r->rq.cookie, r->extra_len);
		r->reply_len = NBD_STRUCTURED_REPLY_SIZE;
	}
	nbd_conn_queue_reply(c, r);
}

static void nbd_cmd_reply_error(struct nbd_conn *c,
				const struct nbd_request *rq, uint32_t err)
{
	log_debug(NBD_LOG,
		  "conn %llu %s: %s off %llu len %u flags 0x%x: "
		  "error %u",
		  (unsigned long long)c->base.id, c->peer,
		  nbd_proto_cmd(rq->type) ? nbd_proto_cmd(rq->type)->name
					  : "unknown",
		  (unsigned long long)rq->offset, rq->len, rq->flags, err);
	struct nbd_req *r = nbd_cmd_new(c, rq, 0);
	if (!r) {
		nbd_conn_close(c, true);
		return;
	}
	nbd_cmd_reply(r, err);
}

static void nbd_cmd_io_done(struct sds_io *io, int status)
{
	struct nbd_req *r = io->priv;
	r->conn->nio--;
	if (status < 0)
		log_debug(NBD_LOG, "conn %llu: %s off %llu len %u: %s",
			  (unsigned long long)r->conn->base.id,
			  nbd_proto_cmd(r->rq.type)->name,
			  (unsigned long long)r->rq.offset, r->rq.len,
			  strerror(-status));
	nbd_cmd_reply(r, nbd_proto_errno(status));
}

static void nbd_cmd_submit(struct nbd_req *r)
{
	struct nbd_conn *c = r->conn;
	uint16_t f = r->rq.flags;
	struct sds_io *io = &r->io;
	io->op = nbd_cmd_table[r->rq.type].op;
	io->flags = 0;
	/* § Command flags: FUA matters only for commands that write. */
	if ((f & NBD_CMD_FLAG_FUA) && nbd_proto_cmd(r->rq.type)->writes)
		io->flags |= SDS_IO_FUA;
	if (f & NBD_CMD_FLAG_NO_HOLE)
		io->flags |= SDS_IO_NO_UNMAP;
	io->offset = r->rq.offset;
	io->len = r->rq.len;
	io->buf = r->buf;
	io->cb = nbd_cmd_io_done;
	io->priv = r;
	c->nio++;
	sds_vdisk_submit(c->vd, io);
}

static void nbd_cmd_read(struct nbd_conn *c, const struct nbd_request *rq)
{
	struct nbd_req *r = nbd_cmd_new(c, rq, rq->len);
	if (!r) {
		nbd_cmd_reply_error(c, rq, NBD_ENOMEM);
		return;
	}
	nbd_cmd_submit(r);
}

/* The payload bytes already staged are copied; the rest is read straight
 * into the request's buffer (nbd_conn.c, NBD_CONN_REQ_PAYLOAD). */
static void nbd_cmd_write(struct nbd_conn *c, const struct nbd_request *rq)
{
	struct nbd_req *r = nbd_cmd_new(c, rq, rq->len);
	if (!r) {
		c->drain_rq = *rq;
		c->drain_err = NBD_ENOMEM;
		c->skip = rq->len;
		c->state = NBD_CONN_REQ_DRAIN;
		return;
	}
	size_t n = MIN(c->wpos - c->rpos, (size_t)rq->len);
	memcpy(r->buf, c->rbuf + c->rpos, n);
	c->rpos += n;
	r->got = (uint32_t)n;
	if (r->got == rq->len) {
		nbd_cmd_submit(r);
		return;
	}
	c->cur = r;
	c->state = NBD_CONN_REQ_PAYLOAD;
}

/* § Request types, NBD_CMD_DISC: "The server MUST handle all outstanding
 * requests ... and close the TCP session." There is no reply. */
static void nbd_cmd_disc(struct nbd_conn *c, const struct nbd_request *rq)
{
	(void)rq;
	log_debug(NBD_LOG, "conn %llu %s: disconnect",
		  (unsigned long long)c->base.id, c->peer);
	nbd_conn_close(c, false);
}

static void nbd_cmd_io(struct nbd_conn *c, const struct nbd_request *rq)
{
	struct nbd_req *r = nbd_cmd_new(c, rq, 0);
	if (!r) {
		nbd_conn_close(c, true);
		return;
	}
	nbd_cmd_submit(r);
}

#define NBD_CMD_MAX_EXTENTS 256u

/* § NBD_CMD_BLOCK_STATUS with base:allocation: extents from the offset,
 * holes flagged HOLE|ZERO (unwritten vdisk blocks read as zeroes). Answered
 * from metadata alone, at once; at most 256 extents, or one with REQ_ONE
 * (the reply may cover less than asked: "the server MAY ... return fewer
 * descriptors"). */
static void nbd_cmd_block_status(struct nbd_conn *c,
				 const struct nbd_request *rq)
{
	if (!c->meta_alloc) {
		nbd_cmd_reply_error(c, rq, NBD_EINVAL);
		return;
	}
	unsigned max = (rq->flags & NBD_CMD_FLAG_REQ_ONE) ? 1
							  : NBD_CMD_MAX_EXTENTS;
	struct nbd_req *r = nbd_cmd_new(c, rq, 0);
	if (r)
		r->extra = malloc(4 + 8 * (size_t)max);
	if (!r || !r->extra) {
		if (r)
			nbd_conn_req_done(c, r);
		nbd_cmd_reply_error(c, rq, NBD_ENOMEM);
		return;
	}
	put_be32(r->extra, NBD_META_ALLOC_ID);
	uint64_t off = rq->offset, end = rq->offset + rq->len;
	unsigned n = 0;
	int rc = 0;
	while (off < end && n < max) {
		bool mapped;
		uint64_t len;
		rc = sds_vdisk_lba_status(c->vd, off, end - off, &mapped, &len);
		if (rc || !len)
			break;
		uint8_t *d = r->extra + 4 + 8 * n++;
		put_be32(d, (uint32_t)len);
		put_be32(d + 4, mapped ? 0 : NBD_STATE_HOLE | NBD_STATE_ZERO);
		off += len;
	}
	r->extra_len = 4 + 8 * n;
	nbd_cmd_reply(r, rc || !n ? nbd_proto_errno(rc ? rc : -EIO) : NBD_OK);
}

void nbd_cmd_header(struct nbd_conn *c, const uint8_t *p)
{
	struct nbd_request rq;
	if (nbd_proto_parse_request(p, &rq) < 0) {
		log_info(NBD_LOG, "conn %llu %s: bad request magic 0x%08x",
			 (unsigned long long)c->base.id, c->peer, get_be32(p));
		nbd_conn_close(c, true);
		return;
	}
	uint32_t err;
	switch (nbd_proto_check_request(&rq, &c->lim, &err)) {
	case NBD_VERDICT_DROP:
		log_info(NBD_LOG, "conn %llu %s: %u-byte payload exceeds %u",
			 (unsigned long long)c->base.id, c->peer, rq.len,
			 c->lim.max_payload);
		nbd_conn_close(c, true);
		return;
	case NBD_VERDICT_ERROR:
		if (nbd_proto_cmd(rq.type) &&
		    nbd_proto_cmd(rq.type)->has_payload && rq.len) {
			/* Refused, but the payload is on its way: skip it to
			 * keep the stream in step, then reply. */
			c->drain_rq = rq;
			c->drain_err = err;
			c->skip = rq.len;
			c->state = NBD_CONN_REQ_DRAIN;
			return;
		}
		nbd_cmd_reply_error(c, &rq, err);
		return;
	case NBD_VERDICT_OK:
		break;
	}
	nbd_cmd_table[rq.type].start(c, &rq);
}

void nbd_cmd_payload_done(struct nbd_conn *c)
{
	struct nbd_req *r = c->cur;
	c->cur = NULL;
	c->state = NBD_CONN_REQ_HEADER;
	nbd_cmd_submit(r);
}

void nbd_cmd_drained(struct nbd_conn *c)
{
	c->state = NBD_CONN_REQ_HEADER;
	nbd_cmd_reply_error(c, &c->drain_rq, c->drain_err);
}
