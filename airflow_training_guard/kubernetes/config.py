"""Grouped, validated settings of the Kubernetes training operators: checkpoints and GPUs.

The pod and Job operators take about twenty guard arguments on top of KubernetesPodOperator's.
Two groups belong together and are checked together, so they are also values of their own, as
astronomer-cosmos groups its user-facing configuration (``RenderConfig``, ``ExecutionConfig``):

- :class:`CheckpointSettings`: the checkpoint volume, its per-partition layout and the save cadence;
- :class:`GpuSettings`: the GPU request and how it is checked against the cluster.

Each validates itself when constructed (when the DAG is parsed), and its errors name the value, the
operator argument that carries it and the fix. The flat operator arguments (``gpus=4``,
``checkpoint_claim_name="..."``) remain the documented way to pass them and build the same objects
(:func:`settings_from_arguments`); an object can be shared by many tasks (``gpu=A100_X8``). Giving
both for one group is an error that names both.

Pure: no Airflow import.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.policies.checkpoints import CheckpointPolicy
from airflow_training_guard.policies.gpus import (
    DEFAULT_GPU_RESOURCE,
    FragmentationPolicy,
    NodeShape,
    validate_gpu_count,
)

if TYPE_CHECKING:
    from airflow_training_guard.policies.profiles import GuardProfile

#: A PersistentVolumeClaim name (a DNS-1123 subdomain).
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


@dataclass(frozen=True)
class CheckpointSettings:
    """Where a training pod keeps its checkpoints, and how often it saves them.

    Operator argument of each field: ``checkpoint_<field>`` (``checkpoint_claim_name=`` ...).

    :param claim_name: the PersistentVolumeClaim holding checkpoints; each (DAG, task,
        partition_key) gets its own sub-path of it. ``None``: an emptyDir, so checkpoints live only
        as long as the pod and a retry starts from step 0 (logged).
    :param root: the checkpoint root as the program sees it: where the volume is mounted (absolute);
        the same concept as the local operator's and the backfill factory's ``checkpoint_root``.
    :param path_template: the sub-path layout; must contain ``{partition_key}``.
    :param every_steps: save every this many steps; ``None``: the profile's value.
    :param keep_last: keep this many newest valid checkpoints; ``None``: the profile's value.
    """

    claim_name: str | None = None
    root: str = "/checkpoints"
    path_template: str = "{dag_id}/{task_id}/{partition_key}"
    every_steps: int | None = None
    keep_last: int | None = None

    #: operator argument -> field.
    ARGUMENTS: ClassVar[Mapping[str, str]] = MappingProxyType(
        {
            "checkpoint_claim_name": "claim_name",
            "checkpoint_root": "root",
            "checkpoint_path_template": "path_template",
            "checkpoint_every_steps": "every_steps",
            "checkpoint_keep_last": "keep_last",
        }
    )

    def __post_init__(self) -> None:
        claim = self.claim_name
        if claim is not None and (
            not isinstance(claim, str) or len(claim) > 253 or not _DNS_SUBDOMAIN.fullmatch(claim)
        ):
            raise GuardConfigError(
                f"checkpoint_claim_name={claim!r} (CheckpointSettings.claim_name) is not a PersistentVolumeClaim "
                "name; use lower-case letters, digits, '-' and '.', e.g. 'training-checkpoints' "
                "(kubectl get pvc lists the namespace's claims), or None for an emptyDir"
            )
        path = self.root
        if not isinstance(path, str) or not os.path.isabs(path) or path.rstrip("/") == "":
            raise GuardConfigError(
                f"checkpoint_root={path!r} (CheckpointSettings.root) must be an absolute "
                "directory other than '/', e.g. '/checkpoints'"
            )
        for name in ("every_steps", "keep_last"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise GuardConfigError(
                    f"checkpoint_{name}={value!r} (CheckpointSettings.{name}) must be an integer >= 1, or "
                    "None for the profile's value; e.g. every_steps=100 saves every 100 steps, keep_last=3 "
                    "keeps the three newest checkpoints"
                )
        self.policy(None)  # the template's rules (must use {partition_key}, no '..', ...)

    def policy(self, profile: GuardProfile | None) -> CheckpointPolicy:
        """The layout and retention, with the profile's values where these settings leave ``None``."""
        return CheckpointPolicy(
            root=self.root,
            path_template=self.path_template,
            keep_last=self.keep_last or (profile.checkpoint_keep_last if profile else 1),
            every_steps=self.every_steps or (profile.checkpoint_every_steps if profile else 1),
        )

    def location(self, sub_path: str) -> str:
        """Where one run's checkpoints are, for the run manifest: ``<claim or emptyDir>:<sub-path>``."""
        return f"{self.claim_name or 'emptyDir'}:{sub_path}"


