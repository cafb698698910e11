/* The management API over real HTTPS: the server on a real port on
 * 127.0.0.1 with a certificate from the cluster PKI, driven by libcurl
 * verifying it against the CA, over the in-memory cluster of
 * fake_cluster.c. The password-change gate, every endpoint × role (admin
 * password, admin token, viewer token, a bad token, no credentials), bad
 * input, tasks, the follower's redirect (and a client following it to a
 * second server), /metrics and the OpenAPI document.
 *
 * The server and the fake live on the main thread's libuv loop, as in
 * cairnd (h2o keeps per-thread buffer caches that must outlive the loop);
 * the tests run as the HTTP client on a second thread and touch the server
 * only through on_loop(). */
#include <cairn/api.h>
#include <cairn/pki.h>
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../controller-vm/api/api_internal.h"
#include "check.h"
#include "fake_cluster.c"
#include <openssl/evp.h>
#include <openssl/pem.h>

int failures;

static char dir[256], ca_file[300], state[300], cert[300], key[300];
static char cur_pw[300];

struct env {
	uv_loop_t loop;
	uv_async_t async;
	pthread_t thread;
	pthread_mutex_t mu;
	void (*job)(void *);
	void *job_arg;
	sem_t done;
	struct cluster *fake, *fake2;
	struct api_server *srv, *srv2;
	int port, port2;
	struct api_config cfg;
};
static struct env E;

/* ---- the loop thread ---- */

static void on_async(uv_async_t *a)
{
	(void)a;
	void (*job)(void *) = E.job;
	E.job = NULL;
	if (job) {
		job(E.job_arg);
		sem_post(&E.done);
	}
}

/* Runs fn(arg) on the loop thread and waits for it. */
static void on_loop(void (*fn)(void *), void *arg)
{
	E.job = fn;
	E.job_arg = arg;
	uv_async_send(&E.async);
	sem_wait(&E.done);
}

static void set_follower(void *addr)
{
	fake_cluster_set_follower(E.fake, addr);
}

/* The leader for test_follower: a second server over its own fake, on the
 * same state dir, started now so that it reads the current credentials
 * (each server reads them once, at start). */
static void set_node_api(void *addr);
static void start_leader(void *arg)
{
	char err[256];
	(void)arg;
	/* One cluster: the leader's map has the same credentials. */
	json_object_set_new(E.fake2->map, "secrets",
			    json_deep_copy(json_object_get(E.fake->map,
							   "secrets")));
	E.fake2->self_id = 2; /* its tasks are node 2's */
	if (api_server_start(&E.loop, &E.cfg, E.fake2, &E.srv2, err,
			     sizeof(err))) {
		fprintf(stderr, "second server: %s\n", err);
		return;
	}
	E.port2 = api_server_port(E.srv2);
	set_node_api(NULL);
}

/* Node 2's API address in the follower's map: the leader's (NULL),
 * another address, "gone" (node 2 out of the map) or "back". */
static void set_node_api(void *addr)
{
	static json_t *kept;
	json_t *nodes = json_object_get(E.fake->map, "nodes");
	char a[64];
	const char *s = addr;
	if (s && !strcmp(s, "gone")) {
		kept = json_incref(json_object_get(nodes, "2"));
		json_object_del(nodes, "2");
		return;
	}
	if (s && !strcmp(s, "back")) {
		json_object_set_new(nodes, "2", kept);
		s = NULL;
	}
	snprintf(a, sizeof(a), "localhost:%d", E.port2);
	json_object_set_new(json_object_get(nodes, "2"), "api",
			    json_string(s && *s ? s : a));
}

/* A viewer token in the leader's map only. */
#define LEADER_ONLY_TOKEN "cairn_00000000000000000000000000000000000000aa"
static void leader_only_token(void *arg)
{
	(void)arg;
	unsigned char h[32];
	char hex[65];
	EVP_Digest(LEADER_ONLY_TOKEN, strlen(LEADER_ONLY_TOKEN), h, NULL,
		   EVP_sha256(), NULL);
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", h[i]);
	json_t *op = json_pack("{s:s, s:s, s:s, s:i, s:i}", "op",
			       "auth.token.add", "hash", hex, "role", "viewer",
			       "created", 1, "expires", 0);
	json_t *res = NULL;
	char msg[256];
	CHECK_EQ(cluster_map_apply(E.fake2->map, op, &res, msg, sizeof(msg)),
		 0);
	json_decref(res);
	json_decref(op);
}

static void set_no_quorum(void *on)
{
	E.fake->no_quorum = on != NULL;
}

/* ---- the client ---- */

struct resp {
	long code;
	char *body;
	size_t len;
	json_t *json;
	char location[512];
};

static void resp_free(struct resp *r)
{
	free(r->body);
	json_decref(r->json);
	memset(r, 0, sizeof(*r));
}

static size_t on_body(char *p, size_t sz, size_t n, void *arg)
{
	struct resp *r = arg;
	char *b = realloc(r->body, r->len + sz * n + 1);
	if (!b)
		return 0;
	memcpy(b + r->len, p, sz * n);
	r->body = b;
	r->len += sz * n;
	b[r->len] = 0;
	return sz * n;
}

static size_t on_header(char *p, size_t sz, size_t n, void *arg)
{
	struct resp *r = arg;
	size_t len = sz * n;
	if (len > 10 && !strncasecmp(p, "Location: ", 10)) {
		size_t l = len - 10;
		while (l && (p[10 + l - 1] == '\r' || p[10 + l - 1] == '\n'))
			l--;
		snprintf(r->location, sizeof(r->location), "%.*s", (int)l,
			 p + 10);
	}
	return len;
}

enum who { W_ADMIN, W_ADMIN_TOKEN, W_VIEWER, W_BAD, W_NONE, W_NWHO };
static const char *const who_name[] = {"admin", "admin-token", "viewer",
				       "bad-token", "none"};
static char admin_token[128], viewer_token[128];

struct opts {
	int port;	    /* 0: the first server */
	bool follow;	    /* follow a redirect, credentials kept */
	const char *auth;   /* a raw Authorization header instead */
	const char *header; /* one more request header */
	const char *body;
	size_t body_len; /* 0: strlen(body) */
};

static long http(enum who w, const char *method, const char *path,
		 const struct opts *o, struct resp *r)
{
	static const struct opts none;
	char url[1024], resolve[64], hdr[256];
	if (!o)
		o = &none;
	int port = o->port ? o->port : E.port;
	memset(r, 0, sizeof(*r));
	CURL *c = curl_easy_init();
	struct curl_slist *h = NULL, *res = NULL;
	snprintf(url, sizeof(url), "https://localhost:%d%s", port, path);
	snprintf(resolve, sizeof(resolve), "localhost:%d:127.0.0.1", port);
	res = curl_slist_append(res, resolve);
	if (o->follow) {
		/* the follower points at the other server's port */
		snprintf(resolve, sizeof(resolve), "localhost:%d:127.0.0.1",
			 E.port2);
		res = curl_slist_append(res, resolve);
	}
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_RESOLVE, res);
	curl_easy_setopt(c, CURLOPT_CAINFO, ca_file);
	curl_easy_setopt(c, CURLOPT_SSLVERSION, CURL_SSLVERSION_TLSv1_2);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
	if (o->follow) {
		curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
		curl_easy_setopt(c, CURLOPT_UNRESTRICTED_AUTH, 1L);
		curl_easy_setopt(c, CURLOPT_POSTREDIR, CURL_REDIR_POST_ALL);
	}
	if (o->body) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, o->body);
		curl_easy_setopt(
		    c, CURLOPT_POSTFIELDSIZE,
		    (long)(o->body_len ? o->body_len : strlen(o->body)));
		h = curl_slist_append(h, "Content-Type: application/json");
	}
	if (o->header)
		h = curl_slist_append(h, o->header);
	if (o->auth) {
		snprintf(hdr, sizeof(hdr), "Authorization: %s", o->auth);
		h = curl_slist_append(h, hdr);
	} else if (w == W_ADMIN) {
		char up[320];
		snprintf(up, sizeof(up), "admin:%s", cur_pw);
		curl_easy_setopt(c, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
		curl_easy_setopt(c, CURLOPT_USERPWD, up);
	} else if (w != W_NONE) {
		snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s",
			 w == W_ADMIN_TOKEN ? admin_token
			 : w == W_VIEWER    ? viewer_token
					 : "cairn_0123456789abcdef0123456789ab"
					   "cdef01234567");
		h = curl_slist_append(h, hdr);
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	CURLcode rc = curl_easy_perform(c);
	if (rc == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->code);
	else
		r->code = -(long)rc;
	curl_slist_free_all(h);
	curl_slist_free_all(res);
	curl_easy_cleanup(c);
	if (r->body)
		r->json = json_loads(r->body, 0, NULL);
	return r->code;
}

