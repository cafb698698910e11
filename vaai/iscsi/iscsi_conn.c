/* One iSCSI connection: framing PDUs out of the byte stream (§ 11.2),
 * checking digests (§ 13.1, § 7.8), queueing and writing responses, and
 * the close protocol. What a PDU means is decided in iscsi_login.c and
 * iscsi_scsi.c; this file only moves bytes and keeps the counts. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iscsi_int.h"
#include "log.h"
#include "util.h"

static void iscsi_conn_process(struct iscsi_conn *c);
static void iscsi_conn_update_reading(struct iscsi_conn *c);

static void iscsi_conn_closed(uv_handle_t *h)
{
	struct iscsi_conn *c =
	    container_of((uv_tcp_t *)h, struct iscsi_conn, tcp);
	log_debug(ISCSI_LOG, "conn %llu %s closed", (unsigned long long)c->base.id,
		  c->peer);
	if (c->sess)
		iscsi_session_remove_conn(c->sess, c);
	iscsi_nop_stop(c);
	iscsi_login_free(&c->login);
	iscsi_scsi_text_drop(c);
	free(c->rbuf);
	srv_conn_gone(&c->srv->net, &c->base);
	free(c);
}

static void iscsi_out_free(struct iscsi_server *srv, struct iscsi_out *o)
{
	if (o->task)
		iscsi_conn_task_put(o->task);
	if (o->pooled)
		freelist_put(&srv->out_fl, o);
	else
		free(o);
}

/* The handle closes once the SCSI core has returned every command (their
 * scsi_cmd belongs to it until then) and, for a soft close, once every
 * queued PDU is written. uv_close cancels writes still queued; their
 * callbacks run before iscsi_conn_closed. */
static void iscsi_conn_maybe_finish(struct iscsi_conn *c)
{
	if (!c->closing || c->handle_closing || c->in_process || c->nio)
		return;
	if (!c->hard && (c->nout || c->nwriting))
		return;
	struct iscsi_out *o;
	while ((o = TAILQ_FIRST(&c->outq)) != NULL) {
		TAILQ_REMOVE(&c->outq, o, link);
		c->nout--;
		iscsi_out_free(c->srv, o);
	}
	c->handle_closing = true;
	uv_close((uv_handle_t *)&c->tcp, iscsi_conn_closed);
}

void iscsi_conn_close(struct iscsi_conn *c, bool hard)
{
	if (hard)
		c->hard = true;
	if (!c->closing) {
		c->closing = true;
		c->state = ISCSI_CONN_CLOSED;
		iscsi_nop_stop(c);
		iscsi_scsi_drop_tasks(c);
		iscsi_conn_update_reading(c);
	}
	iscsi_conn_maybe_finish(c);
}

uint32_t iscsi_conn_new_ttt(struct iscsi_conn *c)
{
	uint32_t ttt = c->next_ttt++;
	if (c->next_ttt == ISCSI_RSVD_TAG)
		c->next_ttt = 1;
	return ttt;
}

void iscsi_conn_io_done(struct iscsi_conn *c)
{
	if (c->closing) {
		iscsi_conn_maybe_finish(c);
		return;
	}
	if (c->state == ISCSI_CONN_LOGOUT)
		iscsi_scsi_logout_check(c);
}

struct iscsi_out *iscsi_out_new(struct iscsi_conn *c, uint8_t opcode,
				uint8_t flags, const void *data, uint32_t dlen,
				bool copy)
{
	bool pooled = !copy || dlen <= ISCSI_OUT_SMALL;
	struct iscsi_out *o = pooled ? freelist_get(&c->srv->out_fl)
				     : malloc(sizeof(*o) + dlen);
	if (!o) {
		iscsi_conn_close(c, true);
		return NULL;
	}
	memset(o, 0, sizeof(*o));
	o->pooled = pooled;
	iscsi_pdu_init(o->hdr, opcode, flags, dlen);
	o->dlen = dlen;
	if (copy && dlen) {
		memcpy(o->own, data, dlen);
		o->data = o->own;
	} else {
		o->data = data;
	}
	return o;
}

