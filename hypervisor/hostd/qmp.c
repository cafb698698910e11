/* QMP: QEMU's JSON control protocol over a unix socket (QEMU's
 * docs/interop/qmp-spec.rst). The server greets with {"QMP": {...}}; the
 * client must send qmp_capabilities before any other command; each command
 * gets one {"return": …} or {"error": …} carrying the command's "id"; events
 * {"event": NAME, "data": …, "timestamp": …} arrive at any time. QEMU ends
 * every message with "\r\n", so framing is by line.
 *
 * The framer is pure (tests feed it bytes); the client below runs it on a
 * libuv pipe. */
#include "qmp.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define QMP_LOG "qmp"

void qmp_framer_init(struct qmp_framer *f, size_t max_line)
{
	memset(f, 0, sizeof(*f));
	f->max_line = max_line;
}

void qmp_framer_free(struct qmp_framer *f)
{
	free(f->buf);
	memset(f, 0, sizeof(*f));
}

int qmp_framer_feed(struct qmp_framer *f, const char *data, size_t n,
		    int (*cb)(void *arg, struct json_t *msg), void *arg)
{
	int count = 0;
	if (f->len + n > f->cap) {
		size_t cap = f->cap ? f->cap : 4096;
		while (cap < f->len + n)
			cap *= 2;
		char *b = realloc(f->buf, cap);
		if (!b)
			return -ENOMEM;
		f->buf = b;
		f->cap = cap;
	}
	memcpy(f->buf + f->len, data, n);
	f->len += n;
	size_t start = 0;
	for (;;) {
		char *nl = memchr(f->buf + start, '\n', f->len - start);
		if (!nl)
			break;
		size_t ll = (size_t)(nl - (f->buf + start));
		if (ll > f->max_line)
			return -EPROTO;
		json_error_t je;
		json_t *m = NULL;
		/* Skip blank lines (a bare "\r\n"). */
		size_t k = 0;
		while (k < ll &&
		       (f->buf[start + k] == '\r' || f->buf[start + k] == ' '))
			k++;
		if (k < ll) {
			m = json_loadb(f->buf + start, ll,
				       JSON_DISABLE_EOF_CHECK, &je);
			count++;
			int rc = cb(arg, m);
			json_decref(m);
			start += ll + 1;
			if (rc) {
				memmove(f->buf, f->buf + start, f->len - start);
				f->len -= start;
				return rc;
			}
			continue;
		}
		start += ll + 1;
	}
	memmove(f->buf, f->buf + start, f->len - start);
	f->len -= start;
	if (f->len > f->max_line)
		return -EPROTO;
	return count;
}

enum qmp_msg_kind qmp_msg_classify(const struct json_t *mc)
{
	json_t *m = (json_t *)mc;
	if (!json_is_object(m))
		return QMP_MSG_UNKNOWN;
	if (json_is_object(json_object_get(m, "QMP")))
		return QMP_MSG_GREETING;
	if (json_object_get(m, "return"))
		return QMP_MSG_RETURN;
	if (json_is_object(json_object_get(m, "error")))
		return QMP_MSG_ERROR;
	if (json_is_string(json_object_get(m, "event")))
		return QMP_MSG_EVENT;
	return QMP_MSG_UNKNOWN;
}

/* ---- the client ---- */

struct qmp_pending {
	uint64_t id;
	qmp_reply_cb cb;
	void *arg;
	struct qmp_pending *next;
};

struct qmp_write {
	uv_write_t req;
	char *buf;
};

static void qmp__fail_pending(struct qmp *q)
{
	struct qmp_pending *p = q->pending;
	q->pending = NULL;
	while (p) {
		struct qmp_pending *n = p->next;
		if (p->cb)
			p->cb(p->arg, -ECONNRESET, NULL);
		free(p);
		p = n;
	}
}

static void qmp__closed(uv_handle_t *hd)
{
	struct qmp *q = hd->data;
	q->open = false;
	q->closed = true;
	q->in_cb = true;
	qmp__fail_pending(q);
	if (q->ops.on_close)
		q->ops.on_close(q->ops.arg);
	q->in_cb = false;
	if (q->free_on_close) {
		qmp_framer_free(&q->fr);
		free(q);
	}
}

static void qmp__close(struct qmp *q)
{
	if (q->closing)
		return;
	q->closing = true;
	uv_close((uv_handle_t *)&q->pipe, qmp__closed);
}

static void qmp__written(uv_write_t *req, int status)
{
	struct qmp_write *w = container_of(req, struct qmp_write, req);
	free(w->buf);
	free(w);
	(void)status; /* a failed write shows up as a read error too */
}

int qmp_command(struct qmp *q, const char *cmd, struct json_t *args,
		qmp_reply_cb cb, void *arg)
{
	if (q->closing || !q->open) {
		json_decref(args);
		return -ENOTCONN;
	}
	json_t *j = json_object();
	struct qmp_pending *p = calloc(1, sizeof(*p));
	struct qmp_write *w = calloc(1, sizeof(*w));
	if (!j || !p || !w)
		goto nomem;
	p->id = ++q->next_id;
	p->cb = cb;
	p->arg = arg;
	json_object_set_new(j, "execute", json_string(cmd));
	if (args)
		json_object_set_new(j, "arguments", args);
	args = NULL;
	json_object_set_new(j, "id", json_integer((json_int_t)p->id));
	char *s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	j = NULL;
	if (!s)
		goto nomem;
	size_t n = strlen(s);
	w->buf = realloc(s, n + 2);
	if (!w->buf) {
		free(s);
		goto nomem;
	}
	w->buf[n] = '\n';
	uv_buf_t b = uv_buf_init(w->buf, (unsigned)n + 1);
	int rc =
	    uv_write(&w->req, (uv_stream_t *)&q->pipe, &b, 1, qmp__written);
	if (rc < 0) {
		free(w->buf);
		free(w);
		free(p);
		return rc;
	}
	/* Append: replies come in order. */
	struct qmp_pending **pp = &q->pending;
	while (*pp)
		pp = &(*pp)->next;
	*pp = p;
	return 0;
nomem:
	json_decref(j);
	json_decref(args);
	free(p);
	free(w);
	return -ENOMEM;
}

