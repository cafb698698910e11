/* An in-memory stand-in for include/cairn/cluster.h, for the API's unit
 * tests only (test_api.c includes this file). It keeps a map shaped like
 * the real one (nodes, pools, vdisks as objects keyed by id or name, an
 * epoch bumped by every change), validates operations the way the real map
 * does (a duplicate: -EEXIST; a policy wider than the nodes: -ENOSPC; an
 * unknown object: -ENOENT; a pool holding vdisks: -EBUSY), answers on a
 * later loop turn like the real one, and can play a follower (-EREMOTE
 * with the leader's API address) or a cluster without quorum (-EAGAIN).
 * node.remove takes `remove_ms` to finish, so that it is a long operation.
 * Everything runs on the loop thread. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cairn/cluster.h>

struct cluster {
	uv_loop_t *loop;
	json_t *map;
	char leader_api[128]; /* follower mode when set (or no_leader) */
	bool follower, no_quorum;
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
	c->map = json_pack("{s:s, s:I, s:{}, s:{}, s:{}}", "name", "fake",
			   "epoch", (json_int_t)1, "nodes", "pools", "vdisks");
	for (int i = 1; i <= nodes; i++) {
		char key[16], name[16], api[32];
		snprintf(key, sizeof(key), "%d", i);
		snprintf(name, sizeof(name), "node%d", i);
		snprintf(api, sizeof(api), "127.0.0.1:%d", 8442 + i);
		json_object_set_new(json_object_get(c->map, "nodes"), key,
				    json_pack("{s:i, s:s, s:s, s:i, s:f}", "id",
					      i, "name", name, "api", api,
					      "domain", i, "capacity", 1.0));
	}
	return c;
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

static unsigned fake_width(json_t *policy)
{
	json_t *r = json_object_get(policy, "replicas");
	json_t *ec = json_object_get(policy, "ec");
	if (json_is_integer(r) && !ec)
		return (unsigned)json_integer_value(r);
	if (ec && !r)
		return (unsigned)(json_integer_value(json_object_get(ec, "k")) +
				  json_integer_value(json_object_get(ec, "m")));
	return 0;
}

