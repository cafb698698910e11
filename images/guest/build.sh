#!/usr/bin/env bash
# Builds the test/demo guest: OUTDIR/vmlinuz and OUTDIR/initrd.img, from
# Debian packages only (see images/guest/README.md).
#
#   images/guest/build.sh OUTDIR            kernel + base initramfs
#   images/guest/build.sh --fio OUTDIR      also OUTDIR/initrd-fio.img: the
#                                           base plus fio and its libraries
#
# The kernel is Debian's: the linux-image-*-amd64 package that
# linux-image-amd64 depends on, fetched with `apt-get download` into
# build/cache/ and unpacked with `dpkg -x` (never installed on the host).
# Its virtio drivers and ext4 are modules: the ones the guest needs, and
# their dependencies from the package's modules.dep (made by `depmod -b` on
# the unpacked tree), go into the initramfs with a load order.
#
# The initramfs (cpio newc + gzip) holds busybox-static, mke2fs with its
# shared libraries, the modules, /init and the test scripts of
# images/guest/scripts/. Idempotent: when no input changed (this script, the
# scripts, the kernel package, busybox, mke2fs, fio) it exits at once.
set -euo pipefail

WITH_FIO=0
if [[ ${1:-} == --fio ]]; then
	WITH_FIO=1
	shift
