#!/usr/bin/env bash
# Benchmark: dockersave against skopeo, pulling the same images from the same local registry in
# the same run. Starts the CNCF registry on a loopback port, pushes the fixtures (busybox from
# tests/harness/fixtures.sh; "rootfs", one layer of the host's /usr/share/doc and locale files;
# "big", three layers: 100 MB of incompressible data, 200 MB of highly compressible text and
# busybox; "big2x", the same with twice the data), then alternates RUNS times each (default 5),
# removing outputs between runs, and prints the median wall time and peak RSS (/usr/bin/time)
# and the ratios:
#   archives:  `dockersave` (the static x86_64 release binary) against
#              `skopeo copy docker://… docker-archive:…`, for every image;
#   forms:     `dockersave -o - >FILE` and `dockersave --compressed`, against the same;
#   unpacking: `dockersave --rootfs DIR` against `skopeo copy docker://… oci:…` followed by
#              `umoci unpack`, for rootfs, big and big2x;
#   push:      `dockersave --push ARCHIVE IMAGE` against `skopeo copy docker-archive:… docker://…`,
#              both from the same archive (written once by dockersave, plain tar layers, so both
#              compress on the way) into a second registry that is emptied and restarted before
#              every run, so every run uploads every blob; for busybox, big and big2x. Then the
#              floor: the time the registry itself takes to accept the blobs (build/upload_floor.py);
#   link:      pulls through a shaped link (build/shaped_link.py: DS_BENCH_RTT_MS round trip,
#              default 50, DS_BENCH_MBIT, default 20) from a registry with anonymous token auth:
#              dockersave against skopeo and `docker pull` + `docker save`, each against the
#              link's floor (bytes / bandwidth + the round trips a pull cannot save), for busybox
#              and big; with the requests and connections dockersave makes;
#   zstd:      "bigz" ("big" with zstd layers, skopeo --dest-compress-format zstd): dockersave
#              (layers decompressed, for engines that cannot read zstd) and dockersave
#              --compressed (zstd blobs kept) against `skopeo copy docker://… oci:…`, since
#              skopeo cannot write a docker-archive of a zstd image;
#   fleet:     twenty dockersave processes started at once, all pulling "rootfs" (-o -, the
#              archives discarded: twenty on one disk would measure the disk), through a
#              pull-through cache (distribution in proxy mode, --mirror) that starts empty, the
#              same through the cache once it holds the image, and straight from the registry:
#              the fleet's wall time, the bytes the upstream registry served (from its log) and
#              the largest peak RSS of one process.
#   copy:      `dockersave --copy-to` against `skopeo copy docker://… docker://…`, the source
#              registry into the emptied second one, for busybox, big and big2x, with the push
#              section's floor (the registry taking the blobs);
#   bundle:    "trio", an index of three platforms (rootfs, big and busybox as linux/amd64,
#              linux/arm64 and linux/arm/v7): `dockersave --platform all --compressed` (blobs kept,
#              as skopeo keeps them) and `--platform all` (decompressed for every engine) against
#              `skopeo copy --all docker://… oci-archive:…`;
#   thin:      "big-v2" ("big" with one more, small layer): a full archive against a thin one
#              (--have big:latest), time and bytes; and a pull of big-v2 through a --cache-dir
#              that holds big (warm) against an empty one (cold);
#   cores:     the archive of big and big2x (`-o FILE`) against `-o /dev/null` of the same (the
#              CPU work alone: inflate and two sha256 passes, nothing written), `-o - >FILE`
#              against it, `--gzip` against the plain archive, the archive pinned to one core
#              (`taskset -c 0`) against /dev/null pinned, and `--rootfs` and `--flatten` pinned
#              against free;
#   artifact:  "payload", an OCI artifact (as `oras push` writes it) of one 100 MB file:
#              `dockersave --artifact DIR` against `curl` of the blob alone, the floor;
#   initramfs: `dockersave --initramfs FILE.cpio.gz` (no root) against the way without it:
#              `dockersave --rootfs DIR` as root, then `find . | cpio -o -H newc | gzip -1`, for
#              rootfs, big and big2x; and `--initramfs --xz` against the same with `xz -1 -C crc32`.
#
#   build/bench.sh [RUNS]                      (DS_BENCH_SECTIONS="push" runs one section;
#                                              DS_BENCH_MINIMAL=1 the minimal build)
# As root it installs what it needs (Debian packages, rustup target).
set -euo pipefail
DS_ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$DS_ROOT/tests/harness/lib.sh"
runs=${1:-5}
ensure_debs test bench

