#!/usr/bin/env bash
# vhost-user-blk benchmark: the same guest (images/guest, Debian kernel,
# TCG) runs the same fio job on a disk served by
#
#   cairn  cairnd --vhost-blk over a vdisk (pool on a file, crc32c on)
#   qsd    qemu-storage-daemon --export type=vhost-user-blk over a raw file
#          (file driver, cache.direct=on, aio=io_uring)
#
# in one run, alternating the two in every round, and prints one ratio per
# workload: `ratio cairn/qsd vhost-user-blk guest WORKLOAD IOPS: X (goal >=
# 1.0)`. The guest runs under TCG, so absolute IOPS mean little; the ratio
# compares the back ends with the same emulated guest in front.
#
#   bench/vhost.sh BUILD_DIR
#
# Knobs: BENCH_RUNTIME (seconds per fio run, default 10), BENCH_ROUNDS
# (default 2; each reported figure is the median over rounds),
# BENCH_TMP (scratch parent, not tmpfs; default <build>/bench-tmp),
# BENCH_VHOST_WORKLOADS (default "randread,4k,16 randwrite,4k,16"),
# BENCH_VHOST_BOOT_SECS (how long one guest run may take, default
# BENCH_RUNTIME + 240; a guest that hangs on qsd is repeated once on a
# fresh qsd and counted in the results, one that hangs on cairn fails),
# BENCH_VHOST_BASE=OTHER_BUILD_DIR: also run the cairnd of another build
# (say, the previous commit's) as a third target "base" on its own pool
# with the same data, in the same rounds, and print `ratio cairn/base ...`
# too: a before/after figure measured under the same machine load.
# Each run also reports the serving process's CPU time per guest IO
# (utime+stime over the whole guest run / fio's IOs).
# Output: <build>/bench/vhost-results.txt and the fio JSON beside it.
set -euo pipefail

