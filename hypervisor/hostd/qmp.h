/* The QMP client on libuv (private to hostd). Framing and message
 * classification are public in <cairn/hostd.h> for the tests. */
#ifndef CAIRN_HOSTD_QMP_H
#define CAIRN_HOSTD_QMP_H

#include <cairn/hostd.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "util.h"

/* status 0 with the "return" value, or -EIO with the "error" object, or
 * -ECONNRESET (connection lost; reply NULL). */
typedef void (*qmp_reply_cb)(void *arg, int status, struct json_t *reply);

struct qmp_ops {
	void *arg;
	void (*on_ready)(void *arg); /* greeting seen, capabilities accepted */
	void (*on_event)(void *arg, const char *event, struct json_t *data);
	void (*on_connect_failed)(void *arg, int status);
	void (*on_close)(void *arg); /* connection gone (after connect) */
};

struct qmp {
	uv_pipe_t pipe;
	uv_connect_t creq;
	struct qmp_ops ops;
	struct qmp_framer fr;
	struct qmp_pending *pending;
	uint64_t next_id;
	char what[64]; /* for log lines: the VM's name */
	char rbuf[4096];
	bool open, greeted, ready, closing, closed, in_cb, free_on_close;
};

/* Starts connecting; *out is valid at once (close it with qmp_close). */
int qmp_connect(uv_loop_t *loop, const char *path, const char *what,
		const struct qmp_ops *ops, struct qmp **out);
/* Sends {"execute": cmd, "arguments": args, "id": N}; takes args. */
int qmp_command(struct qmp *q, const char *cmd, struct json_t *args,
		qmp_reply_cb cb, void *arg);
bool qmp_ready(const struct qmp *q);
/* Detaches the owner (no more callbacks) and frees once closed. */
void qmp_close(struct qmp *q);

#endif
