#!/usr/bin/env python3
"""Signs test images the way cosign does, with Python's `cryptography`, independently of
dockersave, and pushes the signatures with the distribution API.

Following cosign's specification (SIGNATURE_SPEC.md, and cosign 3's bundles):
  - classic: the tag `sha256-<hex>.sig` in the image's repository holds an OCI manifest whose
    layers are simple-signing payloads (application/vnd.dev.cosign.simplesigning.v1+json),
    each with its base64 signature in the annotation `dev.cosignproject.cosign/signature`;
  - bundle: a Sigstore bundle v0.3 (a DSSE envelope of an in-toto statement, predicate
    https://sigstore.dev/cosign/sign/v1, or a message signature over the manifest) as the layer
    of an OCI artifact manifest, listed in the referrers fallback tag `sha256-<hex>` (an OCI
    index), since the test registry has no referrers API.

usage: cosign_images.py REGISTRY KEYDIR
REGISTRY holds (plain HTTP) copies of busybox made by fixtures.sh under the repositories below
and `signed-index`, a copy of the multi-platform index. KEYDIR receives the public keys:
ours.pub (ECDSA P-256, as `cosign generate-key-pair`), other.pub, ed25519.pub and rsa.pub.

  signed            signed by ours
  signed-artifact   an OCI artifact (artifact_images.py) signed by ours
  signed-two        two signatures: the first by other, the second by ours
  signed-index      the index of a two-platform image signed (not its platform manifests)
  unsigned          no signature at all
  signed-other      signed by other only
  signed-copied     a valid signature by ours whose payload names another image (layers)
  signed-notjson    a valid signature by ours over a payload that is not JSON
  signed-truncated  ours, with its signature cut short
  signed-ed25519    signed by the Ed25519 key
  signed-rsa        signed by the RSA key (PKCS#1 v1.5, SHA-256)
  signed-bundle     a cosign 3 bundle: DSSE in-toto statement signed by ours
  signed-message    a bundle with a message signature over the manifest, by ours
  bundle-other      a DSSE bundle naming the image, signed by other
  bundle-raw        a DSSE bundle naming the image, ours signing the statement itself rather
                    than DSSE's pre-authentication encoding (PAE) of it
  bundle-elsewhere  a DSSE bundle signed by ours whose statement names another image (layers)
  bundle-digest     a message signature by ours over the manifest whose messageDigest is not
                    the manifest's
  bundle-keyless    a message signature by ours over the manifest, in a bundle whose
                    verification material is a certificate (keyless), not a key

Indexes that try to slip an unsigned image past a check (none of them is signed; REGISTRY
holds busybox as `TRICK:base` in each): U is that busybox manifest, unsigned; S the same
manifest signed by ours; A an attestation manifest (`unknown/unknown`), unsigned.
  trick-twice         U listed twice: as linux/arm64 and without a platform
  trick-platformless  U listed without a platform, alone
  trick-mixed         S as linux/amd64 and A
  trick-attest-only   A alone
"""
import base64
import hashlib
import json
import os
import sys

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from registry_api import Registry, digest_of

REGISTRY, KEYDIR = sys.argv[1], sys.argv[2]
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"


registry = Registry(REGISTRY)
request = registry.request


def manifest_digest(repo, tag):
    body, _ = registry.get_manifest(repo, tag)
    return digest_of(body), body


def push_blob(repo, data):
    return registry.push_blob(repo, data)


def push_manifest(repo, tag, manifest, media_type):
    body = json.dumps(manifest, separators=(",", ":")).encode()
    return registry.put_manifest(repo, tag, body, media_type), body


def b64(data):
    return base64.b64encode(data).decode()


def payload_for(repo, digest):
    return json.dumps({
        "critical": {
            "identity": {"docker-reference": f"{REGISTRY}/{repo}"},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": None,
    }, separators=(",", ":")).encode()


def sign(key, data):
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    return key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def push_classic(repo, digest, signed_payloads):
    """The .sig manifest: one layer per (payload, signature)."""
    config = push_blob(repo, json.dumps({
        "architecture": "", "os": "", "config": {},
        "rootfs": {"type": "layers", "diff_ids": []},
    }).encode())
    layers = []
    for payload, signature in signed_payloads:
        layer = push_blob(repo, payload)
        layers.append({"mediaType": SIMPLE_SIGNING, **layer,
                       "annotations": {"dev.cosignproject.cosign/signature": b64(signature)}})
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
                "layers": layers}
    push_manifest(repo, digest.replace(":", "-") + ".sig", manifest, OCI_MANIFEST)


def push_bundle(repo, digest, subject_size, bundle):
    """A bundle as an OCI 1.1 artifact referring to `digest`, listed in the fallback tag."""
    empty = push_blob(repo, b"{}")
    layer = push_blob(repo, json.dumps(bundle).encode())
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": BUNDLE,
                "config": {"mediaType": "application/vnd.oci.empty.v1+json", **empty},
                "layers": [{"mediaType": BUNDLE, **layer}],
                "subject": {"mediaType": OCI_MANIFEST, "digest": digest, "size": subject_size}}
    artifact, body = push_manifest(repo, "bundle-" + layer["digest"][7:19], manifest, OCI_MANIFEST)
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX,
             "manifests": [{"mediaType": OCI_MANIFEST, "digest": artifact, "size": len(body),
                            "artifactType": BUNDLE}]}
    push_manifest(repo, digest.replace(":", "-"), index, OCI_INDEX)


def bundle_of(material, **content):
    return {"mediaType": BUNDLE, "verificationMaterial": material, **content}


