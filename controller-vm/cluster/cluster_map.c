/* Cluster map operations. Each one validates fully before it changes
 * anything, so a refused operation leaves the map (and its epoch) as it
 * was; a successful one bumps the epoch by one. */
#include "cluster_map.h"
#include "cluster_map_int.h"

#include <cairn/placement.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAP_NAME_MAX 63
#define MAP_MAX_NODES 1024

int map__err(char *msg, size_t len, int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, len, fmt, ap);
	va_end(ap);
	return rc;
}

json_t *cluster_map_new(void)
{
	return json_pack("{s:s, s:I, s:I, s:{}, s:{}, s:{}, s:{s:{}}, s:{}, "
			 "s:I}",
			 "name", "", "epoch", (json_int_t)0, "next_vdisk_id",
			 (json_int_t)1, "nodes", "pools", "vdisks", "secrets",
			 "tokens", "op_ids", "op_seq", (json_int_t)0);
}

json_t *cluster_map_public(const json_t *map)
{
	json_t *m = json_deep_copy(map);
	if (m) {
		json_object_del(m, "secrets");
		json_object_del(m, "op_ids");
		json_object_del(m, "op_seq");
	}
	return m;
}

bool map__name_ok(const char *n)
{
	size_t l = n ? strlen(n) : 0;
	if (l < 1 || l > MAP_NAME_MAX)
		return false;
	for (size_t i = 0; i < l; i++) {
		char c = n[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		      c == '-'))
			return false;
	}
	return true;
}

