/* VM definitions: JSON in and out, validation against the host, stable MACs.
 *
 * {
 *   "name": "web1", "uuid": "…" (optional: the agent assigns one),
 *   "vcpus": 2, "memory_mib": 1024,
 *   "boot": {"kernel": P, "initrd": P, "cmdline": S}
 *        or {"firmware": "seabios"|"ovmf"}       (boot from the first disk),
 *   "disks": [{"vdisk": NAME} | {"vhost_socket": P}
 *             | {"file": P, "readonly": false}],
 *   "nics": [{"bridge": "cairnbr0", "mac": "52:54:00:…" (optional)}],
 *   "restart": "never"|"on-crash"|"always",
 *   "limits": {"cpu_pct": 150, "memory_mib": 1200}
 * }
 *
 * Pure: no state beyond the struct; files are only stat()ed when asked. */
#include <cairn/hostd.h>
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

static int vm_def__err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int vm_def__err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (err && errlen)
		vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

bool vm_name_valid(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > VM_NAME_MAX || s[0] == '.' || s[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '-' &&
		    s[i] != '_' && s[i] != '.')
			return false;
	return true;
}

bool vm_uuid_valid(const char *s)
{
	if (strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return false;
		} else if (!isxdigit((unsigned char)s[i])) {
			return false;
		}
	}
	return true;
}

static const char *const vm_restart_names[] = {
    [VM_RESTART_NEVER] = "never",
    [VM_RESTART_ON_CRASH] = "on-crash",
    [VM_RESTART_ALWAYS] = "always",
};

const char *vm_restart_name(enum vm_restart r)
{
	return (unsigned)r < ARRAY_SIZE(vm_restart_names) ? vm_restart_names[r]
							  : "?";
}

/* FNV-1a: small, stable forever (MACs must not change across releases). */
static uint64_t vm_def__fnv(const void *p, size_t n, uint64_t h)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

void vm_mac_generate(const char *uuid, unsigned index, uint8_t mac[6])
{
	uint64_t h = vm_def__fnv(uuid, strlen(uuid), 0xcbf29ce484222325ull);
	uint8_t ix = (uint8_t)index;
	h = vm_def__fnv(&ix, 1, h);
	/* 52:54:00 is QEMU's prefix; 0x52 has the locally administered bit
	 * set and the multicast bit clear. */
	mac[0] = 0x52;
	mac[1] = 0x54;
	mac[2] = 0x00;
	mac[3] = (uint8_t)(h >> 40);
	mac[4] = (uint8_t)(h >> 24);
	mac[5] = (uint8_t)(h >> 8);
}

void vm_mac_format(const uint8_t mac[6], char out[18])
{
	snprintf(out, 18, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1],
		 mac[2], mac[3], mac[4], mac[5]);
}

static int vm_def__parse_mac(const char *s, uint8_t mac[6])
{
	unsigned v[6];
	char tail;
	if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3],
		   &v[4], &v[5], &tail) != 6 ||
	    strlen(s) != 17)
		return -EINVAL;
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)v[i];
	if (mac[0] & 1) /* multicast */
		return -EINVAL;
	return 0;
}

void vm_def_fill_macs(struct vm_def *d)
{
	for (unsigned i = 0; i < d->n_nics; i++)
		if (!d->nics[i].mac_given)
			vm_mac_generate(d->uuid, i, d->nics[i].mac);
}

void vm_def_free(struct vm_def *d)
{
	free(d->kernel);
	free(d->initrd);
	free(d->cmdline);
	for (unsigned i = 0; i < d->n_disks; i++) {
		free(d->disks[i].vdisk);
		free(d->disks[i].vhost_socket);
		free(d->disks[i].file);
	}
	memset(d, 0, sizeof(*d));
}

