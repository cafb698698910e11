#!/usr/bin/env bash
# Stopping cairnd (SIGTERM) with NBD clients attached: under a busy fio
# workload, and with a client that never reads its replies. cairnd must
# exit 0 (no sanitizer reports) within a bounded time, and the pool must be
# consistent and serve again afterwards.
. "$(dirname "$0")/lib_cairnd.sh"
cairn_init "$@"
cd "$T" # fio drops files in the working directory
need fio qemu-io
TOOL=$TESTS_BIN/nbd_bad_input
[[ -x $TOOL ]] || fail "$TOOL not built (make)"

P=$T/pool
cairn_format "$P" 1G
"$SDS" vdisk create "$P" busy 128M || fail "vdisk create busy"

# stop_within SECONDS: SIGTERM, then cairnd must be gone in time.
stop_within() {
	local t0=$SECONDS
	CAIRND_STOP_TIMEOUT=$1 cairnd_stop
	echo "stopped in $((SECONDS - t0)) s"
}

step "SIGTERM under fio (iodepth 64, up to 4 MiB requests, 2 connections)"
cairnd_start "$P"
fio --output="$T/fio.out" --ioengine=nbd --uri="$NBD_URI/busy" \
	--rw=randrw --bsrange=4k-4m --iodepth=64 --numjobs=2 --size=128M \
	--time_based --runtime=60 --name=busy >/dev/null 2>&1 &
FIO=$!
sleep 2
kill -0 $FIO 2>/dev/null || { cat "$T/fio.out" >&2; fail "fio ended early"; }
stop_within 20
wait $FIO 2>/dev/null || true # it loses its server: errors expected

step "SIGTERM with a client that never reads its replies"
cairnd_start "$P"
"$TOOL" --stall 127.0.0.1 "$NBD_PORT" busy >"$T/stall.out" 2>&1 &
STALL=$!
for _ in $(seq 100); do
	grep -q stalled "$T/stall.out" && break
	sleep 0.1
done
grep -q stalled "$T/stall.out" || fail "stalling client did not start"
sleep 1
stop_within 20
kill $STALL 2>/dev/null || true
wait $STALL 2>/dev/null || true

step "pool check, then serving again"
pool_check "$P"
cairnd_start "$P"
qemu-io -f raw -c "write -P 0x42 0 1M" -c "read -P 0x42 0 1M" \
	"$NBD_URI/busy" >"$T/qio.out" 2>&1 ||
	{ cat "$T/qio.out" >&2; fail "qemu-io after restart"; }
grep -q 'Pattern verification failed' "$T/qio.out" && fail "read back differs"
cairnd_stop
echo "PASS"
