#!/usr/bin/env bash
# cairn-hostd end to end: real QEMU (TCG here), a real Linux guest (Debian's
# kernel + a busybox initramfs). Every state the agent reports is checked:
# define (and refusals), start -> running with the guest's marker on the
# console, ACPI stop -> stopped, force-stop, kill -9 of QEMU -> crashed,
# restart policy on-crash -> running again, reboot, pause and resume, stop
# timeout then force, agent killed and restarted -> VM re-attached, delete,
# accelerator status, agent SIGTERM -> VMs force-stopped and the agent
# exits 0.
#
#   tests/integration/hostd_lifecycle.sh BUILD_DIR
. "$(dirname "$0")/lib_cairnd.sh"
. "$(dirname "$0")/lib_hostd.sh"
cairn_init "$@"
need qemu-system-x86_64 python3 cpio gzip

BOOT=${HOSTD_BOOT_TIMEOUT:-180} # seconds to the guest's marker under TCG

step "guest image"
hostd_guest_image "$(dirname "$BUILD")/guest-test" || fail "no guest image"

step "agent up; accelerator chosen by the probe"
hostd_start --stop-timeout-ms 60000
vm host --json >"$T/host.json" || fail "host.status"
accel=$(json_get "$T/host.json" accel)
reason=$(json_get "$T/host.json" accel_reason)
echo "accel: $accel ($reason)"
# On this machine /dev/kvm is a slow software backend (or absent): the probe
# must pick TCG and say why.
[[ $accel == tcg ]] || fail "accel is $accel, expected tcg here: $reason"
[[ $reason == *KVM* ]] || fail "accel reason does not explain: $reason"

step "definitions: good, duplicate, impossible"
vm_def_file t1 "$T/t1.json"
vm define "$T/t1.json" || fail "define t1"
[[ $(vm_field t1 state) == defined ]] || fail "t1 not defined"
vm define "$T/t1.json" 2>"$T/err" && fail "duplicate define accepted"
grep -q "exists already" "$T/err" || fail "duplicate: $(cat "$T/err")"
vm_def_file bad "$T/bad.json"
sed -i 's/"vcpus": 1/"vcpus": 0/' "$T/bad.json"
vm define "$T/bad.json" 2>"$T/err" && fail "vcpus 0 accepted"
grep -q "vcpus must be at least 1" "$T/err" || fail "vcpus 0: $(cat "$T/err")"
sed -i 's/"vcpus": 0/"vcpus": 1/; s/"memory_mib": 512/"memory_mib": 99999999/' "$T/bad.json"
vm define "$T/bad.json" 2>"$T/err" && fail "huge memory accepted"
grep -q "more than the host" "$T/err" || fail "memory: $(cat "$T/err")"
vm status bad 2>/dev/null && fail "a refused VM exists"

step "bad API input gets errors, the agent goes on"
python3 - "$HOSTD_SOCK" >"$T/bad.out" <<'PY' || fail "bad input: $(cat "$T/bad.out")"
import json, socket, sys
def ask(raw):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sys.argv[1])
    try:
        s.sendall(raw)
    except BrokenPipeError:
        pass  # the agent gave up on an over-long line; its reply is queued
    f = s.makefile("rb")
    r = json.loads(f.readline())
    s.close()
    return r
for raw, want in [(b"{not json\n", "not valid JSON"),
                  (b"[1, 2]\n", "must be a JSON object"),
                  (b'{"op": "vm.fly"}\n', "unknown op"),
                  (b'{"op": "vm.start"}\n', "name is required"),
                  (b'{"op": "vm.start", "name": "nope", "id": 5}\n', "no VM named nope"),
                  (b'{"op": "vm.define", "def": {"name": "x"}}\n', "memory_mib is required"),
                  (b"x" * (2 << 20), "too long")]:
    r = ask(raw)
    assert r["ok"] is False and want in r["error"], (raw[:40], r)
r = ask(b'{"op": "vm.start", "name": "nope", "id": 5}\n')
assert r["id"] == 5, r
print("ok")
PY
vm list >/dev/null || fail "agent gone after bad input"

step "start -> running, guest marker on the console"
vm start t1 --timeout 60 || fail "start t1"
wait_console t1 CAIRN-GUEST-READY 1 "$BOOT"
[[ $(vm_field t1 accel) == tcg ]] || fail "t1 accel"
pid=$(vm_field t1 pid)
kill -0 "$pid" || fail "QEMU pid $pid not alive"

step "console: the serial socket answers"
sock=$(vm_field t1 console_socket)
[[ -S $sock ]] || fail "no console socket $sock"
echo | timeout 5 "$VMCLI" --socket "$HOSTD_SOCK" console t1 >"$T/console.out" 2>&1
rc=$?
((rc == 0)) || fail "console attach exited $rc"

