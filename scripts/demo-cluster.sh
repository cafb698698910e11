#!/usr/bin/env bash
# The demo's three-node cluster: three cairnd on loopback form a cluster
# (docs/cluster.md), and the CLI is set up to talk to it.
#
#   scripts/demo-cluster.sh BUILD_DIR DEMO_DIR    start it (returns when formed)
#   scripts/demo-cluster.sh --stop DEMO_DIR       stop it (SIGTERM, then wait)
#
# Start: node1 creates the cluster "demo", node2 and node3 join it with
# one-time tokens; the generated admin password is changed at once to a new
# random one, written to DEMO_DIR/admin-password (mode 0600). Each node has
# its own small pool, state directory, log and pid file under
# DEMO_DIR/cluster/nodeN/ (cairnd.pid, cairnd.log, state/, pool/). Then it
# APPENDS to DEMO_DIR/demo.env what the `cairn` CLI reads:
#
#   API_URL, CA_CERT, ADMIN_PASSWORD_FILE     (and CLUSTER_* for scripts)
#
# so that `set -a; . DEMO_DIR/demo.env; set +a; cairn cluster status` works.
#
# Ports (loopback): API 8441-8443 and node-to-node (raft, mutual TLS)
# 7441-7443 by default; CAIRN_DEMO_API_PORT and CAIRN_DEMO_RAFT_PORT move
# the first of each (the others follow). The nodes run in their own session
# (setsid), so a Ctrl-C meant for demo.sh does not reach them: stop them
# with --stop (demo.sh's stop path should call it).
set -euo pipefail

STOP_TIMEOUT=30  # seconds for a cairnd to stop after SIGTERM
READY_TIMEOUT=60 # seconds for a cairnd to be ready
NODES=3

usage() {
	echo "usage: $0 BUILD_DIR DEMO_DIR | $0 --stop DEMO_DIR" >&2
	exit 2
}

# stop_proc PID COMM (SIGTERM, SIGKILL after STOP_TIMEOUT), shared with demo.sh.
. "$(dirname "${BASH_SOURCE[0]}")/lib_demo.sh"

stop_cluster() {
	local dir=$1/cluster i pid
	for ((i = NODES; i >= 1; i--)); do
		[[ -f $dir/node$i/cairnd.pid ]] || continue
		pid=$(cat "$dir/node$i/cairnd.pid" 2>/dev/null || true)
		[[ $pid =~ ^[0-9]+$ ]] && stop_proc "$pid" cairnd
		rm -f "$dir/node$i/cairnd.pid" "$dir/node$i/ready"
	done
}

