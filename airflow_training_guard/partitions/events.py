"""Make committed partition keys visible to Airflow's own partition machinery.

Airflow 3.3 schedules a DAG on *partitioned asset events*: a task that declares an asset as an
outlet calls ``outlet_events[asset].add_partitions(key)`` and, when it succeeds, Airflow records one
asset event per key with that ``partition_key``. A DAG scheduled with
``PartitionedAssetTimetable(assets=asset)`` then gets one run per key, ``dag_run.partition_key ==
"berlin|2026-11-01"``, without polling the ledger.

:func:`announce_committed` turns the results of a pipeline's mapped ``train_partition`` task into
those events: only keys whose output was committed by that run (not ``skipped`` because already
done, not ``superseded`` by a newer attempt, not failed). Keys are the ledger's own
(``city|date``), which is also the format of Airflow's ``ProductMapper``.

No Airflow import: the accessor is duck-typed, so this is testable without Airflow.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from airflow_training_guard.partitions.keys import parse_key

__all__ = ["PartitionAccessor", "announce_committed", "committed_keys"]


class PartitionAccessor(Protocol):
    """What ``outlet_events[asset]`` offers in Airflow 3.3 (``OutletEventAccessor``)."""

    def add_partitions(self, keys: str | list[str]) -> None: ...


def committed_keys(results: Iterable[Mapping[str, Any] | None]) -> list[str]:
    """The keys of ``results`` (``run_unit`` return values) whose status is ``committed``, in order.

    ``None`` entries (a mapped instance that failed returns no value) are ignored.
    """
    keys: list[str] = []
    for result in results:
        if not result or result.get("status") != "committed":
            continue
        key = str(result["partition_key"])
        parse_key(key)  # a key that is not a valid partition key never reaches Airflow
        if key not in keys:
            keys.append(key)
    return keys


def announce_committed(accessor: PartitionAccessor, results: Iterable[Mapping[str, Any] | None]) -> list[str]:
    """Add one partition per committed key to ``accessor`` (``outlet_events[asset]``); return the keys."""
    keys = committed_keys(results)
    if keys:
        accessor.add_partitions(keys)
    return keys
