/* One vhost-user front end (QEMU): message framing over the unix socket,
 * file descriptors in SCM_RIGHTS, the requests of the protocol subset we
 * implement, the guest memory table, and the close sequence.
 *
 * Every message from the front end is checked (sizes, queue indexes, fd
 * counts, region bounds); a bad one gets a failure reply (REPLY_ACK) or,
 * when the stream can no longer be trusted, closes the connection. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "util.h"
#include "vhost_int.h"

#define VHOST_PROTOCOL_FEATURES                                                \
	((1ull << VHOST_USER_PROTOCOL_F_MQ) |                                  \
	 (1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK) |                           \
	 (1ull << VHOST_USER_PROTOCOL_F_CONFIG) |                              \
	 (1ull << VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD))

static uint64_t vhost_conn_next_id;

static struct vhost_user_hdr *vhost_conn_hdr(struct vhost_conn *c)
{
	return (struct vhost_user_hdr *)c->msg;
}

static const char *vhost_req_name(uint32_t r)
{
	static const char *const names[] = {
	    [VHOST_USER_GET_FEATURES] = "GET_FEATURES",
	    [VHOST_USER_SET_FEATURES] = "SET_FEATURES",
	    [VHOST_USER_SET_OWNER] = "SET_OWNER",
	    [VHOST_USER_RESET_OWNER] = "RESET_OWNER",
	    [VHOST_USER_SET_MEM_TABLE] = "SET_MEM_TABLE",
	    [VHOST_USER_SET_LOG_BASE] = "SET_LOG_BASE",
	    [VHOST_USER_SET_LOG_FD] = "SET_LOG_FD",
	    [VHOST_USER_SET_VRING_NUM] = "SET_VRING_NUM",
	    [VHOST_USER_SET_VRING_ADDR] = "SET_VRING_ADDR",
	    [VHOST_USER_SET_VRING_BASE] = "SET_VRING_BASE",
	    [VHOST_USER_GET_VRING_BASE] = "GET_VRING_BASE",
	    [VHOST_USER_SET_VRING_KICK] = "SET_VRING_KICK",
	    [VHOST_USER_SET_VRING_CALL] = "SET_VRING_CALL",
	    [VHOST_USER_SET_VRING_ERR] = "SET_VRING_ERR",
	    [VHOST_USER_GET_PROTOCOL_FEATURES] = "GET_PROTOCOL_FEATURES",
	    [VHOST_USER_SET_PROTOCOL_FEATURES] = "SET_PROTOCOL_FEATURES",
	    [VHOST_USER_GET_QUEUE_NUM] = "GET_QUEUE_NUM",
	    [VHOST_USER_SET_VRING_ENABLE] = "SET_VRING_ENABLE",
	    [VHOST_USER_GET_CONFIG] = "GET_CONFIG",
	    [VHOST_USER_SET_CONFIG] = "SET_CONFIG",
	    [VHOST_USER_GET_INFLIGHT_FD] = "GET_INFLIGHT_FD",
	    [VHOST_USER_SET_INFLIGHT_FD] = "SET_INFLIGHT_FD",
	    [VHOST_USER_RESET_DEVICE] = "RESET_DEVICE",
	};
	if (r < ARRAY_SIZE(names) && names[r])
		return names[r];
	return "unknown";
}

/* ---- guest memory ---- */

static void vhost_conn_unmap(struct vhost_conn *c)
{
	for (unsigned i = 0; i < VHOST_MAX_REGIONS; i++) {
		if (c->maps[i])
			munmap(c->maps[i], c->maplens[i]);
		c->maps[i] = NULL;
		c->maplens[i] = 0;
	}
	memset(&c->mem, 0, sizeof(c->mem));
}

static void vhost_conn_unmap_inflight(struct vhost_conn *c)
{
	if (c->inflight_map)
		munmap(c->inflight_map, c->inflight_len);
	c->inflight_map = NULL;
	c->inflight_len = 0;
	c->inflight_nq = 0;
	for (unsigned i = 0; i < VHOST_BLK_MAX_QUEUES; i++)
		c->vq[i].track = NULL;
}

