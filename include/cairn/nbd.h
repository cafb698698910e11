/* NBD front end: serves the vdisks of one sds pool over the Network Block
 * Device protocol (fixed newstyle handshake, simple replies) on one TCP
 * listener. Every vdisk is an export under its own name; snapshots are
 * read-only exports. docs/nbd.md lists what is supported.
 *
 * Threading: everything runs on the pool's uv_loop_t. Call these functions
 * on that thread; callbacks come on it too. The process must ignore
 * SIGPIPE (libuv writes sockets with write(2)); cairnd does.
 */
#ifndef CAIRN_NBD_H
#define CAIRN_NBD_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct sds_pool;
struct nbd_server;

#define NBD_SERVER_DEFAULT_PORT 10809 /* IANA */
#define NBD_SERVER_DEFAULT_INFLIGHT 128u
#define NBD_SERVER_DEFAULT_INFLIGHT_BYTES (256u << 20)

struct nbd_server_opts {
	const char *host; /* numeric address or name; NULL: 127.0.0.1 */
	uint16_t port;	  /* 0: the kernel picks; see nbd_server_port */
	/* Vdisk served for an empty export name; NULL: none (clients asking
	 * for the default export are told it is unknown). */
	const char *default_export;
	/* Per connection: the socket is not read while this many requests,
	 * or this many bytes of request buffers, are in flight (0 = the
	 * defaults above). */
	unsigned max_inflight;
	size_t max_inflight_bytes;
};

/* Binds and listens. Returns 0, or -errno with a message in err. */
int nbd_server_start(uv_loop_t *loop, struct sds_pool *pool,
		     const struct nbd_server_opts *opts,
		     struct nbd_server **out, char *err, size_t errlen);

/* The bound port: useful when opts->port was 0. */
uint16_t nbd_server_port(const struct nbd_server *srv);

/* Stops listening, lets each connection's in-flight requests complete and
 * their replies go out (for a bounded time), closes the connections and
 * their vdisk handles, frees the server, then calls cb (if any). The pool
 * can be closed from cb. */
void nbd_server_close(struct nbd_server *srv, void (*cb)(void *arg), void *arg);

#endif
