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

	/* the public map hides the secrets */
	json_t *pub = cluster_map_public(m);
	CHECK(json_object_get(m, "secrets") != NULL);
	CHECK(json_object_get(pub, "secrets") == NULL);
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