/* ---- close ---- */

static void vhost_conn_close_fds(struct vhost_conn *c)
{
	for (unsigned i = 0; i < c->nfds; i++)
		if (c->fds[i] >= 0)
			close(c->fds[i]);
	c->nfds = 0;
	c->fds_overflow = false;
}

static void vhost_conn_closed(uv_handle_t *h)
{
	struct vhost_conn *c = container_of((uv_poll_t *)h, struct vhost_conn,
					    poll);
	close(c->fd);
	log_info(VHOST_LOG, "%s: front end %llu gone", c->srv->path,
		 (unsigned long long)c->id);
	vhost_server_conn_gone(c->srv, c);
	free(c);
}

/* The engine owns requests (and their pointers into guest memory) until
 * it returns them: only then is memory unmapped and the handle closed. */
static void vhost_conn_maybe_finish(struct vhost_conn *c)
{
	if (!c->closing || c->handle_closing || c->inflight)
		return;
	c->handle_closing = true;
	for (unsigned i = 0; i < VHOST_BLK_MAX_QUEUES; i++) {
		struct vhost_vq *q = &c->vq[i];
		vhost_vq_stop(q);
		if (q->call_fd >= 0)
			close(q->call_fd);
		q->call_fd = -1;
	}
	vhost_conn_close_fds(c);
	vhost_conn_unmap(c);
	vhost_conn_unmap_inflight(c);
	uv_close((uv_handle_t *)&c->poll, vhost_conn_closed);
}

void vhost_conn_close(struct vhost_conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	if (c->polling)
		uv_poll_stop(&c->poll);
	c->polling = false;
	for (unsigned i = 0; i < VHOST_BLK_MAX_QUEUES; i++)
		vhost_vq_stop(&c->vq[i]);
	vhost_conn_maybe_finish(c);
}

/* ---- replies ---- */

static int vhost_conn_reply(struct vhost_conn *c, const void *payload,
			    uint32_t len, int fd)
{
	struct vhost_user_hdr h = {
	    .request = vhost_conn_hdr(c)->request,
	    .flags = VHOST_USER_VERSION | VHOST_USER_REPLY_MASK,
	    .size = len,
	};
	struct iovec iov[2] = {{&h, sizeof(h)}, {(void *)payload, len}};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} cm;
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = len ? 2 : 1};
	if (fd >= 0) {
		memset(&cm, 0, sizeof(cm));
		mh.msg_control = cm.buf;
		mh.msg_controllen = sizeof(cm.buf);
		struct cmsghdr *cmsg = CMSG_FIRSTHDR(&mh);
		cmsg->cmsg_level = SOL_SOCKET;
		cmsg->cmsg_type = SCM_RIGHTS;
		cmsg->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
	}
	/* Replies are small and the front end waits for each: the socket
	 * buffer always has room; a short write means a broken peer. */
	ssize_t n = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n != (ssize_t)(sizeof(h) + len))
		return n < 0 ? -errno : -EIO;
	return 0;
}

static int vhost_conn_reply_u64(struct vhost_conn *c, uint64_t v)
{
	return vhost_conn_reply(c, &v, sizeof(v), -1);
}

/* ---- requests ---- */

/* Result of a handler: < 0 failure (a nack with REPLY_ACK); -EPROTO: the
 * connection is closed. */
struct vhost_conn_ctx {
	const uint8_t *p;
	uint32_t size;
	bool replied;
};

static int vhost_conn_take_fd(struct vhost_conn *c)
{
	for (unsigned i = 0; i < c->nfds; i++) {
		if (c->fds[i] >= 0) {
			int fd = c->fds[i];
			c->fds[i] = -1;
			return fd;
		}
	}
	return -1;
}

static struct vhost_vq *vhost_conn_vq(struct vhost_conn *c, uint32_t index)
{
	if (index >= c->srv->max_queues) {
		log_warn(VHOST_LOG, "%s: queue index %u beyond %u queues",
			 c->srv->path, index, c->srv->max_queues);
		return NULL;
	}
	return &c->vq[index];
}

