#!/usr/bin/env python3
"""Test images written byte by byte with Python's tarfile, as an OCI image layout that skopeo
then pushes. The tests need layers that image builders never make: whiteouts and opaque markers
in awkward orders, device nodes, hard links across layers, and hostile entries (`..`, absolute
paths, symlinks that leave the tree) aimed at a canary outside the target directory.

    images.py NAME LAYOUT [CANARY]
    images.py --tar NAME LAYOUT TARFILE

writes image NAME (see IMAGES) into the OCI layout directory LAYOUT, tagged NAME. CANARY is the
absolute path of the file the hostile images aim at; the tests put it outside the directory they
unpack into, three levels up: DIR = <scratch>/a/b/rootfs, CANARY = <scratch>/canary. With
--tar, the image's one layer is TARFILE as it is (another project's test archive), gzipped.
"""
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

MTIME = 1_600_000_000
# security.capability for cap_net_raw+ep: VFS_CAP_REVISION_2 | EFFECTIVE, permitted bit 13.
CAP_NET_RAW = bytes([0x01, 0, 0, 0x02, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])


def entry(path, kind="file", data=b"", mode=None, uid=0, gid=0, link="", dev=(0, 0), xattrs=None):
    return dict(path=path, kind=kind, data=data, mode=mode, uid=uid, gid=gid, link=link, dev=dev,
                xattrs=xattrs or {})


def f(path, data, **kw):
    return entry(path, "file", data.encode() if isinstance(data, str) else data, **kw)


def d(path, **kw):
    return entry(path, "dir", **kw)


def sym(path, target, **kw):
    return entry(path, "symlink", link=target, **kw)


def hard(path, target, **kw):
    return entry(path, "link", link=target, **kw)


TYPES = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
         "link": tarfile.LNKTYPE, "char": tarfile.CHRTYPE, "block": tarfile.BLKTYPE,
         "fifo": tarfile.FIFOTYPE}
DEFAULT_MODES = {"file": 0o644, "dir": 0o755, "symlink": 0o777, "link": 0o644, "char": 0o666,
                 "block": 0o660, "fifo": 0o644}


def layer_tar(entries):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8",
                      errors="surrogateescape") as tar:
        for e in entries:
            info = tarfile.TarInfo(e["path"])
            info.type = TYPES[e["kind"]]
            info.mode = e["mode"] if e["mode"] is not None else DEFAULT_MODES[e["kind"]]
            info.uid, info.gid = e["uid"], e["gid"]
            info.uname = info.gname = ""
            info.mtime = MTIME
            info.linkname = e["link"]
            info.devmajor, info.devminor = e["dev"]
            if e["xattrs"]:
                info.pax_headers = {
                    "SCHILY.xattr." + name: value.decode("utf-8", "surrogateescape")
                    for name, value in e["xattrs"].items()
                }
            data = e["data"]
            info.size = len(data) if e["kind"] == "file" else 0
            tar.addfile(info, io.BytesIO(data) if info.size else None)
    return out.getvalue()


def rich():
    """Everything --rootfs must get right, in three layers."""
    base = [
        d("./"),
        d("bin/"),
        f("bin/su", "su", mode=0o4755),
        f("bin/sg", "sg", mode=0o2755),
        f("bin/ping", "ping", mode=0o755, xattrs={"security.capability": CAP_NET_RAW}),
        d("tmp/", mode=0o1777),
        d("etc/"),
        f("etc/passwd", "root:x:0:0::/root:/bin/sh\n"),
        f("etc/tagged", "has a user xattr", xattrs={"user.dockersave": b"hello"}),
        d("home/"),
        d("home/user/", mode=0o700, uid=1000, gid=1000),
        f("home/user/notes", "mine", mode=0o600, uid=1000, gid=1000),
        d("ro/", mode=0o555),
        f("ro/file", "read only", mode=0o444),
        d("dev/"),
        entry("dev/null", "char", dev=(1, 3), mode=0o666),
        entry("dev/loop0", "block", dev=(7, 0), mode=0o660, gid=6),
        d("run/"),
        entry("run/fifo", "fifo", mode=0o620),
        d("usr/"),
        d("usr/lib/"),
        f("usr/lib/libx.so", "elf"),
        sym("lib", "usr/lib"),
        sym("abs-link", "/etc/passwd"),
        d("data/"),
        f("data/shared", "shared content"),
        f("data/gone", "deleted by layer 2"),
        d("data/tree/"),
        f("data/tree/a", "a"),
        d("data/tree/sub/"),
        f("data/tree/sub/b", "b"),
        d("data/opq/"),
        f("data/opq/old", "hidden by the opaque marker"),
        f("data/opq/keep", "old keep"),
        d("data/opq/olddir/"),
        f("data/opq/olddir/x", "x"),
        d("data/replaced/"),
        f("data/replaced/x", "x"),
    ]
    middle = [
        f("data/.wh.gone", ""),
        f("data/.wh.tree", ""),
        # Entries of the opaque directory's own layer before the marker: they must stay.
        f("data/opq/keep", "new keep"),
        d("data/opq/sub/"),
        f("data/opq/sub/inner", "inner"),
        f("data/opq/.wh..wh..opq", ""),
        f("data/opq/after", "after the marker"),
        hard("data/link", "data/shared"),
        f("data/replaced", "a file now"),
        f("usr/lib/added", "beside the lib symlink's target"),
        f("etc/passwd", "root:x:0:0::/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n"),
        f("ro/file2", "also read only", mode=0o444),
    ]
    top = [
        d("etc/", mode=0o750),
        hard("data/hl2", "data/opq/after"),
        f("data/new", "new"),
        hard("data/new-hl", "data/new"),
        f("data/.wh.shared", ""),
    ]
    return [base, middle, top]


