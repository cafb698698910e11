/* vhost-user-blk internals, shared by the sources in hypervisor/vhost/ only.
 *
 *   vring.c         pure: guest address translation, descriptor walker,
 *                   avail/used rings (vring.h)
 *   vhost_server.c  listener, the one connection slot, shutdown
 *   vhost_conn.c    one front-end connection: message framing (with
 *                   SCM_RIGHTS fds), the vhost-user requests, memory table
 *   vhost_vq.c      per-queue state: kick polling, start/stop, calls,
 *                   inflight tracking
 *   vhost_blk.c     virtio-blk: requests to sds IOs, config space
 *
 * Protocol: QEMU docs/interop/vhost-user.rst ("Vhost-user Protocol").
 *
 * Threading: one uv loop (the pool's); no locks. Kick eventfds and the
 * socket are polled with uv_poll (the socket carries file descriptors in
 * SCM_RIGHTS ancillary data, which a uv_pipe_t would turn into handles);
 * calls are eventfd writes gathered once per loop turn by a uv_prepare.
 */
#ifndef CAIRN_VHOST_INT_H
#define CAIRN_VHOST_INT_H

#include <cairn/sds.h>
#include <cairn/vhost.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "vring.h"

#define VHOST_LOG "vhost"

/* ---- vhost-user wire format (little-endian host assumed: x86-64) ---- */
enum vhost_user_req {
	VHOST_USER_GET_FEATURES = 1,
	VHOST_USER_SET_FEATURES = 2,
	VHOST_USER_SET_OWNER = 3,
	VHOST_USER_RESET_OWNER = 4,
	VHOST_USER_SET_MEM_TABLE = 5,
	VHOST_USER_SET_LOG_BASE = 6,
	VHOST_USER_SET_LOG_FD = 7,
	VHOST_USER_SET_VRING_NUM = 8,
	VHOST_USER_SET_VRING_ADDR = 9,
	VHOST_USER_SET_VRING_BASE = 10,
	VHOST_USER_GET_VRING_BASE = 11,
	VHOST_USER_SET_VRING_KICK = 12,
	VHOST_USER_SET_VRING_CALL = 13,
	VHOST_USER_SET_VRING_ERR = 14,
	VHOST_USER_GET_PROTOCOL_FEATURES = 15,
	VHOST_USER_SET_PROTOCOL_FEATURES = 16,
	VHOST_USER_GET_QUEUE_NUM = 17,
	VHOST_USER_SET_VRING_ENABLE = 18,
	VHOST_USER_GET_CONFIG = 24,
	VHOST_USER_SET_CONFIG = 25,
	VHOST_USER_GET_INFLIGHT_FD = 31,
	VHOST_USER_SET_INFLIGHT_FD = 32,
	VHOST_USER_RESET_DEVICE = 34,
	VHOST_USER_GET_MAX_MEM_SLOTS = 36,
};

#define VHOST_USER_VERSION 0x1u
#define VHOST_USER_REPLY_MASK (1u << 2)
#define VHOST_USER_NEED_REPLY (1u << 3)
#define VHOST_USER_HDR_SIZE 12u
#define VHOST_USER_MAX_PAYLOAD 4096u
#define VHOST_USER_MAX_FDS 8u
#define VHOST_USER_VRING_IDX_MASK 0xffu
#define VHOST_USER_VRING_NOFD (1u << 8)

/* Protocol feature bits (GET/SET_PROTOCOL_FEATURES). */
#define VHOST_USER_PROTOCOL_F_MQ 0
#define VHOST_USER_PROTOCOL_F_REPLY_ACK 3
#define VHOST_USER_PROTOCOL_F_CONFIG 9
#define VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD 12

/* Device feature bits (virtio 1.2 § 6, § 5.2.3). */
#define VHOST_USER_F_PROTOCOL_FEATURES 30
#define VIRTIO_F_VERSION_1 32
#define VIRTIO_RING_F_INDIRECT_DESC 28
#define VIRTIO_RING_F_EVENT_IDX 29
#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH 9
#define VIRTIO_BLK_F_TOPOLOGY 10
#define VIRTIO_BLK_F_MQ 12
#define VIRTIO_BLK_F_DISCARD 13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

struct vhost_user_hdr {
	uint32_t request;
	uint32_t flags;
	uint32_t size;
} __attribute__((packed));

struct vhost_user_state {
	uint32_t index;
	uint32_t num;
} __attribute__((packed));

struct vhost_user_addr {
	uint32_t index;
	uint32_t flags;
	uint64_t desc_uva;
	uint64_t used_uva;
	uint64_t avail_uva;
	uint64_t log_gpa;
} __attribute__((packed));

struct vhost_user_region {
	uint64_t gpa;
	uint64_t size;
	uint64_t uva;
	uint64_t mmap_offset;
} __attribute__((packed));

struct vhost_user_mem {
	uint32_t nregions;
	uint32_t padding;
	struct vhost_user_region r[VHOST_MAX_REGIONS];
} __attribute__((packed));

struct vhost_user_config {
	uint32_t offset;
	uint32_t size;
	uint32_t flags;
	uint8_t payload[];
} __attribute__((packed));

/* Not packed: QEMU sends and expects sizeof() with its tail padding. */
struct vhost_user_inflight {
	uint64_t mmap_size;
	uint64_t mmap_offset;
	uint16_t num_queues;
	uint16_t queue_size;
	uint32_t padding;
};

