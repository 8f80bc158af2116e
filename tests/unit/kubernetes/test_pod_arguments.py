"""The KPO arguments derived from the guard's settings: deadlines, defaults, GPUs and the Kueue label."""

from __future__ import annotations

from datetime import timedelta

import pytest
from kubernetes.client import models as k8s

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.kubernetes.config import GpuSettings
from airflow_training_guard.kubernetes.pod_arguments import (
    deadline_arguments,
    default_arguments,
    gpu_and_queue_arguments,
)
from airflow_training_guard.policies.profiles import SAFE
from airflow_training_guard.policies.timeouts import TimeoutPolicy


def policy(expected_runtime: object = "2h") -> TimeoutPolicy:
    return TimeoutPolicy.build(
        expected_runtime=expected_runtime,
        buffer=0.3,
        startup_timeout=0.1,
        stall_after=None,
        poll_interval=0.01,
    )


def test_unset_deadlines_come_from_the_hard_deadline_and_a_safety_net() -> None:
    derived = deadline_arguments(policy(), active_deadline_seconds=None, execution_timeout=None)
    assert derived == {
        "active_deadline_seconds": 9360,
        "execution_timeout": timedelta(hours=2, minutes=41),
    }


def test_a_sub_second_deadline_rounds_up_to_a_valid_active_deadline() -> None:
    """Regression: int() made a 0.65 s deadline activeDeadlineSeconds=0, which the API server refuses."""
    derived = deadline_arguments(policy(0.5), active_deadline_seconds=None, execution_timeout=None)
    assert derived["active_deadline_seconds"] == 1


def test_given_deadlines_are_kept_when_long_enough_and_refused_when_shorter() -> None:
    assert (
        deadline_arguments(policy(), active_deadline_seconds=9360, execution_timeout=timedelta(hours=3)) == {}
    )
    with pytest.raises(
        GuardConfigError, match=r"^active_deadline_seconds=3600 is shorter than the hard deadline"
    ):
        deadline_arguments(policy(), active_deadline_seconds=3600, execution_timeout=None)
    with pytest.raises(GuardConfigError, match=r"^execution_timeout 1h is shorter .* set it >= 2h41m"):
        deadline_arguments(policy(), active_deadline_seconds=None, execution_timeout=timedelta(hours=1))


def test_guard_defaults_are_the_documented_differences() -> None:
    assert default_arguments(SAFE, policy()) == {
        "retries": 3,
        "startup_timeout_seconds": 1,
        "termination_grace_period": 120,
        "log_events_on_failure": True,
    }


def test_a_cpu_pod_without_a_queue_changes_no_argument() -> None:
    assert (
        gpu_and_queue_arguments(
            GpuSettings(),
            kueue_queue_name=None,
            labels={"a": "b"},
            container_resources=None,
            tolerations=None,
        )
        == {}
    )


def test_gpus_and_a_queue_add_requests_limits_the_taint_toleration_and_the_label() -> None:
    spot = k8s.V1Toleration(key="spot", operator="Exists")
    derived = gpu_and_queue_arguments(
        GpuSettings(gpus=2, resource="amd.com/gpu"),
        kueue_queue_name="team-a",
        labels={"team": "a"},
        container_resources=k8s.V1ResourceRequirements(limits={"memory": "8Gi"}),
        tolerations=[spot],
    )
    assert derived["labels"] == {"team": "a", "kueue.x-k8s.io/queue-name": "team-a"}
    assert derived["container_resources"].limits == {"memory": "8Gi", "amd.com/gpu": "2"}
    assert derived["container_resources"].requests == {"amd.com/gpu": "2"}
    assert [t.key for t in derived["tolerations"]] == ["spot", "amd.com/gpu"]
