"""The guards' metrics reach a real StatsD listener through Airflow's own Stats (docs/metrics.md).

One real run (tests/integration/metrics_pipeline.py, in its own process configured like a worker with
``[metrics] statsd_on``) sends its metrics over UDP to a listener on loopback; each test checks the
lines one behaviour produced: names, types, values and the tags (InfluxDB-style tags, as a plain
StatsD deployment with ``statsd_influxdb_enabled`` sends them).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.metrics_pipeline import DAY, MODEL, STALL_AT_STEP, STEPS

REPO = Path(__file__).resolve().parents[2]
DAILY = {"dag_id": "tg_metrics_daily"}
TRAIN = {**DAILY, "task_id": "train", "operator": "LocalTrainingOperator"}


@dataclass(frozen=True)
class Metric:
    """One StatsD line: ``airflow.training_guard.stall.killed,dag_id=d,task_id=t:1|c``."""

    name: str
    tags: dict[str, str]
    value: float
    type: str

    @classmethod
    def parse(cls, line: str) -> Metric:
        head, _, rest = line.partition(":")
        value, kind = rest.split("|")[:2]
        name, *pairs = head.split(",")
        return cls(name, dict(pair.split("=", 1) for pair in pairs), float(value), kind)


class StatsdListener:
    """A UDP socket on 127.0.0.1 that keeps every StatsD line it receives."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.lines: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                packet = self.sock.recv(65535)
            except TimeoutError:
                continue
            self.lines.extend(line for line in packet.decode().splitlines() if line)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@pytest.fixture(scope="module")
def statsd() -> Iterator[StatsdListener]:
    listener = StatsdListener()
    yield listener
    listener.close()


@pytest.fixture(scope="module")
def received(
    statsd: StatsdListener, airflow_env: dict[str, str], airflow_db: Path, tmp_path_factory
) -> list[Metric]:
    """Run the pipeline once in a worker-like process; the training_guard metrics the listener got."""
    workdir = tmp_path_factory.mktemp("metrics-run")
    env = {
        **airflow_env,
        "PYTHONPATH": os.pathsep.join([str(REPO), airflow_env.get("PYTHONPATH", "")]),
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__STATSD_PORT": str(statsd.port),
        "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
        "AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED": "True",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "tests.integration.metrics_pipeline", str(workdir)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    states = json.loads((workdir / "states.json").read_text())
    assert set(states["daily"].values()) == {"success"}, states
    assert all(set(run.values()) <= {"success", "skipped"} for run in states.values()), states
    return [Metric.parse(line) for line in statsd.lines if line.startswith("airflow.training_guard.")]


def _named(received: list[Metric], name: str, **tags: str) -> list[Metric]:
    return [
        m
        for m in received
        if m.name == f"airflow.training_guard.{name}" and all(m.tags.get(k) == v for k, v in tags.items())
    ]


def test_a_stalled_attempt_is_counted_once_as_a_stall_kill(received: list[Metric]) -> None:
    killed = _named(received, "stall.killed")
    assert [(m.value, m.type, m.tags) for m in killed] == [(1, "c", TRAIN)]
    # A stall is not a deadline kill or a preemption.
    assert not _named(received, "deadline.killed") and not _named(received, "preempted")


def test_the_retry_reports_the_resume_step_and_the_age_of_the_checkpoint(received: list[Metric]) -> None:
    """A retry that silently restarted from step 0 cost 8 hours; the resume step shows it on a dashboard."""
    saved_steps = [m.value for m in _named(received, "checkpoint.saved_step", **TRAIN)]
    assert len(saved_steps) == 2 and saved_steps[0] >= STALL_AT_STEP and saved_steps[1] == STEPS
    assert [m.type for m in _named(received, "checkpoint.saved", **TRAIN)] == ["c", "c"]
    (resumed,) = _named(received, "checkpoint.resumed", **TRAIN)
    assert (resumed.value, resumed.type) == (1, "c")
    (step,) = _named(received, "checkpoint.resume_step", **TRAIN)
    # The retry resumes from the checkpoint the stalled attempt left, not from step 0.
    assert (step.value, step.type) == (saved_steps[0], "g")
    (age,) = _named(received, "checkpoint.resume_age", **TRAIN)
    # Milliseconds from the checkpoint's save to the retry's start: the stall (1 s) plus the kill.
    assert age.type == "ms" and 500 <= age.value < 120_000, age


def test_the_completeness_wait_reports_the_missing_partitions_and_the_time_waited(
    received: list[Metric],
) -> None:
    sensor = {**DAILY, "task_id": "wait_for_partitions", "operator": "PartitionCompletenessSensor"}
    gauges = _named(received, "completeness.missing", **sensor)
    assert {m.type for m in gauges} == {"g"}
    missing = [m.value for m in gauges]
    # One gauge per poke: 6 of 24 hours missing until they are written (a poke may see some), then none.
    assert missing[0] == 6 and missing[-1] == 0 and missing == sorted(missing, reverse=True), missing
    (waited,) = _named(received, "completeness.wait", **sensor)
    assert waited.tags["outcome"] == "complete" and waited.type == "ms"
    assert waited.value >= 1500, "the last hours were written 2 s after the sensor started"


def test_a_lost_promotion_race_is_counted_and_the_retry_promotes(received: list[Metric]) -> None:
    promote = {**DAILY, "task_id": "promote", "operator": "PromoteModelOperator", "model_name": MODEL}
    (conflicts,) = _named(received, "promotion.conflicts", **promote)
    assert (conflicts.value, conflicts.type) == (1, "c")
    (finished,) = _named(received, "promotion.finished", **promote)
    assert (finished.value, finished.type, finished.tags["outcome"]) == (1, "c", "promoted")


def test_ledger_commits_and_skips_are_counted_per_namespace(received: list[Metric]) -> None:
    ledger = {"namespace": "tg_metrics_cities"}
    (committed,) = _named(received, "ledger.committed", **ledger)
    assert (committed.value, committed.type) == (1, "c")
    (skipped,) = _named(received, "ledger.skipped", **ledger)
    # The second run in mode "missing" leaves the committed key alone.
    assert (skipped.value, skipped.tags["state"]) == (1, "committed")
    assert committed.tags["run_kind"] == skipped.tags["run_kind"]
    assert not _named(received, "ledger.superseded")


def test_no_tag_carries_a_partition_key(received: list[Metric]) -> None:
    """``berlin|2026-02-01`` in a tag would break the StatsD line and make one series per key."""
    assert received
    assert not [m for m in received if any(DAY in v or "2026-02-01" in v for v in m.tags.values())]
