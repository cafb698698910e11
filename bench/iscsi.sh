#!/usr/bin/env bash
# iSCSI benchmark: Cairn's target against tgt (Debian's tgtd), side by side
# in one run, on one filesystem, 4 KiB random read and write:
#
#   cairn  cairnd serving a vdisk (pool on a file), crc32c on, over
#          --iscsi-config (docs/iscsi.md)
#   tgt    tgtd -f on another port, a LUN backed by a raw file of the same
#          size on the same filesystem (backing store rdwr, O_DIRECT like
#          cairn's pool)
#
# Both files are written in full first, so reads hit real data. Each
# workload runs on both targets back to back. The load generator is
# bench/iscsi_io.c (libiscsi, async; built here with -liscsi), because
# iscsi-perf only reads and fio has no libiscsi engine. Also, if the LUN
# supports it, the offload figures on cairn: zeroing BENCH_ZERO_SIZE with
# WRITE SAME (16) against writing zero buffers with WRITE (16), and copying
# BENCH_SIZE from LUN 0 to LUN 1 with EXTENDED COPY against READ + WRITE
# through the initiator (goals >= 10x).
#
#   bench/iscsi.sh BUILD_DIR
#
# Prints "ratio cairn/tgt <workload> IOPS: X (goal >= 2.0)" lines and
# writes them to <build>/bench/iscsi-results.txt. A missed goal is
# reported, not an error.
#
# Knobs: BENCH_RUNTIME (seconds per run, 8), BENCH_ROUNDS (runs per
# target and workload, 3; the medians are compared, each round alternating
# which target runs first), BENCH_SIZE (1G), BENCH_QDS ("1 32"),
# BENCH_ZERO_SIZE (1G), BENCH_TMP (scratch parent, not tmpfs).
set -euo pipefail

