"""PreflightOperator in a real DAG run, against the local Hub server and a real OCI registry."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.operators.preflight import PreflightOperator
from airflow_training_guard.policies.gpus import GpuRequest, NodeShape
from tests.integration.hub import conftest as hub_fixtures
from tests.integration.hub.hub_server import LocalHub
from tests.integration.registry import conftest as registry_fixtures
from tests.integration.registry.conftest import LocalRegistry

# The Hub and registry fixtures live in sibling folders' conftest files; share them here.
hub = hub_fixtures.hub
oci_registry = registry_fixtures.oci_registry

NODES = [NodeShape("gpu-a", 8, 8), NodeShape("gpu-b", 8, 2)]


@pytest.fixture
def hub_connection(hub: LocalHub, monkeypatch: pytest.MonkeyPatch) -> str:
    conn = {
        "conn_type": "huggingface_hub",
        "host": hub.url,
        "extra": {"retries": 1, "backoff": 0.01, "timeout": 5},
    }
    monkeypatch.setenv("AIRFLOW_CONN_HUB_LOCAL", json.dumps(conn))
    monkeypatch.setenv("AIRFLOW_CONN_WANDB", json.dumps({"conn_type": "http", "host": "wandb.local"}))
    return "hub_local"


def _dag(dag_id: str, **preflight_kwargs: object):
    from airflow.sdk import DAG, task

    with DAG(dag_id, schedule=None, start_date=datetime(2026, 11, 1)) as dag:
        pre = PreflightOperator(task_id="preflight", **preflight_kwargs)

        @task
        def train(pins: dict) -> None:
            assert len(pins["datasets"]["trl-lib/ultrafeedback_binarized"]) == 40
            assert pins["image_digest"].startswith("sha256:")

        train(pre.output)
    return dag


def test_known_good_configuration_passes_and_pins(
    run_dag,
    hub: LocalHub,
    hub_connection: str,
    oci_registry: LocalRegistry,
    tmp_path,
) -> None:
    oci_registry.push_image("ml/train", "2026.11")
    dag = _dag(
        "preflight_good",
        hub_conn_id=hub_connection,
        datasets=[{"repo_id": "trl-lib/ultrafeedback_binarized", "files": ["data/train.parquet"]}],
        models=["Qwen/Qwen2-0.5B@v1.0"],
        image=f"{oci_registry.host}/ml/train:2026.11",
        resolve_image_tag=True,
        connections=["wandb"],
        expected_runtime="2h",
        training_timeout="3h",
        gpu_request=GpuRequest(gpus=4),
        node_shapes=NODES,
        checkpoint_dir=str(tmp_path / "ckpt"),
        training_mode="mixed",
        gpu_type="a100-80gb",
        price_per_gpu_hour=2.5,
        cost_limit=100,
    )
    assert run_dag(dag) == {"preflight": "success", "train": "success"}


def test_five_problems_in_one_failure(
    run_dag,
    hub: LocalHub,
    hub_connection: str,
    caplog: pytest.LogCaptureFixture,
    tmp_path,
) -> None:
    """A typo, a missing connection, a short timeout, an unfittable GPU shape and a model too large
    for the GPUs must all be reported by one failed pre-flight, not one per retry."""
    operator = PreflightOperator(
        task_id="preflight",
        hub_conn_id=hub_connection,
        datasets=["trl-lib/argilla-dpo-mix-7k"],
        models=["Qwen/Qwen2-0.5B"],
        connections=["wandb", "missing_secret"],
        expected_runtime="2h",
        training_timeout="2h",
        gpu_request=GpuRequest(gpus=16),
        node_shapes=NODES,
        training_mode="full",
        gpus=1,
        gpu_memory_gib=4,
    )
    report = operator.run_preflight()
    failed = [r.name for r in report.failures]
    assert failed == [
        "dataset trl-lib/argilla-dpo-mix-7k",
        "connection missing_secret",
        "timeout",
        "gpu fit",
        "model fits hardware",
    ]
    message = report.failure_message()
    assert "did you mean 'trl-lib/argilla-dpo-mix-7k-v2'?" in message
    assert "5 of 7 checks failed" in message


def test_failed_preflight_fails_the_task_without_retry(run_dag, hub: LocalHub, hub_connection: str) -> None:
    from airflow.sdk import DAG

    with DAG("preflight_bad", schedule=None, start_date=datetime(2026, 11, 1)) as dag:
        PreflightOperator(
            task_id="preflight", hub_conn_id=hub_connection, datasets=["trl-lib/nope"], retries=3
        )
    assert run_dag(dag) == {"preflight": "failed"}


def test_branch_moved_after_preflight_pins_the_old_sha(hub: LocalHub, hub_connection: str) -> None:
    """Training must use the SHA resolved at pre-flight even when the branch moves afterwards."""
    operator = PreflightOperator(task_id="p", hub_conn_id=hub_connection, datasets=["trl-lib/tldr@main"])
    pins = operator.run_preflight().pins()
    before = pins["datasets"]["trl-lib/tldr"]
    after = hub.commit("trl-lib/tldr", repo_type="dataset")
    assert before != after
    assert pins["datasets"]["trl-lib/tldr"] == before


def test_parse_time_validation() -> None:
    with pytest.raises(GuardConfigError, match="is not pinned"):
        PreflightOperator(task_id="p", image="acme/train:latest")
    with pytest.raises(GuardConfigError, match="has 2 '/'"):
        PreflightOperator(task_id="p", datasets=["a/b/c"])
    with pytest.raises(GuardConfigError, match="give both price_per_gpu_hour and cost_limit"):
        PreflightOperator(task_id="p", cost_limit=10)
