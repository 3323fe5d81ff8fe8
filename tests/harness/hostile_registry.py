#!/usr/bin/env python3
"""A registry that misbehaves on purpose, for tests/hostile_registry.rs: every endpoint
dockersave calls (manifests, indexes, configs, blobs, tags, tokens, referrers and signature
tags, redirects) answers with what a hostile or broken registry could send — endless, slow,
oversized or lying bodies, documents whose counts cost memory, platform tricks — chosen by the
repository name, `/v2/<SCENARIO>/...`.

usage: hostile_registry.py LOG CERT KEY CA

Listens on two ports of 127.0.0.1, plain HTTP and TLS (CERT/KEY, asking for an optional client
certificate signed by CA), prints "PLAIN TLS" on one line and serves until killed. LOG gets a
line per request: "<plain|tls> <client cert: yes|no> METHOD PATH".

Scenarios (each also serves a small valid image where the scenario needs one):
  good                 a valid one-layer image (the control)
  endless-manifest     the manifest is an endless body
  trickle-manifest     the manifest comes one byte a second
  history-bomb         the config holds 1.3 million empty history entries (under 4 MiB)
  cmd-bomb             the config's Cmd is a million one-character strings
  configs-bundle       an index of 64 platforms whose configs weigh 3.9 MiB each
  endless-tags         every tag page (10,000 tags, whatever `n` says) links to another
  tag-bomb             one tag page of a million one-character tags (under 4 MiB)
  wrong-digest         the manifest's Docker-Content-Digest lies; by digest, other bytes
  twins                an index listing linux/amd64 10,000 times
  nested               an index whose entry is an index whose entry is an index, ...
  endless-blob         the layer blob is junk that never ends
  redirect-loop        the layer blob redirects to itself
  endless-token        the token service (plain) answers with an endless body
  token-bomb           the token answer is a JSON document of a million values
  endless-signature    the cosign .sig manifest and the referrers answer never end
over TLS:
  http-realm           the token realm is plain http:// (on the plain port)
  downgrade            the manifest redirects to plain http://
  cross-host           layer blobs redirect to https://localhost:TLS/cdn/..., another host
"""
import gzip
import hashlib
import http.server
import io
import json
import socketserver
import ssl
import sys
import tarfile
import threading
import time

LOG, CERT, KEY, CA = sys.argv[1:5]
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
GZIP_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
log_lock = threading.Lock()
ports = {}


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor(media_type, data, **extra):
    return {"mediaType": media_type, "digest": digest(data), "size": len(data), **extra}