if [[ ${1:-} == --stop ]]; then
	(($# == 2)) || usage
	stop_cluster "$2"
	echo "demo-cluster: stopped"
	exit 0
fi
(($# == 2)) || usage
BUILD=$1
DEMO=$2
[[ $BUILD == /* ]] || BUILD=$PWD/$BUILD
mkdir -p "$DEMO"
DEMO=$(cd "$DEMO" && pwd)
CAIRND=$BUILD/bin/cairnd
SDS=$BUILD/bin/cairn-sds
CAIRN=$BUILD/bin/cairn
for bin in "$CAIRND" "$SDS" "$CAIRN"; do
	[[ -x $bin ]] || { echo "demo-cluster: $bin is missing (make first)" >&2; exit 1; }
done
command -v setsid >/dev/null || { echo "demo-cluster: setsid not installed" >&2; exit 1; }
API_PORT=${CAIRN_DEMO_API_PORT:-8441}
RAFT_PORT=${CAIRN_DEMO_RAFT_PORT:-7441}
CL=$DEMO/cluster

# A cluster left by an earlier run holds the ports: stop it, start afresh.
stop_cluster "$DEMO"
rm -rf "$CL"
mkdir -p "$CL"

started=0
# On any failure, leave nothing running.
on_exit() {
	local rc=$?
	if ((rc != 0 && started)); then
		stop_cluster "$DEMO"
	fi
	exit "$rc"
}
trap on_exit EXIT

# start_node I ARGS...: starts node I in its own session and waits until it
# is ready (its API listens).
start_node() {
	local i=$1 d=$CL/node$1 pid
	shift
	mkdir -p "$d"
	if [[ ! -d $d/pool ]]; then
		truncate -s 256M "$d/disk.img"
		"$SDS" format "$d/pool" --disk "$d/disk.img:256M" >>"$d/cairnd.log" 2>&1 ||
			{ tail -n 5 "$d/cairnd.log" >&2; echo "demo-cluster: format failed" >&2; exit 1; }
	fi
	setsid "$CAIRND" --data "$d/pool" --nbd 127.0.0.1:0 --ready-file "$d/ready" \
		--state "$d/state" "$@" </dev/null >>"$d/cairnd.log" 2>&1 &
	pid=$!
	echo "$pid" >"$d/cairnd.pid"
	started=1
	for ((k = 0; k < READY_TIMEOUT * 10; k++)); do
		[[ -s $d/ready ]] && return 0
		if ! kill -0 "$pid" 2>/dev/null; then
			tail -n 5 "$d/cairnd.log" >&2
			echo "demo-cluster: node$i exited before it was ready" >&2
			exit 1
		fi
		sleep 0.1
	done
	echo "demo-cluster: node$i not ready after ${READY_TIMEOUT}s" >&2
	exit 1
}
node_args() { # I: a new node's name and addresses
	echo --name "node$1" --raft "127.0.0.1:$((RAFT_PORT + $1 - 1))" \
		--api "127.0.0.1:$((API_PORT + $1 - 1))" --domain "$1"
}
api_url() { echo "https://localhost:$((API_PORT + $1 - 1))"; }

echo "demo-cluster: node1 creates the cluster (log: $CL/node1/cairnd.log)"
start_node 1 --cluster-create demo $(node_args 1)

export API_URL CA_CERT=$CL/node1/state/pki/ca.crt ADMIN_PASSWORD_FILE=$DEMO/admin-password
API_URL=$(api_url 1)
unset API_TOKEN
# The generated password must be changed before anything else works: a new
# random one, which `cairn password change --generate` writes back to
# ADMIN_PASSWORD_FILE (temporary file, mode 0600, rename).
(umask 077 && cp "$CL/node1/state/admin-password" "$ADMIN_PASSWORD_FILE")
"$CAIRN" password change --generate >/dev/null
[[ $(stat -c %a "$ADMIN_PASSWORD_FILE") == 600 ]] ||
	{ echo "demo-cluster: $ADMIN_PASSWORD_FILE is not mode 0600" >&2; exit 1; }

for i in 2 3; do
	echo "demo-cluster: node$i joins with a one-time token"
	tok=$("$CAIRN" node token 600)
	start_node "$i" --join "$(api_url 1)" --token "$tok" $(node_args "$i")
done

# Formed: every node knows all three, and takes the one password.
for i in 1 2 3; do
	ok=
	for ((k = 0; k < READY_TIMEOUT * 5; k++)); do
		n=$(API_URL=$(api_url "$i") "$CAIRN" --json node list 2>/dev/null |
			grep -c '"name"') || n=0
		((n == NODES)) && { ok=1; break; }
		sleep 0.2
	done
	[[ -n $ok ]] || { echo "demo-cluster: node$i does not see $NODES nodes" >&2; exit 1; }
done

urls=$(api_url 1),$(api_url 2),$(api_url 3)
pids=$(cat "$CL"/node{1,2,3}/cairnd.pid | paste -sd,)
cat >>"$DEMO/demo.env" <<EOF
API_URL=$(api_url 1)
CA_CERT=$CA_CERT
ADMIN_PASSWORD_FILE=$ADMIN_PASSWORD_FILE
CLUSTER_API_URLS=$urls
CLUSTER_DIR=$CL
CLUSTER_PIDS=$pids
EOF
chmod 600 "$DEMO/demo.env"

cat <<EOF
demo-cluster: three cairnd formed cluster "demo" (API $urls).
The admin password is in $ADMIN_PASSWORD_FILE; $DEMO/demo.env has what the
CLI needs:
    (set -a; . $DEMO/demo.env; set +a; $CAIRN cluster status)
API_URL may also list several nodes, comma-separated (CLUSTER_API_URLS).
Stop: $0 --stop $DEMO
EOF
