"""What a failed pod left behind, read tolerantly for the failure diagnosis.

Both Kubernetes operators classify a failed pod (or a Job's lost rank) with
:func:`airflow_training_guard.policies.diagnostics.diagnose`, from the pod's status, its events and
the last lines of its log. Each read can fail (the pod is already deleted, RBAC forbids events, the
log is gone); a failed read must never hide the failure being diagnosed, so each one falls back to
what is known instead of raising.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_training_guard.kubernetes.watchdog import read_log_tail
from airflow_training_guard.policies.diagnostics import Diagnosis, FailureKind

if TYPE_CHECKING:
    from kubernetes.client import CoreV1Api
    from kubernetes.client import models as k8s

#: Log lines a failure message shows.
FAILURE_LOG_LINES = 20


@dataclass(frozen=True)
class FailureEvidence:
    """A failed pod as the API server serialises it, its events, and its log tail (may be empty)."""

    pod: Any
    events: list[Any] = field(default_factory=list)
    log_tail: list[str] = field(default_factory=list)


def read_failure_evidence(
    client: CoreV1Api,
    pod_manager: Any,
    pod: k8s.V1Pod,
    *,
    container: str,
    last_read: k8s.V1Pod | None = None,
    reread: bool = True,
) -> FailureEvidence:
    """Read the freshest status, the events and the log tail of ``pod``; never raises for a failed read.

    :param pod_manager: the provider's ``PodManager`` (``read_pod``, ``read_pod_events``).
    :param container: the training container, whose log is read.
    :param last_read: the pod as last read by the caller (with its status, exit codes and
        termination message), used when a re-read fails; else ``pod`` itself.
    :param reread: read the pod again first (``False``: ``pod`` is fresh, e.g. from a list).
    """
    api = client.api_client
    fallback = last_read if last_read is not None else pod
    status: Any = None
    if reread:
        try:
            status = api.sanitize_for_serialization(pod_manager.read_pod(pod))
        except Exception:
            status = None
    if status is None:
        status = api.sanitize_for_serialization(fallback)
    try:
        events = [api.sanitize_for_serialization(e) for e in pod_manager.read_pod_events(pod).items]
    except Exception:
        events = []
    try:
        tail = read_log_tail(client, pod, container=container, lines=FAILURE_LOG_LINES)
    except Exception:
        tail = []
    return FailureEvidence(pod=status, events=events, log_tail=tail)


def lost_rank(found: Diagnosis, *, rank: str, ranks: int) -> Diagnosis:
    """A gang's failure from its lost rank's diagnosis: the rank named, the gang restart in the hint."""
    restart = (
        "; every rank was stopped (gang), and the retry starts them all again from the newest checkpoint"
        if found.retryable
        else ""
    )
    return Diagnosis(
        kind=found.kind,
        reason=f"rank {rank} of {ranks} was lost: {found.reason}",
        hint=found.hint + restart,
        retryable=found.retryable,
        exit_code=found.exit_code,
        events=found.events,
    )


def job_condition_failure(reason: str | None, message: str | None) -> Diagnosis:
    """A failed Job's own condition (deadline, ...) when no rank pod failed; always retryable."""
    reason = reason or "unknown"
    return Diagnosis(
        kind=FailureKind.DEADLINE_EXCEEDED if reason == "DeadlineExceeded" else FailureKind.UNKNOWN,
        reason=f"Job failed: {reason} {message or ''}".strip(),
        hint="the retry starts every rank again from the newest checkpoint",
        retryable=True,
    )
