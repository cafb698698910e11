/* NBD server: the listener, the set of connections, export lookup and the
 * shutdown sequence. See include/cairn/nbd.h and docs/nbd.md. */
#include <errno.h>
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

/* srv_ops.closed: every connection and handle is gone. */
static void nbd_server_closed(struct srv *net)
{
	struct nbd_server *srv = container_of(net, struct nbd_server, net);
	free(srv->default_export);
	free(srv);
}

static const struct srv_ops nbd_server_ops = {
    .version = SRV_OPS_VERSION,
    .name = NBD_LOG,
    .accept = nbd_conn_accept,
    .flush = nbd_conn_flush_cb,
    .shutdown = nbd_conn_shutdown,
    .closed = nbd_server_closed,
};

int nbd_server_start(uv_loop_t *loop, struct sds_pool *pool,
		     const struct nbd_server_opts *opts,
		     struct nbd_server **out, char *err, size_t errlen)
{
	const char *host = opts->host ? opts->host : "127.0.0.1";
	struct nbd_server *srv = calloc(1, sizeof(*srv));
	if (!srv || (opts->default_export &&
		     !(srv->default_export = strdup(opts->default_export))) ||
	    srv_init(&srv->net, loop, &nbd_server_ops) < 0) {
		if (srv)
			free(srv->default_export);
		free(srv);
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
	int rc = srv_listen(&srv->net, host, opts->port, NBD_SERVER_BACKLOG,
			    err, errlen);
	if (rc < 0) {
		/* The handles close on the loop; the server is freed from
		 * the last close callback. */
		srv_abort(&srv->net);
		return rc;
	}
	log_info(NBD_LOG, "listening on %s:%u", host,
		 (unsigned)srv->net.port);
	*out = srv;
	return 0;
}

uint16_t nbd_server_port(const struct nbd_server *srv)
{
	return srv->net.port;
}

/* Handshakes are dropped at once; transmissions finish their requests
 * first, within NBD_SHUTDOWN_GRACE_MS (nbd_conn_shutdown). */
void nbd_server_close(struct nbd_server *srv, void (*cb)(void *arg), void *arg)
{
	srv_close(&srv->net, NBD_SHUTDOWN_GRACE_MS, cb, arg);
}
