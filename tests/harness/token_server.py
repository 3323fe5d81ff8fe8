#!/usr/bin/env python3
"""A tiny token service for the registry's `silly` auth mode, as Docker Hub's auth.docker.io.

GET /token?service=S&scope=repository:PATH:ACTIONS answers {"token": ..., "access_token": ...}.
It refuses a scope that is not of that form (400), refuses wrong Basic credentials (401), and
appends one line per request to LOG: "service=S scope=SCOPE user=USER|-" (never a password),
so tests can check what dockersave asked for.

POST /token with an OAuth2 form (grant_type=refresh_token, service, scope with the scopes
space-separated, refresh_token), as Docker exchanges an identity token, answers the same way
when the refresh token is REFRESH, and logs "user=refresh-token" (or "refresh-token(refused)"
with a 401).

usage: token_server.py PORT LOG USER PASSWORD REFRESH
"""
import base64
import http.server
import json
import re
import secrets
import sys
import urllib.parse

PORT, LOG, USER, PASSWORD, REFRESH = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], \
    sys.argv[5]
SCOPE = re.compile(r"^repository:[a-z0-9._/-]+:(pull|push|pull,push|push,pull)$")


class Handler(http.server.BaseHTTPRequestHandler):
    # Keep-alive, as Docker Hub's token service: a client may reuse its connection.
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        query = urllib.parse.parse_qs(url.query)
        service = query.get("service", ["-"])[0]
        scopes = query.get("scope", [])
        user = "-"
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            except Exception:
                return self.answer(400, {"error": "bad basic header"})
            if (user, password) != (USER, PASSWORD):
                self.log_line(service, scopes, user + "(refused)")
                return self.answer(401, {"details": "incorrect username or password"})
        self.log_line(service, scopes, user)
        if url.path != "/token":
            return self.answer(404, {"error": "not found"})
        # Docker's token protocol: one `scope` parameter per repository (a push that mounts
        # asks for the target and the source repositories at once).
        if not scopes or not all(SCOPE.match(s) for s in scopes):
            return self.answer(400, {"error": "bad scope"})
        token = secrets.token_hex(16)
        self.answer(200, {"token": token, "access_token": token, "expires_in": 300})

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        if self.path != "/token" or not 0 < length <= 65536:
            return self.answer(400, {"error": "a token form is expected"})
        form = urllib.parse.parse_qs(self.rfile.read(length).decode())
        field = lambda name: form.get(name, [""])[0]
        service, scopes = field("service") or "-", field("scope").split()
        if field("grant_type") != "refresh_token":
            return self.answer(400, {"error": "unsupported_grant_type"})
        if field("refresh_token") != REFRESH:
            self.log_line(service, scopes, "refresh-token(refused)")
            return self.answer(401, {"error": "invalid_grant"})
        self.log_line(service, scopes, "refresh-token")
        if not scopes or not all(SCOPE.match(s) for s in scopes):
            return self.answer(400, {"error": "invalid_scope"})
        token = secrets.token_hex(16)
        self.answer(200, {"access_token": token, "expires_in": 300,
                          "refresh_token": REFRESH})

    def log_line(self, service, scopes, user):
        with open(LOG, "a") as log:
            log.write(f"service={service} scope={','.join(scopes) or '-'} user={user}\n")

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
