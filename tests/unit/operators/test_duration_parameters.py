"""Every operator parameter that takes a duration: any value gives a task or a GuardConfigError.

Issue 13: ``deadline="999999999d"`` and ``grace_period="999999999d"`` crashed with a raw
``OverflowError`` (when the operator added its margins, or when the sensor computed its grace
deadline at run time), and a sensor ``timeout=1e300`` passed Airflow's own check to overflow later.
Each parameter is fed arbitrary text, ints, floats and timedeltas; the answer must be an operator
whose derived limits compute, or a ``GuardConfigError`` naming the parameter whose hints all parse.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.operators.local import LocalTrainingOperator
from airflow_training_guard.operators.preflight import PreflightOperator
from airflow_training_guard.operators.training_pod import GuardedTrainingPodOperator
from airflow_training_guard.partitions import HoursOfDay, ObjectStorageSource
from airflow_training_guard.policies.durations import MAX_DURATION
from airflow_training_guard.sensors.completeness import PartitionCompletenessSensor
from tests.duration_inputs import USER_DURATIONS, check_rejection

pytestmark = pytest.mark.unit

PINNED = "registry.example.com:5000/ml/trainer@sha256:" + "a" * 64


def _local(**kwargs: Any) -> Callable[[], None]:
    def build() -> None:
        kwargs.setdefault("expected_runtime", "1h")
        op = LocalTrainingOperator(task_id="train", command=[sys.executable, "-c", "pass"], **kwargs)
        assert op.execution_timeout is not None
        assert op.execution_timeout >= op.timeout_policy.hard_deadline
        op._limits(op.timeout_policy.hard_deadline)
        op.timeout_policy.describe()

    return build


def _pod(**kwargs: Any) -> Callable[[], None]:
    def build() -> None:
        kwargs.setdefault("expected_runtime", "1h")
        op = GuardedTrainingPodOperator(task_id="train", image=PINNED, check_node_inventory=False, **kwargs)
        assert op.execution_timeout is not None
        assert op.active_deadline_seconds is not None and op.active_deadline_seconds > 0
        op.timeout_policy.describe()

    return build


def _job(**kwargs: Any) -> Callable[[], None]:
    def build() -> None:
        from airflow_training_guard.operators.training_job import GuardedTrainingJobOperator

        op = GuardedTrainingJobOperator(
            task_id="train", image=PINNED, expected_runtime="1h", ranks=2, **kwargs
        )
        assert op.job_poll_interval.total_seconds() > 0

    return build


def _preflight(**kwargs: Any) -> Callable[[], None]:
    def build() -> None:
        op = PreflightOperator(task_id="preflight", hub_conn_id=None, kubernetes_conn_id=None, **kwargs)
        assert op.expected_runtime is None or op.expected_runtime <= MAX_DURATION

    return build


def _sensor(**kwargs: Any) -> Callable[[], None]:
    def build() -> None:
        op = PartitionCompletenessSensor(
            task_id="wait",
            expected=HoursOfDay("2026-11-01"),
            source=ObjectStorageSource(str(Path("/nonexistent") / "date={date}" / "hour={hour}")),
            deferrable=False,
            **kwargs,
        )
        # What execute() computes at run time: the grace deadline and the timeout as a timedelta.
        op._compute_grace_deadline()
        assert timedelta(seconds=op.timeout) >= timedelta(0)
        assert timedelta(seconds=op.poke_interval) > timedelta(0)

    return build


#: (operator, parameter) -> build the operator with that parameter set to a value.
PARAMETERS: dict[str, Callable[[object], Callable[[], None]]] = {
    "LocalTrainingOperator.expected_runtime": lambda v: _local(expected_runtime=v),
    "LocalTrainingOperator.deadline": lambda v: _local(deadline=v),
    "LocalTrainingOperator.startup_timeout": lambda v: _local(startup_timeout=v),
    "LocalTrainingOperator.stall_after": lambda v: _local(stall_after=v),
    "LocalTrainingOperator.poll_interval": lambda v: _local(poll_interval=v),
    "LocalTrainingOperator.termination_grace": lambda v: _local(termination_grace=v),
    "GuardedTrainingPodOperator.expected_runtime": lambda v: _pod(expected_runtime=v),
    "GuardedTrainingPodOperator.deadline": lambda v: _pod(deadline=v),
    "GuardedTrainingPodOperator.startup_timeout": lambda v: _pod(startup_timeout=v),
    "GuardedTrainingPodOperator.stall_after": lambda v: _pod(stall_after=v),
    "GuardedTrainingPodOperator.heartbeat_log_interval": lambda v: _pod(heartbeat_log_interval=v),
    "GuardedTrainingJobOperator.job_poll_interval": lambda v: _job(job_poll_interval=v),
    "PreflightOperator.expected_runtime": lambda v: _preflight(expected_runtime=v),
    "PreflightOperator.training_timeout": lambda v: _preflight(expected_runtime="1h", training_timeout=v),
    "PartitionCompletenessSensor.grace_period": lambda v: _sensor(grace_period=v),
    "PartitionCompletenessSensor.poke_interval": lambda v: _sensor(poke_interval=v),
    "PartitionCompletenessSensor.timeout": lambda v: _sensor(timeout=v),
}


@pytest.mark.parametrize("where", sorted(PARAMETERS))
def test_a_duration_parameter_gives_a_task_or_an_error_naming_it_with_valid_hints(where: str) -> None:
    parameter = where.split(".")[1]
    make = PARAMETERS[where]

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(USER_DURATIONS)
    @example("999999999d")
    @example("P999999999D")
    @example("36500d")
    @example("1M")
    @example("0")
    @example(1e300)
    @example(float("inf"))
    @example(timedelta.max)
    def run(value: object) -> None:
        try:
            make(value)()
        except GuardConfigError as err:
            check_rejection(err, value, name=parameter)

    run()


# -- regressions the property test found or pins ---------------------------------------------------


def test_a_huge_deadline_is_refused_when_the_dag_is_parsed_not_overflowing_later() -> None:
    """deadline="999999999d" parsed, then the operator's margins overflowed (OverflowError)."""
    with pytest.raises(GuardConfigError, match=r"^deadline '999999999d' is too large for a duration"):
        _local(deadline="999999999d", termination_grace="1d")()


