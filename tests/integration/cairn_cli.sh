#!/usr/bin/env bash
# The command lines: cairn-sds subcommands and their output (text and
# JSON), sizes with suffixes, and the exit codes of cairn-sds and cairnd
# for usage errors (2) and operational errors (1).
. "$(dirname "$0")/lib_cairnd.sh"
cairn_init "$@"

# expect_exit STATUS CMD...: runs CMD, checks its status; stderr in $T/err.
expect_exit() {
	local want=$1 rc=0
	shift
	"$@" >"$T/out" 2>"$T/err" || rc=$?
	((rc == want)) || {
		cat "$T/err" >&2
		fail "'$*' exited $rc, expected $want"
	}
}

P=$T/pool
step "format"
expect_exit 2 "$SDS"
expect_exit 2 "$SDS" frobnicate
expect_exit 2 "$SDS" vdisk frobnicate "$P"
expect_exit 2 "$SDS" format "$P"
expect_exit 2 "$SDS" format "$P" --disk
expect_exit 2 "$SDS" format "$P" --bogus
expect_exit 1 "$SDS" pool stat "$T/no-such-pool"
grep -q '^cairn-sds: ' "$T/err" || fail "error without the cairn-sds: prefix"
cairn_format "$P" 1G 512M
expect_exit 0 "$SDS" pool stat "$P" --json
cp "$T/out" "$T/pool.json"
[[ $(json_get "$T/pool.json" ndisks) == 2 ]] || fail "ndisks: $(cat "$T/pool.json")"
total=$(json_get "$T/pool.json" total_bytes)
((total > 1400 * 1048576 && total <= 1536 * 1048576)) || fail "total_bytes $total"
expect_exit 0 "$SDS" pool stat "$P"
grep -q '^used_bytes' "$T/out" || fail "pool stat text: $(cat "$T/out")"
# Relative disk paths are recorded absolute: the pool opens from anywhere.
(cd "$T" && "$SDS" format relpool --disk rel.disk:64M) >/dev/null 2>&1 ||
	fail "format with a relative disk path"
(cd / && "$SDS" pool stat "$T/relpool") >/dev/null 2>&1 ||
	fail "pool with a relative disk path does not open from another directory"

step "vdisk create: sizes and sectors"
expect_exit 0 "$SDS" vdisk create "$P" a 4096
expect_exit 0 "$SDS" vdisk create "$P" b 512K
expect_exit 0 "$SDS" vdisk create "$P" c 64M --sector 4096
expect_exit 0 "$SDS" vdisk create "$P" d 2G
expect_exit 0 "$SDS" vdisk create "$P" e 1t
expect_exit 2 "$SDS" vdisk create "$P" x 12Q
expect_exit 2 "$SDS" vdisk create "$P" x 1MB
expect_exit 2 "$SDS" vdisk create "$P" x ""
expect_exit 2 "$SDS" vdisk create "$P" x 99999999999999999999
expect_exit 2 "$SDS" vdisk create "$P" x 1M --sector 1024
expect_exit 2 "$SDS" vdisk create "$P" x
expect_exit 1 "$SDS" vdisk create "$P" a 1M
grep -q '^cairn-sds: ' "$T/err" || fail "duplicate create: no message"
expect_exit 1 "$SDS" vdisk create "$P" 'bad/name' 1M

size_of() {
	"$SDS" vdisk stat "$P" "$1" --json >"$T/v.json" || fail "vdisk stat $1"
	json_get "$T/v.json" "${2:-size}"
}
[[ $(size_of a) == 4096 ]] || fail "a: 4096"
[[ $(size_of b) == 524288 ]] || fail "b: 512K"
[[ $(size_of c) == 67108864 ]] || fail "c: 64M"
[[ $(size_of c sector_size) == 4096 ]] || fail "c: sector 4096"
[[ $(size_of d sector_size) == 512 ]] || fail "d: default sector 512"
[[ $(size_of d) == 2147483648 ]] || fail "d: 2G"
[[ $(size_of e) == 1099511627776 ]] || fail "e: 1t"

step "resize, snapshot, clone, delete, list"
expect_exit 0 "$SDS" vdisk resize "$P" b 1M
[[ $(size_of b) == 1048576 ]] || fail "b resized to 1M"
expect_exit 1 "$SDS" vdisk resize "$P" nope 1M
expect_exit 0 "$SDS" vdisk snapshot "$P" c c-snap
[[ $(size_of c-snap snapshot) == True ]] || fail "c-snap is not a snapshot"
expect_exit 0 "$SDS" vdisk clone "$P" c-snap c-clone
[[ $(size_of c-clone snapshot) == False ]] || fail "c-clone is a snapshot"
[[ $(size_of c-clone parent) == c-snap ]] || fail "c-clone parent"
expect_exit 0 "$SDS" vdisk stat "$P" c-clone
grep -q '^parent: *c-snap' "$T/out" || fail "vdisk stat text: $(cat "$T/out")"
expect_exit 1 "$SDS" vdisk snapshot "$P" nope snap
expect_exit 0 "$SDS" vdisk delete "$P" e
expect_exit 1 "$SDS" vdisk delete "$P" e
expect_exit 1 "$SDS" vdisk stat "$P" e
expect_exit 0 "$SDS" vdisk list "$P" --json
python3 - "$T/out" <<'EOF' || fail "vdisk list --json: $(cat "$T/out")"
import json, sys
names = sorted(v["name"] for v in json.load(open(sys.argv[1])))
assert names == ["a", "b", "c", "c-clone", "c-snap", "d"], names
EOF
expect_exit 0 "$SDS" vdisk list "$P"
[[ $(wc -l <"$T/out") == 7 ]] || fail "vdisk list text: $(cat "$T/out")"

step "pool check"
expect_exit 0 "$SDS" pool check "$P" --json
[[ $(json_get "$T/out" errors) == 0 ]] || fail "pool check: $(cat "$T/out")"
[[ $(json_get "$T/out" vdisks) == 6 ]] || fail "pool check vdisks: $(cat "$T/out")"
expect_exit 0 "$SDS" pool check "$P" --deep
expect_exit 2 "$SDS" pool check "$P" --deeper

step "cairnd arguments"
expect_exit 2 "$CAIRND"
grep -q -- '--data' "$T/err" || fail "cairnd without --data: $(cat "$T/err")"
expect_exit 2 "$CAIRND" --data "$P" --bogus
expect_exit 2 "$CAIRND" --data "$P" --nbd nonsense
expect_exit 2 "$CAIRND" --data "$P" --nbd 127.0.0.1:99999
expect_exit 2 "$CAIRND" --data "$P" --commit-interval-ms soon
expect_exit 2 "$CAIRND" --data "$P" extra
expect_exit 1 "$CAIRND" --data "$T/no-such-pool" --nbd 127.0.0.1:0
expect_exit 0 "$CAIRND" --help

step "cairnd: port in use"
P2=$T/pool2
cairn_format "$P2" 256M
cairnd_start "$P"
expect_exit 1 "$CAIRND" --data "$P2" --nbd "127.0.0.1:$NBD_PORT"
grep -q 'listen' "$T/err" || fail "port in use: $(cat "$T/err")"
cairnd_stop
echo "PASS"
