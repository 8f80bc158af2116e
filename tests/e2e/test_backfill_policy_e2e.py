"""The backfill cluster policy in a real Airflow: native backfill -> training_backfill, manual run untouched.

A private stack (``tests/e2e/airflow_stack.py``; not the session fixture, which runs without the policy)
with ``AIRFLOW__TRAINING_GUARD__BACKFILL_POLICY_ENABLED=True``, the pools created by
``airflow training-guard pools sync`` (``AirflowStack.start(pools="sync")``) and one plain DAG whose
only task declares ``pool="training_sla"`` (priority 100). A native backfill
(``POST /api/v2/backfills``) of it must end with its task instances in ``training_backfill`` at
priority_weight 1; a manual run of the same DAG keeps ``training_sla`` and 100. Everything is asserted through the REST API.

Registration: the package's ``airflow.policy`` entry point AND ``$AIRFLOW_HOME/config/airflow_local_settings.py``
(docs/backfills.md gives both). Airflow 3.3.2 calls ``task_instance_mutation_hook`` while *creating*
task instances only once ``airflow.settings.task_instance_mutation_hook.is_noop`` is cleared, which it
does itself only after importing an ``airflow_local_settings`` module; the policy module clears it when
the entry point loads it. ``test_entry_point_alone_routes_at_creation`` runs a second stack without
local settings and pins that the entry point alone routes (it was a strict xfail before issue 13).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.airflow_stack import AirflowStack

pytestmark = pytest.mark.e2e

DAG_ID = "policy_probe"
PROBE_DAG = textwrap.dedent(
    '''
    """A plain DAG: its task declares the SLA pool; it knows nothing about backfills."""
    from __future__ import annotations

    import datetime as dt

    from airflow.sdk import DAG, task

    with DAG(
        "policy_probe",
        schedule="@daily",
        start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
        end_date=dt.datetime(2026, 1, 31, tzinfo=dt.timezone.utc),  # unpausing creates no scheduled run
        catchup=False,
    ):

        @task(pool="training_sla", priority_weight=100, weight_rule="absolute")
        def train() -> None:
            pass

        train()
    '''
)
LOCAL_SETTINGS = (
    "from airflow_training_guard.backfill.policy import task_instance_mutation_hook  # noqa: F401\n"
)
RUN_TIMEOUT = 90


def _start_stack(local_settings: bool) -> AirflowStack:
    home = Path(tempfile.mkdtemp(prefix="training-guard-policy-e2e-"))
    dags = home / "dags"
    dags.mkdir()
    (dags / f"{DAG_ID}.py").write_text(PROBE_DAG)
    stack = AirflowStack(
        home / "home",
        extra_env={
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__TRAINING_GUARD__BACKFILL_POLICY_ENABLED": "True",
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
        },
    )
    if local_settings:
        (stack.home / "config").mkdir(exist_ok=True)
        (stack.home / "config" / "airflow_local_settings.py").write_text(LOCAL_SETTINGS)
    # The provider's own CLI creates the pools (after db migrate, before the processes start).
    stack.start(wait_for_dags=(DAG_ID,), pools="sync", timeout=400)  # a loaded 2-core machine
    try:
        stack.api("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False})
    except BaseException:
        stack.stop()
        raise
    return stack


def _stop_stack(stack: AirflowStack) -> None:
    stack.stop()
    leftovers = stack.leftover_pids()
    if os.environ.get("TRAINING_GUARD_E2E_KEEP") != "1":
        shutil.rmtree(stack.home.parent, ignore_errors=True)
    assert not leftovers, f"Airflow processes survived stop(): {leftovers}"


def _backfill(stack: AirflowStack) -> None:
    stack.create_backfill(
        {
            "dag_id": DAG_ID,
            "from_date": "2026-01-05T00:00:00Z",
            "to_date": "2026-01-06T00:00:00Z",
            "run_backwards": False,
            "dag_run_conf": {},
            "reprocess_behavior": "none",
            "max_active_runs": 2,
        },
    )


def _runs(stack: AirflowStack) -> list[dict[str, Any]]:
    return list(stack.api("GET", f"/dags/{DAG_ID}/dagRuns", params={"limit": 100})["dag_runs"])


def _tis(stack: AirflowStack, run_id: str) -> list[dict[str, Any]]:
    return list(stack.api("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances")["task_instances"])


def _wait_finished(stack: AirflowStack, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + RUN_TIMEOUT
    runs: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        runs = _runs(stack)
        if len(runs) >= count and all(run["state"] in ("success", "failed") for run in runs):
            return runs
        time.sleep(1)
    raise AssertionError(f"runs not finished in {RUN_TIMEOUT}s: {runs}\n{stack.logs(40)}")


@pytest.fixture(scope="module")
def policy_stack() -> Iterator[AirflowStack]:
    stack = _start_stack(local_settings=True)
    try:
        yield stack
    finally:
        _stop_stack(stack)


def test_native_backfill_is_routed_and_manual_run_is_not(policy_stack: AirflowStack) -> None:
    stack = policy_stack
    _backfill(stack)
    manual = stack.api("POST", f"/dags/{DAG_ID}/dagRuns", json={"logical_date": None})
    runs = _wait_finished(stack, 3)

    by_type: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by_type.setdefault(run["run_type"], []).append(run)
    assert len(by_type.get("backfill", [])) == 2, runs
    assert [run["dag_run_id"] for run in by_type.get("manual", [])] == [manual["dag_run_id"]], runs
    assert all(run["state"] == "success" for run in runs), runs

    for run in by_type["backfill"]:
        tis = _tis(stack, run["dag_run_id"])
        assert [(ti["task_id"], ti["pool"], ti["priority_weight"], ti["state"]) for ti in tis] == [
            ("train", "training_backfill", 1, "success")
        ], run["dag_run_id"]
    tis = _tis(stack, manual["dag_run_id"])
    assert [(ti["task_id"], ti["pool"], ti["priority_weight"], ti["state"]) for ti in tis] == [
        ("train", "training_sla", 100, "success")
    ]


def test_entry_point_alone_routes_at_creation() -> None:
    """Regression (issue 13): with the entry point alone, backfill task instances stayed in training_sla."""
    stack = _start_stack(local_settings=False)
    try:
        _backfill(stack)
        deadline = time.monotonic() + 30
        pools: list[str] = []
        while time.monotonic() < deadline and len(pools) < 2:
            pools = [
                ti["pool"]
                for run in _runs(stack)
                if run["run_type"] == "backfill"
                for ti in _tis(stack, run["dag_run_id"])
            ]
            time.sleep(0.5)
        assert pools == ["training_backfill", "training_backfill"]
    finally:
        _stop_stack(stack)