step "stop (ACPI power button) -> stopped"
vm stop t1 --timeout 60 || fail "stop t1"
r=$(vm_field t1 reason)
[[ $r == "stopped (QEMU exited with status 0)" ]] || fail "stop reason: $r"
kill -0 "$pid" 2>/dev/null && fail "QEMU $pid still alive after stop"
[[ $(vm_field t1 pid) == 0 ]] || fail "pid not cleared"

step "start again, force-stop -> stopped"
vm start t1 --timeout 60 || fail "start t1 (2)"
wait_console t1 CAIRN-GUEST-READY 1 "$BOOT"
vm force-stop t1 --timeout 30 || fail "force-stop t1"
[[ $(vm_field t1 reason) == force-stopped* ]] || fail "force reason: $(vm_field t1 reason)"

step "kill -9 QEMU -> crashed (restart policy never)"
vm start t1 --timeout 60 || fail "start t1 (3)"
pid=$(vm_field t1 pid)
kill -9 "$pid"
wait_state t1 crashed 20
[[ $(vm_field t1 reason) == *"signal 9"* ]] || fail "crash reason: $(vm_field t1 reason)"
sleep 2
[[ $(vm_field t1 state) == crashed ]] || fail "policy never restarted t1"

step "reboot (system_reset): the guest boots again in the same QEMU"
vm start t1 --timeout 60 || fail "start t1 (4)"
wait_console t1 CAIRN-GUEST-READY 1 "$BOOT"
pid=$(vm_field t1 pid)
vm reboot t1 || fail "reboot"
wait_console t1 CAIRN-GUEST-READY 2 "$BOOT"
[[ $(vm_field t1 state) == running ]] || fail "not running after reboot"
[[ $(vm_field t1 pid) == "$pid" ]] || fail "reboot changed the QEMU pid"
grep -q "t1: reset" "$CAIRND_LOG" || fail "RESET event not seen"

step "pause -> paused (QMP stop), resume -> running (QMP cont)"
vm resume t1 2>/dev/null && fail "resume of a running VM accepted"
vm pause t1 --timeout 30 || fail "pause"
[[ $(vm_field t1 reason) == "paused (vm.pause)" ]] || fail "pause reason: $(vm_field t1 reason)"
vm pause t1 2>/dev/null && fail "pause of a paused VM accepted"
vm resume t1 --timeout 30 || fail "resume"
[[ $(vm_field t1 pid) == "$pid" ]] || fail "pause/resume changed the QEMU pid"
vm force-stop t1 --timeout 30 || fail "force-stop after reboot"

step "stop while the guest cannot answer ACPI: timeout, then force"
# Right after start the kernel is still booting and acpid is not up, so
# the power button press goes unanswered.
vm start t1 --timeout 60 || fail "start t1 (5)"
t0=$(date +%s)
vm stop t1 --grace-ms 1500 --timeout 30 || fail "stop with grace"
[[ $(vm_field t1 reason) == force-stopped* ]] || fail "grace stop reason: $(vm_field t1 reason)"
(($(date +%s) - t0 < 15)) || fail "stop-with-timeout took too long"
grep -q "did not power off in time" "$CAIRND_LOG" || fail "no timeout logged"

step "QEMU dies while the agent is down: crashed at the agent's restart"
vm start t1 --timeout 60 || fail "start t1 (6)"
pid=$(vm_field t1 pid)
kill -9 "$CAIRND_PID"
wait "$CAIRND_PID" 2>/dev/null || true
CAIRND_PID=
kill -9 "$pid"
hostd_start --stop-timeout-ms 60000
wait_state t1 crashed 10
[[ $(vm_field t1 reason) == "QEMU gone while the agent was down" ]] ||
	fail "reason: $(vm_field t1 reason)"

step "delete"
vm delete t1 || fail "delete t1"
vm status t1 2>/dev/null && fail "t1 still there"
[[ -e $T/state/vms/t1.json ]] && fail "t1 state file left"

step "restart policy on-crash: kill -9 -> crashed -> running again"
vm_def_file t2 "$T/t2.json" '"restart": "on-crash", "limits": {"cpu_pct": 50, "memory_mib": 1024}'
vm define "$T/t2.json" || fail "define t2"
vm start t2 --timeout 60 || fail "start t2"
pid=$(vm_field t2 pid)
# CPU and memory limits: QEMU is in cairn/t2 on either cgroup hierarchy.
if [[ -e /sys/fs/cgroup/cgroup.controllers ]]; then
	cg=/sys/fs/cgroup/cairn/t2
	grep -qx "$pid" "$cg/cgroup.procs" || fail "QEMU not in $cg"
	[[ $(cat "$cg/cpu.max") == "50000 100000" ]] || fail "cpu.max: $(cat "$cg/cpu.max")"
	[[ $(cat "$cg/memory.max") == $((1024 << 20)) ]] || fail "memory.max"
