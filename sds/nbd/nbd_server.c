/* NBD server: the listener, the set of connections, export lookup and the
 * shutdown sequence. See include/cairn/nbd.h and docs/nbd.md. */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "nbd_int.h"
#include "util.h"

#define NBD_SERVER_BACKLOG 128

/* Export names come from the network: never echo raw bytes to logs or
 * back to the client. */
static void nbd_server_sanitize(char *dst, size_t dstlen, const char *src,
				size_t len)
{
	size_t n = MIN(len, dstlen - 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)src[i];
		dst[i] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
	}
	dst[n] = '\0';
}

int nbd_server_open_export(struct nbd_server *srv, const char *name, size_t len,
			   struct sds_vdisk **out, char *msg, size_t msglen)
{
	char buf[SDS_NAME_MAX + 1];
	const char *n = buf;
	if (len == 0) {
		if (!srv->default_export) {
			snprintf(msg, msglen, "no default export");
			return -ENOENT;
		}
		n = srv->default_export;
	} else if (len > SDS_NAME_MAX || memchr(name, '\0', len)) {
		nbd_server_sanitize(buf, sizeof(buf), name, len);
		snprintf(msg, msglen, "unknown export '%s'", buf);
		return -ENOENT;
	} else {
		memcpy(buf, name, len);
		buf[len] = '\0';
	}
	int rc = sds_vdisk_open(srv->pool, n, out);
	if (rc < 0) {
		char safe[SDS_NAME_MAX + 1];
		nbd_server_sanitize(safe, sizeof(safe), n, strlen(n));
		snprintf(msg, msglen, "unknown export '%s': %s", safe,
			 strerror(-rc));
		return -ENOENT;
	}
	return 0;
}

void nbd_server_flush(uv_prepare_t *h)
{
	struct nbd_server *srv = h->data;
	struct nbd_conn *c, *next;
	for (c = TAILQ_FIRST(&srv->conns); c; c = next) {
		next = TAILQ_NEXT(c, link);
		if (c->nout)
			nbd_conn_flush(c);
	}
	uv_prepare_stop(&srv->flush);
}

static void nbd_server_grace_closed(uv_handle_t *h)
{
	struct nbd_server *srv = h->data;
	if (--srv->handles_open)
		return;
	void (*cb)(void *) = srv->close_cb;
	void *arg = srv->close_arg;
	free(srv->default_export);
	free(srv);
	if (cb)
		cb(arg);
}

static void nbd_server_maybe_done(struct nbd_server *srv)
{
	if (!srv->closing || !srv->listener_closed ||
	    !TAILQ_EMPTY(&srv->conns) ||
	    uv_is_closing((uv_handle_t *)&srv->grace))
		return;
	uv_timer_stop(&srv->grace);
	uv_prepare_stop(&srv->flush);
	srv->handles_open = 2;
	uv_close((uv_handle_t *)&srv->grace, nbd_server_grace_closed);
	uv_close((uv_handle_t *)&srv->flush, nbd_server_grace_closed);
}

void nbd_server_conn_gone(struct nbd_server *srv, struct nbd_conn *c)
{
	TAILQ_REMOVE(&srv->conns, c, link);
	nbd_server_maybe_done(srv);
}

static void nbd_server_listener_closed(uv_handle_t *h)
{
	struct nbd_server *srv = h->data;
	srv->listener_closed = true;
	nbd_server_maybe_done(srv);
}

static void nbd_server_connection(uv_stream_t *s, int status)
{
	struct nbd_server *srv = s->data;
	if (status < 0) {
		log_warn(NBD_LOG, "accept: %s", uv_strerror(status));
		return;
	}
	int rc = nbd_conn_accept(srv);
	if (rc < 0)
		log_warn(NBD_LOG, "accept: %s", uv_strerror(rc));
}

/* Replies still queued when the grace period ends are dropped. */
static void nbd_server_grace_expired(uv_timer_t *t)
{
	struct nbd_server *srv = t->data;
	struct nbd_conn *c, *next;
	for (c = TAILQ_FIRST(&srv->conns); c; c = next) {
		next = TAILQ_NEXT(c, link);
		nbd_conn_close(c, true);
	}
}

/* A failed start still owns initialised handles: they are closed on the
 * loop and the server freed from the last close callback. */
