/* A TCP server on a libuv loop, the part every protocol server repeats:
 * the listener, the list of connections, output gathered and written once
 * per loop turn (a uv_prepare: before the loop next blocks), and the
 * graceful shutdown (listener closed, connections asked to finish, a grace
 * timer after which they are closed hard, the owner freed once the last
 * handle is closed). Used by the iSCSI target (vaai/iscsi/) and the NBD
 * server (sds/nbd/); what a connection does is theirs, behind struct
 * srv_ops.
 *
 * The owner embeds a struct srv and its connections embed a struct
 * srv_conn; container_of gets back to theirs. One loop, no locks. */
#ifndef CAIRN_SRV_H
#define CAIRN_SRV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <uv.h>

struct srv;

struct srv_conn {
	TAILQ_ENTRY(srv_conn) link;
	uint64_t id; /* unique per server, for logs */
};

#define SRV_OPS_VERSION 1

/* Every member is required (srv_init checks). */
struct srv_ops {
	unsigned version; /* SRV_OPS_VERSION */
	const char *name; /* log subsystem and error prefix: "iscsi" */
	/* A connection waits on s->listener: uv_accept it, srv_conn_add it.
	 * 0 or -errno (logged). */
	int (*accept)(struct srv *s);
	/* Once per loop turn after srv_want_flush: write what c has
	 * queued. */
	void (*flush)(struct srv_conn *c);
	/* Shutdown: finish c and close it (grace_over: at once, dropping
	 * what is unsent). The connection calls srv_conn_gone when its
	 * handle is closed. */
	void (*shutdown)(struct srv_conn *c, bool grace_over);
	/* Every connection and handle is gone: free the owner (s with it). */
	void (*closed)(struct srv *s);
};

struct srv {
	uv_loop_t *loop;
	const struct srv_ops *ops;
	uv_tcp_t listener;
	uv_timer_t grace;
	uv_prepare_t flush;
	unsigned handles_open;
	uint16_t port; /* bound port (the kernel's choice for port 0) */
	uint64_t next_conn_id;
	TAILQ_HEAD(, srv_conn) conns;
	bool closing, listener_closed;
	void (*close_cb)(void *arg);
	void *close_arg;
};

/* Initialises the handles; -EINVAL when ops is incomplete. */
int srv_init(struct srv *s, uv_loop_t *loop, const struct srv_ops *ops);
/* Resolves host:port (numeric port; getaddrinfo blocks, once at start),
 * binds and listens. 0, or -errno with a message in err; then call
 * srv_abort. */
int srv_listen(struct srv *s, const char *host, uint16_t port, int backlog,
	       char *err, size_t errlen);
/* After srv_init, when the start fails: the handles close on the loop and
 * ops->closed frees the owner. */
void srv_abort(struct srv *s);
/* Graceful shutdown: stop listening, ops->shutdown(c, false) for every
 * connection, ops->shutdown(c, true) for those left after grace_ms; cb
 * once the owner is freed. */
void srv_close(struct srv *s, unsigned grace_ms, void (*cb)(void *arg),
	       void *arg);

void srv_conn_add(struct srv *s, struct srv_conn *c);
/* The accept sequence of ops->accept, after the owner has allocated its
 * connection c with its handle tcp beside it: initialises tcp, adds c
 * (srv_conn_add), accepts the connection waiting on s->listener, turns
 * Nagle's algorithm off (both protocols want small responses out at once)
 * and writes the peer's "HOST:PORT" in peer. 0, or -errno: when tcp could
 * not be initialised c is not added and discard(c) frees it; once it is,
 * ops->shutdown(c, true) closes it like any other connection (its close
 * callback frees it). */
int srv_conn_accept(struct srv *s, struct srv_conn *c, uv_tcp_t *tcp,
		    char *peer, size_t peerlen,
		    void (*discard)(struct srv_conn *c));
void srv_conn_gone(struct srv *s, struct srv_conn *c);
/* ops->flush runs for every connection before the loop next blocks. */
void srv_want_flush(struct srv *s);

/* Writes bufs[0..nb) to s. With try set (the caller has no write queued
 * whose callback it still needs, e.g. to resume reading), first by
 * uv_try_write: when the socket takes it all, as it nearly always does,
 * returns 1 and cb never runs (no write request, no callback on the next
 * turn, no poll-set change), and the caller releases the buffers. Else
 * what is left goes to uv_write(wr, ..., cb) and it returns 0, or a
 * negative libuv error with nothing queued. Never produces output of its
 * own, so it may run in the flush hook. */
int srv_write(uv_stream_t *s, uv_write_t *wr, uv_buf_t *bufs, unsigned nb,
	      bool try, uv_write_cb cb);

/* "HOST:PORT" ("[V6]:PORT"), or "HOST" / "[V6]" without the port, of the
 * peer (peer=true) or of our end of a connection. */
void srv_addr(uv_tcp_t *tcp, bool peer, bool with_port, char *out, size_t len);

#endif