def test_a_huge_grace_period_is_refused_when_the_dag_is_parsed_not_when_the_sensor_runs() -> None:
    """grace_period="999999999d" passed parsing and crashed execute() with 'date value out of range'."""
    with pytest.raises(GuardConfigError, match=r"^grace_period '999999999d' is too large for a duration"):
        _sensor(grace_period="999999999d")()


@pytest.mark.parametrize(
    ("value", "match"), [(1e300, "too large"), (float("inf"), "not a finite"), (0, "is zero")]
)
def test_a_sensor_timeout_of_any_type_goes_through_parse_duration(value: float, match: str) -> None:
    """timeout=1e300 passed Airflow's own check, then timedelta(seconds=timeout) overflowed in execute()."""
    with pytest.raises(GuardConfigError, match=rf"^timeout {re.escape(repr(value))}.* {match}"):
        _sensor(timeout=value)()


def test_a_sub_second_hard_deadline_is_rounded_up_for_kubernetes() -> None:
    """expected_runtime=0.5 made activeDeadlineSeconds=0, which Kubernetes rejects."""
    op = GuardedTrainingPodOperator(
        task_id="train", image=PINNED, check_node_inventory=False, expected_runtime=0.5, stall_after=None
    )
    assert op.timeout_policy.hard_deadline == timedelta(seconds=0.65)
    assert op.active_deadline_seconds == 1
    assert op.startup_timeout_seconds == 1


def test_the_pod_operator_names_its_own_parameter_when_stall_after_is_too_short() -> None:
    """The message named poll_interval, which the pod operator does not have."""
    with pytest.raises(
        GuardConfigError,
        match=r"^stall_after 10m is not longer than heartbeat_log_interval 1h.*lower heartbeat_log_interval",
    ):
        _pod(heartbeat_log_interval="1h", stall_after="10m")()