static int vhost_conn_set_mem_table(struct vhost_conn *c,
				    struct vhost_conn_ctx *x)
{
	struct vhost_user_mem m;
	if (x->size < 8)
		return -EPROTO;
	memset(&m, 0, sizeof(m));
	memcpy(&m, x->p, MIN((size_t)x->size, sizeof(m)));
	if (m.nregions == 0 || m.nregions > VHOST_MAX_REGIONS ||
	    x->size < 8 + m.nregions * sizeof(struct vhost_user_region) ||
	    c->nfds != m.nregions || c->fds_overflow) {
		log_warn(VHOST_LOG, "%s: SET_MEM_TABLE: %u regions, %u fds",
			 c->srv->path, m.nregions, c->nfds);
		return -EINVAL;
	}
	struct vhost_mem mem = {0};
	void *maps[VHOST_MAX_REGIONS] = {0};
	size_t lens[VHOST_MAX_REGIONS] = {0};
	int rc = 0;
	for (unsigned i = 0; i < m.nregions; i++) {
		const struct vhost_user_region *r = &m.r[i];
		uint64_t len = r->mmap_offset + r->size;
		if (r->size == 0 || len < r->size || r->gpa + r->size < r->gpa ||
		    r->uva + r->size < r->uva || len > SIZE_MAX) {
			rc = -EINVAL;
			break;
		}
		void *p = mmap(NULL, (size_t)len, PROT_READ | PROT_WRITE,
			       MAP_SHARED | MAP_NORESERVE, c->fds[i], 0);
		if (p == MAP_FAILED) {
			rc = -errno;
			log_warn(VHOST_LOG, "%s: mmap region %u (%llu bytes): %s",
				 c->srv->path, i, (unsigned long long)len,
				 strerror(errno));
			break;
		}
		maps[i] = p;
		lens[i] = (size_t)len;
		mem.r[i] = (struct vhost_mem_region){
		    .gpa = r->gpa,
		    .uva = r->uva,
		    .size = r->size,
		    .host = (uint8_t *)p + r->mmap_offset,
		};
		mem.nregions = i + 1;
		log_debug(VHOST_LOG,
			  "%s: region %u gpa 0x%llx size 0x%llx uva 0x%llx",
			  c->srv->path, i, (unsigned long long)r->gpa,
			  (unsigned long long)r->size,
			  (unsigned long long)r->uva);
	}
	if (rc < 0) {
		for (unsigned i = 0; i < VHOST_MAX_REGIONS; i++)
			if (maps[i])
				munmap(maps[i], lens[i]);
		return rc;
	}
	vhost_conn_unmap(c);
	c->mem = mem;
	memcpy(c->maps, maps, sizeof(maps));
	memcpy(c->maplens, lens, sizeof(lens));
	/* The mappings hold the memory; the fds are closed with the rest. */
	for (unsigned i = 0; i < c->srv->max_queues; i++)
		vhost_vq_remap(&c->vq[i]);
	return 0;
}

static int vhost_conn_get_inflight(struct vhost_conn *c,
				   struct vhost_conn_ctx *x)
{
	struct vhost_user_inflight in;
	if (x->size < sizeof(in))
		return -EPROTO;
	memcpy(&in, x->p, sizeof(in));
	if (in.num_queues == 0 || in.num_queues > c->srv->max_queues ||
	    in.queue_size == 0 || in.queue_size > VRING_MAX_SIZE)
		return -EINVAL;
	size_t qsz = vhost_inflight_queue_size(in.queue_size);
	size_t len = qsz * in.num_queues;
	int fd = memfd_create("cairn-vhost-inflight", MFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)len) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		int e = errno;
		close(fd);
		return -e;
	}
	memset(p, 0, len);
	for (unsigned i = 0; i < in.num_queues; i++) {
		struct vhost_inflight_queue *t =
		    (void *)((uint8_t *)p + i * qsz);
		t->version = 1;
		t->desc_num = in.queue_size;
	}
	munmap(p, len);
	struct vhost_user_inflight out = {
	    .mmap_size = len,
	    .mmap_offset = 0,
	    .num_queues = in.num_queues,
	    .queue_size = in.queue_size,
	};
	int rc = vhost_conn_reply(c, &out, sizeof(out), fd);
	close(fd);
	x->replied = true;
	return rc < 0 ? -EPROTO : 0;
}

