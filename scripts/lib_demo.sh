# Helpers for the demo scripts (sourced, not run).

# stop_cairnd PID: stops PID if it is a cairnd: SIGTERM, then SIGKILL after
# STOP_TIMEOUT seconds (default 30). Returns once it is gone (or a zombie,
# which its parent reaps).
stop_cairnd() {
	local pid=$1 i limit=${STOP_TIMEOUT:-30}
	[[ $(cat "/proc/$pid/comm" 2>/dev/null) == cairnd ]] || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < limit * 10; i++)); do
		[[ $(cat "/proc/$pid/comm" 2>/dev/null) == cairnd ]] || return 0
		[[ $(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null) == Z ]] &&
			return 0
		sleep 0.1
	done
	echo "demo: cairnd $pid did not stop in ${limit}s; killing it" >&2
	kill -KILL "$pid" 2>/dev/null || true
}
