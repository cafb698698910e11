#!/usr/bin/env bash
# kill -9 cairnd at random moments under a verifying workload, at least 20
# times; after each kill: fsck, restart, every flushed write must be there.
set -euo pipefail
BUILD=${1:?usage: $0 BUILD_DIR}
T=$(mktemp -d "${TMPDIR:-/tmp}/cairn-crash.XXXXXX")
trap 'rm -rf "$T"' EXIT
CAIRN_LOG=warn "$BUILD/tests/crash_kill9" "$BUILD" "$T" --kills "${CRASH_KILLS:-25}" \
	${CRASH_SEED:+--seed "$CRASH_SEED"}
