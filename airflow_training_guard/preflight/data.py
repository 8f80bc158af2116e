"""Pin data that has no commit SHA (a folder, a bucket prefix) by the digest of its content.

Hub datasets are pinned by their commit SHA. Files written by an upstream job (the hourly
partitions of yesterday's events) have none, yet the production failure is the same: the data
changes underneath a run (a late partition is rewritten, a job reruns with a fix) and nobody can
say what the model was trained on. Pre-flight pins such a location to ``sha256:<64 hex>``, a
digest over every file's relative path, size and SHA-256; the training operator recomputes it
before it starts the program and refuses to train on data that no longer matches the pin.

Every byte is read once per digest. That is cheap for daily partitions of a few GiB on local or
network storage; for terabyte-scale data use a versioned store (the Hub, lakeFS, Iceberg
snapshots) and pin its commit instead.

Pure Python: the location is anything with pathlib's ``rglob``/``is_file``/``open``/``stat``
interface (``pathlib.Path``, or Airflow's ``ObjectStoragePath`` for ``s3://`` ...).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from airflow_training_guard.exceptions import TrainingGuardError

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

#: How a content pin looks, to tell it from a 40-hex commit SHA.
CONTENT_DIGEST_PATTERN = re.compile(r"sha256:[0-9a-f]{64}")
_CHUNK = 1 << 20

#: A local path, or Airflow's ``ObjectStoragePath`` (``s3://``, ``gs://`` ...): the same interface.
DataPath: TypeAlias = "Path | ObjectStoragePath"


class DataPinError(TrainingGuardError):
    """The location cannot be pinned (missing, empty, unreadable); ``problem`` and ``fix`` say why."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem}; {fix}")
        self.problem = problem
        self.fix = fix


@dataclass(frozen=True)
class ContentDigest:
    """What a location held when it was pinned.

    :param location: the location as given (a path or URL).
    :param digest: ``"sha256:<64 hex>"`` over the sorted ``<sha256> <size> <relative path>`` lines.
    :param files: how many files it covers.
    :param size: their total size in bytes.
    """

    location: str
    digest: str
    files: int
    size: int

    def describe(self) -> str:
        """``"24 files, 182,340 bytes -> sha256:1f3c...``."""
        return f"{self.files} files, {self.size:,} bytes -> {self.digest}"


def is_content_digest(value: str) -> bool:
    """Whether ``value`` is a content pin (``sha256:<64 hex>``) rather than a commit SHA."""
    return bool(CONTENT_DIGEST_PATTERN.fullmatch(value))


def _is_hidden(relative: str) -> bool:
    # Editor swap files, .crc side files and the like are not data; neither is a writer's
    # in-progress ".tmp-*" file, whose appearance must not change the pin.
    return any(part.startswith(".") for part in relative.split("/"))


def content_digest(root: DataPath, *, location: str | None = None) -> ContentDigest:
    """Digest every (non-hidden) file under ``root``; the same bytes give the same digest anywhere.

    :param root: a directory (recursively) or a single file.
    :param location: the name recorded in the result and in error messages (default ``str(root)``).
    :raises DataPinError: when ``root`` does not exist, holds no file, or a file cannot be read.
    """
    name = location or str(root)
    try:
        if not root.exists():
            raise DataPinError(
                f"data location {name!r} does not exist",
                "check the path (and the date in it), or wait for the upstream job that writes it",
            )
        if root.is_file():
            entries = [(root.name, root)]
        else:
            entries = []
            for path in root.rglob("*"):
                relative = path.relative_to(root).as_posix()  # type: ignore[arg-type]
                if path.is_file() and not _is_hidden(relative):
                    entries.append((relative, path))
        if not entries:
            raise DataPinError(
                f"data location {name!r} holds no files",
                "check the path, or wait for the upstream job that writes it",
            )
        lines = hashlib.sha256()
        total = 0
        for relative, path in sorted(entries, key=lambda entry: entry[0]):
            file_hash = hashlib.sha256()
            size = 0
            with path.open("rb") as handle:
                while chunk := handle.read(_CHUNK):
                    file_hash.update(chunk)
                    size += len(chunk)
            total += size
            lines.update(f"{file_hash.hexdigest()} {size} {relative}\n".encode())
    except OSError as err:
        raise DataPinError(
            f"cannot read data location {name!r}: {err}",
            "check the permissions and the mount (or the storage connection)",
        ) from err
    return ContentDigest(location=name, digest=f"sha256:{lines.hexdigest()}", files=len(entries), size=total)


def verify_content_digest(root: DataPath, expected: str, *, location: str | None = None) -> ContentDigest:
    """Recompute the digest of ``root`` and raise when it no longer matches ``expected``.

    :raises DataPinError: when the data changed since it was pinned, or cannot be read.
    """
    current = content_digest(root, location=location)
    if current.digest != expected:
        raise DataPinError(
            f"data {current.location!r} changed since pre-flight pinned it: pinned {expected}, now "
            f"{current.digest} ({current.files} files, {current.size:,} bytes)",
            "find out what rewrote it; to train on the new data, clear the run from its pre-flight task "
            "so the data is verified and pinned again",
        )
    return current


def open_location(location: str) -> DataPath:
    """``pathlib.Path`` for a local path or ``file://`` URL, Airflow's ``ObjectStoragePath`` otherwise.

    :raises DataPinError: for a scheme no installed Airflow provider handles.
    """
    if "://" not in location:
        return Path(location)
    if location.startswith("file://"):
        return Path(location.removeprefix("file://"))
    from airflow.sdk import ObjectStoragePath

    try:
        return ObjectStoragePath(location)
    except ValueError as err:  # "No filesystem registered for scheme ..."
        raise DataPinError(
            f"cannot open data location {location!r}: {err}",
            "install the Airflow provider for that storage (apache-airflow-providers-amazon for s3://, "
            "-google for gs://) or use a local path",
        ) from err
