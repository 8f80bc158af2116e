"""Read GPU capacity from a Kubernetes cluster: node shapes and the namespace's remaining quota.

Talks to one outside system, the Kubernetes API, through the cncf.kubernetes provider's
``KubernetesHook`` (same connection as the pod operator). The arithmetic lives in the pure
functions below, which take API objects as plain dicts (the camelCase JSON the API server sends),
so it is tested without a cluster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_training_guard.policies.gpus import DEFAULT_GPU_RESOURCE, NodeShape, Taint

if TYPE_CHECKING:
    from kubernetes.client import CoreV1Api

_SUFFIXES: dict[str, int | Decimal] = {
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"),
    "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
}  # fmt: skip
_TERMINATED = {"Succeeded", "Failed"}


def parse_quantity(value: str | int | float) -> Decimal:
    """A Kubernetes resource quantity (``"8"``, ``"500m"``, ``"16Gi"``) as a number."""
    text = str(value).strip()
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if text.endswith(suffix):
            number, factor = text[: -len(suffix)], Decimal(_SUFFIXES[suffix])
            break
    else:
        number, factor = text, Decimal(1)
    try:
        return Decimal(number) * factor
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. '8', '500m', '16Gi')") from None


def _container_requests(pod: Mapping[str, Any], resource: str) -> int:
    """GPUs a pod holds: max(sum of app containers, max of init containers), as the scheduler counts."""
    spec = pod.get("spec") or {}

    def request(container: Mapping[str, Any]) -> int:
        resources = container.get("resources") or {}
        value = (resources.get("requests") or {}).get(resource) or (resources.get("limits") or {}).get(
            resource
        )
        return int(parse_quantity(value)) if value is not None else 0

    app = sum(request(c) for c in spec.get("containers") or [])
    init = max((request(c) for c in spec.get("initContainers") or []), default=0)
    return max(app, init)


def node_shapes(
    nodes: Sequence[Mapping[str, Any]],
    pods: Sequence[Mapping[str, Any]],
    *,
    resource: str = DEFAULT_GPU_RESOURCE,
) -> list[NodeShape]:
    """GPU shape of every schedulable node: allocatable, and free = allocatable minus what the
    non-terminated pods bound to it request. Cordoned nodes (``spec.unschedulable``) are left out.
    """
    used: dict[str, int] = {}
    for pod in pods:
        node_name = (pod.get("spec") or {}).get("nodeName")
        phase = (pod.get("status") or {}).get("phase")
        if node_name and phase not in _TERMINATED:
            used[node_name] = used.get(node_name, 0) + _container_requests(pod, resource)
    shapes = []
    for node in nodes:
        spec = node.get("spec") or {}
        if spec.get("unschedulable"):
            continue
        metadata = node.get("metadata") or {}
        name = str(metadata.get("name", ""))
        allocatable_raw = ((node.get("status") or {}).get("allocatable") or {}).get(resource, "0")
        allocatable = int(parse_quantity(allocatable_raw))
        taints = tuple(
            Taint(key=str(t.get("key", "")), value=t.get("value"), effect=str(t.get("effect", "")))
            for t in spec.get("taints") or []
        )
        shapes.append(
            NodeShape(
                name=name,
                gpus_allocatable=allocatable,
                gpus_free=max(0, allocatable - used.get(name, 0)),
                labels=dict(metadata.get("labels") or {}),
                taints=taints,
            )
        )
    return shapes


def remaining_quota(
    quotas: Sequence[Mapping[str, Any]], *, resource: str = DEFAULT_GPU_RESOURCE
) -> int | None:
    """GPUs the namespace may still request: the tightest ``requests.<resource>`` quota, or None.

    Extended resources such as GPUs are limited in a ResourceQuota as ``requests.<resource>``.
    """
    key = f"requests.{resource}"
    remaining: int | None = None
    for quota in quotas:
        status = quota.get("status") or {}
        hard = (status.get("hard") or (quota.get("spec") or {}).get("hard") or {}).get(key)
        if hard is None:
            continue
        used = (status.get("used") or {}).get(key, "0")
        left = int(parse_quantity(hard) - parse_quantity(used))
        remaining = left if remaining is None else min(remaining, left)
    return remaining


class KubernetesInventoryHook:
    """Read node shapes and GPU quota through the provider's ``KubernetesHook`` connection.

    :param kubernetes_conn_id: the cncf.kubernetes connection (same as the pod operator's).
    :param config_file: optional kube config path, as for ``KubernetesPodOperator``.
    :param cluster_context: optional kube config context.
    :param in_cluster: use the in-cluster service account.
    """

    def __init__(
        self,
        kubernetes_conn_id: str | None = "kubernetes_default",
        *,
        config_file: str | None = None,
        cluster_context: str | None = None,
        in_cluster: bool | None = None,
    ) -> None:
        self.kubernetes_conn_id = kubernetes_conn_id
        self.config_file = config_file
        self.cluster_context = cluster_context
        self.in_cluster = in_cluster

    @cached_property
    def client(self) -> CoreV1Api:
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

        hook = KubernetesHook(
            conn_id=self.kubernetes_conn_id,
            in_cluster=self.in_cluster,
            config_file=self.config_file,
            cluster_context=self.cluster_context,
        )
        return hook.core_v1_client

    def _plain(self, items: Sequence[Any]) -> list[dict[str, Any]]:
        return [self.client.api_client.sanitize_for_serialization(item) for item in items]

    def node_shapes(self, *, resource: str = DEFAULT_GPU_RESOURCE) -> list[NodeShape]:
        """Every schedulable node's GPUs, allocatable and free right now."""
        nodes = self._plain(self.client.list_node().items)
        # The field selector spares the API server; the pure function filters again regardless.
        pods = self._plain(
            self.client.list_pod_for_all_namespaces(
                field_selector="status.phase!=Succeeded,status.phase!=Failed"
            ).items
        )
        return node_shapes(nodes, pods, resource=resource)

    def remaining_gpu_quota(self, namespace: str, *, resource: str = DEFAULT_GPU_RESOURCE) -> int | None:
        """GPUs the namespace's ResourceQuotas still allow, or None when no quota limits them."""
        quotas = self._plain(self.client.list_namespaced_resource_quota(namespace).items)
        return remaining_quota(quotas, resource=resource)
