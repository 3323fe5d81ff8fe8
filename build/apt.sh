# apt_install PACKAGE...: installs Debian packages when running as root; otherwise names them and
# fails. Sourced by cross/targets.sh and tests/harness/lib.sh.
apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages: $* (run as root to install them)" >&2
    return 1
  fi
  echo "installing: $*" >&2
  # A mirror in mid-sync can fail one index; the lists already cached still install.
  apt-get update -qq >&2 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}
