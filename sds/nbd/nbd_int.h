/* NBD server internals, shared by the sources in sds/nbd/ only.
 *
 *   nbd_server.c     listener, connection list, export lookup, shutdown
 *   nbd_conn.c       one TCP connection: input staging, flow control,
 *                    output, close
 *   nbd_handshake.c  fixed newstyle option haggling
 *   nbd_cmd.c        transmission: requests to sds IOs and replies
 *   nbd_proto.c      pure wire codec and validation
 *
 * Threading: one uv loop (the pool's); no locks. A connection reads into a
 * staging buffer and parses in order; a WRITE payload past its header is
 * read straight into the request's aligned buffer. Requests run in the
 * engine concurrently and reply in completion order (§ Transmission:
 * "Replies need not be sent in the same order as requests").
 */
#ifndef CAIRN_NBD_INT_H
#define CAIRN_NBD_INT_H

#include <cairn/nbd.h>
#include <cairn/sds.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <uv.h>

#include "nbd_proto.h"
#include "srv.h"

#define NBD_LOG "nbd"
#define NBD_RBUF_SIZE (64u << 10)  /* staging; holds any accepted option */
#define NBD_PREF_BLOCK 4096u	   /* NBD_INFO_BLOCK_SIZE preferred */
#define NBD_SHUTDOWN_GRACE_MS 5000 /* replies may still drain this long */
#define NBD_IO_ALIGN 4096u	   /* the engine reads with O_DIRECT */
#define NBD_HANDSHAKE_MAX_WRITES 8 /* unsent option replies before pausing */
#define NBD_REPLY_BATCH 256	   /* replies gathered into one write */

struct nbd_conn;
struct nbd_req;
TAILQ_HEAD(nbd_connq, nbd_conn);
TAILQ_HEAD(nbd_reqq, nbd_req);

struct nbd_server {
	struct srv net; /* listener, connections, flush, shutdown (lib/srv) */
	uv_loop_t *loop;
	struct sds_pool *pool;
	char *default_export;
	unsigned max_inflight;
	size_t max_inflight_bytes;
};

enum nbd_conn_state {
	NBD_CONN_CLIENT_FLAGS, /* handshake: waiting for client flags */
	NBD_CONN_OPT_HEADER,   /* option haggling */
	NBD_CONN_OPT_DATA,
	NBD_CONN_OPT_SKIP,    /* discarding an option too big to accept */
	NBD_CONN_REQ_HEADER,  /* transmission */
	NBD_CONN_REQ_PAYLOAD, /* receiving a WRITE payload into cur->buf */
	NBD_CONN_REQ_DRAIN,   /* discarding the payload of a refused WRITE */
	NBD_CONN_CLOSED,
};

struct nbd_conn {
	struct srv_conn base; /* in the server's list; base.id for logs */
	struct nbd_server *srv;
	uv_tcp_t tcp;
	char peer[64];
	enum nbd_conn_state state;

	/* Input staging: bytes [rpos, wpos) of rbuf are unparsed. */
	uint8_t *rbuf;
	size_t rpos, wpos;
	uint64_t skip; /* OPT_SKIP / REQ_DRAIN: bytes left */

	/* Handshake. */
	bool no_zeroes;	       /* client set NBD_FLAG_C_NO_ZEROES */
	bool structured;       /* NBD_OPT_STRUCTURED_REPLY negotiated */
	bool meta_alloc;       /* base:allocation selected */
	struct nbd_option opt; /* option being received */
	uint8_t *obuf;	       /* option replies being assembled */
	size_t olen, ocap;

	/* Transmission. */
	struct sds_vdisk *vd;
	struct nbd_export_limits lim;
	struct nbd_req *cur;	     /* WRITE whose payload is arriving */
	struct nbd_request drain_rq; /* refused WRITE being drained */
	uint32_t drain_err;

	/* Replies ready to go, written together once per loop turn. */
	struct nbd_reqq outq;
	unsigned nout;

	/* Accounting for flow control and close. */
	unsigned nreq;	  /* live requests (engine or reply write) */
	unsigned nio;	  /* requests inside the engine */
	size_t nbytes;	  /* their buffer bytes */
	unsigned nwrites; /* handshake writes in flight */

	bool reading;	 /* uv_read_start is active */
	bool in_process; /* nbd_conn_process on the stack */
	bool closing;
	bool hard;	     /* closing without waiting for replies */
	bool handle_closing; /* uv_close called */
};

struct nbd_req {
	struct sds_io io;
	struct nbd_conn *conn;
	TAILQ_ENTRY(nbd_req) out_link;
	struct nbd_request rq;
	uint32_t err; /* the reply's error: READ data follows only when 0 */
	uint8_t reply_len;
	uint8_t *extra; /* BLOCK_STATUS descriptors, sent after the reply */
	uint32_t extra_len;
	void *buf;    /* READ / WRITE data, NBD_IO_ALIGN-aligned */
	uint32_t got; /* WRITE payload bytes received */
	/* simple reply, or structured header + error or read offset */
	uint8_t reply[NBD_STRUCTURED_REPLY_SIZE + 8];
};

/* nbd_server.c */
/* Opens the vdisk behind an export name (empty: the default export).
 * Returns 0, or -ENOENT with a message in msg. */
int nbd_server_open_export(struct nbd_server *srv, const char *name, size_t len,
			   struct sds_vdisk **out, char *msg, size_t msglen);

/* nbd_conn.c */
/* lib/srv ops (srv.h) */
int nbd_conn_accept(struct srv *net);
void nbd_conn_flush_cb(struct srv_conn *base);
void nbd_conn_shutdown(struct srv_conn *base, bool grace_over);
/* Queues bytes for the peer (copied). Returns 0 or -errno; on error the
 * connection is being closed. */
int nbd_conn_send(struct nbd_conn *c, const void *data, size_t len);
/* Queues a request's encoded reply; the server's prepare handle writes the
 * gathered replies of every connection before the loop next blocks. */
void nbd_conn_queue_reply(struct nbd_conn *c, struct nbd_req *r);
void nbd_conn_flush(struct nbd_conn *c);
/* hard: drop queued replies once the engine has returned every request;
 * soft: also wait for replies to be written. */
void nbd_conn_close(struct nbd_conn *c, bool hard);
/* A request's engine work or reply write ended: update accounting, close
 * or resume reading as due. */
void nbd_conn_req_done(struct nbd_conn *c, struct nbd_req *r);

/* nbd_handshake.c */
void nbd_handshake_start(struct nbd_conn *c);
void nbd_handshake_client_flags(struct nbd_conn *c, const uint8_t *p);
void nbd_handshake_opt_header(struct nbd_conn *c, const uint8_t *p);
void nbd_handshake_opt_data(struct nbd_conn *c, const uint8_t *p);
void nbd_handshake_opt_skipped(struct nbd_conn *c);

/* nbd_cmd.c */
void nbd_cmd_header(struct nbd_conn *c, const uint8_t *p);
/* The payload of c->cur is complete: submit it. */
void nbd_cmd_payload_done(struct nbd_conn *c);
void nbd_cmd_drained(struct nbd_conn *c);

#endif
