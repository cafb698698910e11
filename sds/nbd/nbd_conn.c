/* One NBD connection: reading and parsing in order, flow control, output
 * and the close protocol. Handshake and commands live in nbd_handshake.c
 * and nbd_cmd.c; this file only moves bytes and keeps the counts. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "nbd_int.h"
#include "util.h"

/* A handshake write: the bytes ride with the request. */
struct nbd_conn_wbuf {
	uv_write_t wr;
	struct nbd_conn *conn;
	uint8_t data[];
};

static void nbd_conn_process(struct nbd_conn *c);

/* The caps that pause parsing: requests in flight and their buffer bytes
 * in transmission; unsent option replies in the handshake (a client that
 * sends options without reading the replies must not grow our queue). */
static bool nbd_conn_full(const struct nbd_conn *c)
{
	if (c->state < NBD_CONN_REQ_HEADER)
		return c->nwrites >= NBD_HANDSHAKE_MAX_WRITES;
	return c->nreq >= c->srv->max_inflight ||
	       c->nbytes >= c->srv->max_inflight_bytes;
}

/* States that start a new message: parsing may pause there. */
static bool nbd_conn_at_boundary(const struct nbd_conn *c)
{
	return c->state == NBD_CONN_REQ_HEADER ||
	       c->state == NBD_CONN_OPT_HEADER;
}

static void nbd_conn_update_reading(struct nbd_conn *c);

static void nbd_conn_closed(uv_handle_t *h)
{
	struct nbd_conn *c = container_of((uv_tcp_t *)h, struct nbd_conn, tcp);
	log_debug(NBD_LOG, "conn %llu %s closed", (unsigned long long)c->base.id,
		  c->peer);
	if (c->vd)
		sds_vdisk_close(c->vd);
	free(c->rbuf);
	free(c->obuf);
	srv_conn_gone(&c->srv->net, &c->base);
	free(c);
}

/* The handle is closed once the engine has returned every request (their
 * sds_io and buffers belong to the engine until then) and, for a soft
 * close, once every reply has been written. uv_close cancels the writes
 * still queued; their callbacks run before nbd_conn_closed. */
static void nbd_conn_maybe_finish(struct nbd_conn *c)
{
	if (!c->closing || c->handle_closing || c->in_process)
		return;
	if (c->nio)
		return;
	if (!c->hard && (c->nreq || c->nwrites))
		return;
	c->handle_closing = true;
	uv_close((uv_handle_t *)&c->tcp, nbd_conn_closed);
}

static void nbd_conn_free_req(struct nbd_conn *c, struct nbd_req *r)
{
	c->nreq--;
	c->nbytes -= r->buf ? r->rq.len : 0;
	free(r->buf);
	free(r->extra);
	free(r);
}

void nbd_conn_close(struct nbd_conn *c, bool hard)
{
	if (hard) {
		c->hard = true;
		/* Replies not yet handed to libuv are dropped here. */
		struct nbd_req *r;
		while ((r = TAILQ_FIRST(&c->outq)) != NULL) {
			TAILQ_REMOVE(&c->outq, r, out_link);
			c->nout--;
			nbd_conn_free_req(c, r);
		}
	}
	if (!c->closing) {
		c->closing = true;
		c->state = NBD_CONN_CLOSED;
		if (c->cur) {
			/* Never reached the engine. */
			nbd_conn_free_req(c, c->cur);
			c->cur = NULL;
		}
		nbd_conn_update_reading(c);
	}
	nbd_conn_maybe_finish(c);
}

void nbd_conn_req_done(struct nbd_conn *c, struct nbd_req *r)
{
	nbd_conn_free_req(c, r);
	if (c->closing) {
		nbd_conn_maybe_finish(c);
		return;
	}
	/* Caps freed up: parse what is staged, then read again. */
	if (nbd_conn_at_boundary(c) && !nbd_conn_full(c))
		nbd_conn_process(c);
}

static void nbd_conn_wrote(uv_write_t *wr, int status)
{
	struct nbd_conn_wbuf *w = container_of(wr, struct nbd_conn_wbuf, wr);
	struct nbd_conn *c = w->conn;
	free(w);
	c->nwrites--;
	if (status < 0 && !c->closing) {
		log_debug(NBD_LOG, "conn %llu %s: write: %s",
			  (unsigned long long)c->base.id, c->peer,
			  uv_strerror(status));
		nbd_conn_close(c, true);
		return;
	}
	if (c->closing)
		nbd_conn_maybe_finish(c);
	else if (nbd_conn_at_boundary(c) && !nbd_conn_full(c))
		nbd_conn_process(c);
}

/* One write carrying a batch of replies. */
struct nbd_conn_batch {
	uv_write_t wr;
	struct nbd_conn *conn;
	unsigned n;
	struct nbd_req *reqs[NBD_REPLY_BATCH];
};

static void nbd_conn_batch_written(uv_write_t *wr, int status)
{
	struct nbd_conn_batch *b =
	    container_of(wr, struct nbd_conn_batch, wr);
	struct nbd_conn *c = b->conn;
	if (status < 0 && !c->closing) {
		log_debug(NBD_LOG, "conn %llu %s: reply: %s",
			  (unsigned long long)c->base.id, c->peer,
			  uv_strerror(status));
		nbd_conn_close(c, true);
	}
	for (unsigned i = 0; i < b->n; i++)
		nbd_conn_req_done(c, b->reqs[i]);
	free(b);
}

