/* vhost-user-blk back end: serves one vdisk of an sds pool to one QEMU
 * (`-device vhost-user-blk-pci,chardev=...`) over a unix socket, with the
 * guest's virtqueues read and written in shared guest memory. docs/vhost.md
 * lists the protocol subset, the virtio-blk features and the limits.
 *
 * Threading: everything runs on the pool's uv_loop_t. Call these functions
 * on that thread; callbacks come on it too. The process must ignore
 * SIGPIPE; cairnd does.
 */
#ifndef CAIRN_VHOST_H
#define CAIRN_VHOST_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

struct sds_pool;
struct vhost_blk;

#define VHOST_BLK_MAX_QUEUES 16u
#define VHOST_BLK_DEFAULT_QUEUES 4u

struct vhost_blk_opts {
	const char *socket_path; /* created (a stale socket is replaced) */
	const char *vdisk;	 /* name; a snapshot is served read-only */
	unsigned num_queues;	 /* offered queues; 0 = default */
	/* By default the disk has a write cache that only a power loss can
	 * lose: every write, write-zeroes and discard is acknowledged once it
	 * survives a crash of this process (SDS_IO_LOGGED), so a back end
	 * killed and restarted under a running guest loses nothing it
	 * acknowledged, and the guest's FLUSH makes it durable. write_through
	 * makes every change durable before it is acknowledged (SDS_IO_FUA:
	 * one group commit per write batch), for guests that never flush. */
	bool write_through;
};

/* Opens the vdisk, binds and listens. Returns 0, or -errno with a message
 * in err. One front end at a time: a second connection is refused while
 * the first lives; one that arrives after the first peer hung up (a
 * reconnect) is served once the old connection is closed. */
int vhost_blk_start(uv_loop_t *loop, struct sds_pool *pool,
		    const struct vhost_blk_opts *opts, struct vhost_blk **out,
		    char *err, size_t errlen);

/* Stops listening, stops the rings, waits for the requests inside the
 * engine (their buffers point into guest memory), unmaps guest memory,
 * closes the vdisk, removes the socket, frees, then calls cb (if any). */
void vhost_blk_close(struct vhost_blk *s, void (*cb)(void *arg), void *arg);

#endif
