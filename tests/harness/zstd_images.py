#!/usr/bin/env python3
"""zstd test images, compressed by the `zstd` program, written into an OCI image layout that
skopeo then pushes. skopeo makes the plain zstd image (`--dest-compress-format zstd`); these
are the shapes it does not make:

    zstd_images.py chunked LAYOUT FROM TAG   FROM's layers as zstd:chunked lays them out: many
                                             frames (one per 64 KiB of tar), skippable frames
                                             between them and after the last
    zstd_images.py big LAYOUT TAG            three layers of 9.5 MB of text each, compressed with
                                             8 MiB windows (the first at level 19, the others at
                                             level 3 with level 19's window), for peak memory
    zstd_images.py long LAYOUT TAG           one layer compressed with --long=28: a 256 MiB
                                             window, over the cap
    zstd_images.py estargz LAYOUT FROM TAG   FROM's layers as eStargz lays them out: a gzip
                                             member per tar entry, the stargz.index.json entry
                                             and a footer member at the end (gzip, not zstd: the
                                             other lazy-pulling format, read by the same walker)
    zstd_images.py members LAYOUT TAG        four gzip layers of random files whose gzip trailers
                                             mislead (several members; the trailer gives the
                                             last one's size): the first's gives less than its
                                             tar, the second's only its end blocks, read as
                                             4 GiB more; the third and fourth are plain
    zstd_images.py twins LAYOUT GZIP OTHER ZSTD TAG   an index listing GZIP and, copied from the
                                             layout OTHER, ZSTD (the same image compressed two
                                             ways) for linux/amd64, the zstd entry annotated as
                                             containers' tools do

FROM and GZIP are tags in LAYOUT, ZSTD a tag in OTHER.
"""
import gzip
import hashlib
import io
import json
import os
import random
import struct
import subprocess
import sys
import tarfile

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
ZSTD_LAYER = "application/vnd.oci.image.layer.v1.tar+zstd"


def zstd(data, *args):
    return subprocess.run(["zstd", "-q", "-c", *args], input=data, stdout=subprocess.PIPE,
                          check=True).stdout


def skippable(n, payload):
    return struct.pack("<II", 0x184D2A50 + n, len(payload)) + payload


class Layout:
    def __init__(self, path):
        self.path = path
        self.blobs = os.path.join(path, "blobs", "sha256")
        with open(os.path.join(path, "index.json")) as f:
            self.index = json.load(f)

    def get(self, digest):
        with open(os.path.join(self.blobs, digest.split(":")[1]), "rb") as f:
            return f.read()

    def put(self, data, media_type):
        digest = hashlib.sha256(data).hexdigest()
        with open(os.path.join(self.blobs, digest), "wb") as out:
            out.write(data)
        return {"mediaType": media_type, "digest": "sha256:" + digest, "size": len(data)}

    def manifest(self, tag):
        for m in self.index["manifests"]:
            if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
                return m, json.loads(self.get(m["digest"]))
        raise SystemExit(f"no {tag} in {self.path}")

    def tag(self, descriptor, tag):
        descriptor = dict(descriptor, annotations={"org.opencontainers.image.ref.name": tag})
        self.index["manifests"] = [
            m for m in self.index["manifests"]
            if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag]
        self.index["manifests"].append(descriptor)
        with open(os.path.join(self.path, "index.json"), "w") as out:
            json.dump(self.index, out)

    def image(self, tag, config, blobs):
        """Tags an image of `config` (a dict) and layer blobs (descriptors)."""
        config_desc = self.put(json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json")
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config_desc,
                    "layers": blobs}
        self.tag(self.put(json.dumps(manifest).encode(), OCI_MANIFEST), tag)


def chunked(layout, source, tag):
    _, manifest = layout.manifest(source)
    config = json.loads(layout.get(manifest["config"]["digest"]))
    blobs = []
    for n, layer in enumerate(manifest["layers"]):
        tar = gzip.decompress(layout.get(layer["digest"]))
        # Real zstd:chunked layers start with a zstd frame (a blob starting with a skippable
        # frame is taken for uncompressed by skopeo, which would gzip it on the way up).
        blob = b""
        for i in range(0, max(len(tar), 1), 64 * 1024):
            blob += zstd(tar[i:i + 64 * 1024], "-3")
            blob += skippable(i % 16, json.dumps({"chunk": i}).encode())
        blob += skippable(15, b"zstd:chunked manifest" * 100)
        blobs.append(layout.put(blob, ZSTD_LAYER))
    layout.image(tag, config, blobs)


