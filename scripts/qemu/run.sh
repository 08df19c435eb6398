#!/usr/bin/env bash
# scripts/qemu/run.sh CMD [ARG...]: run CMD as root inside a throwaway QEMU
# guest running Debian's own kernel, with SocketCAN, a vcan0 interface (CAN
# FD, mtu 72) and the CAN modules loaded (can, can-raw, can-bcm, can-gw,
# can-isotp, can-j1939, vcan, vxcan); print its output as it comes, exit
# with its status.
#
# For machines where neither this kernel has vcan nor User-Mode Linux boots
# (hosts whose CPUs have AMX: "ptrace set fp regs failed"). KVM when the CPU
# offers real hardware virtualisation, else TCG (software emulation: code runs
# several times slower). The guest's root is the host's / over 9p, read-only,
# with a tmpfs overlay on top (the guest's writes vanish with it) and a fresh
# tmpfs on /tmp, /run and /dev/shm; the current directory and BAVARD_VM_RW
# (colon-separated host paths) are shared read-write at the same paths, so the
# host's venv, tools (can-utils) and tree are used as they are. The
# environment passes through the command file.
#
# Needs Debian's qemu-system-x86 (qemu-system-arm on arm64) and busybox-static,
# installed with apt-get when missing and running as root (otherwise a
# message says what to install). The kernel is Debian's linux-image package,
# fetched once with `apt-get download` (about 70 MB) and kept, cut down to the
# kernel and the few modules the guest loads, in BAVARD_VM_CACHE
# (~/.cache/bavard-vm); `scripts/qemu/run.sh --prepare` does only that.
# Knobs: BAVARD_QEMU_ACCEL (auto|kvm|tcg), BAVARD_QEMU_MEM (1024, MiB),
# BAVARD_QEMU_SMP (2), BAVARD_QEMU_TIMEOUT (seconds, 900), BAVARD_QEMU_APPEND
# (more kernel parameters), BAVARD_QEMU_DEBUG=1 (print the kernel's and init's
# logs afterwards).
# Exit status: CMD's, or as scripts/guest.sh says: 122 the guest did not boot,
# 123 it crashed while CMD ran, 124 timeout, 125 no QEMU here.
set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/../guest.sh"
WHO=qemu/run.sh
die() { echo "$WHO: $*" >&2; exit "$GUEST_UNAVAILABLE"; }
[ $# -ge 1 ] || die "usage: $0 CMD [ARG...] | --prepare"
export PATH="$PATH:/usr/sbin:/sbin"  # depmod, modprobe for a user's PATH

MODS_BOOT="virtio_pci virtio_console 9pnet_virtio 9p overlay"
MODS_CAN="can can-raw can-bcm can-gw can-isotp can-j1939 vcan vxcan"
case $(uname -m) in
  x86_64) DEBARCH=amd64 QEMU=qemu-system-x86_64 QEMU_PKG=qemu-system-x86
          MACHINE=(-machine q35) CONSOLE=ttyS0 CPUFLAGS='vmx|svm' ;;
  aarch64) DEBARCH=arm64 QEMU=qemu-system-aarch64 QEMU_PKG=qemu-system-arm
           MACHINE=(-machine virt,gic-version=max) CONSOLE=ttyAMA0 CPUFLAGS='' ;;
  *) die "no QEMU recipe for $(uname -m)" ;;
esac

