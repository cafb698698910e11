#!/usr/bin/env bash
# SANITIZE (SBC-4 5.30) through a real initiator (libiscsi,
# tests/tools/iscsi_cdb.c) and QEMU's iscsi driver: OVERWRITE with IMMED
# leaves the LU NOT READY / SANITIZE IN PROGRESS (other LUs serve on) until
# the pattern is everywhere; BLOCK ERASE reads back zeroes; a cairnd
# SIGTERM in the middle of an OVERWRITE stops cleanly (no sanitizer report,
# exit 0) and the sanitize resumes when cairnd starts again (SBC-4 4.11.2),
# from its last checkpoint (every 16 MiB, recorded once durable), so the LU
# is never ready half-sanitized; a kill -9 the same.
set -euo pipefail
. "$(dirname "$0")/lib_cairnd.sh"
cairn_init "$@"
need qemu-img
CDB=$TESTS_BIN/iscsi_cdb
[[ -x $CDB ]] || fail "$CDB not built (make)"

IQN=iqn.2026-11.org.cairn:sanitize
cairn_format "$T/pool" 1G
"$SDS" vdisk create "$T/pool" s0 64M >/dev/null || fail "vdisk create"
"$SDS" vdisk create "$T/pool" other 16M >/dev/null || fail "vdisk create"
cat >"$T/iscsi.json" <<JSON
{"portal": "127.0.0.1:0",
 "targets": [{"name": "$IQN", "luns": {"0": "s0", "1": "other"},
              "initiators": ["*"]}]}
JSON
start() {
	cairnd_start "$T/pool" --iscsi-config "$T/iscsi.json"
	URL=iscsi://127.0.0.1:$ISCSI_PORT/$IQN
}
cdb() { # cdb LUN ARGS...
	local lun=$1
	shift
	timeout 60 "$CDB" "$URL/$lun" 1 "$@"
}
wait_ready() {
	local i
	for ((i = 0; i < 240; i++)); do
		[[ $(cdb 0 tur) == "status 0 "* ]] && return 0
		sleep 0.5
	done
	fail "LU still not ready after 120 s"
}
# The whole LU reads back as the OVERWRITE pattern.
check_pattern() {
	timeout 60 qemu-img convert -f raw -O raw "$URL/0" "$T/b.img" ||
		fail "read back"
	python3 - "$T/b.img" <<'PY' || fail "the pattern is not everywhere"
import sys
d = open(sys.argv[1], "rb").read()
assert len(d) == 64 << 20, len(d)
assert d == b"CAIRN!!!" * (len(d) // 8)
PY
	echo "ok   - 64 MiB read back as the pattern"
}
expect() { # expect WHAT GOT WANT
	[[ $2 == "$3" ]] || fail "$1: got '$2', want '$3'"
	echo "ok   - $1: $2"
}
start
head -c 4M /dev/urandom >"$T/a.img"
timeout 60 qemu-img convert -n -f raw -O raw "$T/a.img" "$URL/0" ||
	fail "write"

step "OVERWRITE, IMMED"
cdb 0 sanitize 1 immed >/dev/null || fail "sanitize overwrite"
expect "TEST UNIT READY during it" "$(cdb 0 tur)" "status 2 sense 2/04/1b"
expect "the other LU" "$(cdb 1 tur)" "status 0 sense 0/00/00"
wait_ready
check_pattern

step "BLOCK ERASE"
cdb 0 sanitize 2 >/dev/null || fail "sanitize block erase"
expect "ready after it" "$(cdb 0 tur)" "status 0 sense 0/00/00"
timeout 60 qemu-img convert -f raw -O raw "$URL/0" "$T/c.img" ||
	fail "read back"
cmp -s "$T/c.img" <(head -c 64M /dev/zero) || fail "not zeroes"
echo "ok   - 64 MiB read back as zeroes"

step "SIGTERM during an OVERWRITE, after a checkpoint"
cdb 0 sanitize 1 immed >/dev/null || fail "sanitize overwrite"
expect "in progress" "$(cdb 0 tur)" "status 2 sense 2/04/1b"
# Past 30 % (19 MiB of 64) the checkpoint at 16 MiB is durable: the
# OVERWRITE only goes on once it is recorded.
for ((i = 0; i < 600; i++)); do
	p=$(cdb 0 progress) || fail "progress"
	((${p#progress } >= 19661)) && break
	sleep 0.1
done
((${p#progress } >= 19661)) || fail "no progress past 30 %: $p"
echo "ok   - $p of 65535 when stopped"
cairnd_stop
grep -q "SANITIZE interrupted by shutdown" "$CAIRND_LOG" ||
	fail "no log line for the interrupted sanitize"
start
expect "resumed after the restart" "$(cdb 0 tur)" "status 2 sense 2/04/1b"
line=$(grep -o "resuming an interrupted SANITIZE at pass 1, offset [0-9]* MiB" "$CAIRND_LOG") ||
	fail "no resume line in $CAIRND_LOG"
off=${line##*offset }
off=${off% MiB}
((off >= 16 && off % 16 == 0)) || fail "resumed at $off MiB, not at a checkpoint of 16 MiB or more"
echo "ok   - $line"
wait_ready
check_pattern

step "kill -9 during an OVERWRITE"
timeout 60 qemu-img convert -n -f raw -O raw "$T/a.img" "$URL/0" ||
	fail "write"
cdb 0 sanitize 1 immed >/dev/null || fail "sanitize overwrite"
kill -9 "$CAIRND_PID"
wait "$CAIRND_PID" 2>/dev/null || true
CAIRND_PID=
start
expect "resumed after kill -9" "$(cdb 0 tur)" "status 2 sense 2/04/1b"
wait_ready
check_pattern
timeout 60 qemu-img convert -n -f raw -O raw "$T/a.img" "$URL/0" ||
	fail "write after"
cairnd_stop
echo "iscsi_sanitize: ok"
