# Per-target cross-compilation settings for the static musl builds. Sourced by build/release.sh
# and tests/run.sh (which set DS_ROOT); `cross_prepare T` installs what target T needs (the
# Debian packages of group T in build/packages, rustup target or rust-src) and `cross_env T`
# exports the cargo/cc settings.
#
#   x86_64-unknown-linux-musl       rustup's musl; musl-gcc (musl-tools) compiles ring's C
#   aarch64-unknown-linux-musl      rustup's musl; Debian's aarch64-linux-gnu-gcc as cc and linker,
#                                   with the target's C headers from libc6-dev-arm64-cross
#   armv7-unknown-linux-musleabihf  32-bit ARM, ARMv7 with hardware float (faster on v7 boards)
#   armv5te-unknown-linux-musleabi  32-bit ARM, ARMv5TE soft-float: runs on every ARM board from
#                                   v5 (Kirkwood routers and NAS) through v6 (Raspberry Pi 1 and
#                                   Zero) to v7 and v8 running 32-bit
#
# Every target's std is built from the rust-src component (-Z build-std; see cross_env), which
# the ARM targets need anyway: rustup has no std for them (it answers 404). Debian's musl-dev:armhf / musl-dev:armel give the musl gcc wrapper
# and libc.a; the unwinder comes from the gnueabi(hf) gcc's libgcc_eh.a, offered as libunwind.a.

. "$DS_ROOT/build/apt.sh"

DS_TARGETS="x86_64-unknown-linux-musl aarch64-unknown-linux-musl armv7-unknown-linux-musleabihf armv5te-unknown-linux-musleabi"

# Where prepared per-target files (the ARM libunwind.a) live, outside the source tree.
cross_dir() {
  echo "${CARGO_TARGET_DIR:-$DS_ROOT/target}/cross/$1"
}

# The C compiler cc-rs and the linker use for TARGET, and for the ARM targets the Debian gcc
# whose libgcc_eh.a provides the unwinder.
cross_cc() {
  case $1 in
    x86_64-unknown-linux-musl) echo musl-gcc ;;
    aarch64-unknown-linux-musl) echo aarch64-linux-gnu-gcc ;;
    armv7-unknown-linux-musleabihf) echo arm-linux-musleabihf-gcc ;;
    armv5te-unknown-linux-musleabi) echo arm-linux-musleabi-gcc ;;
    *) echo "unknown target $1; known: $DS_TARGETS" >&2; return 1 ;;
  esac
}

cross_unwind_gcc() {
  case $1 in
    armv7-unknown-linux-musleabihf) echo arm-linux-gnueabihf-gcc ;;
    armv5te-unknown-linux-musleabi) echo arm-linux-gnueabi-gcc ;;
  esac
}

cross_prepare() {
  local target=$1
  cross_cc "$target" >/dev/null
  ensure_debs build "$target"
  case $target in
    x86_64-* | aarch64-*)
      # Its self-contained musl start files and libc.a; std itself is built from rust-src.
      rustup target list --installed | grep -qx "$target" || rustup target add "$target" >&2
      ;;
  esac
  rustup component list --installed | grep -q '^rust-src' || rustup component add rust-src >&2
  local gcc eh dir
  gcc=$(cross_unwind_gcc "$target")
  if [ -n "$gcc" ]; then
    eh=$("$gcc" -print-file-name=libgcc_eh.a)
    [ -f "$eh" ] || { echo "libgcc_eh.a not found for $target ($gcc)" >&2; return 1; }
    dir=$(cross_dir "$target")
    mkdir -p "$dir"
    cp "$eh" "$dir/libunwind.a"
  fi
}

# The paths a binary would otherwise carry in its panic locations, each mapped to a fixed name
# so the bytes do not depend on where, or by whom, they were built: the toolchain's rust-src
# (rustc names std's files there once the component is installed, as the ARM builds need, and
# as /rustc/HASH before), cargo's registry (under each user's home) and the checkout.
cross_remap() {
  local sysroot hash
  sysroot=$(rustc --print sysroot)
  hash=$(rustc -vV | sed -n 's/^commit-hash: //p')
  echo "--remap-path-prefix=$sysroot/lib/rustlib/src/rust=/rustc/$hash" \
    "--remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo" \
    "--remap-path-prefix=$DS_ROOT=/dockersave"
}

