#!/usr/bin/env bash
# cairn-hostd start overhead: VM start-to-guest-marker time through the
# agent (`cairn-vm start` until CAIRN-GUEST-READY shows on the console log)
# vs the very same QEMU command line run by hand (read back from the agent's
# QEMU in /proc/PID/cmdline), several runs each, interleaved (in alternating
# order) so both see the same machine. Goal (issue 5): ratio <= 1.1.
#
# Under TCG a boot's time varies by +-20 % with the machine's load, so the
# ratio of medians needs several runs; the best-run ratio and the time to
# QEMU's pidfile (the launch path alone: API request + spawn vs a shell's
# fork+exec, without the guest's boot and its noise) are printed too.
#
#   bench/hostd.sh BUILD_DIR
#
# Knobs: BENCH_HOSTD_RUNS (default 5 each), BENCH_HOSTD_TIMEOUT (seconds to
# the marker, default 180), BENCH_HOSTD_ACCEL (auto). Output: the runs, then
#   ratio hostd/manual start-to-marker: X (goal <= 1.1)
# also appended to <build>/bench/hostd.txt.
set -euo pipefail
(($# == 1)) || { echo "usage: $0 BUILD_DIR" >&2; exit 2; }
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$ROOT/bench/lib_bench.sh"
export CAIRN_ROOT=$ROOT
. "$ROOT/tests/integration/lib_cairnd.sh"
. "$ROOT/tests/integration/lib_hostd.sh"
cairn_init "$1"
RUNS=${BENCH_HOSTD_RUNS:-5}
TIMEOUT=${BENCH_HOSTD_TIMEOUT:-180}
OUT=$(dirname "$BUILD")/bench
mkdir -p "$OUT"

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }

# wait_marker LOG: returns when the marker is in LOG (10 ms polling).
wait_marker() {
	local i
	for ((i = 0; i < TIMEOUT * 100; i++)); do
		grep -q CAIRN-GUEST-READY "$1" 2>/dev/null && return 0
		sleep 0.01
	done
	fail "no marker in $1 after ${TIMEOUT}s"
}

# wait_file F: returns when F is written (QEMU's pidfile, early in its
# start-up).
wait_file() {
	local i
	for ((i = 0; i < 10000; i++)); do
		[[ -s $1 ]] && return 0
		sleep 0.002
	done
	fail "no $1 after 20 s"
}

hostd_guest_image "$(dirname "$BUILD")/guest-test" || fail "no guest image"
hostd_start --accel "${BENCH_HOSTD_ACCEL:-auto}"
vm_def_file b1 "$T/b1.json"
vm define "$T/b1.json" >/dev/null || fail "define"
LOG=$(vm_field b1 console_log)
PIDFILE=$(dirname "$LOG")/qemu.pid

# One run through the agent; prints "TO_MARKER TO_PIDFILE" (seconds) and
# leaves the command line in $T/cmdline.
run_hostd() {
	local t0 tp t1 pid
	t0=$(now)
	vm start b1 --no-wait >/dev/null || fail "start"
	wait_file "$PIDFILE"
	tp=$(now)
	wait_marker "$LOG"
	t1=$(now)
	pid=$(vm_field b1 pid)
	tr '\0' '\n' <"/proc/$pid/cmdline" >"$T/cmdline"
	vm force-stop b1 >/dev/null || fail "force-stop"
	echo "$(secs "$t1" "$t0") $(secs "$tp" "$t0")"
}

run_manual() {
	local t0 tp t1 pid args=()
	mapfile -t args <"$T/cmdline"
	rm -f "$LOG" "$PIDFILE"
	t0=$(now)
	"${args[@]}" >"$T/manual-qemu.log" 2>&1 &
	pid=$!
	wait_file "$PIDFILE"
	tp=$(now)
	wait_marker "$LOG"
	t1=$(now)
	kill -9 "$pid"
	wait "$pid" 2>/dev/null || true
	rm -f "$PIDFILE"
	echo "$(secs "$t1" "$t0") $(secs "$tp" "$t0")"
}

# The order alternates (the first run must be the agent's: it provides the
# command line), so neither side always runs on the other's heels.
hostd_t=() manual_t=() hostd_p=() manual_p=()
for ((r = 1; r <= RUNS; r++)); do
	h= m=
	if ((r % 2)); then
		read -r h hp <<<"$(run_hostd)"
		read -r m mp <<<"$(run_manual)"
	else
		read -r m mp <<<"$(run_manual)"
		read -r h hp <<<"$(run_hostd)"
	fi
	[[ -n ${h:-} && -n ${m:-} ]] || fail "run $r failed"
	hostd_t+=("$h") manual_t+=("$m") hostd_p+=("$hp") manual_p+=("$mp")
	printf 'run %d: to marker: hostd %.2f s, manual %.2f s; to pidfile: hostd %.3f s, manual %.3f s\n' \
		"$r" "$h" "$m" "$hp" "$mp"
done
cairnd_stop

minimum() { printf '%s\n' "$@" | sort -g | head -n 1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
mh=$(median "${hostd_t[@]}") mm=$(median "${manual_t[@]}")
nh=$(minimum "${hostd_t[@]}") nm=$(minimum "${manual_t[@]}")
ph=$(median "${hostd_p[@]}") pm=$(median "${manual_p[@]}")
{
	echo "hostd start-to-marker (accel $(sed -n 's/^accel=//p' "$T/hostd.ready"), $RUNS runs each, load $(cut -d' ' -f1-3 /proc/loadavg)):"
	printf '  through cairn-hostd: median %.2f s, best %.2f s\n' "$mh" "$nh"
	printf '  QEMU by hand:        median %.2f s, best %.2f s\n' "$mm" "$nm"
	printf '  to QEMU pidfile (launch path alone, median): hostd %.3f s, by hand %.3f s\n' "$ph" "$pm"
	printf '  best-run ratio: %s\n' "$(ratio "$nh" "$nm")"
	printf 'ratio hostd/manual start-to-marker: %s (goal <= 1.1)\n' "$(ratio "$mh" "$mm")"
} | tee -a "$OUT/hostd.txt"
