#!/usr/bin/env bash
# Two VMs on one node bridge reach each other: cairn-hostd creates the
# bridge and one tap per NIC (with the MAC generated from the VM's uuid),
# the guests set their addresses from the kernel command line (cairn.ip=)
# and the second pings the first. Taps go away when the VMs stop.
#
#   tests/integration/hostd_net.sh BUILD_DIR
. "$(dirname "$0")/lib_cairnd.sh"
. "$(dirname "$0")/lib_hostd.sh"
cairn_init "$@"
need qemu-system-x86_64 python3 cpio gzip ip

BOOT=${HOSTD_BOOT_TIMEOUT:-180}
BR=cbt$$ # a bridge of our own: parallel runs never share one

net_cleanup() {
	local rc=$?
	hostd_term_agent
	ip link del "$BR" 2>/dev/null || true
	(exit $rc)
	cairn_cleanup
}
trap net_cleanup EXIT

step "guest image"
hostd_guest_image "$(dirname "$BUILD")/guest-test" || fail "no guest image"

step "agent with bridge $BR"
hostd_start --bridge "$BR"
VM_CMDLINE="console=ttyS0 panic=-1 quiet cairn.script=idle cairn.ip=10.77.0.1/24" \
	vm_def_file na "$T/na.json" '"nics": [{}]'
VM_CMDLINE="console=ttyS0 panic=-1 quiet cairn.script=ping cairn.ip=10.77.0.2/24 cairn.peer=10.77.0.1" \
	vm_def_file nb "$T/nb.json" "\"nics\": [{\"bridge\": \"$BR\"}]"
vm define "$T/na.json" || fail "define na"
vm define "$T/nb.json" || fail "define nb"
vm status na --json >"$T/na.status"
vm status nb --json >"$T/nb.status"
mac_a=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["nics"][0]["mac"])' "$T/na.status")
mac_b=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["nics"][0]["mac"])' "$T/nb.status")
tap_a=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["nics"][0]["tap"])' "$T/na.status")
[[ $mac_a == 52:54:00:* && $mac_b == 52:54:00:* && $mac_a != "$mac_b" ]] ||
	fail "MACs: $mac_a $mac_b"

step "boot both; nb pings na across the bridge"
vm start na --timeout 60 || fail "start na"
vm start nb --timeout 60 || fail "start nb"
ip link show "$BR" >/dev/null || fail "bridge $BR not created"
ip link show "$tap_a" | grep -q "master $BR" || fail "tap $tap_a not on $BR"
wait_console na "CAIRN-IP 10.77.0.1" 1 "$BOOT"
for ((i = 0; i < BOOT * 10; i++)); do
	log=$(vm_field nb console_log)
	grep -q "CAIRN-PING-" "$log" && break
	sleep 0.1
done
grep -q "CAIRN-PING-OK 10.77.0.1" "$log" || { tail -n 20 "$log" >&2; fail "nb could not ping na"; }

step "stop: taps removed"
vm force-stop na --timeout 30 || fail "force-stop na"
vm force-stop nb --timeout 30 || fail "force-stop nb"
ip link show "$tap_a" >/dev/null 2>&1 && fail "tap $tap_a left behind"
cairnd_stop
echo PASS
