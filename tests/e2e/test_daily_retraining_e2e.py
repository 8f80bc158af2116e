"""The scheduler runs ``daily_retraining`` on its own schedule, on a real Airflow, and it succeeds.

How the schedule is made to fire without waiting for 02:00 UTC (the ``daily_retraining_run``
fixture): the DAG is ``0 2 * * *`` with ``catchup=False`` and starts paused, so unpausing it makes
the scheduler create the run of the most recent 02:00 at once, a *scheduled* run, not a manual
trigger. The fixture writes the 24 hourly partitions of the day before that logical date first.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pendulum

from airflow_training_guard.manifest import file_sha256
from airflow_training_guard.preflight.data import content_digest
from tests.e2e.airflow_stack import AirflowStack
from tests.e2e.conftest import DAILY_DAG_ID, ScheduledRun

TASK_IDS = ("wait_for_partitions", "preflight", "train", "evaluate", "promote")


def _xcom(stack: AirflowStack, run_id: str, task_id: str) -> Any:
    entry = stack.api(
        "GET",
        f"/dags/{DAILY_DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value",
        params={"deserialize": "true"},
    )
    value = entry["value"]
    return json.loads(value) if isinstance(value, str) else value


def _task_log(stack: AirflowStack, run_id: str, task_id: str) -> str:
    body = stack.api("GET", f"/dags/{DAILY_DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/logs/1")
    content = body["content"]
    return "\n".join(
        str(line.get("event", line)) if isinstance(line, dict) else str(line) for line in content
    )


def test_unpausing_creates_the_latest_scheduled_run_the_test_prepared_data_for(
    daily_retraining_run: ScheduledRun,
) -> None:
    dag = daily_retraining_run.dag_before_unpause
    assert dag["is_paused"], "a new DAG starts paused; unpausing it is what makes the schedule fire"
    assert dag["timetable_summary"] == "0 2 * * *"
    # What the dag-processor computed before the unpause is the run the fixture wrote data for.
    assert pendulum.parse(dag["next_dagrun_logical_date"]) == daily_retraining_run.expected_logical_date


def test_scheduler_runs_daily_retraining_on_its_schedule_and_it_succeeds(
    airflow_stack: AirflowStack, daily_retraining_run: ScheduledRun
) -> None:
    stack = airflow_stack
    run, run_id = daily_retraining_run.run, daily_retraining_run.run_id
    partition_key = daily_retraining_run.partition_key

    tis = stack.api("GET", f"/dags/{DAILY_DAG_ID}/dagRuns/{run_id}/taskInstances")["task_instances"]
    states = {ti["task_id"]: ti["state"] for ti in tis}
    assert run["state"] == "success", f"run {run_id} ended {run['state']}; task states {states}"
    assert run["run_type"] == "scheduled" and run["triggered_by"] == "timetable"
    assert pendulum.parse(run["logical_date"]) == daily_retraining_run.expected_logical_date
    assert states == dict.fromkeys(TASK_IDS, "success")
    # Exactly one run: catchup=False, so the scheduler created no older runs since start_date.
    all_runs = stack.api("GET", f"/dags/{DAILY_DAG_ID}/dagRuns")["dag_runs"]
    assert [r["dag_run_id"] for r in all_runs] == [run_id]

    completeness = _xcom(stack, run_id, "wait_for_partitions")
    assert completeness["present_count"] == completeness["expected_count"] == 24

    # Pre-flight asked the real API server for the pool (tasks have no database access in Airflow 3).
    preflight_log = _task_log(stack, run_id, "preflight")
    assert "PASSED pool training_sla: pool 'training_sla' exists" in preflight_log, preflight_log[-3000:]
    assert f"PASSED data {stack.data_root}/date={partition_key}: 48 files" in preflight_log
    pins = _xcom(stack, run_id, "preflight")
    day_data = str(stack.data_root / f"date={partition_key}")
    assert list(pins["datasets"]) == [day_data], pins
    assert pins["datasets"][day_data] == content_digest(Path(day_data)).digest
    assert pins["image_digest"] is None, "the local launcher runs no image"

    train = _xcom(stack, run_id, "train")
    assert train["partition_key"] == partition_key
    assert not train["resumed_from_step"], "a first run must not resume from an old checkpoint"
    assert train["final_step"] == 300
    checkpoint_dir = Path(train["checkpoint_dir"])
    assert checkpoint_dir.is_relative_to(stack.checkpoint_root)
    assert sorted(checkpoint_dir.glob("step-*")), f"no checkpoints in {checkpoint_dir}"
    output_dir = Path(train["output_dir"])
    assert output_dir.is_relative_to(stack.output_root)
    assert (output_dir / "model.npy").is_file() and (output_dir / "metrics.json").is_file()
    manifest_path = Path(train["manifest_path"])
    assert manifest_path.is_file(), f"run manifest {manifest_path} missing"
    manifest_text = manifest_path.read_text()
    assert partition_key in manifest_text and run_id in manifest_text
    # What the model was trained on is what pre-flight pinned, recorded for reproduction.
    assert json.loads(manifest_text)["datasets"] == pins["datasets"]

    evaluation = _xcom(stack, run_id, "evaluate")
    assert evaluation["partition_key"] == partition_key and evaluation["accuracy"] >= 0.70

    promotion = _xcom(stack, run_id, "promote")
    assert promotion["outcome"] == "promoted", promotion
    assert promotion["previous"] is None, "the first model of a fresh registry replaces nothing"
    current = promotion["current"]
    assert current["model_name"] == "click-model" and current["version"] == 1
    assert current["run_id"] == run_id and current["partition_key"] == partition_key
    assert (
        current["commit"] == evaluation["model_sha256"] == "sha256:" + file_sha256(output_dir / "model.npy")
    )
    assert (stack.guard_root / "registry.db").is_file()
