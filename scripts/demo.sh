#!/usr/bin/env bash
# The single-node demo, in the foreground:
#
#   scripts/demo.sh BUILD_DIR        (make demo runs it with build/rel)
#
# Steps (each one a function below, run in order by demo_main):
#   pool    a pool over two sparse 2 GiB files under build/demo/, a 1 GiB
#           vdisk "demo" and a 256 MiB vdisk "vm0"
#   cairnd  serves "demo" over NBD (CAIRN_DEMO_PORT, default 10809) and over
#           iSCSI as LUN 0 of ISCSI_TARGET with CHAP (a random secret in
#           build/demo/iscsi-chap-secret; CAIRN_DEMO_ISCSI_PORT, default
#           3260), and "vm0" over vhost-user-blk (build/demo/vhost/vm0.sock)
#   vm      cairn-hostd boots VM "demo-vm" (the test guest of images/guest,
#           TCG or KVM as the agent's probe decides) with vm0 as its disk,
#           and waits for the guest's marker on its serial console.
#           CAIRN_DEMO_VM=0 skips it.
#   cluster a three-node cluster of cairnd on loopback
#           (scripts/demo-cluster.sh: API on 8441-8443, Raft on 7441-7443),
#           its admin password changed to a random one in
#           build/demo/admin-password; demo.env gains API_URL, CA_CERT and
#           ADMIN_PASSWORD_FILE, so a shell that exports it can run
#           `cairn cluster status`. CAIRN_DEMO_CLUSTER=0 skips it.
#
# Once every step is ready, build/demo/demo.env holds KEY=VALUE lines saying
# what is served and where (a shell that exports it can run `cairn-vm list`).
# Ctrl-C or SIGTERM stops everything in reverse order (the agent
# force-stops the VM, then cairnd stops cleanly), removes demo.env and
# exits 0.
#
# Adding a step: write demo_NAME (start processes with svc_start, wait with
# svc_wait_ready, or register a stop command with svc_on_stop; add env_add
# lines and summary_add text) and call it from demo_main. A step that
# appends to demo.env itself (demo_cluster) runs after write_env.
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
ADEMO=$ROOT/$DEMO
HOST=127.0.0.1
PORT=${CAIRN_DEMO_PORT:-10809}
EXPORT=demo
URI=nbd://$HOST:$PORT/$EXPORT
SDS=$BUILD/bin/cairn-sds
CAIRND=$BUILD/bin/cairnd
HOSTD=$BUILD/bin/cairn-hostd
VMCLI=$BUILD/bin/cairn-vm
PIDS_FILE=$DEMO/pids # "NAME PID" per started process, for a later run
LOG=$DEMO/cairnd.log
ENV=$DEMO/demo.env
ISCSI_PORT=${CAIRN_DEMO_ISCSI_PORT:-3260}
ISCSI_TARGET=iqn.2026-11.org.cairn:demo
ISCSI_USER=demo
WITH_VM=${CAIRN_DEMO_VM:-1}
WITH_CLUSTER=${CAIRN_DEMO_CLUSTER:-1}
VM_NAME=demo-vm
VM_DISK=vm0
VHOST_DIR=$ADEMO/vhost # cairnd serves vdisk NAME on VHOST_DIR/NAME.sock
VM_SOCK=$VHOST_DIR/$VM_DISK.sock
HOSTD_SOCK=$ADEMO/hostd.sock
READY_TIMEOUT=60                         # seconds for a daemon to be ready
VM_BOOT_TIMEOUT=${CAIRN_DEMO_VM_BOOT:-300} # seconds to the guest's marker (TCG is slow)
STOP_TIMEOUT=30                          # seconds for a daemon to stop after SIGTERM
# is_running, stop_proc (shared with scripts/demo-cluster.sh)
. "$ROOT/scripts/lib_demo.sh"

for bin in "$SDS" "$CAIRND" "$HOSTD" "$VMCLI"; do
	if [[ ! -x $bin ]]; then
		echo "demo: $bin is missing; run 'make demo' (or 'make' first)" >&2
		exit 1
	fi
done

# ---- processes ----------------------------------------------------------

SVC_NAMES=() # "comm" of a process, or "-" for a stop command
SVC_PIDS=()  # its pid, or the index of its command in SVC_CMDS
SVC_CMDS=()
ENV_LINES=()
SUMMARY=()

env_add() { ENV_LINES+=("$@"); }
summary_add() { SUMMARY+=("$1"); }

