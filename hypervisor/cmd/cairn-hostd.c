/* cairn-hostd: the host agent. Thin main: parse arguments, start the agent
 * (hypervisor/hostd/), and on SIGINT/SIGTERM stop it and exit 0.
 *
 * Dev mode: stopping the agent force-stops every VM it runs (docs/
 * hypervisor.md); an agent killed with SIGKILL leaves its VMs running and
 * re-attaches them when it starts again. */
#include <cairn/hostd.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "log.h"

struct hostd_main {
	uv_loop_t loop;
	struct hostd *h;
	uv_signal_t sigint, sigterm;
	const char *ready_file;
};

static void hostd_main_usage(FILE *f)
{
	fprintf(f,
		"usage: cairn-hostd --state-dir DIR --socket PATH "
		"[--accel auto|kvm|tcg]\n"
		"                   [--bridge NAME] [--qemu PATH] "
		"[--cgroup-root DIR]\n"
		"                   [--stop-timeout-ms N] [--ready-file PATH]\n"
		"                   [--vhost-dir DIR] [--leave-vms-running]\n"
		"                   [--ovmf-code FILE] [--ovmf-vars FILE]\n"
		"\n"
		"  --state-dir DIR      VM definitions, state, consoles, "
		"sockets\n"
		"  --socket PATH        the API socket (JSON lines; cairn-vm "
		"talks to it)\n"
		"  --accel MODE         auto (probe KVM, default), kvm or tcg\n"
		"  --bridge NAME        bridge for NICs that name none "
		"(default cairnbr0)\n"
		"  --qemu PATH          qemu-system-x86_64 to run\n"
		"  --cgroup-root DIR    cgroup mount (default /sys/fs/cgroup)\n"
		"  --stop-timeout-ms N  ACPI shutdown grace before force "
		"(default 30000)\n"
		"  --vhost-dir DIR      a {\"vdisk\": NAME} disk is served on "
		"DIR/NAME.sock\n"
		"                       (cairnd --vhost-blk NAME=DIR/NAME.sock)\n"
		"  --leave-vms-running  on SIGTERM/SIGINT leave running VMs "
		"running (their\n"
		"                       QEMUs in sessions of their own) for the "
		"next agent\n"
		"                       to re-attach; default: force-stop them\n"
		"  --ovmf-code FILE     UEFI firmware for {\"firmware\": "
		"\"ovmf\"} VMs\n"
		"                       (default " HOSTD_OVMF_CODE ")\n"
		"  --ovmf-vars FILE     its empty variable store, copied per VM\n"
		"                       (default " HOSTD_OVMF_VARS ")\n"
		"  --ready-file PATH    once listening, write "
		"\"socket=PATH\\npid=PID\\naccel=A\\n\"\n"
		"\n"
		"Logging: CAIRN_LOG=error|warn|info|debug.\n");
}

static int hostd_main_ready(struct hostd_main *m, const char *sock)
{
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", m->ready_file) >=
	    (int)sizeof(tmp))
		return -ENAMETOOLONG;
	FILE *f = fopen(tmp, "w");
	if (!f)
		return -errno;
	fprintf(f, "socket=%s\npid=%ld\naccel=%s\n", sock, (long)getpid(),
		hostd_accel_name(hostd_accel(m->h)->accel));
	if (fclose(f) != 0 || rename(tmp, m->ready_file) < 0) {
		int e = errno;
		unlink(tmp);
		return -e;
	}
	return 0;
}

static void hostd_main_stopped(void *arg)
{
	struct hostd_main *m = arg;
	uv_close((uv_handle_t *)&m->sigint, NULL);
	uv_close((uv_handle_t *)&m->sigterm, NULL);
}

static void hostd_main_signal(uv_signal_t *s, int sig)
{
	struct hostd_main *m = s->data;
	log_info("cairn-hostd", "signal %d: stopping (VMs are force-stopped)",
		 sig);
	hostd_shutdown(m->h, hostd_main_stopped, m);
}

