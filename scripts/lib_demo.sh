# Helpers for the demo scripts (sourced, not run).

STOP_TIMEOUT=${STOP_TIMEOUT:-30}

# is_running PID COMM: PID is alive (not a zombie) and runs COMM.
is_running() {
	[[ $(cat "/proc/$1/comm" 2>/dev/null) == "$2" ]] || return 1
	[[ $(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) != Z ]]
}

# stop_proc PID COMM: stops PID if it runs COMM: SIGTERM, then SIGKILL after
# STOP_TIMEOUT seconds. Returns once it is gone (or a zombie, which its
# parent reaps).
stop_proc() {
	local pid=$1 comm=$2 i
	is_running "$pid" "$comm" || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
		is_running "$pid" "$comm" || return 0
		sleep 0.1
	done
	echo "demo: $comm $pid did not stop in ${STOP_TIMEOUT}s; killing it" >&2
	kill -KILL "$pid" 2>/dev/null || true
}
