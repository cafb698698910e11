/* One virtqueue of a connection: kick polling, start and stop, used-ring
 * completions and calls, and inflight tracking.
 *
 * Inflight tracking (vhost-user.rst, "Inflight I/O tracking"): the back end
 * allocates a shared memory region (GET_INFLIGHT_FD) that QEMU keeps and
 * hands back to the next back end after a reconnect (SET_INFLIGHT_FD). We
 * use libvhost-user's layout and protocol for split rings: a request taken
 * from the avail ring is marked in flight with an increasing counter;
 * before its used entry is pushed its head is noted as last_batch_head,
 * after the push it is cleared and used_idx recorded. A restarted back end
 * finds every request a dead one took but did not complete, in order, and
 * resubmits them before taking new ones. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "log.h"
#include "util.h"
#include "vhost_int.h"

/* Most requests taken in one pass before yielding to the loop. */
#define VHOST_VQ_BUDGET(q) (2u * (q)->vr.num)

bool vhost_vq_running(const struct vhost_vq *q)
{
	const struct vhost_conn *c = q->c;
	bool need_enable =
	    c->features & (1ull << VHOST_USER_F_PROTOCOL_FEATURES);
	return q->started && !q->broken && !c->closing && !c->paused &&
	       (q->enabled || !need_enable);
}

void vhost_vq_break(struct vhost_vq *q, const char *why, int err)
{
	if (q->broken)
		return;
	q->broken = true;
	log_warn(VHOST_LOG, "%s: queue %u broken by the guest: %s (%s)",
		 q->c->srv->path, q->idx, why, strerror(-err));
}

size_t vhost_inflight_queue_size(uint16_t queue_size)
{
	size_t n = sizeof(struct vhost_inflight_queue) +
		   sizeof(struct vhost_inflight_desc) * (size_t)queue_size;
	return (n + 63) & ~(size_t)63;
}

void vhost_vq_track_get(struct vhost_vq *q, uint16_t head)
{
	struct vhost_inflight_queue *t = q->track;
	if (!t)
		return;
	t->desc[head].counter = q->counter++;
	__atomic_thread_fence(__ATOMIC_RELEASE);
	t->desc[head].inflight = 1;
}

static int vhost_vq_cmp_counter(const void *a, const void *b, void *arg)
{
	const struct vhost_inflight_queue *t = arg;
	uint64_t x = t->desc[*(const uint16_t *)a].counter;
	uint64_t y = t->desc[*(const uint16_t *)b].counter;
	/* Descending: the oldest is taken from the end of the array. */
	return x < y ? 1 : x > y ? -1 : 0;
}

/* After a (re)start with a tracking region: libvhost-user's
 * vu_check_queue_inflights. */
static int vhost_vq_track_check(struct vhost_vq *q)
{
	struct vhost_inflight_queue *t = q->track;
	free(q->resubmit);
	q->resubmit = NULL;
	q->nresubmit = 0;
	q->counter = 0;
	if (!t)
		return 0;
	/* desc_num lives in shared memory: the mapping itself was sized
	 * for inflight_qsize entries per queue. */
	if (t->desc_num != q->num || q->num > q->c->inflight_qsize) {
		log_warn(VHOST_LOG,
			 "%s: queue %u: inflight region for %u entries, "
			 "ring has %u: not tracking",
			 q->c->srv->path, q->idx, t->desc_num, q->num);
		q->track = NULL;
		return 0;
	}
	if (t->used_idx != q->vr.used_idx) {
		/* Died between pushing last_batch_head and clearing it. */
		t->desc[t->last_batch_head % q->num].inflight = 0;
		t->used_idx = q->vr.used_idx;
	}
	unsigned n = 0;
	uint64_t max = 0;
	for (unsigned i = 0; i < q->num; i++) {
		if (t->desc[i].inflight == 1) {
			n++;
			max = MAX(max, t->desc[i].counter);
		} else {
			t->desc[i].inflight = 0;
		}
	}
	/* Every entry taken was completed or is in flight. */
	q->vr.last_avail = (uint16_t)(q->vr.used_idx + n);
	if (!n)
		return 0;
	q->resubmit = malloc(n * sizeof(*q->resubmit));
	if (!q->resubmit)
		return -ENOMEM;
	for (unsigned i = 0; i < q->num; i++)
		if (t->desc[i].inflight == 1)
			q->resubmit[q->nresubmit++] = (uint16_t)i;
	qsort_r(q->resubmit, n, sizeof(*q->resubmit), vhost_vq_cmp_counter, t);
	q->counter = max + 1;
	log_info(VHOST_LOG, "%s: queue %u: resubmitting %u requests in flight",
		 q->c->srv->path, q->idx, n);
	return 0;
}

