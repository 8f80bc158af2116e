"""LocalTrainingOperator rejects bad configuration when the DAG is parsed, with the fix in the message."""

from __future__ import annotations

import sys
from datetime import timedelta

import pytest

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.operators.local import LocalTrainingOperator

PY = [sys.executable, "-c", "pass"]


def make(**kwargs) -> LocalTrainingOperator:
    kwargs.setdefault("task_id", "train")
    kwargs.setdefault("command", PY)
    kwargs.setdefault("expected_runtime", "1h")
    return LocalTrainingOperator(**kwargs)


def test_command_that_does_not_exist_is_rejected_at_parse_time() -> None:
    with pytest.raises(
        GuardConfigError, match=r"command 'no-such-trainer-xyz' of task 'train' does not exist"
    ):
        make(command=["no-such-trainer-xyz", "--epochs", "3"])


def test_templated_executable_is_checked_at_run_time_not_parse_time() -> None:
    op = make(command=["{{ params.python }}", "train.py"])
    assert op.command[0] == "{{ params.python }}"


def test_empty_command_is_rejected() -> None:
    with pytest.raises(GuardConfigError, match=r"must be a non-empty list of strings"):
        make(command=[])


def test_command_string_is_split_like_a_shell() -> None:
    op = make(command=f"{sys.executable} train.py --name 'a b'")
    assert op.command == [sys.executable, "train.py", "--name", "a b"]


@pytest.mark.parametrize("bad", ["-5m", "soon", "0s", ""])
def test_unknown_or_negative_expected_runtime_is_rejected_naming_the_value(bad: str) -> None:
    with pytest.raises(GuardConfigError, match="expected_runtime"):
        make(expected_runtime=bad)


def test_deadline_shorter_than_runtime_plus_buffer_is_rejected() -> None:
    """A 2h job with a 2h timeout was killed at 99% every night."""
    with pytest.raises(GuardConfigError, match=r"deadline 2h is shorter than"):
        make(expected_runtime="2h", deadline="2h")


def test_execution_timeout_shorter_than_the_hard_deadline_is_rejected() -> None:
    with pytest.raises(
        GuardConfigError, match=r"execution_timeout 1h is shorter than the hard deadline 2h36m"
    ):
        make(expected_runtime="2h", execution_timeout=timedelta(hours=1))


def test_execution_timeout_defaults_to_a_safety_net_behind_the_hard_deadline() -> None:
    op = make(expected_runtime="1h")
    assert op.timeout_policy.hard_deadline == timedelta(minutes=78)
    assert op.execution_timeout is not None and op.execution_timeout > timedelta(minutes=78)


def test_checkpoint_template_without_partition_key_is_rejected() -> None:
    """Two city backfills shared one checkpoint directory and resumed each other's weights."""
    with pytest.raises(GuardConfigError, match="partition_key"):
        make(checkpoint_path_template="{dag_id}/{task_id}")


def test_relative_checkpoint_root_is_rejected() -> None:
    with pytest.raises(GuardConfigError, match="checkpoints/here"):
        make(checkpoint_root="checkpoints/here")


def test_unknown_profile_lists_the_known_ones() -> None:
    with pytest.raises(GuardConfigError, match=r"fast.*safe|safe.*fast"):
        make(profile="turbo")


def test_unknown_corrupt_checkpoint_behaviour_is_rejected() -> None:
    with pytest.raises(GuardConfigError, match=r"on_corrupt_checkpoints 'ignore' is not valid"):
        make(on_corrupt_checkpoints="ignore")


def test_safe_profile_is_the_default_and_sets_retries() -> None:
    op = make()
    assert op.guard_profile.name == "safe"
    assert op.retries == op.guard_profile.retries
    assert op.smoke_run_steps == op.guard_profile.smoke_run_steps


def test_fast_profile_is_an_explicit_opt_in_and_explicit_values_win() -> None:
    op = make(profile="fast", retries=7, checkpoint_every_steps=10)
    assert op.guard_profile.name == "fast"
    assert op.retries == 7
    assert op.checkpoint_policy.every_steps == 10


def test_percentage_given_as_timeout_buffer_is_rejected_naming_timeout_buffer() -> None:
    with pytest.raises(GuardConfigError, match=r"^timeout_buffer 30 is larger than 10 .*did you mean 0.3\?"):
        LocalTrainingOperator(
            task_id="train", command=["python", "-c", "pass"], expected_runtime="1h", timeout_buffer=30
        )
