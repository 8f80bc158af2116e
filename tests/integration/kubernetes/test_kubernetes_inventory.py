"""The GPU capacity check against an emulated cluster: what it reads, and that it decides as before.

Issue 17: every pod operator start listed every node and every non-terminated pod of the cluster.
The hook now reads pods only on the nodes that offer the GPU resource, page by page; these tests
pin that the shapes (and so every fit decision) are those of the full listing, and that the pods
it transfers do not grow with the rest of the cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.hooks.kubernetes_inventory import KubernetesInventoryHook
from airflow_training_guard.policies.gpus import (
    GpuRequest,
    GpuShapeError,
    NodeShape,
    Toleration,
    check_fit,
    require_fit,
)
from tests.integration.kubernetes.cluster_at_scale import (
    ClusterAtScale,
    ClusterShape,
    build_cluster,
    full_listing_shapes,
    node_object,
    pod_object,
)

pytestmark = pytest.mark.integration

GPU = "nvidia.com/gpu"
GPU_NODES = "nvidia.com/gpu.present=true"
TOLERATE_GPU = (Toleration(GPU, "Exists"),)
REQUESTS = [
    GpuRequest(gpus, tolerations=TOLERATE_GPU, node_selector=selector)
    for gpus in (1, 2, 3, 4, 8, 16)
    for selector in ({}, {"pool": "a100"})
] + [GpuRequest(1), GpuRequest(2, node_selector={"pool": "v100"}, tolerations=TOLERATE_GPU)]


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ClusterAtScale]:
    import kubernetes.client

    monkeypatch.setattr(kubernetes.client.Configuration, "_default", kubernetes.client.Configuration._default)
    with ClusterAtScale.running(tmp_path) as api:
        name, value = api.airflow_conn_env
        monkeypatch.setenv(name, value)
        yield api


def decisions(request: GpuRequest, shapes: list[NodeShape]) -> tuple[object, ...]:
    report = check_fit(request, shapes)
    try:
        require_fit(request, shapes)
        error = None
    except GpuShapeError as err:
        error = str(err)
    return (report.fits_now, report.fits_ever, report.best_node, report.eligible_nodes,
            report.fragmentation_warning, report.inventory_text(), error)  # fmt: skip


def mixed_small() -> tuple[list[dict], list[dict]]:
    """Init containers, pods of several containers, pending and finished pods, a cordoned node."""
    nodes = [
        node_object("gpu-a", gpus=8, labels={"pool": "a100"}),
        node_object("gpu-b", gpus=4, labels={"pool": "a100"}, taints=[{"key": GPU, "effect": "NoSchedule"}]),
        node_object("gpu-c", gpus=8, labels={"pool": "h100"}, unschedulable=True),
        node_object("cpu-a"),
    ]
    pods = [
        pod_object("train-1-x", namespace="ml", node="gpu-a", gpus=3),
        pod_object("train-2-x", namespace="ml", node="gpu-a", gpus=1, init_gpus=4),
        pod_object("train-3-x", namespace="ml", node="gpu-b", gpus=4, phase="Succeeded"),
        pod_object("train-4-x", namespace="ml", node="gpu-c", gpus=8),
        pod_object("train-5-x", namespace="ml", gpus=8, phase="Pending"),
        pod_object("web-1-x", namespace="apps", node="cpu-a"),
    ]
    return nodes, pods


def mig_only() -> tuple[list[dict], list[dict]]:
    mig = "nvidia.com/mig-1g.10gb"
    nodes = [node_object(f"mig-{i}", gpus=7, gpu_resource=mig) for i in range(3)] + [node_object("cpu-a")]
    return nodes, [pod_object("infer-1-x", node="mig-0", gpus=2, gpu_resource=mig)]


INVENTORIES = {
    "mixed-small": mixed_small,
    "mig-only": mig_only,
    "no-gpus": lambda: ([node_object(f"cpu-{i}") for i in range(3)], [pod_object("web-1-x", node="cpu-0")]),
    "cluster-seed-1": lambda: build_cluster(ClusterShape(nodes=30, gpu_nodes=8, pods=300, seed=1)),
    "cluster-seed-2": lambda: build_cluster(
        ClusterShape(nodes=20, gpu_nodes=15, pods=200, gpus_per_node=4, seed=2)
    ),
}


@pytest.mark.parametrize("inventory", sorted(INVENTORIES))
def test_capacity_check_decides_as_the_full_listing_did(cluster: ClusterAtScale, inventory: str) -> None:
    """Same shapes, so the same fit decisions and messages, as listing every node and pod."""
    cluster.load(*INVENTORIES[inventory]())
    expected = full_listing_shapes(cluster.core_v1())
    for selector in (None, GPU_NODES):
        hook = KubernetesInventoryHook(cluster.airflow_conn_id, gpu_node_label_selector=selector, page_size=7)
        shapes = hook.node_shapes(resource=GPU)
        if selector is None:
            assert shapes == expected
        for request in REQUESTS:
            assert decisions(request, shapes) == decisions(request, expected) or selector is not None
            # With the GPU-node selector the inventory lists GPU nodes only; the decisions stay.
            assert decisions(request, shapes)[:3] == decisions(request, expected)[:3]


def test_pods_are_read_only_for_schedulable_nodes_offering_the_resource(cluster: ClusterAtScale) -> None:
    """Regression (issue 17): the check listed every pod of the cluster at each operator start."""
    cluster.load(*mixed_small())
    KubernetesInventoryHook(cluster.airflow_conn_id).node_shapes(resource=GPU)
    pod_lists = [r for r in cluster.responses if r.path == "/api/v1/pods"]
    assert sorted(r.query["fieldSelector"] for r in pod_lists) == [
        "spec.nodeName=gpu-a,status.phase!=Succeeded,status.phase!=Failed",
        "spec.nodeName=gpu-b,status.phase!=Succeeded,status.phase!=Failed",
    ]
    assert sum(r.items for r in pod_lists) == 2  # train-1 and train-2; train-3 has finished


def test_pod_bytes_do_not_grow_with_the_cpu_part_of_the_cluster(
    cluster: ClusterAtScale, tmp_path: Path
) -> None:
    """Regression (issue 17): the bytes of one check grew with every pod of the cluster."""
    gpu_part = build_cluster(ClusterShape(nodes=10, gpu_nodes=10, pods=200, seed=3))
    cluster.load(*gpu_part)
    hook = KubernetesInventoryHook(cluster.airflow_conn_id, gpu_node_label_selector=GPU_NODES)
    small = hook.node_shapes(resource=GPU)
    before = sorted((r.path, r.query.get("fieldSelector"), r.items) for r in cluster.responses)
    small_bytes = sum(r.bytes for r in cluster.responses)
    cluster.reset_responses()
    cpu_nodes = [node_object(f"cpu-{i:03d}") for i in range(100)]
    cluster.load(cpu_nodes, [pod_object(f"web-{i:04d}-x", node=f"cpu-{i % 100:03d}") for i in range(2000)])
    assert hook.node_shapes(resource=GPU) == small
    assert sorted((r.path, r.query.get("fieldSelector"), r.items) for r in cluster.responses) == before
    # The same objects; only each list's resourceVersion has grown (4 digits instead of 3).
    assert small_bytes <= sum(r.bytes for r in cluster.responses) <= small_bytes + len(before)


def test_lists_are_read_page_by_page(cluster: ClusterAtScale) -> None:
    nodes, pods = build_cluster(ClusterShape(nodes=25, gpu_nodes=3, pods=120, cordoned_gpu_nodes=0, seed=4))
    # One GPU node with more pods than a page.
    pods += [pod_object(f"sidecar-{i}-x", node="gpu-0000") for i in range(7)]
    cluster.load(nodes, pods)
    shapes = KubernetesInventoryHook(cluster.airflow_conn_id, page_size=3).node_shapes(resource=GPU)
    assert shapes == full_listing_shapes(cluster.core_v1())
    node_pages = [r for r in cluster.responses if r.path == "/api/v1/nodes" and r.query.get("limit") == "3"]
    assert len(node_pages) == 9  # 25 nodes, 3 a page
    assert all(r.items <= 3 for r in cluster.responses if r.query.get("limit"))
    assert sum(1 for r in cluster.responses if "continue" in r.query) >= 8 + 3


def test_a_selector_that_matches_no_gpu_node_falls_back_to_every_node(cluster: ClusterAtScale) -> None:
    """A wrong gpu_node_label_selector must not turn into "no nodes: can never fit"."""
    cluster.load(*mixed_small())
    hook = KubernetesInventoryHook(cluster.airflow_conn_id, gpu_node_label_selector="accelerator=tpu-v5")
    assert hook.node_shapes(resource=GPU) == full_listing_shapes(cluster.core_v1())
    node_lists = [r.query.get("labelSelector") for r in cluster.responses if r.path == "/api/v1/nodes"]
    assert node_lists[0] == "accelerator=tpu-v5"
    assert node_lists[-1] is None


def test_an_implausible_node_is_refused_before_any_pod_is_read(cluster: ClusterAtScale) -> None:
    nodes = [node_object("gpu-a", gpus=8), node_object("gpu-x")]
    nodes[1]["status"]["allocatable"][GPU] = "1T"
    cluster.load(nodes, [pod_object("train-1-x", node="gpu-a", gpus=8)])
    with pytest.raises(
        GuardConfigError, match=r"^node 'gpu-x' status\.allocatable\['nvidia\.com/gpu'\] '1T' is"
    ):
        KubernetesInventoryHook(cluster.airflow_conn_id).node_shapes(resource=GPU)
    assert not [r for r in cluster.responses if r.path == "/api/v1/pods"]
