"""GPU capacity before a pod (or a Job's N pods) is created: shapes that fit, quota that admits.

The rule itself is pure (:func:`airflow_training_guard.policies.gpus.require_fit`); this module
gathers its inputs (configured shapes, or the cluster's inventory through the hook) and turns the
outcome into a decision the operators act on: fail (cannot ever fit), fail retryably (quota is used
up now), or go on with warnings. Both the pod operator and pre-flight call it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.policies.gpus import (
    FragmentationPolicy,
    GpuRequest,
    GpuShapeError,
    NodeShape,
    Toleration,
    require_fit,
)

if TYPE_CHECKING:
    from airflow_training_guard.kubernetes.config import GpuSettings

log = logging.getLogger(__name__)


class CapacityError(Exception):
    """The request cannot run now. ``retryable`` says whether waiting can change that."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class CapacityReport:
    """What the check found; ``warnings`` are for the task log."""

    warnings: tuple[str, ...] = field(default=())


def gpu_request(
    *, gpus: int, resource: str, node_selector: dict[str, str] | None, tolerations: Sequence[Any] | None
) -> GpuRequest:
    """The pure request from a pod's settings (kubernetes ``V1Toleration`` objects or dicts)."""

    def attr(t: Any, name: str) -> Any:
        return t.get(name) if isinstance(t, dict) else getattr(t, name, None)

    return GpuRequest(
        gpus=gpus,
        resource=resource,
        node_selector=dict(node_selector or {}),
        tolerations=tuple(
            Toleration(
                key=attr(t, "key"),
                operator=attr(t, "operator") or "Equal",
                value=attr(t, "value"),
                effect=attr(t, "effect"),
            )
            for t in (tolerations or [])
        ),
    )


def check_gpu_capacity(
    request: GpuRequest,
    *,
    shapes: Sequence[NodeShape] | None,
    inventory: Callable[[], Any] | None,
    read_shapes: bool = True,
    namespace: str,
    fragmentation: FragmentationPolicy,
    check_quota: bool,
    kueue_queue_name: str | None,
    pods: int = 1,
) -> CapacityReport:
    """Check ``pods`` pods of ``request`` against node shapes and the namespace's quota.

    :param shapes: configured node shapes; ``None`` reads them through ``inventory``.
    :param inventory: builds the Kubernetes inventory hook (``None``: do not read the cluster).
    :param read_shapes: read node shapes through ``inventory`` when ``shapes`` is ``None``.
    :param pods: how many pods of this shape run at once (a multi-node job's ranks).
    :raises CapacityError: ``retryable=False`` when no node can ever hold one pod;
        ``retryable=True`` when the quota has too few GPUs left now (and no Kueue queue).
    """
    warnings: list[str] = []
    hook = None
    if shapes is None and inventory is not None and read_shapes:
        hook = inventory()
        try:
            shapes = tuple(hook.node_shapes(resource=request.resource))
        except GuardConfigError as err:  # an implausible inventory (a misparsed "1T" GPUs): say so, stop
            raise CapacityError(str(err), retryable=False) from err
        except Exception as err:  # RBAC may forbid listing nodes: skip the check, say so
            warnings.append(f"cannot read the node inventory ({err}); GPU shape check skipped")
    if shapes is not None:
        try:
            report = require_fit(request, shapes, fragmentation=fragmentation)
        except GpuShapeError as err:
            raise CapacityError(str(err), retryable=False) from err
        if report.fragmentation_warning:
            warnings.append(report.fragmentation_warning)
        if not report.fits_now:
            queued = " (Kueue admits it by quota)" if kueue_queue_name else ""
            warnings.append(
                f"no node has {request.gpus} free {request.resource} right now; the pod will wait for "
                f"capacity{queued}. Inventory: {report.inventory_text()}"
            )
    if check_quota and inventory is not None:
        hook = hook or inventory()
        try:
            left = hook.remaining_gpu_quota(namespace, resource=request.resource)
        except Exception as err:
            warnings.append(f"cannot read ResourceQuotas ({err}); quota check skipped")
            return CapacityReport(tuple(warnings))
        wanted = request.gpus * pods
        if left is not None and wanted > left:
            message = (
                f"namespace {namespace!r} has {left} {request.resource} left in its ResourceQuota, "
                f"this {'job' if pods > 1 else 'pod'} requests {wanted}"
            )
            if kueue_queue_name:
                warnings.append(f"{message}; Kueue queue {kueue_queue_name!r} will admit it when quota frees")
            else:
                # Retryable: quota frees as other jobs finish. Kueue avoids the retry loop.
                raise CapacityError(
                    f"{message}; the API server would reject it. Wait for running jobs to finish, "
                    "raise the quota, or set kueue_queue_name= to queue by quota instead",
                    retryable=True,
                )
    return CapacityReport(tuple(warnings))


def check_gpu_settings(
    gpu: GpuSettings,
    *,
    node_selector: dict[str, str] | None,
    tolerations: Sequence[Any] | None,
    inventory: Callable[[], Any] | None,
    namespace: str,
    kueue_queue_name: str | None,
    pods: int = 1,
) -> CapacityReport:
    """:func:`check_gpu_capacity` for an operator's :class:`GpuSettings` and its pod's placement."""
    return check_gpu_capacity(
        gpu_request(
            gpus=gpu.gpus, resource=gpu.resource, node_selector=node_selector, tolerations=tolerations
        ),
        shapes=gpu.node_shapes,
        inventory=inventory,
        read_shapes=gpu.check_node_inventory,
        namespace=namespace,
        fragmentation=gpu.fragmentation_policy,
        check_quota=gpu.check_quota,
        kueue_queue_name=kueue_queue_name,
        pods=pods,
    )
