# Per-target cross-compilation settings for the static musl builds. Sourced by build/release.sh
# and tests/run.sh; `cross_prepare T` installs what target T needs (rustup target or rust-src,
# Debian cross compilers, qemu-user-static) and `cross_env T` exports the cargo/cc settings.
#
#   x86_64-unknown-linux-musl       rustup's std; musl-gcc (musl-tools) compiles ring's C
#   aarch64-unknown-linux-musl      rustup's std; Debian's aarch64-linux-gnu-gcc as cc and linker
#   armv7-unknown-linux-musleabihf  no std from rustup (it answers 404), so std is built from the
#                                   rust-src component (-Z build-std); Debian's musl-dev:armhf
#                                   gives the arm-linux-musleabihf-gcc wrapper and libc.a; the
#                                   unwinder comes from gcc's libgcc_eh.a, offered as libunwind.a.

. "$DS_ROOT/build/apt.sh"

DS_TARGETS="x86_64-unknown-linux-musl aarch64-unknown-linux-musl armv7-unknown-linux-musleabihf"

# Where prepared per-target files (the armv7 libunwind.a) live, outside the source tree.
cross_dir() {
  echo "${CARGO_TARGET_DIR:-$DS_ROOT/target}/cross/$1"
}

cross_prepare() {
  local target=$1 need=""
  command -v qemu-aarch64-static >/dev/null || need="$need qemu-user-static"
  command -v file >/dev/null || need="$need file"
  command -v readelf >/dev/null || need="$need binutils"
  case $target in
    x86_64-unknown-linux-musl)
      command -v musl-gcc >/dev/null || need="$need musl-tools"
      rustup target list --installed | grep -qx "$target" || rustup target add "$target" >&2
      ;;
    aarch64-unknown-linux-musl)
      command -v aarch64-linux-gnu-gcc >/dev/null || need="$need gcc-aarch64-linux-gnu"
      rustup target list --installed | grep -qx "$target" || rustup target add "$target" >&2
      ;;
    armv7-unknown-linux-musleabihf)
      command -v arm-linux-gnueabihf-gcc >/dev/null || need="$need gcc-arm-linux-gnueabihf"
      if ! command -v arm-linux-musleabihf-gcc >/dev/null; then
        dpkg --print-foreign-architectures | grep -qx armhf || dpkg --add-architecture armhf
        need="$need musl-dev:armhf"
      fi
      rustup component list --installed | grep -q '^rust-src' || rustup component add rust-src >&2
      ;;
    *)
      echo "unknown target $target; known: $DS_TARGETS" >&2
      return 1
      ;;
  esac
  [ -z "$need" ] || apt_install $need
  if [ "$target" = armv7-unknown-linux-musleabihf ]; then
    local eh dir
    eh=$(arm-linux-gnueabihf-gcc -print-file-name=libgcc_eh.a)
    [ -f "$eh" ] || { echo "libgcc_eh.a not found for armhf" >&2; return 1; }
    dir=$(cross_dir "$target")
    mkdir -p "$dir"
    cp "$eh" "$dir/libunwind.a"
  fi
}

# cross_env TARGET: exports the compiler, linker, runner and flags cargo needs for TARGET, and
# sets DS_CARGO_FLAGS to the extra cargo arguments (build-std for armv7).
cross_env() {
  local target=$1
  DS_CARGO_FLAGS=""
  case $target in
    x86_64-unknown-linux-musl)
      export CC_x86_64_unknown_linux_musl=musl-gcc
      ;;
    aarch64-unknown-linux-musl)
      export CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc
      export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc
      export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUNNER=qemu-aarch64-static
      ;;
    armv7-unknown-linux-musleabihf)
      export CC_armv7_unknown_linux_musleabihf=arm-linux-musleabihf-gcc
      export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_MUSLEABIHF_LINKER=arm-linux-musleabihf-gcc
      export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_MUSLEABIHF_RUNNER=qemu-arm-static
      export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_MUSLEABIHF_RUSTFLAGS="-C link-self-contained=no -L $(cross_dir "$target")"
      # build-std is a nightly flag; RUSTC_BOOTSTRAP lets the stable toolchain accept it.
      export RUSTC_BOOTSTRAP=1
      DS_CARGO_FLAGS="-Z build-std=std,panic_abort"
      ;;
  esac
}

# The command that runs a binary built for TARGET on this (x86_64) machine.
cross_runner() {
  case $1 in
    x86_64-*) echo "" ;;
    aarch64-*) echo qemu-aarch64-static ;;
    armv7-*) echo qemu-arm-static ;;
  esac
}
