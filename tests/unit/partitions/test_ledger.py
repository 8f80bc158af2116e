"""The partition ledger on SQLite: claims with fencing tokens, atomic publish, reprocess modes."""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from pathlib import Path

import pytest

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.partitions.ledger import (
    Eligibility,
    LedgerError,
    LedgerState,
    PartitionLedger,
    ReprocessMode,
    StaleClaimError,
)


@pytest.fixture
def ledger(tmp_path: Path) -> PartitionLedger:
    return PartitionLedger(
        f"sqlite:///{tmp_path / 'ledger.db'}", namespace="pricing", output_root=tmp_path / "out"
    )


def _write(ledger: PartitionLedger, claim, text: str) -> Path:
    staging = ledger.staging_dir(claim)
    (staging / "part-0.csv").write_text(text)
    return staging


def test_claim_then_publish_files_moves_the_current_pointer(ledger: PartitionLedger) -> None:
    claim = ledger.claim("berlin|2026-11-01", holder="run-1", mode="all")
    assert claim is not None and claim.fencing_token == 1
    commit = ledger.publish(claim, staging_path=_write(ledger, claim, "a\n"))
    current = ledger.current_path("berlin|2026-11-01")
    assert current is not None and current == Path(commit.location or "")
    assert (current / "part-0.csv").read_text() == "a\n"
    # The key is one path segment; the delimiter is encoded, never a nested directory.
    assert current.parent.name == "berlin%7C2026-11-01"
    entry = ledger.entry("berlin|2026-11-01")
    assert entry is not None and entry.state == "committed" and entry.commits == 1


