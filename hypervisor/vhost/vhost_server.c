/* vhost-user-blk server: the listening unix socket, the one connection
 * slot, and the shutdown sequence. See include/cairn/vhost.h. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "util.h"
#include "vhost_int.h"

static void vhost_server_calls(uv_prepare_t *h)
{
	struct vhost_blk *s = h->data;
	uv_prepare_stop(&s->calls);
	vhost_vq_flush_calls(s);
}

void vhost_server_want_calls(struct vhost_blk *s)
{
	uv_prepare_start(&s->calls, vhost_server_calls);
}

static void vhost_server_handle_closed(uv_handle_t *h)
{
	struct vhost_blk *s = h->data;
	if (--s->handles_open)
		return;
	void (*cb)(void *) = s->close_cb;
	void *arg = s->close_arg;
	if (s->lfd >= 0)
		close(s->lfd);
	if (s->pending_fd >= 0)
		close(s->pending_fd);
	if (s->vd)
		sds_vdisk_close(s->vd);
	free(s->path);
	free(s);
	if (cb)
		cb(arg);
}

static void vhost_server_maybe_done(struct vhost_blk *s)
{
	if (!s->closing || s->conn || s->handles_open)
		return;
	s->handles_open = 2;
	uv_prepare_stop(&s->calls);
	uv_close((uv_handle_t *)&s->lpoll, vhost_server_handle_closed);
	uv_close((uv_handle_t *)&s->calls, vhost_server_handle_closed);
}

void vhost_server_conn_gone(struct vhost_blk *s, struct vhost_conn *c)
{
	if (s->conn == c)
		s->conn = NULL;
	int fd = s->pending_fd;
	s->pending_fd = -1;
	if (fd >= 0 && !s->closing) {
		int rc = vhost_conn_accept(s, fd);
		if (rc < 0) {
			log_warn(VHOST_LOG, "%s: accept: %s", s->path,
				 strerror(-rc));
			close(fd);
		}
	} else if (fd >= 0) {
		close(fd);
	}
	vhost_server_maybe_done(s);
}

static void vhost_server_accept(uv_poll_t *p, int status, int events)
{
	struct vhost_blk *s = p->data;
	(void)events;
	if (status < 0) {
		log_warn(VHOST_LOG, "%s: listen poll: %s", s->path,
			 uv_strerror(status));
		return;
	}
	int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0) {
		if (errno != EAGAIN && errno != EINTR)
			log_warn(VHOST_LOG, "%s: accept: %s", s->path,
				 strerror(errno));
		return;
	}
	if (s->closing) {
		close(fd);
		return;
	}
	if (s->conn) {
		/* vhost-user has one front end per device. A front end that
		 * reconnects may get here before we read its old socket's
		 * EOF: if the old peer is gone, the new one waits until the
		 * old connection is closed (its requests out of the engine). */
		struct pollfd pfd = {.fd = s->conn->fd, .events = POLLRDHUP};
		bool gone = s->conn->closing ||
			    (poll(&pfd, 1, 0) == 1 &&
			     (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)));
		if (!gone) {
			log_warn(VHOST_LOG, "%s: refusing a second front end",
				 s->path);
			close(fd);
			return;
		}
		if (s->pending_fd >= 0)
			close(s->pending_fd);
		s->pending_fd = fd;
		vhost_conn_close(s->conn);
		return;
	}
	int rc = vhost_conn_accept(s, fd);
	if (rc < 0) {
		log_warn(VHOST_LOG, "%s: accept: %s", s->path, strerror(-rc));
		close(fd);
	}
}

int vhost_blk_start(uv_loop_t *loop, struct sds_pool *pool,
		    const struct vhost_blk_opts *opts, struct vhost_blk **out,
		    char *err, size_t errlen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (!opts->socket_path || !opts->vdisk ||
	    strlen(opts->socket_path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "vhost: bad socket path or vdisk name");
		return -EINVAL;
	}
	unsigned nq = opts->num_queues ? opts->num_queues
				       : VHOST_BLK_DEFAULT_QUEUES;
	if (nq > VHOST_BLK_MAX_QUEUES) {
		snprintf(err, errlen, "vhost: at most %u queues",
			 VHOST_BLK_MAX_QUEUES);
		return -EINVAL;
	}
	struct vhost_blk *s = calloc(1, sizeof(*s));
	if (!s || !(s->path = strdup(opts->socket_path))) {
		free(s);
		snprintf(err, errlen, "vhost: out of memory");
		return -ENOMEM;
	}
	s->loop = loop;
	s->pool = pool;
	s->max_queues = nq;
	s->write_through = opts->write_through;
	s->lfd = -1;
	s->pending_fd = -1;
	int rc = sds_vdisk_open(pool, opts->vdisk, &s->vd);
	if (rc < 0) {
		snprintf(err, errlen, "vhost: vdisk '%s': %s", opts->vdisk,
			 strerror(-rc));
		goto fail;
	}
	str_copy(s->serial, opts->vdisk, sizeof(s->serial));
	str_copy(sa.sun_path, opts->socket_path, sizeof(sa.sun_path));
	/* A socket left by a dead daemon is replaced; anything else stays. */
	struct stat st;
	if (lstat(s->path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(s->path);
	s->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->lfd < 0 || bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    listen(s->lfd, 4)) {
		rc = -errno;
		snprintf(err, errlen, "vhost: cannot listen on %s: %s",
			 s->path, strerror(errno));
		goto fail;
	}
	rc = uv_poll_init(loop, &s->lpoll, s->lfd);
	if (rc < 0) {
		snprintf(err, errlen, "vhost: %s", uv_strerror(rc));
		unlink(s->path);
		goto fail;
	}
	s->lpoll.data = s;
	uv_prepare_init(loop, &s->calls);
	s->calls.data = s;
	uv_poll_start(&s->lpoll, UV_READABLE, vhost_server_accept);
	log_info(VHOST_LOG, "serving vdisk %s on %s (%u queues)", opts->vdisk,
		 s->path, nq);
	*out = s;
	return 0;
fail:
	if (s->lfd >= 0)
		close(s->lfd);
	if (s->pending_fd >= 0)
		close(s->pending_fd);
	if (s->vd)
		sds_vdisk_close(s->vd);
	free(s->path);
	free(s);
	return rc;
}

void vhost_blk_close(struct vhost_blk *s, void (*cb)(void *arg), void *arg)
{
	if (s->closing)
		return;
	s->closing = true;
	s->close_cb = cb;
	s->close_arg = arg;
	uv_poll_stop(&s->lpoll);
	unlink(s->path);
	if (s->conn)
		vhost_conn_close(s->conn);
	vhost_server_maybe_done(s);
}
