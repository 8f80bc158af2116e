"""Operators that take a ``partition_key`` refuse unsafe keys, as docs/concepts.md says.

Issue 13: ``LocalTrainingOperator`` passed ``../../x;$(touch y)|a b`` to the training program
(environment, checkpoint and output paths, logs). A literal key is checked when the DAG is
parsed; a templated or run-provided key after rendering, in execute, with the same message.
"""

from __future__ import annotations

import datetime
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from airflow.models.dagrun import DagRun
from airflow.sdk.exceptions import AirflowFailException

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.operators.common import check_partition_key, resolve_partition_key
from airflow_training_guard.operators.local import LocalTrainingOperator
from airflow_training_guard.operators.training_pod import GuardedTrainingPodOperator
from airflow_training_guard.partitions.keys import require_key

pytestmark = pytest.mark.unit

UNSAFE = "../../x;$(touch y)|a b"
PINNED = "registry.example.com:5000/ml/trainer@sha256:" + "a" * 64
REFUSED = re.escape(f"task 'train': partition_key {UNSAFE!r} is refused: partition key part ")


def local(tmp_path: Path, **kwargs: Any) -> LocalTrainingOperator:
    marker = tmp_path / "program-ran"
    return LocalTrainingOperator(
        task_id="train",
        command=[sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"],
        expected_runtime="1m",
        checkpoint_root=str(tmp_path / "ckpt"),
        output_dir=str(tmp_path / "out"),
        smoke_run_steps=0,
        watch_heartbeat=False,
        **kwargs,
    )


@pytest.mark.parametrize(
    ("key", "rule"),
    [
        (UNSAFE, "contains '/', a path separator"),
        ("x;$(touch y)", "contains ';', a shell or glob metacharacter"),
        ("berlin|a b", "contains whitespace ' '"),
        ("..|2026-11-01", "contains '..', which climbs out of a directory"),
        ("", "is empty"),
    ],
)
def test_an_unsafe_literal_partition_key_is_refused_when_the_dag_is_parsed(
    tmp_path: Path, key: str, rule: str
) -> None:
    """The key reached the program's environment and paths: docs said such keys were refused."""
    with pytest.raises(
        GuardConfigError,
        match=rf"^task 'train': partition_key {re.escape(repr(key))} is refused: .*{re.escape(rule)}",
    ):
        local(tmp_path, partition_key=key)


def test_the_pod_operator_refuses_the_same_key_with_the_same_message(tmp_path: Path) -> None:
    with pytest.raises(GuardConfigError, match=REFUSED) as pod_error:
        GuardedTrainingPodOperator(
            task_id="train",
            image=PINNED,
            expected_runtime="1h",
            check_node_inventory=False,
            partition_key=UNSAFE,
        )
    with pytest.raises(GuardConfigError) as local_error:
        local(tmp_path, partition_key=UNSAFE)
    assert str(pod_error.value) == str(local_error.value)


@pytest.mark.parametrize(
    "key", ["2026-11-01", "berlin|2026-11-01", "2026-11-01T09:00:00+01:00", "us|2026-Q1"]
)
def test_valid_literal_keys_are_accepted(tmp_path: Path, key: str) -> None:
    assert local(tmp_path, partition_key=key).partition_key == key


def test_a_templated_key_is_left_for_rendering(tmp_path: Path) -> None:
    op = local(tmp_path, partition_key="{{ params.city }}|{{ ds }}")
    assert op.partition_key == "{{ params.city }}|{{ ds }}"


def test_an_unsafe_rendered_key_fails_execute_without_retry_before_the_program_runs(tmp_path: Path) -> None:
    """A templated key is checked after rendering, with the message a literal key gets."""
    op = local(tmp_path, partition_key="{{ params.key }}")
    op.partition_key = UNSAFE  # what render_template_fields leaves after '{{ params.key }}'
    with pytest.raises(AirflowFailException, match=REFUSED) as raised:
        op.execute({"ds": "2026-11-01"})  # type: ignore[arg-type]
    with pytest.raises(GuardConfigError) as at_parse_time:
        local(tmp_path, partition_key=UNSAFE)
    assert str(raised.value) == str(at_parse_time.value)
    assert not (tmp_path / "program-ran").exists()
    assert not (tmp_path / "ckpt").exists()


def test_an_unsafe_key_given_to_the_run_fails_the_task_too() -> None:
    """DagRun.partition_key comes from the REST API or a mapper: it is checked like an argument."""
    dag_run = DagRun(dag_id="train_dag", run_id="manual__1", partition_key=UNSAFE)
    with pytest.raises(AirflowFailException, match=REFUSED):
        resolve_partition_key(None, {"dag_run": dag_run, "ds": "2026-11-01"}, task_id="train")  # type: ignore[typeddict-item]


def test_the_run_key_and_ds_still_resolve_when_valid() -> None:
    dag_run = DagRun(dag_id="train_dag", run_id="manual__1", partition_key="berlin|2026-11-01")
    assert resolve_partition_key(None, {"dag_run": dag_run}, task_id="train") == "berlin|2026-11-01"  # type: ignore[typeddict-item]
    assert resolve_partition_key(None, {"ds": "2026-11-01"}, task_id="train") == "2026-11-01"  # type: ignore[typeddict-item]


def test_require_key_names_the_parameter_and_returns_the_key() -> None:
    assert require_key("berlin|2026-11-01") == "berlin|2026-11-01"
    with pytest.raises(
        GuardConfigError, match=r"^grace_key 'a b' is refused: partition key part 'a b' contains whitespace"
    ):
        require_key("a b", name="grace_key")
    with pytest.raises(
        GuardConfigError, match=r"partition_key datetime.date\(2026, 11, 1\) is refused: .*use .isoformat\(\)"
    ):
        check_partition_key(datetime.date(2026, 11, 1), task_id="t")
