/* The API server: h2o (libuv flavour) with OpenSSL on the caller's loop,
 * and the one request pipeline every endpoint goes through:
 *
 *   authenticate (Basic admin password or bearer token)
 *   -> find the route (404 / 405)
 *   -> the password-change gate, then the route's role (403)
 *   -> parse the JSON body (400)
 *   -> the route's handler, which answers now or when the cluster does.
 *
 * h2o frees a request when its client goes away, even while the cluster
 * is still working on it; so the state of a request (struct api_call)
 * lives outside h2o's pool, and a slot inside the pool tells each side
 * when the other is gone. */
#include <errno.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cairn/cluster.h>
#include <cairn/pki.h>

#include "api_internal.h"

struct api_handler {
	h2o_handler_t super;
	struct api_server *srv;
};

struct api_conn {
	uv_tcp_t tcp; /* first: h2o's close callback gets the handle */
	struct api_server *srv;
};

static const char *reason(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 201:
		return "Created";
	case 202:
		return "Accepted";
	case 307:
		return "Temporary Redirect";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 409:
		return "Conflict";
	case 410:
		return "Gone";
	case 503:
		return "Service Unavailable";
	default:
		return status < 500 ? "Error" : "Internal Server Error";
	}
}

static void slot_dispose(void *p)
{
	struct api_call **slot = p;
	if (*slot) {
		(*slot)->req = NULL;
		(*slot)->slot = NULL;
	}
}

void api_call_free(struct api_call *call)
{
	if (call->slot)
		*call->slot = NULL;
	json_decref(call->body);
	OPENSSL_cleanse(call->pw, sizeof(call->pw));
	free(call);
}

static void count(struct api_call *call, int status)
{
	struct api_server *srv = call->srv;
	if (status >= 100 && status < 600)
		srv->status_count[status]++;
	if (call->route)
		srv->route_count[call->route - api_routes]++;
}

void api_reply_text(struct api_call *call, int status, const char *ctype,
		    const char *text, size_t len)
{
	h2o_req_t *req = call->req;
	count(call, status);
	if (req) {
		req->res.status = status;
		req->res.reason = reason(status);
		h2o_add_header(&req->pool, &req->res.headers,
			       H2O_TOKEN_CONTENT_TYPE, NULL, ctype,
			       strlen(ctype));
		h2o_add_header(&req->pool, &req->res.headers,
			       H2O_TOKEN_CACHE_CONTROL, NULL,
			       H2O_STRLIT("no-store"));
		h2o_send_inline(req, text, len);
	}
	api_call_free(call);
}

void api_reply(struct api_call *call, int status, json_t *body)
{
	char *s = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	if (!s) {
		api_reply_text(call, status, "application/json", "{}\n", 3);
		return;
	}
	size_t n = strlen(s);
	char *t = realloc(s, n + 2);
	if (t) {
		s = t;
		s[n++] = '\n';
		s[n] = 0;
	}
	api_reply_text(call, status, "application/json", s, n);
	free(s);
}