void nbd_conn_queue_reply(struct nbd_conn *c, struct nbd_req *r)
{
	TAILQ_INSERT_TAIL(&c->outq, r, out_link);
	c->nout++;
	srv_want_flush(&c->srv->net);
}

/* Fewer, larger writes: one syscall for all replies of a loop turn, and
 * the client reads them in fewer wake-ups. The flush runs from a
 * uv_prepare, i.e. before the loop next blocks: a reply queued anywhere in
 * a turn (IO completion, or the engine's run queue) never waits for an
 * unrelated wake-up. */
void nbd_conn_flush(struct nbd_conn *c)
{
	/* A batch the socket takes at once is released here (srv_write); a
	 * connection that stopped parsing at its caps always queues, so that
	 * the write callback resumes it (the flush hook must not produce new
	 * output, and parsing can). */
	bool try = !nbd_conn_full(c);
	while (c->nout) {
		struct nbd_conn_batch *b = malloc(sizeof(*b));
		if (!b) {
			nbd_conn_close(c, true);
			return;
		}
		b->conn = c;
		b->n = 0;
		uv_buf_t bufs[3 * NBD_REPLY_BATCH];
		unsigned nb = 0;
		while (c->nout && b->n < NBD_REPLY_BATCH) {
			struct nbd_req *r = TAILQ_FIRST(&c->outq);
			TAILQ_REMOVE(&c->outq, r, out_link);
			c->nout--;
			b->reqs[b->n++] = r;
			bufs[nb++] = uv_buf_init((char *)r->reply,
						 r->reply_len);
			if (r->rq.type == NBD_CMD_READ && r->err == NBD_OK)
				bufs[nb++] = uv_buf_init(r->buf, r->rq.len);
			if (r->extra_len)
				bufs[nb++] = uv_buf_init((char *)r->extra,
							 r->extra_len);
		}
		int rc = srv_write((uv_stream_t *)&c->tcp, &b->wr, bufs, nb, try,
				   nbd_conn_batch_written);
		if (rc == 1) {
			for (unsigned i = 0; i < b->n; i++)
				nbd_conn_free_req(c, b->reqs[i]);
			free(b);
			continue;
		}
		if (rc < 0) {
			nbd_conn_close(c, true);
			for (unsigned i = 0; i < b->n; i++)
				nbd_conn_req_done(c, b->reqs[i]);
			free(b);
			return;
		}
		try = false; /* the rest queues behind it, in order */
	}
	if (c->closing)
		nbd_conn_maybe_finish(c);
}

void nbd_conn_flush_cb(struct srv_conn *base)
{
	struct nbd_conn *c = container_of(base, struct nbd_conn, base);
	if (c->nout)
		nbd_conn_flush(c);
}

/* Connections still in the handshake have nothing in flight and are
 * dropped at once; connections in transmission stop reading, finish their
 * requests and send the replies (§ Terminating the transmission phase: "On
 * a server shutdown, the server SHOULD wait for inflight requests to be
 * serviced prior to initiating a hard disconnect"), within the grace
 * period; replies still queued then are dropped. */
void nbd_conn_shutdown(struct srv_conn *base, bool grace_over)
{
	struct nbd_conn *c = container_of(base, struct nbd_conn, base);
	nbd_conn_close(c, grace_over || c->state < NBD_CONN_REQ_HEADER);
}

int nbd_conn_send(struct nbd_conn *c, const void *data, size_t len)
{
	struct nbd_conn_wbuf *w = malloc(sizeof(*w) + len);
	if (!w) {
		nbd_conn_close(c, true);
		return -ENOMEM;
	}
	memcpy(w->data, data, len);
	w->conn = c;
	uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)len);
	int rc =
	    uv_write(&w->wr, (uv_stream_t *)&c->tcp, &b, 1, nbd_conn_wrote);
	if (rc < 0) {
		free(w);
		nbd_conn_close(c, true);
		return rc;
	}
	c->nwrites++;
	return 0;
}

/* Bytes the current state needs staged before its handler can run. */
static size_t nbd_conn_need(const struct nbd_conn *c)
{
	switch (c->state) {
	case NBD_CONN_CLIENT_FLAGS:
		return NBD_CLIENT_FLAGS_SIZE;
	case NBD_CONN_OPT_HEADER:
		return NBD_OPT_HEADER_SIZE;
	case NBD_CONN_OPT_DATA:
		return c->opt.len;
	case NBD_CONN_REQ_HEADER:
		return NBD_REQUEST_SIZE;
	default:
		return 0;
	}
}

/* Consumes staged bytes of a payload being skipped; true when done. */
static bool nbd_conn_skip(struct nbd_conn *c)
{
	size_t n = (size_t)MIN((uint64_t)(c->wpos - c->rpos), c->skip);
	c->rpos += n;
	c->skip -= n;
	return c->skip == 0;
}