elif [[ -d /sys/fs/cgroup/cpu && -d /sys/fs/cgroup/memory ]]; then
	cg=/sys/fs/cgroup/cpu/cairn/t2
	grep -qx "$pid" "$cg/cgroup.procs" || fail "QEMU not in $cg"
	[[ $(cat "$cg/cpu.cfs_quota_us") == 50000 ]] || fail "cfs_quota_us: $(cat "$cg/cpu.cfs_quota_us")"
	mg=/sys/fs/cgroup/memory/cairn/t2
	grep -qx "$pid" "$mg/cgroup.procs" || fail "QEMU not in $mg"
	[[ $(cat "$mg/memory.limit_in_bytes") == $((1024 << 20)) ]] || fail "memory.limit_in_bytes"
else
	echo "no cgroup v1/v2 hierarchy here: limits not checked"
	cg=
fi
wait_console t2 CAIRN-GUEST-READY 1 "$BOOT"
kill -9 "$pid"
for ((i = 0; i < 400; i++)); do
	grep -q "t2: running -> crashed" "$CAIRND_LOG" && break
	sleep 0.05
done
grep -q "t2: running -> crashed (QEMU killed by signal 9)" "$CAIRND_LOG" ||
	fail "t2 crash not reported"
wait_state t2 running 30
[[ $(vm_field t2 restarts) == 1 ]] || fail "restarts: $(vm_field t2 restarts)"
[[ $(vm_field t2 pid) != "$pid" ]] || fail "same pid after restart"
wait_console t2 CAIRN-GUEST-READY 1 "$BOOT"

[[ -z $cg || -d $cg ]] || fail "cgroup $cg missing after the restart"

step "agent killed (-9) and restarted: the running VM is re-attached"
pid=$(vm_field t2 pid)
kill -9 "$CAIRND_PID"
wait "$CAIRND_PID" 2>/dev/null || true
CAIRND_PID=
kill -0 "$pid" || fail "QEMU died with the agent"
hostd_start --stop-timeout-ms 60000
wait_state t2 running 10
[[ $(vm_field t2 attached) == True ]] || fail "t2 not re-attached"
[[ $(vm_field t2 pid) == "$pid" ]] || fail "re-attached pid differs"
vm stop t2 --timeout 60 || fail "stop re-attached t2"
kill -0 "$pid" 2>/dev/null && fail "QEMU $pid alive after stop"
[[ -n $cg && -d $cg ]] && fail "cgroup $cg left after stop"

step "agent with --leave-vms-running: SIGTERM leaves the VM running, the next agent re-attaches it"
cairnd_stop
hostd_start --stop-timeout-ms 60000 --leave-vms-running
vm start t2 --timeout 60 || fail "start t2 (leave)"
pid=$(vm_field t2 pid)
# Never leak the QEMU the agent lets go of, whatever happens below.
trap 'kill -KILL "$pid" 2>/dev/null; cairn_cleanup' EXIT
[[ $(ps -o sid= -p "$pid" | tr -d ' ') == "$pid" ]] ||
	fail "QEMU $pid not in a session of its own"
cairnd_stop
kill -0 "$pid" 2>/dev/null || fail "QEMU $pid stopped with the agent"
grep -q '"state": "running"' "$T/state/vms/t2.json" || fail "t2 not persisted running"
grep -q "QEMU pid $pid left running" "$CAIRND_LOG" || fail "agent did not say it left t2"
hostd_start --stop-timeout-ms 60000
wait_state t2 running 10
[[ $(vm_field t2 attached) == True ]] || fail "t2 not re-attached"
[[ $(vm_field t2 pid) == "$pid" ]] || fail "re-attached pid differs"
vm force-stop t2 --timeout 30 || fail "force-stop re-attached t2"
kill -0 "$pid" 2>/dev/null && fail "QEMU $pid alive after force-stop"
trap cairn_cleanup EXIT

step "agent SIGTERM with a running VM: force-stopped, agent exits 0"
vm start t2 --timeout 60 || fail "start t2 (2)"
pid=$(vm_field t2 pid)
cairnd_stop
kill -0 "$pid" 2>/dev/null && fail "QEMU $pid left running by the agent"
grep -q '"state": "stopped"' "$T/state/vms/t2.json" || fail "t2 not persisted stopped"
echo "PASS"
