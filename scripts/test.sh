#!/usr/bin/env bash
# All the tests: installs the Debian packages they use when missing (as root),
# sets up .venv with the test tools on first use, then lint (ruff), types
# (mypy), the test suite (pytest), and the real-kernel vcan tier
# (scripts/test_vcan.sh: native vcan0, else User-Mode Linux, else QEMU). Extra
# arguments go to pytest. The tier's result is the command's: a failure, a
# guest that crashed or timed out, fails it. Only when no runner can exist
# here at all (no vcan in this kernel, no UML nor QEMU and no root to install
# them: status 125) is the tier skipped with a note, and not even then when
# BAVARD_REQUIRE_VCAN=1 (CI sets it): then that is a failure too.
set -eu
. "$(dirname "$0")/test_deps.sh" install
. "$(dirname "$0")/venv.sh" test
cd "$ROOT"
echo "== ruff"
ruff check agent tests scripts
echo "== mypy"
mypy
echo "== pytest"
pytest "$@"
echo "== vcan tier"
set +e
scripts/test_vcan.sh "$@"
rc=$?
set -e
if [ "$rc" -eq 125 ]; then
  if [ "${BAVARD_REQUIRE_VCAN:-0}" = 1 ]; then
    echo "vcan tier: no runner can exist here (see above), and BAVARD_REQUIRE_VCAN=1" >&2
    exit 1
  fi
  echo "vcan tier skipped: no kernel with vcan here and no UML nor QEMU (see above;" \
       "as root the test command installs them)" >&2
  exit 0
fi
[ "$rc" -eq 0 ] || echo "vcan tier: failed (status $rc)" >&2
exit "$rc"