"$DS_ROOT/build/release.sh" --minimal x86_64-unknown-linux-musl >/dev/null
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$DS_ROOT/Cargo.toml" | head -n 1)
# DS_BENCH_MINIMAL=1 measures the minimal build instead (archives and unpacking: what it has).
flavour=dockersave
[ "${DS_BENCH_MINIMAL:-}" = 1 ] && flavour=dockersave-minimal
dockersave=$DS_ROOT/dist/$flavour-$version-x86_64-unknown-linux-musl

export DS_STATE
DS_STATE=$(mktemp -d /tmp/dockersave-bench.XXXXXX)
trap stop_all EXIT
port=$(free_port)
start_registry registry "$port"
registry=127.0.0.1:$port
"$DS_ROOT/tests/harness/fixtures.sh" "$registry" "$DS_STATE/fixtures" >/dev/null

# The big images, generated here and never committed: three layers made with tar and added with
# `umoci raw add-layer` (umoci gzips them), pushed with skopeo. "big" holds 100 MB of incompressible
# data, 200 MB of highly compressible text and busybox; "big2x" twice as much of each of the first
# two, to show that memory does not grow with the image.
make_big() { # make_big NAME RANDOM_MB TEXT_MB [zstd]
  local name=$1 dir=$DS_STATE/$1
  mkdir -p "$dir/random" "$dir/text" "$dir/busybox"
  head -c "${2}000000" /dev/urandom >"$dir/random/random.bin"
  { yes 'highly compressible text, the same line again and again' || true; } |
    head -c "${3}000000" >"$dir/text/text.txt"
  cp /bin/busybox "$dir/busybox/busybox"
  umoci init --layout "$dir/oci"
  umoci new --image "$dir/oci:img"
  for part in random text busybox; do
    tar -C "$dir/$part" -cf "$dir/$part.tar" .
    rm -rf "${dir:?}/$part"
    umoci raw add-layer --image "$dir/oci:img" "$dir/$part.tar"
    rm "$dir/$part.tar"
  done
  if [ "${4:-}" = zstd ]; then
    # Into a layout of its own (skopeo would reuse the gzip blobs of the first), and pushed with
    # --preserve-digests (or skopeo puts the registry's gzip blobs of the same tars in place).
    skopeo copy --quiet --dest-compress-format zstd "oci:$dir/oci:img" "oci:$dir/zoci:img"
    skopeo copy --quiet --preserve-digests --dest-tls-verify=false "oci:$dir/zoci:img" \
      "docker://$registry/$name:latest"
  else
    skopeo copy --quiet --dest-tls-verify=false "oci:$dir/oci:img" "docker://$registry/$name:latest"
  fi
  rm -rf "$dir"
}
make_big big 100 200
make_big big2x 200 400
if [[ " ${DS_BENCH_SECTIONS:-zstd} " == *" zstd "* ]]; then make_big bigz 100 200 zstd; fi
# "rootfs": one layer of real files, the host's /usr/share/doc and /usr/share/locale (text and
# binary catalogues, about 3:1 compressible): a single-layer base image, where inflate dominates.
rootfs=$DS_STATE/rootfs
umoci init --layout "$rootfs/oci"
umoci new --image "$rootfs/oci:img"
tar -C / -cf "$rootfs/layer.tar" usr/share/doc usr/share/locale
umoci raw add-layer --image "$rootfs/oci:img" "$rootfs/layer.tar"
skopeo copy --quiet --dest-tls-verify=false "oci:$rootfs/oci:img" "docker://$registry/rootfs:latest"
rm -rf "$rootfs"

# The push section's registry: storage of its own, emptied and restarted (outside the timed part)
# before every push so that nothing is skipped or mounted; each dockersave run also gets a fresh
# record of pushed blobs (XDG_CACHE_HOME under $out).
push_port=$(free_port)
push_registry=127.0.0.1:$push_port
# fresh_registry NAME PORT [TOP_YAML]: (re)starts registry NAME on PORT with storage of its own,
# emptied first.
fresh_registry() {
  local name=$1 port=$2 pid
  if [ -e "$DS_STATE/$name.pid" ]; then
    pid=$(cat "$DS_STATE/$name.pid")
    kill "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  fi
  rm -rf "$DS_STATE/$name-storage"
  DS_REGISTRY_STORAGE=$DS_STATE/$name-storage start_registry "$name" "$port" "${3:-}"
}
fresh_push_registry() { fresh_registry registry-push "$push_port"; }
sources=$DS_STATE/sources

