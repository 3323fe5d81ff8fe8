#!/usr/bin/env bash
# Checks that a release is reproducible: the x86_64 and ARMv5TE builds of HEAD come out
# byte-identical from two clones at different paths, one with a fresh target directory, built
# as another user (another home, cargo home, toolchain path, user name and umask), and one
# whose target directory already holds a host release build, a test build and the armv7
# build-std build. Prints the sha256 of each and fails naming the target that differs.
#
#   build/reproduce.sh            (CI runs it before the suite; about 12 minutes on 2 cores)
set -euo pipefail
DS_ROOT=$(cd "$(dirname "$0")/.." && pwd)
targets="x86_64-unknown-linux-musl armv5te-unknown-linux-musleabi"
work=$(mktemp -d /tmp/dockersave-reproduce.XXXXXX)
trap 'rm -rf "$work"' EXIT
git clone --quiet "$DS_ROOT" "$work/a"
git clone --quiet "$DS_ROOT" "$work/second/clone/at/another/path"
b=$work/second/clone/at/another/path
unset CARGO_TARGET_DIR
(
  cd "$b"
  cargo build --release --locked --quiet
  cargo test --no-run --locked --quiet 2>/dev/null
  DS_DIST=$b/dist build/release.sh armv7-unknown-linux-musleabihf >/dev/null
  # shellcheck disable=SC2086 # a word list
  DS_DIST=$b/dist build/release.sh $targets >/dev/null
)
# The fresh clone is built as another user would build it: another home, so other paths for
# cargo's registry and the toolchain (hard-linked copies of this user's: the same crates and
# the same rustc), another user name, and a umask that lets nobody else read what it writes.
builder=$work/home/builder
mkdir -p "$builder"
cp -al "${CARGO_HOME:-$HOME/.cargo}" "$builder/.cargo"
cp -al "${RUSTUP_HOME:-$HOME/.rustup}" "$builder/.rustup"
# shellcheck disable=SC2086
(
  cd "$work/a"
  umask 077
  export HOME=$builder USER=builder LOGNAME=builder CARGO_HOME=$builder/.cargo \
    RUSTUP_HOME=$builder/.rustup PATH=$builder/.cargo/bin:$PATH
  DS_DIST=$work/a/dist build/release.sh $targets >/dev/null
)
status=0
for target in $targets; do
  name=$(cd "$work/a/dist" && ls dockersave-*-"$target")
  one=$(sha256sum "$work/a/dist/$name" | cut -d' ' -f1)
  two=$(sha256sum "$b/dist/$name" | cut -d' ' -f1)
  if [ "$one" = "$two" ]; then
    echo "$target: reproducible, sha256 $one"
  else
    echo "$target: NOT reproducible: $one (fresh clone, another user) and $two (clone with other builds)" >&2
    status=1
  fi
done
exit $status