fi
if (($# != 1)); then
	echo "usage: $0 [--fio] OUTDIR" >&2
	exit 2
fi
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=$1
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
CACHE=${CAIRN_CACHE:-$ROOT/build/cache}
mkdir -p "$CACHE"

log() { echo "guest-image: $*" >&2; }
die() { echo "guest-image: $*" >&2; exit 1; }
for c in apt-cache apt-get dpkg dpkg-deb depmod cpio gzip ldd sha256sum; do
	command -v "$c" >/dev/null || die "$c not found (make deps)"
done
BUSYBOX=$(command -v busybox || true)
[[ -n $BUSYBOX ]] && file -L "$BUSYBOX" 2>/dev/null | grep -q 'statically linked' ||
	BUSYBOX=/bin/busybox
[[ -x $BUSYBOX ]] || die "busybox-static not installed (make deps)"
MKE2FS=$(command -v mke2fs || echo /sbin/mke2fs)
[[ -x $MKE2FS ]] || die "mke2fs not found (e2fsprogs)"

# ---- the kernel package ---------------------------------------------------
KPKG=$(apt-cache depends linux-image-amd64 2>/dev/null |
	awk '$1 == "Depends:" && $2 ~ /^linux-image-.*-amd64$/ { print $2; exit }')
[[ -n $KPKG ]] || die "cannot resolve linux-image-amd64 (apt-get update?)"
KVER_PKG=$(apt-cache policy "$KPKG" | awk '/Candidate:/ { print $2 }')
DEB=$(ls "$CACHE/${KPKG}_"*"_amd64.deb" 2>/dev/null | sort -V | tail -n 1 || true)
if [[ -z $DEB || ( -n $KVER_PKG && $KVER_PKG != "(none)" &&
	$(dpkg-deb -f "$DEB" Version) != "$KVER_PKG" ) ]]; then
	log "downloading $KPKG $KVER_PKG"
	(cd "$CACHE" && apt-get download "$KPKG" >/dev/null 2>"$CACHE/apt.log") ||
		{ cat "$CACHE/apt.log" >&2; die "apt-get download $KPKG failed"; }
	DEB=$(ls "$CACHE/${KPKG}_"*"_amd64.deb" | sort -V | tail -n 1)
fi
KVER=${KPKG#linux-image-}

# ---- up to date? -----------------------------------------------------------
base_hash() {
	{
		sha256sum "$HERE/build.sh" "$HERE"/init "$HERE"/scripts/* "$BUSYBOX" "$MKE2FS"
		basename "$DEB"
		stat -c %s "$DEB"
	} | sha256sum | cut -d' ' -f1
}
HASH=$(base_hash)
FIO_HASH=
((WITH_FIO)) && FIO_HASH=$({ echo "$HASH"; sha256sum "$(command -v fio)"; } | sha256sum | cut -d' ' -f1)
base_ok=0
[[ -s $OUT/vmlinuz && -s $OUT/initrd.img && -f $OUT/.inputs &&
	$(cat "$OUT/.inputs") == "$HASH" ]] && base_ok=1
fio_ok=1
if ((WITH_FIO)); then
	[[ -s $OUT/initrd-fio.img && -f $OUT/.inputs-fio &&
		$(cat "$OUT/.inputs-fio") == "$FIO_HASH" ]] || fio_ok=0
fi
((base_ok && fio_ok)) && exit 0

WORK=$OUT/.work
rm -rf "$WORK"
mkdir -p "$WORK/kernel" "$WORK/root"
trap 'rm -rf "$WORK"' EXIT

# copy_prog SRC DST: a dynamic program and every library ldd names.
copy_prog() {
	local src=$1 dst=$2 lib
	mkdir -p "$(dirname "$R$dst")"
	cp -L "$src" "$R$dst"
	for lib in $(ldd "$src" | awk '/=> \// { print $3 } /^\t\/lib/ { print $1 }'); do
		[[ -e $R$lib ]] && continue
		mkdir -p "$(dirname "$R$lib")"
		cp -L "$lib" "$R$lib"
	done
}

build_base() {
log "unpacking $(basename "$DEB")"
dpkg -x "$DEB" "$WORK/kernel"
MODDIR=$WORK/kernel/lib/modules/$KVER
[[ -d $MODDIR ]] || die "no modules for $KVER in $DEB"
depmod -b "$WORK/kernel" "$KVER"

# ---- modules, dependencies first ------------------------------------------
# crc32c_generic: ext4 and jbd2 ask for crypto "crc32c" (modules.softdep).
WANT_MODS=(crc32c_generic virtio_pci virtio_blk virtio_net ext4)
declare -A seen=()
ORDER=()
add_mod() { # path relative to MODDIR, as in modules.dep
	local m=$1 deps d
	[[ -n ${seen[$m]:-} ]] && return 0
	seen[$m]=1
	deps=$(awk -v m="$m:" '$1 == m { $1 = ""; print }' "$MODDIR/modules.dep")
	# modules.dep lists what m needs; each may need others.
	for d in $deps; do add_mod "$d"; done
	ORDER+=("$m")
}
for name in "${WANT_MODS[@]}"; do
	path=$(awk -v n="/$name.ko" '{ p = $1; sub(/:$/, "", p) }
		index(p, n) && substr(p, length(p) - length(n) + 1) == n { print p; exit }' \
		"$MODDIR/modules.dep")
	[[ -n $path ]] || die "module $name not in $KPKG"
	add_mod "$path"
done

R=$WORK/root
mkdir -p "$R"/{bin,sbin,etc,proc,sys,dev,mnt,tmp,run,scripts,lib/modules,usr/bin,usr/sbin}
: >"$R/etc/modules.order"
for m in "${ORDER[@]}"; do
	cp "$MODDIR/$m" "$R/lib/modules/"
	echo "$(basename "$m")" >>"$R/etc/modules.order"
done

# ---- programs --------------------------------------------------------------
cp "$BUSYBOX" "$R/bin/busybox"
copy_prog "$MKE2FS" /usr/local/sbin/mke2fs
[[ -f /etc/mke2fs.conf ]] && cp /etc/mke2fs.conf "$R/etc/"
cp "$HERE/init" "$R/init"
chmod 755 "$R/init"
for s in "$HERE"/scripts/*.sh; do
	install -m 755 "$s" "$R/scripts/$(basename "$s" .sh)"
done
echo "$KVER" >"$R/etc/cairn-guest-kernel"

log "initramfs ($(du -sh "$R" | cut -f1) unpacked)"
mkcpio "$R" "$OUT/initrd.img"
cp "$WORK/kernel/boot/vmlinuz-$KVER" "$OUT/vmlinuz.tmp"
mv "$OUT/vmlinuz.tmp" "$OUT/vmlinuz"
echo "$HASH" >"$OUT/.inputs"
}

mkcpio() { # DIR OUT: reproducible cpio newc + gzip
	(cd "$1" && find . -print0 | LC_ALL=C sort -z |
		cpio --null -o -H newc --owner=0:0 --quiet --reproducible) |
		gzip -n -6 >"$2.tmp"
	mv "$2.tmp" "$2"
}

((base_ok)) || build_base
if ((WITH_FIO)); then
	# A second cpio appended to the first: the kernel unpacks both.
	F=$WORK/fio
	mkdir -p "$WORK" "$F"
	R=$F copy_prog "$(command -v fio)" /usr/bin/fio
	mkcpio "$F" "$WORK/fio.cpio.gz"
	cat "$OUT/initrd.img" "$WORK/fio.cpio.gz" >"$OUT/initrd-fio.img.tmp"
	mv "$OUT/initrd-fio.img.tmp" "$OUT/initrd-fio.img"
	echo "$FIO_HASH" >"$OUT/.inputs-fio"
fi
log "built $OUT (kernel $KVER)"
