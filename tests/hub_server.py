"""A local stand-in for the Hugging Face Hub: the routes ``huggingface_hub`` uses to create a repo and commit files.

Start it with :func:`serve`; point the client at it with ``HF_ENDPOINT=<url>`` and ``HF_HUB_DISABLE_XET=1`` (so
that uploads go through the plain commit API). Every file committed is kept in ``server.repos[repo_id][path]``
(bytes) and every request in ``server.requests``.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeHub(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, token: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.token = token
        self.repos: dict[str, dict[str, bytes]] = {}
        self.private: dict[str, bool] = {}
        self.requests: list[tuple[str, str]] = []
        self.commits = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeHub

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status >= 400:
            self.send_header(
                "X-Error-Message", body.get("error", "error") if isinstance(body, dict) else "error"
            )
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            data = gzip.decompress(data)
        return data

    def _authorised(self) -> bool:
        if self.headers.get("Authorization") == f"Bearer {self.server.token}":
            return True
        self._send(401, {"error": "Invalid credentials in Authorization header"})
        return False

    def do_GET(self) -> None:
        self.server.requests.append(("GET", self.path))
        if self.path.startswith("/api/whoami"):
            if self._authorised():
                self._send(
                    200, {"type": "user", "name": "tester", "auth": {"accessToken": {"role": "write"}}}
                )
            return
        self._send(404, {"error": f"no route GET {self.path}"})

    def do_POST(self) -> None:
        self.server.requests.append(("POST", self.path))
        body = self._body()
        if not self._authorised():
            return
        parts = self.path.split("?")[0].strip("/").split("/")
        if parts[:2] == ["api", "validate-yaml"]:
            # the Hub checks a README's metadata before accepting it; here: huggingface_hub's strict parser
            from huggingface_hub import ModelCard

            try:
                ModelCard(json.loads(body)["content"], ignore_metadata_errors=False)
            except Exception as err:
                self._send(400, {"error": "invalid metadata", "errors": [{"message": str(err)}]})
                return
            self._send(200, {"warnings": []})
            return
        if parts[:3] == ["api", "repos", "create"]:
            payload = json.loads(body)
            repo_id = f"{payload.get('organization') or 'tester'}/{payload['name']}"
            if repo_id in self.server.repos:
                self._send(
                    409,
                    {"error": "You already created this model repo", "url": f"{self.server.url}/{repo_id}"},
                )
                return
            self.server.repos[repo_id] = {}
            self.server.private[repo_id] = payload.get("visibility") == "private" or bool(
                payload.get("private")
            )
            self._send(200, {"url": f"{self.server.url}/{repo_id}", "name": repo_id})
            return
        if len(parts) >= 6 and parts[:2] == ["api", "models"] and parts[4] in ("preupload", "commit"):
            repo_id = f"{parts[2]}/{parts[3]}"
            if repo_id not in self.server.repos:
                self._send(404, {"error": "Repository not found"})
                return
            if parts[4] == "preupload":
                files = json.loads(body)["files"]
                self._send(
                    200,
                    {
                        "files": [
                            {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files
                        ]
                    },
                )
                return
            for line in body.decode().splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    value = item["value"]
                    content = value["content"]
                    data = (
                        base64.b64decode(content) if value.get("encoding") == "base64" else content.encode()
                    )
                    self.server.repos[repo_id][value["path"]] = data
                elif item["key"] == "lfsFile":
                    self._send(400, {"error": "this test hub takes regular uploads only"})
                    return
            self.server.commits += 1
            oid = hashlib.sha1(str(self.server.commits).encode()).hexdigest()
            self._send(
                200,
                {
                    "commitUrl": f"{self.server.url}/{repo_id}/commit/{oid}",
                    "commitOid": oid,
                    "pullRequestUrl": None,
                },
            )
            return
        self._send(404, {"error": f"no route POST {self.path}"})


def serve(token: str = "hf_test_token") -> tuple[FakeHub, threading.Thread]:
    server = FakeHub(token)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread
