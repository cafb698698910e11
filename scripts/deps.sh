#!/usr/bin/env bash
# Install the Debian packages Cairn needs to build, test, demo and bench.
# A fast no-op when everything is already there; otherwise one `apt-get update`
# and one `apt-get install` of just the missing packages (as root, or via sudo).
set -euo pipefail

PKGS=(
	# build
	build-essential pkg-config clang libclang-rt-14-dev
	# libraries the code links
	libisal-dev librocksdb-dev libuv1-dev liburing-dev libssl-dev
	libjansson-dev libraft-dev libnbd-dev libh2o-dev libcurl4-openssl-dev
	# real clients and peers for tests and benchmarks
	libnbd-bin nbdkit qemu-utils qemu-system-x86 qemu-block-extra fio
	libiscsi-bin libiscsi-dev tgt
	# guest images for hypervisor tests (the kernel is fetched with
	# `apt-get download` and unpacked, never installed on the host)
	busybox-static cpio kmod
	# UEFI guests: the firmware, and what images/uefi/build.sh makes a
	# UEFI-bootable disk with (GPT, FAT32 EFI system partition, a unified
	# kernel image on systemd-stub; objcopy comes with build-essential)
	ovmf systemd-boot-efi fdisk dosfstools mtools
	# used by the scripts and tests
	iproute2 procps python3
)

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
	echo "deps.sh: not a Debian system; install the equivalents of:" >&2
	echo "  ${PKGS[*]}" >&2
	exit 0
fi

missing=()
for p in "${PKGS[@]}"; do
	status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	[[ $status == "install ok installed" ]] || missing+=("$p")
done
((${#missing[@]} == 0)) && exit 0

echo "deps.sh: installing ${missing[*]}"
if ((EUID == 0)); then
	as_root=(env DEBIAN_FRONTEND=noninteractive)
elif command -v sudo >/dev/null 2>&1; then
	as_root=(sudo env DEBIAN_FRONTEND=noninteractive)
else
	echo "deps.sh: need root (or sudo) to install: ${missing[*]}" >&2
	exit 1
fi
"${as_root[@]}" apt-get update -q
"${as_root[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "deps.sh: installed ${missing[*]}"
