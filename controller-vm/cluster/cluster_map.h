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
 *                "used"}}}}
 */
#ifndef CAIRN_CLUSTER_MAP_H
#define CAIRN_CLUSTER_MAP_H

#include <jansson.h>
#include <stddef.h>

json_t *cluster_map_new(void);
/* A copy without "secrets" (the CA key, join tokens): what reads return. */
json_t *cluster_map_public(const json_t *map);
/* Applies op to map (changed in place only on success). Returns 0 and sets
 * *result (a new reference, or NULL) or -errno with msg filled. */
int cluster_map_apply(json_t *map, const json_t *op, json_t **result,
		      char *msg, size_t msglen);
/* Number of copies or shards a pool's policy needs; 0 if invalid. */
unsigned cluster_map_policy_width(const json_t *policy);

#endif
