#!/usr/bin/env bash
# Remove what scripts/install.sh installed. See --help.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/uninstall.sh [--purge] [--help]

Reverses scripts/install.sh: stops and disables bavard.service and every
bavard-can@IFACE.service, removes the unit files, the .network file, the
virtualenv /opt/bavard, the shell completion, the man page and the system
user "bavard".

Keeps the configuration /etc/bavard and the buffer /var/lib/bavard (data not
uploaded yet) unless --purge is given; with --purge also removes those and
/var/cache/bavard. Kept files stay owned by the removed user's uid: systemd
gives /var/lib/bavard back to a new "bavard" user on the next start.

Options:
  --purge     also remove /etc/bavard, /var/lib/bavard and /var/cache/bavard
  -h, --help  this help

Environment:
  DESTDIR=/some/root   remove the files under that root only (no systemctl, no userdel)
USAGE
}

PURGE=0
for arg in "$@"; do
  case $arg in
    -h|--help) usage; exit 0 ;;
    --purge) PURGE=1 ;;
    *) echo "uninstall.sh: unknown argument: $arg (see --help)" >&2; exit 2 ;;
  esac
done

DESTDIR=${DESTDIR:-}
DESTDIR=${DESTDIR%/}
USER_NAME=bavard
UNIT_DIR=/etc/systemd/system
say() { echo "uninstall.sh: $*"; }

if [ -n "$DESTDIR" ]; then
  say "DESTDIR=$DESTDIR: removing files only (no systemctl, no userdel)"
elif [ "$(id -u)" -ne 0 ]; then
  echo "uninstall.sh: run as root (sudo $0), or set DESTDIR" >&2
  exit 1
fi

remove() {
  local path=$DESTDIR$1
  if [ -e "$path" ] || [ -L "$path" ]; then
    rm -rf -- "$path"
    say "removed $1"
  fi
}

# ---- stop and disable, while the unit files still exist
if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then
  units=(bavard.service)
  # every enabled or running instance of the CAN template
  while IFS= read -r unit; do
    [ -n "$unit" ] && units+=("$unit")
  done < <(
    { find "$UNIT_DIR" -name 'bavard-can@?*.service' -printf '%f\n' 2>/dev/null
      systemctl list-units --all --plain --no-legend 'bavard-can@*' 2>/dev/null | awk '{print $1}'
    } | sort -u
  )
  for unit in "${units[@]}"; do
    systemctl disable --now --quiet "$unit" 2>/dev/null || true
  done
  say "stopped and disabled ${units[*]}"
fi
# enablement symlinks left behind (DESTDIR, or systemd not running)
if [ -d "$DESTDIR$UNIT_DIR" ]; then
  find "$DESTDIR$UNIT_DIR" -type l \( -name 'bavard.service' -o -name 'bavard-can@*.service' \) \
    -print -delete | sed "s|^$DESTDIR|uninstall.sh: removed |"
fi

remove "$UNIT_DIR/bavard.service"
remove "$UNIT_DIR/bavard-can@.service"
remove /etc/systemd/network/80-bavard-can0.network
remove /opt/bavard
remove /usr/share/bash-completion/completions/bavard
remove /usr/share/zsh/vendor-completions/_bavard
remove /usr/local/share/man/man1/bavard.1

if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl reset-failed bavard.service 2>/dev/null || true
fi

if [ -z "$DESTDIR" ] && getent passwd "$USER_NAME" >/dev/null; then
  userdel "$USER_NAME"
  getent group "$USER_NAME" >/dev/null && groupdel "$USER_NAME"
  say "removed the system user $USER_NAME"
fi

if [ "$PURGE" = 1 ]; then
  remove /etc/bavard
  remove /var/lib/bavard
  remove /var/cache/bavard
  remove /run/bavard
else
  for kept in /etc/bavard /var/lib/bavard; do
    [ -e "$DESTDIR$kept" ] && say "kept $kept (remove it with --purge)"
  done
fi
say "done"