out=$DS_STATE/out
measure() { # measure TOOL IMAGE: one run, appends "wall rss_kb" to $DS_STATE/TOOL-IMAGE
  local tool=$1 image=$2
  rm -rf "$out" && mkdir -p "$out"
  case $tool in
    dockersave) cmd=("$dockersave" --insecure --working-dir "$out" "$registry/$image:latest") ;;
    skopeo) cmd=(skopeo copy --quiet --src-tls-verify=false "docker://$registry/$image:latest"
                 "docker-archive:$out/$image.tar:$image:latest") ;;
    skopeo-oci) cmd=(skopeo copy --quiet --src-tls-verify=false "docker://$registry/$image:latest"
                     "oci:$out/oci:$image") ;;
    stdout) cmd=(sh -c '"$1" --insecure -q -o - "$2" >"$3"' sh "$dockersave"
                 "$registry/$image:latest" "$out/$image.tar") ;;
    compressed) cmd=("$dockersave" --insecure --compressed --working-dir "$out"
                     "$registry/$image:latest") ;;
    rootfs) cmd=("$dockersave" --insecure --rootfs "$out/rootfs" "$registry/$image:latest") ;;
    umoci) cmd=(sh -c 'skopeo copy --quiet --src-tls-verify=false "docker://$1" "oci:$2/oci:img" &&
                       umoci unpack --image "$2/oci:img" "$2/bundle" >/dev/null' sh
                "$registry/$image:latest" "$out") ;;
    push) cmd=(env "XDG_CACHE_HOME=$out/cache" "$dockersave" --insecure -q
               --push "$sources/$image.tar" "$push_registry/$image:latest") ;;
    skopeo-push) cmd=(skopeo copy --quiet --dest-tls-verify=false "docker-archive:$sources/$image.tar"
                      "docker://$push_registry/$image:latest") ;;
    floor) cmd=(python3 "$DS_ROOT/build/upload_floor.py" "$push_registry" "$image"
                "$sources/$image-blobs/$image-latest") ;;
    copy) cmd=("$dockersave" --insecure -q --copy-to "$push_registry/$image:latest"
               "$registry/$image:latest") ;;
    skopeo-copy) cmd=(skopeo copy --quiet --src-tls-verify=false --dest-tls-verify=false
                      "docker://$registry/$image:latest" "docker://$push_registry/$image:latest") ;;
    bundle) cmd=("$dockersave" --insecure -q --platform all --compressed -o "$out/$image.tar"
                 "$registry/$image:latest") ;;
    bundle-plain) cmd=("$dockersave" --insecure -q --platform all -o "$out/$image.tar"
                       "$registry/$image:latest") ;;
    skopeo-all) cmd=(skopeo copy --quiet --all --src-tls-verify=false "docker://$registry/$image:latest"
                     "oci-archive:$out/$image.tar:$image:latest") ;;
    thin-full) cmd=("$dockersave" --insecure -q -o "$out/$image.tar" "$registry/$image:latest") ;;
    thin) cmd=("$dockersave" --insecure -q --have "$registry/big:latest" -o "$out/$image.tar"
               "$registry/$image:latest") ;;
    cache-cold) cmd=("$dockersave" --insecure -q --cache-dir "$out/cache" -o "$out/$image.tar"
                     "$registry/$image:latest") ;;
    cache-warm) cp -al "$DS_STATE/big-cache" "$out/cache"
                cmd=("$dockersave" --insecure -q --cache-dir "$out/cache" -o "$out/$image.tar"
                     "$registry/$image:latest") ;;
    archive) cmd=("$dockersave" --insecure -q -o "$out/$image.tar" "$registry/$image:latest") ;;
    devnull) cmd=("$dockersave" --insecure -q -o /dev/null "$registry/$image:latest") ;;
    gzip) cmd=("$dockersave" --insecure -q --gzip -o "$out/$image.tar.gz" "$registry/$image:latest") ;;
    archive-1core) cmd=(taskset -c 0 "$dockersave" --insecure -q -o "$out/$image.tar"
                        "$registry/$image:latest") ;;
    devnull-1core) cmd=(taskset -c 0 "$dockersave" --insecure -q -o /dev/null "$registry/$image:latest") ;;
    flatten) cmd=("$dockersave" --insecure -q --flatten "$out/$image.flat.tar" "$registry/$image:latest") ;;
    flatten-1core) cmd=(taskset -c 0 "$dockersave" --insecure -q --flatten "$out/$image.flat.tar"
                        "$registry/$image:latest") ;;
    rootfs-1core) cmd=(taskset -c 0 "$dockersave" --insecure --rootfs "$out/rootfs" "$registry/$image:latest") ;;
    artifact) cmd=("$dockersave" --insecure -q --artifact "$out/files" "$registry/$image:latest") ;;
    curl-blob) cmd=(curl -sSf -o "$out/blob" "http://$registry/v2/$image/blobs/$(cat "$DS_STATE/$image.digest")") ;;
    initramfs) cmd=("$dockersave" --insecure -q --initramfs "$out/$image.cpio.gz"
                    "$registry/$image:latest") ;;
    initramfs-xz) cmd=("$dockersave" --insecure -q --initramfs "$out/$image.cpio.xz" --xz
                       "$registry/$image:latest") ;;
    rootfs-cpio | rootfs-cpio-xz)
      local pack="gzip -1"
      [ "$tool" = rootfs-cpio-xz ] && pack="xz -1 -C crc32"
      cmd=(sh -c '"$1" --insecure -q --rootfs "$2/rootfs" "$3" >/dev/null &&
                  cd "$2/rootfs" && find . | cpio -o -H newc --quiet | $4 >"$2/image.cpio"' sh
           "$dockersave" "$out" "$registry/$image:latest" "$pack") ;;
    link-dockersave) cmd=("$dockersave" --insecure --working-dir "$out" "$linked/$image:latest") ;;
    link-skopeo) cmd=(skopeo copy --quiet --src-tls-verify=false "docker://$linked/$image:latest"
                      "docker-archive:$out/$image.tar:$image:latest") ;;
    link-docker) cmd=(sh -c 'docker pull -q "$1" >/dev/null && docker save -o "$2" "$1"' sh
                      "$linked/$image:latest" "$out/$image.tar") ;;
  esac
  case $tool in push | skopeo-push | floor | copy | skopeo-copy) fresh_push_registry ;; esac
  # The engine keeps what it pulled: remove it, so every run pulls every layer.
  if [ "$tool" = link-docker ]; then docker rmi -f "$linked/$image:latest" >/dev/null 2>&1 || true; fi
  local connections_before=0
  if [[ $tool == link-* ]]; then connections_before=$(wc -l <"$DS_STATE/link.log"); fi
  # Wall time from bash's microsecond clock (time's %e has only 10 ms), peak RSS from time (for
  # skopeo + umoci the larger of the two).
  local start=$EPOCHREALTIME
  /usr/bin/time -f '%M' -o "$DS_STATE/time" "${cmd[@]}" >/dev/null 2>"$DS_STATE/stderr" || {
    echo "$tool failed on $image:" >&2
    cat "$DS_STATE/stderr" >&2
    exit 1
  }
  local end=$EPOCHREALTIME
  echo "$(echo "$end - $start" | bc -l) $(cat "$DS_STATE/time")" >>"$DS_STATE/$tool-$image"
  if [[ $tool == link-* ]]; then
    echo $(($(wc -l <"$DS_STATE/link.log") - connections_before)) >"$DS_STATE/$tool-$image.connections"
  fi
}
# upload_floor TOOL IMAGE...: the floor of an upload, the registry accepting the same images'
# gzip blobs (as the source registry serves them) uploaded all at once by build/upload_floor.py,
# which does no other work, and TOOL's time over it. (Not for busybox, where the Python
# interpreter's start would be most of it.) Measured once per image, whichever section asks.
upload_floor() {
  local tool=$1 image floor ours
  shift
  for image in "$@"; do
    if [ ! -s "$DS_STATE/floor-$image" ]; then
      rm -rf "$sources/$image-blobs"
      "$dockersave" --insecure -q --compressed --no-tar --working-dir "$sources/$image-blobs" \
        "$registry/$image:latest" >/dev/null
      measure floor "$image"
      : >"$DS_STATE/floor-$image"
      for _ in $(seq 1 "$runs"); do measure floor "$image"; done
    fi
    floor=$(cut -d' ' -f1 "$DS_STATE/floor-$image" | median)
    ours=$(cut -d' ' -f1 "$DS_STATE/$tool-$image" | median)
    printf '%-8s floor (the registry taking the blobs, client idle) %.3f s; %s/floor: %.2f\n' \
      "$image" "$floor" "$tool" "$(echo "$ours / $floor" | bc -l)"
  done
}
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# compare OURS THEIRS IMAGE...: alternating runs after one warm-up each (both read the same
# page-cached blobs), then a table.
compare() {
  local ours=$1 theirs=$2 image tool wall rss
  shift 2
  for image in "$@"; do
    measure "$ours" "$image"
    measure "$theirs" "$image"
    : >"$DS_STATE/$ours-$image"
    : >"$DS_STATE/$theirs-$image"
    for _ in $(seq 1 "$runs"); do
      measure "$ours" "$image"
      measure "$theirs" "$image"
    done
  done
  printf '%-8s %-11s %14s %16s\n' image tool "wall s (med)" "peak RSS MiB"
  for image in "$@"; do
    for tool in "$ours" "$theirs"; do
      wall=$(cut -d' ' -f1 "$DS_STATE/$tool-$image" | median)
      rss=$(cut -d' ' -f2 "$DS_STATE/$tool-$image" | median)
      printf '%-8s %-11s %14.3f %16.1f\n' "$image" "$tool" "$wall" "$(echo "$rss / 1024" | bc -l)"
      if [ "$tool" = "$ours" ]; then ours_wall=$wall ours_rss=$rss; else theirs_wall=$wall theirs_rss=$rss; fi
    done
    printf '%-8s ratio %s/%s: wall %.2f, peak RSS %.2f\n' "$image" "$ours" "$theirs" \
      "$(echo "$ours_wall / $theirs_wall" | bc -l)" "$(echo "$ours_rss / $theirs_rss" | bc -l)"
  done
}

