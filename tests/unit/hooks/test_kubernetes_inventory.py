"""GPU inventory arithmetic from Kubernetes API objects (plain camelCase dicts, as the API sends)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from kubernetes.utils.quantity import parse_quantity as kubernetes_parse_quantity

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.hooks.kubernetes_inventory import (
    KubernetesInventoryHook,
    node_shapes,
    parse_quantity,
    remaining_quota,
)
from airflow_training_guard.policies.gpus import GpuRequest, GpuShapeError, require_fit

GPU = "nvidia.com/gpu"


def node(
    name: str,
    gpus: str,
    *,
    unschedulable: bool = False,
    taints: list | None = None,
    labels: dict | None = None,
    resource: str = GPU,
) -> dict:
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"unschedulable": unschedulable, "taints": taints or []},
        "status": {"allocatable": {resource: gpus, "cpu": "64", "memory": "512Gi"}},
    }


def pod(node_name: str | None, gpus: int, *, phase: str = "Running", init_gpus: int = 0) -> dict:
    return {
        "spec": {
            "nodeName": node_name,
            "containers": [
                {"name": "base", "resources": {"requests": {GPU: str(gpus)}, "limits": {GPU: str(gpus)}}}
            ],
            "initContainers": [{"name": "init", "resources": {"limits": {GPU: str(init_gpus)}}}]
            if init_gpus
            else [],
        },
        "status": {"phase": phase},
    }


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("8", Decimal(8)),
        ("500m", Decimal("0.5")),
        ("16Gi", Decimal(16 * 2**30)),
        ("1k", Decimal(1000)),
        (4, Decimal(4)),
    ],
)
def test_parse_quantity_understands_kubernetes_suffixes(text: str, value: Decimal) -> None:
    assert parse_quantity(text) == value


def test_parse_quantity_rejects_garbage_naming_the_value() -> None:
    with pytest.raises(ValueError, match=r"'eight' is not a Kubernetes quantity"):
        parse_quantity("eight")


def test_free_gpus_are_allocatable_minus_requests_of_running_pods_on_the_node() -> None:
    shapes = node_shapes(
        [node("gpu-a", "8"), node("gpu-b", "8")],
        [pod("gpu-a", 3), pod("gpu-a", 2), pod("gpu-b", 8, phase="Succeeded"), pod(None, 4, phase="Pending")],
        resource=GPU,
    )
    assert [(s.name, s.gpus_allocatable, s.gpus_free) for s in shapes] == [("gpu-a", 8, 3), ("gpu-b", 8, 8)]


def test_init_containers_count_as_the_scheduler_counts_them() -> None:
    shapes = node_shapes([node("gpu-a", "8")], [pod("gpu-a", 1, init_gpus=4)], resource=GPU)
    assert shapes[0].gpus_free == 4


def test_cordoned_nodes_offer_no_capacity() -> None:
    assert node_shapes([node("gpu-a", "8", unschedulable=True)], [], resource=GPU) == []


def test_taints_and_labels_are_carried_for_the_fit_check() -> None:
    shapes = node_shapes(
        [node("gpu-a", "8", taints=[{"key": GPU, "effect": "NoSchedule"}], labels={"pool": "a100"})],
        [],
        resource=GPU,
    )
    assert shapes[0].labels == {"pool": "a100"}
    assert shapes[0].taints[0].key == GPU
    assert shapes[0].taints[0].effect == "NoSchedule"


def test_nodes_without_the_gpu_resource_have_zero_gpus() -> None:
    cpu_node = {"metadata": {"name": "cpu-1"}, "spec": {}, "status": {"allocatable": {"cpu": "32"}}}
    assert node_shapes([cpu_node], [], resource=GPU)[0].gpus_allocatable == 0


def test_remaining_quota_is_the_tightest_requests_quota() -> None:
    quotas = [
        {"status": {"hard": {f"requests.{GPU}": "16"}, "used": {f"requests.{GPU}": "12"}}},
        {"status": {"hard": {f"requests.{GPU}": "8"}, "used": {f"requests.{GPU}": "2"}}},
        {"status": {"hard": {"requests.cpu": "100"}, "used": {"requests.cpu": "1"}}},
    ]
    assert remaining_quota(quotas, resource=GPU) == 4


def test_no_gpu_quota_means_no_limit() -> None:
    assert remaining_quota([{"status": {"hard": {"pods": "10"}}}], resource=GPU) is None
    assert remaining_quota([], resource=GPU) is None


@pytest.mark.parametrize("text", ["8", "0", "500m", "16Gi", "1k", "2K", "1E", "1.5", "12e3", "250u"])
def test_quantities_parse_exactly_as_the_kubernetes_client_parses_them(text: str) -> None:
    """Issue 19: our own copy of the quantity parser disagreed with the client library ("2K")."""
    assert parse_quantity(text) == kubernetes_parse_quantity(text)


def test_allocatable_of_1T_gpus_is_refused_naming_the_node_and_the_value() -> None:
    """Regression: a node reporting "1T" GPUs (10**12) hung the pod operator's fragmentation check."""
    with pytest.raises(
        GuardConfigError,
        match=r"^node 'gpu-x' status\.allocatable\['nvidia\.com/gpu'\] '1T' is 1000000000000 GPUs, not a "
        r"plausible count \(at most 4096 on one node\); the inventory is misreported or misread",
    ):
        node_shapes([node("gpu-a", "8"), node("gpu-x", "1T")], [], resource=GPU)


