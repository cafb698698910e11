/* The agent's API: a unix socket, one JSON object per line each way.
 *
 *   request  {"op": "vm.start", "name": "web1", "id": 7}
 *   reply    {"id": 7, "ok": true, ...}  or  {"id": 7, "ok": false,
 *            "error": "web1 is running already", "errno": "EALREADY"}
 *
 * Operations are table-driven (hostd_api_ops). Start, stop and force-stop
 * reply once the action is under way (state starting / stopping); clients
 * poll vm.status for the end state (cairn-vm does, with a timeout). Replies
 * go out in request order. A line that is not JSON, or longer than 1 MiB,
 * gets an error reply; an over-long line closes the connection. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hostd_internal.h"
#include "log.h"

#define API_MAX_LINE (1u << 20)

struct hostd_conn {
	TAILQ_ENTRY(hostd_conn) link;
	struct hostd *h;
	uv_pipe_t pipe;
	struct qmp_framer fr; /* the same JSON-lines framing as QMP */
	bool closing;
};

struct api_write {
	uv_write_t req;
	char *buf;
};

typedef json_t *(*api_fn)(struct hostd *h, json_t *req, char *err,
			  size_t errlen, int *rc);

static struct hostd_vm *api__vm(struct hostd *h, json_t *req, char *err,
				size_t errlen, int *rc)
{
	const char *name = json_string_value(json_object_get(req, "name"));
	if (!name) {
		snprintf(err, errlen, "name is required");
		*rc = -EINVAL;
		return NULL;
	}
	struct hostd_vm *vm = hostd_vm_find(h, name);
	if (!vm) {
		snprintf(err, errlen, "no VM named %s", name);
		*rc = -ENOENT;
	}
	return vm;
}

static json_t *api__state_reply(struct hostd_vm *vm)
{
	return json_pack("{s:s, s:s}", "name", vm->rec.def.name, "state",
			 vm_state_name(vm->rec.state));
}

static json_t *api_define(struct hostd *h, json_t *req, char *err,
			  size_t errlen, int *rc)
{
	json_t *def = json_object_get(req, "def");
	struct hostd_vm *vm;
	if (!def) {
		snprintf(err, errlen, "def (the VM definition) is required");
		*rc = -EINVAL;
		return NULL;
	}
	if ((*rc = hostd_vm_define(h, def, err, errlen, &vm)) < 0)
		return NULL;
	json_t *r = api__state_reply(vm);
	json_object_set_new(r, "uuid", json_string(vm->rec.def.uuid));
	return r;
}

static json_t *api_start(struct hostd *h, json_t *req, char *err, size_t errlen,
			 int *rc)
{
	struct hostd_vm *vm = api__vm(h, req, err, errlen, rc);
	if (!vm)
		return NULL;
	vm->rec.restarts = 0;
	if ((*rc = hostd_vm_start(vm, err, errlen)) < 0)
		return NULL;
	return api__state_reply(vm);
}

static json_t *api_stop(struct hostd *h, json_t *req, char *err, size_t errlen,
			int *rc)
{
	struct hostd_vm *vm = api__vm(h, req, err, errlen, rc);
	if (!vm)
		return NULL;
	json_t *t = json_object_get(req, "timeout_ms");
	unsigned timeout = 0;
	if (t) {
		if (!json_is_integer(t) || json_integer_value(t) <= 0 ||
		    json_integer_value(t) > 3600000) {
			snprintf(err, errlen, "timeout_ms must be 1..3600000");
			*rc = -EINVAL;
			return NULL;
		}
		timeout = (unsigned)json_integer_value(t);
	}
	if ((*rc = hostd_vm_stop(vm, timeout, err, errlen)) < 0)
		return NULL;
	return api__state_reply(vm);
}


/* The operations that take a VM and reply with its state. */
static json_t *api__vm_op(struct hostd *h, json_t *req, char *err,
			  size_t errlen, int *rc,
			  int (*op)(struct hostd_vm *, char *, size_t))
{
	struct hostd_vm *vm = api__vm(h, req, err, errlen, rc);
	if (!vm)
		return NULL;
	if ((*rc = op(vm, err, errlen)) < 0)
		return NULL;
	return api__state_reply(vm);
}

static json_t *api_force_stop(struct hostd *h, json_t *req, char *err,
			      size_t errlen, int *rc)
{
	return api__vm_op(h, req, err, errlen, rc, hostd_vm_force_stop);
}

static json_t *api_reboot(struct hostd *h, json_t *req, char *err,
			  size_t errlen, int *rc)
{
	return api__vm_op(h, req, err, errlen, rc, hostd_vm_reboot);
}

static json_t *api_pause(struct hostd *h, json_t *req, char *err,
			 size_t errlen, int *rc)
{
	return api__vm_op(h, req, err, errlen, rc, hostd_vm_pause);
}

