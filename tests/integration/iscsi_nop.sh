#!/usr/bin/env bash
# Target-initiated NOP-In (RFC 7143 § 11.19) with a short interval and
# timeout (nop_interval_ms / nop_timeout_ms in the configuration):
# tests/tools/iscsi_bad_input.c --nop answers the pings on one connection
# (it stays), and on another leaves a WRITE waiting for its data and never
# answers (the target must close it and drop the task). Then QEMU's
# libiscsi driver idles through many pings, reads and writes, and cairnd
# stops cleanly (LeakSanitizer
# checks the dropped task's buffers were freed).
set -euo pipefail
. "$(dirname "$0")/lib_cairnd.sh"
cairn_init "$@"
need iscsi-inq qemu-img
TOOL=$TESTS_BIN/iscsi_bad_input
[[ -x $TOOL ]] || fail "$TOOL not built (make)"

IQN=iqn.2026-11.org.cairn:nop
cairn_format "$T/pool" 1G
"$SDS" vdisk create "$T/pool" vd0 32M >/dev/null || fail "vdisk create"
cat >"$T/iscsi.json" <<JSON
{"portal": "127.0.0.1:0", "nop_interval_ms": 200, "nop_timeout_ms": 500,
 "targets": [{"name": "$IQN", "luns": {"0": "vd0"}, "initiators": ["*"]}]}
JSON
cairnd_start "$T/pool" --iscsi-config "$T/iscsi.json"

step "pings answered; a silent connection closed"
"$TOOL" --nop 127.0.0.1 "$ISCSI_PORT" "$IQN" || fail "iscsi_bad_input --nop"
grep -q "no answer to NOP-In in 500 ms: closing" "$CAIRND_LOG" ||
	fail "no log line for the closed connection"
cairnd_alive || fail "cairnd died"

step "a real initiator (QEMU's libiscsi driver) answers the pings while idle"
# qemu-io's sleep runs QEMU's event loop, so libiscsi reads the pings and
# answers them; 3 s is 15 intervals, 6 timeouts.
out=$(timeout 60 qemu-io -f raw -c "write -P 0x5a 0 1M" -c "sleep 3000" \
	-c "read -P 0x5a 0 1M" "iscsi://127.0.0.1:$ISCSI_PORT/$IQN/0" 2>&1) ||
	fail "qemu-io: $out"
grep -q "Pattern verification failed" <<<"$out" && fail "qemu-io: $out"
head -c 4M /dev/urandom >"$T/a.img"
timeout 60 qemu-img convert -n -f raw -O raw "$T/a.img" \
	"iscsi://127.0.0.1:$ISCSI_PORT/$IQN/0" || fail "write"
timeout 60 qemu-img convert -f raw -O raw \
	"iscsi://127.0.0.1:$ISCSI_PORT/$IQN/0" "$T/b.img" || fail "read back"
cmp -n $((4 << 20)) "$T/a.img" "$T/b.img" || fail "data differs"
n=$(grep -c "no answer to NOP-In" "$CAIRND_LOG")
((n == 1)) || fail "$n connections closed for silence (expected 1)"

cairnd_stop

step "bad values refused"
for v in '"nop_interval_ms": 5' '"nop_timeout_ms": 0' '"nop_interval_ms": "1"'; do
	echo "{\"portal\": \"127.0.0.1:0\", $v, \"targets\": [{\"name\": \"$IQN\", \"luns\": {\"0\": \"vd0\"}, \"initiators\": [\"*\"]}]}" >"$T/bad.json"
	if "$CAIRND" --data "$T/pool" --iscsi-config "$T/bad.json" >"$T/bad.log" 2>&1; then
		fail "accepted $v"
	fi
	grep -q "nop_" "$T/bad.log" || fail "no message naming the key for $v: $(cat "$T/bad.log")"
done
echo "iscsi_nop: ok"
