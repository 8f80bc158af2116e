"""The cluster policy routes backfill task instances to the backfill pool at the lowest priority."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from airflow_training_guard.backfill import policy
from airflow_training_guard.backfill.policy import (
    BackfillRouting,
    is_backfill_run,
    route_backfill_task_instance,
)


def _ti(run_id: str = "backfill__2026-11-01T00:00:00+00:00") -> SimpleNamespace:
    return SimpleNamespace(dag_id="d", task_id="t", run_id=run_id, pool="training_sla", priority_weight=100)


@pytest.mark.parametrize(
    ("run_type", "expected"),
    [("backfill", True), ("scheduled", False), ("manual", False), ("asset_triggered", False)],
)
def test_only_backfill_runs_are_routed(run_type: str, expected: bool) -> None:
    """A native backfill of a plain DAG must not take the daily run's slots (SLA missed by 6 h)."""
    from airflow.utils.types import DagRunType

    ti = _ti(run_id="x")
    routed = route_backfill_task_instance(
        ti, SimpleNamespace(run_type=DagRunType(run_type)), BackfillRouting(enabled=True)
    )
    assert routed is expected
    assert (ti.pool, ti.priority_weight) == (("training_backfill", 1) if expected else ("training_sla", 100))


def test_without_a_dag_run_the_run_id_prefix_decides() -> None:
    assert is_backfill_run(None, "backfill__2026-11-01T00:00:00+00:00")
    assert not is_backfill_run(None, "scheduled__2026-11-01T00:00:00+00:00")
    ti = _ti()
    assert route_backfill_task_instance(ti, None, BackfillRouting(enabled=True, pool="bf", priority_weight=2))
    assert (ti.pool, ti.priority_weight) == ("bf", 2)


def test_disabled_policy_changes_nothing() -> None:
    ti = _ti()
    assert not route_backfill_task_instance(
        ti, SimpleNamespace(run_type="backfill"), BackfillRouting(enabled=False)
    )
    assert ti.pool == "training_sla"


def test_routing_is_read_from_airflow_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__TRAINING_GUARD__BACKFILL_POLICY_ENABLED", "True")
    monkeypatch.setenv("AIRFLOW__TRAINING_GUARD__BACKFILL_POOL", "slow_lane")
    monkeypatch.setenv("AIRFLOW__TRAINING_GUARD__BACKFILL_PRIORITY_WEIGHT", "3")
    assert BackfillRouting.from_config() == BackfillRouting(enabled=True, pool="slow_lane", priority_weight=3)


def test_hook_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(policy, "_routing", BackfillRouting(enabled=True))
    policy.task_instance_mutation_hook(object(), SimpleNamespace(run_type="backfill"))  # type: ignore[arg-type]


def test_hook_is_a_pluggy_implementation_of_airflows_spec() -> None:
    import pluggy
    from airflow import policies

    manager = pluggy.PluginManager("airflow.policy")
    manager.add_hookspecs(policies)
    manager.register(policy)
    impls = manager.hook.task_instance_mutation_hook.get_hookimpls()
    assert [impl.function for impl in impls] == [policy.task_instance_mutation_hook]


def test_policy_is_opt_in_so_installing_the_package_reroutes_nothing() -> None:
    """Routing every backfill into a pool a deployment does not have would hang its backfills."""
    assert BackfillRouting.from_config().enabled is False
    ti = _ti()
    assert not route_backfill_task_instance(
        ti, SimpleNamespace(run_type="backfill"), BackfillRouting.from_config()
    )
    assert ti.pool == "training_sla"


def test_deploy_local_settings_registers_the_policy_and_compose_puts_it_on_the_path() -> None:
    """Airflow 3.3 applies task_instance_mutation_hook only when airflow_local_settings defines it."""
    import runpy
    from pathlib import Path

    import yaml

    repo = Path(__file__).resolve().parents[3]
    namespace = runpy.run_path(str(repo / "deploy" / "airflow_local_settings.py"))
    assert namespace["task_instance_mutation_hook"] is policy.task_instance_mutation_hook
    compose = yaml.safe_load((repo / "docker-compose.yaml").read_text())
    env = compose["x-airflow-common"]["environment"]
    assert env["PYTHONPATH"] == "/opt/airflow/deploy"
    assert any(
        str(v).startswith("./deploy:/opt/airflow/deploy") for v in compose["x-airflow-common"]["volumes"]
    )
