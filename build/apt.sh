# Debian packages for the build and the tests. They are declared in build/packages (the only
# list); `ensure_debs GROUP...` installs those of the groups that are missing. A package counts
# as present only when dpkg says it is installed: a command on PATH can exist without the
# headers or libraries the build needs from other packages. Sourced by cross/targets.sh and
# tests/harness/lib.sh, which set DS_ROOT.

# debs_of GROUP...: the packages build/packages declares for those groups.
debs_of() {
  awk -v groups=" $* " '!/^#/ && NF >= 2 && index(groups, " " $2 " ") { print $1 }' \
    "$DS_ROOT/build/packages"
}

# deb_installed PACKAGE[:ARCH]: whether dpkg has it fully installed.
deb_installed() {
  [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null)" = "ii " ]
}

ensure_debs() {
  local pkg missing=""
  for pkg in $(debs_of "$@"); do
    deb_installed "$pkg" || missing="$missing $pkg"
  done
  [ -z "$missing" ] || apt_install $missing
}

# apt_install PACKAGE...: installs Debian packages (with their Depends, without Recommends) when
# running as root, adding the foreign architecture of `name:arch` packages; otherwise names them
# and fails. Only ensure_debs calls it.
apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages: $* (run as root to install them)" >&2
    return 1
  fi
  local pkg arch
  for pkg in "$@"; do
    case $pkg in
      *:*)
        arch=${pkg#*:}
        dpkg --print-foreign-architectures | grep -qx "$arch" || dpkg --add-architecture "$arch"
        ;;
    esac
  done
  echo "installing: $*" >&2
  # A mirror in mid-sync can fail one index; the lists already cached still install.
  apt-get update -qq >&2 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}
