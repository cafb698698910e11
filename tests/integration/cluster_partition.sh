#!/usr/bin/env bash
# Partitions and kills of a cluster of real cairnd processes, each in its own
# network namespace (tests/integration/lib_cluster.sh), under concurrent
# clients whose history is checked for linearizability (tests/tools/lincheck).
#
# With N nodes (5 here, 3 in cluster_partition3.sh) and a minority of
# (N-1)/2:
#   1. partition a minority that holds the leader: the minority refuses map
#      changes and current reads with a clear error; the majority elects a
#      new leader and accepts changes; heal: one map, one epoch, and nothing
#      the minority was asked to do happened;
#   2. the same with a minority of followers: the majority keeps a leader;
#   3. split into groups none of which is a majority: every node refuses;
#      heal: a leader again, and convergence;
#   4. kill -9 the leader: a new leader; restart it: it catches up;
# then every node stops cleanly and the history must be linearizable.
#
# Figures go to the log: elections (Raft term increases, with pre-vote each
# one is a real election), time to a new leader after a partition or a kill
# (no timed assertion: only generous timeouts for liveness), ops checked.
. "$(dirname "$0")/lib_cairnd.sh"
. "$(dirname "$0")/lib_cluster.sh"
cairn_init "$@"
N=${CL_NODES:-5}
MINORITY=$(((N - 1) / 2))
[[ -x $TESTS_BIN/lincheck ]] || fail "lincheck not built"
"$TESTS_BIN/lincheck" selftest >/dev/null || fail "lincheck selftest"

all_nodes() { seq -s ' ' 1 "$N"; }
declare -a RECOVERY=()
PROBES=()

step "form a cluster of $N nodes, each in its own network namespace"
cl_init "$N"
t0=$(cl_now)
cl_form
echo "formed in $(cl_since "$t0") s"
cl_cli 1 pool create lc --replicas 1 >/dev/null || fail "pool create"
L=$(cl_wait_leader "$(all_nodes)") || fail "no leader"
TERM0=$(cl_field "$L" "s['term']")
echo "leader $L, term $TERM0"

step "start the clients: $((N == 5 ? 1 : 2)) per node"
for ((i = 1; i <= N; i++)); do
	if ((N == 5)); then
		cl_lincheck_start "$i" 1 $((i - 1))
	else
		cl_lincheck_start "$i" 2 $((2 * (i - 1)))
	fi
done
sleep 3

# refuses I WHAT: node I (cut off from the majority) must refuse a change
# and a current read with a clear error (HTTP 503, no quorum / no leader /
# leader unreachable), within the CLI's own timeout. The probe's name is
# remembered: it must never appear in the map.
refuses() {
	local i=$1 name="probe-$1-$RANDOM" out t
	t=$(cl_now)
	PROBES+=("$name")
	if out=$(cl_cli "$i" vdisk create "$name" --pool lc --size 1G 2>&1); then
		fail "node $i, cut off from the majority, created $name: $out"
	fi
	[[ $out == *"HTTP 503"* ]] || fail "node $i: unclear refusal of a change: $out"
	echo "node $i refuses a change after $(cl_since "$t") s: $out"
	t=$(cl_now)
	if out=$(cl_cli "$i" vdisk list 2>&1); then
		fail "node $i, cut off from the majority, answered a current read: $out"
	fi
	[[ $out == *"HTTP 503"* ]] || fail "node $i: unclear refusal of a read: $out"
	echo "node $i refuses a current read after $(cl_since "$t") s: $out"
}

# majority_serves "NODES" NOTLEADER T0 WHAT: the majority has a leader
# (other than NOTLEADER when given) and accepts a change through each node.
majority_serves() {
	local nodes=$1 not=$2 t0=$3 what=$4 l i d k out
	l=$(cl_wait_leader "$nodes" "$not") || fail "$what: no leader among $nodes"
	d=$(cl_since "$t0")
	RECOVERY+=("$what: $d s")
	echo "$what: leader $l answers after $d s"
	for i in $nodes; do
		# Liveness, not a first-try assertion: a node may learn of the
		# new leader a heartbeat after the others. A retry that finds
		# the vdisk made it (an attempt that timed out had committed).
		for k in $(seq 20); do
			out=$(cl_cli "$i" vdisk create "maj-$what-$i" --pool lc --size 1G 2>&1) && break
			((k > 1)) && [[ $out == *"HTTP 409"* ]] && break
			sleep 0.5
		done
		[[ $k -lt 20 ]] || fail "$what: the majority refused a change through node $i: $out"
	done
	LEADER=$l
}

# converged MIN_EPOCH: every node answers current reads again, with an epoch
# of at least MIN_EPOCH (what the majority had committed when the partition
# healed) and one list of the vdisks this script made, and no probe sent to
# a minority is in the map. The clients keep changing the map meanwhile, so
# equal epochs are checked once they stop (all_same_epoch). A follower
# answers status and lists through the leader (docs/api.md): what is
# compared is each node's path to the current map.
converged() {
	local min=$1 i e l ref= out p
	for _ in $(seq 100); do
		ref= out=ok
		for ((i = 1; i <= N; i++)); do
			e=$(cl_field "$i" "s['epoch']") || { out="node $i: no status"; break; }
			((e >= min)) || { out="node $i: epoch $e < $min"; break; }
			l=$(cl_cli "$i" --json vdisk list 2>/dev/null |
				python3 -c 'import json,sys; j=json.load(sys.stdin); j=j["vdisks"] if isinstance(j, dict) else j; print(sorted(v["name"] for v in j if not v["name"].startswith("lc")))') ||
				{ out="node $i: no list"; break; }
			[[ -z $ref ]] && ref=$l
			[[ $l == "$ref" ]] || { out="node $i: $l vs $ref"; break; }
		done
		[[ $out == ok ]] && break
		sleep 0.2
	done
	[[ $out == ok ]] || fail "no convergence: $out"
	for p in "${PROBES[@]}"; do
		[[ $ref == *"'$p'"* ]] && fail "$p, refused by a minority, is in the map"
	done
	echo "converged: every node answers with epoch >= $min and the same vdisks; ${#PROBES[@]} refused probes absent"
}

