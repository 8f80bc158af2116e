"""Heartbeat: atomic progress file written by the program, read by the launcher without ever raising."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from airflow_training_guard.runtime import Heartbeat, HeartbeatRecord, read_heartbeat

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]


def test_beat_then_read_roundtrips_step_metrics_time_and_pid(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.json"
    before = time.time()
    Heartbeat(path).beat(42, {"loss": 0.5, "tokens_per_s": 1200})

    record = read_heartbeat(path)
    assert isinstance(record, HeartbeatRecord)
    assert record.step == 42
    assert record.metrics == {"loss": 0.5, "tokens_per_s": 1200.0}
    assert before <= record.time <= time.time()
    assert record.pid == os.getpid()


def test_each_beat_replaces_the_previous_record_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.json"
    heartbeat = Heartbeat(path)
    for step in range(5):
        heartbeat.beat(step)
    record = read_heartbeat(path)
    assert record is not None and record.step == 4 and record.metrics == {}
    assert [p.name for p in tmp_path.iterdir()] == ["heartbeat.json"]


def test_heartbeat_without_a_path_is_a_no_op(tmp_path: Path) -> None:
    """A program run by hand, without a launcher, must not need code changes."""
    heartbeat = Heartbeat(None)
    heartbeat.beat(1, {"loss": 1.0}, force=True)
    assert heartbeat.path is None
    assert list(tmp_path.iterdir()) == []


def test_min_interval_skips_beats_that_come_too_soon_unless_forced(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.json"
    heartbeat = Heartbeat(path, min_interval=60)
    heartbeat.beat(1)
    heartbeat.beat(2)
    assert read_heartbeat(path).step == 1  # type: ignore[union-attr]
    heartbeat.beat(3, force=True)
    assert read_heartbeat(path).step == 3  # type: ignore[union-attr]


def test_min_interval_lets_the_next_beat_through_once_it_elapsed(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.json"
    heartbeat = Heartbeat(path, min_interval=0.05)
    heartbeat.beat(1)
    heartbeat.beat(2)
    assert read_heartbeat(path).step == 1  # type: ignore[union-attr]
    time.sleep(0.1)
    heartbeat.beat(3)
    assert read_heartbeat(path).step == 3  # type: ignore[union-attr]


def test_missing_heartbeat_file_reads_as_none(tmp_path: Path) -> None:
    assert read_heartbeat(tmp_path / "heartbeat.json") is None


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b'{"step": 12, "metrics": {"lo',  # a partial write by a program that does not replace atomically
        b"\xff\xfe\x00garbage",
        b"[1, 2, 3]",
        b"null",
        b'{"step": "12", "metrics": {}, "time": 1.0, "pid": 1}',
        b'{"step": -1, "metrics": {}, "time": 1.0, "pid": 1}',
        b'{"step": true, "metrics": {}, "time": 1.0, "pid": 1}',
        b'{"step": 1, "metrics": {"loss": "low"}, "time": 1.0, "pid": 1}',
        b'{"step": 1, "metrics": [], "time": 1.0, "pid": 1}',
        b'{"step": 1, "metrics": {}, "pid": 1}',
        b'{"step": 1, "metrics": {}, "time": 1.0}',
    ],
)
def test_partial_or_garbage_heartbeat_reads_as_none_instead_of_raising(
    tmp_path: Path, content: bytes
) -> None:
    """A garbled heartbeat crashed the launcher's supervisor loop and orphaned the training job."""
    path = tmp_path / "heartbeat.json"
    path.write_bytes(content)
    assert read_heartbeat(path) is None


def test_heartbeat_path_that_is_a_directory_reads_as_none(tmp_path: Path) -> None:
    assert read_heartbeat(tmp_path) is None


def test_reader_never_sees_a_half_written_heartbeat_from_a_running_program(tmp_path: Path) -> None:
    """The launcher polls while the program rewrites the file thousands of times a second."""
    path = tmp_path / "heartbeat.json"
    script = textwrap.dedent(
        f"""
        import time
        from airflow_training_guard.runtime import Heartbeat
        hb = Heartbeat({str(path)!r})
        step, end = 0, time.monotonic() + 1.0
        while time.monotonic() < end:
            step += 1
            hb.beat(step, {{"loss": 1.0 / step, "padding": float(step) * 1e6}})
        print(step)
        """
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
    records: list[HeartbeatRecord] = []
    misses_after_first = 0
    while proc.poll() is None:
        record = read_heartbeat(path)
        if record is not None:
            records.append(record)
        elif records:
            misses_after_first += 1
    last_step = int(proc.communicate()[0])
    assert proc.returncode == 0
    final = read_heartbeat(path)
    assert final is not None and final.step == last_step
    assert len(records) > 10, "the reader should have polled many times while the program wrote"
    assert misses_after_first == 0, "a reader saw a missing or torn heartbeat between two writes"
    steps = [r.step for r in records]
    assert steps == sorted(steps), "heartbeat steps went backwards"


def test_unwritable_heartbeat_file_logs_a_warning_and_training_continues(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    heartbeat = Heartbeat(tmp_path / "no-such-dir" / "heartbeat.json")
    with caplog.at_level(logging.WARNING):
        heartbeat.beat(1)
        heartbeat.beat(2)
    warnings = [r for r in caplog.records if "cannot write heartbeat file" in r.getMessage()]
    assert len(warnings) == 1, "the failure is logged once, not every step"


def test_heartbeat_written_as_plain_json_for_other_tools(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.json"
    Heartbeat(path).beat(7, {"loss": 0.1})
    data = json.loads(path.read_text())
    assert data["format_version"] == 1
    assert data["step"] == 7 and data["metrics"] == {"loss": 0.1}


@pytest.mark.parametrize("step", [-1, 2.5, True])
def test_invalid_heartbeat_step_is_rejected_with_the_value(tmp_path: Path, step: object) -> None:
    with pytest.raises(ValueError, match=rf"heartbeat step {step!r} is invalid"):
        Heartbeat(tmp_path / "hb.json").beat(step)  # type: ignore[arg-type]


def test_non_numeric_metric_is_rejected_with_its_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"heartbeat metric 'loss'='nan-ish' is not a number"):
        Heartbeat(tmp_path / "hb.json").beat(1, {"loss": "nan-ish"})  # type: ignore[dict-item]


@pytest.mark.parametrize("interval", [-1, float("nan"), "5"])
def test_invalid_min_interval_is_rejected_with_the_value(tmp_path: Path, interval: object) -> None:
    with pytest.raises(ValueError, match=r"min_interval=.* is invalid"):
        Heartbeat(tmp_path / "hb.json", min_interval=interval)  # type: ignore[arg-type]