static void nbd_conn_process(struct nbd_conn *c)
{
	if (c->in_process)
		return;
	c->in_process = true;
	while (!c->closing) {
		if (c->state == NBD_CONN_OPT_SKIP ||
		    c->state == NBD_CONN_REQ_DRAIN) {
			if (!nbd_conn_skip(c))
				break;
			if (c->state == NBD_CONN_OPT_SKIP)
				nbd_handshake_opt_skipped(c);
			else
				nbd_cmd_drained(c);
			continue;
		}
		if (c->state == NBD_CONN_REQ_PAYLOAD)
			break; /* read straight into the request */
		if (nbd_conn_at_boundary(c) && nbd_conn_full(c))
			break;
		size_t need = nbd_conn_need(c);
		if (c->wpos - c->rpos < need)
			break;
		const uint8_t *p = c->rbuf + c->rpos;
		c->rpos += need;
		switch (c->state) {
		case NBD_CONN_CLIENT_FLAGS:
			nbd_handshake_client_flags(c, p);
			break;
		case NBD_CONN_OPT_HEADER:
			nbd_handshake_opt_header(c, p);
			break;
		case NBD_CONN_OPT_DATA:
			nbd_handshake_opt_data(c, p);
			break;
		case NBD_CONN_REQ_HEADER:
			nbd_cmd_header(c, p);
			break;
		default:
			break;
		}
	}
	if (c->rpos == c->wpos)
		c->rpos = c->wpos = 0;
	c->in_process = false;
	nbd_conn_update_reading(c);
	nbd_conn_maybe_finish(c);
}

static void nbd_conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)suggested;
	struct nbd_conn *c = container_of((uv_tcp_t *)h, struct nbd_conn, tcp);
	if (c->state == NBD_CONN_REQ_PAYLOAD) {
		struct nbd_req *r = c->cur;
		*buf = uv_buf_init((char *)r->buf + r->got, r->rq.len - r->got);
		return;
	}
	if (c->rpos) {
		memmove(c->rbuf, c->rbuf + c->rpos, c->wpos - c->rpos);
		c->wpos -= c->rpos;
		c->rpos = 0;
	}
	*buf = uv_buf_init((char *)c->rbuf + c->wpos,
			   (unsigned)(NBD_RBUF_SIZE - c->wpos));
}

static void nbd_conn_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	(void)buf;
	struct nbd_conn *c = container_of((uv_tcp_t *)s, struct nbd_conn, tcp);
	if (nread == 0)
		return;
	if (nread < 0) {
		/* EOF: the client may still read replies (half close). */
		if (nread != UV_EOF)
			log_debug(NBD_LOG, "conn %llu %s: read: %s",
				  (unsigned long long)c->base.id, c->peer,
				  uv_strerror((int)nread));
		nbd_conn_close(c, nread != UV_EOF);
		return;
	}
	if (c->state == NBD_CONN_REQ_PAYLOAD) {
		c->cur->got += (uint32_t)nread;
		if (c->cur->got == c->cur->rq.len)
			nbd_cmd_payload_done(c);
	} else {
		c->wpos += (size_t)nread;
	}
	nbd_conn_process(c);
}

/* Reading is paused while closing, and between messages while a cap is
 * reached; a WRITE payload already started is always read to its end. */
static void nbd_conn_update_reading(struct nbd_conn *c)
{
	bool want =
	    !c->closing && !(nbd_conn_at_boundary(c) && nbd_conn_full(c));
	if (want == c->reading || c->handle_closing)
		return;
	int rc = want ? uv_read_start((uv_stream_t *)&c->tcp, nbd_conn_alloc,
				      nbd_conn_read)
		      : uv_read_stop((uv_stream_t *)&c->tcp);
	if (rc < 0) {
		log_warn(NBD_LOG, "conn %llu %s: read start: %s",
			 (unsigned long long)c->base.id, c->peer, uv_strerror(rc));
		c->reading = false;
		nbd_conn_close(c, true);
		return;
	}
	c->reading = want;
}

/* srv_conn_accept's discard: the handle was never initialised. */
static void nbd_conn_discard(struct srv_conn *base)
{
	struct nbd_conn *c = container_of(base, struct nbd_conn, base);
	free(c->rbuf);
	free(c);
}

int nbd_conn_accept(struct srv *net)
{
	struct nbd_server *srv = container_of(net, struct nbd_server, net);
	struct nbd_conn *c = calloc(1, sizeof(*c));
	uint8_t *rbuf = malloc(NBD_RBUF_SIZE);
	if (!c || !rbuf) {
		free(c);
		free(rbuf);
		return -ENOMEM;
	}
	c->srv = srv;
	c->rbuf = rbuf;
	TAILQ_INIT(&c->outq);
	/* § Protocol phases: "both the client and server SHOULD disable
	 * Nagle's algorithm" (srv_conn_accept does). */
	int rc = srv_conn_accept(net, &c->base, &c->tcp, c->peer,
				 sizeof(c->peer), nbd_conn_discard);
	if (rc < 0)
		return rc;
	nbd_handshake_start(c);
	nbd_conn_update_reading(c);
	return 0;
}