static const char *str_of(json_t *j, const char *k)
{
	return json_string_value(json_object_get(j, k)) ?: "";
}

static const char *err_code(const struct resp *r)
{
	return json_string_value(
		   json_object_get(json_object_get(r->json, "error"), "code"))
		   ?: "";
}

#define EXPECT(r, want)                                                        \
	do {                                                                   \
		if ((r)->code != (want))                                       \
			fprintf(stderr, "  answer: %s\n",                      \
				(r)->body ? (r)->body : "(none)");             \
		CHECK_EQ((r)->code, want);                                     \
	} while (0)

static long call(enum who w, const char *method, const char *path,
		 const char *body)
{
	struct resp r;
	struct opts o = {.body = body};
	long code = http(w, method, path, &o, &r);
	resp_free(&r);
	return code;
}

/* ---- the tests ---- */

/* The first admin account: a generated password, only its salted hash
 * for the map; both fakes (one cluster) get it. */
static void test_admin_init(void)
{
	char pw[64];
	json_t *h = NULL;
	CHECK_EQ(api_admin_create(pw, sizeof(pw), &h), 0);
	CHECK(strlen(pw) >= 20);
	snprintf(cur_pw, sizeof(cur_pw), "%s", pw);
	char *dump = json_dumps(h, 0);
	CHECK(dump && !strstr(dump, pw));
	CHECK(json_is_string(json_object_get(h, "salt")) &&
	      json_is_string(json_object_get(h, "hash")));
	free(dump);
	fake_cluster_set_admin(E.fake, h);
	fake_cluster_set_admin(E.fake2, h);
	json_decref(h);
	CHECK_EQ(api_admin_create(pw, 8, &h), -EINVAL);
}

static void check_admin_changed(void *arg)
{
	(void)arg;
	struct api_admin a;
	CHECK_EQ(api_admin_from_map(E.fake->map, &a), 0);
	CHECK(!a.must_change);
	char *dump = json_dumps(E.fake->map, 0);
	CHECK(dump && !strstr(dump, cur_pw));
	free(dump);
	/* and never in what reads return */
	json_t *pub = cluster_map_public(E.fake->map);
	CHECK(!json_object_get(pub, "secrets"));
	json_decref(pub);
}

static void test_password_gate(void)
{
	struct resp r;
	char saved[300];
	http(W_NONE, "GET", "/api/v1/cluster", NULL, &r);
	EXPECT(&r, 401);
	CHECK(!strcmp(err_code(&r), "unauthorized"));
	resp_free(&r);

	snprintf(saved, sizeof(saved), "%s", cur_pw);
	snprintf(cur_pw, sizeof(cur_pw), "not-the-password");
	CHECK_EQ(call(W_ADMIN, "GET", "/api/v1/cluster", NULL), 401);
	snprintf(cur_pw, sizeof(cur_pw), "%s", saved);

	/* Every endpoint but the password change: 403 until it changes. */
	for (size_t i = 0; i < api_nroutes; i++) {
		const struct api_route *rt = &api_routes[i];
		if (rt->flags & (API_R_BEFORE_CHANGE | API_R_PUBLIC))
			continue;
		char path[256];
		snprintf(path, sizeof(path), "%s", rt->path);
		char *b = strchr(path, '{');
		if (b)
			strcpy(b, "x1");
		struct opts o = {.body =
				     (rt->flags & API_R_BODY) ? "{}" : NULL};
		http(W_ADMIN, rt->method, path, &o, &r);
		EXPECT(&r, 403);
		CHECK(!strcmp(err_code(&r), "password_change_required"));
		CHECK(r.body && strstr(r.body, "password must be changed"));
		resp_free(&r);
	}
	CHECK_EQ(call(W_ADMIN, "POST", "/api/v1/password",
		      "{\"password\": \"short\"}"),
		 400);
	char body[340];
	snprintf(body, sizeof(body), "{\"password\": \"%s\"}", cur_pw);
	CHECK_EQ(call(W_ADMIN, "POST", "/api/v1/password", body), 400);
	CHECK_EQ(call(W_ADMIN, "POST", "/api/v1/password",
		      "{\"password\": 12345678901234}"),
		 400);
	CHECK_EQ(call(W_ADMIN, "POST", "/api/v1/password",
		      "{\"password\": \"a-new-password-1\", \"x\": 1}"),
		 400);
	CHECK_EQ(call(W_ADMIN, "POST", "/api/v1/password",
		      "{\"password\": \"a-new-password-1\"}"),
		 200);
	CHECK_EQ(call(W_ADMIN, "GET", "/api/v1/cluster", NULL), 401);
	snprintf(cur_pw, sizeof(cur_pw), "a-new-password-1");
	http(W_ADMIN, "GET", "/api/v1/cluster", NULL, &r);
	EXPECT(&r, 200);
	CHECK(json_is_object(json_object_get(r.json, "map")));
	CHECK(json_is_object(json_object_get(r.json, "status")));
	resp_free(&r);

	/* The longest password works through Basic too. */
	char longpw[API_MAX_PASSWORD + 1], lbody[API_MAX_PASSWORD + 32];
	memset(longpw, 'p', API_MAX_PASSWORD);
	longpw[API_MAX_PASSWORD] = 0;
	snprintf(lbody, sizeof(lbody), "{\"password\": \"%s\"}", longpw);
	CHECK_EQ(call(W_ADMIN, "POST", "/api/v1/password", lbody), 200);
	snprintf(cur_pw, sizeof(cur_pw), "%s", longpw);
	CHECK_EQ(call(W_ADMIN, "GET", "/api/v1/pools", NULL), 200);
	lbody[strlen(lbody) - 3] = 'q'; /* 257 characters */
	memmove(lbody + strlen(lbody) - 2, "q\"}", 4);
	CHECK_EQ(call(W_ADMIN, "POST", "/api/v1/password", lbody), 400);

	/* The change is in the map (every node's), hash only. */
	on_loop(check_admin_changed, NULL);
}

static void make_token(const char *role, char *out, size_t len, char *id,
		       size_t idlen)
{
	struct resp r;
	char body[64];
	struct opts o = {.body = body};
	snprintf(body, sizeof(body), "{\"role\": \"%s\"}", role);
	http(W_ADMIN, "POST", "/api/v1/tokens", &o, &r);
	EXPECT(&r, 201);
	snprintf(out, len, "%s",
		 json_string_value(json_object_get(r.json, "token")) ?: "");
	if (id)
		snprintf(id, idlen, "%s",
			 json_string_value(json_object_get(r.json, "id"))
			     ?: "");
	resp_free(&r);
}

static void test_tokens(void)
{
	struct resp r;
	char tok[128], id[32], path[64];
	make_token("admin", admin_token, sizeof(admin_token), NULL, 0);
	make_token("viewer", viewer_token, sizeof(viewer_token), NULL, 0);
	CHECK(!strncmp(viewer_token, "cairn_", 6));
	CHECK_EQ(call(W_VIEWER, "GET", "/api/v1/pools", NULL), 200);
	CHECK_EQ(call(W_ADMIN_TOKEN, "GET", "/api/v1/pools", NULL), 200);

	/* Listing never shows a secret. */
	http(W_ADMIN, "GET", "/api/v1/tokens", NULL, &r);
	EXPECT(&r, 200);
	CHECK_EQ(json_array_size(json_object_get(r.json, "tokens")), 2);
	CHECK(r.body && !strstr(r.body, viewer_token) &&
	      !strstr(r.body, "hash"));
	resp_free(&r);

	/* Revoked: 401 at once. */
	make_token("viewer", tok, sizeof(tok), id, sizeof(id));
	char auth[200];
	snprintf(auth, sizeof(auth), "Bearer %s", tok);
	struct opts o = {.auth = auth};
	http(W_NONE, "GET", "/api/v1/pools", &o, &r);
	EXPECT(&r, 200);
	resp_free(&r);
	snprintf(path, sizeof(path), "/api/v1/tokens/%s", id);
	CHECK_EQ(call(W_ADMIN, "DELETE", path, NULL), 200);
	CHECK_EQ(call(W_ADMIN, "DELETE", path, NULL), 404);
	http(W_NONE, "GET", "/api/v1/pools", &o, &r);
	EXPECT(&r, 401);
	resp_free(&r);

	/* An expired token is refused: make one that expired by editing
	 * the server's table on its thread. */
	make_token("viewer", tok, sizeof(tok), id, sizeof(id));
	snprintf(auth, sizeof(auth), "Bearer %s", tok);
	struct expire_arg {
		const char *id;
	} ea = {id};
	void expire(void *p);
	on_loop(expire, &ea);
	http(W_NONE, "GET", "/api/v1/pools", &o, &r);
	EXPECT(&r, 401);
	CHECK(r.body && strstr(r.body, "expired"));
	resp_free(&r);

	/* Bad token requests. */
	CHECK_EQ(
	    call(W_ADMIN, "POST", "/api/v1/tokens", "{\"role\": \"root\"}"),
	    400);
	CHECK_EQ(call(W_ADMIN, "POST", "/api/v1/tokens", "{}"), 400);
	CHECK_EQ(call(W_ADMIN, "POST", "/api/v1/tokens",
		      "{\"role\": \"viewer\", \"expires_in\": -5}"),
		 400);
	CHECK_EQ(call(W_ADMIN, "POST", "/api/v1/tokens",
		      "{\"role\": \"viewer\", \"expires_in\": \"soon\"}"),
		 400);
	http(W_ADMIN, "POST", "/api/v1/tokens",
	     &(struct opts){.body = "{\"role\": \"viewer\", \"expires_in\": "
				    "3600, \"name\": \"ci\"}"},
	     &r);
	EXPECT(&r, 201);
	CHECK(json_integer_value(json_object_get(r.json, "expires")) >
	      time(NULL));
	resp_free(&r);
	/* A token cannot change the password, even an admin one. */
	CHECK_EQ(call(W_ADMIN_TOKEN, "POST", "/api/v1/password",
		      "{\"password\": \"another-password-2\"}"),
		 403);
}

