#!/usr/bin/env bash
# All the tests: sets up .venv with the test tools on first use, then lint
# (ruff), types (mypy) and the test suite (pytest). Extra arguments go to pytest.
. "$(dirname "$0")/venv.sh" test
cd "$ROOT"
echo "== ruff"
ruff check agent tests scripts
echo "== mypy"
mypy
echo "== pytest"
pytest "$@"
