/* Forwarding a follower's request to the leader's API: libcurl's multi
 * interface driven by the server's libuv loop (uv_poll per socket, one
 * uv_timer for curl's timeouts), so nothing blocks. The request goes out
 * as it came in — method, path, body, the caller's Authorization — with
 * X-Cairn-Forwarded set so that it is forwarded at most once; the leader's
 * answer (status, body, Content-Type, Location) goes back unchanged.
 *
 * The leader is verified against the cluster CA. Its certificate names the
 * node, while the map gives its API address as IP:port, so the name is not
 * checked: any certificate from the cluster CA belongs to a cluster node. */
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"
#include "http_body.h"

struct api_fwd {
	struct api_server *srv;
	CURLM *multi;
	uv_timer_t timer;
	char *ca_file;
	unsigned open_handles; /* timer + polls not yet closed */
	bool closing;
};

struct fwd_sock {
	uv_poll_t poll;
	struct api_fwd *f;
	curl_socket_t fd;
};

struct fwd_req {
	struct api_call *call;
	CURL *easy;
	struct curl_slist *hdrs;
	char *body;
	size_t body_len;
	struct http_body resp; /* at most 4 * API_MAX_BODY */
	char ctype[128];
	char location[512];
	char err[CURL_ERROR_SIZE];
};

static void handle_closed(uv_handle_t *h)
{
	struct api_fwd *f = h->data;
	if (h->type == UV_POLL)
		free(H2O_STRUCT_FROM_MEMBER(struct fwd_sock, poll,
					    (uv_poll_t *)h));
	f->open_handles--;
}

static void fwd_finish(struct api_fwd *f, CURL *easy, CURLcode rc)
{
	struct fwd_req *r;
	long code = 0;
	curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&r);
	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
	curl_multi_remove_handle(f->multi, easy);
	curl_easy_cleanup(easy);
	curl_slist_free_all(r->hdrs);
	free(r->body);
	struct api_call *call = r->call;
	f->srv->nops--;
	if ((rc != CURLE_OK || code < 100 || code > 599) && call->fwd_node) {
		api_reply_error(call, 503, "node_unreachable",
				"could not reach node %" PRIu64 ", which "
				"keeps this: %s",
				call->fwd_node,
				r->err[0] ? r->err : curl_easy_strerror(rc));
	} else if (rc != CURLE_OK || code < 100 || code > 599) {
		api_reply_error(call, 503, "leader_unreachable",
				"this node is a follower and could not reach "
				"the leader: %s",
				r->err[0] ? r->err : curl_easy_strerror(rc));
	} else {
		if (r->location[0] && call->req) {
			size_t n = strlen(r->location);
			h2o_add_header(
			    &call->req->pool, &call->req->res.headers,
			    H2O_TOKEN_LOCATION, NULL,
			    h2o_strdup(&call->req->pool, r->location, n).base,
			    n);
		}
		api_reply_text(call, (int)code,
			       r->ctype[0] ? r->ctype : "application/json",
			       r->resp.data ? r->resp.data : "", r->resp.len);
	}
	free(r->resp.data);
	free(r);
}

static void check_done(struct api_fwd *f)
{
	CURLMsg *m;
	int left;
	while ((m = curl_multi_info_read(f->multi, &left)))
		if (m->msg == CURLMSG_DONE)
			fwd_finish(f, m->easy_handle, m->data.result);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
	struct fwd_sock *s = H2O_STRUCT_FROM_MEMBER(struct fwd_sock, poll, p);
	struct api_fwd *f = s->f;
	int flags = 0, running;
	if (status < 0)
		flags = CURL_CSELECT_ERR;
	if (events & UV_READABLE)
		flags |= CURL_CSELECT_IN;
	if (events & UV_WRITABLE)
		flags |= CURL_CSELECT_OUT;
	curl_multi_socket_action(f->multi, s->fd, flags, &running);
	check_done(f);
}

static void on_timer(uv_timer_t *t)
{
	struct api_fwd *f = t->data;
	int running;
	curl_multi_socket_action(f->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done(f);
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *arg,
		     void *sockp)
{
	struct api_fwd *f = arg;
	struct fwd_sock *s = sockp;
	(void)easy;
	if (what == CURL_POLL_REMOVE) {
		if (s) {
			uv_poll_stop(&s->poll);
			uv_close((uv_handle_t *)&s->poll, handle_closed);
			curl_multi_assign(f->multi, fd, NULL);
		}
		return 0;
	}
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s || uv_poll_init_socket(f->srv->loop, &s->poll, fd)) {
			free(s);
			return -1;
		}
		s->f = f;
		s->fd = fd;
		s->poll.data = f;
		f->open_handles++;
		curl_multi_assign(f->multi, fd, s);
	}
	int ev = 0;
	if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
		ev |= UV_READABLE;
	if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
		ev |= UV_WRITABLE;
	uv_poll_start(&s->poll, ev, on_poll);
	return 0;
}

static int on_timeout(CURLM *multi, long ms, void *arg)
{
	struct api_fwd *f = arg;
	(void)multi;
	if (ms < 0)
		uv_timer_stop(&f->timer);
	else
		uv_timer_start(&f->timer, on_timer, (uint64_t)ms, 0);
	return 0;
}

