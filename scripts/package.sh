#!/usr/bin/env bash
# Builds every function's Lambda zip with cargo-lambda and checks it:
#
#   scripts/package.sh            # x86_64 (the template's default)
#   ARCH=arm64 scripts/package.sh # needs `rustup target add aarch64-unknown-linux-gnu`
#
# One zip per crate under functions/, at out/lambda/<function>/bootstrap.zip.
# Each bootstrap must link against glibc <= 2.34 (Lambda's provided.al2023);
# the script fails naming the binary and the symbol version otherwise, and
# prints each zip's size. cargo-lambda and ziglang come pinned from
# scripts/requirements-deploy.txt in .venv-deploy/ (installed on first use).
set -euo pipefail

say() { echo "package: $*" >&2; }
die() { say "error: $*"; exit 1; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
arch="${ARCH:-x86_64}"
max_glibc="2.34"
out="$root/out/lambda"

case "$arch" in
  x86_64) flag=--x86-64 target=x86_64-unknown-linux-gnu ;;
  arm64) flag=--arm64 target=aarch64-unknown-linux-gnu ;;
  *) die "ARCH=$arch: the template allows x86_64 or arm64" ;;
esac
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$target"; then
  die "ARCH=$arch needs the Rust target $target: rustup target add $target"
fi
command -v objdump >/dev/null || die "objdump not found (Debian: apt-get install binutils)"

scripts/bootstrap.sh .venv-deploy scripts/requirements-deploy.txt
# cargo-lambda finds Zig as `python3 -m ziglang`: the venv's python3.
export PATH="$root/.venv-deploy/bin:$PATH"

functions=()
for dir in functions/*/; do
  [[ -f "$dir/src/main.rs" ]] && functions+=("$(basename "$dir")")
done
((${#functions[@]})) || die "no crate with a src/main.rs under functions/"

bins=()
for f in "${functions[@]}"; do bins+=(--bin "$f"); done
say "building ${#functions[@]} functions for $arch: ${functions[*]}"
rm -rf "$out"
started=$SECONDS
cargo lambda build --release "$flag" --output-format zip --lambda-dir "$out" "${bins[@]}"
say "built in $((SECONDS - started)) s"

failed=0
printf '%-24s %12s  %s\n' function "zip bytes" "newest glibc symbol version" >&2
for f in "${functions[@]}"; do
  zip="$out/$f/bootstrap.zip"
  [[ -f "$zip" ]] || die "$f: no $zip"
  tmp="$(mktemp -d)"
  # Lambda runs bootstrap only if the zip records it as executable.
  python3 - "$zip" "$tmp" <<'PY' || die "$f: $zip has no executable bootstrap"
import sys, zipfile
info = zipfile.ZipFile(sys.argv[1]).getinfo("bootstrap")
zipfile.ZipFile(sys.argv[1]).extract(info, sys.argv[2])
sys.exit(0 if (info.external_attr >> 16) & 0o111 else 1)
PY
  newest="$(objdump -T "$tmp/bootstrap" | grep -o 'GLIBC_[0-9][0-9.]*' | sort -uV | tail -1)"
  # The symbols that need more than the maximum, by name, for the error.
  too_new="$(objdump -T "$tmp/bootstrap" | awk -v max="$max_glibc" '
    match($0, /GLIBC_[0-9][0-9.]*/) {
      v = substr($0, RSTART + 6, RLENGTH - 6)
      split(v, a, "."); split(max, m, ".")
      if (a[1] + 0 > m[1] + 0 || (a[1] + 0 == m[1] + 0 && a[2] + 0 > m[2] + 0)) print $NF " (GLIBC_" v ")"
    }' | sort -u | paste -sd, -)"
  rm -rf "$tmp"
  printf '%-24s %12s  %s\n' "$f" "$(stat -c %s "$zip")" "${newest:-none}" >&2
  if [[ -n "$too_new" ]]; then
    say "error: $f/bootstrap needs glibc newer than $max_glibc: $too_new"
    failed=1
  fi
done
((failed == 0)) || die "a bootstrap would not load on Lambda's provided.al2023 (glibc $max_glibc)"
say "ok: ${#functions[@]} zips in ${out#"$root/"}, every bootstrap needs glibc <= $max_glibc"