need=()
command -v "$QEMU" >/dev/null 2>&1 || need+=("$QEMU_PKG")
command -v busybox >/dev/null 2>&1 || need+=(busybox-static)
command -v depmod >/dev/null 2>&1 || need+=(kmod)
if [ ${#need[@]} -gt 0 ]; then
  guest_install "$WHO" "${need[@]}" || exit "$GUEST_UNAVAILABLE"
fi

CACHE=${BAVARD_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bavard-vm}
mkdir -p "$CACHE" || die "cannot create $CACHE"

# The kernel package apt would install now: linux-image-6.1.0-NN-amd64.
kernel_package() {
  apt-cache depends "linux-image-$DEBARCH" 2>/dev/null |
    awk '/Depends: linux-image-[0-9]/ { print $2; exit }'
}

# prepare KVER PKG: $CACHE/KVER/ with the kernel (an uncompressed vmlinux
# where it can be had: PVH boots it without the guest's slow decompression)
# and lib/modules/KVER with the modules the guest loads and their depmod files.
prepare() {
  local kver=$1 pkg=$2 tmp m ko deps
  tmp=$(mktemp -d "$CACHE/.prepare.XXXXXX") || die "mktemp failed"
  echo "$WHO: fetching $pkg into $CACHE (once)" >&2
  local apt_opts=()
  [ "$(id -u)" -eq 0 ] && apt_opts=(-o APT::Sandbox::User=root)
  (cd "$tmp" && apt-get download -q "${apt_opts[@]}" "$pkg" >&2) ||
    { rm -rf "$tmp"; die "apt-get download $pkg failed"; }
  dpkg-deb -x "$tmp"/*.deb "$tmp/full" && rm -f "$tmp"/*.deb &&
    depmod -b "$tmp/full" "$kver" || { rm -rf "$tmp"; die "cannot unpack $pkg"; }
  local md=lib/modules/$kver
  mkdir -p "$tmp/kit/$md"
  for m in $MODS_BOOT $MODS_CAN; do
    # "insmod /path/x.ko" for m and what it needs; "builtin m" when built in
    deps=$(modprobe -d "$tmp/full" -S "$kver" --show-depends "$m") ||
      { rm -rf "$tmp"; die "no module $m in $pkg"; }
    for ko in $(awk '$1 == "insmod" { print $2 }' <<<"$deps"); do
      ko=${ko#"$tmp/full/"}
      mkdir -p "$tmp/kit/$(dirname "$ko")" && cp "$tmp/full/$ko" "$tmp/kit/$ko" ||
        { rm -rf "$tmp"; die "cannot copy $ko"; }
    done
  done
  cp "$tmp/full/$md"/modules.builtin* "$tmp/full/$md/modules.order" "$tmp/kit/$md/"
  depmod -b "$tmp/kit" "$kver" || { rm -rf "$tmp"; die "depmod failed"; }
  local vmlinuz
  vmlinuz=$(ls "$tmp/full/boot/vmlinuz-"*) || { rm -rf "$tmp"; die "no kernel in $pkg"; }
  if [ "$DEBARCH" = amd64 ] && python3 - "$vmlinuz" "$tmp/kit/vmlinux" <<'PY'
# bzImage -> the ELF vmlinux inside (xz): QEMU boots it through PVH
import lzma, sys
data = open(sys.argv[1], "rb").read()
start = data.find(b"\xfd7zXZ\x00")
elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[start:]) if start >= 0 else b""
sys.exit(0 if elf[:4] == b"\x7fELF" and open(sys.argv[2], "wb").write(elf) else 1)
PY
  then :; else
    rm -f "$tmp/kit/vmlinux"
    cp "$vmlinuz" "$tmp/kit/vmlinuz"
  fi
  rm -rf "${CACHE:?}/$kver"
  mv "$tmp/kit" "$CACHE/$kver" && rm -rf "$tmp" && : > "$CACHE/$kver/ready" ||
    die "cannot write $CACHE/$kver"
}

# The kernel: the one the package lists name, else the newest one kept.
(
  flock -w 900 9 || die "another run has held $CACHE/.lock for 15 minutes"
  pkg=$(kernel_package)
  if [ -z "$pkg" ] && [ "$(id -u)" -eq 0 ] && [ -z "$(ls "$CACHE"/*/ready 2>/dev/null)" ]; then
    apt-get update -qq >&2
    pkg=$(kernel_package)
  fi
  if [ -n "$pkg" ] && [ ! -e "$CACHE/${pkg#linux-image-}/ready" ]; then
    prepare "${pkg#linux-image-}" "$pkg"
    for old in "$CACHE"/*/ready; do  # the kernels before it are not used again
      [ "$old" = "$CACHE/${pkg#linux-image-}/ready" ] || rm -rf "$(dirname "$old")"
    done
  fi
) 9>"$CACHE/.lock" || exit "$GUEST_UNAVAILABLE"
KDIR=$(ls -td "$CACHE"/*/ready 2>/dev/null | head -1)
KDIR=${KDIR%/ready}
[ -n "$KDIR" ] || die "no kernel in $CACHE: apt-get download linux-image-$DEBARCH failed"
KVER=${KDIR##*/}
KERNEL=$KDIR/vmlinux
[ -s "$KERNEL" ] || KERNEL=$KDIR/vmlinuz

# The initramfs: busybox, the modules, ./init; rebuilt when any of them changes.
BUSYBOX=$(readlink -f "$(command -v busybox)")
KEY=$( { cat "$HERE/init"; echo "$MODS_BOOT/$MODS_CAN"; ls -l "$BUSYBOX"; } | sha256sum | cut -c1-16)
INITRD=$KDIR/initramfs-$KEY.cpio.gz
if [ ! -s "$INITRD" ]; then
  ST=$(mktemp -d "$CACHE/.initramfs.XXXXXX") || die "mktemp failed"
  mkdir -p "$ST/bin" "$ST/etc" "$ST/proc" "$ST/sys" "$ST/dev" "$ST/lib"
  cp "$BUSYBOX" "$ST/bin/busybox" || die "cannot copy busybox"
  for applet in $("$ST/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$ST/bin/$applet"
  done
  cp -a "$KDIR/lib/modules" "$ST/lib/"
  cp "$HERE/init" "$ST/init" && chmod 755 "$ST/init"
  echo "$MODS_BOOT" > "$ST/etc/modules-boot"
  echo "$MODS_CAN" > "$ST/etc/modules-can"
  (cd "$ST" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1) > "$INITRD.tmp" &&
    mv "$INITRD.tmp" "$INITRD" || die "cannot build the initramfs"
  rm -rf "$ST"
  find "$KDIR" -maxdepth 1 -name 'initramfs-*' ! -name "${INITRD##*/}" -delete
fi
[ "$1" = --prepare ] && exit 0

ACCEL=${BAVARD_QEMU_ACCEL:-auto}
if [ "$ACCEL" = auto ]; then
  # /dev/kvm alone is not enough: on some hosts it is PVM (kvm_pvm), which
  # cannot run a stock kernel; real hardware virtualisation shows in the flags
  ACCEL=tcg
  if [ -w /dev/kvm ] && [ ! -d /sys/module/kvm_pvm ] &&
     { [ -z "$CPUFLAGS" ] || grep -q -w -E "$CPUFLAGS" /proc/cpuinfo; }; then
    ACCEL=kvm
  fi
fi
case $ACCEL in
  kvm) ACC=(-accel kvm -cpu host) ;;
  tcg) ACC=(-accel tcg -cpu "${BAVARD_QEMU_CPU:-max}") ;;
  *) die "BAVARD_QEMU_ACCEL must be auto, kvm or tcg" ;;
