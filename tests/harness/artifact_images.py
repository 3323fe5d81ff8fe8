#!/usr/bin/env python3
"""Makes the OCI artifacts of tests/artifacts.rs, written with the distribution API the way their
publishers write them (no oras or helm is packaged for Debian):

- ORAS (`oras push`, oras-go's file store): an OCI 1.1 image manifest with `artifactType`, the
  empty config (`application/vnd.oci.empty.v1+json`, `{}`), one layer per file titled by
  `org.opencontainers.image.title`; a directory as a gzipped tar of `NAME/...` with
  `io.deis.oras.content.unpack: "true"` and `io.deis.oras.content.digest` (the tar's digest);
  `oras attach` adds `subject` and, on a registry without the referrers API (distribution 2.8,
  the one here), lists the referrer in the index under the fallback tag `sha256-<hex>`.
- Helm (`helm push`): config `application/vnd.cncf.helm.config.v1+json` (Chart.yaml as JSON),
  one layer `application/vnd.cncf.helm.chart.content.v1.tar+gzip` (the chart's .tgz), no title.

The files' contents go to OUT/<repository>/<name>, for the tests to compare against.

usage: artifact_images.py REGISTRY OUT   (plain HTTP)
"""
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

from registry_api import Registry, digest_of

REGISTRY, OUT = sys.argv[1], sys.argv[2]
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
EMPTY = "application/vnd.oci.empty.v1+json"
TITLE = "org.opencontainers.image.title"
CREATED = "org.opencontainers.image.created"

registry = Registry(REGISTRY)


def compact(value):
    return json.dumps(value, separators=(",", ":")).encode()


def keep(repo, name, data):
    path = os.path.join(OUT, repo, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def layer(repo, data, media_type, annotations=None):
    descriptor = {"mediaType": media_type, **registry.push_blob(repo, data)}
    if annotations:
        descriptor["annotations"] = annotations
    return descriptor


def artifact(repo, ref, artifact_type, layers, config=None, annotations=None, subject=None):
    """Puts an artifact manifest under `ref`; returns its descriptor."""
    if config is None:
        config = {"mediaType": EMPTY, **registry.push_blob(repo, b"{}"), "data": "e30="}
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST}
    if artifact_type:
        manifest["artifactType"] = artifact_type
    manifest.update({"config": config, "layers": layers})
    if subject:
        manifest["subject"] = subject
    if annotations:
        manifest["annotations"] = annotations
    body = compact(manifest)
    digest = registry.put_manifest(repo, ref, body, OCI_MANIFEST)
    described = {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(body)}
    if artifact_type:
        described["artifactType"] = artifact_type
    if annotations:
        described["annotations"] = annotations
    return described


def titled(repo, title, data, media_type="application/octet-stream"):
    keep(repo, title, data)
    return layer(repo, data, media_type, {TITLE: title})


