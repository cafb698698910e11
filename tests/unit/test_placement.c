/* Placement: balance by weight, minimal movement, fault domains. Pure: no
 * IO, milliseconds. */
#include <cairn/placement.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "check.h"

int failures;

#define EXTENTS 60000u

static void test_balance_weighted(void)
{
	struct placement_node n[10];
	double w[10] = {1, 1, 2, 2, 3, 3, 1, 1, 2, 4}, total = 0;
	for (unsigned i = 0; i < 10; i++) {
		n[i] = (struct placement_node){.id = 100 + i, .domain = i,
					       .weight = w[i]};
		total += w[i];
	}
	struct placement_map m = {n, 10};
	unsigned count[10] = {0};
	for (uint64_t e = 0; e < EXTENTS; e++) {
		uint64_t out[1];
		CHECK_EQ(placement_select(&m, 7, e, 1, true, out), 1);
		count[out[0] - 100]++;
	}
	for (unsigned i = 0; i < 10; i++) {
		double share = (double)count[i] / EXTENTS, exp = w[i] / total;
		if (fabs(share - exp) > 0.03 * exp + 0.002) {
			fprintf(stderr, "node %u: share %.4f, expected %.4f\n",
				i, share, exp);
			failures++;
		}
	}
}

static void test_balance_replicas(void)
{
	struct placement_node n[12];
	for (unsigned i = 0; i < 12; i++)
		n[i] = (struct placement_node){.id = 1 + i, .domain = i,
					       .weight = 1};
	struct placement_map m = {n, 12};
	unsigned count[12] = {0}, primary[12] = {0};
	for (uint64_t e = 0; e < EXTENTS; e++) {
		uint64_t out[3];
		CHECK_EQ(placement_select(&m, 1, e, 3, true, out), 3);
		CHECK(out[0] != out[1] && out[1] != out[2] && out[0] != out[2]);
		for (int k = 0; k < 3; k++)
			count[out[k] - 1]++;
		primary[out[0] - 1]++;
	}
	for (unsigned i = 0; i < 12; i++) {
		double share = (double)count[i] / (3.0 * EXTENTS);
		double pshare = (double)primary[i] / EXTENTS;
		CHECK(fabs(share - 1.0 / 12) < 0.03 / 12 + 0.001);
		CHECK(fabs(pshare - 1.0 / 12) < 0.05 / 12 + 0.001);
	}
}

/* Adding one node to N: close to width/(N+1) of the extents get exactly
 * one copy moved, always to the new node; nothing else moves. */
static void test_movement(void)
{
	struct placement_node n[11];
	for (unsigned i = 0; i < 11; i++)
		n[i] = (struct placement_node){.id = 1 + i, .domain = i,
					       .weight = 1};
	struct placement_map before = {n, 10}, after = {n, 11};
	unsigned moved_extents = 0, moved_copies = 0, elsewhere = 0;
	for (uint64_t e = 0; e < EXTENTS; e++) {
		uint64_t a[3], b[3];
		CHECK_EQ(placement_select(&before, 3, e, 3, true, a), 3);
		CHECK_EQ(placement_select(&after, 3, e, 3, true, b), 3);
		unsigned changed = 0;
		for (int k = 0; k < 3; k++) {
			bool kept = false;
			for (int j = 0; j < 3; j++)
				kept |= b[k] == a[j];
			if (!kept) {
				changed++;
				if (b[k] != 11)
					elsewhere++;
			}
		}
		moved_copies += changed;
		moved_extents += changed > 0;
		CHECK(changed <= 1);
	}
	double frac = (double)moved_copies / (3.0 * EXTENTS);
	printf("add 1 node to 10: %.4f of copies moved (ideal %.4f), %.4f of "
	       "extents touched\n",
	       frac, 1.0 / 11, (double)moved_extents / EXTENTS);
	CHECK(fabs(frac - 1.0 / 11) < 0.01);
	CHECK_EQ(elsewhere, 0);

	/* Draining a node (weight 0) moves only the copies it held. */
	struct placement_node d[10];
	memcpy(d, n, sizeof(d));
	d[4].weight = 0;
	struct placement_map drained = {d, 10};
	unsigned bad = 0;
	for (uint64_t e = 0; e < EXTENTS; e++) {
		uint64_t a[3], b[3];
		placement_select(&before, 3, e, 3, true, a);
		placement_select(&drained, 3, e, 3, true, b);
		for (int k = 0; k < 3; k++) {
			CHECK(b[k] != 5);
			bool held = a[0] == 5 || a[1] == 5 || a[2] == 5;
			bool kept = b[k] == a[0] || b[k] == a[1] || b[k] == a[2];
			if (!kept && !held)
				bad++;
		}
	}
	CHECK_EQ(bad, 0);
}

