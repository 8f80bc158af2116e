"""Failure evidence is read tolerantly, and a gang's failure names its lost rank."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from kubernetes.client import ApiClient
from kubernetes.client import models as k8s

from airflow_training_guard.kubernetes.failures import (
    job_condition_failure,
    lost_rank,
    read_failure_evidence,
)
from airflow_training_guard.policies.diagnostics import Diagnosis, FailureKind


def _pod(phase: str) -> k8s.V1Pod:
    return k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name="train-1", namespace="ml"), status=k8s.V1PodStatus(phase=phase)
    )


class _Gone:
    """A client and PodManager whose every read fails, as for a pod already deleted (404)."""

    api_client = ApiClient()

    def read_pod(self, pod: Any) -> Any:
        raise RuntimeError("404")

    def read_pod_events(self, pod: Any) -> Any:
        raise RuntimeError("403 events forbidden")

    def read_namespaced_pod_log(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("404")


def test_failed_reads_fall_back_to_what_the_caller_last_read_and_never_raise() -> None:
    gone = _Gone()
    evidence = read_failure_evidence(gone, gone, _pod("Pending"), container="base", last_read=_pod("Failed"))
    assert evidence.pod["status"]["phase"] == "Failed"
    assert (evidence.events, evidence.log_tail) == ([], [])


def test_a_fresh_read_wins_over_the_last_read() -> None:
    class Fresh(_Gone):
        def read_pod(self, pod: Any) -> Any:
            return _pod("Succeeded")

        def read_pod_events(self, pod: Any) -> Any:
            return SimpleNamespace(items=[{"reason": "Evicted"}])

    fresh = Fresh()
    evidence = read_failure_evidence(
        fresh, fresh, _pod("Pending"), container="base", last_read=_pod("Failed")
    )
    assert evidence.pod["status"]["phase"] == "Succeeded"
    assert [event["reason"] for event in evidence.events] == ["Evicted"]


def test_a_lost_rank_is_named_and_a_retryable_loss_says_every_rank_restarts() -> None:
    found = Diagnosis(kind=FailureKind.OOM_KILLED, reason="OOMKilled", hint="raise memory", retryable=True)
    diagnosis = lost_rank(found, rank="2", ranks=4)
    assert diagnosis.reason == "rank 2 of 4 was lost: OOMKilled"
    assert diagnosis.hint.startswith("raise memory; every rank was stopped (gang)")
    final = lost_rank(
        Diagnosis(kind=FailureKind.UNKNOWN, reason="x", hint="h", retryable=False), rank="0", ranks=2
    )
    assert final.hint == "h"


def test_a_job_deadline_condition_is_classified_as_a_deadline() -> None:
    assert job_condition_failure("DeadlineExceeded", "too long").kind is FailureKind.DEADLINE_EXCEEDED
    other = job_condition_failure(None, None)
    assert (other.kind, other.reason, other.retryable) == (FailureKind.UNKNOWN, "Job failed: unknown", True)
