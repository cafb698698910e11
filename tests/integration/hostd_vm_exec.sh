#!/usr/bin/env bash
# cairn-vm-exec, the launcher cairn-hostd starts a VM with limits through:
# it joins the given cgroups and then execs the program in the same
# process, so the program never runs outside its limits (a fake cgroup
# tree stands in for /sys/fs/cgroup; hostd_lifecycle checks a real QEMU in
# the real hierarchy). Bad usage and a group it cannot join are refused.
#
#   tests/integration/hostd_vm_exec.sh BUILD_DIR
. "$(dirname "$0")/lib_cairnd.sh"
cairn_init "$@"
X=$BUILD/bin/cairn-vm-exec
[[ -x $X ]] || fail "$X not built"

step "joins, then execs in the same process"
mkdir -p "$T/cpu/cairn/vm" "$T/memory/cairn/vm"
out=$("$X" "$T/cpu/cairn/vm" "$T/memory/cairn/vm" -- sh -c 'echo $$') ||
	fail "cairn-vm-exec failed"
[[ $(cat "$T/cpu/cairn/vm/cgroup.procs") == "$out" ]] ||
	fail "cpu group has $(cat "$T/cpu/cairn/vm/cgroup.procs"), program pid $out"
[[ $(cat "$T/memory/cairn/vm/cgroup.procs") == "$out" ]] ||
	fail "memory group has $(cat "$T/memory/cairn/vm/cgroup.procs"), program pid $out"

step "refusals"
rc=0; "$X" "$T/cpu/cairn/vm" >/dev/null 2>&1 || rc=$?
((rc == 2)) || fail "no -- and program: exit $rc, not 2"
rc=0; "$X" a b c -- true >/dev/null 2>&1 || rc=$?
((rc == 2)) || fail "three groups: exit $rc, not 2"
rc=0; msg=$("$X" "$T/no/such/group" -- true 2>&1) || rc=$?
((rc == 125)) || fail "missing group: exit $rc, not 125"
[[ $msg == *"cannot join cgroup $T/no/such/group"* ]] || fail "message: $msg"
rc=0; msg=$("$X" "$T/cpu/cairn/vm" -- "$T/no-such-program" 2>&1) || rc=$?
((rc == 125)) || fail "missing program: exit $rc, not 125"
[[ $msg == *"cannot run"* ]] || fail "message: $msg"
echo PASS
