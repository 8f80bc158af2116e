"""OpenLineage for the training and promotion operators, built from the run manifest.

What a lineage backend (Marquez, DataHub, ...) should be able to answer about a model in
production: which data (by digest), which base model (by commit) and which image (by digest) made
it, and which production pointer it went to. The run manifest (:mod:`..manifest`) already records
all of it; this module translates it into the ``OperatorLineage`` the OpenLineage provider's
listener asks operators for (``get_openlineage_facets_on_start/_on_complete/_on_failure``).

Datasets (namespace, name), one identity per thing, so a training run's output and the promotion
run's input are the same node in the lineage graph:

- a location pinned by content (``sha256:...``): ``file`` + absolute path for local paths,
  ``<scheme>://<bucket or host>`` + path for URLs (``s3://bucket`` + ``data/day=1``);
- a Hub repo pinned by commit (40 hex): ``https://huggingface.co`` + ``datasets/<org>/<name>``
  for datasets, ``<org>/<name>`` for models;
- the training image: ``oci://<registry>`` + repository;
- the model artifact: the artifact location as above;
- the production pointer: the registry (its URL without credentials) + the model name.

Every input carries its pin as the standard ``version`` facet; the model artifact carries a
``version`` (the SHA-256 of its one model file, or of the sorted ``name digest`` lines when there
are several) and a ``trainingGuardModelArtifact`` facet with every file's SHA-256; the run carries a
``trainingGuardRun`` facet (partition key, code version, metrics). Nothing secret: the manifest's
params (where a templated token could live) are not reported.

The OpenLineage provider is optional (``pip install airflow-training-guard[openlineage]``): the
provider and client are imported inside the functions that build events, which the provider's
listener calls only when it is installed.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import attr

from airflow_training_guard.manifest import ManifestError, RunManifest
from airflow_training_guard.policies.images import parse_image_reference
from airflow_training_guard.secrets import redact

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage

__all__ = [
    "FACET_MODEL_ARTIFACT",
    "FACET_PRODUCTION_POINTER",
    "FACET_PROMOTION",
    "FACET_RUN",
    "HUB_NAMESPACE",
    "dataset_id",
    "model_version",
    "promotion_lineage",
    "read_manifest",
    "registry_namespace",
    "run_manifest_at",
    "training_lineage",
]

HUB_NAMESPACE = "https://huggingface.co"
FACET_RUN = "trainingGuardRun"
FACET_MODEL_ARTIFACT = "trainingGuardModelArtifact"
FACET_PROMOTION = "trainingGuardPromotion"
FACET_PRODUCTION_POINTER = "trainingGuardProductionPointer"
_SCHEMA_BASE = "https://github.com/airflow-training-guard/airflow-training-guard/tree/main/docs/lineage.md"


def dataset_id(location: str) -> tuple[str, str]:
    """``(namespace, name)`` of a file or object-storage location (OpenLineage naming)."""
    parts = urlsplit(location)
    if parts.scheme and parts.scheme != "file" and parts.netloc:
        netloc = parts.netloc.rsplit("@", 1)[-1]  # never a user:password@ into the namespace
        return f"{parts.scheme}://{netloc}", parts.path.lstrip("/") or "/"
    path = parts.path if parts.scheme == "file" else location
    return "file", path


def _pin_dataset_id(kind: str, key: str, pin: str) -> tuple[str, str]:
    if pin.startswith("sha256:"):
        return dataset_id(key)
    return HUB_NAMESPACE, f"datasets/{key}" if kind == "datasets" else key


def model_version(artifacts: Mapping[str, str]) -> str | None:
    """The version of a model artifact: its one file's digest, else a digest over every file's."""
    if not artifacts:
        return None
    if len(artifacts) == 1:
        return next(iter(artifacts.values()))
    lines = "".join(f"{name} {digest}\n" for name, digest in sorted(artifacts.items()))
    return "sha256:" + hashlib.sha256(lines.encode("utf-8")).hexdigest()


def registry_namespace(registry: object) -> str:
    """Where a model registry lives, without credentials (the production pointer's namespace)."""
    engine = getattr(registry, "engine", None)
    if engine is not None:
        from sqlalchemy.engine import URL

        url = engine.url
        bare = URL.create(url.drivername, host=url.host, port=url.port, database=url.database)
        return str(bare.render_as_string(hide_password=True))
    endpoint = getattr(registry, "endpoint", None)
    if hasattr(registry, "revision"):  # the Hub registry: endpoint None means huggingface.co
        return str(endpoint or HUB_NAMESPACE)
    if isinstance(registry, str):
        return dataset_id(str(redact(registry)))[0]
    return type(registry).__name__


def run_manifest_at(directory: str | os.PathLike[str] | None, task_instance: Any) -> RunManifest | None:
    """The run manifest in ``directory`` when this task instance's run wrote it, else None.

    Read from the file, not from XCom: the provider's listener runs these methods in a forked
    child of the task process, where a call to the supervisor can hang until the listener's
    ``execution_timeout`` kills it. A manifest another run left there is not this run's lineage.
    """
    if not directory:
        return None
    manifest = read_manifest(str(directory))
    if manifest is None or (manifest.dag_id, manifest.run_id, manifest.task_id) != (
        getattr(task_instance, "dag_id", None),
        getattr(task_instance, "run_id", None),
        getattr(task_instance, "task_id", None),
    ):
        return None
    return manifest


def read_manifest(path: str | None) -> RunManifest | None:
    """The run manifest at ``path`` (file or directory), or None when there is none to read."""
    if not path:
        return None
    try:
        return RunManifest.read(path)
    except (ManifestError, OSError):
        return None


# -- facets ------------------------------------------------------------------------------------------


@functools.cache
def _facet_classes() -> tuple[type, type]:
    """Our custom run and dataset facet classes (built lazily: the client is an optional import)."""
    from openlineage.client.generated.base import DatasetFacet, RunFacet

    @attr.define
    class TrainingGuardRunFacet(RunFacet):
        details: dict[str, Any] = attr.field(factory=dict)

        @staticmethod
        def _get_schema() -> str:
            return f"{_SCHEMA_BASE}#run-facets"

    @attr.define
    class TrainingGuardDatasetFacet(DatasetFacet):
        details: dict[str, Any] = attr.field(factory=dict)

        @staticmethod
        def _get_schema() -> str:
            return f"{_SCHEMA_BASE}#dataset-facets"

    return TrainingGuardRunFacet, TrainingGuardDatasetFacet


def _dataset(cls: type, namespace: str, name: str, *, version: str | None, **facets: Any) -> Any:
    from openlineage.client.generated.dataset_version_dataset import DatasetVersionDatasetFacet

    all_facets: dict[str, Any] = dict(facets)
    if version:
        all_facets["version"] = DatasetVersionDatasetFacet(datasetVersion=version)
    return cls(namespace=namespace, name=name, facets=all_facets)


def _inputs(pins: Mapping[str, Mapping[str, str]], image: str | None, image_digest: str | None) -> list[Any]:
    from openlineage.client.generated.base import InputDataset

    inputs = []
    for kind in ("datasets", "models"):
        for key, pin in sorted((pins.get(kind) or {}).items()):
            namespace, name = _pin_dataset_id(kind, key, pin)
            inputs.append(_dataset(InputDataset, namespace, name, version=pin))
    if image or image_digest:
        inputs.append(_image_dataset(image, image_digest))
    return inputs


def _image_dataset(image: str | None, image_digest: str | None) -> Any:
    from openlineage.client.generated.base import InputDataset

    namespace, name = "oci://docker.io", str(image or "")
    if image:
        try:
            reference = parse_image_reference(image)
        except ValueError:
            pass
        else:
            namespace, name = f"oci://{reference.registry or 'docker.io'}", reference.repository
            image_digest = image_digest or reference.digest
    return _dataset(InputDataset, namespace, name, version=image_digest)


def _model_artifact(cls: type, manifest: RunManifest) -> Any:
    _, dataset_facet = _facet_classes()
    namespace, name = dataset_id(manifest.artifact_uri or "")
    details = {"files": dict(manifest.artifacts), "run_manifest": f"{manifest.dag_id}/{manifest.run_id}"}
    return _dataset(
        cls,
        namespace,
        name,
        version=model_version(manifest.artifacts),
        **{FACET_MODEL_ARTIFACT: dataset_facet(details=details)},
    )


def training_lineage(
    manifest: RunManifest | None,
    *,
    pins: Mapping[str, Mapping[str, str]] | None = None,
    image: str | None = None,
    image_digest: str | None = None,
) -> OperatorLineage[Any, Any]:
    """What a training task read and wrote.

    With the run's manifest (after success): the manifest's pins, image and model artifact. Without
    one (start, failure): the inputs the operator was given (``pins``, ``image``), no output.
    """
    from airflow.providers.openlineage.extractors import OperatorLineage
    from openlineage.client.generated.base import OutputDataset

    if manifest is None:
        return OperatorLineage(inputs=_inputs(pins or {}, image, image_digest))
    run_facet, _ = _facet_classes()
    manifest_image = manifest.params.get("image") if isinstance(manifest.params.get("image"), str) else None
    inputs = _inputs(
        {"datasets": manifest.datasets, "models": manifest.models},
        manifest_image or (image if manifest.image_digest else None),
        manifest.image_digest,
    )
    outputs = [_model_artifact(OutputDataset, manifest)] if manifest.artifact_uri else []
    details = {
        "partition_key": manifest.partition_key,
        "manifest_schema_version": manifest.schema_version,
        "created_at": manifest.created_at,
        "code": dict(manifest.code),
        "python_env": dict(manifest.python_env) if manifest.python_env else None,
        "checkpoints": list(manifest.checkpoints),
        "metrics": dict(manifest.metrics),
    }
    return OperatorLineage(inputs=inputs, outputs=outputs, run_facets={FACET_RUN: run_facet(details=details)})


def promotion_lineage(
    manifest: RunManifest | None,
    *,
    model_name: str,
    registry: Any,
    promoted_by: str | None = None,
) -> OperatorLineage[Any, Any]:
    """What a promotion read (the candidate model artifact) and wrote (the production pointer).

    With ``promoted_by`` (after the task ran) the registry's current pointer is read: it is this
    run's output when this run's promotion (``promoted_by`` is recorded in the pointer) moved it
    there, and the run facet says whether it did. Without it (at start) only the input.
    """
    from airflow.providers.openlineage.extractors import OperatorLineage
    from openlineage.client.generated.base import InputDataset, OutputDataset

    run_facet, dataset_facet = _facet_classes()
    inputs = [_model_artifact(InputDataset, manifest)] if manifest and manifest.artifact_uri else []
    if promoted_by is None:
        return OperatorLineage(inputs=inputs)
    pointer = registry.read(model_name).pointer
    moved = pointer is not None and pointer.promoted_by == promoted_by
    outputs = []
    if moved:
        details = {
            key: getattr(pointer, key)
            for key in (
                "version",
                "candidate_id",
                "artifact_uri",
                "commit",
                "action",
                "run_id",
                "partition_key",
            )
        }
        outputs.append(
            _dataset(
                OutputDataset,
                registry_namespace(registry),
                model_name,
                version=str(pointer.version),
                **{FACET_PRODUCTION_POINTER: dataset_facet(details=redact(details))},
            )
        )
    promotion = {
        "model_name": model_name,
        "moved_production_pointer": moved,
        "production_version": pointer.version if pointer else None,
    }
    return OperatorLineage(
        inputs=inputs, outputs=outputs, run_facets={FACET_PROMOTION: run_facet(details=promotion)}
    )
