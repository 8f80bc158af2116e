"""The run manifest: one JSON document per run and partition recording exactly what a run used.

The production failure this prevents: a dataset changed underneath a model, or an image tag moved,
and nobody could say which data, code and image the good run had used, so it could not be
reproduced. The manifest records the image digest, the commit SHA (or content digest) of every
dataset and model, the training parameters, the code version (package version and the DAG file's
hash), the Python environment of the local launcher, the partition key and the checkpoints used. It is pushed to
XCom, written next to the model artifact as ``run-manifest.json`` and read back by
:func:`reproduce_config`, which gives the exact operator arguments to re-run it.

Secrets never reach it: ``params``, ``checkpoints`` and ``artifact_uri`` pass through
:func:`airflow_training_guard.secrets.redact` when a manifest is built, so a token on the training
command line is recorded as ``***`` (re-supply it from its connection to reproduce the run).

Pure Python, standard library only, no Airflow import (:mod:`..secrets` uses Airflow's masker only
when Airflow is importable).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.runtime.publish import publish_file
from airflow_training_guard.secrets import redact

MANIFEST_SCHEMA_VERSION = 1
MANIFEST_FILE_NAME = "run-manifest.json"

_SHA1_HEX = re.compile(r"[0-9a-f]{40}")
_SHA256_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_READ_CHUNK = 1 << 20


class ManifestError(GuardConfigError):
    """A run manifest is malformed; the message names the field and the value that is wrong."""


def _freeze_mapping(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(value))


def _check_str_map(name: str, value: object, *, sha: bool) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ManifestError(
            f"manifest field {name!r} must be an object of strings, got {type(value).__name__}"
        )
    result: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key:
            raise ManifestError(f"manifest field {name!r} has a key {key!r} that is not a non-empty string")
        if not isinstance(item, str):
            raise ManifestError(f"manifest field {name}[{key!r}] must be a string, got {item!r}")
        if sha and not (_SHA1_HEX.fullmatch(item) or _SHA256_DIGEST.fullmatch(item)):
            raise ManifestError(
                f"manifest field {name}[{key!r}] is {item!r}, neither a 40-hex commit SHA nor a "
                "'sha256:<64 hex>' content digest; record the pin resolved at pre-flight, never a branch "
                "or tag name"
            )
        result[key] = item
    return result


def _check_json_able(name: str, value: object) -> None:
    try:
        json.dumps(value, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as err:
        raise ManifestError(f"manifest field {name!r} is not JSON-serialisable: {err}") from err


@dataclass(frozen=True)
class RunManifest:
    """What one training run (one DAG run and partition) used, enough to re-create it.

    :param dag_id: the DAG's id.
    :param run_id: the DAG run's id.
    :param task_id: the training task's id.
    :param partition_key: the partition trained on (``"city|2026-11-01"``).
    :param image_digest: ``"sha256:<64 hex>"`` of the training image; ``None`` for the local launcher.
    :param datasets: dataset repo id -> resolved commit SHA (40 hex), or data location -> content
        digest (``sha256:<64 hex>``, :mod:`airflow_training_guard.preflight.data`).
    :param models: model repo id -> resolved commit SHA (40 hex), or location -> content digest.
    :param params: training parameters (JSON-able); secrets in them are recorded as ``***``.
    :param code: ``{"package_version": ..., "dag_file_sha256": ...}``.
    :param python_env: ``{"python": "3.11.7", "distributions_sha256": ...}`` for the local launcher
        (see :func:`python_environment`), else ``None``.
    :param checkpoints: checkpoint paths used (resumed from, saved).
    :param artifact_uri: where the model artifact is.
    :param metrics: final metrics (name -> finite number).
    :param created_at: ISO 8601 UTC timestamp (see :func:`utc_now_iso`).
    :param schema_version: the manifest schema version (:data:`MANIFEST_SCHEMA_VERSION`).
    :param artifacts: model file name (relative to ``artifact_uri``) -> ``sha256:<64 hex>`` of its
        bytes (:func:`model_artifact_digests`); ``airflow training-guard runs reproduce`` compares a
        re-run's files with these. Empty in manifests written before it existed.
    :raises ManifestError: (a :class:`GuardConfigError`) naming the bad field.
    """

    dag_id: str
    run_id: str
    task_id: str
    partition_key: str
    image_digest: str | None
    datasets: Mapping[str, str]
    models: Mapping[str, str]
    params: Mapping[str, Any]
    code: Mapping[str, str]
    python_env: Mapping[str, str] | None
    checkpoints: tuple[str, ...]
    artifact_uri: str | None
    metrics: Mapping[str, float]
    created_at: str
    schema_version: int = field(default=MANIFEST_SCHEMA_VERSION)
    artifacts: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("dag_id", "run_id", "task_id", "partition_key", "created_at"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise ManifestError(f"manifest field {name!r} must be a string, got {value!r}")
        if isinstance(self.schema_version, bool) or not isinstance(self.schema_version, int):
            raise ManifestError(
                f"manifest field 'schema_version' must be an integer, got {self.schema_version!r}"
            )
        if self.schema_version > MANIFEST_SCHEMA_VERSION or self.schema_version < 1:
            raise ManifestError(
                f"manifest field 'schema_version' is {self.schema_version}; this version of "
                f"airflow-training-guard reads schema versions 1..{MANIFEST_SCHEMA_VERSION}: upgrade the package"
            )
        if self.image_digest is not None and (
            not isinstance(self.image_digest, str) or not _SHA256_DIGEST.fullmatch(self.image_digest)
        ):
            raise ManifestError(
                f"manifest field 'image_digest' is {self.image_digest!r}; it must be 'sha256:' followed by "
                "64 lowercase hex characters, or null for the local launcher"
            )
        if self.artifact_uri is not None and not isinstance(self.artifact_uri, str):
            raise ManifestError(
                f"manifest field 'artifact_uri' must be a string or null, got {self.artifact_uri!r}"
            )
        if self.created_at:
            try:
                datetime.fromisoformat(self.created_at)
            except ValueError as err:
                raise ManifestError(
                    f"manifest field 'created_at' is {self.created_at!r}, not an ISO 8601 timestamp"
                ) from err
        object.__setattr__(
            self, "datasets", _freeze_mapping(_check_str_map("datasets", self.datasets, sha=True))
        )
        object.__setattr__(self, "models", _freeze_mapping(_check_str_map("models", self.models, sha=True)))
        artifacts = _check_str_map("artifacts", self.artifacts, sha=False)
        for name, digest in artifacts.items():
            if not _SHA256_DIGEST.fullmatch(digest):
                raise ManifestError(
                    f"manifest field artifacts[{name!r}] is {digest!r}, not a 'sha256:<64 hex>' digest"
                )
        object.__setattr__(self, "artifacts", _freeze_mapping(artifacts))
        object.__setattr__(self, "code", _freeze_mapping(_check_str_map("code", self.code, sha=False)))
        if self.python_env is not None:
            env = _check_str_map("python_env", self.python_env, sha=False)
            object.__setattr__(self, "python_env", _freeze_mapping(env))
        if not isinstance(self.params, Mapping):
            raise ManifestError(
                f"manifest field 'params' must be an object, got {type(self.params).__name__}"
            )
        _check_json_able("params", dict(self.params))
        # Params come from rendered template fields: a "{{ conn.hub.password }}" on the command line
        # is masked in the task log but was written here, and to XCom, in clear (issue 14).
        object.__setattr__(self, "params", _freeze_mapping(redact(dict(self.params))))
        if isinstance(self.checkpoints, str) or not isinstance(self.checkpoints, list | tuple):
            raise ManifestError(
                f"manifest field 'checkpoints' must be a list of strings, got {self.checkpoints!r}"
            )
        for path in self.checkpoints:
            if not isinstance(path, str) or not path:
                raise ManifestError(f"manifest field 'checkpoints' has an entry {path!r} that is not a path")
        object.__setattr__(self, "checkpoints", tuple(redact(list(self.checkpoints))))
        if self.artifact_uri is not None:
            object.__setattr__(self, "artifact_uri", redact(self.artifact_uri))
        if not isinstance(self.metrics, Mapping):
            raise ManifestError(
                f"manifest field 'metrics' must be an object, got {type(self.metrics).__name__}"
            )
        metrics: dict[str, float] = {}
        for key, value in self.metrics.items():
            if (
                not isinstance(key, str)
                or isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
            ):
                raise ManifestError(f"manifest field metrics[{key!r}] must be a finite number, got {value!r}")
            metrics[key] = float(value)
        object.__setattr__(self, "metrics", _freeze_mapping(metrics))

    def missing_fields(self) -> list[str]:
        """Fields a reproducible run needs that are empty, in field order.

        Required: ``dag_id``, ``run_id``, ``task_id``, ``partition_key``, ``created_at``,
        ``artifact_uri``, ``code.package_version``, ``code.dag_file_sha256``, and either
        ``image_digest`` (Kubernetes launcher) or ``python_env`` with ``python`` and
        ``distributions_sha256`` (local launcher). Datasets and models may be empty: a run may use
        neither.
        """
        missing = [
            name
            for name in ("dag_id", "run_id", "task_id", "partition_key", "created_at")
            if not getattr(self, name)
        ]
        if not self.artifact_uri:
            missing.append("artifact_uri")
        for key in ("package_version", "dag_file_sha256"):
            if not self.code.get(key):
                missing.append(f"code.{key}")
        if not self.image_digest:
            env = self.python_env or {}
            if not env:
                missing.append("image_digest or python_env")
            else:
                missing.extend(
                    f"python_env.{key}" for key in ("python", "distributions_sha256") if not env.get(key)
                )
        return missing

    @property
    def is_complete(self) -> bool:
        """Whether :meth:`missing_fields` is empty, i.e. the run can be re-created from this manifest."""
        return not self.missing_fields()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict with plain types (the XCom and file form)."""
        return {
            "schema_version": self.schema_version,
            "dag_id": self.dag_id,
            "run_id": self.run_id,
            "task_id": self.task_id,
            "partition_key": self.partition_key,
            "image_digest": self.image_digest,
            "datasets": dict(self.datasets),
            "models": dict(self.models),
            "params": json.loads(json.dumps(dict(self.params))),
            "code": dict(self.code),
            "python_env": None if self.python_env is None else dict(self.python_env),
            "checkpoints": list(self.checkpoints),
            "artifact_uri": self.artifact_uri,
            "metrics": dict(self.metrics),
            "created_at": self.created_at,
            "artifacts": dict(self.artifacts),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunManifest:
        """Build a manifest from :meth:`to_dict` output (e.g. an XCom value).

        :raises ManifestError: naming a missing, unknown or malformed field.
        """
        if not isinstance(data, Mapping):
            raise ManifestError(f"a run manifest must be a JSON object, got {type(data).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ManifestError(
                f"run manifest has unknown field(s) {', '.join(map(repr, unknown))}; it may come from a "
                "newer airflow-training-guard: upgrade the package"
            )
        required = [f.name for f in fields(cls) if f.name not in {"schema_version", "artifacts"}]
        missing = [name for name in required if name not in data]
        if missing:
            raise ManifestError(f"run manifest is missing the field(s) {', '.join(map(repr, missing))}")
        kwargs = dict(data)
        if "schema_version" not in kwargs:
            kwargs["schema_version"] = MANIFEST_SCHEMA_VERSION
        checkpoints = kwargs["checkpoints"]
        if isinstance(checkpoints, list):
            kwargs["checkpoints"] = tuple(checkpoints)
        return cls(**kwargs)

    def to_json(self) -> str:
        """Deterministic JSON text (sorted keys, 2-space indent, trailing newline)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> RunManifest:
        """Parse :meth:`to_json` output.

        :raises ManifestError: for text that is not JSON, or a malformed manifest.
        """
        try:
            data = json.loads(text)
        except (ValueError, TypeError) as err:
            raise ManifestError(f"run manifest is not valid JSON: {err}") from err
        return cls.from_dict(data)

    def write(self, directory: str | os.PathLike[str]) -> Path:
        """Atomically and durably write ``directory/run-manifest.json``.

        Through the package's one publish helper (temporary sibling, fsync, rename, fsync of the
        directory): a reader never sees half a manifest, a crash leaves the previous file or none.

        :returns: the path written.
        """
        return publish_file(Path(directory) / MANIFEST_FILE_NAME, self.to_json().encode("utf-8"))

    @classmethod
    def read(cls, path_or_directory: str | os.PathLike[str]) -> RunManifest:
        """Read a manifest from a file, or from ``run-manifest.json`` in a directory.

        :raises ManifestError: when the file is missing or malformed (the message names the path).
        """
        path = Path(path_or_directory)
        if path.is_dir():
            path = path / MANIFEST_FILE_NAME
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError as err:
            raise ManifestError(f"no run manifest at {str(path)!r}") from err
        except OSError as err:
            raise ManifestError(f"cannot read the run manifest {str(path)!r}: {err}") from err
        try:
            return cls.from_json(text)
        except ManifestError as err:
            raise ManifestError(f"{path}: {err}") from err


def utc_now_iso() -> str:
    """The current time as ISO 8601 UTC with seconds (``2026-11-21T09:30:00+00:00``)."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def python_environment() -> dict[str, str]:
    """The local launcher's Python environment: interpreter version and a hash of the distributions.

    ``distributions_sha256`` is the sha256 of the sorted, newline-joined ``name==version`` lines of
    every installed distribution (:mod:`importlib.metadata`), names normalised as in PEP 503, so two
    environments with the same packages hash the same whatever the install order.
    """
    from importlib.metadata import distributions

    lines: set[str] = set()
    for dist in distributions():
        name = dist.metadata["Name"] if dist.metadata is not None else None
        if not name:
            continue
        normalised = re.sub(r"[-_.]+", "-", str(name)).lower()
        lines.add(f"{normalised}=={dist.version}")
    digest = hashlib.sha256("\n".join(sorted(lines)).encode("utf-8")).hexdigest()
    version = ".".join(str(part) for part in sys.version_info[:3])
    return {"python": version, "distributions_sha256": digest, "distributions_count": str(len(lines))}


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 (64 lowercase hex) of a file's bytes, e.g. the DAG file for ``code.dag_file_sha256``."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_READ_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