static void reply_errorv(struct api_call *call, int status, const char *code,
			 const char *fmt, va_list ap)
{
	char msg[512];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (status == 401 && call->req)
		h2o_add_header(&call->req->pool, &call->req->res.headers,
			       H2O_TOKEN_WWW_AUTHENTICATE, NULL,
			       H2O_STRLIT("Basic realm=\"cairn\""));
	api_reply(
	    call, status,
	    json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", msg));
}

void api_reply_error(struct api_call *call, int status, const char *code,
		     const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	reply_errorv(call, status, code, fmt, ap);
	va_end(ap);
}

/* Forward once, else a 307 to the same path at addr. */
static void redirect_to(struct api_call *call, const char *addr,
			const char *code, const char *what)
{
	h2o_req_t *req = call->req;
	if (req && call->srv->fwd &&
	    h2o_find_header_by_str(&req->headers,
				   H2O_STRLIT("x-cairn-forwarded"), -1) < 0 &&
	    !api_fwd_start(call->srv->fwd, call, addr))
		return;
	if (req) {
		char *loc = h2o_mem_alloc_pool(&req->pool, 512 + req->path.len);
		int n = snprintf(loc, 512 + req->path.len, "%s%s%.*s",
				 call->srv->leader_scheme, addr,
				 (int)req->path.len, req->path.base);
		h2o_add_header(&req->pool, &req->res.headers,
			       H2O_TOKEN_LOCATION, NULL, loc, (size_t)n);
	}
	api_reply_error(call, 307, code, "%s is at %s", what, addr);
}

static bool addr_ok(const char *addr)
{
	return addr && *addr && !strpbrk(addr, " \r\n/?#@");
}

/* A follower forwards the request to the leader's API (msg is its
 * "host:port") once; without a CA to check the leader with, or for a
 * request that was already forwarded, it answers a 307 to the same path
 * there instead, which a client follows keeping method, body and
 * credentials (curl: --location-trusted; the cairn CLI does). */
static void redirect_to_leader(struct api_call *call, const char *leader)
{
	if (!addr_ok(leader)) {
		api_reply_error(call, 503, "no_leader",
				"this node is not the leader and knows no "
				"leader; try again");
		return;
	}
	call->fwd_node = 0;
	redirect_to(call, leader, "not_leader",
		    "this node is a follower; the leader's API");
}

void api_forward_to_node(struct api_call *call, uint64_t node,
			 const char *addr)
{
	if (!addr_ok(addr)) {
		api_reply_error(call, 503, "node_unreachable",
				"node %" PRIu64 " has no usable API address "
				"in the map",
				node);
		return;
	}
	call->fwd_node = node;
	char what[64];
	snprintf(what, sizeof(what), "node %" PRIu64 "'s API", node);
	redirect_to(call, addr, "elsewhere", what);
}

void api_reply_cluster_error(struct api_call *call, int status, const char *msg)
{
	const char *m = msg && *msg ? msg : strerror(-status);
	switch (status) {
	case -EREMOTE:
		redirect_to_leader(call, msg);
		return;
	case -EINVAL:
		api_reply_error(call, 400, "invalid", "%s", m);
		return;
	case -ENOENT:
		api_reply_error(call, 404, "not_found", "%s", m);
		return;
	case -EEXIST:
		api_reply_error(call, 409, "exists", "%s", m);
		return;
	case -EALREADY:
		api_reply_error(call, 409, "already", "%s", m);
		return;
	case -EIDRM:
		api_reply_error(call, 410, "node_removed", "%s", m);
		return;
	case -ENOSPC:
		api_reply_error(call, 409, "cannot_satisfy", "%s", m);
		return;
	case -EBUSY:
		api_reply_error(call, 409, "busy", "%s", m);
		return;
	case -EAGAIN:
	case -ETIMEDOUT:
		api_reply_error(call, 503, "unavailable",
				"the cluster has no quorum: %s", m);
		return;
	default:
		api_reply_error(call, 500, "internal", "%s", m);
	}
}

/* ---- the password hash on the thread pool ---- */

static void hash_work(uv_work_t *w)
{
	struct api_call *call = w->data;
	if (call->work_ok) { /* verify against pwh */
		call->work_ok = api_pw_check(&call->pwh, call->pw);
		call->work_rc = 0;
	} else {
		call->work_rc =
		    api_pw_new(call->pw, API_PBKDF2_ITER, &call->pwh);
	}
}

static void hash_after(uv_work_t *w, int status)
{
	struct api_call *call = w->data;
	call->srv->nwork--;
	if (status)
		call->work_rc = status;
	call->work_done(call);
}

void api_call_hash(struct api_call *call, bool verify,
		   void (*done)(struct api_call *))
{
	call->work.data = call;
	call->work_ok = verify;
	call->work_done = done;
	if (verify) {
		struct api_admin a;
		if (api_admin_get(call->srv, &a)) {
			call->work_rc = 0;
			call->work_ok = false;
			done(call);
			return;
		}
		call->pwh = a.pw;
	}
	int rc =
	    uv_queue_work(call->srv->loop, &call->work, hash_work, hash_after);
	if (rc) {
		call->work_rc = rc;
		call->work_ok = false;
		done(call);
		return;
	}
	call->srv->nwork++;
}

int api_admin_get(struct api_server *srv, struct api_admin *a)
{
	return api_admin_from_map(cluster_local_map(srv->cluster), a);
}

/* HMAC(key, stored hash || password): a cached check is void once the
 * stored hash changes, whichever node changed it. */
static void cache_digest(struct api_server *srv, const char *pw,
			 unsigned char out[32])
{
	unsigned int n = 32;
	struct api_admin a;
	memset(&a, 0, sizeof(a));
	api_admin_get(srv, &a);
	unsigned char m[32 + API_MAX_PASSWORD + 1];
	size_t pl = strnlen(pw, API_MAX_PASSWORD + 1);
	memcpy(m, a.pw.hash, 32);
	memcpy(m + 32, pw, pl);
	if (!HMAC(EVP_sha256(), srv->cache_key, sizeof(srv->cache_key), m,
		  32 + pl, out, &n))
		RAND_bytes(out, 32); /* matches nothing */
	OPENSSL_cleanse(m, sizeof(m));
}

void api_auth_cache_set(struct api_server *srv, const char *pw)
{
	cache_digest(srv, pw, srv->cache_digest);
	srv->cache_until = time(NULL) + API_AUTH_CACHE_SEC;
}

void api_auth_cache_clear(struct api_server *srv)
{
	srv->cache_until = 0;
	memset(srv->cache_digest, 0, sizeof(srv->cache_digest));
}

static bool auth_cache_hit(struct api_server *srv, const char *pw)
{
	unsigned char d[32];
	if (time(NULL) >= srv->cache_until)
		return false;
	cache_digest(srv, pw, d);
	return CRYPTO_memcmp(d, srv->cache_digest, 32) == 0;
}

/* ---- the pipeline ---- */

/* A follower that cannot accept the credentials (a password or a token
 * the leader has and this node has not applied yet, or a password change
 * it has not seen) hands the request to the leader, which decides. */
static bool defer_to_leader(struct api_call *call)
{
	struct api_server *srv = call->srv;
	h2o_req_t *req = call->req;
	if (!req || !srv->fwd || cluster_is_leader(srv->cluster) ||
	    h2o_find_header_by_str(&req->headers,
				   H2O_STRLIT("x-cairn-forwarded"), -1) >= 0)
		return false;
	json_t *st = cluster_status(srv->cluster);
	const char *l = json_string_value(json_object_get(st, "leader_api"));
	bool ok = addr_ok(l) &&
		  !api_fwd_start(srv->fwd, call, l);
	json_decref(st);
	return ok;
}

void api_op_id(struct api_call *call, json_t *op)
{
	if (call->op_id[0] && op)
		json_object_set_new(op, "op_id", json_string(call->op_id));
}

/* The Idempotency-Key header into out (1-64 characters of A-Z a-z 0-9
 * - _ . :, the map's op_id): 1 found, 0 absent, -1 malformed. */
static int op_id_header(h2o_req_t *req, char out[72])
{
	ssize_t i = h2o_find_header_by_str(&req->headers,
					   H2O_STRLIT("idempotency-key"), -1);
	if (i < 0)
		return 0;
	h2o_iovec_t v = req->headers.entries[i].value;
	bool ok = v.len >= 1 && v.len <= 64;
	for (size_t k = 0; ok && k < v.len; k++)
		ok = v.base[k] && strchr("abcdefghijklmnopqrstuvwxyz"
					 "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
					 "0123456789-_.:",
					 v.base[k]);
	if (!ok)
		return -1;
	memcpy(out, v.base, v.len);
	out[v.len] = 0;
	return 1;
}

/* Idempotency-Key into call->op_id; false (answered 400) if malformed. */
static bool read_op_id(struct api_call *call)
{
	if (op_id_header(call->req, call->op_id) >= 0)
		return true;
	call->op_id[0] = 0;
	api_reply_error(call, 400, "bad_request",
			"Idempotency-Key: 1-64 characters of A-Z a-z "
			"0-9 - _ . :");
	return false;
}

/* ---- a replayed password change ---- */

static void basic_checked(struct api_call *call);

/* A retried POST /api/v1/password whose first attempt was applied comes
 * with the old password, which no longer works. It is recognised by its
 * Idempotency-Key, which the map remembers as an auth.password, and it is
 * authenticated by the body's new password, which must be the current
 * one: then it gets the first answer (200) and nothing changes. False:
 * not such a replay (the caller answers as usual). */
static bool password_replay(struct api_call *call)
{
	h2o_req_t *req = call->req;
	char key[72];
	if (call->replay_tried || !req ||
	    !h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST")) ||
	    !h2o_memis(req->path_normalized.base, req->path_normalized.len,
		       H2O_STRLIT("/api/v1/password")) ||
	    op_id_header(req, key) != 1 || req->entity.len > API_MAX_BODY)
		return false;
	const json_t *seen = json_object_get(
	    json_object_get(cluster_local_map(call->srv->cluster), "op_ids"),
	    key);
	if (strcmp(json_string_value(json_object_get(seen, "op")) ?: "",
		   "auth.password"))
		return false;
	json_t *b = json_loadb(req->entity.base ? req->entity.base : "",
			       req->entity.len, JSON_REJECT_DUPLICATES, NULL);
	json_t *v = json_object_get(b, "password");
	bool ok = json_is_string(v) && json_string_length(v) <= API_MAX_PASSWORD &&
		  strlen(json_string_value(v)) == json_string_length(v);
	if (ok)
		snprintf(call->pw, sizeof(call->pw), "%s", json_string_value(v));
	json_decref(b);
	if (!ok)
		return false;
	call->replay_tried = true;
	api_call_hash(call, true, basic_checked);
	return true;
}

/* "/a/{x}/b" against a path; the {x} segment goes to param. */
static bool path_match(const char *pat, const char *path, size_t len,
		       char *param, size_t plen)
{
	size_t i = 0;
	while (*pat) {
		if (*pat == '{') {
			size_t s = i;
			while (i < len && path[i] != '/')
				i++;
			if (i == s || i - s >= plen)
				return false;
			memcpy(param, path + s, i - s);
			param[i - s] = 0;
			pat = strchr(pat, '}') + 1;
			continue;
		}
		if (i >= len || path[i] != *pat)
			return false;
		i++;
		pat++;
	}
	return i == len;
}

static void dispatch(struct api_call *call)
{
	struct api_server *srv = call->srv;
	h2o_req_t *req = call->req;
	if (!req) {
		api_call_free(call);
		return;
	}
	const char *path = req->path_normalized.base;
	size_t len = req->path_normalized.len;
	bool path_known = false;
	for (size_t i = 0; i < api_nroutes; i++) {
		const struct api_route *r = &api_routes[i];
		char param[sizeof(call->param)];
		if (!path_match(r->path, path, len, param, sizeof(param)))
			continue;
		path_known = true;
		if (!h2o_memis(req->method.base, req->method.len, r->method,
			       strlen(r->method)))
			continue;
		call->route = r;
		memcpy(call->param, param, sizeof(param));
		break;
	}
	if (!call->route && call->role == API_ROLE_NONE) {
		/* Without credentials, tell nothing about what exists. */
		api_reply_error(call, 401, "unauthorized",
				"credentials required: HTTP Basic (admin) or "
				"a bearer token");
		return;
	}
	if (!call->route) {
		if (path_known)
			api_reply_error(call, 405, "method_not_allowed",
					"method %.*s not allowed here",
					(int)req->method.len, req->method.base);
		else
			api_reply_error(call, 404, "not_found",
					"no such endpoint: %.*s", (int)len,
					path);
		return;
	}
	const struct api_route *r = call->route;
	if (call->role == API_ROLE_NONE && !(r->flags & API_R_PUBLIC)) {
		api_reply_error(call, 401, "unauthorized",
				"credentials required: HTTP Basic (admin) or "
				"a bearer token");
		return;
	}
	struct api_admin adm;
	if (!api_admin_get(srv, &adm) && adm.must_change &&
	    !(r->flags & (API_R_BEFORE_CHANGE | API_R_PUBLIC))) {
		if (defer_to_leader(call))
			return;
		api_reply_error(call, 403, "password_change_required",
				"password must be changed: POST "
				"/api/v1/password (or `cairn password "
				"change`) first");
		return;
	}
	if ((r->flags & API_R_BASIC_ONLY) && !call->via_basic) {
		api_reply_error(call, 403, "forbidden",
				"%s %s needs the admin password, not a token",
				r->method, r->path);
		return;
	}
	if (call->role < r->min_role) {
		api_reply_error(call, 403, "forbidden", "role %s may not %s %s",
				api_role_name(call->role), r->method, r->path);
		return;
	}
	if (r->flags & API_R_BODY) {
		json_error_t e;
		if (req->entity.len > API_MAX_BODY) {
			api_reply_error(call, 400, "bad_request",
					"body larger than %u bytes",
					API_MAX_BODY);
			return;
		}
		call->body =
		    json_loadb(req->entity.base ? req->entity.base : "",
			       req->entity.len, JSON_REJECT_DUPLICATES, &e);
		if (!call->body) {
			api_reply_error(call, 400, "bad_json",
					"malformed JSON body: %s (at %d:%d)",
					e.text, e.line, e.column);
			return;
		}
		if (!json_is_object(call->body)) {
			api_reply_error(call, 400, "bad_json",
					"the body must be a JSON object");
			return;
		}
	} else if (req->entity.len) {
		api_reply_error(call, 400, "bad_request", "%s %s takes no body",
				r->method, r->path);
		return;
	}
	if (!read_op_id(call))
		return;
	r->handle(call);
}

static void basic_checked(struct api_call *call)
{
	if (call->work_rc || !call->work_ok) {
		struct api_admin adm;
		if (password_replay(call))
			return;
		if (defer_to_leader(call))
			return;
		if (api_admin_get(call->srv, &adm) == -ENOENT) {
			/* a node that joined and has not received the map
			 * yet, and knows no leader to ask */
			api_reply_error(call, 503, "unavailable",
					"this node has not caught up with the "
					"cluster's credentials yet; try again");
			return;
		}
		api_reply_error(call, 401, "unauthorized",
				"wrong user name or password");
		return;
	}
	api_auth_cache_set(call->srv, call->pw);
	OPENSSL_cleanse(call->pw, sizeof(call->pw));
	if (call->replay_tried) { /* password_replay: the first answer */
		api_reply(call, 200, json_pack("{s:b}", "changed", 1));
		return;
	}
	call->role = API_ROLE_ADMIN;
	call->via_basic = true;
	dispatch(call);
}

static void authenticate(struct api_call *call)
{
	struct api_server *srv = call->srv;
	h2o_req_t *req = call->req;
	ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
	if (i < 0) {
		/* Only public routes take no credentials: dispatch decides. */
		call->role = API_ROLE_NONE;
		dispatch(call);
		return;
	}
	h2o_iovec_t v = req->headers.entries[i].value;
	if (v.len > 7 && !strncasecmp(v.base, "Bearer ", 7)) {
		char tok[128];
		if (v.len - 7 >= sizeof(tok)) {
			api_reply_error(call, 401, "unauthorized",
					"invalid token");
			return;
		}
		memcpy(tok, v.base + 7, v.len - 7);
		tok[v.len - 7] = 0;
		const json_t *t =
		    api_token_lookup(cluster_local_map(srv->cluster), tok);
		OPENSSL_cleanse(tok, sizeof(tok));
		json_int_t exp = json_integer_value(json_object_get(t, "expires"));
		enum api_role role = API_ROLE_NONE;
		if (t && api_role_parse(json_string_value(json_object_get(
					    t, "role")) ?: "",
					&role))
			t = NULL;
		if (!t || (exp && exp <= time(NULL))) {
			if (!t && defer_to_leader(call))
				return;
			api_reply_error(call, 401, "unauthorized",
					t ? "token expired" : "invalid token");
			return;
		}
		call->role = role;
		dispatch(call);
		return;
	}
	if (v.len > 6 && !strncasecmp(v.base, "Basic ", 6)) {
		/* "admin:" and the longest password, base64: 352 chars. */
		unsigned char dec[3 * API_MAX_BASIC / 4 + 4];
		size_t elen = v.len - 6;
		while (elen && v.base[6 + elen - 1] == ' ')
			elen--;
		if (elen == 0 || elen > API_MAX_BASIC || elen % 4) {
			api_reply_error(call, 401, "unauthorized",
					"malformed Basic credentials");
			return;
		}
		int n = EVP_DecodeBlock(dec, (const unsigned char *)v.base + 6,
					(int)elen);
		if (n < 0) {
			api_reply_error(call, 401, "unauthorized",
					"malformed Basic credentials");
			return;
		}
		/* EVP_DecodeBlock counts the padding as zero bytes. */
		for (size_t p = elen; p > 0 && v.base[6 + p - 1] == '='; p--)
			n--;
		dec[n] = 0;
		char *colon = memchr(dec, ':', (size_t)n);
		if (!colon || colon - (char *)dec != 5 ||
		    memcmp(dec, "admin", 5) ||
		    memchr(dec, 0, (size_t)n)) {
			OPENSSL_cleanse(dec, sizeof(dec));
			api_reply_error(call, 401, "unauthorized",
					"wrong user name or password");
			return;
		}
		snprintf(call->pw, sizeof(call->pw), "%s", colon + 1);
		OPENSSL_cleanse(dec, sizeof(dec));
		if (auth_cache_hit(srv, call->pw)) {
			call->work_rc = 0;
			call->work_ok = true;
			basic_checked(call);
			return;
		}
		api_call_hash(call, true, basic_checked);
		return;
	}
	api_reply_error(call, 401, "unauthorized",
			"unsupported authorization scheme");
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
	struct api_server *srv = ((struct api_handler *)self)->srv;
	struct api_call *call = calloc(1, sizeof(*call));
	if (!call)
		return -1;
	call->srv = srv;
	call->req = req;
	call->slot =
	    h2o_mem_alloc_shared(&req->pool, sizeof(*call->slot), slot_dispose);
	*call->slot = call;
	authenticate(call);
	return 0;
}

/* ---- connections ---- */

static void conn_closed(uv_handle_t *h)
{
	struct api_conn *c = (struct api_conn *)h;
	c->srv->nconns--;
	free(c);
}

static void on_accept(uv_stream_t *listener, int status)
{
	struct api_server *srv = listener->data;
	if (status)
		return;
	struct api_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return;
	c->srv = srv;
	uv_tcp_init(srv->loop, &c->tcp);
	srv->nconns++;
	if (uv_accept(listener, (uv_stream_t *)&c->tcp) || srv->closing) {
		uv_close((uv_handle_t *)&c->tcp, conn_closed);
		return;
	}
	srv->conns_total++;
	h2o_socket_t *sock =
	    h2o_uv_socket_create((uv_stream_t *)&c->tcp, conn_closed);
	h2o_accept(&srv->accept_ctx, sock);
}

static int parse_listen(const char *s, struct sockaddr_storage *ss)
{
	char host[256];
	const char *colon = strrchr(s, ':');
	if (!colon || (size_t)(colon - s) >= sizeof(host))
		return -EINVAL;
	char *end;
	long port = strtol(colon + 1, &end, 10);
	if (*end || port < 0 || port > 65535 || colon[1] == 0)
		return -EINVAL;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = 0;
	if (host[0] == '[') {
		size_t n = strlen(host);
		if (n < 2 || host[n - 1] != ']')
			return -EINVAL;
		host[n - 1] = 0;
		return uv_ip6_addr(host + 1, (int)port,
				   (struct sockaddr_in6 *)ss);
	}
	return uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss);
}

