#!/usr/bin/env bash
# vhost-user-blk without QEMU: tests/tools/vhost_bad_input.c is a small
# front end that shares its own "guest memory" (a memfd) with cairnd and
# posts requests by hand: good ones (write, read back, flush, GET_ID,
# discard, write zeroes) with their data checked, bad requests (beyond the
# end, unknown type or flags: IOERR / UNSUPP), bad messages (queue index
# beyond the offered count, bad ring sizes, bad memory tables, rings outside
# memory: nacked), and hostile chains (loops, out-of-range, oversized,
# nested indirect, no status, bad heads: the queue breaks, nothing else).
# cairnd must stay up and serve the next connection, and exit 0 on SIGTERM.
. "$(dirname "$0")/lib_cairnd.sh"
cairn_init "$@"
P=$T/pool
cairn_format "$P" 1G
"$SDS" vdisk create "$P" vbad 64M || fail "vdisk create"
cairnd_start "$P" --vhost-blk "vbad=$T/vbad.sock"
timeout 120 "$TESTS_BIN/vhost_bad_input" "$T/vbad.sock" vbad $((64 << 20)) ||
	fail "vhost_bad_input"
grep -c 'broken by the guest' "$CAIRND_LOG" || true
cairnd_stop
pool_check "$P"
echo PASS