# DS_BENCH_SECTIONS picks sections (default: all thirteen).
sections=${DS_BENCH_SECTIONS:-archives forms unpacking push link zstd fleet copy bundle thin cores artifact initramfs}
mkdir -p "$sources"
if [[ " $sections " == *" archives "* ]]; then
echo "== archives: dockersave against skopeo copy docker-archive:"
compare dockersave skopeo busybox rootfs big big2x
echo
fi
if [[ " $sections " == *" forms "* ]]; then
echo "== archive forms: dockersave -o - (front to back into a pipe, nothing else on disk) and"
echo "   --compressed (layers as served), against skopeo copy docker-archive:"
compare stdout skopeo busybox big big2x
compare compressed skopeo busybox big big2x
echo
fi
if [[ " $sections " == *" unpacking "* ]]; then
echo "== unpacking: dockersave --rootfs against skopeo copy oci: + umoci unpack"
compare rootfs umoci rootfs big big2x
echo
fi
if [[ " $sections " == *" push "* ]]; then
echo "== push: dockersave --push against skopeo copy docker-archive: docker://, same archive"
for image in busybox big big2x; do
  "$dockersave" --insecure -q -o - "$registry/$image:latest" >"$sources/$image.tar"
done
compare push skopeo-push busybox big big2x
upload_floor push big big2x
fi
if [[ " $sections " == *" link "* ]]; then
rtt_ms=${DS_BENCH_RTT_MS:-50} mbit=${DS_BENCH_MBIT:-20}
echo "== link: through a shaped link ($rtt_ms ms round trip, $mbit Mbit/s, build/shaped_link.py)"
echo "   in front of a registry with token auth as Docker Hub's (anonymous, token service behind"
echo "   the same link): dockersave, skopeo copy docker-archive:, docker pull + docker save"
token_port=$(free_port) tokened=$(free_port) link_port=$(free_port) link_token_port=$(free_port)
start_bg token-server python3 "$DS_ROOT/tests/harness/token_server.py" "$token_port" \
  "$DS_STATE/token.log" benchuser bench-password bench-refresh
