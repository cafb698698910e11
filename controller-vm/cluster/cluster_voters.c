/* The voter policy (cluster_voters.h): which standby to promote or which
 * voter to demote next. Pure: the leader's tick (cluster.c) applies the
 * answer with raft_assign, one change at a time, and asks again. */
#include "cluster_voters.h"

#include <inttypes.h>
#include <stdio.h>

unsigned cluster_voters_target(unsigned nodes)
{
	return nodes >= 5 ? 5 : (nodes >= 3 ? 3 : 1);
}

static const json_t *voters__node(const json_t *map, raft_id id)
{
	char key[24];
	snprintf(key, sizeof(key), "%" PRIu64, (uint64_t)id);
	return json_object_get(json_object_get(map, "nodes"), key);
}

static bool voters__draining(const json_t *map, raft_id id)
{
	return json_is_true(
		json_object_get(voters__node(map, id), "draining"));
}

/* A node the map does not know yet (added to the configuration, its
 * node.add not yet applied) counts as domain 0. */
static json_int_t voters__domain(const json_t *map, raft_id id)
{
	return json_integer_value(
		json_object_get(voters__node(map, id), "domain"));
}

/* Voters (not draining) in `id`'s fault domain. */
static unsigned voters__in_domain(const json_t *map,
				  const struct raft_configuration *conf,
				  json_int_t dom)
{
	unsigned k = 0;
	for (unsigned i = 0; i < conf->n; i++) {
		const struct raft_server *s = &conf->servers[i];
		k += s->role == RAFT_VOTER && !voters__draining(map, s->id) &&
		     voters__domain(map, s->id) == dom;
	}
	return k;
}

/* The count to aim for: the target, but no more than the voters plus the
 * standbys that could be promoted now, and odd: with a standby down, 4
 * voters become 3 (the same one failure tolerated, a smaller majority to
 * wait for), and 3 voters with one live standby stay 3. */
static unsigned voters__goal(unsigned target, unsigned reachable)
{
	unsigned g = reachable < target ? reachable : target;
	if (g && !(g & 1))
		g--;
	return g ? g : 1;
}

struct cluster_voter_change
cluster_voters_plan(const json_t *map, const struct raft_configuration *conf,
		    raft_id leader, const bool *alive)
{
	struct cluster_voter_change ch = {0, RAFT_VOTER};
	unsigned nodes = 0, voters = 0, live_standbys = 0;
	for (unsigned i = 0; i < conf->n; i++) {
		const struct raft_server *s = &conf->servers[i];
		if (voters__draining(map, s->id))
			continue;
		nodes++;
		voters += s->role == RAFT_VOTER;
		live_standbys += s->role == RAFT_STANDBY &&
				 (!alive || alive[i]);
	}
	unsigned goal = voters__goal(cluster_voters_target(nodes),
				     voters + live_standbys);
	if (voters == goal)
		return ch;
	bool promote = voters < goal;
	/* Best candidate so far: its liveness, its domain's voters, its id. */
	bool best_up = false;
	unsigned best_dom = 0;
	for (unsigned i = 0; i < conf->n; i++) {
		const struct raft_server *s = &conf->servers[i];
		bool up = !alive || alive[i] || s->id == leader;
		if (voters__draining(map, s->id))
			continue;
		unsigned dom = voters__in_domain(map, conf,
						 voters__domain(map, s->id));
		bool better;
		if (promote) {
			if (s->role != RAFT_STANDBY || !up)
				continue;
			better = !ch.id || dom < best_dom ||
				 (dom == best_dom && s->id < ch.id);
		} else {
			if (s->role != RAFT_VOTER || s->id == leader)
				continue;
			/* dead first, then the most crowded domain */
			better = !ch.id || (!up && best_up) ||
				 (up == best_up &&
				  (dom > best_dom ||
				   (dom == best_dom && s->id > ch.id)));
		}
		if (better) {
			ch.id = s->id;
			best_up = up;
			best_dom = dom;
		}
	}
	ch.role = promote ? RAFT_VOTER : RAFT_STANDBY;
	return ch;
}
