#!/usr/bin/env bash
# fio over libnbd (--ioengine=nbd) against cairnd: random writes with
# crc32c verification, at queue depth (pipelined, out-of-order replies),
# with small and large blocks, on two connections at once; then the same
# pattern verified again after a restart (acknowledged writes survive a
# clean stop).
. "$(dirname "$0")/lib_cairnd.sh"
cairn_init "$@"
cd "$T" # fio drops files in the working directory
need fio
fio --enghelp 2>/dev/null | grep -qw nbd || fail "fio has no nbd engine"

P=$T/pool
cairn_format "$P" 1G
"$SDS" vdisk create "$P" fio0 64M || fail "vdisk create fio0"
"$SDS" vdisk create "$P" fio1 64M --sector 4096 || fail "vdisk create fio1"
cairnd_start "$P"

# run_fio NAME ARGS...: bounded runtime, output kept for the log.
run_fio() {
	local name=$1
	shift
	fio --name="$name" --ioengine=nbd --output="$T/$name.out" \
		--runtime=120 --verify_fatal=1 --exitall_on_error=1 \
		--verify_state_save=0 "$@" ||
		{ cat "$T/$name.out" >&2; fail "fio $name"; }
	grep -q 'err= 0' "$T/$name.out" || { cat "$T/$name.out" >&2; fail "fio $name: errors"; }
}

step "4 KiB random writes, verify, iodepth 32"
run_fio rw4k --uri="$NBD_URI/fio0" --rw=randwrite --bs=4k --size=16M \
	--iodepth=32 --verify=crc32c --do_verify=1

step "4 KiB to 1 MiB random writes, verify, 4096-byte sectors"
run_fio rwmix --uri="$NBD_URI/fio1" --rw=randwrite --bsrange=4k-1m \
	--bs_unaligned=0 --size=32M --iodepth=16 --verify=crc32c --do_verify=1

step "two connections at once"
fio --output="$T/multi.out" --ioengine=nbd --runtime=120 --verify_fatal=1 \
	--verify_state_save=0 \
	--rw=randwrite --bs=64k --iodepth=8 --verify=crc32c --do_verify=1 \
	--name=a --uri="$NBD_URI/fio0" --offset=0 --size=24M \
	--name=b --uri="$NBD_URI/fio0" --offset=32M --size=24M ||
	{ cat "$T/multi.out" >&2; fail "fio on two connections"; }

step "write a pattern, restart, verify it"
run_fio pat --uri="$NBD_URI/fio1" --rw=randwrite --bs=16k --size=16M \
	--iodepth=16 --verify=crc32c --do_verify=0 --randseed=4242
cairnd_stop
cairnd_start "$P"
run_fio pat --uri="$NBD_URI/fio1" --rw=randwrite --bs=16k --size=16M \
	--iodepth=16 --verify=crc32c --verify_only=1 --randseed=4242

cairnd_stop
step "pool check"
pool_check "$P"
echo "PASS"
