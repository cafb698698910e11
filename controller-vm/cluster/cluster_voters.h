/* How many voters a cluster keeps, and which node to promote or demote
 * next: a pure function of the map and the Raft configuration, so that
 * tests/unit/test_cluster_voters.c can check it with no socket and no
 * disk. Private to controller-vm/cluster/. */
#ifndef CAIRN_CLUSTER_VOTERS_H
#define CAIRN_CLUSTER_VOTERS_H

#include <jansson.h>
#include <raft.h>
#include <stdbool.h>

/* 1 voter for 1-2 nodes, 3 for 3-4, 5 from 5 on: an odd count (an even
 * one tolerates no more failures than the odd one below it and needs a
 * larger majority), and no more than 5 (every write waits for a majority
 * of the voters). */
unsigned cluster_voters_target(unsigned nodes);

/* One change of role: id 0 means nothing to change. */
struct cluster_voter_change {
	raft_id id;
	int role; /* RAFT_VOTER (promote) or RAFT_STANDBY (demote) */
};

/* The next change that brings the voters towards the target for the
 * configuration's servers that are not draining in `map` (draining nodes
 * are the removal's business: docs/cluster.md). Promotes a standby from
 * the fault domain with the fewest voters; demotes a voter (never
 * `leader`) from the domain with the most. `alive[i]` (NULL: all) says
 * whether conf->servers[i] answered lately: only a live standby is
 * promoted, and a dead voter is demoted first. Ties go to the lowest id
 * for promotions and the highest for demotions, so the choice is
 * deterministic. */
struct cluster_voter_change
cluster_voters_plan(const json_t *map, const struct raft_configuration *conf,
		    raft_id leader, const bool *alive);

#endif