esac

# under TCG the guest's code runs several times slower: tests/vcan stretch their waits
[ "$ACCEL" = tcg ] && export BAVARD_VCAN_SLOW=${BAVARD_VCAN_SLOW:-4}

X=$(mktemp -d "${TMPDIR:-/tmp}/bavard-qemu.XXXXXX") || die "mktemp failed"
trap 'rm -rf "$X"' EXIT
guest_cmd_file "$X" "$@"
FS=(-fsdev "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap"
    -device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot
    -fsdev "local,id=xfer,path=$X,security_model=none"
    -device virtio-9p-pci,fsdev=xfer,mount_tag=xfer)
i=0
while read -r dir; do
  [ -d "$dir" ] || die "not a directory: $dir"
  FS+=(-fsdev "local,id=rw$i,path=$dir,security_model=none,multidevs=remap"
       -device "virtio-9p-pci,fsdev=rw$i,mount_tag=rw$i")
  i=$((i + 1))
done < "$X/rw"

TIMEOUT=${BAVARD_QEMU_TIMEOUT:-900}
guest_run 180 "$TIMEOUT" "$X" "$QEMU" -nodefaults -no-user-config -display none -no-reboot \
  "${MACHINE[@]}" "${ACC[@]}" -smp "${BAVARD_QEMU_SMP:-2}" -m "${BAVARD_QEMU_MEM:-1024}" \
  -kernel "$KERNEL" -initrd "$INITRD" \
  -append "console=$CONSOLE panic=-1 rdinit=/init ${BAVARD_QEMU_APPEND:-}" \
  -serial "file:$X/kernel.log" \
  -device virtio-serial-pci -chardev stdio,id=out,signal=off -device virtconsole,chardev=out \
  "${FS[@]}" </dev/null
rc=$(guest_status "$WHO" "$X" "$X/kernel.log" "$TIMEOUT")
if [ "${BAVARD_QEMU_DEBUG:-0}" = 1 ]; then
  echo "$WHO: $ACCEL, kernel $KVER" >&2
  tail -n +1 "$X/kernel.log" "$X/init.log" >&2 2>/dev/null
elif [ ! -s "$X/rc" ] && [ -z "${BAVARD_GUEST_CAUSE_FILE:-}" ]; then
  echo "$WHO: BAVARD_QEMU_DEBUG=1 prints the kernel's and init's logs" >&2
fi
exit "$rc"
