"""Pure pod-in/pod-out helpers: each returns the pod it was given, changed in one respect.

They run after KubernetesPodOperator has built its pod (template, full_pod_spec and operator
arguments reconciled, the xcom sidecar added), so what they add reaches every container the pod
will really run.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from kubernetes.client import models as k8s

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.runtime import contract

if TYPE_CHECKING:
    from airflow_training_guard.policies.checkpoints import CheckpointPolicy

#: The volume holding checkpoints (a PVC sub-path, or an emptyDir without a claim).
CHECKPOINT_VOLUME = "training-guard-checkpoints"
#: Prefix of every annotation the guard writes.
ANNOTATION_PREFIX = "training-guard.io/"
#: Kueue's LocalQueue label.
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"

#: The pod-level part of the guard's safe defaults (Pod Security Standards "restricted").
SAFE_POD_SECURITY_CONTEXT: Mapping[str, Any] = {
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}
#: The container-level part, applied to every container, init container and the xcom sidecar.
SAFE_CONTAINER_SECURITY_CONTEXT: Mapping[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}


def find_container(pod: k8s.V1Pod, name: str) -> k8s.V1Container:
    """The container called ``name`` (the base container), with a clear error when it is missing."""
    containers = list(pod.spec.containers or []) if pod.spec else []
    for container in containers:
        if container.name == name:
            return container
    raise GuardConfigError(
        f"the pod has no container named {name!r} (it has {[c.name for c in containers]}); set "
        "base_container_name= to the training container's name in the pod template"
    )


def contract_environment(
    *,
    partition_key: str,
    checkpoint_policy: CheckpointPolicy,
    heartbeat_log_interval_seconds: float,
    attempt: int,
    output_dir: str | None = None,
    pins: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, str]:
    """The training contract's variables for a pod (``docs/checkpoint-contract.md``).

    The same names the local launcher sets, so one program runs under either; the checkpoint
    directory is the mount path (the volume's sub-path is this partition's folder).
    """
    env = {
        contract.ENV_PARTITION_KEY: partition_key,
        contract.ENV_CHECKPOINT_DIR: checkpoint_policy.root,
        contract.ENV_CHECKPOINT_EVERY: str(checkpoint_policy.every_steps),
        contract.ENV_CHECKPOINT_KEEP: str(checkpoint_policy.keep_last),
        contract.ENV_HEARTBEAT_LOG_INTERVAL: f"{heartbeat_log_interval_seconds:g}",
        contract.ENV_ATTEMPT: str(attempt),
    }
    if output_dir:
        env[contract.ENV_OUTPUT_DIR] = str(output_dir)
    if pins:
        env[contract.ENV_PINS] = json.dumps(pins, sort_keys=True)
    return env


def with_env(pod: k8s.V1Pod, container_name: str, env: Mapping[str, str]) -> k8s.V1Pod:
    """Set ``env`` on the named container, replacing variables of the same name and keeping the rest."""
    container = find_container(pod, container_name)
    kept = [e for e in (container.env or []) if e.name not in env]
    # Plain ``str`` values: a str subclass (a PartitionKey) would break KPO's ``yaml.safe_dump`` of the pod.
    container.env = kept + [k8s.V1EnvVar(name=key, value=str(value)) for key, value in env.items()]
    return pod


def with_checkpoint_volume(
    pod: k8s.V1Pod,
    container_name: str,
    *,
    mount_path: str,
    claim_name: str | None,
    sub_path: str,
) -> k8s.V1Pod:
    """Mount the checkpoint volume at ``mount_path``: the claim's ``sub_path``, or an emptyDir.

    ``sub_path`` comes from :meth:`CheckpointPolicy.relative_dir`, built from the same parts as the
    checkpoint directory; a ``..`` or absolute sub-path is refused here as a second line of defence.
    """
    if claim_name and (sub_path.startswith("/") or ".." in sub_path.split("/") or not sub_path):
        raise GuardConfigError(
            f"checkpoint sub-path {sub_path!r} is not a relative path inside the claim {claim_name!r}; "
            "check checkpoint_path_template"
        )
    volume = (
        k8s.V1Volume(
            name=CHECKPOINT_VOLUME,
            persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(claim_name=claim_name),
        )
        if claim_name
        else k8s.V1Volume(name=CHECKPOINT_VOLUME, empty_dir=k8s.V1EmptyDirVolumeSource())
    )
    pod.spec.volumes = [v for v in (pod.spec.volumes or []) if v.name != CHECKPOINT_VOLUME] + [volume]
    container = find_container(pod, container_name)
    mount = k8s.V1VolumeMount(
        name=CHECKPOINT_VOLUME, mount_path=mount_path, sub_path=sub_path if claim_name else None
    )
    container.volume_mounts = [m for m in (container.volume_mounts or []) if m.name != CHECKPOINT_VOLUME] + [
        mount
    ]
    return pod


def with_annotations(pod: k8s.V1Pod, annotations: Mapping[str, str]) -> k8s.V1Pod:
    """Add ``annotations`` (names without the guard prefix) under ``training-guard.io/``."""
    merged = dict(pod.metadata.annotations or {})
    merged.update({ANNOTATION_PREFIX + key: str(value) for key, value in annotations.items()})
    pod.metadata.annotations = merged
    return pod


def _merge_missing(given: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """``given`` with every field of ``defaults`` it does not set; nested mappings merge the same way."""
    merged = dict(given)
    for key, value in defaults.items():
        if key not in merged or merged[key] is None:
            merged[key] = copy.deepcopy(value)
        elif isinstance(value, Mapping) and isinstance(merged[key], Mapping):
            merged[key] = _merge_missing(merged[key], value)
    return merged


def _as_dict(value: Any) -> dict[str, Any]:
    """A security context as a camelCase dict, whether given as a dict or a kubernetes model."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    from kubernetes.client import ApiClient

    result = ApiClient().sanitize_for_serialization(value)
    return dict(result) if isinstance(result, Mapping) else {}


