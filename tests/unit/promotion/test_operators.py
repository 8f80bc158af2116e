"""Parse-time validation of the promotion operators and the drift sensor (no DAG run)."""

from __future__ import annotations

import pytest
from fakes import MemoryRegistry

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.promotion import ProductionPointer


def test_bad_registry_url_names_the_accepted_forms() -> None:
    from airflow_training_guard.operators.promotion import PromoteModelOperator

    with pytest.raises(GuardConfigError, match=r"registry 'redis://x' is not a registry URL; use 'sqlite:"):
        PromoteModelOperator(
            task_id="p", model_name="m", registry="redis://x", manifest_path="/x", metric="ndcg"
        )


def test_bad_direction_fails_when_the_dag_is_parsed() -> None:
    from airflow_training_guard.operators.promotion import PromoteModelOperator

    with pytest.raises(GuardConfigError, match="direction 'up' is not valid"):
        PromoteModelOperator(
            task_id="p",
            model_name="m",
            registry="sqlite://",
            manifest_path="/x",
            metric="ndcg",
            direction="up",
        )


def test_drift_sensor_needs_exactly_one_source() -> None:
    from airflow_training_guard.sensors.drift import ProductionDriftSensor

    with pytest.raises(GuardConfigError, match="exactly one of deployment_url"):
        ProductionDriftSensor(task_id="d", model_name="m", registry="sqlite://")


def test_drift_message_has_both_values() -> None:
    """Regression: production pointed at one artifact while another was deployed, unnoticed."""
    from airflow_training_guard.sensors.drift import ProductionDriftError, ProductionDriftSensor

    registry = MemoryRegistry()
    seen = registry.read("m")
    registry.compare_and_swap("m", seen, ProductionPointer("m", 1, "cand-new", "/m/new"))
    sensor = ProductionDriftSensor(
        task_id="d", model_name="m", registry=registry, deployment=lambda: {"candidate_id": "cand-old"}
    )
    with pytest.raises(
        ProductionDriftError, match=r"v1 says candidate_id='cand-new'.*reports candidate_id='cand-old'"
    ):
        sensor.poke({})
    sensor.deployment = lambda: {"candidate_id": "cand-new"}
    assert sensor.poke({}).is_done
