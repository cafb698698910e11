/* cairnd: the Cairn daemon. Thin main: parse arguments, open the pool,
 * serve it over NBD, and on SIGINT/SIGTERM stop in order (NBD server, then
 * pool) and exit 0. The work lives in libcairn.
 *
 * Threading: one thread, one uv loop; the pool and the NBD server run on
 * it (include/cairn/sds.h, include/cairn/nbd.h). */
#include <cairn/iscsi.h>
#include <cairn/nbd.h>
#include <cairn/node.h>
#include <cairn/sds.h>
#include <cairn/vhost.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "log.h"

#define CAIRND_LOG "cairnd"
#define CAIRND_MAX_VHOST 16

struct cairnd_args {
	const char *data;
	char *nbd_host; /* malloc'd */
	uint16_t nbd_port;
	const char *default_export;
	bool no_checksum;
	unsigned commit_interval_ms;
	const char *ready_file;
	const char *iscsi_config; /* --iscsi-config FILE */
	/* --vhost-blk NAME=SOCKETPATH (argv strings, split in place) */
	const char *vhost_name[CAIRND_MAX_VHOST];
	const char *vhost_path[CAIRND_MAX_VHOST];
	unsigned nvhost;
	/* cluster membership (--state and friends; docs/cluster.md) */
	struct node_config node;
};

struct cairnd {
	uv_loop_t loop;
	struct cairnd_args args;
	struct sds_pool *pool;
	struct nbd_server *nbd;
	struct iscsi_server *iscsi;
	struct cairn_node *node;
	struct vhost_blk *vhost[CAIRND_MAX_VHOST];
	unsigned vhost_open;
	uv_signal_t sigint, sigterm;
	bool stopping;
	int exit_code;
};

static void cairnd_usage(FILE *f)
{
	fprintf(f,
		"usage: cairnd --data DIR [--nbd HOST:PORT] "
		"[--default-export NAME]\n"
		"              [--no-checksum] [--commit-interval-ms N] "
		"[--ready-file PATH]\n"
		"              [--vhost-blk NAME=SOCKETPATH]...\n"
		"\n"
		"  --data DIR             pool directory (cairn-sds format)\n"
		"  --nbd HOST:PORT        NBD listen address (default "
		"127.0.0.1:%d;\n"
		"                         port 0 picks a free port, see "
		"--ready-file)\n"
		"  --default-export NAME  vdisk served for an empty export "
		"name\n"
		"  --no-checksum          skip per-block crc32c "
		"(benchmarks only)\n"
		"  --commit-interval-ms N metadata group commit interval\n"
		"  --ready-file PATH      once listening, write "
		"\"nbd=HOST:PORT\\npid=PID\\n\"\n"
		"                         to PATH (atomically)\n"
		"  --vhost-blk NAME=PATH  serve vdisk NAME to QEMU as a "
		"vhost-user-blk\n"
		"                         back end on unix socket PATH "
		"(repeatable)\n"
		"  --state DIR            this node's cluster state (created "
		"with\n"
		"                         --cluster-create NAME, or --join URL "
		"--token T;\n"
		"                         a new node also needs --name, --raft "
		"IP:PORT,\n"
		"                         --api HOST:PORT, optionally --domain "
		"N); the\n"
		"                         ready file gets \"api=HOST:PORT\"\n"
		"  --iscsi-config FILE    also serve the iSCSI targets of FILE "
		"(docs/iscsi.md);\n"
		"                         the ready file gets "
		"\"iscsi=HOST:PORT\"\n"
		"\n"
		"Logging: CAIRN_LOG=error|warn|info|debug.\n",
		NBD_SERVER_DEFAULT_PORT);
}