void expire(void *p)
{
	const char *id = *(const char **)p;
	json_t *t = json_object_get(
	    json_object_get(json_object_get(E.fake->map, "secrets"),
			    "api_tokens"),
	    id);
	CHECK(t != NULL);
	json_object_set_new(t, "expires", json_integer(time(NULL) - 1));
}

/* ---- every endpoint × role ---- */

enum setup { S_NONE, S_POOL, S_VDISK, S_TOKEN, S_NODE, S_TASK, S_PASSWORD,
	     S_PUBLIC /* no credentials needed; bad ones still get 401 */ };

struct row {
	const char *method, *path; /* %s: the setup's object */
	const char *body;	   /* %d: a unique number */
	int ok;			   /* the admin's success code */
	bool viewer_ok;
	enum setup setup;
};

static const struct row rows[] = {
    {"GET", "/api/v1/cluster", NULL, 200, true, S_NONE},
    {"GET", "/api/v1/nodes", NULL, 200, true, S_NONE},
    {"DELETE", "/api/v1/nodes/%s", NULL, 202, false, S_NODE},
    {"GET", "/api/v1/pools", NULL, 200, true, S_NONE},
    {"POST", "/api/v1/pools",
     "{\"name\": \"m%d\", \"policy\": {\"replicas\": 1}}", 201, false, S_NONE},
    {"DELETE", "/api/v1/pools/%s", NULL, 200, false, S_POOL},
    {"GET", "/api/v1/vdisks", NULL, 200, true, S_NONE},
    {"POST", "/api/v1/vdisks",
     "{\"name\": \"mv%d\", \"pool\": \"base\", \"size\": 1048576}", 201, false,
     S_NONE},
    {"DELETE", "/api/v1/vdisks/%s", NULL, 200, false, S_VDISK},
    {"GET", "/api/v1/tasks/%s", NULL, 200, true, S_TASK},
    {"POST", "/api/v1/password", "{\"password\": \"pw-number-%d-x\"}", 200,
     false, S_PASSWORD},
    {"POST", "/api/v1/tokens", "{\"role\": \"viewer\"}", 201, false, S_NONE},
    {"GET", "/api/v1/tokens", NULL, 200, false, S_NONE},
    {"DELETE", "/api/v1/tokens/%s", NULL, 200, false, S_TOKEN},
    {"GET", "/api/v1/openapi.json", NULL, 200, true, S_NONE},
    {"GET", "/metrics", NULL, 200, true, S_NONE},
    {"GET", "/api/v1/ca", NULL, 200, true, S_PUBLIC},
    {"POST", "/api/v1/join",
     "{\"token\": \"cairn1:ff:fake-token\", \"name\": \"j%d\", "
     "\"raft\": \"127.0.0.1:9\", \"api\": \"127.0.0.1:9\"}",
     201, true, S_PUBLIC},
    {"POST", "/api/v1/nodes/token", "{\"expires_in\": %d}", 201, false,
     S_NONE},
    /* authenticated by a node certificate in the body, whoever calls */
    {"POST", "/api/v1/membership",
     "{\"id\": %d, \"name\": \"n\", \"time\": 0, \"cert\": \"x\", "
     "\"sig\": \"x\"}",
     401, true, S_PUBLIC},
};

static int uniq = 100;

static void setup_obj(enum setup s, char *obj, size_t len)
{
	char body[128];
	obj[0] = 0;
	switch (s) {
	case S_POOL:
		snprintf(obj, len, "sp%d", uniq++);
		snprintf(body, sizeof(body),
			 "{\"name\": \"%s\", \"policy\": {\"replicas\": 1}}",
			 obj);
		CHECK_EQ(call(W_ADMIN, "POST", "/api/v1/pools", body), 201);
		break;
	case S_VDISK:
		snprintf(obj, len, "sv%d", uniq++);
		snprintf(body, sizeof(body),
			 "{\"name\": \"%s\", \"pool\": \"base\", \"size\": "
			 "4096}",
			 obj);
		CHECK_EQ(call(W_ADMIN, "POST", "/api/v1/vdisks", body), 201);
		break;
	case S_TOKEN: {
		char tok[128];
		make_token("viewer", tok, sizeof(tok), obj, len);
		break;
	}
	case S_NODE:
		snprintf(obj, len, "%d",
			 50 + uniq++); /* the task fails later */
		break;
	case S_TASK: { /* task ids start anywhere: make one */
		struct resp r;
		char path[64];
		snprintf(path, sizeof(path), "/api/v1/nodes/%d", 50 + uniq++);
		http(W_ADMIN, "DELETE", path, NULL, &r);
		snprintf(obj, len, "%lld",
			 (long long)json_integer_value(json_object_get(
			     json_object_get(r.json, "task"), "id")));
		resp_free(&r);
		break;
	}
	default:
		break;
	}
}

static void test_matrix(void)
{
	int checked = 0;
	CHECK_EQ(call(W_ADMIN, "POST", "/api/v1/pools",
		      "{\"name\": \"base\", \"policy\": {\"replicas\": 2}}"),
		 201);
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		const struct row *rw = &rows[i];
		for (int w = 0; w < W_NWHO; w++) {
			char obj[64], path[256], body[256];
			int want;
			setup_obj(rw->setup, obj, sizeof(obj));
			snprintf(path, sizeof(path), rw->path, obj);
			if (rw->body)
				snprintf(body, sizeof(body), rw->body, uniq++);
			if (w == W_NONE && rw->setup == S_PUBLIC)
				want = rw->ok;
			else if (w == W_BAD || w == W_NONE)
				want = 401;
			else if (w == W_ADMIN)
				want = rw->ok;
			else if (w == W_VIEWER)
				want = rw->viewer_ok ? rw->ok : 403;
			else /* admin token: all but the password */
				want = rw->setup == S_PASSWORD ? 403 : rw->ok;
			struct resp r;
			struct opts o = {.body = rw->body ? body : NULL};
			http((enum who)w, rw->method, path, &o, &r);
			if (r.code != want)
				fprintf(stderr,
					"%s %s as %s: %ld, want %d: %s\n",
					rw->method, path, who_name[w], r.code,
					want, r.body ? r.body : "");
			CHECK_EQ(r.code, want);
			if (want >= 400)
				CHECK(json_is_object(
				    json_object_get(r.json, "error")));
			if (w == W_ADMIN && rw->setup == S_PASSWORD &&
			    r.code == 200)
				sscanf(body, "{\"password\": \"%299[^\"]",
				       cur_pw);
			resp_free(&r);
			checked++;
		}
	}
	/* Every route of the server's table is in the walk. */
	CHECK_EQ(sizeof(rows) / sizeof(rows[0]), api_nroutes);
	for (size_t i = 0; i < api_nroutes; i++) {
		bool found = false;
		for (size_t j = 0; j < sizeof(rows) / sizeof(rows[0]); j++) {
			const char *a = api_routes[i].path, *b = rows[j].path;
			size_t n = strcspn(a, "{");
			found |=
			    !strcmp(api_routes[i].method, rows[j].method) &&
			    !strncmp(a, b, n) &&
			    (a[n] ? (b[n] == '%' || !strcmp(b + n, "1"))
				  : !b[n]);
		}
		if (!found)
			fprintf(stderr, "route %s %s not walked\n",
				api_routes[i].method, api_routes[i].path);
		CHECK(found);
	}
	fprintf(stderr, "  endpoint x role: %d requests checked\n", checked);
}

