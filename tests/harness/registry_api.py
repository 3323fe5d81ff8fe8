"""The few requests of the distribution API the fixture scripts make themselves (plain HTTP),
shared by cosign_images.py and attested_images.py."""
import hashlib
import urllib.request

ACCEPT = ", ".join(["application/vnd.oci.image.index.v1+json",
                    "application/vnd.oci.image.manifest.v1+json",
                    "application/vnd.docker.distribution.manifest.list.v2+json",
                    "application/vnd.docker.distribution.manifest.v2+json"])


def digest_of(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Registry:
    def __init__(self, host):
        self.host = host

    def request(self, method, path, body=None, headers=None):
        url = path if path.startswith("http") else f"http://{self.host}{path}"
        req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
        with urllib.request.urlopen(req) as answer:
            return answer.status, answer.headers, answer.read()

    def get_manifest(self, repo, ref):
        """The manifest or index as served, and its Content-Type."""
        _, headers, body = self.request("GET", f"/v2/{repo}/manifests/{ref}",
                                        headers={"Accept": ACCEPT})
        return body, headers["Content-Type"]

    def push_blob(self, repo, data):
        """Uploads `data` (one POST, one PUT); its descriptor's digest and size."""
        digest = digest_of(data)
        _, headers, _ = self.request("POST", f"/v2/{repo}/blobs/uploads/")
        location = headers["Location"]
        sep = "&" if "?" in location else "?"
        self.request("PUT", f"{location}{sep}digest={digest}", data,
                     {"Content-Type": "application/octet-stream"})
        return {"digest": digest, "size": len(data)}

    def put_manifest(self, repo, ref, body, media_type):
        self.request("PUT", f"/v2/{repo}/manifests/{ref}", body, {"Content-Type": media_type})
        return digest_of(body)
