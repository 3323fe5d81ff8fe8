#!/usr/bin/env bash
# Static release binaries: build/release.sh [--minimal[=TARGET,...]] [TARGET...] (default: every
# target of cross/targets.sh). Each lands in dist/dockersave-<version>-<target>; with --minimal
# (for every target built, or for those listed), the minimal build (--no-default-features:
# pull to an archive, --rootfs, --flatten, --layer and inspection; see Cargo.toml's features)
# lands beside it as dist/dockersave-minimal-<version>-<target>. Each binary's size and sha256 are printed, and the build fails if one is not static
# or exceeds its budget: 3.5 MiB for x86_64, 3.25 MiB for the ARM targets, 2 MiB for any
# minimal build. dist/SHA256SUMS (for `sha256sum -c`) and dist/BUILDINFO (the commit, the
# toolchain, each cross compiler's Debian version, the flags and features) describe every
# binary built. The bytes depend only on those inputs and Cargo.lock (cross/targets.sh maps
# away the paths of the checkout, the toolchain and cargo's registry); build/reproduce.sh
# checks it. As root it installs the Debian cross compilers and rustup targets it needs (see
# cross/targets.sh).
set -euo pipefail
DS_ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$DS_ROOT/cross/targets.sh"
cd "$DS_ROOT"

# Which targets get a minimal build besides the full one: none, all (--minimal) or a list.
minimal_targets=""
case ${1:-} in
  --minimal) minimal_targets=all; shift ;;
  --minimal=*) minimal_targets=$(echo "${1#--minimal=}" | tr , ' '); shift ;;
esac
targets=${*:-$DS_TARGETS}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
dist=${DS_DIST:-$DS_ROOT/dist}
mkdir -p "$dist"
sums=$(mktemp)
info=$(mktemp)
trap 'rm -f "$sums" "$info"' EXIT
{
  echo "commit: $(git -C "$DS_ROOT" rev-parse HEAD 2>/dev/null || echo unknown)$(git -C "$DS_ROOT" status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo ' (with uncommitted changes)')"
  rustc -vV | sed -n -e 's/^rustc /rustc: /p' -e 's/^commit-hash: /rustc commit: /p'
  echo "Cargo.lock sha256: $(sha256sum Cargo.lock | cut -d' ' -f1)"
} >"$info"
# aws-lc-rs (C, painful to cross-build) must stay out: TLS is rustls with ring.
if cargo tree --locked --target all -i aws-lc-rs >/dev/null 2>&1; then
  echo "aws-lc-rs is in the dependency tree (cargo tree -i aws-lc-rs); keep TLS on ring" >&2
  exit 1
fi
# Which targets get the minimal build.
minimal=""
for target in $targets; do
  cross_prepare "$target"
  case " $minimal_targets " in
    " all " | *" $target "*) minimal="$minimal $target" ;;
  esac
done

# One cargo run per flavour builds every target at once: each target's settings are its own
# variables (cross_env), and on two cores one target's link-time optimisation (one codegen
# unit, one core) overlaps another's compiling.
build() {
  local flavour=$1 list=$2 cargo_args
  case $flavour in
    full) cargo_args="--release" ;;
    minimal) cargo_args="--profile minimal --no-default-features" ;;
  esac
  (
    for target in $list; do cross_env "$target"; done
    # shellcheck disable=SC2086 # word lists
    cargo build --locked $(printf -- '--target %s ' $list) $cargo_args $DS_CARGO_FLAGS
  )
}
build full "$targets"
if [ -n "$minimal" ]; then
  build minimal "$minimal"
fi

for target in $targets; do
  flavours=full
  case " $minimal " in
    *" $target "*) flavours="full minimal" ;;
  esac
  for flavour in $flavours; do
    case $flavour in
      full) name=dockersave profile=release ;;
      minimal) name=dockersave-minimal profile=minimal ;;
    esac
    out="$dist/$name-$version-$target"
    cp "${CARGO_TARGET_DIR:-target}/$target/$profile/dockersave" "$out"
    case $flavour-$target in
      minimal-*) budget=$((2 * 1024 * 1024)) budget_name="2 MiB" ;;
      full-x86_64-*) budget=$((7 * 1024 * 1024 / 2)) budget_name="3.5 MiB" ;;
      *) budget=$((13 * 1024 * 1024 / 4)) budget_name="3.25 MiB" ;;
    esac
    kind=$(file -b "$out")
    case $kind in
      *"statically linked"* | *"static-pie linked"*) ;;
      *) echo "$out is not static: $kind" >&2; exit 1 ;;
    esac
    if readelf -l "$out" | grep -q INTERP; then
      echo "$out has a program interpreter: not static" >&2
      exit 1
    fi
    size=$(stat -c %s "$out")
    if [ "$size" -gt "$budget" ]; then
      echo "$target: $out is $size bytes, over its budget of $budget_name ($budget bytes)" >&2
      exit 1
    fi
    sum=$(sha256sum "$out" | cut -d' ' -f1)
    printf '%-60s %9d bytes  sha256 %s\n' "$(basename "$out")" "$size" "$sum"
    echo "$sum  $(basename "$out")" >>"$sums"
  done
  {
    echo "$target:"
    var=$(echo "$target" | tr 'a-z-' 'A-Z_')
    rustflags_var="CARGO_TARGET_${var}_RUSTFLAGS"
    echo "  flags: $(cross_env "$target"; echo "${!rustflags_var:-} ${DS_CARGO_FLAGS:-}")"
    echo "  builds: $flavours (minimal: --profile minimal --no-default-features)"
    awk -v t="$target" '$2 == t { print $1 }' "$DS_ROOT/build/packages" | while read -r package; do
      echo "  $package: $(dpkg-query -W -f '${Version}' "$package" 2>/dev/null || echo 'not installed')"
    done
  } >>"$info"
done
cp "$sums" "$dist/SHA256SUMS"
cp "$info" "$dist/BUILDINFO"
