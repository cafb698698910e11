/* cairn-hostd's private header: the agent, its VMs, its API connections. */
#ifndef CAIRN_HOSTD_INTERNAL_H
#define CAIRN_HOSTD_INTERNAL_H

#include <cairn/hostd.h>
#include <limits.h>
#include <stdbool.h>
#include <sys/queue.h>
#include <uv.h>

#include "qmp.h"
#include "util.h"

#define HOSTD_LOG "hostd"
#define HOSTD_DEFAULT_BRIDGE "cairnbr0"
#define HOSTD_QMP_RETRY_MS 10
#define HOSTD_QMP_CONNECT_MS 30000
#define HOSTD_KILL_GRACE_MS 3000
#define HOSTD_POLL_MS 250
#define HOSTD_BACKOFF_MIN_MS 1000
#define HOSTD_BACKOFF_MAX_MS 30000
#define HOSTD_STABLE_MS 60000 /* a VM up this long resets its backoff */

struct hostd;

/* One spawned QEMU; lives until its handle is closed (after exit). */
struct hostd_proc {
	uv_process_t p;
	struct hostd_vm *vm; /* NULL once the VM is gone */
	struct hostd *h;
};

struct hostd_vm {
	TAILQ_ENTRY(hostd_vm) link;
	struct hostd *h;
	struct vm_record rec;
	struct vm_paths paths;
	struct hostd_proc *proc; /* our child, or NULL */
	bool attached;		 /* a QEMU found running at agent start */
	struct qmp *qmp;
	uv_timer_t timer;      /* QMP connect retries, restart backoff */
	uv_timer_t stop_timer; /* powerdown timeout, kill escalation */
	uv_timer_t poll_timer; /* liveness of an attached QEMU */
	unsigned timers_open;
	unsigned connect_ms; /* spent connecting to QMP */
	bool stop_requested, force_requested, guest_shutdown;
	bool pause_requested; /* vm.pause: names the STOP event's reason */
	bool killed; /* SIGKILL sent */
	bool restart_scheduled;
	bool deleting;
	uint64_t started_at_ms;
	unsigned reboots;
	char last_exit[96];
};

struct hostd_conn;

struct hostd {
	uv_loop_t *loop;
	struct hostd_config cfg;
	char state_dir[PATH_MAX];
	char socket_path[PATH_MAX];
	char bridge[VM_BRIDGE_MAX + 1];
	char qemu_bin[PATH_MAX];
	char vm_exec[PATH_MAX]; /* cairn-vm-exec */
	char vhost_dir[PATH_MAX]; /* empty: no {"vdisk": NAME} disks */
	char ovmf_code[PATH_MAX], ovmf_vars[PATH_MAX];
	struct ovmf_files ovmf; /* points at the two above */
	struct hostd_accel_choice accel;
	struct cgroup_ctx cg;
	struct vm_host_limits host;
	TAILQ_HEAD(, hostd_vm) vms;
	TAILQ_HEAD(, hostd_conn) conns;
	uv_pipe_t server;
	bool listening;
	bool shutting_down;
	unsigned closing; /* handles whose close callbacks are pending */
	void (*shutdown_cb)(void *arg);
	void *shutdown_arg;
};

/* hostd.c: VM operations. Each returns 0 or -errno with a message in err. */
struct hostd_vm *hostd_vm_find(struct hostd *h, const char *name);
int hostd_vm_define(struct hostd *h, struct json_t *def, char *err,
		    size_t errlen, struct hostd_vm **out);
int hostd_vm_start(struct hostd_vm *vm, char *err, size_t errlen);
int hostd_vm_stop(struct hostd_vm *vm, unsigned timeout_ms, char *err,
		  size_t errlen);
int hostd_vm_force_stop(struct hostd_vm *vm, char *err, size_t errlen);
int hostd_vm_reboot(struct hostd_vm *vm, char *err, size_t errlen);
int hostd_vm_pause(struct hostd_vm *vm, char *err, size_t errlen);
int hostd_vm_resume(struct hostd_vm *vm, char *err, size_t errlen);
int hostd_vm_delete(struct hostd_vm *vm, char *err, size_t errlen);
struct json_t *hostd_vm_status(const struct hostd_vm *vm);
struct json_t *hostd_host_status(const struct hostd *h);

/* api.c: the unix-socket JSON-lines API. */
int hostd_api_listen(struct hostd *h);
void hostd_api_close(struct hostd *h);
/* Pure dispatch: one request object in, one reply object out. */
struct json_t *hostd_api_handle(struct hostd *h, struct json_t *req);

/* hostd.c: called when a handle owned by the agent finishes closing. */
void hostd__handle_closed(struct hostd *h);

#endif
