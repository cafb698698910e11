/* The agent: VMs, their QEMU processes, supervision and recovery.
 *
 * A VM moves through the states of vm_state.c; every change is persisted
 * before anything else happens. QEMU is our child (uv_spawn), so its exit is
 * reported with a status; the QMP connection gives the guest's side
 * (SHUTDOWN with guest=true means the guest powered itself off, which is a
 * stop, not a crash). A QEMU found alive when the agent starts (the agent
 * died, QEMU did not) is re-attached through its QMP socket and watched by
 * polling its pid, since it is no longer our child.
 *
 * Restart policy: on-crash restarts a crashed VM, always also restarts a VM
 * whose guest powered off; never a VM stopped through the API. The delay
 * doubles from 1 s up to 30 s and goes back to 1 s once a VM has run 60 s. */
#include "hostd_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "log.h"

static void hostd__vm_connect_qmp(struct hostd_vm *vm);
static void hostd__vm_exited(struct hostd_vm *vm, const char *how);
static void hostd__maybe_finish_shutdown(struct hostd *h);

static uint64_t hostd__now_ms(struct hostd *h)
{
	return uv_now(h->loop);
}

/* Moves the VM to `to` and persists it; an invalid transition is a bug. */
static void hostd__set_state(struct hostd_vm *vm, enum vm_state to,
			     const char *reason)
{
	enum vm_state from = vm->rec.state;
	if (from != to && !vm_state_transition_ok(from, to)) {
		log_error(HOSTD_LOG, "%s: refused transition %s -> %s (%s)",
			  vm->rec.def.name, vm_state_name(from),
			  vm_state_name(to), reason);
		return;
	}
	vm->rec.state = to;
	if (reason)
		snprintf(vm->rec.reason, sizeof(vm->rec.reason), "%s", reason);
	int rc = vm_record_save(vm->h->state_dir, &vm->rec);
	if (rc < 0)
		log_error(HOSTD_LOG, "%s: cannot persist state: %s",
			  vm->rec.def.name, strerror(-rc));
	log_info(HOSTD_LOG, "%s: %s -> %s (%s)", vm->rec.def.name,
		 vm_state_name(from), vm_state_name(to), reason ? reason : "");
}

struct hostd_vm *hostd_vm_find(struct hostd *h, const char *name)
{
	struct hostd_vm *vm;
	TAILQ_FOREACH(vm, &h->vms, link)
	{
		if (!strcmp(vm->rec.def.name, name) && !vm->deleting)
			return vm;
	}
	return NULL;
}

static void hostd__timer_closed(uv_handle_t *hd)
{
	struct hostd_vm *vm = hd->data;
	struct hostd *h = vm->h;
	if (--vm->timers_open == 0) {
		vm_def_free(&vm->rec.def);
		free(vm);
	}
	hostd__handle_closed(h);
}

static void hostd__vm_free(struct hostd_vm *vm)
{
	TAILQ_REMOVE(&vm->h->vms, vm, link);
	if (vm->qmp) {
		qmp_close(vm->qmp);
		vm->qmp = NULL;
	}
	vm->h->closing += 3;
	uv_close((uv_handle_t *)&vm->timer, hostd__timer_closed);
	uv_close((uv_handle_t *)&vm->stop_timer, hostd__timer_closed);
	uv_close((uv_handle_t *)&vm->poll_timer, hostd__timer_closed);
}

static struct hostd_vm *hostd__vm_new(struct hostd *h)
{
	struct hostd_vm *vm = calloc(1, sizeof(*vm));
	if (!vm)
		return NULL;
	vm->h = h;
	uv_timer_init(h->loop, &vm->timer);
	uv_timer_init(h->loop, &vm->stop_timer);
	uv_timer_init(h->loop, &vm->poll_timer);
	vm->timer.data = vm->stop_timer.data = vm->poll_timer.data = vm;
	vm->timers_open = 3;
	TAILQ_INSERT_TAIL(&h->vms, vm, link);
	return vm;
}

static int hostd__random_uuid(char out[VM_UUID_STR])
{
	uint8_t b[16];
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, b, sizeof(b));
	close(fd);
	if (n != (ssize_t)sizeof(b))
		return -EIO;
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
	snprintf(out, VM_UUID_STR,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
		 "%02x%02x%02x%02x%02x%02x",
		 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9],
		 b[10], b[11], b[12], b[13], b[14], b[15]);
	return 0;
}

