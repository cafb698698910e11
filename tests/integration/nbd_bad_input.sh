#!/usr/bin/env bash
# Hostile and broken NBD clients (tests/tools/nbd_bad_input.c): bad magic,
# bad flags and options, requests past the end, misaligned, zero-length,
# oversized, unknown commands, writes to a snapshot, pipelining past the
# in-flight cap, clients hanging up mid-request. Every one must get the
# right error or a disconnect. Then seeded random traffic. Afterwards the
# daemon must still serve good requests, stop cleanly (no sanitizer
# reports) and leave a consistent pool.
. "$(dirname "$0")/lib_cairnd.sh"
cairn_init "$@"
need qemu-io nbdinfo
TOOL=$TESTS_BIN/nbd_bad_input
[[ -x $TOOL ]] || fail "$TOOL not built (make)"

P=$T/pool
cairn_format "$P" 512M
"$SDS" vdisk create "$P" victim 8M || fail "vdisk create victim"
"$SDS" vdisk create "$P" victim4k 8M --sector 4096 || fail "vdisk create victim4k"
"$SDS" vdisk snapshot "$P" victim victim-snap || fail "vdisk snapshot"
cairnd_start "$P"

step "bad input, 512-byte sectors"
"$TOOL" 127.0.0.1 "$NBD_PORT" victim victim-snap || fail "nbd_bad_input victim"
cairnd_alive || fail "cairnd died"

step "bad input, 4096-byte sectors"
"$TOOL" 127.0.0.1 "$NBD_PORT" victim4k || fail "nbd_bad_input victim4k"
cairnd_alive || fail "cairnd died"

SEED=${NBD_FUZZ_SEED:-$RANDOM}
step "random traffic, 2 x 300 connections (NBD_FUZZ_SEED=$SEED replays)"
"$TOOL" --fuzz 127.0.0.1 "$NBD_PORT" victim 300 "$SEED" || fail "fuzz victim"
"$TOOL" --fuzz 127.0.0.1 "$NBD_PORT" victim4k 300 "$((SEED + 1))" || fail "fuzz victim4k"
cairnd_alive || fail "cairnd died under random traffic (NBD_FUZZ_SEED=$SEED)"

step "clients hanging up mid-handshake; one staying silent"
exec 3<>"/dev/tcp/127.0.0.1/$NBD_PORT"
head -c 5 <&3 >/dev/null
exec 3>&-
exec 3<>"/dev/tcp/127.0.0.1/$NBD_PORT"
printf '\0\0\0\1IHAVEOPT\0\0\0\7\0\0\1' >&3 # option header cut short
exec 3>&-
exec 4<>"/dev/tcp/127.0.0.1/$NBD_PORT" # kept open across the stop below

step "still serving"
nbdinfo "$NBD_URI/victim" >/dev/null || fail "nbdinfo after bad input"
qemu-io -f raw -c "write -P 0x77 1M 1M" -c "read -P 0x77 1M 1M" \
	"$NBD_URI/victim" >"$T/qio.out" 2>&1 ||
	{ cat "$T/qio.out" >&2; fail "qemu-io after bad input"; }
grep -q 'Pattern verification failed' "$T/qio.out" && fail "read back differs"

cairnd_stop # must not wait for the silent client
exec 4>&-
step "pool check"
pool_check "$P"
echo "PASS"
