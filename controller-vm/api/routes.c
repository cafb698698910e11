/* The endpoint table — every endpoint, its least role and its flags, in
 * one place (server.c enforces them before any handler runs) — and the
 * handlers. Mutations become cluster_submit() operations; reads use
 * cluster_read() (linearizable, through the leader) or cluster_status(). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cairn/cluster.h>
#include <openssl/crypto.h>

#include "api_internal.h"

/* ---- input checks: 400 with the reason, never an assert ---- */

static bool only_fields(struct api_call *call, const char *const *allowed)
{
	const char *key;
	json_t *v;
	json_object_foreach(call->body, key, v)
	{
		bool ok = false;
		for (const char *const *a = allowed; *a && !ok; a++)
			ok = !strcmp(*a, key);
		if (!ok) {
			api_reply_error(call, 400, "unknown_field",
					"unknown field '%s'", key);
			return false;
		}
	}
	return true;
}

static bool valid_name(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 63 || s[0] == '.' || s[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		      c == '-'))
			return false;
	}
	return true;
}

/* A required string field that must be a valid name. */
static const char *name_field(struct api_call *call, const char *field)
{
	json_t *v = json_object_get(call->body, field);
	if (!json_is_string(v)) {
		api_reply_error(call, 400, "bad_field", "'%s' must be a string",
				field);
		return NULL;
	}
	if (!valid_name(json_string_value(v))) {
		api_reply_error(call, 400, "bad_field",
				"'%s': 1-63 characters of A-Z a-z 0-9 . _ -, "
				"not starting with . or -",
				field);
		return NULL;
	}
	return json_string_value(v);
}

static bool int_in(json_t *v, json_int_t lo, json_int_t hi, json_int_t *out)
{
	if (!json_is_integer(v))
		return false;
	*out = json_integer_value(v);
	return *out >= lo && *out <= hi;
}

/* ---- talking to the cluster ---- */

struct op_ctx {
	struct api_call *call;
	void (*done)(struct api_call *, json_t *result);
};

static void op_cb(void *arg, int status, json_t *result, const char *msg)
{
	struct op_ctx *o = arg;
	struct api_call *call = o->call;
	call->srv->nops--;
	if (status)
		api_reply_cluster_error(call, status, msg);
	else
		o->done(call, result);
	free(o);
}

/* The context of one cluster operation; NULL (and the call answered)
 * when out of memory. */
static struct op_ctx *op_new(struct api_call *call,
			     void (*done)(struct api_call *, json_t *))
{
	struct op_ctx *o = malloc(sizeof(*o));
	if (!o) {
		api_reply_error(call, 500, "internal", "out of memory");
		return NULL;
	}
	o->call = call;
	o->done = done;
	call->srv->nops++;
	return o;
}

static void submit(struct api_call *call, json_t *op,
		   void (*done)(struct api_call *, json_t *))
{
	struct op_ctx *o = malloc(sizeof(*o));
	if (!o || !op) {
		free(o);
		json_decref(op);
		api_reply_error(call, 500, "internal", "out of memory");
		return;
	}
	o->call = call;
	o->done = done;
	call->srv->nops++;
	api_op_id(call, op);
	cluster_submit(call->srv->cluster, op, op_cb, o);
	json_decref(op);
}

void api_read_map(struct api_call *call,
		  void (*done)(struct api_call *, json_t *))
{
	struct op_ctx *o = malloc(sizeof(*o));
	if (!o) {
		api_reply_error(call, 500, "internal", "out of memory");
		return;
	}
	o->call = call;
	o->done = done;
	call->srv->nops++;
	cluster_read(call->srv->cluster, op_cb, o);
}

/* The map keeps nodes, pools and vdisks as objects keyed by id or name;
 * the API answers {"key": [...]}, in the map's order. */
static void reply_list(struct api_call *call, json_t *map, const char *key)
{
	json_t *l = json_object_get(map, key), *out = json_array(), *v;
	const char *k;
	size_t i;
	if (json_is_array(l))
		json_array_foreach(l, i, v)
		    json_array_append_new(out, json_deep_copy(v));
	else if (json_is_object(l))
		json_object_foreach(l, k, v)
		    json_array_append_new(out, json_deep_copy(v));
	api_reply(call, 200, json_pack("{s:o}", key, out));
}

/* ---- cluster and nodes ---- */

