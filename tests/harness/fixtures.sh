#!/usr/bin/env bash
# Builds the test images as OCI layouts with independent tools (umoci, buildah) from Debian's
# busybox-static, then pushes them with skopeo/buildah into the registry at $1 (host:port, plain
# HTTP). Nothing is downloaded: every byte comes from packages installed on this machine.
#
#   busybox:latest        runnable busybox, Docker schema-2 manifest (skopeo --format v2s2)
#   busybox-oci:latest    the same image with an OCI manifest
#   layers:latest         3 layers: busybox, files, then a deleted file and an opaque directory
#   shifted:latest        busybox's layer on top of another one (same diff ID, other chain ID)
#   shifted:2             shifted:latest and one layer more (its next version)
#   multi:latest          OCI index: linux/amd64, linux/arm64, linux/arm/v7 (buildah manifest)
#   multi-docker:latest   the same as a Docker manifest list
#   multi-arm:latest      OCI index of 32-bit ARM only: linux/arm/v5, v6 and v7, to see which one
#                         a v5, v6 or v7 CPU picks
#   zstd:latest           layers:latest with zstd layers (skopeo --dest-compress-format zstd)
#   zstd-chunked:latest   layers:latest as zstd:chunked lays layers out: many frames, skippable
#                         frames between and after them (the zstd program; zstd_images.py)
#   zstd-big:latest       three 9.5 MB layers with 8 MiB windows (zstd -19), for peak memory
#   zstd-long:latest      a layer with a 256 MiB window (zstd --long=28), over the cap
#   estargz:latest        layers:latest as eStargz: a gzip member per entry, an index entry and
#                         a footer member at the end
#   members:latest        four gzip layers of random data (18 MB) whose trailers mislead:
#                         several gzip members each, the trailer giving the last one's size
#   twins:latest          OCI index listing busybox twice for linux/amd64: gzip, and zstd
#                         annotated as podman and buildah annotate it
#   library/busybox:latest  busybox under the path Docker Hub gives official images, for the
#                         pull-through cache to serve as a Hub mirror would
#   attested:latest       multi with a BuildKit-style attestation per platform
#                         (unknown/unknown entries; attested_images.py)
#   signed*, unsigned     busybox (signed-index: multi) signed as cosign signs, by keys left in
#                         $work/keys (cosign_images.py lists each case)
#   artifacts/*, charts/demo  OCI artifacts as ORAS and Helm publish them, busybox with SBOMs
#                         attached, and hostile ones; their files in $work/artifacts
#                         (artifact_images.py)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
registry=$1
work=$2
rm -rf "$work" && mkdir -p "$work"
cd "$work"
oci=$work/oci

umoci init --layout "$oci"
umoci new --image "$oci:base"

# busybox: one layer holding the static busybox and a marker file.
umoci unpack --image "$oci:base" bundle
mkdir -p bundle/rootfs/bin bundle/rootfs/etc
cp /bin/busybox bundle/rootfs/bin/busybox
for applet in sh ls cat echo; do ln -s busybox "bundle/rootfs/bin/$applet"; done
echo "dockersave fixture" > bundle/rootfs/etc/fixture
umoci repack --image "$oci:busybox" bundle
rm -rf bundle
umoci config --image "$oci:busybox" --os linux --architecture amd64 \
  --config.cmd /bin/sh --config.env PATH=/bin

# layers: busybox + a layer of files + a layer with a whiteout and an opaque directory.
umoci unpack --image "$oci:busybox" bundle
mkdir -p bundle/rootfs/data/dir
echo a > bundle/rootfs/data/a
echo b > bundle/rootfs/data/b
echo x > bundle/rootfs/data/dir/x
echo y > bundle/rootfs/data/dir/y
umoci repack --image "$oci:layers" bundle
rm -rf bundle
mkdir -p top/data/dir
: > top/data/.wh.a
: > top/data/dir/.wh..wh..opq
echo z > top/data/dir/z
tar --owner=0 --group=0 --numeric-owner -C top -cf top.tar data
umoci raw add-layer --image "$oci:layers" top.tar
rm -rf top top.tar