static void nbd_server_abort_start(struct nbd_server *srv)
{
	srv->closing = true;
	uv_close((uv_handle_t *)&srv->listener, nbd_server_listener_closed);
}

int nbd_server_start(uv_loop_t *loop, struct sds_pool *pool,
		     const struct nbd_server_opts *opts,
		     struct nbd_server **out, char *err, size_t errlen)
{
	const char *host = opts->host ? opts->host : "127.0.0.1";
	char port[8];
	snprintf(port, sizeof(port), "%u", (unsigned)opts->port);
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
				 .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *ai = NULL;
	/* Once, at start-up: blocking the loop here is harmless. */
	int gai = getaddrinfo(host, port, &hints, &ai);
	if (gai != 0) {
		snprintf(err, errlen, "nbd: cannot resolve %s: %s", host,
			 gai_strerror(gai));
		return -EINVAL;
	}

	struct nbd_server *srv = calloc(1, sizeof(*srv));
	if (!srv || (opts->default_export &&
		     !(srv->default_export = strdup(opts->default_export)))) {
		free(srv);
		freeaddrinfo(ai);
		snprintf(err, errlen, "nbd: out of memory");
		return -ENOMEM;
	}
	srv->loop = loop;
	srv->pool = pool;
	srv->max_inflight = opts->max_inflight ? opts->max_inflight
					       : NBD_SERVER_DEFAULT_INFLIGHT;
	srv->max_inflight_bytes = opts->max_inflight_bytes
				      ? opts->max_inflight_bytes
				      : NBD_SERVER_DEFAULT_INFLIGHT_BYTES;
	TAILQ_INIT(&srv->conns);
	uv_timer_init(loop, &srv->grace);
	srv->grace.data = srv;
	uv_prepare_init(loop, &srv->flush);
	srv->flush.data = srv;
	int rc = uv_tcp_init(loop, &srv->listener);
	if (rc < 0) {
		freeaddrinfo(ai);
		snprintf(err, errlen, "nbd: %s", uv_strerror(rc));
		srv->closing = srv->listener_closed = true;
		nbd_server_maybe_done(srv);
		return rc;
	}
	srv->listener.data = srv;
	rc = uv_tcp_bind(&srv->listener, ai->ai_addr, 0);
	freeaddrinfo(ai);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&srv->listener,
			       NBD_SERVER_BACKLOG, nbd_server_connection);
	if (rc < 0) {
		snprintf(err, errlen, "nbd: cannot listen on %s:%u: %s", host,
			 (unsigned)opts->port, uv_strerror(rc));
		nbd_server_abort_start(srv);
		return rc;
	}
	struct sockaddr_storage ss;
	int sl = sizeof(ss);
	uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&ss, &sl);
	srv->port = ss.ss_family == AF_INET6
			? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
			: ntohs(((struct sockaddr_in *)&ss)->sin_port);
	log_info(NBD_LOG, "listening on %s:%u", host, (unsigned)srv->port);
	*out = srv;
	return 0;
}

uint16_t nbd_server_port(const struct nbd_server *srv)
{
	return srv->port;
}

/* Connections still in the handshake have nothing in flight and are
 * dropped at once; connections in transmission stop reading, finish their
 * requests and send the replies (§ Terminating the transmission phase: "On
 * a server shutdown, the server SHOULD wait for inflight requests to be
 * serviced prior to initiating a hard disconnect"), within
 * NBD_SHUTDOWN_GRACE_MS. */
void nbd_server_close(struct nbd_server *srv, void (*cb)(void *arg), void *arg)
{
	if (srv->closing)
		return;
	srv->closing = true;
	srv->close_cb = cb;
	srv->close_arg = arg;
	uv_close((uv_handle_t *)&srv->listener, nbd_server_listener_closed);
	uv_timer_start(&srv->grace, nbd_server_grace_expired,
		       NBD_SHUTDOWN_GRACE_MS, 0);
	struct nbd_conn *c, *next;
	for (c = TAILQ_FIRST(&srv->conns); c; c = next) {
		next = TAILQ_NEXT(c, link);
		nbd_conn_close(c, c->state < NBD_CONN_REQ_HEADER);
	}
	nbd_server_maybe_done(srv);
}
