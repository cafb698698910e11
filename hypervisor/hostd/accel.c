/* KVM or TCG: decided by running a tiny guest, not by /dev/kvm existing.
 *
 * Some hosts expose a /dev/kvm that works but is slow: a software backend
 * (PVM, nested virtualization without hardware help) runs ordinary kernels
 * orders of magnitude slower than native, slower than QEMU's TCG. The probe
 * builds a VM with one vCPU in real mode running
 *
 *     mov cx, N ; l: out 0x80, al ; loop l      (N exits to user space)
 *     mov ecx, M ; l2: dec ecx ; jnz l2          (M plain instructions)
 *     hlt
 *
 * and times both parts (400k instructions: well under a millisecond on
 * hardware). A SIGALRM interrupts KVM_RUN if the guest takes too long. Hardware
 * KVM does an I/O exit in a few microseconds and the loop at native speed; we
 * take KVM when the average exit costs under ACCEL_MAX_EXIT_US and the loop
 * under ACCEL_MAX_LOOP_MS, TCG otherwise, and say why. The result is cached per
 * boot (keyed by /proc/sys/kernel/random/boot_id) since it cannot change until
 * a reboot. */
#include <cairn/hostd.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define ACCEL_LOG "accel"
#define ACCEL_EXITS 2000
#define ACCEL_LOOP 200000u
#define ACCEL_MAX_EXIT_US 50.0
#define ACCEL_MAX_LOOP_MS 20.0
#define ACCEL_TIMEOUT_MS 2000.0

static double accel__now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

struct accel_probe {
	int kvm, vm, vcpu;
	void *mem;
	struct kvm_run *run;
	size_t run_size;
};

static void accel__probe_close(struct accel_probe *p)
{
	if (p->run)
		munmap(p->run, p->run_size);
	if (p->mem)
		munmap(p->mem, 0x10000);
	if (p->vcpu >= 0)
		close(p->vcpu);
	if (p->vm >= 0)
		close(p->vm);
	if (p->kvm >= 0)
		close(p->kvm);
}

