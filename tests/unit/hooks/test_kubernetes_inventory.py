"""GPU inventory arithmetic from Kubernetes API objects (plain camelCase dicts, as the API sends)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from airflow_training_guard.hooks.kubernetes_inventory import node_shapes, parse_quantity, remaining_quota

GPU = "nvidia.com/gpu"


def node(
    name: str,
    gpus: str,
    *,
    unschedulable: bool = False,
    taints: list | None = None,
    labels: dict | None = None,
) -> dict:
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"unschedulable": unschedulable, "taints": taints or []},
        "status": {"allocatable": {GPU: gpus, "cpu": "64"}},
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
