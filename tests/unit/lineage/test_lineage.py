"""Lineage built from the run manifest: dataset identities, model versions, no stale manifest, no secrets."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from airflow_training_guard.lineage import (
    FACET_MODEL_ARTIFACT,
    dataset_id,
    model_version,
    registry_namespace,
    run_manifest_at,
    training_lineage,
)
from airflow_training_guard.manifest import RunManifest

pytest.importorskip("airflow.providers.openlineage", reason="needs the [openlineage] extra")

DIGEST = "sha256:" + "a" * 64
COMMIT = "b" * 40
IMAGE_DIGEST = "sha256:" + "c" * 64


def _manifest(artifact_uri: str, **overrides: object) -> RunManifest:
    fields: dict[str, object] = {
        "dag_id": "daily",
        "run_id": "run-1",
        "task_id": "train",
        "partition_key": "2026-11-01",
        "image_digest": IMAGE_DIGEST,
        "datasets": {"s3://bucket/clicks/day=2026-11-01": DIGEST},
        "models": {"acme/base": COMMIT},
        "params": {"image": f"registry.example.com:5000/ml/train@{IMAGE_DIGEST}", "token": "hf_" + "x" * 30},
        "code": {"package_version": "0.1.0", "dag_file_sha256": "d" * 64},
        "python_env": None,
        "checkpoints": (),
        "artifact_uri": artifact_uri,
        "metrics": {"accuracy": 0.9},
        "created_at": "2026-11-02T02:10:00+00:00",
        "artifacts": {"model.safetensors": DIGEST},
    }
    fields.update(overrides)
    return RunManifest(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("/data/day=1", ("file", "/data/day=1")),
        ("file:///data/day=1", ("file", "/data/day=1")),
        ("s3://bucket/clicks/day=1", ("s3://bucket", "clicks/day=1")),
        ("s3://key:secret@bucket/x", ("s3://bucket", "x")),
    ],
)
def test_dataset_ids_follow_openlineage_naming_and_drop_credentials(
    location: str, expected: tuple[str, str]
) -> None:
    assert dataset_id(location) == expected


def test_a_model_of_one_file_is_versioned_by_that_files_digest_and_of_several_by_all() -> None:
    assert model_version({"model.npy": DIGEST}) == DIGEST
    several = model_version({"a.bin": DIGEST, "b.bin": "sha256:" + "e" * 64})
    assert several is not None and several.startswith("sha256:") and several != DIGEST
    assert model_version({"b.bin": "sha256:" + "e" * 64, "a.bin": DIGEST}) == several
    assert model_version({}) is None


def test_a_sql_registry_namespace_has_no_credentials() -> None:
    from sqlalchemy import create_engine

    engine = create_engine("postgresql+psycopg://ledger:Sesame-4711@db.internal:5432/ml")
    assert registry_namespace(SimpleNamespace(engine=engine)) == "postgresql+psycopg://db.internal:5432/ml"


def test_training_lineage_reports_data_base_model_image_and_model(tmp_path: Path) -> None:
    lineage = training_lineage(_manifest(str(tmp_path)))
    inputs = {(d.namespace, d.name): d for d in lineage.inputs}
    assert inputs[("s3://bucket", "clicks/day=2026-11-01")].facets["version"].datasetVersion == DIGEST
    assert inputs[("https://huggingface.co", "acme/base")].facets["version"].datasetVersion == COMMIT
    assert (
        inputs[("oci://registry.example.com:5000", "ml/train")].facets["version"].datasetVersion
        == IMAGE_DIGEST
    )
    [model] = lineage.outputs
    assert (model.namespace, model.name) == ("file", str(tmp_path))
    assert model.facets[FACET_MODEL_ARTIFACT].details["files"] == {"model.safetensors": DIGEST}


def test_no_parameter_of_the_manifest_reaches_the_lineage(tmp_path: Path) -> None:
    """Params can carry a templated token: lineage reports pins and digests, never params."""
    from openlineage.client.serde import Serde

    lineage = training_lineage(_manifest(str(tmp_path)))
    text = Serde.to_json(lineage.run_facets) + "".join(
        Serde.to_json(d) for d in lineage.inputs + lineage.outputs
    )
    assert "hf_" not in text


def test_without_a_manifest_only_the_given_inputs_are_reported() -> None:
    lineage = training_lineage(None, pins={"datasets": {"/data/day=1": DIGEST}})
    assert [(d.namespace, d.name) for d in lineage.inputs] == [("file", "/data/day=1")]
    assert lineage.outputs == []


def test_a_manifest_another_run_left_in_the_output_directory_is_not_this_runs_lineage(tmp_path: Path) -> None:
    _manifest(str(tmp_path), run_id="an-older-run").write(tmp_path)
    this_run = SimpleNamespace(dag_id="daily", run_id="run-1", task_id="train")
    assert run_manifest_at(tmp_path, this_run) is None
    _manifest(str(tmp_path)).write(tmp_path)
    assert run_manifest_at(tmp_path, this_run) is not None
