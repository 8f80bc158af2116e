"""telemetry: the names, types and tags each function hands to Airflow's stats module.

The wire (StatsD lines from a real run) is checked in tests/integration/test_metrics.py; here the
stats module is replaced by a recorder, to pin the rules cheaply: which endings count as what, what
tag values become, that a broken backend never fails the task, that importing costs no Airflow.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_training_guard import telemetry

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Task:
    dag_id: str = "daily"
    task_id: str = "train"


class LocalTrainingOperator(Task):
    """Named like the operator: the class name is the ``operator`` tag."""


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any, dict[str, str]]] = []

    def incr(self, stat: str, count: int = 1, *, tags: dict[str, str]) -> None:
        self.calls.append(("incr", stat, count, tags))

    def gauge(self, stat: str, value: float, *, tags: dict[str, str]) -> None:
        self.calls.append(("gauge", stat, value, tags))

    def timing(self, stat: str, dt: timedelta, *, tags: dict[str, str]) -> None:
        self.calls.append(("timing", stat, dt, tags))


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()
    monkeypatch.setattr(telemetry, "_stats", lambda: recorder)
    return recorder


@pytest.mark.parametrize(
    ("ending", "stat"),
    [
        ("stalled", "training_guard.stall.killed"),
        ("preempted", "training_guard.preempted"),
        ("deadline_exceeded", "training_guard.deadline.killed"),
    ],
)
def test_both_launchers_endings_count_as_their_metric(recorded: Recorder, ending: str, stat: str) -> None:
    telemetry.attempt_ended(LocalTrainingOperator(), ending)
    tags = {"dag_id": "daily", "task_id": "train", "operator": "LocalTrainingOperator"}
    assert recorded.calls == [("incr", stat, 1, tags)]


@pytest.mark.parametrize("ending", [None, "oom_killed", "nonzero_exit", "config_error", "straggler"])
def test_other_endings_are_not_counted_as_kills(recorded: Recorder, ending: str | None) -> None:
    telemetry.attempt_ended(Task(), ending, exit_code=1 if ending else None)
    assert recorded.calls == []


def test_exit_75_counts_as_a_preemption_though_its_kind_is_a_nonzero_exit(recorded: Recorder) -> None:
    """Preempted by contract: the program saved a checkpoint after SIGTERM and exited 75."""
    telemetry.attempt_ended(Task(), "nonzero_exit", exit_code=75)
    assert [call[1] for call in recorded.calls] == ["training_guard.preempted"]


def test_a_resume_reports_its_step_and_the_checkpoints_age(recorded: Recorder) -> None:
    @dataclass
    class Checkpoint:
        step: int
        created_at: float

    telemetry.checkpoint_resumed(Task(), Checkpoint(step=30, created_at=1000.0), now=1090.5)
    assert [(kind, stat, value) for kind, stat, value, _ in recorded.calls] == [
        ("incr", "training_guard.checkpoint.resumed", 1),
        ("gauge", "training_guard.checkpoint.resume_step", 30),
        ("timing", "training_guard.checkpoint.resume_age", timedelta(seconds=90.5)),
    ]
    recorded.calls.clear()
    telemetry.checkpoint_resumed(Task(), None)  # a fresh start
    telemetry.checkpoint_saved(Task(), Checkpoint(step=30, created_at=0), since_step=30)  # no progress
    assert recorded.calls == []


def test_tag_values_keep_only_characters_every_backend_accepts(recorded: Recorder) -> None:
    """A ``,`` or ``=`` in a tag makes Airflow drop it; ``|`` or ``:`` break the StatsD line."""
    telemetry.preflight_problem(Task(dag_id="a" * 80), "data s3://bucket/day=1,2|x")
    ((_, _, _, tags),) = recorded.calls
    assert tags["check"] == "data_s3___bucket_day_1_2_x"
    assert tags["dag_id"] == "a" * 60


def test_backfill_plan_skips_are_tagged_with_the_ledger_state_like_claim_skips(
    recorded: Recorder, tmp_path: Path
) -> None:
    from airflow_training_guard.partitions.ledger import PartitionLedger

    ledger = PartitionLedger(
        f"sqlite:///{tmp_path / 'ledger.db'}", namespace="cities", output_root=str(tmp_path)
    )
    for key in ("berlin|2026-02-01", "paris|2026-02-01"):
        claim = ledger.claim(key, mode="all", holder="t")
        assert claim is not None
        ledger.publish(claim, rows=[{"k": key}])
    ledger.claim("rome|2026-02-01", mode="all", holder="t")  # in progress
    plan = ledger.plan(["berlin|2026-02-01", "paris|2026-02-01", "rome|2026-02-01"], "missing")
    telemetry.ledger_plan_skipped(plan.skipped.values(), namespace="cities", run_kind="backfill")
    counts = {call[3]["state"]: call[2] for call in recorded.calls}
    assert counts == {"committed": 2, "claimed": 1}
    assert {call[1] for call in recorded.calls} == {"training_guard.ledger.skipped"}


def test_a_failing_metrics_backend_never_fails_the_task(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> Any:
        raise OSError("statsd host unreachable")

    monkeypatch.setattr(telemetry, "_stats", broken)
    telemetry.stall_killed(Task())  # no exception


def test_importing_telemetry_imports_no_airflow() -> None:
    """The adapters import it at module level; Airflow is loaded only when a metric is sent."""
    code = (
        "import json, sys\nimport airflow_training_guard.telemetry\n"
        "print(json.dumps([m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
