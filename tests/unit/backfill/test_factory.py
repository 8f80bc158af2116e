"""The factory builds both DAGs from one description, with pools, priorities and a form."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from airflow_training_guard.backfill.factory import TrainingPipeline, build_dags
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
