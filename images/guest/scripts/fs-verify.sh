#!/bin/sh
# Checks the pattern a previous boot wrote, then deletes it and discards
# the free space (fstrim: DISCARD requests to the device).
. /scripts/lib
mount -t ext4 "$DISK" "$MNT" || fail "mount"
want=$(pattern | md5sum | cut -d' ' -f1)
got=$(md5sum <"$MNT/pattern" | cut -d' ' -f1)
[ "$want" = "$got" ] || fail "pattern: got $got, want $want"
[ "$(cat "$MNT/pattern.md5")" = "$want" ] || fail "pattern.md5"
echo "CAIRN-FS-VERIFY-OK $got"
rm -f "$MNT/pattern"
sync
fstrim -v "$MNT" || fail "fstrim"
umount "$MNT" || fail "umount"
check_dmesg
echo "CAIRN-DISCARD-OK"