void iscsi_conn_queue(struct iscsi_conn *c, struct iscsi_out *o, bool stat)
{
	if (c->hard || c->handle_closing) {
		iscsi_out_free(c->srv, o);
		return;
	}
	uint8_t *h = o->hdr;
	uint8_t op = h[0] & 0x3f;
	/* § 11.2.1: every target PDU but R2T carries a StatSN it consumes
	 * only when it is a status; R2T and non-final Data-In carry the
	 * next one without consuming it (§ 11.8.1). Data-In without status
	 * has StatSN reserved. */
	if (stat)
		put_be32(h + 24, c->stat_sn++);
	else if (op == ISCSI_OP_R2T || op == ISCSI_OP_NOP_IN)
		put_be32(h + 24, c->stat_sn);
	if (c->sess && op != ISCSI_OP_LOGIN_RSP) {
		put_be32(h + 28, c->sess->exp_cmdsn);
		put_be32(h + 32, iscsi_session_max_cmdsn(c->sess));
	}
	if (c->hdigest)
		iscsi_digest_put(h + ISCSI_BHS_SIZE,
				 iscsi_digest(h, ISCSI_BHS_SIZE));
	uint32_t pad = iscsi_pad4(o->dlen);
	o->hlen = ISCSI_BHS_SIZE + (c->hdigest ? ISCSI_DIGEST_SIZE : 0);
	o->tlen = 0;
	if (o->dlen) {
		o->tlen = (uint8_t)pad;
		if (c->ddigest) {
			uint32_t crc =
			    iscsi_digest2(o->data, o->dlen, o->tail, pad);
			iscsi_digest_put(o->tail + pad, crc);
			o->tlen += ISCSI_DIGEST_SIZE;
		}
	}
	TAILQ_INSERT_TAIL(&c->outq, o, link);
	c->nout++;
	srv_want_flush(&c->srv->net);
}

static bool iscsi_conn_full(const struct iscsi_conn *c)
{
	return c->nout + c->nwriting >= ISCSI_OUT_PAUSE;
}

struct iscsi_batch {
	uv_write_t wr;
	struct iscsi_conn *conn;
	unsigned n;
	struct iscsi_out *outs[ISCSI_OUT_BATCH];
};

static void iscsi_batch_written(uv_write_t *wr, int status)
{
	struct iscsi_batch *b = container_of(wr, struct iscsi_batch, wr);
	struct iscsi_conn *c = b->conn;
	c->nwriting -= b->n;
	for (unsigned i = 0; i < b->n; i++)
		iscsi_out_free(c->srv, b->outs[i]);
	freelist_put(&c->srv->batch_fl, b);
	if (status < 0 && !c->closing) {
		log_debug(ISCSI_LOG, "conn %llu %s: write: %s",
			  (unsigned long long)c->base.id, c->peer,
			  uv_strerror(status));
		iscsi_conn_close(c, true);
		return;
	}
	if (c->closing) {
		iscsi_conn_maybe_finish(c);
		return;
	}
	if (c->close_after_send && !c->nout && !c->nwriting) {
		iscsi_conn_close(c, false);
		return;
	}
	/* Output drained below the cap: parse what is staged. */
	iscsi_conn_process(c);
}

/* One write per loop turn and connection: headers, data and padding of up
 * to ISCSI_OUT_BATCH PDUs gathered (fewer syscalls, fewer wake-ups for the
 * initiator). Runs from the server's uv_prepare. A batch the socket takes
 * at once is freed here (srv_write); a connection whose reading waits for
 * its output to drain always queues, so that the write callback resumes it
 * (the flush hook must not produce new output). */
