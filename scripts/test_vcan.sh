#!/usr/bin/env bash
# The real-kernel tier: `pytest -m vcan tests/vcan` against a SocketCAN vcan0
# (CAN FD capable, mtu 72). Extra arguments go to pytest.
#
#   scripts/test_vcan.sh            # from a clone; CI calls it from .ci/run
#   BAVARD_VCAN_RUNNER=qemu scripts/test_vcan.sh    # force a runner
#
# scripts/vcan_run.sh picks where: natively when this machine's kernel can
# (vcan0 exists, or root can `modprobe vcan` and create it: a laptop, a Pi),
# else inside User-Mode Linux (scripts/uml/run.sh), else, when UML dies at
# boot (hosts whose CPUs have AMX) or is missing, inside QEMU with Debian's
# kernel (scripts/qemu/run.sh). Each installs its Debian packages when missing
# and running as root. The tests need can-utils (cansend, candump,
# canplayer): installed the same way.
# Runtime on 2 shared cores: about 150 s in QEMU under TCG (a boot: 5 s idle,
# 10 s on a busy machine); in UML (a boot: 2 s) it took 35 s before the OBD tests.
# Exit status: pytest's (5, no test collected, is a failure here: the tier
# must run its tests); a guest that crashed or timed out is a failure (122,
# 123, 124, with the kernel's own line); 125 when no runner can exist here.
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

# -p no:cacheprovider, no bytecode: the tree stays as it was; no hypothesis plugin:
# nothing here uses it, and importing it costs seconds under TCG
export PYTHONDONTWRITEBYTECODE=1
exec "$ROOT/scripts/vcan_run.sh" "$VENV/bin/python" -m pytest -m vcan tests/vcan \
  -p no:cacheprovider -p no:hypothesispytest "$@"
