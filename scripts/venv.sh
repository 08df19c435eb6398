# Sourced by the other scripts: make (or reuse) the project's virtualenv in
# .venv and install bavard into it. Usage: . scripts/venv.sh [EXTRA]
# EXTRA "test" also installs the test tools; "" installs bavard alone (always pass
# it: `. venv.sh` without arguments hands venv.sh the caller's own $1). Needs
# python3 and python3-venv.
set -eu
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${BAVARD_VENV:-$ROOT/.venv}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV" || {
    echo "could not create a virtualenv: on Debian/Raspberry Pi OS run: sudo apt-get install -y python3-venv" >&2
    exit 1
  }
fi
want=${1:-}
case "$want" in
  "" | test) ;;
  *)
    echo "venv.sh: unknown EXTRA '$want' (known: test); a script that sources venv.sh" \
         "must pass it explicitly, or \"\" for none: sourced bare, it sees the script's own \$1" >&2
    exit 2
    ;;
esac
stamp="$VENV/.bavard-installed${want:+-$want}"
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
  "$VENV/bin/python" -m pip install --quiet --upgrade pip >&2 || true
  "$VENV/bin/python" -m pip install --quiet -e "$ROOT${want:+[$want]}" >&2
  touch "$stamp"
fi
export PATH="$VENV/bin:$PATH"
