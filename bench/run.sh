#!/usr/bin/env bash
# Cairn's storage benchmark: 4 KiB random read and random write at QD1 and
# QD32, measured in one run, on one filesystem, against four targets:
#
#   raw-io_uring  fio --ioengine=io_uring --direct=1 on a raw 1 GiB file
#                 (the ceiling: no network hop, no server)
#   qsd           qemu-storage-daemon exporting a raw 1 GiB file over NBD
#                 (file driver, aio=io_uring, cache.direct=on); fio's nbd engine
#   cairn         cairnd serving a 1 GiB vdisk (pool on a 1.5 GiB file),
#                 crc32c on; fio's nbd engine
#   cairn-nocrc   the same with cairnd --no-checksum (its own pool, prefilled
#                 the same way)
#
# Every target is written in full first, so reads hit real data (and the
# pool's disk file is written in full before format, like the raw files).
# All targets are set up first and stay up; then each workload runs on every
# target back to back, so the runs a ratio compares are minutes apart at
# most, not the whole run. The script prints a table and the ratios the goals
# are stated in (issue 2): cairn/qsd IOPS at QD32 >= 1.0, cairn/qsd QD1 write
# latency <= 1.3, crc-on/crc-off IOPS >= 0.95. A missed goal is reported, not
# an error; a tool that fails is an error.
#
#   bench/run.sh BUILD_DIR            (make bench runs it with build/rel)
#
# Output: <build>/bench/results.txt (table, ratios, environment), the fio JSON
# in <build>/bench/json/TARGET-WORKLOAD-rN.json, daemon logs beside them;
# <build> is BUILD_DIR's parent (build/ for build/rel).
#
# Knobs (environment):
#   BENCH_RUNTIME   seconds measured per run (default 8)
#   BENCH_RAMP      seconds of ramp before each run (default 2)
#   BENCH_ROUNDS    rounds of all runs; the table shows each run's median
#                   (default 1; about 3 minutes per round)
#   BENCH_SIZE      size of every target (default 1G)
#   BENCH_TARGETS   a subset of "raw qsd cairn cairn-nocrc"
#   BENCH_TMP       parent of the scratch dir (default <build>/bench-tmp; not
#                   tmpfs: O_DIRECT)
#   BENCH_POOL_PREWRITE=0  format the pool on a fresh fallocated file instead
#   BENCH_KEEP_TMP=1       keep the scratch dir
set -euo pipefail