/* Applies op to the map: 0 and a result, or -errno and msg. */
static int fake_apply(struct cluster *c, json_t *op, json_t **res, char *msg,
		      size_t ml)
{
	const char *kind = json_string_value(json_object_get(op, "op"));
	const char *name = json_string_value(json_object_get(op, "name"));
	json_t *nodes = json_object_get(c->map, "nodes");
	json_t *pools = json_object_get(c->map, "pools");
	json_t *vdisks = json_object_get(c->map, "vdisks");
	json_int_t epoch = json_integer_value(json_object_get(c->map, "epoch"));
	*res = NULL;
	if (!kind) {
		snprintf(msg, ml, "no op");
		return -EINVAL;
	}
	if (!strcmp(kind, "pool.create")) {
		json_t *policy = json_object_get(op, "policy");
		unsigned w = fake_width(policy);
		if (!name || !w) {
			snprintf(msg, ml, "bad pool.create");
			return -EINVAL;
		}
		if (json_object_get(pools, name)) {
			snprintf(msg, ml, "pool '%s' exists", name);
			return -EEXIST;
		}
		if (w > json_object_size(nodes)) {
			snprintf(msg, ml,
				 "the cluster cannot hold %u copies of pool "
				 "'%s' (too few nodes)",
				 w, name);
			return -ENOSPC;
		}
		json_object_set_new(pools, name,
				    json_pack("{s:s, s:I, s:O}", "name", name,
					      "id", epoch + 1, "policy",
					      policy));
		*res = json_pack("{s:s, s:I}", "name", name, "id", epoch + 1);
	} else if (!strcmp(kind, "pool.delete")) {
		const char *k;
		json_t *v;
		if (!name || !json_object_get(pools, name)) {
			snprintf(msg, ml, "no pool '%s'", name ? name : "");
			return -ENOENT;
		}
		json_object_foreach(
		    vdisks, k,
		    v) if (!strcmp(json_string_value(json_object_get(v,
								     "pool")),
				   name))
		{
			snprintf(msg, ml, "pool '%s' holds vdisk '%s'", name,
				 k);
			return -EBUSY;
		}
		json_object_del(pools, name);
	} else if (!strcmp(kind, "vdisk.create")) {
		const char *pool =
		    json_string_value(json_object_get(op, "pool"));
		json_t *size = json_object_get(op, "size");
		if (!name || !pool || !json_is_integer(size)) {
			snprintf(msg, ml, "bad vdisk.create");
			return -EINVAL;
		}
		if (!json_object_get(pools, pool)) {
			snprintf(msg, ml, "no pool '%s'", pool);
			return -ENOENT;
		}
		if (json_object_get(vdisks, name)) {
			snprintf(msg, ml, "vdisk '%s' exists", name);
			return -EEXIST;
		}
		json_object_set_new(vdisks, name,
				    json_pack("{s:s, s:I, s:s, s:O}", "name",
					      name, "id", epoch + 1, "pool",
					      pool, "size", size));
		*res = json_pack("{s:s, s:I}", "name", name, "id", epoch + 1);
	} else if (!strcmp(kind, "vdisk.delete")) {
		if (!name || !json_object_get(vdisks, name)) {
			snprintf(msg, ml, "no vdisk '%s'", name ? name : "");
			return -ENOENT;
		}
		json_object_del(vdisks, name);
	} else if (!strcmp(kind, "node.remove")) {
		char key[24];
		snprintf(
		    key, sizeof(key), "%lld",
		    (long long)json_integer_value(json_object_get(op, "id")));
		if (!json_object_get(nodes, key)) {
			snprintf(msg, ml, "no node %s", key);
			return -ENOENT;
		}
		json_object_del(nodes, key);
		*res = json_pack("{s:s}", "removed", key);
	} else {
		snprintf(msg, ml, "unknown op '%s'", kind);
		return -EINVAL;
	}
	json_object_set_new(c->map, "epoch", json_integer(epoch + 1));
	return 0;
}

void cluster_submit(struct cluster *c, json_t *op, cluster_op_cb cb, void *arg)
{
	char msg[256] = "";
	json_t *res = NULL;
	c->submitted++;
	if (c->follower) {
		fop_later(c, cb, arg, -EREMOTE, NULL, 0, "%s", c->leader_api);
		return;
	}
	if (c->no_quorum) {
		fop_later(c, cb, arg, -EAGAIN, NULL, 0, "no quorum");
		return;
	}
	const char *kind = json_string_value(json_object_get(op, "op"));
	/* A long operation: its effect and answer come later. */
	unsigned ms = kind && !strcmp(kind, "node.remove") ? c->remove_ms : 0;
	int rc = fake_apply(c, op, &res, msg, sizeof(msg));
	fop_later(c, cb, arg, rc, res, ms, "%s", msg);
}

void cluster_read(struct cluster *c, cluster_op_cb cb, void *arg)
{
	if (c->follower) {
		fop_later(c, cb, arg, -EREMOTE, NULL, 0, "%s", c->leader_api);
		return;
	}
	if (c->no_quorum) {
		fop_later(c, cb, arg, -EAGAIN, NULL, 0, "no quorum");
		return;
	}
	fop_later(c, cb, arg, 0, json_deep_copy(c->map), 0, "%s", "");
}

json_t *cluster_status(struct cluster *c)
{
	return json_pack(
	    "{s:I, s:s, s:s, s:I, s:s?, s:I}", "id", (json_int_t)1, "name",
	    "node1", "state", c->follower ? "follower" : "leader", "leader",
	    (json_int_t)(c->follower ? 2 : 1), "leader_api",
	    c->follower ? (*c->leader_api ? c->leader_api : NULL)
			: "127.0.0.1:8443",
	    "epoch", json_integer_value(json_object_get(c->map, "epoch")));
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
