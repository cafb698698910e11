#!/usr/bin/env bash
# A VM started by cairn-hostd with its disk on a Cairn vdisk: cairnd serves
# vdisk vd0 over vhost-user-blk (hypervisor/vhost/), the VM definition names
# the vdisk ({"vdisk": "vd0"}; the agent's --vhost-dir says where its socket
# is), and the guest sees the disk (/dev/vda) at boot.
#
#   tests/integration/hostd_vhost.sh BUILD_DIR
. "$(dirname "$0")/lib_cairnd.sh"
. "$(dirname "$0")/lib_hostd.sh"
cairn_init "$@"
need qemu-system-x86_64 python3 cpio gzip

BOOT=${HOSTD_BOOT_TIMEOUT:-180}
CAIRND_OF_VHOST=

vhost_cleanup() {
	local rc=$? i
	# The agent first (it force-stops the VM), then cairnd.
	if [[ -n $CAIRND_PID ]] && kill -0 "$CAIRND_PID" 2>/dev/null; then
		kill -TERM "$CAIRND_PID" 2>/dev/null
		for ((i = 0; i < 200; i++)); do
			kill -0 "$CAIRND_PID" 2>/dev/null || break
			sleep 0.05
		done
	fi
	CAIRND_PID=$CAIRND_OF_VHOST
	(exit $rc)
	cairn_cleanup
}
trap vhost_cleanup EXIT

step "guest image"
hostd_guest_image "$(dirname "$BUILD")/guest-test" || fail "no guest image"

step "cairnd serving vd0 over vhost-user-blk"
cairn_format "$T/pool" 1G
"$SDS" vdisk create "$T/pool" vd0 256M || fail "vdisk create"
cairnd_start "$T/pool" --vhost-blk "vd0=$T/vd0.sock"
CAIRND_OF_VHOST=$CAIRND_PID
for ((i = 0; i < 100; i++)); do
	[[ -S $T/vd0.sock ]] && break
	sleep 0.05
done
[[ -S $T/vd0.sock ]] || fail "no vhost socket $T/vd0.sock"

step "the VM's disk is the vdisk, named in its definition"
# {"vdisk": "vd0"} is served on VHOST_DIR/vd0.sock: the socket above.
hostd_start --vhost-dir "$T"
vm_def_file v1 "$T/v1.json" "\"disks\": [{\"vdisk\": \"vd0\"}]"
vm define "$T/v1.json" || fail "define v1"
vm start v1 --timeout 60 || fail "start v1"
wait_console v1 CAIRN-GUEST-READY 1 "$BOOT"
grep -q "CAIRN-GUEST-READY.*disk=vda" "$(vm_field v1 console_log)" ||
	fail "the guest has no disk: $(grep CAIRN-GUEST-READY "$(vm_field v1 console_log)")"
vm stop v1 --timeout 60 || fail "stop v1"
[[ $(vm_field v1 reason) == "stopped (QEMU exited with status 0)" ]] ||
	fail "stop reason: $(vm_field v1 reason)"
cairnd_stop # the agent
CAIRND_PID=$CAIRND_OF_VHOST
CAIRND_OF_VHOST=
cairnd_stop # cairnd
echo PASS
