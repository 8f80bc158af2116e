"""KubernetesPodOperator arguments the guard derives from its own settings, before KPO builds its pod.

The pod-in/pod-out helpers of :mod:`.pod_building` change the built pod; these functions work one
step earlier, on the arguments KubernetesPodOperator is constructed with (its deadline, retries,
resources, tolerations, labels), so its own attributes carry the guard's values and every KPO code
path (reattach, deferral, cleanup) sees them. Each returns the arguments to pass; the operator
decides whether a value replaces what the DAG gave or only fills in where it gave nothing
(``default_args`` included), which keeps the drop-in promise of ``docs/training-pod-operator.md``.

Pure: no Airflow import.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.kubernetes.pod_building import KUEUE_QUEUE_LABEL, gpu_resources, gpu_tolerations
from airflow_training_guard.policies.durations import format_duration

if TYPE_CHECKING:
    from airflow_training_guard.kubernetes.config import GpuSettings
    from airflow_training_guard.policies.profiles import GuardProfile
    from airflow_training_guard.policies.timeouts import TimeoutPolicy

#: SIGTERM on preemption gives the program this long to save a checkpoint before SIGKILL.
DEFAULT_TERMINATION_GRACE_SECONDS = 120
#: Airflow's ``execution_timeout`` is a safety net behind the pod's own deadline, this much later.
EXECUTION_TIMEOUT_MARGIN = timedelta(minutes=5)


def _whole_seconds(value: timedelta) -> int:
    """Seconds rounded up: ``int()`` made a 0.65 s deadline ``activeDeadlineSeconds=0`` (invalid)."""
    return -(-value // timedelta(seconds=1))


def deadline_arguments(
    policy: TimeoutPolicy, *, active_deadline_seconds: int | None, execution_timeout: timedelta | None
) -> dict[str, Any]:
    """``active_deadline_seconds`` and ``execution_timeout`` from the hard deadline, where not given.

    :param active_deadline_seconds: what the DAG gave (call or ``default_args``), or ``None``.
    :param execution_timeout: likewise.
    :returns: the arguments to set (only those the DAG left unset).
    :raises GuardConfigError: when a given value is shorter than the hard deadline (the pod or the
        task would be killed before the job is due to end).
    """
    hard = policy.hard_deadline
    hard_seconds = _whole_seconds(hard)
    safety_net = hard + EXECUTION_TIMEOUT_MARGIN
    derived: dict[str, Any] = {}
    if active_deadline_seconds is None:
        derived["active_deadline_seconds"] = hard_seconds
    elif active_deadline_seconds < hard.total_seconds():
        raise GuardConfigError(
            f"active_deadline_seconds={active_deadline_seconds} is shorter than the hard deadline "
            f"{format_duration(hard)} ({hard_seconds}s); drop it (the operator sets it) or set it >= {hard_seconds}"
        )
    if execution_timeout is None:
        derived["execution_timeout"] = safety_net
    elif execution_timeout < hard:
        raise GuardConfigError(
            f"execution_timeout {format_duration(execution_timeout)} is shorter than the hard deadline "
            f"{format_duration(hard)}; drop execution_timeout (the operator sets it) or set it >= "
            f"{format_duration(safety_net)}"
        )
    return derived


def default_arguments(profile: GuardProfile, policy: TimeoutPolicy) -> dict[str, Any]:
    """The guard's defaults for KPO and BaseOperator arguments (the documented deliberate differences)."""
    return {
        "retries": profile.retries,
        "startup_timeout_seconds": _whole_seconds(policy.startup_timeout),
        "termination_grace_period": DEFAULT_TERMINATION_GRACE_SECONDS,
        "log_events_on_failure": True,
    }


def gpu_and_queue_arguments(
    gpu: GpuSettings,
    *,
    kueue_queue_name: str | None,
    labels: Mapping[str, str] | None,
    container_resources: Any,
    tolerations: Iterable[Any] | None,
) -> dict[str, Any]:
    """``labels``, ``container_resources`` and ``tolerations`` with the Kueue label and the GPU request added.

    :returns: the arguments that change (none for a CPU pod without a queue).
    :raises GuardConfigError: when ``container_resources`` already asks a different GPU count.
    """
    derived: dict[str, Any] = {}
    if kueue_queue_name:
        derived["labels"] = {**(labels or {}), KUEUE_QUEUE_LABEL: kueue_queue_name}
    if gpu.gpus:
        derived["container_resources"] = gpu_resources(
            container_resources, resource=gpu.resource, gpus=gpu.gpus
        )
        derived["tolerations"] = gpu_tolerations(tolerations, resource=gpu.resource)
    return derived