void iscsi_conn_flush(struct iscsi_conn *c)
{
	bool try = !iscsi_conn_full(c);
	while (c->nout) {
		struct iscsi_batch *b = freelist_get(&c->srv->batch_fl);
		if (!b) {
			iscsi_conn_close(c, true);
			return;
		}
		b->conn = c;
		b->n = 0;
		uv_buf_t bufs[3 * ISCSI_OUT_BATCH];
		unsigned nb = 0;
		while (c->nout && b->n < ISCSI_OUT_BATCH) {
			struct iscsi_out *o = TAILQ_FIRST(&c->outq);
			TAILQ_REMOVE(&c->outq, o, link);
			c->nout--;
			b->outs[b->n++] = o;
			bufs[nb++] = uv_buf_init((char *)o->hdr, o->hlen);
			if (o->dlen) {
				bufs[nb++] =
				    uv_buf_init((char *)o->data, o->dlen);
				if (o->tlen)
					bufs[nb++] = uv_buf_init(
					    (char *)o->tail, o->tlen);
			}
		}
		int rc = srv_write((uv_stream_t *)&c->tcp, &b->wr, bufs, nb, try,
				   iscsi_batch_written);
		if (rc != 0) { /* written at once, or failed */
			for (unsigned i = 0; i < b->n; i++)
				iscsi_out_free(c->srv, b->outs[i]);
			freelist_put(&c->srv->batch_fl, b);
			if (rc < 0) {
				iscsi_conn_close(c, true);
				return;
			}
			continue;
		}
		c->nwriting += b->n;
		try = false; /* the rest queues behind it, in order */
	}
	/* What iscsi_batch_written does once the output has drained. */
	if (c->closing)
		iscsi_conn_maybe_finish(c);
	else if (c->close_after_send && !c->nwriting)
		iscsi_conn_close(c, false);
}

/* How many of each object a server keeps for reuse: a queue depth's
 * worth of commands on a few connections. */
#define ISCSI_FL_TASKS 512u
#define ISCSI_FL_OUTS 1024u
#define ISCSI_FL_BATCHES 16u
#define ISCSI_FL_BUFS 512u /* 4 KiB buffers; fewer of the larger classes */

void iscsi_conn_pools_init(struct iscsi_server *srv)
{
	freelist_init(&srv->task_fl, sizeof(struct iscsi_task),
		      ISCSI_FL_TASKS);
	freelist_init(&srv->out_fl, sizeof(struct iscsi_out) + ISCSI_OUT_SMALL,
		      ISCSI_FL_OUTS);
	freelist_init(&srv->batch_fl, sizeof(struct iscsi_batch),
		      ISCSI_FL_BATCHES);
	bufpool_init(&srv->bufs, ISCSI_IO_ALIGN, ISCSI_FL_BUFS);
}

void iscsi_conn_pools_drain(struct iscsi_server *srv)
{
	freelist_drain(&srv->task_fl);
	freelist_drain(&srv->out_fl);
	freelist_drain(&srv->batch_fl);
	bufpool_drain(&srv->bufs);
}

void iscsi_conn_flush_cb(struct srv_conn *base)
{
	struct iscsi_conn *c = container_of(base, struct iscsi_conn, base);
	if (c->nout)
		iscsi_conn_flush(c);
}

/* Connections still logging in are dropped at once; the others stop
 * reading, let their commands finish and their responses go out, within
 * the grace period. */
void iscsi_conn_shutdown(struct srv_conn *base, bool grace_over)
{
	struct iscsi_conn *c = container_of(base, struct iscsi_conn, base);
	iscsi_conn_close(c, grace_over || c->state == ISCSI_CONN_LOGIN);
}

void iscsi_conn_reject(struct iscsi_conn *c, const uint8_t *bhs, uint8_t reason)
{
	struct iscsi_out *o = iscsi_out_new(
	    c, ISCSI_OP_REJECT, ISCSI_FLAG_FINAL, bhs, ISCSI_BHS_SIZE, true);
	if (!o)
		return;
	o->hdr[2] = reason;
	put_be32(o->hdr + 16, ISCSI_RSVD_TAG);
	log_debug(ISCSI_LOG, "conn %llu %s: reject opcode 0x%02x reason 0x%02x",
		  (unsigned long long)c->base.id, c->peer, bhs[0] & 0x3f, reason);
	iscsi_conn_queue(c, o, true);
}

