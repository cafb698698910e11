#!/usr/bin/env bash
# kill -9 of the vhost-user back end during guest IO, then a restart.
# QEMU's chardev reconnects (reconnect=1), QEMU hands the new back end the
# inflight tracking region the old one kept, and the new back end
# resubmits what was in flight. The guest runs a write/read/compare loop
# with O_DIRECT on the raw disk; it must finish every round with no IO
# error (its /scripts/io-loop checks dd, cmp and dmesg).
. "$(dirname "$0")/lib_cairnd.sh"
. "$(dirname "$0")/lib_vhost.sh"
cairn_init "$@"
trap 'rc=$?; guest_kill; (exit $rc); cairn_cleanup' EXIT
need qemu-system-x86_64

BOOT_SECS=${VHOST_BOOT_SECS:-240}
KILLS=${VHOST_KILLS:-5}
P=$T/pool
SOCK=$T/vm0.sock
LOG=$T/guest.log

guest_image
cairn_format "$P" 2G
"$SDS" vdisk create "$P" vm0 256M || fail "vdisk create"
cairnd_start "$P" --vhost-blk "vm0=$SOCK"

rounds() { grep -c CAIRN-IO-ROUND "$LOG" || true; }
# rounds_above N SECS: waits (bounded) for more than N finished rounds, or
# for the end of the script.
rounds_above() {
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		(($(rounds) > $1)) && return 0
		grep -q CAIRN-SCRIPT-EXIT "$LOG" && return 0
		kill -0 "$QEMU_PID" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

step "boot: io-loop, $KILLS back-end kills"
# Console lines end in \r\n: match the round number, then a non-digit.
guest_start "$LOG" "$SOCK" "cairn.script=io-loop cairn.rounds=${VHOST_ROUNDS:-80}" ",reconnect=1"
guest_wait_for "$LOG" "CAIRN-IO-ROUND 1[^0-9]" "$BOOT_SECS" ||
	{ tail -n 30 "$LOG" >&2; fail "guest IO did not start"; }
for ((k = 1; k <= KILLS; k++)); do
	# At a random moment: a round's writes or reads are in flight.
	sleep "$((RANDOM % 3 + 1)).$((RANDOM % 10))"
	if grep -q CAIRN-SCRIPT-EXIT "$LOG"; then
		tail -n 20 "$LOG" >&2
		fail "guest finished before kill $k (raise VHOST_ROUNDS)"
	fi
	step "kill -9 cairnd ($k/$KILLS) at $(rounds) rounds"
	kill -KILL "$CAIRND_PID"
	wait "$CAIRND_PID" 2>/dev/null || true
	CAIRND_PID=
	sleep 1
	cairnd_start "$P" --vhost-blk "vm0=$SOCK"
	rounds_above "$(rounds)" 120 ||
		{ tail -n 30 "$LOG" >&2; fail "guest IO stuck after restart $k"; }
done
guest_wait_exit "$BOOT_SECS" || { guest_kill; tail -n 30 "$LOG" >&2; fail "guest did not finish"; }
grep -E 'CAIRN-(IO-LOOP-OK|FAIL)|I/O error|virtio' "$LOG" | tail -n 20
grep -q "CAIRN-IO-LOOP-OK" "$LOG" || { tail -n 40 "$LOG" >&2; fail "guest IO failed across back-end restarts"; }
grep -h "resubmitting" "$T"/cairnd.*.log || echo "(no request was in flight at a kill)"
# Log mode leaves the allocation bitmaps to the group commit; each restart
# after a kill rebuilds them from the block tables (the fsck below checks).
rebuilt=$(cat "$T"/cairnd.*.log | grep -c "rebuilding the allocation bitmaps" || true)
echo "restarts that rebuilt the allocation bitmaps: $rebuilt of $KILLS"
((rebuilt >= 1)) || fail "no restart found the log marker"
[[ -n ${VHOST_KEEP_LOGS:-} ]] && cp "$T"/cairnd.*.log "$VHOST_KEEP_LOGS"/
cairnd_stop
pool_check "$P"
echo PASS