static int vhost_conn_set_inflight(struct vhost_conn *c,
				   struct vhost_conn_ctx *x)
{
	struct vhost_user_inflight in;
	if (x->size < sizeof(in))
		return -EPROTO;
	memcpy(&in, x->p, sizeof(in));
	int fd = vhost_conn_take_fd(c);
	if (fd < 0)
		return -EINVAL;
	size_t qsz = in.queue_size ? vhost_inflight_queue_size(in.queue_size)
				   : 0;
	int rc = 0;
	if (in.num_queues == 0 || in.num_queues > c->srv->max_queues ||
	    in.queue_size == 0 || in.queue_size > VRING_MAX_SIZE ||
	    in.mmap_size < qsz * in.num_queues || in.mmap_size > (1u << 30) ||
	    in.mmap_offset > (1u << 30) || (in.mmap_offset & 4095)) {
		rc = -EINVAL;
	} else {
		void *p = mmap(NULL, (size_t)in.mmap_size,
			       PROT_READ | PROT_WRITE, MAP_SHARED, fd,
			       (off_t)in.mmap_offset);
		if (p == MAP_FAILED) {
			rc = -errno;
		} else {
			vhost_conn_unmap_inflight(c);
			c->inflight_map = p;
			c->inflight_len = (size_t)in.mmap_size;
			c->inflight_qsize = in.queue_size;
			c->inflight_nq = in.num_queues;
			for (unsigned i = 0; i < in.num_queues; i++)
				c->vq[i].track =
				    (void *)((uint8_t *)p + i * qsz);
		}
	}
	close(fd);
	return rc;
}

