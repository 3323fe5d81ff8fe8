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
#              `umoci unpack`, for rootfs, big and big2x; and for rootfs against its floor, the
#              same directories and files created empty (build/create_floor.py);
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
#   cores:     the archive of big, big2x and rootfs (one layer) (`-o FILE`) against `-o /dev/null`
#              of the same (the CPU work alone: inflate and two sha256 passes, nothing written), `-o - >FILE`
#              against it, `--gzip` against the plain archive, the archive pinned to one core
#              (`taskset -c 0`) against /dev/null pinned, and `--rootfs` and `--flatten` pinned
#              against free;
#   artifact:  "payload", an OCI artifact (as `oras push` writes it) of one 100 MB file:
#              `dockersave --artifact DIR` against `curl` of the blob alone, the floor;
#   initramfs: `dockersave --initramfs FILE.cpio.gz` (as nobody) against the way without it:
#              `dockersave --rootfs DIR` as root, then `find . | cpio -o -H newc | gzip -1`, for
#              rootfs, big and big2x; and `--initramfs --xz` against the same with `xz -1 -C crc32`.
#
#   decoders:  build/probes/decode, one layer decoded and hashed as the layer pipeline does, built
#              with each decoder weighed for dockersave (zlib-rs and miniz_oxide for gzip, libzstd
#              and ruzstd for zstd) and without one (hashing alone, subtracted), against `gzip -d`
#              and `zstd -d`: speed, memory and each decoder's bytes in a static binary;
#   profile:   where big's archive, -o /dev/null and --rootfs spend their time: user and system
#              CPU against wall (cores busy), `perf record` by function (a build with symbols)
#              and `strace -c` by system call;
#
#   build/bench.sh [RUNS]      DS_BENCH_SECTIONS="push link" runs those sections;
#                              DS_BENCH_DOCS=1 writes their tables into docs/performance.md;
#                              DS_BENCH_MINIMAL=1 measures the minimal build,
#                              DS_BENCH_DOCKERSAVE=PATH another binary (an earlier commit's);
#                              the markdown of every section run is in $DS_BENCH_OUT
#                              (default target/bench/SECTION.md).
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
# DS_BENCH_DOCKERSAVE=PATH measures another binary (an earlier commit's, for a before and after).
dockersave=${DS_BENCH_DOCKERSAVE:-$dockersave}
# What the tables' provenance lines name.
commit=$(git -C "$DS_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$DS_ROOT" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || commit="$commit with changes"
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
skopeo_version=$(skopeo --version | awk '{ print $3 }')
registry_version=$(docker-registry --version | awk '{ print $3 }')

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
    create-floor) cmd=(python3 "$DS_ROOT/build/create_floor.py" "$DS_STATE/$image.listing" "$out/tree") ;;
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
    # As nobody, into a directory of nobody's: --initramfs needs no root.
    initramfs) chown nobody "$out"
               cmd=("${as_nobody[@]}" "$dockersave" --insecure -q --initramfs "$out/$image.cpio.gz"
                    "$registry/$image:latest") ;;
    initramfs-xz) chown nobody "$out"
                  cmd=("${as_nobody[@]}" "$dockersave" --insecure -q --initramfs "$out/$image.cpio.xz"
                       --xz "$registry/$image:latest") ;;
    rootfs-cpio | rootfs-cpio-xz)
      local pack="gzip -1"
      [ "$tool" = rootfs-cpio-xz ] && pack="xz -1 -C crc32"
      cmd=(sh -c '"$1" --insecure -q --rootfs "$2/rootfs" "$3" >/dev/null &&
                  cd "$2/rootfs" && find . | cpio -o -H newc --quiet | $4 >"$2/image.cpio"' sh
           "$dockersave" "$out" "$registry/$image:latest" "$pack") ;;
    decode-none) cmd=("$DS_STATE/decode-none" "$DS_STATE/decode/$image.plain" "$(cat "$DS_STATE/decode/$image.repeat")") ;;
    decode-*) cmd=("$DS_STATE/$tool" "$DS_STATE/decode/$image" "$(cat "$DS_STATE/decode/$image.repeat")") ;;
    gzip-d | zstd-d) cmd=(sh -c 'for _ in $(seq "$3"); do $1 -dc "$2"; done >/dev/null' sh "${tool%-d}"
                          "$DS_STATE/decode/$image" "$(cat "$DS_STATE/decode/$image.repeat")") ;;
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
  # skopeo + umoci the larger of the two), then user and system CPU seconds.
  local start=$EPOCHREALTIME
  /usr/bin/time -f '%M %U %S' -o "$DS_STATE/time" "${cmd[@]}" >/dev/null 2>"$DS_STATE/stderr" || {
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
  md ""
  md "| image | the registry taking the blobs alone (the floor, \`build/upload_floor.py\`) | $(label "$tool")/floor |"
  md "|---|---|---|"
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
    md "| $image | $(spread floor "$image" 1 1 s 3) | **$(printf '%.2f' "$(echo "$ours / $floor" | bc -l)")** |"
  done
}
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# What each tool is called in the tables.
label() {
  case $1 in
    dockersave) echo '`dockersave`' ;;
    skopeo) echo '`skopeo copy docker-archive:`' ;;
    skopeo-oci) echo '`skopeo copy oci:`' ;;
    stdout) echo '`dockersave -o - >FILE`' ;;
    compressed) echo '`dockersave --compressed`' ;;
    rootfs) echo '`dockersave --rootfs DIR`' ;;
    umoci) echo '`skopeo copy oci:` + `umoci unpack`' ;;
    create-floor) echo 'creating the same files, empty (`build/create_floor.py`)' ;;
    push) echo '`dockersave --push`' ;;
    skopeo-push) echo '`skopeo copy docker-archive: docker://`' ;;
    copy) echo '`dockersave --copy-to`' ;;
    skopeo-copy) echo '`skopeo copy docker:// docker://`' ;;
    bundle) echo '`dockersave --platform all --compressed`' ;;
    bundle-plain) echo '`dockersave --platform all`' ;;
    skopeo-all) echo '`skopeo copy --all oci-archive:`' ;;
    thin-full) echo 'full archive' ;;
    thin) echo 'thin archive, `--have big`' ;;
    cache-cold) echo '`--cache-dir`, empty (cold)' ;;
    cache-warm) echo '`--cache-dir` holding big (warm)' ;;
    archive) echo 'archive `-o FILE`' ;;
    devnull) echo '`-o /dev/null`' ;;
    gzip) echo '`--gzip -o FILE`' ;;
    archive-1core) echo 'archive, one core' ;;
    devnull-1core) echo '`-o /dev/null`, one core' ;;
    rootfs-1core) echo '`--rootfs DIR`, one core' ;;
    flatten) echo '`--flatten FILE`' ;;
    flatten-1core) echo '`--flatten FILE`, one core' ;;
    artifact) echo '`dockersave --artifact DIR`' ;;
    curl-blob) echo '`curl` of the blob' ;;
    initramfs) echo '`dockersave --initramfs` (as nobody)' ;;
    initramfs-xz) echo '`dockersave --initramfs --xz` (as nobody)' ;;
    rootfs-cpio) echo '`--rootfs` (root) + `cpio` + `gzip -1`' ;;
    rootfs-cpio-xz) echo '`--rootfs` (root) + `cpio` + `xz -1`' ;;
    *) echo "\`$1\`" ;;
  esac
}
# spread TOOL IMAGE COLUMN SCALE UNIT DIGITS: "median UNIT (min–max)" of a column of
# $DS_STATE/TOOL-IMAGE, divided by SCALE.
spread() {
  cut -d' ' -f"$3" "$DS_STATE/$1-$2" | sort -n |
    awk -v scale="$4" -v unit="$5" -v digits="$6" '{ v[NR] = $1 / scale } END {
      m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
      f = "%." digits "f"
      printf f " %s (" f "–" f ")\n", m, unit, v[1], v[NR] }'
}

