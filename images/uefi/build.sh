#!/usr/bin/env bash
# Builds a disk image that boots through UEFI (OVMF) into the test guest,
# from Debian packages only (see images/README.md):
#
#   images/uefi/build.sh OUTDIR
#
#   OUTDIR/disk.img    GPT disk, 70 MiB:
#                        1  EFI system partition, FAT32, 64 MiB, holding
#                           \EFI\BOOT\BOOTX64.EFI (UEFI 2.10, 3.5.1.1: the
#                           removable-media path firmware boots with no boot
#                           entry): a unified kernel image (systemd-stub +
#                           the test guest's kernel, initramfs, command line)
#                        2  "cairn-data", 4 MiB of seeded pseudo-random bytes
#   OUTDIR/data.md5    md5 of partition 2, which the guest prints
#   OUTDIR/BOOTX64.EFI the unified kernel image
#
# The guest is images/guest/build.sh's (built into GUEST_DIR, default
# build/guest, if needed) with one script added, uefi-disk.sh (installed as
# /scripts/uefi-disk), run through cairn.script=uefi-disk on the kernel
# command line inside the image, and the efivarfs module it uses. No loop device, no mount: sfdisk,
# mkfs.vfat --offset and mtools work on the file. Idempotent: when no input
# changed it exits at once (hash in OUTDIR/.inputs).
set -euo pipefail

