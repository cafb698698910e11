#!/usr/bin/env bash
# Boot from disk through firmware: a VM defined with {"firmware": "seabios"}
# and one disk, a Cairn vdisk served by cairnd over vhost-user-blk. SeaBIOS
# (Debian's seabios package, QEMU's default firmware) drives the disk as a
# virtio-blk device, reads its first sector through our back end and jumps
# to it. The sector is a 22-byte real-mode program (below) that writes a
# marker to COM1, which the agent captures in the console log.
#
#   tests/integration/hostd_firmware.sh BUILD_DIR
. "$(dirname "$0")/lib_cairnd.sh"
. "$(dirname "$0")/lib_hostd.sh"
cairn_init "$@"
need qemu-system-x86_64 qemu-img python3
[[ -s /usr/share/seabios/bios-256k.bin ]] || fail "seabios not installed"

BOOT=${HOSTD_BOOT_TIMEOUT:-120}
MARK="CAIRN-FW-BOOT from a Cairn vdisk"

step "a boot sector on vdisk boot0"
# Real mode at 0000:7c00 (the BIOS boot protocol):
#   cli; xor ax,ax; mov ds,ax; mov si,msg; mov dx,0x3f8
#   l: lodsb; test al,al; jz d; out dx,al; jmp l
#   d: hlt; jmp d
#   msg: "...\r\n\0", then 0x55 0xaa at 510 (the boot signature).
python3 - "$T/boot.img" "$MARK" <<'EOF'
import sys
code = bytes.fromhex("fa31c08ed8be167cbaf803ac84c07403eeebf8f4ebfd")
assert len(code) == 0x16  # msg follows at 0x7c16
sector = code + sys.argv[2].encode() + b"\r\n\0"
sector += bytes(510 - len(sector)) + b"\x55\xaa"
open(sys.argv[1], "wb").write(sector + bytes((1 << 20) - 512))
EOF
cairn_format "$T/pool" 256M
"$SDS" vdisk create "$T/pool" boot0 16M || fail "vdisk create"
HOSTD_VHOST_SOCK=$T/boot0.sock
hostd_cairnd_start "$T/pool" --vhost-blk "boot0=$T/boot0.sock"
qemu-img convert -n -f raw -O raw "$T/boot.img" "$NBD_URI/boot0" ||
	fail "writing the boot sector over NBD"

step "SeaBIOS boots the VM from the vdisk"
hostd_start --vhost-dir "$T"
cat >"$T/fw1.json" <<JSON
{"name": "fw1", "vcpus": 1, "memory_mib": 128,
 "boot": {"firmware": "seabios"}, "disks": [{"vdisk": "boot0"}]}
JSON
vm define "$T/fw1.json" || fail "define fw1"
vm start fw1 --timeout 60 || fail "start fw1"
wait_console fw1 "$MARK" 1 "$BOOT"
[[ $(vm_field fw1 state) == running ]] || fail "fw1 is $(vm_field fw1 state)"
vm force-stop fw1 --timeout 30 || fail "force-stop fw1"
[[ $(vm_field fw1 state) == stopped ]] || fail "fw1 is $(vm_field fw1 state)"
hostd_stop_all
echo PASS