static void cluster_got(struct api_call *call, json_t *map)
{
	json_t *st = cluster_status(call->srv->cluster);
	api_reply(call, 200,
		  json_pack("{s:o, s:o}", "status", st ? st : json_object(),
			    "map", json_deep_copy(map)));
}

static void h_cluster_get(struct api_call *call)
{
	api_read_map(call, cluster_got);
}

static void nodes_got(struct api_call *call, json_t *map)
{
	reply_list(call, map, "nodes");
}

static void h_nodes_get(struct api_call *call)
{
	api_read_map(call, nodes_got);
}

struct task_ctx {
	struct api_server *srv;
	uint64_t id;
};

static void task_cb(void *arg, int status, json_t *result, const char *msg)
{
	struct task_ctx *tc = arg;
	struct api_server *srv = tc->srv;
	struct api_task *t = api_task_find(&srv->tasks, tc->id);
	srv->nops--;
	free(tc);
	if (!t)
		return;
	t->finished = time(NULL);
	t->status = status;
	if (status) {
		t->state = API_TASK_FAILED;
		snprintf(t->error, sizeof(t->error), "%s",
			 status == -EREMOTE ? "this node lost the leadership; "
					      "retry on the leader"
			 : msg && *msg	    ? msg
					    : strerror(-status));
	} else {
		t->state = API_TASK_DONE;
		t->progress = 1.0;
		t->result = result ? json_deep_copy(result) : NULL;
	}
}

/* A long operation must start on the leader: ask before answering 202,
 * since the task's outcome comes long after the answer. */
static bool leader_or_redirect(struct api_call *call)
{
	if (cluster_is_leader(call->srv->cluster))
		return true;
	json_t *st = cluster_status(call->srv->cluster);
	char leader[256];
	snprintf(leader, sizeof(leader), "%s",
		 json_string_value(json_object_get(st, "leader_api")) ?: "");
	json_decref(st);
	api_reply_cluster_error(call, -EREMOTE, leader);
	return false;
}

static void h_node_delete(struct api_call *call)
{
	struct api_server *srv = call->srv;
	char *end;
	unsigned long long id = strtoull(call->param, &end, 10);
	if (*end || call->param[0] < '1' || call->param[0] > '9' ||
	    id > INT32_MAX) {
		api_reply_error(call, 400, "bad_id",
				"node id must be a positive integer");
		return;
	}
	if (!leader_or_redirect(call))
		return;
	struct api_task *t =
	    api_task_new(&srv->tasks, "node.remove", time(NULL));
	struct task_ctx *tc = malloc(sizeof(*tc));
	if (!t || !tc) {
		free(tc);
		if (t) {
			t->state = API_TASK_FAILED;
			snprintf(t->error, sizeof(t->error), "out of memory");
		}
		api_reply_error(call, 503, "busy",
				"too many tasks in flight; try again later");
		return;
	}
	tc->srv = srv;
	tc->id = t->id;
	srv->nops++;
	json_t *tj = api_task_json(t);
	cluster_remove_node(srv->cluster, (uint64_t)id,
			    call->op_id[0] ? call->op_id : NULL, task_cb, tc);
	if (call->req) {
		char loc[64];
		int n =
		    snprintf(loc, sizeof(loc), "/api/v1/tasks/%" PRIu64, t->id);
		h2o_add_header(
		    &call->req->pool, &call->req->res.headers,
		    H2O_TOKEN_LOCATION, NULL,
		    h2o_strdup(&call->req->pool, loc, (size_t)n).base,
		    (size_t)n);
	}
	api_reply(call, 202, json_pack("{s:o}", "task", tj));
}

/* ---- pools ---- */

static void pools_got(struct api_call *call, json_t *map)
{
	reply_list(call, map, "pools");
}

static void h_pools_get(struct api_call *call)
{
	api_read_map(call, pools_got);
}

/* 201 with what was asked for plus what the map assigned (e.g. the id). */
static void created(struct api_call *call, json_t *result)
{
	json_t *j = json_deep_copy(call->body);
	if (json_is_object(result))
		json_object_update(j, result);
	api_reply(call, 201, j);
}

static void deleted(struct api_call *call, json_t *result)
{
	(void)result;
	api_reply(call, 200, json_pack("{s:s}", "deleted", call->param));
}