const char *map__str(const json_t *op, const char *key)
{
	const json_t *v = json_object_get(op, key);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

bool map__int(const json_t *op, const char *key, json_int_t *out)
{
	const json_t *v = json_object_get(op, key);
	if (!json_is_integer(v))
		return false;
	*out = json_integer_value(v);
	return true;
}

unsigned cluster_map_policy_width(const json_t *policy)
{
	json_int_t r, k, m;
	const json_t *ec = json_object_get(policy, "ec");
	if (map__int(policy, "replicas", &r) && !ec)
		return (r >= 1 && r <= 3) ? (unsigned)r : 0;
	if (ec && !json_object_get(policy, "replicas") &&
	    map__int(ec, "k", &k) && map__int(ec, "m", &m) && k >= 1 &&
	    m >= 1 && k + m <= PLACEMENT_MAX_WIDTH)
		return (unsigned)(k + m);
	return 0;
}

/* The map's nodes as a placement map (capacity as weight). A draining
 * node takes no new placements. */
static unsigned map__placement(const json_t *map, struct placement_node *pn)
{
	const char *key;
	json_t *n;
	unsigned i = 0;
	json_object_foreach((json_t *)json_object_get(map, "nodes"), key, n)
	{
		if (i == MAP_MAX_NODES)
			break;
		if (json_is_true(json_object_get(n, "draining")))
			continue;
		json_int_t id = 0, dom = 0;
		map__int(n, "id", &id);
		map__int(n, "domain", &dom);
		const json_t *cap = json_object_get(n, "capacity");
		pn[i].id = (uint64_t)id;
		pn[i].domain = (uint32_t)dom;
		pn[i].weight = json_is_number(cap) ? json_number_value(cap) : 0;
		i++;
	}
	return i;
}

static bool map__feasible(const json_t *map, unsigned width, bool spread)
{
	struct placement_node *pn = calloc(MAP_MAX_NODES, sizeof(*pn));
	if (!pn)
		return false;
	struct placement_map pm = {pn, map__placement(map, pn)};
	bool ok = placement_feasible(&pm, width, spread);
	free(pn);
	return ok;
}

/* The CA travels in the map (under "secrets", never shown by the API) so
 * that whichever node leads can sign a joining node's certificate. */
static int op_cluster_init(json_t *map, const json_t *op, json_t **res,
			   char *msg, size_t ml)
{
	(void)res;
	const char *name = map__str(op, "name");
	const char *crt = map__str(op, "ca_crt"), *key = map__str(op, "ca_key");
	if (!map__name_ok(name))
		return map__err(msg, ml, -EINVAL, "bad cluster name");
	if ((crt == NULL) != (key == NULL))
		return map__err(msg, ml, -EINVAL, "ca_crt and ca_key go together");
	const json_t *admin = json_object_get(op, "admin");
	if (admin && !map__pwhash_ok(admin))
		return map__err(msg, ml, -EINVAL,
				"admin needs salt (32 hex), hash (64 hex), "
				"iterations");
	if (json_string_length(json_object_get(map, "name")))
		return map__err(msg, ml, -EEXIST, "cluster already named");
	json_object_set_new(map, "name", json_string(name));
	if (admin)
		map__set_admin(map, admin, true);
	if (crt) {
		json_t *sec = json_object_get(map, "secrets");
		json_object_set_new(sec, "ca_crt", json_string(crt));
		json_object_set_new(sec, "ca_key", json_string(key));
	}
	return 0;
}

bool map__hex64(const char *h)
{
	if (!h || strlen(h) != 64)
		return false;
	for (int i = 0; i < 64; i++)
		if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f')))
			return false;
	return true;
}

/* A one-time join token, stored as the SHA-256 of its secret. */
static int op_token_create(json_t *map, const json_t *op, json_t **res,
			   char *msg, size_t ml)
{
	(void)res;
	const char *hash = map__str(op, "hash");
	json_int_t expires, now;
	if (!map__hex64(hash) || !map__int(op, "expires", &expires) ||
	    !map__int(op, "now", &now))
		return map__err(msg, ml, -EINVAL,
				"token.create needs hash (64 hex), now, expires");
	json_t *tokens =
		json_object_get(json_object_get(map, "secrets"), "tokens");
	if (json_object_get(tokens, hash))
		return map__err(msg, ml, -EEXIST, "token exists");
	/* Forget spent and expired tokens: the map must not grow forever. */
	const char *k;
	json_t *t, *tmp;
	json_object_foreach_safe(tokens, tmp, k, t)
	{
		json_int_t e = 0;
		map__int(t, "expires", &e);
		if (json_is_true(json_object_get(t, "used")) || e < now)
			json_object_del(tokens, k);
	}
	json_object_set_new(tokens, hash,
			    json_pack("{s:I, s:b}", "expires", expires, "used",
				      0));
	return 0;
}

/* Spends a token (once, before it expires) and reserves the new node's id:
 * the highest id in the map plus one. */
static int op_token_use(json_t *map, const json_t *op, json_t **res,
			char *msg, size_t ml)
{
	const char *hash = map__str(op, "hash");
	json_int_t now;
	if (!map__hex64(hash) || !map__int(op, "now", &now))
		return map__err(msg, ml, -EINVAL, "token.use needs hash, now");
	json_t *t = json_object_get(
		json_object_get(json_object_get(map, "secrets"), "tokens"),
		hash);
	json_int_t expires = 0;
	if (!t || json_is_true(json_object_get(t, "used")) ||
	    !map__int(t, "expires", &expires) || expires < now)
		return map__err(msg, ml, -EACCES,
				"join token unknown, used or expired");
	json_object_set_new(t, "used", json_true());
	json_int_t next = json_integer_value(
		json_object_get(map, "next_node_id"));
	const char *k;
	json_t *n;
	json_object_foreach(json_object_get(map, "nodes"), k, n)
	{
		json_int_t id = 0;
		map__int(n, "id", &id);
		if (id >= next)
			next = id + 1;
	}
	json_object_set_new(map, "next_node_id", json_integer(next + 1));
	*res = json_pack("{s:I}", "id", next);
	return 0;
}

static int op_node_add(json_t *map, const json_t *op, json_t **res,
		       char *msg, size_t ml)
{
	json_int_t id, dom = 0;
	const char *name = map__str(op, "name");
	const char *raft = map__str(op, "raft");
	const char *api = map__str(op, "api");
	const json_t *cap = json_object_get(op, "capacity");
	if (!map__int(op, "id", &id) || id <= 0 || !map__name_ok(name) ||
	    !raft || !api || (json_object_get(op, "domain") &&
			      !map__int(op, "domain", &dom)) ||
	    dom < 0 || dom > UINT32_MAX ||
	    (cap && (!json_is_number(cap) || json_number_value(cap) < 0)))
		return map__err(msg, ml, -EINVAL,
				"node.add needs id > 0, name, raft, api, "
				"domain >= 0, capacity >= 0");
	json_t *nodes = json_object_get(map, "nodes");
	char key[24];
	snprintf(key, sizeof(key), "%" PRId64, (int64_t)id);
	if (json_object_get(nodes, key))
		return map__err(msg, ml, -EEXIST, "node %s exists", key);
	if (json_object_size(nodes) >= MAP_MAX_NODES)
		return map__err(msg, ml, -ENOSPC, "too many nodes");
	const char *k;
	json_t *n;
	json_object_foreach(nodes, k, n)
		if (!strcmp(map__str(n, "name"), name))
			return map__err(msg, ml, -EEXIST,
					"node name '%s' taken", name);
	json_object_set_new(
		nodes, key,
		json_pack("{s:I, s:s, s:s, s:s, s:I, s:f}", "id", id, "name",
			  name, "raft", raft, "api", api, "domain", dom,
			  "capacity", cap ? json_number_value(cap) : 1.0));
	*res = json_pack("{s:I}", "id", id);
	return 0;
}

/* Would every pool still fit without node `key` and the draining nodes?
 * 0, or -ENOSPC with the pool that would not. */
static int map__fits_without(const json_t *map, const char *key, char *msg,
			     size_t ml)
{
	json_t *copy = json_deep_copy(map);
	json_object_del(json_object_get(copy, "nodes"), key);
	const char *pk;
	json_t *p;
	int rc = 0;
	json_object_foreach(json_object_get(map, "pools"), pk, p)
	{
		unsigned w = cluster_map_policy_width(
			json_object_get(p, "policy"));
		bool sp = json_is_true(json_object_get(p, "spread_domains"));
		if (!map__feasible(copy, w, sp)) {
			rc = map__err(msg, ml, -ENOSPC,
				      "removing node %s would leave too few "
				      "%s for pool '%s' (%u %s)",
				      key, sp ? "fault domains" : "nodes", pk, w,
				      w > 1 ? "copies" : "copy");
			break;
		}
	}
	json_decref(copy);
	return rc;
}

static json_t *map__node(json_t *map, const json_t *op, char key[24],
			 const char *what, char *msg, size_t ml, int *rc)
{
	json_int_t id;
	if (!map__int(op, "id", &id)) {
		*rc = map__err(msg, ml, -EINVAL, "%s needs id", what);
		return NULL;
	}
	snprintf(key, 24, "%" PRId64, (int64_t)id);
	json_t *n = json_object_get(json_object_get(map, "nodes"), key);
	if (!n)
		*rc = map__err(msg, ml, -ENOENT, "no node %s", key);
	return n;
}

/* The first step of removing a node: no new placements on it (data
 * evacuation comes with replication). Refused, changing nothing, when the
 * pools would no longer fit without it or it is the last node. */
static int op_node_drain(json_t *map, const json_t *op, json_t **res,
			 char *msg, size_t ml)
{
	char key[24];
	int rc = 0;
	json_t *n = map__node(map, op, key, "node.drain", msg, ml, &rc);
	if (!n)
		return rc;
	if (json_is_true(json_object_get(n, "draining")))
		return map__err(msg, ml, -EALREADY,
				"node %s is already being removed", key);
	unsigned staying = 0;
	const char *k;
	json_t *o;
	json_object_foreach(json_object_get(map, "nodes"), k, o)
		staying += strcmp(k, key) &&
			   !json_is_true(json_object_get(o, "draining"));
	if (!staying)
		return map__err(msg, ml, -EBUSY,
				"node %s is the last node of the cluster", key);
	if ((rc = map__fits_without(map, key, msg, ml)))
		return rc;
	json_object_set_new(n, "draining", json_true());
	*res = json_pack("{s:s, s:s}", "node", key, "state", "draining");
	return 0;
}

/* The node is out of the voters and about to leave the Raft
 * configuration: it applies this entry itself, and stops cluster work. */
static int op_node_leave(json_t *map, const json_t *op, json_t **res,
			 char *msg, size_t ml)
{
	(void)res;
	char key[24];
	int rc = 0;
	json_t *n = map__node(map, op, key, "node.leave", msg, ml, &rc);
	if (!n)
		return rc;
	if (!json_is_true(json_object_get(n, "draining")))
		return map__err(msg, ml, -EINVAL,
				"node %s is not draining", key);
	json_object_set_new(n, "leaving", json_true());
	return 0;
}

/* The last step: out of the map. */
/* Nodes that left, with their name and API address: a removed node still
 * answers for the tasks it kept, and the others need its address to ask
 * it (docs/api.md, Tasks). The newest MAP_LEFT_MAX are kept. */
#define MAP_LEFT_MAX 64

static void map__remember_left(json_t *map, const char *key,
			       const json_t *node)
{
	json_t *left = json_object_get(map, "left");
	if (!json_is_object(left)) {
		left = json_object();
		json_object_set_new(map, "left", left);
	}
	json_object_set_new(left, key,
			    json_pack("{s:O?, s:O?}", "name",
				      json_object_get(node, "name"), "api",
				      json_object_get(node, "api")));
	while (json_object_size(left) > MAP_LEFT_MAX) {
		const char *k, *oldest = NULL;
		json_t *v;
		json_object_foreach(left, k, v)
			if (!oldest || strtoull(k, NULL, 10) <
					   strtoull(oldest, NULL, 10))
				oldest = k;
		json_object_del(left, oldest);
	}
}

static int op_node_remove(json_t *map, const json_t *op, json_t **res,
			  char *msg, size_t ml)
{
	char key[24];
	int rc = 0;
	if (!map__node(map, op, key, "node.remove", msg, ml, &rc))
		return rc;
	if ((rc = map__fits_without(map, key, msg, ml)))
		return rc;
	map__remember_left(map, key,
			   json_object_get(json_object_get(map, "nodes"), key));
	json_object_del(json_object_get(map, "nodes"), key);
	*res = json_pack("{s:s}", "removed", key);
	return 0;
}

static int op_pool_create(json_t *map, const json_t *op, json_t **res,
			  char *msg, size_t ml)
{
	const char *name = map__str(op, "name");
	const json_t *policy = json_object_get(op, "policy");
	const json_t *spread = json_object_get(op, "spread_domains");
	if (!map__name_ok(name))
		return map__err(msg, ml, -EINVAL, "bad pool name");
	unsigned width = cluster_map_policy_width(policy);
	if (!width)
		return map__err(msg, ml, -EINVAL,
				"policy must be {\"replicas\": 1-3} or "
				"{\"ec\": {\"k\": K, \"m\": M}}");
	if (spread && !json_is_boolean(spread))
		return map__err(msg, ml, -EINVAL,
				"spread_domains must be a boolean");
	bool sp = !spread || json_is_true(spread);
	json_t *pools = json_object_get(map, "pools");
	if (json_object_get(pools, name))
		return map__err(msg, ml, -EEXIST, "pool '%s' exists", name);
	if (!map__feasible(map, width, sp))
		return map__err(msg, ml, -ENOSPC,
				"the cluster cannot hold %u %s of pool '%s' "
				"(too few %s)",
				width, width > 1 ? "copies" : "copy", name,
				sp ? "fault domains" : "nodes");
	json_int_t id = json_integer_value(json_object_get(map, "epoch")) + 1;
	json_object_set_new(pools, name,
			    json_pack("{s:s, s:I, s:O, s:b}", "name", name,
				      "id", id, "policy", policy,
				      "spread_domains", sp));
	*res = json_pack("{s:s, s:I}", "name", name, "id", id);
	return 0;
}

static int op_pool_delete(json_t *map, const json_t *op, json_t **res,
			  char *msg, size_t ml)
{
	(void)res;
	const char *name = map__str(op, "name");
	json_t *pools = json_object_get(map, "pools");
	if (!name || !json_object_get(pools, name))
		return map__err(msg, ml, -ENOENT, "no pool '%s'",
				name ? name : "");
	const char *k;
	json_t *v;
	json_object_foreach(json_object_get(map, "vdisks"), k, v)
		if (!strcmp(map__str(v, "pool"), name))
			return map__err(msg, ml, -EBUSY,
					"pool '%s' holds vdisk '%s'", name, k);
	json_object_del(pools, name);
	return 0;
}

static int op_vdisk_create(json_t *map, const json_t *op, json_t **res,
			   char *msg, size_t ml)
{
	const char *name = map__str(op, "name");
	const char *pool = map__str(op, "pool");
	json_int_t size;
	if (!map__name_ok(name) || !pool || !map__int(op, "size", &size) ||
	    size <= 0 || size % 4096 || size > (16LL << 40))
		return map__err(msg, ml, -EINVAL,
				"vdisk.create needs name, pool and a size that "
				"is a positive multiple of 4096 up to 16 TiB");
	if (!json_object_get(json_object_get(map, "pools"), pool))
		return map__err(msg, ml, -ENOENT, "no pool '%s'", pool);
	json_t *vdisks = json_object_get(map, "vdisks");
	if (json_object_get(vdisks, name))
		return map__err(msg, ml, -EEXIST, "vdisk '%s' exists", name);
	json_int_t id = json_integer_value(json_object_get(map,
							   "next_vdisk_id"));
	json_object_set_new(map, "next_vdisk_id", json_integer(id + 1));
	json_object_set_new(vdisks, name,
			    json_pack("{s:s, s:I, s:s, s:I}", "name", name,
				      "id", id, "pool", pool, "size", size));
	*res = json_pack("{s:s, s:I}", "name", name, "id", id);
	return 0;
}

static int op_vdisk_delete(json_t *map, const json_t *op, json_t **res,
			   char *msg, size_t ml)
{
	(void)res;
	const char *name = map__str(op, "name");
	json_t *vdisks = json_object_get(map, "vdisks");
	if (!name || !json_object_get(vdisks, name))
		return map__err(msg, ml, -ENOENT, "no vdisk '%s'",
				name ? name : "");
	json_object_del(vdisks, name);
	return 0;
}

static const struct {
	const char *name;
	int (*fn)(json_t *map, const json_t *op, json_t **res, char *msg,
		  size_t ml);
} map_ops[] = {
	{"cluster.init", op_cluster_init},
	{"node.add", op_node_add},
	{"node.drain", op_node_drain},
	{"node.leave", op_node_leave},
	{"node.remove", op_node_remove},
	{"pool.create", op_pool_create},
	{"pool.delete", op_pool_delete},
	{"vdisk.create", op_vdisk_create},
	{"vdisk.delete", op_vdisk_delete},
	{"token.create", op_token_create},
	{"token.use", op_token_use},
	{"auth.password", map_op_auth_password},
	{"auth.token.add", map_op_auth_token_add},
	{"auth.token.revoke", map_op_auth_token_revoke},
};

/* A client's operation id (e.g. the API's Idempotency-Key): 1-64 of
 * A-Z a-z 0-9 - _ . : */
static bool map__op_id_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n < 1 || n > CLUSTER_MAP_OP_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			    "0123456789-_.:",
			    s[i]))
			return false;
	return true;
}

