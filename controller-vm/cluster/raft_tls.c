/* A raft_uv_transport over mutual TLS (lib/tls.h).
 *
 * libraft reads and writes a plain uv stream. Each connection therefore
 * gets a socketpair: one end, a uv_pipe_t allocated with raft_malloc, goes
 * to libraft (which closes and frees it); this file pumps bytes between the
 * other end and the TLS connection. The connecting side sends a preamble
 * (magic, its raft id, its address) inside TLS; the accepting side checks
 * that the id matches the peer certificate's name ("node-<id>"), so a node
 * can only speak as itself. */
#include "raft_tls.h"

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "tls.h"
#include "util.h"

#define RTLS_MAGIC 0x43524654u /* "CRFT" */
#define RTLS_ADDR_MAX 255
#define RTLS_PREAMBLE_MAX (4 + 8 + 2 + RTLS_ADDR_MAX)

struct rtls;

struct rtls_proxy {
	struct rtls *t;
	struct tls_conn *tc;
	uv_pipe_t local; /* our end of the socketpair */
	bool local_open;
	bool outgoing;
	struct raft_uv_connect *req; /* outgoing, until reported */
	raft_id peer_id;
	char peer_addr[RTLS_ADDR_MAX + 1];
	uint8_t pre[RTLS_PREAMBLE_MAX];
	size_t npre;
	bool linked; /* the socketpair exists */
	bool dead;
	struct rtls_proxy *next;
};

struct rtls {
	uv_loop_t *loop;
	struct tls_ctx *tls;
	raft_id id;
	char address[RTLS_ADDR_MAX + 1];
	uv_tcp_t listener;
	bool listening;
	raft_uv_accept_cb accept_cb;
	struct rtls_proxy *proxies;
	bool closing;
	unsigned pending_handles;
	raft_uv_transport_close_cb close_cb;
	struct raft_uv_transport *owner;
};

static int rtls__link(struct rtls_proxy *p);

/* A partition drops packets rather than refusing them, so without limits a
 * connect started during one waits out the kernel's SYN retries (~2 min,
 * then the retries after a heal come 8, 16, 32 s apart) and a connection
 * cut silently keeps queueing until the retransmission timeout (~15 min):
 * a healed partition would take that long to rejoin. So: two SYN retries
 * (a connect fails after ~7 s and libraft tries again) and 5 s for data to
 * be acknowledged (heartbeats flow every election timeout / 10). */
#define RTLS_SYN_RETRIES 2
#define RTLS_USER_TIMEOUT_MS 5000

static void rtls__tcp_limits(int fd)
{
	int syn = RTLS_SYN_RETRIES, ut = RTLS_USER_TIMEOUT_MS;
	/* Best effort: without them the connection still works, slower to
	 * notice a cut. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_SYNCNT, &syn, sizeof(syn));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ut, sizeof(ut));
}

static int rtls__parse_addr(const char *a, struct sockaddr_in *out)
{
	char host[64];
	const char *colon = strrchr(a, ':');
	if (!colon || (size_t)(colon - a) >= sizeof(host))
		return -EINVAL;
	memcpy(host, a, (size_t)(colon - a));
	host[colon - a] = 0;
	char *end;
	long port = strtol(colon + 1, &end, 10);
	if (*end || port <= 0 || port > 65535)
		return -EINVAL;
	return uv_ip4_addr(host, (int)port, out) ? -EINVAL : 0;
}

static void rtls__maybe_closed(struct rtls *t)
{
	if (!t->closing || t->proxies || t->pending_handles)
		return;
	raft_uv_transport_close_cb cb = t->close_cb;
	t->close_cb = NULL;
	if (cb)
		cb(t->owner);
}

static void rtls__unlink(struct rtls_proxy *p)
{
	struct rtls *t = p->t;
	for (struct rtls_proxy **pp = &t->proxies; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	free(p);
	rtls__maybe_closed(t);
}

static void rtls__report_connect(struct rtls_proxy *p, uv_stream_t *s,
				 int status)
{
	struct raft_uv_connect *req = p->req;
	p->req = NULL;
	if (req)
		req->cb(req, s, status);
}

static void rtls__local_closed(uv_handle_t *h)
{
	struct rtls_proxy *p = h->data;
	p->local_open = false;
	if (!p->tc)
		rtls__unlink(p);
}

/* Ends a proxy: both the TLS connection and our socketpair end. */
static void rtls__kill(struct rtls_proxy *p)
{
	if (p->dead)
		return;
	p->dead = true;
	if (p->outgoing && p->req)
		rtls__report_connect(p, NULL, RAFT_NOCONNECTION);
	if (p->local_open && !uv_is_closing((uv_handle_t *)&p->local))
		uv_close((uv_handle_t *)&p->local, rtls__local_closed);
	if (p->tc)
		tls_conn_close(p->tc);
}

static void rtls__tls_closed(struct tls_conn *c)
{
	struct rtls_proxy *p = tls_conn_data(c);
	p->tc = NULL;
	rtls__kill(p);
	if (!p->local_open)
		rtls__unlink(p);
}

/* libraft's bytes, from our end of the socketpair, into TLS. */
static void rtls__local_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
	(void)h;
	b->base = malloc(sz);
	b->len = b->base ? sz : 0;
}

