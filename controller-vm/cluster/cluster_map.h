/* The cluster map as a state machine: JSON operations in, a new map out.
 * Pure and deterministic (no clock, no randomness): every node applies the
 * same committed operations in the same order and reaches the same map.
 *
 * Map layout (a jansson object):
 *   {"name": str, "epoch": int, "next_vdisk_id": int,
 *    "nodes":  {"<id>": {"id", "name", "raft", "api", "domain", "capacity"}},
 *    "pools":  {"<name>": {"name", "id", "policy": {"replicas": n} |
 *                                             {"ec": {"k": k, "m": m}},
 *                          "spread_domains": bool}},
 *    "vdisks": {"<name>": {"name", "id", "pool", "size"}},
 *    "next_node_id": int,
 *    "secrets": {"ca_crt", "ca_key", "tokens": {"<sha256>": {"expires",
 *                "used"}}, "admin", "api_tokens", "next_api_token"}
 *                (credentials: cluster_map_auth.c),
 *    "op_ids": {"<op_id>": {"seq", "op", "result"}}, "op_seq": int}
 *
 * A node being removed carries "draining": true (no new placements), then
 * "leaving": true (out of the voters, about to leave the configuration);
 * once removed, "left": {"<id>": {"name", "api"}} remembers it (the newest
 * 64), so that the tasks it kept can still be asked of it.
 *
 * Idempotent retries: an operation may carry "op_id" (1-64 characters of
 * A-Z a-z 0-9 - _ . :). The map remembers the last CLUSTER_MAP_OP_IDS
 * successful ones with their results, in the replicated state, so a retry
 * (after a timeout or a change of leader) gets the first result and
 * changes nothing; an op_id reused for another kind of operation is
 * refused with -EINVAL. Refused operations are not remembered: they
 * changed nothing, and a retry is checked again.
 */
#ifndef CAIRN_CLUSTER_MAP_H
#define CAIRN_CLUSTER_MAP_H

#include <jansson.h>
#include <stddef.h>

#define CLUSTER_MAP_OP_IDS 1024
#define CLUSTER_MAP_OP_ID_MAX 64

json_t *cluster_map_new(void);
/* A copy without "secrets" (the CA key, join tokens, credentials) and the
 * remembered op ids: what reads return. */
json_t *cluster_map_public(const json_t *map);
/* Applies op to map (changed in place only on success). Returns 0 and sets
 * *result (a new reference, or NULL) or -errno with msg filled. */
int cluster_map_apply(json_t *map, const json_t *op, json_t **result,
		      char *msg, size_t msglen);
/* Number of copies or shards a pool's policy needs; 0 if invalid. */
unsigned cluster_map_policy_width(const json_t *policy);

#endif
