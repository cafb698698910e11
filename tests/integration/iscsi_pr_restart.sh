#!/usr/bin/env bash
# Persistent reservations through power loss (SPC-5 5.14.5, APTPL) across
# real cairnd restarts, driven by libiscsi (tests/tools/iscsi_cdb.c): two
# I_T nexuses (same initiator name, ISIDs 1 and 2) register with APTPL=1,
# nexus 1 takes a Write Exclusive reservation; after a clean restart and
# after a kill -9 the keys, the generation, the reservation and its
# conflicts are as they were when the last PERSISTENT RESERVE OUT was
# answered; REPORT CAPABILITIES says PTPL_C=1 and PTPL_A; a REGISTER with
# APTPL=0 leaves nothing behind at the next restart.
set -euo pipefail
. "$(dirname "$0")/lib_cairnd.sh"
cairn_init "$@"
PR=$TESTS_BIN/iscsi_cdb
[[ -x $PR ]] || fail "$PR not built (make)"

IQN=iqn.2026-11.org.cairn:pr
cairn_format "$T/pool" 1G
"$SDS" vdisk create "$T/pool" pr0 16M >/dev/null || fail "vdisk create"
cat >"$T/iscsi.json" <<JSON
{"portal": "127.0.0.1:0",
 "targets": [{"name": "$IQN", "luns": {"0": "pr0"}, "initiators": ["*"]}]}
JSON
start() {
	cairnd_start "$T/pool" --iscsi-config "$T/iscsi.json"
	URL=iscsi://127.0.0.1:$ISCSI_PORT/$IQN/0
}
# pr ISID ARGS...: one command; prints its output.
pr() {
	local isid=$1
	shift
	timeout 30 "$PR" "$URL" "$isid" "$@"
}
expect() { # expect WHAT GOT WANT
	[[ $2 == "$3" ]] || fail "$1: got '$2', want '$3'"
	echo "ok   - $1: $2"
}
start
expect "capabilities before" "$(pr 1 caps)" "ptpl_c 1 ptpl_a 0"
pr 1 register aa aptpl >/dev/null || fail "register 1"
pr 2 register bb aptpl >/dev/null || fail "register 2"
pr 1 reserve aa 1 >/dev/null || fail "reserve"
keys=$(pr 1 keys)
expect "reservation" "$(pr 2 resv)" "reserved 1 key aa type 1"
expect "capabilities" "$(pr 2 caps)" "ptpl_c 1 ptpl_a 1"
expect "write from the registrant that does not hold it" "$(pr 2 write)" "status 24"
expect "write from the holder" "$(pr 1 write)" "status 0"

step "clean restart"
cairnd_stop
start
expect "keys and generation" "$(pr 2 keys)" "$keys"
expect "reservation" "$(pr 2 resv)" "reserved 1 key aa type 1"
expect "capabilities" "$(pr 2 caps)" "ptpl_c 1 ptpl_a 1"
expect "write from the registrant that does not hold it" "$(pr 2 write)" "status 24"
expect "write from the holder" "$(pr 1 write)" "status 0"
expect "write from an unregistered nexus" "$(pr 3 write)" "status 24"

step "kill -9 right after a RELEASE was answered"
pr 1 release aa 1 >/dev/null || fail "release"
keys=$(pr 1 keys)
kill -9 "$CAIRND_PID"
wait "$CAIRND_PID" 2>/dev/null || true
CAIRND_PID=
start
expect "keys and generation" "$(pr 2 keys)" "$keys"
expect "reservation" "$(pr 2 resv)" "reserved 0"
expect "write from nexus 2" "$(pr 2 write)" "status 0"

step "APTPL=0: the state is not kept any more"
pr 1 register aa >/dev/null || fail "register without APTPL"
expect "capabilities" "$(pr 1 caps)" "ptpl_c 1 ptpl_a 0"
cairnd_stop
start
got=$(pr 1 keys)
expect "keys after restart" "${got#generation * }" "keys"
grep -q "persistent reservations not restored" "$CAIRND_LOG" &&
	fail "restore error in the log"
cairnd_stop
echo "iscsi_pr_restart: ok"
