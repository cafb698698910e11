# Helpers for tests that run a cluster of real cairnd processes, each in its
# own network namespace. Source after lib_cairnd.sh (not a test itself):
#
#   . "$(dirname "$0")/lib_cairnd.sh"
#   . "$(dirname "$0")/lib_cluster.sh"
#   cairn_init "$@"
#   cl_init 5                  # namespaces, the switch, cleanup on exit
#   cl_form                    # node 1 creates, 2..5 join with tokens
#   cl_cli 3 vdisk list        # the cairn CLI against node 3
#   cl_partition "1 2"         # nodes 1 and 2 on their own segment
#   cl_heal                    # everyone back on one segment
#   cl_kill 4; cl_start 4      # kill -9, then resume from its state
#
# The network: a hub namespace holds bridges; node I lives in namespace
# ${CL_NS}nI with eth0 = $CL_NET.I/24, whose veth peer vI is a port of a
# bridge in the hub. All nodes start on br0. A partition moves the ports of
# a group of nodes to another bridge: they still reach each other but none
# of the rest, in both directions, and packets are dropped (not refused),
# as in a real partition. No address is reachable from the root namespace
# and nothing is routed out, so fixed ports are safe (each node has its own
# stack) and runs never collide: namespace names carry this shell's pid.
#
# Clients: the API certificates name "localhost" (docs/api.md) and libcurl
# resolves localhost to the loopback itself, so the cairn CLI of node I runs
# inside node I's namespace, where a small relay forwards 127.0.0.1:8443 to
# the node's API on $CL_NET.I:8443. A node therefore stays reachable by its
# own clients when it is partitioned, as an operator on that side would be.

CL_NET=10.77.0		    # inside the test's own namespaces only
CL_RAFT_PORT=7000
CL_API_PORT=8443
CL_NS=cz$$
CL_N=0
CL_PW=cairn-partition-pw-$$-$RANDOM
CL_READY_TIMEOUT=${CL_READY_TIMEOUT:-120}   # seconds: ASan + a shared machine
declare -a CL_PID=() CL_RELAY=() CL_SEG=()
declare -a CL_BG=()	# other processes to kill at exit (lincheck runs)

cl_ns() { echo "${CL_NS}n$1"; }
cl_hub() { echo "${CL_NS}h"; }

cl_cleanup() {
	local rc=$? i p
	set +e # a kill of a process already gone must not end the cleanup
	for p in "${CL_BG[@]}"; do
		[[ -n $p ]] && kill -9 "$p" 2>/dev/null
	done
	for ((i = 1; i <= CL_N; i++)); do
		[[ -n ${CL_PID[$i]:-} ]] && kill -TERM "${CL_PID[$i]}" 2>/dev/null
	done
	for ((i = 1; i <= CL_N; i++)); do
		[[ -n ${CL_PID[$i]:-} ]] || continue
		for _ in $(seq 50); do
			kill -0 "${CL_PID[$i]}" 2>/dev/null || break
			sleep 0.1
		done
		kill -9 "${CL_PID[$i]}" 2>/dev/null
	done
	for ((i = 1; i <= CL_N; i++)); do
		[[ -n ${CL_RELAY[$i]:-} ]] && kill -9 "${CL_RELAY[$i]}" 2>/dev/null
	done
	wait 2>/dev/null
	# A namespace cannot go while a process that entered it with `ip netns
	# exec` (own mount namespace) is alive: all are gone by now.
	for ((i = 1; i <= CL_N; i++)); do
		ip netns del "$(cl_ns "$i")" 2>/dev/null
	done
	ip netns del "$(cl_hub)" 2>/dev/null
	(exit $rc)
	cairn_cleanup
}