# The tables: each section's markdown goes to $bench_out/SECTION.md (the terminal gets the plain
# lines as before), and DS_BENCH_DOCS=1 puts every section run into docs/performance.md between
# its `<!-- bench SECTION -->` and `<!-- /bench SECTION -->` markers, so that no figure in a
# table there is copied by hand (tests/docs.rs checks the markers and the provenance lines).
bench_out=${DS_BENCH_OUT:-$DS_ROOT/target/bench}
mkdir -p "$bench_out"
current='' table_open=0
section() { # section NAME: starts NAME's markdown
  current=$1 table_open=0
  : >"$bench_out/$current.md"
}
md() { # md LINE...: a line of the section's markdown (an empty one ends its table)
  [ -n "$*" ] || table_open=0
  printf '%s\n' "$*" >>"$bench_out/$current.md"
}
end_section() { # what ran, when, where: the line every table in the docs carries
  md ""
  md "Measured by \`DS_BENCH_SECTIONS=$current build/bench.sh $runs\` on $(date -u +%Y-%m-%d):" \
    "each measured $runs times after a warm-up, alternating; medians (min–max); $(nproc) cores" \
    "($cpu), dockersave $version ($commit), skopeo $skopeo_version, distribution $registry_version."
}

# compare OURS THEIRS IMAGE...: alternating runs after one warm-up each (both read the same
# page-cached blobs), then a table (on the terminal, and rows of the section's markdown table).
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
  if [ "$table_open" = 0 ]; then
    md "| image | this | against | wall, this/against | wall, this | wall, against | peak RSS, this | peak RSS, against |"
    md "|---|---|---|---|---|---|---|---|"
    table_open=1
  fi
  for image in "$@"; do
    for tool in "$ours" "$theirs"; do
      wall=$(cut -d' ' -f1 "$DS_STATE/$tool-$image" | median)
      rss=$(cut -d' ' -f2 "$DS_STATE/$tool-$image" | median)
      printf '%-8s %-11s %14.3f %16.1f\n' "$image" "$tool" "$wall" "$(echo "$rss / 1024" | bc -l)"
      if [ "$tool" = "$ours" ]; then ours_wall=$wall ours_rss=$rss; else theirs_wall=$wall theirs_rss=$rss; fi
    done
    printf '%-8s ratio %s/%s: wall %.2f, peak RSS %.2f\n' "$image" "$ours" "$theirs" \
      "$(echo "$ours_wall / $theirs_wall" | bc -l)" "$(echo "$ours_rss / $theirs_rss" | bc -l)"
    md "| $image | $(label "$ours") | $(label "$theirs") | **$(printf '%.2f' "$(echo "$ours_wall / $theirs_wall" | bc -l)")** |" \
      "$(spread "$ours" "$image" 1 1 s 3) | $(spread "$theirs" "$image" 1 1 s 3) |" \
      "$(spread "$ours" "$image" 2 1024 MiB 1) | $(spread "$theirs" "$image" 2 1024 MiB 1) |"
  done
}

