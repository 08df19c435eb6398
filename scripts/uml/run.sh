#!/usr/bin/env bash
# scripts/uml/run.sh CMD [ARG...]: run CMD as root inside a throwaway
# User-Mode Linux kernel that has SocketCAN and a vcan0 interface (CAN FD,
# mtu 72), print its output as it comes, exit with its status.
#
# For machines whose own kernel has no vcan (containers, CI sandboxes). UML is
# the Linux kernel built as an ordinary program: no KVM, no root, no host
# kernel module is needed. The guest's root is the host's / through hostfs,
# read-only, with a fresh tmpfs on /tmp, /run and /dev/shm; the current
# directory and BAVARD_VM_RW (colon-separated host paths) are mounted
# read-write at the same paths, so the host's venv, tools (can-utils) and
# tree are used as they are. The environment passes through the command
# file. Writes to the host happen only in those read-write paths.
# Debian's UML has no can-isotp module (scripts/qemu/run.sh has one).
#
# Needs Debian's user-mode-linux (the kernel and its modules) and
# busybox-static (insmod and poweroff inside the guest): installed with
# apt-get when missing and running as root, otherwise a message says what to
# install. Knobs: BAVARD_UML_MEM (768M), BAVARD_UML_TIMEOUT (seconds, 240),
# BAVARD_UML_APPEND (more kernel parameters), BAVARD_UML_DEBUG=1 (print the
# kernel's and init's logs afterwards).
# Exit status: CMD's, or as scripts/guest.sh says: 122 the guest did not boot
# (on hosts whose CPUs have AMX, Debian's UML dies at boot: "ptrace set fp regs
# failed"), 123 it crashed while CMD ran, 124 timeout, 125 no UML here.
set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/../guest.sh"
die() { echo "uml/run.sh: $*" >&2; exit "$GUEST_UNAVAILABLE"; }
[ $# -ge 1 ] || die "usage: $0 CMD [ARG...]"

LINUX=/usr/bin/linux.uml
need=()
[ -x "$LINUX" ] || need+=(user-mode-linux)
command -v busybox >/dev/null 2>&1 || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
  guest_install uml/run.sh "${need[@]}" || exit "$GUEST_UNAVAILABLE"
fi
MODDIR=$(ls -d /usr/lib/uml/modules/*/kernel 2>/dev/null | head -1)
[ -n "$MODDIR" ] || die "no UML modules under /usr/lib/uml/modules (package user-mode-linux)"

X=$(mktemp -d "${TMPDIR:-/tmp}/bavard-uml.XXXXXX") || die "mktemp failed"
trap 'rm -rf "$X"' EXIT
guest_cmd_file "$X" "$@"
echo "$MODDIR" > "$X/moddir"

# Consoles: con0 (kernel) -> $X/kernel.log; con1 = the guest's /dev/tty1 -> our stdout.
# Guest memory is a file in TMPDIR: /dev/shm keeps it in RAM.
SHM=/dev/shm; { [ -d "$SHM" ] && [ -w "$SHM" ]; } || SHM=$X
TIMEOUT=${BAVARD_UML_TIMEOUT:-240}
# shellcheck disable=SC2086  # BAVARD_UML_APPEND: several parameters
TMPDIR=$SHM guest_run 60 "$TIMEOUT" "$X" "$LINUX" mem="${BAVARD_UML_MEM:-768M}" \
  root=/dev/root rootfstype=hostfs rootflags=/ ro quiet init="$HERE/init" uml_dir="$X" \
  con=null con0=null,fd:3 con1=null,fd:1 ssl=null "BAVARD_UML_DIR=$X" \
  ${BAVARD_UML_APPEND:-} 3>"$X/kernel.log" </dev/null
rc=$(guest_status uml/run.sh "$X" "$X/kernel.log" "$TIMEOUT")
if [ "${BAVARD_UML_DEBUG:-0}" = 1 ]; then
  tail -n +1 "$X/kernel.log" "$X/init.log" >&2 2>/dev/null
elif [ -s "$X/rc" ] || [ -n "${BAVARD_GUEST_CAUSE_FILE:-}" ]; then
  :
else
  echo "uml/run.sh: BAVARD_UML_DEBUG=1 prints the kernel's and init's logs" >&2
fi
exit "$rc"
