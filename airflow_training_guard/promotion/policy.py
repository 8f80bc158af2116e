"""The promotion policy: may this candidate replace what production points to now?

Pure: the artifact check is a callable, so the policy runs without a file system or network.
It is re-applied after every lost compare-and-swap, against the pointer that won, so a promoter
never overwrites a better model that landed while it was deciding.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from airflow_training_guard.exceptions import GuardConfigError

if TYPE_CHECKING:
    from airflow_training_guard.promotion.registry import Candidate, ProductionPointer

__all__ = ["Decision", "PromotionPolicy"]

DIRECTIONS = ("max", "min")


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


@dataclass(frozen=True)
class PromotionPolicy:
    """Promote only a complete, existing candidate that beats production on one metric.

    :param metric: the metric compared, e.g. ``"ndcg"`` or ``"val_loss"``.
    :param direction: ``"max"`` when higher is better, ``"min"`` when lower is better.
    :param min_improvement: the candidate must beat production by strictly more than this
        (absolute, in the metric's unit). 0 means "strictly better"; ties never promote.
    :param require_complete_manifest: refuse candidates whose run manifest misses fields (the
        run cannot be reproduced). Turn off only for imported legacy models.
    """

    metric: str
    direction: str = "max"
    min_improvement: float = 0.0
    require_complete_manifest: bool = True

    def __post_init__(self) -> None:
        if not self.metric or not isinstance(self.metric, str):
            raise GuardConfigError(f"metric {self.metric!r} must be a metric name, e.g. 'ndcg'")
        if self.direction not in DIRECTIONS:
            raise GuardConfigError(
                f"direction {self.direction!r} is not valid; use 'max' (higher {self.metric} is "
                f"better) or 'min' (lower is better, e.g. a loss)"
            )
        if not math.isfinite(self.min_improvement) or self.min_improvement < 0:
            raise GuardConfigError(
                f"min_improvement {self.min_improvement!r} must be a finite number >= 0 "
                f"(the margin, in {self.metric} units, by which a candidate must beat production)"
            )

    def improvement(self, candidate_value: float, production_value: float) -> float:
        """How much better the candidate is (positive = better), whatever the direction."""
        diff = candidate_value - production_value
        return diff if self.direction == "max" else -diff

    def decide(
        self,
        candidate: Candidate,
        current: ProductionPointer | None,
        artifact_exists: Callable[[str], bool],
    ) -> Decision:
        """Apply the rules in order; the first that fails is the reason."""
        value = candidate.metrics.get(self.metric)
        if value is None or not math.isfinite(value):
            known = ", ".join(sorted(candidate.metrics)) or "none"
            return Decision(
                False,
                f"candidate {candidate.candidate_id!r} has no finite {self.metric!r} metric "
                f"(metrics: {known}); record it in the run manifest's metrics",
            )
        if self.require_complete_manifest and not candidate.manifest_complete:
            missing = (
                "no run manifest was given"
                if candidate.manifest_missing is None
                else "its run manifest is missing " + ", ".join(candidate.manifest_missing)
            )
            return Decision(
                False,
                f"candidate {candidate.candidate_id!r} cannot be reproduced: {missing}; "
                "only runs with a complete manifest are promoted",
            )
        if not candidate.artifact_uri:
            return Decision(False, f"candidate {candidate.candidate_id!r} has no artifact_uri")
        if not artifact_exists(candidate.artifact_uri):
            return Decision(
                False,
                f"artifact {candidate.artifact_uri!r} of candidate {candidate.candidate_id!r} does "
                "not exist; production must never point at missing files",
            )
        if current is None:
            return Decision(True, f"first promotion: {self.metric}={value:g}")
        if current.candidate_id == candidate.candidate_id and current.artifact_uri == candidate.artifact_uri:
            return Decision(
                False, f"candidate {candidate.candidate_id!r} is already production {current.describe()}"
            )
        prod_value = current.metrics.get(self.metric)
        if prod_value is None or not math.isfinite(prod_value):
            return Decision(
                False,
                f"production {current.describe()} has no {self.metric!r} metric to compare with; "
                f"promote explicitly with a rollback-style override or fix the metric name",
            )
        gain = self.improvement(value, prod_value)
        better = "higher" if self.direction == "max" else "lower"
        if gain > self.min_improvement:
            return Decision(
                True,
                f"{self.metric} {value:g} beats production {prod_value:g} of {current.describe()} "
                f"({better} is better, improvement {gain:g} > {self.min_improvement:g})",
            )
        return Decision(
            False,
            f"{self.metric} {value:g} of candidate {candidate.candidate_id!r} does not beat production "
            f"{prod_value:g} of {current.describe()} by more than {self.min_improvement:g} "
            f"({better} is better)",
        )