/* A positive integer member; absent → def_val (0 = required). */
static int vm_def__uint(const json_t *o, const char *key, uint64_t def_val,
			uint64_t *out, char *err, size_t errlen)
{
	json_t *v = json_object_get(o, key);
	if (!v) {
		if (!def_val)
			return vm_def__err(err, errlen, "%s is required", key);
		*out = def_val;
		return 0;
	}
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return vm_def__err(err, errlen,
				   "%s must be a non-negative integer", key);
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

/* An optional string member, copied; -EINVAL if present and not a string. */
static int vm_def__str(const json_t *o, const char *key, char **out, char *err,
		       size_t errlen)
{
	json_t *v = json_object_get(o, key);
	*out = NULL;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return vm_def__err(err, errlen, "%s must be a string", key);
	*out = strdup(json_string_value(v));
	return *out ? 0 : -ENOMEM;
}

static int vm_def__check_keys(const json_t *o, const char *what,
			      const char *const *keys, char *err, size_t errlen)
{
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)o, k, v)
	{
		bool known = false;
		for (size_t i = 0; keys[i]; i++)
			known |= !strcmp(k, keys[i]);
		if (!known)
			return vm_def__err(err, errlen,
					   "%s: unknown field '%s'", what, k);
	}
	return 0;
}

static int vm_def__parse_boot(const json_t *b, struct vm_def *d, char *err,
			      size_t errlen)
{
	static const char *const keys[] = {"kernel", "initrd", "cmdline",
					   "firmware", NULL};
	int rc;
	if (!json_is_object(b))
		return vm_def__err(err, errlen, "boot must be an object");
	if ((rc = vm_def__check_keys(b, "boot", keys, err, errlen)) < 0)
		return rc;
	if ((rc = vm_def__str(b, "kernel", &d->kernel, err, errlen)) < 0 ||
	    (rc = vm_def__str(b, "initrd", &d->initrd, err, errlen)) < 0 ||
	    (rc = vm_def__str(b, "cmdline", &d->cmdline, err, errlen)) < 0)
		return rc;
	json_t *fw = json_object_get(b, "firmware");
	if (d->kernel) {
		if (fw)
			return vm_def__err(err, errlen,
					   "boot: give kernel or firmware, "
					   "not both");
		d->boot = VM_BOOT_KERNEL;
		return 0;
	}
	if (d->initrd || d->cmdline)
		return vm_def__err(err, errlen,
				   "boot: initrd and cmdline need a kernel");
	d->boot = VM_BOOT_DISK;
	if (!fw ||
	    (json_is_string(fw) && !strcmp(json_string_value(fw), "seabios")))
		d->firmware = VM_FW_SEABIOS;
	else if (json_is_string(fw) && !strcmp(json_string_value(fw), "ovmf"))
		d->firmware = VM_FW_OVMF;
	else
		return vm_def__err(err, errlen,
				   "boot.firmware must be seabios or ovmf");
	return 0;
}

static int vm_def__parse_disks(const json_t *a, struct vm_def *d, char *err,
			       size_t errlen)
{
	static const char *const keys[] = {"vdisk", "vhost_socket", "file",
					   "readonly", NULL};
	if (!json_is_array(a))
		return vm_def__err(err, errlen, "disks must be an array");
	if (json_array_size(a) > VM_MAX_DISKS)
		return vm_def__err(err, errlen, "at most %d disks",
				   VM_MAX_DISKS);
	size_t i;
	json_t *o;
	json_array_foreach(a, i, o)
	{
		struct vm_disk *k = &d->disks[d->n_disks];
		int rc;
		char what[32];
		snprintf(what, sizeof(what), "disks[%zu]", i);
		if (!json_is_object(o))
			return vm_def__err(err, errlen, "%s must be an object",
					   what);
		if ((rc = vm_def__check_keys(o, what, keys, err, errlen)) < 0)
			return rc;
		d->n_disks++;
		if ((rc = vm_def__str(o, "vdisk", &k->vdisk, err, errlen)) <
			0 ||
		    (rc = vm_def__str(o, "vhost_socket", &k->vhost_socket, err,
				      errlen)) < 0 ||
		    (rc = vm_def__str(o, "file", &k->file, err, errlen)) < 0)
			return rc;
		if (!!k->vdisk + !!k->vhost_socket + !!k->file != 1)
			return vm_def__err(
			    err, errlen,
			    "%s: give exactly one of vdisk, vhost_socket "
			    "and file",
			    what);
		if (k->vdisk && !vm_vdisk_name_valid(k->vdisk))
			return vm_def__err(err, errlen,
					   "%s.vdisk: bad vdisk name '%s'",
					   what, k->vdisk);
		json_t *ro = json_object_get(o, "readonly");
		if (ro && !json_is_boolean(ro))
			return vm_def__err(
			    err, errlen, "%s.readonly must be a boolean", what);
		k->readonly = ro && json_is_true(ro);
	}
	return 0;
}

