"""GPU request shapes checked against the node inventory before a pod is created.

The production failure this prevents: a pod asks for more GPUs than any node it may run on has
(or only nodes it cannot tolerate have), and it sits ``Pending`` for hours while GPUs elsewhere
idle; or a request such as 3 GPUs on 8-GPU nodes leaves GPU remainders that no other job can use.
:func:`require_fit` fails fast, with the inventory and the reason each node is out, when a request
can never fit; :func:`check_fit` reports whether it fits now, fits once GPUs free up, and whether
its shape fragments the nodes; :func:`pack_jobs` shows how a mix of jobs packs onto the free GPUs.

Node eligibility follows Kubernetes scheduling semantics for the two things a training pod
controls: ``nodeSelector`` (every key must be a node label with that value) and taints versus
tolerations (a ``NoSchedule`` or ``NoExecute`` taint excludes the node unless tolerated;
``PreferNoSchedule`` is only a preference and is ignored). Affinity rules are not modelled.

Pure Python, standard library only, no Airflow or kubernetes import: the inventory hook turns
``V1Node`` objects and the pods running on them into :class:`NodeShape` values.
"""

from __future__ import annotations

import difflib
import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from airflow_training_guard.exceptions import GuardConfigError

#: The extended resource name the NVIDIA device plugin registers.
DEFAULT_GPU_RESOURCE = "nvidia.com/gpu"
#: Taint effects that keep a pod off a node unless it tolerates them.
BLOCKING_EFFECTS = frozenset({"NoSchedule", "NoExecute"})
#: Every taint effect Kubernetes knows.
TAINT_EFFECTS = frozenset({"NoSchedule", "PreferNoSchedule", "NoExecute"})
#: Toleration operators Kubernetes knows.
TOLERATION_OPERATORS = frozenset({"Equal", "Exists"})
#: Nodes listed in an error message before the rest is summarised.
MAX_INVENTORY_NODES = 40
#: The most GPUs of one resource a node may report. Real nodes have 1 to 16 GPUs, or a few dozen
#: MIG slices or time-sliced replicas; more is a misread quantity (``"1T"`` is 10**12 GPUs), and
#: such a node once hung the fit check (issue 13). Inventories beyond this are refused.
MAX_GPUS_PER_NODE = 4096


class GpuShapeError(GuardConfigError):
    """A GPU request can never be scheduled, or its shape fragments nodes under a ``reject`` policy."""


def validate_gpu_count(gpus: object, *, name: str = "gpus") -> int:
    """Check that ``gpus`` is a whole number of GPUs ``>= 0`` and return it.

    ``0`` means "no GPU"; the operator then requests none. Booleans are refused although Python
    treats them as integers: ``gpus=True`` is a bug, not one GPU.

    :param gpus: the value to check.
    :param name: the parameter's name for the error message.
    :raises GuardConfigError: for booleans, non-integers (``1.5``, ``"2"``) and negative values.
    """
    if isinstance(gpus, bool) or not isinstance(gpus, int):
        hint = ""
        if isinstance(gpus, float) and gpus.is_integer():
            hint = f": did you mean {int(gpus)}?"
        elif isinstance(gpus, str) and gpus.strip().isdigit():
            hint = f": did you mean {int(gpus)} (without quotes)?"
        raise GuardConfigError(
            f"{name} {gpus!r} is a {type(gpus).__name__}, not an integer; give a whole number of GPUs "
            f">= 0 (0 means no GPU){hint}"
        )
    if gpus < 0:
        raise GuardConfigError(
            f"{name} {gpus} is negative; give a whole number of GPUs >= 0 (0 means no GPU)"
        )
    return gpus


def _check_str_mapping(value: object, what: str) -> Mapping[str, str]:
    if not isinstance(value, Mapping) or not all(
        isinstance(key, str) and isinstance(item, str) for key, item in value.items()
    ):
        raise GuardConfigError(
            f"{what} {value!r} must be a mapping of strings to strings, e.g. {{'pool': 'a100'}}"
        )
    return MappingProxyType(dict(value))


