"""GPU shapes: fit now / ever / never, selectors and taints, fragmentation, and job packing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.policies.gpus import (
    DEFAULT_GPU_RESOURCE,
    FitReport,
    FragmentationPolicy,
    GpuRequest,
    GpuShapeError,
    NodeShape,
    Taint,
    Toleration,
    check_fit,
    pack_jobs,
    require_fit,
    validate_gpu_count,
)

pytestmark = pytest.mark.unit

A100 = {"pool": "a100"}


def node(name: str, allocatable: int, free: int | None = None, **kwargs: object) -> NodeShape:
    return NodeShape(name, allocatable, allocatable if free is None else free, **kwargs)  # type: ignore[arg-type]


# -- fit -------------------------------------------------------------------------------------------


def test_request_that_fits_now() -> None:
    report = check_fit(GpuRequest(4), [node("gpu-a", 8)])
    assert report.fits_now and report.fits_ever
    assert report.eligible_nodes == ("gpu-a",)
    assert report.best_node == "gpu-a"
    assert report.fragmentation_warning is None


def test_best_node_is_the_tightest_fit() -> None:
    """Best fit keeps the 8-free node whole for a later 8-GPU job."""
    nodes = [node("gpu-a", 8, 8), node("gpu-b", 8, 5), node("gpu-c", 8, 4), node("gpu-d", 8, 4)]
    report = check_fit(GpuRequest(4), nodes)
    assert report.best_node == "gpu-c"  # gpu-c and gpu-d tie: inventory order


def test_request_that_fits_ever_but_not_now_is_not_an_error() -> None:
    nodes = [node("gpu-a", 8, 2), node("gpu-b", 8, 3)]
    report = require_fit(GpuRequest(4), nodes)
    assert not report.fits_now
    assert report.fits_ever
    assert report.best_node == "gpu-b"  # fewest GPUs to wait for


def test_request_that_never_fits_fails_fast_with_the_inventory() -> None:
    """A 16-GPU pod on 8-GPU nodes sat Pending for hours while the GPUs idled."""
    nodes = [node("gpu-a", 8, 2), node("gpu-b", 8, 8)]
    report = check_fit(GpuRequest(16), nodes)
    assert not report.fits_now and not report.fits_ever
    assert report.best_node is None
    with pytest.raises(
        GpuShapeError,
        match=(
            r"^GPU request of 16 nvidia\.com/gpu can never fit: no eligible node has 16 GPUs allocatable, "
            r"so the pod would stay Pending forever\. Nodes: gpu-a \(8 allocatable, 2 free, eligible, too "
            r"small for 16\), gpu-b \(8 allocatable, 8 free, eligible, too small for 16\)\. Fix: request at "
            r"most 8 GPUs \(the largest eligible node\), or split the job across pods \(no node has more "
            r"than 8\)$"
        ),
    ):
        require_fit(GpuRequest(16), nodes)


def test_never_fits_message_names_why_each_node_is_out() -> None:
    nodes = [
        node("gpu-a", 8, 8, labels={"pool": "t4"}),
        node("gpu-b", 8, 8, labels=A100, taints=(Taint("dedicated", "infer", "NoSchedule"),)),
        node("gpu-c", 4, 4, labels=A100),
        node("cpu-a", 0, 0),
    ]
    with pytest.raises(GpuShapeError) as caught:
        require_fit(GpuRequest(8, node_selector=A100), nodes)
    message = str(caught.value)
    assert message.startswith("GPU request of 8 nvidia.com/gpu with node_selector pool=a100 can never fit")
    assert (
        "gpu-a (8 allocatable, 8 free, not eligible: node_selector pool=a100 does not match (node has pool=t4))"
        in message
    )
    assert (
        "gpu-b (8 allocatable, 8 free, not eligible: untolerated taint dedicated=infer:NoSchedule)" in message
    )
    assert "gpu-c (4 allocatable, 4 free, eligible, too small for 8)" in message
    assert (
        "cpu-a (0 allocatable, 0 free, not eligible: node_selector pool=a100 does not match (no such label))"
        in message
    )
    assert message.endswith(
        "Fix: request at most 4 GPUs (the largest eligible node), or change node_selector/tolerations so "
        "nodes with enough GPUs become eligible"
    )


def test_empty_inventory_says_to_check_the_resource_name() -> None:
    with pytest.raises(
        GpuShapeError,
        match=r"^GPU request of 1 amd\.com/gpu can never fit: the inventory has no nodes with amd\.com/gpu\. "
        r"Check the resource name",
    ):
        require_fit(GpuRequest(1, resource="amd.com/gpu"), [])


# -- selectors and taints --------------------------------------------------------------------------


def test_node_selector_must_match_every_label() -> None:
    nodes = [
        node("gpu-a", 8, labels={"pool": "a100", "zone": "b"}),
        node("gpu-b", 8, labels={"pool": "a100"}),
        node("gpu-c", 8, labels={"pool": "h100", "zone": "b"}),
    ]
    report = check_fit(GpuRequest(8, node_selector={"pool": "a100", "zone": "b"}), nodes)
    assert report.eligible_nodes == ("gpu-a",)
    by_name = {fit.name: fit for fit in report.nodes}
    assert by_name["gpu-b"].ineligible_because == ("node_selector zone=b does not match (no such label)",)
    assert by_name["gpu-c"].ineligible_because == (
        "node_selector pool=a100 does not match (node has pool=h100)",
    )


@pytest.mark.parametrize(
    ("taint", "tolerations", "eligible"),
    [
        (Taint("nvidia.com/gpu", None, "NoSchedule"), (), False),
        (Taint("nvidia.com/gpu", None, "NoExecute"), (), False),
        (Taint("nvidia.com/gpu", None, "PreferNoSchedule"), (), True),
        (Taint("nvidia.com/gpu", None, "NoSchedule"), (Toleration("nvidia.com/gpu", "Exists"),), True),
        (Taint("dedicated", "train", "NoSchedule"), (Toleration("dedicated", value="train"),), True),
        (Taint("dedicated", "infer", "NoSchedule"), (Toleration("dedicated", value="train"),), False),
        (Taint("dedicated", "infer", "NoSchedule"), (Toleration("dedicated", "Exists"),), True),
        (
            Taint("dedicated", "train", "NoExecute"),
            (Toleration("dedicated", value="train", effect="NoSchedule"),),
            False,
        ),
        (
            Taint("dedicated", "train", "NoSchedule"),
            (Toleration("dedicated", value="train", effect="NoSchedule"),),
            True,
        ),
        (Taint("anything", "x", "NoExecute"), (Toleration(None, "Exists"),), True),
        (Taint("other", None, "NoSchedule"), (Toleration("dedicated", "Exists"),), False),
        (Taint("flag", None, "NoSchedule"), (Toleration("flag"),), True),  # Equal, empty value
    ],
)
def test_taints_and_tolerations_follow_kubernetes_semantics(
    taint: Taint, tolerations: tuple[Toleration, ...], eligible: bool
) -> None:
    report = check_fit(GpuRequest(1, tolerations=tolerations), [node("gpu-a", 8, taints=(taint,))])
    assert (report.eligible_nodes == ("gpu-a",)) is eligible


def test_untolerated_taint_is_named() -> None:
    report = check_fit(GpuRequest(1), [node("gpu-a", 8, taints=(Taint("gpu", "reserved", "NoSchedule"),))])
    assert report.nodes[0].ineligible_because == ("untolerated taint gpu=reserved:NoSchedule",)
    assert not report.fits_ever


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"key": "a", "operator": "In"}, r"operator 'In' is not valid; use 'Equal' or 'Exists'"),
        ({"key": None}, r"toleration without a key must use operator='Exists'"),
        ({"key": "a", "operator": "Exists", "value": "x"}, r"has operator='Exists' and value 'x'"),
        ({"key": "a", "effect": "NoRun"}, r"effect 'NoRun' is not one of NoExecute, NoSchedule"),
    ],
)
def test_invalid_tolerations_are_rejected(kwargs: dict[str, str | None], message: str) -> None:
    with pytest.raises(GuardConfigError, match=message):
        Toleration(**kwargs)  # type: ignore[arg-type]


def test_invalid_taint_effect_is_rejected() -> None:
    with pytest.raises(GuardConfigError, match=r"taint 'a' effect 'Never' is not one of"):
        Taint("a", None, "Never")


# -- fragmentation ---------------------------------------------------------------------------------


def test_three_gpus_on_eight_gpu_nodes_warns_and_names_packing_shapes() -> None:
    report = check_fit(GpuRequest(3), [node("gpu-a", 8), node("gpu-b", 8)])
    assert report.fragmentation_warning == (
        "3 GPUs per pod does not divide the node shapes it can land on: on 8-GPU nodes (gpu-a, gpu-b) one "
        "such pod leaves 5 GPUs that only jobs of <= 5 GPUs can use, and pods of this shape alone strand 2 "
        "of every 8 (8 = 2x3 + 2). Requests of 1, 2, 4, 8 GPUs pack nodes of 8 GPUs exactly (nearest: 2 or 4)"
    )


@pytest.mark.parametrize("gpus", [1, 2, 4, 8])
def test_divisors_of_the_node_size_do_not_fragment(gpus: int) -> None:
    assert check_fit(GpuRequest(gpus), [node("gpu-a", 8), node("gpu-b", 8)]).fragmentation_warning is None


def test_fragmentation_only_counts_nodes_the_request_can_land_on() -> None:
    """A 4-GPU pod cannot land on 6-GPU nodes excluded by its selector; only the 8-GPU pool counts."""
    nodes = [node("gpu-a", 8, labels=A100), node("gpu-b", 6, labels={"pool": "l4"})]
    assert check_fit(GpuRequest(4, node_selector=A100), nodes).fragmentation_warning is None
    mixed = check_fit(GpuRequest(4), nodes).fragmentation_warning
    assert mixed is not None
    assert "on 6-GPU nodes (gpu-b) one such pod leaves 2 GPUs" in mixed
    assert mixed.endswith("Requests of 1, 2 GPUs pack nodes of 6, 8 GPUs exactly (nearest: 2)")


def test_reject_policy_raises_on_fragmentation() -> None:
    with pytest.raises(
        GpuShapeError,
        match=r"^GPU request of 3 nvidia\.com/gpu fragments nodes and fragmentation='reject': 3 GPUs per pod "
        r"does not divide .* Request a packing shape, or set fragmentation='warn'$",
    ):
        require_fit(GpuRequest(3), [node("gpu-a", 8)], fragmentation=FragmentationPolicy.REJECT)


def test_reject_policy_accepts_packing_shapes() -> None:
    report = require_fit(GpuRequest(8), [node("gpu-a", 8)], fragmentation="reject")
    assert report.fits_now


def test_warn_policy_returns_the_warning_and_allow_drops_it() -> None:
    nodes = [node("gpu-a", 8)]
    assert require_fit(GpuRequest(3), nodes).fragmentation_warning is not None
    assert require_fit(GpuRequest(3), nodes, fragmentation="allow").fragmentation_warning is None


def test_unknown_fragmentation_policy_is_rejected() -> None:
    with pytest.raises(
        GuardConfigError, match=r"^fragmentation 'strict' is not valid; use one of 'allow', 'warn', 'reject'$"
    ):
        require_fit(GpuRequest(1), [node("gpu-a", 8)], fragmentation="strict")


# -- inventory text --------------------------------------------------------------------------------


def test_inventory_text_lists_every_node_compactly() -> None:
    report = check_fit(
        GpuRequest(4, node_selector=A100),
        [node("gpu-a", 8, 2, labels=A100), node("gpu-b", 8, 8), node("gpu-c", 2, 2, labels=A100)],
    )
    assert report.inventory_text() == (
        "gpu-a (8 allocatable, 2 free, eligible), "
        "gpu-b (8 allocatable, 8 free, not eligible: node_selector pool=a100 does not match (no such label)), "
        "gpu-c (2 allocatable, 2 free, eligible, too small for 4)"
    )


def test_inventory_text_summarises_large_clusters() -> None:
    nodes = [node(f"gpu-{i:03d}", 8) for i in range(100)]
    text = check_fit(GpuRequest(1), nodes).inventory_text(max_nodes=2)
    assert text == (
        "gpu-000 (8 allocatable, 8 free, eligible), gpu-001 (8 allocatable, 8 free, eligible), "
        "... and 98 more nodes (98 eligible)"
    )


def test_empty_report_inventory() -> None:
    assert FitReport(False, False, (), None, None).inventory_text() == "no nodes"


# -- value validation ------------------------------------------------------------------------------


@pytest.mark.parametrize("gpus", [0, 1, 8, 64])
def test_valid_gpu_counts(gpus: int) -> None:
    assert validate_gpu_count(gpus) == gpus


@pytest.mark.parametrize(
    ("gpus", "message"),
    [
        (True, r"^gpus True is a bool, not an integer; give a whole number of GPUs >= 0 \(0 means no GPU\)$"),
        (1.5, r"^gpus 1\.5 is a float, not an integer"),
        (2.0, r"is a float, not an integer; .*: did you mean 2\?$"),
        ("2", r"^gpus '2' is a str, not an integer; .*: did you mean 2 \(without quotes\)\?$"),
        (None, r"^gpus None is a NoneType"),
        (-1, r"^gpus -1 is negative; give a whole number of GPUs >= 0"),
    ],
)
def test_invalid_gpu_counts(gpus: object, message: str) -> None:
    with pytest.raises(GuardConfigError, match=message):
        validate_gpu_count(gpus)


def test_gpu_count_error_uses_the_parameter_name() -> None:
    with pytest.raises(GuardConfigError, match=r"^gpus_per_pod -2 is negative"):
        validate_gpu_count(-2, name="gpus_per_pod")


def test_request_needs_at_least_one_gpu() -> None:
    with pytest.raises(GuardConfigError, match=r"GpuRequest gpus 0 asks for no GPU; .* ask for at least 1"):
        GpuRequest(0)
    assert GpuRequest(2).resource == DEFAULT_GPU_RESOURCE == "nvidia.com/gpu"


def test_node_free_gpus_cannot_exceed_allocatable() -> None:
    with pytest.raises(
        GuardConfigError,
        match=r"^node 'gpu-a': gpus_free 9 is more than gpus_allocatable 8; compute it as max\(0, allocatable",
    ):
        NodeShape("gpu-a", 8, 9)


def test_node_labels_are_copied_and_read_only() -> None:
    labels = {"pool": "a100"}
    shape = NodeShape("gpu-a", 8, 8, labels=labels)
    labels["pool"] = "t4"
    assert shape.labels == {"pool": "a100"}
    with pytest.raises(TypeError):
        shape.labels["pool"] = "h100"  # type: ignore[index]


def test_node_selector_must_be_strings() -> None:
    with pytest.raises(GuardConfigError, match=r"node_selector \{'gpus': 8\} must be a mapping of strings"):
        GpuRequest(1, node_selector={"gpus": 8})  # type: ignore[dict-item]


# -- packing ---------------------------------------------------------------------------------------


def test_packing_report_for_a_mixed_mix_on_two_eight_gpu_nodes() -> None:
    """Jobs [3,3,3,3,4] on 2x8: FFD best fit places 4+3 on gpu-a (1 left) and 3+3 on gpu-b (2 left).

    The fifth job (3) fits nowhere. 13 of 16 GPUs are used; the 1 + 2 left over are stranded, since the
    smallest job in the mix needs 3.
    """
    report = pack_jobs([node("gpu-a", 8), node("gpu-b", 8)], [3, 3, 3, 3, 4])
    assert report.jobs_placed == 4
    assert report.jobs_unplaced == 1
    assert report.gpus_total == 16
    assert report.gpus_used == 13
    assert report.gpus_left == 3
    assert report.gpus_stranded == 3
    assert report.placements == (("gpu-a", 4), ("gpu-a", 3), ("gpu-b", 3), ("gpu-b", 3))


def test_packing_shapes_pack_exactly() -> None:
    report = pack_jobs([node("gpu-a", 8), node("gpu-b", 8)], [4, 4, 2, 2, 2, 2])
    assert (report.jobs_placed, report.jobs_unplaced, report.gpus_used, report.gpus_stranded) == (6, 0, 16, 0)


def test_leftovers_a_job_of_the_mix_could_use_are_not_stranded() -> None:
    report = pack_jobs([node("gpu-a", 8)], [4])
    assert (report.gpus_left, report.gpus_stranded) == (4, 0)


def test_packing_uses_free_gpus_not_allocatable() -> None:
    report = pack_jobs([node("gpu-a", 8, 2), node("gpu-b", 8, 5)], [4, 2])
    assert report.placements == (("gpu-b", 4), ("gpu-a", 2))
    assert (report.gpus_total, report.gpus_used, report.gpus_stranded) == (7, 6, 1)


def test_empty_mix_and_empty_inventory() -> None:
    empty = pack_jobs([node("gpu-a", 8)], [])
    assert (empty.jobs_placed, empty.gpus_total, empty.gpus_used, empty.gpus_stranded) == (0, 8, 0, 0)
    nowhere = pack_jobs([], [1, 2])
    assert (nowhere.jobs_placed, nowhere.jobs_unplaced, nowhere.gpus_total) == (0, 2, 0)


@pytest.mark.parametrize(
    ("jobs", "message"),
    [
        ([2, 0], r"^jobs\[1\] asks for 0 GPUs; leave jobs without GPUs out of the mix$"),
        ([True], r"^jobs\[0\] True is a bool"),
        ([-1], r"^jobs\[0\] -1 is negative"),
    ],
)
def test_invalid_jobs_are_rejected(jobs: list[int], message: str) -> None:
    with pytest.raises(GuardConfigError, match=message):
        pack_jobs([node("gpu-a", 8)], jobs)


@st.composite
def inventories(draw: st.DrawFn) -> list[NodeShape]:
    sizes = draw(st.lists(st.integers(min_value=0, max_value=16), max_size=6))
    return [NodeShape(f"n{i}", size, draw(st.integers(0, size))) for i, size in enumerate(sizes)]


@given(inventories(), st.lists(st.integers(min_value=1, max_value=16), max_size=12))
def test_packing_never_overcommits_and_the_accounting_adds_up(
    nodes: list[NodeShape], jobs: list[int]
) -> None:
    report = pack_jobs(nodes, jobs)
    used_per_node: dict[str, int] = {}
    for name, gpus in report.placements:
        used_per_node[name] = used_per_node.get(name, 0) + gpus
    for shape in nodes:
        assert used_per_node.get(shape.name, 0) <= shape.gpus_free
    assert report.jobs_placed + report.jobs_unplaced == len(jobs)
    assert report.jobs_placed == len(report.placements)
    assert report.gpus_total == sum(shape.gpus_free for shape in nodes)
    assert report.gpus_used == sum(gpus for _, gpus in report.placements)
    assert report.gpus_used + report.gpus_left == report.gpus_total
    assert 0 <= report.gpus_stranded <= report.gpus_left
    sizes = [gpus for _, gpus in report.placements]
    assert sizes == sorted(sizes, reverse=True)  # largest first
    # A job left out did not fit anywhere, and the free space only shrank after it was refused.
    left = {shape.name: shape.gpus_free - used_per_node.get(shape.name, 0) for shape in nodes}
    placed = sorted((g for _, g in report.placements), reverse=True)
    unplaced = list(jobs)
    for gpus in placed:
        unplaced.remove(gpus)
    for gpus in unplaced:
        assert all(free < gpus for free in left.values())


@given(inventories(), st.integers(min_value=1, max_value=16))
def test_fit_report_is_consistent(nodes: list[NodeShape], gpus: int) -> None:
    report = check_fit(GpuRequest(gpus), nodes)
    assert report.fits_now == any(shape.gpus_free >= gpus for shape in nodes)
    assert report.fits_ever == any(shape.gpus_allocatable >= gpus for shape in nodes)
    assert (report.best_node is None) == (not report.fits_ever)
    if report.fits_now:
        best = next(shape for shape in nodes if shape.name == report.best_node)
        assert best.gpus_free >= gpus


# -- a resource no node offers, implausible inventories (issue 13 §4) --------------------------------


MIG = "nvidia.com/mig-1g.10gb"


def test_resource_no_node_offers_names_the_offered_resources_and_the_name_to_use() -> None:
    """Regression: MIG-only nodes read for nvidia.com/gpu came back as eligible nodes with 0 GPUs, and
    the fix said "split the job across pods (no node has more than 0)"."""
    nodes = [
        node("gpu-a", 0, other_gpu_resources={MIG: 7, "nvidia.com/mig-3g.40gb": 2}),
        node("gpu-b", 0, other_gpu_resources={MIG: 7}),
        node("cpu-1", 0),
    ]
    with pytest.raises(GpuShapeError) as caught:
        require_fit(GpuRequest(2), nodes)
    message = str(caught.value)
    assert message == (
        "GPU request of 2 nvidia.com/gpu can never fit: none of the 3 nodes offers nvidia.com/gpu (every "
        "node has 0 allocatable). The nodes offer nvidia.com/mig-1g.10gb (up to 7 per node, on gpu-a, "
        "gpu-b); nvidia.com/mig-3g.40gb (up to 2 per node, on gpu-a). Fix: request the resource the nodes "
        "offer, e.g. resource='nvidia.com/mig-1g.10gb' (gpu_resource= on the operator); MIG slices and "
        "time-sliced replicas are registered under their own names"
    )
    assert "split the job" not in message


def test_suggested_resource_can_hold_the_request() -> None:
    nodes = [node("gpu-a", 0, other_gpu_resources={MIG: 7, "nvidia.com/mig-7g.80gb": 1})]
    with pytest.raises(GpuShapeError, match=r"e\.g\. resource='nvidia\.com/mig-1g\.10gb'"):
        require_fit(GpuRequest(4), nodes)
    with pytest.raises(GpuShapeError, match=r"e\.g\. resource='amd\.com/gpu'"):
        require_fit(GpuRequest(1), [node("mi300", 0, other_gpu_resources={"amd.com/gpu": 8})])


def test_nodes_without_any_gpu_like_resource_say_to_check_the_name_and_the_device_plugin() -> None:
    with pytest.raises(
        GpuShapeError,
        match=r"^GPU request of 1 nvidia\.com/gpu can never fit: none of the 2 nodes offers nvidia\.com/gpu "
        r"\(every node has 0 allocatable\), and none offers another GPU-like resource\. Check the resource "
        r"name .*and that the device plugin runs on the GPU nodes$",
    ):
        require_fit(GpuRequest(1), [node("cpu-1", 0), node("cpu-2", 0)])


def test_some_nodes_with_the_resource_keep_the_too_small_message() -> None:
    nodes = [node("gpu-a", 4), node("mig-a", 0, other_gpu_resources={MIG: 7})]
    with pytest.raises(GpuShapeError, match=r"split the job across pods \(no node has more than 4\)$"):
        require_fit(GpuRequest(8), nodes)


def test_implausible_node_gpu_count_is_refused() -> None:
    """Regression: a node with a misparsed allocatable ("1T" = 10**12 GPUs) hung the fit check."""
    with pytest.raises(
        GuardConfigError,
        match=r"^node 'huge': gpus_allocatable 1000000000000 is not a plausible GPU count \(more than 4096 "
        r"on one node\); the inventory is misread \(a quantity such as '1T' is 10\*\*12\)",
    ):
        NodeShape("huge", 10**12, 0)
    with pytest.raises(
        GuardConfigError, match=r"other_gpu_resources\['nvidia\.com/mig-1g\.10gb'\] 5000 is not"
    ):
        NodeShape("gpu-a", 8, 8, other_gpu_resources={MIG: 5000})


@pytest.mark.parametrize(
    ("sizes", "gpus", "packing"),
    [
        ([36], 5, "1, 2, 3, 4, 6, 9, 12, 18, 36"),  # a perfect square: its root listed once
        ([4096, 4096], 3, "1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096"),
        ([4096, 4093], 2, "1"),  # 4093 is prime
    ],
)
def test_fragmentation_names_the_packing_shapes_of_large_nodes(
    sizes: list[int], gpus: int, packing: str
) -> None:
    report = check_fit(GpuRequest(gpus), [node(f"n{i}", size) for i, size in enumerate(sizes)])
    assert report.fragmentation_warning is not None
    assert f"Requests of {packing} GPUs pack nodes of" in report.fragmentation_warning


def test_other_gpu_resources_must_be_counts() -> None:
    with pytest.raises(GuardConfigError, match=r"other_gpu_resources \{'': 1\} must map resource names"):
        NodeShape("gpu-a", 0, 0, other_gpu_resources={"": 1})
    with pytest.raises(GuardConfigError, match=r"other_gpu_resources\['amd\.com/gpu'\] '8' is a str"):
        NodeShape("gpu-a", 0, 0, other_gpu_resources={"amd.com/gpu": "8"})  # type: ignore[dict-item]
