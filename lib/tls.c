/* Mutual TLS over libuv: bytes from the socket go into a memory BIO that
 * OpenSSL reads; what OpenSSL writes to the other memory BIO goes out with
 * uv_write. One thread (the loop's); no blocking calls. */
#include "tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

struct tls_ctx {
	SSL_CTX *ssl;
};

struct tls_conn {
	uv_tcp_t tcp;
	SSL *ssl;
	BIO *rbio, *wbio;
	const struct tls_conn_cbs *cbs;
	void *data;
	bool server, handshaken, closing;
	char peer[256];
	char error[256];
};

struct tls_wreq {
	uv_write_t wr;
	char buf[];
};

static void tls__errstr(char *out, size_t len, const char *what)
{
	unsigned long e = ERR_get_error();
	char buf[200] = "";
	if (e)
		ERR_error_string_n(e, buf, sizeof(buf));
	snprintf(out, len, "%s%s%s", what, e ? ": " : "", buf);
	ERR_clear_error();
}

int tls_ctx_create(const char *ca_file, const char *cert_file,
		   const char *key_file, struct tls_ctx **out, char *err,
		   size_t errlen)
{
	struct tls_ctx *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->ssl = SSL_CTX_new(TLS_method());
	const char *step = "SSL_CTX_new";
	if (!t->ssl)
		goto fail;
	/* Node to node: TLS 1.3 only, a verified certificate both ways. */
	step = "TLS 1.3";
	if (!SSL_CTX_set_min_proto_version(t->ssl, TLS1_3_VERSION) ||
	    !SSL_CTX_set_max_proto_version(t->ssl, TLS1_3_VERSION))
		goto fail;
	step = cert_file;
	if (cert_file &&
	    SSL_CTX_use_certificate_chain_file(t->ssl, cert_file) != 1)
		goto fail;
	step = key_file;
	if (cert_file &&
	    (SSL_CTX_use_PrivateKey_file(t->ssl, key_file, SSL_FILETYPE_PEM) !=
		     1 ||
	     SSL_CTX_check_private_key(t->ssl) != 1))
		goto fail;
	step = ca_file;
	if (SSL_CTX_load_verify_locations(t->ssl, ca_file, NULL) != 1)
		goto fail;
	SSL_CTX_set_verify(t->ssl,
			   SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
			   NULL);
	SSL_CTX_set_mode(t->ssl, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	*out = t;
	return 0;
fail:
	tls__errstr(err, errlen, step);
	tls_ctx_free(t);
	return -EINVAL;
}

void tls_ctx_free(struct tls_ctx *t)
{
	if (!t)
		return;
	SSL_CTX_free(t->ssl);
	free(t);
}

static void tls__written(uv_write_t *wr, int status)
{
	(void)status; /* a failed write shows up as a read error or EOF */
	free(container_of(wr, struct tls_wreq, wr));
}

/* Sends whatever OpenSSL produced. */
static int tls__flush(struct tls_conn *c)
{
	size_t n;
	while ((n = BIO_ctrl_pending(c->wbio)) > 0) {
		struct tls_wreq *w = malloc(sizeof(*w) + n);
		if (!w)
			return -ENOMEM;
		int got = BIO_read(c->wbio, w->buf, (int)n);
		if (got <= 0) {
			free(w);
			return -EIO;
		}
		uv_buf_t b = uv_buf_init(w->buf, (unsigned)got);
		int rc = uv_write(&w->wr, (uv_stream_t *)&c->tcp, &b, 1,
				  tls__written);
		if (rc < 0) {
			free(w);
			return rc;
		}
	}
	return 0;
}

static void tls__closed(uv_handle_t *h)
{
	struct tls_conn *c = container_of((uv_tcp_t *)h, struct tls_conn, tcp);
	if (c->cbs->closed)
		c->cbs->closed(c);
	SSL_free(c->ssl); /* frees both BIOs */
	free(c);
}

void tls_conn_close(struct tls_conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	if (c->handshaken) {
		SSL_shutdown(c->ssl); /* close_notify, best effort */
		tls__flush(c);
	}
	uv_read_stop((uv_stream_t *)&c->tcp);
	uv_close((uv_handle_t *)&c->tcp, tls__closed);
}

static void tls__refuse(struct tls_conn *c, int status, const char *why)
{
	if (!c->error[0]) {
		long v = SSL_get_verify_result(c->ssl);
		if (v != X509_V_OK)
			snprintf(c->error, sizeof(c->error), "%s: %s", why,
				 X509_verify_cert_error_string(v));
		else
			tls__errstr(c->error, sizeof(c->error), why);
	}
	ERR_clear_error();
	/* Send the alert OpenSSL queued, then close. */
	tls__flush(c);
	if (!c->handshaken && c->cbs->handshake)
		c->cbs->handshake(c, status);
	tls_conn_close(c);
}

static void tls__handshake(struct tls_conn *c)
{
	int r = SSL_do_handshake(c->ssl);
	if (r == 1) {
		X509 *peer = SSL_get1_peer_certificate(c->ssl);
		if (!peer || SSL_get_verify_result(c->ssl) != X509_V_OK) {
			X509_free(peer);
			tls__refuse(c, -EACCES, "peer not verified");
			return;
		}
		X509_NAME_get_text_by_NID(X509_get_subject_name(peer),
					  NID_commonName, c->peer,
					  sizeof(c->peer));
		X509_free(peer);
		c->handshaken = true;
		tls__flush(c);
		if (c->cbs->handshake)
			c->cbs->handshake(c, 0);
		return;
	}
	int e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		if (tls__flush(c))
			tls__refuse(c, -ECONNRESET, "write");
		return;
	}
	tls__refuse(c, -EACCES, "handshake");
}