if (($# != 1)); then
	echo "usage: $0 BUILD_DIR" >&2
	exit 2
fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$(cd "$1" && pwd) || { echo "bench: no build dir $1" >&2; exit 2; }
cd "$ROOT"

SDS=$BUILD/bin/cairn-sds
CAIRND=$BUILD/bin/cairnd
RUNTIME=${BENCH_RUNTIME:-8}
RAMP=${BENCH_RAMP:-2}
ROUNDS=${BENCH_ROUNDS:-1}
SIZE=${BENCH_SIZE:-1G}
TARGETS=${BENCH_TARGETS:-raw qsd cairn cairn-nocrc}
POOL_PREWRITE=${BENCH_POOL_PREWRITE:-1}
OUT=$(dirname "$BUILD")/bench
TMP_PARENT=${BENCH_TMP:-$(dirname "$BUILD")/bench-tmp}
HOST=127.0.0.1
READY_TIMEOUT=60
STOP_TIMEOUT=30

# name rw iodepth
WORKLOADS=(
	"randread-qd1 randread 1"
	"randread-qd32 randread 32"
	"randwrite-qd1 randwrite 1"
	"randwrite-qd32 randwrite 32"
)

die() {
	echo "bench: $*" >&2
	exit 1
}

for c in fio qemu-storage-daemon nbdinfo python3 fallocate; do
	command -v "$c" >/dev/null || die "$c not installed (make deps)"
done
for b in "$SDS" "$CAIRND"; do
	[[ -x $b ]] || die "$b not built (make MODE=rel all)"
done
fio --enghelp 2>/dev/null | grep -qw io_uring || die "fio has no io_uring engine"
fio --enghelp 2>/dev/null | grep -qw nbd || die "fio has no nbd engine"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "BENCH_ROUNDS must be a positive integer"

size_bytes() {
	python3 - "$1" <<'EOF'
import sys
s = sys.argv[1].strip().upper()
m = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
print(int(s[:-1]) * m[s[-1]] if s[-1] in m else int(s))
EOF
}
SIZE_B=$(size_bytes "$SIZE")
# The pool holds the vdisk plus 50% slack for redirect-on-write.
POOL_B=$((SIZE_B * 3 / 2 / 1048576 * 1048576))

mkdir -p "$TMP_PARENT"
T=$(mktemp -d "$TMP_PARENT/run.XXXXXX")
T=$(cd "$T" && pwd)
[[ $T != *[[:space:]]* ]] || die "scratch dir $T has whitespace"
fstype=$(stat -f -c %T "$T")
[[ $fstype != tmpfs ]] || die "$T is on tmpfs (no O_DIRECT); set BENCH_TMP"

DAEMON_PIDS=() # every daemon this script started and has not stopped
FIO_PID=       # the fio running now, if any
declare -A FIO_ARGS DAEMON_OF

# stop_pid PID NAME: SIGTERM, wait, SIGKILL after STOP_TIMEOUT. Returns the
# daemon's exit status (0 when it stopped cleanly).
stop_pid() {
	local pid=$1 name=$2 i rc=0 st
	if kill -TERM "$pid" 2>/dev/null; then
		for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
			# A zombie child still answers kill -0: check its state.
			st=$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null || echo X)
			[[ $st == [ZX] ]] && break
			sleep 0.1
		done
		if [[ $st != [ZX] ]]; then
			echo "bench: $name ($pid) did not stop in ${STOP_TIMEOUT}s; killing it" >&2
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	wait "$pid" 2>/dev/null || rc=$?
	return $rc
}

cleanup() {
	local rc=$? pid
	trap - EXIT INT TERM
	if [[ -n $FIO_PID ]]; then
		kill -TERM "$FIO_PID" 2>/dev/null || true
		wait "$FIO_PID" 2>/dev/null || true
	fi
	for pid in "${DAEMON_PIDS[@]}"; do
		stop_pid "$pid" daemon || true
	done
	if [[ -n ${BENCH_KEEP_TMP:-} ]]; then
		echo "bench: kept $T"
	else
		rm -rf "$T"
		rmdir "$TMP_PARENT" 2>/dev/null || true
	fi
	exit $rc
}
trap cleanup EXIT
trap 'echo; echo "bench: interrupted" >&2; exit 130' INT
trap 'echo; echo "bench: terminated" >&2; exit 143' TERM

forget_pid() {
	local pid=$1 p keep=()
	for p in "${DAEMON_PIDS[@]}"; do
		[[ $p == "$pid" ]] || keep+=("$p")
	done
	DAEMON_PIDS=("${keep[@]+"${keep[@]}"}")
}

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# run_fio LOGNAME ARGS...: fio in the background (so a signal can stop it),
# its stdout and stderr appended to the log.
run_fio() {
	local what=$1 rc=0
	shift
	fio "$@" >>"$LOG" 2>&1 &
	FIO_PID=$!
	wait "$FIO_PID" || rc=$?
	FIO_PID=
	((rc == 0)) || die "fio $what failed (exit $rc; see $LOG)"
}

# proc_cpu_ticks PID: user + system clock ticks of the process so far.
proc_cpu_ticks() {
	# Fields after the ")" of the command name: utime and stime are 12, 13.
	sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

# Storage processes on this machine that are not ours: they skew the figures.
foreign_load() {
	local pid comm ours p
	for pid in $(ps -e -o pid=,comm= |
		awk '$2 ~ /^(fio|cairnd|qemu-nbd|qemu-storage|nbdkit|qemu-system)/ { print $1 }'); do
		ours=0
		for p in "${DAEMON_PIDS[@]}"; do
			[[ $p == "$pid" ]] && ours=1
		done
		((ours)) && continue
		comm=$(cat "/proc/$pid/comm" 2>/dev/null) || continue
		printf '%s(%s) ' "$comm" "$pid"
	done
}

# Only this script's own outputs: the directory also holds the other
# benchmarks' results and bench/all.sh's transcript of this very run.
rm -rf "$OUT/json"
rm -f "$OUT/results.txt" "$OUT/qsd.log" "$OUT"/cairn*.log "$OUT"/*-pool-stat.json
mkdir -p "$OUT/json"
LOG=$OUT/bench.log
CONTENTION=$OUT/contention.txt
: >"$LOG"
: >"$CONTENTION"

# prefill_file PATH [BYTES]: preallocate and write every byte once (1 MiB
# O_DIRECT), so no extent of the file is left "unwritten" in the filesystem.
prefill_file() {
	local f=$1 bytes=${2:-$SIZE_B}
	fallocate -l "$bytes" "$f"
	run_fio "prefill $f" --name=prefill --filename="$f" --ioengine=io_uring \
		--direct=1 --rw=write --bs=1M --iodepth=8 --size="$bytes"
}

setup_raw() {
	local f=$T/raw.img
	echo "bench: raw-io_uring: writing $f"
	prefill_file "$f"
	FIO_ARGS[raw-io_uring]="--filename=$f --ioengine=io_uring --direct=1"
}

setup_qsd() {
	local f=$T/qsd.img port pid i
	echo "bench: qsd: writing $f"
	prefill_file "$f"
	port=$(free_port)
	qemu-storage-daemon \
		--blockdev driver=file,node-name=file0,filename="$f",aio=io_uring,cache.direct=on \
		--nbd-server addr.type=inet,addr.host=$HOST,addr.port="$port" \
		--export type=nbd,id=exp0,node-name=file0,name=qsd,writable=on \
		>>"$OUT/qsd.log" 2>&1 &
	pid=$!
	DAEMON_PIDS+=("$pid")
	DAEMON_OF[qsd]=$pid
	for ((i = 0; ; i++)); do
		nbdinfo --size "nbd://$HOST:$port/qsd" >/dev/null 2>&1 && break
		kill -0 "$pid" 2>/dev/null || die "qemu-storage-daemon exited (see $OUT/qsd.log)"
		((i < READY_TIMEOUT * 10)) || die "qemu-storage-daemon not ready in ${READY_TIMEOUT}s"
		sleep 0.1
	done
	FIO_ARGS[qsd]="--ioengine=nbd --uri=nbd://$HOST:$port/qsd"
}

# setup_cairn TARGET [cairnd args]
setup_cairn() {
	local target=$1 dir=$T/$1 ready pid i uri
	shift
	mkdir -p "$dir"
	ready=$dir/ready
	if [[ $POOL_PREWRITE == 1 ]]; then
		# Like the raw and qsd files (and like a block device), the pool
		# disk is written in full before format: otherwise the first
		# write to each block of the file converts an unwritten extent
		# in the filesystem, which the peers never pay for.
		echo "bench: $target: writing the pool disk file"
		prefill_file "$dir/disk0.img" "$POOL_B"
		"$SDS" format "$dir/pool" --disk "$dir/disk0.img" >>"$LOG" 2>&1 ||
			die "cairn-sds format failed (see $LOG)"
	else
		"$SDS" format "$dir/pool" --disk "$dir/disk0.img:$POOL_B" >>"$LOG" 2>&1 ||
			die "cairn-sds format failed (see $LOG)"
	fi
	"$SDS" vdisk create "$dir/pool" bench "$SIZE_B" >>"$LOG" 2>&1 ||
		die "cairn-sds vdisk create failed (see $LOG)"
	CAIRN_LOG=${CAIRN_LOG:-warn} "$CAIRND" --data "$dir/pool" --nbd "$HOST:0" \
		--ready-file "$ready" "$@" >>"$OUT/$target.log" 2>&1 &
	pid=$!
	DAEMON_PIDS+=("$pid")
	DAEMON_OF[$target]=$pid
	for ((i = 0; ; i++)); do
		[[ -s $ready ]] && grep -q '^nbd=' "$ready" && break
		kill -0 "$pid" 2>/dev/null || die "cairnd exited (see $OUT/$target.log)"
		((i < READY_TIMEOUT * 10)) || die "cairnd not ready in ${READY_TIMEOUT}s"
		sleep 0.1
	done
	uri="nbd://$(sed -n 's/^nbd=//p' "$ready")/bench"
	echo "bench: $target: writing the vdisk over NBD ($uri)"
	run_fio "prefill $uri" --name=prefill --ioengine=nbd --uri="$uri" \
		--rw=write --bs=1M --iodepth=8 --size="$SIZE_B"
	FIO_ARGS[$target]="--ioengine=nbd --uri=$uri"
}

# measure TARGET WORKLOAD RW QD ROUND: one fio run, JSON kept, summary shown.
measure() {
	local target=$1 name=$2 rw=$3 qd=$4 round=$5 json fl
	json=$OUT/json/$target-$name-r$round.json
	fl=$(foreign_load)
	[[ -z $fl ]] || echo "$target $name r$round: $fl" >>"$CONTENTION"
	printf 'bench: %-12s %-15s ' "$target" "$name"
	local pid=${DAEMON_OF[$target]:-} cpu0=0 t0 t1
	[[ -z $pid ]] || cpu0=$(proc_cpu_ticks "$pid")
	t0=$(date +%s.%N)
	# shellcheck disable=SC2086 # FIO_ARGS holds whitespace-free words
	run_fio "$target $name" --name="$target-$name" ${FIO_ARGS[$target]} \
		--rw="$rw" --bs=4k --iodepth="$qd" --numjobs=1 --time_based \
		--runtime="$RUNTIME" --ramp_time="$RAMP" --size="$SIZE_B" \
		--randrepeat=0 --norandommap --random_generator=tausworthe64 \
		--output-format=json --output="$json"
	t1=$(date +%s.%N)
	# The server's CPU time (all its threads, user + system) over the
	# whole run, ramp included, for the CPU cost per IO.
	[[ -z $pid ]] ||
		echo "$(($(proc_cpu_ticks "$pid") - cpu0)) $(getconf CLK_TCK) $t0 $t1" \
			>"${json%.json}.cpu"
	python3 "$ROOT/bench/report.py" --one "$json" "$rw" ||
		die "fio $target $name: bad result in $json"
}

start=$(date +%s)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
fl=$(foreign_load)
echo "bench: scratch dir $T ($fstype); ${RUNTIME}s runs after ${RAMP}s ramp; $ROUNDS round(s); size $SIZE"
[[ -z $fl ]] || echo "bench: warning: other storage processes are running: $fl"

names=()
for t in $TARGETS; do
	case $t in
	raw) setup_raw; names+=(raw-io_uring) ;;
	qsd) setup_qsd; names+=(qsd) ;;
	cairn) setup_cairn cairn; names+=(cairn) ;;
	cairn-nocrc) setup_cairn cairn-nocrc --no-checksum; names+=(cairn-nocrc) ;;
	*) die "unknown target $t" ;;
	esac
done

for ((round = 1; round <= ROUNDS; round++)); do
	((ROUNDS == 1)) || echo "bench: round $round of $ROUNDS"
	order=("${names[@]}")
	if ((round % 2 == 0)); then # alternate the order between rounds
		order=()
		for ((i = ${#names[@]} - 1; i >= 0; i--)); do
			order+=("${names[i]}")
		done
	fi
	for w in "${WORKLOADS[@]}"; do
		read -r name rw qd <<<"$w"
		for t in "${order[@]}"; do
			measure "$t" "$name" "$rw" "$qd" "$round"
		done
	done
done

# Stop the daemons: each must exit cleanly.
for t in "${names[@]}"; do
	[[ -n ${DAEMON_OF[$t]:-} ]] || continue
	stop_pid "${DAEMON_OF[$t]}" "$t" || die "$t daemon exited with an error (see $OUT/)"
	forget_pid "${DAEMON_OF[$t]}"
	if [[ $t == cairn* ]]; then
		"$SDS" pool stat "$T/$t/pool" --json >"$OUT/$t-pool-stat.json" 2>>"$LOG" ||
			die "cairn-sds pool stat $t failed (see $LOG)"
	fi
done

{
	echo "# Cairn bench, $(date -u '+%Y-%m-%d %H:%M:%SZ')"
	echo "# git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ' (dirty)');" \
		"$(nproc) CPUs; kernel $(uname -r); $(fio --version);" \
		"$(qemu-storage-daemon --version | head -n 1 | sed 's/ (.*//'); fs $fstype"
	echo "# cairnd built $(date -u -r "$CAIRND" '+%Y-%m-%d %H:%M:%SZ') (the git line above is the tree now)"
	echo "# 4 KiB blocks, one job, ${RUNTIME}s measured after ${RAMP}s ramp, $ROUNDS round(s)" \
		"(median shown), $SIZE targets written in full first"
	echo "# load average at start $load_start, at end $(cut -d' ' -f1-3 /proc/loadavg)"
	if [[ -s $CONTENTION ]]; then
		echo "# WARNING: $(wc -l <"$CONTENTION") run(s) started while other storage" \
			"processes were running (see contention.txt): figures are skewed"
	fi
	python3 "$ROOT/bench/report.py" --table "$OUT/json" "$ROUNDS" "${names[@]}"
} >"$OUT/results.txt" || die "report failed"

echo
cat "$OUT/results.txt"
echo
echo "bench: done in $(($(date +%s) - start))s; results in $OUT/results.txt, fio JSON in $OUT/json/"
