#!/usr/bin/env bash
# Creates (or updates) the project's virtualenv .venv/ with the pinned tools of
# scripts/requirements.txt. Idempotent: does nothing when the requirements
# have not changed since the last successful install.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
req="$root/scripts/requirements.txt"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"

if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi

python="${PYTHON:-python3}"
if ! command -v "$python" >/dev/null; then
  echo "bootstrap: $python not found; install Python 3.9 or newer" >&2
  exit 1
fi
if [[ ! -x "$venv/bin/python" ]]; then
  echo "bootstrap: creating $venv" >&2
  "$python" -m venv "$venv" || { echo "bootstrap: python3 -m venv failed (on Debian: apt-get install python3-venv)" >&2; exit 1; }
fi
echo "bootstrap: installing $(grep -cv '^\s*\(#\|$\)' "$req") pinned packages from scripts/requirements.txt" >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" >&2
echo "$want" > "$stamp"
echo "bootstrap: ready ($("$venv/bin/python" -c 'import moto; print("moto", moto.__version__)'))" >&2
