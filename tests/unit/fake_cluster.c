/* An in-memory stand-in for include/cairn/cluster.h, for the API's unit
 * tests only (test_api.c includes this file). The map is the real one:
 * every operation goes through cluster_map_apply (controller-vm/cluster/
 * cluster_map.c), so validation, credentials and op-id deduplication are
 * the real ones; what is fake is Raft: answers come on a later loop turn
 * like the real ones, and it can play a follower (-EREMOTE with the
 * leader's API address) or a cluster without quorum (-EAGAIN).
 * cluster_remove_node takes `remove_ms` to finish, so that it is a long
 * operation. Everything runs on the loop thread. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cairn/cluster.h>

#include "../../controller-vm/cluster/cluster_map.h"

struct cluster {
	uv_loop_t *loop;
	json_t *map;
	char leader_api[128]; /* follower mode when set (or no_leader) */
	bool follower, no_quorum;
	uint64_t self_id; /* this node's id in the map (1) */
	bool removed;	  /* cluster_mark_removed was called */
	unsigned remove_ms;
	unsigned pending;
	unsigned submitted; /* operations seen, for tests */
};

struct fake_op {
	uv_timer_t timer;
	struct cluster *c;
	cluster_op_cb cb;
	void *arg;
	int status;
	json_t *result;
	char msg[256];
};

static struct cluster *fake_cluster_new(uv_loop_t *loop, int nodes)
{
	struct cluster *c = calloc(1, sizeof(*c));
	c->loop = loop;
	c->remove_ms = 20;
	c->self_id = 1;
	c->map = cluster_map_new();
	json_object_set_new(c->map, "name", json_string("fake"));
	json_object_set_new(c->map, "epoch", json_integer(1));
	for (int i = 1; i <= nodes; i++) {
		char key[16], name[16], api[32];
		snprintf(key, sizeof(key), "%d", i);
		snprintf(name, sizeof(name), "node%d", i);
		snprintf(api, sizeof(api), "127.0.0.1:%d", 8442 + i);
		json_object_set_new(json_object_get(c->map, "nodes"), key,
				    json_pack("{s:i, s:s, s:s, s:s, s:i, s:f}",
					      "id", i, "name", name, "raft",
					      "127.0.0.1:1", "api", api,
					      "domain", i, "capacity", 1.0));
	}
	return c;
}

/* The admin account as cluster creation leaves it: to be changed. */
static void fake_cluster_set_admin(struct cluster *c, const json_t *hash)
{
	json_t *a = json_deep_copy(hash);
	json_object_set_new(a, "algorithm", json_string("pbkdf2-hmac-sha256"));
	json_object_set_new(a, "must_change", json_true());
	json_object_set_new(json_object_get(c->map, "secrets"), "admin", a);
}

static void fake_cluster_free(struct cluster *c)
{
	json_decref(c->map);
	free(c);
}

/* addr NULL: back to leader; "": a follower that knows no leader. */
static void fake_cluster_set_follower(struct cluster *c, const char *addr)
{
	c->follower = addr != NULL;
	snprintf(c->leader_api, sizeof(c->leader_api), "%s", addr ? addr : "");
}

static void fop_closed(uv_handle_t *h)
{
	struct fake_op *o = h->data;
	json_decref(o->result);
	free(o);
}

static void fop_fire(uv_timer_t *t)
{
	struct fake_op *o = t->data;
	o->c->pending--;
	o->cb(o->arg, o->status, o->result, o->msg);
	uv_close((uv_handle_t *)&o->timer, fop_closed);
}

static void fop_later(struct cluster *c, cluster_op_cb cb, void *arg,
		      int status, json_t *result, unsigned ms, const char *fmt,
		      ...) __attribute__((format(printf, 7, 8)));
static void fop_later(struct cluster *c, cluster_op_cb cb, void *arg,
		      int status, json_t *result, unsigned ms, const char *fmt,
		      ...)
{
	struct fake_op *o = calloc(1, sizeof(*o));
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(o->msg, sizeof(o->msg), fmt, ap);
	va_end(ap);
	o->c = c;
	o->cb = cb;
	o->arg = arg;
	o->status = status;
	o->result = result;
	uv_timer_init(c->loop, &o->timer);
	o->timer.data = o;
	uv_timer_start(&o->timer, fop_fire, ms, 0);
	c->pending++;
}

