"""The daily retraining DAG's SLA: a deadline alert counted from when the run was queued.

Airflow evaluates deadlines in the scheduler (it records one per queued run and queues the callback
once the time has passed) and runs the callback in the triggerer; a real scheduler run waiting for
a deadline is an e2e test's job. Here: the DAG file parses with the alert, the alert survives
serialization as the scheduler reads it, and the callback runs in Airflow's own CallbackTrigger with
the context the scheduler sends.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.sla import SLA_ALERT_NAME, log_missed_sla, sla_deadline_alert

DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "daily_retraining.py"


def _load_daily_dag(monkeypatch: pytest.MonkeyPatch, **env: str):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location("daily_retraining_under_test", DAG_FILE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module.dag


def test_the_daily_dag_has_no_deadline_unless_training_guard_sla_is_set(monkeypatch) -> None:
    """Opt-in: Airflow 3.3's dag.test() (the demo's `airflow dags test`) fails on a DAG with a deadline."""
    monkeypatch.delenv("TRAINING_GUARD_SLA", raising=False)
    assert not _load_daily_dag(monkeypatch).deadline


def test_the_daily_dag_has_a_six_hour_sla_counted_from_when_the_run_was_queued(monkeypatch) -> None:
    from airflow.sdk import DeadlineReference

    dag = _load_daily_dag(monkeypatch, TRAINING_GUARD_SLA="6h")  # as docker-compose sets it
    [alert] = dag.deadline
    assert alert.reference == DeadlineReference.DAGRUN_QUEUED_AT
    assert alert.interval == timedelta(hours=6)
    assert alert.name == SLA_ALERT_NAME
    assert alert.callback.path == "airflow_training_guard.sla.log_missed_sla"
    assert alert.callback.kwargs == {"sla": "6h"}


def test_the_sla_comes_from_training_guard_sla(monkeypatch) -> None:
    dag = _load_daily_dag(monkeypatch, TRAINING_GUARD_SLA="90m")
    assert dag.deadline[0].interval == timedelta(minutes=90)


def test_an_sla_that_is_not_a_duration_fails_the_dag_import_naming_it(monkeypatch) -> None:
    with pytest.raises(GuardConfigError, match="sla"):
        _load_daily_dag(monkeypatch, TRAINING_GUARD_SLA="soon")


def test_the_alert_survives_serialization_as_the_scheduler_reads_it(monkeypatch) -> None:
    from airflow.serialization.serialized_objects import DagSerialization

    dag = _load_daily_dag(monkeypatch, TRAINING_GUARD_SLA="6h")
    data = DagSerialization.to_dict(dag)
    text = str(data)
    assert "airflow_training_guard.sla.log_missed_sla" in text
    assert "DagRunQueuedAtDeadline" in text
    restored = DagSerialization.from_dict(data)
    assert restored.deadline, "the deserialized DAG lost its deadline alert"


def test_the_default_callback_runs_in_airflows_callback_trigger_and_names_the_late_run(caplog) -> None:
    """What the triggerer does with a missed deadline: import the callback and await it with context."""
    from airflow.triggers.callback import CallbackTrigger

    alert = sla_deadline_alert("4h")
    context = {
        "dag_run": {"dag_id": "daily_retraining", "run_id": "scheduled__2026-11-02T02:00:00+00:00"},
        "deadline": {"id": "d-1", "deadline_time": "2026-11-02T08:00:00+00:00"},
    }
    trigger = CallbackTrigger(alert.callback.path, {**alert.callback.kwargs, "context": context})

    async def events() -> list[dict]:
        return [event.payload async for event in trigger.run()]

    with caplog.at_level(logging.WARNING, logger="airflow_training_guard.sla"):
        payloads = asyncio.run(events())
    assert payloads[-1]["state"] == "success", payloads
    assert "scheduled__2026-11-02T02:00:00+00:00" in caplog.text
    assert "within 4h of being queued" in caplog.text


def test_a_notifier_callback_replaces_the_default() -> None:
    from airflow.sdk import AsyncCallback

    callback = AsyncCallback(log_missed_sla, kwargs={"sla": "custom"})
    assert sla_deadline_alert("1h", callback=callback).callback is callback
