"""The coverage grid read from a real SQLite ledger: states, counts, filters, queued runs, cell details."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import update

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.partitions.coverage import (
    CellState,
    GridSpec,
    QueuedKey,
    parse_holder,
    read_cell,
    read_coverage,
)
from airflow_training_guard.partitions.ledger import PartitionLedger, ledger_table

CITIES = ("berlin", "oslo", "rome")
DAY1, DAY2, DAY3 = "2026-11-01", "2026-11-02", "2026-11-03"
HOLDER = "city_pricing_backfill/manual__2026-11-05T00:00:00+00:00/train_partition[4] try 1"


@pytest.fixture
def ledger(tmp_path: Path) -> PartitionLedger:
    return PartitionLedger(f"sqlite:///{tmp_path / 'ledger.db'}", namespace="city_pricing")


def _spec(**changes: object) -> GridSpec:
    values: dict[str, object] = {
        "namespace": "city_pricing",
        "dimensions": (("city", CITIES),),
        "date_from": dt.date(2026, 11, 1),
        "date_to": dt.date(2026, 11, 3),
    }
    values.update(changes)
    return GridSpec(**values)  # type: ignore[arg-type]


def _commit(ledger: PartitionLedger, key: str, rows: int = 24) -> None:
    claim = ledger.claim(key, mode="all", holder=HOLDER)
    assert claim is not None
    ledger.publish(claim, rows=[{"n": n} for n in range(rows)])


def _fail(ledger: PartitionLedger, key: str, error: str) -> None:
    claim = ledger.claim(key, mode="all", holder=HOLDER)
    assert claim is not None
    assert ledger.fail(claim, error)


def _age_claim(ledger: PartitionLedger, key: str, hours: float) -> None:
    with ledger.engine.begin() as conn:
        conn.execute(
            update(ledger_table)
            .where(ledger_table.c.partition_key == key)
            .values(claimed_at=dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(hours=hours))
        )


def test_each_cell_takes_the_state_of_its_ledger_row_and_counts_add_up(ledger: PartitionLedger) -> None:
    _commit(ledger, f"berlin|{DAY1}")
    _commit(ledger, f"berlin|{DAY2}")
    _fail(ledger, f"oslo|{DAY1}", "FileNotFoundError: input missing")
    assert ledger.claim(f"rome|{DAY3}", mode="all", holder=HOLDER) is not None  # live claim
    assert ledger.claim(f"oslo|{DAY3}", mode="all", holder=HOLDER) is not None
    _age_claim(ledger, f"oslo|{DAY3}", hours=7)  # older than stale_after (6 h): superseded

    grid = read_coverage(ledger.engine, _spec())

    assert grid.rows == (("berlin",), ("oslo",), ("rome",))
    assert grid.dates == (DAY1, DAY2, DAY3)
    assert grid.states == ("CCM", "FMS", "MMR")
    assert grid.state(1, 0) is CellState.FAILED
    assert grid.counts == {"committed": 2, "running": 1, "failed": 1, "superseded": 1, "missing": 4}
    assert sum(grid.counts.values()) == len(CITIES) * 3
    assert grid.keys_in(CellState.FAILED, CellState.SUPERSEDED) == [f"oslo|{DAY1}", f"oslo|{DAY3}"]


def test_keys_outside_the_date_range_or_of_another_namespace_are_not_counted(
    ledger: PartitionLedger, tmp_path: Path
) -> None:
    _commit(ledger, "berlin|2026-10-31")
    _commit(ledger, "berlin|2026-11-04")
    other = PartitionLedger(ledger.engine, namespace="fraud_model")
    claim = other.claim(f"berlin|{DAY1}", mode="all", holder=HOLDER)
    assert claim is not None
    other.publish(claim, rows=[])

    grid = read_coverage(ledger.engine, _spec())

    assert grid.counts["committed"] == 0
    assert grid.states == ("MMM",) * 3


def test_filters_keep_only_the_chosen_values_in_the_known_order(ledger: PartitionLedger) -> None:
    _commit(ledger, f"rome|{DAY2}")

    grid = read_coverage(ledger.engine, _spec(where={"city": ("rome", "berlin")}))

    assert grid.rows == (("berlin",), ("rome",))
    assert grid.states == ("MMM", "MCM")


def test_filter_on_an_unknown_value_names_it_and_the_known_values(ledger: PartitionLedger) -> None:
    with pytest.raises(
        GuardConfigError,
        match=r"city \['lodnon'\] not known in pipeline 'city_pricing' \(known: berlin, oslo, rome\)",
    ):
        read_coverage(ledger.engine, _spec(where={"city": ("lodnon",)}))


def test_a_reversed_range_is_refused_with_the_fix() -> None:
    with pytest.raises(GuardConfigError, match=r"2026-11-03\.\.2026-11-01 is reversed; swap the dates"):
        _spec(date_from=dt.date(2026, 11, 3), date_to=dt.date(2026, 11, 1))


def test_a_filter_on_a_dimension_the_pipeline_does_not_have_is_refused() -> None:
    with pytest.raises(
        GuardConfigError, match=r"unknown dimension\(s\) \['region'\]; pipeline 'city_pricing' has \['city'\]"
    ):
        _spec(where={"region": ("eu",)})


def test_without_known_values_the_rows_are_the_values_found_in_the_ledger(ledger: PartitionLedger) -> None:
    _commit(ledger, f"oslo|{DAY1}")
    _commit(ledger, f"athens|{DAY3}")

    grid = read_coverage(ledger.engine, _spec(dimensions=(("city", ()),)))

    assert grid.rows == (("athens",), ("oslo",))
    assert grid.states == ("MMC", "CMM")


def test_a_queued_run_shows_its_unclaimed_keys_as_running_until_it_claims_them(
    ledger: PartitionLedger,
) -> None:
    """The page triggers a backfill and must show its keys as running before any task has started."""
    _fail(ledger, f"oslo|{DAY1}", "boom")
    queued_at = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(seconds=1)
    queued = {
        f"oslo|{DAY1}": QueuedKey("manual__retry", queued_at),  # failed before the run: pending
        f"rome|{DAY2}": QueuedKey("manual__retry", queued_at),  # no row yet: pending
    }

    grid = read_coverage(ledger.engine, _spec(), queued=queued)

    assert grid.states == ("MMM", "RMM", "MRM")
    assert grid.queued == {f"oslo|{DAY1}": "manual__retry", f"rome|{DAY2}": "manual__retry"}
    assert grid.counts["running"] == 2 and grid.counts["failed"] == 0


def test_once_the_queued_run_has_claimed_a_key_the_ledger_state_counts_again(
    ledger: PartitionLedger,
) -> None:
    queued_at = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(seconds=5)
    _fail(ledger, f"oslo|{DAY1}", "boom again")  # claimed after the run was queued

    grid = read_coverage(ledger.engine, _spec(), queued={f"oslo|{DAY1}": QueuedKey("r", queued_at)})

    assert grid.states[1] == "FMM"
    assert grid.queued == {}


def test_thirty_values_by_a_year_is_one_string_of_365_letters_per_value(ledger: PartitionLedger) -> None:
    cities = tuple(f"city{n:02d}" for n in range(30))
    _commit(ledger, "city07|2026-06-30")

    grid = read_coverage(
        ledger.engine,
        _spec(dimensions=(("city", cities),), date_from=dt.date(2026, 1, 1), date_to=dt.date(2026, 12, 31)),
    )

    assert len(grid.states) == 30 and {len(line) for line in grid.states} == {365}
    assert grid.counts == {"committed": 1, "running": 0, "failed": 0, "superseded": 0, "missing": 10_949}
    assert grid.states[7][grid.dates.index("2026-06-30")] == "C"
    payload = grid.to_payload()
    assert payload["codes"] == {
        "C": "committed",
        "R": "running",
        "F": "failed",
        "S": "superseded",
        "M": "missing",
    }


def test_cell_details_name_commits_token_version_rows_holder_and_task_instance(
    ledger: PartitionLedger,
) -> None:
    _commit(ledger, f"berlin|{DAY1}", rows=24)
    _commit(ledger, f"berlin|{DAY1}", rows=12)  # a rerun in mode all replaces: 2 commits, version 2

    detail = read_cell(ledger.engine, "city_pricing", f"berlin|{DAY1}").to_payload()

    assert detail["state"] == "committed"
    assert (detail["commits"], detail["fencing_token"], detail["version"], detail["row_count"]) == (
        2,
        2,
        2,
        12,
    )
    assert detail["holder"] == HOLDER
    assert detail["since"] is not None and detail["since"].endswith("+00:00")
    assert detail["task_instance"] == {
        "dag_id": "city_pricing_backfill",
        "run_id": "manual__2026-11-05T00:00:00+00:00",
        "task_id": "train_partition",
        "map_index": 4,
        "try_number": 1,
    }


def test_cell_details_of_a_failed_key_carry_its_last_error(ledger: PartitionLedger) -> None:
    _fail(ledger, f"oslo|{DAY2}", "FileNotFoundError: input of partition_key='oslo|2026-11-02' is missing")

    detail = read_cell(ledger.engine, "city_pricing", f"oslo|{DAY2}")

    assert detail.state is CellState.FAILED
    assert detail.error == "FileNotFoundError: input of partition_key='oslo|2026-11-02' is missing"
    assert detail.version is None and detail.commits == 0


def test_a_key_never_claimed_is_missing_with_zero_commits(ledger: PartitionLedger) -> None:
    detail = read_cell(ledger.engine, "city_pricing", f"rome|{DAY3}")
    assert (detail.state, detail.commits, detail.holder, detail.task_instance) == (
        CellState.MISSING,
        0,
        None,
        None,
    )


@pytest.mark.parametrize(
    "holder",
    ["", "cli", "dag/run/task try x", "dag/run/task[x] try 1", "no-slash[1] try 1"],
)
def test_a_holder_that_is_not_a_task_instance_gives_no_link(holder: str) -> None:
    assert parse_holder(holder) is None
