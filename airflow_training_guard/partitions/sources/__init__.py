"""Where partitions are looked for: one small interface, one module per source.

A :class:`PartitionSource` looks at an expected set once and reports a
:class:`~airflow_training_guard.partitions.completeness.PartitionObservation` per partition it
found; :meth:`PartitionSource.check` turns that into a
:class:`~airflow_training_guard.partitions.completeness.CompletenessResult`. The sensor calls
:meth:`~PartitionSource.check` (sync poke), its trigger :meth:`~PartitionSource.check_async`
(deferred): the same check, so both modes agree.

- :mod:`.base`: :class:`PartitionSource` (a frozen dataclass: fields, serialization by ``kind``,
  equality), the bounded worker pool of the asynchronous checks, :class:`GuardSecurityWarning`.
- :mod:`.object_storage`: :class:`ObjectStorageSource`: files through Airflow's
  ``ObjectStoragePath`` (``file://``, ``s3://``, ``gs://`` ...), one :class:`PathTemplate`
  (:mod:`.path_template`) per partition. Present means the success marker (default ``_SUCCESS``)
  exists and the data files reach ``min_files`` and ``min_bytes``; listings are bounded by the
  expected set, never once per partition.
- :mod:`.sql`: :class:`SqlSource`: one query through a ``common.sql`` hook returns
  ``(partition_key, row_count)`` rows; present means ``row_count >= min_rows``.
- :mod:`.callable`: :class:`CallableSource`: a function for anything else.

Each source registers its ``kind`` with
:func:`~airflow_training_guard.partitions.registry.register_kind`, the registry the expected sets
use too. Airflow is imported inside the methods that talk to storage or databases only, so
importing this package (and :mod:`airflow_training_guard.partitions`) stays free of Airflow.
"""

from __future__ import annotations

from airflow_training_guard.partitions.sources.base import (
    CHECK_THREADS,
    CHECKS_PER_STORE,
    GuardSecurityWarning,
    PartitionSource,
)
from airflow_training_guard.partitions.sources.callable import CallableSource, CheckCallable
from airflow_training_guard.partitions.sources.object_storage import (
    LISTING_MODES,
    Listing,
    ObjectStorageSource,
)
from airflow_training_guard.partitions.sources.path_template import PathTemplate
from airflow_training_guard.partitions.sources.sql import SqlSource

__all__ = [
    "CHECKS_PER_STORE",
    "CHECK_THREADS",
    "LISTING_MODES",
    "CallableSource",
    "CheckCallable",
    "GuardSecurityWarning",
    "Listing",
    "ObjectStorageSource",
    "PartitionSource",
    "PathTemplate",
    "SqlSource",
]
