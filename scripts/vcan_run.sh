#!/usr/bin/env bash
# scripts/vcan_run.sh CMD [ARG...]: run CMD where there is a SocketCAN vcan0
# (CAN FD capable, mtu 72), print its output, exit with its status. The first
# of these that can run it does:
#   native  this kernel's vcan0: it exists, or root can `modprobe vcan` and add
#           it (a laptop, a Pi); removed again afterwards when added here;
#   uml     User-Mode Linux (scripts/uml/run.sh), about 2 s a boot;
#   qemu    QEMU with Debian's own kernel (scripts/qemu/run.sh), KVM when the
#           CPU has hardware virtualisation, else TCG: 5 to 10 s a boot.
# A UML that dies at boot (on hosts whose CPUs have AMX: "ptrace set fp regs
# failed", then a kernel panic) is said in one line with the kernel's words,
# and QEMU runs CMD instead. BAVARD_VCAN_RUNNER=native|uml|qemu forces one
# (auto, the default, is the order above; BAVARD_VCAN_UML=1 still means uml).
#
# Exit status: CMD's. A guest that crashes, panics or times out is a failure
# with the kernel's own line on stderr: 122 it did not boot (QEMU, or a forced
# UML), 123 it crashed while CMD ran, 124 CMD timed out. 125 only when no
# runner can exist here: no vcan in this kernel, and neither UML nor QEMU is
# installed nor installable (not root), or the forced one cannot be had.
set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/guest.sh"
WHO=vcan_run.sh
[ $# -ge 1 ] || { echo "usage: $0 CMD [ARG...]" >&2; exit "$GUEST_UNAVAILABLE"; }

RUNNER=${BAVARD_VCAN_RUNNER:-auto}
[ "${BAVARD_VCAN_UML:-0}" = 1 ] && [ "$RUNNER" = auto ] && RUNNER=uml
case $RUNNER in
  auto | native | uml | qemu) ;;
  *) echo "$WHO: BAVARD_VCAN_RUNNER must be auto, native, uml or qemu" >&2
     exit "$GUEST_UNAVAILABLE" ;;
esac

CREATED=0
native_vcan() {
  [ -e /sys/class/net/vcan0 ] && return 0
  [ "$(id -u)" -eq 0 ] || return 1
  modprobe vcan 2>/dev/null
  ip link add dev vcan0 type vcan 2>/dev/null || return 1
  CREATED=1
  ip link set vcan0 mtu 72 && ip link set vcan0 up
}

CAUSE=$(mktemp "${TMPDIR:-/tmp}/bavard-vcan.XXXXXX") || exit "$GUEST_UNAVAILABLE"
cleanup() {
  rm -f "$CAUSE"
  if [ "$CREATED" = 1 ]; then ip link del dev vcan0; fi
}
trap cleanup EXIT

# guest RUNNER CMD...: run CMD in the guest runner; its status, and its
# one-line cause (if the guest gave no result) in $CAUSE
guest() {
  : > "$CAUSE"
  BAVARD_GUEST_CAUSE_FILE=$CAUSE "$HERE/$1" "${@:2}"
}

if [ "$RUNNER" = auto ] || [ "$RUNNER" = native ]; then
  if native_vcan; then
    echo "$WHO: native vcan0" >&2
    "$@"
    exit $?
  fi
  if [ "$RUNNER" = native ]; then
    echo "$WHO: this kernel has no vcan0 and none can be added here" >&2
    exit "$GUEST_UNAVAILABLE"
  fi
fi

if [ "$RUNNER" = auto ] || [ "$RUNNER" = uml ]; then
  echo "$WHO: running in User-Mode Linux" >&2
  guest uml/run.sh "$@"
  rc=$?
  if [ "$RUNNER" = uml ] || { [ "$rc" -ne "$GUEST_NOBOOT" ] && [ "$rc" -ne "$GUEST_UNAVAILABLE" ]; }; then
    [ -s "$CAUSE" ] &&
      echo "$WHO: User-Mode Linux: $(cat "$CAUSE") (BAVARD_UML_DEBUG=1 prints the guest's logs)" >&2
    exit "$rc"
  fi
  if [ "$rc" -eq "$GUEST_NOBOOT" ]; then
    echo "$WHO: User-Mode Linux: $(cat "$CAUSE"); running in QEMU instead" >&2
  else
    echo "$WHO: no User-Mode Linux here; running in QEMU instead" >&2
  fi
fi

[ "$RUNNER" = qemu ] && echo "$WHO: running in QEMU" >&2
guest qemu/run.sh "$@"
rc=$?
[ -s "$CAUSE" ] &&
  echo "$WHO: QEMU: $(cat "$CAUSE") (BAVARD_QEMU_DEBUG=1 prints the guest's logs)" >&2
exit "$rc"