if (($# != 1)); then
	echo "usage: $0 BUILD_DIR" >&2
	exit 2
fi
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$ROOT/bench/lib_bench.sh"
BUILD=$(cd "$1" && pwd) || { echo "bench: no build dir $1" >&2; exit 2; }
cd "$ROOT"
SDS=$BUILD/bin/cairn-sds
CAIRND=$BUILD/bin/cairnd
RUNTIME=${BENCH_RUNTIME:-8}
ROUNDS=${BENCH_ROUNDS:-3}
SIZE=${BENCH_SIZE:-1G}
QDS=${BENCH_QDS:-1 32}
ZERO_SIZE=${BENCH_ZERO_SIZE:-1G}
OUT=$(dirname "$BUILD")/bench
TMP_PARENT=${BENCH_TMP:-$(dirname "$BUILD")/bench-tmp}
IQN=iqn.2026-11.org.cairn:bench
TGT_IQN=iqn.2026-11.org.cairn:tgt-bench

die() {
	echo "bench: $*" >&2
	exit 1
}
for c in tgtd tgtadm cc python3; do
	command -v "$c" >/dev/null || die "$c not installed (make deps)"
done
for b in "$SDS" "$CAIRND"; do
	[[ -x $b ]] || die "$b missing (make MODE=rel)"
done
mkdir -p "$OUT" "$TMP_PARENT"
T=$(mktemp -d "$TMP_PARENT/iscsi.XXXXXX")
CAIRN_PID= TGT_PID= CTL=
cleanup() {
	local rc=$?
	[[ -n $CAIRN_PID ]] && kill -TERM "$CAIRN_PID" 2>/dev/null && wait "$CAIRN_PID" 2>/dev/null
	if [[ -n $TGT_PID ]]; then
		# tgtd -f ignores SIGTERM while it has targets.
		tgtadm -C "$CTL" --mode system --op delete >/dev/null 2>&1 || true
		for _ in $(seq 30); do kill -0 "$TGT_PID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$TGT_PID" 2>/dev/null || true
		wait "$TGT_PID" 2>/dev/null || true
	fi
	rm -rf "$T"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

IO=$T/iscsi_io
cc -O2 -Wall -o "$IO" bench/iscsi_io.c -liscsi || die "cannot build iscsi_io (libiscsi-dev)"

bytes=$(numfmt --from=iec "$SIZE")
echo "bench: preparing a $SIZE vdisk (cairn) and a $SIZE raw file (tgt) in $T"
# The pool's disk gets room for metadata beside the vdisk.
dd if=/dev/urandom of="$T/pool-disk" bs=1M count=$((bytes / 1048576 * 5 / 2)) \
	status=none
"$SDS" format "$T/pool" --disk "$T/pool-disk" >"$T/format.log" 2>&1 ||
	die "cairn-sds format: $(cat "$T/format.log")"
"$SDS" vdisk create "$T/pool" bench "$SIZE" >/dev/null || die "vdisk create"
"$SDS" vdisk create "$T/pool" copy "$SIZE" >/dev/null || die "vdisk create"
dd if=/dev/urandom of="$T/tgt.img" bs=1M count=$((bytes / 1048576)) status=none

cat >"$T/iscsi.json" <<JSON
{"portal": "127.0.0.1:0",
 "targets": [{"name": "$IQN", "luns": {"0": "bench", "1": "copy"},
              "initiators": ["*"]}]}
JSON
"$CAIRND" --data "$T/pool" --nbd 127.0.0.1:0 --iscsi-config "$T/iscsi.json" \
	--ready-file "$T/ready" >"$OUT/iscsi-cairnd.log" 2>&1 &
CAIRN_PID=$!
for _ in $(seq 600); do [[ -s $T/ready ]] && break; sleep 0.1; done
[[ -s $T/ready ]] || die "cairnd not ready: $(tail -5 "$OUT/iscsi-cairnd.log")"
CPORT=$(sed -n 's/^iscsi=.*:\([0-9]*\)$/\1/p' "$T/ready")
CAIRN_URL=iscsi://127.0.0.1:$CPORT/$IQN/0

# tgtd: its own control port and portal, so a system tgtd is untouched.
CTL=$((20000 + RANDOM % 10000))
TPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
tgtd -f -C "$CTL" --iscsi portal=127.0.0.1:$TPORT >"$OUT/iscsi-tgtd.log" 2>&1 &
TGT_PID=$!
for _ in $(seq 100); do
	tgtadm -C "$CTL" --lld iscsi --mode target --op show >/dev/null 2>&1 && break
	sleep 0.1
done
tgtadm -C "$CTL" --lld iscsi --mode target --op new --tid 1 -T "$TGT_IQN" ||
	die "tgtadm target"
# O_DIRECT, as cairn's pool does: both serve from the disk, not the page
# cache.
tgtadm -C "$CTL" --lld iscsi --mode logicalunit --op new --tid 1 --lun 1 \
	-b "$T/tgt.img" --bsoflags direct || die "tgtadm lun"
tgtadm -C "$CTL" --lld iscsi --mode target --op bind --tid 1 -I ALL ||
	die "tgtadm bind"
TGT_URL=iscsi://127.0.0.1:$TPORT/$TGT_IQN/1

# Fill the vdisk in full (reads must hit data, as on tgt's file).
"$IO" "$CAIRN_URL" fill "$bytes" >/dev/null || die "cairn prefill"

results=$OUT/iscsi-results.txt
{
	echo "# bench/iscsi.sh $(date -u +%FT%TZ) $(nproc) cpus, runtime ${RUNTIME}s, $ROUNDS round(s), median, $SIZE"
	printf '%-16s %10s %10s %8s\n' workload cairn tgt ratio
} >"$results"
lines=()
for qd in $QDS; do
	for rw in randread randwrite; do
		# Rounds alternate which target goes first, so a drift in the
		# machine's load does not favour one; the medians are compared.
		cs=() ts=()
		for ((r = 1; r <= ROUNDS; r++)); do
			if ((r % 2)); then
				cs+=("$("$IO" "$CAIRN_URL" $rw "$qd" "$RUNTIME" | awk '{print $2}')")
				ts+=("$("$IO" "$TGT_URL" $rw "$qd" "$RUNTIME" | awk '{print $2}')")
			else
				ts+=("$("$IO" "$TGT_URL" $rw "$qd" "$RUNTIME" | awk '{print $2}')")
				cs+=("$("$IO" "$CAIRN_URL" $rw "$qd" "$RUNTIME" | awk '{print $2}')")
			fi
		done
		c=$(median "${cs[@]}") t=$(median "${ts[@]}")
		r=$(python3 -c "print(f'{$c / max($t, 1):.2f}')")
		range=
		((ROUNDS > 1)) && range=" (cairn ${cs[*]}; tgt ${ts[*]})"
		printf '%-16s %10s %10s %8s%s\n' "$rw-qd$qd" "$c" "$t" "$r" "$range" | tee -a "$results"
		lines+=("ratio cairn/tgt $rw-qd$qd IOPS: $r (goal >= 2.0)")
	done
done

zbytes=$(numfmt --from=iec "$ZERO_SIZE")
((zbytes > bytes)) && zbytes=$bytes
ws=$("$IO" "$CAIRN_URL" writesame "$zbytes")
wz=$("$IO" "$CAIRN_URL" writezero "$zbytes")
if [[ $ws == unsupported* ]]; then
	lines+=("WRITE SAME: not supported by the LUN")
else
	a=$(awk '{print $2}' <<<"$ws") b=$(awk '{print $2}' <<<"$wz")
	r=$(python3 -c "print(f'{$b / max($a, 1e-6):.0f}')")
	echo "zeroing $ZERO_SIZE: WRITE SAME ${a}s, WRITE zeroes ${b}s" | tee -a "$results"
	lines+=("ratio write-zeroes/write-same time ($ZERO_SIZE): $r (goal >= 10)")
fi
xc=$("$IO" "$CAIRN_URL" xcopy "$bytes")
rw=$("$IO" "$CAIRN_URL" copyrw "$bytes")
if [[ $xc == unsupported* ]]; then
	lines+=("EXTENDED COPY: not supported by the LUN")
else
	a=$(awk '{print $2}' <<<"$xc") b=$(awk '{print $2}' <<<"$rw")
	r=$(python3 -c "print(f'{$b / max($a, 1e-6):.0f}')")
	echo "copy $SIZE LUN 0 -> 1: EXTENDED COPY ${a}s, READ+WRITE ${b}s" | tee -a "$results"
	lines+=("ratio read+write/xcopy time ($SIZE): $r (goal >= 10)")
fi
printf '%s\n' "${lines[@]}" | tee -a "$results"
