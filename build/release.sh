#!/usr/bin/env bash
# Static release binaries: build/release.sh [TARGET...] (default: every target of cross/targets.sh).
# Each lands in dist/dockersave-<version>-<target>; its size and sha256 are printed, and the
# build fails if a binary is not static or exceeds the 3 MiB budget. As root it installs the
# Debian cross compilers and rustup targets it needs (see cross/targets.sh).
set -euo pipefail
DS_ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$DS_ROOT/cross/targets.sh"
cd "$DS_ROOT"

targets=${*:-$DS_TARGETS}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
dist=${DS_DIST:-$DS_ROOT/dist}
budget=$((3 * 1024 * 1024))
mkdir -p "$dist"
# aws-lc-rs (C, painful to cross-build) must stay out: TLS is rustls with ring.
if cargo tree --locked --target all -i aws-lc-rs >/dev/null 2>&1; then
  echo "aws-lc-rs is in the dependency tree (cargo tree -i aws-lc-rs); keep TLS on ring" >&2
  exit 1
fi
for target in $targets; do
  cross_prepare "$target"
  (
    cross_env "$target"
    # shellcheck disable=SC2086 # DS_CARGO_FLAGS is a word list
    cargo build --release --locked --target "$target" $DS_CARGO_FLAGS
  )
  out="$dist/dockersave-$version-$target"
  cp "${CARGO_TARGET_DIR:-target}/$target/release/dockersave" "$out"
  info=$(file -b "$out")
  case $info in
    *"statically linked"* | *"static-pie linked"*) ;;
    *) echo "$out is not static: $info" >&2; exit 1 ;;
  esac
  if readelf -l "$out" | grep -q INTERP; then
    echo "$out has a program interpreter: not static" >&2
    exit 1
  fi
  size=$(stat -c %s "$out")
  if [ "$size" -gt "$budget" ]; then
    echo "$out is $size bytes, over the 3 MiB budget" >&2
    exit 1
  fi
  printf '%-52s %9d bytes  sha256 %s\n' "$(basename "$out")" "$size" "$(sha256sum "$out" | cut -d' ' -f1)"
done
