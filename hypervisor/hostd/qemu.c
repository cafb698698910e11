/* The QEMU command line for a VM definition. Pure: strings in, argv out; the
 * agent spawns and supervises it (hostd.c).
 *
 * Choices and why:
 * * guest RAM is a memfd backend with share=on: a vhost-user back end
 *   (Cairn's vhost-user-blk in cairnd) maps guest memory from the fds QEMU
 *   sends it, which needs shared, fd-backed memory;
 * * -nodefaults -display none: no device the definition did not ask for;
 * * the serial port is one socket chardev with logfile=: QEMU itself writes
 *   every byte to the console log, and `cairn-vm console` attaches to the
 *   socket at any time without the agent relaying bytes;
 * * -qmp on a unix socket, server=on,wait=off: QEMU starts the guest at once
 *   and the agent connects when it can;
 * * no -daemonize: the agent is QEMU's parent and learns its exit status. */
#include <cairn/hostd.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "util.h"

const char *hostd_accel_name(enum hostd_accel a)
{
	switch (a) {
	case HOSTD_ACCEL_AUTO:
		return "auto";
	case HOSTD_ACCEL_KVM:
		return "kvm";
	case HOSTD_ACCEL_TCG:
		return "tcg";
	}
	return "?";
}

int vm_paths_init(struct vm_paths *p, const char *state_dir, const char *name)
{
	struct sockaddr_un sun;
	int r = snprintf(p->dir, sizeof(p->dir), "%s/run/%s", state_dir, name);
	if (r < 0 || (size_t)r >= sizeof(p->dir))
		return -ENAMETOOLONG;
	/* The sockets are the longest names and must fit sun_path. */
	r = snprintf(p->serial, sizeof(p->serial), "%s/serial.sock", p->dir);
	if (r < 0 || (size_t)r >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	snprintf(p->qmp, sizeof(p->qmp), "%s/qmp.sock", p->dir);
	snprintf(p->console, sizeof(p->console), "%s/console.log", p->dir);
	snprintf(p->pidfile, sizeof(p->pidfile), "%s/qemu.pid", p->dir);
	snprintf(p->qemu_log, sizeof(p->qemu_log), "%s/qemu.log", p->dir);
	r = snprintf(p->nvram, sizeof(p->nvram), "%s/vms/%s.nvram.fd",
		     state_dir, name);
	if (r < 0 || (size_t)r >= sizeof(p->nvram))
		return -ENAMETOOLONG;
	return 0;
}

void vm_tap_name(const struct vm_def *d, unsigned index, char out[16])
{
	char hex[9] = "00000000";
	unsigned n = 0;
	for (const char *s = d->uuid; *s && n < 8; s++)
		if (*s != '-')
			hex[n++] = *s;
	snprintf(out, 16, "ct%.8sn%u", hex, index % 100);
}

struct qemu_argv {
	char **v;
	size_t n, cap;
	bool oom;
};

static void qemu__add(struct qemu_argv *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void qemu__add(struct qemu_argv *a, const char *fmt, ...)
{
	if (a->oom)
		return;
	if (a->n + 2 > a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 64;
		char **v = realloc(a->v, cap * sizeof(*v));
		if (!v) {
			a->oom = true;
			return;
		}
		a->v = v;
		a->cap = cap;
	}
	va_list ap;
	va_start(ap, fmt);
	int r = vasprintf(&a->v[a->n], fmt, ap);
	va_end(ap);
	if (r < 0) {
		a->oom = true;
		return;
	}
	a->v[++a->n] = NULL;
}

/* QEMU's option parser splits on ',' and takes ",," as a literal comma. */
static char *qemu__escape(const char *s)
{
	size_t n = 0;
	for (const char *p = s; *p; p++)
		n += *p == ',' ? 2 : 1;
	char *o = malloc(n + 1), *q = o;
	if (!o)
		return NULL;
	for (const char *p = s; *p; p++) {
		*q++ = *p;
		if (*p == ',')
			*q++ = ',';
	}
	*q = '\0';
	return o;
}

void qemu_argv_free(char **argv)
{
	if (!argv)
		return;
	for (char **p = argv; *p; p++)
		free(*p);
	free(argv);
}

int qemu_build_argv(const struct vm_def *d, const struct vm_paths *p,
		    const struct qemu_host *host, char ***argv)
{
	struct qemu_argv a = {0};
	char *e1 = NULL, *e2 = NULL;
	bool kvm = host->accel == HOSTD_ACCEL_KVM;

	qemu__add(&a, "%s",
		  host->qemu_bin ? host->qemu_bin : "qemu-system-x86_64");
	qemu__add(&a, "-name");
	qemu__add(&a, "%s,debug-threads=on", d->name);
	qemu__add(&a, "-uuid");
	qemu__add(&a, "%s", d->uuid);
	qemu__add(&a, "-machine");
	qemu__add(&a, "q35,memory-backend=cairn-mem");
	qemu__add(&a, "-accel");
	qemu__add(&a, "%s", kvm ? "kvm" : "tcg");
	qemu__add(&a, "-cpu");
	qemu__add(&a, "%s", kvm ? "host" : "max");
	qemu__add(&a, "-smp");
	qemu__add(&a, "%u", d->vcpus);
	qemu__add(&a, "-m");
	qemu__add(&a, "%lluM", (unsigned long long)d->memory_mib);
	qemu__add(&a, "-object");
	qemu__add(&a, "memory-backend-memfd,id=cairn-mem,size=%lluM,share=on",
		  (unsigned long long)d->memory_mib);
	qemu__add(&a, "-nodefaults");
	qemu__add(&a, "-no-user-config");
	qemu__add(&a, "-display");
	qemu__add(&a, "none");

	if (d->boot == VM_BOOT_KERNEL) {
		qemu__add(&a, "-kernel");
		qemu__add(&a, "%s", d->kernel);
		if (d->initrd) {
			qemu__add(&a, "-initrd");
			qemu__add(&a, "%s", d->initrd);
		}
		if (d->cmdline) {
			qemu__add(&a, "-append");
			qemu__add(&a, "%s", d->cmdline);
		}
	} else if (d->firmware == VM_FW_OVMF) {
		/* Two flash chips, as OVMF is built for: the firmware,
		 * read-only and shared, then the VM's own variable store,
		 * which OVMF writes (ovmf.c). No SMM needed: the firmware
		 * without Secure Boot does not require it. */
		if (!(e1 = qemu__escape(host->ovmf_code ? host->ovmf_code
							: HOSTD_OVMF_CODE)) ||
		    !(e2 = qemu__escape(p->nvram)))
			goto oom;
		qemu__add(&a, "-drive");
		qemu__add(&a, "if=pflash,unit=0,format=raw,readonly=on,file=%s",
			  e1);
		qemu__add(&a, "-drive");
		qemu__add(&a, "if=pflash,unit=1,format=raw,file=%s", e2);
		free(e1);
		free(e2);
		e1 = e2 = NULL;
	}
	/* SeaBIOS is QEMU's default firmware: nothing to add. */

	for (unsigned i = 0; i < d->n_disks; i++) {
		const struct vm_disk *k = &d->disks[i];
		const char *boot =
		    d->boot == VM_BOOT_DISK && i == 0 ? ",bootindex=0" : "";
		if (k->vhost_socket) {
			if (!(e1 = qemu__escape(k->vhost_socket)))
				goto oom;
			qemu__add(&a, "-chardev");
			qemu__add(&a, "socket,id=vhost%u,path=%s", i, e1);
			qemu__add(&a, "-device");
			qemu__add(
			    &a,
			    "vhost-user-blk-pci,id=disk%u,chardev=vhost%u,"
			    "num-queues=%u%s",
			    i, i, d->vcpus > 16 ? 16 : d->vcpus, boot);
		} else {
			if (!(e1 = qemu__escape(k->file)))
				goto oom;
			qemu__add(&a, "-blockdev");
			qemu__add(&a,
				  "driver=file,node-name=file%u,filename=%s%s",
				  i, e1, k->readonly ? ",read-only=on" : "");
			qemu__add(&a, "-blockdev");
			qemu__add(&a,
				  "driver=raw,node-name=disk%u,file=file%u%s",
				  i, i, k->readonly ? ",read-only=on" : "");
			qemu__add(&a, "-device");
			qemu__add(&a, "virtio-blk-pci,id=vblk%u,drive=disk%u%s",
				  i, i, boot);
		}
		free(e1);
		e1 = NULL;
	}

	for (unsigned i = 0; i < d->n_nics; i++) {
		char tap[16], mac[18];
		vm_tap_name(d, i, tap);
		vm_mac_format(d->nics[i].mac, mac);
		qemu__add(&a, "-netdev");
		qemu__add(&a, "tap,id=net%u,ifname=%s,script=no,downscript=no",
			  i, tap);
		qemu__add(&a, "-device");
		qemu__add(&a, "virtio-net-pci,netdev=net%u,mac=%s", i, mac);
	}

	if (!(e1 = qemu__escape(p->serial)) || !(e2 = qemu__escape(p->console)))
		goto oom;
	qemu__add(&a, "-chardev");
	qemu__add(&a,
		  "socket,id=serial0,path=%s,server=on,wait=off,logfile=%s,"
		  "logappend=on",
		  e1, e2);
	qemu__add(&a, "-serial");
	qemu__add(&a, "chardev:serial0");
	free(e1);
	free(e2);
	e1 = e2 = NULL;
	if (!(e1 = qemu__escape(p->qmp)))
		goto oom;
	qemu__add(&a, "-chardev");
	qemu__add(&a, "socket,id=qmp0,path=%s,server=on,wait=off", e1);
	qemu__add(&a, "-mon");
	qemu__add(&a, "chardev=qmp0,mode=control");
	free(e1);
	e1 = NULL;
	qemu__add(&a, "-pidfile");
	qemu__add(&a, "%s", p->pidfile);
	if (a.oom)
		goto oom;
	*argv = a.v;
	return 0;
oom:
	free(e1);
	free(e2);
	if (a.v) {
		a.v[a.n] = NULL;
		qemu_argv_free(a.v);
	}
	return -ENOMEM;
}
