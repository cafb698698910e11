/* iSCSI server: the configuration, the SCSI target and its logical units,
 * the listener, the set of connections and sessions, and the shutdown
 * sequence. See include/cairn/iscsi.h and docs/iscsi.md. */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iscsi_int.h"
#include "log.h"
#include "util.h"

#define ISCSI_BACKLOG 128

struct iscsi_tgt *iscsi_server_find_target(struct iscsi_server *srv,
					   const char *name)
{
	/* § 4.2.7.1: iSCSI names compare case-insensitively (they are
	 * normalised to lower case). */
	for (unsigned i = 0; i < srv->ntgts; i++)
		if (!strcasecmp(srv->tgts[i].cfg->name, name))
			return &srv->tgts[i];
	return NULL;
}

void iscsi_server_flush(uv_prepare_t *h)
{
	struct iscsi_server *srv = h->data;
	struct iscsi_conn *c, *next;
	for (c = TAILQ_FIRST(&srv->conns); c; c = next) {
		next = TAILQ_NEXT(c, link);
		if (c->nout)
			iscsi_conn_flush(c);
	}
	uv_prepare_stop(&srv->flush);
}

static void iscsi_server_free_luns(struct iscsi_server *srv)
{
	for (unsigned i = 0; i < srv->ntgts; i++) {
		struct scsi_lun_map *m = &srv->tgts[i].map;
		for (unsigned j = 0; j < m->n; j++)
			if (m->e[j].lu)
				scsi_lu_destroy(m->e[j].lu);
		free(m->e);
	}
	free(srv->tgts);
	srv->tgts = NULL;
	srv->ntgts = 0;
	if (srv->scsi)
		scsi_target_destroy(srv->scsi);
	srv->scsi = NULL;
}

static void iscsi_server_handle_closed(uv_handle_t *h)
{
	struct iscsi_server *srv = h->data;
	if (--srv->handles_open)
		return;
	void (*cb)(void *) = srv->close_cb;
	void *arg = srv->close_arg;
	iscsi_server_free_luns(srv);
	iscsi_config_free(srv->cfg);
	iscsi_conn_pools_drain(srv);
	free(srv);
	if (cb)
		cb(arg);
}

static void iscsi_server_maybe_done(struct iscsi_server *srv)
{
	if (!srv->closing || !srv->listener_closed ||
	    !TAILQ_EMPTY(&srv->conns) ||
	    uv_is_closing((uv_handle_t *)&srv->grace))
		return;
	uv_timer_stop(&srv->grace);
	uv_prepare_stop(&srv->flush);
	srv->handles_open = 2;
	uv_close((uv_handle_t *)&srv->grace, iscsi_server_handle_closed);
	uv_close((uv_handle_t *)&srv->flush, iscsi_server_handle_closed);
}

void iscsi_server_conn_gone(struct iscsi_server *srv, struct iscsi_conn *c)
{
	TAILQ_REMOVE(&srv->conns, c, link);
	iscsi_server_maybe_done(srv);
}

static void iscsi_server_listener_closed(uv_handle_t *h)
{
	struct iscsi_server *srv = h->data;
	srv->listener_closed = true;
	iscsi_server_maybe_done(srv);
}

static void iscsi_server_connection(uv_stream_t *s, int status)
{
	struct iscsi_server *srv = s->data;
	if (status < 0) {
		log_warn(ISCSI_LOG, "accept: %s", uv_strerror(status));
		return;
	}
	int rc = iscsi_conn_accept(srv);
	if (rc < 0)
		log_warn(ISCSI_LOG, "accept: %s", uv_strerror(rc));
}

static void iscsi_server_grace_expired(uv_timer_t *t)
{
	struct iscsi_server *srv = t->data;
	struct iscsi_conn *c, *next;
	for (c = TAILQ_FIRST(&srv->conns); c; c = next) {
		next = TAILQ_NEXT(c, link);
		iscsi_conn_close(c, true);
	}
}

static int iscsi_server_open_luns(struct iscsi_server *srv, char *err,
				  size_t errlen)
{
	int rc = scsi_target_create(srv->loop, srv->pool, &srv->scsi);
	if (rc < 0) {
		snprintf(err, errlen, "iscsi: SCSI target: %s", strerror(-rc));
		return rc;
	}
	srv->tgts = calloc(srv->cfg->ntargets, sizeof(*srv->tgts));
	if (!srv->tgts)
		return -ENOMEM;
	srv->ntgts = srv->cfg->ntargets;
	for (unsigned i = 0; i < srv->ntgts; i++) {
		const struct iscsi_cfg_target *ct = &srv->cfg->targets[i];
		struct iscsi_tgt *t = &srv->tgts[i];
		t->cfg = ct;
		t->map.e = calloc(ct->nluns, sizeof(*t->map.e));
		if (!t->map.e)
			return -ENOMEM;
		for (unsigned j = 0; j < ct->nluns; j++) {
			struct scsi_lu *lu;
			rc = scsi_lu_create(srv->scsi, ct->luns[j].vdisk, &lu);
			if (rc < 0) {
				snprintf(err, errlen,
					 "iscsi: target %s LUN %llu: vdisk "
					 "'%s': %s",
					 ct->name,
					 (unsigned long long)ct->luns[j].lun,
					 ct->luns[j].vdisk, strerror(-rc));
				return rc;
			}
			t->map.e[t->map.n].lun = ct->luns[j].lun;
			t->map.e[t->map.n].lu = lu;
			t->map.n++;
		}
	}
	return 0;
}