/* ---- bad input ---- */

static void test_bad_input(void)
{
	struct resp r;
	static const char *const bad_pools[] = {
	    "{",
	    "[1, 2]",
	    "\"pool\"",
	    "{\"name\": 5, \"policy\": {\"replicas\": 1}}",
	    "{\"name\": \"x\"}",
	    "{\"name\": \"x\", \"policy\": {\"replicas\": 7}}",
	    "{\"name\": \"x\", \"policy\": {\"replicas\": \"3\"}}",
	    "{\"name\": \"x\", \"policy\": {\"replicas\": 1, \"ec\": "
	    "{\"k\": 2, \"m\": 1}}}",
	    "{\"name\": \"x\", \"policy\": {\"ec\": {\"k\": 2}}}",
	    "{\"name\": \"x\", \"policy\": {\"ec\": {\"k\": 0, \"m\": 1}}}",
	    "{\"name\": \"x\", \"policy\": {\"replicas\": 1}, \"color\": 1}",
	    "{\"name\": \"x\", \"name\": \"y\", \"policy\": {\"replicas\": "
	    "1}}",
	    "{\"name\": \"../etc\", \"policy\": {\"replicas\": 1}}",
	    "{\"name\": \"\", \"policy\": {\"replicas\": 1}}",
	    "{\"name\": \"x\", \"policy\": {\"replicas\": 1}, "
	    "\"spread_domains\": 1}",
	    "",
	};
	for (size_t i = 0; i < sizeof(bad_pools) / sizeof(*bad_pools); i++) {
		http(W_ADMIN, "POST", "/api/v1/pools",
		     &(struct opts){.body = bad_pools[i]}, &r);
		if (r.code != 400)
			fprintf(stderr, "  body: %s\n", bad_pools[i]);
		EXPECT(&r, 400);
		CHECK(json_string_value(json_object_get(
		    json_object_get(r.json, "error"), "message")));
		resp_free(&r);
	}
	static const char *const bad_vdisks[] = {
	    "{\"name\": \"v\", \"pool\": \"base\"}",
	    "{\"name\": \"v\", \"pool\": \"base\", \"size\": \"10G\"}",
	    "{\"name\": \"v\", \"pool\": \"base\", \"size\": 1000}",
	    "{\"name\": \"v\", \"pool\": \"base\", \"size\": -4096}",
	    "{\"name\": \"v\", \"pool\": \"base\", \"size\": 4096.0}",
	    "{\"name\": \"v\", \"pool\": 7, \"size\": 4096}",
	    ("{\"name\": \"v\", \"pool\": \"base\", \"size\": "
	     "99999999999999999999999}"),
	};
	for (size_t i = 0; i < sizeof(bad_vdisks) / sizeof(*bad_vdisks); i++)
		CHECK_EQ(call(W_ADMIN, "POST", "/api/v1/vdisks", bad_vdisks[i]),
			 400);

	/* A body over 1 MiB: refused (h2o answers 413 before the handler
	 * sees it), and the server goes on. */
	size_t big = (1u << 20) + 100;
	char *huge = malloc(big + 1);
	memset(huge, ' ', big);
	huge[0] = '{';
	huge[big - 1] = '}';
	huge[big] = 0;
	http(W_ADMIN, "POST", "/api/v1/pools",
	     &(struct opts){.body = huge, .body_len = big}, &r);
	CHECK(r.code == 400 || r.code == 413);
	resp_free(&r);
	free(huge);

	CHECK_EQ(call(W_ADMIN, "GET", "/api/v1/pools", "{}"), 400);
	CHECK_EQ(call(W_ADMIN, "DELETE", "/api/v1/pools/bad$name", NULL), 400);
	CHECK_EQ(call(W_ADMIN, "DELETE", "/api/v1/nodes/abc", NULL), 400);
	CHECK_EQ(call(W_ADMIN, "DELETE", "/api/v1/nodes/0", NULL), 400);
	CHECK_EQ(call(W_ADMIN, "DELETE", "/api/v1/nodes/99999999999999", NULL),
		 400);
	CHECK_EQ(call(W_ADMIN, "GET", "/api/v1/tasks/nope", NULL), 404);
	CHECK_EQ(call(W_ADMIN, "GET", "/api/v1/tasks/123456", NULL), 404);
	CHECK_EQ(call(W_ADMIN, "GET", "/api/v1/nothing", NULL), 404);
	CHECK_EQ(call(W_ADMIN, "GET", "/api/v1/pools/", NULL), 404);
	CHECK_EQ(call(W_ADMIN, "PUT", "/api/v1/pools", "{}"), 405);
	CHECK_EQ(call(W_NONE, "GET", "/api/v1/nothing", NULL), 401);

	/* Authorization headers that are not credentials. */
	static const char *const bad_auth[] = {
	    "Basic !!!!",
	    "Basic YWRtaW4=",	  /* "admin", no colon */
	    "Basic cm9vdDpyb290", /* root:root */
	    "Basic ",
	    "Bearer ",
	    "Bearer cairn_",
	    "Digest username=admin",
	    "Basic YWRtaW46YQBi", /* admin:a\0b */
	    "Basic YWRtaW46YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFh"
	    "YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFh"
	    "YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFh"
	    "YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFh"
	    "YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFh"
	    "YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFh"
	    "YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFh",
	    "Bearer aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	};
	for (size_t i = 0; i < sizeof(bad_auth) / sizeof(*bad_auth); i++) {
		http(W_NONE, "GET", "/api/v1/pools",
		     &(struct opts){.auth = bad_auth[i]}, &r);
		EXPECT(&r, 401);
		resp_free(&r);
	}

	/* The map refuses: duplicate, unknown pool, busy pool. */
	http(W_ADMIN, "POST", "/api/v1/pools",
	     &(struct opts){.body = "{\"name\": \"base\", \"policy\": "
				    "{\"replicas\": 1}}"},
	     &r);
	EXPECT(&r, 409);
	CHECK(!strcmp(err_code(&r), "exists"));
	resp_free(&r);
	CHECK_EQ(call(W_ADMIN, "POST", "/api/v1/vdisks",
		      "{\"name\": \"v\", \"pool\": \"nope\", \"size\": 4096}"),
		 404);
	CHECK_EQ(call(W_ADMIN, "DELETE", "/api/v1/pools/nope", NULL), 404);
	CHECK_EQ(call(W_ADMIN, "DELETE", "/api/v1/vdisks/nope", NULL), 404);
	CHECK_EQ(call(W_ADMIN, "DELETE", "/api/v1/pools/base", NULL), 409);

	/* Plaintext HTTP on the TLS port, and a TLS 1.1-only client. */
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)E.port),
				 .sin_addr.s_addr = htonl(0x7f000001)};
	if (!connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		char junk[64];
		const char *req =
		    "GET /api/v1/pools HTTP/1.1\r\nHost: x\r\n\r\n";
		CHECK(write(fd, req, strlen(req)) > 0);
		ssize_t n = read(fd, junk, sizeof(junk));
		CHECK(n <= 0 || junk[0] != 'H'); /* never an HTTP answer */
	}
	close(fd);
	CURL *c = curl_easy_init();
	char url[64], resolve[64];
	struct curl_slist *res = NULL;
	snprintf(url, sizeof(url), "https://localhost:%d/metrics", E.port);
	snprintf(resolve, sizeof(resolve), "localhost:%d:127.0.0.1", E.port);
	res = curl_slist_append(res, resolve);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_RESOLVE, res);
	curl_easy_setopt(c, CURLOPT_CAINFO, ca_file);
	curl_easy_setopt(c, CURLOPT_SSLVERSION,
			 CURL_SSLVERSION_TLSv1_1 | CURL_SSLVERSION_MAX_TLSv1_1);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	struct resp ignored = {0};
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &ignored);
	CHECK(curl_easy_perform(c) != CURLE_OK);
	free(ignored.body);
	curl_easy_cleanup(c);
	curl_slist_free_all(res);

	/* A client that does not trust our CA refuses the server. */
	c = curl_easy_init();
	res = curl_slist_append(NULL, resolve);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_RESOLVE, res);
	curl_easy_setopt(c, CURLOPT_CAINFO, "/dev/null");
	curl_easy_setopt(c, CURLOPT_CAPATH, NULL);
	CHECK(curl_easy_perform(c) != CURLE_OK);
	curl_easy_cleanup(c);
	curl_slist_free_all(res);

	/* Still serving. */
	CHECK_EQ(call(W_ADMIN, "GET", "/api/v1/pools", NULL), 200);
}

/* ---- tasks, RF3 on two nodes ---- */

