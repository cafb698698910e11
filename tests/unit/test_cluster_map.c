/* The cluster map state machine alone: every operation's validation, and
 * that a refused operation changes nothing (not even the epoch). Pure. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../../controller-vm/cluster/cluster_map.h"
#include "check.h"

int failures;

static int apply(json_t *map, const char *op_json)
{
	json_error_t je;
	json_t *op = json_loads(op_json, 0, &je);
	if (!op) {
		fprintf(stderr, "bad test json: %s: %s\n", op_json, je.text);
		failures++;
		return -999;
	}
	json_t *before = json_deep_copy(map), *res = NULL;
	char msg[256];
	int rc = cluster_map_apply(map, op, &res, msg, sizeof(msg));
	if (rc) {
		CHECK(json_equal(before, map)); /* refused: nothing changed */
		CHECK(msg[0] != 0);             /* and says why */
	} else {
		CHECK_EQ(json_integer_value(json_object_get(map, "epoch")),
			 json_integer_value(json_object_get(before, "epoch")) +
				 1);
	}
	json_decref(before);
	json_decref(res);
	json_decref(op);
	return rc;
}

#define NODE(id, dom)                                                          \
	"{\"op\":\"node.add\",\"id\":" #id ",\"name\":\"n" #id            \
	"\",\"raft\":\"127.0.0.1:1\",\"api\":\"a\",\"domain\":" #dom "}"

#define SALT "\"00112233445566778899aabbccddeeff\""
#define HASH                                                                   \
	"\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\""

/* Credentials: shapes checked, hashes only, tokens named by the map. */
static void test_auth(json_t *m)
{
	CHECK_EQ(apply(m, "{\"op\":\"auth.password\",\"salt\":" SALT
			  ",\"hash\":\"short\",\"iterations\":1}"),
		 -EINVAL);
	CHECK_EQ(apply(m, "{\"op\":\"auth.password\",\"salt\":" SALT
			  ",\"hash\":" HASH ",\"iterations\":0}"),
		 -EINVAL);
	CHECK_EQ(apply(m, "{\"op\":\"auth.password\",\"salt\":" SALT
			  ",\"hash\":" HASH ",\"iterations\":600000}"),
		 0);
	json_t *a = json_object_get(json_object_get(m, "secrets"), "admin");
	CHECK(json_is_false(json_object_get(a, "must_change")));
	const char *add = "{\"op\":\"auth.token.add\",\"hash\":" HASH
			  ",\"role\":\"viewer\",\"created\":1,\"expires\":0}";
	CHECK_EQ(apply(m, add), 0);
	CHECK_EQ(apply(m, add), -EEXIST); /* the same secret twice */
	CHECK_EQ(apply(m, "{\"op\":\"auth.token.add\",\"hash\":\"ab\","
			  "\"role\":\"viewer\",\"created\":1,\"expires\":0}"),
		 -EINVAL);
	CHECK_EQ(apply(m, "{\"op\":\"auth.token.add\",\"hash\":" HASH
			  ",\"role\":\"root\",\"created\":1,\"expires\":0}"),
		 -EINVAL);
	json_t *toks = json_object_get(json_object_get(m, "secrets"),
				       "api_tokens");
	CHECK(json_object_get(toks, "tk1") != NULL);
	CHECK_EQ(apply(m, "{\"op\":\"auth.token.revoke\",\"id\":\"tk1\"}"),
		 0);
	CHECK_EQ(apply(m, "{\"op\":\"auth.token.revoke\",\"id\":\"tk1\"}"),
		 -ENOENT);
	/* ids are not reused */
	CHECK_EQ(apply(m, add), 0);
	CHECK(json_object_get(toks, "tk2") != NULL);
}

static int apply_raw(json_t *map, const char *op_json, json_t **res)
{
	char msg[256];
	json_t *op = json_loads(op_json, 0, NULL);
	int rc = cluster_map_apply(map, op, res, msg, sizeof(msg));
	json_decref(op);
	return rc;
}

/* A retried operation (same op_id) gets the first result and changes
 * nothing; the memory is bounded. */
