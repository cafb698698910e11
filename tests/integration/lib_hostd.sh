# Helpers for the cairn-hostd integration tests and bench/hostd.sh. Source
# it after lib_cairnd.sh (it is not a test itself).
#
#   hostd_guest_image OUTDIR   kernel + initramfs for test VMs; sets
#                              GUEST_KERNEL and GUEST_INITRD
#
# The guest is the project's test guest, images/guest/build.sh (Debian's
# kernel, a busybox initramfs whose /init prints CAIRN-GUEST-READY on the
# serial console and runs /scripts/NAME for cairn.script=NAME). hostd's tests
# add a small overlay archive to it (the kernel unpacks concatenated cpio
# archives in order), with two scripts:
#   idle   load the ACPI button + evdev modules, start busybox acpid so the
#          ACPI power button (vm.stop) powers the guest off, set the address
#          given by cairn.ip=ADDR/LEN on eth0, then wait forever;
#   ping   the same, then ping cairn.peer=ADDR and print CAIRN-PING-OK or
#          CAIRN-PING-FAIL.
# Without images/guest/build.sh (a tree where it is not there yet) a minimal
# base with the same /init contract is built here instead.

hostd__base_image() { # OUT: OUT/base/{vmlinuz,initrd.img}
	local out=$1 root=$2 base=$1/base
	mkdir -p "$base"
	if [[ -x $root/images/guest/build.sh ]]; then
		"$root/images/guest/build.sh" "$base" >"$out/build.log" 2>&1 ||
			{ tail -n 20 "$out/build.log" >&2; return 1; }
		return 0
	fi
	[[ -s $base/vmlinuz && -s $base/initrd.img ]] && return 0
	local ir=$out/base-root kdeb
	kdeb=$(hostd__kernel_deb "$out") || return 1
	rm -rf "$out/kroot" "$ir" && dpkg -x "$kdeb" "$out/kroot"
	mkdir -p "$ir"/{bin,proc,sys,dev,tmp,scripts}
	cp "$(command -v busybox)" "$ir/bin/busybox"
	cat >"$ir/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
script=
for a in $(cat /proc/cmdline); do
	case $a in cairn.script=*) script=${a#cairn.script=} ;; esac
done
echo CAIRN-GUEST-READY
[ -x "/scripts/$script" ] && "/scripts/$script"
poweroff -f
INIT
	chmod +x "$ir/init"
	cp "$out"/kroot/boot/vmlinuz-* "$base/vmlinuz"
	(cd "$ir" && find . | cpio -o -H newc --quiet | gzip -1) >"$base/initrd.img"
}

hostd__kernel_deb() { # OUT -> path of the linux-image .deb
	local out=$1 pkg root=${CAIRN_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
	pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -n 1)
	[[ -n $pkg ]] || { echo "no linux-image-amd64 candidate (apt-get update)" >&2; return 1; }
	local f
	for f in "$root"/build/cache/"${pkg}"_*.deb "$out/${pkg}"_*.deb; do
		[[ -s $f ]] && { echo "$f"; return 0; }
	done
	(cd "$out" && apt-get download "$pkg" >/dev/null 2>&1) ||
		{ echo "apt-get download $pkg failed" >&2; return 1; }
	ls "$out/${pkg}"_*.deb | head -n 1
}

