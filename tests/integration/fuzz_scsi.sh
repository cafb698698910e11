#!/usr/bin/env bash
# A short, fixed-seed libFuzzer pass over the SCSI target core
# (tests/fuzz/fuzz_scsi.c): whole commands through scsi_cmd_submit against a
# real pool. Built by `make MODE=fuzz fuzzers` into $CAIRN_ROOT/build/fuzz/.
set -euo pipefail
. "$(dirname "$0")/lib_fuzz.sh"
fuzz_setup fuzz_scsi
# Seeds: byte 0 nexus/LUN, byte 1 data-in size / 256, 16 CDB bytes, data-out.
python3 - "$T/seeds" <<'PY'
import sys
d = sys.argv[1]
def seed(name, cap, cdb, data=b""):
    cdb = bytes(cdb) + bytes(16 - len(cdb))
    open(f"{d}/{name}", "wb").write(bytes([0, cap]) + cdb + data)
seed("read10", 16, [0x28, 0, 0, 0, 0, 8, 0, 0, 8, 0])
seed("write10", 0, [0x2a, 0, 0, 0, 0, 8, 0, 0, 1, 0], b"\xaa" * 512)
seed("inquiry83", 4, [0x12, 1, 0x83, 1, 0, 0])
pl = bytes([0, 22, 0, 16, 0, 0, 0, 0]) + (8).to_bytes(8, "big") + (16).to_bytes(4, "big") + bytes(4)
seed("unmap", 0, [0x42, 0, 0, 0, 0, 0, 0, 0, len(pl), 0], pl)
seed("prout", 0, [0x5f, 0, 0, 0, 0, 0, 0, 0, 24, 0], bytes(8) + (7).to_bytes(8, "big") + bytes(8))
ms = bytes([0, 0, 0, 0, 0x08, 0x12, 0x04]) + bytes(17)
seed("modeselect", 0, [0x15, 0x10, 0, 0, len(ms), 0], ms)
xc = (bytes([0, 0, 0, 32, 0, 0, 0, 0, 0, 0, 0, 28, 0, 0, 0, 0])
      + bytes([0xe4, 0, 0, 0, 1, 3, 0, 16]) + bytes(24)
      + bytes([2, 0, 0, 0x18, 0, 0, 0, 0, 0, 0, 0, 8]) + bytes(16))
seed("xcopy", 0, [0x83, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, len(xc)], xc)
seed("caw", 0, [0x89, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1], bytes(1024))
seed("writesame16", 0, [0x93, 0x08, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 16], bytes(512))
seed("rsoc", 32, [0xa3, 0x0c, 0x80, 0, 0, 0, 0, 0, 0x20, 0, 0, 0])
PY
fuzz_run 100000 4096