static json_t *wait_task(const char *loc)
{
	for (int i = 0; i < 400; i++) {
		struct resp r;
		http(W_VIEWER, "GET", loc, NULL, &r);
		EXPECT(&r, 200);
		const char *st =
		    json_string_value(json_object_get(r.json, "state"));
		if (st && strcmp(st, "running")) {
			json_t *j = json_incref(r.json);
			resp_free(&r);
			return j;
		}
		resp_free(&r);
		usleep(5000);
	}
	CHECK(!"task never finished");
	return NULL;
}

static void test_tasks(void)
{
	struct resp r;
	/* The fake has nodes 1-3: RF3 fits, and then node 3 cannot go. */
	CHECK_EQ(call(W_ADMIN, "POST", "/api/v1/pools",
		      "{\"name\": \"rf3a\", \"policy\": {\"replicas\": 3}}"),
		 201);
	http(W_ADMIN, "DELETE", "/api/v1/nodes/3", NULL, &r);
	EXPECT(&r, 202);
	char loc[512];
	snprintf(loc, sizeof(loc), "%s", r.location);
	resp_free(&r);
	json_t *t = wait_task(loc);
	CHECK(!strcmp(json_string_value(json_object_get(t, "state")) ?: "",
		      "failed"));
	CHECK(strstr(json_string_value(json_object_get(t, "error")) ?: "",
		     "too few"));
	json_decref(t);
	CHECK_EQ(call(W_ADMIN, "DELETE", "/api/v1/pools/rf3a", NULL), 200);
	/* Now it can; with an Idempotency-Key, a retry gets the first
	 * result (the node is gone: no second removal, no "no node"). */
	http(W_ADMIN, "DELETE", "/api/v1/nodes/3",
	     &(struct opts){.header = "Idempotency-Key: rm-3"}, &r);
	EXPECT(&r, 202);
	json_t *task = json_object_get(r.json, "task");
	CHECK(!strcmp(json_string_value(json_object_get(task, "state")) ?: "",
		      "running"));
	CHECK(!strncmp(r.location, "/api/v1/tasks/", 14));
	snprintf(loc, sizeof(loc), "%s", r.location);
	resp_free(&r);
	t = wait_task(loc);
	CHECK(!strcmp(json_string_value(json_object_get(t, "state")) ?: "",
		      "done"));
	CHECK(json_real_value(json_object_get(t, "progress")) == 1.0);
	CHECK(json_is_object(json_object_get(t, "result")));
	json_decref(t);
	CHECK_EQ(call(W_ADMIN, "POST", "/api/v1/pools",
		      "{\"name\": \"rf3a\", \"policy\": {\"replicas\": 3}}"),
		 409);
	http(W_ADMIN, "DELETE", "/api/v1/nodes/3",
	     &(struct opts){.header = "Idempotency-Key: rm-3"}, &r);
	EXPECT(&r, 202);
	snprintf(loc, sizeof(loc), "%s", r.location);
	resp_free(&r);
	t = wait_task(loc);
	CHECK(!strcmp(json_string_value(json_object_get(t, "state")) ?: "",
		      "done"));
	json_decref(t);

	http(W_ADMIN, "POST", "/api/v1/pools",
	     &(struct opts){.body = "{\"name\": \"rf3b\", \"policy\": "
				    "{\"replicas\": 3}}"},
	     &r);
	EXPECT(&r, 409);
	CHECK(!strcmp(err_code(&r), "cannot_satisfy"));
	resp_free(&r);
	CHECK_EQ(call(W_ADMIN, "POST", "/api/v1/pools",
		      "{\"name\": \"ec21\", \"policy\": {\"ec\": {\"k\": 2, "
		      "\"m\": 1}}}"),
		 409);
	http(W_VIEWER, "GET", "/api/v1/nodes", NULL, &r);
	EXPECT(&r, 200);
	CHECK_EQ(json_array_size(json_object_get(r.json, "nodes")), 2);
	resp_free(&r);

	/* A removal the map refuses: the task fails with the reason. */
	http(W_ADMIN, "DELETE", "/api/v1/nodes/3", NULL, &r);
	EXPECT(&r, 202);
	snprintf(loc, sizeof(loc), "%s", r.location);
	resp_free(&r);
	t = wait_task(loc);
	CHECK(!strcmp(json_string_value(json_object_get(t, "state")) ?: "",
		      "failed"));
	CHECK(strstr(json_string_value(json_object_get(t, "error")) ?: "",
		     "no node 3"));
	json_decref(t);

	/* Reads and writes come back in the lists. */
	http(W_VIEWER, "GET", "/api/v1/vdisks", NULL, &r);
	EXPECT(&r, 200);
	CHECK(json_array_size(json_object_get(r.json, "vdisks")) > 0);
	resp_free(&r);
	http(W_ADMIN, "POST", "/api/v1/vdisks",
	     &(struct opts){.body = "{\"name\": \"big\", \"pool\": \"base\", "
				    "\"size\": 10737418240}"},
	     &r);
	EXPECT(&r, 201);
	CHECK_EQ(json_integer_value(json_object_get(r.json, "size")),
		 10737418240LL);
	CHECK(json_integer_value(json_object_get(r.json, "id")) > 0);
	resp_free(&r);
}

/* ---- idempotent retries ---- */

static json_int_t map_epoch(void)
{
	struct resp r;
	http(W_VIEWER, "GET", "/api/v1/cluster", NULL, &r);
	json_int_t e = json_integer_value(
	    json_object_get(json_object_get(r.json, "map"), "epoch"));
	resp_free(&r);
	return e;
}

static void test_idempotent(void)
{
	struct resp r;
	const char *body = "{\"name\": \"idem\", \"pool\": \"base\", "
			   "\"size\": 4096}";
	struct opts o = {.header = "Idempotency-Key: cli-0001", .body = body};
	http(W_ADMIN, "POST", "/api/v1/vdisks", &o, &r);
	EXPECT(&r, 201);
	json_int_t id = json_integer_value(json_object_get(r.json, "id"));
	resp_free(&r);
	json_int_t e = map_epoch();
	/* The retry (after a lost answer): the first result, no change. */
	http(W_ADMIN, "POST", "/api/v1/vdisks", &o, &r);
	EXPECT(&r, 201);
	CHECK_EQ(json_integer_value(json_object_get(r.json, "id")), id);
	resp_free(&r);
	CHECK_EQ(map_epoch(), e);
	/* Without the key it is a new request: it exists. */
	CHECK_EQ(call(W_ADMIN, "POST", "/api/v1/vdisks", body), 409);
	/* A key reused for another operation is refused. */
	o.body = "{\"name\": \"idem2\", \"policy\": {\"replicas\": 1}}";
	CHECK_EQ(http(W_ADMIN, "POST", "/api/v1/pools", &o, &r), 400);
	CHECK(r.body && strstr(r.body, "different operation"));
	resp_free(&r);
	/* Malformed keys. */
	static const char *const bad[] = {
	    "Idempotency-Key: has space", "Idempotency-Key: a/b",
	    "Idempotency-Key: "
	    "0123456789012345678901234567890123456789012345678901234567890123"
	    "4"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		o.header = bad[i];
		CHECK_EQ(http(W_ADMIN, "POST", "/api/v1/vdisks", &o, &r), 400);
		CHECK(!strcmp(err_code(&r), "bad_request"));
		resp_free(&r);
	}
	/* A deletion retried: deleted once, the retry answers the same. */
	o = (struct opts){.header = "Idempotency-Key: del-idem"};
	CHECK_EQ(http(W_ADMIN, "DELETE", "/api/v1/vdisks/idem", &o, &r), 200);
	resp_free(&r);
	CHECK_EQ(http(W_ADMIN, "DELETE", "/api/v1/vdisks/idem", &o, &r), 200);
	resp_free(&r);
	CHECK_EQ(call(W_ADMIN, "DELETE", "/api/v1/vdisks/idem", NULL), 404);
	/* A token's secret is shown once: a replayed create says so. */
	o = (struct opts){.header = "Idempotency-Key: tok-idem",
			  .body = "{\"role\": \"viewer\"}"};
	CHECK_EQ(http(W_ADMIN, "POST", "/api/v1/tokens", &o, &r), 201);
	resp_free(&r);
	CHECK_EQ(http(W_ADMIN, "POST", "/api/v1/tokens", &o, &r), 409);
	CHECK(r.body && strstr(r.body, "shown only once"));
	resp_free(&r);
	/* A password change retried after its answer was lost comes with
	 * the old password, which no longer works: its key (remembered as
	 * an auth.password) and its new password (the current one) make it
	 * the same change, which gets its first answer. */
	static const char pw_new[] = "idem-new-password-1";
	char pb[64];
	snprintf(pb, sizeof(pb), "{\"password\": \"%s\"}", pw_new);
	o = (struct opts){.header = "Idempotency-Key: pw-idem", .body = pb};
	CHECK_EQ(http(W_ADMIN, "POST", "/api/v1/password", &o, &r), 200);
	resp_free(&r);
	e = map_epoch();
	CHECK_EQ(http(W_ADMIN, "POST", "/api/v1/password", &o, &r), 200);
	CHECK(json_is_true(json_object_get(r.json, "changed")));
	resp_free(&r);
	CHECK_EQ(map_epoch(), e);
	/* the same key with another password is not that change */
	o.body = "{\"password\": \"another-password-2\"}";
	CHECK_EQ(http(W_ADMIN, "POST", "/api/v1/password", &o, &r), 401);
	resp_free(&r);
	/* nor is the same body without the key */
	o = (struct opts){.body = pb};
	CHECK_EQ(http(W_ADMIN, "POST", "/api/v1/password", &o, &r), 401);
	resp_free(&r);
	/* a key remembered for another operation proves nothing */
	o = (struct opts){.header = "Idempotency-Key: del-idem", .body = pb};
	CHECK_EQ(http(W_ADMIN, "POST", "/api/v1/password", &o, &r), 401);
	resp_free(&r);
	CHECK_EQ(map_epoch(), e);
	snprintf(cur_pw, sizeof(cur_pw), "%s", pw_new);
	CHECK_EQ(call(W_ADMIN, "GET", "/api/v1/pools", NULL), 200);
}