/* {"replicas": 1..3} or {"ec": {"k": 1..16, "m": 1..4}} */
static json_t *parse_policy(struct api_call *call, json_t *p)
{
	json_int_t r, k, m;
	if (!json_is_object(p)) {
		api_reply_error(call, 400, "bad_field",
				"'policy' must be an object: {\"replicas\": N} "
				"or {\"ec\": {\"k\": K, \"m\": M}}");
		return NULL;
	}
	json_t *rv = json_object_get(p, "replicas");
	json_t *ec = json_object_get(p, "ec");
	if (json_object_size(p) != 1 || (!rv == !ec)) {
		api_reply_error(call, 400, "bad_field",
				"'policy' takes exactly one of 'replicas' "
				"and 'ec'");
		return NULL;
	}
	if (rv) {
		if (!int_in(rv, 1, 3, &r)) {
			api_reply_error(call, 400, "bad_field",
					"'replicas' must be 1, 2 or 3");
			return NULL;
		}
		return json_pack("{s:I}", "replicas", r);
	}
	if (!json_is_object(ec) || json_object_size(ec) != 2 ||
	    !int_in(json_object_get(ec, "k"), 1, 16, &k) ||
	    !int_in(json_object_get(ec, "m"), 1, 4, &m)) {
		api_reply_error(call, 400, "bad_field",
				"'ec' must be {\"k\": 1-16, \"m\": 1-4}");
		return NULL;
	}
	return json_pack("{s:{s:I, s:I}}", "ec", "k", k, "m", m);
}

static void h_pools_post(struct api_call *call)
{
	static const char *const fields[] = {"name", "policy", "spread_domains",
					     NULL};
	if (!only_fields(call, fields))
		return;
	json_t *spread = json_object_get(call->body, "spread_domains");
	if (spread && !json_is_boolean(spread)) {
		api_reply_error(call, 400, "bad_field",
				"'spread_domains' must be a boolean");
		return;
	}
	const char *name = name_field(call, "name");
	if (!name)
		return;
	json_t *policy =
	    parse_policy(call, json_object_get(call->body, "policy"));
	if (!policy)
		return;
	json_t *op = json_pack("{s:s, s:s, s:o}", "op", "pool.create", "name",
			       name, "policy", policy);
	if (spread)
		json_object_set(op, "spread_domains", spread);
	submit(call, op, created);
}

static bool param_name(struct api_call *call)
{
	if (valid_name(call->param))
		return true;
	api_reply_error(call, 400, "bad_name", "invalid name '%s'",
			call->param);
	return false;
}

static void h_pool_delete(struct api_call *call)
{
	if (param_name(call))
		submit(call,
		       json_pack("{s:s, s:s}", "op", "pool.delete", "name",
				 call->param),
		       deleted);
}

/* ---- vdisks ---- */

static void vdisks_got(struct api_call *call, json_t *map)
{
	reply_list(call, map, "vdisks");
}

static void h_vdisks_get(struct api_call *call)
{
	api_read_map(call, vdisks_got);
}

static void h_vdisks_post(struct api_call *call)
{
	static const char *const fields[] = {"name", "pool", "size", NULL};
	json_int_t size;
	if (!only_fields(call, fields))
		return;
	const char *name = name_field(call, "name");
	if (!name)
		return;
	const char *pool = name_field(call, "pool");
	if (!pool)
		return;
	if (!int_in(json_object_get(call->body, "size"), 4096,
		    (json_int_t)16 << 40, &size) ||
	    size % 4096) {
		api_reply_error(call, 400, "bad_field",
				"'size' must be an integer number of bytes, "
				"a multiple of 4096, from 4 KiB to 16 TiB");
		return;
	}
	submit(call,
	       json_pack("{s:s, s:s, s:s, s:I}", "op", "vdisk.create", "pool",
			 pool, "name", name, "size", size),
	       created);
}

static void h_vdisk_delete(struct api_call *call)
{
	if (param_name(call))
		submit(call,
		       json_pack("{s:s, s:s}", "op", "vdisk.delete", "name",
				 call->param),
		       deleted);
}

/* ---- tasks ---- */

/* A task lives on the node that started it (the leader then), and its id
 * names that node (api_internal.h): answer for our own, forward to the
 * owner for the others, whichever node leads now — also to an owner that
 * was removed (the map remembers its address under "left"), which still
 * answers for its tasks while it runs. An owner the map does not know
 * cannot be asked: say so (410) rather than a bare 404. */