def main():
    os.makedirs(KEYDIR, exist_ok=True)
    keys = {
        "ours": ec.generate_private_key(ec.SECP256R1()),
        "other": ec.generate_private_key(ec.SECP256R1()),
        "ed25519": ed25519.Ed25519PrivateKey.generate(),
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
    }
    for name, key in keys.items():
        with open(os.path.join(KEYDIR, f"{name}.pub"), "wb") as out:
            out.write(key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    ours, other = keys["ours"], keys["other"]

    def digest(repo):
        return manifest_digest(repo, "latest")

    d, _ = digest("signed")
    p = payload_for("signed", d)
    push_classic("signed", d, [(p, sign(ours, p))])

    d, _ = digest("signed-two")
    p = payload_for("signed-two", d)
    push_classic("signed-two", d, [(p, sign(other, p)), (p, sign(ours, p))])

    d, _ = digest("signed-index")
    p = payload_for("signed-index", d)
    push_classic("signed-index", d, [(p, sign(ours, p))])

    # An OCI artifact (artifact_images.py) signed as an image is.
    d, _ = digest("signed-artifact")
    p = payload_for("signed-artifact", d)
    push_classic("signed-artifact", d, [(p, sign(ours, p))])

    d, _ = digest("signed-other")
    p = payload_for("signed-other", d)
    push_classic("signed-other", d, [(p, sign(other, p))])

    d, _ = digest("signed-copied")
    elsewhere, _ = manifest_digest("layers", "latest")
    p = payload_for("layers", elsewhere)
    push_classic("signed-copied", d, [(p, sign(ours, p))])

    d, _ = digest("signed-notjson")
    p = b"this is not JSON, but it is signed"
    push_classic("signed-notjson", d, [(p, sign(ours, p))])

    d, _ = digest("signed-truncated")
    p = payload_for("signed-truncated", d)
    push_classic("signed-truncated", d, [(p, sign(ours, p)[:-12])])

    for repo, key in [("signed-ed25519", keys["ed25519"]), ("signed-rsa", keys["rsa"])]:
        d, _ = digest(repo)
        p = payload_for(repo, d)
        push_classic(repo, d, [(p, sign(key, p))])

    payload_type = "application/vnd.in-toto+json"

    def dsse(repo, key, names=None, raw=False):
        d, body = digest(repo)
        named = names or d
        statement = json.dumps({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": f"{REGISTRY}/{repo}", "digest": {"sha256": named[7:]}}],
            "predicateType": "https://sigstore.dev/cosign/sign/v1",
            "predicate": {},
        }).encode()
        pae = b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type.encode(), len(statement),
                                       statement)
        push_bundle(repo, d, len(body), bundle_of(
            {"publicKey": {"hint": "ours"}, "tlogEntries": []},
            dsseEnvelope={"payload": b64(statement), "payloadType": payload_type,
                          "signatures": [{"sig": b64(sign(key, statement if raw else pae)),
                                          "keyid": ""}]}))

    def message(repo, key, message_digest=None, material=None):
        d, body = digest(repo)
        push_bundle(repo, d, len(body), bundle_of(
            material or {"publicKey": {"hint": "ours"}},
            messageSignature={"messageDigest": {"algorithm": "SHA2_256", "digest": b64(
                                  message_digest or hashlib.sha256(body).digest())},
                              "signature": b64(sign(key, body))}))

    dsse("signed-bundle", ours)
    message("signed-message", ours)
    dsse("bundle-other", other)
    dsse("bundle-raw", ours, raw=True)
    dsse("bundle-elsewhere", ours, names=elsewhere)
    message("bundle-digest", ours, message_digest=hashlib.sha256(b"another manifest").digest())
    message("bundle-keyless", ours, material={
        "certificate": {"rawBytes": b64(b"a Fulcio certificate would be here")}})
    tricks(ours)
    print(f"signatures pushed to {REGISTRY}")


def tricks(ours):
    def entry(digest, size, media_type, platform=None, annotations=None):
        e = {"mediaType": media_type, "digest": digest, "size": size}
        if platform:
            e["platform"] = platform
        if annotations:
            e["annotations"] = annotations
        return e

    def index(repo, entries):
        push_manifest(repo, "latest", {"schemaVersion": 2, "mediaType": OCI_INDEX,
                                       "manifests": entries}, OCI_INDEX)

    def base(repo):
        body, media_type = registry.get_manifest(repo, "base")
        return digest_of(body), len(body), media_type

    def attestation(repo, subject):
        config = push_blob(repo, b"{}")
        statement = push_blob(repo, json.dumps({"_type": "https://in-toto.io/Statement/v0.1",
                                                "subject": [{"digest": {"sha256": subject[7:]}}],
                                                "predicateType": "https://spdx.dev/Document",
                                                "predicate": {}}).encode())
        digest, body = push_manifest(repo, "attestation", {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
            "layers": [{"mediaType": "application/vnd.in-toto+json", **statement}],
        }, OCI_MANIFEST)
        return entry(digest, len(body), OCI_MANIFEST, {"os": "unknown", "architecture": "unknown"},
                     {"vnd.docker.reference.type": "attestation-manifest",
                      "vnd.docker.reference.digest": subject})

    d, n, t = base("trick-twice")
    index("trick-twice", [entry(d, n, t, {"os": "linux", "architecture": "arm64"}),
                          entry(d, n, t)])
    d, n, t = base("trick-platformless")
    index("trick-platformless", [entry(d, n, t)])
    d, n, t = base("trick-mixed")
    p = payload_for("trick-mixed", d)
    push_classic("trick-mixed", d, [(p, sign(ours, p))])
    index("trick-mixed", [entry(d, n, t, {"os": "linux", "architecture": "amd64"}),
                          attestation("trick-mixed", d)])
    d, n, t = base("trick-attest-only")
    index("trick-attest-only", [attestation("trick-attest-only", d)])


main()
