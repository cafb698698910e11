#!/bin/sh
# Runs the fio job passed as cairn.fio=RW,BS,IODEPTH,SECONDS on the raw
# disk (needs initrd-fio.img) and prints fio's JSON between markers.
. /scripts/lib
spec=$(sed -n 's/.*cairn.fio=\([^ ]*\).*/\1/p' /proc/cmdline)
IFS=, read rw bs depth secs <<EOF2
${spec:-randread,4k,16,10}
EOF2
command -v fio >/dev/null || fail "fio not in this initramfs (build.sh --fio)"
fio --name=guest --filename="$DISK" --direct=1 --ioengine=libaio \
	--rw="$rw" --bs="$bs" --iodepth="$depth" --runtime="$secs" \
	--time_based --size=256M --output-format=json >/tmp/fio.json 2>/tmp/fio.err ||
	{ cat /tmp/fio.err; fail "fio"; }
echo "CAIRN-FIO-JSON-BEGIN"
cat /tmp/fio.json
echo "CAIRN-FIO-JSON-END"
check_dmesg
echo "CAIRN-FIO-OK"
