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

/* § Simple reply message; a READ's data follows only when error is 0. */
static void nbd_cmd_reply(struct nbd_req *r, uint32_t err)
{
	struct nbd_conn *c = r->conn;
	if (c->hard) {
		nbd_conn_req_done(c, r);
		return;
	}
	r->err = err;
	nbd_proto_put_simple_reply(r->reply, err, r->rq.cookie);
	nbd_conn_queue_reply(c, r);
}

static void nbd_cmd_reply_error(struct nbd_conn *c,
				const struct nbd_request *rq, uint32_t err)
{
	log_debug(NBD_LOG,
		  "conn %llu %s: %s off %llu len %u flags 0x%x: "
		  "error %u",
		  (unsigned long long)c->id, c->peer,
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
			  (unsigned long long)r->conn->id,
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
		  (unsigned long long)c->id, c->peer);
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

void nbd_cmd_header(struct nbd_conn *c, const uint8_t *p)
{
	struct nbd_request rq;
	if (nbd_proto_parse_request(p, &rq) < 0) {
		log_info(NBD_LOG, "conn %llu %s: bad request magic 0x%08x",
			 (unsigned long long)c->id, c->peer, get_be32(p));
		nbd_conn_close(c, true);
		return;
	}
	uint32_t err;
	switch (nbd_proto_check_request(&rq, &c->lim, &err)) {
	case NBD_VERDICT_DROP:
		log_info(NBD_LOG, "conn %llu %s: %u-byte payload exceeds %u",
			 (unsigned long long)c->id, c->peer, rq.len,
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
