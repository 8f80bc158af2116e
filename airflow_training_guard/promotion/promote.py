"""The promotion loop: read -> decide -> compare-and-swap; on conflict re-read and re-decide.

Why a loop and not a lock: the registry may be the Hugging Face Hub, which offers no lock but
rejects a commit whose parent is not the branch head (HTTP 412). Optimistic concurrency works
the same on every backend: a loser learns what won, applies the policy again against it (a
better model may have landed), and either tries again or stops with a clear result.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.promotion.registry import (
    Candidate,
    ModelRegistry,
    Observed,
    ProductionPointer,
    PromotionOutcome,
    PromotionResult,
    UnknownVersionError,
)

if TYPE_CHECKING:
    from airflow_training_guard.promotion.policy import PromotionPolicy

__all__ = ["Backoff", "default_artifact_exists", "promote", "rollback"]


@dataclass(frozen=True)
class Backoff:
    """Bounded attempts with full-jitter exponential backoff between lost races.

    :param max_attempts: compare-and-swap attempts before giving up (>= 1).
    :param base: first backoff ceiling in seconds; doubles per conflict up to ``cap``.
    """

    max_attempts: int = 20
    base: float = 0.01
    cap: float = 0.5

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise GuardConfigError(f"max_attempts {self.max_attempts} must be >= 1")
        if self.base < 0 or self.cap < self.base:
            raise GuardConfigError(f"backoff base {self.base} / cap {self.cap} must be 0 <= base <= cap")

    def delay(self, conflicts: int, rng: random.Random) -> float:
        # Full jitter: losers of one race spread out instead of colliding again in lockstep.
        return rng.uniform(0, min(self.cap, self.base * (2 ** max(0, conflicts - 1))))


def default_artifact_exists(uri: str) -> bool:
    """True if the artifact's files exist: local paths and ``file://`` directly, others via fsspec."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file") or (len(parsed.scheme) == 1 and os.name == "nt"):
        path = Path(parsed.path if parsed.scheme == "file" else uri)
        return path.is_file() or (path.is_dir() and any(path.iterdir()))
    try:
        import fsspec

        fs, path_in_fs = fsspec.core.url_to_fs(uri)
        return bool(fs.exists(path_in_fs))
    except Exception:
        return False


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def _seen(observed: Observed, metric: str | None) -> str:
    return observed.pointer.describe(metric) if observed.pointer else "no production pointer"


def _next_pointer(
    model_name: str,
    observed: Observed,
    source: Candidate | ProductionPointer,
    *,
    promoted_by: str,
    promoted_at: str,
    action: str = "promote",
    rolled_back_to: int | None = None,
) -> ProductionPointer:
    """The pointer that replaces ``observed``: the artifact of ``source`` (a new candidate, or an
    earlier version for a rollback) as the next version."""
    return ProductionPointer(
        model_name=model_name,
        version=observed.next_version,
        candidate_id=source.candidate_id,
        artifact_uri=source.artifact_uri,
        commit=source.commit,
        metrics=dict(source.metrics),
        promoted_by=promoted_by,
        promoted_at=promoted_at,
        run_id=source.run_id,
        partition_key=source.partition_key,
        action=action,
        rolled_back_to=rolled_back_to,
    )


