#!/usr/bin/env bash
# A short, fixed-seed libFuzzer pass over the iSCSI parsers
# (tests/fuzz/fuzz_iscsi.c): PDU decoder, text keys and negotiation, CHAP,
# configuration, and the SCSI core's CDB length logic. Built by
# `make MODE=fuzz fuzzers` into $CAIRN_ROOT/build/fuzz/.
set -euo pipefail
ROOT=${CAIRN_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
# `make MODE=fuzz fuzzers` writes $(BUILD)/fuzz/NAME with BUILD=build/fuzz.
FUZZ=$ROOT/build/fuzz/fuzz_iscsi
[[ -x $FUZZ ]] || FUZZ=$ROOT/build/fuzz/fuzz/fuzz_iscsi
if [[ ! -x $FUZZ ]]; then
	echo "FAIL: $FUZZ not built (make MODE=fuzz fuzzers)" >&2
	exit 1
fi
T=$(mktemp -d "${TMPDIR:-/tmp}/cairn-fuzz_iscsi.XXXXXX")
trap 'rm -rf "$T"' EXIT
mkdir "$T/seeds"
# Seeds: one input per parser, so the run starts from valid shapes.
printf '\x00\x01\x81\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x02\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x28\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00' >"$T/seeds/seed-pdu"
printf '\x01CHAP_A=5\x00CHAP_N=user\x00CHAP_R=0x00112233445566778899aabbccddeeff\x00CHAP_I=1\x00CHAP_C=0b3q2+7w==\x00HeaderDigest=CRC32C,None\x00MaxBurstLength=262144\x00FirstBurstLength=65536\x00' >"$T/seeds/seed-keys"
printf '\x020x0123456789abcdef' >"$T/seeds/seed-chap"
printf '\x03\x8a\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x08\x00\x00' >"$T/seeds/seed-cdb"
printf '\x04{"portal": "127.0.0.1:0", "targets": [{"name": "iqn.2026-11.x:a", "luns": {"0": "v"}, "initiators": ["*"]}]}' >"$T/seeds/seed-cfg"
mkdir "$T/corpus"
rc=0
"$FUZZ" -runs=200000 -seed=1 -max_len=4096 -artifact_prefix="$T/" \
	"$T/corpus" "$T/seeds" >"$T/fuzz.log" 2>&1 || rc=$?
if ((rc != 0)); then
	tail -n 60 "$T/fuzz.log"
	for f in "$T"/crash-* "$T"/leak-* "$T"/timeout-*; do
		[[ -e $f ]] && { echo "input $f:"; od -An -tx1 "$f" | head; }
	done
	echo "FAIL: fuzz_iscsi exited $rc" >&2
	exit 1
fi
tail -n 3 "$T/fuzz.log"
echo "fuzz_iscsi: 200000 runs, no crash"
