"""PromoteModelOperator, RollbackModelOperator and ProductionDriftSensor in real DAG runs
(dag.test()) with the SQL registry on SQLite."""

from __future__ import annotations

from pathlib import Path

import pendulum
import pytest

from airflow_training_guard.manifest import RunManifest
from airflow_training_guard.promotion.sql import SqlModelRegistry
from tests.helpers import xcom_value


def _manifest(directory: Path, *, run_id: str, ndcg: float, complete: bool = True) -> Path:
    artifact = directory / "model"
    artifact.mkdir(parents=True, exist_ok=True)
    (artifact / "model.bin").write_bytes(b"weights")
    manifest = RunManifest(
        dag_id="train_ranker",
        run_id=run_id,
        task_id="train",
        partition_key="2026-11-01",
        image_digest=None,
        datasets={},
        models={},
        params={"lr": 0.1},
        code={"package_version": "0.1.0", "dag_file_sha256": "ab" * 32} if complete else {},
        python_env={"python": "3.11", "distributions_sha256": "cd" * 32},
        checkpoints=(),
        artifact_uri=str(artifact),
        metrics={"ndcg": ndcg},
        created_at="2026-11-01T03:00:00+00:00",
    )
    return manifest.write(directory)


def _dag(dag_id: str, registry: str, manifest_dir: Path, **kwargs):
    from airflow.sdk import DAG

    from airflow_training_guard.operators.promotion import PromoteModelOperator

    with DAG(dag_id=dag_id, schedule=None, start_date=pendulum.datetime(2026, 11, 1, tz="UTC")) as dag:
        PromoteModelOperator(
            task_id="promote",
            model_name="ranker",
            registry=registry,
            manifest_path=str(manifest_dir),
            metric="ndcg",
            **kwargs,
        )
    return dag


@pytest.fixture
def registry_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'registry.db'}"


def test_promote_then_reject_worse_then_rollback(run_dag, registry_url: str, tmp_path: Path) -> None:
    """A better model is promoted, a worse one is not, and a rollback restores v1 as v3."""
    good = tmp_path / "run-1"
    _manifest(good, run_id="run-1", ndcg=0.80)
    assert run_dag(_dag("tg_promote_first", registry_url, good)) == {"promote": "success"}
    first = xcom_value("tg_promote_first", "promote")
    assert first["outcome"] == "promoted" and first["current"]["version"] == 1
    assert first["current"]["promoted_by"].startswith("tg_promote_first.promote")

    better = tmp_path / "run-2"
    _manifest(better, run_id="run-2", ndcg=0.85)
    assert run_dag(_dag("tg_promote_better", registry_url, better)) == {"promote": "success"}
    second = xcom_value("tg_promote_better", "promote")
    assert second["outcome"] == "promoted"
    assert second["previous"]["version"] == 1 and second["current"]["version"] == 2

    worse = tmp_path / "run-3"
    _manifest(worse, run_id="run-3", ndcg=0.70)
    assert run_dag(_dag("tg_promote_worse", registry_url, worse)) == {"promote": "success"}
    rejected = xcom_value("tg_promote_worse", "promote")
    assert rejected["outcome"] == "rejected"
    assert "does not beat production 0.85" in rejected["reason"]

    from airflow.sdk import DAG

    from airflow_training_guard.operators.promotion import RollbackModelOperator

    with DAG(dag_id="tg_rollback", schedule=None, start_date=pendulum.datetime(2026, 11, 1, tz="UTC")) as dag:
        RollbackModelOperator(
            task_id="rollback", model_name="ranker", registry=registry_url, to_version=1, reason="bad canary"
        )
    assert run_dag(dag) == {"rollback": "success"}
    rolled = xcom_value("tg_rollback", "rollback")
    assert rolled["current"]["version"] == 3 and rolled["current"]["rolled_back_to"] == 1

    history = SqlModelRegistry(registry_url).history("ranker")
    assert [(e.pointer.version, e.replaced.version if e.replaced else None) for e in history] == [
        (1, None),
        (2, 1),
        (3, 2),
    ]
    assert history[-1].pointer.artifact_uri == str(good / "model")


def test_incomplete_manifest_fails_when_asked(run_dag, registry_url: str, tmp_path: Path) -> None:
    """A run that cannot be reproduced is never promoted; fail_on_reject makes the task fail."""
    incomplete = tmp_path / "run-x"
    _manifest(incomplete, run_id="run-x", ndcg=0.99, complete=False)
    states = run_dag(_dag("tg_promote_incomplete", registry_url, incomplete, fail_on_reject=True))
    assert states == {"promote": "failed"}
    assert SqlModelRegistry(registry_url).read("ranker").pointer is None


def test_drift_sensor_fails_with_both_values(run_dag, registry_url: str, tmp_path: Path) -> None:
    from airflow.sdk import DAG

    from airflow_training_guard.sensors.drift import ProductionDriftSensor

    _manifest(tmp_path / "run-1", run_id="run-1", ndcg=0.8)
    assert run_dag(_dag("tg_promote_for_drift", registry_url, tmp_path / "run-1")) == {"promote": "success"}
    deployed = {"model": {"candidate_id": "train_ranker/train/run-0/2026-11-01"}}
    with DAG(dag_id="tg_drift", schedule=None, start_date=pendulum.datetime(2026, 11, 1, tz="UTC")) as dag:
        ProductionDriftSensor(
            task_id="drift",
            model_name="ranker",
            registry=registry_url,
            deployment=lambda: deployed,
            report_key="model.candidate_id",
            poke_interval=1,
            timeout=30,
        )
    assert run_dag(dag) == {"drift": "failed"}
    deployed["model"]["candidate_id"] = "train_ranker/train/run-1/2026-11-01"
    assert run_dag(dag) == {"drift": "success"}
