#!/usr/bin/env bash
# The iSCSI target with real initiators: libiscsi's iscsi-ls (discovery),
# iscsi-inq, iscsi-readcapacity16, and QEMU's iscsi block driver
# (qemu-img convert to and from iscsi://, qemu-img compare), first without
# CHAP, then with CHAP (one-way and mutual); a wrong CHAP secret, a wrong
# user and an unknown target are refused; cairnd stops cleanly each time.
set -euo pipefail
. "$(dirname "$0")/lib_cairnd.sh"
cairn_init "$@"
need iscsi-ls iscsi-inq iscsi-readcapacity16 qemu-img

IQN=iqn.2026-11.org.cairn:basic
USER_=basic-user
SECRET=basic-secret-0123456789
MUSER=basic-target
MSECRET=target-secret-9876543210
SIZE=$((64 << 20))

cairn_format "$T/pool" 1G
"$SDS" vdisk create "$T/pool" vd0 64M >/dev/null || fail "vdisk create"
head -c $((24 << 20)) /dev/urandom >"$T/src.img"
truncate -s $SIZE "$T/src.img"

# run_initiators URL_PREFIX (iscsi://[cred@]127.0.0.1:PORT)
run_initiators() {
	local base=$1 url=$1/$IQN/0 out
	step "iscsi-ls (SendTargets discovery)"
	out=$(timeout 30 iscsi-ls -s "$base") || fail "iscsi-ls: $out"
	echo "$out"
	grep -q "Target:$IQN Portal:127.0.0.1:$ISCSI_PORT,1" <<<"$out" ||
		fail "iscsi-ls does not list $IQN"
	grep -q "Lun:0 .*DIRECT_ACCESS" <<<"$out" || fail "iscsi-ls: no LUN 0"

	step "iscsi-inq"
	out=$(timeout 30 iscsi-inq "$url") || fail "iscsi-inq: $out"
	grep -q "Peripheral Device Type:DIRECT_ACCESS" <<<"$out" ||
		fail "iscsi-inq: $out"

	step "iscsi-readcapacity16"
	out=$(timeout 30 iscsi-readcapacity16 "$url") ||
		fail "iscsi-readcapacity16: $out"
	grep -q "Total size:$SIZE" <<<"$out" || fail "readcapacity16: $out"

	step "qemu-img convert to iscsi, back, compare"
	timeout 120 qemu-img convert -n -f raw -O raw "$T/src.img" "$url" ||
		fail "qemu-img convert to $url"
	rm -f "$T/back.img"
	timeout 120 qemu-img convert -f raw -O raw "$url" "$T/back.img" ||
		fail "qemu-img convert from $url"
	cmp "$T/src.img" "$T/back.img" || fail "data read back differs"
	timeout 120 qemu-img compare -f raw -F raw "$T/src.img" "$url" ||
		fail "qemu-img compare"
}

step "no CHAP"
iscsi_config "$T/open.json" "$IQN" vd0
cairnd_start "$T/pool" --iscsi-config "$T/open.json"
[[ -n $ISCSI_PORT ]] || fail "no iscsi= line in the ready file"
run_initiators "iscsi://127.0.0.1:$ISCSI_PORT"
step "an unknown target is refused"
if timeout 30 iscsi-inq "iscsi://127.0.0.1:$ISCSI_PORT/iqn.2026-11.org.cairn:nope/0" \
	>"$T/out" 2>&1; then
	fail "login to an unknown target succeeded"
fi
cairnd_stop

step "one-way CHAP"
iscsi_config "$T/chap.json" "$IQN" vd0 "$USER_" "$SECRET"
cairnd_start "$T/pool" --iscsi-config "$T/chap.json"
run_initiators "iscsi://$USER_%$SECRET@127.0.0.1:$ISCSI_PORT"
URL=iscsi://127.0.0.1:$ISCSI_PORT/$IQN/0
step "a wrong secret, a wrong user, no credentials: refused"
for cred in "$USER_%wrong-secret-0123456" "intruder%$SECRET" ""; do
	u=iscsi://${cred:+$cred@}127.0.0.1:$ISCSI_PORT/$IQN/0
	if timeout 30 iscsi-inq "$u" >"$T/out" 2>&1; then
		fail "login with '${cred:-no credentials}' succeeded"
	fi
	grep -qi "fail\|error\|auth" "$T/out" || fail "no error shown: $(cat "$T/out")"
done
timeout 30 iscsi-inq "iscsi://$USER_%$SECRET@127.0.0.1:$ISCSI_PORT/$IQN/0" \
	>/dev/null || fail "cairnd stopped serving after refused logins"
cairnd_stop

step "mutual CHAP"
iscsi_config "$T/mutual.json" "$IQN" vd0 "$USER_" "$SECRET" "$MUSER" "$MSECRET"
cairnd_start "$T/pool" --iscsi-config "$T/mutual.json"
# libiscsi does mutual CHAP when given a target user and secret.
out=$(LIBISCSI_CHAP_TARGET_USERNAME=$MUSER LIBISCSI_CHAP_TARGET_PASSWORD=$MSECRET \
	timeout 30 iscsi-inq "iscsi://$USER_%$SECRET@127.0.0.1:$ISCSI_PORT/$IQN/0" 2>&1) ||
	fail "mutual CHAP login: $out"
if LIBISCSI_CHAP_TARGET_USERNAME=$MUSER LIBISCSI_CHAP_TARGET_PASSWORD=wrong-target-secret-0 \
	timeout 30 iscsi-inq "iscsi://$USER_%$SECRET@127.0.0.1:$ISCSI_PORT/$IQN/0" \
	>"$T/out" 2>&1; then
	fail "initiator accepted a target with the wrong mutual secret"
fi
run_initiators "iscsi://$USER_%$SECRET@127.0.0.1:$ISCSI_PORT"
cairnd_stop

step "a configuration error is reported and cairnd exits 1"
cat >"$T/bad.json" <<JSON
{"portal": "127.0.0.1:0", "targets": [{"name": "$IQN", "luns": {"0": "vd0"},
  "initiators": ["*"], "chap": {"user": "u", "secret": "short"}}]}
JSON
rc=0
"$CAIRND" --data "$T/pool" --nbd 127.0.0.1:0 --iscsi-config "$T/bad.json" \
	>"$T/bad.log" 2>&1 || rc=$?
((rc == 1)) || fail "bad config: exit $rc, expected 1"
grep -q "secret must be" "$T/bad.log" || fail "bad config message: $(cat "$T/bad.log")"
pool_check "$T/pool"
echo "iscsi_basic: ok"