# cross_env TARGET: exports the compiler, linker, runner and flags cargo needs for TARGET, and
# sets DS_CARGO_FLAGS to the extra cargo arguments.
#
# Every release build compiles std from the rust-src component (-Z build-std; RUSTC_BOOTSTRAP
# lets the stable toolchain accept it, and the ARM targets have no prebuilt std anyway) without
# its "backtrace" feature and without unwind tables: the binaries are stripped and abort on
# panic, so std's symboliser (gimli, addr2line, the demangler) could never name a frame and the
# tables (.eh_frame) are never read. A panic still prints its message. Together about 500 KB
# on x86_64 (docs/building.md, "Static builds").
cross_env() {
  local target=$1 var cc
  var=$(echo "$target" | tr 'a-z-' 'A-Z_')
  cc=$(cross_cc "$target")
  export RUSTC_BOOTSTRAP=1
  DS_CARGO_FLAGS="-Z build-std=std,panic_abort -Z build-std-features="
  export "CC_$(echo "$target" | tr - _)=$cc"
  case $target in
    # Position-dependent, as Go builds skopeo, crane and regctl: a static-pie binary carries
    # ~100 KB of relocations (.rela.dyn) (docs/building.md, "Static builds"). The other
    # targets link that way by default.
    x86_64-*)
      export "CARGO_TARGET_${var}_RUSTFLAGS=-C relocation-model=static -C force-unwind-tables=no $(cross_remap)"
      return 0
      ;;
  esac
  export "CARGO_TARGET_${var}_LINKER=$cc"
  export "CARGO_TARGET_${var}_RUNNER=$(cross_runner "$target")"
  case $target in
    aarch64-*)
      export "CARGO_TARGET_${var}_RUSTFLAGS=-C force-unwind-tables=no $(cross_remap)"
      ;;
    arm*)
      export "CARGO_TARGET_${var}_RUSTFLAGS=-C link-self-contained=no -L $(cross_dir "$target") -C force-unwind-tables=no $(cross_remap)"
      ;;
  esac
}

# The command that runs a binary built for TARGET on this (x86_64) machine; for ARM, the
# oldest CPU the build is meant for, so an instruction too new for it fails here first.
cross_runner() {
  case $1 in
    x86_64-*) echo "" ;;
    aarch64-*) echo qemu-aarch64-static ;;
    armv7-*) echo "qemu-arm-static -cpu cortex-a7" ;;
    armv5te-*) echo "qemu-arm-static -cpu arm926" ;;
  esac
}

# cross_used_files TARGET: the files of Debian packages that TARGET's build uses — the C
# compiler, the headers ring's C code includes as that compiler resolves them and, for the ARM
# targets (linked by Debian's gcc against Debian's musl), every object and library a static link
# takes — one per line. tests/packages.rs checks that each comes from a declared package.
cross_used_files() {
  local target=$1 cc work link=-c out status=0
  cc=$(cross_cc "$target")
  command -v "$cc"
  case $target in arm*) link="-static -Wl,--trace" ;; esac
  work=$(mktemp -d)
  printf '#include <stdint.h>\n#include <string.h>\n#include <assert.h>\nint main(void) { return 0; }\n' >"$work/t.c"
  # shellcheck disable=SC2086 # $link is a word list
  out=$("$cc" -H $link -o "$work/t.out" "$work/t.c" 2>&1) || status=$?
  rm -rf "$work"
  if [ "$status" != 0 ]; then
    echo "$cc cannot build a file that includes <stdint.h>: $out" >&2
    return 1
  fi
  echo "$out" | sed -n -e 's/^\.\+ //p' -e '/^\/usr\//p' | grep -v "^$work" | sort -u | xargs -r readlink -f
}