# The relay of each node namespace (see above): 127.0.0.1:PORT -> IP:PORT.
cl_write_relay() {
	cat >"$T/relay.py" <<'EOF'
import socket, sys, threading
port, host, ready = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", port))
ls.listen(64)
open(ready, "w").write("ready\n")
def pump(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
def serve(c):
    try:
        u = socket.create_connection((host, port), timeout=5)
        u.settimeout(None)
    except OSError:
        c.close()
        return
    t = threading.Thread(target=pump, args=(c, u), daemon=True)
    t.start()
    pump(u, c)
    t.join()
    c.close()
    u.close()
while True:
    c, _ = ls.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
EOF
}

# cl_init N: N node namespaces on one switch, a relay in each.
cl_init() {
	local i ns hub
	CL_N=$1
	need ip python3
	# The interpreter itself (not a shim that forks it), so that its pid
	# is the relay's and kill reaches it.
	CL_PY=$(python3 -c 'import sys; print(sys.executable)')
	[[ $(id -u) == 0 ]] || fail "network namespaces need root"
	CAIRN=$BUILD/bin/cairn
	LINCHECK=$TESTS_BIN/lincheck
	[[ -x $CAIRN ]] || fail "cairn CLI not built"
	trap cl_cleanup EXIT
	hub=$(cl_hub)
	ip netns add "$hub" || fail "ip netns add (is this a root shell?)"
	ip -n "$hub" link add br0 type bridge && ip -n "$hub" link set br0 up ||
		fail "bridge in $hub"
	cl_write_relay
	for ((i = 1; i <= CL_N; i++)); do
		ns=$(cl_ns "$i")
		ip netns add "$ns" || fail "ip netns add $ns"
		ip -n "$hub" link add "v$i" type veth peer name eth0 netns "$ns" &&
			ip -n "$hub" link set "v$i" master br0 up &&
			ip -n "$ns" addr add "$CL_NET.$i/24" dev eth0 &&
			ip -n "$ns" link set eth0 up &&
			ip -n "$ns" link set lo up || fail "network of node $i"
		CL_SEG[$i]=0
		rm -f "$T/relay$i.ready"
		ip netns exec "$ns" "$CL_PY" "$T/relay.py" "$CL_API_PORT" \
			"$CL_NET.$i" "$T/relay$i.ready" 2>>"$T/relay$i.log" &
		CL_RELAY[$i]=$!
	done
	for ((i = 1; i <= CL_N; i++)); do
		for _ in $(seq 100); do
			[[ -s $T/relay$i.ready ]] && break
			sleep 0.05
		done
		[[ -s $T/relay$i.ready ]] || fail "relay $i: $(cat "$T/relay$i.log")"
	done
	printf '%s\n' "$CL_PW" >"$T/pw"
}

# cl_start I [ARGS...]: cairnd of node I in its namespace, with its own
# pool and state directory; waits for its ready file. Without ARGS it
# resumes from its state directory.
cl_start() {
	local i=$1 ns
	shift
	ns=$(cl_ns "$i")
	[[ -d $T/p$i ]] || cairn_format "$T/p$i" 64M >/dev/null
	rm -f "$T/r$i"
	echo "--- start $(date +%T.%N) $*" >>"$T/n$i.log"
	ip netns exec "$ns" "$CAIRND" --data "$T/p$i" --nbd 127.0.0.1:0 \
		--ready-file "$T/r$i" --state "$T/s$i" "$@" >>"$T/n$i.log" 2>&1 &
	CL_PID[$i]=$!
	for _ in $(seq $((CL_READY_TIMEOUT * 10))); do
		[[ -s $T/r$i ]] && return 0
		kill -0 "${CL_PID[$i]}" 2>/dev/null || break
		sleep 0.1
	done
	CL_PID[$i]=
	return 1
}

cl_node_args() { # I: name and addresses of node I
	echo --name "n$1" --raft "$CL_NET.$1:$CL_RAFT_PORT" \
		--api "$CL_NET.$1:$CL_API_PORT" --domain "$1"
}

# cl_kill I: kill -9 node I.
cl_kill() {
	[[ -n ${CL_PID[$1]:-} ]] || fail "node $1 is not running"
	kill -9 "${CL_PID[$1]}"
	wait "${CL_PID[$1]}" 2>/dev/null || true
	CL_PID[$1]=
}

# cl_stop I: SIGTERM; fails unless it exits 0 (sanitizer reports included).
cl_stop() {
	local rc=0
	[[ -n ${CL_PID[$1]:-} ]] || fail "node $1 is not running"
	kill -TERM "${CL_PID[$1]}"
	for _ in $(seq $((CAIRND_STOP_TIMEOUT * 10))); do
		kill -0 "${CL_PID[$1]}" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "${CL_PID[$1]}" 2>/dev/null &&
		fail "node $1 still running ${CAIRND_STOP_TIMEOUT}s after SIGTERM"
	wait "${CL_PID[$1]}" || rc=$?
	CL_PID[$1]=
	((rc == 0)) || fail "node $1 exited with status $rc: $(tail -5 "$T/n$1.log")"
}

# cl_cli I ARGS...: the cairn CLI against node I, from its namespace.
cl_cli() {
	local i=$1
	shift
	ip netns exec "$(cl_ns "$i")" env API_URL="https://localhost:$CL_API_PORT" \
		CA_CERT="$T/s1/pki/ca.crt" ADMIN_PASSWORD_FILE="${CL_PWFILE:-$T/pw}" \
		"$CAIRN" "$@"
}

# cl_password I: make the cluster's admin password work on node I. Today
# every node has its own admin account (docs/api.md), generated with the
# node and to be changed there; once the account lives in the replicated
# map, a joining node already knows it. So: log in with the cluster
# password first, and only where that fails change the node's generated
# one. Retries while a new node is still catching up.
cl_password() {
	local i=$1 init=$T/s$1/admin-password err
	for _ in $(seq 60); do
		cl_cli "$i" cluster status >/dev/null 2>"$T/pw-err" && return 0
		err=$(cat "$T/pw-err")
		if [[ -s $init && $err == *"HTTP 401"* ]]; then
			cp "$init" "$T/pw-init$i"
			printf '%s\n%s\n' "$CL_PW" "$CL_PW" |
				CL_PWFILE=$T/pw-init$i cl_cli "$i" password change \
					>/dev/null 2>>"$T/pw-err" &&
				continue
		fi
		sleep 0.5
	done
	fail "admin password on node $i: $err"
}

# cl_status I: node I's `cluster status` as JSON (through the leader).
cl_status() {
	cl_cli "$1" --json cluster status 2>/dev/null
}

# cl_field I EXPR: a Python expression over the status s ("s['leader']").
cl_field() {
	local j
	j=$(cl_status "$1") || return 1
	python3 -c 'import json,sys; s=json.loads(sys.argv[1])["status"]; print(eval(sys.argv[2]))' \
		"$j" "$2" 2>/dev/null
}

# cl_leader I: the leader id that node I reports (a current answer, so it
# comes from a leader that still has its quorum).
cl_leader() {
	cl_field "$1" "s['leader']"
}

# cl_form: node 1 creates the cluster, the others join with one-time
# tokens; waits until every node is a member and the voters are in place.
cl_form() {
	local i tok voters want
	cl_start 1 --cluster-create "cz$$" $(cl_node_args 1) ||
		fail "node 1: $(tail -3 "$T/n1.log")"
	cl_password 1
	for ((i = 2; i <= CL_N; i++)); do
		tok=$(cl_cli 1 node token) || fail "node token"
		cl_start "$i" --join "https://$CL_NET.1:$CL_API_PORT" --token "$tok" \
			$(cl_node_args "$i") || fail "node $i join: $(tail -3 "$T/n$i.log")"
		cl_password "$i"
	done
	want=$((CL_N >= 5 ? 5 : CL_N >= 3 ? 3 : 1))
	for _ in $(seq 300); do
		voters=$(cl_field 1 "sum(1 for x in s['servers'] if x['role'] == 'voter')") &&
			((voters == want)) && return 0
		sleep 0.2
	done
	fail "cluster formed with ${voters:-?} voters, want $want"
}

# cl_partition "I J ..." ["K ..."]: each group of nodes on a segment (bridge)
# of its own; the nodes not named stay on br0.
cl_partition() {
	local g=0 grp i hub
	hub=$(cl_hub)
	for grp in "$@"; do
		g=$((g + 1))
		ip -n "$hub" link show "br$g" >/dev/null 2>&1 ||
			{ ip -n "$hub" link add "br$g" type bridge &&
				ip -n "$hub" link set "br$g" up; } || fail "bridge br$g"
		for i in $grp; do
			ip -n "$hub" link set "v$i" nomaster &&
				ip -n "$hub" link set "v$i" master "br$g" ||
				fail "partition: move node $i"
			CL_SEG[$i]=$g
		done
	done
}

cl_heal() {
	local i hub
	hub=$(cl_hub)
	for ((i = 1; i <= CL_N; i++)); do
		((CL_SEG[$i] == 0)) && continue
		ip -n "$hub" link set "v$i" nomaster &&
			ip -n "$hub" link set "v$i" master br0 || fail "heal: node $i"
		CL_SEG[$i]=0
	done
}

# cl_wait_leader "I J ..." [NOT]: waits (generously) until one of nodes I J
# ... reports a leader among them other than NOT; prints its id.
cl_wait_leader() {
	local nodes=$1 not=${2:-} i l
	for _ in $(seq 300); do
		for i in $nodes; do
			l=$(cl_leader "$i") || continue
			[[ " $nodes " == *" $l "* && $l != "$not" ]] && { echo "$l"; return 0; }
		done
		sleep 0.2
	done
	return 1
}

# cl_lincheck_start NODE WORKERS BASE: lincheck clients of node NODE's API,
# in its namespace, until cl_lincheck_stop; history in $T/hist-NODE-BASE.
cl_lincheck_start() {
	local i=$1 w=$2 b=$3
	ip netns exec "$(cl_ns "$i")" "$LINCHECK" run --addr "$CL_NET.$i:$CL_API_PORT" \
		--ca "$T/s1/pki/ca.crt" --password-file "$T/pw" --prefix "lc$$-" \
		--pool "${CL_LC_POOL:-lc}" --names 8 --workers "$w" --worker-base "$b" \
		--out "$T/hist-$i-$b.jsonl" >"$T/lincheck-$i-$b.log" 2>&1 &
	CL_BG+=($!)
}

# cl_lincheck_stop: SIGTERM to every lincheck run; each writes its history.
cl_lincheck_stop() {
	local p rc=0
	for p in "${CL_BG[@]}"; do
		[[ -n $p ]] && kill -TERM "$p" 2>/dev/null
	done
	for p in "${CL_BG[@]}"; do
		[[ -n $p ]] || continue
		wait "$p" || rc=1
	done
	CL_BG=()
	cat "$T"/lincheck-*.log
	rm -f "$T"/lincheck-*.log
	((rc == 0)) || fail "a lincheck run failed"
}

# now: seconds since the epoch, with fractions.
cl_now() { echo "$EPOCHREALTIME"; }
cl_since() { python3 -c "print(round($EPOCHREALTIME - $1, 2))"; }