wait_port "$token_port" "$(cat "$DS_STATE/token-server.pid")" token-server "$DS_STATE/token-server.log"
start_registry registry-token "$tokened" "auth:
  silly:
    realm: http://127.0.0.1:$link_token_port/token
    service: dockersave-bench"
: >"$DS_STATE/link.log"
start_bg shaped-link python3 "$DS_ROOT/build/shaped_link.py" "$rtt_ms" "$mbit" "$DS_STATE/link.log" \
  "$link_port:$tokened" "$link_token_port:$token_port"
wait_port "$link_port" "$(cat "$DS_STATE/shaped-link.pid")" shaped-link "$DS_STATE/shaped-link.log"
: >"$DS_STATE/link.log"
linked=127.0.0.1:$link_port
start_dockerd
export DOCKER_HOST=unix://$DS_STATE/d.sock
link_images="busybox big"
for image in $link_images; do
  measure link-dockersave "$image"
  # What a pull asks for: the requests dockersave makes (-v lists them) and the connections it
  # opens (the link's log), to the registry and to the token service.
  before=$(wc -l <"$DS_STATE/link.log")
  rm -rf "$out" && mkdir -p "$out"
  "$dockersave" --insecure -v --working-dir "$out" "$linked/$image:latest" 2>"$DS_STATE/verbose" >/dev/null
  requests=$(grep -c ' → ' "$DS_STATE/verbose")
  to_registry=$(tail -n +"$((before + 1))" "$DS_STATE/link.log" | grep -c "^$link_port\$" || true)
  to_token=$(tail -n +"$((before + 1))" "$DS_STATE/link.log" | grep -c "^$link_token_port\$" || true)
  echo "$image: dockersave makes $requests requests over $to_registry connections to the registry and $to_token to the token service"
  measure link-skopeo "$image"
  measure link-docker "$image"
  for tool in link-dockersave link-skopeo link-docker; do : >"$DS_STATE/$tool-$image"; done
  for _ in $(seq 1 "$runs"); do
    for tool in link-dockersave link-skopeo link-docker; do measure "$tool" "$image"; done
  done