@pytest.mark.parametrize("value", ["500m", "NaN", "-8", "Infinity"])
def test_gpu_allocatable_that_is_not_a_whole_number_is_refused(value: str) -> None:
    with pytest.raises(
        GuardConfigError,
        match=rf"^node 'gpu-a' status\.allocatable\['nvidia\.com/gpu'\] '{value}' is not a whole number of GPUs",
    ):
        node_shapes([node("gpu-a", value)], [], resource=GPU)


def test_unparsable_gpu_allocatable_names_node_and_value() -> None:
    with pytest.raises(
        GuardConfigError, match=r"^node 'gpu-a' status\.allocatable\['nvidia\.com/gpu'\]: 'eight' is not"
    ):
        node_shapes([node("gpu-a", "eight")], [], resource=GPU)


def test_mig_only_nodes_read_for_nvidia_gpu_name_the_mig_resource_to_use() -> None:
    """Regression (issue 13): MIG-only nodes read for nvidia.com/gpu gave "split the job across pods
    (no node has more than 0)" instead of the resource name the nodes offer."""
    mig = "nvidia.com/mig-1g.10gb"
    shapes = node_shapes(
        [
            node("mig-a", "7", resource=mig),
            node("mig-b", "7", resource=mig),
            node("cpu-1", "0", resource="cpu"),
        ],
        [],
        resource=GPU,
    )
    assert [dict(shape.other_gpu_resources) for shape in shapes] == [{mig: 7}, {mig: 7}, {}]
    with pytest.raises(
        GpuShapeError,
        match=r"none of the 3 nodes offers nvidia\.com/gpu \(every node has 0 allocatable\)\. The nodes offer "
        r"nvidia\.com/mig-1g\.10gb \(up to 7 per node, on mig-a, mig-b\)\. Fix: request the resource the nodes "
        r"offer, e\.g\. resource='nvidia\.com/mig-1g\.10gb'",
    ):
        require_fit(GpuRequest(1), shapes)


def test_only_gpu_like_extended_resources_are_carried_and_odd_values_are_ignored() -> None:
    raw = node("gpu-a", "8")
    raw["status"]["allocatable"].update(
        {
            "amd.com/gpu": "2",
            "hugepages-2Mi": "0",
            "rdma/hca": "1",
            "google.com/tpu": "junk",
            "aws.amazon.com/neuron": "0",
        }
    )
    assert dict(node_shapes([raw], [], resource=GPU)[0].other_gpu_resources) == {"amd.com/gpu": 2}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"page_size": 0}, r"^page_size 0 must be an integer >= 1$"),
        ({"max_workers": True}, r"^max_workers True must be an integer >= 1$"),
        (
            {"gpu_node_label_selector": " "},
            r"^gpu_node_label_selector ' ' must be a non-empty label selector",
        ),
    ],
)
def test_hook_settings_are_checked(kwargs: dict, message: str) -> None:
    with pytest.raises(GuardConfigError, match=message):
        KubernetesInventoryHook("kubernetes_default", **kwargs)


def test_gpu_node_label_selector_comes_from_the_airflow_configuration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIRFLOW__TRAINING_GUARD__GPU_NODE_LABEL_SELECTOR", "nvidia.com/gpu.present=true")
    assert KubernetesInventoryHook().gpu_node_label_selector == "nvidia.com/gpu.present=true"
    assert KubernetesInventoryHook(gpu_node_label_selector="pool=a100").gpu_node_label_selector == "pool=a100"
    monkeypatch.setenv("AIRFLOW__TRAINING_GUARD__GPU_NODE_LABEL_SELECTOR", "")
    assert KubernetesInventoryHook().gpu_node_label_selector is None
