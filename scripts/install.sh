#!/usr/bin/env bash
# Install bavard as a system service on Debian / Raspberry Pi OS, from a clone.
# Run as root from the clone; safe to run again (an upgrade, or nothing to do).
# See --help.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/install.sh [--skip-venv] [--help]

Installs bavard from this clone as a systemd service:
  - apt-get installs python3-venv and can-utils when missing;
  - creates the system user and group "bavard" (no home directory, nologin);
    members of the group may use the service's control socket (bavard status);
  - creates the virtualenv /opt/bavard/venv and pip-installs this clone into it
    (again only when the sources changed since the last install);
  - copies systemd/bavard.toml to /etc/bavard/bavard.toml, only if there
    is no configuration yet (an operator's file is never overwritten);
  - installs the bash and zsh completion and the man page bavard(1), generated
    by the virtualenv's bavard;
  - installs bavard.service and bavard-can@.service into /etc/systemd/system
    and 80-bavard-can0.network into /etc/systemd/network;
  - when systemd runs the machine: systemctl daemon-reload, enable bavard, and
    enable bavard-can@can0 unless systemd-networkd brings can0 up.
It does not start the service: edit /etc/bavard/bavard.toml, check it with
`/opt/bavard/venv/bin/bavard config check /etc/bavard/bavard.toml`, then
`systemctl start bavard`. A second run changes nothing.

Options:
  --skip-venv   do not create or update the virtualenv (also: BAVARD_INSTALL_SKIP_VENV=1)
  -h, --help    this help

Environment:
  DESTDIR=/some/root   install the files under that root only: no apt-get, no
                       useradd, no chown, no systemctl (for packaging and tests).
                       The virtualenv is still made there unless skipped; its
                       scripts then point into DESTDIR.
USAGE
}

SKIP_VENV=${BAVARD_INSTALL_SKIP_VENV:-0}
for arg in "$@"; do
  case $arg in
    -h|--help) usage; exit 0 ;;
    --skip-venv) SKIP_VENV=1 ;;
    *) echo "install.sh: unknown argument: $arg (see --help)" >&2; exit 2 ;;
  esac
done

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DESTDIR=${DESTDIR:-}
DESTDIR=${DESTDIR%/}
USER_NAME=bavard
OPT=/opt/bavard
VENV=$OPT/venv
ETC=/etc/bavard
UNIT_DIR=/etc/systemd/system
NETWORK_DIR=/etc/systemd/network

say() { echo "install.sh: $*"; }
changed=0

if [ -n "$DESTDIR" ]; then
  say "DESTDIR=$DESTDIR: installing files only (no apt-get, useradd, chown or systemctl)"
