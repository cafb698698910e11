# Helpers for integration tests that run a real cairnd. Source this file
# (it is not a test itself):
#
#   . "$(dirname "$0")/lib_cairnd.sh"
#   cairn_init "$@"                # BUILD_DIR; makes $T, cleans up on exit
#   cairn_format "$T/pool" 1G      # a pool over one sparse file disk
#   "$SDS" vdisk create "$T/pool" vd0 64M
#   cairnd_start "$T/pool" [extra cairnd args]
#   ... use "$NBD_URI/vd0" (nbd://127.0.0.1:PORT) ...
#   cairnd_stop                    # SIGTERM; fails unless it exits 0
#
# cairnd listens on port 0 (the kernel picks a free port, so parallel runs
# never collide) and reports the port through its --ready-file.

set -euo pipefail

CAIRND_READY_TIMEOUT=${CAIRND_READY_TIMEOUT:-60}  # seconds
CAIRND_STOP_TIMEOUT=${CAIRND_STOP_TIMEOUT:-30}
CAIRND_PID=
CAIRND_LOG=
CAIRND_STARTS=0

fail() {
	echo "FAIL: $*" >&2
	if [[ -n ${CAIRND_LOG:-} && -s $CAIRND_LOG ]]; then
		echo "--- last lines of $CAIRND_LOG:" >&2
		tail -n 30 "$CAIRND_LOG" >&2
	fi
	exit 1
}

step() { echo "== $*"; }

cairn_cleanup() {
	local rc=$?
	if [[ -n $CAIRND_PID ]] && kill -0 "$CAIRND_PID" 2>/dev/null; then
		kill -TERM "$CAIRND_PID" 2>/dev/null || true
		for _ in $(seq 50); do
			kill -0 "$CAIRND_PID" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$CAIRND_PID" 2>/dev/null || true
	fi
	if [[ -n ${T:-} && -d $T ]]; then
		if ((rc != 0)) && [[ -n ${CAIRN_KEEP_TMP:-} ]]; then
			echo "kept $T"
		else
			rm -rf "$T"
		fi
	fi
	exit $rc
}

# cairn_init BUILD_DIR: checks the binaries, makes the temp dir $T.
cairn_init() {
	(($# >= 1)) || { echo "usage: $0 BUILD_DIR" >&2; exit 2; }
	BUILD=$(cd "$1" && pwd) || { echo "no build dir $1" >&2; exit 2; }
	CAIRND=$BUILD/bin/cairnd
	SDS=$BUILD/bin/cairn-sds
	TESTS_BIN=$BUILD/tests
	for b in "$CAIRND" "$SDS"; do
		[[ -x $b ]] || { echo "FAIL: $b not built (make)" >&2; exit 1; }
	done
	T=$(mktemp -d "${TMPDIR:-/tmp}/cairn-$(basename "$0" .sh).XXXXXX")
	trap cairn_cleanup EXIT
	trap 'exit 130' INT TERM
}

need() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null || fail "$c not installed (make deps)"
	done
}

# cairn_format DIR SIZE [SIZE...]: one sparse file disk per SIZE.
cairn_format() {
	local dir=$1 i=0 args=()
	shift
	mkdir -p "$dir.disks"
	for s in "$@"; do
		args+=(--disk "$dir.disks/d$i:$s")
		i=$((i + 1))
	done
	"$SDS" format "$dir" "${args[@]}" || fail "cairn-sds format $dir"
}

# cairnd_start DIR [ARGS...]: starts cairnd on DIR and waits until it is
# listening. Sets CAIRND_PID, NBD_PORT, NBD_URI.
cairnd_start() {
	local dir=$1 ready i
	shift
	CAIRND_STARTS=$((CAIRND_STARTS + 1))
	ready=$T/cairnd.ready
	CAIRND_LOG=$T/cairnd.$CAIRND_STARTS.log
	rm -f "$ready"
	"$CAIRND" --data "$dir" --nbd 127.0.0.1:0 --ready-file "$ready" "$@" \
		>"$CAIRND_LOG" 2>&1 &
	CAIRND_PID=$!
	for ((i = 0; i < CAIRND_READY_TIMEOUT * 20; i++)); do
		[[ -s $ready ]] && break
		kill -0 "$CAIRND_PID" 2>/dev/null ||
			fail "cairnd exited before it was ready"
		sleep 0.05
	done
	[[ -s $ready ]] || fail "cairnd not ready after ${CAIRND_READY_TIMEOUT}s"
	NBD_PORT=$(sed -n 's/^nbd=.*:\([0-9]*\)$/\1/p' "$ready")
	[[ -n $NBD_PORT ]] || fail "no port in $ready: $(cat "$ready")"
	NBD_URI=nbd://127.0.0.1:$NBD_PORT
	# With --iscsi-config: the portal's port (empty without).
	ISCSI_PORT=$(sed -n 's/^iscsi=.*:\([0-9]*\)$/\1/p' "$ready")
}

cairnd_alive() {
	[[ -n $CAIRND_PID ]] && kill -0 "$CAIRND_PID" 2>/dev/null
}

# cairnd_stop: SIGTERM and wait; a non-zero exit (sanitizer reports
# included) fails the test.
cairnd_stop() {
	local rc=0 i
	cairnd_alive || fail "cairnd died before it was stopped"
	kill -TERM "$CAIRND_PID"
	for ((i = 0; i < CAIRND_STOP_TIMEOUT * 20; i++)); do
		kill -0 "$CAIRND_PID" 2>/dev/null || break
		sleep 0.05
	done
	cairnd_alive && fail "cairnd still running ${CAIRND_STOP_TIMEOUT}s after SIGTERM"
	wait "$CAIRND_PID" || rc=$?
	CAIRND_PID=
	((rc == 0)) || fail "cairnd exited with status $rc"
}

# json_get FILE KEY: a top-level number or string of a JSON object.
json_get() {
	python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}

# pool_used DIR: used_bytes of an offline pool.
pool_used() {
	"$SDS" pool stat "$1" --json >"$T/pool-stat.json" || fail "cairn-sds pool stat"
	json_get "$T/pool-stat.json" used_bytes
}

# pool_check DIR: deep fsck of an offline pool (reads every block).
pool_check() {
	"$SDS" pool check "$1" --deep >"$T/check.out" 2>&1 ||
		{ cat "$T/check.out" >&2; fail "cairn-sds pool check $1"; }
}

# iscsi_config FILE IQN VDISK [USER SECRET [MUSER MSECRET]]: an iSCSI
# configuration (docs/iscsi.md) with one target on 127.0.0.1, port 0, LUN 0
# = VDISK, any initiator; CHAP when USER is given, mutual with MUSER.
iscsi_config() {
	local f=$1 iqn=$2 vd=$3 chap=
	if (($# >= 5)); then
		chap=", \"chap\": {\"user\": \"$4\", \"secret\": \"$5\""
		if (($# >= 7)); then
			chap+=", \"mutual_user\": \"$6\", \"mutual_secret\": \"$7\""
		fi
		chap+="}"
	fi
	cat >"$f" <<EOF
{"portal": "127.0.0.1:0",
 "targets": [{"name": "$iqn", "luns": {"0": "$vd"}, "initiators": ["*"]$chap}]}
EOF
}
