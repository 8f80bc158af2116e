"""50 concurrent promotions against each backend, in threads and in processes.

Regression for: concurrent promotions raced in the model registry and left the production pointer
on a different artifact than the one deployed. With compare-and-swap the final pointer is the best
candidate, the history is one chain with no lost update, and every loser says why it lost.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from contention import check_single_chain, make_candidates, make_registry, run_contention

from airflow_training_guard.promotion.registry import PromotionOutcome
from airflow_training_guard.promotion.sql import SqlModelRegistry

N = 50
MODES = ["threads", "processes"]


@pytest.mark.parametrize("mode", MODES)
def test_sqlite_concurrent_promotions_form_one_chain(sqlite_url: str, tmp_path: Path, mode: str) -> None:
    SqlModelRegistry(sqlite_url).close()
    spec = {"kind": "sql", "url": sqlite_url}
    candidates = make_candidates(N, tmp_path / "artifacts", seed=1)
    run = run_contention(spec, "ranker", candidates, mode=mode)
    check_single_chain(make_registry(spec).history("ranker"), run, candidates)


@pytest.mark.parametrize("mode", MODES)
def test_postgres_concurrent_promotions_form_one_chain(
    postgres_registry_url: str, tmp_path: Path, mode: str
) -> None:
    SqlModelRegistry(postgres_registry_url).close()
    spec = {"kind": "sql", "url": postgres_registry_url}
    candidates = make_candidates(N, tmp_path / "artifacts", seed=2)
    run = run_contention(spec, "ranker", candidates, mode=mode)
    check_single_chain(make_registry(spec).history("ranker"), run, candidates)


@pytest.mark.parametrize("mode", MODES)
def test_hub_concurrent_promotions_form_one_chain(hub_server, tmp_path: Path, mode: str) -> None:
    spec = {"kind": "hub", "endpoint": hub_server.url, "cache_dir": str(tmp_path / "hf-cache")}
    candidates = make_candidates(N, tmp_path / "artifacts", seed=3)
    run = run_contention(spec, "org/ranker", candidates, mode=mode)
    history = make_registry(spec).history("org/ranker")
    check_single_chain(history, run, candidates)
    # Every lost race was a real 412 from the server, and every accepted commit is in the chain.
    assert hub_server.hub.commits_accepted == len(history)
    assert hub_server.hub.commits_refused == sum(r.conflicts for r in run.results.values())


def test_postgres_first_promotions_race_on_insert(postgres_registry_url: str, tmp_path: Path) -> None:
    """Two promoters that both see "no pointer yet" cannot both insert one: the loser re-decides."""
    SqlModelRegistry(postgres_registry_url).close()
    spec = {"kind": "sql", "url": postgres_registry_url}
    candidates = make_candidates(2, tmp_path / "artifacts", seed=4)
    registry = make_registry(spec)
    seen = registry.read("ranker")
    from airflow_training_guard.promotion.registry import ProductionPointer

    first = ProductionPointer("ranker", 1, candidates[0].candidate_id, candidates[0].artifact_uri)
    second = ProductionPointer("ranker", 1, candidates[1].candidate_id, candidates[1].artifact_uri)
    assert registry.compare_and_swap("ranker", seen, first) is True
    assert registry.compare_and_swap("ranker", seen, second) is False
    assert [e.pointer.candidate_id for e in registry.history("ranker")] == [candidates[0].candidate_id]


def test_bounded_attempts_give_up_with_a_clear_message(sqlite_url: str, tmp_path: Path) -> None:
    """With one attempt allowed, losers stop with conflict_gave_up and say what to do."""
    SqlModelRegistry(sqlite_url).close()
    spec = {"kind": "sql", "url": sqlite_url}
    candidates = make_candidates(20, tmp_path / "artifacts", seed=5)
    run = run_contention(spec, "ranker", candidates, mode="threads", max_attempts=1)
    gave_up = [r for r in run.results.values() if r.outcome is PromotionOutcome.CONFLICT_GAVE_UP]
    for result in gave_up:
        assert "gave up promoting" in result.reason and "max_attempts" in result.reason
        assert result.conflicts == 1
    history = make_registry(spec).history("ranker")
    assert len(run.promoted) == len(history)