static json_t *api_resume(struct hostd *h, json_t *req, char *err,
			  size_t errlen, int *rc)
{
	return api__vm_op(h, req, err, errlen, rc, hostd_vm_resume);
}

static json_t *api_delete(struct hostd *h, json_t *req, char *err,
			  size_t errlen, int *rc)
{
	struct hostd_vm *vm = api__vm(h, req, err, errlen, rc);
	if (!vm)
		return NULL;
	json_t *r = json_pack("{s:s, s:s}", "name", vm->rec.def.name, "state",
			      "deleted");
	if ((*rc = hostd_vm_delete(vm, err, errlen)) < 0) {
		json_decref(r);
		return NULL;
	}
	return r;
}

static json_t *api_list(struct hostd *h, json_t *req, char *err, size_t errlen,
			int *rc)
{
	(void)req, (void)err, (void)errlen, (void)rc;
	json_t *a = json_array();
	struct hostd_vm *vm;
	TAILQ_FOREACH(vm, &h->vms, link)
	{
		if (!vm->deleting)
			json_array_append_new(a, hostd_vm_status(vm));
	}
	return json_pack("{s:o}", "vms", a);
}

static json_t *api_status(struct hostd *h, json_t *req, char *err,
			  size_t errlen, int *rc)
{
	struct hostd_vm *vm = api__vm(h, req, err, errlen, rc);
	return vm ? hostd_vm_status(vm) : NULL;
}

static json_t *api_console(struct hostd *h, json_t *req, char *err,
			   size_t errlen, int *rc)
{
	struct hostd_vm *vm = api__vm(h, req, err, errlen, rc);
	if (!vm)
		return NULL;
	return json_pack("{s:s, s:s, s:s}", "name", vm->rec.def.name, "socket",
			 vm->paths.serial, "log", vm->paths.console);
}

static json_t *api_definition(struct hostd *h, json_t *req, char *err,
			      size_t errlen, int *rc)
{
	struct hostd_vm *vm = api__vm(h, req, err, errlen, rc);
	return vm ? json_pack("{s:o}", "def", vm_def_to_json(&vm->rec.def))
		  : NULL;
}

static json_t *api_host(struct hostd *h, json_t *req, char *err, size_t errlen,
			int *rc)
{
	(void)req, (void)err, (void)errlen, (void)rc;
	return hostd_host_status(h);
}

static const struct {
	const char *op;
	api_fn fn;
} hostd_api_ops[] = {
    {"vm.define", api_define},	 {"vm.start", api_start},
    {"vm.stop", api_stop},	 {"vm.force_stop", api_force_stop},
    {"vm.reboot", api_reboot},	 {"vm.delete", api_delete},
    {"vm.pause", api_pause},	 {"vm.resume", api_resume},
    {"vm.list", api_list},	 {"vm.status", api_status},
    {"vm.console", api_console}, {"vm.definition", api_definition},
    {"host.status", api_host},
};

static const char *api__errno_name(int e)
{
	switch (e) {
	case EINVAL:
		return "EINVAL";
	case ENOENT:
		return "ENOENT";
	case EEXIST:
		return "EEXIST";
	case EBUSY:
		return "EBUSY";
	case EALREADY:
		return "EALREADY";
	case ENOTCONN:
		return "ENOTCONN";
	case ESHUTDOWN:
		return "ESHUTDOWN";
	case ENOMEM:
		return "ENOMEM";
	case ENOTSUP:
		return "ENOTSUP";
	default:
		return "EIO";
	}
}

json_t *hostd_api_handle(struct hostd *h, json_t *req)
{
	char err[512] = "";
	int rc = 0;
	json_t *r = NULL;
	json_t *id = json_is_object(req) ? json_object_get(req, "id") : NULL;
	const char *op = json_is_object(req)
			     ? json_string_value(json_object_get(req, "op"))
			     : NULL;
	if (!json_is_object(req)) {
		snprintf(err, sizeof(err), "a request must be a JSON object");
		rc = -EINVAL;
	} else if (!op) {
		snprintf(err, sizeof(err), "op is required");
		rc = -EINVAL;
	} else {
		size_t i;
		for (i = 0; i < ARRAY_SIZE(hostd_api_ops); i++)
			if (!strcmp(op, hostd_api_ops[i].op))
				break;
		if (i == ARRAY_SIZE(hostd_api_ops)) {
			snprintf(err, sizeof(err), "unknown op %s", op);
			rc = -EINVAL;
		} else {
			r = hostd_api_ops[i].fn(h, req, err, sizeof(err), &rc);
			if (!r && rc == 0) {
				snprintf(err, sizeof(err), "out of memory");
				rc = -ENOMEM;
			}
		}
	}
	if (rc < 0) {
		json_decref(r);
		r = json_pack("{s:b, s:s, s:s}", "ok", 0, "error", err, "errno",
			      api__errno_name(-rc));
	} else {
		json_object_set_new(r, "ok", json_true());
	}
	if (r && id)
		json_object_set(r, "id", id);
	return r;
}

