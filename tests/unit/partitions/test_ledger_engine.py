"""How a process opens the ledger: one pooled engine per URL, tables checked once, a one-statement claim.

Issue 17: every backfill task built its ledger again, re-checking the tables, and a claim took five
round trips; ledger claim + commit ran at about a third of a plain delete + insert per key.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from airflow_training_guard.partitions import ledger as ledger_module
from airflow_training_guard.partitions.ledger import PartitionLedger, engine_for


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


class _Statements:
    """Every SQL statement an engine sends, as text."""

    def __init__(self, engine: Any) -> None:
        self.sent: list[str] = []
        self._engine = engine
        event.listen(engine, "before_cursor_execute", self._record)

    def _record(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.sent.append(statement)

    def close(self) -> None:
        event.remove(self._engine, "before_cursor_execute", self._record)


@pytest.fixture
def statements(url: str) -> Iterator[_Statements]:
    recorder = _Statements(engine_for(url))
    yield recorder
    recorder.close()


def test_ledgers_of_one_process_share_one_engine_and_check_the_tables_once(
    url: str, statements: _Statements
) -> None:
    """Regression: each task's ledger re-checked the tables (issue 17: ~31 ms against ~10 ms per key)."""
    first = PartitionLedger(url, namespace="pricing")
    checked = len(statements.sent)
    assert checked > 0  # the first ledger of the process did check (and create) the tables
    statements.sent.clear()

    again = [PartitionLedger(url, namespace=f"pricing_{index}") for index in range(5)]

    assert all(ledger.engine is first.engine for ledger in again)
    assert statements.sent == []


def test_dropped_tables_are_recreated_when_asked(url: str) -> None:
    ledger = PartitionLedger(url, namespace="pricing")
    ledger_module.metadata.drop_all(ledger.engine)
    ledger.create_tables(force=True)
    claim = ledger.claim("berlin|2026-11-01", mode="missing")
    assert claim is not None and claim.fencing_token == 1


def test_a_claim_is_one_statement(url: str, statements: _Statements) -> None:
    """Regression: a claim was five round trips (insert-if-missing, update, select in a transaction)."""
    ledger = PartitionLedger(url, namespace="pricing")
    statements.sent.clear()

    first = ledger.claim("berlin|2026-11-01", mode="missing")
    again = ledger.claim("berlin|2026-11-01", mode="missing")  # live claim: left alone
    taken = ledger.claim("berlin|2026-11-01", mode="all")

    assert len(statements.sent) == 3
    assert all(sql.lstrip().upper().startswith("INSERT") for sql in statements.sent)
    assert first is not None and first.fencing_token == 1
    assert again is None
    assert taken is not None and taken.fencing_token == 2
    entry = ledger.entry("berlin|2026-11-01")
    assert entry is not None and (entry.state, entry.fencing_token, entry.commits) == ("claimed", 2, 0)


def _engine_in_child(url: str, parent_engine_id: int, out: Any) -> None:
    child = engine_for(url)
    out.put(
        (
            id(child) == parent_engine_id,
            PartitionLedger(url, namespace="child").claim("rome|2026-11-01", mode="all") is not None,
        )
    )


def test_a_forked_process_builds_its_own_engine_instead_of_sharing_pooled_connections(url: str) -> None:
    """A task runner is a fork: sharing the parent's pooled connections would corrupt both."""
    parent = PartitionLedger(url, namespace="parent")
    parent.claim("berlin|2026-11-01", mode="all")
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    proc = context.Process(target=_engine_in_child, args=(url, id(parent.engine), out))
    proc.start()
    same_engine, claimed = out.get(timeout=60)
    proc.join(timeout=30)
    assert proc.exitcode == 0
    assert (same_engine, claimed) == (False, True)
    # The parent's engine still works after the child used (and left) its own.
    assert parent.claim("paris|2026-11-01", mode="all") is not None
