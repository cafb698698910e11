#!/usr/bin/env bash
# Cairn's test runner.
#
#   tests/run.sh BUILD_DIR [PATTERN...]
#
# Runs, one after the other:
#   unit/NAME         BUILD_DIR/tests/NAME for every tests/unit/NAME.c (test_*.c)
#   integration/NAME  tests/integration/NAME.sh BUILD_DIR, if executable
# A test runs only if its name contains one of the PATTERNs (all when none).
# Each runs from the repository root with stdin from /dev/null, under
# `timeout` (unit 120 s, integration 900 s), in its own process group; whatever
# is left of that group when the test ends is killed. Output goes to
# BUILD_DIR/test-logs/NAME.log. One line per test, then exactly one line
# "N passed, N failed". Exit status 0 only if at least one test ran and none
# failed.
set -uo pipefail

if (($# < 1)); then
	echo "usage: $0 BUILD_DIR [PATTERN...]" >&2
	exit 2
fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$1
shift
PATTERNS=("$@")
[[ $BUILD == /* ]] || BUILD=$PWD/$BUILD
cd "$ROOT" || exit 2

UNIT_TIMEOUT=${CAIRN_UNIT_TIMEOUT:-120}
INTEGRATION_TIMEOUT=${CAIRN_INTEGRATION_TIMEOUT:-900}
LOGS=$BUILD/test-logs

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# For tests that want them: where they are and what they were built into.
export CAIRN_ROOT=$ROOT CAIRN_BUILD_DIR=$BUILD

passed=0
failed=0
current=  # pid (= process group) of the running test

selected() {
	local p
	((${#PATTERNS[@]} == 0)) && return 0
	for p in "${PATTERNS[@]}"; do
		[[ $1 == *"$p"* ]] && return 0
	done
	return 1
}

now_us() {
	local t=${EPOCHREALTIME/[.,]/}
	echo $((10#$t))
}

secs() { # microseconds -> "1.2s"
	printf '%d.%ds' $(($1 / 1000000)) $(($1 % 1000000 / 100000))
}

# Kill what is left of a test's process group: daemons it forgot, or all of it
# when we are interrupted.
# Zombies do not count (kill -0 would see them).
group_alive() {
	ps -eo pgid=,stat= | awk -v pg="$1" \
		'$1 == pg && $2 !~ /^Z/ { found = 1 } END { exit !found }'
}

kill_group() {
	local pg=$1 _
	group_alive "$pg" || return 1
	kill -TERM -- "-$pg" 2>/dev/null
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		group_alive "$pg" || return 0
		sleep 0.5
	done
	kill -KILL -- "-$pg" 2>/dev/null
	return 0
}

interrupted() {
	trap - INT TERM
	if [[ -n $current ]]; then
		kill_group "$current"
		((failed++))
	fi
	echo
	echo "interrupted"
	echo "$passed passed, $failed failed"
	exit 130
}
trap interrupted INT TERM

describe_status() { # exit status, timeout -> why it failed
	local rc=$1 limit=$2
	case $rc in
	124 | 137) echo "timeout after ${limit}s" ;;
	126) echo "not executable" ;;
	127) echo "not found" ;;
	*)
		if ((rc > 128)); then
			echo "signal $(kill -l $((rc - 128)) 2>/dev/null || echo $((rc - 128)))"
		else
			echo "exit $rc"
		fi
		;;
	esac
}

fail_line() { # name, reason, log
	((failed++))
	echo "FAIL $1 ($2)"
	if [[ -s $3 ]]; then
		tail -n 40 "$3" | sed 's/^/    | /'
	fi
}

# run NAME TIMEOUT CMD...
run() {
	local name=$1 limit=$2 log rc start elapsed
	shift 2
	log=$LOGS/$name.log
	mkdir -p "$(dirname "$log")"
	[[ -t 1 ]] && printf 'RUN  %s ...' "$name"
	start=$(now_us)
	# Job control on for the launch only: the test gets its own process
	# group (so timeout and we can kill all it started) and keeps SIGINT
	# at its default rather than ignored as in a plain background job.
	set -m
	timeout --kill-after=10 "$limit" "$@" </dev/null >"$log" 2>&1 &
	current=$!
	set +m
	# (stderr off: bash would report a test killed by a signal itself)
	wait "$current" 2>/dev/null
	rc=$?
	if kill_group "$current"; then
		echo "run.sh: killed processes the test left running" >>"$log"
	fi
	current=
	elapsed=$(($(now_us) - start))
	[[ -t 1 ]] && printf '\r\033[K'
	if ((rc == 0)); then
		((passed++))
		echo "PASS $name ($(secs $elapsed))"
	else
		fail_line "$name" "$(describe_status $rc "$limit"), $(secs $elapsed)" "$log"
	fi
}

shopt -s nullglob

for src in tests/unit/test_*.c; do
	base=$(basename "$src" .c)
	name=unit/$base
	selected "$name" || continue
	bin=$BUILD/tests/$base
	if [[ ! -x $bin ]]; then
		mkdir -p "$LOGS/unit"
		echo "run.sh: $bin is missing; build it with make" >"$LOGS/$name.log"
		fail_line "$name" "not built" "$LOGS/$name.log"
		continue
	fi
	run "$name" "$UNIT_TIMEOUT" "$bin"
done

for script in tests/integration/*.sh; do
	base=$(basename "$script" .sh)
	name=integration/$base
	selected "$name" || continue
	if [[ ! -x $script ]]; then
		# Helpers to source are lib*.sh or _*.sh and stay non-executable.
		[[ $base == lib* || $base == _* ]] ||
			echo "SKIP $name (not executable: chmod +x $script)"
		continue
	fi
	run "$name" "$INTEGRATION_TIMEOUT" "$script" "$BUILD"
done

echo "$passed passed, $failed failed"
((failed == 0 && passed > 0))
