#!/usr/bin/env bash
# The linearizability checker (tests/tools/lincheck.c) accepts known
# linearizable histories (hand-written and random ones built to be) and
# rejects known non-linearizable ones, before any cluster test trusts it.
. "$(dirname "$0")/lib_cairnd.sh"
cairn_init "$@"
[[ -x $TESTS_BIN/lincheck ]] || fail "lincheck not built"
step "lincheck selftest"
"$TESTS_BIN/lincheck" selftest || fail "the checker gave a wrong verdict"
echo "ok"
