#!/usr/bin/env bash
# The demo: sets up .venv on first use, then runs the simulated vehicle
# through the pipeline. Extra arguments go to `bavard demo` (try --help).
# venv.sh is sourced with an explicit empty EXTRA: sourced without arguments,
# it would see this script's own ($1 = --help became pip's extra).
. "$(dirname "$0")/venv.sh" ""
exec bavard demo "$@"