def directory_tar(name, files, links=(), later=()):
    """A tar of `name/...` as oras-go's tarDirectory writes it, and its gzip."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = {name}
        for path in files:
            parts = path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add("/".join([name] + parts[:i]))
        for d in sorted(dirs):
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 1700000000
            tar.addfile(info)
        for path, data in files.items():
            info = tarfile.TarInfo(f"{name}/{path}")
            info.size, info.mode, info.mtime = len(data), 0o644, 1700000000
            tar.addfile(info, io.BytesIO(data))
        for path, target in links:
            info = tarfile.TarInfo(path)
            info.type, info.linkname, info.mtime = tarfile.SYMTYPE, target, 1700000000
            tar.addfile(info)
        for path, data in later:
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), 0o644, 1700000000
            tar.addfile(info, io.BytesIO(data))
    tar_bytes = raw.getvalue()
    return tar_bytes, gzip.compress(tar_bytes, mtime=0)


def directory_layer(repo, name, files, links=(), tar_digest=None, later=()):
    tar_bytes, gz = directory_tar(name, files, links, later)
    for path, data in files.items():
        keep(repo, f"{name}/{path}", data)
    return layer(repo, gz, "application/vnd.oci.image.layer.v1.tar+gzip", {
        TITLE: name,
        "io.deis.oras.content.digest": tar_digest or digest_of(tar_bytes),
        "io.deis.oras.content.unpack": "true",
    })


# A router's firmware: two titled files, one of them in a subdirectory.
# The same as `signed-artifact:latest` and `unsigned-artifact:latest`, which cosign_images.py
# signs (or not) by the key `ours`.
firmware = bytes((i * 7 + 3) % 251 for i in range(256 * 1024))
settings = compact({"wan": "dhcp", "ntp": ["192.0.2.1"]})
for repo, ref in [("artifacts/firmware", "1.0"), ("signed-artifact", "latest"),
                  ("unsigned-artifact", "latest")]:
    artifact(repo, ref, "application/vnd.acme.router.firmware.v1", [
        titled(repo, "firmware.bin", firmware, "application/vnd.acme.firmware.image"),
        titled(repo, "etc/settings.json", settings, "application/json"),
    ], annotations={CREATED: "2026-11-01T00:00:00Z"})

# A titled file and an untitled layer (oras pull skips it; dockersave names it by digest).
untitled = b"no title for me\n" * 100
described = layer("artifacts/untitled", untitled, "application/vnd.acme.blob")
keep("artifacts/untitled", "sha256-" + described["digest"][7:], untitled)
artifact("artifacts/untitled", "1", "application/vnd.acme.bundle.v1", [
    titled("artifacts/untitled", "notes.txt", b"release notes\n"), described])

# A directory, as `oras push REF site/` sends it.
site = {"index.html": b"<h1>hello</h1>\n", "css/site.css": b"h1 { color: red }\n"}
artifact("artifacts/site", "1", "application/vnd.acme.site.v1", [
    directory_layer("artifacts/site", "site", site, links=[("site/home.html", "index.html")])])

# A Helm chart, as `helm push demo-0.1.0.tgz oci://REGISTRY/charts` stores it.
chart_files = {
    "Chart.yaml": b"apiVersion: v2\nname: demo\nversion: 0.1.0\ndescription: a test chart\n",
    "values.yaml": b"replicaCount: 1\n",
    "templates/configmap.yaml": b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: demo\n",
}
_, chart_tgz = directory_tar("demo", chart_files)
keep("charts/demo", "demo-0.1.0.tgz", chart_tgz)
chart_config = compact({"name": "demo", "version": "0.1.0", "description": "a test chart",
                        "apiVersion": "v2"})
artifact("charts/demo", "0.1.0", None, [
    layer("charts/demo", chart_tgz, "application/vnd.cncf.helm.chart.content.v1.tar+gzip")],
    config={"mediaType": "application/vnd.cncf.helm.config.v1+json",
            **registry.push_blob("charts/demo", chart_config)},
    annotations={TITLE: "demo", "org.opencontainers.image.version": "0.1.0"})

# busybox with two SBOMs (an older and a newer) and a scan report attached, as `oras attach`
# lists them on a registry without the referrers API: under the fallback tag.
body, media_type = registry.get_manifest("busybox", "latest")
for blob in [json.loads(body)["config"]] + json.loads(body)["layers"]:
    status, _, _ = registry.request(
        "POST", f"/v2/artifacts/withsbom/blobs/uploads/?mount={blob['digest']}&from=busybox")
    assert status == 201, status
subject_digest = registry.put_manifest("artifacts/withsbom", "latest", body, media_type)
subject = {"mediaType": media_type, "digest": subject_digest, "size": len(body)}
referrers = []
for created, text in [("2025-01-01T00:00:00Z", b'{"spdxVersion":"SPDX-2.3","name":"old"}'),
                      ("2026-06-01T00:00:00Z", b'{"spdxVersion":"SPDX-2.3","name":"new"}')]:
    sbom = layer("artifacts/withsbom", text, "application/spdx+json", {TITLE: "sbom.spdx.json"})
    keep("artifacts/withsbom", f"{created[:4]}/sbom.spdx.json", text)
    referrers.append(artifact("artifacts/withsbom", f"sbom-{created[:4]}", "application/spdx+json",
                              [sbom], annotations={CREATED: created}, subject=subject))
scan = layer("artifacts/withsbom", b"no findings\n", "text/plain", {TITLE: "scan.txt"})
referrers.append(artifact("artifacts/withsbom", "scan", "application/vnd.acme.scan.v1", [scan],
                          annotations={CREATED: "2026-07-01T00:00:00Z",
                                       "note": "evil\u001b[2Jterminal"}, subject=subject))
registry.put_manifest("artifacts/withsbom", "sha256-" + subject_digest[7:],
                      compact({"schemaVersion": 2, "mediaType": OCI_INDEX,
                               "manifests": referrers}), OCI_INDEX)

# Hostile titles and trees: each must be refused, or kept inside the directory.
for ref, title in [("dotdot", "../escaped.txt"), ("absolute", f"{OUT}/absolute-escape.txt"),
                   ("deep", "a/" * 3000 + "x")]:
    artifact("artifacts/hostile", ref, "application/vnd.acme.hostile.v1",
             [layer("artifacts/hostile", b"escaped\n", "text/plain", {TITLE: title})])
artifact("artifacts/hostile", "twice", "application/vnd.acme.hostile.v1", [
    layer("artifacts/hostile", b"one\n", "text/plain", {TITLE: "same.txt"}),
    layer("artifacts/hostile", b"two\n", "text/plain", {TITLE: "same.txt"})])
# A directory tar with a link out of the tree and a file written through it (followed inside,
# as --rootfs follows it), and one whose entries climb out (refused, as --rootfs refuses them).
artifact("artifacts/hostile", "tree", "application/vnd.acme.hostile.v1", [
    directory_layer("artifacts/hostile", "tree", {"ok.txt": b"fine\n"},
                    links=[("tree/out", "/")],
                    later=[("tree/out" + OUT + "/through-link.txt", b"escaped\n")])])
artifact("artifacts/hostile", "climb", "application/vnd.acme.hostile.v1", [
    directory_layer("artifacts/hostile", "climb", {"ok.txt": b"fine\n"},
                    later=[("../../escaped.txt", b"escaped\n")])])
artifact("artifacts/hostile", "tardigest", "application/vnd.acme.hostile.v1", [
    directory_layer("artifacts/hostile", "wrong", {"a.txt": b"a\n"},
                    tar_digest="sha256:" + hashlib.sha256(b"another tar").hexdigest())])
print("artifacts pushed")