static int vhost_conn_exec(struct vhost_conn *c, struct vhost_conn_ctx *x)
{
	struct vhost_blk *s = c->srv;
	const struct vhost_user_hdr *h = vhost_conn_hdr(c);
	uint64_t u64 = 0;
	struct vhost_user_state st = {0};
	struct vhost_vq *q;
	if (x->size >= 8)
		memcpy(&u64, x->p, 8);
	memcpy(&st, x->p, MIN((size_t)x->size, sizeof(st)));

	switch (h->request) {
	case VHOST_USER_GET_FEATURES:
		x->replied = true;
		return vhost_conn_reply_u64(
		    c, vhost_blk_features(s) |
			   (1ull << VHOST_USER_F_PROTOCOL_FEATURES));
	case VHOST_USER_SET_FEATURES:
		if (x->size < 8)
			return -EPROTO;
		c->features = u64 & (vhost_blk_features(s) |
				     (1ull << VHOST_USER_F_PROTOCOL_FEATURES));
		for (unsigned i = 0; i < VHOST_BLK_MAX_QUEUES; i++)
			c->vq[i].vr.event_idx =
			    c->features & (1ull << VIRTIO_RING_F_EVENT_IDX);
		return 0;
	case VHOST_USER_GET_PROTOCOL_FEATURES:
		x->replied = true;
		return vhost_conn_reply_u64(c, VHOST_PROTOCOL_FEATURES);
	case VHOST_USER_SET_PROTOCOL_FEATURES:
		if (x->size < 8)
			return -EPROTO;
		c->proto_features = u64 & VHOST_PROTOCOL_FEATURES;
		return 0;
	case VHOST_USER_SET_OWNER:
		return 0;
	case VHOST_USER_RESET_OWNER:
	case VHOST_USER_RESET_DEVICE:
		for (unsigned i = 0; i < VHOST_BLK_MAX_QUEUES; i++) {
			vhost_vq_stop(&c->vq[i]);
			c->vq[i].enabled = false;
			c->vq[i].broken = false;
		}
		c->features = 0;
		return 0;
	case VHOST_USER_GET_QUEUE_NUM:
		x->replied = true;
		return vhost_conn_reply_u64(c, s->max_queues);
	case VHOST_USER_SET_MEM_TABLE:
		return vhost_conn_set_mem_table(c, x);
	case VHOST_USER_SET_VRING_NUM:
		if (x->size < sizeof(st))
			return -EPROTO;
		if (!(q = vhost_conn_vq(c, st.index)))
			return -EINVAL;
		if (q->started || st.num == 0 || st.num > VRING_MAX_SIZE ||
		    (st.num & (st.num - 1)))
			return -EINVAL;
		q->num = (uint16_t)st.num;
		return 0;
	case VHOST_USER_SET_VRING_ADDR: {
		struct vhost_user_addr a;
		if (x->size < sizeof(a))
			return -EPROTO;
		memcpy(&a, x->p, sizeof(a));
		if (!(q = vhost_conn_vq(c, a.index)))
			return -EINVAL;
		q->desc_uva = a.desc_uva;
		q->avail_uva = a.avail_uva;
		q->used_uva = a.used_uva;
		q->addr_set = true;
		vhost_vq_remap(q);
		return 0;
	}
	case VHOST_USER_SET_VRING_BASE:
		if (x->size < sizeof(st))
			return -EPROTO;
		if (!(q = vhost_conn_vq(c, st.index)) || q->started)
			return -EINVAL;
		q->base = (uint16_t)st.num;
		return 0;
	case VHOST_USER_GET_VRING_BASE:
		if (x->size < sizeof(st))
			return -EPROTO;
		if (!(q = vhost_conn_vq(c, st.index)))
			return -EINVAL;
		st.num = vhost_vq_stop(q);
		q->base = (uint16_t)st.num;
		/* The call fd goes with the ring (libvhost-user does the
		 * same); the next start sends a new one. */
		if (q->call_fd >= 0)
			close(q->call_fd);
		q->call_fd = -1;
		x->replied = true;
		return vhost_conn_reply(c, &st, sizeof(st), -1);
	case VHOST_USER_SET_VRING_KICK:
	case VHOST_USER_SET_VRING_CALL:
	case VHOST_USER_SET_VRING_ERR: {
		if (x->size < 8)
			return -EPROTO;
		int fd = (u64 & VHOST_USER_VRING_NOFD) ? -1
						       : vhost_conn_take_fd(c);
		q = vhost_conn_vq(c, (uint32_t)(u64 & VHOST_USER_VRING_IDX_MASK));
		if (!q || (fd < 0 && h->request == VHOST_USER_SET_VRING_KICK)) {
			/* No polling mode: a kick must be an eventfd. */
			if (fd >= 0)
				close(fd);
			return -EINVAL;
		}
		if (h->request == VHOST_USER_SET_VRING_ERR) {
			if (fd >= 0)
				close(fd);
			return 0;
		}
		if (h->request == VHOST_USER_SET_VRING_CALL) {
			vhost_vq_set_call(q, fd);
			return 0;
		}
		return vhost_vq_set_kick(q, fd);
	}
	case VHOST_USER_SET_VRING_ENABLE:
		if (x->size < sizeof(st))
			return -EPROTO;
		if (!(q = vhost_conn_vq(c, st.index)))
			return -EINVAL;
		q->enabled = st.num != 0;
		vhost_vq_process(q);
		return 0;
	case VHOST_USER_GET_CONFIG: {
		struct vhost_user_config cf;
		uint8_t out[sizeof(cf) + 256] = {0};
		if (x->size < sizeof(cf))
			return -EPROTO;
		memcpy(&cf, x->p, sizeof(cf));
		if (cf.size > 256 || cf.offset > 256 ||
		    x->size < sizeof(cf) + cf.size)
			return -EINVAL;
		uint8_t cfg[256] = {0};
		vhost_blk_config(s, cfg, sizeof(cfg));
		memcpy(out, &cf, sizeof(cf));
		memcpy(out + sizeof(cf), cfg + cf.offset,
		       MIN((size_t)cf.size, sizeof(cfg) - cf.offset));
		x->replied = true;
		return vhost_conn_reply(c, out, (uint32_t)sizeof(cf) + cf.size,
					-1);
	}
	case VHOST_USER_SET_CONFIG:
		/* Writeback toggling is not offered: nothing is writable. */
		return -ENOTSUP;
	case VHOST_USER_GET_INFLIGHT_FD:
		return vhost_conn_get_inflight(c, x);
	case VHOST_USER_SET_INFLIGHT_FD:
		return vhost_conn_set_inflight(c, x);
	default:
		log_warn(VHOST_LOG, "%s: unsupported request %u (%s)",
			 s->path, h->request, vhost_req_name(h->request));
		return -ENOSYS;
	}
}

