"""The promotion loop against an in-memory registry: conflicts, re-decisions, give-up, rollback."""

from __future__ import annotations

import random

import pytest
from fakes import MemoryRegistry

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.promotion import (
    Backoff,
    Candidate,
    ProductionPointer,
    PromotionOutcome,
    PromotionPolicy,
    UnknownVersionError,
    promote,
    rollback,
)

POLICY = PromotionPolicy("ndcg")


def exists(uri: str) -> bool:
    return True


def _cand(cid: str, value: float) -> Candidate:
    return Candidate(cid, f"/m/{cid}", {"ndcg": value}, manifest_missing=())


def _run(registry: MemoryRegistry, candidate: Candidate, attempts: int = 5, **kw):
    return promote(
        registry,
        "ranker",
        candidate,
        POLICY,
        promoted_by="t",
        artifact_exists=exists,
        backoff=Backoff(max_attempts=attempts),
        sleep=lambda s: None,
        rng=random.Random(0),
        **kw,
    )


def test_promotes_and_records_the_replaced_pointer() -> None:
    registry = MemoryRegistry()
    assert _run(registry, _cand("a", 0.5)).outcome is PromotionOutcome.PROMOTED
    result = _run(registry, _cand("b", 0.6))
    assert result.promoted and result.previous.candidate_id == "a" and result.current.version == 2
    assert [e.replaced.candidate_id if e.replaced else None for e in registry.history("ranker")] == [
        None,
        "a",
    ]


def test_loser_rereads_and_rejects_when_a_better_model_landed() -> None:
    """Regression: the loser must not overwrite a better model that won the race."""
    registry = MemoryRegistry()
    _run(registry, _cand("a", 0.5))
    registry.interfere.append(ProductionPointer("ranker", 2, "better", "/m/better", metrics={"ndcg": 0.9}))
    result = _run(registry, _cand("b", 0.6))
    assert result.outcome is PromotionOutcome.REJECTED
    assert result.conflicts == 1 and result.attempts == 2
    assert (
        "lost 1 compare-and-swap race(s)" in result.reason and "does not beat production 0.9" in result.reason
    )
    assert registry.read("ranker").pointer.candidate_id == "better"


def test_loser_retries_when_it_still_beats_the_winner() -> None:
    registry = MemoryRegistry()
    _run(registry, _cand("a", 0.5))
    registry.interfere.append(ProductionPointer("ranker", 2, "other", "/m/other", metrics={"ndcg": 0.55}))
    result = _run(registry, _cand("b", 0.6))
    assert result.promoted and result.conflicts == 1 and result.current.version == 3
    assert result.previous.candidate_id == "other" and "after 1 lost race(s)" in result.reason


def test_gives_up_after_bounded_attempts_with_a_clear_message() -> None:
    registry = MemoryRegistry()
    _run(registry, _cand("a", 0.1))
    for v in range(2, 6):
        registry.interfere.append(
            ProductionPointer("ranker", v, f"x{v}", "/m/x", metrics={"ndcg": 0.1 + v / 100})
        )
    result = _run(registry, _cand("b", 0.9), attempts=3)
    assert result.outcome is PromotionOutcome.CONFLICT_GAVE_UP
    assert result.attempts == 3 and result.conflicts == 3
    assert "gave up promoting candidate 'b' to 'ranker' after 3 attempts" in result.reason


def test_jittered_backoff_is_bounded_and_grows() -> None:
    backoff = Backoff(max_attempts=5, base=0.01, cap=0.05)
    rng = random.Random(1)
    assert all(
        0 <= backoff.delay(k, rng) <= min(0.05, 0.01 * 2 ** (k - 1)) for k in range(1, 10) for _ in range(20)
    )
    with pytest.raises(GuardConfigError, match="must be >= 1"):
        Backoff(max_attempts=0)


def test_rollback_is_a_new_version_with_the_old_content() -> None:
    registry = MemoryRegistry()
    _run(registry, _cand("a", 0.5))
    _run(registry, _cand("b", 0.6))
    result = rollback(
        registry,
        "ranker",
        1,
        promoted_by="oncall",
        reason="canary",
        artifact_exists=exists,
        sleep=lambda s: None,
    )
    assert result.promoted and "canary" in result.reason
    pointer = registry.read("ranker").pointer
    assert (pointer.version, pointer.candidate_id, pointer.action, pointer.rolled_back_to) == (
        3,
        "a",
        "rollback",
        1,
    )


def test_rollback_to_unknown_version_names_the_known_ones() -> None:
    registry = MemoryRegistry()
    _run(registry, _cand("a", 0.5))
    with pytest.raises(UnknownVersionError, match=r"no version 7 to roll back to \(versions: 1\)"):
        rollback(registry, "ranker", 7, promoted_by="oncall", artifact_exists=exists)


def test_rollback_refuses_a_deleted_artifact() -> None:
    registry = MemoryRegistry()
    _run(registry, _cand("a", 0.5))
    result = rollback(registry, "ranker", 1, promoted_by="oncall", artifact_exists=lambda uri: False)
    assert result.outcome is PromotionOutcome.REJECTED and "no longer exists" in result.reason


def test_pointer_round_trips_through_dict() -> None:
    pointer = ProductionPointer(
        "ranker", 2, "c", "/m", "ab" * 20, {"ndcg": 0.5}, "me", "now", "r", "k", "rollback", 1
    )
    assert ProductionPointer.from_dict(pointer.to_dict()) == pointer
