/* Placement: a pure function from (cluster map, pool, extent) to the
 * ordered nodes that hold the extent's copies or shards. No lookup table:
 * every node computes the same answer from the same map, and a map change
 * moves only what it must (weighted rendezvous hashing, two levels: fault
 * domains, then nodes within a domain, in the manner of CRUSH's chooseleaf).
 * See docs/placement.md. */
#ifndef CAIRN_PLACEMENT_H
#define CAIRN_PLACEMENT_H

#include <stdbool.h>
#include <stdint.h>

#define PLACEMENT_MAX_WIDTH 32 /* copies, or k+m shards */

struct placement_node {
	uint64_t id;      /* non-zero, unique */
	uint32_t domain;  /* fault domain (rack or host) */
	double weight;    /* capacity share; 0 = holds nothing (drained/out) */
};

struct placement_map {
	const struct placement_node *nodes;
	unsigned n;
};

/* Writes `width` node ids to out[] in order (the first is the primary) and
 * returns width; or -EINVAL (bad arguments, duplicate ids), or -ENOSPC when
 * the map cannot satisfy the policy (fewer eligible nodes, or with
 * spread_domains fewer fault domains, than width). */
int placement_select(const struct placement_map *m, uint64_t pool,
		     uint64_t extent, unsigned width, bool spread_domains,
		     uint64_t *out);

/* Whether a pool of this width can be placed at all on the map (the check
 * a pool create makes: RF3 on two hosts is refused). */
bool placement_feasible(const struct placement_map *m, unsigned width,
			bool spread_domains);

#endif
