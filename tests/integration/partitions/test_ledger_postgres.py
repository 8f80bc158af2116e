"""The one-statement claim on a real PostgreSQL: concurrent claims of one key still take turns."""

from __future__ import annotations

import threading

from airflow_training_guard.partitions.ledger import PartitionLedger, ReprocessMode

WORKERS = 16


def _claim_together(ledger: PartitionLedger, key: str, mode: ReprocessMode) -> list[int | None]:
    barrier = threading.Barrier(WORKERS)
    tokens: list[int | None] = [None] * WORKERS

    def claim(index: int) -> None:
        barrier.wait()
        found = ledger.claim(key, mode=mode, holder=f"worker {index}")
        tokens[index] = found.fencing_token if found else None

    threads = [threading.Thread(target=claim, args=(index,)) for index in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return tokens


def test_sixteen_concurrent_claims_of_a_new_key_in_missing_mode_give_exactly_one_claim(
    postgres_sqlalchemy_url: str,
) -> None:
    """Regression guard for the upsert claim: only one of 16 racing workers may own a new key."""
    ledger = PartitionLedger(postgres_sqlalchemy_url, namespace="pricing")
    tokens = _claim_together(ledger, "berlin|2026-11-01", ReprocessMode.MISSING)
    assert sorted(token for token in tokens if token is not None) == [1]
    assert tokens.count(None) == WORKERS - 1


def test_sixteen_concurrent_takeovers_get_distinct_increasing_tokens_and_only_the_newest_publishes(
    postgres_sqlalchemy_url: str,
) -> None:
    ledger = PartitionLedger(postgres_sqlalchemy_url, namespace="pricing")
    key = "paris|2026-11-01"
    tokens = _claim_together(ledger, key, ReprocessMode.ALL)
    assert sorted(tokens) == list(range(1, WORKERS + 1))  # type: ignore[type-var]
    entry = ledger.entry(key)
    assert entry is not None and (entry.state, entry.fencing_token) == ("claimed", WORKERS)


def test_a_failed_key_is_claimed_again_only_in_failed_and_all_modes(postgres_sqlalchemy_url: str) -> None:
    ledger = PartitionLedger(postgres_sqlalchemy_url, namespace="pricing")
    key = "rome|2026-11-01"
    first = ledger.claim(key, mode="missing")
    assert first is not None
    assert ledger.fail(first, "boom")
    assert ledger.claim(key, mode="missing") is None
    retry = ledger.claim(key, mode="failed")
    assert retry is not None and retry.fencing_token == 2
    commit = ledger.publish(retry, rows=[{"x": 1}])
    assert commit.commits == 1
    assert ledger.claim(key, mode="failed") is None
    again = ledger.claim(key, mode="all")
    assert again is not None and again.fencing_token == 3