all_same_epoch() {
	local i e ref=
	for ((i = 1; i <= N; i++)); do
		e=$(cl_field "$i" "s['epoch']") || fail "node $i: no status"
		[[ -z $ref ]] && ref=$e
		[[ $e == "$ref" ]] || fail "node $i answers epoch $e, node 1 $ref"
	done
	echo "all $N nodes answer epoch $ref"
}

# behind I E0 WHO: lets the clients change the map through node I until
# its epoch is 128 past E0, so that WHO (cut off or down since E0) is
# further behind than the 32 log entries a snapshot keeps and must catch up
# from a snapshot. Not an assertion: gives up after 60 s and says so.
behind() {
	local i=$1 e0=$2 who=$3 e=0
	for _ in $(seq 120); do
		e=$(cl_field "$i" "s['epoch']") || e=0
		((e >= e0 + 128)) && break
		sleep 0.5
	done
	if ((e >= e0 + 128)); then
		echo "$who is $((e - e0)) changes behind (past the 32 trailing entries)"
	else
		echo "note: $who is only $((e - e0)) changes behind after 60 s"
	fi
}

# partition_round WHAT WITH_LEADER: cut a minority off (holding the leader
# or not), check both sides, heal, check convergence.
partition_round() {
	local what=$1 with=$2 minority=() majority=() i t0 e e0
	L=$(cl_wait_leader "$(all_nodes)") || fail "no leader before $what"
	((with)) && minority=("$L")
	for ((i = 1; i <= N && ${#minority[@]} < MINORITY; i++)); do
		[[ $i == "$L" ]] || minority+=("$i")
	done
	for ((i = 1; i <= N; i++)); do
		[[ " ${minority[*]} " == *" $i "* ]] || majority+=("$i")
	done
	step "$what: partition {${minority[*]}} from {${majority[*]}} (leader $L)"
	e0=$(cl_field "$L" "s['epoch']") || fail "no status"
	t0=$(cl_now)
	cl_partition "${minority[*]}"
	if ((with)); then
		majority_serves "${majority[*]}" "$L" "$t0" "$what"
	else
		majority_serves "${majority[*]}" "" "$t0" "$what"
		[[ $LEADER == "$L" ]] || echo "note: the majority changed leader ($L -> $LEADER)"
	fi
	for i in "${minority[@]}"; do refuses "$i"; done
	behind "${majority[0]}" "$e0" "the minority"
	e=$(cl_field "${majority[0]}" "s['epoch']") || fail "majority: no status"
	step "$what: heal"
	cl_heal
	converged "$e"
}

partition_round "minority-with-leader" 1
partition_round "minority-of-followers" 0

# No majority anywhere: 5 nodes as {1 2} {3 4} {5}, 3 nodes as {1} {2} {3}.
step "no quorum on any side"
if ((N == 5)); then groups=("1 2" "3 4"); else groups=("1" "2"); fi
e0=$(cl_field 1 "s['epoch']") || fail "no status"
t0=$(cl_now)
cl_partition "${groups[@]}"
for ((i = 1; i <= N; i++)); do refuses "$i"; done
sleep 2 # the clients keep trying on every side
step "no quorum on any side: heal"
t0=$(cl_now)
cl_heal
majority_serves "$(all_nodes)" "" "$t0" "heal-from-no-quorum"
converged "$e0"

step "kill -9 the leader"
L=$(cl_wait_leader "$(all_nodes)") || fail "no leader"
others=$(for ((i = 1; i <= N; i++)); do [[ $i == "$L" ]] || printf '%s ' "$i"; done)
e0=$(cl_field "$L" "s['epoch']") || fail "no status"
t0=$(cl_now)
cl_kill "$L"
majority_serves "$others" "$L" "$t0" "kill-leader"
behind "${others%% *}" "$e0" "node $L"
step "restart node $L: it catches up"
e=$(cl_field "${others%% *}" "s['epoch']") || fail "no status"
cl_start "$L" || fail "node $L resume: $(tail -3 "$T/n$L.log")"
converged "$e"

step "stop the clients and check the history"
sleep 2
cl_lincheck_stop
all_same_epoch
TERM1=$(cl_field 1 "s['term']")
rc=0
"$LINCHECK" check --min-definite 50 "$T"/hist-*.jsonl >"$T/check.out" 2>&1 || rc=$?
grep -v '^lincheck: lc' "$T/check.out" || true
grep '^lincheck: lc' "$T/check.out" | head -n 16
((rc == 0)) || fail "the history is not linearizable (or too small): see above"

step "clean stop"
for ((i = 1; i <= N; i++)); do cl_stop "$i"; done

echo "figures ($N nodes, a shared 2-core machine, ASan build):"
echo "  elections (Raft term increases): $((TERM1 - TERM0)) (term $TERM0 -> $TERM1)"
for r in "${RECOVERY[@]}"; do echo "  time to a leader serving changes, $r"; done
grep 'result:' "$T/check.out" | sed 's/^/  /'
echo "ok"