static void test_op_ids(json_t *m)
{
	json_t *r1 = NULL, *r2 = NULL;
	const char *op = "{\"op\":\"vdisk.create\",\"name\":\"idem\","
			 "\"pool\":\"e\",\"size\":4096,\"op_id\":\"k-1\"}";
	CHECK_EQ(apply_raw(m, op, &r1), 0);
	json_t *before = json_deep_copy(m);
	CHECK_EQ(apply_raw(m, op, &r2), 0);
	CHECK(json_equal(r1, r2));
	CHECK(json_equal(before, m));
	json_decref(before);
	json_decref(r1);
	json_decref(r2);
	/* the same id for another kind of operation */
	CHECK_EQ(apply(m, "{\"op\":\"pool.delete\",\"name\":\"e\","
			  "\"op_id\":\"k-1\"}"),
		 -EINVAL);
	CHECK_EQ(apply(m, "{\"op\":\"vdisk.delete\",\"name\":\"idem\","
			  "\"op_id\":\"bad id\"}"),
		 -EINVAL);
	/* a refused operation is not remembered: a retry is checked again */
	CHECK_EQ(apply(m, "{\"op\":\"vdisk.delete\",\"name\":\"nope\","
			  "\"op_id\":\"k-2\"}"),
		 -ENOENT);
	CHECK(!json_object_get(json_object_get(m, "op_ids"), "k-2"));
	/* bounded: the oldest are forgotten */
	char buf[160];
	for (int i = 0; i < CLUSTER_MAP_OP_IDS + 10; i++) {
		json_t *r = NULL;
		snprintf(buf, sizeof(buf),
			 "{\"op\":\"vdisk.create\",\"name\":\"b%d\","
			 "\"pool\":\"e\",\"size\":4096,\"op_id\":\"b-%d\"}",
			 i, i);
		CHECK_EQ(apply_raw(m, buf, &r), 0);
		json_decref(r);
	}
	CHECK_EQ(json_object_size(json_object_get(m, "op_ids")),
		 CLUSTER_MAP_OP_IDS);
	CHECK(!json_object_get(json_object_get(m, "op_ids"), "k-1"));
	CHECK(json_object_get(json_object_get(m, "op_ids"), "b-1033") != NULL);
}

/* Removal: drain (refused when a pool would not fit, or for the last
 * node), then leave, then out of the map; draining nodes take no new
 * placements. */
static void test_remove(void)
{
	json_t *m = cluster_map_new();
	CHECK_EQ(apply(m, NODE(1, 1)), 0);
	CHECK_EQ(apply(m, "{\"op\":\"node.drain\",\"id\":1}"), -EBUSY);
	CHECK_EQ(apply(m, NODE(2, 2)), 0);
	CHECK_EQ(apply(m, NODE(3, 3)), 0);
	CHECK_EQ(apply(m, "{\"op\":\"pool.create\",\"name\":\"r2\","
			  "\"policy\":{\"replicas\":2}}"),
		 0);
	CHECK_EQ(apply(m, "{\"op\":\"node.leave\",\"id\":3}"), -EINVAL);
	CHECK_EQ(apply(m, "{\"op\":\"node.drain\",\"id\":3}"), 0);
	CHECK_EQ(apply(m, "{\"op\":\"node.drain\",\"id\":3}"), -EALREADY);
	/* two fault domains left: RF3 is refused now */
	CHECK_EQ(apply(m, "{\"op\":\"pool.create\",\"name\":\"r3\","
			  "\"policy\":{\"replicas\":3}}"),
		 -ENOSPC);
	/* 3 drains, 2 would be left with one domain for r2 */
	CHECK_EQ(apply(m, "{\"op\":\"node.drain\",\"id\":2}"), -ENOSPC);
	CHECK_EQ(apply(m, "{\"op\":\"node.drain\",\"id\":9}"), -ENOENT);
	CHECK_EQ(apply(m, "{\"op\":\"node.leave\",\"id\":3}"), 0);
	json_t *n3 = json_object_get(json_object_get(m, "nodes"), "3");
	CHECK(json_is_true(json_object_get(n3, "leaving")));
	CHECK_EQ(apply(m, "{\"op\":\"node.remove\",\"id\":3}"), 0);
	CHECK_EQ(json_object_size(json_object_get(m, "nodes")), 2);
	/* remembered with its API address (its tasks can still be asked) */
	json_t *l3 = json_object_get(json_object_get(m, "left"), "3");
	CHECK(json_is_string(json_object_get(l3, "api")));
	json_decref(m);
}

