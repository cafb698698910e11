/* The voter policy alone (controller-vm/cluster/cluster_voters.c): a map
 * and a Raft configuration in, the next promotion or demotion out. Pure. */
#include <stdio.h>
#include <string.h>

#include "../../controller-vm/cluster/cluster_voters.h"
#include "check.h"

int failures;

/* A map of nodes 1..n in the given fault domains. */
static json_t *map_of(const unsigned *domains, unsigned n)
{
	json_t *m = json_pack("{s:{}}", "nodes");
	for (unsigned i = 0; i < n; i++) {
		char key[16];
		snprintf(key, sizeof(key), "%u", i + 1);
		json_object_set_new(json_object_get(m, "nodes"), key,
				    json_pack("{s:I, s:I}", "id",
					      (json_int_t)i + 1, "domain",
					      (json_int_t)domains[i]));
	}
	return m;
}

static void drain(json_t *m, unsigned id)
{
	char key[16];
	snprintf(key, sizeof(key), "%u", id);
	json_object_set_new(json_object_get(json_object_get(m, "nodes"), key),
			    "draining", json_true());
}

/* roles: "V" voter, "S" standby, one letter per node 1..n. */
static void conf_of(struct raft_configuration *c, const char *roles)
{
	raft_configuration_init(c);
	for (unsigned i = 0; roles[i]; i++) {
		char addr[32];
		snprintf(addr, sizeof(addr), "127.0.0.1:%u", 7000 + i);
		CHECK_EQ(raft_configuration_add(c, i + 1, addr,
						roles[i] == 'V' ? RAFT_VOTER
								: RAFT_STANDBY),
			 0);
	}
}

/* Applies the plan until it has nothing to do; returns the roles. */
static const char *settle(json_t *m, const char *roles, raft_id leader,
			  const bool *alive)
{
	static char out[32];
	snprintf(out, sizeof(out), "%s", roles);
	for (int step = 0; step < 16; step++) {
		struct raft_configuration c;
		conf_of(&c, out);
		struct cluster_voter_change ch =
			cluster_voters_plan(m, &c, leader, alive);
		raft_configuration_close(&c);
		if (!ch.id)
			return out;
		CHECK(ch.id != leader || ch.role == RAFT_VOTER);
		out[ch.id - 1] = ch.role == RAFT_VOTER ? 'V' : 'S';
	}
	CHECK(!"the plan never settles");
	return out;
}

static struct cluster_voter_change plan(json_t *m, const char *roles,
					raft_id leader, const bool *alive)
{
	struct raft_configuration c;
	conf_of(&c, roles);
	struct cluster_voter_change ch =
		cluster_voters_plan(m, &c, leader, alive);
	raft_configuration_close(&c);
	return ch;
}

int main(void)
{
	CHECK_EQ(cluster_voters_target(1), 1);
	CHECK_EQ(cluster_voters_target(2), 1);
	CHECK_EQ(cluster_voters_target(3), 3);
	CHECK_EQ(cluster_voters_target(4), 3);
	CHECK_EQ(cluster_voters_target(5), 5);
	CHECK_EQ(cluster_voters_target(9), 5);

	unsigned doms[] = {1, 1, 2, 2, 3, 3, 4};
	json_t *m = map_of(doms, 7);

	/* alone: one voter, nothing to do */
	CHECK_EQ(plan(m, "V", 1, NULL).id, 0);
	/* two nodes: still one voter (two would tolerate no more) */
	CHECK(!strcmp(settle(m, "VS", 1, NULL), "VS"));
	CHECK(!strcmp(settle(m, "VV", 1, NULL), "VS"));
	/* three: promote both standbys */
	CHECK(!strcmp(settle(m, "VSS", 1, NULL), "VVV"));

	/* five voters less one removed leave four: demote one, never the
	 * leader; domains tie (two voters each): the highest id */
	CHECK(!strcmp(settle(m, "VVVV", 1, NULL), "VVVS"));
	struct cluster_voter_change ch = plan(m, "VVVV", 4, NULL);
	CHECK_EQ(ch.id, 3);
	CHECK_EQ(ch.role, RAFT_STANDBY);
	/* from the most crowded fault domain: 1, 2, 3 in domain 1, 4 alone */
	unsigned doms2[] = {1, 1, 1, 2};
	json_t *m2 = map_of(doms2, 4);
	CHECK_EQ(plan(m2, "VVVV", 3, NULL).id, 2);
	CHECK(!strcmp(settle(m2, "VVVV", 4, NULL), "VVSV"));
	json_decref(m2);

	/* a fifth node joins: an odd count is reachable, promote to five */
	CHECK(!strcmp(settle(m, "VVVSS", 1, NULL), "VVVVV"));
	/* promotion spreads: domains 1,1,2,2,3 with voters 1,2 (domain 1)
	 * and 3 (domain 2): the standby of domain 3 goes first */
	ch = plan(m, "VVVSS", 1, NULL);
	CHECK_EQ(ch.id, 5);
	CHECK_EQ(ch.role, RAFT_VOTER);

	/* seven nodes keep five voters */
	{
		const char *r = settle(m, "VVVVVVV", 1, NULL);
		unsigned v = 0;
		for (const char *p = r; *p; p++)
			v += *p == 'V';
		CHECK_EQ(v, 5);
		CHECK(r[0] == 'V'); /* the leader */
	}

	/* five nodes, four voters, the standby down: no standby can be
	 * promoted, so four become three (the dead voter first if any) */
	bool alive5[] = {true, true, true, true, false};
	CHECK(!strcmp(settle(m, "VVVVS", 1, alive5), "VVVSS"));
	bool alive5b[] = {true, false, true, true, false};
	ch = plan(m, "VVVVS", 1, alive5b);
	CHECK_EQ(ch.id, 2); /* dead, demoted before any live one */
	CHECK_EQ(ch.role, RAFT_STANDBY);
	/* ... and three voters with one live standby stay three (no flip
	 * between three and four) */
	bool alive5c[] = {true, true, true, true, false};
	CHECK_EQ(plan(m, "VVVSS", 1, alive5c).id, 0);
	/* the dead standby comes back: five again */
	CHECK(!strcmp(settle(m, "VVVSS", 1, NULL), "VVVVV"));

	/* a draining node does not count: five nodes, one draining, its
	 * voter left for the removal to demote; the others keep three */
	drain(m, 5);
	CHECK(!strcmp(settle(m, "VVVVV", 1, NULL), "VVVSV"));
	/* four nodes left and a draining standby, never promoted: two
	 * promotions, domain 2 (no voter yet) first, then the lowest id */
	ch = plan(m, "VSSSS", 1, NULL);
	CHECK_EQ(ch.id, 3);
	CHECK(!strcmp(settle(m, "VSSSS", 1, NULL), "VVVSS"));

	json_decref(m);
	if (failures) {
		fprintf(stderr, "test_cluster_voters: %d check(s) failed\n",
			failures);
		return 1;
	}
	printf("test_cluster_voters: ok\n");
	return 0;
}
