"""A native backfill of a factory's daily DAG: its pool and its reprocess mode come from what happened.

``plan_partitions`` reads its own task instance's pool and the backfill's reprocess behavior from the
Airflow REST API (a task has no database access in Airflow 3). The API server here is a loopback HTTP
server answering the two endpoints as Airflow 3.3's public API does; the e2e stack runs the same path
against a real api-server (tests/e2e/test_native_backfill_factory_e2e.py).
"""

from __future__ import annotations

import datetime as dt
import json
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException
from pytest_httpserver import HTTPServer

from airflow_training_guard.backfill import policy
from airflow_training_guard.backfill.factory import TrainingPipeline, plan_daily_run
from airflow_training_guard.backfill.validation import Dimension
from airflow_training_guard.partitions.ledger import ReprocessMode

CONN_ID = "tg_api_test"
DAG_ID = "probe_daily"
RUN_ID = "backfill__2026-03-02T00:00:00+00:00"
TI_PATH = f"/api/v2/dags/{DAG_ID}/dagRuns/{RUN_ID}/taskInstances/plan_partitions"  # as the server decodes it


def _pipeline(**overrides: Any) -> TrainingPipeline:
    return TrainingPipeline(
        name="probe",
        work=lambda unit: None,
        start_date=dt.date(2026, 1, 1),
        dimensions=(Dimension("city", ("berlin", "paris")),),
        output="rows",
        **overrides,
    )


def _context(run_type: str = "backfill", conf: dict[str, Any] | None = None) -> dict[str, Any]:
    run_id = RUN_ID if run_type == "backfill" else "scheduled__2026-03-02T00:00:00+00:00"
    dag_run = SimpleNamespace(
        dag_id=DAG_ID,
        run_id=run_id,
        run_type=run_type,
        conf=conf or {},
        logical_date=dt.datetime(2026, 3, 2, tzinfo=dt.UTC),
    )
    ti = SimpleNamespace(dag_id=DAG_ID, run_id=run_id, task_id="plan_partitions", map_index=-1)
    return {"dag_run": dag_run, "ti": ti, "ds": "2026-03-02"}


def _serve(httpserver: HTTPServer, *, pool: str, behavior: str = "none") -> None:
    httpserver.expect_request(TI_PATH, method="GET").respond_with_json(
        {"task_id": "plan_partitions", "pool": pool, "priority_weight": 1}
    )
    backfills = [
        # Newest first, as asked (order_by=-id): an older backfill of other dates must not decide.
        {
            "id": 7,
            "from_date": "2026-03-01T00:00:00Z",
            "to_date": "2026-03-03T00:00:00Z",
            "reprocess_behavior": behavior,
        },
        {
            "id": 3,
            "from_date": "2026-02-01T00:00:00Z",
            "to_date": "2026-02-05T00:00:00Z",
            "reprocess_behavior": "completed",
        },
    ]
    httpserver.expect_request(
        "/api/v2/backfills", method="GET", query_string={"dag_id": DAG_ID, "order_by": "-id", "limit": "100"}
    ).respond_with_json({"backfills": backfills, "total_entries": 2})


@pytest.fixture
def api(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> HTTPServer:
    conn = {"conn_type": "http", "host": "127.0.0.1", "port": httpserver.port}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    monkeypatch.setenv("TRAINING_GUARD_AIRFLOW_API_CONN_ID", CONN_ID)
    return httpserver


def test_native_backfill_in_the_sla_pool_is_refused_although_the_policy_flag_is_on(
    api: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression (issue 13): the config flag alone made policy_installed() say yes while the hook was
    not active, and the native backfill ran in the SLA pool, starving the daily run."""
    monkeypatch.setenv("AIRFLOW__TRAINING_GUARD__BACKFILL_POLICY_ENABLED", "True")
    monkeypatch.setattr(policy, "_routing", None)
    _serve(api, pool="training_sla")
    with pytest.raises(
        AirflowFailException,
        match=r"native backfill run of probe_daily, and its task instances are in the SLA pool 'training_sla'",
    ):
        plan_daily_run(_pipeline(), _context())


@pytest.mark.parametrize(
    ("behavior", "mode"),
    [("none", ReprocessMode.MISSING), ("failed", ReprocessMode.FAILED), ("completed", ReprocessMode.ALL)],
)
def test_routed_native_backfill_takes_its_reprocess_behavior_as_the_ledger_mode(
    api: HTTPServer, behavior: str, mode: ReprocessMode
) -> None:
    """Regression (issue 13): "All runs" (completed) skipped every committed key and reported success."""
    _serve(api, pool="training_backfill", behavior=behavior)
    keys, planned = plan_daily_run(_pipeline(), _context())
    assert keys == ["berlin|2026-03-02", "paris|2026-03-02"]
    assert planned is mode


def test_the_run_conf_reprocess_wins_over_the_backfill_behavior(api: HTTPServer) -> None:
    _serve(api, pool="training_backfill", behavior="none")
    _, planned = plan_daily_run(_pipeline(), _context(conf={"reprocess": "all"}))
    assert planned is ReprocessMode.ALL


def test_native_backfill_without_an_api_connection_is_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TRAINING_GUARD_AIRFLOW_API_CONN_ID", raising=False)
    with pytest.raises(
        AirflowFailException, match=r"no API connection is set\. Set TRAINING_GUARD_AIRFLOW_API_CONN_ID"
    ):
        plan_daily_run(_pipeline(), _context())


def test_a_backfill_api_error_fails_the_run_with_the_status(api: HTTPServer) -> None:
    api.expect_request(TI_PATH, method="GET").respond_with_json({"detail": "forbidden"}, status=403)
    with pytest.raises(AirflowFailException, match=r"cannot check its pool .*HTTP 403"):
        plan_daily_run(_pipeline(), _context())


def test_a_scheduled_run_recomputes_every_key_and_asks_no_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRAINING_GUARD_AIRFLOW_API_CONN_ID", raising=False)
    keys, planned = plan_daily_run(_pipeline(), _context(run_type="scheduled"))
    assert len(keys) == 2 and planned is ReprocessMode.ALL
