"""A small Hugging Face Hub on loopback, for the real ``huggingface_hub`` client (``HfApi(endpoint=...)``).

One model of a repo (branches, tags, and per commit SHA the files with their bytes) behind the
endpoints the guard's pre-flight (``HubHook``) and the Hub model registry use, with the Hub's
error headers:

- ``GET /api/{models,datasets}/{id}`` and ``.../revision/{rev}``: repo info with ``sha``, ``siblings``
  and, for models, ``safetensors.total`` (``repo_info``, ``model_info``).
- ``GET /api/{models,datasets}/{id}/refs``: branches and tags (``list_repo_refs``).
- ``GET /api/{models,datasets}?author=...`` (and ``search=``): listing used for suggestions.
- ``GET``/``HEAD /{id}/resolve/{rev}/{path}`` (``/datasets/...`` for datasets): file bytes with
  ``X-Repo-Commit`` and ``ETag`` (``hf_hub_download``); a missing file is 404 ``EntryNotFound``.
- ``POST /api/{models,datasets}/{id}/preupload/{branch}`` (every file "regular") and
  ``.../commit/{branch}`` (``create_commit``): a commit whose header carries a ``parentCommit``
  that is not the branch head is refused with HTTP 412, atomically (one lock around
  check-and-advance), as the Hub does. ``commits_accepted``/``commits_refused`` count them.
- ``X-Error-Code: RepoNotFound`` (404, or 401 without the token for private or missing repos),
  ``RevisionNotFound`` (404), ``GatedRepo`` (403 without the token).

Faults: ``hub.fail_next(n, status)`` answers the next ``n`` requests with ``status`` (only those
whose path contains ``path_contains=``, e.g. ``"/resolve/"`` for downloads);
``hub.delay`` sleeps before every answer (timeouts); ``hub.echo_authorization = True`` makes those
fault answers quote the request's ``Authorization`` header, as some proxies' error pages do.

``python tests/integration/hub/hub_server.py org/a org/b`` serves those model repos and prints the URL.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

#: Path segments that end the repo id in ``/api/{type}s/{repo id}/{marker}/...``.
_API_MARKERS = ("revision", "refs", "preupload", "commit")


def fake_sha(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def _file_map(files: Iterable[str] | Mapping[str, bytes] | None) -> dict[str, bytes]:
    """File paths (empty content) or paths with their bytes, as ``{path: bytes}``."""
    if isinstance(files, Mapping):
        return dict(files)
    return dict.fromkeys(files or (), b"")


@dataclass
class Repo:
    repo_id: str
    repo_type: str
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # commit sha -> path -> bytes
    parameters: int | None = None
    gated: bool = False
    private: bool = False

    def resolve(self, revision: str) -> str | None:
        """The commit SHA of a branch, tag or known SHA; ``None`` when there is none."""
        sha = self.branches.get(revision) or self.tags.get(revision)
        if sha is None and revision in self.commits:
            sha = revision
        return sha

    def next_sha(self) -> str:
        return fake_sha(f"{self.repo_type}/{self.repo_id}/{len(self.commits) + 1}")


class LocalHub:
    def __init__(self, token: str = "hf_test_token_123") -> None:
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[str] = []
        self.delay = 0.0
        self.echo_authorization = False
        self.token = token
        self.commits_accepted = 0
        self.commits_refused = 0
        self._failures: list[tuple[int, str]] = []
        self._lock = threading.Lock()
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

    def __enter__(self) -> LocalHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add(
        self,
        repo_id: str,
        *,
        repo_type: str = "model",
        files: Iterable[str] | Mapping[str, bytes] | None = None,
        parameters: int | None = None,
        tags: Iterable[str] | None = None,
        gated: bool = False,
        private: bool = False,
    ) -> Repo:
        """Create a repo whose ``main`` (and every tag in ``tags``) is one commit holding ``files``."""
        repo = Repo(repo_id, repo_type, parameters=parameters, gated=gated, private=private)
        sha = repo.next_sha()
        repo.commits[sha] = _file_map(files)
        repo.branches["main"] = sha
        for tag in tags or ():
            repo.tags[tag] = sha
        with self._lock:
            self.repos[(repo_type, repo_id)] = repo
        return repo

    def commit(
        self,
        repo_id: str,
        *,
        repo_type: str = "model",
        branch: str = "main",
        files: Iterable[str] | Mapping[str, bytes] | None = None,
    ) -> str:
        """Move ``branch`` to a new commit holding ``files`` (default: the same files), as someone
        pushing to the Hub would (a branch that moves between pre-flight and training)."""
        with self._lock:
            repo = self.repos[(repo_type, repo_id)]
            head = repo.commits[repo.branches[branch]]
            return self._advance(repo, branch, _file_map(files) if files is not None else dict(head))

    def fail_next(self, count: int, status: int = 503, *, path_contains: str = "") -> None:
        """Answer the next ``count`` requests (whose path contains ``path_contains``) with ``status``."""
        with self._lock:
            self._failures.extend([(status, path_contains)] * count)

    def clear_failures(self) -> None:
        """Forget the faults not yet served."""
        with self._lock:
            self._failures.clear()

    def _take_failure(self, path: str) -> int | None:
        with self._lock:
            for index, (status, fragment) in enumerate(self._failures):
                if fragment in path:
                    del self._failures[index]
                    return status
            return None

    def _advance(self, repo: Repo, branch: str, files: dict[str, bytes]) -> str:
        """Record a commit on ``branch``; the caller holds the lock."""
        sha = repo.next_sha()
        repo.commits[sha] = files
        repo.branches[branch] = sha
        return sha

    def _apply_commit(
        self, repo: Repo, branch: str, lines: list[dict[str, Any]]
    ) -> tuple[int, dict[str, Any]]:
        """Apply a ``create_commit`` payload (NDJSON lines) to ``branch``, refusing a stale parent."""
        header: dict[str, Any] = next((line["value"] for line in lines if line.get("key") == "header"), {})
        parent = header.get("parentCommit")
        with self._lock:
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
            sha = self._advance(repo, branch, files)
            self.commits_accepted += 1
            return 200, {"commitOid": sha}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

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
                    status,
                    json.dumps(payload).encode(),
                    {"Content-Type": "application/json", **(headers or {})},
                )

            def _error(
                self, status: int, code: str, message: str, headers: dict[str, str] | None = None
            ) -> None:
                self._json(
                    status,
                    {"error": message},
                    {"X-Error-Code": code, "X-Error-Message": message, **(headers or {})},
                )

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _begin(self) -> tuple[list[str], dict[str, list[str]]] | None:
                """Log, apply faults; the unquoted path segments and query, or ``None`` if answered."""
                hub.requests.append(self.path)
                if hub.delay:
                    time.sleep(hub.delay)
                failure = hub._take_failure(self.path)
                if failure is not None:
                    if hub.echo_authorization:
                        echo = f"upstream trouble; request had Authorization: {self.headers.get('Authorization')}"
                        self._json(failure, {"error": echo}, {"X-Error-Message": echo})
                    else:
                        self._json(failure, {"error": "upstream trouble"})
                    return None
                url = urlparse(self.path)
                return [unquote(p) for p in url.path.split("/") if p], parse_qs(url.query)

            def _repo(self, repo_type: str, repo_id: str) -> Repo | None:
                """The repo if this request may see it; otherwise answer as the Hub does and ``None``."""
                authed = self.headers.get("Authorization") == f"Bearer {hub.token}"
                repo = hub.repos.get((repo_type, repo_id))
                if repo is None or (repo.private and not authed):
                    self._error(401 if not authed else 404, "RepoNotFound", f"Repository {repo_id} not found")
                    return None
                if repo.gated and not authed:
                    self._error(403, "GatedRepo", "Access to this repo is restricted")
                    return None
                return repo

            def _no_route(self) -> None:
                self._json(404, {"error": f"no route {urlparse(self.path).path}"})

            def do_HEAD(self) -> None:
                self.do_GET()

            def do_GET(self) -> None:
                begun = self._begin()
                if begun is None:
                    return
                parts, query = begun
                if parts[:1] == ["api"]:
                    self._api_get(parts[1:], query)
                else:
                    self._resolve(parts)

            def do_POST(self) -> None:
                body = self._body()
                begun = self._begin()
                if begun is None:
                    return
                parts, _ = begun
                route = _api_route(parts[1:]) if parts[:1] == ["api"] else None
                if route is None or route[2] not in ("preupload", "commit") or not route[3]:
                    return self._no_route()
                repo_type, repo_id, op, branch = route
                repo = self._repo(repo_type, repo_id)
                if repo is None:
                    return
                if branch not in repo.branches:
                    return self._error(404, "RevisionNotFound", f"Invalid rev id: {branch}")
                if op == "preupload":
                    files = json.loads(body)["files"]
                    return self._json(
                        200,
                        {
                            "files": [
                                {
                                    "path": f["path"],
                                    "uploadMode": "regular",
                                    "shouldIgnore": False,
                                    "oid": None,
                                }
                                for f in files
                            ]
                        },
                    )
                lines = [json.loads(line) for line in body.splitlines() if line.strip()]
                status, payload = hub._apply_commit(repo, branch, lines)
                if status != 200:
                    return self._json(status, payload)
                host = self.headers.get("Host") or hub.url.removeprefix("http://")
                prefix = "" if repo_type == "model" else f"{repo_type}s/"
                payload["commitUrl"] = f"http://{host}/{prefix}{repo_id}/commit/{payload['commitOid']}"
                payload["pullRequestUrl"] = None
                return self._json(200, payload)

            def _api_get(self, parts: list[str], query: dict[str, list[str]]) -> None:
                if parts[:1] in (["models"], ["datasets"]) and len(parts) == 1:
                    return self._list(parts[0][:-1], query)
                route = _api_route(parts)
                if route is None or route[2] not in (None, "revision", "refs"):
                    return self._no_route()
                repo_type, repo_id, op, revision = route
                repo = self._repo(repo_type, repo_id)
                if repo is None:
                    return
                if op == "refs":
                    return self._json(
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
                revision = revision or "main"
                sha = repo.resolve(revision)
                if sha is None:
                    return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
                body: dict[str, Any] = {
                    "id": repo.repo_id,
                    "_id": fake_sha(repo.repo_id)[:24],
                    "sha": sha,
                    "private": repo.private,
                    "gated": "auto" if repo.gated else False,
                    "siblings": [{"rfilename": f} for f in repo.commits[sha]],
                    "tags": [],
                    "downloads": 0,
                    "likes": 0,
                }
                if repo_type == "model":
                    body["modelId"] = repo.repo_id
                    if repo.parameters is not None:
                        body["safetensors"] = {
                            "parameters": {"BF16": repo.parameters},
                            "total": repo.parameters,
                        }
                return self._json(200, body)

            def _list(self, repo_type: str, query: dict[str, list[str]]) -> None:
                author = next(iter(query.get("author", [])), None)
                search = next(iter(query.get("search", [])), None)
                items = [
                    {"id": repo.repo_id, "_id": fake_sha(repo.repo_id)[:24], "private": repo.private}
                    for (kind, _), repo in sorted(hub.repos.items())
                    if kind == repo_type
                    and not repo.private
                    and (author is None or repo.repo_id.startswith(f"{author}/"))
                    and (search is None or search.lower() in repo.repo_id.lower())
                ]
                self._json(200, items)

            def _resolve(self, parts: list[str]) -> None:
                """``/[datasets/]{id}/resolve/{rev}/{path}``: a file's bytes at a revision."""
                repo_type = "dataset" if parts[:1] == ["datasets"] else "model"
                parts = parts[1:] if repo_type == "dataset" else parts
                index = parts.index("resolve", 1) if "resolve" in parts[1:] else -1
                if index < 0 or len(parts) < index + 3:
                    return self._no_route()
                repo_id, revision, path = (
                    "/".join(parts[:index]),
                    parts[index + 1],
                    "/".join(parts[index + 2 :]),
                )
                repo = self._repo(repo_type, repo_id)
                if repo is None:
                    return
                sha = repo.resolve(revision)
                if sha is None:
                    return self._error(404, "RevisionNotFound", f"{repo_id}@{revision} not found")
                content = repo.commits[sha].get(path)
                if content is None:
                    return self._send(
                        404,
                        b"",
                        {
                            "X-Error-Code": "EntryNotFound",
                            "X-Repo-Commit": sha,
                            "X-Error-Message": f"{path} not found",
                        },
                    )
                etag = '"' + hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest() + '"'
                return self._send(
                    200,
                    content,
                    {"X-Repo-Commit": sha, "ETag": etag, "Content-Type": "application/octet-stream"},
                )

        return Handler


def _api_route(parts: list[str]) -> tuple[str, str, str | None, str] | None:
    """``{models,datasets}/{repo id}[/{marker}[/{rest}]]`` as (repo type, repo id, marker, rest)."""
    if len(parts) < 2 or parts[0] not in ("models", "datasets"):
        return None
    rest = parts[1:]
    index = next((i for i, part in enumerate(rest) if i > 0 and part in _API_MARKERS), len(rest))
    op = rest[index] if index < len(rest) else None
    return parts[0][:-1], "/".join(rest[:index]), op, "/".join(rest[index + 1 :])


if __name__ == "__main__":
    import sys

    with LocalHub() as hub:
        for name in sys.argv[1:]:
            hub.add(name, files=[".gitattributes"])
        print(hub.url, flush=True)
        threading.Event().wait()
