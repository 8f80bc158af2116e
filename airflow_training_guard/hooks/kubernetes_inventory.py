"""Read GPU capacity from a Kubernetes cluster: node shapes and the namespace's remaining quota.

Talks to one outside system, the Kubernetes API, through the cncf.kubernetes provider's
``KubernetesHook`` (same connection as the pod operator). The arithmetic lives in the pure
functions below, which take API objects as plain dicts (the camelCase JSON the API server sends),
so it is tested without a cluster.

What one capacity check reads (issue 17: it used to list every node and every non-terminated pod
of the cluster, and deserialize both into client models, at every pod operator start):

- nodes, in pages of ``page_size`` (``limit``/``continue``), narrowed by
  ``gpu_node_label_selector`` when one is configured (e.g. ``nvidia.com/gpu.present=true``);
- pods only on the nodes that offer the requested resource, one ``fieldSelector=spec.nodeName=…``
  list per node (the API server answers it from an index: the kubelet watches its pods that way);
  nodes without the resource have 0 free GPUs whatever runs on them, so their pods are not needed;
- raw JSON (``_preload_content=False``), of which only the fields the arithmetic uses are kept.

The shapes, and so the fit decisions, are the same as from the full listing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from functools import cached_property
from typing import TYPE_CHECKING, Any

from kubernetes.utils.quantity import parse_quantity as _kubernetes_parse_quantity

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.policies.gpus import DEFAULT_GPU_RESOURCE, MAX_GPUS_PER_NODE, NodeShape, Taint
from airflow_training_guard.settings import CONFIG_SECTION, OPTION_GPU_NODE_LABEL_SELECTOR

if TYPE_CHECKING:
    from kubernetes.client import CoreV1Api

_TERMINATED = {"Succeeded", "Failed"}
#: Pods in these phases hold no GPUs; the API server filters them out (``status.phase`` is a
#: field selector every server supports for pods).
_NON_TERMINATED = "status.phase!=Succeeded,status.phase!=Failed"
#: Extended resources that look like accelerators: named in the error when the requested
#: resource is offered by no node (``nvidia.com/mig-1g.10gb``, ``amd.com/gpu``, ``google.com/tpu``,
#: ``aws.amazon.com/neuron``, ``habana.ai/gaudi``, ``gpu.intel.com/i915``).
GPU_LIKE_RESOURCE = re.compile(r"gpu|mig-|tpu|neuron|gaudi|i915|accelerat", re.IGNORECASE)
#: Items per list page: the API server's own guidance for large lists (kubectl uses 500).
DEFAULT_PAGE_SIZE = 500
#: Per-node pod lists in flight at once.
DEFAULT_MAX_WORKERS = 8


def configured_gpu_node_label_selector() -> str | None:
    """``[training_guard] gpu_node_label_selector`` from the Airflow configuration, or None.

    (``AIRFLOW__TRAINING_GUARD__GPU_NODE_LABEL_SELECTOR`` in the environment.) Every hook uses it
    when no selector is passed, so operators pick it up without an argument.
    """
    from airflow.configuration import conf

    value = conf.get(CONFIG_SECTION, OPTION_GPU_NODE_LABEL_SELECTOR, fallback="") or ""
    return value.strip() or None


def parse_quantity(value: str | int | float) -> Decimal:
    """A Kubernetes resource quantity (``"8"``, ``"500m"``, ``"16Gi"``) as a number.

    The client library's own parser (``kubernetes.utils.quantity``), with an error that names the
    value (issue 19: we used to carry our own copy).
    """
    text = value.strip() if isinstance(value, str) else value
    try:
        return Decimal(_kubernetes_parse_quantity(text))
    except (ValueError, ArithmeticError):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. '8', '500m', '16Gi')") from None


def gpu_quantity(value: object, *, what: str, limit: int | None = MAX_GPUS_PER_NODE) -> int:
    """A whole, plausible number of GPUs from a quantity, or a :class:`GuardConfigError` naming ``what``.

    :param value: the quantity as the API sends it (``"8"``).
    :param what: where it was read, for the message (``node 'gpu-a' allocatable['nvidia.com/gpu']``).
    :param limit: the largest plausible count (a node's GPUs); ``None`` for no bound.
    """
    try:
        number = parse_quantity(value)  # type: ignore[arg-type]
    except ValueError as err:
        raise GuardConfigError(f"{what}: {err}") from None
    if not number.is_finite() or number < 0 or number != number.to_integral_value():
        raise GuardConfigError(
            f"{what} {value!r} is not a whole number of GPUs; the device plugin registers GPUs as "
            "integers (check the resource name and the node's status.allocatable)"
        )
    if limit is not None and number > limit:
        raise GuardConfigError(
            f"{what} {value!r} is {number:f} GPUs, not a plausible count (at most {limit} on one "
            "node); the inventory is misreported or misread: check the node's status.allocatable "
            "and the device plugin"
        )
    return int(number)


def _container_requests(pod: Mapping[str, Any], resource: str) -> int:
    """GPUs a pod holds: max(sum of app containers, max of init containers), as the scheduler counts."""
    spec = pod.get("spec") or {}
    name = (pod.get("metadata") or {}).get("name")

    def request(container: Mapping[str, Any]) -> int:
        resources = container.get("resources") or {}
        value = (resources.get("requests") or {}).get(resource) or (resources.get("limits") or {}).get(
            resource
        )
        if value is None:
            return 0
        return gpu_quantity(value, what=f"pod {name!r} requests[{resource!r}]", limit=None)

    app = sum(request(c) for c in spec.get("containers") or [])
    init = max((request(c) for c in spec.get("initContainers") or []), default=0)
    return max(app, init)


def _allocatable(node: Mapping[str, Any], resource: str) -> int:
    name = (node.get("metadata") or {}).get("name")
    raw = ((node.get("status") or {}).get("allocatable") or {}).get(resource, "0")
    return gpu_quantity(raw, what=f"node {name!r} status.allocatable[{resource!r}]")


def _other_gpu_resources(node: Mapping[str, Any], resource: str) -> dict[str, int]:
    """GPU-like extended resources of the node besides ``resource``; odd values are left out
    (they only feed the hint of an error message)."""
    others: dict[str, int] = {}
    for key, raw in ((node.get("status") or {}).get("allocatable") or {}).items():
        if key == resource or "/" not in key or not GPU_LIKE_RESOURCE.search(key):
            continue
        try:
            count = gpu_quantity(raw, what=key)
        except GuardConfigError:
            continue
        if count:
            others[key] = count
    return others


def node_shapes(
    nodes: Sequence[Mapping[str, Any]],
    pods: Sequence[Mapping[str, Any]],
    *,
    resource: str = DEFAULT_GPU_RESOURCE,
) -> list[NodeShape]:
    """GPU shape of every schedulable node: allocatable, and free = allocatable minus what the
    non-terminated pods bound to it request. Cordoned nodes (``spec.unschedulable``) are left out.

    :raises GuardConfigError: for an allocatable value that is not a plausible GPU count (``"1T"``).
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
        allocatable = _allocatable(node, resource)
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
                other_gpu_resources=_other_gpu_resources(node, resource),
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


# -- what is kept of each object (the rest of the JSON is dropped page by page) -------------------


def _slim_node(node: Mapping[str, Any]) -> dict[str, Any]:
    metadata = node.get("metadata") or {}
    spec = node.get("spec") or {}
    return {
        "metadata": {"name": metadata.get("name"), "labels": metadata.get("labels") or {}},
        "spec": {"unschedulable": spec.get("unschedulable"), "taints": spec.get("taints") or []},
        "status": {"allocatable": dict((node.get("status") or {}).get("allocatable") or {})},
    }


def _slim_pod(pod: Mapping[str, Any], resource: str) -> dict[str, Any]:
    spec = pod.get("spec") or {}

    def containers(key: str) -> list[dict[str, Any]]:
        kept = []
        for container in spec.get(key) or []:
            resources = container.get("resources") or {}
            kept.append(
                {
                    "resources": {
                        part: {resource: (resources.get(part) or {})[resource]}
                        for part in ("requests", "limits")
                        if resource in (resources.get(part) or {})
                    }
                }
            )
        return kept

    return {
        "metadata": {"name": (pod.get("metadata") or {}).get("name")},
        "spec": {
            "nodeName": spec.get("nodeName"),
            "containers": containers("containers"),
            "initContainers": containers("initContainers"),
        },
        "status": {"phase": (pod.get("status") or {}).get("phase")},
    }


class KubernetesInventoryHook:
    """Read node shapes and GPU quota through the provider's ``KubernetesHook`` connection.

    :param kubernetes_conn_id: the cncf.kubernetes connection (same as the pod operator's).
    :param config_file: optional kube config path, as for ``KubernetesPodOperator``.
    :param cluster_context: optional kube config context.
    :param in_cluster: use the in-cluster service account.
    :param gpu_node_label_selector: a label selector that every GPU node matches, e.g.
        ``"nvidia.com/gpu.present=true"`` (NVIDIA GPU feature discovery) or
        ``"cloud.google.com/gke-accelerator"`` (GKE): only those nodes are read. When no node it
        selects offers the resource, all nodes are read instead, so a wrong selector never turns
        into a false "can never fit"; a GPU node without the label is not seen, though. Default:
        ``[training_guard] gpu_node_label_selector`` from the Airflow configuration, and when
        that is empty, every node is read.
    :param page_size: items per list request (``limit``).
    :param max_workers: per-node pod lists sent at once.
    """

    def __init__(
        self,
        kubernetes_conn_id: str | None = "kubernetes_default",
        *,
        config_file: str | None = None,
        cluster_context: str | None = None,
        in_cluster: bool | None = None,
        gpu_node_label_selector: str | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        max_workers: int = DEFAULT_MAX_WORKERS,
    ) -> None:
        for name, number in (("page_size", page_size), ("max_workers", max_workers)):
            if isinstance(number, bool) or not isinstance(number, int) or number < 1:
                raise GuardConfigError(f"{name} {number!r} must be an integer >= 1")
        if gpu_node_label_selector is not None and (
            not isinstance(gpu_node_label_selector, str) or not gpu_node_label_selector.strip()
        ):
            raise GuardConfigError(
                f"gpu_node_label_selector {gpu_node_label_selector!r} must be a non-empty label selector, "
                "e.g. 'nvidia.com/gpu.present=true', or None to read every node"
            )
        self.kubernetes_conn_id = kubernetes_conn_id
        self.config_file = config_file
        self.cluster_context = cluster_context
        self.in_cluster = in_cluster
        self.gpu_node_label_selector = (
            gpu_node_label_selector
            if gpu_node_label_selector is not None
            else configured_gpu_node_label_selector()
        )
        self.page_size = page_size
        self.max_workers = max_workers

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

    def _pages(self, list_call: Callable[..., Any], **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Every item of a list, page by page, from the raw JSON (no client models are built)."""
        token: str | None = None
        while True:
            if token:
                kwargs["_continue"] = token
            response = list_call(limit=self.page_size, _preload_content=False, **kwargs)
            try:
                page = json.loads(response.data)
            finally:
                response.release_conn()
            yield from page.get("items") or []
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return

    def list_nodes(self, label_selector: str | None = None) -> list[dict[str, Any]]:
        """Every node (matching ``label_selector``), slimmed to what the fit check reads."""
        kwargs = {"label_selector": label_selector} if label_selector else {}
        return [_slim_node(node) for node in self._pages(self.client.list_node, **kwargs)]

    def list_pods_on_node(
        self, node_name: str, *, resource: str = DEFAULT_GPU_RESOURCE
    ) -> list[dict[str, Any]]:
        """The non-terminated pods bound to one node, slimmed to their ``resource`` requests."""
        return [
            _slim_pod(pod, resource)
            for pod in self._pages(
                self.client.list_pod_for_all_namespaces,
                field_selector=f"spec.nodeName={node_name},{_NON_TERMINATED}",
            )
        ]

    def node_shapes(self, *, resource: str = DEFAULT_GPU_RESOURCE) -> list[NodeShape]:
        """Every schedulable node's GPUs, allocatable and free right now.

        :raises GuardConfigError: when a node reports an implausible GPU count (``"1T"``).
        """
        nodes = self.list_nodes(self.gpu_node_label_selector)
        if self.gpu_node_label_selector and not any(_allocatable(node, resource) for node in nodes):
            nodes = self.list_nodes()  # the selector missed the GPU nodes: do not fake an empty cluster
        # Only nodes that offer the resource have GPUs to subtract from; validating allocatable
        # here also refuses a misread inventory before any pod is read.
        candidates = [
            str(node["metadata"]["name"])
            for node in nodes
            if not node["spec"].get("unschedulable") and _allocatable(node, resource) > 0
        ]
        pods: list[dict[str, Any]] = []
        if candidates:
            with ThreadPoolExecutor(max_workers=min(self.max_workers, len(candidates))) as pool:
                for node_pods in pool.map(
                    lambda name: self.list_pods_on_node(name, resource=resource), candidates
                ):
                    pods.extend(node_pods)
        return node_shapes(nodes, pods, resource=resource)

    def remaining_gpu_quota(self, namespace: str, *, resource: str = DEFAULT_GPU_RESOURCE) -> int | None:
        """GPUs the namespace's ResourceQuotas still allow, or None when no quota limits them."""
        quotas = self._plain(self.client.list_namespaced_resource_quota(namespace).items)
        return remaining_quota(quotas, resource=resource)