# rounds IMAGE TOOL...: alternating runs of every TOOL on IMAGE, after one warm-up each.
rounds() {
  local image=$1 tool
  shift
  for tool in "$@"; do measure "$tool" "$image"; done
  for tool in "$@"; do : >"$DS_STATE/$tool-$image"; done
  for _ in $(seq 1 "$runs"); do
    for tool in "$@"; do measure "$tool" "$image"; done
  done
}

# DS_BENCH_SECTIONS picks sections (default: all fifteen).
sections=${DS_BENCH_SECTIONS:-archives forms unpacking push link zstd decoders fleet copy bundle thin cores profile artifact initramfs}
mkdir -p "$sources"
if [[ " $sections " == *" archives "* ]]; then
section archives
echo "== archives: dockersave against skopeo copy docker-archive:"
compare dockersave skopeo busybox rootfs big big2x
end_section
echo
fi
if [[ " $sections " == *" forms "* ]]; then
section forms
echo "== archive forms: dockersave -o - (front to back into a pipe, nothing else on disk) and"
echo "   --compressed (layers as served), against skopeo copy docker-archive:"
compare stdout skopeo busybox big big2x
compare compressed skopeo busybox big big2x
end_section
echo
fi
if [[ " $sections " == *" unpacking "* ]]; then
section unpacking
echo "== unpacking: dockersave --rootfs against skopeo copy oci: + umoci unpack"
compare rootfs umoci rootfs big big2x
# The floor of rootfs's 10,000 small files: the same directories and files made empty.
rm -rf "$DS_STATE/tree"
"$dockersave" --insecure -q --rootfs "$DS_STATE/tree" "$registry/rootfs:latest" >/dev/null
(cd "$DS_STATE/tree" && find . -mindepth 1 -printf '%y %P\0') >"$DS_STATE/rootfs.listing"
rm -rf "$DS_STATE/tree"
compare rootfs create-floor rootfs
end_section
echo
fi
if [[ " $sections " == *" push "* ]]; then
section push
echo "== push: dockersave --push against skopeo copy docker-archive: docker://, same archive"
for image in busybox big big2x; do
  "$dockersave" --insecure -q -o - "$registry/$image:latest" >"$sources/$image.tar"
