"""The model registry interface and its value types.

Promotion is compare-and-swap on the production pointer of a model: a promoter reads the
pointer together with an opaque *token* (the SQL row version, the Hub branch head), decides,
and writes the new pointer only if the token is still current. Two promoters that read the same
pointer cannot both win, so production never ends on an artifact that nobody decided to deploy.

Every successful swap also records one :class:`HistoryEntry` in the same atomic write: the
history is a single chain ``1 -> 2 -> 3 ...`` where each entry names the pointer it replaced.

No Airflow import: backends and the retry loop are usable (and testable) on their own.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from airflow_training_guard.exceptions import TrainingGuardError

__all__ = [
    "Candidate",
    "HistoryEntry",
    "ManifestLike",
    "ModelRegistry",
    "Observed",
    "ProductionPointer",
    "PromotionOutcome",
    "PromotionResult",
    "RegistryError",
    "UnknownVersionError",
]


class RegistryError(TrainingGuardError):
    """The registry cannot be read or written (not a conflict); the message says which and why."""


class UnknownVersionError(RegistryError, LookupError):
    """A rollback named a version that is not in the model's promotion history."""


def _metrics(value: Mapping[str, Any] | None) -> dict[str, float]:
    return {str(k): float(v) for k, v in (value or {}).items()}


@dataclass(frozen=True)
class ProductionPointer:
    """What production serves for one model: one version of the pointer.

    :param model_name: the registry key (``"ranker"``, or the Hub repo id).
    :param version: 1 for the first promotion, +1 for every later promotion or rollback.
    :param candidate_id: the candidate that was promoted (stable, human-readable).
    :param artifact_uri: where the model files are.
    :param commit: immutable revision of the artifact (e.g. a Hub commit SHA), when known.
    :param metrics: the candidate's evaluation metrics.
    :param promoted_by: who promoted it (``dag_id.task_id``, a user name).
    :param promoted_at: ISO-8601 UTC timestamp.
    :param run_id: the Airflow run that produced the candidate.
    :param partition_key: the partition the candidate was trained on.
    :param action: ``"promote"`` or ``"rollback"``.
    :param rolled_back_to: for a rollback, the version whose content this pointer restores.
    """

    model_name: str
    version: int
    candidate_id: str
    artifact_uri: str
    commit: str | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    promoted_by: str = ""
    promoted_at: str = ""
    run_id: str | None = None
    partition_key: str | None = None
    action: str = "promote"
    rolled_back_to: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "version": self.version,
            "candidate_id": self.candidate_id,
            "artifact_uri": self.artifact_uri,
            "commit": self.commit,
            "metrics": dict(self.metrics),
            "promoted_by": self.promoted_by,
            "promoted_at": self.promoted_at,
            "run_id": self.run_id,
            "partition_key": self.partition_key,
            "action": self.action,
            "rolled_back_to": self.rolled_back_to,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProductionPointer:
        rolled = data.get("rolled_back_to")
        return cls(
            model_name=str(data["model_name"]),
            version=int(data["version"]),
            candidate_id=str(data["candidate_id"]),
            artifact_uri=str(data["artifact_uri"]),
            commit=data.get("commit"),
            metrics=_metrics(data.get("metrics")),
            promoted_by=str(data.get("promoted_by") or ""),
            promoted_at=str(data.get("promoted_at") or ""),
            run_id=data.get("run_id"),
            partition_key=data.get("partition_key"),
            action=str(data.get("action") or "promote"),
            rolled_back_to=int(rolled) if rolled is not None else None,
        )

    def describe(self, metric: str | None = None) -> str:
        """Short form for messages: ``v3 (candidate 'run-7', auc=0.91)``."""
        shown = ""
        if metric is not None and metric in self.metrics:
            shown = f", {metric}={self.metrics[metric]:g}"
        return f"v{self.version} (candidate {self.candidate_id!r}{shown})"


@dataclass(frozen=True)
class HistoryEntry:
    """One successful swap: the pointer written and the pointer it replaced (None for the first)."""

    pointer: ProductionPointer
    replaced: ProductionPointer | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "pointer": self.pointer.to_dict(),
            "replaced": self.replaced.to_dict() if self.replaced else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HistoryEntry:
        replaced = data.get("replaced")
        return cls(
            pointer=ProductionPointer.from_dict(data["pointer"]),
            replaced=ProductionPointer.from_dict(replaced) if replaced else None,
        )


