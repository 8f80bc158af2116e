"""A small Hugging Face Hub on loopback, for the real ``huggingface_hub`` client (``HfApi(endpoint=...)``).

Serves the endpoints the guard uses, with the Hub's error headers:

- ``GET /api/{models,datasets}/{id}`` and ``.../revision/{rev}``: repo info with ``sha``, ``siblings``
  and, for models, ``safetensors.total``.
- ``GET /api/{models,datasets}/{id}/refs``: branches and tags.
- ``GET /api/{models,datasets}?author=...`` (and ``search=``): listing used for suggestions.
- ``X-Error-Code: RepoNotFound`` (404, or 401 without token for private repos), ``RevisionNotFound``
  (404), ``GatedRepo`` (403 without token).

Faults: ``hub.fail_next(n, status)`` answers the next ``n`` requests with ``status``;
``hub.delay`` sleeps before every answer (timeouts).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse


def fake_sha(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


@dataclass
class Repo:
    repo_id: str
    repo_type: str
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    files: dict[str, list[str]] = field(default_factory=dict)  # commit sha -> file paths
    parameters: int | None = None
    gated: bool = False
    private: bool = False


class LocalHub:
    def __init__(self) -> None:
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[str] = []
        self.delay = 0.0
        self._failures: list[int] = []
        self._lock = threading.Lock()
        self.token = "hf_test_token_123"
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> LocalHub:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add(
        self,
        repo_id: str,
        *,
        repo_type: str = "model",
        files: list[str] | None = None,
        parameters: int | None = None,
        tags: dict[str, str] | None = None,
        gated: bool = False,
        private: bool = False,
    ) -> Repo:
        sha = fake_sha(f"{repo_type}/{repo_id}/1")
        repo = Repo(
            repo_id,
            repo_type,
            branches={"main": sha},
            files={sha: list(files or [])},
            parameters=parameters,
            gated=gated,
            private=private,
        )
        for tag in tags or {}:
            repo.tags[tag] = sha
        self.repos[(repo_type, repo_id)] = repo
        return repo

    def commit(
        self, repo_id: str, *, repo_type: str = "model", branch: str = "main", files: list[str] | None = None
    ) -> str:
        """Move ``branch`` to a new commit (a branch that moves between pre-flight and training)."""
        repo = self.repos[(repo_type, repo_id)]
        sha = fake_sha(f"{repo_type}/{repo_id}/{len(repo.files) + 1}")
        repo.files[sha] = list(files if files is not None else repo.files[repo.branches[branch]])
        repo.branches[branch] = sha
        return sha

    def fail_next(self, count: int, status: int = 503) -> None:
        with self._lock:
            self._failures.extend([status] * count)

    def _take_failure(self) -> int | None:
        with self._lock:
            return self._failures.pop(0) if self._failures else None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body if body is not None else {}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: int, code: str, message: str) -> None:
                self._send(status, {"error": message}, {"X-Error-Code": code, "X-Error-Message": message})

            def do_GET(self) -> None:
                hub.requests.append(self.path)
                if hub.delay:
                    time.sleep(hub.delay)
                failure = hub._take_failure()
                if failure is not None:
                    self._send(failure, {"error": "upstream trouble"})
                    return
                url = urlparse(self.path)
                parts = [unquote(p) for p in url.path.split("/") if p]
                if len(parts) < 2 or parts[0] != "api" or parts[1] not in ("models", "datasets"):
                    self._send(404, {"error": "no route"})
                    return
                repo_type = parts[1][:-1]
                rest = parts[2:]
                if not rest:
                    self._list(repo_type, parse_qs(url.query))
                    return
                authed = self.headers.get("Authorization") == f"Bearer {hub.token}"
                suffix: list[str] = []
                for marker in ("revision", "refs"):
                    if marker in rest:
                        index = rest.index(marker)
                        rest, suffix = rest[:index], rest[index:]
                        break
                repo = hub.repos.get((repo_type, "/".join(rest)))
                if repo is None or (repo.private and not authed):
                    self._error(401 if not authed else 404, "RepoNotFound", "Repository not found")
                    return
                if repo.gated and not authed:
                    self._error(403, "GatedRepo", "Access to this repo is restricted")
                    return
                if suffix[:1] == ["refs"]:
                    self._send(
                        200,
                        {
                            "branches": [
                                {"name": n, "ref": f"refs/heads/{n}", "targetCommit": s}
                                for n, s in repo.branches.items()
                            ],
                            "tags": [
                                {"name": n, "ref": f"refs/tags/{n}", "targetCommit": s}
                                for n, s in repo.tags.items()
                            ],
                            "converts": [],
                        },
                    )
                    return
                revision = "/".join(suffix[1:]) if suffix[:1] == ["revision"] else "main"
                sha = repo.branches.get(revision) or repo.tags.get(revision)
                if sha is None and revision in repo.files:
                    sha = revision
                if sha is None:
                    self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
                    return
                body: dict[str, Any] = {
                    "id": repo.repo_id,
                    "_id": fake_sha(repo.repo_id)[:24],
                    "sha": sha,
                    "private": repo.private,
                    "gated": "auto" if repo.gated else False,
                    "siblings": [{"rfilename": f} for f in repo.files[sha]],
                    "tags": [],
                    "downloads": 0,
                    "likes": 0,
                }
                if repo_type == "model" and repo.parameters is not None:
                    body["safetensors"] = {"parameters": {"BF16": repo.parameters}, "total": repo.parameters}
                self._send(200, body)

            def _list(self, repo_type: str, query: dict[str, list[str]]) -> None:
                author = (query.get("author") or [None])[0]
                search = (query.get("search") or [None])[0]
                items = [
                    {"id": repo.repo_id, "_id": fake_sha(repo.repo_id)[:24], "private": repo.private}
                    for (kind, _), repo in sorted(hub.repos.items())
                    if kind == repo_type
                    and not repo.private
                    and (author is None or repo.repo_id.startswith(f"{author}/"))
                    and (search is None or search.lower() in repo.repo_id.lower())
                ]
                self._send(200, items)

        return Handler
