/* Mutual TLS 1.3 over a libuv TCP stream (OpenSSL with memory BIOs): the
 * node-to-node channel. Both ends present a certificate and check the
 * other's against the cluster CA (include/cairn/pki.h); anything else —
 * no certificate, another CA, an expired one, plaintext — fails the
 * handshake and the connection is closed. */
#ifndef CAIRN_TLS_H
#define CAIRN_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct tls_ctx;
struct tls_conn;

/* cert_file and key_file NULL: present no certificate (a peer that does
 * so is refused; this exists for the refusal tests). */
int tls_ctx_create(const char *ca_file, const char *cert_file,
		   const char *key_file, struct tls_ctx **out, char *err,
		   size_t errlen);
void tls_ctx_free(struct tls_ctx *ctx);

struct tls_conn_cbs {
	/* 0: the peer is verified; -EACCES: refused (message in
	 * tls_conn_error); -ECONNRESET: the stream ended first. On failure
	 * the connection closes by itself. */
	void (*handshake)(struct tls_conn *c, int status);
	void (*read)(struct tls_conn *c, const uint8_t *data, size_t len);
	/* The connection is gone (after any close); memory is freed after
	 * this returns. */
	void (*closed)(struct tls_conn *c);
};

/* The TCP handle lives inside the connection: accept into it, or connect
 * it, then call tls_conn_start(). */
int tls_conn_new(struct tls_ctx *ctx, uv_loop_t *loop, bool server,
		 const struct tls_conn_cbs *cbs, void *data,
		 struct tls_conn **out);
uv_tcp_t *tls_conn_tcp(struct tls_conn *c);
/* Client only: the name the server's certificate must carry. */
int tls_conn_expect_peer(struct tls_conn *c, const char *name);
int tls_conn_start(struct tls_conn *c);
int tls_conn_write(struct tls_conn *c, const void *data, size_t len);
void tls_conn_close(struct tls_conn *c);
void *tls_conn_data(const struct tls_conn *c);
const char *tls_conn_error(const struct tls_conn *c);
/* The peer certificate's common name, once the handshake is done. */
const char *tls_conn_peer(const struct tls_conn *c);
/* The negotiated protocol, e.g. "TLSv1.3". */
const char *tls_conn_version(const struct tls_conn *c);

#endif
