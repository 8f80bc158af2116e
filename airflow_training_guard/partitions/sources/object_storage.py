"""Partitions as folders (or files) in object storage: :class:`ObjectStorageSource`.

Files through Airflow's ``ObjectStoragePath`` (``file://``, ``s3://``, ``gs://`` ...), one path
template per partition. Present means the success marker (default ``_SUCCESS``) exists and the
data files (every file but the marker and hidden ``_``/``.`` files) reach ``min_files`` and
``min_bytes``. By default the listings are bounded by the expected set: requests and memory per
check grow with the set, never with the history beside it (issue 17). ``ObjectStoragePath`` is
imported inside the methods that list, when a check runs.
"""

from __future__ import annotations

import datetime as dt
import os
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.partitions.completeness import PartitionObservation, PartitionStatus
from airflow_training_guard.partitions.keys import DELIMITER, parse_temporal
from airflow_training_guard.partitions.registry import register_kind
from airflow_training_guard.partitions.sources.base import PartitionSource, non_negative_int
from airflow_training_guard.partitions.sources.path_template import PLACEHOLDER, PathTemplate

if TYPE_CHECKING:
    from airflow_training_guard.partitions.expected import ExpectedPartitions, Renderer

Listing = Literal["bounded", "common_prefix", "per_parent"]
LISTING_MODES: tuple[str, ...] = ("bounded", "common_prefix", "per_parent")

_URL_WITH_CONN = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<conn>[^/@]*)@")


@register_kind("object_storage")
@dataclass(frozen=True)
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

    path_template: str
    _: KW_ONLY
    conn_id: str | None = None
    marker: str | None = "_SUCCESS"
    min_bytes: int = 1
    min_files: int = 1
    listing: Listing = "bounded"
    _template: PathTemplate = field(init=False, repr=False, compare=False)
    # Per poke caches (issue 17): the rendered paths of the last expected set, and the filesystem.
    _plan_cache: tuple[ExpectedPartitions, type, dict[str, str], list[str]] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _fs: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        path_template, conn_id = self.path_template, self.conn_id
        if isinstance(path_template, str) and (match := _URL_WITH_CONN.match(path_template)):
            in_url = match.group("conn") or None
            if conn_id is not None and in_url is not None and conn_id != in_url:
                raise GuardConfigError(
                    f"path_template {path_template!r} names the connection {in_url!r} but conn_id is "
                    f"{conn_id!r}; name it once"
                )
            conn_id = conn_id or in_url
            path_template = f"{match.group('scheme')}://" + path_template[match.end() :]
        template = PathTemplate(path_template)
        if not template.is_templated:
            _static_root(path_template)
        if conn_id is not None and (not isinstance(conn_id, str) or not conn_id):
            raise GuardConfigError(f"conn_id {conn_id!r} must be a connection id or None")
        marker = self.marker
        if marker is not None and (
            not isinstance(marker, str) or not marker or "/" in marker or marker in {".", ".."}
        ):
            raise GuardConfigError(
                f"marker {marker!r} must be a file name inside the partition folder (e.g. '_SUCCESS'), "
                "or None when the writer writes no marker"
            )
        min_bytes = non_negative_int(self.min_bytes, name="min_bytes")
        min_files = non_negative_int(self.min_files, name="min_files")
        if marker is None and min_bytes == 0 and min_files == 0:
            raise GuardConfigError(
                "ObjectStorageSource with marker=None, min_bytes=0 and min_files=0 would call an empty "
                "folder present; keep the marker or require data (min_files=1, min_bytes=1)"
            )
        if self.listing not in LISTING_MODES:
            raise GuardConfigError(
                f"listing {self.listing!r} is not valid; use 'bounded' (the default: listings bounded by "
                "the expected set), 'common_prefix' (one listing for the whole set) or 'per_parent' (one "
                "listing per parent folder)"
            )
        object.__setattr__(self, "path_template", path_template)
        object.__setattr__(self, "conn_id", conn_id)
        object.__setattr__(self, "_template", template)

    # -- configuration --------------------------------------------------------------------------

    def validate(self, expected: ExpectedPartitions) -> None:
        example = expected.example()
        if example is not None:
            self._template.check_distinct(example)

    def render(self, renderer: Renderer) -> ObjectStorageSource:
        if not self._template.is_templated:
            return self
        return replace(self, path_template=str(renderer(self.path_template)))

    def describe(self) -> str:
        marker = f"marker {self.marker}" if self.marker else "no marker"
        conn = f" (conn_id={self.conn_id})" if self.conn_id else ""
        return (
            f"object storage {self.path_template}{conn}: present = {marker}, >= {self.min_files} "
            f"data file(s), >= {self.min_bytes} byte(s); listing={self.listing}"
        )

    # -- the check ------------------------------------------------------------------------------

    def locations(self, expected: ExpectedPartitions) -> dict[str, str]:
        """The URL of every expected partition."""
        self._require_rendered()
        names = expected.names
        return {key: _as_url(self._template.render(key, names)) for key in expected}

    def store_key(self) -> str:
        root = _static_root(self.path_template) if not self._template.is_templated else ""
        scheme, _, rest = root.partition("://")
        return f"{self.kind}:{scheme}:{self.conn_id or ''}:{rest.strip('/').split('/', 1)[0]}"

    def _filesystem(self) -> Any:
        # One filesystem per source, not one per poke: building it (connection lookup, client) was
        # a large part of a trigger's CPU per check (issue 17).
        if self._fs is None:
            from airflow.sdk.io.path import ObjectStoragePath

            fs = ObjectStoragePath(_static_root(self.path_template), conn_id=self.conn_id).fs
            object.__setattr__(self, "_fs", fs)
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
        fs = ObjectStoragePath(_static_root(self.path_template), conn_id=self.conn_id).fs
        return list(self._plan(expected, fs)[1])

    def _require_rendered(self) -> None:
        if self._template.is_templated:
            raise GuardConfigError(
                f"path_template {self.path_template!r} still has Jinja in it; the sensor renders it "
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
            root = fs._strip_protocol(_static_root(self.path_template)).rstrip("/")
            prefixes = _bounded_prefixes(partitions, expected, self._template, fs, root)
        else:
            prefixes = self._listing_prefixes(list(partitions))
        object.__setattr__(self, "_plan_cache", (expected, type(fs), partitions, prefixes))
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
    first = PLACEHOLDER.search(outside_jinja)
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