# svc_start COMM LOGFILE CMD...: starts CMD in the background, recorded
# for the stop in reverse order; sets SVC_PID.
svc_start() {
	local comm=$1 log=$2
	shift 2
	"$@" </dev/null >>"$log" 2>&1 &
	SVC_PID=$!
	SVC_NAMES+=("$comm")
	SVC_PIDS+=("$SVC_PID")
	echo "$comm $SVC_PID" >>"$PIDS_FILE"
}

# svc_on_stop CMD...: runs CMD when the demo stops, in reverse order with
# the processes (for a step whose processes another script owns).
# shellcheck disable=SC2317  # for steps to come (see the top)
svc_on_stop() {
	SVC_CMDS+=("$(printf '%q ' "$@")")
	SVC_NAMES+=(-)
	SVC_PIDS+=($((${#SVC_CMDS[@]} - 1)))
}

# svc_wait_ready PID FILE WHAT LOGFILE: waits for FILE, or fails if PID
# exited first.
svc_wait_ready() {
	local pid=$1 file=$2 what=$3 log=$4 i rc
	for ((i = 0; i < READY_TIMEOUT * 10; i++)); do
		[[ -s $file ]] && return 0
		if ! kill -0 "$pid" 2>/dev/null ||
			[[ $(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null) == Z ]]; then
			rc=0
			wait "$pid" || rc=$?
			tail -n 20 "$log" >&2
			echo "demo: $what exited (status $rc) before it was ready" >&2
			exit 1
		fi
		sleep 0.1
	done
	tail -n 20 "$log" >&2
	echo "demo: $what not ready after ${READY_TIMEOUT}s" >&2
	exit 1
}

# shellcheck disable=SC2317  # runs from the traps
stop_all() {
	local i
	for ((i = ${#SVC_PIDS[@]} - 1; i >= 0; i--)); do
		if [[ ${SVC_NAMES[i]} == - ]]; then
			eval "${SVC_CMDS[SVC_PIDS[i]]}" || true
			continue
		fi
		stop_proc "${SVC_PIDS[i]}" "${SVC_NAMES[i]}"
		wait "${SVC_PIDS[i]}" 2>/dev/null || true
	done
	SVC_PIDS=()
	SVC_NAMES=()
	SVC_CMDS=()
	rm -f "$ENV" "$PIDS_FILE"
}

# Whatever an earlier demo left running (its script killed hard) holds the
# ports and the pool: stop it before wiping the directory. The agent
# force-stops its VMs on SIGTERM; a QEMU whose agent was SIGKILLed is
# found by its pidfile.
stop_leftovers() {
	local comm pid f
	[[ -d $ADEMO/cluster ]] &&
		"$ROOT/scripts/demo-cluster.sh" --stop "$ADEMO" >/dev/null 2>&1 || true
	if [[ -f $PIDS_FILE ]]; then
		tac "$PIDS_FILE" | while read -r comm pid; do
			[[ $pid =~ ^[0-9]+$ ]] && stop_proc "$pid" "$comm"
		done
	fi
	for f in "$DEMO"/hostd/run/*/qemu.pid; do
		[[ -f $f ]] || continue
		pid=$(cat "$f" 2>/dev/null || true)
		[[ $pid =~ ^[0-9]+$ ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null |
			grep -qF "$ADEMO/hostd/" && kill -KILL "$pid" 2>/dev/null
	done
	return 0
}

stopping=0
# Ctrl-C / SIGTERM: stop everything, clean up, exit 0.
# shellcheck disable=SC2317  # runs from a trap
on_signal() {
	stopping=1
	trap '' INT TERM HUP
	echo
	echo "demo: stopping"
	stop_all
	rm -f "$DEMO/ready" "$DEMO/hostd.ready"
	echo "demo: stopped"
	exit 0
}
# Any other way out (an error, a daemon died): leave nothing behind.
# shellcheck disable=SC2317  # runs from a trap
on_exit() {
	local rc=$?
	((stopping)) || stop_all
	exit "$rc"
}

# ---- steps --------------------------------------------------------------

demo_pool() {
	echo "demo: formatting a pool over two 2 GiB sparse files in $DEMO/"
	# cairn-sds would preallocate missing disk files (4 GiB of real space);
	# the demo does not need that, so the files exist, sparse, before it runs.
	truncate -s 2G "$DEMO/disk0.img" "$DEMO/disk1.img"
	"$SDS" format "$DEMO/pool" \
		--disk "$DEMO/disk0.img:2G" --disk "$DEMO/disk1.img:2G" >>"$LOG" 2>&1 ||
		{ tail -n 20 "$LOG" >&2; echo "demo: cairn-sds format failed" >&2; exit 1; }
	local vd
	for vd in "$EXPORT:1G" "$VM_DISK:256M"; do
		"$SDS" vdisk create "$DEMO/pool" "${vd%%:*}" "${vd#*:}" >>"$LOG" 2>&1 ||
			{ tail -n 20 "$LOG" >&2; echo "demo: cairn-sds vdisk create ${vd%%:*} failed" >&2; exit 1; }
	done
	env_add "POOL_DIR=$ADEMO/pool"
}

demo_cairnd() {
	# iSCSI with CHAP: a fresh random 24-character secret (letters and
	# digits, so it needs no escaping in the iscsi:// URL), owner-only.
	local secret
	secret=$(head -c 256 /dev/urandom | tr -dc 'A-Za-z0-9' | head -c 24)
	((${#secret} == 24)) || { echo "demo: cannot make a CHAP secret" >&2; exit 1; }
	(umask 077 && printf '%s\n' "$secret" >"$DEMO/iscsi-chap-secret" &&
		cat >"$DEMO/iscsi.json" <<EOF
{"portal": "$HOST:$ISCSI_PORT",
 "targets": [{"name": "$ISCSI_TARGET", "alias": "cairn-demo",
              "luns": {"0": "$EXPORT"}, "initiators": ["*"],
              "chap": {"user": "$ISCSI_USER", "secret": "$secret"}}]}
EOF
	)
	local iscsi_url=iscsi://$ISCSI_USER%$secret@$HOST:$ISCSI_PORT/$ISCSI_TARGET/0
	local vhost=()
	if ((WITH_VM)); then
		mkdir -p "$VHOST_DIR"
		vhost=(--vhost-blk "$VM_DISK=$VM_SOCK")
	fi

	echo "demo: starting cairnd (log: $LOG)"
	svc_start cairnd "$LOG" "$CAIRND" --data "$DEMO/pool" \
		--nbd "$HOST:$PORT" --default-export "$EXPORT" \
		--iscsi-config "$DEMO/iscsi.json" "${vhost[@]}" \
		--ready-file "$DEMO/ready"
	CAIRND_PID=$SVC_PID
	svc_wait_ready "$CAIRND_PID" "$DEMO/ready" cairnd "$LOG"
	env_add "NBD_URI=$URI" "NBD_HOST=$HOST" "NBD_PORT=$PORT" \
		"NBD_EXPORT=$EXPORT" "CAIRND_PID=$CAIRND_PID" "LOG=$ROOT/$LOG" \
		"ISCSI_PORTAL=$HOST:$ISCSI_PORT" "ISCSI_TARGET=$ISCSI_TARGET" \
		"ISCSI_URL=$iscsi_url"
	summary_add "vdisk \"$EXPORT\" (1 GiB, thin) served over NBD at

    $URI

and over iSCSI (CHAP user \"$ISCSI_USER\", secret in $DEMO/iscsi-chap-secret) at

    portal $HOST:$ISCSI_PORT, target $ISCSI_TARGET, LUN 0

Try, from another terminal:
    nbdinfo $URI
    qemu-img convert -n -f raw -O raw /etc/os-release $URI
    nbdcopy $URI - | head -c 64 | od -c
    fio --name=demo --ioengine=nbd --uri=$URI \\
        --rw=randrw --bs=4k --iodepth=32 --size=256M --runtime=10 --time_based
    (. $DEMO/demo.env; iscsi-inq \"\$ISCSI_URL\")
    (. $DEMO/demo.env; qemu-img info \"\$ISCSI_URL\")"
}

demo_vm() {
	((WITH_VM)) || return 0
	command -v qemu-system-x86_64 >/dev/null ||
		{ echo "demo: qemu-system-x86_64 missing (scripts/deps.sh); CAIRN_DEMO_VM=0 skips the VM" >&2; exit 1; }
	echo "demo: guest image (images/guest/build.sh, cached in build/guest)"
	"$ROOT/images/guest/build.sh" "$ROOT/build/guest" >>"$DEMO/guest-build.log" 2>&1 ||
		{ tail -n 20 "$DEMO/guest-build.log" >&2; echo "demo: guest image build failed" >&2; exit 1; }
	local hlog=$DEMO/hostd.log
	echo "demo: starting cairn-hostd (log: $hlog)"
	svc_start cairn-hostd "$hlog" "$HOSTD" --state-dir "$ADEMO/hostd" \
		--socket "$HOSTD_SOCK" --vhost-dir "$VHOST_DIR" \
		--ready-file "$DEMO/hostd.ready"
	local hpid=$SVC_PID
	svc_wait_ready "$hpid" "$DEMO/hostd.ready" cairn-hostd "$hlog"
	local accel
	accel=$(sed -n 's/^accel=//p' "$DEMO/hostd.ready")
	cat >"$DEMO/$VM_NAME.json" <<EOF
{"name": "$VM_NAME", "vcpus": 1, "memory_mib": 512,
 "boot": {"kernel": "$ROOT/build/guest/vmlinuz",
          "initrd": "$ROOT/build/guest/initrd.img",
          "cmdline": "console=ttyS0"},
 "disks": [{"vdisk": "$VM_DISK"}]}
EOF
	"$VMCLI" --socket "$HOSTD_SOCK" define "$DEMO/$VM_NAME.json" >>"$hlog" 2>&1 ||
		{ tail -n 5 "$hlog" >&2; echo "demo: cairn-vm define failed" >&2; exit 1; }
	echo "demo: booting VM $VM_NAME (accel $accel; under TCG this takes a minute)"
	"$VMCLI" --socket "$HOSTD_SOCK" start "$VM_NAME" --timeout 60 >>"$hlog" 2>&1 ||
		{ tail -n 5 "$hlog" >&2; echo "demo: cairn-vm start failed" >&2; exit 1; }
	local console
	console=$("$VMCLI" --socket "$HOSTD_SOCK" status "$VM_NAME" --json |
		python3 -c 'import json, sys; print(json.load(sys.stdin)["console_log"])')
	local i
	for ((i = 0; i < VM_BOOT_TIMEOUT * 10; i++)); do
		grep -q 'CAIRN-GUEST-READY' "$console" 2>/dev/null && break
		is_running "$hpid" cairn-hostd ||
			{ echo "demo: cairn-hostd exited while the VM booted" >&2; exit 1; }
		sleep 0.1
	done
	grep -q 'CAIRN-GUEST-READY.*disk=vda' "$console" 2>/dev/null || {
		tail -n 20 "$console" >&2
		echo "demo: no guest marker with its disk on $console after ${VM_BOOT_TIMEOUT}s" >&2
		exit 1
	}
	env_add "VM_NAME=$VM_NAME" "VM_CONSOLE_LOG=$console" \
		"HOSTD_SOCKET=$HOSTD_SOCK" "CAIRN_HOSTD_SOCKET=$HOSTD_SOCK" \
		"HOSTD_PID=$hpid" "VM_VDISK=$VM_DISK"
	summary_add "VM \"$VM_NAME\" (cairn-hostd, accel $accel) runs with vdisk \"$VM_DISK\" as its
disk (/dev/vda in the guest), served by cairnd over vhost-user-blk. Its
serial console log is $console.
    (set -a; . $DEMO/demo.env; $VMCLI list)
    (set -a; . $DEMO/demo.env; $VMCLI console $VM_NAME)    # a shell; Ctrl-] leaves"
}

demo_cluster() {
	((WITH_CLUSTER)) || return 0
	svc_on_stop "$ROOT/scripts/demo-cluster.sh" --stop "$ADEMO"
	"$ROOT/scripts/demo-cluster.sh" "$BUILD" "$ADEMO" >"$ADEMO/cluster.log" 2>&1 || {
		echo "demo: the cluster did not start; see $ADEMO/cluster.log" >&2
		exit 1
	}
	summary_add "Three-node cluster (cairnd on 127.0.0.1:8441-8443):
    (set -a; . $DEMO/demo.env; $BUILD/bin/cairn cluster status)"
}

write_env() {
	printf '%s\n' "${ENV_LINES[@]}" >"$ENV.tmp"
	chmod 600 "$ENV.tmp"
	mv "$ENV.tmp" "$ENV"
}

demo_main() {
	stop_leftovers
	rm -rf "$DEMO"
	mkdir -p "$DEMO"
	trap on_signal INT TERM HUP
	trap on_exit EXIT
	demo_pool
	demo_cairnd
	demo_vm
	write_env
	# Steps that append to demo.env go here.
	demo_cluster
	echo
	echo "Cairn demo on a pool over $DEMO/disk0.img and disk1.img:"
	local s
	for s in "${SUMMARY[@]}"; do
		printf '\n%s\n' "$s"
	done
	printf '\nFor scripts: %s (KEY=VALUE). Logs: %s/*.log\n\nCtrl-C to stop.\n' "$ENV" "$DEMO"
	# Wait in the foreground; a trapped signal interrupts wait and runs
	# on_signal. Any service exiting on its own ends the demo.
	local rc=0 i pids=()
	for ((i = 0; i < ${#SVC_PIDS[@]}; i++)); do
		[[ ${SVC_NAMES[i]} == - ]] || pids+=("${SVC_PIDS[i]}")
	done
	wait -n "${pids[@]}" || rc=$?
	echo "demo: a service exited on its own (status $rc); see $DEMO/*.log" >&2
	exit 1
}

demo_main