static void qmp__caps_done(void *arg, int status, struct json_t *ret)
{
	struct qmp *q = arg;
	(void)ret;
	if (status < 0) {
		log_warn(QMP_LOG, "%s: qmp_capabilities failed", q->what);
		qmp__close(q);
		return;
	}
	q->ready = true;
	if (q->ops.on_ready)
		q->ops.on_ready(q->ops.arg);
}

static int qmp__on_msg(void *arg, struct json_t *m)
{
	struct qmp *q = arg;
	if (!m) {
		log_warn(QMP_LOG, "%s: unparsable message", q->what);
		return 0; /* skip it; the stream goes on */
	}
	switch (qmp_msg_classify(m)) {
	case QMP_MSG_GREETING:
		if (q->greeted) {
			log_warn(QMP_LOG, "%s: second greeting", q->what);
			return 0;
		}
		q->greeted = true;
		if (qmp_command(q, "qmp_capabilities", NULL, qmp__caps_done,
				q) < 0)
			return -EIO;
		return 0;
	case QMP_MSG_RETURN:
	case QMP_MSG_ERROR: {
		json_t *idj = json_object_get(m, "id");
		if (!json_is_integer(idj)) {
			log_warn(QMP_LOG, "%s: reply without id", q->what);
			return 0;
		}
		uint64_t id = (uint64_t)json_integer_value(idj);
		struct qmp_pending **pp = &q->pending;
		while (*pp && (*pp)->id != id)
			pp = &(*pp)->next;
		if (!*pp) {
			log_warn(QMP_LOG, "%s: reply to unknown id %llu",
				 q->what, (unsigned long long)id);
			return 0;
		}
		struct qmp_pending *p = *pp;
		*pp = p->next;
		bool err = qmp_msg_classify(m) == QMP_MSG_ERROR;
		if (err)
			log_debug(QMP_LOG, "%s: error reply: %s", q->what,
				  json_string_value(json_object_get(
				      json_object_get(m, "error"), "desc")));
		if (p->cb)
			p->cb(p->arg, err ? -EIO : 0,
			      err ? json_object_get(m, "error")
				  : json_object_get(m, "return"));
		free(p);
		return 0;
	}
	case QMP_MSG_EVENT:
		if (q->ops.on_event)
			q->ops.on_event(
			    q->ops.arg,
			    json_string_value(json_object_get(m, "event")),
			    json_object_get(m, "data"));
		return 0;
	case QMP_MSG_UNKNOWN:
		log_warn(QMP_LOG, "%s: unknown message", q->what);
		return 0;
	}
	return 0;
}

static void qmp__alloc(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
	struct qmp *q = h->data;
	(void)sz;
	*b = uv_buf_init(q->rbuf, sizeof(q->rbuf));
}

static void qmp__read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct qmp *q = s->data;
	if (n < 0) {
		qmp__close(q);
		return;
	}
	if (n == 0)
		return;
	int rc = qmp_framer_feed(&q->fr, b->base, (size_t)n, qmp__on_msg, q);
	if (rc < 0 && !q->closing) {
		log_warn(QMP_LOG, "%s: protocol error (%d), closing", q->what,
			 rc);
		qmp__close(q);
	}
}

static void qmp__connected(uv_connect_t *req, int status)
{
	struct qmp *q = req->data;
	if (status < 0 || q->closing) {
		if (q->ops.on_connect_failed && !q->closing)
			q->ops.on_connect_failed(q->ops.arg, status);
		qmp__close(q);
		return;
	}
	q->open = true;
	uv_read_start((uv_stream_t *)&q->pipe, qmp__alloc, qmp__read);
}

int qmp_connect(uv_loop_t *loop, const char *path, const char *what,
		const struct qmp_ops *ops, struct qmp **out)
{
	struct qmp *q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	int rc = uv_pipe_init(loop, &q->pipe, 0);
	if (rc < 0) {
		free(q);
		return rc;
	}
	q->pipe.data = q;
	q->ops = *ops;
	q->free_on_close = false;
	snprintf(q->what, sizeof(q->what), "%s", what);
	qmp_framer_init(&q->fr, 1 << 20);
	q->creq.data = q;
	uv_pipe_connect(&q->creq, &q->pipe, path, qmp__connected);
	*out = q;
	return 0;
}

void qmp_close(struct qmp *q)
{
	/* After this the owner hears nothing more; the memory goes once the
	 * handle is closed. */
	memset(&q->ops, 0, sizeof(q->ops));
	q->free_on_close = true;
	if (q->closed && !q->in_cb) {
		qmp_framer_free(&q->fr);
		free(q);
	} else {
		qmp__close(q);
	}
}

bool qmp_ready(const struct qmp *q)
{
	return q->ready && q->open && !q->closing;
}