def test_a_failed_rename_is_a_ledger_error_not_a_superseded_claim(
    ledger: PartitionLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk must fail (and retry) the task; as "superseded" it would pass with nothing published."""
    import errno
    import os

    claim = ledger.claim("berlin|2026-11-01", holder="run-1", mode="all")
    assert claim is not None
    staging = _write(ledger, claim, "a\n")

    def full_disk(src: object, dst: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "rename", full_disk)
    with pytest.raises(
        LedgerError, match=r"renaming .* failed: \[Errno 28\] No space left on device; check free"
    ) as err:
        ledger.publish(claim, staging_path=staging)
    assert not isinstance(err.value, StaleClaimError)
    monkeypatch.undo()
    # Nothing was published; the claim can still publish once the disk has room.
    assert ledger.current_path("berlin|2026-11-01") is None
    assert ledger.publish(claim, staging_path=staging).commits == 1


def test_publishing_the_same_claim_twice_is_refused_as_already_published(ledger: PartitionLedger) -> None:
    claim = ledger.claim("berlin|2026-11-01", holder="run-1", mode="all")
    assert claim is not None
    ledger.publish(claim, staging_path=_write(ledger, claim, "a\n"))
    with pytest.raises(StaleClaimError, match=r"already exists .*this claim was already published"):
        ledger.publish(claim, staging_path=_write(ledger, claim, "b\n"))


def test_stale_claim_cannot_publish_and_leaves_nothing_visible(ledger: PartitionLedger) -> None:
    """Two backfills of the same key: the older attempt must not publish (duplicate feature rows)."""
    old = ledger.claim("berlin|2026-11-01", holder="backfill-a", mode="all")
    new = ledger.claim("berlin|2026-11-01", holder="backfill-b", mode="all")
    assert old is not None and new is not None and new.fencing_token == old.fencing_token + 1
    old_staging = _write(ledger, old, "old\n")
    with pytest.raises(
        StaleClaimError, match=r"fencing token 1 .*newest claim is token 2 held by 'backfill-b'"
    ):
        ledger.publish(old, staging_path=old_staging)
    assert ledger.current_path("berlin|2026-11-01") is None
    assert list(ledger.key_dir("berlin|2026-11-01").glob("v*")) == []
    ledger.publish(new, staging_path=_write(ledger, new, "new\n"))
    current = ledger.current_path("berlin|2026-11-01")
    assert current is not None and (current / "part-0.csv").read_text() == "new\n"


def test_rerun_all_replaces_instead_of_appending(ledger: PartitionLedger) -> None:
    for text in ("v1\n", "v2\n", "v3\n"):
        claim = ledger.claim("paris|2026-11-01", mode="all")
        assert claim is not None
        ledger.publish(claim, staging_path=_write(ledger, claim, text))
    current = ledger.current_path("paris|2026-11-01")
    assert current is not None and (current / "part-0.csv").read_text() == "v3\n"
    # keep_versions=2: the current one and the previous one (a slow reader may still read it).
    assert sorted(p.name for p in ledger.key_dir("paris|2026-11-01").glob("v*")) == ["v00000002", "v00000003"]
    entry = ledger.entry("paris|2026-11-01")
    assert entry is not None and entry.commits == 3


def test_rows_publish_replaces_rows_atomically(ledger: PartitionLedger) -> None:
    claim = ledger.claim("rome|2026-11-02", mode="all")
    assert claim is not None
    ledger.publish(claim, rows=[{"f": 1}, {"f": 2}])
    claim = ledger.claim("rome|2026-11-02", mode="all")
    assert claim is not None
    commit = ledger.publish(claim, rows=[{"f": 3}])
    assert commit.row_count == 1
    assert ledger.read_rows("rome|2026-11-02") == [{"f": 3}]


def test_stale_rows_publish_keeps_the_old_rows(ledger: PartitionLedger) -> None:
    first = ledger.claim("rome|2026-11-02", mode="all")
    assert first is not None
    ledger.publish(first, rows=[{"f": 1}])
    stale = ledger.claim("rome|2026-11-02", mode="all")
    newer = ledger.claim("rome|2026-11-02", mode="all")
    assert stale is not None and newer is not None
    with pytest.raises(StaleClaimError):
        ledger.publish(stale, rows=[{"f": 9}, {"f": 9}])
    assert ledger.read_rows("rome|2026-11-02") == [{"f": 1}]


@pytest.mark.parametrize(
    ("state", "mode", "claimed"),
    [
        ("committed", "missing", False),
        ("committed", "failed", False),
        ("committed", "all", True),
        ("failed", "missing", False),
        ("failed", "failed", True),
        ("failed", "all", True),
        ("claimed", "missing", False),
        ("claimed", "failed", False),
        ("claimed", "all", True),
        ("new", "missing", True),
    ],
)
def test_reprocess_modes(ledger: PartitionLedger, state: str, mode: str, claimed: bool) -> None:
    key = "oslo|2026-11-03"
    if state != "new":
        claim = ledger.claim(key, mode="all")
        assert claim is not None
        if state == "committed":
            ledger.publish(claim, rows=[{"x": 1}])
        elif state == "failed":
            assert ledger.fail(claim, "boom")
    assert ledger.plan([key], mode).to_run == ((key,) if claimed else ())
    assert (ledger.claim(key, mode=mode) is not None) is claimed


def test_stale_claims_are_taken_over_in_missing_mode(tmp_path: Path) -> None:
    """A worker that died holding a claim must not block the key forever."""
    ledger = PartitionLedger(
        f"sqlite:///{tmp_path / 'l.db'}", namespace="n", stale_after=dt.timedelta(microseconds=1)
    )
    first = ledger.claim("k", mode="all")
    assert first is not None
    second = ledger.claim("k", mode="missing")
    assert second is not None and second.fencing_token == 2


def test_plan_describes_skips(ledger: PartitionLedger) -> None:
    claim = ledger.claim("a|2026-11-01", mode="all")
    assert claim is not None
    ledger.publish(claim, rows=[])
    plan = ledger.plan(["a|2026-11-01", "b|2026-11-01"], "missing")
    assert plan.to_run == ("b|2026-11-01",)
    assert plan.describe() == "1 key(s) to process in mode 'missing'; skipped: 1 already committed"


def test_native_reprocess_behaviour_names_map_onto_modes() -> None:
    assert ReprocessMode.parse("none") is ReprocessMode.MISSING
    assert ReprocessMode.parse("completed") is ReprocessMode.ALL
    with pytest.raises(GuardConfigError, match=r"reprocess mode 'everything' is not valid; use 'missing'"):
        ReprocessMode.parse("everything")


def test_bad_keys_and_staging_paths_are_rejected(ledger: PartitionLedger, tmp_path: Path) -> None:
    with pytest.raises(GuardConfigError, match="path separator"):
        ledger.claim("berlin/../etc|2026-11-01", mode="all")
    claim = ledger.claim("a|2026-11-01", mode="all")
    assert claim is not None
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    with pytest.raises(LedgerError, match="is not a directory under"):
        ledger.publish(claim, staging_path=outside)
    with pytest.raises(LedgerError, match="exactly one of"):
        ledger.publish(claim)


def test_concurrent_claims_on_sqlite_publish_exactly_once(ledger: PartitionLedger) -> None:
    keys = [f"c{i}|2026-11-01" for i in range(10)]
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        try:
            for key in keys:
                claim = ledger.claim(key, mode="all", holder=name)
                assert claim is not None
                with contextlib.suppress(StaleClaimError):
                    ledger.publish(claim, rows=[{"key": key, "by": name}])
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for key in keys:
        assert len(ledger.read_rows(key)) == 1
        entry = ledger.entry(key)
        assert entry is not None and entry.state in {"committed", "claimed"}


@pytest.mark.parametrize("earlier_try_ends", ["failed", "killed"])
def test_a_retry_of_the_same_task_instance_takes_back_its_key_in_mode_missing(
    ledger: PartitionLedger, earlier_try_ends: str
) -> None:
    """Regression: a unit that failed (or whose worker was killed) was retried in mode 'missing'; the
    retry found the key failed/claimed, skipped it and succeeded without committing it."""
    prefix = "daily/run-1/train_partition[3] try "
    first = ledger.claim("berlin|2026-11-01", mode="missing", holder=prefix + "1", retry_of=prefix)
    assert first is not None
    if earlier_try_ends == "failed":
        ledger.fail(first, "loss is NaN")
    # another task instance (another run's backfill) still leaves the key alone
    other = "daily/run-2/train_partition[0] try "
    assert ledger.claim("berlin|2026-11-01", mode="missing", holder=other + "1", retry_of=other) is None
    retry = ledger.claim("berlin|2026-11-01", mode="missing", holder=prefix + "2", retry_of=prefix)
    assert retry is not None and retry.fencing_token > first.fencing_token
    entry = ledger.entry("berlin|2026-11-01")
    assert entry is not None and entry.state == "claimed" and entry.holder == prefix + "2"


def test_a_committed_key_is_not_taken_back_by_a_retry_in_mode_missing(ledger: PartitionLedger) -> None:
    prefix = "daily/run-1/train_partition[3] try "
    claim = ledger.claim("berlin|2026-11-02", mode="missing", holder=prefix + "1", retry_of=prefix)
    assert claim is not None
    ledger.publish(claim, staging_path=_write(ledger, claim, "rows"))
    assert ledger.claim("berlin|2026-11-02", mode="missing", holder=prefix + "2", retry_of=prefix) is None


def test_retry_prefix_wildcards_are_literal(ledger: PartitionLedger) -> None:
    """A holder prefix with '%' or '_' must not match other task instances (LIKE wildcards)."""
    owner = "dag_a/run/t[0] try "
    claim = ledger.claim("oslo|2026-11-01", mode="missing", holder=owner + "1", retry_of=owner)
    assert claim is not None
    wildcard = "dag%/run/t[0] try "
    assert ledger.claim("oslo|2026-11-01", mode="missing", holder=wildcard + "2", retry_of=wildcard) is None


def test_the_ledger_state_is_an_enum_that_compares_as_the_stored_string(ledger: PartitionLedger) -> None:
    claim = ledger.claim("oslo|2026-11-04", mode="missing")
    assert claim is not None
    entry = ledger.entry("oslo|2026-11-04")
    assert entry is not None and entry.state is LedgerState.CLAIMED
    assert entry.state == "claimed" and (entry.state, entry.fencing_token) == ("claimed", 1)


def test_an_unknown_stored_state_is_an_error_that_names_it() -> None:
    with pytest.raises(LedgerError, match=r"ledger state 'archived' is not one of \['new', 'claimed'"):
        LedgerState.parse("archived")


NOW = dt.datetime(2026, 11, 1, 12, 0)
STALE_BEFORE = NOW - dt.timedelta(hours=6)
LIVE = NOW - dt.timedelta(minutes=5)
ABANDONED = NOW - dt.timedelta(hours=7)


@pytest.mark.parametrize(
    ("mode", "state", "claimed_at", "holder", "eligible"),
    [
        ("missing", None, None, None, True),
        ("missing", "new", None, None, True),
        ("missing", "claimed", LIVE, "other try 1", False),
        ("missing", "claimed", ABANDONED, "other try 1", True),
        ("missing", "failed", LIVE, "other try 1", False),
        ("missing", "committed", LIVE, "dag/run/t[0] try 1", False),
        ("missing", "claimed", LIVE, "dag/run/t[0] try 1", True),
        ("missing", "failed", LIVE, "dag/run/t[0] try 1", True),
        ("failed", "failed", LIVE, "other try 1", True),
        ("failed", "claimed", LIVE, "other try 1", False),
        ("failed", "committed", LIVE, "other try 1", False),
        ("all", "claimed", LIVE, "other try 1", True),
        ("all", "committed", LIVE, "other try 1", True),
    ],
)
def test_one_eligibility_rule_gives_the_same_answer_in_python_and_in_sql(
    tmp_path: Path,
    mode: str,
    state: str | None,
    claimed_at: dt.datetime | None,
    holder: str | None,
    eligible: bool,
) -> None:
    """claim (SQL) and plan (Python) once each had their own copy of this rule (issue 15)."""
    from sqlalchemy import create_engine, insert, select

    from airflow_training_guard.partitions.ledger import ledger_table, metadata

    rule = Eligibility(ReprocessMode.parse(mode), stale_before=STALE_BEFORE, retry_of="dag/run/t[0] try ")
    assert rule.allows(state, claimed_at, holder) is eligible
    engine = create_engine(f"sqlite:///{tmp_path / 'rule.db'}")
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            insert(ledger_table).values(
                namespace="n",
                partition_key="k",
                state=state or "new",
                fencing_token=1,
                holder=holder,
                claimed_at=claimed_at,
                commits=0,
            )
        )
        condition = rule.where(ledger_table)
        query = select(ledger_table.c.partition_key)
        if condition is not None:
            query = query.where(condition)
        assert (conn.execute(query).first() is not None) is eligible


def test_plan_and_claim_agree_on_an_abandoned_claim(tmp_path: Path) -> None:
    ledger = PartitionLedger(
        f"sqlite:///{tmp_path / 'l.db'}", namespace="n", stale_after=dt.timedelta(microseconds=1)
    )
    assert ledger.claim("k", mode="all") is not None
    assert ledger.plan(["k"], "missing").to_run == ("k",)
    assert ledger.claim("k", mode="missing") is not None