done
compare push skopeo-push busybox big big2x
upload_floor push big big2x
end_section
fi
if [[ " $sections " == *" link "* ]]; then
section link
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
  echo "$image $requests $to_registry $to_token" >>"$DS_STATE/link-requests"
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
md "| image | tool | wall | floor | over the floor | vs skopeo | new connections |"
md "|---|---|---|---|---|---|---|"
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
    case $tool in
      link-dockersave) what=dockersave ;;
      link-skopeo) what=skopeo ;;
      link-docker) what="docker pull + save" ;;
    esac
    md "| $image | $what | $(spread "$tool" "$image" 1 1 s 2) | $(printf '%.2f s' "$floor") |" \
      "$(printf '%.1f RTT (%.1f%%)' "$(echo "($wall - $floor) * 1000 / $rtt_ms" | bc -l)" \
         "$(echo "($wall - $floor) * 100 / $floor" | bc -l)") |" \
      "**$(printf '%.2f' "$(echo "$wall / $skopeo_wall" | bc -l)")** | $(cat "$DS_STATE/$tool-$image.connections") |"
  done
done
echo "   (docker: the engine's own pull, from a client that asks it; it tries HTTPS first on"
echo "   127.0.0.1 and falls back to plain HTTP. conns: new connections in the last run.)"
md ""
while read -r image requests to_registry to_token; do
  md "- $image: dockersave makes $requests requests over $to_registry new connections to the registry" \
    "and $to_token to the token service."
done <"$DS_STATE/link-requests"
md "- The link: $rtt_ms ms round trip, $mbit Mbit/s (\`build/shaped_link.py\`); docker is the engine's" \
  "own pull (Docker $(docker version --format '{{.Server.Version}}' 2>/dev/null || echo unknown))," \
  "which tries HTTPS first on 127.0.0.1 and falls back to plain HTTP."
end_section
fi
if [[ " $sections " == *" zstd "* ]]; then
section zstd
echo "== zstd: dockersave (layers decompressed) and --compressed (zstd kept) against"
echo "   skopeo copy docker://... oci: (skopeo 1.9 writes no docker-archive of a zstd image)"
compare dockersave skopeo-oci bigz
compare compressed skopeo-oci bigz
end_section
echo
fi
if [[ " $sections " == *" decoders "* ]]; then
section decoders
echo "== decoders: one layer decoded and hashed by build/probes/decode, built with each decoder"
echo "   (zlib-rs, miniz_oxide, libzstd, ruzstd) and without one (hashing alone, subtracted)"
# One static binary per decoder, built as dockersave's release is; each one's size over the
# probe without a decoder is what the decoder adds.
for decoder in none zlib-rs miniz libzstd ruzstd; do
  features=()
  [ "$decoder" = none ] || features=(--features "$decoder")
  CARGO_TARGET_DIR=$DS_ROOT/target/probe-decode-$decoder cargo build -q --locked --release \
    --manifest-path "$DS_ROOT/build/probes/decode/Cargo.toml" --target x86_64-unknown-linux-musl \
    "${features[@]}"
  cp "$DS_ROOT/target/probe-decode-$decoder/x86_64-unknown-linux-musl/release/dockersave-decode-probe" \
    "$DS_STATE/decode-$decoder"
done
# The layers: "docs", the rootfs image's tar (the host's documentation and locales), gzipped
# at gzip's default level (as registries' images are) and by zstd -3 (skopeo's, buildah's);
# "busybox", a layer of the one binary (short matches: many small copies), decoded 100 times.
mkdir -p "$DS_STATE/decode"
tar -C / -cf "$DS_STATE/decode/docs.plain" usr/share/doc usr/share/locale
tar -C /bin -cf "$DS_STATE/decode/busybox.plain" busybox
for layer in docs busybox; do
  gzip -6 -c "$DS_STATE/decode/$layer.plain" >"$DS_STATE/decode/$layer-gz"
  cp "$DS_STATE/decode/$layer.plain" "$DS_STATE/decode/$layer-gz.plain"
  echo 1 >"$DS_STATE/decode/$layer-gz.repeat"
