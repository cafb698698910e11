# Helpers for tests that boot the test guest (images/guest/) on a vdisk
# served by cairnd's vhost-user-blk back end. Source after lib_cairnd.sh.
#
#   guest_image                      builds $CAIRN_ROOT/build/guest (cached)
#   guest_start LOG SOCK APPEND [CHARDEV_OPTS] [INITRD]
#                                    boots QEMU (TCG) in the background; sets
#                                    QEMU_PID; serial console to LOG
#   guest_wait_for LOG REGEX SECS    waits (bounded) for a console line
#   guest_wait_exit SECS             waits (bounded) for QEMU to power off
#   guest_kill                       kills QEMU if it still runs

GUEST_DIR=${GUEST_DIR:-${CAIRN_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/build/guest}
GUEST_MEM=${GUEST_MEM:-512}
QEMU_PID=

guest_image() {
	local root
	root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
	need qemu-system-x86_64
	"$root/images/guest/build.sh" "$@" "$GUEST_DIR" || fail "guest image build"
}

guest_start() {
	local log=$1 sock=$2 append=$3 chopts=${4:-} initrd=${5:-$GUEST_DIR/initrd.img}
	: >"$log"
	qemu-system-x86_64 -accel tcg -m "$GUEST_MEM" -smp 1 \
		-object "memory-backend-memfd,id=mem,size=${GUEST_MEM}M,share=on" \
		-numa node,memdev=mem \
		-chardev "socket,id=c0,path=$sock$chopts" \
		-device vhost-user-blk-pci,chardev=c0 \
		-kernel "$GUEST_DIR/vmlinuz" -initrd "$initrd" \
		-append "console=ttyS0 $append" \
		-display none -no-reboot -monitor none -serial "file:$log" \
		>"$log.qemu" 2>&1 &
	QEMU_PID=$!
}

guest_wait_for() {
	local log=$1 re=$2 secs=$3 i
	for ((i = 0; i < secs * 10; i++)); do
		grep -Eq "$re" "$log" 2>/dev/null && return 0
		if ! kill -0 "$QEMU_PID" 2>/dev/null; then
			grep -Eq "$re" "$log" 2>/dev/null && return 0
			return 1
		fi
		sleep 0.1
	done
	return 1
}

guest_wait_exit() {
	local secs=$1 i
	for ((i = 0; i < secs * 10; i++)); do
		kill -0 "$QEMU_PID" 2>/dev/null || { wait "$QEMU_PID" || true; QEMU_PID=; return 0; }
		sleep 0.1
	done
	return 1
}

guest_kill() {
	if [[ -n $QEMU_PID ]] && kill -0 "$QEMU_PID" 2>/dev/null; then
		kill -KILL "$QEMU_PID" 2>/dev/null || true
		wait "$QEMU_PID" 2>/dev/null || true
	fi
	QEMU_PID=
}

# guest_run LOG SOCK SCRIPT SECS [APPEND...]: one boot to poweroff; fails
# unless the script exits 0.
guest_run() {
	local log=$1 sock=$2 script=$3 secs=$4
	shift 4
	guest_start "$log" "$sock" "cairn.script=$script $*"
	if ! guest_wait_exit "$secs"; then
		guest_kill
		tail -n 30 "$log" >&2
		fail "guest $script: no poweroff within ${secs}s"
	fi
	if ! grep -q "CAIRN-SCRIPT-EXIT $script rc=0" "$log"; then
		tail -n 40 "$log" >&2
		cat "$log.qemu" >&2
		fail "guest $script failed"
	fi
}