def through_link():
    """An upper layer that writes through a lower layer's symlink to a directory inside the tree
    (`lib/added` with `lib -> usr/lib`): --rootfs follows it as Docker and umoci do."""
    return [
        [d("usr/"), d("usr/lib/"), f("usr/lib/libx.so", "elf"), sym("lib", "usr/lib")],
        [f("lib/added", "through the lib symlink")],
    ]


def repeated():
    """The same layer twice in a row (same blob, same diff ID), so two downloads ahead of the
    one being applied fetch the same blob at once."""
    return [[f("a", "first")], [f("a", "second"), f("b", "b")], [f("a", "second"), f("b", "b")]]


def through_absolute(name):
    """Links whose targets are absolute or climb above the root, which a later layer writes
    through, as Debian's and Alpine's `var/run -> /run` and images built from tars have them:
    Docker (a chroot) and umoci (securejoin) resolve them inside the root. busybox is there for
    `docker run` to read the file through the link."""
    with open("/bin/busybox", "rb") as binary:
        busybox = binary.read()
    base = [d("bin/"), f("bin/busybox", busybox, mode=0o755), d("var/"), d("run/"), d("etc/"),
            d("opt/"), sym("var/run", "/run"), sym("opt/conf", "../../../../etc")]
    cases = {
        "var-run": [base, [f("var/run/app.pid", "42\n")]],
        "var-run-again": [base, [sym("var/run", "/run"), f("var/run/app.pid", "42\n")]],
        "opt-conf": [base, [f("opt/conf/app.conf", "conf\n")]],
    }
    return cases[name]


def hostile(name, canary):
    """Layers aimed at CANARY, three levels above the directory they are unpacked into."""
    rel = "../../../" + os.path.basename(canary)
    up = "../../.."
    inside = canary.lstrip("/")
    cases = {
        "dotdot": [[f("ok", "fine"), f(rel, "pwned")]],
        "absolute": [[f(canary, "pwned")]],
        "root-symlink": [[sym("root", "/"), f("root/" + inside, "pwned")]],
        "parent-symlink": [[sym("esc", up)], [f("esc/" + os.path.basename(canary), "pwned")]],
        "chain": [[sym("c1", "c2"), sym("c2", "c3"), sym("c3", up),
                   f("c1/" + os.path.basename(canary), "pwned")]],
        "hardlink-passwd": [[hard("pw", "/etc/passwd")]],
        "hardlink-dotdot": [[hard("cn", rel)]],
        "whiteout-escape": [[sym("w", up)], [f("w/.wh." + os.path.basename(canary), "")]],
        # With --git, the repository reached through a symlink (to .git, or to the root) and
        # given a filter that runs when the next file is added; an opaque marker at the root.
        "git-via-link": [[sym("x", ".git"), f("x/config", git_filter(canary)),
                          f("x/info/attributes", "* filter=p\n"), f("file", "data")]],
        "git-via-dot": [[sym("x", "."), f("x/.git/config", git_filter(canary)),
                         f("x/.git/info/attributes", "* filter=p\n"), f("file", "data")]],
        "git-opaque-root": [[f("a", "lower")], [f(".wh..wh..opq", ""), f("b", "upper")]],
        # One file under a 64 KiB path of 32,767 directories (a PAX path record).
        "long-path": [[f("a/" * 32767 + "f", "deep")]],
        # A hard link to a symlink that leads out, and a file written through the link.
        "hardlink-to-symlink": [[sym("t", os.path.dirname(canary) + "/canary.d"), hard("s", "t"),
                                 f("s/pwned", "pwned")]],
        # With --git, a hook in the repository would run when dockersave commits.
        "git-hook": [[d(".git/"), d(".git/hooks/"),
                      f(".git/hooks/pre-commit", "#!/bin/sh\necho pwned > " + canary + "\n", mode=0o755),
                      f(".git/config", "[core]\n\thooksPath = hooks\n")]],
    }
    return cases[name]


BOOT_FACTS = """#!/bin/sh
echo FACTS-BEGIN
stat -c 'suid %u:%g %a' /bin/suid
stat -c 'device %F %t:%T' /dev/fortytwo
echo "symlink $(readlink /etc/link)"
stat -c 'etc %u:%g %a' /etc
stat -c 'hard %h %i' /bin/busybox /bin/sh /bin/cat
cat /etc/message
echo FACTS-END
busybox poweroff -f
"""