done
# The floor: the bytes at the link's rate, plus the round trips nothing can save for an anonymous
# token-auth pull on new connections: connect, the challenge, connect to the token service, the
# token, the manifest (and the platform's manifest after an index), the blobs (all at once).
printf '%-8s %-16s %9s %9s %12s %11s %7s\n' image tool "wall s" "floor s" "over floor" "vs skopeo" conns
for image in $link_images; do
  read -r bytes hops < <(python3 - "$registry" "$image" <<'PY'
import json, sys, urllib.request
registry, image = sys.argv[1:3]
accept = ", ".join(["application/vnd.oci.image.index.v1+json",
                    "application/vnd.docker.distribution.manifest.list.v2+json",
                    "application/vnd.oci.image.manifest.v1+json",
                    "application/vnd.docker.distribution.manifest.v2+json"])
def get(ref):
    request = urllib.request.Request(f"http://{registry}/v2/{image}/manifests/{ref}", headers={"Accept": accept})
    return urllib.request.urlopen(request).read()
body, hops = get("latest"), 0
total = len(body)
doc = json.loads(body)
if "manifests" in doc:
    entry = next(m for m in doc["manifests"] if m.get("platform", {}).get("architecture") == "amd64")
    body = get(entry["digest"])
    total, hops, doc = total + len(body), 1, json.loads(body)
print(total + doc["config"]["size"] + sum(layer["size"] for layer in doc["layers"]), hops)
PY
  )
  floor=$(echo "$bytes * 8 / ($mbit * 1000000) + (6 + $hops) * $rtt_ms / 1000" | bc -l)
  skopeo_wall=$(cut -d' ' -f1 "$DS_STATE/link-skopeo-$image" | median)
  for tool in link-dockersave link-skopeo link-docker; do
    wall=$(cut -d' ' -f1 "$DS_STATE/$tool-$image" | median)
    printf '%-8s %-16s %9.3f %9.3f %8.1f RTT %11.2f %7s\n' "$image" "${tool#link-}" "$wall" "$floor" \
      "$(echo "($wall - $floor) * 1000 / $rtt_ms" | bc -l)" "$(echo "$wall / $skopeo_wall" | bc -l)" \
      "$(cat "$DS_STATE/$tool-$image.connections")"
  done