if (($# != 1)); then
	echo "usage: $0 BUILD_DIR" >&2
	exit 2
fi
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$ROOT/bench/lib_bench.sh"
BUILD=$(cd "$1" && pwd) || { echo "bench: no build dir $1" >&2; exit 2; }
SDS=$BUILD/bin/cairn-sds
CAIRND=$BUILD/bin/cairnd
RUNTIME=${BENCH_RUNTIME:-10}
ROUNDS=${BENCH_ROUNDS:-2}
WORKLOADS=(${BENCH_VHOST_WORKLOADS:-randread,4k,16 randwrite,4k,16})
OUT=$(dirname "$BUILD")/bench
GUEST=$(dirname "$BUILD")/guest
TMP_PARENT=${BENCH_TMP:-$(dirname "$BUILD")/bench-tmp}
DISK_MB=512
BOOT_SECS=${BENCH_VHOST_BOOT_SECS:-$((RUNTIME + 240))}

die() { echo "bench: $*" >&2; exit 1; }
for c in qemu-system-x86_64 qemu-storage-daemon qemu-img python3; do
	command -v "$c" >/dev/null || die "$c not installed (make deps)"
done
for b in "$SDS" "$CAIRND"; do
	[[ -x $b ]] || die "$b not built (make MODE=rel all)"
done
mkdir -p "$OUT/vhost-json" "$TMP_PARENT"
T=$(mktemp -d "$TMP_PARENT/vhost.XXXXXX")
[[ $(stat -f -c %T "$T") != tmpfs ]] || die "$T is on tmpfs (no O_DIRECT); set BENCH_TMP"

PIDS=()
QEMU_PID=
cleanup() {
	local rc=$? p
	trap - EXIT INT TERM
	[[ -n $QEMU_PID ]] && kill -KILL "$QEMU_PID" 2>/dev/null
	for p in "${PIDS[@]}"; do
		kill -TERM "$p" 2>/dev/null || true
	done
	for p in "${PIDS[@]}"; do
		for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null || true
	done
	[[ -n ${BENCH_KEEP_TMP:-} ]] || rm -rf "$T"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_sock() { # PATH PID
	local i
	for ((i = 0; i < 600; i++)); do
		[[ -S $1 ]] && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

echo "bench: guest image (with fio)"
"$ROOT/images/guest/build.sh" --fio "$GUEST" >/dev/null

# The same data behind both: DISK_MB of random bytes, written in full.
echo "bench: targets (${DISK_MB} MiB each, written in full)"
head -c $((DISK_MB << 20)) /dev/urandom >"$T/data.raw"
cp "$T/data.raw" "$T/qsd.raw"
"$SDS" format "$T/pool" --disk "$T/pool.disk:$((DISK_MB * 2))M" >/dev/null
"$SDS" vdisk create "$T/pool" vm0 "${DISK_MB}M" >/dev/null

"$CAIRND" --data "$T/pool" --nbd 127.0.0.1:0 --ready-file "$T/cairnd.ready" \
	--vhost-blk "vm0=$T/cairn.sock" >"$OUT/vhost-cairnd.log" 2>&1 &
PIDS+=($!)
wait_sock "$T/cairn.sock" "${PIDS[-1]}" || die "cairnd did not start (see $OUT/vhost-cairnd.log)"
for _ in $(seq 100); do [[ -s $T/cairnd.ready ]] && break; sleep 0.1; done
port=$(sed -n 's/^nbd=.*:\([0-9]*\)$/\1/p' "$T/cairnd.ready")
qemu-img convert -n -f raw -O raw "$T/data.raw" "nbd://127.0.0.1:$port/vm0" ||
	die "prefill of the vdisk failed"
rm -f "$T/data.raw"

BASE=${BENCH_VHOST_BASE:-}
TARGETS=(cairn qsd)
declare -A SERVER_PID
SERVER_PID[cairn]=${PIDS[-1]}
if [[ -n $BASE ]]; then
	BASE=$(cd "$BASE" && pwd) || die "no base build $BENCH_VHOST_BASE"
	[[ -x $BASE/bin/cairnd && -x $BASE/bin/cairn-sds ]] || die "$BASE: cairnd not built"
	"$BASE/bin/cairn-sds" format "$T/bpool" --disk "$T/bpool.disk:$((DISK_MB * 2))M" >/dev/null
	"$BASE/bin/cairn-sds" vdisk create "$T/bpool" vm0 "${DISK_MB}M" >/dev/null
	"$BASE/bin/cairnd" --data "$T/bpool" --nbd 127.0.0.1:0 --ready-file "$T/base.ready" \
		--vhost-blk "vm0=$T/base.sock" >"$OUT/vhost-base.log" 2>&1 &
	PIDS+=($!)
	SERVER_PID[base]=${PIDS[-1]}
	wait_sock "$T/base.sock" "${PIDS[-1]}" || die "base cairnd did not start (see $OUT/vhost-base.log)"
	for _ in $(seq 100); do [[ -s $T/base.ready ]] && break; sleep 0.1; done
	bport=$(sed -n 's/^nbd=.*:\([0-9]*\)$/\1/p' "$T/base.ready")
	qemu-img convert -n -f raw -O raw "$T/qsd.raw" "nbd://127.0.0.1:$bport/vm0" ||
		die "prefill of the base vdisk failed"
	TARGETS+=(base)
fi

# qsd is started by a function: a guest that hangs on it is retried once
# on a fresh qsd (see run).
start_qsd() {
	rm -f "$T/qsd.sock"
	qemu-storage-daemon \
		--blockdev "driver=file,node-name=file0,filename=$T/qsd.raw,cache.direct=on,aio=io_uring" \
		--blockdev driver=raw,node-name=disk0,file=file0 \
		--export "type=vhost-user-blk,id=exp0,node-name=disk0,addr.type=unix,addr.path=$T/qsd.sock,writable=on" \
		>>"$OUT/vhost-qsd.log" 2>&1 &
	PIDS+=($!)
	wait_sock "$T/qsd.sock" "${PIDS[-1]}" || die "qemu-storage-daemon did not start (see $OUT/vhost-qsd.log)"
	SERVER_PID[qsd]=${PIDS[-1]}
}
: >"$OUT/vhost-qsd.log"
start_qsd
QSD_RETRIES=0 # guests repeated on a fresh qsd

# cpu_ticks PID: utime + stime of the process (all its threads), in ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)

# run TARGET WORKLOAD ROUND: one guest boot, one fio run; sets RUN_OUT to
# "IOPS CPU": the server's CPU microseconds per IO over the whole guest run (the boot's
# own IO is a few hundred requests, the fio run 10^4-10^5).
run() { # TARGET WORKLOAD ROUND [retry]
	local target=$1 wl=$2 round=$3 retry=${4:-} log json name t0
	name=$target-${wl//,/-}-r$round
	log=$T/$name.log
	json=$OUT/vhost-json/$name.json
	qemu-system-x86_64 -accel tcg -m 512 -smp 1 \
		-object memory-backend-memfd,id=mem,size=512M,share=on \
		-numa node,memdev=mem \
		-chardev "socket,id=c0,path=$T/$target.sock" \
		-device vhost-user-blk-pci,chardev=c0 \
		-kernel "$GUEST/vmlinuz" -initrd "$GUEST/initrd-fio.img" \
		-append "console=ttyS0 quiet cairn.script=fio cairn.fio=$wl,$RUNTIME" \
		-display none -no-reboot -monitor none -serial "file:$log" \
		>"$log.qemu" 2>&1 &
	QEMU_PID=$!
	t0=$(cpu_ticks "${SERVER_PID[$target]}")
	local i
	for ((i = 0; i < BOOT_SECS * 10; i++)); do
		kill -0 "$QEMU_PID" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$QEMU_PID" 2>/dev/null; then
		kill -KILL "$QEMU_PID"
		wait "$QEMU_PID" 2>/dev/null || true
		QEMU_PID=
		# qsd 7.2 has twice left a guest waiting forever for a request
		# after several guests in a row; that is the peer's problem, so
		# its run is repeated once on a fresh qsd (and counted in the
		# results). A hang on cairn's back end is ours: fail.
		if [[ $target != qsd || $retry ]]; then
			tail -n 20 "$log" >&2
			die "$name: guest did not finish in ${BOOT_SECS}s"
		fi
		echo "bench: $name: guest hung on qsd; restarting qsd and repeating the run" >&2
		QSD_RETRIES=$((QSD_RETRIES + 1))
		kill -KILL "${SERVER_PID[qsd]}" 2>/dev/null || true
		start_qsd
		run "$target" "$wl" "$round" retry
		return
	fi
	wait "$QEMU_PID" || true
	QEMU_PID=
	grep -q CAIRN-FIO-OK "$log" || { tail -n 30 "$log" >&2; die "$name: fio failed in the guest"; }
	sed -n '/CAIRN-FIO-JSON-BEGIN/,/CAIRN-FIO-JSON-END/p' "$log" |
		sed '1d;$d' | tr -d '\r' >"$json"
	RUN_OUT=$(python3 - "$json" "$(($(cpu_ticks "${SERVER_PID[$target]}") - t0))" "$TICK" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
ios = j["read"]["total_ios"] + j["write"]["total_ios"]
cpu_us = int(sys.argv[2]) * 1e6 / int(sys.argv[3])
print("%.1f %.1f" % (j["read"]["iops"] + j["write"]["iops"], cpu_us / ios if ios else 0))
EOF
	)
}

declare -A RES CPU
for ((r = 1; r <= ROUNDS; r++)); do
	for wl in "${WORKLOADS[@]}"; do
		for target in "${TARGETS[@]}"; do
			run "$target" "$wl" "$r" # not in a subshell: it may restart qsd
			read -r iops cpu <<<"$RUN_OUT"
			echo "bench: round $r $target $wl: $iops IOPS, $cpu us CPU per IO"
			RES[$target/$wl]="${RES[$target/$wl]:-} $iops"
			CPU[$target/$wl]="${CPU[$target/$wl]:-} $cpu"
		done
	done
done

{
	echo "vhost-user-blk, guest under TCG (-smp 1, 512 MiB), fio libaio direct, ${RUNTIME}s, $ROUNDS round(s), median"
	((QSD_RETRIES == 0)) || echo "qsd: $QSD_RETRIES guest run(s) hung and were repeated on a fresh qsd"
	printf '%-22s' workload
	for t in "${TARGETS[@]}"; do printf ' %10s %10s' "$t" "$t-us/io"; done
	echo
	for wl in "${WORKLOADS[@]}"; do
		printf '%-22s' "$wl"
		for t in "${TARGETS[@]}"; do
			printf ' %10s %10s' "$(median "${RES[$t/$wl]}")" "$(median "${CPU[$t/$wl]}")"
		done
		echo
	done
	for wl in "${WORKLOADS[@]}"; do
		IFS=, read -r rw bs depth <<<"$wl"
		c=$(median "${RES[cairn/$wl]}")
		q=$(median "${RES[qsd/$wl]}")
		cc=$(median "${CPU[cairn/$wl]}")
		qc=$(median "${CPU[qsd/$wl]}")
		printf 'ratio cairn/qsd vhost-user-blk guest %s %s QD%s IOPS: %.2f (goal >= 1.0)\n' \
			"$bs" "$rw" "$depth" "$(python3 -c "print($c / $q if $q else 0)")"
		printf 'ratio cairn/qsd vhost-user-blk guest %s %s QD%s server CPU per IO: %.2f\n' \
			"$bs" "$rw" "$depth" "$(python3 -c "print($cc / $qc if $qc else 0)")"
		if [[ -n $BASE ]]; then
			b=$(median "${RES[base/$wl]}")
			printf 'ratio cairn/base vhost-user-blk guest %s %s QD%s IOPS: %.2f (base %s)\n' \
				"$bs" "$rw" "$depth" "$(python3 -c "print($c / $b if $b else 0)")" "$BASE"
		fi
	done
} | tee "$OUT/vhost-results.txt"
