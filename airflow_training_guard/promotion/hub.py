"""Hugging Face Hub model registry: the production pointer is a file in the model repo.

``production.json`` holds the pointer; ``promotions/history.jsonl`` holds every swap, one JSON
line each, and is rewritten in the *same* commit as the pointer, so pointer and history can
never disagree. The swap is ``create_commit(..., parent_commit=<head sha read>)``: if anyone
committed to the branch since we read it, the Hub answers HTTP 412 and we report a conflict.

``huggingface_hub`` is imported lazily: the SQL backend must not need it.

Credentials come from the same Airflow connection pre-flight reads (issue 19): a
:class:`~airflow_training_guard.hooks.hub.HubHook` on the ``huggingface_hub`` connection
(``huggingface_hub_default`` unless told otherwise) gives the endpoint (its host) and the write
token (its password). ``HF_TOKEN`` and the token file of ``hf auth login`` are never used: the
hook has no such fallback, so a worker's personal token cannot promote by accident. Reads are
retried by the hook (tenacity: timeouts, 429, 5xx); the compare-and-swap commit is never repeated
blindly, a lost race is the caller's to handle.

The token is registered with the secrets masker before the first request, and error texts quoted
from the Hub are redacted (:mod:`airflow_training_guard.secrets`): a Hub that echoes the
``Authorization`` header must not put the token into the task log or an exception (issue 14).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_training_guard.promotion.registry import (
    HistoryEntry,
    Observed,
    ProductionPointer,
    RegistryError,
)
from airflow_training_guard.secrets import mask, redact, redacted_error

if TYPE_CHECKING:
    from huggingface_hub import HfApi

    from airflow_training_guard.hooks.hub import HubHook

__all__ = ["HubModelRegistry"]

T = TypeVar("T")

#: HTTP statuses with which the Hub refuses a commit whose parent is no longer the branch head.
CONFLICT_STATUSES = frozenset({409, 412})


class HubModelRegistry:
    """Production pointers as files in Hugging Face Hub model repos (one repo per model).

    The ``model_name`` passed to :meth:`read` and friends is the repo id (``org/ranker``).

    :param hub_conn_id: the ``huggingface_hub`` connection with the endpoint (host) and a write
        token (password); ``None``: no connection, only ``endpoint`` and ``token``.
    :param endpoint: Hub URL; overrides the connection's host (default ``https://huggingface.co``).
    :param token: a write token for the model repos; overrides the connection's password. Without
        either, requests are anonymous (reads of public repos work, commits are refused).
    :param revision: the branch that holds the pointer.
    :param pointer_path: path of the pointer file in the repo.
    :param history_path: path of the history file in the repo.
    :param cache_dir: where pointer files downloaded by commit SHA are cached.
    """

    def __init__(
        self,
        *,
        hub_conn_id: str | None = None,
        endpoint: str | None = None,
        token: str | None = None,
        revision: str = "main",
        pointer_path: str = "production.json",
        history_path: str = "promotions/history.jsonl",
        cache_dir: str | Path | None = None,
    ) -> None:
        mask(token)
        self.hub_conn_id = hub_conn_id
        self.endpoint = endpoint
        self.token = token
        self.revision = revision
        self.pointer_path = pointer_path
        self.history_path = history_path
        self.cache_dir = str(cache_dir) if cache_dir is not None else None
        self._hook: HubHook | None = None

    def __repr__(self) -> str:
        where = f"hub_conn_id={self.hub_conn_id!r}" if self.hub_conn_id else f"endpoint={self.endpoint!r}"
        return f"HubModelRegistry({where}, revision={self.revision!r})"

    @property
    def hook(self) -> HubHook:
        """The :class:`HubHook` this registry talks through (built on first use: reading the
        connection at DAG parse time would hit the metadata database for every parse)."""
        if self._hook is None:
            from airflow_training_guard.hooks.hub import HubHook

            self._hook = HubHook(self.hub_conn_id, endpoint=self.endpoint, token=self.token)
        return self._hook

    @property
    def api(self) -> HfApi:
        """The hook's client: the connection's endpoint and token (masked before first use)."""
        return self.hook.api

    def _read_call(self, what: str, func: Callable[[], T]) -> T:
        """A read, retried by the hook on timeouts, 429 and 5xx. Other errors pass through as the
        Hub raised them (so callers keep telling "missing" from "failing"); after the last attempt
        a :class:`RegistryError` says the Hub was unreachable."""
        from airflow_training_guard.policies.hub_repos import HubUnreachableError

        try:
            return self.hook.with_retries(what, func)
        except HubUnreachableError as err:
            cause = err.__cause__
            raise RegistryError(f"{err.problem}; {err.fix}") from cause

    # -- reading --------------------------------------------------------------------------------

    def _head(self, repo_id: str) -> str:
        from huggingface_hub.errors import HfHubHTTPError

        try:
            info = self._read_call(
                f"model repo {repo_id!r}", lambda: self.api.model_info(repo_id, revision=self.revision)
            )
        except HfHubHTTPError as err:
            raise RegistryError(
                f"cannot read model repo {repo_id!r} at {self.revision!r} on {self.api.endpoint}: {redact(str(err))}"
            ) from redacted_error(err)
        if not info.sha:
            raise RegistryError(f"model repo {repo_id!r} reported no commit SHA for {self.revision!r}")
        return info.sha

    def _file_at(self, repo_id: str, path: str, sha: str) -> bytes | None:
        """The file's bytes at ``sha``; ``None`` only when the Hub answered that it does not exist.

        A download that failed (Hub erroring or unreachable) raises ``LocalEntryNotFoundError``,
        which huggingface_hub derives from ``EntryNotFoundError``: read as "no file", it would make
        a live production pointer look absent, and the next promotion would replace it and its
        history. Only the server's own 404 (``RemoteEntryNotFoundError``) means "no file".
        """
        from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RemoteEntryNotFoundError

        try:
            local = self._read_call(
                f"{path!r} of {repo_id!r}",
                lambda: self.api.hf_hub_download(repo_id, path, revision=sha, cache_dir=self.cache_dir),
            )
        except RemoteEntryNotFoundError:
            return None
        except (EntryNotFoundError, HfHubHTTPError) as err:
            raise RegistryError(
                f"cannot download {path!r} of {repo_id!r} at {sha}: {redact(str(err))}; the Hub did not say "
                "the file is missing, so the registry is not read as empty: retry when the Hub answers"
            ) from redacted_error(err)
        return Path(local).read_bytes()

    def read(self, model_name: str) -> Observed:
        sha = self._head(model_name)
        raw = self._file_at(model_name, self.pointer_path, sha)
        if raw is None:
            return Observed(pointer=None, token=sha)
        try:
            pointer = ProductionPointer.from_dict(json.loads(raw))
        except (ValueError, KeyError, TypeError) as err:
            raise RegistryError(
                f"{self.pointer_path!r} of {model_name!r} at {sha} is not a production pointer: {err}; "
                "fix or delete the file in the repo"
            ) from err
        return Observed(pointer=pointer, token=sha)

    def _history_lines(self, model_name: str, sha: str) -> list[str]:
        raw = self._file_at(model_name, self.history_path, sha)
        if raw is None:
            return []
        return [line for line in raw.decode("utf-8").splitlines() if line.strip()]

    def history(self, model_name: str) -> list[HistoryEntry]:
        sha = self._head(model_name)
        return [HistoryEntry.from_dict(json.loads(line)) for line in self._history_lines(model_name, sha)]

    # -- writing --------------------------------------------------------------------------------

    def compare_and_swap(self, model_name: str, expected: Observed, new: ProductionPointer) -> bool:
        from huggingface_hub import CommitOperationAdd
        from huggingface_hub.errors import HfHubHTTPError

        sha = str(expected.token)
        if new.version != expected.next_version or new.model_name != model_name:
            raise ValueError(
                f"new pointer v{new.version} of {new.model_name!r} must be v{expected.next_version} "
                f"of {model_name!r}"
            )
        entry = HistoryEntry(pointer=new, replaced=expected.pointer)
        lines = self._history_lines(model_name, sha)
        lines.append(json.dumps(entry.to_dict(), sort_keys=True))
        pointer_bytes = (json.dumps(new.to_dict(), indent=2, sort_keys=True) + "\n").encode()
        history_bytes = ("\n".join(lines) + "\n").encode()
        replaced = f"v{expected.pointer.version}" if expected.pointer else "nothing"
        message: dict[str, Any] = {
            "commit_message": f"{new.action} {new.candidate_id} to production as v{new.version}",
            "commit_description": f"replaces {replaced}; by {new.promoted_by} at {new.promoted_at}",
        }
        try:
            self.api.create_commit(
                model_name,
                [
                    CommitOperationAdd(self.pointer_path, pointer_bytes),
                    CommitOperationAdd(self.history_path, history_bytes),
                ],
                parent_commit=sha,
                revision=self.revision,
                **message,
            )
        except HfHubHTTPError as err:
            status = err.response.status_code if err.response is not None else None
            if status in CONFLICT_STATUSES:
                return False
            raise RegistryError(
                f"cannot commit the production pointer of {model_name!r} (HTTP {status}): {redact(str(err))}"
            ) from redacted_error(err)
        return True