done
echo 100 >"$DS_STATE/decode/busybox-gz.repeat"
zstd -3 -q -c "$DS_STATE/decode/docs.plain" >"$DS_STATE/decode/docs-zst"
cp "$DS_STATE/decode/docs.plain" "$DS_STATE/decode/docs-zst.plain"
echo 1 >"$DS_STATE/decode/docs-zst.repeat"
rounds docs-gz decode-none decode-zlib-rs decode-miniz gzip-d
rounds busybox-gz decode-none decode-zlib-rs decode-miniz gzip-d
rounds docs-zst decode-none decode-libzstd decode-ruzstd zstd-d
md "| layer | decoder | decode time | decoded MB/s | vs the command | peak RSS | binary over hashing alone |"
md "|---|---|---|---|---|---|---|"
none_size=$(stat -c %s "$DS_STATE/decode-none")
for row in "docs-gz gzip-d decode-zlib-rs decode-miniz" "busybox-gz gzip-d decode-zlib-rs decode-miniz" \
  "docs-zst zstd-d decode-libzstd decode-ruzstd"; do
  read -r layer command decoders <<<"$row"
  bytes=$(($(stat -c %s "$DS_STATE/decode/$layer.plain") * $(cat "$DS_STATE/decode/$layer.repeat")))
  hashing=$(cut -d' ' -f1 "$DS_STATE/decode-none-$layer" | median)
  command_wall=$(cut -d' ' -f1 "$DS_STATE/$command-$layer" | median)
  what="$(printf '%.0f MB' "$(echo "$bytes / 1000000" | bc -l)") of ${layer%-*}, $(stat -c %s "$DS_STATE/decode/$layer" |
    awk '{ printf "%.1f MB", $1 / 1000000 }') ${layer#*-}"
  md "| $what | \`${command%-d} -d\` (the command, no hashing) | $(printf '%.3f s' "$command_wall") |" \
    "$(printf '%.0f' "$(echo "$bytes / 1000000 / $command_wall" | bc -l)") | 1 |" \
    "$(cut -d' ' -f2 "$DS_STATE/$command-$layer" | median | awk '{ printf "%.1f MiB", $1 / 1024 }') | |"
  for decoder in $decoders; do
    wall=$(cut -d' ' -f1 "$DS_STATE/$decoder-$layer" | median)
    decode=$(echo "$wall - $hashing" | bc -l)
    printf '%-10s %-15s decode %.3f s (%.3f s with hashing)\n' "$layer" "${decoder#decode-}" "$decode" "$wall"
    md "| $what | ${decoder#decode-} | $(printf '%.3f s' "$decode") |" \
      "$(printf '%.0f' "$(echo "$bytes / 1000000 / $decode" | bc -l)") |" \
      "**$(printf '%.2f' "$(echo "$decode / $command_wall" | bc -l)")** |" \
      "$(cut -d' ' -f2 "$DS_STATE/$decoder-$layer" | median | awk '{ printf "%.1f MiB", $1 / 1024 }') |" \
      "$(stat -c %s "$DS_STATE/$decoder" | awk -v n="$none_size" '{ printf "+%.0f KB", ($1 - n) / 1000 }') |"
  done
done
md ""
md "Decode time: the probe's wall time less that of the probe without a decoder hashing the same" \
  "bytes ($(printf '%.3f' "$(cut -d' ' -f1 "$DS_STATE/decode-none-docs-gz" | median)") s for the docs tar: sha256" \
  "of what comes out, in 64 KiB buffers, as the layer pipeline reads). $(gzip --version | head -n 1)," \
  "$(zstd --version | sed 's/ \*\*\*//; s/^\*\*\* //; s/, by.*//')."
end_section
echo
fi
if [[ " $sections " == *" fleet "* ]]; then
section fleet
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
md "| $fleet_size pulls of rootfs at once | wall | upstream served | largest peak RSS of a process |"
md "|---|---|---|---|"
for mode in direct cold warm; do
  case $mode in
    direct) what="straight from the registry" ;;
    cold) what="through the cache, empty at first" ;;
    warm) what="through the cache, holding it" ;;
  esac
  printf '%-34s %12.3f %20.1f %22.1f\n' "$what" "$(cut -d' ' -f1 "$DS_STATE/fleet-$mode" | median)" \
    "$(echo "$(cut -d' ' -f3 "$DS_STATE/fleet-$mode" | median) / 1000000" | bc -l)" \
    "$(echo "$(cut -d' ' -f2 "$DS_STATE/fleet-$mode" | median) / 1024" | bc -l)"
  md "| $what | $(spread fleet "$mode" 1 1 s 1) | $(spread fleet "$mode" 3 1000000 MB 1) |" \
    "$(spread fleet "$mode" 2 1024 MiB 1) |"