def api_dict(pod: k8s.V1Pod) -> dict[str, Any]:
    """The pod as the API server receives it (camelCase JSON), for checks that read it as a dict."""
    return _as_dict(pod)


def all_containers(pod: k8s.V1Pod) -> list[k8s.V1Container]:
    """Every container the pod will run: init containers first, then containers (sidecars included)."""
    spec = pod.spec
    return [*(spec.init_containers or []), *(spec.containers or [])] if spec else []


def with_security_defaults(
    pod: k8s.V1Pod,
    *,
    pod_defaults: Mapping[str, Any] = SAFE_POD_SECURITY_CONTEXT,
    container_defaults: Mapping[str, Any] = SAFE_CONTAINER_SECURITY_CONTEXT,
) -> k8s.V1Pod:
    """Fill in the safe security defaults wherever the pod leaves a field unset.

    Field by field: a value the DAG (operator argument, ``default_args``, template, full_pod_spec)
    gives is kept, even an unsafe one (the pod security check then names it). Applies to the pod
    and to every container, including init containers and KubernetesPodOperator's xcom sidecar,
    which the provider creates with no ``allowPrivilegeEscalation`` and its default capabilities.
    """
    pod.spec.security_context = _merge_missing(_as_dict(pod.spec.security_context), pod_defaults)
    for container in all_containers(pod):
        container.security_context = _merge_missing(_as_dict(container.security_context), container_defaults)
    return pod


def gpu_resources(
    given: k8s.V1ResourceRequirements | None, *, resource: str, gpus: int
) -> k8s.V1ResourceRequirements:
    """``given`` with ``gpus`` of ``resource`` as both request and limit (Kubernetes requires equal).

    :raises GuardConfigError: when ``given`` already asks a different count of the same resource.
    """
    limits = dict((given.limits if given else None) or {})
    requests = dict((given.requests if given else None) or {})
    for kind, values in (("limits", limits), ("requests", requests)):
        current = values.get(resource)
        if current is not None and str(current) != str(gpus):
            raise GuardConfigError(
                f"container_resources.{kind}[{resource!r}]={current!r} contradicts gpus={gpus}; "
                "set the GPU count only with gpus="
            )
    limits[resource] = str(gpus)
    requests[resource] = str(gpus)
    return k8s.V1ResourceRequirements(
        limits=limits, requests=requests, claims=given.claims if given is not None else None
    )


def gpu_tolerations(tolerations: Iterable[Any] | None, *, resource: str) -> list[Any]:
    """``tolerations`` plus one for the GPU taint (GKE, EKS and AKS taint GPU pools with the resource name)."""
    result = list(tolerations or [])
    if not any(_toleration_key(t) == resource for t in result):
        result.append(k8s.V1Toleration(key=resource, operator="Exists", effect="NoSchedule"))
    return result


def _toleration_key(toleration: Any) -> Any:
    if isinstance(toleration, Mapping):
        return toleration.get("key")
    return getattr(toleration, "key", None)
