"""Hugging Face Hub artifacts a run uses: what is asked for, what it resolved to, and what went wrong.

Pure Python, no Airflow and no ``huggingface_hub`` import: the hook
(:mod:`airflow_training_guard.hooks.hub`) does the talking and raises these errors; the pre-flight
checks turn them into results. A Hub that is down (:class:`HubUnreachableError`) is never reported
as a missing dataset: the production failure was a team deleting a "typo" that was an outage.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from airflow_training_guard.exceptions import GuardConfigError, TrainingGuardError

RepoType = Literal["model", "dataset"]
REPO_TYPES: tuple[str, ...] = ("model", "dataset")
#: Longest repository name (after the namespace) the Hub accepts.
MAX_REPO_NAME_LENGTH = 96

_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_SHA1 = re.compile(r"[0-9a-f]{40}")


class HubError(TrainingGuardError):
    """A Hub artifact could not be resolved. ``problem`` and ``fix`` feed the pre-flight report."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem}; {fix}")
        self.problem = problem
        self.fix = fix


class HubRepoNotFoundError(HubError):
    """The repository does not exist (or is private and the token cannot see it)."""


class HubRevisionNotFoundError(HubError):
    """The repository exists but the branch, tag or commit does not."""


class HubAccessError(HubError):
    """The repository is gated or private and the configured token (or no token) cannot read it."""


class HubUnreachableError(HubError):
    """The Hub timed out or answered 5xx/429 after every retry: nothing is known about the artifact."""


def is_commit_sha(revision: str) -> bool:
    """Whether ``revision`` is a full 40-hex commit SHA (immutable), not a branch or tag."""
    return bool(_SHA1.fullmatch(revision))


def validate_repo_id(repo_id: object, *, repo_type: str = "model") -> str:
    """Check a Hub repo id (``namespace/name``, or a legacy ``name`` for models) when the DAG is parsed.

    Rules of the Hub: parts are letters, digits, ``-``, ``_`` and ``.``, start with a letter or digit,
    contain neither ``--`` nor ``..``, do not end with ``.`` or ``-``; the name is at most 96 characters.

    :raises GuardConfigError: naming the repo id and what is wrong with it.
    """
    if repo_type not in REPO_TYPES:
        raise GuardConfigError(f"repo_type {repo_type!r} is not valid; use one of {', '.join(REPO_TYPES)}")
    where = f"{repo_type} repo id {repo_id!r}"
    if not isinstance(repo_id, str) or not repo_id.strip():
        raise GuardConfigError(f"{where} must be a non-empty string like 'org/name'")
    if repo_id != repo_id.strip() or any(ch.isspace() for ch in repo_id):
        raise GuardConfigError(f"{where} contains whitespace; write it like 'org/name'")
    if repo_id.startswith(("http://", "https://", "hf://")) or "huggingface.co" in repo_id:
        raise GuardConfigError(
            f"{where} is a URL; give only 'org/name' (the hub connection sets the endpoint)"
        )
    parts = repo_id.split("/")
    if len(parts) > 2:
        raise GuardConfigError(f"{where} has {len(parts) - 1} '/'; a repo id is 'org/name' with exactly one")
    if len(parts) == 1 and repo_type == "dataset":
        raise GuardConfigError(
            f"{where} has no namespace; dataset ids are 'org/name', e.g. 'trl-lib/{repo_id}'"
        )
    for part in parts:
        if not part:
            raise GuardConfigError(f"{where} has an empty part; write it like 'org/name'")
        if not _PART.fullmatch(part) or "--" in part or ".." in part or part.endswith((".", "-")):
            raise GuardConfigError(
                f"{where}: {part!r} is not valid; use letters, digits, '-', '_' and '.', starting with a "
                "letter or digit, without '--' or '..', not ending with '.' or '-'"
            )
    if len(parts[-1]) > MAX_REPO_NAME_LENGTH:
        raise GuardConfigError(f"{where}: the name is longer than {MAX_REPO_NAME_LENGTH} characters")
    return repo_id


def closest_names(name: str, candidates: Iterable[str], *, limit: int = 3) -> list[str]:
    """The existing names closest to a missing ``name``, best first (case-insensitive, difflib).

    Compared on the part after the namespace, so ``org/Datset`` finds ``org/dataset``; a low cutoff
    because a suggestion that is a little off is still more useful than none.
    """
    pool = sorted(set(candidates) - {name})
    by_short = {candidate.split("/")[-1].lower(): candidate for candidate in pool}
    matches = difflib.get_close_matches(name.split("/")[-1].lower(), list(by_short), n=limit, cutoff=0.4)
    return [by_short[match] for match in matches]


