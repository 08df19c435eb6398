#!/usr/bin/env bash
# All the tests: installs the Debian packages they use when missing (as root),
# sets up .venv with the test tools on first use, then lint (ruff), types
# (mypy), the test suite (pytest), and the real-kernel vcan tier
# (scripts/test_vcan.sh: native vcan0, else User-Mode Linux). Extra arguments
# go to pytest. Without any kernel with vcan the tier is skipped with a note,
# unless BAVARD_REQUIRE_VCAN=1 (CI sets it): then that is a failure.
set -eu
. "$(dirname "$0")/test_deps.sh"
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
if [ "$rc" -eq 125 ] && [ "${BAVARD_REQUIRE_VCAN:-0}" != 1 ]; then
  echo "vcan tier skipped: no kernel with vcan here (see scripts/test_vcan.sh)" >&2
  exit 0
fi
exit "$rc"