hostd_guest_image() {
	local out=$1 root=${CAIRN_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
	mkdir -p "$out"
	out=$(cd "$out" && pwd)
	command -v busybox >/dev/null || { echo "busybox-static not installed" >&2; return 1; }
	hostd__base_image "$out" "$root" || return 1
	GUEST_KERNEL=$out/base/vmlinuz
	GUEST_INITRD=$out/initrd-hostd.img
	if [[ -s $GUEST_INITRD && $GUEST_INITRD -nt $out/base/initrd.img &&
		$GUEST_INITRD -nt ${BASH_SOURCE[0]} ]]; then
		return 0
	fi
	local ov=$out/overlay kver kdeb
	# The bzImage setup header points at the version string (boot.rst:
	# kernel_version at 0x20e, relative to 0x200).
	kver=$(python3 -c 'import struct, sys
d = open(sys.argv[1], "rb").read(65536)
o = struct.unpack_from("<H", d, 0x20e)[0] + 0x200
print(d[o:d.index(b"\0", o)].split()[0].decode())' "$GUEST_KERNEL" 2>/dev/null)
	[[ -n $kver ]] || { echo "cannot tell the guest kernel's version" >&2; return 1; }
	kdeb=$(hostd__kernel_deb "$out") || return 1
	[[ $kdeb == *"linux-image-${kver}_"* ]] ||
		{ echo "kernel package $kdeb does not match the guest kernel $kver" >&2; return 1; }
	rm -rf "$ov" "$out/kmods" && mkdir -p "$ov"/{scripts,etc/acpi/PWRF,lib/modules/hostd}
	dpkg-deb --fsys-tarfile "$kdeb" | tar -x -C "$ov/lib/modules/hostd" \
		--wildcards --strip-components=7 \
		"./lib/modules/$kver/kernel/drivers/input/evdev.ko" \
		"./lib/modules/$kver/kernel/drivers/acpi/button.ko" 2>/dev/null ||
		{ echo "no evdev/button modules in $kdeb" >&2; return 1; }
	printf 'PWRF PWRF/00000080\n' >"$ov/etc/acpid.conf"
	printf '#!/bin/sh\necho CAIRN-GUEST-POWEROFF\npoweroff -f\n' >"$ov/etc/acpi/PWRF/00000080"
	cat >"$ov/scripts/idle" <<'IDLE'
#!/bin/sh
# hostd tests: answer the ACPI power button, configure eth0, wait.
for m in evdev button; do
	[ -d /sys/module/$m ] || insmod /lib/modules/hostd/$m.ko 2>/dev/null
done
acpid -c /etc/acpi -l /tmp/acpid.log
for a in $(cat /proc/cmdline); do
	case $a in
	cairn.ip=*) ip=${a#cairn.ip=} ;;
	cairn.peer=*) peer=${a#cairn.peer=} ;;
	esac
done
if [ -n "$ip" ]; then
	ip link set lo up
	ip link set eth0 up
	ip addr add "$ip" dev eth0
	echo "CAIRN-IP $ip"
fi
if [ "${0##*/}" = ping ]; then
	if ping -c 3 -w 30 "$peer" >/tmp/ping.out 2>&1; then
		echo "CAIRN-PING-OK $peer"
	else
		cat /tmp/ping.out
		echo "CAIRN-PING-FAIL $peer"
	fi
fi
while :; do sleep 3600; done
IDLE
	cp "$ov/scripts/idle" "$ov/scripts/ping"
	chmod +x "$ov/scripts/idle" "$ov/scripts/ping" "$ov/etc/acpi/PWRF/00000080"
	{
		cat "$out/base/initrd.img"
		(cd "$ov" && find . | cpio -o -H newc --quiet | gzip -1)
	} >"$GUEST_INITRD.tmp" && mv "$GUEST_INITRD.tmp" "$GUEST_INITRD"
}

# ---- cairn-hostd under test ----
# hostd_start [ARGS...]: starts cairn-hostd on $T/state and $T/hostd.sock and
# waits for its ready file. It takes lib_cairnd.sh's daemon slot
# (CAIRND_PID/CAIRND_LOG), so cleanup and fail() cover it.
HOSTD_READY_TIMEOUT=${HOSTD_READY_TIMEOUT:-30}
hostd_start() {
	local ready=$T/hostd.ready i
	HOSTD=$BUILD/bin/cairn-hostd
	VMCLI=$BUILD/bin/cairn-vm
	[[ -x $HOSTD && -x $VMCLI ]] || fail "cairn-hostd / cairn-vm not built"
	HOSTD_SOCK=$T/hostd.sock
	CAIRND_STARTS=$((CAIRND_STARTS + 1))
	CAIRND_LOG=$T/hostd.$CAIRND_STARTS.log
	rm -f "$ready"
	"$HOSTD" --state-dir "$T/state" --socket "$HOSTD_SOCK" \
		--ready-file "$ready" "$@" >"$CAIRND_LOG" 2>&1 &
	CAIRND_PID=$!
	for ((i = 0; i < HOSTD_READY_TIMEOUT * 20; i++)); do
		[[ -s $ready ]] && break
		kill -0 "$CAIRND_PID" 2>/dev/null || fail "cairn-hostd exited before it was ready"
		sleep 0.05
	done
	[[ -s $ready ]] || fail "cairn-hostd not ready after ${HOSTD_READY_TIMEOUT}s"
}

# With cairnd serving vdisks to the VMs: hostd_cairnd_start POOL ARGS...
# starts cairnd (cairnd_start ARGS), waits for the vhost socket SOCK given
# as HOSTD_VHOST_SOCK, and arms an exit trap that stops the agent first
# (it force-stops its VMs), then cairnd. hostd_stop_all stops both, checked.
CAIRND_OF_VHOST=
# hostd_term_agent: SIGTERM to the agent (CAIRND_PID), which force-stops
# its VMs; waits up to 10 s. For exit traps.
hostd_term_agent() {
	local i
	if [[ -n $CAIRND_PID ]] && kill -0 "$CAIRND_PID" 2>/dev/null; then
		kill -TERM "$CAIRND_PID" 2>/dev/null
		for ((i = 0; i < 200; i++)); do
			kill -0 "$CAIRND_PID" 2>/dev/null || break
			sleep 0.05
		done
	fi
}
hostd__cleanup() {
	local rc=$?
	hostd_term_agent
	CAIRND_PID=$CAIRND_OF_VHOST
	(exit $rc)
	cairn_cleanup
}
hostd_cairnd_start() {
	local i
	cairnd_start "$@"
	CAIRND_OF_VHOST=$CAIRND_PID
	trap hostd__cleanup EXIT
	for ((i = 0; i < 100; i++)); do
		[[ -S $HOSTD_VHOST_SOCK ]] && return 0
		sleep 0.05
	done
	fail "no vhost socket $HOSTD_VHOST_SOCK"
}
hostd_stop_all() {
	cairnd_stop # the agent
	CAIRND_PID=$CAIRND_OF_VHOST
	CAIRND_OF_VHOST=
	cairnd_stop # cairnd
}

vm() { "$VMCLI" --socket "$HOSTD_SOCK" "$@"; }

# vm_field NAME FIELD: one field of vm.status.
vm_field() {
	vm status "$1" --json | python3 -c \
		'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$2"
}

# wait_state NAME STATE SECONDS
wait_state() {
	local i st=
	for ((i = 0; i < $3 * 20; i++)); do
		st=$(vm_field "$1" state) || fail "vm.status $1"
		[[ $st == "$2" ]] && return 0
		sleep 0.05
	done
	fail "$1 is '$st', not '$2' after $3 s ($(vm_field "$1" reason))"
}

# wait_console NAME PATTERN COUNT SECONDS: the current console log of NAME
# shows PATTERN at least COUNT times.
wait_console() {
	local log i n=0
	log=$(vm_field "$1" console_log)
	for ((i = 0; i < $4 * 10; i++)); do
		n=$(grep -c -- "$2" "$log" 2>/dev/null || true)
		((${n:-0} >= $3)) && return 0
		sleep 0.1
	done
	echo "--- console of $1:" >&2
	tail -n 20 "$log" >&2 || true
	fail "$1: '$2' seen ${n:-0} times in $log, wanted $3, after $4 s"
}

# vm_def_file NAME FILE [EXTRA_JSON]: a kernel+initramfs VM, 1 vCPU, 512 MiB.
vm_def_file() {
	local name=$1 file=$2 extra=${3:-} cmdline=${VM_CMDLINE:-console=ttyS0 panic=-1 quiet cairn.script=idle}
	cat >"$file" <<JSON
{"name": "$name", "vcpus": 1, "memory_mib": 512,
 "boot": {"kernel": "$GUEST_KERNEL", "initrd": "$GUEST_INITRD",
          "cmdline": "$cmdline"}${extra:+, $extra}}
JSON
}