/* Requests that must not run while the engine holds requests pointing
 * into guest memory or while a ring's requests are still out. */
static bool vhost_conn_needs_quiesce(uint32_t req)
{
	return req == VHOST_USER_SET_MEM_TABLE ||
	       req == VHOST_USER_GET_VRING_BASE ||
	       req == VHOST_USER_RESET_OWNER || req == VHOST_USER_RESET_DEVICE;
}

static void vhost_conn_resume(struct vhost_conn *c);

static void vhost_conn_run(struct vhost_conn *c)
{
	const struct vhost_user_hdr *h = vhost_conn_hdr(c);
	struct vhost_conn_ctx x = {.p = c->msg + VHOST_USER_HDR_SIZE,
				   .size = h->size};
	log_debug(VHOST_LOG, "%s: %s (%u bytes, %u fds)", c->srv->path,
		  vhost_req_name(h->request), h->size, c->nfds);
	int rc = vhost_conn_exec(c, &x);
	if (rc < 0 && rc != -EPROTO)
		log_debug(VHOST_LOG, "%s: %s failed: %s", c->srv->path,
			  vhost_req_name(h->request), strerror(-rc));
	if (rc == -EPROTO) {
		log_warn(VHOST_LOG, "%s: bad %s message: closing",
			 c->srv->path, vhost_req_name(h->request));
		vhost_conn_close(c);
		return;
	}
	if (!x.replied && (h->flags & VHOST_USER_NEED_REPLY) &&
	    (c->proto_features & (1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK)))
		rc = vhost_conn_reply_u64(c, rc < 0 ? 1 : 0) < 0 ? -EPROTO : 0;
	else if (x.replied && rc < 0)
		rc = -EPROTO; /* the reply could not be sent */
	else
		rc = 0;
	vhost_conn_close_fds(c);
	c->have = 0;
	if (rc == -EPROTO)
		vhost_conn_close(c);
}

/* A complete message is in c->msg. */
static void vhost_conn_dispatch(struct vhost_conn *c)
{
	if (vhost_conn_needs_quiesce(vhost_conn_hdr(c)->request) &&
	    c->inflight) {
		/* Park it: rings stop taking requests, the socket is not
		 * read, and vhost_conn_io_done runs it once the engine has
		 * returned every request. */
		c->waiting = true;
		c->paused = true;
		if (c->polling)
			uv_poll_stop(&c->poll);
		c->polling = false;
		return;
	}
	vhost_conn_run(c);
}

static void vhost_conn_readable(uv_poll_t *p, int status, int events);

static void vhost_conn_resume(struct vhost_conn *c)
{
	if (c->closing)
		return;
	c->paused = false;
	if (!c->polling) {
		int rc = uv_poll_start(&c->poll, UV_READABLE,
				       vhost_conn_readable);
		if (rc < 0) {
			vhost_conn_close(c);
			return;
		}
		c->polling = true;
	}
	for (unsigned i = 0; i < c->srv->max_queues; i++)
		vhost_vq_process(&c->vq[i]);
}

void vhost_conn_io_done(struct vhost_conn *c)
{
	if (c->inflight)
		return;
	if (c->closing) {
		vhost_conn_maybe_finish(c);
		return;
	}
	if (c->waiting) {
		c->waiting = false;
		vhost_conn_run(c);
		vhost_conn_resume(c);
	}
}

