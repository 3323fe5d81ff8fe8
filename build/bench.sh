#!/usr/bin/env bash
# Benchmark: dockersave against skopeo, pulling the same images from the same local registry in
# the same run. Starts the CNCF registry on a loopback port, builds and pushes the fixtures
# (tests/harness/fixtures.sh's busybox, and a generated "big" image: 100 MB of incompressible
# data, about 200 MB of highly compressible text and a small layer), then alternates
# `dockersave` (the static x86_64 release binary) and `skopeo copy docker://… docker-archive:…`
# RUNS times each per image (default 5), removing outputs between runs, and prints the median
# wall time and peak RSS (/usr/bin/time) and the ratio dockersave/skopeo.
#
#   build/bench.sh [RUNS]
# As root it installs what it needs (Debian packages, rustup target).
set -euo pipefail
DS_ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$DS_ROOT/tests/harness/lib.sh"
runs=${1:-5}
ensure_packages /usr/bin/time:time

"$DS_ROOT/build/release.sh" x86_64-unknown-linux-musl >/dev/null
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$DS_ROOT/Cargo.toml" | head -n 1)
dockersave=$DS_ROOT/dist/dockersave-$version-x86_64-unknown-linux-musl

export DS_STATE
DS_STATE=$(mktemp -d /tmp/dockersave-bench.XXXXXX)
trap stop_all EXIT
port=$(free_port)
start_registry registry "$port"
registry=127.0.0.1:$port
"$DS_ROOT/tests/harness/fixtures.sh" "$registry" "$DS_STATE/fixtures" >/dev/null

# The big image: three layers made with umoci, pushed with skopeo. Generated, never committed.
big=$DS_STATE/big
umoci init --layout "$big/oci"
umoci new --image "$big/oci:base"
umoci unpack --image "$big/oci:base" "$big/bundle" >/dev/null
head -c 100000000 /dev/urandom >"$big/bundle/rootfs/random.bin"
umoci repack --image "$big/oci:img" "$big/bundle"
seq 1 30000000 | sed 's/$/ highly compressible text line/' | head -c 200000000 >"$big/bundle/rootfs/text.txt"
umoci repack --image "$big/oci:img" "$big/bundle"
cp /bin/busybox "$big/bundle/rootfs/busybox"
umoci repack --image "$big/oci:img" "$big/bundle"
rm -rf "$big/bundle"
skopeo copy --quiet --dest-tls-verify=false "oci:$big/oci:img" "docker://$registry/big:latest"
rm -rf "$big"

out=$DS_STATE/out
measure() { # measure TOOL IMAGE: one run, appends "wall rss_kb" to $DS_STATE/TOOL-IMAGE
  local tool=$1 image=$2
  rm -rf "$out" && mkdir -p "$out"
  case $tool in
    dockersave) cmd=("$dockersave" --insecure --working-dir "$out" "$registry/$image:latest") ;;
    skopeo) cmd=(skopeo copy --quiet --src-tls-verify=false "docker://$registry/$image:latest"
                 "docker-archive:$out/$image.tar:$image:latest") ;;
  esac
  /usr/bin/time -f '%e %M' -o "$DS_STATE/time" "${cmd[@]}" >/dev/null 2>&1
  cat "$DS_STATE/time" >>"$DS_STATE/$tool-$image"
}
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

for image in busybox big; do
  measure dockersave "$image" # warm-up: both tools read the same page-cached blobs
  measure skopeo "$image"
  : >"$DS_STATE/dockersave-$image"
  : >"$DS_STATE/skopeo-$image"
  for _ in $(seq 1 "$runs"); do
    measure dockersave "$image"
    measure skopeo "$image"
  done
done

printf '%-8s %-11s %14s %16s\n' image tool "wall s (med)" "peak RSS MiB"
for image in busybox big; do
  for tool in dockersave skopeo; do
    wall=$(cut -d' ' -f1 "$DS_STATE/$tool-$image" | median)
    rss=$(cut -d' ' -f2 "$DS_STATE/$tool-$image" | median)
    printf '%-8s %-11s %14.2f %16.1f\n' "$image" "$tool" "$wall" "$(echo "$rss / 1024" | bc -l)"
    eval "${tool}_wall=$wall ${tool}_rss=$rss"
  done
  printf '%-8s ratio dockersave/skopeo: wall %.2f, peak RSS %.2f\n' "$image" \
    "$(echo "$dockersave_wall / $skopeo_wall" | bc -l)" "$(echo "$dockersave_rss / $skopeo_rss" | bc -l)"
done
echo "($runs runs each, alternating; $(nproc) cores; $(date -u +%Y-%m-%d))"
