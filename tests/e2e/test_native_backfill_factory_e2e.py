"""Airflow's native Backfill on a factory's daily DAG, through the REST API the Backfill dialog calls.

A private stack (``tests/e2e/airflow_stack.py``) with the training-guard cluster policy enabled and
registered by the package's ``airflow.policy`` entry point ONLY (no ``airflow_local_settings``), the
pools from ``airflow training-guard pools sync``, and one factory pipeline of 2 cities whose work
fails for a key while a marker file exists. Three backfills of the same two dates, as a person would
make them in the dialog (``POST /api/v2/backfills`` with ``reprocess_behavior``):

1. ``none`` with ``paris|2026-03-01`` failing: every task instance runs in ``training_backfill``
   (routed at creation), 3 keys commit once, the failing key is ``failed`` in the ledger.
2. ``failed`` after the marker is removed: Airflow reruns only the failed date; the ledger mode is
   ``failed``, so the failed key commits and the committed key of that date is left alone.
3. ``completed`` ("All runs"): both dates rerun in mode ``all``: every key commits again (commits 2),
   replacing its rows. Before issue 13 was fixed, this run skipped every committed key and succeeded.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import textwrap
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_training_guard.partitions.ledger import PartitionLedger
from tests.e2e.airflow_stack import AirflowStack

pytestmark = pytest.mark.e2e

NAME = "native_probe"
DAG_ID = f"{NAME}_daily"
DATES = ("2026-03-01", "2026-03-02")
KEYS = tuple(f"{city}|{day}" for city in ("berlin", "paris") for day in DATES)
FAILING_KEY = "paris|2026-03-01"
BACKFILL_TIMEOUT = 420  # seconds per backfill; a loaded 2-core machine
PIPELINE_DAG = textwrap.dedent(
    '''
    """Native backfill probe: 2 cities x dates; a key fails while <AIRFLOW_HOME>/fail/<key> exists."""
    from __future__ import annotations

    import datetime as dt
    import os
    from pathlib import Path

    from airflow_training_guard.backfill.factory import TrainingPipeline, build_dags
    from airflow_training_guard.backfill.validation import Dimension


    def work(unit):
        marker = Path(os.environ["AIRFLOW_HOME"]) / "fail" / unit.partition_key.replace("|", "_")
        if marker.exists():
            raise RuntimeError(f"failing on purpose while {marker} exists")
        return [{"key": unit.partition_key, "fencing_token": unit.fencing_token}]


    pipeline = TrainingPipeline(
        name="native_probe",
        work=work,
        start_date=dt.date(2026, 1, 1),
        dimensions=(Dimension("city", ("berlin", "paris")),),
        output="rows",
        retries=0,
        doc_md="native backfill probe",
    )
    native_probe_daily, native_probe_backfill = build_dags(pipeline)
    '''
)


@pytest.fixture(scope="module")
def stack() -> Iterator[AirflowStack]:
    root = Path(tempfile.mkdtemp(prefix="training-guard-native-e2e-"))
    dags = root / "dags"
    dags.mkdir()
    (dags / f"{NAME}.py").write_text(PIPELINE_DAG)
    stack = AirflowStack(
        root / "home",
        extra_env={
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__TRAINING_GUARD__BACKFILL_POLICY_ENABLED": "True",
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
        },
    )
    assert not (stack.home / "config" / "airflow_local_settings.py").exists()  # entry point only
    stack.start(wait_for_dags=(DAG_ID,), pools="sync", timeout=400)
    try:
        stack.api("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False})
        yield stack
    finally:
        stack.stop()
        leftovers = stack.leftover_pids()
        if os.environ.get("TRAINING_GUARD_E2E_KEEP") != "1":
            shutil.rmtree(root, ignore_errors=True)
        assert not leftovers, f"Airflow processes survived stop(): {leftovers}"


def _ledger(stack: AirflowStack) -> dict[str, Any]:
    ledger = PartitionLedger(
        f"sqlite:///file:{stack.guard_root / 'ledger.db'}?mode=ro&uri=true",
        namespace=NAME,
        create_tables=False,
    )
    try:
        return {entry.partition_key: entry for entry in ledger.entries() if entry.partition_key in KEYS}
    finally:
        ledger.engine.dispose()


def _backfill(stack: AirflowStack, behavior: str) -> dict[str, Any]:
    """Create a backfill as the dialog does and wait until Airflow marks it completed."""
    created = stack.create_backfill(
        {
            "dag_id": DAG_ID,
            "from_date": f"{DATES[0]}T00:00:00Z",
            "to_date": f"{DATES[-1]}T00:00:00Z",
            "run_backwards": False,
            "dag_run_conf": {},
            "reprocess_behavior": behavior,
            "max_active_runs": 2,
        },
    )
    deadline = time.monotonic() + BACKFILL_TIMEOUT
    while time.monotonic() < deadline:
        backfill = stack.api("GET", f"/backfills/{created['id']}")
        if backfill["completed_at"]:
            return dict(backfill)
        time.sleep(2)
    states = {day: run["state"] for day, run in _runs(stack).items()}
    raise AssertionError(
        f"backfill {created['id']} ({behavior}) not completed in {BACKFILL_TIMEOUT}s; runs: {states}\n"
        f"{stack.logs(40)}"
    )


def _runs(stack: AirflowStack) -> dict[str, dict[str, Any]]:
    runs = stack.api("GET", f"/dags/{DAG_ID}/dagRuns", params={"limit": 100})["dag_runs"]
    return {run["logical_date"][:10]: run for run in runs if run["logical_date"][:10] in DATES}


def _tis(stack: AirflowStack, run_id: str) -> list[dict[str, Any]]:
    path = f"/dags/{DAG_ID}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances"
    return list(stack.api("GET", path, params={"limit": 100})["task_instances"])


def _commits(stack: AirflowStack) -> dict[str, tuple[str, int]]:
    return {key: (entry.state, entry.commits) for key, entry in sorted(_ledger(stack).items())}


def test_native_backfill_modes_follow_the_dialogs_reprocess_behavior(stack: AirflowStack) -> None:
    marker = stack.home / "fail" / FAILING_KEY.replace("|", "_")
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()

    # 1. "Missing runs" (none): routed at creation by the entry point alone; the failing key fails.
    _backfill(stack, "none")
    runs = _runs(stack)
    assert {day: run["state"] for day, run in runs.items()} == {DATES[0]: "failed", DATES[1]: "success"}
    for run in runs.values():
        assert run["run_type"] == "backfill", run
        pools = {(ti["task_id"], ti["pool"], ti["priority_weight"]) for ti in _tis(stack, run["dag_run_id"])}
        assert pools == {
            ("plan_partitions", "training_backfill", 1),
            ("train_partition", "training_backfill", 1),
        }
    assert _commits(stack) == {
        "berlin|2026-03-01": ("committed", 1),
        "berlin|2026-03-02": ("committed", 1),
        "paris|2026-03-01": ("failed", 0),
        "paris|2026-03-02": ("committed", 1),
    }

    # 2. "Failed runs" (failed): only the failed date reruns; its committed key is left alone.
    marker.unlink()
    _backfill(stack, "failed")
    runs = _runs(stack)
    assert {day: run["state"] for day, run in runs.items()} == {DATES[0]: "success", DATES[1]: "success"}
    assert _commits(stack) == {
        "berlin|2026-03-01": ("committed", 1),
        "berlin|2026-03-02": ("committed", 1),
        "paris|2026-03-01": ("committed", 1),
        "paris|2026-03-02": ("committed", 1),
    }

    # 3. "All runs" (completed): every key is recomputed and replaces its committed rows.
    before = _ledger(stack)
    _backfill(stack, "completed")
    runs = _runs(stack)
    assert {day: run["state"] for day, run in runs.items()} == {DATES[0]: "success", DATES[1]: "success"}
    after = _ledger(stack)
    assert {key: (entry.state, entry.commits) for key, entry in after.items()} == {
        key: ("committed", 2) for key in KEYS
    }
    assert all(after[key].fencing_token > before[key].fencing_token for key in KEYS)
