/* The cluster: membership and the cluster map, replicated with Raft
 * (Debian's libraft, canonical raft 0.15) over mutual TLS between nodes.
 *
 * The map holds nodes (with fault domains and capacity), disks, pools
 * (with their policy: replicas 1-3 or erasure code k+m) and vdisks, plus an
 * epoch that every change bumps. It changes only through operations
 * committed in the Raft log, so every node applies the same operations in
 * the same order; reads that must be current go through the leader (a
 * barrier), so a deposed leader never serves a stale map.
 *
 * Operations and results are JSON (jansson). An operation is an object with
 * "op" and its arguments, e.g.
 *   {"op": "pool.create", "name": "p1", "policy": {"replicas": 3}}
 *   {"op": "pool.delete", "name": "p1"}
 *   {"op": "vdisk.create", "pool": "p1", "name": "v1", "size": 1073741824}
 *   {"op": "vdisk.delete", "name": "v1"}
 *   {"op": "auth.password", "salt", "hash", "iterations"}
 * Any operation may carry "op_id" (a client's idempotency key): a retry
 * with the same op_id gets the first result and changes nothing
 * (controller-vm/cluster/cluster_map.h). Node joins go through
 * cluster_join and removals through cluster_remove_node (they change the
 * Raft configuration too). An operation the map cannot take (a duplicate name, RF3 on two
 * hosts, an unknown pool) fails with -EINVAL/-EEXIST/-ENOENT/-ENOSPC and a
 * message, and changes nothing.
 *
 * Threading: the loop thread that owns the cluster; callbacks run there.
 */
#ifndef CAIRN_CLUSTER_H
#define CAIRN_CLUSTER_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct cluster;

/* status: 0 or -errno; result: the operation's result object (borrowed:
 * valid during the callback); msg: a human-readable error or "". */
typedef void (*cluster_op_cb)(void *arg, int status, json_t *result,
			      const char *msg);

/* Submits an operation. On a follower it fails with -EREMOTE and msg set
 * to the leader's API address, so that callers can forward; without a
 * quorum it fails with -EAGAIN after a bounded wait. */
void cluster_submit(struct cluster *c, json_t *op, cluster_op_cb cb,
		    void *arg);

/* A linearizable read: the whole map as JSON (passed as `result`), after
 * the leader has confirmed it still leads. Same errors as submit. */
void cluster_read(struct cluster *c, cluster_op_cb cb, void *arg);

/* This node's view, without consensus: id, name, role, leader id and API
 * address, term, commit index, map epoch, voters and non-voters. */
json_t *cluster_status(struct cluster *c);

/* ---- lifecycle and membership (controller-vm/cluster/cluster.c) ------- */

struct cluster_config {
	uint64_t id;              /* raft id, non-zero; certificate "node-<id>" */
	const char *name;         /* node name */
	const char *dir;          /* raft data directory */
	const char *raft_address; /* "IPv4:port" for node-to-node traffic */
	const char *api_address;  /* where this node's management API answers */
	const char *ca_file, *cert_file, *key_file; /* cluster PKI */
	const char *ca_key_file;  /* bootstrap: the CA key, put in the map */
	uint32_t domain;          /* fault domain */
	double capacity;          /* placement weight */
	bool bootstrap;           /* first node of a new cluster */
	const char *cluster_name; /* with bootstrap */
	unsigned election_ms;     /* 0: 1000 */
	/* bootstrap: the admin password hash for the map ({"salt", "hash",
	 * "iterations"}; must be changed). NULL: no admin account. */
	const json_t *admin;
};

/* A node's description for cluster_add_node. */
struct cluster_node {
	uint64_t id;
	const char *name;
	const char *raft_address;
	const char *api_address;
	uint32_t domain;
	double capacity;
};

int cluster_start(uv_loop_t *loop, const struct cluster_config *cfg,
		  struct cluster **out, char *err, size_t errlen);
void cluster_stop(struct cluster *c, void (*cb)(void *arg), void *arg);
/* On the leader: adds the node to the Raft configuration as a standby and
 * then to the map; the leader promotes standbys to voters (keeping 1, 3
 * or 5) once they are up to date. */
void cluster_add_node(struct cluster *c, const struct cluster_node *n,
		      cluster_op_cb cb, void *arg);
bool cluster_is_leader(struct cluster *c);

/* Joining (on the leader). A token is "cairn1:<CA sha256>:<secret>": the
 * joining node checks the CA it talks to by the fingerprint, the leader
 * spends the secret once. result: {"token", "expires"}. */
void cluster_token_create(struct cluster *c, unsigned ttl_s, cluster_op_cb cb,
			  void *arg);
/* req: {"token", "name", "raft", "api", "domain", "capacity"}. Spends the
 * token, gives the node an id and a certificate "node-<id>" signed by the
 * cluster CA, adds it to the Raft configuration and the map. result:
 * {"id", "name", "cert", "key", "ca", "cluster"} — the joining node starts
 * its cluster with them (bootstrap false). */
void cluster_join(struct cluster *c, const json_t *req, cluster_op_cb cb,
		  void *arg);
/* This node's applied map, secrets included, possibly behind the
 * leader's: the API authenticates against its credentials, and reads it
 * right after a cluster_read (then it is current). Never send it out. */
const json_t *cluster_local_map(struct cluster *c);

/* Removes node `id` (on the leader; op_id optional): marks it draining in
 * the map (no new placements; data evacuation comes with replication),
 * refused with -ENOSPC when a pool would no longer fit or -EBUSY for the
 * last node. Then every leader, from the map, one step at a time: keeps
 * the voter count by promoting a standby, transfers the leadership away
 * if it is the node, demotes it, marks it leaving (the node sees this and
 * refuses cluster work from then on: -EIDRM), takes it out of the Raft
 * configuration and deletes it from the map. cb runs when the node is out
 * of this node's map (or, on the node itself, when it is leaving), with
 * -ETIMEDOUT after 60 s (the removal goes on). */
void cluster_remove_node(struct cluster *c, uint64_t id, const char *op_id,
			 cluster_op_cb cb, void *arg);

/* A member's current map (through its leader) no longer has this node:
 * it was removed while it was down, so it never applied its node.leave.
 * From now on it refuses cluster work (-EIDRM) as a node removed while up
 * does; `who` names the member that said so, for the log. Not kept across
 * a restart: the node asks again (controller-vm/api/membership.c). */
void cluster_mark_removed(struct cluster *c, const char *who);

#endif
