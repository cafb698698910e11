#!/bin/sh
# The UEFI test guest's check (cairn.script=uefi-disk, set by the command
# line inside the unified kernel image): proves the guest came up through
# UEFI and reads its own boot disk, then stays up for the test to stop it.
#   CAIRN-UEFI-DISK efi=yes gpt=ok esp=FAT32 data=MD5 boots=N
# MD5 is the md5 of partition 2, which the test compares with the image it
# wrote to the vdisk; N counts the boots of this VM (a UEFI variable).
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

# UEFI variables of our own count this VM's boots: boot N creates
# CairnBootN. They live in the VM's variable store (hostd's per-VM NVRAM,
# written by OVMF's runtime SetVariable), so the count goes on across
# restarts of the VM and starts at 1 in a new VM. A new variable each boot
# because efivarfs makes the variables it finds at mount immutable unless
# it knows them (and busybox has no chattr). An efivarfs file is 4 bytes of
# attributes, then the data; 7 = NON_VOLATILE | BOOTSERVICE_ACCESS |
# RUNTIME_ACCESS (UEFI 2.10, 8.2 "Variable Services").
EFIVARS=/sys/firmware/efi/efivars
GUID=6a1f3c1e-7e0b-4c43-9d1c-ca1a7000b007
[ -d /sys/module/efivarfs ] || insmod /lib/modules/uefi/efivarfs.ko ||
	fail "insmod efivarfs"
mount -t efivarfs efivarfs "$EFIVARS" || fail "mount efivarfs"
boots=$(($(ls "$EFIVARS" | grep -c "^CairnBoot[0-9]*-$GUID\$") + 1))
VAR=$EFIVARS/CairnBoot$boots-$GUID
# efivarfs wants attributes and data in one write(): dd of one block.
printf '\007\000\000\000%s' "$(date +%s)" >/tmp/var
dd if=/tmp/var of="$VAR" bs=4096 2>/dev/null || fail "cannot write UEFI variable $VAR"
[ -f "$VAR" ] || fail "UEFI variable $VAR not there after writing it"

check_dmesg
echo "CAIRN-UEFI-DISK efi=yes gpt=ok esp=$esp data=$md5 boots=$boots"
while :; do sleep 3600; done
