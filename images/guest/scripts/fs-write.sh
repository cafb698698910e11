#!/bin/sh
# Makes an ext4 filesystem on the disk, writes the pattern file, syncs.
. /scripts/lib
[ -b "$DISK" ] || fail "no $DISK"
/usr/local/sbin/mke2fs -q -F -t ext4 -E nodiscard "$DISK" || fail "mke2fs"
mount -t ext4 "$DISK" "$MNT" || fail "mount"
pattern >"$MNT/pattern" || fail "write pattern"
pattern | md5sum | cut -d' ' -f1 >"$MNT/pattern.md5"
sync
umount "$MNT" || fail "umount"
check_dmesg
echo "CAIRN-FS-WRITE-OK"