done
blobs=$(grep -o '"size":[0-9]*' <<<"$(skopeo inspect --raw --tls-verify=false "docker://$upstream/rootfs:latest")" |
  awk -F: '{ s += $2 } END { printf "%.1f MB", s / 1000000 }')
echo "   (one image's blobs: $blobs)"
md ""
md "One pull of rootfs fetches $blobs of blobs; the upstream's bytes are from its log" \
  "(\`http.response.written\`)."
end_section
echo
fi
if [[ " $sections " == *" copy "* ]]; then
section copy
echo "== copy: dockersave --copy-to against skopeo copy docker:// docker://, into an emptied registry"
compare copy skopeo-copy busybox big big2x
upload_floor copy big big2x
end_section
echo
fi
if [[ " $sections " == *" bundle "* ]]; then
section bundle
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
end_section
echo
fi
if [[ " $sections " == *" thin "* ]]; then
section thin
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
md ""
md "$(printf 'Archive bytes of big-v2: full %.1f MB, thin %.3f MB (%.4f of the full one).' \
  "$(echo "$full_bytes / 1000000" | bc -l)" "$(echo "$thin_bytes / 1000000" | bc -l)" \
  "$(echo "$thin_bytes / $full_bytes" | bc -l)")"
compare cache-warm cache-cold big-v2
end_section
echo
fi
if [[ " $sections " == *" cores "* ]]; then
section cores
echo "== cores: the archive against -o /dev/null (the CPU work alone), on two cores and on one"
compare archive devnull big big2x rootfs
compare stdout devnull big
compare gzip archive big
compare archive-1core devnull-1core big
compare rootfs-1core rootfs big
compare flatten-1core flatten big
end_section
echo
fi
if [[ " $sections " == *" profile "* ]]; then
section profile
echo "== profile: where the time of big's archive, -o /dev/null and --rootfs goes: CPU time"
echo "   (time), by function (perf record, a build with symbols) and in system calls (strace -c)"
rounds big archive devnull rootfs
md "| big | wall | user CPU | system CPU | cores busy (CPU/wall) |"
md "|---|---|---|---|---|"
for tool in archive devnull rootfs; do
  md "| $(label "$tool") | $(spread "$tool" big 1 1 s 3) | $(spread "$tool" big 3 1 s 2) |" \
    "$(spread "$tool" big 4 1 s 2) | **$(awk '{ w += $1; c += $3 + $4 } END { printf "%.2f", c / w }' \
      "$DS_STATE/$tool-big")** |"
