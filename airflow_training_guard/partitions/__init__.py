"""Partitions: keys, the sets a training run expects, and the check that they are all there.

A model trained on 18 of 24 hourly partitions shipped with 8% lower NDCG. This room holds the pure
logic that prevents it; ``PartitionCompletenessSensor`` (``airflow_training_guard.sensors``) and
its trigger are thin adapters around it.

- :mod:`.keys`: the one canonical key format, ``|``-delimited like Airflow's ``ProductMapper``:
  :class:`PartitionKey` (a ``str`` parsed once, with its ``parts`` and ``dimensions``),
  :func:`format_key`, :func:`parse_key`, :func:`key_fields` for path placeholders.
- :mod:`.expected`: immutable expected sets: :class:`HoursOfDay` (23/24/25 hours, time-zone
  aware), :class:`HoursOfRange`, :class:`DaysOfRange` (inclusive), :class:`Product` (cities x
  dates), :class:`ExplicitKeys`.
- :mod:`.completeness`: :class:`CompletenessResult`: ``present/expected``, missing keys written as
  ranges, the XCom value.
- :mod:`.sources`: :class:`PartitionSource` and its implementations, one module each:
  :class:`ObjectStorageSource` (``ObjectStoragePath``, listings bounded by the expected set),
  :class:`SqlSource` (one ``common.sql`` query) and :class:`CallableSource`.
- :mod:`.registry`: the one ``kind`` registry that expected sets and sources serialize by.

Importing this package does not import Airflow (the sources import it inside the methods that
reach storage), so DAG files, tests and other tools can use keys and expected sets cheaply.
See ``docs/partition-completeness.md``.
"""

from __future__ import annotations

from airflow_training_guard.partitions.completeness import (
    CompletenessResult,
    PartitionObservation,
    PartitionStatus,
    format_key_ranges,
)
from airflow_training_guard.partitions.expected import (
    MAX_EXPECTED_KEYS,
    DaysOfRange,
    ExpectedPartitions,
    ExplicitKeys,
    HoursOfDay,
    HoursOfRange,
    Product,
    as_expected,
)
from airflow_training_guard.partitions.keys import (
    DELIMITER,
    MAX_KEY_LENGTH,
    PartitionKey,
    format_key,
    is_valid_key,
    key_fields,
    parse_key,
    validate_part,
)
from airflow_training_guard.partitions.sources import (
    CallableSource,
    ObjectStorageSource,
    PartitionSource,
    PathTemplate,
    SqlSource,
)

__all__ = [
    "DELIMITER",
    "MAX_EXPECTED_KEYS",
    "MAX_KEY_LENGTH",
    "CallableSource",
    "CompletenessResult",
    "DaysOfRange",
    "ExpectedPartitions",
    "ExplicitKeys",
    "HoursOfDay",
    "HoursOfRange",
    "ObjectStorageSource",
    "PartitionKey",
    "PartitionObservation",
    "PartitionSource",
    "PartitionStatus",
    "PathTemplate",
    "Product",
    "SqlSource",
    "as_expected",
    "format_key",
    "format_key_ranges",
    "is_valid_key",
    "key_fields",
    "parse_key",
    "validate_part",
]
