# Shared by the guest scripts (sourced as /scripts/lib). Not run alone.
DISK=${DISK:-/dev/vda}
MNT=/mnt
PATTERN_MIB=${PATTERN_MIB:-32}

# pattern: PATTERN_MIB MiB that depend only on the block number, so a
# later boot can regenerate and compare them.
pattern() {
	i=0
	while [ $i -lt "$PATTERN_MIB" ]; do
		yes "cairn block $i $(echo $i | md5sum | cut -c1-32)" | head -c 1048576
		i=$((i + 1))
	done
}

fail() {
	echo "CAIRN-FAIL $*"
	exit 1
}

# Kernel messages about the disk are failures too.
check_dmesg() {
	if dmesg | grep -E 'I/O error|blk_update_request|Buffer I/O error|EXT4-fs error' >/tmp/dmesg.err; then
		cat /tmp/dmesg.err
		fail "kernel reported IO errors"
	fi
}
