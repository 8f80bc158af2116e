#!/usr/bin/env python3
"""Cost of one GPU capacity check on a big cluster: the full listing vs. the GPU-node reads, side by side.

Issue 17: every pod operator start listed every node and every non-terminated pod of the cluster
(``list_node()`` + ``list_pod_for_all_namespaces()``) and deserialized both into client models.
This loads the Kubernetes API emulator (kmock, made to list as the real API server's watch cache
does: ``tests/integration/kubernetes/cluster_at_scale.py``) with a mixed cluster, by default
5,000 nodes of which 500 carry 8 GPUs, and 100,000 pods, and measures one capacity check in
three modes, each with the real ``kubernetes`` client over HTTP on loopback:

- ``full_listing``: the check as it was (every node, every non-terminated pod, client models);
- ``gpu_node_pods``: ``KubernetesInventoryHook`` by default: every node in pages of 500, raw JSON,
  pods listed only for the nodes that offer the GPU resource (``fieldSelector=spec.nodeName=…``);
- ``gpu_node_selector``: the same with ``gpu_node_label_selector="nvidia.com/gpu.present=true"``.

Figures per mode: bytes the server sent (list bodies, compact JSON as the API server writes it),
API calls, wall seconds of the check (client and the in-process server share this machine's
cores), and peak RSS growth. Fit decisions (fits now, fits ever, best node, fragmentation warning)
for a set of requests are compared with ``full_listing``'s. The cluster's shape (which pods run
where) is in ``ClusterShape``: GPU nodes run few large pods, CPU nodes many small ones; the bytes
saved depend on that share (printed as ``pods_on_gpu_nodes``).

Verdict: ``pass`` when the decisions of both new modes equal the full listing's and the bytes of
``gpu_node_selector`` (the configuration docs/performance.md recommends for large clusters) are
at least ``--target`` (20) times fewer; ``meets_target`` says it for each mode.

    .venv/bin/python benchmarks/cluster_capacity.py               # 5,000 nodes, 100,000 pods
    .venv/bin/python benchmarks/cluster_capacity.py --scale 0.1   # 500 nodes, 10,000 pods
    .venv/bin/python benchmarks/cluster_capacity.py --full-listing wire

``--full-listing wire`` sends the old check's two requests but parses their raw JSON instead of
building client models (mode ``full_listing_wire``): the same bytes, calls and shapes, and a lower
bound of the old check's time. Use it where building 100,000 pod models takes too long (249 s
for 10,000 pods at ``--scale 0.1`` on this shared 2-core machine, so most of an hour at full scale).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from airflow_training_guard.hooks.kubernetes_inventory import (  # noqa: E402
    KubernetesInventoryHook,
    node_shapes,
)
from airflow_training_guard.policies.gpus import GpuRequest, NodeShape, Toleration, check_fit  # noqa: E402
from tests.integration.kubernetes.cluster_at_scale import (  # noqa: E402
    ClusterAtScale,
    ClusterShape,
    build_cluster,
    full_listing_shapes,
)

GPU = "nvidia.com/gpu"
GPU_NODES = "nvidia.com/gpu.present=true"
TOLERATE = (Toleration(GPU, "Exists"),)
REQUESTS = [
    GpuRequest(gpus, node_selector=selector, tolerations=TOLERATE)
    for gpus in (1, 2, 3, 4, 8, 16)
    for selector in ({}, {"pool": "a100"}, {"pool": "h100"})
] + [GpuRequest(1)]  # no toleration: every GPU node is tainted


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _decisions(shapes: list[NodeShape]) -> list[tuple[Any, ...]]:
    out = []
    for request in REQUESTS:
        report = check_fit(request, shapes)
        out.append((report.fits_now, report.fits_ever, report.best_node, report.fragmentation_warning))
    return out


def _full_listing_wire(client: Any) -> list[NodeShape]:
    """The old check's two requests, with their raw JSON parsed instead of client models built."""
    nodes = json.loads(client.list_node(_preload_content=False).data)["items"]
    pods = json.loads(
        client.list_pod_for_all_namespaces(
            field_selector="status.phase!=Succeeded,status.phase!=Failed", _preload_content=False
        ).data
    )["items"]
    return node_shapes(nodes, pods, resource=GPU)


