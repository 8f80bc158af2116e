"""A tiny Hugging Face Hub on loopback: just what the real ``huggingface_hub`` client needs for
``model_info``, ``list_repo_refs``, ``hf_hub_download`` and ``create_commit``.

Its one piece of real behaviour is the one promotion depends on: a commit whose header carries a
``parentCommit`` that is not the branch head is refused with HTTP 412, atomically (one lock around
check-and-advance), as the Hub does. Runnable on its own for the benchmark:
``python tests/integration/promotion/hub_server.py`` prints the endpoint URL.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_API = re.compile(
    r"^/api/models/(?P<repo>[^/]+/[^/]+)(?:/(?P<op>revision|preupload|commit)/(?P<rev>[^/]+)|/(?P<refs>refs))?$"
)


@dataclass
class Repo:
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.lock = threading.Lock()
        self.commits_accepted = 0
        self.commits_refused = 0
        self._counter = 0

    def _new_sha(self, seed: str) -> str:
        self._counter += 1
        return hashlib.sha1(f"{seed}:{self._counter}".encode()).hexdigest()

    def create_repo(self, repo_id: str, files: dict[str, bytes] | None = None) -> str:
        with self.lock:
            sha = self._new_sha(repo_id)
            self.repos[repo_id] = Repo(
                commits={sha: dict(files or {".gitattributes": b""})}, branches={"main": sha}
            )
            return sha

    def resolve(self, repo_id: str, rev: str) -> str | None:
        repo = self.repos.get(repo_id)
        if repo is None:
            return None
        if rev in repo.branches:
            return repo.branches[rev]
        return rev if rev in repo.commits else None

    def commit(self, repo_id: str, branch: str, lines: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
        header = next((line["value"] for line in lines if line.get("key") == "header"), {})
        parent = header.get("parentCommit")
        with self.lock:
            repo = self.repos[repo_id]
            head = repo.branches[branch]
            if parent is not None and parent != head:
                self.commits_refused += 1
                return 412, {
                    "error": f"A commit has happened since. Please refresh and try again. ({parent} != {head})"
                }
            files = dict(repo.commits[head])
            for line in lines:
                if line.get("key") == "file":
                    value = line["value"]
                    files[value["path"]] = base64.b64decode(value["content"])
                elif line.get("key") == "deletedFile":
                    files.pop(line["value"]["path"], None)
            sha = self._new_sha(head)
            repo.commits[sha] = files
            repo.branches[branch] = sha
            self.commits_accepted += 1
            return 200, {"commitOid": sha}


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            self._send(
                status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})}
            )

        def _not_found(self, code: str, message: str) -> None:
            self._json(404, {"error": message}, {"X-Error-Code": code, "X-Error-Message": message})

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            path = unquote(urlsplit(self.path).path)
            match = _RESOLVE.match(path)
            if match:
                repo_id, rev, file_path = match["repo"], match["rev"], match["path"]
                sha = hub.resolve(repo_id, rev)
                if sha is None:
                    code = "RepoNotFound" if repo_id not in hub.repos else "RevisionNotFound"
                    return self._not_found(code, f"{repo_id}@{rev} not found")
                content = hub.repos[repo_id].commits[sha].get(file_path)
                if content is None:
                    return self._send(
                        404,
                        b"",
                        {
                            "X-Error-Code": "EntryNotFound",
                            "X-Repo-Commit": sha,
                            "X-Error-Message": f"{file_path} not found",
                        },
                    )
                etag = '"' + hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest() + '"'
                return self._send(
                    200,
                    content,
                    {"X-Repo-Commit": sha, "ETag": etag, "Content-Type": "application/octet-stream"},
                )
            match = _API.match(path)
            if not match:
                return self._json(404, {"error": f"no route {path}"})
            repo_id = match["repo"]
            if repo_id not in hub.repos:
                return self._not_found("RepoNotFound", f"Repository {repo_id} not found")
            if match["refs"]:
                branches = [
                    {"name": name, "ref": f"refs/heads/{name}", "targetCommit": sha}
                    for name, sha in hub.repos[repo_id].branches.items()
                ]
                return self._json(200, {"branches": branches, "converts": [], "tags": []})
            rev = match["rev"] or "main"
            sha = hub.resolve(repo_id, rev)
            if sha is None:
                return self._not_found("RevisionNotFound", f"Invalid rev id: {rev}")
            files = hub.repos[repo_id].commits[sha]
            return self._json(
                200,
                {
                    "_id": repo_id,
                    "id": repo_id,
                    "modelId": repo_id,
                    "sha": sha,
                    "private": False,
                    "siblings": [{"rfilename": name} for name in sorted(files)],
                },
            )

        def do_POST(self) -> None:
            path = unquote(urlsplit(self.path).path)
            match = _API.match(path)
            body = self._body()
            if not match or match["op"] not in {"preupload", "commit"}:
                return self._json(404, {"error": f"no route {path}"})
            repo_id, rev = match["repo"], match["rev"]
            if repo_id not in hub.repos:
                return self._not_found("RepoNotFound", f"Repository {repo_id} not found")
            if hub.resolve(repo_id, rev) is None or rev not in hub.repos[repo_id].branches:
                return self._not_found("RevisionNotFound", f"Invalid rev id: {rev}")
            if match["op"] == "preupload":
                files = json.loads(body)["files"]
                return self._json(
                    200,
                    {
                        "files": [
                            {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
                            for f in files
                        ]
                    },
                )
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
            status, payload = hub.commit(repo_id, rev, lines)
            if status != 200:
                return self._json(status, payload)
            host = self.headers.get("Host") or f"127.0.0.1:{self.server.server_address[1]}"
            payload["commitUrl"] = f"http://{host}/{repo_id}/commit/{payload['commitOid']}"
            payload["pullRequestUrl"] = None
            return self._json(200, payload)

    return Handler


class HubServer:
    """Run a :class:`FakeHub` on 127.0.0.1 in a background thread; ``url`` is the endpoint."""

    def __init__(self) -> None:
        self.hub = FakeHub()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.hub))
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


if __name__ == "__main__":
    import sys

    with HubServer() as server:
        for repo in sys.argv[1:]:
            server.hub.create_repo(repo)
        print(server.url, flush=True)
        threading.Event().wait()
