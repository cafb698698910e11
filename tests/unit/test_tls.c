/* Mutual TLS between nodes: a good pair talks TLS 1.3; every refusal the
 * issue lists is refused (no client certificate, another CA, an expired
 * certificate, plaintext), and a client refuses a server it cannot verify.
 * Real OpenSSL, real sockets on loopback. */
#include <cairn/pki.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "tls.h"

int failures;

struct side {
	int hs;          /* handshake status; 1 = not called */
	bool closed;
	char got[64];
	char err[256];
	char peer[64];
	char version[16];
};

struct pair {
	uv_loop_t *loop;
	uv_tcp_t listener;
	struct tls_ctx *sctx;
	struct side srv, cli;
	const char *say;   /* client sends, server echoes */
	bool plaintext;
	uv_tcp_t raw;
	uv_connect_t creq;
	uv_write_t wreq;
};

static const struct tls_conn_cbs srv_cbs, cli_cbs;

static void side_hs(struct tls_conn *c, int status, struct side *s)
{
	s->hs = status;
	snprintf(s->err, sizeof(s->err), "%s", tls_conn_error(c));
	if (!status) {
		snprintf(s->peer, sizeof(s->peer), "%s", tls_conn_peer(c));
		snprintf(s->version, sizeof(s->version), "%s",
			 tls_conn_version(c));
	}
}

static void srv_hs(struct tls_conn *c, int status)
{
	struct pair *p = tls_conn_data(c);
	side_hs(c, status, &p->srv);
}

static void srv_read(struct tls_conn *c, const uint8_t *d, size_t n)
{
	struct pair *p = tls_conn_data(c);
	snprintf(p->srv.got, sizeof(p->srv.got), "%.*s", (int)n, d);
	tls_conn_write(c, d, n); /* echo */
}

static void srv_closed(struct tls_conn *c)
{
	struct pair *p = tls_conn_data(c);
	p->srv.closed = true;
}

static void cli_hs(struct tls_conn *c, int status)
{
	struct pair *p = tls_conn_data(c);
	side_hs(c, status, &p->cli);
	if (!status)
		tls_conn_write(c, p->say, strlen(p->say));
}

static void cli_read(struct tls_conn *c, const uint8_t *d, size_t n)
{
	struct pair *p = tls_conn_data(c);
	snprintf(p->cli.got, sizeof(p->cli.got), "%.*s", (int)n, d);
	tls_conn_close(c);
}

static void cli_closed(struct tls_conn *c)
{
	struct pair *p = tls_conn_data(c);
	p->cli.closed = true;
	snprintf(p->cli.err, sizeof(p->cli.err), "%s", tls_conn_error(c));
}

static const struct tls_conn_cbs srv_cbs = {srv_hs, srv_read, srv_closed};
static const struct tls_conn_cbs cli_cbs = {cli_hs, cli_read, cli_closed};

static void on_conn(uv_stream_t *l, int status)
{
	struct pair *p = l->data;
	CHECK_EQ(status, 0);
	struct tls_conn *c;
	CHECK_EQ(tls_conn_new(p->sctx, p->loop, true, &srv_cbs, p, &c), 0);
	CHECK_EQ(uv_accept(l, (uv_stream_t *)tls_conn_tcp(c)), 0);
	CHECK_EQ(tls_conn_start(c), 0);
	uv_close((uv_handle_t *)l, NULL); /* one connection per test */
}

static void on_connected(uv_connect_t *req, int status)
{
	CHECK_EQ(status, 0);
	struct tls_conn *c = req->data;
	CHECK_EQ(tls_conn_start(c), 0);
}

static void raw_closed(uv_handle_t *h)
{
	struct pair *p = h->data;
	p->cli.closed = true;
}

static void raw_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	free(b->base);
	if (n < 0)
		uv_close((uv_handle_t *)s, raw_closed);
}

static void raw_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
	(void)h;
	b->base = malloc(sz);
	b->len = sz;
}

static void raw_connected(uv_connect_t *req, int status)
{
	struct pair *p = req->data;
	CHECK_EQ(status, 0);
	static char junk[] = "GET / HTTP/1.0\r\nHost: x\r\n\r\n";
	uv_buf_t b = uv_buf_init(junk, sizeof(junk) - 1);
	uv_write(&p->wreq, (uv_stream_t *)&p->raw, &b, 1, NULL);
	uv_read_start((uv_stream_t *)&p->raw, raw_alloc, raw_read);
}

/* Runs one connection between a server using sctx and a client using
 * cctx (NULL: a plaintext client). */
static void run(struct pair *p, struct tls_ctx *sctx, struct tls_ctx *cctx,
		const char *expect_name)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	memset(p, 0, sizeof(*p));
	p->loop = &loop;
	p->sctx = sctx;
	p->srv.hs = p->cli.hs = 1;
	p->say = "ping";
	uv_tcp_init(&loop, &p->listener);
	p->listener.data = p;
	struct sockaddr_in a;
	uv_ip4_addr("127.0.0.1", 0, &a);
	CHECK_EQ(uv_tcp_bind(&p->listener, (struct sockaddr *)&a, 0), 0);
	CHECK_EQ(uv_listen((uv_stream_t *)&p->listener, 4, on_conn), 0);
	int len = sizeof(a);
	uv_tcp_getsockname(&p->listener, (struct sockaddr *)&a, &len);
	if (cctx) {
		struct tls_conn *c;
		CHECK_EQ(tls_conn_new(cctx, &loop, false, &cli_cbs, p, &c), 0);
		if (expect_name)
			CHECK_EQ(tls_conn_expect_peer(c, expect_name), 0);
		p->creq.data = c;
		CHECK_EQ(uv_tcp_connect(&p->creq, tls_conn_tcp(c),
					(struct sockaddr *)&a, on_connected),
			 0);
	} else {
		uv_tcp_init(&loop, &p->raw);
		p->raw.data = p;
		p->creq.data = p;
		CHECK_EQ(uv_tcp_connect(&p->creq, &p->raw,
					(struct sockaddr *)&a, raw_connected),
			 0);
	}
	uv_run(&loop, UV_RUN_DEFAULT); /* ends when every handle closed */
	CHECK_EQ(uv_loop_close(&loop), 0);
}

