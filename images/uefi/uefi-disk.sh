#!/bin/sh
# The UEFI test guest's check (cairn.script=uefi-disk, set by the command
# line inside the unified kernel image): proves the guest came up through
# UEFI and reads its own boot disk, then stays up for the test to stop it.
#   CAIRN-UEFI-DISK efi=yes gpt=ok esp=FAT32 data=MD5
# MD5 is the md5 of partition 2, which the test compares with the image it
# wrote to the vdisk.
. /scripts/lib
[ -d /sys/firmware/efi ] || fail "not booted through UEFI (no /sys/firmware/efi)"
[ -b "$DISK" ] || fail "no $DISK"
# LBA 1 holds the GPT header, which starts with its signature (UEFI 2.10,
# 5.3.2 "GPT Header").
sig=$(dd if="$DISK" bs=512 skip=1 count=1 2>/dev/null | head -c 8)
[ "$sig" = "EFI PART" ] || fail "no GPT header on $DISK (got '$sig')"
# The partitions appear once the kernel has read the table: wait (bounded).
i=0
while { [ ! -b "${DISK}1" ] || [ ! -b "${DISK}2" ]; } && [ $i -lt 100 ]; do
	sleep 0.1
	i=$((i + 1))
done
[ -b "${DISK}2" ] || fail "no ${DISK}2"
# The FAT32 boot sector names its type at byte 82 (fs type "FAT32   ").
esp=$(dd if="${DISK}1" bs=1 skip=82 count=8 2>/dev/null | tr -d ' ')
[ "$esp" = FAT32 ] || fail "partition 1 is not FAT32 (got '$esp')"
md5=$(md5sum <"${DISK}2" | cut -d' ' -f1)
check_dmesg
echo "CAIRN-UEFI-DISK efi=yes gpt=ok esp=$esp data=$md5"
while :; do sleep 3600; done