/* ---- a follower ---- */

static void test_follower(void)
{
	struct resp r;
	char leader[64];
	on_loop(start_leader, NULL);
	CHECK(E.srv2 != NULL);
	snprintf(leader, sizeof(leader), "localhost:%d", E.port2);
	on_loop(set_follower, leader);
	/* A request that was forwarded once is not forwarded again: 307. */
	http(W_ADMIN, "POST", "/api/v1/pools",
	     &(struct opts){.header = "X-Cairn-Forwarded: 1",
			    .body = "{\"name\": \"fw\", \"policy\": "
				    "{\"replicas\": 1}}"},
	     &r);
	EXPECT(&r, 307);
	char want[128];
	snprintf(want, sizeof(want), "https://localhost:%d/api/v1/pools",
		 E.port2);
	CHECK(!strcmp(r.location, want));
	CHECK(!strcmp(err_code(&r), "not_leader"));
	resp_free(&r);
	/* A client that follows the redirect, credentials and body kept,
	 * lands on the leader. */
	http(W_ADMIN, "POST", "/api/v1/pools",
	     &(struct opts){.follow = true,
			    .header = "X-Cairn-Forwarded: 1",
			    .body = "{\"name\": \"fw0\", \"policy\": "
				    "{\"replicas\": 1}}"},
	     &r);
	EXPECT(&r, 201);
	resp_free(&r);

	/* Otherwise the follower forwards, with the caller's credentials. */
	unsigned before = E.fake2->submitted;
	http(W_ADMIN, "POST", "/api/v1/pools",
	     &(struct opts){.body = "{\"name\": \"fw\", \"policy\": "
				    "{\"replicas\": 1}}"},
	     &r);
	EXPECT(&r, 201);
	CHECK(!strcmp(str_of(r.json, "name"), "fw"));
	resp_free(&r);
	CHECK_EQ(E.fake2->submitted, before + 1);
	http(W_ADMIN, "POST", "/api/v1/pools",
	     &(struct opts){.body = "{\"name\": \"fw\", \"policy\": "
				    "{\"replicas\": 1}}"},
	     &r);
	EXPECT(&r, 409); /* the leader's answer, unchanged */
	CHECK(!strcmp(err_code(&r), "exists"));
	resp_free(&r);
	http(W_VIEWER, "GET", "/api/v1/pools", NULL, &r);
	EXPECT(&r, 200);
	CHECK(r.body && strstr(r.body, "\"fw\"") && strstr(r.body, "fw0"));
	resp_free(&r);
	/* The leader checks the credentials too. */
	CHECK_EQ(call(W_VIEWER, "POST", "/api/v1/pools",
		      "{\"name\": \"fv\", \"policy\": {\"replicas\": 1}}"),
		 403);
	CHECK_EQ(call(W_NONE, "GET", "/api/v1/pools", NULL), 401);
	/* Credentials this follower has not applied yet (a token made on
	 * the leader): it lets the leader decide. */
	on_loop(leader_only_token, NULL);
	char auth[128];
	snprintf(auth, sizeof(auth), "Bearer %s", LEADER_ONLY_TOKEN);
	http(W_NONE, "GET", "/api/v1/pools", &(struct opts){.auth = auth}, &r);
	EXPECT(&r, 200);
	resp_free(&r);
	/* A long operation on the leader; its task is polled there. */
	http(W_ADMIN, "DELETE", "/api/v1/nodes/1", NULL, &r);
	EXPECT(&r, 202);
	char loc[512];
	snprintf(loc, sizeof(loc), "%s", r.location);
	resp_free(&r);
	CHECK(!strncmp(loc, "/api/v1/tasks/", 14));
	json_t *t = wait_task(loc);
	CHECK(!strcmp(str_of(t, "state"), "done"));
	/* its id names node 2, which kept it */
	CHECK_EQ(json_integer_value(json_object_get(t, "id")) >> 32, 2);
	json_decref(t);
	/* The leader is gone (another leads, or none): the task is still
	 * asked of node 2, which keeps it. */
	on_loop(set_follower, "127.0.0.1:1");
	http(W_ADMIN, "GET", "/api/v1/pools", NULL, &r);
	EXPECT(&r, 503);
	CHECK(!strcmp(err_code(&r), "leader_unreachable"));
	resp_free(&r);
	t = wait_task(loc);
	CHECK(!strcmp(str_of(t, "state"), "done"));
	json_decref(t);
	/* node 2 down: a clear 503; node 2 out of the map: 410 */
	on_loop(set_node_api, "127.0.0.1:1");
	http(W_VIEWER, "GET", loc, NULL, &r);
	EXPECT(&r, 503);
	CHECK(!strcmp(err_code(&r), "node_unreachable"));
	CHECK(r.body && strstr(r.body, "node 2"));
	resp_free(&r);
	on_loop(set_node_api, "gone");
	http(W_VIEWER, "GET", loc, NULL, &r);
	EXPECT(&r, 410);
	CHECK(!strcmp(err_code(&r), "task_node_gone"));
	resp_free(&r);
	on_loop(set_node_api, "back");

	on_loop(set_follower, "");
	CHECK_EQ(call(W_ADMIN, "GET", "/api/v1/pools", NULL), 503);
	CHECK_EQ(call(W_ADMIN, "DELETE", "/api/v1/nodes/1", NULL), 503);
	on_loop(set_follower, NULL);
	on_loop(set_no_quorum, "on");
	http(W_ADMIN, "GET", "/api/v1/cluster", NULL, &r);
	EXPECT(&r, 503);
	CHECK(!strcmp(err_code(&r), "unavailable"));
	resp_free(&r);
	on_loop(set_no_quorum, NULL);
	CHECK_EQ(call(W_ADMIN, "GET", "/api/v1/pools", NULL), 200);
}

/* ---- membership: a node removed while it was down ---- */

static void closed(void *arg);
static struct api_server *asker;
static struct cluster *fake3;
static int asker_closed;

static void node_files(int id, char *crt, char *k, size_t len)
{
	snprintf(crt, len, "%s/node-%d.crt", dir, id);
	snprintf(k, len, "%s/node-%d.key", dir, id);
}

/* A node that knows no leader (fake3), whose own map lists node 1 at the
 * first server's API: it asks whether it is still a member, signing with
 * node-<id>'s key. */
static void asker_start(void *arg)
{
	int id = *(int *)arg;
	char err[256], crt[320], k[320], api[64];
	node_files(id, crt, k, sizeof(crt));
	fake3 = fake_cluster_new(&E.loop, 1);
	fake3->self_id = (uint64_t)id;
	fake_cluster_set_follower(fake3, "");
	snprintf(api, sizeof(api), "localhost:%d", E.port);
	json_object_set_new(json_object_get(json_object_get(fake3->map, "nodes"),
					    "1"),
			    "api", json_string(api));
	struct api_config c = E.cfg;
	c.node_cert_file = crt;
	c.node_key_file = k;
	if (api_server_start(&E.loop, &c, fake3, &asker, err, sizeof(err))) {
		fprintf(stderr, "asker: %s\n", err);
		asker = NULL;
	}
}

static void asker_removed(void *out)
{
	*(bool *)out = fake3->removed;
}

static void asker_stop(void *arg)
{
	(void)arg;
	api_server_close(asker, closed, &asker_closed);
}

static void asker_free(void *arg)
{
	(void)arg;
	fake_cluster_free(fake3);
}