@dataclass(frozen=True)
class Taint:
    """A node taint, as in ``V1Taint``: pods that do not tolerate it are kept off (or evicted).

    :param key: the taint key, e.g. ``"nvidia.com/gpu"``.
    :param value: the taint value, or ``None``.
    :param effect: ``"NoSchedule"``, ``"PreferNoSchedule"`` or ``"NoExecute"``.
    """

    key: str
    value: str | None
    effect: str

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key:
            raise GuardConfigError(f"taint key {self.key!r} must be a non-empty string")
        if self.effect not in TAINT_EFFECTS:
            raise GuardConfigError(
                f"taint {self.key!r} effect {self.effect!r} is not one of {', '.join(sorted(TAINT_EFFECTS))}"
            )

    def __str__(self) -> str:
        """``key=value:Effect`` (or ``key:Effect``), as ``kubectl describe node`` shows it."""
        return f"{self.key}={self.value}:{self.effect}" if self.value else f"{self.key}:{self.effect}"


@dataclass(frozen=True)
class Toleration:
    """A pod toleration with Kubernetes semantics (``V1Toleration`` without ``tolerationSeconds``).

    - ``operator="Equal"`` tolerates taints with this ``key`` and ``value``;
      ``operator="Exists"`` tolerates taints with this ``key`` whatever their value.
    - ``key=None`` with ``operator="Exists"`` tolerates every taint.
    - ``effect=None`` matches every effect; otherwise only taints with that effect.

    :param key: the taint key to tolerate, or ``None`` (only with ``operator="Exists"``).
    :param operator: ``"Equal"`` (default) or ``"Exists"``.
    :param value: the taint value for ``Equal``; must be ``None`` for ``Exists``.
    :param effect: the taint effect to tolerate, or ``None`` for all.
    """

    key: str | None
    operator: str = "Equal"
    value: str | None = None
    effect: str | None = None

    def __post_init__(self) -> None:
        if self.operator not in TOLERATION_OPERATORS:
            raise GuardConfigError(
                f"toleration {self.key!r} operator {self.operator!r} is not valid; use 'Equal' or 'Exists'"
            )
        if not self.key and self.operator != "Exists":
            raise GuardConfigError(
                f"toleration without a key must use operator='Exists' (tolerates every taint), not "
                f"{self.operator!r}; give a key to tolerate one taint"
            )
        if self.operator == "Exists" and self.value:
            raise GuardConfigError(
                f"toleration {self.key!r} has operator='Exists' and value {self.value!r}; Kubernetes "
                "rejects that: drop the value, or use operator='Equal'"
            )
        if self.effect is not None and self.effect not in TAINT_EFFECTS:
            raise GuardConfigError(
                f"toleration {self.key!r} effect {self.effect!r} is not one of "
                f"{', '.join(sorted(TAINT_EFFECTS))} (or None for all)"
            )

    def tolerates(self, taint: Taint) -> bool:
        """Whether this toleration tolerates ``taint`` (``Toleration.ToleratesTaint`` in Kubernetes)."""
        if self.effect is not None and self.effect != taint.effect:
            return False
        if self.key and self.key != taint.key:
            return False
        if self.operator == "Exists":
            return True
        return (self.value or "") == (taint.value or "")