static void rtls__local_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct rtls_proxy *p = s->data;
	if (n > 0 && p->tc && tls_conn_write(p->tc, b->base, (size_t)n) < 0)
		n = UV_EPIPE;
	free(b->base);
	if (n < 0)
		rtls__kill(p); /* libraft closed its end, or TLS is gone */
}

struct rtls_wreq {
	uv_write_t wr;
	char data[];
};

static void rtls__local_written(uv_write_t *wr, int status)
{
	(void)status;
	free(container_of(wr, struct rtls_wreq, wr));
}

/* The peer's bytes, out of TLS, to libraft. */
static void rtls__tls_read(struct tls_conn *c, const uint8_t *d, size_t n)
{
	struct rtls_proxy *p = tls_conn_data(c);
	if (!p->linked) {
		/* Still the preamble (accepting side). */
		size_t take = MIN(n, sizeof(p->pre) - p->npre);
		memcpy(p->pre + p->npre, d, take);
		p->npre += take;
		d += take;
		n -= take;
		if (p->npre < 14)
			return;
		uint16_t alen = get_be16(p->pre + 12);
		if (get_be32(p->pre) != RTLS_MAGIC || alen > RTLS_ADDR_MAX ||
		    get_be64(p->pre + 4) == 0) {
			log_warn("raft", "bad preamble from %s",
				 tls_conn_peer(c));
			rtls__kill(p);
			return;
		}
		if (p->npre < 14u + alen)
			return;
		p->peer_id = get_be64(p->pre + 4);
		memcpy(p->peer_addr, p->pre + 14, alen);
		p->peer_addr[alen] = 0;
		char want[32];
		snprintf(want, sizeof(want), "node-%" PRIu64,
			 (uint64_t)p->peer_id);
		if (strcmp(want, tls_conn_peer(c))) {
			log_warn("raft", "%s claims raft id %" PRIu64
					 ": refused",
				 tls_conn_peer(c), (uint64_t)p->peer_id);
			rtls__kill(p);
			return;
		}
		/* Bytes past the preamble belong to libraft. */
		size_t extra = p->npre - (14u + alen);
		uint8_t spill[RTLS_PREAMBLE_MAX];
		memcpy(spill, p->pre + 14 + alen, extra);
		if (rtls__link(p)) {
			rtls__kill(p);
			return;
		}
		if (extra)
			rtls__tls_read(c, spill, extra);
		if (!n)
			return;
	}
	if (!p->local_open || p->dead)
		return;
	struct rtls_wreq *w = malloc(sizeof(*w) + n);
	if (!w) {
		rtls__kill(p);
		return;
	}
	memcpy(w->data, d, n);
	uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
	if (uv_write(&w->wr, (uv_stream_t *)&p->local, &b, 1,
		     rtls__local_written) < 0) {
		free(w);
		rtls__kill(p);
	}
}