/* Reads into c->msg up to `want` bytes; fds riding along are kept. */
static ssize_t vhost_conn_recv(struct vhost_conn *c, size_t want)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * VHOST_USER_MAX_FDS)];
		struct cmsghdr align;
	} cm;
	struct iovec iov = {c->msg + c->have, want};
	struct msghdr mh = {.msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = cm.buf,
			    .msg_controllen = sizeof(cm.buf)};
	ssize_t n = recvmsg(c->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n < 0)
		return -errno;
	for (struct cmsghdr *cmsg = CMSG_FIRSTHDR(&mh); cmsg;
	     cmsg = CMSG_NXTHDR(&mh, cmsg)) {
		if (cmsg->cmsg_level != SOL_SOCKET ||
		    cmsg->cmsg_type != SCM_RIGHTS)
			continue;
		size_t nfd = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < nfd; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(cmsg) + i * sizeof(int),
			       sizeof(int));
			if (c->nfds < VHOST_USER_MAX_FDS) {
				c->fds[c->nfds++] = fd;
			} else {
				close(fd);
				c->fds_overflow = true;
			}
		}
	}
	if (mh.msg_flags & MSG_CTRUNC)
		c->fds_overflow = true;
	return n;
}

static void vhost_conn_readable(uv_poll_t *p, int status, int events)
{
	struct vhost_conn *c = container_of(p, struct vhost_conn, poll);
	(void)events;
	if (status < 0) {
		vhost_conn_close(c);
		return;
	}
	/* A bounded number of messages per wake-up: a flooding front end
	 * shares the loop with everything else. */
	for (int budget = 64; budget > 0 && !c->closing && !c->waiting;) {
		const struct vhost_user_hdr *h = vhost_conn_hdr(c);
		size_t want = c->have < VHOST_USER_HDR_SIZE
				  ? VHOST_USER_HDR_SIZE - c->have
				  : VHOST_USER_HDR_SIZE + h->size - c->have;
		if (want) {
			ssize_t n = vhost_conn_recv(c, want);
			if (n == -EAGAIN || n == -EINTR)
				return;
			if (n <= 0) {
				if (n < 0)
					log_warn(VHOST_LOG, "%s: recv: %s",
						 c->srv->path,
						 strerror((int)-n));
				vhost_conn_close(c);
				return;
			}
			c->have += (size_t)n;
		}
		if (c->have < VHOST_USER_HDR_SIZE)
			continue;
		if (c->have == VHOST_USER_HDR_SIZE &&
		    ((h->flags & 3) != VHOST_USER_VERSION ||
		     h->size > VHOST_USER_MAX_PAYLOAD)) {
			log_warn(VHOST_LOG,
				 "%s: bad header (flags 0x%x, size %u): "
				 "closing",
				 c->srv->path, h->flags, h->size);
			vhost_conn_close(c);
			return;
		}
		if (c->have < VHOST_USER_HDR_SIZE + h->size)
			continue;
		budget--;
		vhost_conn_dispatch(c);
	}
}

int vhost_conn_accept(struct vhost_blk *s, int fd)
{
	struct vhost_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->srv = s;
	c->fd = fd;
	c->id = ++vhost_conn_next_id;
	for (unsigned i = 0; i < VHOST_BLK_MAX_QUEUES; i++) {
		c->vq[i].c = c;
		c->vq[i].idx = i;
		c->vq[i].call_fd = -1;
	}
	int rc = uv_poll_init(s->loop, &c->poll, fd);
	if (rc < 0) {
		free(c);
		return rc;
	}
	rc = uv_poll_start(&c->poll, UV_READABLE, vhost_conn_readable);
	if (rc < 0) {
		/* The handle is initialised: close it through the loop. */
		c->closing = true;
		c->handle_closing = true;
		s->conn = c;
		uv_close((uv_handle_t *)&c->poll, vhost_conn_closed);
		return 0;
	}
	c->polling = true;
	s->conn = c;
	log_info(VHOST_LOG, "%s: front end %llu connected", s->path,
		 (unsigned long long)c->id);
	return 0;
}