done
echo "   (docker: the engine's own pull, from a client that asks it; it tries HTTPS first on"
echo "   127.0.0.1 and falls back to plain HTTP. conns: new connections in the last run.)"
fi
if [[ " $sections " == *" zstd "* ]]; then
echo "== zstd: dockersave (layers decompressed) and --compressed (zstd kept) against"
echo "   skopeo copy docker://... oci: (skopeo 1.9 writes no docker-archive of a zstd image)"
compare dockersave skopeo-oci bigz
compare compressed skopeo-oci bigz
echo
fi
if [[ " $sections " == *" fleet "* ]]; then
fleet_size=20
echo "== fleet: $fleet_size dockersave processes pulling rootfs at once, straight from the registry"
echo "   and through a pull-through cache (distribution, proxy: remoteurl:) given with --mirror"
# The upstream: the same storage as $registry, logging every response with its size.
upstream_port=$(free_port) cache_port=$(free_port)
upstream=127.0.0.1:$upstream_port
start_registry registry-upstream "$upstream_port" "" "" info
fresh_cache() { fresh_registry registry-cache "$cache_port" "proxy:
  remoteurl: http://$upstream"; }
upstream_bytes() {
  grep -o 'http.response.written=[0-9]*' "$DS_STATE/registry-upstream.log" |
    awk -F= '{ s += $2 } END { printf "%.0f\n", s }'
}
fleet() { # fleet MODE: one run (direct, cold or warm), appends "wall max_rss_kb upstream_bytes"
  local mode=$1 i start end before
  # To standard output, discarded: twenty archives of rootfs on one disk would measure the disk.
  local args=(--insecure -q -o - "$upstream/rootfs:latest")
  [ "$mode" = direct ] || args=(--mirror "$upstream=http://127.0.0.1:$cache_port" "${args[@]}")
  [ "$mode" = cold ] && fresh_cache
  rm -rf "$out" && mkdir -p "$out"
  before=$(upstream_bytes)
  start=$EPOCHREALTIME
  local pids=() failed=0
  for i in $(seq 1 "$fleet_size"); do
    /usr/bin/time -f '%M' -o "$out/$i.time" "$dockersave" "${args[@]}" >/dev/null 2>"$out/$i.err" &
    pids+=($!)
  done
  # Each by its pid: a bare `wait` would wait for the registries too.
  for i in "${pids[@]}"; do wait "$i" || failed=1; done
  if [ "$failed" = 1 ]; then echo "a fleet pull failed:" >&2; cat "$out"/*.err >&2; exit 1; fi
  end=$EPOCHREALTIME
  if grep -q . "$out"/*.err; then echo "a fleet pull complained:" >&2; cat "$out"/*.err >&2; exit 1; fi
  echo "$(echo "$end - $start" | bc -l) $(cat "$out"/*.time | sort -n | tail -n 1) $(($(upstream_bytes) - before))" \
    >>"$DS_STATE/fleet-$mode"
}
fresh_cache
fleet direct && fleet cold
for mode in direct cold warm; do : >"$DS_STATE/fleet-$mode"; done
for _ in $(seq 1 "$runs"); do
  for mode in direct cold warm; do fleet "$mode"; done
done
printf '%-34s %12s %20s %22s\n' "$fleet_size pulls of rootfs at once" "wall s (med)" "upstream served MB" "peak RSS/process MiB"
for mode in direct cold warm; do
  case $mode in
    direct) what="straight from the registry" ;;
    cold) what="through the cache, empty at first" ;;
    warm) what="through the cache, holding it" ;;
  esac
  printf '%-34s %12.3f %20.1f %22.1f\n' "$what" "$(cut -d' ' -f1 "$DS_STATE/fleet-$mode" | median)" \
    "$(echo "$(cut -d' ' -f3 "$DS_STATE/fleet-$mode" | median) / 1000000" | bc -l)" \
    "$(echo "$(cut -d' ' -f2 "$DS_STATE/fleet-$mode" | median) / 1024" | bc -l)"
done
echo "   (one image's blobs: $(grep -o '"size":[0-9]*' <<<"$(skopeo inspect --raw --tls-verify=false "docker://$upstream/rootfs:latest")" | awk -F: '{ s += $2 } END { printf "%.1f MB", s / 1000000 }'))"
echo
fi
if [[ " $sections " == *" copy "* ]]; then
echo "== copy: dockersave --copy-to against skopeo copy docker:// docker://, into an emptied registry"
compare copy skopeo-copy busybox big big2x
upload_floor copy big big2x
echo
fi
if [[ " $sections " == *" bundle "* ]]; then
echo "== bundle: --platform all of trio (three platforms: rootfs, big, busybox) against"
echo "   skopeo copy --all docker://... oci-archive:"
bh=(buildah --root "$DS_STATE/buildah" --runroot "$DS_STATE/buildah-run" --storage-driver vfs)
"${bh[@]}" manifest create trio >/dev/null
"${bh[@]}" manifest add --tls-verify=false trio "docker://$registry/rootfs:latest" >/dev/null
"${bh[@]}" manifest add --tls-verify=false --arch arm64 trio "docker://$registry/big:latest" >/dev/null
"${bh[@]}" manifest add --tls-verify=false --arch arm --variant v7 trio \
  "docker://$registry/busybox:latest" >/dev/null
"${bh[@]}" manifest push --quiet --all --format oci --tls-verify=false trio "docker://$registry/trio:latest"
compare bundle skopeo-all trio
compare bundle-plain skopeo-all trio
echo
fi
if [[ " $sections " == *" thin "* ]]; then
echo "== thin: big-v2 (big and one small layer more), full archive against thin (--have big),"
echo "   and through a --cache-dir holding big (warm) against an empty one (cold)"
skopeo copy --quiet --src-tls-verify=false "docker://$registry/big:latest" "oci:$DS_STATE/v2:img"
mkdir -p "$DS_STATE/v2-top/etc" && echo 2 >"$DS_STATE/v2-top/etc/version"
tar -C "$DS_STATE/v2-top" -cf "$DS_STATE/v2-top.tar" etc
umoci raw add-layer --image "$DS_STATE/v2:img" "$DS_STATE/v2-top.tar"
skopeo copy --quiet --dest-tls-verify=false "oci:$DS_STATE/v2:img" "docker://$registry/big-v2:latest"
rm -rf "$DS_STATE/v2" "$DS_STATE/v2-top" "$DS_STATE/v2-top.tar" "$DS_STATE/big-cache"
"$dockersave" --insecure -q --cache-dir "$DS_STATE/big-cache" -o /dev/null "$registry/big:latest" >/dev/null
compare thin thin-full big-v2
measure thin-full big-v2 && full_bytes=$(stat -c %s "$out/big-v2.tar")
measure thin big-v2 && thin_bytes=$(stat -c %s "$out/big-v2.tar")
printf 'big-v2   archive bytes: full %.1f MB, thin %.3f MB (%.4f of the full one)\n' \
  "$(echo "$full_bytes / 1000000" | bc -l)" "$(echo "$thin_bytes / 1000000" | bc -l)" \
  "$(echo "$thin_bytes / $full_bytes" | bc -l)"
compare cache-warm cache-cold big-v2
echo
fi
if [[ " $sections " == *" cores "* ]]; then
echo "== cores: the archive against -o /dev/null (the CPU work alone), on two cores and on one"
compare archive devnull big big2x
compare stdout devnull big
compare gzip archive big
compare archive-1core devnull-1core big
compare rootfs-1core rootfs big
compare flatten-1core flatten big
echo
fi
if [[ " $sections " == *" artifact "* ]]; then
echo "== artifact: payload (one 100 MB file, as oras push writes it), --artifact DIR against"
echo "   curl of the blob (the floor: one GET, no verification)"
head -c 100000000 /dev/urandom >"$DS_STATE/payload.bin"
PYTHONPATH="$DS_ROOT/tests/harness" python3 - "$registry" "$DS_STATE/payload.bin" \
  >"$DS_STATE/payload.digest" <<'PY'
import json, sys
from registry_api import Registry
registry, path = Registry(sys.argv[1]), sys.argv[2]
with open(path, "rb") as f:
    blob = registry.push_blob("payload", f.read())
empty = registry.push_blob("payload", b"{}")
manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": "application/vnd.example.payload",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", **empty},
            "layers": [{"mediaType": "application/octet-stream", **blob,
                        "annotations": {"org.opencontainers.image.title": "payload.bin"}}]}
registry.put_manifest("payload", "latest", json.dumps(manifest).encode(),
                      "application/vnd.oci.image.manifest.v1+json")
print(blob["digest"])
PY
rm -f "$DS_STATE/payload.bin"
compare artifact curl-blob payload
echo
fi
if [[ " $sections " == *" initramfs "* ]]; then
echo "== initramfs: dockersave --initramfs (no root) against --rootfs as root, then"
echo "   find . | cpio -o -H newc | gzip -1 (and --xz against xz -1 -C crc32)"
compare initramfs rootfs-cpio rootfs big big2x
compare initramfs-xz rootfs-cpio-xz rootfs big
echo
fi
echo "($runs runs each, alternating; $(nproc) cores; $(date -u +%Y-%m-%d))"
