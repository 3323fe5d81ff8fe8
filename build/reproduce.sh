#!/usr/bin/env bash
# Checks that a release is reproducible: the x86_64 and ARMv5TE binaries of HEAD, built again
# in a fresh clone at another path by another user (another home, cargo home, toolchain path,
# user name and umask), must come out byte-identical to those of DIST.
#
#   build/reproduce.sh DIST    DIST holds this checkout's release (build/release.sh wrote it;
#                              tests/run.sh does, and .ci/run calls this after the suite, so the
#                              builds the tests ran are the ones checked)
#   build/reproduce.sh         builds this checkout's release first, into a fresh directory
#
# Two targets, one of each way the binaries are linked: x86_64 with rustc's self-contained
# musl (its C through musl-gcc), ARMv5TE with Debian's cross gcc and musl (as armv7). Both build
# std from rust-src, whose paths cross/targets.sh remaps. The checkout's own builds share a
# target directory with every other target's build, the minimal builds and the test build, so
# the comparison also shows that what else was built there changes nothing. Prints the sha256
# of each and fails naming the target that differs.
set -euo pipefail
DS_ROOT=$(cd "$(dirname "$0")/.." && pwd)
targets="x86_64-unknown-linux-musl armv5te-unknown-linux-musleabi"
work=$(mktemp -d /tmp/dockersave-reproduce.XXXXXX)
trap 'rm -rf "$work"' EXIT
unset CARGO_TARGET_DIR
if [ $# -ge 1 ]; then
  ours=$(cd "$1" && pwd)
else
  ours=$work/ours
  # shellcheck disable=SC2086 # a word list
  DS_DIST=$ours "$DS_ROOT/build/release.sh" $targets >/dev/null
fi
git clone --quiet "$DS_ROOT" "$work/a"
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
  if [ ! -e "$ours/$name" ]; then
    echo "$target: $ours holds no $name to compare with" >&2
    status=1
    continue
  fi
  two=$(sha256sum "$ours/$name" | cut -d' ' -f1)
  if [ "$one" = "$two" ]; then
    echo "$target: reproducible, sha256 $one"
  else
    echo "$target: NOT reproducible: $one (fresh clone, another user) and $two ($ours)" >&2
    status=1
  fi
done
exit $status
