#!/usr/bin/env bash
# Discovery with more targets than fit one PDU: a portal with 60 targets
# answers SendTargets=All in pieces to an initiator that accepts 512 bytes
# per PDU (RFC 7143 11.10-11.11: C bit, target transfer tag, continuation
# requests; tests/tools/iscsi_bad_input.c --text), and whole to
# libiscsi's iscsi-ls, which declares a large MaxRecvDataSegmentLength.
set -euo pipefail
. "$(dirname "$0")/lib_cairnd.sh"
cairn_init "$@"
need iscsi-ls
TOOL=$TESTS_BIN/iscsi_bad_input
[[ -x $TOOL ]] || fail "$TOOL not built (make)"

N=60
cairn_format "$T/pool" 1G
targets=
for ((i = 0; i < N; i++)); do
	"$SDS" vdisk create "$T/pool" "vd$i" 1M >/dev/null || fail "vdisk create vd$i"
	targets+="${targets:+,}
  {\"name\": \"iqn.2026-11.org.cairn:discovery-target-$i\", \"luns\": {\"0\": \"vd$i\"}, \"initiators\": [\"*\"]}"
done
printf '{"portal": "127.0.0.1:0", "targets": [%s\n]}\n' "$targets" >"$T/iscsi.json"
cairnd_start "$T/pool" --iscsi-config "$T/iscsi.json"

step "SendTargets in pieces of 512 bytes"
"$TOOL" --text 127.0.0.1 "$ISCSI_PORT" "$N" || fail "long text response"
cairnd_alive || fail "cairnd died"

step "iscsi-ls sees all $N targets"
got=$(timeout 30 iscsi-ls "iscsi://127.0.0.1:$ISCSI_PORT" | grep -c '^Target:') ||
	fail "iscsi-ls"
((got == N)) || fail "iscsi-ls listed $got targets, want $N"
cairnd_stop
echo PASS
