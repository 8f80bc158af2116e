"""Where partitions are looked for: one small interface, three sources.

A :class:`PartitionSource` looks at an expected set once and reports a
:class:`~airflow_training_guard.partitions.completeness.PartitionObservation` per partition it
found; :meth:`PartitionSource.check` turns that into a
:class:`~airflow_training_guard.partitions.completeness.CompletenessResult`. The sensor calls
:meth:`~PartitionSource.check` (sync poke), its trigger :meth:`~PartitionSource.check_async`
(deferred): the same check, so both modes agree.

- :class:`ObjectStorageSource`: files through Airflow's ``ObjectStoragePath`` (``file://``,
  ``s3://``, ``gs://`` ...), one path template per partition. Present means the success marker
  (default ``_SUCCESS``) exists and the data files (every file but the marker and hidden
  ``_``/``.`` files) reach ``min_files`` and ``min_bytes``. The store is listed once per common
  prefix, never once per partition.
- :class:`SqlSource`: one query through a ``common.sql`` hook returns ``(partition_key,
  row_count)`` rows; present means ``row_count >= min_rows``.
- :class:`CallableSource`: a function for anything else.

Airflow is imported inside the methods that talk to storage or databases only, so importing this
module (and :mod:`airflow_training_guard.partitions`) stays free of Airflow.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import importlib
import inspect
import json
import os
import posixpath
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, Literal

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.partitions.completeness import (
    CompletenessResult,
    PartitionObservation,
    PartitionStatus,
)
from airflow_training_guard.partitions.expected import ExpectedPartitions, Renderer, is_template
from airflow_training_guard.partitions.keys import DELIMITER, RESERVED_FIELD_NAMES, key_fields, parse_temporal

Listing = Literal["bounded", "common_prefix", "per_parent"]
LISTING_MODES: tuple[str, ...] = ("bounded", "common_prefix", "per_parent")


class GuardSecurityWarning(UserWarning):
    """A configuration that works but opens a security hole (SQL built from run conf or params)."""


#: Jinja that reads what a person triggering a run controls: ``params`` and ``dag_run.conf``.
_USER_CONTROLLED = re.compile(r"\bparams\b|\bdag_run\s*\.\s*conf\b|\bconf\s*[\[.]")

_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_URL_WITH_CONN = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<conn>[^/@]*)@")


class PathTemplate:
    """A location per partition: ``"s3://bucket/events/date={date}/hour={hour}"``.

    Placeholders are those of :func:`~airflow_training_guard.partitions.keys.key_fields`
    (``{date}``, ``{hour}``, ``{utc_hour}``, ``{0}``, ``{city}``, ``{partition_key}`` ...). Jinja
    (``{{ var.value.data_root }}``) may appear too and is rendered by the sensor first.

    :param template: the template.
    :raises GuardConfigError: when it is empty, has no placeholder, a malformed placeholder or a
        stray brace.
    """

    def __init__(self, template: str, *, name: str = "path_template") -> None:
        if not isinstance(template, str) or not template.strip():
            raise GuardConfigError(
                f"{name} {template!r} must be a non-empty string such as "
                "'s3://bucket/events/date={date}/hour={hour}'"
            )
        self.template = template
        self.name = name
        outside = _JINJA.sub("", template)
        found = _PLACEHOLDER.findall(outside)
        for placeholder in found:
            if not (placeholder.isidentifier() or placeholder.isdigit()):
                raise GuardConfigError(
                    f"{name} {template!r} has the placeholder {{{placeholder}}}; placeholders are plain names "
                    "such as {date}, {hour} or {city}, or part positions such as {0}"
                )
        if "{" in _PLACEHOLDER.sub("", outside) or "}" in _PLACEHOLDER.sub("", outside):
            raise GuardConfigError(f"{name} {template!r} has an unmatched '{{' or '}}'")
        if not found:
            raise GuardConfigError(
                f"{name} {template!r} has no partition placeholder, so every partition would be looked for "
                "at the same place; add the parts that tell partitions apart, e.g. "
                "'.../date={date}/hour={hour}' (available: {partition_key}, {date}, {hour}, {0}, "
                "{<dimension name>} ...)"
            )
        self.placeholders = tuple(dict.fromkeys(found))

    @property
    def is_templated(self) -> bool:
        return is_template(self.template)

    def render(self, key: str, names: Sequence[str | None] = ()) -> str:
        """The location of ``key``.

        :raises GuardConfigError: when the template uses a placeholder the key does not provide.
        """
        return self._render(self.template, key, names)

    def _render(self, template: str, key: str, names: Sequence[str | None]) -> str:
        fields = key_fields(key, names)

        def substitute(match: re.Match[str]) -> str:
            placeholder = match.group(1)
            if placeholder not in fields:
                raise GuardConfigError(
                    _unknown_placeholder(self.name, self.template, placeholder, key, fields)
                )
            return fields[placeholder]

        return _PLACEHOLDER.sub(substitute, template)

    def check_distinct(self, expected: ExpectedPartitions) -> None:
        """Check that every expected key gets its own location.

        Jinja parts are taken as the same for every key. A fall-back day's two 02:00 hours under
        ``date={date}/hour={hour}`` is the classic collision.

        :raises GuardConfigError: naming two keys that share a location and what tells them apart.
        """
        template = _JINJA.sub("JINJA", self.template)
        names = expected.names
        seen: dict[str, str] = {}
        for key in expected:
            location = self._render(template, key, names)
            other = seen.setdefault(location, key)
            if other != key:
                raise GuardConfigError(_collision(self.name, self.template, other, key, location, names))

    def __repr__(self) -> str:
        return f"PathTemplate({self.template!r})"


def _unknown_placeholder(
    name: str, template: str, placeholder: str, key: str, fields: Mapping[str, str]
) -> str:
    hint = ""
    if placeholder in RESERVED_FIELD_NAMES - {"partition_key"}:
        hint = (
            f" ({{{placeholder}}} needs exactly one date or date-time part in the key, such as "
            "'2026-11-01' or '2026-11-01T09:00:00')"
        )
    available = ", ".join("{" + field + "}" for field in fields)
    return (
        f"{name} {template!r} uses {{{placeholder}}}, which partition key {key!r} does not provide{hint}; "
        f"available: {available}"
    )


def _collision(
    name: str, template: str, first: str, second: str, location: str, names: Sequence[str | None]
) -> str:
    one, two = key_fields(first, names), key_fields(second, names)
    differing = [field for field in one if field in two and one[field] != two[field]]
    best = [f for f in differing if not f.isdigit() and f != "partition_key"] or [
        f for f in differing if f.isdigit()
    ]
    fall_back = "offset" in differing and one.get("hour") == two.get("hour")
    return (
        f"{name} {template!r} gives partitions {first!r} and {second!r} the same location {location!r}, "
        "so one could pass for the other; add a placeholder that tells them apart: "
        + ", ".join("{" + field + "}" for field in best or ["partition_key"])
        + (
            " (a fall-back day has the same local hour twice: use {utc_date}/{utc_hour}, or add {offset})"
            if fall_back
            else ""
        )
    )


class PartitionSource(ABC):
    """Looks at storage once and says, per expected partition, what it found.

    Subclasses implement :meth:`observe`, :meth:`serialize` and :meth:`describe`; the rest is
    derived. Sources are values: equal when their configuration is.
    """

    kind: ClassVar[str]
    _kinds: ClassVar[dict[str, type[PartitionSource]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            PartitionSource._kinds[cls.kind] = cls

    @abstractmethod
    def observe(self, expected: ExpectedPartitions) -> Mapping[str, PartitionObservation]:
        """What is there for each expected key (keys left out are missing). Blocking."""

    async def observe_async(self, expected: ExpectedPartitions) -> Mapping[str, PartitionObservation]:
        """:meth:`observe` for an event loop, in the package's bounded worker pool.

        Not the loop's default pool: that one is shared by every trigger of the triggerer, and
        thousands of completeness checks in it stretched every trigger's interval (issue 17). At
        most :data:`CHECKS_PER_STORE` checks of one store run at once, so a slow store holds at
        most that many of the :data:`CHECK_THREADS` threads and cannot starve the others.
        """
        async with _store_slot(self.store_key()):
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(_check_executor(), self.observe, expected)

    def store_key(self) -> str:
        """Which store a check talks to; checks of one store share :data:`CHECKS_PER_STORE` slots."""
        return self.kind

    def check(self, expected: ExpectedPartitions) -> CompletenessResult:
        """One complete look at the expected set (the sensor's poke)."""
        return CompletenessResult.evaluate(expected.keys(), _aligned(expected, self.observe(expected)))

    async def check_async(self, expected: ExpectedPartitions) -> CompletenessResult:
        """The same look from an event loop (the trigger's run)."""
        observed = await self.observe_async(expected)
        return CompletenessResult.evaluate(expected.keys(), _aligned(expected, observed))

    def validate(self, expected: ExpectedPartitions) -> None:  # noqa: B027 - optional hook, no-op by default
        """Check the source against the expected set when the DAG is parsed; raise GuardConfigError."""

    def render(self, renderer: Renderer) -> PartitionSource:
        """Return this source with its Jinja templates rendered."""
        return self

    def parse_time_warnings(self) -> list[str]:
        """Configurations that work but are dangerous; the sensor logs and warns them at parse time."""
        return []

    @abstractmethod
    def serialize(self) -> dict[str, Any]:
        """A JSON-compatible dict :meth:`deserialize` rebuilds the source from (trigger kwargs)."""

    @abstractmethod
    def describe(self) -> str:
        """One line for logs: what is looked at, and what counts as present."""

    @staticmethod
    def deserialize(data: dict[str, Any]) -> PartitionSource:
        kind = data.get("kind") if isinstance(data, dict) else None
        cls = PartitionSource._kinds.get(kind) if isinstance(kind, str) else None
        if cls is None:
            raise GuardConfigError(
                f"cannot rebuild a partition source from {data!r}: unknown kind {kind!r}; known kinds: "
                f"{', '.join(sorted(PartitionSource._kinds))}"
            )
        return cls(**{k: v for k, v in data.items() if k != "kind"})

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.serialize() == other.serialize()

    def __hash__(self) -> int:
        return hash(json.dumps(self.serialize(), sort_keys=True, default=str))

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.serialize().items() if k != "kind")
        return f"{type(self).__name__}({params})"