int hostd_vm_define(struct hostd *h, struct json_t *j, char *err, size_t errlen,
		    struct hostd_vm **out)
{
	struct vm_def d;
	int rc = vm_def_from_json(j, &d, err, errlen);
	if (rc < 0)
		goto fail;
	if ((rc = vm_def_resolve_vdisks(&d, h->cfg.vhost_dir, err, errlen)) <
		0 ||
	    (rc = vm_def_validate(&d, &h->host, true, err, errlen)) < 0)
		goto fail;
	struct hostd_vm *o;
	TAILQ_FOREACH(o, &h->vms, link)
	{
		if (!strcmp(o->rec.def.name, d.name)) {
			snprintf(err, errlen, "a VM named %s exists already",
				 d.name);
			rc = -EEXIST;
			goto fail;
		}
		if (d.uuid[0] && !strcmp(o->rec.def.uuid, d.uuid)) {
			snprintf(err, errlen, "VM %s has uuid %s already",
				 o->rec.def.name, d.uuid);
			rc = -EEXIST;
			goto fail;
		}
	}
	if (!d.uuid[0]) {
		if ((rc = hostd__random_uuid(d.uuid)) < 0) {
			snprintf(err, errlen, "cannot make a uuid");
			goto fail;
		}
		vm_def_fill_macs(&d);
	}
	struct hostd_vm *vm = hostd__vm_new(h);
	if (!vm) {
		rc = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if ((rc = vm_paths_init(&vm->paths, h->state_dir, d.name)) < 0) {
		snprintf(err, errlen, "state dir path too long for sockets");
		memset(&vm->rec.def, 0, sizeof(vm->rec.def));
		hostd__vm_free(vm);
		goto fail;
	}
	vm->rec.def = d;
	vm->rec.state = VM_DEFINED;
	snprintf(vm->rec.reason, sizeof(vm->rec.reason), "defined");
	/* A new VM gets an empty variable store, even if a file of an
	 * earlier VM of that name is still there. */
	bool uefi = vm_def_uefi(&d);
	if (uefi && ((rc = ovmf_check(&h->ovmf, err, errlen)) < 0 ||
		     (rc = ovmf_nvram_create(&h->ovmf, vm->paths.nvram, err,
					     errlen)) < 0)) {
		hostd__vm_free(vm);
		return rc;
	}
	if ((rc = vm_record_save(h->state_dir, &vm->rec)) < 0) {
		snprintf(err, errlen, "cannot save the definition: %s",
			 strerror(-rc));
		if (uefi)
			unlink(vm->paths.nvram);
		hostd__vm_free(vm);
		return rc;
	}
	log_info(HOSTD_LOG, "%s: defined (uuid %s)", d.name, d.uuid);
	if (out)
		*out = vm;
	return 0;
fail:
	vm_def_free(&d);
	return rc;
}

/* ---- QEMU process ---- */

static void hostd__proc_closed(uv_handle_t *hd)
{
	struct hostd_proc *p = hd->data;
	struct hostd *h = p->h;
	free(p);
	hostd__handle_closed(h);
}

static void hostd__proc_exit(uv_process_t *up, int64_t status, int sig)
{
	struct hostd_proc *p = up->data;
	struct hostd_vm *vm = p->vm;
	char how[96];
	if (sig)
		snprintf(how, sizeof(how), "QEMU killed by signal %d", sig);
	else
		snprintf(how, sizeof(how), "QEMU exited with status %lld",
			 (long long)status);
	vm->proc = NULL;
	vm->h->closing++;
	uv_close((uv_handle_t *)up, hostd__proc_closed);
	hostd__vm_exited(vm, how);
}

static void hostd__cleanup_runtime(struct hostd_vm *vm)
{
	for (unsigned i = 0; i < vm->rec.def.n_nics; i++) {
		char tap[16];
		vm_tap_name(&vm->rec.def, i, tap);
		net_tap_remove(tap);
	}
	cgroup_vm_remove(&vm->h->cg, vm->rec.def.name);
	unlink(vm->paths.qmp);
	unlink(vm->paths.serial);
	unlink(vm->paths.pidfile);
}

static int hostd__mkdirs(const char *path)
{
	char p[PATH_MAX];
	str_copy(p, path, sizeof(p));
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0755) < 0 && errno != EEXIST)
			return -errno;
		*s = '/';
	}
	return mkdir(p, 0755) < 0 && errno != EEXIST ? -errno : 0;
}