def layer():
    """A gzipped tar of one file; its tar's digest is the diff ID."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        data = b"hello from a hostile registry\n"
        info = tarfile.TarInfo("hello")
        info.size, info.mtime = len(data), 0
        tar.addfile(info, io.BytesIO(data))
    tar_bytes = raw.getvalue()
    return gzip.compress(tar_bytes, mtime=0), digest(tar_bytes)


LAYER, DIFF_ID = layer()


def config(**extra):
    return json.dumps({"architecture": "amd64", "os": "linux",
                       "rootfs": {"type": "layers", "diff_ids": [DIFF_ID]}, **extra},
                      separators=(",", ":")).encode()


def manifest(config_bytes, layer_bytes=LAYER, annotations=None):
    body = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, config_bytes),
            "layers": [descriptor(GZIP_LAYER, layer_bytes)]}
    if annotations:
        body["annotations"] = annotations
    return json.dumps(body).encode()


def index(entries):
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()


GOOD_CONFIG = config()
GOOD_MANIFEST = manifest(GOOD_CONFIG)
BLOBS = {digest(b): b for b in (LAYER, GOOD_CONFIG)}

# Documents whose counts cost memory, each under the 4 MiB a document may weigh.
HISTORY_BOMB = config(history=[{}] * 1_300_000)
CMD_BOMB = config(config={"Cmd": ["a"] * 1_000_000})
BIG_CONFIG = config(config={"Labels": {"filler": "x" * (3_900_000)}})
for blob in (HISTORY_BOMB, CMD_BOMB, BIG_CONFIG):
    assert len(blob) < 4 << 20, len(blob)
    BLOBS[digest(blob)] = blob
BUNDLE_MEMBERS = [manifest(BIG_CONFIG, annotations={"n": str(i)}) for i in range(64)]
BUNDLE = index([descriptor(OCI_MANIFEST, m, platform={"os": "linux", "architecture": f"arch{i}"})
                for i, m in enumerate(BUNDLE_MEMBERS)])
TWINS = index([descriptor(OCI_MANIFEST, GOOD_MANIFEST,
                          platform={"os": "linux", "architecture": "amd64"})] * 10_000)
NESTED = [GOOD_MANIFEST]
for _ in range(6):
    NESTED.append(index([descriptor(OCI_INDEX, NESTED[-1],
                                    platform={"os": "linux", "architecture": "amd64"})]))
TOKEN_BOMB = json.dumps({"token": "t", "filler": [0] * 300_000}).encode()

DOCUMENTS = {digest(d): d for d in [GOOD_MANIFEST, TWINS, *BUNDLE_MEMBERS, BUNDLE, *NESTED]}
TOPS = {
    "good": GOOD_MANIFEST,
    "history-bomb": manifest(HISTORY_BOMB),
    "cmd-bomb": manifest(CMD_BOMB),
    "configs-bundle": BUNDLE,
    "twins": TWINS,
    "nested": NESTED[-1],
    "endless-blob": GOOD_MANIFEST,
    "redirect-loop": GOOD_MANIFEST,
    "endless-token": GOOD_MANIFEST,
    "token-bomb": GOOD_MANIFEST,
    "endless-signature": GOOD_MANIFEST,
    "http-realm": GOOD_MANIFEST,
    "cross-host": GOOD_MANIFEST,
    "wrong-digest": GOOD_MANIFEST,
}
for top in TOPS.values():
    DOCUMENTS[digest(top)] = top


def media_type(document):
    return json.loads(document).get("mediaType", OCI_MANIFEST)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def record(self):
        tls = isinstance(self.connection, ssl.SSLSocket)
        cert = "yes" if tls and self.connection.getpeercert() else "no"
        with log_lock, open(LOG, "a") as out:
            out.write(f"{'tls' if tls else 'plain'} {cert} {self.command} {self.path}\n")

    def send(self, status, body=b"", content_type="application/json", headers=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def endless(self, content_type, chunk=b" " * 65536):
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            while True:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except OSError:
            self.close_connection = True

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        self.record()
        path, _, query = self.path.partition("?")
        if path == "/v2/" or path == "/v2":
            return self.send(200, b"{}")
        if path.startswith("/token"):
            return self.token(path)
        if path.startswith("/cdn/"):
            blob = BLOBS.get(path[len("/cdn/"):])
            return self.send(200, blob, "application/octet-stream") if blob else self.send(404)
        parts = path.split("/")
        if len(parts) < 5 or parts[1] != "v2":
            return self.send(404)
        scenario, kind, ref = parts[2], parts[3], "/".join(parts[4:])
        if scenario in ("endless-token", "token-bomb", "http-realm") and \
                "authorization" not in (k.lower() for k in self.headers.keys()):
            realm = f"http://127.0.0.1:{ports['plain']}/token-{scenario}"
            return self.send(401, b'{"errors":[]}', headers=[
                ("WWW-Authenticate", f'Bearer realm="{realm}",service="hostile"')])
        if kind == "manifests":
            return self.manifest(scenario, ref)
        if kind == "blobs":
            return self.blob(scenario, ref)
        if kind == "tags":
            return self.tags(scenario, query)
        if kind == "referrers":
            if scenario == "endless-signature":
                return self.endless(OCI_INDEX)
            return self.send(404)
        return self.send(404)

    def token(self, path):
        if path.endswith("endless-token"):
            return self.endless("application/json")
        if path.endswith("token-bomb"):
            return self.send(200, TOKEN_BOMB)
        return self.send(200, b'{"token":"t"}')

    def manifest(self, scenario, ref):
        if scenario == "endless-manifest":
            return self.endless(OCI_MANIFEST)
        if scenario == "trickle-manifest":
            self.send_response(200)
            self.send_header("Content-Type", OCI_MANIFEST)
            self.send_header("Content-Length", str(len(GOOD_MANIFEST)))
            self.end_headers()
            try:
                for byte in GOOD_MANIFEST:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(1)
            except OSError:
                self.close_connection = True
            return None
        if scenario == "downgrade":
            location = f"http://127.0.0.1:{ports['plain']}/v2/good/manifests/{ref}"
            return self.send(307, headers=[("Location", location)])
        if ref.endswith(".sig"):
            if scenario == "endless-signature":
                return self.endless(OCI_MANIFEST)
            return self.send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')
        document = DOCUMENTS.get(ref) if ref.startswith("sha256:") else TOPS.get(scenario)
        if document is None:
            return self.send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')
        served_digest = digest(document)
        if scenario == "wrong-digest":
            served_digest = "sha256:" + "0" * 64
            if ref.startswith("sha256:"):
                document = document.replace(b'"schemaVersion": 2', b'"schemaVersion":2')
        return self.send(200, document, media_type(document),
                         [("Docker-Content-Digest", served_digest)])

    def blob(self, scenario, ref):
        blob = BLOBS.get(ref)
        if blob is None:
            return self.send(404, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}')
        if scenario == "endless-blob" and blob == LAYER:
            return self.endless("application/octet-stream", b"junk" * 16384)
        if scenario == "redirect-loop" and blob == LAYER:
            return self.send(302, headers=[("Location", self.path)])
        if scenario == "cross-host" and blob == LAYER:
            location = f"https://localhost:{ports['tls']}/cdn/{ref}"
            return self.send(307, headers=[("Location", location)])
        return self.send(200, blob, "application/octet-stream")

    def tags(self, scenario, query):
        if scenario == "tag-bomb":
            body = json.dumps({"name": scenario, "tags": ["a"] * 1_000_000},
                              separators=(",", ":")).encode()
            return self.send(200, body)
        if scenario == "endless-tags":
            last = int(dict(p.split("=", 1) for p in query.split("&") if "=" in p).get("last", "0"))
            # Pages of 10,000 whatever `n` asks for, as a registry that ignores it sends.
            tags = [str(last + i + 1) for i in range(10_000)]
            link = f'</v2/{scenario}/tags/list?n=1000&last={last + 10_000}>; rel="next"'
            return self.send(200, json.dumps({"name": scenario, "tags": tags}).encode(),
                             headers=[("Link", link)])
        return self.send(200, json.dumps({"name": scenario, "tags": ["latest"]}).encode())


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    open(LOG, "w").close()
    plain = Server(("127.0.0.1", 0), Handler)
    secure = Server(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(CERT, KEY)
    context.load_verify_locations(CA)
    context.verify_mode = ssl.CERT_OPTIONAL
    secure.socket = context.wrap_socket(secure.socket, server_side=True)
    ports["plain"], ports["tls"] = plain.server_address[1], secure.server_address[1]
    threading.Thread(target=secure.serve_forever, daemon=True).start()
    print(f"{ports['plain']} {ports['tls']}", flush=True)
    plain.serve_forever()


main()
