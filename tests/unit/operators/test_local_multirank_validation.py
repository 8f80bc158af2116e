"""LocalTrainingOperator's multi-rank settings are checked when the DAG is parsed, with the fix."""

from __future__ import annotations

import sys

import pytest

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.operators.local import LocalTrainingOperator
from airflow_training_guard.policies.stragglers import StragglerPolicy

PY = [sys.executable, "-c", "pass"]


def make(**kwargs) -> LocalTrainingOperator:
    kwargs.setdefault("task_id", "train")
    kwargs.setdefault("command", PY)
    kwargs.setdefault("expected_runtime", "1h")
    return LocalTrainingOperator(**kwargs)


@pytest.mark.parametrize("value", [0, -2, 1.5, True, "2"])
def test_a_bad_rank_count_is_rejected(value) -> None:
    with pytest.raises(
        GuardConfigError, match=r"nproc_per_node .* of task 'train' is invalid: use an integer >= 1"
    ):
        make(nproc_per_node=value)


def test_a_straggler_policy_dict_with_durations_becomes_a_policy() -> None:
    op = make(nproc_per_node=2, straggler_policy={"fraction": 0.4, "window": "2m", "action": "restart"})
    assert op.straggler_policy == StragglerPolicy(fraction=0.4, window=120.0, action="restart")


def test_a_straggler_policy_needs_more_than_one_rank() -> None:
    with pytest.raises(GuardConfigError, match=r"needs nproc_per_node > 1: a one-rank job has no peers"):
        make(straggler_policy=StragglerPolicy())


def test_avoid_node_is_rejected_by_the_one_machine_launcher() -> None:
    with pytest.raises(GuardConfigError, match=r"avoid_node=True of task 'train' cannot work here"):
        make(nproc_per_node=2, straggler_policy={"action": "restart", "avoid_node": True})


def test_a_straggler_policy_needs_heartbeats() -> None:
    with pytest.raises(GuardConfigError, match=r"needs watch_heartbeat=True"):
        make(nproc_per_node=2, straggler_policy={"action": "warn"}, watch_heartbeat=False)


def test_an_unknown_straggler_setting_names_the_valid_keys() -> None:
    with pytest.raises(GuardConfigError, match=r"has an unknown key .*; use fraction, window, rate_window"):
        make(nproc_per_node=2, straggler_policy={"fractoin": 0.5})


def test_a_bad_straggler_value_fails_at_parse_time() -> None:
    with pytest.raises(GuardConfigError, match=r"straggler action 'kill' is not valid"):
        make(nproc_per_node=2, straggler_policy={"action": "kill"})