static int hostd__spawn(struct hostd_vm *vm, char *err, size_t errlen)
{
	struct hostd *h = vm->h;
	struct vm_def *d = &vm->rec.def;
	char **argv = NULL, **spawn_argv = NULL;
	struct cgroup_join cj = {0};
	int rc, logfd = -1;
	unsigned taps = 0;

	/* Resolved at every start: definitions loaded from the state dir
	 * carry the vdisk name only. */
	if ((rc = vm_def_resolve_vdisks(d, h->cfg.vhost_dir, err, errlen)) <
		0 ||
	    (rc = vm_def_validate(d, &h->host, true, err, errlen)) < 0)
		return rc;
	if (vm_def_uefi(d)) {
		if ((rc = ovmf_nvram_prepare(&h->ovmf, vm->paths.nvram, err,
					     errlen)) < 0)
			return rc;
		if (rc == 1)
			log_warn(HOSTD_LOG,
				 "%s: no UEFI variable store; made %s from "
				 "the template",
				 d->name, vm->paths.nvram);
	}
	if ((rc = hostd__mkdirs(vm->paths.dir)) < 0) {
		snprintf(err, errlen, "mkdir %s: %s", vm->paths.dir,
			 strerror(-rc));
		return rc;
	}
	hostd__cleanup_runtime(vm);
	/* Each boot gets a fresh console log; the previous one is kept. */
	char old[300];
	snprintf(old, sizeof(old), "%s.1", vm->paths.console);
	rename(vm->paths.console, old);
	for (; taps < d->n_nics; taps++) {
		char tap[16];
		const char *br =
		    d->nics[taps].bridge[0] ? d->nics[taps].bridge : h->bridge;
		vm_tap_name(d, taps, tap);
		if ((rc = net_bridge_ensure(br)) < 0 ||
		    (rc = net_tap_create(tap, br)) < 0) {
			snprintf(err, errlen, "cannot set up tap %s on %s", tap,
				 br);
			goto fail;
		}
	}
	/* Limits are in place before QEMU exists (cgroup.c). */
	if ((rc = cgroup_vm_setup(&h->cg, d->name, d->cpu_limit_pct,
				  d->memory_limit_mib, &cj, err, errlen)) < 0)
		goto fail;
	struct qemu_host qh = {.accel = h->accel.accel,
			       .qemu_bin = h->qemu_bin,
			       .ovmf_code = h->ovmf_code};
	if ((rc = qemu_build_argv(d, &vm->paths, &qh, &argv)) < 0) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (cj.n) {
		/* cairn-vm-exec DIR... -- QEMU ARGS: same process, joined. */
		size_t na = 0;
		while (argv[na])
			na++;
		if (!(spawn_argv = calloc(na + cj.n + 3, sizeof(char *)))) {
			rc = -ENOMEM;
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		size_t k = 0;
		spawn_argv[k++] = h->vm_exec;
		for (unsigned i = 0; i < cj.n; i++)
			spawn_argv[k++] = cj.dirs[i];
		spawn_argv[k++] = "--";
		for (size_t i = 0; i < na; i++)
			spawn_argv[k++] = argv[i];
	}
	logfd = open(vm->paths.qemu_log,
		     O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (logfd < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", vm->paths.qemu_log,
			 strerror(errno));
		goto fail;
	}
	struct hostd_proc *p = calloc(1, sizeof(*p));
	if (!p) {
		rc = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	p->vm = vm;
	p->h = h;
	p->p.data = p;
	uv_stdio_container_t stdio[3] = {
	    {.flags = UV_IGNORE},
	    {.flags = UV_INHERIT_FD, .data.fd = logfd},
	    {.flags = UV_INHERIT_FD, .data.fd = logfd},
	};
	char **run = spawn_argv ? spawn_argv : argv;
	uv_process_options_t opt = {
	    .exit_cb = hostd__proc_exit,
	    .file = run[0],
	    .args = run,
	    .stdio_count = 3,
	    .stdio = stdio,
	    .flags = h->cfg.leave_vms_running ? UV_PROCESS_DETACHED : 0,
	};
	rc = uv_spawn(h->loop, &p->p, &opt);
	if (rc < 0) {
		snprintf(err, errlen, "cannot run %s: %s", run[0],
			 uv_strerror(rc));
		h->closing++;
		uv_close((uv_handle_t *)&p->p, hostd__proc_closed);
		goto fail;
	}
	vm->proc = p;
	vm->rec.pid = p->p.pid;
	vm->attached = false;
	vm->stop_requested = vm->force_requested = false;
	vm->guest_shutdown = vm->killed = false;
	vm->connect_ms = 0;
	vm->started_at_ms = hostd__now_ms(h);
	close(logfd);
	logfd = -1;
	qemu_argv_free(argv);
	free(spawn_argv);
	log_info(HOSTD_LOG, "%s: QEMU pid %d (%s)", d->name, vm->rec.pid,
		 hostd_accel_name(h->accel.accel));
	return 0;
fail:
	if (logfd >= 0)
		close(logfd);
	qemu_argv_free(argv);
	free(spawn_argv);
	if (cj.n)
		cgroup_vm_remove(&h->cg, d->name);
	while (taps-- > 0) {
		char tap[16];
		vm_tap_name(d, taps, tap);
		net_tap_remove(tap);
	}
	return rc;
}

/* ---- QMP ---- */

static void hostd__status_reply(void *arg, int status, struct json_t *ret)
{
	struct hostd_vm *vm = arg;
	if (status < 0 || !json_is_object(ret))
		return;
	const char *st = json_string_value(json_object_get(ret, "status"));
	bool running = json_is_true(json_object_get(ret, "running"));
	if (vm->rec.state == VM_STARTING || vm->attached) {
		if (running && vm->rec.state != VM_RUNNING &&
		    vm->rec.state != VM_STOPPING)
			hostd__set_state(vm, VM_RUNNING,
					 vm->attached ? "re-attached to QEMU"
						      : "QEMU running");
		else if (!running && st && !strcmp(st, "paused") &&
			 vm->rec.state != VM_STOPPING)
			hostd__set_state(vm, VM_PAUSED, "QEMU paused");
	}
}

static void hostd__qmp_ready(void *arg)
{
	struct hostd_vm *vm = arg;
	if (vm->stop_requested && vm->force_requested) {
		qmp_command(vm->qmp, "quit", NULL, NULL, NULL);
		return;
	}
	qmp_command(vm->qmp, "query-status", NULL, hostd__status_reply, vm);
}

static void hostd__qmp_event(void *arg, const char *ev, struct json_t *data)
{
	struct hostd_vm *vm = arg;
	log_debug(HOSTD_LOG, "%s: event %s", vm->rec.def.name, ev);
	if (!strcmp(ev, "SHUTDOWN")) {
		if (json_is_true(json_object_get(data, "guest")))
			vm->guest_shutdown = true;
	} else if (!strcmp(ev, "STOP")) {
		if (vm->rec.state == VM_RUNNING && !vm->guest_shutdown &&
		    !vm->stop_requested)
			hostd__set_state(vm, VM_PAUSED,
					 vm->pause_requested
					     ? "paused (vm.pause)"
					     : "QEMU stopped the vCPUs");
		vm->pause_requested = false;
	} else if (!strcmp(ev, "RESUME")) {
		if (vm->rec.state == VM_PAUSED)
			hostd__set_state(vm, VM_RUNNING, "resumed");
	} else if (!strcmp(ev, "RESET")) {
		vm->reboots++;
		log_info(HOSTD_LOG, "%s: reset", vm->rec.def.name);
	}
}

static void hostd__qmp_retry(uv_timer_t *t)
{
	hostd__vm_connect_qmp(t->data);
}

static void hostd__qmp_connect_failed(void *arg, int status)
{
	struct hostd_vm *vm = arg;
	qmp_close(vm->qmp);
	vm->qmp = NULL;
	if (!vm->proc && !vm->attached)
		return;
	vm->connect_ms += HOSTD_QMP_RETRY_MS;
	if (vm->connect_ms > HOSTD_QMP_CONNECT_MS) {
		log_error(
		    HOSTD_LOG, "%s: no QMP after %u ms (%s); killing QEMU",
		    vm->rec.def.name, vm->connect_ms, uv_strerror(status));
		if (vm->proc)
			uv_process_kill(&vm->proc->p, SIGKILL);
		return;
	}
	uv_timer_start(&vm->timer, hostd__qmp_retry, HOSTD_QMP_RETRY_MS, 0);
}

static void hostd__qmp_closed(void *arg)
{
	struct hostd_vm *vm = arg;
	if (vm->qmp) {
		qmp_close(vm->qmp);
		vm->qmp = NULL;
	}
	/* For our child the exit callback follows; an attached QEMU is
	 * checked now rather than at the next poll. */
	if (vm->attached && vm->rec.pid > 0 && kill(vm->rec.pid, 0) < 0 &&
	    errno == ESRCH) {
		vm->attached = false;
		uv_timer_stop(&vm->poll_timer);
		hostd__vm_exited(vm, "QEMU gone (exit status unknown: "
				     "not our child)");
	}
}

static void hostd__vm_connect_qmp(struct hostd_vm *vm)
{
	static const struct qmp_ops ops0 = {0};
	struct qmp_ops ops = ops0;
	ops.arg = vm;
	ops.on_ready = hostd__qmp_ready;
	ops.on_event = hostd__qmp_event;
	ops.on_connect_failed = hostd__qmp_connect_failed;
	ops.on_close = hostd__qmp_closed;
	if (vm->qmp)
		return;
	if (qmp_connect(vm->h->loop, vm->paths.qmp, vm->rec.def.name, &ops,
			&vm->qmp) < 0)
		uv_timer_start(&vm->timer, hostd__qmp_retry, HOSTD_QMP_RETRY_MS,
			       0);
}

/* ---- lifecycle ---- */

static void hostd__restart_timer(uv_timer_t *t)
{
	struct hostd_vm *vm = t->data;
	char err[256];
	vm->restart_scheduled = false;
	if (vm->h->shutting_down || vm->deleting ||
	    (vm->rec.state != VM_CRASHED && vm->rec.state != VM_STOPPED))
		return;
	vm->rec.restarts++;
	if (hostd_vm_start(vm, err, sizeof(err)) < 0)
		log_error(HOSTD_LOG, "%s: restart failed: %s", vm->rec.def.name,
			  err);
}

static void hostd__maybe_restart(struct hostd_vm *vm, bool crashed)
{
	enum vm_restart pol = vm->rec.def.restart;
	if (vm->h->shutting_down || vm->deleting)
		return;
	if (!(crashed ? pol != VM_RESTART_NEVER : pol == VM_RESTART_ALWAYS))
		return;
	uint64_t ran = hostd__now_ms(vm->h) - vm->started_at_ms;
	if (ran >= HOSTD_STABLE_MS)
		vm->rec.restarts = 0;
	unsigned shift = MIN(vm->rec.restarts, 5u);
	uint64_t delay = MIN((uint64_t)HOSTD_BACKOFF_MIN_MS << shift,
			     (uint64_t)HOSTD_BACKOFF_MAX_MS);
	log_info(HOSTD_LOG, "%s: restart policy %s: restarting in %llu ms",
		 vm->rec.def.name, vm_restart_name(pol),
		 (unsigned long long)delay);
	vm->restart_scheduled = true;
	uv_timer_start(&vm->timer, hostd__restart_timer, delay, 0);
}

static void hostd__vm_exited(struct hostd_vm *vm, const char *how)
{
	uv_timer_stop(&vm->stop_timer);
	uv_timer_stop(&vm->timer);
	uv_timer_stop(&vm->poll_timer);
	if (vm->qmp) {
		qmp_close(vm->qmp);
		vm->qmp = NULL;
	}
	vm->attached = false;
	hostd__cleanup_runtime(vm);
	vm->rec.pid = 0;
	str_copy(vm->last_exit, how, sizeof(vm->last_exit));
	char reason[128];
	bool crashed = false;
	if (vm->force_requested) {
		snprintf(reason, sizeof(reason), "force-stopped (%s)", how);
	} else if (vm->stop_requested) {
		snprintf(reason, sizeof(reason), "stopped (%s)", how);
	} else if (vm->guest_shutdown) {
		snprintf(reason, sizeof(reason), "guest powered off (%s)", how);
	} else {
		snprintf(reason, sizeof(reason), "%s", how);
		crashed = true;
	}
	if (vm->rec.state == VM_STOPPING && crashed) {
		/* Died while we were stopping it anyway. */
		crashed = false;
	}
	hostd__set_state(vm, crashed ? VM_CRASHED : VM_STOPPED, reason);
	if (!vm->stop_requested)
		hostd__maybe_restart(vm, crashed);
	hostd__maybe_finish_shutdown(vm->h);
}

static void hostd__poll_attached(uv_timer_t *t)
{
	struct hostd_vm *vm = t->data;
	if (!vm->attached)
		return;
	if (kill(vm->rec.pid, 0) < 0 && errno == ESRCH) {
		uv_timer_stop(&vm->poll_timer);
		hostd__vm_exited(vm, "QEMU gone (exit status unknown: not our "
				     "child)");
	}
}

static void hostd__signal_qemu(struct hostd_vm *vm, int sig)
{
	if (vm->proc)
		uv_process_kill(&vm->proc->p, sig);
	else if (vm->attached && vm->rec.pid > 0)
		kill(vm->rec.pid, sig);
}

static void hostd__kill_timer(uv_timer_t *t)
{
	struct hostd_vm *vm = t->data;
	log_warn(HOSTD_LOG, "%s: QEMU still there; SIGKILL", vm->rec.def.name);
	vm->killed = true;
	hostd__signal_qemu(vm, SIGKILL);
}

static void hostd__force(struct hostd_vm *vm)
{
	vm->stop_requested = vm->force_requested = true;
	if (vm->qmp && qmp_ready(vm->qmp) &&
	    qmp_command(vm->qmp, "quit", NULL, NULL, NULL) == 0) {
		uv_timer_start(&vm->stop_timer, hostd__kill_timer,
			       HOSTD_KILL_GRACE_MS, 0);
		return;
	}
	vm->killed = true;
	hostd__signal_qemu(vm, SIGKILL);
}

static void hostd__stop_timeout(uv_timer_t *t)
{
	struct hostd_vm *vm = t->data;
	log_warn(HOSTD_LOG, "%s: guest did not power off in time; forcing",
		 vm->rec.def.name);
	hostd__force(vm);
}

int hostd_vm_start(struct hostd_vm *vm, char *err, size_t errlen)
{
	enum vm_state s = vm->rec.state;
	if (vm->h->shutting_down) {
		snprintf(err, errlen, "the agent is shutting down");
		return -ESHUTDOWN;
	}
	if (s == VM_RUNNING || s == VM_STARTING) {
		snprintf(err, errlen, "%s is %s already", vm->rec.def.name,
			 vm_state_name(s));
		return -EALREADY;
	}
	if (!vm_state_transition_ok(s, VM_STARTING) || vm->proc) {
		snprintf(err, errlen, "%s is %s: cannot start",
			 vm->rec.def.name, vm_state_name(s));
		return -EBUSY;
	}
	uv_timer_stop(&vm->timer);
	vm->restart_scheduled = false;
	int rc = hostd__spawn(vm, err, errlen);
	if (rc < 0) {
		/* Nothing ran (a failure after the spawn is an exit): the
		 * state stays, the reason tells why (a restart by policy has
		 * no caller to tell). */
		char reason[sizeof(vm->rec.reason)];
		snprintf(reason, sizeof(reason), "start failed: %s", err);
		hostd__set_state(vm, vm->rec.state, reason);
		return rc;
	}
	hostd__set_state(vm, VM_STARTING, "QEMU spawned");
	hostd__vm_connect_qmp(vm);
	return 0;
}

int hostd_vm_stop(struct hostd_vm *vm, unsigned timeout_ms, char *err,
		  size_t errlen)
{
	enum vm_state s = vm->rec.state;
	if (s == VM_STARTING)
		return hostd_vm_force_stop(vm, err, errlen);
	if (s == VM_STOPPING) {
		return 0;
	}
	if (s != VM_RUNNING && s != VM_PAUSED) {
		if (vm->restart_scheduled) {
			/* A crashed VM waiting for its restart: cancel it. */
			uv_timer_stop(&vm->timer);
			vm->restart_scheduled = false;
			if (s == VM_CRASHED)
				hostd__set_state(vm, VM_STOPPED,
						 "restart cancelled by stop");
			return 0;
		}
		snprintf(err, errlen, "%s is %s: nothing to stop",
			 vm->rec.def.name, vm_state_name(s));
		return -EINVAL;
	}
	vm->stop_requested = true;
	hostd__set_state(vm, VM_STOPPING, "ACPI power button pressed");
	if (!vm->qmp || !qmp_ready(vm->qmp) ||
	    qmp_command(vm->qmp, "system_powerdown", NULL, NULL, NULL) < 0) {
		hostd__force(vm);
		return 0;
	}
	if (!timeout_ms)
		timeout_ms = vm->h->cfg.stop_timeout_ms;
	uv_timer_start(&vm->stop_timer, hostd__stop_timeout, timeout_ms, 0);
	return 0;
}

int hostd_vm_force_stop(struct hostd_vm *vm, char *err, size_t errlen)
{
	enum vm_state s = vm->rec.state;
	if (!vm_state_has_process(s)) {
		if (vm->restart_scheduled || s == VM_CRASHED) {
			uv_timer_stop(&vm->timer);
			vm->restart_scheduled = false;
			if (s == VM_CRASHED)
				hostd__set_state(vm, VM_STOPPED,
						 "force-stop of a crashed VM");
			return 0;
		}
		snprintf(err, errlen, "%s is %s: nothing to stop",
			 vm->rec.def.name, vm_state_name(s));
		return -EINVAL;
	}
	uv_timer_stop(&vm->stop_timer);
	if (s != VM_STOPPING)
		hostd__set_state(vm, VM_STOPPING, "force-stop");
	hostd__force(vm);
	return 0;
}

int hostd_vm_reboot(struct hostd_vm *vm, char *err, size_t errlen)
{
	if (vm->rec.state != VM_RUNNING && vm->rec.state != VM_PAUSED) {
		snprintf(err, errlen, "%s is %s: not running", vm->rec.def.name,
			 vm_state_name(vm->rec.state));
		return -EINVAL;
	}
	if (!vm->qmp || !qmp_ready(vm->qmp) ||
	    qmp_command(vm->qmp, "system_reset", NULL, NULL, NULL) < 0) {
		snprintf(err, errlen, "%s: QMP not connected",
			 vm->rec.def.name);
		return -ENOTCONN;
	}
	return 0;
}

/* QMP `stop` / `cont`; the state follows QEMU's STOP / RESUME events. */
static int hostd__vcpus(struct hostd_vm *vm, bool run, char *err,
			size_t errlen)
{
	enum vm_state want = run ? VM_PAUSED : VM_RUNNING;
	if (vm->rec.state != want) {
		snprintf(err, errlen, "%s is %s: not %s", vm->rec.def.name,
			 vm_state_name(vm->rec.state), vm_state_name(want));
		return -EINVAL;
	}
	if (!vm->qmp || !qmp_ready(vm->qmp) ||
	    qmp_command(vm->qmp, run ? "cont" : "stop", NULL, NULL, NULL) <
		0) {
		snprintf(err, errlen, "%s: QMP not connected",
			 vm->rec.def.name);
		return -ENOTCONN;
	}
	vm->pause_requested = !run;
	return 0;
}

int hostd_vm_pause(struct hostd_vm *vm, char *err, size_t errlen)
{
	return hostd__vcpus(vm, false, err, errlen);
}

int hostd_vm_resume(struct hostd_vm *vm, char *err, size_t errlen)
{
	return hostd__vcpus(vm, true, err, errlen);
}

int hostd_vm_delete(struct hostd_vm *vm, char *err, size_t errlen)
{
	enum vm_state s = vm->rec.state;
	if (vm_state_has_process(s) || vm->proc) {
		snprintf(err, errlen, "%s is %s: stop it first",
			 vm->rec.def.name, vm_state_name(s));
		return -EBUSY;
	}
	int rc = vm_record_remove(vm->h->state_dir, vm->rec.def.name);
	if (rc < 0) {
		snprintf(err, errlen, "cannot remove the definition: %s",
			 strerror(-rc));
		return rc;
	}
	hostd__cleanup_runtime(vm);
	char old[300];
	snprintf(old, sizeof(old), "%s.1", vm->paths.console);
	unlink(old);
	unlink(vm->paths.console);
	unlink(vm->paths.qemu_log);
	rmdir(vm->paths.dir);
	if (unlink(vm->paths.nvram) == 0)
		log_info(HOSTD_LOG, "%s: removed its UEFI variable store",
			 vm->rec.def.name);
	log_info(HOSTD_LOG, "%s: deleted", vm->rec.def.name);
	vm->deleting = true;
	hostd__vm_free(vm);
	return 0;
}

struct json_t *hostd_vm_status(const struct hostd_vm *vm)
{
	const struct vm_def *d = &vm->rec.def;
	json_t *nics = json_array();
	for (unsigned i = 0; i < d->n_nics; i++) {
		char mac[18], tap[16];
		vm_mac_format(d->nics[i].mac, mac);
		vm_tap_name(d, i, tap);
		json_array_append_new(nics, json_pack("{s:s, s:s, s:s}", "mac",
						      mac, "tap", tap, "bridge",
						      d->nics[i].bridge[0]
							  ? d->nics[i].bridge
							  : vm->h->bridge));
	}
	return json_pack(
	    "{s:s, s:s, s:s, s:i, s:i, s:I, s:s, s:s, s:s, s:s, s:s, s:s, "
	    "s:i, s:s, s:o, s:b, s:s, s:i, s:s}",
	    "name", d->name, "uuid", d->uuid, "state",
	    vm_state_name(vm->rec.state), "pid", vm->rec.pid, "vcpus", d->vcpus,
	    "memory_mib", (json_int_t)d->memory_mib, "accel",
	    hostd_accel_name(vm->h->accel.accel), "accel_reason",
	    vm->h->accel.reason, "console_log", vm->paths.console,
	    "console_socket", vm->paths.serial, "reason", vm->rec.reason,
	    "restart", vm_restart_name(d->restart), "restarts",
	    vm->rec.restarts, "last_exit", vm->last_exit, "nics", nics,
	    "attached", vm->attached, "qemu_log", vm->paths.qemu_log, "reboots",
	    vm->reboots, "nvram", vm_def_uefi(d) ? vm->paths.nvram : "");
}

struct json_t *hostd_host_status(const struct hostd *h)
{
	const char *cg = h->cg.version == CGROUP_V2   ? "v2"
			 : h->cg.version == CGROUP_V1 ? "v1"
						      : "none";
	return json_pack(
	    "{s:s, s:s, s:f, s:s, s:s, s:i, s:I, s:s}", "accel",
	    hostd_accel_name(h->accel.accel), "accel_reason", h->accel.reason,
	    "accel_probe_ms", h->accel.probe_ms, "cgroup", cg, "bridge",
	    h->bridge, "host_cpus", h->host.cpus, "host_memory_mib",
	    (json_int_t)h->host.memory_mib, "state_dir", h->state_dir);
}

/* ---- recovery ---- */

/* True if pid is a QEMU started for this VM (its command line names the
 * VM's QMP socket), so a recycled pid is never taken for our QEMU. */
static bool hostd__pid_is_ours(int pid, const struct vm_paths *p)
{
	char path[64], buf[8192];
	snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	for (ssize_t i = 0; i < n; i++)
		if (!buf[i])
			buf[i] = ' ';
	buf[n] = '\0';
	return strstr(buf, p->qmp) != NULL;
}

static int hostd__read_pidfile(const char *path)
{
	FILE *f = fopen(path, "r");
	int pid = 0;
	if (!f)
		return 0;
	if (fscanf(f, "%d", &pid) != 1)
		pid = 0;
	fclose(f);
	return pid;
}

static void hostd__recover_one(struct hostd *h, const char *file)
{
	char err[256];
	struct hostd_vm *vm = hostd__vm_new(h);
	if (!vm)
		return;
	if (vm_record_load(file, &vm->rec, err, sizeof(err)) < 0 ||
	    vm_paths_init(&vm->paths, h->state_dir, vm->rec.def.name) < 0 ||
	    hostd_vm_find(h, vm->rec.def.name) != vm) {
		log_error(HOSTD_LOG, "skipping %s: %s", file, err);
		hostd__vm_free(vm);
		return;
	}
	if (!vm_state_has_process(vm->rec.state)) {
		log_info(HOSTD_LOG, "%s: %s", vm->rec.def.name,
			 vm_state_name(vm->rec.state));
		return;
	}
	int pid = hostd__read_pidfile(vm->paths.pidfile);
	if (pid <= 0)
		pid = vm->rec.pid;
	if (pid > 0 && hostd__pid_is_ours(pid, &vm->paths)) {
		vm->attached = true;
		vm->rec.pid = pid;
		vm->started_at_ms = hostd__now_ms(h);
		log_info(HOSTD_LOG,
			 "%s: QEMU pid %d still running; "
			 "re-attaching",
			 vm->rec.def.name, pid);
		if (vm->rec.state == VM_STOPPING) {
			vm->stop_requested = vm->force_requested = true;
			kill(pid, SIGKILL);
		}
		uv_timer_start(&vm->poll_timer, hostd__poll_attached,
			       HOSTD_POLL_MS, HOSTD_POLL_MS);
		hostd__vm_connect_qmp(vm);
		return;
	}
	bool was_stopping = vm->rec.state == VM_STOPPING;
	hostd__cleanup_runtime(vm);
	vm->rec.pid = 0;
	hostd__set_state(vm, was_stopping ? VM_STOPPED : VM_CRASHED,
			 "QEMU gone while the agent was down");
	if (!was_stopping)
		hostd__maybe_restart(vm, true);
}

static int hostd__recover(struct hostd *h)
{
	char dir[PATH_MAX + 8];
	snprintf(dir, sizeof(dir), "%s/vms", h->state_dir);
	DIR *d = opendir(dir);
	if (!d)
		return -errno;
	struct dirent *e;
	while ((e = readdir(d))) {
		size_t n = strlen(e->d_name);
		if (n < 6 || strcmp(e->d_name + n - 5, ".json"))
			continue;
		char file[PATH_MAX * 2];
		snprintf(file, sizeof(file), "%s/%s", dir, e->d_name);
		hostd__recover_one(h, file);
	}
	closedir(d);
	return 0;
}

/* ---- the agent ---- */

static void hostd__host_limits(struct vm_host_limits *l)
{
	struct sysinfo si;
	l->cpus = (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
	l->memory_mib = 0;
	if (sysinfo(&si) == 0)
		l->memory_mib =
		    (uint64_t)si.totalram * si.mem_unit / (1024 * 1024);
}

/* cairn-vm-exec: as configured, else beside the running program (every
 * build puts its programs in one bin/), else on PATH. */
static void hostd__vm_exec_path(const char *cfg, char *out, size_t n)
{
	char self[PATH_MAX];
	ssize_t l;
	if (cfg) {
		str_copy(out, cfg, n);
		return;
	}
	snprintf(out, n, "cairn-vm-exec");
	if ((l = readlink("/proc/self/exe", self, sizeof(self) - 1)) <= 0)
		return;
	self[l] = '\0';
	char *slash = strrchr(self, '/');
	if (!slash)
		return;
	*slash = '\0';
	char path[PATH_MAX + 16];
	snprintf(path, sizeof(path), "%s/cairn-vm-exec", self);
	if (access(path, X_OK) == 0)
		str_copy(out, path, n);
}

int hostd_new(uv_loop_t *loop, const struct hostd_config *cfg,
	      struct hostd **out)
{
	struct hostd *h = calloc(1, sizeof(*h));
	int rc;
	if (!h)
		return -ENOMEM;
	h->loop = loop;
	h->cfg = *cfg;
	TAILQ_INIT(&h->vms);
	TAILQ_INIT(&h->conns);
	str_copy(h->state_dir, cfg->state_dir, sizeof(h->state_dir));
	str_copy(h->socket_path, cfg->socket_path, sizeof(h->socket_path));
	str_copy(h->bridge, cfg->bridge ? cfg->bridge : HOSTD_DEFAULT_BRIDGE,
		 sizeof(h->bridge));
	str_copy(h->qemu_bin,
		 cfg->qemu_bin ? cfg->qemu_bin : "qemu-system-x86_64",
		 sizeof(h->qemu_bin));
	if (!h->cfg.stop_timeout_ms)
		h->cfg.stop_timeout_ms = 30000;
	h->cfg.state_dir = h->state_dir;
	h->cfg.socket_path = h->socket_path;
	h->cfg.bridge = h->bridge;
	h->cfg.qemu_bin = h->qemu_bin;
	str_copy(h->vhost_dir, cfg->vhost_dir ? cfg->vhost_dir : "",
		 sizeof(h->vhost_dir));
	h->cfg.vhost_dir = h->vhost_dir[0] ? h->vhost_dir : NULL;
	str_copy(h->ovmf_code,
		 cfg->ovmf_code ? cfg->ovmf_code : HOSTD_OVMF_CODE,
		 sizeof(h->ovmf_code));
	str_copy(h->ovmf_vars,
		 cfg->ovmf_vars ? cfg->ovmf_vars : HOSTD_OVMF_VARS,
		 sizeof(h->ovmf_vars));
	h->ovmf.code = h->cfg.ovmf_code = h->ovmf_code;
	h->ovmf.vars = h->cfg.ovmf_vars = h->ovmf_vars;
	h->cfg.cgroup_root = NULL;
	hostd__vm_exec_path(cfg->vm_exec, h->vm_exec, sizeof(h->vm_exec));
	h->cfg.vm_exec = h->vm_exec;
	hostd__host_limits(&h->host);
	cgroup_detect(&h->cg, cfg->cgroup_root);

	char sub[PATH_MAX + 32];
	snprintf(sub, sizeof(sub), "%s/vms", h->state_dir);
	if ((rc = hostd__mkdirs(sub)) < 0) {
		log_error(HOSTD_LOG, "cannot make %s: %s", sub, strerror(-rc));
		free(h);
		return rc;
	}
	snprintf(sub, sizeof(sub), "%s/accel.json", h->state_dir);
	hostd_accel_choose(cfg->accel, sub, &h->accel);
	log_info(HOSTD_LOG, "accelerator %s: %s",
		 hostd_accel_name(h->accel.accel), h->accel.reason);
	log_info(HOSTD_LOG, "cgroups: %s at %s",
		 h->cg.version == CGROUP_V2   ? "v2"
		 : h->cg.version == CGROUP_V1 ? "v1"
					      : "none",
		 h->cg.root);
	if ((rc = hostd__recover(h)) < 0)
		log_warn(HOSTD_LOG, "recovery: %s", strerror(-rc));
	if ((rc = hostd_api_listen(h)) < 0) {
		log_error(HOSTD_LOG, "cannot listen on %s: %s", h->socket_path,
			  uv_strerror(rc));
		/* Leave the VMs as they are (not ours to stop). */
		struct hostd_vm *vm, *t;
		TAILQ_FOREACH_SAFE(vm, &h->vms, link, t)
		{
			vm->attached = false;
			hostd__vm_free(vm);
		}
		uv_run(loop, UV_RUN_NOWAIT);
		free(h);
		return rc;
	}
	*out = h;
	return 0;
}

const struct hostd_accel_choice *hostd_accel(const struct hostd *h)
{
	return &h->accel;
}

void hostd__handle_closed(struct hostd *h)
{
	h->closing--;
	hostd__maybe_finish_shutdown(h);
}

static void hostd__maybe_finish_shutdown(struct hostd *h)
{
	if (!h->shutting_down)
		return;
	struct hostd_vm *vm, *t;
	TAILQ_FOREACH(vm, &h->vms, link)
	{
		if (vm->proc || vm->attached)
			return; /* still waiting for a QEMU to go */
	}
	TAILQ_FOREACH_SAFE(vm, &h->vms, link, t)
	{
		hostd__vm_free(vm);
	}
	hostd_api_close(h);
	if (h->closing == 0 && h->shutdown_cb) {
		void (*cb)(void *) = h->shutdown_cb;
		h->shutdown_cb = NULL;
		cb(h->shutdown_arg);
	}
}

/* Agent shutdown with leave_vms_running: the VM's QEMU goes on and its
 * persisted state (running, paused, starting, stopping) is what the next
 * agent recovers from (re-attach by pidfile and QMP socket). Closing the
 * process handle does not signal the process. */
static void hostd__let_go(struct hostd_vm *vm)
{
	uv_timer_stop(&vm->stop_timer);
	uv_timer_stop(&vm->poll_timer);
	if (vm->proc || vm->attached)
		log_info(HOSTD_LOG, "%s: agent stopping: QEMU pid %d left running",
			 vm->rec.def.name, vm->rec.pid);
	if (vm->proc) {
		vm->h->closing++;
		uv_close((uv_handle_t *)&vm->proc->p, hostd__proc_closed);
		vm->proc = NULL;
	}
	vm->attached = false;
}

void hostd_shutdown(struct hostd *h, void (*cb)(void *arg), void *arg)
{
	if (h->shutting_down)
		return;
	h->shutting_down = true;
	h->shutdown_cb = cb;
	h->shutdown_arg = arg;
	struct hostd_vm *vm;
	TAILQ_FOREACH(vm, &h->vms, link)
	{
		uv_timer_stop(&vm->timer);
		if (h->cfg.leave_vms_running) {
			hostd__let_go(vm);
			continue;
		}
		if (vm->proc || vm->attached) {
			log_info(HOSTD_LOG,
				 "%s: agent stopping: force-stopping the VM",
				 vm->rec.def.name);
			char err[128];
			hostd_vm_force_stop(vm, err, sizeof(err));
		}
	}
	hostd__maybe_finish_shutdown(h);
}

void hostd_free(struct hostd *h)
{
	free(h);
}