static void h_task_get(struct api_call *call)
{
	struct api_server *srv = call->srv;
	char *end;
	unsigned long long id = strtoull(call->param, &end, 10);
	if (*end || call->param[0] < '1' || call->param[0] > '9') {
		api_reply_error(call, 404, "not_found", "no task '%s'",
				call->param);
		return;
	}
	uint64_t owner = api_task_node(id);
	struct api_task *t = api_task_find(&srv->tasks, id);
	if (t) {
		api_reply(call, 200, api_task_json(t));
		return;
	}
	if (owner == srv->tasks.node || !owner) {
		api_reply_error(call, 404, "not_found",
				"no task %llu on this node (node %" PRIu64
				"); tasks are kept in memory, so a restart "
				"forgets them",
				id, srv->tasks.node);
		return;
	}
	char key[24];
	snprintf(key, sizeof(key), "%" PRIu64, owner);
	const json_t *map = cluster_local_map(srv->cluster);
	const json_t *n = json_object_get(json_object_get(map, "nodes"), key);
	/* a removed node still answers for its tasks while it runs */
	if (!n)
		n = json_object_get(json_object_get(map, "left"), key);
	if (!n) {
		api_reply_error(call, 410, "task_node_gone",
				"task %llu was kept by node %" PRIu64
				", which this cluster's map does not know "
				"(any more); its operation's outcome is in "
				"the map (cairn node list, cairn cluster "
				"status)",
				id, owner);
		return;
	}
	api_forward_to_node(call, owner,
			    json_string_value(json_object_get(n, "api")));
}

/* ---- the admin password ---- */

static void password_changed(struct api_call *call, json_t *result)
{
	(void)result;
	api_auth_cache_set(call->srv, call->pw);
	api_reply(call, 200, json_pack("{s:b}", "changed", 1));
}

/* The new hash goes to every node through the map (forwarded to the
 * leader on a follower, which checks the caller's password again). */
static void password_hashed(struct api_call *call)
{
	if (call->work_rc) {
		api_reply_error(call, 500, "internal", "hashing failed");
		return;
	}
	json_t *op = api_pwhash_json(&call->pwh);
	if (op)
		json_object_set_new(op, "op", json_string("auth.password"));
	submit(call, op, password_changed);
}

static void h_password_post(struct api_call *call)
{
	static const char *const fields[] = {"password", NULL};
	if (!only_fields(call, fields))
		return;
	json_t *v = json_object_get(call->body, "password");
	const char *pw = json_string_value(v);
	size_t n = pw ? json_string_length(v) : 0;
	if (!pw || n < API_MIN_PASSWORD || n > API_MAX_PASSWORD ||
	    strlen(pw) != n) {
		api_reply_error(call, 400, "weak_password",
				"'password' must be a string of %d to %d "
				"characters",
				API_MIN_PASSWORD, API_MAX_PASSWORD);
		return;
	}
	/* basic_checked() just cached the current password. */
	struct api_server *srv = call->srv;
	unsigned char keep[32];
	memcpy(keep, srv->cache_digest, 32);
	api_auth_cache_set(srv, pw);
	bool same = !memcmp(keep, srv->cache_digest, 32);
	memcpy(srv->cache_digest, keep, 32);
	if (same) {
		api_reply_error(call, 400, "weak_password",
				"the new password must differ from the "
				"current one");
		return;
	}
	snprintf(call->pw, sizeof(call->pw), "%s", pw);
	api_call_hash(call, false, password_hashed);
}

/* ---- tokens ---- */

/* A token as the API shows it: never its hash. */
static json_t *token_json(const json_t *t)
{
	json_int_t exp = json_integer_value(json_object_get(t, "expires"));
	return json_pack("{s:s, s:s, s:s, s:I, s:o}", "id",
			 json_string_value(json_object_get(t, "id")) ?: "",
			 "name",
			 json_string_value(json_object_get(t, "name")) ?: "",
			 "role",
			 json_string_value(json_object_get(t, "role")) ?: "",
			 "created",
			 json_integer_value(json_object_get(t, "created")),
			 "expires", exp ? json_integer(exp) : json_null());
}

