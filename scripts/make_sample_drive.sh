#!/bin/sh
# Regenerate tests/data/sample_drive.log: one drive cycle (240 s) of the demo
# vehicle (dbc/demo_vehicle.dbc), seed 1, as a candump -l log on channel can0.
# The output is deterministic: tests/test_simulator.py checks that running this
# command again gives the shipped file byte for byte.
#
#     scripts/make_sample_drive.sh            # uses .venv/bin/python
#     PYTHON=python3 scripts/make_sample_drive.sh
set -eu
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
exec "$PYTHON" -m agent simulate --seed 1 --output tests/data/sample_drive.log