static int cairnd_parse_uint(const char *s, unsigned long max,
			     unsigned long *out)
{
	char *end;
	if (!*s || *s == '-' || *s == '+')
		return -EINVAL;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || *end || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

/* HOST:PORT, [V6ADDR]:PORT, or :PORT (all addresses). */
static int cairnd_parse_addr(const char *s, struct cairnd_args *a)
{
	const char *colon = strrchr(s, ':');
	if (!colon)
		return -EINVAL;
	unsigned long port;
	if (cairnd_parse_uint(colon + 1, 65535, &port) < 0)
		return -EINVAL;
	const char *h = s;
	size_t hl = (size_t)(colon - s);
	if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	free(a->nbd_host);
	a->nbd_host = hl ? strndup(h, hl) : strdup("0.0.0.0");
	if (!a->nbd_host)
		return -ENOMEM;
	a->nbd_port = (uint16_t)port;
	return 0;
}

/* Returns 0, or the exit status to leave with. */
static int cairnd_parse_args(int argc, char **argv, struct cairnd_args *a)
{
	enum {
		OPT_DATA = 256,
		OPT_NBD,
		OPT_DEFAULT,
		OPT_NOCSUM,
		OPT_COMMIT,
		OPT_READY,
		OPT_ISCSI,
		OPT_VHOST,
		OPT_STATE,
		OPT_CREATE,
		OPT_JOIN,
		OPT_TOKEN,
		OPT_NAME,
		OPT_RAFT,
		OPT_API,
		OPT_DOMAIN,
		OPT_HELP
	};
	static const struct option longopts[] = {
	    {"data", required_argument, NULL, OPT_DATA},
	    {"nbd", required_argument, NULL, OPT_NBD},
	    {"default-export", required_argument, NULL, OPT_DEFAULT},
	    {"no-checksum", no_argument, NULL, OPT_NOCSUM},
	    {"commit-interval-ms", required_argument, NULL, OPT_COMMIT},
	    {"ready-file", required_argument, NULL, OPT_READY},
	    {"iscsi-config", required_argument, NULL, OPT_ISCSI},
	    {"vhost-blk", required_argument, NULL, OPT_VHOST},
	    {"state", required_argument, NULL, OPT_STATE},
	    {"cluster-create", required_argument, NULL, OPT_CREATE},
	    {"join", required_argument, NULL, OPT_JOIN},
	    {"token", required_argument, NULL, OPT_TOKEN},
	    {"name", required_argument, NULL, OPT_NAME},
	    {"raft", required_argument, NULL, OPT_RAFT},
	    {"api", required_argument, NULL, OPT_API},
	    {"domain", required_argument, NULL, OPT_DOMAIN},
	    {"help", no_argument, NULL, OPT_HELP},
	    {NULL, 0, NULL, 0},
	};
	unsigned long v;
	int o;
	opterr = 0;
	while ((o = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (o) {
		case OPT_DATA:
			a->data = optarg;
			break;
		case OPT_NBD:
			if (cairnd_parse_addr(optarg, a) < 0) {
				fprintf(stderr,
					"cairnd: --nbd: expected HOST:PORT, "
					"got '%s'\n",
					optarg);
				return 2;
			}
			break;
		case OPT_DEFAULT:
			a->default_export = optarg;
			break;
		case OPT_NOCSUM:
			a->no_checksum = true;
			break;
		case OPT_COMMIT:
			if (cairnd_parse_uint(optarg, UINT_MAX, &v) < 0) {
				fprintf(stderr,
					"cairnd: --commit-interval-ms: "
					"expected a number, got '%s'\n",
					optarg);
				return 2;
			}
			a->commit_interval_ms = (unsigned)v;
			break;
		case OPT_READY:
			a->ready_file = optarg;
			break;
		case OPT_ISCSI:
			a->iscsi_config = optarg;
			break;
		case OPT_VHOST: {
			char *eq = strchr(optarg, '=');
			if (!eq || eq == optarg || !eq[1] ||
			    a->nvhost == CAIRND_MAX_VHOST) {
				fprintf(stderr,
					"cairnd: --vhost-blk: expected "
					"NAME=SOCKETPATH (at most %d), got "
					"'%s'\n",
					CAIRND_MAX_VHOST, optarg);
				return 2;
			}
			*eq = '\0';
			a->vhost_name[a->nvhost] = optarg;
			a->vhost_path[a->nvhost++] = eq + 1;
			break;
		}
		case OPT_STATE:
			a->node.state_dir = optarg;
			break;
		case OPT_CREATE:
			a->node.create_cluster = optarg;
			break;
		case OPT_JOIN:
			a->node.join_url = optarg;
			break;
		case OPT_TOKEN:
			a->node.join_token = optarg;
			break;
		case OPT_NAME:
			a->node.name = optarg;
			break;
		case OPT_RAFT:
			a->node.raft_address = optarg;
			break;
		case OPT_API:
			a->node.api_address = optarg;
			break;
		case OPT_DOMAIN: {
			unsigned long dom;
			if (cairnd_parse_uint(optarg, UINT32_MAX, &dom)) {
				fprintf(stderr, "cairnd: bad --domain '%s'\n",
					optarg);
				return 2;
			}
			a->node.domain = (uint32_t)dom;
			break;
		}
		case OPT_HELP:
			cairnd_usage(stdout);
			return -1;
		default:
			if (optopt)
				fprintf(stderr, "cairnd: %s needs a value\n",
					argv[optind - 1]);
			else
				fprintf(stderr, "cairnd: unknown option '%s'\n",
					argv[optind - 1]);
			cairnd_usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "cairnd: unexpected argument '%s'\n",
			argv[optind]);
		cairnd_usage(stderr);
		return 2;
	}
	if (!a->data) {
		fprintf(stderr, "cairnd: --data DIR is required\n");
		cairnd_usage(stderr);
		return 2;
	}
	if (!a->nbd_host && cairnd_parse_addr("127.0.0.1:10809", a) < 0)
		return 1;
	return 0;
}

/* Written to PATH.tmp then renamed, so a reader never sees half a file. */
static int cairnd_write_ready(struct cairnd *d)
{
	const char *path = d->args.ready_file;
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	FILE *f = fopen(tmp, "w");
	if (!f)
		return -errno;
	bool v6 = strchr(d->args.nbd_host, ':') != NULL;
	fprintf(f, "nbd=%s%s%s:%u\npid=%ld\n", v6 ? "[" : "", d->args.nbd_host,
		v6 ? "]" : "", (unsigned)nbd_server_port(d->nbd),
		(long)getpid());
	if (d->node)
		fprintf(f, "api=%s\n", d->args.node.api_address
					       ? d->args.node.api_address
					       : "");
	if (d->iscsi) {
		const char *ih = iscsi_server_host(d->iscsi);
		bool i6 = strchr(ih, ':') != NULL;
		fprintf(f, "iscsi=%s%s%s:%u\n", i6 ? "[" : "", ih,
			i6 ? "]" : "", (unsigned)iscsi_server_port(d->iscsi));
	}
	if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
		int e = errno;
		fclose(f);
		unlink(tmp);
		return -e;
	}
	fclose(f);
	if (rename(tmp, path) < 0) {
		int e = errno;
		unlink(tmp);
		return -e;
	}
	return 0;
}

static void cairnd_pool_closed(void *arg)
{
	struct cairnd *d = arg;
	d->pool = NULL;
	uv_close((uv_handle_t *)&d->sigint, NULL);
	uv_close((uv_handle_t *)&d->sigterm, NULL);
	log_info(CAIRND_LOG, "stopped");
}

static void cairnd_nbd_closed(void *arg)
{
	struct cairnd *d = arg;
	d->nbd = NULL;
	sds_pool_close(d->pool, cairnd_pool_closed, d);
}

/* iSCSI stops first: its LUNs hold vdisk handles of the pool. */
static void cairnd_iscsi_closed(void *arg)
{
	struct cairnd *d = arg;
	d->iscsi = NULL;
	if (d->nbd)
		nbd_server_close(d->nbd, cairnd_nbd_closed, d);
	else
		sds_pool_close(d->pool, cairnd_pool_closed, d);
}

static void cairnd_stop(struct cairnd *d);

/* The last vhost-user back end is closed: stop the rest. */
static void cairnd_vhost_closed(void *arg)
{
	struct cairnd *d = arg;
	if (--d->vhost_open)
		return;
	d->stopping = false;
	cairnd_stop(d);
}

/* Returns 0, or -errno after printing why. */
static int cairnd_start_vhost(struct cairnd *d)
{
	char err[512];
	for (unsigned i = 0; i < d->args.nvhost; i++) {
		struct vhost_blk_opts vo = {
		    .socket_path = d->args.vhost_path[i],
		    .vdisk = d->args.vhost_name[i],
		};
		int rc = vhost_blk_start(&d->loop, d->pool, &vo, &d->vhost[i],
					 err, sizeof(err));
		if (rc < 0) {
			fprintf(stderr, "cairnd: %s\n", err);
			return rc;
		}
		d->vhost_open++;
	}
	return 0;
}

/* The cluster node is gone: stop the rest. */
static void cairnd_node_stopped(void *arg)
{
	struct cairnd *d = arg;
	d->node = NULL;
	d->stopping = false;
	cairnd_stop(d);
}

static void cairnd_stop(struct cairnd *d)
{
	if (d->stopping)
		return;
	d->stopping = true;
	if (d->args.ready_file)
		unlink(d->args.ready_file);
	/* The cluster node first: its API answers from the cluster. */
	if (d->node) {
		node_stop(d->node, cairnd_node_stopped, d);
		return;
	}
	/* vhost-user back ends first (they hold vdisk handles); the rest
	 * follows from cairnd_vhost_closed. */
	if (d->vhost_open) {
		for (unsigned i = 0; i < d->args.nvhost; i++)
			if (d->vhost[i])
				vhost_blk_close(d->vhost[i],
						cairnd_vhost_closed, d);
		return;
	}
	if (d->iscsi)
		iscsi_server_close(d->iscsi, cairnd_iscsi_closed, d);
	else if (d->nbd)
		nbd_server_close(d->nbd, cairnd_nbd_closed, d);
	else
		sds_pool_close(d->pool, cairnd_pool_closed, d);
}

static void cairnd_signal(uv_signal_t *s, int signum)
{
	struct cairnd *d = s->data;
	log_info(CAIRND_LOG, "%s: stopping", strsignal(signum));
	cairnd_stop(d);
}

int main(int argc, char **argv)
{
	struct cairnd d = {0};
	char err[512] = "";
	log_init();
	int rc = cairnd_parse_args(argc, argv, &d.args);
	if (rc) {
		free(d.args.nbd_host);
		return rc < 0 ? 0 : rc;
	}
	/* Peers that vanish must not kill the daemon: writes to their
	 * sockets fail with EPIPE instead. */
	signal(SIGPIPE, SIG_IGN);
	if (d.args.ready_file)
		unlink(d.args.ready_file);

	uv_loop_init(&d.loop);
	uv_signal_init(&d.loop, &d.sigint);
	uv_signal_init(&d.loop, &d.sigterm);
	d.sigint.data = d.sigterm.data = &d;

	struct sds_pool_opts po = {
	    .commit_interval_ms = d.args.commit_interval_ms,
	    .no_checksum = d.args.no_checksum,
	    /* vhost-user-blk acknowledges writes logged (docs/vhost.md) */
	    .log = d.args.nvhost > 0,
	};
	rc =
	    sds_pool_open(&d.loop, d.args.data, &po, &d.pool, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "cairnd: %s: %s\n", d.args.data,
			err[0] ? err : strerror(-rc));
		uv_close((uv_handle_t *)&d.sigint, NULL);
		uv_close((uv_handle_t *)&d.sigterm, NULL);
		uv_run(&d.loop, UV_RUN_DEFAULT);
		uv_loop_close(&d.loop);
		free(d.args.nbd_host);
		return 1;
	}
	d.exit_code = 0;

	struct nbd_server_opts no = {
	    .host = d.args.nbd_host,
	    .port = d.args.nbd_port,
	    .default_export = d.args.default_export,
	};
	rc = nbd_server_start(&d.loop, d.pool, &no, &d.nbd, err, sizeof(err));
	if (rc == 0 && d.args.iscsi_config) {
		rc = iscsi_server_start(&d.loop, d.pool, d.args.iscsi_config,
					&d.iscsi, err, sizeof(err));
		if (rc < 0) {
			fprintf(stderr, "cairnd: %s\n", err);
			d.iscsi = NULL;
			d.exit_code = 1;
			cairnd_stop(&d);
		}
	}
	if (rc == 0 && !d.stopping && cairnd_start_vhost(&d) < 0) {
		d.exit_code = 1;
		cairnd_stop(&d);
	}
	if (rc == 0 && !d.stopping && d.args.node.state_dir) {
		rc = node_start(&d.loop, &d.args.node, &d.node, err,
				sizeof(err));
		if (rc < 0) {
			fprintf(stderr, "cairnd: cluster: %s\n", err);
			d.node = NULL;
			d.exit_code = 1;
			rc = 0; /* reported; stop the rest in order */
			cairnd_stop(&d);
		}
	}
	if (rc < 0 && !d.stopping) {
		fprintf(stderr, "cairnd: %s\n", err);
		d.nbd = NULL;
		d.exit_code = 1;
		cairnd_stop(&d);
	} else if (!d.stopping) {
		uv_signal_start(&d.sigint, cairnd_signal, SIGINT);
		uv_signal_start(&d.sigterm, cairnd_signal, SIGTERM);
		if (d.args.ready_file && (rc = cairnd_write_ready(&d)) < 0) {
			fprintf(stderr, "cairnd: %s: %s\n", d.args.ready_file,
				strerror(-rc));
			d.exit_code = 1;
			cairnd_stop(&d);
		} else {
			log_info(CAIRND_LOG, "ready: pool %s, nbd port %u",
				 d.args.data, (unsigned)nbd_server_port(d.nbd));
		}
	}

	uv_run(&d.loop, UV_RUN_DEFAULT);
	rc = uv_loop_close(&d.loop);
	if (rc < 0) {
		log_error(CAIRND_LOG, "loop still busy at exit: %s",
			  uv_strerror(rc));
		d.exit_code = 1;
	}
	free(d.args.nbd_host);
	return d.exit_code;
}