elif [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: run as root (sudo $0), or set DESTDIR to install files into a root" >&2
  exit 1
fi

# put SRC DEST MODE [GROUP]: copy when the content differs; fix the mode (and
# group, not under DESTDIR) when it differs. Untouched files keep their mtime.
put() {
  local src=$1 dst=$DESTDIR$2 mode=$3 group=${4:-root}
  if [ ! -f "$dst" ] || ! cmp -s "$src" "$dst"; then
    mkdir -p "$(dirname "$dst")"
    cp "$src" "$dst.bavard-new"
    chmod "$mode" "$dst.bavard-new"
    mv -f "$dst.bavard-new" "$dst"
    say "installed $2"
    changed=1
  fi
  if [ "$(stat -c %a "$dst")" != "${mode#0}" ]; then
    chmod "$mode" "$dst"
    changed=1
  fi
  if [ -z "$DESTDIR" ] && [ "$(stat -c %U:%G "$dst")" != "root:$group" ]; then
    chown "root:$group" "$dst"
    changed=1
  fi
}

# ---- packages
if [ -z "$DESTDIR" ]; then
  missing=()
  python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
  command -v candump >/dev/null 2>&1 || missing+=(can-utils)
  if [ ${#missing[@]} -gt 0 ]; then
    if command -v apt-get >/dev/null 2>&1; then
      say "apt-get install ${missing[*]}"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
      changed=1
    else
      echo "install.sh: please install: ${missing[*]} (no apt-get here)" >&2
      exit 1
    fi
  fi
fi

# ---- the system user
if [ -z "$DESTDIR" ] && ! getent passwd "$USER_NAME" >/dev/null; then
  nologin=$(command -v nologin || echo /usr/sbin/nologin)
  if getent group "$USER_NAME" >/dev/null; then group_opt=(--gid "$USER_NAME"); else group_opt=(--user-group); fi
  useradd --system "${group_opt[@]}" --no-create-home --home-dir /var/lib/bavard \
    --shell "$nologin" --comment "bavard telematics agent" "$USER_NAME"
  say "created the system user $USER_NAME"
  say "technicians use the control socket (bavard status, live, ...) as members of the"
  say "  group $USER_NAME: usermod -aG $USER_NAME NAME (then log in again)"
  changed=1
fi

# ---- the virtualenv, updated only when the sources changed
source_hash() {
  (cd "$SRC" && find agent dbc pyproject.toml README.md LICENSE -type f \
     ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 2>/dev/null \
     | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
}
if [ "$SKIP_VENV" = 1 ]; then
  say "skipping the virtualenv ($DESTDIR$VENV)"
else
  venv=$DESTDIR$VENV
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c '' 2>/dev/null; then
    mkdir -p "$DESTDIR$OPT"
    rm -rf "$venv"
    python3 -m venv "$venv"
    say "created the virtualenv $VENV"
    changed=1
  fi
  want=$(source_hash)
  stamp=$venv/.bavard-source
  if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    say "pip install $SRC into $VENV"
    "$venv/bin/python" -m pip install --quiet --no-input --disable-pip-version-check "$SRC"
    echo "$want" >"$stamp"
    changed=1
  fi
fi

# ---- configuration: never overwrite an operator's file
if [ ! -e "$DESTDIR$ETC/bavard.toml" ]; then
  put "$SRC/systemd/bavard.toml" "$ETC/bavard.toml" 0640 "$USER_NAME"
  say "edit $ETC/bavard.toml for this vehicle (it reads can0 through the demo DBC)"
fi
# the demo vehicle's DBC, which the first configuration refers to
put "$SRC/dbc/demo_vehicle.dbc" "$ETC/dbc/demo_vehicle.dbc" 0644

# ---- shell completion and man page, generated by the installed bavard from its parser
if [ -x "$DESTDIR$VENV/bin/bavard" ]; then
  gen=$(mktemp -d)
  "$DESTDIR$VENV/bin/bavard" completion bash >"$gen/bavard.bash"
  "$DESTDIR$VENV/bin/bavard" completion zsh >"$gen/_bavard"
  "$DESTDIR$VENV/bin/bavard" man >"$gen/bavard.1"
  put "$gen/bavard.bash" /usr/share/bash-completion/completions/bavard 0644
  put "$gen/_bavard" /usr/share/zsh/vendor-completions/_bavard 0644
  put "$gen/bavard.1" /usr/local/share/man/man1/bavard.1 0644
  rm -rf "$gen"
else
  say "no $VENV/bin/bavard: skipped the shell completion and the man page"
fi

# ---- units
put "$SRC/systemd/bavard.service" "$UNIT_DIR/bavard.service" 0644
put "$SRC/systemd/bavard-can@.service" "$UNIT_DIR/bavard-can@.service" 0644
put "$SRC/systemd/80-bavard-can0.network" "$NETWORK_DIR/80-bavard-can0.network" 0644

# ---- systemd
if [ -n "$DESTDIR" ]; then
  say "DESTDIR set: skipped systemctl; on the target run:"
  say "  systemctl daemon-reload && systemctl enable bavard.service"
elif [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl is-enabled --quiet bavard.service || { systemctl enable --quiet bavard.service; changed=1; }
  if systemctl is-enabled --quiet systemd-networkd.service 2>/dev/null; then
    say "systemd-networkd brings can0 up ($NETWORK_DIR/80-bavard-can0.network)"
  elif ! systemctl is-enabled --quiet bavard-can@can0.service 2>/dev/null; then
    systemctl enable --quiet bavard-can@can0.service
    say "enabled bavard-can@can0.service (no systemd-networkd here)"
    changed=1
  fi
  if systemctl is-active --quiet bavard.service; then
    [ "$changed" = 1 ] && say "bavard is running: systemctl restart bavard to use what changed"
  else
    say "start it with: systemctl start bavard"
  fi
else
  say "systemd is not running this machine: skipped systemctl; when it is, run:"
  say "  systemctl daemon-reload && systemctl enable --now bavard.service"
fi

if [ "$changed" = 0 ]; then say "nothing to change"; else say "done"; fi