/* The body a node sends: membership.c's message, signed by its key. */
static char *membership_body(int id, int cert_id, const char *name,
			     long long t)
{
	char crt[320], k[320], msg[192], sig64[256];
	unsigned char sig[128];
	size_t slen = sizeof(sig);
	node_files(cert_id, crt, k, sizeof(crt));
	snprintf(msg, sizeof(msg), "cairn-membership-v1\n%d\n%s\n%lld", id,
		 name, t);
	FILE *f = fopen(k, "r");
	EVP_PKEY *pk = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
	if (f)
		fclose(f);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	CHECK(pk && md &&
	      EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, pk) == 1 &&
	      EVP_DigestSign(md, sig, &slen, (unsigned char *)msg,
			     strlen(msg)) == 1);
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(pk);
	EVP_EncodeBlock((unsigned char *)sig64, sig, (int)slen);
	char *pem = pki_read_file(crt);
	json_t *b = json_pack("{s:i, s:s, s:I, s:s, s:s}", "id", id, "name",
			      name, "time", (json_int_t)t, "cert", pem ?: "",
			      "sig", sig64);
	char *out = json_dumps(b, JSON_COMPACT);
	json_decref(b);
	free(pem);
	return out;
}

static void test_membership(void)
{
	char cadir[300], err[256];
	snprintf(cadir, sizeof(cadir), "%s/ca", dir);
	CHECK(!pki_cert_issue(cadir, "node-1", dir, 0, 30, err, sizeof(err)));
	CHECK(!pki_cert_issue(cadir, "node-9", dir, 0, 30, err, sizeof(err)));
	/* The answering side: a signed question, answered from the map
	 * read through the leader; no credentials needed. */
	struct resp r;
	long long now = (long long)time(NULL);
	char *b = membership_body(1, 1, "node1", now);
	http(W_NONE, "POST", "/api/v1/membership", &(struct opts){.body = b},
	     &r);
	EXPECT(&r, 200);
	CHECK(json_is_true(json_object_get(r.json, "member")));
	resp_free(&r);
	free(b);
	b = membership_body(9, 9, "node9", now);
	http(W_NONE, "POST", "/api/v1/membership", &(struct opts){.body = b},
	     &r);
	EXPECT(&r, 200);
	CHECK(json_is_false(json_object_get(r.json, "member")));
	resp_free(&r);
	free(b);
	/* id 1 under node 9's certificate; a stale time: refused */
	b = membership_body(1, 9, "node1", now);
	CHECK_EQ(call(W_NONE, "POST", "/api/v1/membership", b), 401);
	free(b);
	b = membership_body(1, 1, "node1", now - 3600);
	CHECK_EQ(call(W_NONE, "POST", "/api/v1/membership", b), 401);
	free(b);
	/* The asking side: node 9, out of the first server's map, learns
	 * that it was removed (fake3 is told so). */
	int id = 9;
	on_loop(asker_start, &id);
	CHECK(asker != NULL);
	bool removed = false;
	for (int i = 0; i < 2000 && asker && !removed; i++) {
		on_loop(asker_removed, &removed);
		if (!removed)
			usleep(5000);
	}
	CHECK(removed);
	if (asker) {
		on_loop(asker_stop, NULL);
		for (int i = 0; i < 2000 && !__atomic_load_n(&asker_closed,
							       __ATOMIC_SEQ_CST);
		     i++)
			usleep(1000);
		CHECK_EQ(__atomic_load_n(&asker_closed, __ATOMIC_SEQ_CST), 1);
	}
	on_loop(asker_free, NULL);
}

/* ---- metrics, OpenAPI ---- */

static void test_docs(void)
{
	struct resp r;
	http(W_VIEWER, "GET", "/metrics", NULL, &r);
	EXPECT(&r, 200);
	CHECK(r.body && strstr(r.body, "process_cpu_seconds_total "));
	CHECK(r.body && strstr(r.body, "process_resident_memory_bytes "));
	CHECK(r.body &&
	      strstr(r.body, "cairn_api_responses_total{code=\"401\"}"));
	CHECK(r.body &&
	      strstr(r.body, "cairn_api_requests_total{method=\"GET\","
			     "path=\"/metrics\"}"));
	resp_free(&r);

	http(W_VIEWER, "GET", "/api/v1/openapi.json", NULL, &r);
	EXPECT(&r, 200);
	CHECK(json_is_object(r.json));
	CHECK(!strncmp(json_string_value(json_object_get(r.json, "openapi"))
			   ?: "",
		       "3.0", 3));
	json_t *paths = json_object_get(r.json, "paths");
	for (size_t i = 0; i < api_nroutes; i++) {
		char m[16];
		size_t k;
		for (k = 0; api_routes[i].method[k] && k < sizeof(m) - 1; k++)
			m[k] = (char)(api_routes[i].method[k] | 0x20);
		m[k] = 0;
		json_t *op = json_object_get(
		    json_object_get(paths, api_routes[i].path), m);
		if (!op)
			fprintf(stderr, "OpenAPI lacks %s %s\n",
				api_routes[i].method, api_routes[i].path);
		CHECK(json_is_object(json_object_get(op, "responses")));
	}
	CHECK_EQ(json_object_size(paths) > 0, 1);
	/* The served document passes an OpenAPI 3.0 validator, when one is
	 * installed (Debian python3-openapi-spec-validator). */
	char doc[400], cmd[800];
	snprintf(doc, sizeof(doc), "%s/openapi.json", dir);
	FILE *f = fopen(doc, "w");
	if (f && r.body) {
		fwrite(r.body, 1, r.len, f);
		fclose(f);
		snprintf(
		    cmd, sizeof(cmd),
		    "python3 -c 'import openapi_spec_validator' "
		    ">/dev/null 2>&1 && { python3 -c 'import json, sys; "
		    "from openapi_spec_validator import validate; "
		    "validate(json.load(open(sys.argv[1])))' %s || exit 1; }"
		    " || exit 0",
		    doc);
		int st = system(cmd);
		CHECK_EQ(WIFEXITED(st) ? WEXITSTATUS(st) : -1, 0);
	} else if (f) {
		fclose(f);
	}
	resp_free(&r);
}

/* ---- the cairn CLI, when it was built beside this test ---- */

static char cli[600], cli_env[1400];

