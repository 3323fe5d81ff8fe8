#!/usr/bin/env python3
"""Makes `attested:latest`, the multi-platform index `multi:latest` with an attestation per
platform as BuildKit attaches them (docker buildx build --provenance/--sbom, what Docker Hub's
official images carry): an OCI image manifest whose config says unknown/unknown and whose layer
is an in-toto statement, listed in the index under the platform unknown/unknown with the
annotations vnd.docker.reference.type = attestation-manifest and vnd.docker.reference.digest =
the platform manifest's digest. Written with the distribution API, independently of
dockersave; the platform manifests and their blobs are mounted from `multi`.

usage: attested_images.py REGISTRY   (plain HTTP)
"""
import json
import sys

from registry_api import Registry, digest_of

REGISTRY = sys.argv[1]
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
IN_TOTO = "application/vnd.in-toto+json"


registry = Registry(REGISTRY)
request, get_manifest = registry.request, registry.get_manifest
push_blob, put_manifest = registry.push_blob, registry.put_manifest


def mount(repo, source, digest):
    status, _, _ = request("POST", f"/v2/{repo}/blobs/uploads/?mount={digest}&from={source}")
    assert status == 201, f"mounting {digest}: {status}"


index_body, _ = get_manifest("multi", "latest")
index = json.loads(index_body)
entries = list(index["manifests"])
for entry in index["manifests"]:
    body, media_type = get_manifest("multi", entry["digest"])
    manifest = json.loads(body)
    for blob in [manifest["config"]] + manifest["layers"]:
        mount("attested", "multi", blob["digest"])
    put_manifest("attested", entry["digest"], body, media_type)
    platform = entry["platform"]
    statement = json.dumps({
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": "https://slsa.dev/provenance/v0.2",
        "subject": [{"name": "pkg:docker/attested@latest?platform="
                     + "%2F".join([platform["os"], platform["architecture"]]),
                     "digest": {"sha256": entry["digest"][7:]}}],
        "predicate": {"builder": {"id": "attested_images.py"}},
    }, separators=(",", ":")).encode()
    layer = push_blob("attested", statement)
    config = json.dumps({"architecture": "unknown", "os": "unknown", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]}},
                        separators=(",", ":")).encode()
    config_descriptor = push_blob("attested", config)
    attestation = json.dumps({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, **config_descriptor},
        "layers": [{"mediaType": IN_TOTO, **layer,
                    "annotations": {"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"}}],
    }, separators=(",", ":")).encode()
    digest = put_manifest("attested", digest_of(attestation), attestation, OCI_MANIFEST)
    entries.append({
        "mediaType": OCI_MANIFEST, "digest": digest, "size": len(attestation),
        "annotations": {"vnd.docker.reference.digest": entry["digest"],
                        "vnd.docker.reference.type": "attestation-manifest"},
        "platform": {"architecture": "unknown", "os": "unknown"},
    })
index["manifests"] = entries
body = json.dumps(index, separators=(",", ":")).encode()
put_manifest("attested", "latest", body, OCI_INDEX)
