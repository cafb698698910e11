/* Split virtqueues (§ 2.7) over a vhost-user memory table. Pure code: see
 * vring.h. The guest shares this memory and may change it at any moment,
 * so every descriptor is copied once into a local before it is checked and
 * used, and ring indexes are loaded once per decision. */
#include "vring.h"

#include <errno.h>
#include <string.h>

#include "util.h"

static const struct vhost_mem_region *
vhost_mem_find(const struct vhost_mem *m, uint64_t addr, bool uva)
{
	for (unsigned i = 0; i < m->nregions && i < VHOST_MAX_REGIONS; i++) {
		const struct vhost_mem_region *r = &m->r[i];
		uint64_t base = uva ? r->uva : r->gpa;
		if (addr >= base && addr - base < r->size)
			return r;
	}
	return NULL;
}

static void *vhost_mem_xlate(const struct vhost_mem *m, uint64_t addr,
			     uint64_t len, bool uva)
{
	if (len == 0)
		return NULL;
	const struct vhost_mem_region *r = vhost_mem_find(m, addr, uva);
	if (!r)
		return NULL;
	uint64_t off = addr - (uva ? r->uva : r->gpa);
	if (len > r->size - off) /* off < size: no overflow */
		return NULL;
	return r->host + off;
}

void *vhost_mem_gpa(const struct vhost_mem *m, uint64_t gpa, uint64_t len)
{
	return vhost_mem_xlate(m, gpa, len, false);
}

void *vhost_mem_uva(const struct vhost_mem *m, uint64_t uva, uint64_t len)
{
	return vhost_mem_xlate(m, uva, len, true);
}

/* Appends one descriptor's buffer, split at region boundaries (a buffer may
 * straddle two memory regions that are contiguous in guest physical
 * space). */
static int vring_add(const struct vhost_mem *m, struct vring_chain *c,
		     uint64_t addr, uint32_t len, bool write)
{
	/* § 2.7.4.2: "The driver MUST place any device-writable descriptor
	 * elements after any device-readable descriptor elements." */
	if (!write && c->nin)
		return -EINVAL;
	if ((uint64_t)len > VRING_MAX_CHAIN_BYTES - c->out_bytes - c->in_bytes)
		return -E2BIG;
	if (write)
		c->in_bytes += len;
	else
		c->out_bytes += len;
	while (len) {
		const struct vhost_mem_region *r = vhost_mem_find(m, addr, false);
		if (!r)
			return -EFAULT;
		uint64_t off = addr - r->gpa;
		uint32_t n = (uint32_t)MIN((uint64_t)len, r->size - off);
		if (c->nout + c->nin >= VRING_MAX_IOV)
			return -E2BIG;
		struct vring_iov *v = &c->iov[c->nout + c->nin];
		v->base = r->host + off;
		v->len = n;
		if (write)
			c->nin++;
		else
			c->nout++;
		addr += n;
		len -= n;
	}
	return 0;
}

/* § 2.7.5 The Virtqueue Descriptor Table, § 2.7.5.3 Indirect Descriptors.
 * Termination: each table is walked at most `size` steps (a longer walk
 * must revisit a descriptor: a loop), and only one indirect table may be
 * entered ("The driver MUST NOT set the VIRTQ_DESC_F_INDIRECT flag within
 * an indirect descriptor"), so the walk is bounded by num +
 * VRING_MAX_INDIRECT steps whatever the guest wrote. */
int vring_walk(const struct vhost_mem *m, const struct vring_desc *desc,
	       uint16_t num, uint16_t head, bool indirect_ok,
	       struct vring_chain *out)
{
	out->head = head;
	out->nout = out->nin = 0;
	out->out_bytes = out->in_bytes = 0;
	if (num == 0 || head >= num)
		return -EINVAL;