/* A follower answers -EREMOTE (the leader's address), no quorum -EAGAIN. */
static bool fake_unavailable(struct cluster *c, cluster_op_cb cb, void *arg)
{
	if (c->follower)
		fop_later(c, cb, arg, -EREMOTE, NULL, 0, "%s", c->leader_api);
	else if (c->no_quorum)
		fop_later(c, cb, arg, -EAGAIN, NULL, 0, "no quorum");
	return c->follower || c->no_quorum;
}

void cluster_submit(struct cluster *c, json_t *op, cluster_op_cb cb, void *arg)
{
	char msg[256] = "";
	json_t *res = NULL;
	c->submitted++;
	if (fake_unavailable(c, cb, arg))
		return;
	int rc = cluster_map_apply(c->map, op, &res, msg, sizeof(msg));
	fop_later(c, cb, arg, rc, res, 0, "%s", msg);
}

const json_t *cluster_local_map(struct cluster *c)
{
	return c->map;
}

/* Drains and removes at once, answering remove_ms later. */
void cluster_remove_node(struct cluster *c, uint64_t id, const char *op_id,
			 cluster_op_cb cb, void *arg)
{
	char msg[256] = "";
	json_t *res = NULL;
	c->submitted++;
	if (fake_unavailable(c, cb, arg))
		return;
	json_t *op = json_pack("{s:s, s:I, s:s*}", "op", "node.drain", "id",
			       (json_int_t)id, "op_id", op_id);
	int rc = cluster_map_apply(c->map, op, &res, msg, sizeof(msg));
	json_decref(op);
	json_decref(res);
	res = NULL;
	char key[24];
	snprintf(key, sizeof(key), "%llu", (unsigned long long)id);
	if (!rc && !json_object_get(json_object_get(c->map, "nodes"), key)) {
		/* a retried removal (same op_id) of a node already gone */
		res = json_pack("{s:I}", "removed", (json_int_t)id);
	} else if (!rc) {
		op = json_pack("{s:s, s:I}", "op", "node.remove", "id",
			       (json_int_t)id);
		rc = cluster_map_apply(c->map, op, &res, msg, sizeof(msg));
		json_decref(op);
	}
	fop_later(c, cb, arg, rc, res, c->remove_ms, "%s", msg);
}

void cluster_read(struct cluster *c, cluster_op_cb cb, void *arg)
{
	if (fake_unavailable(c, cb, arg))
		return;
	fop_later(c, cb, arg, 0, cluster_map_public(c->map), 0, "%s", "");
}

json_t *cluster_status(struct cluster *c)
{
	return json_pack(
	    "{s:I, s:s, s:s, s:I, s:s?, s:I, s:b}", "id", (json_int_t)c->self_id,
	    "name",
	    "node1", "state", c->follower ? "follower" : "leader", "leader",
	    (json_int_t)(c->follower ? (*c->leader_api ? 2 : 0) : 1),
	    "leader_api",
	    c->follower ? (*c->leader_api ? c->leader_api : NULL)
			: "127.0.0.1:8443",
	    "epoch", json_integer_value(json_object_get(c->map, "epoch")),
	    "removed", c->removed);
}

void cluster_mark_removed(struct cluster *c, const char *who)
{
	(void)who;
	c->removed = true;
}

bool cluster_is_leader(struct cluster *c)
{
	return !c->follower;
}

/* Joining, as the API sees it: a token, then a join that spends it. */
void cluster_token_create(struct cluster *c, unsigned ttl_s, cluster_op_cb cb,
			  void *arg)
{
	(void)ttl_s;
	if (!cluster_is_leader(c)) {
		cb(arg, -EREMOTE, NULL, "127.0.0.1:1");
		return;
	}
	json_t *r = json_pack("{s:s}", "token", "cairn1:ff:fake-token");
	cb(arg, 0, r, "");
	json_decref(r);
}

void cluster_join(struct cluster *c, const json_t *req, cluster_op_cb cb,
		  void *arg)
{
	(void)c;
	const char *t = json_string_value(json_object_get(req, "token"));
	if (!t || strcmp(t, "cairn1:ff:fake-token")) {
		cb(arg, -EACCES, NULL, "join token unknown, used or expired");
		return;
	}
	json_t *r = json_pack("{s:i, s:s}", "id", 7, "cert", "PEM");
	cb(arg, 0, r, "");
	json_decref(r);
}
