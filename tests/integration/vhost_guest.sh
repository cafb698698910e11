#!/usr/bin/env bash
# Real Linux guests (Debian's kernel, TCG) on a Cairn vdisk served by
# cairnd --vhost-blk:
#   1. boot 1 makes ext4 on the disk, writes a 32 MiB pattern, powers off;
#   2. boot 2 (a new cairnd) verifies the pattern, deletes it and fstrims:
#      the pool's used bytes (offline `cairn-sds pool stat`) drop;
#   3. a deep fsck of the pool.
# Every wait is bounded. The back-end restart test is vhost_reconnect.sh.
. "$(dirname "$0")/lib_cairnd.sh"
. "$(dirname "$0")/lib_vhost.sh"
cairn_init "$@"
trap 'rc=$?; guest_kill; (exit $rc); cairn_cleanup' EXIT
need qemu-system-x86_64

MiB=1048576
BOOT_SECS=${VHOST_BOOT_SECS:-240}
P=$T/pool
SOCK=$T/vm0.sock

step "guest image"
guest_image
cairn_format "$P" 2G
"$SDS" vdisk create "$P" vm0 1G || fail "vdisk create"
used0=$(pool_used "$P")

step "boot 1: mkfs.ext4, write the pattern"
cairnd_start "$P" --vhost-blk "vm0=$SOCK"
guest_run "$T/boot1.log" "$SOCK" fs-write "$BOOT_SECS"
grep -q CAIRN-FS-WRITE-OK "$T/boot1.log" || fail "no write marker"
cairnd_stop
used1=$(pool_used "$P")
echo "used bytes: empty $used0, after boot 1 $used1"
((used1 - used0 >= 32 * MiB)) || fail "only $((used1 - used0)) bytes written"

step "boot 2: verify the pattern, delete it, fstrim"
cairnd_start "$P" --vhost-blk "vm0=$SOCK"
guest_run "$T/boot2.log" "$SOCK" fs-verify "$BOOT_SECS"
grep -q CAIRN-FS-VERIFY-OK "$T/boot2.log" || fail "no verify marker"
grep -q CAIRN-DISCARD-OK "$T/boot2.log" || fail "no discard marker"
grep 'bytes trimmed' "$T/boot2.log" || true
cairnd_stop
used2=$(pool_used "$P")
echo "used bytes after boot 2 (discard): $used2 (freed $((used1 - used2)))"
((used1 - used2 >= 30 * MiB)) || fail "discard freed only $((used1 - used2)) bytes"

step "pool check"
pool_check "$P"
echo PASS
