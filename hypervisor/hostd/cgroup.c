/* Per-VM cgroups for CPU and memory limits, on either hierarchy:
 *
 *   v2 (Debian 12 servers; ROOT/cgroup.controllers exists):
 *     ROOT/cairn/NAME/{cpu.max, memory.max, cgroup.procs}, with +cpu +memory
 *     enabled in ROOT/ and ROOT/cairn/ cgroup.subtree_control;
 *   v1 (ROOT/cpu and ROOT/memory mounted separately):
 *     ROOT/cpu/cairn/NAME/{cpu.cfs_period_us, cpu.cfs_quota_us, cgroup.procs}
 *     ROOT/memory/cairn/NAME/{memory.limit_in_bytes, cgroup.procs}.
 *
 * A VM with no limits gets no cgroup. The groups are made and limited
 * before QEMU is spawned, and QEMU is started through cairn-vm-exec, which
 * joins them and then execs it: not one instruction of QEMU runs outside
 * its limits. ROOT is a parameter so the tests can use a fake tree. */
#include <cairn/hostd.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

#define CGROUP_PERIOD_US 100000

static bool cgroup__exists(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
static bool cgroup__exists(const char *fmt, ...)
{
	char p[PATH_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p, sizeof(p), fmt, ap);
	va_end(ap);
	return access(p, F_OK) == 0;
}

void cgroup_detect(struct cgroup_ctx *c, const char *root)
{
	memset(c, 0, sizeof(*c));
	str_copy(c->root, root ? root : "/sys/fs/cgroup", sizeof(c->root));
	if (cgroup__exists("%s/cgroup.controllers", c->root))
		c->version = CGROUP_V2;
	else if (cgroup__exists("%s/cpu", c->root) &&
		 cgroup__exists("%s/memory", c->root))
		c->version = CGROUP_V1;
	else
		c->version = CGROUP_NONE;
}

static int cgroup__write(const char *dir, const char *file, const char *val)
{
	char p[PATH_MAX];
	if (snprintf(p, sizeof(p), "%s/%s", dir, file) >= (int)sizeof(p))
		return -ENAMETOOLONG;
	int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	ssize_t w = write(fd, val, strlen(val));
	int rc = w < 0 ? -errno : 0;
	close(fd);
	return rc;
}

static int cgroup__mkdir(const char *p)
{
	return mkdir(p, 0755) < 0 && errno != EEXIST ? -errno : 0;
}

/* Makes BASE/cairn and BASE/cairn/NAME; the latter's path goes to out. */
static int cgroup__make(const char *base, const char *name, char *out, size_t n)
{
	char p[PATH_MAX];
	int rc;
	snprintf(p, sizeof(p), "%s/cairn", base);
	if ((rc = cgroup__mkdir(p)) < 0)
		return rc;
	if (snprintf(out, n, "%s/cairn/%s", base, name) >= (int)n)
		return -ENAMETOOLONG;
	return cgroup__mkdir(out);
}

static int cgroup__add_join(struct cgroup_join *j, const char *dir)
{
	if (j->n >= ARRAY_SIZE(j->dirs))
		return -E2BIG;
	str_copy(j->dirs[j->n++], dir, sizeof(j->dirs[0]));
	return 0;
}

int cgroup_vm_setup(const struct cgroup_ctx *c, const char *name,
		    unsigned cpu_limit_pct, uint64_t memory_limit_mib,
		    struct cgroup_join *j, char *err, size_t errlen)
{
	char dir[PATH_MAX], base[PATH_MAX], val[64];
	int rc = 0;
	const char *step = "";
	j->n = 0;
	if (!cpu_limit_pct && !memory_limit_mib)
		return 0;
	unsigned long long quota =
	    (unsigned long long)cpu_limit_pct * CGROUP_PERIOD_US / 100;
	unsigned long long bytes = (unsigned long long)memory_limit_mib << 20;
	switch (c->version) {
	case CGROUP_NONE:
		snprintf(err, errlen,
			 "limits asked for but no cgroup hierarchy at %s",
			 c->root);
		return -ENOTSUP;
	case CGROUP_V2:
		step = "enable controllers";
		if ((rc = cgroup__write(c->root, "cgroup.subtree_control",
					"+cpu +memory")) < 0)
			break;
		step = "mkdir";
		if ((rc = cgroup__make(c->root, name, dir, sizeof(dir))) < 0)
			break;
		snprintf(base, sizeof(base), "%s/cairn", c->root);
		step = "enable controllers in cairn/";
		if ((rc = cgroup__write(base, "cgroup.subtree_control",
					"+cpu +memory")) < 0)
			break;
		if (cpu_limit_pct) {
			step = "cpu.max";
			snprintf(val, sizeof(val), "%llu %u", quota,
				 CGROUP_PERIOD_US);
			if ((rc = cgroup__write(dir, "cpu.max", val)) < 0)
				break;
		}
		if (memory_limit_mib) {
			step = "memory.max";
			snprintf(val, sizeof(val), "%llu", bytes);
			if ((rc = cgroup__write(dir, "memory.max", val)) < 0)
				break;
		}
		step = "cgroup.procs";
		rc = cgroup__add_join(j, dir);
		break;
	case CGROUP_V1:
		if (cpu_limit_pct) {
			snprintf(base, sizeof(base), "%s/cpu", c->root);
			step = "mkdir cpu";
			if ((rc = cgroup__make(base, name, dir, sizeof(dir))) <
			    0)
				break;
			step = "cpu.cfs_period_us";
			snprintf(val, sizeof(val), "%u", CGROUP_PERIOD_US);
			if ((rc = cgroup__write(dir, "cpu.cfs_period_us",
						val)) < 0)
				break;
			step = "cpu.cfs_quota_us";
			snprintf(val, sizeof(val), "%llu", quota);
			if ((rc = cgroup__write(dir, "cpu.cfs_quota_us", val)) <
			    0)
				break;
			step = "cpu cgroup.procs";
			if ((rc = cgroup__add_join(j, dir)) < 0)
				break;
		}
		if (memory_limit_mib) {
			snprintf(base, sizeof(base), "%s/memory", c->root);
			step = "mkdir memory";
			if ((rc = cgroup__make(base, name, dir, sizeof(dir))) <
			    0)
				break;
			step = "memory.limit_in_bytes";
			snprintf(val, sizeof(val), "%llu", bytes);
			if ((rc = cgroup__write(dir, "memory.limit_in_bytes",
						val)) < 0)
				break;
			step = "memory cgroup.procs";
			rc = cgroup__add_join(j, dir);
		}
		break;
	}
	if (rc < 0)
		snprintf(err, errlen, "cgroup %s (v%d) for %s: %s", step,
			 c->version == CGROUP_V2 ? 2 : 1, name, strerror(-rc));
	return rc;
}

int cgroup_join(const struct cgroup_join *j, int pid, char *err,
		size_t errlen)
{
	char pidstr[24];
	snprintf(pidstr, sizeof(pidstr), "%d", pid);
	for (unsigned i = 0; i < j->n; i++) {
		int rc = cgroup__write(j->dirs[i], "cgroup.procs", pidstr);
		if (rc < 0) {
			snprintf(err, errlen, "cannot join cgroup %s: %s",
				 j->dirs[i], strerror(-rc));
			return rc;
		}
	}
	return 0;
}

int cgroup_vm_remove(const struct cgroup_ctx *c, const char *name)
{
	char p[PATH_MAX];
	int rc = 0;
	const char *const v1[] = {"cpu", "memory"};
	switch (c->version) {
	case CGROUP_NONE:
		return 0;
	case CGROUP_V2:
		snprintf(p, sizeof(p), "%s/cairn/%s", c->root, name);
		if (rmdir(p) < 0 && errno != ENOENT)
			rc = -errno;
		return rc;
	case CGROUP_V1:
		for (size_t i = 0; i < ARRAY_SIZE(v1); i++) {
			snprintf(p, sizeof(p), "%s/%s/cairn/%s", c->root, v1[i],
				 name);
			if (rmdir(p) < 0 && errno != ENOENT)
				rc = -errno;
		}
		return rc;
	}
	return 0;
}