static int ssl_setup(struct api_server *srv, const struct api_config *cfg,
		     char *err, size_t errlen)
{
	srv->ssl_ctx = SSL_CTX_new(TLS_server_method());
	if (!srv->ssl_ctx) {
		snprintf(err, errlen, "SSL_CTX_new failed");
		return -ENOMEM;
	}
	SSL_CTX_set_min_proto_version(srv->ssl_ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(srv->ssl_ctx,
			    SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	if (SSL_CTX_use_certificate_chain_file(srv->ssl_ctx, cfg->cert_file) !=
		1 ||
	    SSL_CTX_use_PrivateKey_file(srv->ssl_ctx, cfg->key_file,
					SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(srv->ssl_ctx) != 1) {
		char e[256];
		ERR_error_string_n(ERR_get_error(), e, sizeof(e));
		snprintf(err, errlen, "TLS certificate %s / key %s: %s",
			 cfg->cert_file, cfg->key_file, e);
		ERR_clear_error();
		return -EINVAL;
	}
	return 0;
}

static void srv_free(struct api_server *srv)
{
	if (srv->ssl_ctx)
		SSL_CTX_free(srv->ssl_ctx);
	if (srv->fwd)
		api_fwd_free(srv->fwd);
	api_probe_free(srv->probe);
	api_tasks_free(&srv->tasks);
	free(srv->route_count);
	free(srv->state_dir);
	free(srv->openapi_file);
	free(srv->leader_scheme);
	free(srv->ca_pem);
	OPENSSL_cleanse(srv->cache_key, sizeof(srv->cache_key));
	free(srv);
}

int api_server_start(uv_loop_t *loop, const struct api_config *cfg,
		     struct cluster *cluster, struct api_server **out,
		     char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	int rc;
	if (!cfg->listen || !cfg->cert_file || !cfg->key_file ||
	    !cfg->state_dir) {
		snprintf(err, errlen,
			 "api: listen, cert_file, key_file and state_dir "
			 "are required");
		return -EINVAL;
	}
	memset(&ss, 0, sizeof(ss));
	if (parse_listen(cfg->listen, &ss)) {
		snprintf(err, errlen, "api: bad listen address '%s'",
			 cfg->listen);
		return -EINVAL;
	}
	struct api_server *srv = calloc(1, sizeof(*srv));
	if (!srv)
		return -ENOMEM;
	srv->loop = loop;
	srv->cluster = cluster;
	srv->started = time(NULL);
	srv->state_dir = strdup(cfg->state_dir);
	srv->openapi_file =
	    cfg->openapi_file ? strdup(cfg->openapi_file) : NULL;
	srv->leader_scheme =
	    strdup(cfg->leader_scheme ? cfg->leader_scheme : "https://");
	srv->route_count = calloc(api_nroutes, sizeof(*srv->route_count));
	if (!srv->state_dir || !srv->leader_scheme || !srv->route_count ||
	    RAND_bytes(srv->cache_key, sizeof(srv->cache_key)) != 1) {
		srv_free(srv);
		return -ENOMEM;
	}
	/* Task ids carry this node's id (api_internal.h) and start at a
	 * random point of their sequence, so that an id names one task
	 * across the cluster and across this node's restarts. */
	uint32_t r0 = 0;
	RAND_bytes((unsigned char *)&r0, sizeof(r0));
	srv->tasks.next_seq = (r0 >> 8) | 1;
	json_t *st = cluster_status(cluster);
	srv->tasks.node = (uint64_t)json_integer_value(json_object_get(st, "id"));
	json_decref(st);
	if ((rc = ssl_setup(srv, cfg, err, errlen))) {
		srv_free(srv);
		return rc;
	}
	if (cfg->ca_file && !(srv->ca_pem = pki_read_file(cfg->ca_file))) {
		snprintf(err, errlen, "api: cannot read %s", cfg->ca_file);
		srv_free(srv);
		return -ENOENT;
	}
	if (cfg->ca_file &&
	    (rc = api_fwd_create(srv, cfg->ca_file, &srv->fwd))) {
		snprintf(err, errlen, "api: forwarding: %s", strerror(-rc));
		srv_free(srv);
		return rc;
	}

	h2o_config_init(&srv->h2o_config);
	srv->h2o_config.server_name = h2o_iovec_init(H2O_STRLIT("cairn"));
	srv->h2o_config.max_request_entity_size = API_MAX_BODY;
	srv->h2o_config.http1.req_timeout = API_IDLE_TIMEOUT_MS;
	srv->h2o_config.http1.upgrade_to_http2 = 0;
	h2o_hostconf_t *host = h2o_config_register_host(
	    &srv->h2o_config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
	h2o_pathconf_t *pc = h2o_config_register_path(host, "/", 0);
	struct api_handler *h =
	    (struct api_handler *)h2o_create_handler(pc, sizeof(*h));
	h->super.on_req = on_req;
	h->srv = srv;
	h2o_context_init(&srv->h2o_ctx, loop, &srv->h2o_config);
	srv->accept_ctx.ctx = &srv->h2o_ctx;
	srv->accept_ctx.hosts = srv->h2o_config.hosts;
	srv->accept_ctx.ssl_ctx = srv->ssl_ctx;

	uv_tcp_init(loop, &srv->listener);
	srv->listener.data = srv;
	if ((rc = uv_tcp_bind(&srv->listener, (struct sockaddr *)&ss, 0)) ||
	    (rc = uv_listen((uv_stream_t *)&srv->listener, 128, on_accept))) {
		snprintf(err, errlen, "api: listen on %s: %s", cfg->listen,
			 uv_strerror(rc));
		/* Unwind through the close path: handles need the loop. */
		api_server_close(srv, NULL, NULL);
		return rc;
	}
	struct sockaddr_storage name;
	int nlen = sizeof(name);
	uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&name, &nlen);
	srv->port = ntohs(name.ss_family == AF_INET6
			      ? ((struct sockaddr_in6 *)&name)->sin6_port
			      : ((struct sockaddr_in *)&name)->sin_port);
	if ((rc = api_probe_start(srv, cfg))) {
		snprintf(err, errlen, "api: cannot read the node certificate "
				      "or key");
		api_server_close(srv, NULL, NULL);
		return rc;
	}
	*out = srv;
	return 0;
}

int api_server_port(const struct api_server *srv)
{
	return srv->port;
}

static void close_timer_closed(uv_handle_t *h)
{
	struct api_server *srv = h->data;
	void (*cb)(void *) = srv->close_cb;
	void *arg = srv->close_arg;
	srv_free(srv);
	if (cb)
		cb(arg);
}

static void close_poll(uv_timer_t *t)
{
	struct api_server *srv = t->data;
	if (!srv->closed_listener || srv->nconns || srv->nwork || srv->nops)
		return;
	if (srv->fwd && !srv->fwd_closing) {
		srv->fwd_closing = true;
		api_fwd_close(srv->fwd);
		return;
	}
	if (srv->fwd && !api_fwd_closed(srv->fwd))
		return;
	uv_timer_stop(t);
	h2o_context_dispose(&srv->h2o_ctx);
	h2o_config_dispose(&srv->h2o_config);
	uv_close((uv_handle_t *)t, close_timer_closed);
}

static void listener_closed(uv_handle_t *h)
{
	struct api_server *srv = h->data;
	srv->closed_listener = true;
}

void api_server_close(struct api_server *srv, void (*cb)(void *arg), void *arg)
{
	srv->closing = true;
	srv->close_cb = cb;
	srv->close_arg = arg;
	uv_close((uv_handle_t *)&srv->listener, listener_closed);
	api_probe_close(srv->probe);
	uv_timer_init(srv->loop, &srv->close_timer);
	srv->close_timer.data = srv;
	uv_timer_start(&srv->close_timer, close_poll, 0, 20);
}

/* ---- /metrics: Prometheus text format 0.0.4 ---- */

static void metric(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void metric(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
{
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(*buf + *len, *cap - *len, fmt, ap);
		va_end(ap);
		if (n < 0)
			return;
		if ((size_t)n < *cap - *len) {
			*len += (size_t)n;
			return;
		}
		char *b = realloc(*buf, *cap * 2 + (size_t)n);
		if (!b)
			return;
		*buf = b;
		*cap = *cap * 2 + (size_t)n;
	}
}

void api_metrics(struct api_server *srv, struct api_call *call)
{
	size_t cap = 8192, len = 0;
	char *b = malloc(cap);
	if (!b) {
		api_reply_error(call, 500, "internal", "out of memory");
		return;
	}
	b[0] = 0;
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	double cpu =
	    (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
	    ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
	long rss_pages = 0, vm_pages = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (f) {
		if (fscanf(f, "%ld %ld", &vm_pages, &rss_pages) != 2)
			vm_pages = rss_pages = 0;
		fclose(f);
	}
	long page = sysconf(_SC_PAGESIZE);
	/* This request is counted when it is answered: add it here so the
	 * totals a scraper sees include the scrape itself. */
	metric(&b, &len, &cap,
	       "# HELP process_cpu_seconds_total User and system CPU time.\n"
	       "# TYPE process_cpu_seconds_total counter\n"
	       "process_cpu_seconds_total %.3f\n"
	       "# HELP process_resident_memory_bytes Resident set size.\n"
	       "# TYPE process_resident_memory_bytes gauge\n"
	       "process_resident_memory_bytes %ld\n"
	       "# HELP process_virtual_memory_bytes Virtual memory size.\n"
	       "# TYPE process_virtual_memory_bytes gauge\n"
	       "process_virtual_memory_bytes %ld\n"
	       "# HELP process_start_time_seconds Start time (unix).\n"
	       "# TYPE process_start_time_seconds gauge\n"
	       "process_start_time_seconds %lld\n",
	       cpu, rss_pages * page, vm_pages * page, (long long)srv->started);
	metric(&b, &len, &cap,
	       "# HELP cairn_api_connections Open API connections.\n"
	       "# TYPE cairn_api_connections gauge\n"
	       "cairn_api_connections %u\n"
	       "# HELP cairn_api_connections_total Accepted API connections.\n"
	       "# TYPE cairn_api_connections_total counter\n"
	       "cairn_api_connections_total %llu\n"
	       "# HELP cairn_api_cluster_ops_in_flight Cluster operations "
	       "waiting for the cluster.\n"
	       "# TYPE cairn_api_cluster_ops_in_flight gauge\n"
	       "cairn_api_cluster_ops_in_flight %u\n",
	       srv->nconns, (unsigned long long)srv->conns_total, srv->nops);
	metric(&b, &len, &cap,
	       "# HELP cairn_api_responses_total API responses by status.\n"
	       "# TYPE cairn_api_responses_total counter\n");
	for (int s = 100; s < 600; s++)
		if (srv->status_count[s])
			metric(&b, &len, &cap,
			       "cairn_api_responses_total{code=\"%d\"} %llu\n",
			       s, (unsigned long long)srv->status_count[s]);
	metric(&b, &len, &cap,
	       "# HELP cairn_api_requests_total Requests routed to each "
	       "endpoint.\n"
	       "# TYPE cairn_api_requests_total counter\n");
	for (size_t i = 0; i < api_nroutes; i++)
		metric(&b, &len, &cap,
		       "cairn_api_requests_total{method=\"%s\",path=\"%s\"} "
		       "%llu\n",
		       api_routes[i].method, api_routes[i].path,
		       (unsigned long long)srv->route_count[i] +
			   (call->route == &api_routes[i]));
	api_reply_text(call, 200, "text/plain; version=0.0.4", b, len);
	free(b);
}