/* ---- the socket ---- */

static void api__conn_closed(uv_handle_t *hd)
{
	struct hostd_conn *c = hd->data;
	struct hostd *h = c->h;
	qmp_framer_free(&c->fr);
	free(c);
	hostd__handle_closed(h);
}

static void api__conn_close(struct hostd_conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	TAILQ_REMOVE(&c->h->conns, c, link);
	c->h->closing++;
	uv_close((uv_handle_t *)&c->pipe, api__conn_closed);
}

static void api__written(uv_write_t *req, int status)
{
	struct api_write *w = container_of(req, struct api_write, req);
	(void)status;
	free(w->buf);
	free(w);
}

static void api__send(struct hostd_conn *c, json_t *r)
{
	if (!r || c->closing)
		return;
	char *s = json_dumps(r, JSON_COMPACT);
	struct api_write *w = calloc(1, sizeof(*w));
	if (!s || !w) {
		free(s);
		free(w);
		api__conn_close(c);
		return;
	}
	size_t n = strlen(s);
	w->buf = realloc(s, n + 2);
	if (!w->buf) {
		free(s);
		free(w);
		api__conn_close(c);
		return;
	}
	w->buf[n] = '\n';
	uv_buf_t b = uv_buf_init(w->buf, (unsigned)n + 1);
	if (uv_write(&w->req, (uv_stream_t *)&c->pipe, &b, 1, api__written) <
	    0) {
		free(w->buf);
		free(w);
		api__conn_close(c);
	}
}

static int api__on_line(void *arg, json_t *req)
{
	struct hostd_conn *c = arg;
	json_t *r;
	if (!req)
		r = json_pack("{s:b, s:s, s:s}", "ok", 0, "error",
			      "request is not valid JSON", "errno", "EINVAL");
	else
		r = hostd_api_handle(c->h, req);
	api__send(c, r);
	json_decref(r);
	return 0;
}

static void api__alloc(uv_handle_t *hd, size_t sz, uv_buf_t *b)
{
	(void)hd;
	b->base = malloc(sz);
	b->len = b->base ? sz : 0;
}

static void api__read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct hostd_conn *c = s->data;
	if (n < 0) {
		api__conn_close(c);
	} else if (n > 0 && !c->closing) {
		int rc = qmp_framer_feed(&c->fr, b->base, (size_t)n,
					 api__on_line, c);
		if (rc < 0) {
			json_t *r = json_pack("{s:b, s:s, s:s}", "ok", 0,
					      "error", "request line too long",
					      "errno", "EINVAL");
			api__send(c, r);
			json_decref(r);
			api__conn_close(c);
		}
	}
	free(b->base);
}

static void api__accept(uv_stream_t *server, int status)
{
	struct hostd *h = server->data;
	if (status < 0 || h->shutting_down)
		return;
	struct hostd_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return;
	c->h = h;
	uv_pipe_init(h->loop, &c->pipe, 0);
	c->pipe.data = c;
	qmp_framer_init(&c->fr, API_MAX_LINE);
	TAILQ_INSERT_TAIL(&h->conns, c, link);
	if (uv_accept(server, (uv_stream_t *)&c->pipe) < 0 ||
	    uv_read_start((uv_stream_t *)&c->pipe, api__alloc, api__read) < 0)
		api__conn_close(c);
}

int hostd_api_listen(struct hostd *h)
{
	int rc = uv_pipe_init(h->loop, &h->server, 0);
	if (rc < 0)
		return rc;
	h->server.data = h;
	unlink(h->socket_path);	  /* a stale socket from an agent that died */
	mode_t old = umask(0077); /* the API is root's: owner only */
	rc = uv_pipe_bind(&h->server, h->socket_path);
	umask(old);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&h->server, 16, api__accept);
	if (rc < 0) {
		uv_close((uv_handle_t *)&h->server, NULL);
		return rc;
	}
	h->listening = true;
	return 0;
}

static void api__server_closed(uv_handle_t *hd)
{
	hostd__handle_closed(hd->data);
}

void hostd_api_close(struct hostd *h)
{
	struct hostd_conn *c, *t;
	TAILQ_FOREACH_SAFE(c, &h->conns, link, t)
	{
		api__conn_close(c);
	}
	if (h->listening) {
		h->listening = false;
		h->closing++;
		uv_close((uv_handle_t *)&h->server, api__server_closed);
		unlink(h->socket_path);
	}
}