@dataclass(frozen=True)
class Observed:
    """The pointer as read, with the token a compare-and-swap must present to replace it.

    ``token`` is backend-specific and opaque to callers: the SQL row version (0 when there is no
    pointer yet) or the Hub branch head commit SHA.
    """

    pointer: ProductionPointer | None
    token: str | int

    @property
    def next_version(self) -> int:
        return (self.pointer.version if self.pointer else 0) + 1


class ManifestLike(Protocol):
    """The part of :class:`airflow_training_guard.manifest.RunManifest` promotion reads."""

    @property
    def dag_id(self) -> str: ...
    @property
    def run_id(self) -> str: ...
    @property
    def task_id(self) -> str: ...
    @property
    def partition_key(self) -> str: ...
    @property
    def artifact_uri(self) -> str | None: ...
    @property
    def metrics(self) -> Mapping[str, float]: ...
    @property
    def is_complete(self) -> bool: ...
    def missing_fields(self) -> list[str]: ...


@dataclass(frozen=True)
class Candidate:
    """A model that asks to become production.

    :param candidate_id: stable id shown in messages, history and XCom.
    :param artifact_uri: where its files are; promotion refuses URIs that do not exist.
    :param metrics: evaluation metrics; the policy compares one of them.
    :param manifest_missing: fields missing from the run manifest; empty means complete.
        ``None`` means no manifest was given, which the policy treats as incomplete.
    """

    candidate_id: str
    artifact_uri: str
    metrics: Mapping[str, float] = field(default_factory=dict)
    commit: str | None = None
    run_id: str | None = None
    partition_key: str | None = None
    manifest_missing: tuple[str, ...] | None = None

    @property
    def manifest_complete(self) -> bool:
        return self.manifest_missing is not None and not self.manifest_missing

    @classmethod
    def from_manifest(
        cls,
        manifest: ManifestLike,
        *,
        candidate_id: str | None = None,
        commit: str | None = None,
    ) -> Candidate:
        """The candidate a training run produced, as its run manifest describes it."""
        return cls(
            candidate_id=candidate_id
            or f"{manifest.dag_id}/{manifest.task_id}/{manifest.run_id}/{manifest.partition_key}",
            artifact_uri=manifest.artifact_uri or "",
            metrics=_metrics(manifest.metrics),
            commit=commit,
            run_id=manifest.run_id,
            partition_key=manifest.partition_key,
            manifest_missing=tuple(manifest.missing_fields()),
        )


class PromotionOutcome(enum.StrEnum):
    PROMOTED = "promoted"
    REJECTED = "rejected"
    CONFLICT_GAVE_UP = "conflict_gave_up"


@dataclass(frozen=True)
class PromotionResult:
    """What a promotion (or rollback) did; pushed to XCom as :meth:`to_dict`.

    :param outcome: promoted, rejected (the policy said no, possibly after re-reading a pointer
        that moved under us), or conflict_gave_up (every attempt lost a race).
    :param reason: sentence for people; names both pointers and the metric.
    :param previous: the pointer that was replaced (promoted) or last seen (otherwise).
    :param current: production after this call, as far as this caller knows.
    :param attempts: compare-and-swap attempts made (1 = no contention).
    :param conflicts: attempts that lost a race to a concurrent writer.
    """

    outcome: PromotionOutcome
    reason: str
    previous: ProductionPointer | None
    current: ProductionPointer | None
    attempts: int
    conflicts: int = 0

    @property
    def promoted(self) -> bool:
        return self.outcome is PromotionOutcome.PROMOTED

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "reason": self.reason,
            "previous": self.previous.to_dict() if self.previous else None,
            "current": self.current.to_dict() if self.current else None,
            "attempts": self.attempts,
            "conflicts": self.conflicts,
        }


@runtime_checkable
class ModelRegistry(Protocol):
    """A store of production pointers with compare-and-swap and a promotion history."""

    def read(self, model_name: str) -> Observed:
        """The current pointer (None if never promoted) and the token to swap it."""
        ...

    def compare_and_swap(self, model_name: str, expected: Observed, new: ProductionPointer) -> bool:
        """Write ``new`` and its history entry atomically iff production is still ``expected``.

        Returns False when a concurrent writer got there first (the caller re-reads); raises
        :class:`RegistryError` for anything else.
        """
        ...

    def history(self, model_name: str) -> list[HistoryEntry]:
        """Every swap, oldest first."""
        ...