/* Handles one whole PDU staged at p: header digest, data digest, then
 * dispatch. */
static void iscsi_conn_pdu(struct iscsi_conn *c, const struct iscsi_bhs *h,
			   uint8_t *p)
{
	size_t ahs_len = (size_t)h->ahs_len * 4;
	uint8_t *ahs = p + ISCSI_BHS_SIZE;
	uint8_t *q = ahs + ahs_len;
	if (c->hdigest) {
		uint32_t want = iscsi_digest(p, ISCSI_BHS_SIZE + ahs_len);
		if (iscsi_digest_get(q) != want) {
			/* § 7.8: a header digest error cannot be trusted to
			 * frame anything: drop the connection. */
			log_info(ISCSI_LOG, "conn %llu %s: header digest error",
				 (unsigned long long)c->base.id, c->peer);
			iscsi_conn_close(c, true);
			return;
		}
		q += ISCSI_DIGEST_SIZE;
	}
	uint8_t *data = q;
	if (h->dlen && c->ddigest) {
		uint32_t pad = iscsi_pad4(h->dlen);
		uint32_t want = iscsi_digest(data, h->dlen + pad);
		if (iscsi_digest_get(data + h->dlen + pad) != want) {
			log_info(ISCSI_LOG, "conn %llu %s: data digest error",
				 (unsigned long long)c->base.id, c->peer);
			/* § 7.8: Reject with Data-Digest-Error, discard. */
			iscsi_conn_reject(c, p, ISCSI_REJECT_DATA_DIGEST);
			iscsi_scsi_digest_error(c, h);
			return;
		}
	}
	if (h->opcode == ISCSI_OP_LOGIN_REQ) {
		iscsi_login_pdu(c, h, data, h->dlen);
		return;
	}
	if (c->state != ISCSI_CONN_FFP) {
		/* § 6.3: only Login PDUs before the full feature phase. */
		log_info(ISCSI_LOG, "conn %llu %s: opcode 0x%02x before login",
			 (unsigned long long)c->base.id, c->peer, h->opcode);
		iscsi_conn_close(c, true);
		return;
	}
	iscsi_scsi_pdu(c, h, ahs, ahs_len, data, h->dlen);
}

static void iscsi_conn_process(struct iscsi_conn *c)
{
	if (c->in_process)
		return;
	c->in_process = true;
	while (!c->closing && c->state != ISCSI_CONN_LOGOUT &&
	       !c->close_after_send && !iscsi_conn_full(c)) {
		size_t avail = c->wpos - c->rpos;
		if (avail < ISCSI_BHS_SIZE)
			break;
		uint8_t *p = c->rbuf + c->rpos;
		struct iscsi_bhs h;
		if (iscsi_pdu_decode_bhs(p, &h) < 0) {
			/* § 11.2.1.2 unknown opcode: Reject, then skip the
			 * PDU if it fits, else drop the connection. */
			log_info(ISCSI_LOG, "conn %llu %s: bad opcode 0x%02x",
				 (unsigned long long)c->base.id, c->peer, p[0]);
			if (c->state != ISCSI_CONN_FFP) {
				iscsi_conn_close(c, true);
				break;
			}
			iscsi_conn_reject(c, p, ISCSI_REJECT_CMD_NOT_SUPPORTED);
		}
		if (h.dlen > c->max_recv_dsl) {
			/* § 13.12: the initiator must not send more than we
			 * declared; we cannot stage it. */
			log_info(ISCSI_LOG,
				 "conn %llu %s: %u-byte data segment exceeds "
				 "%u",
				 (unsigned long long)c->base.id, c->peer, h.dlen,
				 c->max_recv_dsl);
			iscsi_conn_close(c, true);
			break;
		}
		uint64_t total = ISCSI_BHS_SIZE +
				 iscsi_pdu_rest_len(&h, c->hdigest, c->ddigest);
		if (avail < total)
			break;
		c->rpos += (size_t)total;
		if (h.opcode == (p[0] & 0x3f) &&
		    iscsi_pdu_decode_bhs(p, &h) == 0)
			iscsi_conn_pdu(c, &h, p);
	}
	if (c->rpos == c->wpos) {
		c->rpos = c->wpos = 0;
	} else if (c->rpos) {
		/* Keep the unparsed tail at the front, so that a whole PDU
		 * always fits behind it. */
		memmove(c->rbuf, c->rbuf + c->rpos, c->wpos - c->rpos);
		c->wpos -= c->rpos;
		c->rpos = 0;
	}
	c->in_process = false;
	iscsi_conn_update_reading(c);
	iscsi_conn_maybe_finish(c);
}

