#!/usr/bin/env bash
# The real-kernel tier: `pytest -m vcan tests/vcan` against a SocketCAN vcan0
# (CAN FD capable, mtu 72). Extra arguments go to pytest.
#
#   scripts/test_vcan.sh            # from a clone; CI calls it from .ci/run
#
# Natively when this machine's kernel can do it (vcan0 exists, or root can
# `modprobe vcan` and create it: a laptop, a Pi); otherwise inside a
# User-Mode Linux kernel (scripts/uml/run.sh), which installs Debian's
# user-mode-linux and busybox-static when missing and running as root. The
# tests need can-utils (cansend, candump, canplayer): installed the same way.
# BAVARD_VCAN_UML=1 forces User-Mode Linux even where the kernel has vcan.
# Runtime: about 30 s in UML on 2 shared cores (boot about 3 s).
# Exit status: pytest's (5, no test collected, is a failure here: the tier
# must run its tests), 125 when no kernel with vcan could be had.
. "$(dirname "$0")/venv.sh" test
cd "$ROOT"
set -u +e

if ! command -v canplayer >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq can-utils >&2 ||
      { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq can-utils >&2; }
  fi
  command -v canplayer >/dev/null 2>&1 ||
    { echo "test_vcan.sh: needs can-utils (sudo apt-get install -y can-utils)" >&2; exit 125; }
fi

# pytest inside the kernel that has vcan0; -p no:cacheprovider: the tree stays as it was
PYTEST=("$VENV/bin/python" -m pytest -m vcan tests/vcan -p no:cacheprovider "$@")
export PYTHONDONTWRITEBYTECODE=1

native_vcan() {
  [ -e /sys/class/net/vcan0 ] && return 0
  [ "$(id -u)" -eq 0 ] || return 1
  modprobe vcan 2>/dev/null
  ip link add dev vcan0 type vcan 2>/dev/null || return 1
  ip link set vcan0 mtu 72 && ip link set vcan0 up && CREATED=1
}

CREATED=0
if [ "${BAVARD_VCAN_UML:-0}" != 1 ] && native_vcan; then
  echo "test_vcan.sh: native vcan0" >&2
  [ "$CREATED" = 1 ] && trap 'ip link del dev vcan0' EXIT
  "${PYTEST[@]}"
  rc=$?
else
  echo "test_vcan.sh: no vcan in this kernel: running in User-Mode Linux" >&2
  "$ROOT/scripts/uml/run.sh" "${PYTEST[@]}"
  rc=$?
fi
exit "$rc"
