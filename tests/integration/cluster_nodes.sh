#!/usr/bin/env bash
# Three real cairnd processes form a cluster over mutual TLS: create, join
# with one-time tokens (a reused token is refused), RF3 pool, kill -9 the
# leader, a new leader serves the API, the killed node resumes and catches
# up, everything stops cleanly.
. "$(dirname "$0")/lib_cairnd.sh"
cairn_init "$@"
need python3
CAIRN=$BUILD/bin/cairn
[[ -x $CAIRN ]] || fail "cairn CLI not built"
ports=($(python3 -c '
import socket
ss=[socket.socket() for _ in range(8)]
for s in ss: s.bind(("127.0.0.1",0))
print(" ".join(str(s.getsockname()[1]) for s in ss))'))
PW=cairn-test-password-$$
declare -a PID

# start_node I [ARGS...]: node I with its own pool and state directory.
start_node() {
	local i=$1
	shift
	[[ -d $T/p$i ]] || cairn_format "$T/p$i" 64M >/dev/null
	rm -f "$T/r$i"
	"$CAIRND" --data "$T/p$i" --nbd 127.0.0.1:0 --ready-file "$T/r$i" \
		--state "$T/s$i" "$@" >>"$T/n$i.log" 2>&1 &
	PID[$i]=$!
	for _ in $(seq 600); do
		[[ -s $T/r$i ]] && return 0
		kill -0 "${PID[$i]}" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}
new_node() { # I: name, raft and api addresses
	echo --name n$1 --raft 127.0.0.1:${ports[$1]} --api 127.0.0.1:${ports[$((4 + $1))]} --domain $1
}
use() { # the CLI talks to node I
	export API_URL=https://localhost:${ports[$((4 + $1))]}
	export CA_CERT=$T/s1/pki/ca.crt ADMIN_PASSWORD_FILE=$T/pw$1
}
stop_all() {
	for i in 1 2 3; do
		[[ -n ${PID[$i]:-} ]] && kill -TERM "${PID[$i]}" 2>/dev/null
	done
	for i in 1 2 3; do
		[[ -n ${PID[$i]:-} ]] || continue
		wait "${PID[$i]}" || fail "node $i did not stop cleanly"
		PID[$i]=
	done
}
kill_nodes() {
	local rc=$? i
	for i in 1 2 3 4; do
		if [[ -n ${PID[$i]:-} ]]; then kill -9 "${PID[$i]}" 2>/dev/null || true; fi
	done
	(exit $rc)
	cairn_cleanup
}
trap kill_nodes EXIT

# One admin password on every node: requests a follower forwards to the
# leader carry the caller's credentials (per-node accounts: docs/api.md).
set_password() {
	use "$1"
	cp "$T/s$1/admin-password" "$T/pw$1"
	printf '%s\n%s\n' "$PW" "$PW" | "$CAIRN" password change >/dev/null ||
		fail "password change on node $1"
	printf '%s\n' "$PW" >"$T/pw$1"
}

step "create"
start_node 1 --cluster-create test $(new_node 1) || fail "node 1: $(tail -3 "$T/n1.log")"
set_password 1
step "join two nodes with tokens"
for i in 2 3; do
	use 1
	tok=$("$CAIRN" node token) || fail "node token"
	start_node $i --join "$API_URL" --token "$tok" $(new_node $i) ||
		fail "node $i join: $(tail -3 "$T/n$i.log")"
	set_password $i
done
step "a reused token is refused"
start_node 4 --join "https://localhost:${ports[5]}" --token "$tok" \
	--name n4 --raft 127.0.0.1:${ports[4]} --api 127.0.0.1:1 &&
	fail "a reused token joined"
grep -q "unknown, used or expired" "$T/n4.log" || fail "no refusal message: $(tail -3 "$T/n4.log")"
PID[4]=

use 1
n=0
for _ in $(seq 100); do
	n=$("$CAIRN" --json node list | python3 -c 'import json,sys; j=json.load(sys.stdin); print(len(j["nodes"] if isinstance(j, dict) else j))') || n=0
	((n == 3)) && break
	sleep 0.2
done
((n == 3)) || fail "cluster has $n nodes"
"$CAIRN" pool create rf3 --replicas 3 >/dev/null || fail "RF3 pool on 3 nodes"
"$CAIRN" vdisk create v1 --pool rf3 --size 1G >/dev/null || fail "vdisk create"

leader_of() { # prints the leader id node I sees
	use "$1"
	"$CAIRN" --json cluster status 2>/dev/null |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["status"]["leader"])' 2>/dev/null
}
step "kill -9 the leader"
L=$(leader_of 1)
[[ $L =~ ^[123]$ ]] || fail "no leader: $L"
kill -9 "${PID[$L]}"
wait "${PID[$L]}" 2>/dev/null || true
PID[$L]=
o=$((L % 3 + 1))
t0=$(date +%s.%N)
nl=
for _ in $(seq 150); do
	nl=$(leader_of $o) && [[ $nl =~ ^[123]$ && $nl != "$L" ]] && break
	nl=
	sleep 0.2
done
[[ -n $nl ]] || fail "no new leader after killing node $L"
echo "new leader $nl after $(python3 -c "print(round($(date +%s.%N) - $t0, 2))") s"
use $o
"$CAIRN" vdisk create v2 --pool rf3 --size 1G >/dev/null || fail "vdisk create after the kill"

step "the killed node resumes and catches up"
start_node $L || fail "node $L resume: $(tail -3 "$T/n$L.log")"
use $L
ok=
for _ in $(seq 150); do
	if "$CAIRN" --json vdisk list 2>/dev/null | grep -q '"v2"'; then ok=1; break; fi
	sleep 0.2
done
[[ -n $ok ]] || fail "node $L does not see v2"
step "clean stop"
stop_all
echo "ok"
