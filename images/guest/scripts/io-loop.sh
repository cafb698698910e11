#!/bin/sh
# Raw-disk write/read/compare loop with O_DIRECT: WORKERS concurrent
# workers, each ROUNDS rounds of 4 MiB on its own 16 MiB stripe (for the
# back-end restart test: IO keeps going while the back end dies and comes
# back, with several requests in flight at any moment).
. /scripts/lib
ROUNDS=$(sed -n 's/.*cairn.rounds=\([0-9]*\).*/\1/p' /proc/cmdline)
ROUNDS=${ROUNDS:-40}
WORKERS=4
PATTERN_MIB=4
pattern >/tmp/p

worker() {
	w=$1
	i=0
	while [ $i -lt "$ROUNDS" ]; do
		off=$((w * 16 + (i % 4) * 4))
		dd if=/tmp/p of="$DISK" bs=1M seek=$off count=4 oflag=direct conv=fsync 2>/tmp/dd.$w ||
			{ cat /tmp/dd.$w; echo "CAIRN-FAIL write worker $w round $i"; return 1; }
		dd if="$DISK" of=/tmp/r.$w bs=1M skip=$off count=4 iflag=direct 2>/tmp/dd.$w ||
			{ cat /tmp/dd.$w; echo "CAIRN-FAIL read worker $w round $i"; return 1; }
		cmp /tmp/p /tmp/r.$w || { echo "CAIRN-FAIL compare worker $w round $i"; return 1; }
		[ "$w" = 0 ] && echo "CAIRN-IO-ROUND $i"
		i=$((i + 1))
	done
	return 0
}

pids=
w=0
while [ $w -lt $WORKERS ]; do
	worker $w &
	pids="$pids $!"
	w=$((w + 1))
done
bad=0
for p in $pids; do
	wait "$p" || bad=1
done
[ $bad = 0 ] || fail "a worker failed"
check_dmesg
echo "CAIRN-IO-LOOP-OK $ROUNDS x $WORKERS"
