/* The VM lifecycle state machine and its persistence.
 *
 *   defined --start--> starting --QMP says running--> running
 *   running --stop--> stopping --QEMU exits--> stopped
 *   running/paused --guest powers off--> stopped
 *   starting/running/paused --QEMU dies unasked--> crashed
 *   running <--STOP/RESUME events--> paused
 *   stopped/crashed --start--> starting
 *   starting/running/paused/stopping --force-stop--> stopped
 *
 * Every state change is written to DIR/vms/NAME.json before the agent acts
 * on it, so an agent that dies and restarts finds each VM where it left it
 * (hostd.c re-attaches a live QEMU or marks a dead one crashed). */
#include <cairn/hostd.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "file.h"
#include "util.h"

static const char *const vm_state_names[VM_STATE_COUNT] = {
    [VM_DEFINED] = "defined", [VM_STARTING] = "starting",
    [VM_RUNNING] = "running", [VM_STOPPING] = "stopping",
    [VM_STOPPED] = "stopped", [VM_CRASHED] = "crashed",
    [VM_PAUSED] = "paused",
};

/* allowed[from] is a bit set of the states `from` may move to. */
#define B(s) (1u << (s))
static const unsigned vm_state_allowed[VM_STATE_COUNT] = {
    [VM_DEFINED] = B(VM_STARTING),
    [VM_STARTING] = B(VM_RUNNING) | B(VM_PAUSED) | B(VM_CRASHED) |
		    B(VM_STOPPED) | B(VM_STOPPING),
    [VM_RUNNING] =
	B(VM_STOPPING) | B(VM_STOPPED) | B(VM_CRASHED) | B(VM_PAUSED),
    [VM_STOPPING] = B(VM_STOPPED) | B(VM_CRASHED),
    [VM_STOPPED] = B(VM_STARTING),
    [VM_CRASHED] = B(VM_STARTING) | B(VM_STOPPED),
    [VM_PAUSED] =
	B(VM_RUNNING) | B(VM_STOPPING) | B(VM_STOPPED) | B(VM_CRASHED),
};
#undef B

const char *vm_state_name(enum vm_state s)
{
	return (unsigned)s < VM_STATE_COUNT ? vm_state_names[s] : "?";
}

int vm_state_from_name(const char *name)
{
	for (int i = 0; i < VM_STATE_COUNT; i++)
		if (!strcmp(name, vm_state_names[i]))
			return i;
	return -EINVAL;
}

bool vm_state_transition_ok(enum vm_state from, enum vm_state to)
{
	if ((unsigned)from >= VM_STATE_COUNT || (unsigned)to >= VM_STATE_COUNT)
		return false;
	return vm_state_allowed[from] & (1u << to);
}

bool vm_state_has_process(enum vm_state s)
{
	return s == VM_STARTING || s == VM_RUNNING || s == VM_STOPPING ||
	       s == VM_PAUSED;
}

static int vm_state__path(char *out, size_t n, const char *dir,
			  const char *name, const char *suffix)
{
	int r = snprintf(out, n, "%s/vms/%s.json%s", dir, name, suffix);
	return r < 0 || (size_t)r >= n ? -ENAMETOOLONG : 0;
}

int vm_record_save(const char *state_dir, const struct vm_record *r)
{
	char path[PATH_MAX];
	int rc;
	if ((rc = vm_state__path(path, sizeof(path), state_dir, r->def.name,
				 "")) < 0)
		return rc;
	json_t *j = json_object();
	json_t *def = vm_def_to_json(&r->def);
	if (!j || !def) {
		json_decref(j);
		json_decref(def);
		return -ENOMEM;
	}
	json_object_set_new(j, "def", def);
	json_object_set_new(j, "state", json_string(vm_state_name(r->state)));
	json_object_set_new(j, "pid", json_integer(r->pid));
	json_object_set_new(j, "restarts", json_integer(r->restarts));
	json_object_set_new(j, "reason", json_string(r->reason));
	char *s = json_dumps(j, JSON_INDENT(1) | JSON_SORT_KEYS);
	json_decref(j);
	if (!s)
		return -ENOMEM;
	rc = file_write_atomic(path, s, strlen(s), 0644);
	free(s);
	return rc;
}

int vm_record_load(const char *path, struct vm_record *r, char *err,
		   size_t errlen)
{
	json_error_t je;
	memset(r, 0, sizeof(*r));
	json_t *j = json_load_file(path, 0, &je);
	if (!j) {
		snprintf(err, errlen, "%s: %s (line %d)", path, je.text,
			 je.line);
		return -EINVAL;
	}
	int rc =
	    vm_def_from_json(json_object_get(j, "def"), &r->def, err, errlen);
	if (rc < 0)
		goto out;
	json_t *st = json_object_get(j, "state");
	rc = json_is_string(st) ? vm_state_from_name(json_string_value(st))
				: -EINVAL;
	if (rc < 0) {
		snprintf(err, errlen, "%s: bad state", path);
		goto out;
	}
	r->state = (enum vm_state)rc;
	rc = 0;
	json_t *pid = json_object_get(j, "pid");
	r->pid = json_is_integer(pid) ? (int)json_integer_value(pid) : 0;
	json_t *rs = json_object_get(j, "restarts");
	r->restarts =
	    json_is_integer(rs) ? (unsigned)json_integer_value(rs) : 0;
	json_t *why = json_object_get(j, "reason");
	if (json_is_string(why))
		str_copy(r->reason, json_string_value(why), sizeof(r->reason));
out:
	json_decref(j);
	if (rc < 0)
		vm_def_free(&r->def);
	return rc;
}

int vm_record_remove(const char *state_dir, const char *name)
{
	char path[PATH_MAX];
	int rc = vm_state__path(path, sizeof(path), state_dir, name, "");
	if (rc < 0)
		return rc;
	return unlink(path) < 0 && errno != ENOENT ? -errno : 0;
}
