/* Virtio 1.x split virtqueues over a vhost-user memory table: guest
 * address translation, the descriptor-chain walker, and the avail/used
 * ring accessors. Pure: no socket, no file descriptor, no allocation. The
 * caller maps guest memory and hands this code host pointers; everything
 * the guest wrote (ring indexes, descriptors, lengths) is treated as hostile.
 *
 * Spec references are to "Virtual I/O Device (VIRTIO) Version 1.2",
 * § 2.7 Split Virtqueues.
 */
#ifndef CAIRN_VHOST_VRING_H
#define CAIRN_VHOST_VRING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VHOST_MAX_REGIONS 8	/* vhost-user SET_MEM_TABLE limit */
#define VRING_MAX_SIZE 32768u	/* § 2.7: Queue Size <= 32768 */
#define VRING_MAX_IOV 1024u	/* segments of one request */
#define VRING_MAX_INDIRECT 1024u /* entries of one indirect table */
/* Longest chain the walker accepts in bytes: the engine's largest IO plus
 * the request header and status (a bigger request fails, never allocates). */
#define VRING_MAX_CHAIN_BYTES ((64u << 20))

#define VRING_DESC_F_NEXT 1
#define VRING_DESC_F_WRITE 2
#define VRING_DESC_F_INDIRECT 4
#define VRING_USED_F_NO_NOTIFY 1
#define VRING_AVAIL_F_NO_INTERRUPT 1

struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct vring_avail {
	uint16_t flags;
	uint16_t idx;
	uint16_t ring[]; /* num entries, then used_event */
};

struct vring_used_elem {
	uint32_t id;
	uint32_t len;
};

struct vring_used {
	uint16_t flags;
	uint16_t idx;
	struct vring_used_elem ring[]; /* num entries, then avail_event */
};

/* One region of guest memory: guest physical addresses [gpa, gpa+size)
 * and front-end virtual addresses [uva, uva+size) are both at `host`. */
struct vhost_mem_region {
	uint64_t gpa;
	uint64_t uva;
	uint64_t size;
	uint8_t *host;
};

struct vhost_mem {
	unsigned nregions;
	struct vhost_mem_region r[VHOST_MAX_REGIONS];
};

/* Host pointer to [gpa, gpa+len) if the whole range lies inside one
 * region, else NULL. len 0 is refused. */
void *vhost_mem_gpa(const struct vhost_mem *m, uint64_t gpa, uint64_t len);
/* The same for front-end virtual addresses (vring addresses). */
void *vhost_mem_uva(const struct vhost_mem *m, uint64_t uva, uint64_t len);

/* A guest buffer segment, host-mapped. */
struct vring_iov {
	uint8_t *base;
	uint32_t len;
};

/* A walked descriptor chain: `nout` device-readable segments, then `nin`
 * device-writable ones (§ 2.7.4.2: readable before writable). */
struct vring_chain {
	uint16_t head;
	unsigned nout, nin;
	uint64_t out_bytes, in_bytes;
	struct vring_iov iov[VRING_MAX_IOV];
};

/* Walker errors (negative errno):
 *   -EFAULT  a descriptor or an indirect table outside guest memory
 *   -ELOOP   more descriptors than the queue (or indirect table) holds
 *   -EINVAL  a bad index, flag combination or order, a bad table length
 *   -E2BIG   too many segments, or more than VRING_MAX_CHAIN_BYTES
 * Every error means the request is malformed: fail it (or break the
 * queue); nothing in `out` may be used. */
int vring_walk(const struct vhost_mem *m, const struct vring_desc *desc,
	       uint16_t num, uint16_t head, bool indirect_ok,
	       struct vring_chain *out);

/* A started queue: host pointers checked by vring_setup. */
struct vring {
	uint16_t num;
	bool event_idx;		/* VIRTIO_RING_F_EVENT_IDX negotiated */
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	uint16_t last_avail;	/* next avail entry to take */
	uint16_t used_idx;	/* our copy of used->idx */
	uint16_t signalled_used;/* used idx at the last call */
	bool signalled_valid;
};

/* Translates the three ring addresses (front-end virtual addresses, as
 * in VHOST_USER_SET_VRING_ADDR) and checks size and alignment (§ 2.7:
 * desc 16, avail 2, used 4). Returns 0 or -EINVAL / -EFAULT. */
int vring_setup(struct vring *vr, const struct vhost_mem *m, uint16_t num,
		uint64_t desc_uva, uint64_t avail_uva, uint64_t used_uva);

/* Takes the next available head. Returns 1 and sets *head, 0 when the
 * ring is empty, -EIO when the guest's avail idx runs more than num ahead
 * or the head is out of range (the queue is then broken). */
int vring_pop(struct vring *vr, uint16_t *head);

/* Number of entries the guest has made available and we have not taken,
 * or -EIO as above. */
int vring_avail_pending(const struct vring *vr);

/* Puts (head, len) on the used ring and publishes the new used idx. */
void vring_push(struct vring *vr, uint16_t head, uint32_t len);

/* Whether the driver wants an interrupt for what was pushed since the
 * last call (§ 2.7.7.2, with or without EVENT_IDX). Updates the state. */
bool vring_need_call(struct vring *vr);

/* EVENT_IDX: asks for a kick once entries beyond last_avail appear. */
void vring_set_avail_event(struct vring *vr);

#endif