if (($# != 1)); then
	echo "usage: $0 OUTDIR" >&2
	exit 2
fi
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=$1
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
GUEST_DIR=${GUEST_DIR:-$ROOT/build/guest}
STUB=${UEFI_STUB:-/usr/lib/systemd/boot/efi/linuxx64.efi.stub}

log() { echo "uefi-image: $*" >&2; }
die() { echo "uefi-image: $*" >&2; exit 1; }
for c in objcopy objdump sfdisk mkfs.vfat mmd mcopy cpio gzip dpkg-deb python3 sha256sum md5sum; do
	command -v "$c" >/dev/null || die "$c not found (scripts/deps.sh)"
done
[[ -s $STUB ]] || die "no $STUB (systemd-boot-efi; scripts/deps.sh)"

"$ROOT/images/guest/build.sh" "$GUEST_DIR" >&2 || die "guest image build failed"
KERNEL=$GUEST_DIR/vmlinuz
INITRD=$GUEST_DIR/initrd.img
# efivarfs is a module in Debian's kernel: take it from the package the
# guest's kernel came from (images/guest/build.sh left it in the cache).
KVER=$(gzip -dc "$INITRD" | cpio -i --to-stdout --quiet etc/cairn-guest-kernel 2>/dev/null)
[[ -n $KVER ]] || die "cannot tell the guest's kernel version from $INITRD"
CACHE=${CAIRN_CACHE:-$ROOT/build/cache}
DEB=$(ls "$CACHE/linux-image-${KVER}_"*"_amd64.deb" 2>/dev/null | sort -V | tail -n 1 || true)
[[ -s $DEB ]] || die "no linux-image-$KVER package in $CACHE"

# Layout, in 512-byte sectors. Partition 1 starts at 1 MiB (the usual
# alignment; sectors 0-33 are the protective MBR and the GPT).
SECTOR=512
ESP_START=2048
ESP_SECTORS=$((64 << 11))
DATA_START=$((ESP_START + ESP_SECTORS))
DATA_SECTORS=$((4 << 11))
DISK_MIB=70 # room for the backup GPT (last 33 sectors) after partition 2
DATA_SEED=20261129
CMDLINE="console=ttyS0 panic=-1 cairn.script=uefi-disk"

HASH=$({
	sha256sum "$HERE/build.sh" "$HERE/uefi-disk.sh" "$STUB" "$KERNEL" "$INITRD"
	echo "$CMDLINE $(basename "$DEB")"
} | sha256sum | cut -d' ' -f1)
[[ -s $OUT/disk.img && -s $OUT/data.md5 && -f $OUT/.inputs &&
	$(cat "$OUT/.inputs") == "$HASH" ]] && exit 0

WORK=$OUT/.work
rm -rf "$WORK"
mkdir -p "$WORK/overlay/scripts" "$WORK/overlay/lib/modules/uefi"
trap 'rm -rf "$WORK"' EXIT
# mtools refuses some geometries of a file it cannot check against a drive.
export MTOOLS_SKIP_CHECK=1

# ---- the initramfs: the guest's, plus /scripts/uefi-disk and efivarfs -------
# A second cpio archive after the first: the kernel unpacks both in order.
install -m 755 "$HERE/uefi-disk.sh" "$WORK/overlay/scripts/uefi-disk"
dpkg-deb --fsys-tarfile "$DEB" | tar -x -O "./lib/modules/$KVER/kernel/fs/efivarfs/efivarfs.ko" \
	>"$WORK/overlay/lib/modules/uefi/efivarfs.ko" || die "no efivarfs.ko in $DEB"
(cd "$WORK/overlay" && find . -print0 | LC_ALL=C sort -z |
	cpio --null -o -H newc --owner=0:0 --quiet --reproducible) |
	gzip -n -6 >"$WORK/overlay.cpio.gz"
cat "$INITRD" "$WORK/overlay.cpio.gz" >"$WORK/initrd"

# ---- the unified kernel image ----------------------------------------------
# systemd-stub finds its payload in PE sections of its own image: .osrel
# (os-release), .cmdline (the kernel command line, used instead of the
# firmware's load options), .linux (the kernel, itself an EFI program that
# the stub starts through the EFI handover protocol) and .initrd (given to
# the kernel through the LINUX_EFI_INITRD_MEDIA device path). The sections
# must lie past the stub's own image (SizeOfImage) without overlapping: each
# starts on the next 4 KiB boundary after the previous one.
printf 'NAME="Cairn test guest"\nID=cairn-test-guest\nPRETTY_NAME="Cairn UEFI test guest"\n' \
	>"$WORK/osrel"
printf '%s' "$CMDLINE" >"$WORK/cmdline"
image_size=$(objdump -p "$STUB" | awk '$1 == "SizeOfImage" { print $2 }')
[[ $image_size =~ ^[0-9a-fA-F]+$ ]] || die "cannot read SizeOfImage of $STUB"
image_size=$((16#$image_size))
args=()
next=$image_size
for s in osrel:"$WORK/osrel" cmdline:"$WORK/cmdline" linux:"$KERNEL" initrd:"$WORK/initrd"; do
	name=${s%%:*} file=${s#*:}
	vma=$(((next + 4095) / 4096 * 4096))
	args+=(--add-section ".$name=$file" --change-section-vma ".$name=$(printf '0x%x' "$vma")")
	next=$((vma + $(stat -c %s "$file")))
done
objcopy "${args[@]}" "$STUB" "$WORK/BOOTX64.EFI" || die "objcopy"
for name in .osrel .cmdline .linux .initrd; do
	objdump -h "$WORK/BOOTX64.EFI" | awk -v n="$name" '$2 == n { f = 1 } END { exit !f }' ||
		die "section $name missing from the unified kernel image"
done

# ---- the disk ----------------------------------------------------------------
IMG=$WORK/disk.img
truncate -s "${DISK_MIB}M" "$IMG"
# GUIDs fixed for reproducibility; the types are the ESP's
# (C12A7328-F81F-11D2-BA4B-00A0C93EC93B, "U") and Linux data ("L").
sfdisk --quiet --no-reread --no-tell-kernel "$IMG" <<EOF || die "sfdisk"
label: gpt
label-id: 6A1F3C1E-7E0B-4C43-9D1C-CA1A70000000
start=$ESP_START, size=$ESP_SECTORS, type=U, uuid=6A1F3C1E-7E0B-4C43-9D1C-CA1A70000001, name="EFI system partition"
start=$DATA_START, size=$DATA_SECTORS, type=L, uuid=6A1F3C1E-7E0B-4C43-9D1C-CA1A70000002, name="cairn-data"
EOF
# mkfs.vfat's block count is in KiB; one sector per cluster keeps FAT32's
# minimum of 65525 clusters within 64 MiB.
mkfs.vfat --invariant -F 32 -s 1 -n CAIRN-ESP --offset "$ESP_START" "$IMG" \
	$((ESP_SECTORS * SECTOR / 1024)) >"$WORK/mkfs.log" 2>&1 ||
	{ cat "$WORK/mkfs.log" >&2; die "mkfs.vfat"; }
ESP="$IMG@@$((ESP_START * SECTOR))"
mmd -i "$ESP" ::/EFI ::/EFI/BOOT || die "mmd"
mcopy -i "$ESP" "$WORK/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI || die "mcopy"
python3 - "$WORK/data" "$DATA_SEED" $((DATA_SECTORS * SECTOR)) <<'PY'
import random, sys
open(sys.argv[1], "wb").write(random.Random(int(sys.argv[2])).randbytes(int(sys.argv[3])))
PY
dd if="$WORK/data" of="$IMG" bs=$SECTOR seek=$DATA_START conv=notrunc status=none
md5sum <"$WORK/data" | cut -d' ' -f1 >"$WORK/data.md5"

mv "$WORK/BOOTX64.EFI" "$OUT/BOOTX64.EFI"
mv "$WORK/data.md5" "$OUT/data.md5"
mv "$IMG" "$OUT/disk.img"
echo "$HASH" >"$OUT/.inputs"
log "built $OUT/disk.img ($(stat -c %s "$OUT/BOOTX64.EFI") byte BOOTX64.EFI)"