static struct tls_ctx *ctx(const char *dir, const char *ca, const char *name)
{
	char caf[512], crt[512], key[512], err[256];
	snprintf(caf, sizeof(caf), "%s/%s/ca.crt", dir, ca);
	snprintf(crt, sizeof(crt), "%s/certs/%s.crt", dir, name);
	snprintf(key, sizeof(key), "%s/certs/%s.key", dir, name);
	struct tls_ctx *t = NULL;
	int rc = tls_ctx_create(caf, name ? crt : NULL, name ? key : NULL, &t,
				err, sizeof(err));
	if (rc)
		fprintf(stderr, "tls_ctx_create: %s\n", err);
	CHECK_EQ(rc, 0);
	return t;
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN); /* as cairnd: a peer may vanish mid-write */
	char dir[] = "/tmp/cairn-test-tls-XXXXXX";
	if (!mkdtemp(dir))
		return 1;
	char ca_a[600], ca_b[600], certs[600], err[256];
	snprintf(ca_a, sizeof(ca_a), "%s/caA", dir);
	snprintf(ca_b, sizeof(ca_b), "%s/caB", dir);
	snprintf(certs, sizeof(certs), "%s/certs", dir);
	CHECK_EQ(pki_ca_create(ca_a, "alpha", 3650, err, sizeof(err)), 0);
	CHECK_EQ(pki_ca_create(ca_b, "beta", 3650, err, sizeof(err)), 0);
	CHECK_EQ(pki_cert_issue(ca_a, "node1", certs, 0, 365, err, sizeof(err)),
		 0);
	CHECK_EQ(pki_cert_issue(ca_a, "node2", certs, 0, 365, err, sizeof(err)),
		 0);
	CHECK_EQ(pki_cert_issue(ca_a, "old", certs, -10, 5, err, sizeof(err)),
		 0);
	CHECK_EQ(pki_cert_issue(ca_b, "evil", certs, 0, 365, err, sizeof(err)),
		 0);
	CHECK_EQ(pki_cert_issue(ca_a, "../x", certs, 0, 1, err, sizeof(err)),
		 -EINVAL);
	struct tls_ctx *s1 = ctx(dir, "caA", "node1"), *c2 = ctx(dir, "caA",
								 "node2");
	struct tls_ctx *nocert = ctx(dir, "caA", NULL);
	struct tls_ctx *old = ctx(dir, "caA", "old");
	struct tls_ctx *evil = ctx(dir, "caA", "evil");     /* trusts A */
	struct tls_ctx *evil_srv = ctx(dir, "caB", "evil"); /* trusts B */
	struct pair p;

	run(&p, s1, c2, "node1");
	CHECK_EQ(p.srv.hs, 0);
	CHECK_EQ(p.cli.hs, 0);
	CHECK(!strcmp(p.srv.got, "ping"));
	CHECK(!strcmp(p.cli.got, "ping"));
	CHECK(!strcmp(p.srv.peer, "node2"));
	CHECK(!strcmp(p.cli.peer, "node1"));
	CHECK(!strcmp(p.srv.version, "TLSv1.3"));

	run(&p, s1, nocert, NULL); /* no client certificate */
	CHECK_EQ(p.srv.hs, -EACCES);
	CHECK(!p.srv.got[0] && p.srv.closed && p.cli.closed);

	run(&p, s1, evil, NULL); /* a certificate from another CA */
	CHECK_EQ(p.srv.hs, -EACCES);
	CHECK(strstr(p.srv.err, "certificate") != NULL);
	CHECK(!p.srv.got[0]);

	run(&p, s1, old, NULL); /* expired */
	CHECK_EQ(p.srv.hs, -EACCES);
	CHECK(strstr(p.srv.err, "expired") != NULL);
	CHECK(!p.srv.got[0]);

	run(&p, s1, NULL, NULL); /* plaintext */
	CHECK_EQ(p.srv.hs, -EACCES);
	CHECK(p.cli.closed);

	run(&p, evil_srv, c2, NULL); /* the client refuses the server */
	CHECK_EQ(p.cli.hs, -EACCES);
	CHECK(!p.srv.got[0]);

	run(&p, s1, c2, "node7"); /* wrong server name */
	CHECK_EQ(p.cli.hs, -EACCES);
	CHECK(!p.srv.got[0]);

	if (failures)
		fprintf(stderr, "last errors: srv '%s' cli '%s'\n", p.srv.err,
			p.cli.err);
	tls_ctx_free(s1);
	tls_ctx_free(c2);
	tls_ctx_free(nocert);
	tls_ctx_free(old);
	tls_ctx_free(evil);
	tls_ctx_free(evil_srv);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		return 1;
	if (failures) {
		fprintf(stderr, "test_tls: %d check(s) failed\n", failures);
		return 1;
	}
	printf("test_tls: ok\n");
	return 0;
}