static void test_fault_domains(void)
{
	/* 9 hosts in 3 racks; RF3 spreads over the racks. */
	struct placement_node n[9];
	for (unsigned i = 0; i < 9; i++)
		n[i] = (struct placement_node){.id = 50 + i, .domain = i / 3,
					       .weight = 1 + (i % 2)};
	struct placement_map m = {n, 9};
	for (uint64_t e = 0; e < 5000; e++) {
		uint64_t out[3];
		CHECK_EQ(placement_select(&m, 2, e, 3, true, out), 3);
		uint32_t r0 = (uint32_t)(out[0] - 50) / 3,
			 r1 = (uint32_t)(out[1] - 50) / 3,
			 r2 = (uint32_t)(out[2] - 50) / 3;
		CHECK(r0 != r1 && r1 != r2 && r0 != r2);
	}
	uint64_t out[PLACEMENT_MAX_WIDTH];
	CHECK_EQ(placement_select(&m, 2, 1, 4, true, out), -ENOSPC);
	CHECK(!placement_feasible(&m, 4, true));
	CHECK(placement_feasible(&m, 4, false));
	CHECK_EQ(placement_select(&m, 2, 1, 4, false, out), 4);
	/* RF3 on two nodes is refused */
	struct placement_map two = {n, 2};
	CHECK(!placement_feasible(&two, 3, false));
	CHECK_EQ(placement_select(&two, 2, 1, 3, false, out), -ENOSPC);
}

static void test_determinism_and_bad_input(void)
{
	struct placement_node n[5], r[5];
	for (unsigned i = 0; i < 5; i++) {
		n[i] = (struct placement_node){.id = 9 + i, .domain = i,
					       .weight = 1};
		r[4 - i] = n[i];
	}
	struct placement_map m = {n, 5}, rev = {r, 5};
	for (uint64_t e = 0; e < 1000; e++) {
		uint64_t a[2], b[2];
		placement_select(&m, 3, e, 2, true, a);
		placement_select(&rev, 3, e, 2, true, b);
		CHECK(a[0] == b[0] && a[1] == b[1]);
	}
	uint64_t out[2];
	CHECK_EQ(placement_select(&m, 3, 1, 0, true, out), -EINVAL);
	CHECK_EQ(placement_select(&m, 3, 1, PLACEMENT_MAX_WIDTH + 1, true,
				  out), -EINVAL);
	n[1].id = n[0].id;
	CHECK_EQ(placement_select(&m, 3, 1, 1, true, out), -EINVAL);
	n[1].id = 10;
	n[1].weight = NAN;
	CHECK_EQ(placement_select(&m, 3, 1, 1, true, out), -EINVAL);
	n[1].weight = -1;
	CHECK_EQ(placement_select(&m, 3, 1, 1, true, out), -EINVAL);
	struct placement_map empty = {n, 0};
	CHECK_EQ(placement_select(&empty, 3, 1, 1, true, out), -ENOSPC);
}

int main(void)
{
	test_balance_weighted();
	test_balance_replicas();
	test_movement();
	test_fault_domains();
	test_determinism_and_bad_input();
	if (failures) {
		fprintf(stderr, "test_placement: %d check(s) failed\n",
			failures);
		return 1;
	}
	printf("test_placement: ok\n");
	return 0;
}