static void iscsi_conn_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *buf)
{
	(void)suggested;
	struct iscsi_conn *c =
	    container_of((uv_tcp_t *)hd, struct iscsi_conn, tcp);
	/* Keep one byte spare: the key parser terminates text in place. */
	*buf = uv_buf_init((char *)c->rbuf + c->wpos,
			   (unsigned)(c->rcap - 1 - c->wpos));
}

static void iscsi_conn_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	(void)buf;
	struct iscsi_conn *c =
	    container_of((uv_tcp_t *)s, struct iscsi_conn, tcp);
	if (nread == 0)
		return;
	if (nread < 0) {
		if (nread != UV_EOF)
			log_debug(ISCSI_LOG, "conn %llu %s: read: %s",
				  (unsigned long long)c->base.id, c->peer,
				  uv_strerror((int)nread));
		/* Connection loss (§ 7.1): at ErrorRecoveryLevel 0 its
		 * tasks end with it. */
		iscsi_conn_close(c, true);
		return;
	}
	c->wpos += (size_t)nread;
	c->last_rx = uv_now(c->srv->loop);
	iscsi_conn_process(c);
}

static void iscsi_conn_update_reading(struct iscsi_conn *c)
{
	bool want = !c->closing && c->state != ISCSI_CONN_LOGOUT &&
		    !c->close_after_send && !iscsi_conn_full(c) &&
		    c->wpos < c->rcap - 1;
	if (want == c->reading || c->handle_closing)
		return;
	int rc = want ? uv_read_start((uv_stream_t *)&c->tcp, iscsi_conn_alloc,
				      iscsi_conn_read)
		      : uv_read_stop((uv_stream_t *)&c->tcp);
	if (rc < 0) {
		c->reading = false;
		iscsi_conn_close(c, true);
		return;
	}
	c->reading = want;
}

/* srv_conn_accept's discard: the handle was never initialised. */
static void iscsi_conn_discard(struct srv_conn *base)
{
	struct iscsi_conn *c = container_of(base, struct iscsi_conn, base);
	free(c->rbuf);
	free(c);
}

int iscsi_conn_accept(struct srv *net)
{
	struct iscsi_server *srv = container_of(net, struct iscsi_server, net);
	struct iscsi_conn *c = calloc(1, sizeof(*c));
	size_t rcap = ISCSI_BHS_SIZE + ISCSI_AHS_MAX + 2 * ISCSI_DIGEST_SIZE +
		      ISCSI_MAX_RECV_DSL + 4 + 1;
	uint8_t *rbuf = malloc(rcap);
	if (!c || !rbuf) {
		free(c);
		free(rbuf);
		return -ENOMEM;
	}
	c->srv = srv;
	c->rbuf = rbuf;
	c->rcap = rcap;
	c->max_recv_dsl = ISCSI_LOGIN_DSL;
	c->max_send_dsl = ISCSI_LOGIN_DSL;
	c->next_ttt = 1;
	TAILQ_INIT(&c->outq);
	TAILQ_INIT(&c->tasks);
	int rc = srv_conn_accept(net, &c->base, &c->tcp, c->peer,
				 sizeof(c->peer), iscsi_conn_discard);
	if (rc < 0)
		return rc;
	srv_addr(&c->tcp, false, false, c->local, sizeof(c->local));
	iscsi_conn_update_reading(c);
	return 0;
}
