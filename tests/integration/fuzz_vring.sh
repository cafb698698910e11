#!/usr/bin/env bash
# A short libFuzzer pass over the virtqueue walker (tests/fuzz/fuzz_vring.c),
# built by `make MODE=fuzz fuzzers` (make test does). Fixed seed and run
# count: the same inputs every time, a few seconds.
set -euo pipefail
ROOT=${CAIRN_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
# `make MODE=fuzz fuzzers` writes $(BUILD)/fuzz/NAME with BUILD=build/fuzz.
FUZZ=$ROOT/build/fuzz/fuzz_vring
[[ -x $FUZZ ]] || FUZZ=$ROOT/build/fuzz/fuzz/fuzz_vring
[[ -x $FUZZ ]] || { echo "FAIL: $FUZZ not built (make MODE=fuzz fuzzers)" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/cairn-fuzz-vring.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
timeout 300 "$FUZZ" -runs=200000 -seed=1 -max_len=8192 2>&1 | tail -n 5
echo PASS