@dataclass(frozen=True)
class RepoSpec:
    """A Hub artifact a run needs: a model or dataset, at a revision, with files that must exist.

    :param repo_id: ``org/name``.
    :param repo_type: ``"model"`` or ``"dataset"``.
    :param revision: branch, tag or commit SHA; ``None`` means the default branch (``main``).
    :param files: paths that must exist at that revision (``"config.json"``, ``"data/train.parquet"``).
    """

    repo_id: str
    repo_type: str = "model"
    revision: str | None = None
    files: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        validate_repo_id(self.repo_id, repo_type=self.repo_type)
        if self.revision is not None and (not isinstance(self.revision, str) or not self.revision.strip()):
            raise GuardConfigError(
                f"{self.repo_type} {self.repo_id!r}: revision {self.revision!r} must be a branch, tag or "
                "commit SHA, or None for the default branch"
            )
        if isinstance(self.files, str):
            object.__setattr__(self, "files", (self.files,))
        files = tuple(self.files)
        for path in files:
            if not isinstance(path, str) or not path or path.startswith("/") or ".." in path.split("/"):
                raise GuardConfigError(
                    f"{self.repo_type} {self.repo_id!r}: file {path!r} must be a relative path inside the repo"
                )
        object.__setattr__(self, "files", files)

    @property
    def category(self) -> str:
        """The pin category: ``"models"`` or ``"datasets"``."""
        return f"{self.repo_type}s"

    def describe(self) -> str:
        """``dataset 'org/name'@main``."""
        return f"{self.repo_type} {self.repo_id!r}@{self.revision or 'main'}"

    @classmethod
    def coerce(cls, value: object, *, repo_type: str) -> RepoSpec:
        """Accept ``"org/name"``, ``"org/name@rev"``, a mapping of the fields, or a ``RepoSpec``."""
        if isinstance(value, RepoSpec):
            if value.repo_type != repo_type:
                raise GuardConfigError(f"{value.describe()} is listed among the {repo_type}s")
            return value
        if isinstance(value, str):
            repo_id, _, revision = value.partition("@")
            return cls(repo_id=repo_id, repo_type=repo_type, revision=revision or None)
        if isinstance(value, dict):
            unknown = set(value) - {"repo_id", "revision", "files"}
            if unknown:
                raise GuardConfigError(
                    f"{repo_type} spec {value!r} has unknown key(s) {sorted(unknown)}; use repo_id, revision, files"
                )
            if "repo_id" not in value:
                raise GuardConfigError(f"{repo_type} spec {value!r} has no 'repo_id'")
            return cls(
                repo_id=value["repo_id"],
                repo_type=repo_type,
                revision=value.get("revision"),
                files=tuple(value.get("files") or ()),
            )
        raise GuardConfigError(
            f"{repo_type} {value!r} must be 'org/name', 'org/name@revision' or a dict with repo_id, revision, files"
        )


@dataclass(frozen=True)
class ResolvedRepo:
    """What a :class:`RepoSpec` resolved to at pre-flight.

    :param spec: what was asked.
    :param sha: the commit SHA (40 hex) the revision pointed at.
    :param missing_files: files of ``spec.files`` that do not exist at that commit.
    :param parameters: the model's parameter count from the Hub's model info, when it reports one.
    """

    spec: RepoSpec
    sha: str
    missing_files: tuple[str, ...] = ()
    parameters: int | None = None
    existing_files: tuple[str, ...] = field(default=(), repr=False)


class HubClient(Protocol):
    """What the pre-flight checks need from the Hub (implemented by ``HubHook``)."""

    def resolve(self, spec: RepoSpec) -> ResolvedRepo:
        """Resolve ``spec`` to a commit; raise a :class:`HubError` subclass when it cannot."""
        ...


def format_suggestions(suggestions: Sequence[str]) -> str:
    """``"did you mean 'a'?"`` / ``"did you mean 'a' or 'b'?"`` / ``""``."""
    if not suggestions:
        return ""
    quoted = [repr(s) for s in suggestions]
    text = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]
    return f"did you mean {text}?"


__all__ = [
    "REPO_TYPES",
    "HubAccessError",
    "HubClient",
    "HubError",
    "HubRepoNotFoundError",
    "HubRevisionNotFoundError",
    "HubUnreachableError",
    "RepoSpec",
    "ResolvedRepo",
    "closest_names",
    "format_suggestions",
    "is_commit_sha",
    "validate_repo_id",
]