static int vm_def__parse_nics(const json_t *a, struct vm_def *d, char *err,
			      size_t errlen)
{
	static const char *const keys[] = {"bridge", "mac", NULL};
	if (!json_is_array(a))
		return vm_def__err(err, errlen, "nics must be an array");
	if (json_array_size(a) > VM_MAX_NICS)
		return vm_def__err(err, errlen, "at most %d nics", VM_MAX_NICS);
	size_t i;
	json_t *o;
	json_array_foreach(a, i, o)
	{
		struct vm_nic *n = &d->nics[d->n_nics];
		int rc;
		char what[32];
		snprintf(what, sizeof(what), "nics[%zu]", i);
		if (!json_is_object(o))
			return vm_def__err(err, errlen, "%s must be an object",
					   what);
		if ((rc = vm_def__check_keys(o, what, keys, err, errlen)) < 0)
			return rc;
		d->n_nics++;
		json_t *br = json_object_get(o, "bridge");
		if (br) {
			const char *s =
			    json_is_string(br) ? json_string_value(br) : NULL;
			if (!s || !*s || strlen(s) > VM_BRIDGE_MAX ||
			    strpbrk(s, "/ \t\n:"))
				return vm_def__err(err, errlen,
						   "%s.bridge must be an "
						   "interface name (1-%d "
						   "characters)",
						   what, VM_BRIDGE_MAX);
			str_copy(n->bridge, s, sizeof(n->bridge));
		}
		json_t *mac = json_object_get(o, "mac");
		if (mac) {
			if (!json_is_string(mac) ||
			    vm_def__parse_mac(json_string_value(mac), n->mac) <
				0)
				return vm_def__err(err, errlen,
						   "%s.mac must be a unicast "
						   "xx:xx:xx:xx:xx:xx",
						   what);
			n->mac_given = true;
		}
	}
	return 0;
}

int vm_def_from_json(const struct json_t *jc, struct vm_def *d, char *err,
		     size_t errlen)
{
	static const char *const keys[] = {
	    "name",  "uuid", "vcpus",	"memory_mib", "boot",
	    "disks", "nics", "restart", "limits",     NULL};
	const json_t *j = (const json_t *)jc;
	uint64_t v;
	int rc;
	memset(d, 0, sizeof(*d));
	if (!json_is_object(j))
		return vm_def__err(err, errlen,
				   "a VM definition must be a JSON object");
	if ((rc = vm_def__check_keys(j, "definition", keys, err, errlen)) < 0)
		return rc;
	json_t *name = json_object_get(j, "name");
	if (!json_is_string(name) || !vm_name_valid(json_string_value(name)))
		return vm_def__err(err, errlen,
				   "name must be 1-%d characters of "
				   "[A-Za-z0-9._-], not starting with . or -",
				   VM_NAME_MAX);
	str_copy(d->name, json_string_value(name), sizeof(d->name));
	json_t *uuid = json_object_get(j, "uuid");
	if (uuid) {
		if (!json_is_string(uuid) ||
		    !vm_uuid_valid(json_string_value(uuid)))
			return vm_def__err(err, errlen,
					   "uuid must look like "
					   "xxxxxxxx-xxxx-xxxx-xxxx-"
					   "xxxxxxxxxxxx");
		str_copy(d->uuid, json_string_value(uuid), sizeof(d->uuid));
		for (char *p = d->uuid; *p; p++)
			*p = (char)tolower((unsigned char)*p);
	}
	if ((rc = vm_def__uint(j, "vcpus", 1, &v, err, errlen)) < 0)
		return rc;
	if (v > 4096)
		return vm_def__err(err, errlen, "vcpus %llu: too many",
				   (unsigned long long)v);
	d->vcpus = (unsigned)v;
	if ((rc = vm_def__uint(j, "memory_mib", 0, &d->memory_mib, err,
			       errlen)) < 0)
		return rc;
	json_t *boot = json_object_get(j, "boot");
	if (!boot)
		return vm_def__err(err, errlen, "boot is required");
	if ((rc = vm_def__parse_boot(boot, d, err, errlen)) < 0)
		return rc;
	json_t *disks = json_object_get(j, "disks");
	if (disks && (rc = vm_def__parse_disks(disks, d, err, errlen)) < 0)
		return rc;
	json_t *nics = json_object_get(j, "nics");
	if (nics && (rc = vm_def__parse_nics(nics, d, err, errlen)) < 0)
		return rc;
	json_t *r = json_object_get(j, "restart");
	d->restart = VM_RESTART_NEVER;
	if (r) {
		bool found = false;
		for (unsigned i = 0; i < ARRAY_SIZE(vm_restart_names); i++)
			if (json_is_string(r) && !strcmp(json_string_value(r),
							 vm_restart_names[i])) {
				d->restart = (enum vm_restart)i;
				found = true;
			}
		if (!found)
			return vm_def__err(err, errlen,
					   "restart must be never, on-crash "
					   "or always");
	}
	json_t *lim = json_object_get(j, "limits");
	if (lim) {
		static const char *const lkeys[] = {"cpu_pct", "memory_mib",
						    NULL};
		if (!json_is_object(lim))
			return vm_def__err(err, errlen,
					   "limits must be an object");
		if ((rc = vm_def__check_keys(lim, "limits", lkeys, err,
					     errlen)) < 0)
			return rc;
		json_t *c = json_object_get(lim, "cpu_pct");
		if (c) {
			if (!json_is_integer(c) || json_integer_value(c) < 1 ||
			    json_integer_value(c) > 1000000)
				return vm_def__err(err, errlen,
						   "limits.cpu_pct must be a "
						   "positive integer");
			d->cpu_limit_pct = (unsigned)json_integer_value(c);
		}
		if ((rc = vm_def__uint(lim, "memory_mib", UINT64_MAX, &v, err,
				       errlen)) < 0)
			return rc;
		d->memory_limit_mib = v == UINT64_MAX ? 0 : v;
	}
	if (d->uuid[0])
		vm_def_fill_macs(d);
	return 0;
}

