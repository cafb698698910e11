/* The shared TCP server skeleton: see srv.h. */
#include "srv.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "util.h"

static void srv_flush_cb(uv_prepare_t *h)
{
	struct srv *s = h->data;
	struct srv_conn *c, *next;
	/* flush may close a connection, never another one */
	for (c = TAILQ_FIRST(&s->conns); c; c = next) {
		next = TAILQ_NEXT(c, link);
		s->ops->flush(c);
	}
	uv_prepare_stop(&s->flush);
}

int srv_init(struct srv *s, uv_loop_t *loop, const struct srv_ops *ops)
{
	if (!ops || ops->version != SRV_OPS_VERSION || !ops->name ||
	    !ops->accept || !ops->flush || !ops->shutdown || !ops->closed)
		return -EINVAL;
	memset(s, 0, sizeof(*s));
	s->loop = loop;
	s->ops = ops;
	TAILQ_INIT(&s->conns);
	uv_timer_init(loop, &s->grace);
	s->grace.data = s;
	uv_prepare_init(loop, &s->flush);
	s->flush.data = s;
	uv_tcp_init(loop, &s->listener);
	s->listener.data = s;
	return 0;
}

static void srv_handle_closed(uv_handle_t *h)
{
	struct srv *s = h->data;
	if (--s->handles_open)
		return;
	void (*cb)(void *) = s->close_cb;
	void *arg = s->close_arg;
	s->ops->closed(s); /* s is gone */
	if (cb)
		cb(arg);
}

static void srv_maybe_done(struct srv *s)
{
	if (!s->closing || !s->listener_closed || !TAILQ_EMPTY(&s->conns) ||
	    uv_is_closing((uv_handle_t *)&s->grace))
		return;
	uv_timer_stop(&s->grace);
	uv_prepare_stop(&s->flush);
	s->handles_open = 2;
	uv_close((uv_handle_t *)&s->grace, srv_handle_closed);
	uv_close((uv_handle_t *)&s->flush, srv_handle_closed);
}

static void srv_listener_closed(uv_handle_t *h)
{
	struct srv *s = h->data;
	s->listener_closed = true;
	srv_maybe_done(s);
}

static void srv_connection(uv_stream_t *l, int status)
{
	struct srv *s = l->data;
	int rc = status < 0 ? status : s->ops->accept(s);
	if (rc < 0)
		log_warn(s->ops->name, "accept: %s", uv_strerror(rc));
}

int srv_listen(struct srv *s, const char *host, uint16_t port, int backlog,
	       char *err, size_t errlen)
{
	char ps[8];
	snprintf(ps, sizeof(ps), "%u", (unsigned)port);
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
				 .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *ai = NULL;
	int gai = getaddrinfo(host, ps, &hints, &ai);
	if (gai != 0) {
		snprintf(err, errlen, "%s: cannot resolve %s: %s",
			 s->ops->name, host, gai_strerror(gai));
		return -EINVAL;
	}
	int rc = uv_tcp_bind(&s->listener, ai->ai_addr, 0);
	freeaddrinfo(ai);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&s->listener, backlog,
			       srv_connection);
	if (rc < 0) {
		snprintf(err, errlen, "%s: cannot listen on %s:%u: %s",
			 s->ops->name, host, (unsigned)port, uv_strerror(rc));
		return rc;
	}
	struct sockaddr_storage ss;
	int sl = sizeof(ss);
	uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &sl);
	s->port = ss.ss_family == AF_INET6
		      ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
		      : ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return 0;
}

void srv_abort(struct srv *s)
{
	s->closing = true;
	uv_close((uv_handle_t *)&s->listener, srv_listener_closed);
}

static void srv_grace_expired(uv_timer_t *t)
{
	struct srv *s = t->data;
	struct srv_conn *c, *next;
	for (c = TAILQ_FIRST(&s->conns); c; c = next) {
		next = TAILQ_NEXT(c, link);
		s->ops->shutdown(c, true);
	}
}

void srv_close(struct srv *s, unsigned grace_ms, void (*cb)(void *arg),
	       void *arg)
{
	if (s->closing)
		return;
	s->closing = true;
	s->close_cb = cb;
	s->close_arg = arg;
	uv_close((uv_handle_t *)&s->listener, srv_listener_closed);
	uv_timer_start(&s->grace, srv_grace_expired, grace_ms, 0);
	struct srv_conn *c, *next;
	for (c = TAILQ_FIRST(&s->conns); c; c = next) {
		next = TAILQ_NEXT(c, link);
		s->ops->shutdown(c, false);
	}
	srv_maybe_done(s);
}

void srv_conn_add(struct srv *s, struct srv_conn *c)
{
	c->id = ++s->next_conn_id;
	TAILQ_INSERT_TAIL(&s->conns, c, link);
}

int srv_conn_accept(struct srv *s, struct srv_conn *c, uv_tcp_t *tcp,
		    char *peer, size_t peerlen,
		    void (*discard)(struct srv_conn *c))
{
	int rc = uv_tcp_init(s->loop, tcp);
	if (rc < 0) {
		discard(c);
		return rc;
	}
	srv_conn_add(s, c);
	rc = uv_accept((uv_stream_t *)&s->listener, (uv_stream_t *)tcp);
	if (rc < 0) {
		s->ops->shutdown(c, true);
		return rc;
	}
	uv_tcp_nodelay(tcp, 1);
	srv_addr(tcp, true, true, peer, peerlen);
	log_debug(s->ops->name, "conn %llu from %s", (unsigned long long)c->id,
		  peer);
	return 0;
}

void srv_conn_gone(struct srv *s, struct srv_conn *c)
{
	TAILQ_REMOVE(&s->conns, c, link);
	srv_maybe_done(s);
}

void srv_want_flush(struct srv *s)
{
	uv_prepare_start(&s->flush, srv_flush_cb);
}

void srv_addr(uv_tcp_t *tcp, bool peer, bool with_port, char *out,
	      size_t len)
{
	struct sockaddr_storage ss;
	int sl = sizeof(ss);
	int rc = peer ? uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &sl)
		      : uv_tcp_getsockname(tcp, (struct sockaddr *)&ss, &sl);
	char host[INET6_ADDRSTRLEN] = "?";
	int port = 0;
	bool v6 = rc == 0 && ss.ss_family == AF_INET6;
	if (rc == 0 && v6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		uv_ip6_name(a, host, sizeof(host));
		port = ntohs(a->sin6_port);
	} else if (rc == 0) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		uv_ip4_name(a, host, sizeof(host));
		port = ntohs(a->sin_port);
	}
	const char *l = v6 ? "[" : "", *r = v6 ? "]" : "";
	if (with_port)
		snprintf(out, len, "%s%s%s:%d", l, host, r, port);
	else
		snprintf(out, len, "%s%s%s", l, host, r);
}