def promote(
    registry: ModelRegistry,
    model_name: str,
    candidate: Candidate,
    policy: PromotionPolicy,
    *,
    promoted_by: str,
    artifact_exists: Callable[[str], bool] = default_artifact_exists,
    backoff: Backoff = Backoff(),
    rng: random.Random | None = None,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], str] = _now,
) -> PromotionResult:
    """Promote ``candidate`` to production of ``model_name`` if the policy allows, race-free."""
    rng = rng or random.Random()
    conflicts = 0
    lost_to: list[str] = []
    observed = registry.read(model_name)
    for attempt in range(1, backoff.max_attempts + 1):
        decision = policy.decide(candidate, observed.pointer, artifact_exists)
        if not decision.promote:
            reason = decision.reason
            if conflicts:
                reason = (
                    f"lost {conflicts} compare-and-swap race(s) (production moved to "
                    f"{lost_to[-1]}); re-decided against it: {reason}"
                )
            return PromotionResult(
                PromotionOutcome.REJECTED, reason, observed.pointer, observed.pointer, attempt, conflicts
            )
        new = _next_pointer(model_name, observed, candidate, promoted_by=promoted_by, promoted_at=now())
        if registry.compare_and_swap(model_name, observed, new):
            prefix = f"after {conflicts} lost race(s), " if conflicts else ""
            return PromotionResult(
                PromotionOutcome.PROMOTED,
                f"{prefix}promoted {new.describe(policy.metric)} replacing {_seen(observed, policy.metric)}: "
                f"{decision.reason}",
                observed.pointer,
                new,
                attempt,
                conflicts,
            )
        conflicts += 1
        observed = registry.read(model_name)
        lost_to.append(_seen(observed, policy.metric))
        if attempt < backoff.max_attempts:
            sleep(backoff.delay(conflicts, rng))
    return PromotionResult(
        PromotionOutcome.CONFLICT_GAVE_UP,
        f"gave up promoting candidate {candidate.candidate_id!r} to {model_name!r} after "
        f"{backoff.max_attempts} attempts: every compare-and-swap lost to a concurrent writer "
        f"(last seen production {lost_to[-1]}). Nothing was changed; rerun the task, or raise "
        "max_attempts if promotions are this contended",
        observed.pointer,
        observed.pointer,
        backoff.max_attempts,
        conflicts,
    )


def rollback(
    registry: ModelRegistry,
    model_name: str,
    to_version: int,
    *,
    promoted_by: str,
    reason: str = "",
    artifact_exists: Callable[[str], bool] = default_artifact_exists,
    backoff: Backoff = Backoff(),
    rng: random.Random | None = None,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], str] = _now,
) -> PromotionResult:
    """Point production back at the content of ``to_version``, as a new version (history is kept).

    No metric policy applies (a rollback is a person's decision), but the artifact must exist.
    """
    versions = {entry.pointer.version: entry.pointer for entry in registry.history(model_name)}
    target = versions.get(to_version)
    if target is None:
        known = ", ".join(str(v) for v in sorted(versions)) or "none"
        raise UnknownVersionError(
            f"model {model_name!r} has no version {to_version} to roll back to (versions: {known})"
        )
    rng = rng or random.Random()
    conflicts = 0
    for attempt in range(1, backoff.max_attempts + 1):
        observed = registry.read(model_name)
        if not artifact_exists(target.artifact_uri):
            return PromotionResult(
                PromotionOutcome.REJECTED,
                f"cannot roll back to v{to_version}: artifact {target.artifact_uri!r} no longer exists",
                observed.pointer,
                observed.pointer,
                attempt,
                conflicts,
            )
        new = _next_pointer(
            model_name,
            observed,
            target,
            promoted_by=promoted_by,
            promoted_at=now(),
            action="rollback",
            rolled_back_to=to_version,
        )
        if registry.compare_and_swap(model_name, observed, new):
            why = f" ({reason})" if reason else ""
            return PromotionResult(
                PromotionOutcome.PROMOTED,
                f"rolled back {model_name!r} to the content of v{to_version} as {new.describe()}, "
                f"replacing {_seen(observed, None)}{why}",
                observed.pointer,
                new,
                attempt,
                conflicts,
            )
        conflicts += 1
        if attempt < backoff.max_attempts:
            sleep(backoff.delay(conflicts, rng))
    last = registry.read(model_name)
    return PromotionResult(
        PromotionOutcome.CONFLICT_GAVE_UP,
        f"gave up rolling back {model_name!r} to v{to_version} after {backoff.max_attempts} attempts: "
        f"every compare-and-swap lost to a concurrent writer (production is {_seen(last, None)})",
        last.pointer,
        last.pointer,
        backoff.max_attempts,
        conflicts,
    )
