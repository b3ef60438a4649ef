#!/usr/bin/env bash
# Starts a moto server for exploring by hand, e.g. `scripts/moto.sh --port 5000`
# (then `aws --endpoint-url http://127.0.0.1:5000 s3 ls`). Ctrl-C stops it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/bootstrap.sh"
exec "$root/.venv/bin/python" "$root/scripts/moto_launcher.py" --no-stdin-watch "$@"