int iscsi_server_start(uv_loop_t *loop, struct sds_pool *pool,
		       const char *config_path, struct iscsi_server **out,
		       char *err, size_t errlen)
{
	struct iscsi_config *cfg;
	int rc = iscsi_config_load(config_path, &cfg, err, errlen);
	if (rc < 0)
		return rc;
	char port[8];
	snprintf(port, sizeof(port), "%u", (unsigned)cfg->port);
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
				 .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *ai = NULL;
	/* Once, at start-up: blocking the loop here is harmless. */
	int gai = getaddrinfo(cfg->host, port, &hints, &ai);
	if (gai != 0) {
		snprintf(err, errlen, "iscsi: cannot resolve %s: %s", cfg->host,
			 gai_strerror(gai));
		iscsi_config_free(cfg);
		return -EINVAL;
	}
	struct iscsi_server *srv = calloc(1, sizeof(*srv));
	if (!srv) {
		freeaddrinfo(ai);
		iscsi_config_free(cfg);
		snprintf(err, errlen, "iscsi: out of memory");
		return -ENOMEM;
	}
	srv->loop = loop;
	srv->pool = pool;
	srv->cfg = cfg;
	srv->lim = (struct iscsi_limits){
	    .max_recv_dsl = ISCSI_MAX_RECV_DSL,
	    .max_burst = 1u << 20,
	    .first_burst = 256u << 10,
	    .max_connections = 8,
	    .max_outstanding_r2t = ISCSI_MAX_R2T,
	    .immediate_data = true,
	    .initial_r2t = false,
	};
	TAILQ_INIT(&srv->conns);
	TAILQ_INIT(&srv->sessions);
	iscsi_conn_pools_init(srv);
	uv_timer_init(loop, &srv->grace);
	srv->grace.data = srv;
	uv_prepare_init(loop, &srv->flush);
	srv->flush.data = srv;
	uv_tcp_init(loop, &srv->listener);
	srv->listener.data = srv;
	srv->closing = false;
	rc = iscsi_server_open_luns(srv, err, errlen);
	if (rc == 0) {
		rc = uv_tcp_bind(&srv->listener, ai->ai_addr, 0);
		if (rc == 0)
			rc = uv_listen((uv_stream_t *)&srv->listener,
				       ISCSI_BACKLOG, iscsi_server_connection);
		if (rc < 0)
			snprintf(err, errlen,
				 "iscsi: cannot listen on %s:%u: %s", cfg->host,
				 (unsigned)cfg->port, uv_strerror(rc));
	} else if (!err[0]) {
		snprintf(err, errlen, "iscsi: %s", strerror(-rc));
	}
	freeaddrinfo(ai);
	if (rc < 0) {
		/* The handles are closed on the loop; the server is freed
		 * from the last close callback. */
		srv->closing = true;
		iscsi_server_free_luns(srv); /* the pool may close next */
		uv_close((uv_handle_t *)&srv->listener,
			 iscsi_server_listener_closed);
		return rc;
	}
	struct sockaddr_storage ss;
	int sl = sizeof(ss);
	uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&ss, &sl);
	srv->port = ss.ss_family == AF_INET6
			? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
			: ntohs(((struct sockaddr_in *)&ss)->sin_port);
	log_info(ISCSI_LOG, "listening on %s:%u, %u target(s)", cfg->host,
		 (unsigned)srv->port, srv->ntgts);
	*out = srv;
	return 0;
}

uint16_t iscsi_server_port(const struct iscsi_server *srv)
{
	return srv->port;
}

const char *iscsi_server_host(const struct iscsi_server *srv)
{
	return srv->cfg->host;
}

/* Connections still logging in are dropped at once; the others stop
 * reading, let their commands finish and their responses go out, within
 * ISCSI_SHUTDOWN_GRACE_MS. */
void iscsi_server_close(struct iscsi_server *srv, void (*cb)(void *arg),
			void *arg)
{
	if (srv->closing)
		return;
	srv->closing = true;
	srv->close_cb = cb;
	srv->close_arg = arg;
	uv_close((uv_handle_t *)&srv->listener, iscsi_server_listener_closed);
	uv_timer_start(&srv->grace, iscsi_server_grace_expired,
		       ISCSI_SHUTDOWN_GRACE_MS, 0);
	struct iscsi_conn *c, *next;
	for (c = TAILQ_FIRST(&srv->conns); c; c = next) {
		next = TAILQ_NEXT(c, link);
		iscsi_conn_close(c, c->state == ISCSI_CONN_LOGIN);
	}
	iscsi_server_maybe_done(srv);
}
