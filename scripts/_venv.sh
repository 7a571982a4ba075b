# Sourced by scripts/quickstart and scripts/test: make sure .venv exists with the package in it.
# Usage: ensure_venv [EXTRAS]   (EXTRAS like "test" or "test,bench")
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ZOOPIPE_VENV:-$REPO/.venv}"
PY="$VENV/bin/python"

ensure_venv() {
  local extras="${1:-}"
  local spec="$REPO"
  [ -n "$extras" ] && spec="$REPO[$extras]"
  if [ ! -x "$PY" ]; then
    local base="${PYTHON:-python3}"
    if ! "$base" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      echo "zoopipe_hpc needs Python 3.11 or newer; $base is $("$base" --version 2>&1)" >&2
      exit 2
    fi
    if ! "$base" -m venv "$VENV" 2>/dev/null; then
      echo "creating a virtual environment failed; installing python3-venv" >&2
      apt-get install -y -q python3-venv >/dev/null
      "$base" -m venv "$VENV"
    fi
    "$PY" -m pip install -q --upgrade pip
  fi
  # A stamp avoids reinstalling when nothing changed.
  local stamp="$VENV/.zoopipe-installed-${extras:-base}"
  if [ ! -f "$stamp" ] || [ "$REPO/pyproject.toml" -nt "$stamp" ]; then
    "$PY" -m pip install -q -e "$spec"
    touch "$stamp"
  fi
}
