"""PromotionPolicy: pure rules, no registry."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.promotion import Candidate, ProductionPointer, PromotionPolicy


def _candidate(
    value: float | None = 0.9, missing: tuple[str, ...] | None = (), uri: str = "/m/new"
) -> Candidate:
    return Candidate("new", uri, {} if value is None else {"ndcg": value}, manifest_missing=missing)


def _prod(value: float = 0.8) -> ProductionPointer:
    return ProductionPointer("ranker", 3, "old", "/m/old", metrics={"ndcg": value})


def exists(uri: str) -> bool:
    return True


def test_first_promotion_needs_no_comparison() -> None:
    assert PromotionPolicy("ndcg").decide(_candidate(), None, exists).promote


def test_better_candidate_promotes_and_says_why() -> None:
    decision = PromotionPolicy("ndcg").decide(_candidate(0.9), _prod(0.8), exists)
    assert decision.promote and "beats production 0.8" in decision.reason


def test_tie_never_promotes() -> None:
    decision = PromotionPolicy("ndcg").decide(_candidate(0.8), _prod(0.8), exists)
    assert not decision.promote and "does not beat production 0.8 of v3" in decision.reason


def test_min_direction_for_losses() -> None:
    policy = PromotionPolicy("ndcg", direction="min")
    assert policy.decide(_candidate(0.7), _prod(0.8), exists).promote
    assert not policy.decide(_candidate(0.9), _prod(0.8), exists).promote


def test_min_improvement_is_a_strict_margin() -> None:
    policy = PromotionPolicy("ndcg", min_improvement=0.05)
    assert not policy.decide(_candidate(0.84), _prod(0.8), exists).promote
    assert policy.decide(_candidate(0.86), _prod(0.8), exists).promote


def test_incomplete_manifest_is_refused_with_missing_fields() -> None:
    """Regression: a model from a run that cannot be reproduced must not reach production."""
    decision = PromotionPolicy("ndcg").decide(_candidate(missing=("code.dag_file_sha256",)), None, exists)
    assert not decision.promote and "missing code.dag_file_sha256" in decision.reason
    decision = PromotionPolicy("ndcg").decide(_candidate(missing=None), None, exists)
    assert not decision.promote and "no run manifest" in decision.reason


def test_missing_artifact_is_refused() -> None:
    """Regression: production must never point at files that do not exist."""
    decision = PromotionPolicy("ndcg").decide(_candidate(), _prod(), lambda uri: False)
    assert (
        not decision.promote
        and "artifact '/m/new'" in decision.reason
        and "does not exist" in decision.reason
    )


def test_missing_metric_is_refused() -> None:
    decision = PromotionPolicy("ndcg").decide(_candidate(None), None, exists)
    assert not decision.promote and "no finite 'ndcg' metric" in decision.reason


def test_same_candidate_is_already_production() -> None:
    current = ProductionPointer("ranker", 3, "new", "/m/new", metrics={"ndcg": 0.5})
    decision = PromotionPolicy("ndcg").decide(_candidate(0.9), current, exists)
    assert not decision.promote and "already production" in decision.reason


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"metric": ""}, "must be a metric name"),
        ({"metric": "ndcg", "direction": "up"}, "use 'max'"),
        ({"metric": "ndcg", "min_improvement": -1}, "must be a finite number >= 0"),
    ],
)
def test_bad_configuration_is_rejected_at_parse_time(kwargs: dict, match: str) -> None:
    with pytest.raises(GuardConfigError, match=match):
        PromotionPolicy(**kwargs)


@given(st.floats(-1e6, 1e6), st.floats(-1e6, 1e6), st.sampled_from(["max", "min"]))
def test_exactly_one_of_two_distinct_values_beats_the_other(a: float, b: float, direction: str) -> None:
    policy = PromotionPolicy("ndcg", direction=direction)
    a_wins = policy.decide(_candidate(a), _prod(b), exists).promote
    b_wins = policy.decide(_candidate(b), _prod(a), exists).promote
    assert not (a_wins and b_wins)
    if a != b:
        assert a_wins or b_wins
