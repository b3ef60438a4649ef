#!/usr/bin/env bash
# sam build --beta-features (BuildMethod: rust-cargolambda) into .aws-sam/,
# then compares each function's bootstrap with the one `make package` put in
# out/lambda/ (when there is one): the same binary, byte for byte, or says
# how they differ. ARCH=arm64 builds for Graviton.
set -euo pipefail

say() { echo "sam-build: $*" >&2; }
die() { say "error: $*"; exit 1; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/bootstrap.sh .venv-deploy scripts/requirements-deploy.txt
export PATH="$root/.venv-deploy/bin:$PATH"
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}" SAM_CLI_TELEMETRY=0

started=$SECONDS
sam build --beta-features --parameter-overrides "Architecture=${ARCH:-x86_64}"
say "built in $((SECONDS - started)) s"

same=0 differ=0
for built in .aws-sam/build/*/bootstrap; do
  id="$(basename "$(dirname "$built")")"
  crate="$(grep -A6 "^  $id:" template.yaml | sed -n 's/^ *Binary: *//p' | head -1)"
  [[ -n "$crate" ]] || die "$id: no BuildProperties.Binary in template.yaml"
  zip="out/lambda/$crate/bootstrap.zip"
  if [[ ! -f "$zip" ]]; then
    say "$id ($crate): $(stat -c %s "$built") bytes; no $zip to compare with (run make package)"
    continue
  fi
  ours="$(python3 -c 'import hashlib, sys, zipfile; print(hashlib.sha256(zipfile.ZipFile(sys.argv[1]).read("bootstrap")).hexdigest())' "$zip")"
  theirs="$(sha256sum "$built" | cut -d' ' -f1)"
  if [[ "$ours" == "$theirs" ]]; then
    say "$id ($crate): identical to $zip's bootstrap"
    same=$((same + 1))
  else
    say "$id ($crate): differs from $zip's bootstrap ($(stat -c %s "$built") vs $(python3 -c 'import sys, zipfile; print(zipfile.ZipFile(sys.argv[1]).getinfo("bootstrap").file_size)' "$zip") bytes)"
    differ=$((differ + 1))
  fi
done
say "$same identical, $differ different"
((differ == 0)) || die "sam build and make package disagree"