@dataclass(frozen=True)
class NodeShape:
    """One node's GPUs of the requested resource, with what a pod needs to know to land on it.

    :param name: the node name.
    :param gpus_allocatable: ``status.allocatable[resource]`` of the node (>= 0).
    :param gpus_free: allocatable minus the GPUs that pods running on the node request; the hook
        clamps it to ``0 <= gpus_free <= gpus_allocatable`` (a device plugin restart can briefly
        report fewer GPUs than running pods hold).
    :param labels: the node's labels, matched against ``node_selector``.
    :param taints: the node's taints, matched against tolerations.
    :param other_gpu_resources: GPU-like extended resources the node offers besides the one this
        shape describes, name to allocatable (``{"nvidia.com/mig-1g.10gb": 7}``): when no node
        offers the requested resource, the error names these and suggests the resource name.
    """

    name: str
    gpus_allocatable: int
    gpus_free: int
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    other_gpu_resources: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise GuardConfigError(f"node name {self.name!r} must be a non-empty string")
        where = f"node {self.name!r}"
        validate_gpu_count(self.gpus_allocatable, name=f"{where}: gpus_allocatable")
        validate_gpu_count(self.gpus_free, name=f"{where}: gpus_free")
        _check_plausible(self.gpus_allocatable, f"{where}: gpus_allocatable")
        if self.gpus_free > self.gpus_allocatable:
            raise GuardConfigError(
                f"{where}: gpus_free {self.gpus_free} is more than gpus_allocatable {self.gpus_allocatable}; "
                "compute it as max(0, allocatable - requested by running pods)"
            )
        object.__setattr__(self, "labels", _check_str_mapping(self.labels, f"{where}: labels"))
        taints = tuple(self.taints)
        if not all(isinstance(taint, Taint) for taint in taints):
            raise GuardConfigError(f"{where}: taints {self.taints!r} must be Taint values")
        object.__setattr__(self, "taints", taints)
        others = self.other_gpu_resources
        if not isinstance(others, Mapping) or not all(isinstance(key, str) and key for key in others):
            raise GuardConfigError(
                f"{where}: other_gpu_resources {others!r} must map resource names to GPU counts, "
                "e.g. {'nvidia.com/mig-1g.10gb': 7}"
            )
        for key, count in others.items():
            validate_gpu_count(count, name=f"{where}: other_gpu_resources[{key!r}]")
            _check_plausible(count, f"{where}: other_gpu_resources[{key!r}]")
        object.__setattr__(self, "other_gpu_resources", MappingProxyType(dict(others)))


def _check_plausible(count: int, what: str) -> None:
    if count > MAX_GPUS_PER_NODE:
        raise GuardConfigError(
            f"{what} {count} is not a plausible GPU count (more than {MAX_GPUS_PER_NODE} on one node); "
            "the inventory is misread (a quantity such as '1T' is 10**12): check the node's "
            "status.allocatable, and the resource name"
        )


@dataclass(frozen=True)
class GpuRequest:
    """What a training pod asks for: GPUs of one resource, and where it may run.

    :param gpus: GPUs per pod, ``>= 1`` (a pod without GPUs is not checked here).
    :param resource: the extended resource name, ``"nvidia.com/gpu"`` by default.
    :param node_selector: labels a node must have (the pod's ``nodeSelector``).
    :param tolerations: the pod's tolerations.
    """

    gpus: int
    resource: str = DEFAULT_GPU_RESOURCE
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()

    def __post_init__(self) -> None:
        validate_gpu_count(self.gpus)
        if self.gpus == 0:
            raise GuardConfigError(
                "GpuRequest gpus 0 asks for no GPU; a pod without GPUs needs no fit check: leave the "
                "GpuRequest out, or ask for at least 1"
            )
        if not isinstance(self.resource, str) or not self.resource:
            raise GuardConfigError(
                f"GPU resource {self.resource!r} must be a resource name, e.g. {DEFAULT_GPU_RESOURCE!r}"
            )
        object.__setattr__(self, "node_selector", _check_str_mapping(self.node_selector, "node_selector"))
        tolerations = tuple(self.tolerations)
        if not all(isinstance(toleration, Toleration) for toleration in tolerations):
            raise GuardConfigError(f"tolerations {self.tolerations!r} must be Toleration values")
        object.__setattr__(self, "tolerations", tolerations)

    def describe(self) -> str:
        """One line for logs and messages: ``3 nvidia.com/gpu with node_selector pool=a100``."""
        text = f"{self.gpus} {self.resource}"
        if self.node_selector:
            text += " with node_selector " + ", ".join(
                f"{k}={v}" for k, v in sorted(self.node_selector.items())
            )
        return text


