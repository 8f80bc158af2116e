"""The factory builds both DAGs from one description, with pools, priorities and a form."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from airflow_training_guard.backfill.factory import (
    Lane,
    TrainingPipeline,
    build_backfill_dag,
    build_dags,
    build_daily_dag,
)
from airflow_training_guard.backfill.validation import Dimension
from airflow_training_guard.exceptions import GuardConfigError

CITIES = tuple(f"city{i:02d}" for i in range(30))


def _pipeline(**overrides: object) -> TrainingPipeline:
    kwargs: dict[str, object] = {
        "name": "pricing",
        "work": lambda unit: None,
        "start_date": dt.date(2026, 1, 1),
        "dimensions": (Dimension("city", CITIES),),
        "doc_md": "doc",
    }
    kwargs.update(overrides)
    return TrainingPipeline(**kwargs)  # type: ignore[arg-type]


def test_daily_and_backfill_dags_use_their_own_pools_and_priorities() -> None:
    dags = build_dags(_pipeline())
    assert (dags.daily.dag_id, dags.backfill.dag_id) == ("pricing_daily", "pricing_backfill")
    for task in dags.daily.tasks:
        assert (task.pool, task.priority_weight) == ("training_sla", 100)
    for task in dags.backfill.tasks:
        assert (task.pool, task.priority_weight) == ("training_backfill", 1)
    assert dags.backfill.timetable.__class__.__name__ == "NullTimetable"  # the form is the way in
    assert all(task.doc_md for dag in dags for task in dag.tasks)


def test_backfill_form_has_dates_city_multiselect_and_reprocess() -> None:
    params = build_dags(_pipeline()).backfill.params
    assert params.get_param("start_date").schema["format"] == "date"
    city = params.get_param("city").schema
    assert (
        city["type"] == "array" and city["examples"] == list(CITIES) and city["items"]["enum"] == list(CITIES)
    )
    assert params.get_param("reprocess").schema["enum"] == ["missing", "failed", "all"]


def test_keys_for_date_are_composite_and_canonical() -> None:
    keys = _pipeline().keys_for_date("2026-11-01")
    assert len(keys) == 30 and keys[0] == "city00|2026-11-01"
    assert keys[0].parts_by_dimension == {"city": "city00", "date": "2026-11-01"}


def test_each_builder_puts_every_task_of_its_dag_into_its_lane() -> None:
    pipeline = _pipeline(sla_pool="gpu_sla", backfill_pool="gpu_backfill", daily_priority_weight=50)
    assert pipeline.sla_lane == Lane("gpu_sla", 50)
    assert pipeline.backfill_lane == Lane("gpu_backfill", 1)
    daily, backfill = build_daily_dag(pipeline), build_backfill_dag(pipeline)
    assert daily.dag_id == "pricing_daily" and backfill.dag_id == "pricing_backfill"
    for dag, lane in ((daily, pipeline.sla_lane), (backfill, pipeline.backfill_lane)):
        for task in dag.tasks:
            assert (task.pool, task.priority_weight, task.weight_rule) == (
                lane.pool,
                lane.priority_weight,
                "absolute",
            )


def test_a_pipeline_reads_its_own_keys_with_dimension_names() -> None:
    key = _pipeline().partition_key("city07|2026-11-01")
    assert key.dimensions == ("city", "date") and key.part("city") == "city07"
    with pytest.raises(
        GuardConfigError, match=r"'2026-11-01' has 1 part\(s\) but 2 are expected \(city\|date\)"
    ):
        _pipeline().partition_key("2026-11-01")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"name": "Fraud Model"}, "lower-case identifier"),
        ({"sla_pool": "p", "backfill_pool": "p"}, "would then take the daily run's slots"),
        ({"backfill_priority_weight": 100}, "must be lower than daily_priority_weight"),
        ({"output": "append"}, "output 'append' is not valid"),
        ({"output_root": "relative/dir"}, "must be an absolute directory"),
    ],
)
def test_bad_pipeline_descriptions_fail_when_the_dag_is_parsed(
    overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(GuardConfigError, match=message):
        _pipeline(**overrides)


def test_dag_shape_does_not_depend_on_the_range() -> None:
    """Parse time stays flat: keys are mapped at run time, never unrolled into tasks."""
    timings = []
    for days in (1, 90, 365):
        begin = time.perf_counter()
        dags = build_dags(_pipeline(max_backfill_days=days))
        timings.append(time.perf_counter() - begin)
        assert len(dags.backfill.tasks) == 4 and len(dags.daily.tasks) == 2
    assert max(timings) < 0.5


def test_pools_default_to_the_configured_names_the_cluster_policy_routes_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``pools sync`` creates, and the cluster policy routes to, the ``[training_guard]`` pool names: so does the factory."""
    monkeypatch.setenv("AIRFLOW__TRAINING_GUARD__SLA_POOL", "gpu_sla")
    monkeypatch.setenv("AIRFLOW__TRAINING_GUARD__BACKFILL_POOL", "gpu_backfill")
    dags = build_dags(_pipeline())
    assert {task.pool for task in dags.daily.tasks} == {"gpu_sla"}
    assert {task.pool for task in dags.backfill.tasks} == {"gpu_backfill"}
    explicit = _pipeline(sla_pool="mine_sla")  # an explicit name wins over the configuration
    assert (explicit.sla_pool, explicit.backfill_pool) == ("mine_sla", "gpu_backfill")


def test_sla_sets_a_deadline_alert_on_the_daily_dag_only() -> None:
    from airflow_training_guard.sla import SLA_ALERT_NAME

    dags = build_dags(_pipeline(sla="6h"))
    alerts = dags.daily.deadline if isinstance(dags.daily.deadline, list) else [dags.daily.deadline]
    assert [(alert.name, alert.interval) for alert in alerts] == [(SLA_ALERT_NAME, dt.timedelta(hours=6))]
    assert not dags.backfill.deadline
    assert not build_dags(_pipeline()).daily.deadline


def test_a_bad_sla_is_refused_at_parse_time_naming_the_value() -> None:
    with pytest.raises(GuardConfigError, match="sla"):
        _pipeline(sla="soon")
