/* Weighted rendezvous (highest random weight) hashing.
 *
 * Each candidate c gets the score  w_c / -ln(U_c)  with U_c uniform in
 * (0, 1) from a hash of (pool, extent, c): the candidate with the highest
 * score wins with probability exactly w_c / sum(w) (the "logarithmic
 * method" for weighted HRW; Schindelhauer & Schomaker 2005, and Ceph's
 * straw2 uses the same law). Taking the top `width` candidates keeps the
 * other scores' order when a node joins or leaves, so only the copies that
 * land on (or leave) that node move: about width/(N+1) of the extents get
 * one copy moved when the N+1th node of equal weight joins.
 *
 * Two levels, as CRUSH's chooseleaf: fault domains first (weight = the sum
 * of their nodes' weights), then one node in each chosen domain. */
#include <cairn/placement.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* splitmix64 finalizer: a strong 64-bit mix. */
static uint64_t placement__mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static double placement__score(uint64_t pool, uint64_t extent, uint64_t who,
			       uint64_t level, double weight)
{
	if (weight <= 0)
		return -1;
	uint64_t h = placement__mix(placement__mix(placement__mix(
		pool ^ placement__mix(level)) ^ extent) ^ who);
	/* 53 random bits into (0, 1): never 0, never 1. */
	double u = ((double)(h >> 11) + 0.5) / 9007199254740992.0;
	return weight / -log(u);
}

struct placement__cand {
	uint64_t id;
	double weight;
	double score;
};

static int placement__by_score(const void *a, const void *b)
{
	const struct placement__cand *x = a, *y = b;
	if (x->score != y->score)
		return x->score > y->score ? -1 : 1;
	return x->id < y->id ? -1 : (x->id > y->id);
}

/* Fault domains with their total weight; a node's own id stands for its
 * domain when domains are not spread. */
static unsigned placement__domains(const struct placement_map *m,
				   bool spread, struct placement__cand *d)
{
	unsigned nd = 0;
	for (unsigned i = 0; i < m->n; i++) {
		if (m->nodes[i].weight <= 0)
			continue;
		uint64_t key = spread ? m->nodes[i].domain : m->nodes[i].id;
		unsigned j = 0;
		while (j < nd && d[j].id != key)
			j++;
		if (j == nd) {
			d[nd].id = key;
			d[nd++].weight = 0;
		}
		d[j].weight += m->nodes[i].weight;
	}
	return nd;
}

static bool placement__valid(const struct placement_map *m)
{
	for (unsigned i = 0; i < m->n; i++) {
		if (!m->nodes[i].id || !(m->nodes[i].weight >= 0) ||
		    isinf(m->nodes[i].weight))
			return false;
		for (unsigned j = 0; j < i; j++)
			if (m->nodes[j].id == m->nodes[i].id)
				return false;
	}
	return true;
}

bool placement_feasible(const struct placement_map *m, unsigned width,
			bool spread_domains)
{
	if (!m || !m->n || !width || width > PLACEMENT_MAX_WIDTH ||
	    !placement__valid(m))
		return false;
	struct placement__cand *d = calloc(m->n, sizeof(*d));
	if (!d)
		return false;
	unsigned nd = placement__domains(m, spread_domains, d);
	free(d);
	return nd >= width;
}

int placement_select(const struct placement_map *m, uint64_t pool,
		     uint64_t extent, unsigned width, bool spread_domains,
		     uint64_t *out)
{
	if (!m || !out || !width || width > PLACEMENT_MAX_WIDTH ||
	    !placement__valid(m))
		return -EINVAL;
	if (!m->n)
		return -ENOSPC;
	struct placement__cand *d = calloc(m->n, sizeof(*d));
	if (!d)
		return -ENOMEM;
	unsigned nd = placement__domains(m, spread_domains, d);
	if (nd < width) {
		free(d);
		return -ENOSPC;
	}
	for (unsigned i = 0; i < nd; i++)
		d[i].score = placement__score(pool, extent, d[i].id, 1,
					      d[i].weight);
	qsort(d, nd, sizeof(*d), placement__by_score);
	for (unsigned k = 0; k < width; k++) {
		/* The best-scoring node of the k-th domain. */
		double best = -2;
		uint64_t pick = 0;
		for (unsigned i = 0; i < m->n; i++) {
			const struct placement_node *nd_ = &m->nodes[i];
			uint64_t key = spread_domains ? nd_->domain : nd_->id;
			if (key != d[k].id || nd_->weight <= 0)
				continue;
			double s = placement__score(pool, extent, nd_->id, 2,
						    nd_->weight);
			if (s > best || (s == best && nd_->id < pick)) {
				best = s;
				pick = nd_->id;
			}
		}
		out[k] = pick;
	}
	free(d);
	return (int)width;
}