#: Files of an output directory that are the model (what a re-run must reproduce byte for byte).
MODEL_FILE_SUFFIXES = (".safetensors", ".npy", ".npz", ".pt", ".pth", ".bin", ".onnx", ".gguf", ".ckpt")
# Written by the Hugging Face Trainer next to the model: pickled arguments including paths, not weights.
_NOT_MODEL_FILES = frozenset({"training_args.bin"})


def model_artifact_digests(output_dir: str | os.PathLike[str]) -> dict[str, str]:
    """``{relative name: "sha256:<hex>"}`` of the model files under ``output_dir`` (sorted).

    Model files are those ending in :data:`MODEL_FILE_SUFFIXES`; the run manifest and metrics are
    not (they hold times and paths).
    """
    root = Path(output_dir)
    digests: dict[str, str] = {}
    if not root.is_dir():
        return digests
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix in MODEL_FILE_SUFFIXES and path.name not in _NOT_MODEL_FILES:
            digests[path.relative_to(root).as_posix()] = "sha256:" + file_sha256(path)
    return digests


def reproduce_config(manifest: RunManifest) -> dict[str, Any]:
    """The exact pins and arguments to re-run what ``manifest`` recorded.

    Returns ``{"image_digest": ..., "datasets": {id: sha}, "models": {id: sha},
    "params": {...}, "partition_key": ..., "resume_from": <last checkpoint or None>,
    "code": {...}, "python_env": {...} | None, "source": {"dag_id", "run_id", "task_id"}}``.
    Datasets and models are pinned by commit SHA (pass them as ``revision=`` to the Hub client),
    never by branch name; data pinned by content (``sha256:...``) is checked again with
    :func:`airflow_training_guard.preflight.data.verify_content_digest` before it is trained on; the
    image by digest (pass ``image_digest`` to the training operator, or append ``@<digest>`` to the
    image name).

    :raises ManifestError: when the manifest is incomplete (the message lists what is missing).
    """
    missing = manifest.missing_fields()
    if missing:
        raise ManifestError(
            f"run manifest of {manifest.dag_id}/{manifest.run_id}/{manifest.task_id} cannot re-create the "
            f"run: missing {', '.join(missing)}"
        )
    return {
        "image_digest": manifest.image_digest,
        "datasets": dict(manifest.datasets),
        "models": dict(manifest.models),
        "params": json.loads(json.dumps(dict(manifest.params))),
        "partition_key": manifest.partition_key,
        "resume_from": manifest.checkpoints[-1] if manifest.checkpoints else None,
        "code": dict(manifest.code),
        "python_env": None if manifest.python_env is None else dict(manifest.python_env),
        "source": {"dag_id": manifest.dag_id, "run_id": manifest.run_id, "task_id": manifest.task_id},
    }


def check_python_environment(manifest: RunManifest) -> list[str]:
    """Differences between the current Python environment and the manifest's (empty when equal).

    Use it before re-running a local-launcher run: a different interpreter or distribution set can
    change results.
    """
    if manifest.python_env is None:
        return []
    current = python_environment()
    return [
        f"{key}: recorded {manifest.python_env[key]!r}, current {current.get(key)!r}"
        for key in ("python", "distributions_sha256")
        if key in manifest.python_env and manifest.python_env[key] != current.get(key)
    ]


__all__ = [
    "MANIFEST_FILE_NAME",
    "MANIFEST_SCHEMA_VERSION",
    "MODEL_FILE_SUFFIXES",
    "ManifestError",
    "RunManifest",
    "check_python_environment",
    "file_sha256",
    "model_artifact_digests",
    "python_environment",
    "reproduce_config",
    "utc_now_iso",
]
