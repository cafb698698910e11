#!/usr/bin/env bash
# A short, fixed-seed libFuzzer pass over the iSCSI parsers
# (tests/fuzz/fuzz_iscsi.c): PDU decoder, text keys and negotiation, CHAP,
# configuration, and the SCSI core's CDB length logic. Built by
# `make MODE=fuzz fuzzers` into $CAIRN_ROOT/build/fuzz/.
set -euo pipefail
. "$(dirname "$0")/lib_fuzz.sh"
fuzz_setup fuzz_iscsi
# Seeds: one input per parser, so the run starts from valid shapes.
printf '\x00\x01\x81\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x02\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x28\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00' >"$T/seeds/seed-pdu"
printf '\x01CHAP_A=5\x00CHAP_N=user\x00CHAP_R=0x00112233445566778899aabbccddeeff\x00CHAP_I=1\x00CHAP_C=0b3q2+7w==\x00HeaderDigest=CRC32C,None\x00MaxBurstLength=262144\x00FirstBurstLength=65536\x00' >"$T/seeds/seed-keys"
printf '\x020x0123456789abcdef' >"$T/seeds/seed-chap"
printf '\x03\x8a\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x08\x00\x00' >"$T/seeds/seed-cdb"
printf '\x04{"portal": "127.0.0.1:0", "targets": [{"name": "iqn.2026-11.x:a", "luns": {"0": "v"}, "initiators": ["*"]}]}' >"$T/seeds/seed-cfg"
fuzz_run 200000 4096