class FragmentationPolicy(enum.Enum):
    """What to do when a request's GPU count does not divide the GPUs of the nodes it lands on.

    - ``ALLOW``: nothing; the report carries no warning.
    - ``WARN`` (default): the report carries a warning for the caller to log.
    - ``REJECT``: :func:`require_fit` raises :class:`GpuShapeError`.
    """

    ALLOW = "allow"
    WARN = "warn"
    REJECT = "reject"


@dataclass(frozen=True)
class NodeFit:
    """How one node relates to one request, for reports and error messages.

    :param name: the node name.
    :param gpus_allocatable: the node's allocatable GPUs.
    :param gpus_free: the node's free GPUs.
    :param ineligible_because: why the pod may not run there at all (selector mismatch,
        untolerated taint); empty when it is eligible.
    :param too_small: eligible, but ``gpus_allocatable`` is below the request.
    """

    name: str
    gpus_allocatable: int
    gpus_free: int
    ineligible_because: tuple[str, ...] = ()
    too_small: bool = False

    @property
    def eligible(self) -> bool:
        """Whether ``node_selector`` and the tolerations let the pod run there."""
        return not self.ineligible_because

    def describe(self, gpus: int | None = None) -> str:
        """``gpu-a (8 allocatable, 2 free, eligible)``; ineligible nodes say why."""
        if not self.eligible:
            verdict = "not eligible: " + "; ".join(self.ineligible_because)
        elif self.too_small:
            verdict = "eligible, too small" + (f" for {gpus}" if gpus is not None else "")
        else:
            verdict = "eligible"
        return f"{self.name} ({self.gpus_allocatable} allocatable, {self.gpus_free} free, {verdict})"


@dataclass(frozen=True)
class FitReport:
    """Whether and where a GPU request fits the inventory.

    :param fits_now: some eligible node has ``gpus_free >= gpus``: the pod can start at once.
    :param fits_ever: some eligible node has ``gpus_allocatable >= gpus``: the pod can start once
        GPUs free up. ``False`` means it would stay ``Pending`` forever.
    :param eligible_nodes: nodes that pass ``node_selector`` and taints/tolerations, in inventory order.
    :param best_node: when it fits now, the node that fits most tightly (fewest GPUs left over,
        which keeps larger holes for larger jobs); when it fits only ever, the big-enough node with
        the most free GPUs (fewest to wait for); ``None`` when it never fits. Use ``fits_now``, not
        ``best_node``, to decide whether the pod can start at once.
    :param fragmentation_warning: set when the request does not divide the GPUs of the nodes it
        can land on (3 on 8-GPU nodes); says what is stranded and which shapes pack exactly.
    :param nodes: every node with its verdict, in inventory order (for :meth:`inventory_text`).
    :param gpus: the GPUs per pod that were checked.
    """

    fits_now: bool
    fits_ever: bool
    eligible_nodes: tuple[str, ...]
    best_node: str | None
    fragmentation_warning: str | None
    nodes: tuple[NodeFit, ...] = ()
    gpus: int | None = None

    def inventory_text(self, *, max_nodes: int = MAX_INVENTORY_NODES) -> str:
        """The inventory for error messages: ``gpu-a (8 allocatable, 2 free, eligible), gpu-b (...)``.

        :param max_nodes: list at most this many nodes, then summarise the rest (large clusters).
        """
        if not self.nodes:
            return "no nodes"
        shown = [node.describe(self.gpus) for node in self.nodes[:max_nodes]]
        rest = self.nodes[max_nodes:]
        if rest:
            eligible = sum(node.eligible for node in rest)
            shown.append(f"... and {len(rest)} more nodes ({eligible} eligible)")
        return ", ".join(shown)


