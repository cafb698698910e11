/* UEFI firmware (OVMF) for VMs that boot with {"firmware": "ovmf"}, and
 * their variable stores.
 *
 * OVMF comes as two flash images: CODE (the firmware, read-only, shared by
 * every VM) and VARS (the UEFI variables: boot entries, boot order, Secure
 * Boot keys), which the firmware writes. A product gives each VM its own
 * VARS, made from the package's empty template when the VM is defined, so
 * that what a guest's installer or efibootmgr stores survives the VM's
 * restarts and no VM sees another's variables (Debian's README.Debian for
 * ovmf says the same). The copy is the VM's until the VM is deleted.
 *
 * CODE and VARS must come from the same build: OVMF is built as one flash
 * device (OvmfPkg's FD_SIZE_1MB / 2MB / 4MB) whose first part is the
 * variable store and the rest the code, and it looks for its variables at
 * the offsets of its own layout. So the two files must add up to one of
 * those sizes, and a VM's copy must have the template's size; anything
 * else is refused with a message rather than started into a firmware that
 * cannot find its variables. */
#include <cairn/hostd.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "file.h"

/* Template and store sizes are a few hundred KiB; anything past this is not
 * an OVMF variable store. */
#define OVMF_VARS_MAX (16u << 20)

static int ovmf__size(const char *what, const char *path, off_t *size,
		      char *err, size_t errlen)
{
	struct stat st;
	if (stat(path, &st) < 0) {
		int e = errno;
		snprintf(err, errlen, "%s %s: %s", what, path, strerror(e));
		return -e;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s %s: not a file", what, path);
		return -EINVAL;
	}
	*size = st.st_size;
	return 0;
}

/* ovmf_check, also giving the template's size. */
static int ovmf__check(const struct ovmf_files *fw, off_t *vars, char *err,
		       size_t errlen)
{
	off_t code;
	int rc;
	if ((rc = ovmf__size("OVMF firmware", fw->code, &code, err, errlen)) <
		0 ||
	    (rc = ovmf__size("OVMF variable store template", fw->vars, vars,
			     err, errlen)) < 0)
		return rc;
	off_t fd = code + *vars;
	if (fd != (1 << 20) && fd != (2 << 20) && fd != (4 << 20)) {
		snprintf(err, errlen,
			 "OVMF %s (%lld bytes) and %s (%lld bytes) are not "
			 "one build's pair (together not 1, 2 or 4 MiB)",
			 fw->code, (long long)code, fw->vars, (long long)*vars);
		return -EINVAL;
	}
	return 0;
}

int ovmf_check(const struct ovmf_files *fw, char *err, size_t errlen)
{
	off_t vars;
	return ovmf__check(fw, &vars, err, errlen);
}

static int ovmf__read_template(const struct ovmf_files *fw, char **buf,
			       size_t *len, char *err, size_t errlen)
{
	int fd = open(fw->vars, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		snprintf(err, errlen, "OVMF variable store template %s: %s",
			 fw->vars, strerror(e));
		return -e;
	}
	if (!S_ISREG(st.st_mode) || st.st_size <= 0 ||
	    st.st_size > OVMF_VARS_MAX) {
		close(fd);
		snprintf(err, errlen,
			 "OVMF variable store template %s: not a variable "
			 "store (%lld bytes)",
			 fw->vars, (long long)st.st_size);
		return -EINVAL;
	}
	size_t n = (size_t)st.st_size, off = 0;
	char *b = malloc(n);
	if (!b) {
		close(fd);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	while (off < n) {
		ssize_t r = read(fd, b + off, n - off);
		if (r <= 0) {
			int e = r < 0 ? errno : EIO;
			free(b);
			close(fd);
			snprintf(err, errlen, "reading %s: %s", fw->vars,
				 r < 0 ? strerror(e) : "file shrank");
			return -e;
		}
		off += (size_t)r;
	}
	close(fd);
	*buf = b;
	*len = n;
	return 0;
}

int ovmf_nvram_create(const struct ovmf_files *fw, const char *nvram, char *err,
		      size_t errlen)
{
	char *buf = NULL;
	size_t len = 0;
	int rc = ovmf__read_template(fw, &buf, &len, err, errlen);
	if (rc < 0)
		return rc;
	/* 0600: the store holds what the guest put there (boot entries, and
	 * for Secure Boot its keys); only the agent (and QEMU, run by it)
	 * has business with it. */
	rc = file_write_atomic(nvram, buf, len, 0600);
	free(buf);
	if (rc < 0)
		snprintf(err, errlen,
			 "cannot make the VM's variable store %s: %s", nvram,
			 strerror(-rc));
	return rc;
}

int ovmf_nvram_prepare(const struct ovmf_files *fw, const char *nvram,
		       char *err, size_t errlen)
{
	off_t have, want;
	int rc;
	if ((rc = ovmf__check(fw, &want, err, errlen)) < 0)
		return rc;
	rc = ovmf__size("variable store", nvram, &have, err, errlen);
	if (rc == -ENOENT) {
		/* Defined by an agent without variable stores, or removed
		 * by hand: start from the template. */
		rc = ovmf_nvram_create(fw, nvram, err, errlen);
		return rc < 0 ? rc : 1;
	}
	if (rc < 0)
		return rc;
	if (have != want) {
		snprintf(err, errlen,
			 "variable store %s is %lld bytes, the template %s "
			 "%lld: made for another OVMF build",
			 nvram, (long long)have, fw->vars, (long long)want);
		return -EINVAL;
	}
	return 0;
}
