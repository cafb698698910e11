/* Block range locks. A request locks the blocks it reads (shared) and the
 * blocks it changes (exclusive) for its whole life, which gives:
 *  - COMPARE_AND_WRITE atomicity against every other writer;
 *  - read-modify-write of partial blocks without lost updates;
 *  - no block is released (and later reused) under an in-flight read.
 * The table is a pool-wide list: the queue depth bounds its length. */
#include <errno.h>

#include "sds_internal.h"

static bool sds_lock__overlap(const struct sds_range *a,
			      const struct sds_range *b)
{
	return a->vd && b->vd && a->vd == b->vd && (a->excl || b->excl) &&
	       a->b0 < b->b1 && b->b0 < a->b1;
}

static bool sds_lock__conflict(const struct sds_req *a, const struct sds_req *b)
{
	for (int i = 0; i < 2; i++)
		for (int j = 0; j < 2; j++)
			if (sds_lock__overlap(&a->lk[i], &b->lk[j]))
				return true;
	return false;
}

/* Conflicts with a holder, or with a waiter queued before `stop`. */
static bool sds_lock__blocked(struct sds_pool *p, const struct sds_req *r,
			      const struct sds_req *stop)
{
	const struct sds_req *o;
	TAILQ_FOREACH(o, &p->locked, lock_link)
		if (sds_lock__conflict(r, o))
			return true;
	TAILQ_FOREACH(o, &p->lock_waiters, link) {
		if (o == stop)
			break;
		if (sds_lock__conflict(r, o))
			return true;
	}
	return false;
}

int sds_lock_try(struct sds_req *r)
{
	struct sds_pool *p = r->pool;
	if (!r->lk[0].vd && !r->lk[1].vd) {
		r->locked = true;
		return 0;
	}
	if (sds_lock__blocked(p, r, NULL)) {
		TAILQ_INSERT_TAIL(&p->lock_waiters, r, link);
		return -EAGAIN;
	}
	TAILQ_INSERT_TAIL(&p->locked, r, lock_link);
	r->locked = true;
	return 0;
}

void sds_lock_release(struct sds_req *r)
{
	struct sds_pool *p = r->pool;
	if (!r->locked)
		return;
	r->locked = false;
	if (!r->lk[0].vd && !r->lk[1].vd)
		return;
	TAILQ_REMOVE(&p->locked, r, lock_link);
	struct sds_req *w, *tmp;
	TAILQ_FOREACH_SAFE(w, &p->lock_waiters, link, tmp) {
		if (sds_lock__blocked(p, w, w))
			continue;
		TAILQ_REMOVE(&p->lock_waiters, w, link);
		TAILQ_INSERT_TAIL(&p->locked, w, lock_link);
		w->locked = true;
		sds_req_continue(w);
	}
}