/* Remembers a successful operation's id and result, forgetting the oldest
 * beyond CLUSTER_MAP_OP_IDS (a linear scan of at most that many). */
static void map__remember(json_t *map, const char *id, const char *name,
			  const json_t *result)
{
	json_t *ids = json_object_get(map, "op_ids");
	if (!json_is_object(ids)) {
		ids = json_object();
		json_object_set_new(map, "op_ids", ids);
	}
	json_int_t seq = json_integer_value(json_object_get(map, "op_seq")) + 1;
	json_object_set_new(map, "op_seq", json_integer(seq));
	json_object_set_new(ids, id,
			    json_pack("{s:I, s:s, s:O*}", "seq", seq, "op", name,
				      "result", (json_t *)result));
	while (json_object_size(ids) > CLUSTER_MAP_OP_IDS) {
		const char *k, *oldest = NULL;
		json_t *v;
		json_int_t min = 0;
		json_object_foreach(ids, k, v)
		{
			json_int_t s = json_integer_value(json_object_get(v, "seq"));
			if (!oldest || s < min) {
				oldest = k;
				min = s;
			}
		}
		json_object_del(ids, oldest);
	}
}

int cluster_map_apply(json_t *map, const json_t *op, json_t **result,
		      char *msg, size_t msglen)
{
	*result = NULL;
	msg[0] = 0;
	const char *name = json_is_object(op) ? map__str(op, "op") : NULL;
	const json_t *jid = json_is_object(op) ? json_object_get(op, "op_id")
					       : NULL;
	const char *op_id = json_string_value(jid);
	if (jid && !map__op_id_ok(op_id))
		return map__err(msg, msglen, -EINVAL,
				"op_id: 1-%d characters of A-Z a-z 0-9 - _ . :",
				CLUSTER_MAP_OP_ID_MAX);
	for (size_t i = 0; name && i < sizeof(map_ops) / sizeof(map_ops[0]);
	     i++) {
		if (strcmp(map_ops[i].name, name))
			continue;
		/* A retry of an operation that was applied: its first result,
		 * and the map stays as it is. */
		json_t *seen = op_id ? json_object_get(
					       json_object_get(map, "op_ids"),
					       op_id)
				     : NULL;
		if (seen) {
			if (strcmp(map__str(seen, "op") ?: "", name))
				return map__err(msg, msglen, -EINVAL,
						"op_id '%s' was used for a "
						"different operation (%s)",
						op_id, map__str(seen, "op"));
			json_t *r = json_object_get(seen, "result");
			*result = r ? json_deep_copy(r) : NULL;
			return 0;
		}
		int rc = map_ops[i].fn(map, op, result, msg, msglen);
		if (rc) {
			json_decref(*result);
			*result = NULL;
			return rc;
		}
		json_int_t e = json_integer_value(json_object_get(map, "epoch"));
		json_object_set_new(map, "epoch", json_integer(e + 1));
		if (op_id)
			map__remember(map, op_id, name, *result);
		return 0;
	}
	return map__err(msg, msglen, -EINVAL, "unknown operation '%s'",
			name ? name : "");
}