def _measure(api: ClusterAtScale, name: str, check: Any) -> tuple[dict[str, Any], list[NodeShape]]:
    api.reset_responses()
    rss_before = _peak_rss_mib()
    start = time.perf_counter()
    shapes = check()
    seconds = time.perf_counter() - start
    responses = api.responses
    return {
        "mode": name,
        "bytes": sum(r.bytes for r in responses),
        "api_calls": len(responses),
        "items": sum(r.items for r in responses),
        "seconds": round(seconds, 3),
        "peak_rss_growth_mib": round(_peak_rss_mib() - rss_before, 1),
    }, shapes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--gpu-nodes", type=int, default=500)
    parser.add_argument("--pods", type=int, default=100_000)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply nodes, GPU nodes and pods")
    parser.add_argument("--target", type=float, default=20.0, help="bytes ratio the selector mode must reach")
    parser.add_argument(
        "--full-listing",
        choices=("models", "wire"),
        default="models",
        help="the old check as it ran (client models), or only its requests, parsed as raw JSON",
    )
    args = parser.parse_args()
    os.environ.pop("AIRFLOW__TRAINING_GUARD__GPU_NODE_LABEL_SELECTOR", None)  # each mode sets its own
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # one line per request otherwise
    shape = ClusterShape(
        nodes=round(args.nodes * args.scale),
        gpu_nodes=round(args.gpu_nodes * args.scale),
        pods=round(args.pods * args.scale),
    )
    start = time.perf_counter()
    nodes, pods = build_cluster(shape)
    gpu_names = {n["metadata"]["name"] for n in nodes if GPU in n["status"]["allocatable"]}
    on_gpu_nodes = sum(
        1
        for p in pods
        if p["spec"].get("nodeName") in gpu_names and p["status"]["phase"] not in ("Succeeded", "Failed")
    )
    with tempfile.TemporaryDirectory() as workdir, ClusterAtScale.running(Path(workdir)) as api:
        api.load(nodes, pods)
        del nodes, pods
        setup_seconds = time.perf_counter() - start
        client = api.core_v1()
        default_hook = KubernetesInventoryHook()
        default_hook.client = client  # type: ignore[misc]
        selector_hook = KubernetesInventoryHook(gpu_node_label_selector=GPU_NODES)
        selector_hook.client = client  # type: ignore[misc]
        # The new modes first: peak RSS only grows, so the full listing's growth is its own.
        new, new_shapes = _measure(api, "gpu_node_pods", lambda: default_hook.node_shapes(resource=GPU))
        sel, sel_shapes = _measure(api, "gpu_node_selector", lambda: selector_hook.node_shapes(resource=GPU))
        if args.full_listing == "models":
            old, old_shapes = _measure(api, "full_listing", lambda: full_listing_shapes(client, resource=GPU))
        else:
            old, old_shapes = _measure(api, "full_listing_wire", lambda: _full_listing_wire(client))

    expected = _decisions(old_shapes)
    same_default = _decisions(new_shapes) == expected and new_shapes == old_shapes
    same_selector = _decisions(sel_shapes) == expected

    def ratio(a: float, b: float) -> float:
        return round(a / b, 1) if b else float("inf")

    figures = {
        "cluster": {
            "nodes": shape.nodes,
            "gpu_nodes": shape.gpu_nodes,
            "pods": shape.pods,
            "pods_on_gpu_nodes": on_gpu_nodes,
            "setup_seconds": round(setup_seconds, 1),
        },
        "modes": [old, new, sel],
        "bytes_ratio": {
            "gpu_node_pods": ratio(old["bytes"], new["bytes"]),
            "gpu_node_selector": ratio(old["bytes"], sel["bytes"]),
        },
        "time_ratio": {
            "gpu_node_pods": ratio(old["seconds"], new["seconds"]),
            "gpu_node_selector": ratio(old["seconds"], sel["seconds"]),
        },
        "same_decisions": {
            "gpu_node_pods": same_default,
            "gpu_node_selector": same_selector,
            "requests_compared": len(REQUESTS),
        },
        "target_bytes_ratio": args.target,
    }
    meets = {mode: value >= args.target for mode, value in figures["bytes_ratio"].items()}
    figures["meets_target"] = meets
    figures["verdict"] = "pass" if same_default and same_selector and meets["gpu_node_selector"] else "fail"
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
