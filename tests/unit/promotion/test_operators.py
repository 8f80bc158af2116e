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

    with pytest.raises(GuardConfigError, match="exactly one of endpoint"):
        ProductionDriftSensor(task_id="d", model_name="m", registry="sqlite://")


def test_drift_sensor_refuses_the_old_deployment_url_naming_the_http_connection_fix() -> None:
    """URLs with credentials in a DAG file are what issue 19 removes: the fix is an http connection."""
    from airflow_training_guard.sensors.drift import ProductionDriftSensor

    with pytest.raises(
        GuardConfigError, match=r"deployment_url 'http://x/v'.*http_conn_id='serving', endpoint="
    ):
        ProductionDriftSensor(task_id="d", model_name="m", registry="sqlite://", deployment_url="http://x/v")


@pytest.mark.parametrize("bad", ["", 3])
def test_drift_sensor_http_conn_id_must_name_a_connection(bad: object) -> None:
    from airflow_training_guard.sensors.drift import ProductionDriftSensor

    with pytest.raises(GuardConfigError, match=r"http_conn_id .* must name an http connection"):
        ProductionDriftSensor(
            task_id="d", model_name="m", registry="sqlite://", endpoint="/v", http_conn_id=bad
        )


@pytest.mark.parametrize("bad", ["", 3])
def test_promotion_hub_conn_id_must_be_a_connection_id_or_none(bad: object) -> None:
    from airflow_training_guard.operators.promotion import PromoteModelOperator

    with pytest.raises(
        GuardConfigError, match=r"hub_conn_id .* must be the id of a huggingface_hub connection"
    ):
        PromoteModelOperator(
            task_id="p", model_name="m", registry="hf://", manifest_path="/x", metric="m", hub_conn_id=bad
        )


def test_hub_registry_reads_the_same_connection_as_preflight_by_default() -> None:
    from airflow_training_guard.operators.preflight import PreflightOperator
    from airflow_training_guard.operators.promotion import PromoteModelOperator, RollbackModelOperator
    from airflow_training_guard.sensors.drift import ProductionDriftSensor

    preflight = PreflightOperator(task_id="f")
    promote = PromoteModelOperator(
        task_id="p", model_name="o/m", registry="hf://", manifest_path="/x", metric="m"
    )
    rollback = RollbackModelOperator(task_id="r", model_name="o/m", registry="hf://", to_version=1)
    sensor = ProductionDriftSensor(task_id="d", model_name="o/m", registry="hf://", deployment=dict)
    assert promote.hub_conn_id == rollback.hub_conn_id == sensor.hub_conn_id == preflight.hub_conn_id
    assert promote.model_registry.hook.hub_conn_id == preflight.hub.hub_conn_id  # type: ignore[attr-defined]


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