static void rtls__raft_end_closed(uv_handle_t *h)
{
	raft_free(h);
}

/* Makes the socketpair and hands libraft its end. */
static int rtls__link(struct rtls_proxy *p)
{
	struct rtls *t = p->t;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	uv_pipe_t *raft_end = raft_malloc(sizeof(*raft_end));
	if (!raft_end) {
		close(sv[0]);
		close(sv[1]);
		return -ENOMEM;
	}
	uv_pipe_init(t->loop, raft_end, 0);
	uv_pipe_init(t->loop, &p->local, 0);
	p->local.data = p;
	p->local_open = true;
	if (uv_pipe_open(raft_end, sv[0]) || uv_pipe_open(&p->local, sv[1])) {
		uv_close((uv_handle_t *)raft_end, rtls__raft_end_closed);
		close(sv[0]);
		close(sv[1]);
		return -EIO;
	}
	uv_read_start((uv_stream_t *)&p->local, rtls__local_alloc,
		      rtls__local_read);
	p->linked = true;
	if (p->outgoing)
		rtls__report_connect(p, (uv_stream_t *)raft_end, 0);
	else
		t->accept_cb(t->owner, p->peer_id, p->peer_addr,
			     (uv_stream_t *)raft_end);
	return 0;
}

static void rtls__tls_handshake(struct tls_conn *c, int status)
{
	struct rtls_proxy *p = tls_conn_data(c);
	if (status) {
		log_info("raft", "%s handshake failed: %s",
			 p->outgoing ? "outgoing" : "incoming",
			 tls_conn_error(c));
		return; /* tls closes itself; rtls__tls_closed cleans up */
	}
	if (!p->outgoing)
		return; /* wait for the preamble */
	struct rtls *t = p->t;
	uint8_t pre[RTLS_PREAMBLE_MAX];
	size_t alen = strlen(t->address);
	put_be32(pre, RTLS_MAGIC);
	put_be64(pre + 4, t->id);
	put_be16(pre + 12, (uint16_t)alen);
	memcpy(pre + 14, t->address, alen);
	if (tls_conn_write(c, pre, 14 + alen) < 0 || rtls__link(p))
		rtls__kill(p);
}

static const struct tls_conn_cbs rtls__cbs = {
	.handshake = rtls__tls_handshake,
	.read = rtls__tls_read,
	.closed = rtls__tls_closed,
};

static struct rtls_proxy *rtls__proxy(struct rtls *t, bool outgoing)
{
	struct rtls_proxy *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->t = t;
	p->outgoing = outgoing;
	if (tls_conn_new(t->tls, t->loop, !outgoing, &rtls__cbs, p, &p->tc)) {
		free(p);
		return NULL;
	}
	p->next = t->proxies;
	t->proxies = p;
	return p;
}

static int rtls_init(struct raft_uv_transport *rt, raft_id id,
		     const char *address)
{
	struct rtls *t = rt->impl;
	if (strlen(address) > RTLS_ADDR_MAX)
		return RAFT_INVALID;
	t->id = id;
	str_copy(t->address, address, sizeof(t->address));
	return 0;
}

static void rtls__on_conn(uv_stream_t *l, int status)
{
	struct rtls *t = l->data;
	if (status < 0 || t->closing)
		return;
	struct rtls_proxy *p = rtls__proxy(t, false);
	if (!p)
		return;
	uv_os_fd_t fd;
	if (uv_accept(l, (uv_stream_t *)tls_conn_tcp(p->tc))) {
		rtls__kill(p);
		return;
	}
	if (!uv_fileno((uv_handle_t *)tls_conn_tcp(p->tc), &fd))
		rtls__tcp_limits(fd);
	if (tls_conn_start(p->tc))
		rtls__kill(p);
}