@dataclass(frozen=True)
class GpuSettings:
    """The GPUs a training pod requests, and how the request is checked before the pod exists.

    Operator arguments: ``gpus``, ``gpu_resource``, ``gpu_fragmentation``, ``node_shapes``,
    ``check_node_inventory``, ``check_gpu_quota``.

    :param gpus: GPUs for the training container (requests = limits); 0 for a CPU-only pod.
    :param resource: the extended resource name (``nvidia.com/gpu``, ``amd.com/gpu``, a MIG slice).
    :param fragmentation: ``"allow"``, ``"warn"`` (default) or ``"reject"`` for requests that
        strand GPUs on a node (3 GPUs on 8-GPU nodes).
    :param node_shapes: the GPU node inventory from configuration; ``None``: read from the cluster
        (allocatable minus what running pods request).
    :param check_node_inventory: read the inventory from the cluster when ``node_shapes`` is
        ``None`` (needs permission to list nodes and pods; a refusal is logged and skipped).
    :param check_quota: compare the request with the namespace's ResourceQuota first.
    """

    gpus: int = 0
    resource: str = DEFAULT_GPU_RESOURCE
    fragmentation: FragmentationPolicy | str = FragmentationPolicy.WARN
    node_shapes: Sequence[NodeShape] | None = None
    check_node_inventory: bool = True
    check_quota: bool = True

    #: operator argument -> field.
    ARGUMENTS: ClassVar[Mapping[str, str]] = MappingProxyType(
        {
            "gpus": "gpus",
            "gpu_resource": "resource",
            "gpu_fragmentation": "fragmentation",
            "node_shapes": "node_shapes",
            "check_node_inventory": "check_node_inventory",
            "check_gpu_quota": "check_quota",
        }
    )

    def __post_init__(self) -> None:
        validate_gpu_count(self.gpus)
        if not isinstance(self.resource, str) or not self.resource.strip():
            raise GuardConfigError(
                f"gpu_resource={self.resource!r} (GpuSettings.resource) must be an extended resource "
                f"name, e.g. {DEFAULT_GPU_RESOURCE!r} or 'nvidia.com/mig-1g.10gb'"
            )
        try:
            object.__setattr__(self, "fragmentation", FragmentationPolicy(self.fragmentation))
        except ValueError:
            raise GuardConfigError(
                f"gpu_fragmentation={self.fragmentation!r} (GpuSettings.fragmentation) is not valid; use "
                f"one of {[p.value for p in FragmentationPolicy]}"
            ) from None
        if self.node_shapes is not None:
            shapes = tuple(self.node_shapes) if not isinstance(self.node_shapes, str | Mapping) else None
            if shapes is None or not all(isinstance(shape, NodeShape) for shape in shapes):
                raise GuardConfigError(
                    f"node_shapes={self.node_shapes!r} (GpuSettings.node_shapes) must be a list of NodeShape "
                    "values, e.g. [NodeShape('gpu-a', gpus_allocatable=8, gpus_free=8)], or None to read "
                    "the inventory from the cluster"
                )
            object.__setattr__(self, "node_shapes", shapes)
        for argument, name in (
            ("check_node_inventory", "check_node_inventory"),
            ("check_gpu_quota", "check_quota"),
        ):
            if not isinstance(getattr(self, name), bool):
                raise GuardConfigError(
                    f"{argument}={getattr(self, name)!r} (GpuSettings.{name}) must be True or False"
                )

    @property
    def fragmentation_policy(self) -> FragmentationPolicy:
        """``fragmentation`` as the enum (it is coerced when the settings are built)."""
        return FragmentationPolicy(self.fragmentation)

    def describe(self) -> str:
        """One line for the task log: ``4 nvidia.com/gpu``."""
        return f"{self.gpus} {self.resource}"


_Settings = TypeVar("_Settings", CheckpointSettings, GpuSettings)


def settings_from_arguments(
    kind: type[_Settings], given: object, arguments: Mapping[str, Any], *, argument: str
) -> _Settings:
    """The settings object of one group: the one given as ``argument=``, else built from the flat arguments.

    :param kind: :class:`CheckpointSettings` or :class:`GpuSettings`.
    :param given: what the DAG passed as ``checkpoint=`` / ``gpu=`` (``None``: nothing).
    :param arguments: the flat operator arguments of the group; ``None`` means "not given".
    :param argument: the object's operator argument, for messages.
    :raises GuardConfigError: when both are given (naming both), or ``given`` is not a ``kind``.
    """
    passed = {name: value for name, value in arguments.items() if value is not None}
    unknown = set(passed) - set(kind.ARGUMENTS)
    if unknown:  # a programming error in the operator, not in the DAG
        raise TypeError(f"{kind.__name__} has no operator arguments {sorted(unknown)}")
    if given is None:
        return kind(**{kind.ARGUMENTS[name]: value for name, value in passed.items()})
    if not isinstance(given, kind):
        raise GuardConfigError(
            f"{argument}={given!r} is a {type(given).__name__}, not a {kind.__name__}; pass "
            f"{argument}={kind.__name__}(...) or the flat arguments ({', '.join(kind.ARGUMENTS)})"
        )
    if passed:
        flat = ", ".join(f"{name}={value!r}" for name, value in passed.items())
        inside = ", ".join(f"{kind.ARGUMENTS[name]}={value!r}" for name, value in passed.items())
        raise GuardConfigError(
            f"{flat} and {argument}={given!r} both set the {kind.__name__} (in the call or default_args); "
            f"pass one of them, e.g. {argument}=dataclasses.replace({argument}, {inside})"
        )
    return given


def check_output_dirs(output_dir: str | None, worker_output_dir: str | None, *, do_xcom_push: object) -> None:
    """``worker_output_dir`` needs ``output_dir`` (the container's view of the same folder), not ``do_xcom_push``.

    :raises GuardConfigError: naming the arguments and the fix.
    """
    if worker_output_dir is not None and (not worker_output_dir or not output_dir):
        raise GuardConfigError(
            f"worker_output_dir={worker_output_dir!r} needs output_dir (the same folder as the container "
            "sees it), e.g. output_dir='/shared/models/{{ ds }}', worker_output_dir='/mnt/shared/models/{{ ds }}'"
        )
    if worker_output_dir and do_xcom_push:
        raise GuardConfigError(
            "worker_output_dir and do_xcom_push=True both set the task's return value; with "
            "worker_output_dir the return value is the run manifest summary, so drop do_xcom_push"
        )
