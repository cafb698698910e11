#!/usr/bin/env bash
# Malformed iSCSI input (tests/tools/iscsi_bad_input.c): bad opcodes,
# truncated BHS, oversize data segments, bad header and data digests,
# commands before login, a malformed AHS, Data-Out for unknown tasks, wrong
# CHAP secrets, a short secret, a reflected mutual-CHAP challenge; then
# seeded random PDUs. cairnd must answer each as docs/iscsi.md says, keep
# serving (iscsi-inq and a data round trip afterwards), and stop cleanly
# (an ASan report fails the test through the exit status).
set -euo pipefail
. "$(dirname "$0")/lib_cairnd.sh"
cairn_init "$@"
need iscsi-inq qemu-img
TOOL=$TESTS_BIN/iscsi_bad_input
[[ -x $TOOL ]] || fail "$TOOL not built (make)"

OPEN=iqn.2026-11.org.cairn:open
CHAP=iqn.2026-11.org.cairn:chap
USER_=bad-user
SECRET=bad-input-secret-0123
cairn_format "$T/pool" 1G
"$SDS" vdisk create "$T/pool" vd0 32M >/dev/null || fail "vdisk create"
"$SDS" vdisk create "$T/pool" vd1 32M >/dev/null || fail "vdisk create"
cat >"$T/iscsi.json" <<JSON
{"portal": "127.0.0.1:0",
 "targets": [
  {"name": "$OPEN", "luns": {"0": "vd0"}, "initiators": ["*"]},
  {"name": "$CHAP", "luns": {"0": "vd1"}, "initiators": ["*"],
   "chap": {"user": "$USER_", "secret": "$SECRET",
            "mutual_user": "target", "mutual_secret": "target-secret-456789"}}
 ]}
JSON
cairnd_start "$T/pool" --iscsi-config "$T/iscsi.json"

step "malformed PDUs and refused logins"
"$TOOL" 127.0.0.1 "$ISCSI_PORT" "$OPEN" "$CHAP" "$USER_" "$SECRET" ||
	fail "iscsi_bad_input checks"
cairnd_alive || fail "cairnd died"

step "seeded random PDUs (200 connections)"
"$TOOL" --fuzz 127.0.0.1 "$ISCSI_PORT" "$OPEN" 200 7 || fail "fuzz client"
cairnd_alive || fail "cairnd died under random PDUs"

step "still serving"
timeout 30 iscsi-inq "iscsi://127.0.0.1:$ISCSI_PORT/$OPEN/0" >/dev/null ||
	fail "iscsi-inq after bad input"
head -c 1M /dev/urandom >"$T/a.img"
timeout 60 qemu-img convert -n -f raw -O raw "$T/a.img" \
	"iscsi://127.0.0.1:$ISCSI_PORT/$OPEN/0" || fail "write after bad input"
timeout 60 qemu-img convert -f raw -O raw \
	"iscsi://127.0.0.1:$ISCSI_PORT/$OPEN/0" "$T/b.img" || fail "read back"
cmp -n $((1 << 20)) "$T/a.img" "$T/b.img" || fail "data differs"
cairnd_stop
echo "iscsi_bad_input: ok"
