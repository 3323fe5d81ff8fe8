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

# unpack_debs [--suite SUITE] GROUP DIR [PATTERN...]: the packages of GROUP unpacked into DIR
# (their data, by dpkg-deb), never installed: another architecture's files that the tests read
# (an ARM kernel and busybox), test data of other projects (tar archives), or another Debian
# release's programs (Docker 26 from trixie). With PATTERNs (tar wildcards, such as
# './usr/share/go-*/src/archive/tar/testdata/*'), only what they match. With --suite, the
# packages come from that release of the mirror this machine's apt already uses, through lists
# of its own under DIR/.apt: the system's sources and lists are not touched. A linux-image
# metapackage brings the kernel package it depends on. DIR is kept between runs and remade when
# the group's list changes.
unpack_debs() {
  local suite="" group dir pkg kernel deb stamp
  if [ "$1" = --suite ]; then suite=$2; shift 2; fi
  group=$1 dir=$2
  shift 2
  stamp=$dir/.unpacked-$(printf '%s\n' "$suite" "$(debs_of "$group")" "$@" | sha256sum | cut -c1-16)
  [ -e "$stamp" ] && return 0
  rm -rf "$dir" && mkdir -p "$dir/.debs"
  if [ -n "$suite" ]; then
    # shellcheck disable=SC2046 # package names, one word each
    fetch_from_suite "$suite" "$dir/.apt" "$dir/.debs" $(debs_of "$group")
  fi
  for pkg in $(debs_of "$group"); do
    [ -z "$suite" ] || break # fetched above
    # Nothing, and no failure under `set -e -o pipefail`, while apt does not know the package.
    kernel=$(apt-cache depends "$pkg" 2>/dev/null |
      awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2 }') || kernel=""
    # shellcheck disable=SC2086 # kernel is empty or one package name
    (cd "$dir/.debs" && apt-get download -qq "$pkg" $kernel 2>/dev/null) || {
      # Lists that never saw the foreign architecture: fetch them (as root), then try again.
      dpkg --print-foreign-architectures | grep -qx "${pkg#*:}" || dpkg --add-architecture "${pkg#*:}"
      apt-get update -qq >&2 || true
      kernel=$(apt-cache depends "$pkg" | awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2 }')
      # shellcheck disable=SC2086
      (cd "$dir/.debs" && apt-get download -qq "$pkg" $kernel) >&2
    }
  done
  # A kernel's modules (about 300 MB) are left out: nothing boots with them from here.
  for deb in "$dir"/.debs/*.deb; do
    if [ $# -gt 0 ]; then
      # A package holds what some of the patterns match, not all: tar's complaint about the
      # others is no failure (tests/packages.rs checks that each group's file is there).
      dpkg-deb --fsys-tarfile "$deb" | { tar -x -C "$dir" --wildcards "$@" 2>/dev/null || true; }
    else
      dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$dir" --exclude=./lib/modules
    fi
  done
  rm -rf "$dir/.debs"
  touch "$stamp"
}

# suite_apt APT_DIR ARGS...: apt-get or apt-cache (the first of ARGS) with the sources and
# lists under APT_DIR that fetch_from_suite wrote, and none of the system's.
suite_apt() {
  local apt=$1
  shift
  "$1" -o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$apt/sources" \
    -o Dir::State::Lists="$apt/lists" -o Dir::Cache::Archives="$apt/archives" \
    -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= "${@:2}"
}

# fetch_from_suite SUITE APT_DIR DEBS_DIR PACKAGE...: downloads the packages of Debian's SUITE
# into DEBS_DIR, from the first Debian mirror the system's sources name (deb822 or one-line).
fetch_from_suite() {
  local suite=$1 apt=$2 debs=$3 mirror
  shift 3
  mirror=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
    awk '$1 == "URIs:" && $2 ~ /\/debian\/?$/ { print $2; exit }')
  [ -n "$mirror" ] || mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
    awk '$1 == "deb" && $2 ~ /\/debian\/?$/ { print $2; exit }')
  if [ -z "$mirror" ]; then
    echo "no Debian mirror in /etc/apt/sources.list*: cannot fetch $* from $suite" >&2
    return 1
  fi
  mkdir -p "$apt/sources" "$apt/lists/partial" "$apt/archives/partial"
  printf '%s\n' "Types: deb" "URIs: $mirror" "Suites: $suite" "Components: main" \
    "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" >"$apt/sources/$suite.sources"
  suite_apt "$apt" apt-get update -qq >&2
  # As root, apt drops to _apt to download; that user may not write here.
  (cd "$debs" && suite_apt "$apt" apt-get download -qq -o APT::Sandbox::User=root "$@") >&2
}
