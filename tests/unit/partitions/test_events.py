"""Committed keys become partitions of an asset event, through Airflow's own outlet accessor."""

from __future__ import annotations

import pytest
from airflow.sdk import Asset
from airflow.sdk.execution_time.context import OutletEventAccessors

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.partitions.events import announce_committed, committed_keys

ASSET = Asset(name="city_demand", uri="training-guard://city_demand")


def test_only_keys_this_run_committed_are_announced_once_each() -> None:
    results = [
        {"partition_key": "berlin|2026-11-01", "status": "committed", "fencing_token": 1},
        {"partition_key": "oslo|2026-11-01", "status": "skipped", "state": "committed"},
        {"partition_key": "rome|2026-11-01", "status": "superseded", "fencing_token": 2},
        None,  # a failed mapped instance returns nothing
        {"partition_key": "berlin|2026-11-02", "status": "committed", "fencing_token": 1},
        {"partition_key": "berlin|2026-11-01", "status": "committed", "fencing_token": 1},
    ]
    accessor = OutletEventAccessors()[ASSET]

    keys = announce_committed(accessor, results)

    assert keys == ["berlin|2026-11-01", "berlin|2026-11-02"]
    assert accessor.partition_keys == {"berlin|2026-11-01", "berlin|2026-11-02"}


def test_a_run_that_committed_nothing_adds_no_partition() -> None:
    accessor = OutletEventAccessors()[ASSET]
    assert announce_committed(accessor, [{"partition_key": "a|2026-11-01", "status": "skipped"}]) == []
    assert accessor.partition_keys == set()


def test_a_result_whose_key_is_not_a_partition_key_is_refused() -> None:
    with pytest.raises(GuardConfigError, match=r"\.\./x"):
        committed_keys([{"partition_key": "../x|2026-11-01", "status": "committed"}])