int main(void)
{
	json_t *m = cluster_map_new();
	CHECK_EQ(apply(m, "{\"op\":\"cluster.init\",\"name\":\"c1\"}"), 0);
	CHECK_EQ(apply(m, "{\"op\":\"cluster.init\",\"name\":\"c2\"}"),
		 -EEXIST);
	CHECK_EQ(apply(m, "{\"op\":\"nope\"}"), -EINVAL);
	CHECK_EQ(apply(m, "[1,2]"), -EINVAL);
	CHECK_EQ(apply(m, "{\"op\":5}"), -EINVAL);

	/* nodes */
	CHECK_EQ(apply(m, NODE(1, 0)), 0);
	CHECK_EQ(apply(m, NODE(1, 0)), -EEXIST);
	CHECK_EQ(apply(m, "{\"op\":\"node.add\",\"id\":2,\"name\":\"n1\","
			  "\"raft\":\"r\",\"api\":\"a\"}"),
		 -EEXIST); /* name taken */
	CHECK_EQ(apply(m, "{\"op\":\"node.add\",\"id\":0,\"name\":\"z\","
			  "\"raft\":\"r\",\"api\":\"a\"}"),
		 -EINVAL);
	CHECK_EQ(apply(m, "{\"op\":\"node.add\",\"id\":3,\"name\":\"b/d\","
			  "\"raft\":\"r\",\"api\":\"a\"}"),
		 -EINVAL);
	CHECK_EQ(apply(m, "{\"op\":\"node.add\",\"id\":3,\"name\":\"z\","
			  "\"raft\":\"r\",\"api\":\"a\",\"capacity\":-1}"),
		 -EINVAL);
	CHECK_EQ(apply(m, "{\"op\":\"node.add\",\"id\":3,\"name\":\"z\","
			  "\"raft\":\"r\",\"api\":\"a\",\"domain\":\"x\"}"),
		 -EINVAL);
	CHECK_EQ(apply(m, NODE(2, 0)), 0);

	/* pools: policy validation and feasibility (two nodes, one domain) */
	CHECK_EQ(apply(m, "{\"op\":\"pool.create\",\"name\":\"p\","
			  "\"policy\":{\"replicas\":4}}"),
		 -EINVAL);
	CHECK_EQ(apply(m, "{\"op\":\"pool.create\",\"name\":\"p\","
			  "\"policy\":{\"replicas\":2,\"ec\":{\"k\":2,"
			  "\"m\":1}}}"),
		 -EINVAL);
	CHECK_EQ(apply(m, "{\"op\":\"pool.create\",\"name\":\"p\","
			  "\"policy\":{\"replicas\":2}}"),
		 -ENOSPC); /* one fault domain */
	CHECK_EQ(apply(m, "{\"op\":\"pool.create\",\"name\":\"p\","
			  "\"policy\":{\"replicas\":2},"
			  "\"spread_domains\":false}"),
		 0);
	CHECK_EQ(apply(m, "{\"op\":\"pool.create\",\"name\":\"p\","
			  "\"policy\":{\"replicas\":1}}"),
		 -EEXIST);
	CHECK_EQ(apply(m, "{\"op\":\"pool.create\",\"name\":\"e\","
			  "\"policy\":{\"ec\":{\"k\":2,\"m\":1}},"
			  "\"spread_domains\":false}"),
		 -ENOSPC); /* 3 shards, 2 nodes */
	CHECK_EQ(apply(m, NODE(3, 1)), 0);
	CHECK_EQ(apply(m, "{\"op\":\"pool.create\",\"name\":\"e\","
			  "\"policy\":{\"ec\":{\"k\":2,\"m\":1}},"
			  "\"spread_domains\":false}"),
		 0);
	/* removing a node the pools need is refused */
	CHECK_EQ(apply(m, "{\"op\":\"node.remove\",\"id\":3}"), -ENOSPC);
	CHECK_EQ(apply(m, "{\"op\":\"node.remove\",\"id\":9}"), -ENOENT);

	/* vdisks */
	CHECK_EQ(apply(m, "{\"op\":\"vdisk.create\",\"name\":\"v\","
			  "\"pool\":\"p\",\"size\":4096}"),
		 0);
	CHECK_EQ(apply(m, "{\"op\":\"vdisk.create\",\"name\":\"v\","
			  "\"pool\":\"p\",\"size\":4096}"),
		 -EEXIST);
	CHECK_EQ(apply(m, "{\"op\":\"vdisk.create\",\"name\":\"w\","
			  "\"pool\":\"nope\",\"size\":4096}"),
		 -ENOENT);
	CHECK_EQ(apply(m, "{\"op\":\"vdisk.create\",\"name\":\"w\","
			  "\"pool\":\"p\",\"size\":1000}"),
		 -EINVAL);
	CHECK_EQ(apply(m, "{\"op\":\"vdisk.create\",\"name\":\"w\","
			  "\"pool\":\"p\",\"size\":\"big\"}"),
		 -EINVAL);
	CHECK_EQ(apply(m, "{\"op\":\"pool.delete\",\"name\":\"p\"}"),
		 -EBUSY);
	CHECK_EQ(apply(m, "{\"op\":\"vdisk.delete\",\"name\":\"v\"}"), 0);
	CHECK_EQ(apply(m, "{\"op\":\"vdisk.delete\",\"name\":\"v\"}"),
		 -ENOENT);
	CHECK_EQ(apply(m, "{\"op\":\"pool.delete\",\"name\":\"p\"}"), 0);

	/* tokens: once, before expiry; ids after the highest node id */
	const char *h = "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
			"aaaaaaaaaa\"";
	char op[256];
	snprintf(op, sizeof(op),
		 "{\"op\":\"token.create\",\"hash\":%s,\"now\":100,"
		 "\"expires\":200}",
		 h);
	CHECK_EQ(apply(m, op), 0);
	CHECK_EQ(apply(m, op), -EEXIST);
	snprintf(op, sizeof(op),
		 "{\"op\":\"token.use\",\"hash\":%s,\"now\":300}", h);
	CHECK_EQ(apply(m, op), -EACCES); /* expired */
	snprintf(op, sizeof(op),
		 "{\"op\":\"token.use\",\"hash\":%s,\"now\":150}", h);
	json_t *res = NULL;
	char msg[256];
	json_t *o = json_loads(op, 0, NULL);
	CHECK_EQ(cluster_map_apply(m, o, &res, msg, sizeof(msg)), 0);
	CHECK_EQ(json_integer_value(json_object_get(res, "id")), 4);
	json_decref(res);
	CHECK_EQ(cluster_map_apply(m, o, &res, msg, sizeof(msg)), -EACCES);
	json_decref(o);
	CHECK_EQ(apply(m, "{\"op\":\"token.create\",\"hash\":\"xyz\","
			  "\"now\":1,\"expires\":2}"),
		 -EINVAL);

	test_auth(m);
	test_op_ids(m);
	test_remove();

	/* the public map hides the secrets and the op ids */
	json_t *pub = cluster_map_public(m);
	CHECK(json_object_get(m, "secrets") != NULL);
	CHECK(json_object_get(pub, "secrets") == NULL);
	CHECK(json_object_get(m, "op_ids") != NULL);
	CHECK(json_object_get(pub, "op_ids") == NULL);
	json_decref(pub);
	json_decref(m);
	if (failures) {
		fprintf(stderr, "test_cluster_map: %d check(s) failed\n",
			failures);
		return 1;
	}
	printf("test_cluster_map: ok\n");
	return 0;
}
