#!/usr/bin/env bash
# A short libFuzzer pass over the virtqueue walker (tests/fuzz/fuzz_vring.c),
# built by `make MODE=fuzz fuzzers` (make test does). Fixed seed and run
# count: the same inputs every time, a few seconds.
set -euo pipefail
. "$(dirname "$0")/lib_fuzz.sh"
fuzz_setup fuzz_vring
fuzz_run 200000 8192 300