#: Threads of the pool every asynchronous check runs its blocking storage calls in.
CHECK_THREADS = 4
#: Checks of one store (one bucket, database connection or function) running at the same time.
CHECKS_PER_STORE = 2

_executor_lock = threading.Lock()
_executor: concurrent.futures.ThreadPoolExecutor | None = None
_store_slots: dict[tuple[int, str], asyncio.Semaphore] = {}


def _check_executor() -> concurrent.futures.ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=CHECK_THREADS, thread_name_prefix="training-guard-check"
            )
        return _executor


def _store_slot(store: str) -> asyncio.Semaphore:
    loop_id = id(asyncio.get_running_loop())
    key = (loop_id, store)
    slot = _store_slots.get(key)
    if slot is None:
        if len(_store_slots) > 10_000:  # loops of finished test runs: never let the table grow
            _store_slots.clear()
        slot = _store_slots[key] = asyncio.Semaphore(CHECKS_PER_STORE)
    return slot


def _aligned(
    expected: ExpectedPartitions, observed: Mapping[Any, PartitionObservation]
) -> Mapping[str, PartitionObservation]:
    """``observed`` keyed by the expected keys they name (see :meth:`ExpectedPartitions.match_key`)."""
    if all(isinstance(key, str) and key in expected for key in observed):
        return observed  # the common case: the source already wrote the expected keys
    aligned: dict[str, PartitionObservation] = {}
    for key, seen in observed.items():
        aligned.setdefault(expected.match_key(key) or str(key), seen)
    return aligned