int main(int argc, char **argv)
{
	enum {
		O_STATE = 256,
		O_SOCKET,
		O_ACCEL,
		O_BRIDGE,
		O_QEMU,
		O_VHOST_DIR,
		O_OVMF_CODE,
		O_OVMF_VARS,
		O_CG,
		O_STOP,
		O_READY,
		O_LEAVE,
		O_HELP
	};
	static const struct option longopts[] = {
	    {"state-dir", required_argument, NULL, O_STATE},
	    {"socket", required_argument, NULL, O_SOCKET},
	    {"accel", required_argument, NULL, O_ACCEL},
	    {"bridge", required_argument, NULL, O_BRIDGE},
	    {"qemu", required_argument, NULL, O_QEMU},
	    {"vhost-dir", required_argument, NULL, O_VHOST_DIR},
	    {"ovmf-code", required_argument, NULL, O_OVMF_CODE},
	    {"ovmf-vars", required_argument, NULL, O_OVMF_VARS},
	    {"cgroup-root", required_argument, NULL, O_CG},
	    {"stop-timeout-ms", required_argument, NULL, O_STOP},
	    {"ready-file", required_argument, NULL, O_READY},
	    {"leave-vms-running", no_argument, NULL, O_LEAVE},
	    {"help", no_argument, NULL, O_HELP},
	    {NULL, 0, NULL, 0},
	};
	struct hostd_config cfg = {.accel = HOSTD_ACCEL_AUTO};
	struct hostd_main m = {0};
	int o;
	opterr = 0;
	while ((o = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (o) {
		case O_STATE:
			cfg.state_dir = optarg;
			break;
		case O_SOCKET:
			cfg.socket_path = optarg;
			break;
		case O_ACCEL:
			if (!strcmp(optarg, "auto"))
				cfg.accel = HOSTD_ACCEL_AUTO;
			else if (!strcmp(optarg, "kvm"))
				cfg.accel = HOSTD_ACCEL_KVM;
			else if (!strcmp(optarg, "tcg"))
				cfg.accel = HOSTD_ACCEL_TCG;
			else {
				fprintf(stderr, "cairn-hostd: --accel: auto, "
						"kvm or tcg\n");
				return 2;
			}
			break;
		case O_BRIDGE:
			if (strlen(optarg) == 0 ||
			    strlen(optarg) > VM_BRIDGE_MAX) {
				fprintf(stderr, "cairn-hostd: --bridge: bad "
						"interface name\n");
				return 2;
			}
			cfg.bridge = optarg;
			break;
		case O_VHOST_DIR:
			cfg.vhost_dir = optarg;
			break;
		case O_OVMF_CODE:
			cfg.ovmf_code = optarg;
			break;
		case O_OVMF_VARS:
			cfg.ovmf_vars = optarg;
			break;
		case O_QEMU:
			cfg.qemu_bin = optarg;
			break;
		case O_CG:
			cfg.cgroup_root = optarg;
			break;
		case O_STOP: {
			char *end;
			unsigned long v = strtoul(optarg, &end, 10);
			if (*end || v == 0 || v > 3600000) {
				fprintf(stderr,
					"cairn-hostd: --stop-timeout-ms: "
					"1..3600000\n");
				return 2;
			}
			cfg.stop_timeout_ms = (unsigned)v;
			break;
		}
		case O_READY:
			m.ready_file = optarg;
			break;
		case O_LEAVE:
			cfg.leave_vms_running = true;
			break;
		case O_HELP:
			hostd_main_usage(stdout);
			return 0;
		default:
			fprintf(stderr, "cairn-hostd: bad option '%s'\n",
				argv[optind - 1]);
			hostd_main_usage(stderr);
			return 2;
		}
	}
	if (optind < argc || !cfg.state_dir || !cfg.socket_path) {
		hostd_main_usage(stderr);
		return 2;
	}
	log_init();
	signal(SIGPIPE, SIG_IGN);
	uv_loop_init(&m.loop);
	int rc = hostd_new(&m.loop, &cfg, &m.h);
	if (rc < 0) {
		fprintf(stderr, "cairn-hostd: cannot start: %s\n",
			strerror(-rc));
		uv_loop_close(&m.loop);
		return 1;
	}
	uv_signal_init(&m.loop, &m.sigint);
	uv_signal_init(&m.loop, &m.sigterm);
	m.sigint.data = m.sigterm.data = &m;
	uv_signal_start(&m.sigint, hostd_main_signal, SIGINT);
	uv_signal_start(&m.sigterm, hostd_main_signal, SIGTERM);
	if (m.ready_file && (rc = hostd_main_ready(&m, cfg.socket_path)) < 0)
		log_error("cairn-hostd", "ready file %s: %s", m.ready_file,
			  strerror(-rc));
	log_info("cairn-hostd", "listening on %s", cfg.socket_path);
	uv_run(&m.loop, UV_RUN_DEFAULT);
	hostd_free(m.h);
	rc = uv_loop_close(&m.loop);
	if (rc < 0)
		log_warn("cairn-hostd", "loop close: %s", uv_strerror(rc));
	return 0;
}