static void token_added(struct api_call *call, json_t *result)
{
	const char *hash = json_string_value(json_object_get(result, "hash"));
	if (!hash || strcmp(hash, call->token_hash)) {
		/* A retry of a create that was applied: its secret was shown
		 * once, and only its hash was kept. */
		api_reply_error(call, 409, "exists",
				"this Idempotency-Key already created token "
				"'%s'; its secret was shown only once (revoke "
				"it and create another)",
				json_string_value(json_object_get(result, "id"))
				    ?: "");
		return;
	}
	json_t *j;
	const json_t *t = json_object_get(
	    json_object_get(json_object_get(cluster_local_map(call->srv->cluster),
					    "secrets"),
			    "api_tokens"),
	    json_string_value(json_object_get(result, "id")) ?: "");
	j = t ? token_json(t)
	      : json_pack("{s:O}", "id", json_object_get(result, "id"));
	json_object_set_new(j, "token", json_string(call->pw));
	OPENSSL_cleanse(call->pw, sizeof(call->pw));
	api_reply(call, 201, j);
}

static void h_tokens_post(struct api_call *call)
{
	static const char *const fields[] = {"role", "expires_in", "name",
					     NULL};
	enum api_role role;
	json_int_t ttl = 0;
	if (!only_fields(call, fields))
		return;
	const char *r = json_string_value(json_object_get(call->body, "role"));
	if (!r || api_role_parse(r, &role)) {
		api_reply_error(call, 400, "bad_field",
				"'role' must be \"admin\" or \"viewer\"");
		return;
	}
	json_t *e = json_object_get(call->body, "expires_in");
	if (e && !int_in(e, 1, (json_int_t)10 * 365 * 86400, &ttl)) {
		api_reply_error(call, 400, "bad_field",
				"'expires_in' must be seconds, 1 to 10 years");
		return;
	}
	json_t *nv = json_object_get(call->body, "name");
	if (nv && (!json_is_string(nv) || json_string_length(nv) > 63 ||
		   strlen(json_string_value(nv)) != json_string_length(nv))) {
		api_reply_error(call, 400, "bad_field",
				"'name' must be a string of at most 63 "
				"characters");
		return;
	}
	/* The secret waits in call->pw (cleansed with the call). */
	if (api_token_new(call->pw, sizeof(call->pw), call->token_hash)) {
		api_reply_error(call, 500, "internal", "no randomness");
		return;
	}
	int64_t now = time(NULL);
	submit(call,
	       json_pack("{s:s, s:s, s:s, s:I, s:I, s:s}", "op",
			 "auth.token.add", "hash", call->token_hash, "role",
			 api_role_name(role), "created", (json_int_t)now,
			 "expires", (json_int_t)(ttl ? now + ttl : 0), "name",
			 json_string_value(nv) ?: ""),
	       token_added);
}

/* After the read barrier this node's map is current: list from it. */
static void tokens_got(struct api_call *call, json_t *map)
{
	(void)map;
	json_t *a = json_array(), *t;
	const char *k;
	json_object_foreach(
	    json_object_get(json_object_get(cluster_local_map(call->srv->cluster),
					    "secrets"),
			    "api_tokens"),
	    k, t) json_array_append_new(a, token_json(t));
	api_reply(call, 200, json_pack("{s:o}", "tokens", a));
}

static void h_tokens_get(struct api_call *call)
{
	api_read_map(call, tokens_got);
}

static void h_token_delete(struct api_call *call)
{
	if (strlen(call->param) > 23) {
		api_reply_error(call, 404, "not_found", "no token '%s'",
				call->param);
		return;
	}
	submit(call,
	       json_pack("{s:s, s:s}", "op", "auth.token.revoke", "id",
			 call->param),
	       deleted);
}

/* ---- metrics and the OpenAPI document ---- */

static void h_metrics(struct api_call *call)
{
	api_metrics(call->srv, call);
}

static void h_openapi(struct api_call *call)
{
	const char *path = call->srv->openapi_file;
	if (!path) {
		api_reply_text(call, 200, "application/json", api_openapi_json,
			       strlen(api_openapi_json));
		return;
	}
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t len = 0;
	if (f) {
		buf = malloc(API_MAX_BODY * 4);
		if (buf)
			len = fread(buf, 1, API_MAX_BODY * 4, f);
		fclose(f);
	}
	if (!buf) {
		api_reply_error(call, 500, "internal", "cannot read %s", path);
		return;
	}
	api_reply_text(call, 200, "application/json", buf, len);
	free(buf);
}

