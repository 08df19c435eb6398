#!/usr/bin/env bash
# scripts/uml/run.sh CMD [ARG...]: run CMD as root inside a throwaway
# User-Mode Linux kernel that has SocketCAN and a vcan0 interface (CAN FD,
# mtu 72), print its output as it comes, exit with its status.
#
# For machines whose own kernel has no vcan (containers, CI sandboxes). UML is
# the Linux kernel built as an ordinary program: no KVM, no root, no host
# kernel module is needed. The guest's root is the host's / through hostfs,
# read-only, with a fresh tmpfs on /tmp, /run and /dev/shm; the current
# directory and BAVARD_UML_RW (colon-separated host paths) are mounted
# read-write at the same paths, so the host's venv, tools (can-utils) and
# tree are used as they are. The environment passes through the command
# file. Writes to the host happen only in those read-write paths.
#
# Needs Debian's user-mode-linux (the kernel and its modules) and
# busybox-static (insmod and poweroff inside the guest): installed with
# apt-get when missing and running as root, otherwise a message says what to
# install. Knobs: BAVARD_UML_MEM (768M), BAVARD_UML_TIMEOUT (seconds, 240),
# BAVARD_UML_DEBUG=1 (print the kernel's and init's logs afterwards).
# Exit status: CMD's; 124 on timeout; 125 when the guest could not run it.
set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
die() { echo "uml/run.sh: $*" >&2; exit 125; }
[ $# -ge 1 ] || die "usage: $0 CMD [ARG...]"

LINUX=/usr/bin/linux.uml
need=()
[ -x "$LINUX" ] || need+=(user-mode-linux)
command -v busybox >/dev/null 2>&1 || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    die "needs the Debian packages: ${need[*]} (sudo apt-get install -y ${need[*]})"
  fi
  echo "uml/run.sh: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${need[@]}" >&2 ||
    { apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends "${need[@]}" >&2; } ||
    die "could not install ${need[*]}"
fi
MODDIR=$(ls -d /usr/lib/uml/modules/*/kernel 2>/dev/null | head -1)
[ -n "$MODDIR" ] || die "no UML modules under /usr/lib/uml/modules (package user-mode-linux)"

X=$(mktemp -d "${TMPDIR:-/tmp}/bavard-uml.XXXXXX") || die "mktemp failed"
trap 'rm -rf "$X"' EXIT
# the command file: the caller's exported environment, its directory, the command
{
  ( set -o posix; export -p ) | grep -v -E '^(declare -x|export) (PWD|OLDPWD|SHLVL|_|HOSTNAME|TERM|TMPDIR)='
  printf 'cd %q || exit 125\n' "$PWD"
  printf 'exec'; printf ' %q' "$@"; printf '\n'
} > "$X/cmd.sh"
printf '%s\n' "$PWD" ${BAVARD_UML_RW:+$(tr ':' '\n' <<<"$BAVARD_UML_RW")} > "$X/rw"
echo "$MODDIR" > "$X/moddir"

# Consoles: con0 (kernel) -> $X/kernel.log; con1 = the guest's /dev/tty1 -> our stdout.
# Guest memory is a file in TMPDIR: /dev/shm keeps it in RAM.
SHM=/dev/shm; { [ -d "$SHM" ] && [ -w "$SHM" ]; } || SHM=$X
TMPDIR=$SHM timeout -k 5 "${BAVARD_UML_TIMEOUT:-240}" "$LINUX" mem="${BAVARD_UML_MEM:-768M}" \
  root=/dev/root rootfstype=hostfs rootflags=/ ro quiet init="$HERE/init" uml_dir="$X" \
  con=null con0=null,fd:3 con1=null,fd:1 ssl=null "BAVARD_UML_DIR=$X" \
  3>"$X/kernel.log" </dev/null
urc=$?
if [ -s "$X/rc" ]; then
  rc=$(cat "$X/rc")
else
  echo "uml/run.sh: the guest ended without a result (linux.uml status $urc)" >&2
  tail -n 20 "$X/kernel.log" "$X/init.log" >&2 2>/dev/null
  if [ "$urc" -eq 124 ]; then rc=124; else rc=125; fi
fi
[ "${BAVARD_UML_DEBUG:-0}" = 1 ] && tail -n +1 "$X/kernel.log" "$X/init.log" >&2
exit "$rc"
