/* io_uring driven from the libuv loop: an eventfd registered with the ring
 * wakes a uv_poll; submissions queued during a loop phase go to the kernel
 * together (one io_uring_enter for the batch) from a uv_check, right after
 * the poll phase that parsed the requests, and from a uv_prepare, before
 * the loop could block with anything queued by timers or idle work. */
#include <errno.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "log.h"
#include "sds_internal.h"

static void sds_uring__prep(struct sds_uring *u, struct sds_uring_op *op,
			    struct io_uring_sqe *sqe)
{
	if (op->opcode == IORING_OP_READ)
		io_uring_prep_read(sqe, op->fd, op->buf, op->len, op->off);
	else {
		io_uring_prep_write(sqe, op->fd, op->buf, op->len, op->off);
		sqe->rw_flags = op->rw_flags;
	}
	io_uring_sqe_set_data(sqe, op);
	u->unsubmitted++;
	u->inflight++;
}

static void sds_uring__queue(struct sds_uring *u, struct sds_uring_op *op)
{
	struct io_uring_sqe *sqe = NULL;
	if (TAILQ_EMPTY(&u->backlog))
		sqe = io_uring_get_sqe(&u->ring);
	if (!sqe) {
		TAILQ_INSERT_TAIL(&u->backlog, op, link);
		return;
	}
	sds_uring__prep(u, op, sqe);
}

static void sds_uring__submit(struct sds_uring *u)
{
	/* Move what waited for SQEs into the ring, then submit. */
	while (!TAILQ_EMPTY(&u->backlog)) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
		if (!sqe)
			break;
		struct sds_uring_op *op = TAILQ_FIRST(&u->backlog);
		TAILQ_REMOVE(&u->backlog, op, link);
		sds_uring__prep(u, op, sqe);
	}
	if (!u->unsubmitted)
		return;
	int rc = io_uring_submit(&u->ring);
	if (rc >= 0)
		u->unsubmitted -= (unsigned)rc < u->unsubmitted ? (unsigned)rc
								 : u->unsubmitted;
	else if (rc != -EAGAIN && rc != -EBUSY)
		log_error("uring", "io_uring_submit: %d", rc);
}

static void sds_uring__on_prepare(uv_prepare_t *h)
{
	sds_uring__submit(h->data);
}

static void sds_uring__on_check(uv_check_t *h)
{
	sds_uring__submit(h->data);
}

static void sds_uring__reap(struct sds_uring *u)
{
	struct io_uring_cqe *cqe;
	while (io_uring_peek_cqe(&u->ring, &cqe) == 0) {
		struct sds_uring_op *op = io_uring_cqe_get_data(cqe);
		int res = cqe->res;
		io_uring_cqe_seen(&u->ring, cqe);
		u->inflight--;
		/* O_DIRECT on a block device or a preallocated file moves the
		 * whole request or fails; a short transfer is an error. */
		if (res >= 0 && (uint32_t)res != op->len)
			res = -EIO;
		op->cb(op, res);
	}
}

static void sds_uring__on_event(uv_poll_t *h, int status, int events)
{
	(void)events;
	struct sds_uring *u = h->data;
	uint64_t v;
	if (status == 0 && read(u->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_warn("uring", "eventfd read: %d", errno);
	sds_uring__reap(u);
	/* Completions may have queued new work: the prepare hook of the next
	 * turn submits it. */
}

int sds_uring_init(struct sds_uring *u, uv_loop_t *loop, unsigned entries)
{
	TAILQ_INIT(&u->backlog);
	u->inflight = 0;
	u->unsubmitted = 0;
	int rc = io_uring_queue_init(entries, &u->ring, 0);
	if (rc < 0)
		return rc;
	u->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (u->efd < 0) {
		rc = -errno;
		io_uring_queue_exit(&u->ring);
		return rc;
	}
	rc = io_uring_register_eventfd(&u->ring, u->efd);
	if (rc < 0) {
		close(u->efd);
		io_uring_queue_exit(&u->ring);
		return rc;
	}
	uv_poll_init(loop, &u->poll, u->efd);
	u->poll.data = u;
	uv_poll_start(&u->poll, UV_READABLE, sds_uring__on_event);
	uv_prepare_init(loop, &u->prep);
	u->prep.data = u;
	uv_prepare_start(&u->prep, sds_uring__on_prepare);
	uv_check_init(loop, &u->check);
	u->check.data = u;
	uv_check_start(&u->check, sds_uring__on_check);
	u->ready = true;
	return 0;
}

/* The caller has waited for inflight == 0. The three handles close
 * asynchronously: cb runs once for each, with handle->data = data. */
void sds_uring_close(struct sds_uring *u, uv_close_cb cb, void *data)
{
	if (!u->ready)
		return;
	uv_poll_stop(&u->poll);
	u->poll.data = data;
	uv_close((uv_handle_t *)&u->poll, cb);
	uv_prepare_stop(&u->prep);
	u->prep.data = data;
	uv_close((uv_handle_t *)&u->prep, cb);
	uv_check_stop(&u->check);
	u->check.data = data;
	uv_close((uv_handle_t *)&u->check, cb);
	io_uring_queue_exit(&u->ring);
	close(u->efd);
	u->ready = false;
}

static void sds_uring__rw(struct sds_uring *u, struct sds_uring_op *op,
			  int opcode, int fd, void *buf, uint32_t len,
			  uint64_t off)
{
	op->opcode = opcode;
	op->fd = fd;
	op->buf = buf;
	op->len = len;
	op->off = off;
	sds_uring__queue(u, op);
}

void sds_uring_read(struct sds_uring *u, struct sds_uring_op *op, int fd,
		    void *buf, uint32_t len, uint64_t off)
{
	op->rw_flags = 0;
	sds_uring__rw(u, op, IORING_OP_READ, fd, buf, len, off);
}

void sds_uring_write(struct sds_uring *u, struct sds_uring_op *op, int fd,
		     void *buf, uint32_t len, uint64_t off, int rw_flags)
{
	op->rw_flags = rw_flags;
	sds_uring__rw(u, op, IORING_OP_WRITE, fd, buf, len, off);
}