def _judge(request: GpuRequest, node: NodeShape) -> NodeFit:
    reasons: list[str] = []
    for key, wanted in sorted(request.node_selector.items()):
        actual = node.labels.get(key)
        if actual != wanted:
            has = "no such label" if actual is None else f"node has {key}={actual}"
            reasons.append(f"node_selector {key}={wanted} does not match ({has})")
    for taint in node.taints:
        if taint.effect in BLOCKING_EFFECTS and not any(t.tolerates(taint) for t in request.tolerations):
            reasons.append(f"untolerated taint {taint}")
    return NodeFit(
        name=node.name,
        gpus_allocatable=node.gpus_allocatable,
        gpus_free=node.gpus_free,
        ineligible_because=tuple(reasons),
        too_small=node.gpus_allocatable < request.gpus,
    )


def _gpus(count: int) -> str:
    return f"{count} GPU" if count == 1 else f"{count} GPUs"


def _divisors(n: int) -> list[int]:
    """Divisors of ``n`` in ascending order, by trial division up to sqrt(n) (n <= 4096 here)."""
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return small + [n // d for d in reversed(small) if d * d != n]


def _fragmentation(gpus: int, capable: Sequence[NodeFit]) -> str | None:
    sizes = sorted({node.gpus_allocatable for node in capable})
    uneven = [size for size in sizes if size % gpus]
    if not uneven:
        return None
    packing = _divisors(math.gcd(*sizes))
    below = [d for d in packing if d < gpus]
    above = [d for d in packing if d > gpus]
    nearest = " or ".join(str(d) for d in ([below[-1]] if below else []) + ([above[0]] if above else []))
    parts = []
    for size in uneven:
        names = [node.name for node in capable if node.gpus_allocatable == size]
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        parts.append(
            f"on {size}-GPU nodes ({shown}) one such pod leaves {_gpus(size - gpus)} that only jobs of "
            f"<= {_gpus(size - gpus)} can use, and pods of this shape alone strand {size % gpus} of every "
            f"{size} ({size} = {size // gpus}x{gpus} + {size % gpus})"
        )
    sizes_text = ", ".join(str(size) for size in sizes)
    return (
        f"{gpus} GPUs per pod does not divide the node shapes it can land on: {'; '.join(parts)}. "
        f"Requests of {', '.join(str(d) for d in packing)} GPUs pack nodes of {sizes_text} GPUs exactly"
        + (f" (nearest: {nearest})" if nearest else "")
    )


def check_fit(request: GpuRequest, nodes: Sequence[NodeShape]) -> FitReport:
    """Check ``request`` against the inventory; never raises for a request that does not fit.

    The nodes must describe ``request.resource`` (the hook builds them for that resource name).

    :param request: GPUs per pod, resource, node selector and tolerations.
    :param nodes: the inventory, e.g. from the Kubernetes node inventory hook.
    """
    verdicts = tuple(_judge(request, node) for node in nodes)
    eligible = [v for v in verdicts if v.eligible]
    capable = [v for v in eligible if not v.too_small]
    now = [v for v in capable if v.gpus_free >= request.gpus]
    best: NodeFit | None = None
    if now:
        best = min(now, key=lambda v: v.gpus_free)  # min() keeps the first of equals: inventory order
    elif capable:
        best = max(capable, key=lambda v: v.gpus_free)
    return FitReport(
        fits_now=bool(now),
        fits_ever=bool(capable),
        eligible_nodes=tuple(v.name for v in eligible),
        best_node=best.name if best is not None else None,
        fragmentation_warning=_fragmentation(request.gpus, capable) if capable else None,
        nodes=verdicts,
        gpus=request.gpus,
    )


def _offered_resources_text(request: GpuRequest, nodes: Sequence[NodeShape]) -> str:
    """Why a request for a resource no node offers fails, and the resource name to use instead."""
    offered: dict[str, list[tuple[str, int]]] = {}
    for node in nodes:
        for resource, count in node.other_gpu_resources.items():
            if count > 0:
                offered.setdefault(resource, []).append((node.name, count))
    head = (
        f"GPU request of {request.describe()} can never fit: none of the {len(nodes)} nodes offers "
        f"{request.resource} (every node has 0 allocatable)"
    )
    if not offered:
        return (
            f"{head}, and none offers another GPU-like resource. Check the resource name (the device "
            f"plugin registers e.g. {DEFAULT_GPU_RESOURCE!r}) and that the device plugin runs on the GPU nodes"
        )
    parts = []
    for resource in sorted(offered):
        holders = offered[resource]
        names = ", ".join(name for name, _ in holders[:3]) + (
            f" and {len(holders) - 3} more" if len(holders) > 3 else ""
        )
        most = max(count for _, count in holders)
        parts.append(f"{resource} (up to {most} per node, on {names})")
    # Suggest a name that can hold the request, from the same vendor if possible, then the closest.
    big_enough = [r for r in offered if max(c for _, c in offered[r]) >= request.gpus] or list(offered)
    vendor = request.resource.partition("/")[0]
    same_vendor = [r for r in big_enough if r.partition("/")[0] == vendor] or big_enough
    suggestion = max(
        sorted(same_vendor),
        key=lambda r: difflib.SequenceMatcher(None, request.resource, r).ratio(),
    )
    return (
        f"{head}. The nodes offer {'; '.join(parts)}. Fix: request the resource the nodes offer, e.g. "
        f"resource={suggestion!r} (gpu_resource= on the operator); MIG slices and time-sliced "
        "replicas are registered under their own names"
    )


def _never_fits_message(request: GpuRequest, report: FitReport, nodes: Sequence[NodeShape]) -> str:
    if not report.nodes:
        return (
            f"GPU request of {request.describe()} can never fit: the inventory has no nodes with "
            f"{request.resource}. Check the resource name (the device plugin registers e.g. "
            f"{DEFAULT_GPU_RESOURCE!r}) and that GPU nodes are in the cluster"
        )
    if all(node.gpus_allocatable == 0 for node in report.nodes):
        # Issue 13: MIG-only nodes read for nvidia.com/gpu used to come back as eligible nodes
        # with 0 GPUs, and the fix said "split the job across pods (no node has more than 0)".
        return _offered_resources_text(request, nodes)
    eligible_sizes = [node.gpus_allocatable for node in report.nodes if node.eligible]
    largest_any = max(node.gpus_allocatable for node in report.nodes)
    fixes = []
    if eligible_sizes and max(eligible_sizes) > 0:
        fixes.append(f"request at most {_gpus(max(eligible_sizes))} (the largest eligible node)")
    if largest_any >= request.gpus:
        fixes.append("change node_selector/tolerations so nodes with enough GPUs become eligible")
    if largest_any < request.gpus:
        fixes.append(f"split the job across pods (no node has more than {largest_any})")
    return (
        f"GPU request of {request.describe()} can never fit: no eligible node has {_gpus(request.gpus)} "
        f"allocatable, so the pod would stay Pending forever. Nodes: {report.inventory_text()}. "
        f"Fix: {', or '.join(fixes)}"
    )


def require_fit(
    request: GpuRequest,
    nodes: Sequence[NodeShape],
    *,
    fragmentation: FragmentationPolicy | str = FragmentationPolicy.WARN,
) -> FitReport:
    """Fail fast when ``request`` can never fit; otherwise return the :class:`FitReport`.

    A request that fits ever but not now is *not* an error here: the caller decides whether to
    queue (wait for GPUs to free up) or fail. The caller logs ``fragmentation_warning`` when set.

    :param request: GPUs per pod, resource, node selector and tolerations.
    :param nodes: the inventory.
    :param fragmentation: :class:`FragmentationPolicy` or its value (``"allow"``, ``"warn"``,
        ``"reject"``). With ``ALLOW`` the returned report carries no fragmentation warning.
    :raises GpuShapeError: when no eligible node has enough allocatable GPUs (the message lists the
        inventory and why each node is out), or the shape fragments nodes under ``REJECT``.
    :raises GuardConfigError: when ``fragmentation`` is not a policy.
    """
    try:
        policy = FragmentationPolicy(
            fragmentation.strip().lower() if isinstance(fragmentation, str) else fragmentation
        )
    except ValueError:
        choices = ", ".join(repr(p.value) for p in FragmentationPolicy)
        raise GuardConfigError(
            f"fragmentation {fragmentation!r} is not valid; use one of {choices}"
        ) from None
    report = check_fit(request, nodes)
    if not report.fits_ever:
        raise GpuShapeError(_never_fits_message(request, report, nodes))
    if report.fragmentation_warning is not None:
        if policy is FragmentationPolicy.REJECT:
            raise GpuShapeError(
                f"GPU request of {request.describe()} fragments nodes and fragmentation='reject': "
                f"{report.fragmentation_warning}. Request a packing shape, or set fragmentation='warn'"
            )
        if policy is FragmentationPolicy.ALLOW:
            report = replace(report, fragmentation_warning=None)
    return report


@dataclass(frozen=True)
class PackingReport:
    """How a mix of jobs packs onto the free GPUs of an inventory (see :func:`pack_jobs`).

    :param jobs_placed: jobs that found a node.
    :param jobs_unplaced: jobs that found none.
    :param gpus_total: free GPUs of the inventory before packing (what the mix could use).
    :param gpus_used: GPUs the placed jobs take.
    :param gpus_stranded: GPUs still free after packing on nodes whose remainder is smaller than
        the smallest job of the mix: no job shape in the mix could ever use them there.
    :param placements: ``(node, gpus)`` per placed job, in placement order (largest job first).
    """

    jobs_placed: int
    jobs_unplaced: int
    gpus_total: int
    gpus_used: int
    gpus_stranded: int
    placements: tuple[tuple[str, int], ...]

    @property
    def gpus_left(self) -> int:
        """GPUs still free after packing (``gpus_total - gpus_used``); includes the stranded ones."""
        return self.gpus_total - self.gpus_used


def pack_jobs(nodes: Sequence[NodeShape], jobs: Sequence[int]) -> PackingReport:
    """Pack jobs (GPUs per job) onto the nodes' free GPUs and report what is used and stranded.

    Heuristic: first-fit decreasing with best fit. Jobs are taken largest first; each goes to the
    node with the fewest free GPUs that still holds it (ties: inventory order), so large holes stay
    open for large jobs. It is the classic bin-packing heuristic, close to optimal in practice and
    deterministic; it is an estimate of what the scheduler can do, not a schedule. Selectors and
    taints are not considered: pass only the nodes the jobs may use.

    Example: two 8-GPU nodes and jobs ``[3, 3, 3, 3, 4]``: 4 and 3 go to the first node (1 left),
    3 and 3 to the second (2 left), the last 3 fits nowhere: 4 placed, 1 unplaced, 13 of 16 GPUs
    used, 3 stranded (1 + 2 GPUs, smaller than the smallest job, 3).

    :param nodes: the inventory; ``gpus_free`` is what is packed.
    :param jobs: GPUs per job, each ``>= 1``.
    :raises GuardConfigError: for a job that is not an integer ``>= 1``.
    """
    sizes = [validate_gpu_count(job, name=f"jobs[{index}]") for index, job in enumerate(jobs)]
    for index, size in enumerate(sizes):
        if size == 0:
            raise GuardConfigError(f"jobs[{index}] asks for 0 GPUs; leave jobs without GPUs out of the mix")
    free = [node.gpus_free for node in nodes]
    placements: list[tuple[str, int]] = []
    unplaced = 0
    for size in sorted(sizes, reverse=True):
        candidates = [i for i, left in enumerate(free) if left >= size]
        if not candidates:
            unplaced += 1
            continue
        target = min(candidates, key=lambda i: free[i])
        free[target] -= size
        placements.append((nodes[target].name, size))
    smallest = min(sizes, default=None)
    stranded = 0 if smallest is None else sum(left for left in free if left < smallest)
    return PackingReport(
        jobs_placed=len(placements),
        jobs_unplaced=unplaced,
        gpus_total=sum(node.gpus_free for node in nodes),
        gpus_used=sum(size for _, size in placements),
        gpus_stranded=stranded,
        placements=tuple(placements),
    )
