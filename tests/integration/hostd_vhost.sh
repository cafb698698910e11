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

step "guest image"
hostd_guest_image "$(dirname "$BUILD")/guest-test" || fail "no guest image"

step "cairnd serving vd0 over vhost-user-blk"
cairn_format "$T/pool" 1G
"$SDS" vdisk create "$T/pool" vd0 256M || fail "vdisk create"
HOSTD_VHOST_SOCK=$T/vd0.sock
hostd_cairnd_start "$T/pool" --vhost-blk "vd0=$T/vd0.sock"

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
hostd_stop_all
echo PASS
