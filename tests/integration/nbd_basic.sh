#!/usr/bin/env bash
# NBD front end with real clients: nbdinfo sees the exports, their sizes and
# block sizes; qemu-img writes a random image over nbd://, nbdcopy reads it
# back, both compare equal; data survives a restart; a snapshot is a
# read-only export that keeps the old data after the origin is rewritten.
. "$(dirname "$0")/lib_cairnd.sh"
cairn_init "$@"
need nbdinfo nbdcopy qemu-img cmp

P=$T/pool
cairn_format "$P" 1G
"$SDS" vdisk create "$P" vd0 64M || fail "vdisk create vd0"
"$SDS" vdisk create "$P" vd4k 32M --sector 4096 || fail "vdisk create vd4k"

cairnd_start "$P" --default-export vd0

step "nbdinfo"
nbdinfo "$NBD_URI/vd0" >"$T/info0" || fail "nbdinfo vd0"
nbdinfo "$NBD_URI/vd4k" >"$T/info4k" || fail "nbdinfo vd4k"
info() { sed -n "s/^[[:space:]]*$2: \([^ ]*\).*/\1/p" "$1"; }
[[ $(info "$T/info0" export-size) == 67108864 ]] || fail "vd0 size: $(cat "$T/info0")"
[[ $(info "$T/info0" block_size_minimum) == 512 ]] || fail "vd0 minimum block"
[[ $(info "$T/info0" block_size_preferred) == 4096 ]] || fail "vd0 preferred block"
[[ $(info "$T/info0" block_size_maximum) == 33554432 ]] || fail "vd0 maximum block"
[[ $(info "$T/info0" is_read_only) == false ]] || fail "vd0 read-only"
for f in can_flush can_fua can_trim can_zero can_multi_conn; do
	[[ $(info "$T/info0" $f) == true ]] || fail "vd0 $f not true"
done
[[ $(info "$T/info4k" export-size) == 33554432 ]] || fail "vd4k size"
[[ $(info "$T/info4k" block_size_minimum) == 4096 ]] || fail "vd4k minimum block"

nbdinfo --list "$NBD_URI" >"$T/list" || fail "nbdinfo --list"
grep -q 'export="vd0"' "$T/list" && grep -q 'export="vd4k"' "$T/list" ||
	fail "nbdinfo --list: $(cat "$T/list")"
nbdinfo "$NBD_URI/" >"$T/infodef" || fail "nbdinfo default export"
[[ $(info "$T/infodef" export-size) == 67108864 ]] || fail "default export is not vd0"
nbdinfo "$NBD_URI/no-such-vdisk" >/dev/null 2>&1 && fail "nbdinfo of an unknown export succeeded"

step "block status (structured replies, base:allocation)"
head -c 1M /dev/urandom >"$T/rnd1m"
qemu-img convert -n -f raw -O raw "$T/rnd1m" "$NBD_URI/vd0" || fail "qemu-img convert 1M"
nbdinfo --map "$NBD_URI/vd0" >"$T/map" || fail "nbdinfo --map"
read -r s0 l0 t0 _ < <(sed -n 1p "$T/map")
read -r s1 l1 t1 _ < <(sed -n 2p "$T/map")
[[ $s0 == 0 && $l0 == 1048576 && $t0 == 0 && $s1 == 1048576 && $t1 == 3 ]] ||
	fail "unexpected allocation map: $(cat "$T/map")"
qemu-img map --output=json -f raw "$NBD_URI/vd0" | grep -q '"zero": true' ||
	fail "qemu-img map sees no zero extent"

step "qemu-img convert in, nbdcopy out"
head -c 64M /dev/urandom >"$T/rnd0"
head -c 32M /dev/urandom >"$T/rnd4k"
qemu-img convert -n -f raw -O raw "$T/rnd0" "$NBD_URI/vd0" || fail "qemu-img convert to vd0"
qemu-img convert -n -f raw -O raw "$T/rnd4k" "$NBD_URI/vd4k" || fail "qemu-img convert to vd4k"
nbdcopy "$NBD_URI/vd0" "$T/out0" || fail "nbdcopy from vd0"
nbdcopy "$NBD_URI/vd4k" "$T/out4k" || fail "nbdcopy from vd4k"
cmp "$T/rnd0" "$T/out0" || fail "vd0 read back differs"
cmp "$T/rnd4k" "$T/out4k" || fail "vd4k read back differs"
qemu-img compare -f raw -F raw "$T/rnd0" "$NBD_URI/vd0" || fail "qemu-img compare vd0"
qemu-img compare -f raw -F raw "$T/rnd4k" "$NBD_URI/vd4k" || fail "qemu-img compare vd4k"

step "restart: data persists"
cairnd_stop
"$SDS" vdisk snapshot "$P" vd0 snap0 || fail "vdisk snapshot"
cairnd_start "$P"
rm -f "$T/out0"
nbdcopy "$NBD_URI/vd0" "$T/out0" || fail "nbdcopy from vd0 after restart"
cmp "$T/rnd0" "$T/out0" || fail "vd0 differs after restart"

step "snapshot export"
nbdinfo "$NBD_URI/snap0" >"$T/infosnap" || fail "nbdinfo snap0"
[[ $(info "$T/infosnap" is_read_only) == true ]] || fail "snap0 is not read-only"
[[ $(info "$T/infosnap" can_trim) != true ]] || fail "snap0 offers trim"
qemu-img convert -n -f raw -O raw "$T/rnd4k" "$NBD_URI/snap0" 2>/dev/null &&
	fail "writing to a snapshot export succeeded"
head -c 8M /dev/urandom >"$T/rnd8"
qemu-img convert -n -f raw -O raw "$T/rnd8" "$NBD_URI/vd0" || fail "rewrite vd0"
rm -f "$T/outsnap"
nbdcopy "$NBD_URI/snap0" "$T/outsnap" || fail "nbdcopy from snap0"
cmp "$T/rnd0" "$T/outsnap" || fail "snapshot changed when its origin was rewritten"
cmp -n 8388608 "$T/rnd8" <(nbdcopy "$NBD_URI/vd0" -) || fail "vd0 rewrite not visible"

cairnd_stop
step "pool check"
pool_check "$P"
echo "PASS"