	const struct vring_desc *table = desc;
	uint32_t size = num, idx = head, steps = 0;
	bool indirect = false;
	for (;;) {
		if (idx >= size)
			return -EINVAL;
		if (++steps > size)
			return -ELOOP;
		struct vring_desc d;
		memcpy(&d, (const void *)&table[idx], sizeof(d));
		if (d.flags & VRING_DESC_F_INDIRECT) {
			/* § 2.7.5.3.1: no INDIRECT with NEXT, none inside
			 * an indirect table. */
			if (!indirect_ok || indirect ||
			    (d.flags & VRING_DESC_F_NEXT))
				return -EINVAL;
			if (d.len == 0 || d.len % sizeof(struct vring_desc) ||
			    d.len / sizeof(struct vring_desc) >
				VRING_MAX_INDIRECT)
				return -EINVAL;
			table = vhost_mem_gpa(m, d.addr, d.len);
			if (!table)
				return -EFAULT;
			size = d.len / sizeof(struct vring_desc);
			idx = 0;
			steps = 0;
			indirect = true;
			continue;
		}
		int rc = vring_add(m, out, d.addr, d.len,
				   d.flags & VRING_DESC_F_WRITE);
		if (rc < 0)
			return rc;
		if (!(d.flags & VRING_DESC_F_NEXT))
			return 0;
		idx = d.next;
	}
}

int vring_setup(struct vring *vr, const struct vhost_mem *m, uint16_t num,
		uint64_t desc_uva, uint64_t avail_uva, uint64_t used_uva)
{
	/* Split rings: the queue size is a power of 2 (§ 2.7). */
	if (num == 0 || (num & (num - 1)))
		return -EINVAL;
	if ((desc_uva & 15) || (avail_uva & 1) || (used_uva & 3))
		return -EINVAL;
	/* Sizes include used_event / avail_event (§ 2.7.6, 2.7.8). */
	size_t dlen = (size_t)num * sizeof(struct vring_desc);
	size_t alen = 4 + 2 * (size_t)num + 2;
	size_t ulen = 4 + sizeof(struct vring_used_elem) * (size_t)num + 2;
	void *d = vhost_mem_uva(m, desc_uva, dlen);
	void *a = vhost_mem_uva(m, avail_uva, alen);
	void *u = vhost_mem_uva(m, used_uva, ulen);
	if (!d || !a || !u)
		return -EFAULT;
	vr->num = num;
	vr->desc = d;
	vr->avail = a;
	vr->used = u;
	vr->signalled_valid = false;
	return 0;
}

int vring_avail_pending(const struct vring *vr)
{
	uint16_t idx = __atomic_load_n(&vr->avail->idx, __ATOMIC_ACQUIRE);
	uint16_t n = (uint16_t)(idx - vr->last_avail);
	if (n > vr->num)
		return -EIO;
	return n;
}

int vring_pop(struct vring *vr, uint16_t *head)
{
	int n = vring_avail_pending(vr);
	if (n <= 0)
		return n;
	/* The acquire load of avail->idx orders this read after it. */
	uint16_t h = __atomic_load_n(&vr->avail->ring[vr->last_avail % vr->num],
				     __ATOMIC_RELAXED);
	if (h >= vr->num)
		return -EIO;
	vr->last_avail++;
	*head = h;
	return 1;
}

void vring_push(struct vring *vr, uint16_t head, uint32_t len)
{
	struct vring_used_elem *e = &vr->used->ring[vr->used_idx % vr->num];
	__atomic_store_n(&e->id, (uint32_t)head, __ATOMIC_RELAXED);
	__atomic_store_n(&e->len, len, __ATOMIC_RELAXED);
	vr->used_idx++;
	/* § 2.7.8.2: the element is visible before the index. */
	__atomic_store_n(&vr->used->idx, vr->used_idx, __ATOMIC_RELEASE);
}

bool vring_need_call(struct vring *vr)
{
	/* The used idx store must be visible before we read the driver's
	 * suppression state, or both sides may wait for each other. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	uint16_t old = vr->signalled_used, now = vr->used_idx;
	bool valid = vr->signalled_valid;
	vr->signalled_used = now;
	vr->signalled_valid = true;
	if (valid && old == now)
		return false;
	if (!vr->event_idx)
		return !(__atomic_load_n(&vr->avail->flags, __ATOMIC_RELAXED) &
			 VRING_AVAIL_F_NO_INTERRUPT);
	if (!valid)
		return true;
	/* § 2.7.7.2 vring_need_event(used_event, new, old). */
	uint16_t ev =
	    __atomic_load_n(&vr->avail->ring[vr->num], __ATOMIC_RELAXED);
	return (uint16_t)(now - ev - 1) < (uint16_t)(now - old);
}

void vring_set_avail_event(struct vring *vr)
{
	uint16_t *ev = (uint16_t *)&vr->used->ring[vr->num];
	__atomic_store_n(ev, vr->last_avail, __ATOMIC_RELAXED);
	/* Published before we look at avail->idx again. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}