/* Returns 0 with the timings, or -errno with a reason. */
static int accel__probe(double *exit_us, double *loop_ms, char *why,
			size_t whylen)
{
	struct accel_probe p = {.kvm = -1, .vm = -1, .vcpu = -1};
	int rc = -ENODEV;
	/* 16-bit real mode code at 0x1000. */
	static const uint8_t code[] = {
	    0xb9,
	    ACCEL_EXITS & 0xff,
	    ACCEL_EXITS >> 8, /* mov cx, N */
	    0xe6,
	    0x80, /* l: out 0x80, al */
	    0xe2,
	    0xfc, /* loop l */
	    0x66,
	    0xb9,
	    ACCEL_LOOP & 0xff,
	    (ACCEL_LOOP >> 8) & 0xff,
	    (ACCEL_LOOP >> 16) & 0xff,
	    ACCEL_LOOP >> 24, /* mov ecx, M */
	    0x66,
	    0x49, /* l2: dec ecx */
	    0x75,
	    0xfc, /* jnz l2 */
	    0xe6,
	    0x81, /* out 0x81, al */
	    0xf4, /* hlt */
	};
	p.kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (p.kvm < 0) {
		rc = -errno;
		snprintf(why, whylen, "/dev/kvm: %s", strerror(errno));
		goto out;
	}
	if (ioctl(p.kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
		snprintf(why, whylen, "KVM API version mismatch");
		goto out;
	}
	p.vm = ioctl(p.kvm, KVM_CREATE_VM, 0);
	if (p.vm < 0) {
		rc = -errno;
		snprintf(why, whylen, "KVM_CREATE_VM: %s", strerror(errno));
		goto out;
	}
	p.mem = mmap(NULL, 0x10000, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p.mem == MAP_FAILED) {
		p.mem = NULL;
		rc = -ENOMEM;
		snprintf(why, whylen, "mmap failed");
		goto out;
	}
	memcpy((uint8_t *)p.mem + 0x1000, code, sizeof(code));
	struct kvm_userspace_memory_region region = {
	    .slot = 0,
	    .guest_phys_addr = 0,
	    .memory_size = 0x10000,
	    .userspace_addr = (uint64_t)(uintptr_t)p.mem,
	};
	if (ioctl(p.vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) {
		rc = -errno;
		snprintf(why, whylen, "KVM_SET_USER_MEMORY_REGION: %s",
			 strerror(errno));
		goto out;
	}
	p.vcpu = ioctl(p.vm, KVM_CREATE_VCPU, 0);
	if (p.vcpu < 0) {
		rc = -errno;
		snprintf(why, whylen, "KVM_CREATE_VCPU: %s", strerror(errno));
		goto out;
	}
	int sz = ioctl(p.kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (sz <= 0) {
		snprintf(why, whylen, "KVM_GET_VCPU_MMAP_SIZE failed");
		goto out;
	}
	p.run_size = (size_t)sz;
	p.run = mmap(NULL, p.run_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		     p.vcpu, 0);
	if (p.run == MAP_FAILED) {
		p.run = NULL;
		snprintf(why, whylen, "mmap of kvm_run failed");
		goto out;
	}
	struct kvm_sregs sregs;
	if (ioctl(p.vcpu, KVM_GET_SREGS, &sregs) < 0) {
		rc = -errno;
		snprintf(why, whylen, "KVM_GET_SREGS: %s", strerror(errno));
		goto out;
	}
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	if (ioctl(p.vcpu, KVM_SET_SREGS, &sregs) < 0) {
		rc = -errno;
		snprintf(why, whylen, "KVM_SET_SREGS: %s", strerror(errno));
		goto out;
	}
	struct kvm_regs regs = {.rip = 0x1000, .rflags = 0x2};
	if (ioctl(p.vcpu, KVM_SET_REGS, &regs) < 0) {
		rc = -errno;
		snprintf(why, whylen, "KVM_SET_REGS: %s", strerror(errno));
		goto out;
	}
	double t0 = accel__now_ms(), t_loop = 0;
	unsigned exits = 0;
	for (;;) {
		if (accel__now_ms() - t0 > ACCEL_TIMEOUT_MS) {
			rc = -ETIMEDOUT;
			snprintf(why, whylen,
				 "probe guest not done after %.0f ms "
				 "(%u of %u exits)",
				 ACCEL_TIMEOUT_MS, exits, ACCEL_EXITS);
			goto out;
		}
		if (ioctl(p.vcpu, KVM_RUN, 0) < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			snprintf(why, whylen, "KVM_RUN: %s", strerror(errno));
			goto out;
		}
		if (p.run->exit_reason == KVM_EXIT_IO &&
		    p.run->io.port == 0x80) {
			if (++exits == ACCEL_EXITS)
				t_loop = accel__now_ms();
			continue;
		}
		if (p.run->exit_reason == KVM_EXIT_IO && p.run->io.port == 0x81)
			continue;
		if (p.run->exit_reason == KVM_EXIT_HLT)
			break;
		rc = -EIO;
		snprintf(why, whylen, "probe guest: unexpected exit %u",
			 p.run->exit_reason);
		goto out;
	}
	double t1 = accel__now_ms();
	if (exits != ACCEL_EXITS || t_loop == 0) {
		rc = -EIO;
		snprintf(why, whylen, "probe guest: %u exits, expected %u",
			 exits, ACCEL_EXITS);
		goto out;
	}
	*exit_us = (t_loop - t0) * 1000.0 / ACCEL_EXITS;
	*loop_ms = t1 - t_loop;
	rc = 0;
out:
	accel__probe_close(&p);
	return rc;
}

static void accel__alarm(int sig)
{
	(void)sig; /* only there to make KVM_RUN return EINTR */
}

static int accel__probe_timed(double *exit_us, double *loop_ms, char *why,
			      size_t whylen)
{
	struct sigaction sa = {.sa_handler = accel__alarm}, old;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, &old);
	/* Fire every 100 ms so the loop re-checks its deadline. */
	struct itimerval it = {{0, 100000}, {0, 100000}}, off = {0};
	setitimer(ITIMER_REAL, &it, NULL);
	int rc = accel__probe(exit_us, loop_ms, why, whylen);
	setitimer(ITIMER_REAL, &off, NULL);
	sigaction(SIGALRM, &old, NULL);
	return rc;
}

static void accel__boot_id(char *out, size_t n)
{
	out[0] = '\0';
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
	if (!f)
		return;
	if (fgets(out, (int)n, f))
		out[strcspn(out, "\n")] = '\0';
	fclose(f);
}

static bool accel__cache_load(const char *path, const char *boot_id,
			      struct hostd_accel_choice *out)
{
	json_t *j = json_load_file(path, 0, NULL);
	if (!j)
		return false;
	bool ok = false;
	const char *b = json_string_value(json_object_get(j, "boot_id"));
	const char *a = json_string_value(json_object_get(j, "accel"));
	const char *r = json_string_value(json_object_get(j, "reason"));
	if (b && a && r && !strcmp(b, boot_id) &&
	    (!strcmp(a, "kvm") || !strcmp(a, "tcg"))) {
		out->accel =
		    !strcmp(a, "kvm") ? HOSTD_ACCEL_KVM : HOSTD_ACCEL_TCG;
		snprintf(out->reason, sizeof(out->reason), "%s (cached)", r);
		out->probe_ms = json_real_value(json_object_get(j, "probe_ms"));
		ok = true;
	}
	json_decref(j);
	return ok;
}

static void accel__cache_save(const char *path, const char *boot_id,
			      const struct hostd_accel_choice *c)
{
	char tmp[512];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	json_t *j = json_pack("{s:s, s:s, s:s, s:f}", "boot_id", boot_id,
			      "accel", hostd_accel_name(c->accel), "reason",
			      c->reason, "probe_ms", c->probe_ms);
	if (!j)
		return;
	if (json_dump_file(j, tmp, JSON_COMPACT) == 0)
		rename(tmp, path);
	json_decref(j);
}

void hostd_accel_choose(enum hostd_accel mode, const char *cache_path,
			struct hostd_accel_choice *out)
{
	memset(out, 0, sizeof(*out));
	if (mode != HOSTD_ACCEL_AUTO) {
		out->accel = mode;
		snprintf(out->reason, sizeof(out->reason),
			 "forced by the agent's configuration (accel=%s)",
			 hostd_accel_name(mode));
		return;
	}
	char boot_id[64];
	accel__boot_id(boot_id, sizeof(boot_id));
	if (cache_path && boot_id[0] &&
	    accel__cache_load(cache_path, boot_id, out))
		return;
	double exit_us = 0, loop_ms = 0, t0 = accel__now_ms();
	char why[160] = "";
	int rc = accel__probe_timed(&exit_us, &loop_ms, why, sizeof(why));
	out->probe_ms = accel__now_ms() - t0;
	if (rc < 0) {
		out->accel = HOSTD_ACCEL_TCG;
		snprintf(out->reason, sizeof(out->reason), "KVM unusable: %s",
			 why);
	} else if (exit_us > ACCEL_MAX_EXIT_US || loop_ms > ACCEL_MAX_LOOP_MS) {
		out->accel = HOSTD_ACCEL_TCG;
		snprintf(out->reason, sizeof(out->reason),
			 "KVM too slow: %.1f us per exit (limit %.0f), "
			 "%.1f ms for %u instructions (limit %.0f)",
			 exit_us, ACCEL_MAX_EXIT_US, loop_ms, ACCEL_LOOP * 2,
			 ACCEL_MAX_LOOP_MS);
	} else {
		out->accel = HOSTD_ACCEL_KVM;
		snprintf(out->reason, sizeof(out->reason),
			 "KVM probe passed: %.1f us per exit, %.1f ms for "
			 "%u instructions",
			 exit_us, loop_ms, ACCEL_LOOP * 2);
	}
	log_info(ACCEL_LOG, "%s: %s", hostd_accel_name(out->accel),
		 out->reason);
	if (cache_path && boot_id[0])
		accel__cache_save(cache_path, boot_id, out);
}
