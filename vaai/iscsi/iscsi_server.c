/* iSCSI server: the configuration, the SCSI target and its logical units,
 * the listener, the set of connections and sessions, and the shutdown
 * sequence. See include/cairn/iscsi.h and docs/iscsi.md. */
#include <errno.h>
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

/* srv_ops.closed: every connection and handle is gone. */
static void iscsi_server_closed(struct srv *net)
{
	struct iscsi_server *srv = container_of(net, struct iscsi_server, net);
	iscsi_server_free_luns(srv);
	iscsi_config_free(srv->cfg);
	iscsi_conn_pools_drain(srv);
	free(srv);
}

static const struct srv_ops iscsi_server_ops = {
    .version = SRV_OPS_VERSION,
    .name = ISCSI_LOG,
    .accept = iscsi_conn_accept,
    .flush = iscsi_conn_flush_cb,
    .shutdown = iscsi_conn_shutdown,
    .closed = iscsi_server_closed,
};

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
	struct iscsi_server *srv = calloc(1, sizeof(*srv));
	if (!srv || srv_init(&srv->net, loop, &iscsi_server_ops) < 0) {
		free(srv);
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
	TAILQ_INIT(&srv->sessions);
	iscsi_conn_pools_init(srv);
	rc = iscsi_server_open_luns(srv, err, errlen);
	if (rc < 0 && !err[0])
		snprintf(err, errlen, "iscsi: %s", strerror(-rc));
	if (rc == 0)
		rc = srv_listen(&srv->net, cfg->host, cfg->port, ISCSI_BACKLOG,
				err, errlen);
	if (rc < 0) {
		/* The handles are closed on the loop; the server is freed
		 * from the last close callback. */
		iscsi_server_free_luns(srv); /* the pool may close next */
		srv_abort(&srv->net);
		return rc;
	}
	log_info(ISCSI_LOG, "listening on %s:%u, %u target(s)", cfg->host,
		 (unsigned)srv->net.port, srv->ntgts);
	*out = srv;
	return 0;
}

uint16_t iscsi_server_port(const struct iscsi_server *srv)
{
	return srv->net.port;
}

const char *iscsi_server_host(const struct iscsi_server *srv)
{
	return srv->cfg->host;
}

/* Connections still logging in are dropped at once; the others stop
 * reading, let their commands finish and their responses go out, within
 * ISCSI_SHUTDOWN_GRACE_MS (iscsi_conn_shutdown). */
void iscsi_server_close(struct iscsi_server *srv, void (*cb)(void *arg),
			void *arg)
{
	srv_close(&srv->net, ISCSI_SHUTDOWN_GRACE_MS, cb, arg);
}
