"""The Kubernetes API emulator at cluster scale: indexed, paginated lists and byte counts.

:class:`K8sApi` (``k8s_api.py``) emulates selectors by scanning (and copying) every object of a
kind on each list, and answers ``limit`` with one complete page. That is faithful for a handful of
pods, and hopeless for 100,000. :class:`ClusterAtScale` serves lists the way the real API server's
watch cache does, so a capacity check against a big cluster is measured for what the client asks:

- ``fieldSelector=spec.nodeName=<node>`` on pods is answered from an index by node (the real
  server keeps that index; every kubelet lists and watches its pods that way);
- ``limit``/``continue`` pagination: at most ``limit`` items, then an opaque ``continue`` token
  (items in ``(namespace, name)`` order, as etcd returns them); every other selector as in
  :class:`K8sApi`;
- compact JSON, as the real server writes it, and :attr:`ClusterAtScale.responses` records the
  bytes of every list answered;
- :meth:`ClusterAtScale.load` stores thousands of objects directly (no HTTP round trip each); it
  is for setting a cluster up before the code under test runs, with no watch open.

The index is rebuilt after any write (create, patch, delete), so the server stays correct when a
test also changes objects over HTTP.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import random
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import kmock

from tests.integration.kubernetes.k8s_api import (
    K8sApi,
    SelectorError,
    _bundled_resources,
    _Emulator,
    _QuickShutdownServer,
    parse_field_selector,
)

NODES = kmock.resource("", "v1", "nodes")
PODS = kmock.resource("", "v1", "pods")


@dataclasses.dataclass(frozen=True)
class ListResponse:
    """One list the server answered: which, with what query, how many items and bytes."""

    path: str
    query: Mapping[str, str]
    items: int
    bytes: int


def _encode_token(revision: str, after: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps([revision, *after]).encode()).decode()


def _decode_token(token: str) -> tuple[str, tuple[str, str]]:
    try:
        revision, namespace, name = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, TypeError) as err:
        raise kmock.KubernetesError(
            status=400, reason="BadRequest", message=f"invalid continue token {token!r}"
        ) from err
    return str(revision), (str(namespace), str(name))


def _sort_key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


@dataclasses.dataclass
class _Index:
    revision: int
    items: list[dict[str, Any]]  # (namespace, name) order
    by_node: dict[str, list[dict[str, Any]]]  # pods by spec.nodeName, same order


class _ScaleEmulator(_Emulator):
    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.indexes: dict[Any, _Index] = {}
        self.resources_cache: tuple[int, list[kmock.resource]] | None = None
        self.responses: list[ListResponse] = []

    def _get_resources(self) -> list[kmock.resource]:
        # kmock collects the resources of every stored object on each request (a scan of 100,000
        # pods per list); they change only when objects do.
        cached = self.resources_cache
        if cached is None or cached[0] != self._rv:
            cached = self.resources_cache = (self._rv, super()._get_resources())
        return list(cached[1])

    def _index(self, resource: kmock.resource) -> _Index:
        index = self.indexes.get(resource)
        if index is None or index.revision != self._rv:
            items = [
                obj.last.raw
                for (res, _, _), obj in self._objects.items()
                if res == resource and not obj.deleted
            ]
            items.sort(key=_sort_key)
            by_node: dict[str, list[dict[str, Any]]] = {}
            if resource == PODS:
                for item in items:
                    by_node.setdefault(str((item.get("spec") or {}).get("nodeName") or ""), []).append(item)
            index = self.indexes[resource] = _Index(self._rv, items, by_node)
        return index

    async def _serve_list(self, request: kmock.Request) -> Any:
        info = self._check_listable(request)
        assert request.resource is not None
        params = request.params
        try:
            matches = self._selectors(request)
            node_names = {
                value
                for path, equal, value in parse_field_selector(params.get("fieldSelector"))
                if equal and path == "spec.nodeName"
            }
            limit = int(params.get("limit") or 0)
        except (SelectorError, ValueError) as err:
            raise kmock.KubernetesError(status=400, reason="BadRequest", message=str(err)) from err
        async with self.write_lock:
            index = self._index(request.resource)
            revision = str(self._rv)
        candidates: Iterable[dict[str, Any]] = index.items
        if request.resource == PODS and len(node_names) == 1:
            candidates = index.by_node.get(node_names.pop(), [])
        after: tuple[str, str] | None = None
        if params.get("continue"):
            revision, after = _decode_token(str(params["continue"]))
        page: list[dict[str, Any]] = []
        token = None
        for obj in candidates:
            key = _sort_key(obj)
            if after is not None and key <= after:
                continue
            if request.namespace is not None and key[0] != request.namespace:
                continue
            if not matches(obj):
                continue
            if limit and len(page) == limit:
                token = _encode_token(revision, _sort_key(page[-1]))
                break
            page.append(obj)
        group, version = request.resource.group, request.resource.version
        metadata: dict[str, Any] = {"resourceVersion": revision}
        if token:
            metadata["continue"] = token
        body = json.dumps(
            {
                "kind": f"{info.kind}List" if info is not None and info.kind else "List",
                "apiVersion": f"{group}/{version}" if group else version,
                "metadata": metadata,
                "items": page,
            },
            separators=(",", ":"),
        ).encode()
        self.responses.append(ListResponse(request.url.path, dict(params), len(page), len(body)))
        return body  # kmock sends bytes as they are (the client parses JSON whatever the content type)


class ClusterAtScale(K8sApi):
    """:class:`K8sApi` whose lists scale to 100,000 pods (see the module docstring)."""

    async def _astart(self) -> None:
        emulator = _ScaleEmulator()
        emulator.driver = self
        for resource, info in _bundled_resources().items():
            emulator.resources[resource] = info
        await emulator.__aenter__()
        server = kmock.Server(emulator, server_cls=_QuickShutdownServer)
        await server.__aenter__()
        self._emulator, self._server = emulator, server
        self.url = str(server.url).rstrip("/")

    @property
    def responses(self) -> list[ListResponse]:
        """Every list answered to the code under test since the last :meth:`reset_responses`."""
        emulator = self._emu
        assert isinstance(emulator, _ScaleEmulator)
        return list(emulator.responses)

    def reset_responses(self) -> None:
        emulator = self._emu
        assert isinstance(emulator, _ScaleEmulator)
        emulator.responses.clear()

    def load(self, nodes: Iterable[dict[str, Any]], pods: Iterable[dict[str, Any]]) -> None:
        """Store nodes and pods as the API server would after creating them (uid, resourceVersion,
        creationTimestamp set); no watch events are sent."""

        async def store() -> None:
            emulator = self._emu
            async with emulator.write_lock:
                for resource, objects in ((NODES, nodes), (PODS, pods)):
                    for obj in objects:
                        meta = obj.setdefault("metadata", {})
                        meta.setdefault("uid", str(uuid.uuid4()))
                        meta.setdefault("creationTimestamp", "2026-11-30T08:00:00Z")
                        meta["resourceVersion"] = emulator.next_resource_version()
                        key = (resource, meta.get("namespace"), meta["name"])
                        emulator.objects[key] = obj
                        emulator.created_rv[key] = int(meta["resourceVersion"])

        self._call(store(), timeout=600)


# -- realistic objects ----------------------------------------------------------------------------

_IMAGES = [
    ("registry.k8s.io/kube-proxy", 28),
    ("quay.io/prometheus/node-exporter", 12),
    ("docker.io/fluent/fluent-bit", 33),
    ("nvcr.io/nvidia/k8s-device-plugin", 140),
    ("nvcr.io/nvidia/k8s/dcgm-exporter", 410),
    ("nvcr.io/nvidia/pytorch", 9800),
    ("registry.k8s.io/pause", 1),
    ("ghcr.io/acme/feature-service", 180),
    ("ghcr.io/acme/web", 95),
    ("docker.io/library/redis", 45),
]


def node_object(
    name: str,
    *,
    gpus: int = 0,
    gpu_resource: str = "nvidia.com/gpu",
    labels: Mapping[str, str] | None = None,
    taints: list[Mapping[str, Any]] | None = None,
    unschedulable: bool = False,
) -> dict[str, Any]:
    """A node as ``kubectl get node -o json`` shows it (capacity, conditions, images, nodeInfo)."""
    resources = {"cpu": "64", "memory": "512Gi", "pods": "110", "ephemeral-storage": "1Ti"}
    if gpus:
        resources[gpu_resource] = str(gpus)
    spec: dict[str, Any] = {"podCIDR": "10.244.0.0/24", "providerID": f"gce://acme/europe-west4-a/{name}"}
    if taints:
        spec["taints"] = list(taints)
    if unschedulable:
        spec["unschedulable"] = True
    now = "2026-11-30T08:00:00Z"
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node.kubernetes.io/instance-type": "a2-highgpu-8g" if gpus else "n2-standard-64",
                "topology.kubernetes.io/zone": "europe-west4-a",
                **(labels or {}),
            },
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
        },
        "spec": spec,
        "status": {
            "capacity": dict(resources),
            "allocatable": dict(resources),
            "conditions": [
                {
                    "type": t,
                    "status": s,
                    "reason": r,
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                    "message": f"kubelet reports {r}",
                }
                for t, s, r in [
                    ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                    ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                    ("PIDPressure", "False", "KubeletHasSufficientPID"),
                    ("Ready", "True", "KubeletReady"),
                ]
            ],
            "addresses": [
                {"type": "InternalIP", "address": "10.0.0.10"},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "architecture": "amd64",
                "bootID": str(uuid.uuid4()),
                "containerRuntimeVersion": "containerd://1.7.20",
                "kernelVersion": "6.8.0-45-generic",
                "kubeProxyVersion": "v1.30.4",
                "kubeletVersion": "v1.30.4",
                "machineID": uuid.uuid4().hex,
                "operatingSystem": "linux",
                "osImage": "Ubuntu 22.04.4 LTS",
                "systemUUID": str(uuid.uuid4()),
            },
            "images": [
                {
                    "names": [f"{image}@sha256:{uuid.uuid4().hex}{uuid.uuid4().hex}", f"{image}:v1.{i}"],
                    "sizeBytes": size * 1_000_000,
                }
                for i, (image, size) in enumerate(_IMAGES)
            ],
        },
    }


def pod_object(
    name: str,
    *,
    namespace: str = "default",
    node: str | None = None,
    gpus: int = 0,
    gpu_resource: str = "nvidia.com/gpu",
    phase: str = "Running",
    image: str = "ghcr.io/acme/web:v1.4",
    init_gpus: int = 0,
) -> dict[str, Any]:
    """A pod as the API server returns it once scheduled and running (defaults and status filled)."""
    requests: dict[str, str] = {"cpu": "500m", "memory": "1Gi"}
    limits: dict[str, str] = {"memory": "2Gi"}
    if gpus:
        requests[gpu_resource] = limits[gpu_resource] = str(gpus)
    container = {
        "name": "main",
        "image": image,
        "args": ["--port=8080", "--log-level=info"],
        "env": [
            {
                "name": "POD_NAME",
                "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}},
            },
            {"name": "ENVIRONMENT", "value": "production"},
        ],
        "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
        "resources": {"requests": requests, "limits": limits},
        "volumeMounts": [
            {
                "name": "kube-api-access",
                "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                "readOnly": True,
            }
        ],
        "imagePullPolicy": "IfNotPresent",
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }
    spec: dict[str, Any] = {
        "containers": [container],
        "restartPolicy": "Always",
        "dnsPolicy": "ClusterFirst",
        "schedulerName": "default-scheduler",
        "serviceAccountName": "default",
        "serviceAccount": "default",
        "securityContext": {},
        "terminationGracePeriodSeconds": 30,
        "enableServiceLinks": True,
        "priority": 0,
        "tolerations": [
            {
                "key": "node.kubernetes.io/not-ready",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            },
            {
                "key": "node.kubernetes.io/unreachable",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            },
        ],
        "volumes": [
            {
                "name": "kube-api-access",
                "projected": {
                    "defaultMode": 420,
                    "sources": [
                        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                        {
                            "configMap": {
                                "name": "kube-root-ca.crt",
                                "items": [{"key": "ca.crt", "path": "ca.crt"}],
                            }
                        },
                    ],
                },
            }
        ],
    }
    if init_gpus:
        spec["initContainers"] = [
            {"name": "warmup", "image": image, "resources": {"limits": {gpu_resource: str(init_gpus)}}}
        ]
    if node:
        spec["nodeName"] = node
    started = "2026-11-30T08:01:00Z"
    status: dict[str, Any] = {"phase": phase, "qosClass": "Burstable"}
    if node:
        state = (
            {"running": {"startedAt": started}}
            if phase == "Running"
            else {
                "terminated": {
                    "exitCode": 0 if phase == "Succeeded" else 1,
                    "reason": "Completed" if phase == "Succeeded" else "Error",
                    "startedAt": started,
                    "finishedAt": started,
                }
            }
        )
        status.update(
            {
                "conditions": [
                    {"type": t, "status": "True", "lastTransitionTime": started}
                    for t in (
                        "PodReadyToStartContainers",
                        "Initialized",
                        "Ready",
                        "ContainersReady",
                        "PodScheduled",
                    )
                ],
                "hostIP": "10.0.0.10",
                "hostIPs": [{"ip": "10.0.0.10"}],
                "podIP": "10.244.3.17",
                "podIPs": [{"ip": "10.244.3.17"}],
                "startTime": started,
                "containerStatuses": [
                    {
                        "name": "main",
                        "state": state,
                        "lastState": {},
                        "ready": phase == "Running",
                        "restartCount": 0,
                        "image": image,
                        "imageID": f"{image.split(':')[0]}@sha256:{uuid.uuid4().hex}{uuid.uuid4().hex}",
                        "containerID": f"containerd://{uuid.uuid4().hex}{uuid.uuid4().hex}",
                        "started": phase == "Running",
                    }
                ],
            }
        )
    else:
        status["conditions"] = [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/5000 nodes are available",
                "lastTransitionTime": started,
            }
        ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "generateName": name.rsplit("-", 1)[0] + "-",
            "namespace": namespace,
            "labels": {"app.kubernetes.io/name": name.rsplit("-", 2)[0], "pod-template-hash": "7d9f8c6b5"},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": name.rsplit("-", 1)[0],
                    "uid": str(uuid.uuid4()),
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": spec,
        "status": status,
    }


@dataclasses.dataclass(frozen=True)
class ClusterShape:
    """How many nodes and pods, and how the pods spread (the shape of a real mixed cluster).

    GPU nodes run few, large pods (daemonsets, the GPU operator's agents, training pods that fill
    their GPUs); CPU nodes run many small ones. Some pods have finished (``Succeeded``/``Failed``,
    still listed until garbage-collected) and some wait unscheduled.
    """

    nodes: int = 5000
    gpu_nodes: int = 500
    pods: int = 100_000
    gpus_per_node: int = 8
    daemonsets: int = 3
    gpu_agents: int = 2
    finished_fraction: float = 0.05
    pending_fraction: float = 0.01
    cordoned_gpu_nodes: int = 5
    seed: int = 17


def build_cluster(shape: ClusterShape = ClusterShape()) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Nodes and pods of a mixed cluster: ``shape.gpu_nodes`` GPU nodes among ``shape.nodes``.

    GPU nodes carry ``nvidia.com/gpu.present=true`` (as NVIDIA's GPU feature discovery labels
    them), ``pool=a100`` or ``pool=h100``, and the ``nvidia.com/gpu:NoSchedule`` taint. Training
    pods take 1, 2, 4 or 8 GPUs and leave each GPU node somewhere between idle and full.
    """
    rng = random.Random(shape.seed)
    nodes: list[dict[str, Any]] = []
    pods: list[dict[str, Any]] = []
    gpu_names = [f"gpu-{i:04d}" for i in range(shape.gpu_nodes)]
    cpu_names = [f"cpu-{i:05d}" for i in range(shape.nodes - shape.gpu_nodes)]
    for i, name in enumerate(gpu_names):
        nodes.append(
            node_object(
                name,
                gpus=shape.gpus_per_node,
                labels={"nvidia.com/gpu.present": "true", "pool": "a100" if i % 2 else "h100"},
                taints=[{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}],
                unschedulable=i < shape.cordoned_gpu_nodes,
            )
        )
    nodes.extend(node_object(name) for name in cpu_names)

    def add(name: str, **kwargs: Any) -> None:
        if len(pods) < shape.pods:
            pods.append(pod_object(name, **kwargs))

    for node in gpu_names + cpu_names:
        for d in range(shape.daemonsets):
            add(f"ds{d}-{node}", namespace="kube-system", node=node, image=_IMAGES[d][0] + ":v1.0")
    for node in gpu_names:
        for a in range(shape.gpu_agents):
            add(
                f"gpu-agent{a}-{node}",
                namespace="gpu-operator",
                node=node,
                image=_IMAGES[3 + a][0] + ":v0.15",
            )
        target = rng.randint(0, shape.gpus_per_node)
        used = 0
        while used < target:
            size = rng.choice([s for s in (1, 2, 4, 8) if used + s <= shape.gpus_per_node])
            add(
                f"train-{uuid.UUID(int=rng.getrandbits(128)).hex[:10]}-x",
                namespace="ml",
                node=node,
                gpus=size,
                image="nvcr.io/nvidia/pytorch:24.10-py3",
            )
            used += size
        if rng.random() < 0.3:  # finished training pods still listed: they hold no GPUs
            add(
                f"train-{uuid.UUID(int=rng.getrandbits(128)).hex[:10]}-done",
                namespace="ml",
                node=node,
                gpus=8,
                phase=rng.choice(["Succeeded", "Failed"]),
                image="nvcr.io/nvidia/pytorch:24.10-py3",
            )
    remaining = shape.pods - len(pods)
    finished = int(remaining * shape.finished_fraction)
    pending = int(remaining * shape.pending_fraction)
    for i in range(remaining):
        node = rng.choice(cpu_names) if cpu_names else None
        if i < finished:
            add(f"job-{i:06d}-batch", namespace="batch", node=node, phase=rng.choice(["Succeeded", "Failed"]))
        elif i < finished + pending:
            add(f"web-{i:06d}-queued", namespace="apps", phase="Pending")
        else:
            add(f"web-{i:06d}-app", namespace="apps", node=node)
    return nodes, pods


def full_listing_shapes(core_v1: Any, *, resource: str = "nvidia.com/gpu") -> list[Any]:
    """The capacity check as it read the cluster before issue 17, for side-by-side comparison:
    every node and every non-terminated pod, deserialized into client models and back."""
    from airflow_training_guard.hooks.kubernetes_inventory import node_shapes

    plain = core_v1.api_client.sanitize_for_serialization
    nodes = [plain(node) for node in core_v1.list_node().items]
    pods = [
        plain(pod)
        for pod in core_v1.list_pod_for_all_namespaces(
            field_selector="status.phase!=Succeeded,status.phase!=Failed"
        ).items
    ]
    return node_shapes(nodes, pods, resource=resource)