done
# The same code with its symbols (the release build strips them).
(
  . "$DS_ROOT/cross/targets.sh"
  cross_env x86_64-unknown-linux-musl
  cd "$DS_ROOT"
  # shellcheck disable=SC2086 # word list
  CARGO_PROFILE_RELEASE_STRIP=false CARGO_TARGET_DIR=$DS_ROOT/target/profile \
    cargo build -q --locked --release --target x86_64-unknown-linux-musl $DS_CARGO_FLAGS
)
symbols=$DS_ROOT/target/profile/x86_64-unknown-linux-musl/release/dockersave
# profile_args TOOL: an emptied $out, and TOOL's output arguments in $args.
profile_args() {
  rm -rf "$out" && mkdir -p "$out"
  case $1 in
    archive) args=(-o "$out/big.tar") ;;
    devnull) args=(-o /dev/null) ;;
    rootfs) args=(--rootfs "$out/rootfs") ;;
  esac
}
md ""
md "Where the CPU time goes (\`perf record -e cpu-clock\`, one run each, all threads, kernel included):"
md ""
md "| big | sha256 | inflate (zlib-rs) | memcpy, memmove | other dockersave | kernel | the kernel's largest |"
md "|---|---|---|---|---|---|---|"
for tool in archive devnull rootfs; do
  profile_args "$tool"
  perf record -q -e cpu-clock -F 2000 -o "$DS_STATE/perf.data" -- \
    "$symbols" --insecure -q "${args[@]}" "$registry/big:latest" >/dev/null 2>&1
  perf report -i "$DS_STATE/perf.data" --stdio --no-children --sort dso,symbol 2>/dev/null |
    awk -v what="$(label "$tool")" '
      /^#/ || NF < 4 { next }
      { share = $1; sub(/%/, "", share); name = $0; sub(/^ *[0-9.]+% +[^ ]+ +\[.\] +/, "", name)
        sub(/( +-)* *$/, "", name)
        if ($3 == "[k]") { kernel += share; if (k[name] == "") { order[++n] = name }; k[name] += share }
        else if (name ~ /sha2|sha256|digest_blocks/) sha += share
        else if (name ~ /zlib_rs|inflate/) inflate += share
        else if (name ~ /memcpy|memmove|memset/) copy += share
        else other += share }
      END {
        top = ""
        for (i = 1; i <= n && i <= 3; i++) top = top sprintf("%s%s %.0f%%", (i > 1 ? ", " : ""), order[i], k[order[i]])
        printf "| %s | %.0f%% | %.0f%% | %.0f%% | %.0f%% | %.0f%% | %s |\n", what, sha, inflate, copy, other, kernel, top
      }' >>"$bench_out/$current.md"
done
md ""
md "Time in system calls (\`strace -f -c -w\`, one run each, all threads; strace itself slows" \
  "every call, so these are shares, not the untraced times; futex is a thread waiting for another):"
md ""
md "| big | the system calls that took longest (seconds, share of the traced time) |"
md "|---|---|"
for tool in archive devnull rootfs; do
  profile_args "$tool"
  strace -f -c -w -o "$DS_STATE/strace" "$dockersave" --insecure -q "${args[@]}" "$registry/big:latest" >/dev/null 2>&1
  md "| $(label "$tool") | $(awk '$1 ~ /^[0-9.]+$/ && $NF != "total" { printf "%s%s %.3f s (%.0f%%)", (n++ ? ", " : ""), $NF, $2, $1 } n == 5 { exit }' \
    "$DS_STATE/strace") |"
done
end_section
echo
fi
if [[ " $sections " == *" artifact "* ]]; then
section artifact
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
end_section
echo
fi
if [[ " $sections " == *" initramfs "* ]]; then
section initramfs
as_nobody=(setpriv --reuid=nobody --regid=nogroup --clear-groups env HOME=/nonexistent)
chmod 711 "$DS_STATE"
echo "== initramfs: dockersave --initramfs (as nobody) against --rootfs as root, then"
echo "   find . | cpio -o -H newc | gzip -1 (and --xz against xz -1 -C crc32)"
compare initramfs rootfs-cpio rootfs big big2x
compare initramfs-xz rootfs-cpio-xz rootfs big
end_section
echo
fi
echo "($runs runs each, alternating; $(nproc) cores; $(date -u +%Y-%m-%d))"
# DS_BENCH_DOCS=1: the tables of the sections that ran go into docs/performance.md, each between
# its markers, replacing the last run's.
if [ "${DS_BENCH_DOCS:-}" = 1 ]; then
  if [ "${DS_BENCH_MINIMAL:-}" = 1 ]; then
    echo "DS_BENCH_DOCS: the documented tables are the full build's; not written for the minimal one" >&2
    exit 1
  fi
  python3 - "$DS_ROOT/docs/performance.md" "$bench_out" $sections <<'PY'
import pathlib, sys
doc, out, sections = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3:]
text = doc.read_text()
for name in sections:
    begin, end = f"<!-- bench {name} -->\n", f"<!-- /bench {name} -->"
    if text.count(begin) != 1 or text.count(end) != 1:
        sys.exit(f"docs/performance.md needs one '{begin.strip()}' ... '{end}' block for section {name}")
    head, rest = text.split(begin, 1)
    tail = rest.split(end, 1)[1]
    text = head + begin + (out / f"{name}.md").read_text() + end + tail
doc.write_text(text)
print(f"docs/performance.md: the tables of {' '.join(sections)} written")
PY
fi
