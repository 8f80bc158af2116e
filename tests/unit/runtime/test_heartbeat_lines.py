"""Heartbeat marker lines: how a pod launcher sees progress without reading the container's files."""

from __future__ import annotations

import io

import pytest

from airflow_training_guard.runtime import (
    ENV_CHECKPOINT_DIR,
    ENV_HEARTBEAT_LOG_INTERVAL,
    ENV_PARTITION_KEY,
    Heartbeat,
    TrainingEnvironment,
    format_heartbeat_line,
    last_heartbeat_in,
    parse_heartbeat_line,
)

pytestmark = pytest.mark.unit


def test_marker_line_round_trips_step_and_metrics() -> None:
    record = parse_heartbeat_line(format_heartbeat_line(42, {"loss": 0.25}))
    assert record is not None
    assert record.step == 42
    assert record.metrics == {"loss": 0.25}


@pytest.mark.parametrize(
    "line",
    [
        "step 42 loss=0.1",
        "TRAINING_GUARD_HEARTBEAT ",
        "TRAINING_GUARD_HEARTBEAT {not json",
        'TRAINING_GUARD_HEARTBEAT {"step": -1}',
        'TRAINING_GUARD_HEARTBEAT {"step": true}',
        'TRAINING_GUARD_HEARTBEAT {"metrics": {}}',
        'TRAINING_GUARD_HEARTBEAT {"step": 3, "metrics": {"loss": "high"}}',
    ],
)
def test_lines_that_are_not_valid_markers_are_ignored(line: str) -> None:
    assert parse_heartbeat_line(line) is None


def test_marker_with_a_log_prefix_is_still_found() -> None:
    """Kubernetes log lines may carry timestamps or a container prefix before the program's text."""
    line = "2026-11-21T10:00:00.000Z [base] " + format_heartbeat_line(7)
    record = parse_heartbeat_line(line)
    assert record is not None
    assert record.step == 7


def test_last_heartbeat_in_a_log_tail_is_the_newest_marker() -> None:
    lines = ["starting", format_heartbeat_line(1), "step 1 done", format_heartbeat_line(2), "noise"]
    record = last_heartbeat_in(lines)
    assert record is not None
    assert record.step == 2
    assert last_heartbeat_in(["no markers here"]) is None


def test_heartbeat_prints_markers_at_most_every_log_interval() -> None:
    out = io.StringIO()
    beat = Heartbeat(None, log_interval=3600, log_stream=out)
    beat.beat(1)
    beat.beat(2)
    beat.beat(3, force=True)
    steps = [r.step for r in map(parse_heartbeat_line, out.getvalue().splitlines()) if r]
    assert steps == [1, 3]


def test_heartbeat_without_log_interval_prints_nothing() -> None:
    out = io.StringIO()
    Heartbeat(None, log_stream=out).beat(1)
    assert out.getvalue() == ""


def test_training_environment_passes_the_log_interval_to_the_program() -> None:
    env = TrainingEnvironment.from_env(
        {ENV_PARTITION_KEY: "2026-11-01", ENV_CHECKPOINT_DIR: "/ckpt", ENV_HEARTBEAT_LOG_INTERVAL: "15"}
    )
    assert env.heartbeat_log_interval == 15.0
    assert env.to_env()[ENV_HEARTBEAT_LOG_INTERVAL] == "15"
    assert env.heartbeat().log_interval == 15.0


def test_bad_log_interval_in_the_environment_names_the_variable() -> None:
    with pytest.raises(ValueError, match=r"TRAINING_GUARD_HEARTBEAT_LOG_INTERVAL='soon' is not a number"):
        TrainingEnvironment.from_env(
            {ENV_PARTITION_KEY: "k", ENV_CHECKPOINT_DIR: "/c", ENV_HEARTBEAT_LOG_INTERVAL: "soon"}
        )


def test_pins_travel_through_the_environment_contract() -> None:
    from airflow_training_guard.runtime import ENV_PINS

    sha = "a" * 40
    env = TrainingEnvironment(
        partition_key="k",
        checkpoint_dir=__import__("pathlib").Path("/c"),
        pins={"datasets": {"org/events": sha}},
    )
    parsed = TrainingEnvironment.from_env(env.to_env())
    assert parsed.pins == {"datasets": {"org/events": sha}, "models": {}}
    assert ENV_PINS in env.to_env()


def test_malformed_pins_in_the_environment_name_the_variable() -> None:
    with pytest.raises(ValueError, match=r"TRAINING_GUARD_PINS is not JSON of the form"):
        TrainingEnvironment.from_env(
            {ENV_PARTITION_KEY: "k", ENV_CHECKPOINT_DIR: "/c", "TRAINING_GUARD_PINS": "[1"}
        )
