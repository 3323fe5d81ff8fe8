#!/usr/bin/env python3
"""The push benchmark's floor: how long the registry takes to accept an image's blobs when the
client does no work at all. Uploads the layers of an image saved with `dockersave --compressed
--no-tar` (the files its manifest.json lists, gzip blobs as the registry served them) all at once,
one thread each (POST, one streamed PATCH, PUT ?digest=), as blobs of REPOSITORY on a plain-HTTP
registry.

    upload_floor.py HOST:PORT REPOSITORY DIR
"""
import hashlib
import json
import http.client
import os
import sys
import threading
import urllib.parse


def upload(registry, repository, path, failures):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    conn = http.client.HTTPConnection(registry, blocksize=1 << 20)
    conn.request("POST", f"/v2/{repository}/blobs/uploads/")
    response = conn.getresponse()
    response.read()
    location = urllib.parse.urlsplit(response.getheader("Location"))
    target = location.path + ("?" + location.query if location.query else "")
    with open(path, "rb") as f:
        conn.request("PATCH", target, body=f, headers={
            "Content-Type": "application/octet-stream",
            "Content-Length": str(os.path.getsize(path))})
    response = conn.getresponse()
    response.read()
    location = urllib.parse.urlsplit(response.getheader("Location"))
    query = (location.query + "&" if location.query else "") + "digest=sha256:" + digest.hexdigest()
    conn.request("PUT", location.path + "?" + query, body=b"")
    response = conn.getresponse()
    response.read()
    if response.status != 201:
        failures.append(f"{path}: PUT answered {response.status}")


def main():
    registry, repository, directory = sys.argv[1:4]
    with open(os.path.join(directory, "manifest.json")) as f:
        paths = [os.path.join(directory, layer) for image in json.load(f) for layer in image["Layers"]]
    failures = []
    threads = [threading.Thread(target=upload, args=(registry, repository, p, failures))
               for p in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures or not paths:
        sys.exit("\n".join(failures) or "no blobs given")


if __name__ == "__main__":
    main()