def _non_negative_int(value: object, *, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise GuardConfigError(f"{name} {value!r} must be a whole number >= 0")
    return value


# -- object storage ------------------------------------------------------------------------------


class ObjectStorageSource(PartitionSource):
    """Partitions as folders (or files) in object storage, found through ``ObjectStoragePath``.

    :param path_template: where each partition lives, e.g.
        ``"s3://bucket/events/date={date}/hour={hour}"`` or ``"/data/date={date}/hour={hour}"``
        (a plain absolute path is ``file://``). A connection may be named in the URL
        (``s3://aws_default@bucket/...``) or with ``conn_id``. Jinja is rendered at run time.
    :param conn_id: the Airflow connection for the store (default: none, the environment).
    :param marker: the file the writer creates last to finalize a partition (default
        ``"_SUCCESS"``); None when the writer has no marker.
    :param min_bytes: the least total size of the data files (default 1: no empty data).
    :param min_files: the least number of data files (default 1: a marker alone is not data).
    :param listing: how the store is listed. ``"bounded"`` (default): each partition is found
        under the shallowest folder whose content the expected set bounds, chosen from the set's
        shape and the template (``date=YYYY-MM-DD`` for hourly folders: one listing per day; the
        partition folder itself when its parent holds the whole history, as daily folders
        directly under the dataset root do). Requests and memory per poke grow with the expected
        set, never with the history beside it. ``"common_prefix"``: one recursive listing under
        the longest prefix all partitions share (fewest requests when the prefix holds nothing
        else; it lists the whole history when the set spans folders). ``"per_parent"``: one
        listing per distinct parent folder of the partitions.
    """

    kind: ClassVar[str] = "object_storage"

    def __init__(
        self,
        path_template: str,
        *,
        conn_id: str | None = None,
        marker: str | None = "_SUCCESS",
        min_bytes: int = 1,
        min_files: int = 1,
        listing: Listing = "bounded",
    ) -> None:
        if isinstance(path_template, str) and (match := _URL_WITH_CONN.match(path_template)):
            in_url = match.group("conn") or None
            if conn_id is not None and in_url is not None and conn_id != in_url:
                raise GuardConfigError(
                    f"path_template {path_template!r} names the connection {in_url!r} but conn_id is "
                    f"{conn_id!r}; name it once"
                )
            conn_id = conn_id or in_url
            path_template = f"{match.group('scheme')}://" + path_template[match.end() :]
        self.path_template = PathTemplate(path_template)
        if not self.path_template.is_templated:
            _static_root(path_template)
        if conn_id is not None and (not isinstance(conn_id, str) or not conn_id):
            raise GuardConfigError(f"conn_id {conn_id!r} must be a connection id or None")
        self.conn_id = conn_id
        if marker is not None and (
            not isinstance(marker, str) or not marker or "/" in marker or marker in {".", ".."}
        ):
            raise GuardConfigError(
                f"marker {marker!r} must be a file name inside the partition folder (e.g. '_SUCCESS'), "
                "or None when the writer writes no marker"
            )
        self.marker = marker
        self.min_bytes = _non_negative_int(min_bytes, name="min_bytes")
        self.min_files = _non_negative_int(min_files, name="min_files")
        if marker is None and self.min_bytes == 0 and self.min_files == 0:
            raise GuardConfigError(
                "ObjectStorageSource with marker=None, min_bytes=0 and min_files=0 would call an empty "
                "folder present; keep the marker or require data (min_files=1, min_bytes=1)"
            )
        if listing not in LISTING_MODES:
            raise GuardConfigError(
                f"listing {listing!r} is not valid; use 'bounded' (the default: listings bounded by the "
                "expected set), 'common_prefix' (one listing for the whole set) or 'per_parent' (one "
                "listing per parent folder)"
            )
        self.listing: Listing = listing
        self._plan_cache: tuple[ExpectedPartitions, type, dict[str, str], list[str]] | None = None
        self._fs: Any = None

    # -- configuration --------------------------------------------------------------------------

    def validate(self, expected: ExpectedPartitions) -> None:
        example = expected.example()
        if example is not None:
            self.path_template.check_distinct(example)

    def render(self, renderer: Renderer) -> ObjectStorageSource:
        if not self.path_template.is_templated:
            return self
        rendered = str(renderer(self.path_template.template))
        return ObjectStorageSource(
            rendered,
            conn_id=self.conn_id,
            marker=self.marker,
            min_bytes=self.min_bytes,
            min_files=self.min_files,
            listing=self.listing,
        )

    def serialize(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "path_template": self.path_template.template,
            "conn_id": self.conn_id,
            "marker": self.marker,
            "min_bytes": self.min_bytes,
            "min_files": self.min_files,
            "listing": self.listing,
        }

    def describe(self) -> str:
        marker = f"marker {self.marker}" if self.marker else "no marker"
        conn = f" (conn_id={self.conn_id})" if self.conn_id else ""
        return (
            f"object storage {self.path_template.template}{conn}: present = {marker}, >= {self.min_files} "
            f"data file(s), >= {self.min_bytes} byte(s); listing={self.listing}"
        )

    # -- the check ------------------------------------------------------------------------------

    def locations(self, expected: ExpectedPartitions) -> dict[str, str]:
        """The URL of every expected partition."""
        self._require_rendered()
        names = expected.names
        return {key: _as_url(self.path_template.render(key, names)) for key in expected}

    def store_key(self) -> str:
        root = _static_root(self.path_template.template) if not self.path_template.is_templated else ""
        scheme, _, rest = root.partition("://")
        return f"{self.kind}:{scheme}:{self.conn_id or ''}:{rest.strip('/').split('/', 1)[0]}"

    def _filesystem(self) -> Any:
        # One filesystem per source, not one per poke: building it (connection lookup, client) was
        # a large part of a trigger's CPU per check (issue 17).
        if self._fs is None:
            from airflow.sdk.io.path import ObjectStoragePath

            self._fs = ObjectStoragePath(_static_root(self.path_template.template), conn_id=self.conn_id).fs
        return self._fs

    def observe(self, expected: ExpectedPartitions) -> Mapping[str, PartitionObservation]:
        self._require_rendered()
        fs = self._filesystem()
        partitions, prefixes = self._plan(expected, fs)
        shortest = min(len(path) for path in partitions)
        found: dict[str, dict[str, int]] = {}
        # One listing at a time, judged and dropped: memory is one listing's, not the whole set's.
        for prefix in prefixes:
            self._accumulate(partitions, shortest, _find(fs, prefix), found)
        return {partitions[path]: self._verdict(stats) for path, stats in found.items()}

    def listing_prefixes(self, expected: ExpectedPartitions) -> list[str]:
        """The folders (or objects) one poke lists for ``expected``, in order; for logs and tests."""
        from airflow.sdk.io.path import ObjectStoragePath

        self._require_rendered()
        fs = ObjectStoragePath(_static_root(self.path_template.template), conn_id=self.conn_id).fs
        return list(self._plan(expected, fs)[1])

    def _require_rendered(self) -> None:
        if self.path_template.is_templated:
            raise GuardConfigError(
                f"path_template {self.path_template.template!r} still has Jinja in it; the sensor renders it "
                "when the task runs"
            )

    def _plan(self, expected: ExpectedPartitions, fs: Any) -> tuple[dict[str, str], list[str]]:
        """Each partition's path in the store and the prefixes to list; computed once per set.

        Every poke of a sensor or trigger checks the same set, so the paths are rendered once
        instead of once per poke (it is most of the CPU of a poke for thousands of partitions).
        """
        cached = self._plan_cache
        if cached is not None and cached[0] == expected and cached[1] is type(fs):
            return cached[2], cached[3]
        urls = self.locations(expected)
        partitions = {fs._strip_protocol(url).rstrip("/"): key for key, url in urls.items()}
        if self.listing == "bounded":
            root = fs._strip_protocol(_static_root(self.path_template.template)).rstrip("/")
            prefixes = _bounded_prefixes(partitions, expected, self.path_template, fs, root)
        else:
            prefixes = self._listing_prefixes(list(partitions))
        self._plan_cache = (expected, type(fs), partitions, prefixes)
        return partitions, prefixes

    def _listing_prefixes(self, paths: list[str]) -> list[str]:
        if self.listing == "per_parent":
            return list(dict.fromkeys(posixpath.dirname(path) or path for path in paths))
        if len(paths) == 1:
            return paths
        return [_common_prefix(paths)]

    def _accumulate(
        self,
        partitions: Mapping[str, str],
        shortest: int,
        listed: Mapping[str, Mapping[str, Any]],
        found: dict[str, dict[str, int]],
    ) -> None:
        for raw_path, info in listed.items():
            if info.get("type", "file") == "directory":
                continue
            path = raw_path.rstrip("/")
            owner = path if path in partitions else None
            parent = path
            while owner is None and len(parent) > shortest:
                parent, previous = posixpath.dirname(parent), parent
                if parent == previous:
                    break
                if parent in partitions:
                    owner = parent
            if owner is None:
                continue
            stats = found.get(owner)
            if stats is None:
                stats = found[owner] = {"marker": 0, "files": 0, "bytes": 0, "other": 0}
            relative = path[len(owner) + 1 :] if path != owner else posixpath.basename(path)
            if path != owner and relative == self.marker:
                stats["marker"] = 1
            elif path != owner and any(segment[:1] in {"_", "."} for segment in relative.split("/")):
                stats["other"] += 1  # _committed_*, .crc ...: bookkeeping of the writer, not data
            else:
                stats["files"] += 1
                stats["bytes"] += int(info.get("size") or 0)

    def _verdict(self, stats: Mapping[str, int]) -> PartitionObservation:
        files, size = stats["files"], stats["bytes"]
        if self.marker and not stats["marker"]:
            return PartitionObservation(
                PartitionStatus.NOT_FINALIZED, reason=f"no {self.marker} marker", bytes=size, files=files
            )
        if files < self.min_files:
            reason = (
                "no data files" + (f" next to the {self.marker} marker" if self.marker else "")
                if files == 0
                else f"fewer than min_files={self.min_files} data files"
            )
            return PartitionObservation(PartitionStatus.TOO_SMALL, reason=reason, bytes=size, files=files)
        if size < self.min_bytes:
            reason = "0 bytes of data" if size == 0 else f"less than min_bytes={self.min_bytes} bytes of data"
            return PartitionObservation(PartitionStatus.TOO_SMALL, reason=reason, bytes=size, files=files)
        return PartitionObservation(PartitionStatus.PRESENT, bytes=size, files=files)


def _as_url(location: str) -> str:
    if "://" in location:
        return location
    if not location.startswith("/"):
        raise GuardConfigError(
            f"path_template gives the relative path {location!r}; use an absolute path or a URL such as "
            "'file:///data/...' or 's3://bucket/...'"
        )
    return "file://" + location


def _static_root(template: str) -> str:
    """The folder of ``template`` before its first placeholder: the store and the root to list."""
    outside_jinja = template
    first = _PLACEHOLDER.search(outside_jinja)
    head = outside_jinja[: first.start()] if first else outside_jinja
    folder = head.rsplit("/", 1)[0] if "/" in head else ""
    url = _as_url(folder or "/") if "://" not in template else folder
    scheme, _, rest = url.partition("://")
    if not rest.strip("/"):
        raise GuardConfigError(
            f"path_template {template!r} has a placeholder right after the store root; put the partitions "
            "under a fixed folder or bucket (e.g. 's3://bucket/events/date={date}'), so a check never lists a "
            "whole store"
        )
    return f"{scheme}://{rest}"


def _shift_days(key: str, days: int) -> str | None:
    """``key`` with its one date or date-time part moved by ``days`` days, in the same form."""
    parts = key.split(DELIMITER)
    temporal = [index for index, part in enumerate(parts) if parse_temporal(part) is not None]
    if len(temporal) != 1:
        return None
    index = temporal[0]
    part = parts[index]
    day = dt.date.fromisoformat(part[:10]) + dt.timedelta(days=days)
    parts[index] = day.isoformat() + part[10:]
    return DELIMITER.join(parts)


def _bounded_prefixes(
    partitions: Mapping[str, str], expected: ExpectedPartitions, template: PathTemplate, fs: Any, root: str
) -> list[str]:
    """The folders to list so that what is listed is bounded by the expected set (issue 17).

    For each partition, the shallowest folder above it that no partition from outside the set's
    time span can land in: keys moved by the span (plus a day) in both directions are rendered,
    and the folder must be below the point where their paths part from the partition's. Hourly
    ``date=D/hour=H`` gives the day folder; daily ``date=D`` under the root gives the partition
    itself, because the root holds every day ever written. Keys without a date are listed one
    partition at a time. Siblings share the decision of their first member.
    """
    dates = [
        dt.date.fromisoformat(found.start.date().isoformat())
        for key in (expected.keys()[0], expected.keys()[-1])
        for part in key.split(DELIMITER)
        if (found := parse_temporal(part)) is not None
    ]
    span = (max(dates) - min(dates)).days + 1 if dates else 0
    names = expected.names
    by_parent: dict[str, str] = {}
    chosen: list[str] = []
    for path, key in partitions.items():
        parent = posixpath.dirname(path)
        decided = by_parent.get(parent)
        if decided is not None:
            chosen.append(decided if decided != path and not decided.startswith(parent + "/") else path)
            continue
        depth = path.count("/")  # list the partition itself unless a shallower folder is bounded
        shifted = [_shift_days(key, days) for days in (span, -span)] if span else [None]
        if all(other is not None for other in shifted):
            shared = 0
            for other in shifted:
                other_path = fs._strip_protocol(_as_url(template.render(other, names))).rstrip("/")  # type: ignore[arg-type]
                shared = max(shared, _shared_segments(path, other_path))
            depth = max(shared + 1, root.count("/") + 2)
        segments = path.split("/")
        prefix = "/".join(segments[: min(depth, len(segments))])
        by_parent[parent] = prefix
        chosen.append(prefix)
    unique = sorted(set(chosen))
    kept: list[str] = []
    for prefix in unique:  # drop a prefix inside one already listed
        if kept and prefix.startswith(kept[-1] + "/"):
            continue
        kept.append(prefix)
    return kept


def _shared_segments(one: str, two: str) -> int:
    shared = 0
    for first, second in zip(one.split("/"), two.split("/"), strict=False):
        if first != second:
            break
        shared += 1
    return shared


def _common_prefix(paths: Sequence[str]) -> str:
    split = [path.split("/") for path in paths]
    shared: list[str] = []
    for segments in zip(*split, strict=False):
        if any(segment != segments[0] for segment in segments):
            break
        shared.append(segments[0])
    return "/".join(shared) or "/"


def _find(fs: Any, prefix: str) -> dict[str, dict[str, Any]]:
    if _is_local(fs):
        return _scan_local(prefix)
    try:
        result = fs.find(prefix, detail=True, withdirs=False)
    except FileNotFoundError:
        return {}
    return dict(result) if isinstance(result, Mapping) else {path: {"type": "file"} for path in result}


def _is_local(fs: Any) -> bool:
    from fsspec.implementations.local import LocalFileSystem

    return type(fs) is LocalFileSystem


def _scan_local(prefix: str) -> dict[str, dict[str, Any]]:
    """``fs.find(prefix, detail=True)`` for a local disk, with ``os.scandir``: a quarter of the CPU.

    fsspec's local ``find`` builds a full ``info()`` (stat, link checks) for every entry; the
    trigger needs the type and the size. Four times cheaper per listing, which is most of a
    trigger's check (issue 17).
    """
    found: dict[str, dict[str, Any]] = {}
    stack = [prefix]
    while stack:
        folder = stack.pop()
        try:
            entries = os.scandir(folder)
        except (FileNotFoundError, NotADirectoryError):
            if folder == prefix and os.path.isfile(prefix):
                found[prefix] = {"type": "file", "size": os.path.getsize(prefix)}
            continue
        with entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=True):
                    stack.append(entry.path)
                else:
                    found[entry.path] = {"type": "file", "size": entry.stat().st_size}
    return found