static int rtls_listen(struct raft_uv_transport *rt, raft_uv_accept_cb cb)
{
	struct rtls *t = rt->impl;
	struct sockaddr_in a;
	if (rtls__parse_addr(t->address, &a))
		return RAFT_INVALID;
	uv_tcp_init(t->loop, &t->listener);
	t->listener.data = t;
	t->listening = true;
	t->accept_cb = cb;
	int rc = uv_tcp_bind(&t->listener, (struct sockaddr *)&a, 0);
	if (!rc)
		rc = uv_listen((uv_stream_t *)&t->listener, 64, rtls__on_conn);
	if (rc) {
		snprintf(rt->errmsg, sizeof(rt->errmsg), "listen %.64s: %s",
			 t->address, uv_strerror(rc));
		return RAFT_IOERR;
	}
	return 0;
}

static void rtls__connected(uv_connect_t *c, int status)
{
	struct rtls_proxy *p = c->data;
	free(c);
	if (status < 0 || p->dead || tls_conn_start(p->tc))
		rtls__kill(p);
}

static int rtls_connect(struct raft_uv_transport *rt,
			struct raft_uv_connect *req, raft_id id,
			const char *address, raft_uv_connect_cb cb)
{
	struct rtls *t = rt->impl;
	struct sockaddr_in a;
	if (t->closing)
		return RAFT_CANCELED;
	if (rtls__parse_addr(address, &a))
		return RAFT_NOCONNECTION;
	struct rtls_proxy *p = rtls__proxy(t, true);
	uv_connect_t *c = malloc(sizeof(*c));
	if (!p || !c) {
		free(c);
		if (p)
			rtls__kill(p);
		return RAFT_NOMEM;
	}
	req->cb = cb;
	p->req = req;
	p->peer_id = id;
	char want[32];
	snprintf(want, sizeof(want), "node-%" PRIu64, (uint64_t)id);
	tls_conn_expect_peer(p->tc, want);
	c->data = p;
	/* Our own socket, so that the limits apply to the connect too. */
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd >= 0) {
		rtls__tcp_limits(fd);
		if (uv_tcp_open(tls_conn_tcp(p->tc), fd)) {
			close(fd);
			fd = -1;
		}
	}
	if (fd < 0 || uv_tcp_connect(c, tls_conn_tcp(p->tc),
				     (struct sockaddr *)&a, rtls__connected)) {
		free(c);
		p->req = NULL; /* reported by the return value instead */
		rtls__kill(p);
		return RAFT_NOCONNECTION;
	}
	return 0;
}

static void rtls__listener_closed(uv_handle_t *h)
{
	struct rtls *t = h->data;
	t->pending_handles--;
	rtls__maybe_closed(t);
}

static void rtls_close(struct raft_uv_transport *rt,
		       raft_uv_transport_close_cb cb)
{
	struct rtls *t = rt->impl;
	t->closing = true;
	t->close_cb = cb;
	if (t->listening) {
		t->pending_handles++;
		uv_close((uv_handle_t *)&t->listener, rtls__listener_closed);
		t->listening = false;
	}
	/* Pending connects are cancelled; established streams belong to
	 * libraft, which closes them, and our ends follow. */
	for (struct rtls_proxy *p = t->proxies; p; p = p->next) {
		if (p->outgoing && p->req) {
			struct raft_uv_connect *req = p->req;
			p->req = NULL;
			req->cb(req, NULL, RAFT_CANCELED);
		}
		if (!p->linked)
			rtls__kill(p);
	}
	rtls__maybe_closed(t);
}

int raft_tls_init(struct raft_uv_transport *rt, uv_loop_t *loop,
		  struct tls_ctx *tls)
{
	struct rtls *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->loop = loop;
	t->tls = tls;
	t->owner = rt;
	memset(rt, 0, sizeof(*rt));
	rt->impl = t;
	rt->init = rtls_init;
	rt->listen = rtls_listen;
	rt->connect = rtls_connect;
	rt->close = rtls_close;
	return 0;
}

void raft_tls_free(struct raft_uv_transport *rt)
{
	free(rt->impl);
	rt->impl = NULL;
}
