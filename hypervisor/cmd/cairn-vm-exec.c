/* cairn-vm-exec: how cairn-hostd starts a VM that has CPU or memory limits.
 *
 *   cairn-vm-exec CGROUP_DIR... -- PROGRAM [ARG...]
 *
 * Moves itself into each cgroup (the VM's groups, made and limited by
 * cairn-hostd beforehand: cgroup.c), then execs PROGRAM (QEMU) in the same
 * process: QEMU's first instruction already runs inside its limits, and its
 * pid is the one cairn-hostd spawned and supervises. libuv's uv_spawn has
 * no hook between fork and exec, and CLONE_INTO_CGROUP is cgroup v2 only.
 * Exits 125 with a message on stderr (the VM's QEMU log) when it cannot
 * join a group or run PROGRAM. */
#include <cairn/hostd.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

#define VM_EXEC_FAILED 125

int main(int argc, char **argv)
{
	struct cgroup_join j = {0};
	char err[PATH_MAX + 64];
	int i = 1;
	for (; i < argc && strcmp(argv[i], "--"); i++) {
		if (j.n >= ARRAY_SIZE(j.dirs) ||
		    strlen(argv[i]) >= sizeof(j.dirs[0])) {
			fprintf(stderr, "cairn-vm-exec: at most %zu cgroup "
					"directories, each shorter than %zu\n",
				ARRAY_SIZE(j.dirs), sizeof(j.dirs[0]));
			return 2;
		}
		str_copy(j.dirs[j.n++], argv[i], sizeof(j.dirs[0]));
	}
	if (i >= argc - 1) {
		fprintf(stderr, "usage: cairn-vm-exec CGROUP_DIR... -- "
				"PROGRAM [ARG...]\n");
		return 2;
	}
	if (cgroup_join(&j, (int)getpid(), err, sizeof(err)) < 0) {
		fprintf(stderr, "cairn-vm-exec: %s\n", err);
		return VM_EXEC_FAILED;
	}
	execvp(argv[i + 1], argv + i + 1);
	fprintf(stderr, "cairn-vm-exec: cannot run %s: %s\n", argv[i + 1],
		strerror(errno));
	return VM_EXEC_FAILED;
}