# -- SQL -----------------------------------------------------------------------------------------


class SqlSource(PartitionSource):
    """Partitions as rows in a database: one query returns which keys are there, with row counts.

    The query returns rows ``(partition_key, row_count)``, or ``(partition_key,)`` when counts do
    not matter. Build composite keys in SQL (``city || '|' || to_char(day, 'YYYY-MM-DD')``); a
    ``date`` value becomes ``YYYY-MM-DD`` and a ``timestamp`` ``YYYY-MM-DDTHH:MM:SS`` (with its offset
    unless it is UTC), the forms of the expected sets. Rows for keys that are not expected are
    ignored.

    :param conn_id: an Airflow connection whose hook is a ``common.sql`` ``DbApiHook``
        (PostgreSQL, MySQL, Snowflake, BigQuery ...).
    :param sql: the query. Jinja is rendered at run time.
    :param parameters: query parameters (templated values allowed), in the driver's style.
    :param min_rows: the least row count for a partition to be present (default 1; 0 only needs
        the key to be returned).
    :param expected_keys_parameter: when set, the name of a query parameter that receives the list
        of expected keys, e.g. ``WHERE partition_key = ANY(%(keys)s)`` with ``"keys"`` (PostgreSQL).
    :param hook_params: extra arguments for the hook.
    """

    kind: ClassVar[str] = "sql"

    def __init__(
        self,
        conn_id: str,
        sql: str,
        *,
        parameters: Mapping[str, Any] | Sequence[Any] | None = None,
        min_rows: int = 1,
        expected_keys_parameter: str | None = None,
        hook_params: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(conn_id, str) or not conn_id:
            raise GuardConfigError(
                f"conn_id {conn_id!r} must name an Airflow connection, e.g. 'postgres_default'"
            )
        if not isinstance(sql, str) or not sql.strip():
            raise GuardConfigError(
                f"sql {sql!r} must be a query returning (partition_key, row_count) rows, e.g. "
                "'SELECT partition_key, count(*) FROM events WHERE day = %(day)s GROUP BY 1'"
            )
        if parameters is not None and (
            isinstance(parameters, str) or not isinstance(parameters, Mapping | Sequence)
        ):
            raise GuardConfigError(f"parameters {parameters!r} must be a dict or a list of query parameters")
        if expected_keys_parameter is not None:
            if not isinstance(expected_keys_parameter, str) or not expected_keys_parameter.isidentifier():
                raise GuardConfigError(
                    f"expected_keys_parameter {expected_keys_parameter!r} must be a parameter name such as 'keys'"
                )
            if parameters is not None and not isinstance(parameters, Mapping):
                raise GuardConfigError(
                    "expected_keys_parameter needs named parameters: pass parameters as a dict (or leave it out)"
                )
        self.conn_id = conn_id
        self.sql = sql
        self.parameters = parameters
        self.min_rows = _non_negative_int(min_rows, name="min_rows")
        self.expected_keys_parameter = expected_keys_parameter
        self.hook_params = dict(hook_params or {})

    def render(self, renderer: Renderer) -> SqlSource:
        def _render(value: Any) -> Any:
            if is_template(value):
                return renderer(value)
            if isinstance(value, Mapping):
                return {k: _render(v) for k, v in value.items()}
            if isinstance(value, list | tuple):
                return [_render(v) for v in value]
            return value

        return SqlSource(
            self.conn_id,
            str(_render(self.sql)),
            parameters=_render(self.parameters),
            min_rows=self.min_rows,
            expected_keys_parameter=self.expected_keys_parameter,
            hook_params=self.hook_params,
        )

    def serialize(self) -> dict[str, Any]:
        parameters: dict[str, Any] | list[Any] | None = None
        if isinstance(self.parameters, Mapping):
            parameters = dict(self.parameters)
        elif self.parameters is not None:
            parameters = list(self.parameters)
        return {
            "kind": self.kind,
            "conn_id": self.conn_id,
            "sql": self.sql,
            "parameters": parameters,
            "min_rows": self.min_rows,
            "expected_keys_parameter": self.expected_keys_parameter,
            "hook_params": self.hook_params,
        }

    def describe(self) -> str:
        query = " ".join(self.sql.split())
        return f"SQL on {self.conn_id}: {query[:200]}; present = >= {self.min_rows} row(s)"

    def store_key(self) -> str:
        return f"{self.kind}:{self.conn_id}"

    def parse_time_warnings(self) -> list[str]:
        """Warn when ``sql`` renders ``params`` or ``dag_run.conf`` into the query text (issue 14).

        Whoever triggers a run sets both (the trigger form, the REST API), and text rendered into
        ``sql`` is executed as SQL: run conf ``{"table": "events; DROP TABLE x; --"}`` drops a table
        through ``SELECT ... FROM {{ params.table }}``. Values belong in bound ``parameters``.
        """
        found = [
            " ".join(block.split())
            for block in _JINJA.findall(self.sql)
            if _USER_CONTROLLED.search(block) and not block.startswith("{#")
        ]
        if not found:
            return []
        return [
            f"SqlSource on {self.conn_id!r}: sql renders {', '.join(found)} into the query text; params and "
            "dag_run.conf are set by whoever triggers the run, so this is an SQL injection path (run conf "
            '{"table": "events; DROP TABLE x; --"} would drop a table). Pass values as bound parameters '
            "(parameters={'day': '{{ params.day }}'} with %(day)s in the query) and choose identifiers from a "
            "fixed set in the DAG file; see docs/partition-completeness.md, 'SQL built from run conf'"
        ]

    def _hook(self) -> Any:
        from airflow.sdk import BaseHook

        connection = BaseHook.get_connection(self.conn_id)
        hook: Any = connection.get_hook(hook_params=self.hook_params or None)  # type: ignore[no-untyped-call]
        if not callable(getattr(hook, "get_records", None)):
            raise GuardConfigError(
                f"connection {self.conn_id!r} gives a {type(hook).__name__}, which cannot run SQL; use a "
                "connection whose hook is a common.sql DbApiHook (postgres, mysql, sqlite ...)"
            )
        return hook

    def observe(self, expected: ExpectedPartitions) -> Mapping[str, PartitionObservation]:
        parameters: Any = self.parameters
        if self.expected_keys_parameter:
            parameters = {**(parameters or {}), self.expected_keys_parameter: list(expected.keys())}
        rows = self._hook().get_records(self.sql, parameters=parameters) or []
        counts: dict[str, int | None] = {}
        for row in rows:
            values = tuple(row) if isinstance(row, Sequence) and not isinstance(row, str) else (row,)
            if not values:
                continue
            key = expected.match_key(values[0]) or _key_text(values[0])
            count = values[1] if len(values) > 1 else None
            if count is not None and (isinstance(count, bool) or not isinstance(count, int)):
                try:
                    count = int(count)
                except (TypeError, ValueError):
                    raise GuardConfigError(
                        f"query on {self.conn_id!r} returned {values!r}; the second column must be the "
                        "partition's row count (an integer)"
                    ) from None
            if count is None and self.min_rows > 1:
                raise GuardConfigError(
                    f"query on {self.conn_id!r} returned rows without a row count, so min_rows={self.min_rows} "
                    "cannot be checked; return (partition_key, count(*)) rows"
                )
            previous = counts.get(key)
            counts[key] = count if previous is None else previous + (count or 0)
        return {key: self._verdict(count) for key, count in counts.items()}

    def _verdict(self, count: int | None) -> PartitionObservation:
        if count is None:
            return PartitionObservation(PartitionStatus.PRESENT)
        if count < self.min_rows:
            reason = "0 rows" if count == 0 else f"fewer than min_rows={self.min_rows} rows"
            return PartitionObservation(PartitionStatus.TOO_SMALL, reason=reason, rows=count)
        return PartitionObservation(PartitionStatus.PRESENT, rows=count)


def _key_text(value: Any) -> str:
    """A key as the expected sets write it, from what a database driver returns."""
    import datetime as dt

    if isinstance(value, dt.datetime):
        # Keep every offset, +00:00 included: dropping a zero offset made London's winter keys
        # never match (issue 13). Only a naive value has none.
        return value.isoformat(timespec="seconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


# -- callable ------------------------------------------------------------------------------------

CheckCallable = Callable[[tuple[str, ...]], Any]


class CallableSource(PartitionSource):
    """Anything else: a function that receives the expected keys and says which are there.

    The function gets the tuple of expected keys and returns either an iterable of the keys that
    are present, or a mapping ``{partition_key: value}`` where the value is ``True``/``False``, a
    count (present when ``>= min_count``), or a
    :class:`~airflow_training_guard.partitions.completeness.PartitionObservation`. ``async``
    functions are awaited.

    :param check: the function, or its import path (``"my_pkg.checks.hours_in_kafka"``). A
        deferrable sensor needs a function the triggerer can import: defined at module level in a
        package, not in the DAG file.
    :param min_count: the least count for a partition to be present, when counts are returned.
    """

    kind: ClassVar[str] = "callable"

    def __init__(self, check: CheckCallable | str, *, min_count: int = 1) -> None:
        if isinstance(check, str):
            self.function = _import_callable(check)
            self.import_path: str | None = check
        elif callable(check):
            self.function = check
            self.import_path = _import_path(check)
        else:
            raise GuardConfigError(
                f"check {check!r} must be a function (keys) -> present keys, or its import path "
                "'package.module.function'"
            )
        self.min_count = _non_negative_int(min_count, name="min_count")

    @property
    def name(self) -> str:
        return self.import_path or str(getattr(self.function, "__qualname__", repr(self.function)))

    def require_importable(self) -> None:
        """Raise unless the triggerer can import the function (deferrable mode)."""
        if self.import_path is None:
            raise GuardConfigError(
                f"check {self.name!r} cannot be imported by the triggerer (lambdas, nested functions and "
                "functions defined in DAG files cannot); define it at module level in a package on the "
                "triggerer's PYTHONPATH and pass it (or its import path), or use deferrable=False"
            )

    def serialize(self) -> dict[str, Any]:
        return {"kind": self.kind, "check": self.name, "min_count": self.min_count}

    def describe(self) -> str:
        return f"callable {self.name}: present = reported present (count >= {self.min_count})"

    def store_key(self) -> str:
        return f"{self.kind}:{self.name}"

    def observe(self, expected: ExpectedPartitions) -> Mapping[str, PartitionObservation]:
        answer = self.function(expected.keys())
        if inspect.isawaitable(answer):
            answer = asyncio.run(_await(answer))
        return self._interpret(answer, expected)

    async def observe_async(self, expected: ExpectedPartitions) -> Mapping[str, PartitionObservation]:
        if inspect.iscoroutinefunction(self.function):
            return self._interpret(await self.function(expected.keys()), expected)
        return await super().observe_async(expected)

    def _interpret(self, answer: Any, expected: ExpectedPartitions) -> dict[str, PartitionObservation]:
        def key_of(value: Any) -> str:
            return expected.match_key(value) or str(value)

        if isinstance(answer, Mapping):
            found: dict[str, PartitionObservation] = {}
            for key, value in answer.items():
                found.setdefault(key_of(key), self._verdict(value, key))
            return found
        if isinstance(answer, Iterable) and not isinstance(answer, str | bytes):
            return {key_of(key): PartitionObservation(PartitionStatus.PRESENT) for key in answer}
        raise GuardConfigError(
            f"check {self.name!r} returned {type(answer).__name__} {answer!r:.80}; return the present keys "
            "(a list or set) or a mapping {partition_key: True/False/count}"
        )

    def _verdict(self, value: Any, key: Any) -> PartitionObservation:
        if isinstance(value, PartitionObservation):
            return value
        if value is None or value is True:
            return PartitionObservation(PartitionStatus.PRESENT)
        if value is False:
            return PartitionObservation(PartitionStatus.MISSING, reason=f"reported absent by {self.name}")
        if isinstance(value, int):
            if value < self.min_count:
                return PartitionObservation(
                    PartitionStatus.TOO_SMALL, reason=f"count below min_count={self.min_count}", rows=value
                )
            return PartitionObservation(PartitionStatus.PRESENT, rows=value)
        raise GuardConfigError(
            f"check {self.name!r} returned {value!r} for partition {key!r}; use True/False, a count or a "
            "PartitionObservation"
        )


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _import_path(function: Callable[..., Any]) -> str | None:
    module = getattr(function, "__module__", None)
    qualname = getattr(function, "__qualname__", None)
    if not module or not qualname or "<" in qualname or module == "__main__":
        return None
    if module.startswith("unusual_prefix_"):  # how Airflow names modules loaded from DAG files
        return None
    path = f"{module}.{qualname}"
    try:
        return path if _import_callable(path) is function else None
    except GuardConfigError:
        return None


def _import_callable(path: str) -> CheckCallable:
    text = path.replace(":", ".")
    parts = text.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            target: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attribute in parts[cut:]:
                target = getattr(target, attribute)
        except AttributeError:
            break
        if callable(target):
            return target  # type: ignore[no-any-return]
        break
    raise GuardConfigError(
        f"check {path!r} is not an importable function; use 'package.module.function' (or "
        "'package.module:function') of a module on the PYTHONPATH"
    )
