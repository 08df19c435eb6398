#!/usr/bin/env bash
# The demo: sets up .venv on first use, then runs the simulated vehicle
# through the pipeline. Extra arguments go to `bavard demo` (try --help).
. "$(dirname "$0")/venv.sh"
exec bavard demo "$@"