def estargz(layout, source, tag):
    _, manifest = layout.manifest(source)
    config = json.loads(layout.get(manifest["config"]["digest"]))
    blobs, diff_ids = [], []
    for layer in manifest["layers"]:
        tar = gzip.decompress(layout.get(layer["digest"]))
        members, plain, toc = [], b"", []
        with tarfile.open(fileobj=io.BytesIO(tar)) as source_tar:
            for info in source_tar.getmembers():
                data = source_tar.extractfile(info).read() if info.isfile() else b""
                entry = info.tobuf(format=tarfile.PAX_FORMAT) + data
                entry += b"\0" * (-len(data) % 512)
                toc.append({"name": info.name, "type": "reg" if info.isfile() else "dir",
                            "size": len(data)})
                members.append(gzip.compress(entry, mtime=0))
                plain += entry
        index = json.dumps({"version": 1, "entries": toc}).encode()
        info = tarfile.TarInfo("stargz.index.json")
        info.size = len(index)
        last = info.tobuf(format=tarfile.PAX_FORMAT) + index + b"\0" * (-len(index) % 512)
        last += b"\0" * 1024
        members.append(gzip.compress(last, mtime=0))
        plain += last
        # The footer: an empty gzip member whose extra field gives the index's offset.
        offset = sum(len(m) for m in members[:-1])
        extra = b"SG" + struct.pack("<H", 22) + b"%016xSTARGZ" % offset
        footer = (b"\x1f\x8b\x08\x04" + b"\0" * 4 + b"\x00\xff" + struct.pack("<H", len(extra))
                  + extra + b"\x03\x00" + b"\0" * 8)
        blobs.append(layout.put(b"".join(members) + footer,
                                "application/vnd.oci.image.layer.v1.tar+gzip"))
        diff_ids.append("sha256:" + hashlib.sha256(plain).hexdigest())
    config["rootfs"]["diff_ids"] = diff_ids
    layout.image(tag, config, blobs)


def text_tar(seed, size):
    rng = random.Random(seed)
    words = ["".join(rng.choice("abcdefghij") for _ in range(rng.randint(2, 9)))
             for _ in range(5000)]
    lines, n = [], 0
    while n < size:
        line = " ".join(rng.choice(words) for _ in range(12)) + "\n"
        lines.append(line)
        n += len(line)
    data = "".join(lines).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(f"data/text{seed}")
        info.size, info.mtime, info.mode = len(data), 1_600_000_000, 0o644
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def image_of(layout, tag, tars, compress, media_type=ZSTD_LAYER):
    blobs = [layout.put(compress(i, tar), media_type) for i, tar in enumerate(tars)]
    config = {"architecture": "amd64", "os": "linux", "created": "2020-09-13T12:26:40Z",
              "rootfs": {"type": "layers",
                         "diff_ids": ["sha256:" + hashlib.sha256(t).hexdigest() for t in tars]},
              "history": [{"created": "2020-09-13T12:26:40Z", "created_by": f"layer {i + 1}"}
                          for i in range(len(tars))]}
    layout.image(tag, config, blobs)


def big(layout, tag):
    tars = [text_tar(seed, 9_500_000) for seed in range(3)]
    image_of(layout, tag, tars,
             lambda i, tar: zstd(tar, "-19") if i == 0 else zstd(tar, "-3", "--zstd=wlog=23"))


def long(layout, tag):
    # From standard input the size is unknown, so the window is not shrunk to fit it.
    image_of(layout, tag, [text_tar(7, 100_000)], lambda i, tar: zstd(tar, "--long=28"))


def members(layout, tag):
    rng = random.Random(5)

    def random_tar(name, size):
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = size, 1_600_000_000, 0o644
            tar.addfile(info, io.BytesIO(rng.randbytes(size)))
        return out.getvalue()

    def in_members(tar, *cuts):
        points = [0, *cuts, len(tar)]
        return b"".join(gzip.compress(tar[a:b], mtime=0) for a, b in zip(points, points[1:]))

    tars = [random_tar(f"data/{name}", size) for name, size in
            [("first", 12_000_000), ("second", 3_000_000), ("third", 3_000_000), ("fourth", 200_000)]]
    cuts = [[1 << 20], [len(tars[1]) - 1024], [], []]
    image_of(layout, tag, tars, lambda i, tar: in_members(tar, *cuts[i]),
             "application/vnd.oci.image.layer.v1.tar+gzip")


def twins(layout, gzip_tag, other, zstd_tag, tag):
    descriptor, manifest = other.manifest(zstd_tag)
    for blob in [descriptor, manifest["config"], *manifest["layers"]]:
        layout.put(other.get(blob["digest"]), blob["mediaType"])
    entries = []
    for source, annotations in [((layout, gzip_tag), {}),
                                ((other, zstd_tag), {"io.github.containers.compression.zstd": "true"})]:
        descriptor, _ = source[0].manifest(source[1])
        entry = {"mediaType": OCI_MANIFEST, "digest": descriptor["digest"],
                 "size": descriptor["size"], "platform": {"os": "linux", "architecture": "amd64"}}
        if annotations:
            entry["annotations"] = annotations
        entries.append(entry)
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    layout.tag(layout.put(json.dumps(index).encode(), OCI_INDEX), tag)


def main():
    kind, layout = sys.argv[1], Layout(sys.argv[2])
    if kind == "chunked":
        chunked(layout, sys.argv[3], sys.argv[4])
    elif kind == "estargz":
        estargz(layout, sys.argv[3], sys.argv[4])
    elif kind == "big":
        big(layout, sys.argv[3])
    elif kind == "long":
        long(layout, sys.argv[3])
    elif kind == "members":
        members(layout, sys.argv[3])
    elif kind == "twins":
        twins(layout, sys.argv[3], Layout(sys.argv[4]), sys.argv[5], sys.argv[6])
    else:
        raise SystemExit(f"unknown kind {kind}")


if __name__ == "__main__":
    main()