# shifted: busybox's layer above another layer: the same diff ID on other layers below, so
# another chain ID (a thin archive must keep it for a receiver that holds busybox).
busybox_blob=$(python3 -c '
import json, sys
layout = sys.argv[1]
index = json.load(open(layout + "/index.json"))
entry = next(m for m in index["manifests"]
             if m["annotations"]["org.opencontainers.image.ref.name"] == "busybox")
manifest = json.load(open(layout + "/blobs/sha256/" + entry["digest"].split(":")[1]))
print(layout + "/blobs/sha256/" + manifest["layers"][0]["digest"].split(":")[1])' "$oci")
mkdir -p marker/etc
echo shifted > marker/etc/shifted
tar --owner=0 --group=0 --numeric-owner -C marker -cf marker.tar etc
gzip -dc "$busybox_blob" > busybox-layer.tar
umoci new --image "$oci:shifted"
umoci raw add-layer --image "$oci:shifted" marker.tar
umoci raw add-layer --image "$oci:shifted" busybox-layer.tar
umoci config --image "$oci:shifted" --os linux --architecture amd64 \
  --config.cmd /bin/sh --config.env PATH=/bin
rm -rf marker marker.tar busybox-layer.tar
# shifted:2, the next version: one layer more. No other image has shifted's layers, so a thin
# archive of it needs exactly shifted:latest on the receiving side.
umoci unpack --image "$oci:shifted" bundle
echo 2 > bundle/rootfs/etc/version
umoci repack --image "$oci:shifted-2" bundle
rm -rf bundle

# Per-platform variants for the index: same files, their own config and a marker layer.
for platform in arm64 arm/v7 arm/v6 arm/v5; do
  tag=busybox-${platform//\//-}
  arch=${platform%%/*}
  umoci unpack --image "$oci:busybox" bundle
  echo "$platform" > bundle/rootfs/etc/platform
  umoci repack --image "$oci:$tag" bundle
  rm -rf bundle
  umoci config --image "$oci:$tag" --architecture "$arch"
done
umoci gc --layout "$oci"

push=(skopeo copy --quiet --dest-tls-verify=false)
"${push[@]}" --format v2s2 "oci:$oci:busybox" "docker://$registry/busybox:latest"
"${push[@]}" --format oci "oci:$oci:busybox" "docker://$registry/busybox-oci:latest"
"${push[@]}" --format v2s2 "oci:$oci:busybox" "docker://$registry/library/busybox:latest"
"${push[@]}" "oci:$oci:layers" "docker://$registry/layers:latest"
"${push[@]}" "oci:$oci:shifted" "docker://$registry/shifted:latest"
"${push[@]}" "oci:$oci:shifted-2" "docker://$registry/shifted:2"

# buildah keeps its own storage here, on vfs, so it needs nothing from the host's setup.
bh=(buildah --root "$work/storage" --runroot "$work/run" --storage-driver vfs)
for format in oci v2s2; do
  name=multi-$format
  "${bh[@]}" manifest create "$name" >/dev/null
  "${bh[@]}" manifest add "$name" "oci:$oci:busybox" >/dev/null
  "${bh[@]}" manifest add --arch arm64 "$name" "oci:$oci:busybox-arm64" >/dev/null
  "${bh[@]}" manifest add --arch arm --variant v7 "$name" "oci:$oci:busybox-arm-v7" >/dev/null
  target=multi
  [ "$format" = v2s2 ] && target=multi-docker
  "${bh[@]}" manifest push --quiet --all --format "$format" --tls-verify=false "$name" "docker://$registry/$target:latest"
done
name=multi-arm
"${bh[@]}" manifest create "$name" >/dev/null
for variant in v5 v6 v7; do
  "${bh[@]}" manifest add --arch arm --variant "$variant" "$name" "oci:$oci:busybox-arm-$variant" >/dev/null
done
"${bh[@]}" manifest push --quiet --all --format oci --tls-verify=false "$name" "docker://$registry/multi-arm:latest"

# zstd: skopeo compresses with zstd; the shapes it does not make come from the zstd program.
# Each into a layout of its own: into one that holds the gzip blobs, skopeo reuses those.
skopeo copy --quiet --dest-compress-format zstd "oci:$oci:layers" "oci:$work/zstd:zstd"
# Level 19, so that the zstd twin is the smaller one.
skopeo copy --quiet --dest-compress-format zstd --dest-compress-level 19 "oci:$oci:busybox" "oci:$work/busybox-zstd:busybox-zstd"
zstd_images=$here/zstd_images.py
python3 "$zstd_images" chunked "$oci" layers zstd-chunked
python3 "$zstd_images" estargz "$oci" layers estargz
python3 "$zstd_images" big "$oci" zstd-big
python3 "$zstd_images" long "$oci" zstd-long
python3 "$zstd_images" members "$oci" members
python3 "$zstd_images" twins "$oci" busybox "$work/busybox-zstd" busybox-zstd twins
# --preserve-digests: skopeo must push these blobs as they are; without it skopeo puts the
# gzip blobs the registry already has for the same tars in their place.
"${push[@]}" --preserve-digests "oci:$work/zstd:zstd" "docker://$registry/zstd:latest"
for tag in zstd-chunked zstd-big zstd-long estargz members; do
  "${push[@]}" --preserve-digests "oci:$oci:$tag" "docker://$registry/$tag:latest"
done
"${push[@]}" --preserve-digests --all "oci:$oci:twins" "docker://$registry/twins:latest"

# Signed images: busybox (and the multi index) copied under the names cosign_images.py signs;
# the public keys go to $work/keys.
for repo in signed signed-two unsigned signed-other signed-copied signed-notjson \
  signed-truncated signed-ed25519 signed-rsa signed-bundle signed-message bundle-other \
  bundle-raw bundle-elsewhere bundle-digest bundle-keyless; do
  "${push[@]}" --src-tls-verify=false --preserve-digests "docker://$registry/busybox:latest" \
    "docker://$registry/$repo:latest"
done
"${push[@]}" --src-tls-verify=false --preserve-digests --all "docker://$registry/multi:latest" \
  "docker://$registry/signed-index:latest"
for repo in trick-twice trick-platformless trick-mixed trick-attest-only; do
  "${push[@]}" --src-tls-verify=false --preserve-digests "docker://$registry/busybox:latest" \
    "docker://$registry/$repo:base"
done
python3 "$here/artifact_images.py" "$registry" "$work/artifacts"
python3 "$here/cosign_images.py" "$registry" "$work/keys"
python3 "$here/attested_images.py" "$registry"
echo "fixtures pushed to $registry"