static int run_cli(const char *extra_env, const char *args, char *out,
		   size_t len)
{
	char cmd[3000];
	snprintf(cmd, sizeof(cmd), "env %s %s %s %s 2>&1", cli_env,
		 extra_env ? extra_env : "", cli, args);
	FILE *p = popen(cmd, "r");
	size_t n = 0;
	if (out && len)
		out[0] = 0;
	if (!p)
		return -1;
	char tmp[4096];
	size_t k;
	while ((k = fread(tmp, 1, sizeof(tmp), p)) > 0)
		if (out && n + 1 < len) {
			size_t c = k < len - n - 1 ? k : len - n - 1;
			memcpy(out + n, tmp, c);
			n += c;
			out[n] = 0;
		}
	int st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#define CLI(rc, args)                                                          \
	do {                                                                   \
		int got_ = run_cli(NULL, args, out, sizeof(out));              \
		if (got_ != (rc))                                              \
			fprintf(stderr, "cairn %s: %s", args, out);            \
		CHECK_EQ(got_, rc);                                            \
	} while (0)

static void *leader_back_later(void *arg)
{
	(void)arg;
	usleep(700 * 1000);
	on_loop(set_follower, NULL);
	return NULL;
}

static void test_cli(void)
{
	char exe[512], out[8192], pwfile[400];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return;
	exe[n] = 0;
	*strrchr(exe, '/') = 0; /* build/MODE/tests */
	snprintf(cli, sizeof(cli), "%s/../bin/cairn", exe);
	if (access(cli, X_OK)) {
		fprintf(stderr, "  (no %s: CLI not tested)\n", cli);
		return;
	}
	snprintf(pwfile, sizeof(pwfile), "%s/admin.pw", dir);
	FILE *f = fopen(pwfile, "w");
	fprintf(f, "%s\n", cur_pw);
	fclose(f);
	snprintf(cli_env, sizeof(cli_env),
		 "API_URL=https://localhost:%d CA_CERT=%s "
		 "ADMIN_PASSWORD_FILE=%s",
		 E.port, ca_file, pwfile);

	CLI(0, "cluster status");
	CHECK(strstr(out, "epoch:") != NULL);
	CLI(0, "--json cluster status");
	json_t *j = json_loads(out, 0, NULL);
	CHECK(json_is_object(json_object_get(j, "map")));
	json_decref(j);
	CLI(0, "pool create clip --replicas 1");
	CLI(1, "pool create clip --replicas 1");
	CHECK(strstr(out, "cairn: ") && strstr(out, "exists"));
	CLI(0, "pool create clec --ec 1+1");
	CLI(2, "pool create clx --ec 4");
	CLI(2, "pool create");
	CLI(0, "--json pool list");
	j = json_loads(out, 0, NULL);
	CHECK(json_is_array(j) && strstr(out, "\"clip\""));
	json_decref(j);
	CLI(0, "pool list");
	CHECK(strstr(out, "replicas=1") && strstr(out, "ec=1+1"));
	CLI(0, "vdisk create cv --pool clip --size 10G");
	CLI(2, "vdisk create cv2 --pool clip --size 12Q");
	CLI(2, "vdisk create cv2 --pool clip");
	CLI(0, "vdisk list");
	CHECK(strstr(out, "cv") && strstr(out, "10 GiB"));
	CLI(1, "vdisk delete nope");
	CLI(0, "vdisk delete cv");
	CLI(0, "pool delete clip");
	CLI(0, "node list");
	CHECK(strstr(out, "node1") != NULL);
	/* Two nodes left and pool "base" wants two copies: refused. */
	CLI(1, "node remove 2 --wait");
	CHECK(strstr(out, "failed") && strstr(out, "too few"));
	CLI(1, "node remove 9 --wait");
	CHECK(strstr(out, "failed") && strstr(out, "no node"));
	char show[64];
	unsigned long long tid = 0;
	CHECK(sscanf(out, "task %llu:", &tid) == 1);
	CLI(1, "task show 99999");
	snprintf(show, sizeof(show), "task show %llu", tid);
	CLI(1, show); /* a failed task is an error */
	CHECK(strstr(out, "failed") && strstr(out, "no node"));
	CLI(2, "task show x");
	CLI(2, "frobnicate now");
	CLI(2, "--bogus cluster status");
	CLI(2, "token create");
	CLI(0, "--json token create --role viewer --name cli");
	j = json_loads(out, 0, NULL);
	char tokenv[200];
	snprintf(tokenv, sizeof(tokenv), "API_TOKEN=%s",
		 json_string_value(json_object_get(j, "token")) ?: "");
	json_decref(j);
	CHECK_EQ(run_cli(tokenv, "pool list", out, sizeof(out)), 0);
	CHECK_EQ(
	    run_cli(tokenv, "pool create tv --replicas 1", out, sizeof(out)),
	    1);
	CHECK(strstr(out, "403") != NULL);
	CLI(0, "token list");
	/* The server is checked against CA_CERT, nothing else. */
	CHECK_EQ(
	    run_cli("CA_CERT=/dev/null", "cluster status", out, sizeof(out)),
	    1);
	CHECK_EQ(run_cli("API_URL=", "cluster status", out, sizeof(out)), 1);
	/* A follower's redirect, followed with the same credentials. */
	char leader[64];
	snprintf(leader, sizeof(leader), "localhost:%d", E.port2);
	on_loop(set_follower, leader);
	CLI(0, "pool list");
	CHECK(strstr(out, "fw") != NULL); /* made on the leader earlier */
	on_loop(set_follower, NULL);
	/* Between leaders the CLI retries (with one Idempotency-Key) until a
	 * leader answers; a node it cannot reach is skipped for the next one
	 * of API_URL's list. */
	on_loop(set_follower, "");
	pthread_t th;
	pthread_create(&th, NULL, leader_back_later, NULL);
	CLI(0, "pool create retried --replicas 1");
	pthread_join(th, NULL);
	CLI(1, "pool create retried --replicas 1");
	CHECK(strstr(out, "exists") != NULL);
	char urls[128];
	snprintf(urls, sizeof(urls),
		 "API_URL=https://localhost:1,https://localhost:%d", E.port);
	CHECK_EQ(run_cli(urls, "pool list", out, sizeof(out)), 0);
	CHECK(strstr(out, "retried") != NULL);
	/* Last: a new password, written back to ADMIN_PASSWORD_FILE. */
	CLI(0, "password change --generate");
	CLI(0, "cluster status");
	f = fopen(pwfile, "r");
	if (f) {
		if (fscanf(f, "%299s", cur_pw) != 1)
			cur_pw[0] = 0;
		fclose(f);
	}
	CHECK(strlen(cur_pw) >= 20);
	CHECK_EQ(call(W_ADMIN, "GET", "/api/v1/pools", NULL), 200);
}

/* ---- start, stop ---- */

static void *client_main(void *arg);
static void close_async(void *arg);

static void closed(void *arg)
{
	(*(int *)arg)++;
}

static int nclosed;

static void stop_all(void *arg)
{
	(void)arg;
	api_server_close(E.srv, closed, &nclosed);
	if (E.srv2)
		api_server_close(E.srv2, closed, &nclosed);
	else
		nclosed++;
}

static void walk_close(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

int main(void)
{
	char err[512];
	snprintf(dir, sizeof(dir), "/tmp/cairn-test-api-XXXXXX");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(ca_file, sizeof(ca_file), "%s/ca/ca.crt", dir);
	snprintf(state, sizeof(state), "%s/state", dir);
	snprintf(cert, sizeof(cert), "%s/localhost.crt", dir);
	snprintf(key, sizeof(key), "%s/localhost.key", dir);
	char cadir[300];
	snprintf(cadir, sizeof(cadir), "%s/ca", dir);
	if (pki_ca_create(cadir, "test", 30, err, sizeof(err)) ||
	    pki_cert_issue(cadir, "localhost", dir, 0, 30, err, sizeof(err))) {
		fprintf(stderr, "pki: %s\n", err);
		return 1;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);

	uv_loop_init(&E.loop);
	uv_async_init(&E.loop, &E.async, on_async);
	sem_init(&E.done, 0, 0);
	E.fake = fake_cluster_new(&E.loop, 3);
	E.fake2 = fake_cluster_new(&E.loop, 3);
	test_admin_init();
	struct api_config cfg = {.listen = "127.0.0.1:0",
				 .cert_file = cert,
				 .key_file = key,
				 .state_dir = state,
				 .ca_file = ca_file};
	E.cfg = cfg;
	int rc =
	    api_server_start(&E.loop, &cfg, E.fake, &E.srv, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "api_server_start: %s\n", err);
		return 1;
	}
	/* Refusals at start. */
	struct api_server *bad;
	struct api_config bcfg = cfg;
	bcfg.listen = "127.0.0.1";
	CHECK(api_server_start(&E.loop, &bcfg, E.fake, &bad, err,
			       sizeof(err)) == -EINVAL);
	bcfg.listen = "127.0.0.1:0";
	bcfg.cert_file = ca_file; /* a certificate without its key */
	CHECK(api_server_start(&E.loop, &bcfg, E.fake, &bad, err,
			       sizeof(err)) == -EINVAL);
	E.port = api_server_port(E.srv);
	CHECK(E.port > 0);
	pthread_create(&E.thread, NULL, client_main, NULL);
	uv_run(&E.loop, UV_RUN_DEFAULT);
	pthread_join(E.thread, NULL);
	CHECK_EQ(E.fake->pending + E.fake2->pending, 0);
	uv_walk(&E.loop, walk_close, NULL);
	uv_run(&E.loop, UV_RUN_DEFAULT);
	CHECK_EQ(uv_loop_close(&E.loop), 0);
	fake_cluster_free(E.fake);
	fake_cluster_free(E.fake2);
	curl_global_cleanup();
	sem_destroy(&E.done);

	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd))
		fprintf(stderr, "could not remove %s\n", dir);
	if (failures) {
		fprintf(stderr, "test_api: %d failures\n", failures);
		return 1;
	}
	printf("test_api: ok\n");
	return 0;
}

static void close_async(void *arg)
{
	(void)arg;
	uv_close((uv_handle_t *)&E.async, NULL);
}

static void *client_main(void *arg)
{
	(void)arg;
	static const struct {
		const char *name;
		void (*fn)(void);
	} tests[] = {
		{"password gate", test_password_gate},
		{"tokens", test_tokens},
		{"endpoint x role", test_matrix},
		{"bad input", test_bad_input},
		{"tasks", test_tasks},
		{"idempotent", test_idempotent},
		{"follower", test_follower},
		{"membership", test_membership},
		{"metrics, openapi", test_docs},
		{"cli", test_cli},
	};
	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		uint64_t t0 = uv_hrtime();
		tests[i].fn();
		fprintf(stderr, "  %-18s %6.0f ms\n", tests[i].name,
			(double)(uv_hrtime() - t0) / 1e6);
	}

	on_loop(stop_all, NULL);
	/* Close callbacks come on the loop: wait for both. */
	for (int i = 0;
	     i < 2000 && __atomic_load_n(&nclosed, __ATOMIC_SEQ_CST) < 2; i++)
		usleep(1000);
	CHECK_EQ(__atomic_load_n(&nclosed, __ATOMIC_SEQ_CST), 2);
	on_loop(close_async, NULL); /* the loop ends */
	return NULL;
}