static void tls__read_plain(struct tls_conn *c)
{
	uint8_t buf[16384];
	for (;;) {
		int n = SSL_read(c->ssl, buf, sizeof(buf));
		if (n > 0) {
			if (c->cbs->read)
				c->cbs->read(c, buf, (size_t)n);
			if (c->closing)
				return;
			continue;
		}
		int e = SSL_get_error(c->ssl, n);
		if (e == SSL_ERROR_WANT_READ)
			break;
		if (e == SSL_ERROR_ZERO_RETURN) {
			tls_conn_close(c); /* peer's close_notify */
			return;
		}
		tls__refuse(c, -EPROTO, "read");
		return;
	}
	tls__flush(c); /* post-handshake messages (tickets, key updates) */
}

static void tls__alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)h;
	size_t n = MIN(suggested, (size_t)65536);
	buf->base = malloc(n);
	buf->len = buf->base ? n : 0;
}

static void tls__on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct tls_conn *c = container_of((uv_tcp_t *)s, struct tls_conn, tcp);
	if (nread < 0) {
		free(buf->base);
		if (!c->handshaken) {
			snprintf(c->error, sizeof(c->error),
				 "connection closed during handshake");
			tls__refuse(c, -ECONNRESET, "eof");
		} else {
			tls_conn_close(c);
		}
		return;
	}
	if (nread > 0 && BIO_write(c->rbio, buf->base, (int)nread) != nread) {
		free(buf->base);
		tls__refuse(c, -ENOMEM, "buffer");
		return;
	}
	free(buf->base);
	if (c->closing)
		return;
	if (!c->handshaken)
		tls__handshake(c);
	if (c->handshaken && !c->closing)
		tls__read_plain(c);
}

int tls_conn_new(struct tls_ctx *ctx, uv_loop_t *loop, bool server,
		 const struct tls_conn_cbs *cbs, void *data,
		 struct tls_conn **out)
{
	struct tls_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->ssl = SSL_new(ctx->ssl);
	c->rbio = BIO_new(BIO_s_mem());
	c->wbio = BIO_new(BIO_s_mem());
	if (!c->ssl || !c->rbio || !c->wbio) {
		BIO_free(c->rbio);
		BIO_free(c->wbio);
		SSL_free(c->ssl);
		free(c);
		return -ENOMEM;
	}
	SSL_set_bio(c->ssl, c->rbio, c->wbio);
	if (server)
		SSL_set_accept_state(c->ssl);
	else
		SSL_set_connect_state(c->ssl);
	c->server = server;
	c->cbs = cbs;
	c->data = data;
	uv_tcp_init(loop, &c->tcp);
	*out = c;
	return 0;
}

uv_tcp_t *tls_conn_tcp(struct tls_conn *c)
{
	return &c->tcp;
}

int tls_conn_expect_peer(struct tls_conn *c, const char *name)
{
	return SSL_set1_host(c->ssl, name) == 1 ? 0 : -EINVAL;
}

int tls_conn_start(struct tls_conn *c)
{
	uv_tcp_nodelay(&c->tcp, 1);
	int rc = uv_read_start((uv_stream_t *)&c->tcp, tls__alloc,
			       tls__on_read);
	if (rc < 0)
		return rc;
	if (!c->server)
		tls__handshake(c); /* ClientHello */
	return 0;
}

int tls_conn_write(struct tls_conn *c, const void *data, size_t len)
{
	if (!c->handshaken || c->closing)
		return -ENOTCONN;
	while (len) {
		int n = SSL_write(c->ssl, data, (int)MIN(len, (size_t)1 << 30));
		if (n <= 0)
			return -EIO;
		data = (const uint8_t *)data + n;
		len -= (size_t)n;
	}
	return tls__flush(c);
}

void *tls_conn_data(const struct tls_conn *c)
{
	return c->data;
}

const char *tls_conn_error(const struct tls_conn *c)
{
	return c->error;
}

const char *tls_conn_peer(const struct tls_conn *c)
{
	return c->peer;
}

const char *tls_conn_version(const struct tls_conn *c)
{
	return SSL_get_version(c->ssl);
}