/* ---- joining ---------------------------------------------------------------- */

/* GET /api/v1/ca (public): the cluster CA, which a joining node checks
 * against the fingerprint in its token before it sends the token. */
static void h_ca_get(struct api_call *call)
{
	if (!call->srv->ca_pem) {
		api_reply_error(call, 404, "not_found", "no cluster CA here");
		return;
	}
	api_reply(call, 200, json_pack("{s:s}", "ca", call->srv->ca_pem));
}

static void join_done(struct api_call *call, json_t *result)
{
	api_reply(call, 201, json_incref(result));
}

/* POST /api/v1/join (public): the token authenticates the request. */
static void h_join_post(struct api_call *call)
{
	static const char *const fields[] = {"token", "name", "raft", "api",
					     "domain", "capacity", NULL};
	if (!only_fields(call, fields) || !name_field(call, "name"))
		return;
	json_t *b = call->body;
	if (!json_is_string(json_object_get(b, "token")) ||
	    !json_is_string(json_object_get(b, "raft")) ||
	    !json_is_string(json_object_get(b, "api"))) {
		api_reply_error(call, 400, "bad_request",
				"join needs token, name, raft and api");
		return;
	}
	if (!leader_or_redirect(call))
		return;
	struct op_ctx *o = op_new(call, join_done);
	if (o)
		cluster_join(call->srv->cluster, b, op_cb, o);
}

/* POST /api/v1/nodes/token (admin): a one-time join token. */
static void h_join_token_post(struct api_call *call)
{
	static const char *const fields[] = {"expires_in", NULL};
	if (!only_fields(call, fields))
		return;
	json_int_t ttl = 3600;
	json_t *e = json_object_get(call->body, "expires_in");
	if (e && !int_in(e, 60, 7 * 86400, &ttl)) {
		api_reply_error(call, 400, "bad_request",
				"expires_in: 60 to 604800 seconds");
		return;
	}
	if (!leader_or_redirect(call))
		return;
	struct op_ctx *o = op_new(call, join_done);
	if (o)
		cluster_token_create(call->srv->cluster, (unsigned)ttl, op_cb,
				     o);
}

#define V API_ROLE_VIEWER
#define A API_ROLE_ADMIN
const struct api_route api_routes[] = {
    {"GET", "/api/v1/cluster", V, 0, h_cluster_get},
    {"GET", "/api/v1/nodes", V, 0, h_nodes_get},
    {"DELETE", "/api/v1/nodes/{id}", A, 0, h_node_delete},
    {"GET", "/api/v1/pools", V, 0, h_pools_get},
    {"POST", "/api/v1/pools", A, API_R_BODY, h_pools_post},
    {"DELETE", "/api/v1/pools/{name}", A, 0, h_pool_delete},
    {"GET", "/api/v1/vdisks", V, 0, h_vdisks_get},
    {"POST", "/api/v1/vdisks", A, API_R_BODY, h_vdisks_post},
    {"DELETE", "/api/v1/vdisks/{name}", A, 0, h_vdisk_delete},
    {"GET", "/api/v1/tasks/{id}", V, 0, h_task_get},
    {"POST", "/api/v1/password", A,
     API_R_BODY | API_R_BASIC_ONLY | API_R_BEFORE_CHANGE, h_password_post},
    {"POST", "/api/v1/tokens", A, API_R_BODY, h_tokens_post},
    {"GET", "/api/v1/tokens", A, 0, h_tokens_get},
    {"DELETE", "/api/v1/tokens/{id}", A, 0, h_token_delete},
    {"GET", "/api/v1/openapi.json", V, 0, h_openapi},
    {"GET", "/api/v1/ca", API_ROLE_NONE, API_R_PUBLIC, h_ca_get},
    {"POST", "/api/v1/join", API_ROLE_NONE, API_R_PUBLIC | API_R_BODY,
     h_join_post},
    {"POST", "/api/v1/nodes/token", A, API_R_BODY, h_join_token_post},
    {"POST", "/api/v1/membership", API_ROLE_NONE, API_R_PUBLIC | API_R_BODY,
     api_membership_post},
    {"GET", "/metrics", V, 0, h_metrics},
};
const size_t api_nroutes = sizeof(api_routes) / sizeof(api_routes[0]);