static int vm_def__file_ok(const char *what, const char *path, bool socket,
			   char *err, size_t errlen)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return vm_def__err(err, errlen, "%s %s: %s", what, path,
				   strerror(errno));
	if (socket ? !S_ISSOCK(st.st_mode)
		   : !S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
		return vm_def__err(err, errlen, "%s %s: not a %s", what, path,
				   socket ? "unix socket" : "file");
	return 0;
}

int vm_def_validate(const struct vm_def *d, const struct vm_host_limits *host,
		    bool check_files, char *err, size_t errlen)
{
	int rc;
	if (d->vcpus == 0)
		return vm_def__err(err, errlen, "vcpus must be at least 1");
	/* Overcommit is normal, but past 4 vCPUs per host CPU a VM only
	 * thrashes. */
	if (host->cpus && d->vcpus > host->cpus * 4)
		return vm_def__err(err, errlen,
				   "vcpus %u: more than 4x the host's %u CPUs",
				   d->vcpus, host->cpus);
	if (d->memory_mib == 0)
		return vm_def__err(err, errlen,
				   "memory_mib must be at least 1");
	if (host->memory_mib && d->memory_mib > host->memory_mib)
		return vm_def__err(err, errlen,
				   "memory_mib %llu: more than the host's "
				   "%llu MiB",
				   (unsigned long long)d->memory_mib,
				   (unsigned long long)host->memory_mib);
	if (d->memory_limit_mib && d->memory_limit_mib < d->memory_mib)
		return vm_def__err(err, errlen,
				   "limits.memory_mib %llu is below the VM's "
				   "memory %llu MiB (QEMU would be killed)",
				   (unsigned long long)d->memory_limit_mib,
				   (unsigned long long)d->memory_mib);
	if (d->boot == VM_BOOT_DISK && d->n_disks == 0)
		return vm_def__err(err, errlen,
				   "boot from firmware needs a disk");
	if (!check_files)
		return 0;
	if (d->boot == VM_BOOT_KERNEL) {
		if ((rc = vm_def__file_ok("kernel", d->kernel, false, err,
					  errlen)) < 0)
			return rc;
		if (d->initrd && (rc = vm_def__file_ok("initrd", d->initrd,
						       false, err, errlen)) < 0)
			return rc;
	}
	for (unsigned i = 0; i < d->n_disks; i++) {
		const struct vm_disk *k = &d->disks[i];
		char what[24];
		snprintf(what, sizeof(what), "disks[%u]", i);
		if (!k->file && !k->vhost_socket)
			return vm_def__err(err, errlen,
					   "%s: vdisk %s is not resolved to "
					   "a socket", what, k->vdisk);
		rc = k->file
			 ? vm_def__file_ok(what, k->file, false, err, errlen)
			 : vm_def__file_ok(what, k->vhost_socket, true, err,
					   errlen);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* Same rule as the engine's vdisk names (sds.h): what cairnd can serve. */
bool vm_vdisk_name_valid(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > VM_VDISK_NAME_MAX || s[0] == '.' || s[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("._-", s[i]))
			return false;
	return true;
}

int vm_def_resolve_vdisks(struct vm_def *d, const char *vhost_dir, char *err,
			  size_t errlen)
{
	for (unsigned i = 0; i < d->n_disks; i++) {
		struct vm_disk *k = &d->disks[i];
		if (!k->vdisk)
			continue;
		if (!vhost_dir)
			return vm_def__err(err, errlen,
					   "disks[%u]: vdisk %s: the agent has "
					   "no --vhost-dir", i, k->vdisk);
		char *path = NULL;
		if (asprintf(&path, "%s/%s.sock", vhost_dir, k->vdisk) < 0)
			return -ENOMEM;
		free(k->vhost_socket);
		k->vhost_socket = path;
	}
	return 0;
}

json_t *vm_def_to_json(const struct vm_def *d)
{
	json_t *j = json_object(), *boot = json_object(), *disks = json_array(),
	       *nics = json_array();
	if (!j || !boot || !disks || !nics)
		goto nomem;
	json_object_set_new(j, "name", json_string(d->name));
	if (d->uuid[0])
		json_object_set_new(j, "uuid", json_string(d->uuid));
	json_object_set_new(j, "vcpus", json_integer(d->vcpus));
	json_object_set_new(j, "memory_mib",
			    json_integer((json_int_t)d->memory_mib));
	if (d->boot == VM_BOOT_KERNEL) {
		json_object_set_new(boot, "kernel", json_string(d->kernel));
		if (d->initrd)
			json_object_set_new(boot, "initrd",
					    json_string(d->initrd));
		if (d->cmdline)
			json_object_set_new(boot, "cmdline",
					    json_string(d->cmdline));
	} else {
		json_object_set_new(boot, "firmware",
				    json_string(d->firmware == VM_FW_OVMF
						    ? "ovmf"
						    : "seabios"));
	}
	json_object_set_new(j, "boot", boot);
	boot = NULL;
	for (unsigned i = 0; i < d->n_disks; i++) {
		json_t *o = json_object();
		if (!o)
			goto nomem;
		if (d->disks[i].vdisk) /* not its socket: resolved per start */
			json_object_set_new(o, "vdisk",
					    json_string(d->disks[i].vdisk));
		else if (d->disks[i].vhost_socket)
			json_object_set_new(
			    o, "vhost_socket",
			    json_string(d->disks[i].vhost_socket));
		else
			json_object_set_new(o, "file",
					    json_string(d->disks[i].file));
		if (d->disks[i].readonly)
			json_object_set_new(o, "readonly", json_true());
		json_array_append_new(disks, o);
	}
	json_object_set_new(j, "disks", disks);
	disks = NULL;
	for (unsigned i = 0; i < d->n_nics; i++) {
		json_t *o = json_object();
		char mac[18];
		if (!o)
			goto nomem;
		if (d->nics[i].bridge[0])
			json_object_set_new(o, "bridge",
					    json_string(d->nics[i].bridge));
		/* Generated MACs are written out too, so the definition a
		 * user reads back is the one the VM runs with. */
		if (d->nics[i].mac_given || d->uuid[0]) {
			vm_mac_format(d->nics[i].mac, mac);
			json_object_set_new(o, "mac", json_string(mac));
		}
		json_array_append_new(nics, o);
	}
	json_object_set_new(j, "nics", nics);
	nics = NULL;
	json_object_set_new(j, "restart",
			    json_string(vm_restart_name(d->restart)));
	if (d->cpu_limit_pct || d->memory_limit_mib) {
		json_t *lim = json_object();
		if (!lim)
			goto nomem;
		if (d->cpu_limit_pct)
			json_object_set_new(lim, "cpu_pct",
					    json_integer(d->cpu_limit_pct));
		if (d->memory_limit_mib)
			json_object_set_new(
			    lim, "memory_mib",
			    json_integer((json_int_t)d->memory_limit_mib));
		json_object_set_new(j, "limits", lim);
	}
	return j;
nomem:
	json_decref(j);
	json_decref(boot);
	json_decref(disks);
	json_decref(nics);
	return NULL;
}