def bootable(busybox_path="/bin/busybox"):
    """An initramfs's image: busybox, and an /init that prints facts on the console and powers
    off. /bin/sh is a hard link to busybox in its layer, /bin/cat one from the layer above;
    the upper layer writes /etc/message without an entry for /etc, whose owner and mode come
    from the lower layer's entry. bootable-arm takes an ARM busybox from $DS_ARM_BOOT."""
    with open(busybox_path, "rb") as binary:
        busybox = binary.read()
    base = [d("./"), d("bin/"), f("bin/busybox", busybox, mode=0o755),
            hard("bin/sh", "bin/busybox", mode=0o755),
            f("bin/suid", "setuid", mode=0o4755, uid=1234, gid=99),
            d("dev/"), entry("dev/fortytwo", "char", dev=(42, 7), mode=0o620),
            d("etc/", mode=0o751, uid=1234, gid=99), sym("etc/link", "/bin/busybox"),
            f("init", BOOT_FACTS, mode=0o755)]
    top = [f("etc/message", "written by the upper layer\n"), hard("bin/cat", "bin/busybox", mode=0o755)]
    return [base, top]


def many_links(files, links):
    """Hostile counts for --initramfs: `links` hard links to each of `files` files."""
    entries = [d("./")]
    for i in range(files):
        entries.append(f("f%06d" % i, "x"))
        entries += [hard("f%06d-l%06d" % (i, j), "f%06d" % i) for j in range(links)]
    return [entries]


def long_links(count):
    """What --flatten holds for a layer's links: `count` long-named symlinks with long targets,
    and as many long-named hard links to a file of the layer below, waiting for it."""
    name = "n" * 150
    top = [d("s/"), d("h/")]
    top += [sym("s/%s%06d" % (name, i), "t" * 1000) for i in range(count)]
    top += [hard("h/%s%06d" % (name, i), "base/target") for i in range(count)]
    return [[d("base/"), f("base/target", "the target")], top]


def git_filter(canary):
    return ('[filter "p"]\n\tclean = sh -c \'echo pwned >' + canary + '; cat\'\n'
            '\tsmudge = cat\n\trequired\n')


def write_layout(layout, tag, layers, architecture="amd64"):
    blobs = os.path.join(layout, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)

    def put(data):
        digest = hashlib.sha256(data).hexdigest()
        with open(os.path.join(blobs, digest), "wb") as out:
            out.write(data)
        return {"digest": "sha256:" + digest, "size": len(data)}

    descriptors, diff_ids = [], []
    for entries in layers:
        tar = entries if isinstance(entries, bytes) else layer_tar(entries)
        diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
        blob = gzip.compress(tar, mtime=0)
        descriptors.append(dict(mediaType="application/vnd.oci.image.layer.v1.tar+gzip", **put(blob)))
    config = {
        "architecture": architecture,
        "os": "linux",
        "created": "2020-09-13T12:26:40Z",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "2020-09-13T12:26:40Z", "created_by": f"layer {i + 1} of {tag}"}
                    for i in range(len(layers))],
    }
    config_desc = dict(mediaType="application/vnd.oci.image.config.v1+json",
                       **put(json.dumps(config).encode()))
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": config_desc, "layers": descriptors}
    manifest_desc = dict(mediaType="application/vnd.oci.image.manifest.v1+json",
                         annotations={"org.opencontainers.image.ref.name": tag},
                         **put(json.dumps(manifest).encode()))
    index_path = os.path.join(layout, "index.json")
    index = {"schemaVersion": 2, "manifests": []}
    if os.path.exists(index_path):
        with open(index_path) as existing:
            index = json.load(existing)
    index["manifests"] = [m for m in index["manifests"]
                          if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag]
    index["manifests"].append(manifest_desc)
    with open(index_path, "w") as out:
        json.dump(index, out)
    with open(os.path.join(layout, "oci-layout"), "w") as out:
        json.dump({"imageLayoutVersion": "1.0.0"}, out)


def main():
    if sys.argv[1] == "--tar":
        name, layout, tarfile_path = sys.argv[2:5]
        with open(tarfile_path, "rb") as raw:
            write_layout(layout, name, [raw.read()])
        return
    name, layout = sys.argv[1], sys.argv[2]
    if name == "rich":
        layers = rich()
    elif name == "through-link":
        layers = through_link()
    elif name == "repeated":
        layers = repeated()
    elif name == "bootable":
        layers = bootable()
    elif name == "links-to-one":
        layers = many_links(1, 100_000)
    elif name == "linked-files":
        layers = many_links(70_000, 1)
    elif name == "long-links":
        layers = long_links(10_000)
    elif name == "bootable-arm":
        layers = bootable(os.path.join(os.environ["DS_ARM_BOOT"], "bin/busybox"))
        write_layout(layout, name, layers, "arm")
        return
    elif name in ("var-run", "var-run-again", "opt-conf"):
        layers = through_absolute(name)
    else:
        layers = hostile(name, sys.argv[3])
    write_layout(layout, name, layers)


if __name__ == "__main__":
    main()
