#!/usr/bin/env bash
# UEFI boot from a Cairn vdisk: a VM defined with {"firmware": "ovmf"} and
# one disk, a vdisk served by cairnd over vhost-user-blk. OVMF (Debian's
# ovmf) drives the disk as a virtio-blk device, reads the GPT and the FAT32
# EFI system partition through our back end, and runs \EFI\BOOT\BOOTX64.EFI:
# a unified kernel image (systemd-stub + the test guest) built by
# images/uefi/build.sh. The guest's script checks it came up through UEFI,
# reads its own boot disk and prints the md5 of partition 2, which must be
# what the image holds. Also: the VM's own variable store (made at define,
# written by OVMF, kept across restarts: the guest counts its boots in a UEFI
# variable, which another VM on the same disk does not see; removed with the
# VM) and a start refused when the firmware's files are gone.
#
#   tests/integration/hostd_uefi.sh BUILD_DIR
. "$(dirname "$0")/lib_cairnd.sh"
. "$(dirname "$0")/lib_hostd.sh"
cairn_init "$@"
need qemu-system-x86_64 qemu-img python3 sfdisk mkfs.vfat mcopy objcopy cmp
OVMF_CODE=/usr/share/OVMF/OVMF_CODE_4M.fd
OVMF_VARS=/usr/share/OVMF/OVMF_VARS_4M.fd
[[ -s $OVMF_CODE && -s $OVMF_VARS ]] || fail "ovmf not installed (scripts/deps.sh)"

# OVMF under TCG takes a while before the kernel even starts.
BOOT=${HOSTD_BOOT_TIMEOUT:-300}

# uefi_boot NAME BOOTS: starts NAME, waits for its guest's CAIRN-UEFI-DISK
# line (failing at once when the guest reports a failure or the VM stops
# running), checks the guest read the image's data and counted BOOTS boots
# of this VM, then force-stops it.
uefi_boot() {
	local name=$1 boots=$2 log i line=''
	vm start "$name" --timeout 60 || fail "start $name"
	log=$(vm_field "$name" console_log)
	for ((i = 0; i < BOOT * 10; i++)); do
		grep -aq "CAIRN-UEFI-DISK" "$log" 2>/dev/null && line=found && break
		grep -aq "CAIRN-FAIL" "$log" 2>/dev/null && break
		if ((i % 10 == 0)); then
			[[ $(vm_field "$name" state) == running ]] || break
		fi
		sleep 0.1
	done
	if [[ -z $line ]]; then
		echo "--- console of $name:" >&2
		tail -n 20 "$log" >&2 || true
		fail "$name: no CAIRN-UEFI-DISK (state $(vm_field "$name" state))"
	fi
	line=$(grep -a -m1 "CAIRN-UEFI-DISK" "$log" | tr -d '\r')
	echo "guest $name: $line"
	[[ $line == *"efi=yes gpt=ok esp=FAT32 data=$WANT_MD5 boots=$boots" ]] ||
		fail "$name read '$line', want data=$WANT_MD5 boots=$boots"
	[[ $(vm_field "$name" state) == running ]] || fail "$name is $(vm_field "$name" state)"
	vm force-stop "$name" --timeout 30 || fail "force-stop $name"
	[[ $(vm_field "$name" state) == stopped ]] || fail "$name is $(vm_field "$name" state)"
	[[ $(vm_field "$name" reason) == force-stopped* ]] ||
		fail "$name reason: $(vm_field "$name" reason)"
}

step "a UEFI-bootable disk image"
IMG_DIR=$(dirname "$BUILD")/uefi
GUEST_DIR=$(dirname "$BUILD")/guest "$CAIRN_ROOT/images/uefi/build.sh" "$IMG_DIR" ||
	fail "images/uefi/build.sh"
IMG=$IMG_DIR/disk.img
WANT_MD5=$(cat "$IMG_DIR/data.md5")
IMG_MIB=$(($(stat -c %s "$IMG") >> 20))

step "the image on vdisk uefi0, written over NBD"
cairn_format "$T/pool" 512M
"$SDS" vdisk create "$T/pool" uefi0 "${IMG_MIB}M" || fail "vdisk create"
HOSTD_VHOST_SOCK=$T/uefi0.sock
hostd_cairnd_start "$T/pool" --vhost-blk "uefi0=$T/uefi0.sock"
qemu-img convert -n -f raw -O raw "$IMG" "$NBD_URI/uefi0" ||
	fail "writing the image over NBD"

step "an OVMF VM gets its own variable store at define"
# The agent's template is a copy, so that the test can take it away below;
# the firmware itself is the package's.
cp "$OVMF_VARS" "$T/vars-template.fd"
hostd_start --vhost-dir "$T" --ovmf-vars "$T/vars-template.fd"
cat >"$T/u1.json" <<JSON
{"name": "u1", "vcpus": 1, "memory_mib": 512,
 "boot": {"firmware": "ovmf"}, "disks": [{"vdisk": "uefi0"}]}
JSON
vm define "$T/u1.json" || fail "define u1"
NVRAM=$(vm_field u1 nvram)
[[ $NVRAM == "$T/state/vms/u1.nvram.fd" ]] || fail "nvram is '$NVRAM'"
[[ $(stat -c %a "$NVRAM") == 600 ]] || fail "nvram mode $(stat -c %a "$NVRAM")"
cmp -s "$NVRAM" "$OVMF_VARS" || fail "nvram is not a copy of the template"

step "OVMF boots the VM from the vdisk"
uefi_boot u1 1
# OVMF keeps its boot entries (Boot####, BootOrder) in the store: the VM's
# copy was written, the package's template was not.
[[ -s $NVRAM ]] || fail "the variable store went away"
cmp -s "$NVRAM" "$OVMF_VARS" && fail "OVMF wrote nothing to the VM's variable store"
cmp -s "$OVMF_VARS" "$T/vars-template.fd" || fail "the template changed"

step "the variable store lasts across restarts of the VM"
# The guest counts its boots in UEFI variables: the second boot sees the
# first one's, so the agent kept the store and OVMF read it back.
uefi_boot u1 2

step "another VM on the same disk has variables of its own"
sed 's/"u1"/"u2"/' "$T/u1.json" >"$T/u2.json"
vm define "$T/u2.json" || fail "define u2"
[[ $(vm_field u2 nvram) == "$T/state/vms/u2.nvram.fd" ]] || fail "u2 nvram: $(vm_field u2 nvram)"
uefi_boot u2 1 # not u1's variables
vm delete u2 || fail "delete u2"
[[ ! -e $T/state/vms/u2.nvram.fd ]] || fail "u2's variable store left after delete"

step "firmware files gone: start refused with the reason, nothing runs"
rm -f "$NVRAM" "$T/vars-template.fd"
if out=$(vm start u1 --timeout 30 2>&1); then
	fail "u1 started without its firmware files: $out"
fi
echo "refused: $out"
[[ $out == *"OVMF variable store template"* ]] || fail "start error: $out"
[[ $(vm_field u1 state) == stopped ]] || fail "u1 is $(vm_field u1 state)"
[[ $(vm_field u1 reason) == "start failed: OVMF variable store template"* ]] ||
	fail "reason: $(vm_field u1 reason)"
[[ $(vm_field u1 pid) == 0 ]] || fail "pid $(vm_field u1 pid)"

step "delete removes the variable store"
cp "$OVMF_VARS" "$T/vars-template.fd"
cp "$OVMF_VARS" "$NVRAM"
vm delete u1 || fail "delete u1"
[[ ! -e $NVRAM ]] || fail "$NVRAM left after delete"
hostd_stop_all
echo PASS