int api_fwd_create(struct api_server *srv, const char *ca_file,
		   struct api_fwd **out)
{
	struct api_fwd *f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->srv = srv;
	f->ca_file = strdup(ca_file);
	f->multi = curl_multi_init();
	if (!f->ca_file || !f->multi) {
		curl_multi_cleanup(f->multi);
		free(f->ca_file);
		free(f);
		return -ENOMEM;
	}
	curl_multi_setopt(f->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(f->multi, CURLMOPT_SOCKETDATA, f);
	curl_multi_setopt(f->multi, CURLMOPT_TIMERFUNCTION, on_timeout);
	curl_multi_setopt(f->multi, CURLMOPT_TIMERDATA, f);
	uv_timer_init(srv->loop, &f->timer);
	f->timer.data = f;
	f->open_handles = 1;
	*out = f;
	return 0;
}

/* Called once nothing is in flight: drops cached connections (closing
 * their poll handles) and the timer. api_fwd_closed() says when the loop
 * has finished with them. */
void api_fwd_close(struct api_fwd *f)
{
	f->closing = true;
	curl_multi_cleanup(f->multi);
	f->multi = NULL;
	uv_timer_stop(&f->timer);
	uv_close((uv_handle_t *)&f->timer, handle_closed);
}

bool api_fwd_closed(struct api_fwd *f)
{
	return f->open_handles == 0;
}

void api_fwd_free(struct api_fwd *f)
{
	free(f->ca_file);
	free(f);
}

static void header_value(const char *p, size_t len, size_t skip, char *out,
			 size_t outlen)
{
	size_t l = len - skip;
	while (l && (p[skip + l - 1] == '\r' || p[skip + l - 1] == '\n'))
		l--;
	if (l >= outlen)
		l = outlen - 1;
	memcpy(out, p + skip, l);
	out[l] = 0;
}

static size_t on_header(char *p, size_t sz, size_t n, void *arg)
{
	struct fwd_req *r = arg;
	size_t len = sz * n;
	if (len > 14 && !strncasecmp(p, "Content-Type: ", 14))
		header_value(p, len, 14, r->ctype, sizeof(r->ctype));
	else if (len > 10 && !strncasecmp(p, "Location: ", 10))
		header_value(p, len, 10, r->location, sizeof(r->location));
	return len;
}

int api_fwd_start(struct api_fwd *f, struct api_call *call, const char *leader)
{
	h2o_req_t *req = call->req;
	if (f->closing || !req)
		return -ECANCELED;
	struct fwd_req *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->call = call;
	r->resp.max = 4 * API_MAX_BODY; /* a leader that answers more is broken */
	r->easy = curl_easy_init();
	char url[1024], line[600];
	snprintf(url, sizeof(url), "https://%s%.*s", leader, (int)req->path.len,
		 req->path.base);
	if (req->entity.len) {
		r->body = malloc(req->entity.len);
		if (r->body)
			memcpy(r->body, req->entity.base, req->entity.len);
		r->body_len = req->entity.len;
	}
	ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
	if (i >= 0) {
		h2o_iovec_t v = req->headers.entries[i].value;
		snprintf(line, sizeof(line), "Authorization: %.*s",
			 (int)(v.len < 512 ? v.len : 512), v.base);
		r->hdrs = curl_slist_append(r->hdrs, line);
	}
	/* The client's idempotency key goes with it: the leader's map
	 * deduplicates a retry that reaches it through another node. */
	i = h2o_find_header_by_str(&req->headers,
				   H2O_STRLIT("idempotency-key"), -1);
	if (i >= 0) {
		h2o_iovec_t v = req->headers.entries[i].value;
		snprintf(line, sizeof(line), "Idempotency-Key: %.*s",
			 (int)(v.len < 128 ? v.len : 128), v.base);
		r->hdrs = curl_slist_append(r->hdrs, line);
	}
	r->hdrs = curl_slist_append(r->hdrs, "X-Cairn-Forwarded: 1");
	r->hdrs = curl_slist_append(r->hdrs, "Content-Type: application/json");
	r->hdrs = curl_slist_append(r->hdrs, "Expect:");
	if (!r->easy || !r->hdrs || (req->entity.len && !r->body)) {
		curl_easy_cleanup(r->easy);
		curl_slist_free_all(r->hdrs);
		free(r->body);
		free(r);
		return -ENOMEM;
	}
	CURL *c = r->easy;
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PRIVATE, r);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(
	    c, CURLOPT_CUSTOMREQUEST,
	    h2o_strdup(&req->pool, req->method.base, req->method.len).base);
	if (req->entity.len || !strncmp(req->method.base, "POST", 4)) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)r->body_len);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, r->body ? r->body : "");
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, r->hdrs);
	curl_easy_setopt(c, CURLOPT_CAINFO, f->ca_file);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
	curl_easy_setopt(c, CURLOPT_SSLVERSION, CURL_SSLVERSION_TLSv1_2);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 3000L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 15000L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, http_body_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->resp);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, r->err);
	if (curl_multi_add_handle(f->multi, c) != CURLM_OK) {
		curl_easy_cleanup(c);
		curl_slist_free_all(r->hdrs);
		free(r->body);
		free(r);
		return -ENOMEM;
	}
	f->srv->nops++;
	return 0;
}