static void vhost_kick_closed(uv_handle_t *h)
{
	struct vhost_kick *k = container_of((uv_poll_t *)h, struct vhost_kick,
					    poll);
	close(k->fd);
	free(k);
}

static void vhost_vq_detach_kick(struct vhost_vq *q)
{
	struct vhost_kick *k = q->kick;
	if (!k)
		return;
	q->kick = NULL;
	k->vq = NULL;
	uv_close((uv_handle_t *)&k->poll, vhost_kick_closed);
}

static void vhost_kick_cb(uv_poll_t *p, int status, int events)
{
	struct vhost_kick *k = container_of(p, struct vhost_kick, poll);
	(void)events;
	eventfd_t v;
	/* Readable: one read returns the count and clears it. */
	if (read(k->fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		status = status < 0 ? status : -errno;
	struct vhost_vq *q = k->vq;
	if (!q)
		return;
	if (status < 0) {
		log_warn(VHOST_LOG, "%s: queue %u: kick: %s",
			 q->c->srv->path, q->idx, strerror(-status));
		vhost_vq_detach_kick(q);
		return;
	}
	vhost_vq_process(q);
}

void vhost_vq_set_call(struct vhost_vq *q, int fd)
{
	if (q->call_fd >= 0)
		close(q->call_fd);
	q->call_fd = fd;
}

int vhost_vq_start(struct vhost_vq *q)
{
	struct vhost_conn *c = q->c;
	if (!q->addr_set || !q->num || !c->mem.nregions)
		return -EINVAL;
	int rc = vring_setup(&q->vr, &c->mem, q->num, q->desc_uva,
			     q->avail_uva, q->used_uva);
	if (rc < 0) {
		log_warn(VHOST_LOG, "%s: queue %u: rings outside guest memory",
			 c->srv->path, q->idx);
		return rc;
	}
	q->vr.last_avail = q->base;
	q->vr.used_idx = __atomic_load_n(&q->vr.used->idx, __ATOMIC_ACQUIRE);
	q->vr.event_idx = c->features & (1ull << VIRTIO_RING_F_EVENT_IDX);
	q->broken = false;
	rc = vhost_vq_track_check(q);
	if (rc < 0)
		return rc;
	q->started = true;
	log_debug(VHOST_LOG, "%s: queue %u started: size %u avail %u used %u",
		  c->srv->path, q->idx, q->num, q->vr.last_avail,
		  q->vr.used_idx);
	return 0;
}

int vhost_vq_set_kick(struct vhost_vq *q, int fd)
{
	struct vhost_conn *c = q->c;
	vhost_vq_detach_kick(q);
	struct vhost_kick *k = calloc(1, sizeof(*k));
	if (!k) {
		close(fd);
		return -ENOMEM;
	}
	k->fd = fd;
	int rc = uv_poll_init(c->srv->loop, &k->poll, fd);
	if (rc < 0) {
		close(fd);
		free(k);
		return rc;
	}
	k->vq = q;
	q->kick = k;
	if (!q->started && (rc = vhost_vq_start(q)) < 0) {
		vhost_vq_detach_kick(q);
		return rc;
	}
	rc = uv_poll_start(&k->poll, UV_READABLE, vhost_kick_cb);
	if (rc < 0) {
		vhost_vq_detach_kick(q);
		return rc;
	}
	/* Kicks sent before the ring was ours are not repeated. */
	vhost_vq_process(q);
	return 0;
}

uint16_t vhost_vq_stop(struct vhost_vq *q)
{
	vhost_vq_detach_kick(q);
	free(q->resubmit);
	q->resubmit = NULL;
	q->nresubmit = 0;
	if (!q->started)
		return q->base;
	q->started = false;
	q->call_pending = false;
	return q->vr.last_avail;
}

void vhost_vq_remap(struct vhost_vq *q)
{
	if (!q->started)
		return;
	struct vring old = q->vr;
	if (vring_setup(&q->vr, &q->c->mem, q->num, q->desc_uva,
			q->avail_uva, q->used_uva) < 0) {
		q->vr = old;
		q->started = false;
		vhost_vq_detach_kick(q);
		vhost_vq_break(q, "rings not in the new memory table", -EFAULT);
		return;
	}
	q->vr.last_avail = old.last_avail;
	q->vr.used_idx = old.used_idx;
	q->vr.event_idx = old.event_idx;
}

void vhost_vq_process(struct vhost_vq *q)
{
	if (q->in_process || !vhost_vq_running(q))
		return;
	q->in_process = true;
	unsigned budget = VHOST_VQ_BUDGET(q);
	while (q->nresubmit && q->inflight < q->vr.num &&
	       vhost_vq_running(q) && budget) {
		budget--;
		vhost_blk_handle(q, q->resubmit[--q->nresubmit]);
	}
	for (;;) {
		while (q->inflight < q->vr.num && vhost_vq_running(q) &&
		       budget) {
			uint16_t head;
			int rc = vring_pop(&q->vr, &head);
			if (rc < 0) {
				vhost_vq_break(q, "avail ring", rc);
				break;
			}
			if (rc == 0)
				break;
			budget--;
			vhost_vq_track_get(q, head);
			vhost_blk_handle(q, head);
		}
		if (!vhost_vq_running(q) || !q->vr.event_idx || !budget)
			break;
		/* § 2.7.10: ask for a kick past what we took, then look
		 * again in case the driver added entries meanwhile. */
		vring_set_avail_event(&q->vr);
		if (vring_avail_pending(&q->vr) <= 0 ||
		    q->inflight >= q->vr.num)
			break;
	}
	q->in_process = false;
	if (!budget && vhost_vq_running(q)) {
		/* More to take: vhost_vq_flush_calls comes back to it
		 * before the loop next blocks, after the other queues. */
		q->call_pending = true;
		vhost_server_want_calls(q->c->srv);
	}
}

void vhost_vq_complete(struct vhost_vq *q, uint16_t head, uint32_t len)
{
	if (!q->started || q->c->closing)
		return; /* the ring is no longer ours to write */
	struct vhost_inflight_queue *t = q->track;
	if (t)
		t->last_batch_head = head;
	vring_push(&q->vr, head, len);
	if (t) {
		t->desc[head].inflight = 0;
		__atomic_thread_fence(__ATOMIC_RELEASE);
		t->used_idx = q->vr.used_idx;
	}
	q->call_pending = true;
	vhost_server_want_calls(q->c->srv);
}

void vhost_vq_flush_calls(struct vhost_blk *s)
{
	struct vhost_conn *c = s->conn;
	if (!c || c->closing)
		return;
	for (unsigned i = 0; i < s->max_queues; i++) {
		struct vhost_vq *q = &c->vq[i];
		if (!q->call_pending)
			continue;
		q->call_pending = false;
		if (q->started && q->call_fd >= 0 && vring_need_call(&q->vr))
			eventfd_write(q->call_fd, 1);
		/* A pass that ran out of budget continues here. */
		if (q->started && vhost_vq_running(q) &&
		    vring_avail_pending(&q->vr) > 0)
			vhost_vq_process(q);
	}
}
