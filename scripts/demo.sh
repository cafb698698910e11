#!/usr/bin/env bash
# The single-node demo: a pool over two sparse 2 GiB files under build/demo/,
# one 1 GiB vdisk "demo" exported over NBD by cairnd, in the foreground.
#
#   scripts/demo.sh BUILD_DIR        (make demo runs it with build/rel)
#
# Once cairnd is ready, build/demo/demo.env holds KEY=VALUE lines saying what
# is served and where. Ctrl-C or SIGTERM stops cairnd cleanly, removes
# demo.env and exits 0. CAIRN_DEMO_PORT overrides the NBD port (10809).
#
# The vdisk is also exported over iSCSI (docs/iscsi.md) as LUN 0 of
# ISCSI_TARGET, with CHAP on: a random secret is generated into
# build/demo/iscsi-chap-secret each run. CAIRN_DEMO_ISCSI_PORT overrides the
# portal's port (3260).
set -euo pipefail

if (($# != 1)); then
	echo "usage: $0 BUILD_DIR" >&2
	exit 2
fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$1
[[ $BUILD == /* ]] || BUILD=$PWD/$BUILD
cd "$ROOT"

DEMO=build/demo
HOST=127.0.0.1
PORT=${CAIRN_DEMO_PORT:-10809}
EXPORT=demo
URI=nbd://$HOST:$PORT/$EXPORT
SDS=$BUILD/bin/cairn-sds
CAIRND=$BUILD/bin/cairnd
PIDFILE=$DEMO/cairnd.pid
LOG=$DEMO/cairnd.log
ENV=$DEMO/demo.env
ISCSI_PORT=${CAIRN_DEMO_ISCSI_PORT:-3260}
ISCSI_TARGET=iqn.2026-11.org.cairn:demo
ISCSI_USER=demo
READY_TIMEOUT=60 # seconds for cairnd to open its pool and listen
STOP_TIMEOUT=30  # seconds for cairnd to stop after SIGTERM

for bin in "$SDS" "$CAIRND"; do
	if [[ ! -x $bin ]]; then
		echo "demo: $bin is missing; run 'make demo' (or 'make' first)" >&2
		exit 1
	fi
done

# Stop PID if it is a cairnd: SIGTERM, then SIGKILL after STOP_TIMEOUT.
stop_cairnd() {
	local pid=$1 i
	[[ $(cat "/proc/$pid/comm" 2>/dev/null) == cairnd ]] || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
		[[ $(cat "/proc/$pid/comm" 2>/dev/null) == cairnd ]] || return 0
		# Reap it if it is ours; a zombie still has its comm.
		[[ $(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null) == Z ]] &&
			return 0
		sleep 0.1
	done
	echo "demo: cairnd $pid did not stop in ${STOP_TIMEOUT}s; killing it" >&2
	kill -KILL "$pid" 2>/dev/null || true
}

# A cairnd left by an earlier demo (its script killed hard) holds the port
# and the pool: stop it before wiping the directory.
if [[ -f $PIDFILE ]]; then
	old=$(cat "$PIDFILE" 2>/dev/null || true)
	if [[ $old =~ ^[0-9]+$ ]]; then
		stop_cairnd "$old"
	fi
fi
rm -rf "$DEMO"
mkdir -p "$DEMO"

echo "demo: formatting a pool over two 2 GiB sparse files in $DEMO/"
# cairn-sds would preallocate missing disk files (4 GiB of real space); the
# demo does not need that, so the files exist, sparse, before it runs.
truncate -s 2G "$DEMO/disk0.img" "$DEMO/disk1.img"
"$SDS" format "$DEMO/pool" \
	--disk "$DEMO/disk0.img:2G" --disk "$DEMO/disk1.img:2G" >>"$LOG" 2>&1 ||
	{ tail -n 20 "$LOG" >&2; echo "demo: cairn-sds format failed" >&2; exit 1; }
"$SDS" vdisk create "$DEMO/pool" "$EXPORT" 1G >>"$LOG" 2>&1 ||
	{ tail -n 20 "$LOG" >&2; echo "demo: cairn-sds vdisk create failed" >&2; exit 1; }

# iSCSI with CHAP: a fresh random 24-character secret (letters and digits,
# so it needs no escaping in the iscsi:// URL), readable by the owner only.
ISCSI_SECRET=$(head -c 256 /dev/urandom | tr -dc 'A-Za-z0-9' | head -c 24)
((${#ISCSI_SECRET} == 24)) || { echo "demo: cannot make a CHAP secret" >&2; exit 1; }
(umask 077 && printf '%s\n' "$ISCSI_SECRET" >"$DEMO/iscsi-chap-secret" &&
	cat >"$DEMO/iscsi.json" <<EOF
{"portal": "$HOST:$ISCSI_PORT",
 "targets": [{"name": "$ISCSI_TARGET", "alias": "cairn-demo",
              "luns": {"0": "$EXPORT"}, "initiators": ["*"],
              "chap": {"user": "$ISCSI_USER", "secret": "$ISCSI_SECRET"}}]}
EOF
)
ISCSI_URL=iscsi://$ISCSI_USER%$ISCSI_SECRET@$HOST:$ISCSI_PORT/$ISCSI_TARGET/0

pid=
stopping=0
# Ctrl-C / SIGTERM: forward SIGTERM to cairnd, wait for it, clean up, exit 0.
# shellcheck disable=SC2317  # runs from a trap
on_signal() {
	stopping=1
	trap '' INT TERM HUP
	echo
	echo "demo: stopping cairnd"
	if [[ -n $pid ]]; then
		stop_cairnd "$pid"
		wait "$pid" 2>/dev/null || true
	fi
	rm -f "$ENV" "$PIDFILE" "$DEMO/ready"
	echo "demo: stopped"
	exit 0
}
# Any other way out (an error, cairnd died): do not leave cairnd behind.
# shellcheck disable=SC2317  # runs from a trap
on_exit() {
	local rc=$?
	if ((!stopping)) && [[ -n $pid ]]; then
		stop_cairnd "$pid"
		rm -f "$ENV" "$PIDFILE" "$DEMO/ready"
	fi
	exit "$rc"
}
trap on_signal INT TERM HUP
trap on_exit EXIT

echo "demo: starting cairnd (log: $DEMO/cairnd.log)"
"$CAIRND" --data "$DEMO/pool" --nbd "$HOST:$PORT" --default-export "$EXPORT" \
	--iscsi-config "$DEMO/iscsi.json" \
	--ready-file "$DEMO/ready" </dev/null >>"$LOG" 2>&1 &
pid=$!
echo "$pid" >"$PIDFILE"

for ((i = 0; i < READY_TIMEOUT * 10; i++)); do
	[[ -e $DEMO/ready ]] && break
	if ! kill -0 "$pid" 2>/dev/null ||
		[[ $(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null) == Z ]]; then
		rc=0
		wait "$pid" || rc=$?
		pid=
		tail -n 20 "$LOG" >&2
		echo "demo: cairnd exited (status $rc) before it was ready" >&2
		exit 1
	fi
	sleep 0.1
done
if [[ ! -e $DEMO/ready ]]; then
	tail -n 20 "$LOG" >&2
	echo "demo: cairnd not ready after ${READY_TIMEOUT}s" >&2
	exit 1
fi

cat >"$ENV.tmp" <<EOF
NBD_URI=$URI
NBD_HOST=$HOST
NBD_PORT=$PORT
NBD_EXPORT=$EXPORT
POOL_DIR=$ROOT/$DEMO/pool
CAIRND_PID=$pid
LOG=$ROOT/$LOG
ISCSI_PORTAL=$HOST:$ISCSI_PORT
ISCSI_TARGET=$ISCSI_TARGET
ISCSI_URL=$ISCSI_URL
EOF
chmod 600 "$ENV.tmp"
mv "$ENV.tmp" "$ENV"

cat <<EOF

Cairn demo: vdisk "$EXPORT" (1 GiB, thin) on a pool over $DEMO/disk0.img and
disk1.img, served over NBD at

    $URI

and over iSCSI (CHAP user "$ISCSI_USER", secret in $DEMO/iscsi-chap-secret) at

    portal $HOST:$ISCSI_PORT, target $ISCSI_TARGET, LUN 0

For scripts: $DEMO/demo.env (KEY=VALUE). cairnd's log: $DEMO/cairnd.log

Try, from another terminal:
    nbdinfo $URI
    qemu-img convert -n -f raw -O raw /etc/os-release $URI
    nbdcopy $URI - | head -c 64 | od -c
    fio --name=demo --ioengine=nbd --uri=$URI \\
        --rw=randrw --bs=4k --iodepth=32 --size=256M --runtime=10 --time_based
    (. $DEMO/demo.env; iscsi-inq "\$ISCSI_URL")
    (. $DEMO/demo.env; qemu-img info "\$ISCSI_URL")

Ctrl-C to stop.
EOF

# Wait in the foreground; a trapped signal interrupts wait and runs on_signal.
rc=0
wait "$pid" || rc=$?
pid=
rm -f "$ENV" "$PIDFILE" "$DEMO/ready"
echo "demo: cairnd exited on its own (status $rc); see $DEMO/cairnd.log" >&2
exit 1