/* ---- inflight tracking region (owned by the back end, kept by QEMU
 * across reconnects; the layout is libvhost-user's, see vhost_vq.c) ---- */
struct vhost_inflight_desc {
	uint8_t inflight;
	uint8_t padding[5];
	uint16_t next;
	uint64_t counter;
};

struct vhost_inflight_queue {
	uint64_t features;
	uint16_t version;
	uint16_t desc_num;
	uint16_t last_batch_head;
	uint16_t used_idx;
	struct vhost_inflight_desc desc[];
};

/* ---- state ---- */
struct vhost_conn;
struct vhost_blk_req;

struct vhost_kick {
	uv_poll_t poll;
	int fd;
	struct vhost_vq *vq; /* NULL once detached (closing) */
};

struct vhost_vq {
	struct vhost_conn *c;
	unsigned idx;
	struct vring vr;
	uint16_t num;
	uint16_t base;
	bool addr_set;
	uint64_t desc_uva, avail_uva, used_uva;
	struct vhost_kick *kick;
	int call_fd;
	bool started;	/* kick fd given and ring mapped */
	bool enabled;	/* SET_VRING_ENABLE */
	bool broken;	/* the guest broke the ring: no more processing */
	bool call_pending;
	bool in_process;
	unsigned inflight; /* requests of this queue inside the engine */
	struct vhost_inflight_queue *track; /* NULL: no inflight tracking */
	uint64_t counter;
	/* Heads found in flight after a reconnect, resubmitted first. */
	uint16_t *resubmit;
	unsigned nresubmit;
};

struct vhost_blk {
	uv_loop_t *loop;
	struct sds_pool *pool;
	struct sds_vdisk *vd;
	char *path;
	char serial[21]; /* GET_ID: the vdisk name, at most 20 bytes */
	unsigned max_queues;
	bool write_through; /* see vhost_blk_opts */
	int lfd;
	uv_poll_t lpoll;
	uv_prepare_t calls; /* writes call eventfds before the loop blocks */
	struct vhost_conn *conn;
	int pending_fd; /* a reconnecting front end, waiting for conn to go */
	unsigned handles_open;
	bool closing;
	void (*close_cb)(void *arg);
	void *close_arg;
};

struct vhost_conn {
	struct vhost_blk *srv;
	int fd;
	uv_poll_t poll;
	bool polling;
	/* Message being assembled; fds that came with it. */
	uint8_t msg[VHOST_USER_HDR_SIZE + VHOST_USER_MAX_PAYLOAD];
	size_t have;
	int fds[VHOST_USER_MAX_FDS];
	unsigned nfds;
	bool fds_overflow;

	uint64_t features;	 /* acked device features */
	uint64_t proto_features; /* acked protocol features */
	struct vhost_mem mem;
	void *maps[VHOST_MAX_REGIONS];
	size_t maplens[VHOST_MAX_REGIONS];
	/* Inflight tracking memory (GET/SET_INFLIGHT_FD). */
	void *inflight_map;
	size_t inflight_len;
	uint16_t inflight_qsize;
	unsigned inflight_nq;

	struct vhost_vq vq[VHOST_BLK_MAX_QUEUES];
	unsigned inflight; /* requests inside the engine, all queues */
	/* A request that must wait for the engine to return every request
	 * (new memory table, ring stop): parked in msg, rings paused. */
	bool waiting;
	bool paused;
	bool closing;
	bool handle_closing;
	uint64_t id;
	struct vring_chain scratch; /* walker output, one request at a time */
};

/* vhost_server.c */
void vhost_server_conn_gone(struct vhost_blk *s, struct vhost_conn *c);
void vhost_server_want_calls(struct vhost_blk *s);

/* vhost_conn.c */
int vhost_conn_accept(struct vhost_blk *s, int fd);
void vhost_conn_close(struct vhost_conn *c);
/* The engine returned a request: finish a parked message or a close. */
void vhost_conn_io_done(struct vhost_conn *c);

/* vhost_vq.c */
bool vhost_vq_running(const struct vhost_vq *q);
void vhost_vq_process(struct vhost_vq *q);
int vhost_vq_set_kick(struct vhost_vq *q, int fd);
void vhost_vq_set_call(struct vhost_vq *q, int fd);
/* Maps the rings and starts polling the kick fd; 0 or -errno. */
int vhost_vq_start(struct vhost_vq *q);
/* Stops polling and forgets the ring mapping; returns last_avail. */
uint16_t vhost_vq_stop(struct vhost_vq *q);
void vhost_vq_break(struct vhost_vq *q, const char *why, int err);
/* Pushes a finished request and asks for a call. */
void vhost_vq_complete(struct vhost_vq *q, uint16_t head, uint32_t len);
void vhost_vq_flush_calls(struct vhost_blk *s);
size_t vhost_inflight_queue_size(uint16_t queue_size);
void vhost_vq_track_get(struct vhost_vq *q, uint16_t head);
/* Rings whose host pointers moved (new memory table). */
void vhost_vq_remap(struct vhost_vq *q);

/* vhost_blk.c */
uint64_t vhost_blk_features(const struct vhost_blk *s);
/* Fills the virtio-blk config space (struct virtio_blk_config, § 5.2.4);
 * returns its size. */
size_t vhost_blk_config(const struct vhost_blk *s, uint8_t *cfg, size_t len);
/* Handles the chain at `head` of q: submits to the engine, or completes
 * at once with an error status. */
void vhost_blk_handle(struct vhost_vq *q, uint16_t head);

#endif
