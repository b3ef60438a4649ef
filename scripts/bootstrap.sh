#!/usr/bin/env bash
# Creates (or updates) the project's virtualenv .venv/ with the pinned tools of
# scripts/requirements.txt (moto, cfn-lint).
#
#   scripts/bootstrap.sh [VENV REQUIREMENTS]
#
# makes another virtualenv from another pinned file the same way; the deploy
# tools (aws-sam-cli, cargo-lambda, ziglang) live in .venv-deploy/ from
# scripts/requirements-deploy.txt, apart from moto, whose pins they would fight.
#
# Idempotent and quiet when nothing is to do: pip runs only when
# requirements.txt changed since the last successful install, which the stamp
# .venv/.requirements.sha256 records. Needs only python3 (3.9+) and, where
# python3 lacks ensurepip (Debian without python3-venv), python3's own pip.
# PYTHON=/path/to/python3 picks the interpreter.
set -euo pipefail

say() { echo "bootstrap: $*" >&2; }
die() { say "error: $*"; exit 1; }
trap 'say "error: failed at line $LINENO: $BASH_COMMAND"' ERR

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/${1:-.venv}"
req="$root/${2:-scripts/requirements.txt}"
stamp="$venv/.requirements.sha256"

[[ -f "$req" ]] || die "$req not found"
want="$(sha256sum "$req" | cut -d' ' -f1)"

up_to_date() {
  [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] &&
    "$venv/bin/python" -c '' 2>/dev/null
}

# Fast path: nothing printed.
if up_to_date; then
  exit 0
fi

# Serialize concurrent runs (e.g. parallel test binaries) on this script file;
# the one that waited finds the work done.
if command -v flock >/dev/null; then
  exec 9<"${BASH_SOURCE[0]}"
  flock 9
  if up_to_date; then
    exit 0
  fi
fi

python="${PYTHON:-python3}"
command -v "$python" >/dev/null || die "$python not found; install Python 3.9 or newer (Debian: apt-get install python3)"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 9))' ||
  die "$python is $("$python" --version 2>&1); Python 3.9 or newer is needed"

# A venv whose interpreter no longer runs (e.g. python3 was upgraded) is rebuilt.
if ! "$venv/bin/python" -c '' 2>/dev/null; then
  say "creating virtualenv $venv with $("$python" --version 2>&1)"
  log="$(mktemp)"
  if ! "$python" -m venv --clear "$venv" >"$log" 2>&1; then
    # Debian's python3 ships venv but not ensurepip (that is python3-venv):
    # make the venv without pip and give it pip with python3's own pip below.
    say "python3 -m venv could not install pip into it (no ensurepip; on Debian: python3-venv); creating it without pip"
    "$python" -m venv --clear --without-pip "$venv" || { cat "$log" >&2; rm -f "$log"; die "$python -m venv failed"; }
  fi
  rm -f "$log"
fi
rm -f "$stamp"

if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
  say "installing pip into the virtualenv with $python's pip"
  "$python" -m pip --version >/dev/null 2>&1 ||
    die "the virtualenv has no pip and $python has none to give it; on Debian: apt-get install python3-venv (or python3-pip)"
  "$python" -m pip --python "$venv/bin/python" install --quiet --disable-pip-version-check pip ||
    die "could not install pip into $venv (pip 22.3 or newer is needed for --python; on Debian: apt-get install python3-venv)"
fi

say "installing $(grep -cvE '^[[:space:]]*(#|$)' "$req") pinned packages from ${req#"$root/"} into $venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip ||
  die "pip could not upgrade itself (is PyPI reachable?)"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" ||
  die "pip install -r ${req#"$root/"} failed (see above)"
versions="$("$venv/bin/python" -m pip list --format=freeze 2>/dev/null |
  grep -iE "^($(grep -vE '^[[:space:]]*(#|$)' "$req" | sed -E 's/[[<=>~!; ].*//' | paste -sd'|'))==" | paste -sd' ')" ||
  die "pip list failed in $venv"
echo "$want" >"$stamp"
say "ready: $versions"
