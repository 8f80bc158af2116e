"""The result of one completeness check, and how it is written for people.

A source (:mod:`.sources`) reports what it saw for each partition as a
:class:`PartitionObservation`; :meth:`CompletenessResult.evaluate` compares that with the expected
keys. The result says ``present/expected``, which keys are missing and why (missing, not
finalized, too small), formats the missing keys compactly as ranges in expected order
(``2026-11-01T18:00:00..2026-11-01T23:00:00 (6)`` rather than six lines) and becomes the XCom value
the training task reads.

Every check starts from nothing: a partition present at one check and gone at the next is missing
again, so completeness is never remembered from an earlier look (:meth:`disappeared_since` names
such partitions for the log).

Standard library only: no Airflow import.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from airflow_training_guard.partitions.keys import DELIMITER
from airflow_training_guard.policies.durations import format_duration

#: How many ranges a message lists before it says "... and N more".
DEFAULT_MAX_RANGES = 12


class PartitionStatus(enum.StrEnum):
    """What a source saw for one partition. Only ``PRESENT`` counts towards completeness."""

    PRESENT = "present"
    #: Nothing at all at the partition's location.
    MISSING = "missing"
    #: Data is there but the writer has not finalized it (no success marker yet).
    NOT_FINALIZED = "not_finalized"
    #: Finalized, but below the minimum (zero bytes, no data files, too few rows).
    TOO_SMALL = "too_small"

    @property
    def label(self) -> str:
        return self.value.replace("_", " ")


@dataclass(frozen=True)
class PartitionObservation:
    """What a source saw for one partition.

    :param status: the verdict.
    :param reason: why it is not present, the same text for every partition with the same problem
        (``"no _SUCCESS marker"``, ``"0 bytes of data (min_bytes=1)"``); grouped in messages.
    :param bytes: total size of the data files, when the source knows it.
    :param files: number of data files, when the source knows it.
    :param rows: number of rows, when the source knows it.
    """

    status: PartitionStatus
    reason: str = ""
    bytes: int | None = None
    files: int | None = None
    rows: int | None = None

    def counts(self) -> dict[str, int]:
        """The known counts, for XCom: ``{"bytes": 1234, "files": 1}`` or ``{"rows": 500}``."""
        found = {"bytes": self.bytes, "files": self.files, "rows": self.rows}
        return {name: value for name, value in found.items() if value is not None}


MISSING = PartitionObservation(PartitionStatus.MISSING, reason="nothing there")


@dataclass(frozen=True, eq=True)
class CompletenessResult:
    """One check of an expected set: every expected key with what was seen for it.

    :param expected_keys: the expected keys, in the expected set's order.
    :param observations: one observation per expected key.
    :param unexpected: how many partitions the source reported that are not expected (ignored).
    """

    expected_keys: tuple[str, ...]
    observations: Mapping[str, PartitionObservation] = field(hash=False)
    unexpected: int = 0

    @classmethod
    def evaluate(
        cls, expected_keys: Sequence[str], observed: Mapping[str, PartitionObservation]
    ) -> CompletenessResult:
        """Compare what a source saw with the expected keys; a key it did not report is missing."""
        keys = tuple(expected_keys)
        observations = {key: observed.get(key, MISSING) for key in keys}
        unexpected = len(observed.keys() - observations.keys())
        return cls(expected_keys=keys, observations=observations, unexpected=unexpected)

    @functools.cached_property
    def present_keys(self) -> tuple[str, ...]:
        return tuple(k for k in self.expected_keys if self.observations[k].status is PartitionStatus.PRESENT)

    @functools.cached_property
    def incomplete_keys(self) -> tuple[str, ...]:
        """Every expected key that is not present, whatever the reason, in expected order."""
        return tuple(
            k for k in self.expected_keys if self.observations[k].status is not PartitionStatus.PRESENT
        )

    @property
    def is_complete(self) -> bool:
        return not self.incomplete_keys

    @property
    def ratio(self) -> str:
        """``present/expected``, e.g. ``18/24``."""
        return f"{len(self.present_keys)}/{len(self.expected_keys)}"

    def problems(self) -> list[tuple[PartitionStatus, str, tuple[str, ...]]]:
        """Incomplete keys grouped by (status, reason), in the order of their first key."""
        groups: dict[tuple[PartitionStatus, str], list[str]] = {}
        for key in self.expected_keys:
            seen = self.observations[key]
            if seen.status is not PartitionStatus.PRESENT:
                groups.setdefault((seen.status, seen.reason), []).append(key)
        return [(status, reason, tuple(keys)) for (status, reason), keys in groups.items()]

    def summary(self, *, max_ranges: int = DEFAULT_MAX_RANGES) -> str:
        """One line for logs and errors.

        ``18/24 partitions present; 6 missing (nothing there): 2026-11-01T18:00:00..2026-11-01T23:00:00 (6)``
        """
        head = f"{self.ratio} partitions present"
        if self.is_complete:
            return head + ": complete"
        parts = [head]
        for status, reason, keys in self.problems():
            why = f" ({reason})" if reason else ""
            ranges = format_key_ranges(keys, self.expected_keys, max_ranges=max_ranges)
            parts.append(f"{len(keys)} {status.label}{why}: {ranges}")
        return "; ".join(parts)

    def disappeared_since(self, previous: CompletenessResult | None) -> tuple[str, ...]:
        """Keys present at ``previous`` and not present now, in expected order."""
        if previous is None:
            return ()
        before = set(previous.present_keys)
        return tuple(key for key in self.incomplete_keys if key in before)

    def totals(self) -> dict[str, int]:
        """The counts of the present partitions added up: ``{"bytes": ..., "files": ...}`` or ``{"rows": ...}``."""
        totals: dict[str, int] = {}
        for key in self.present_keys:
            for name, value in self.observations[key].counts().items():
                totals[name] = totals.get(name, 0) + value
        return totals

    def to_xcom(
        self, *, expected: Mapping[str, Any] | None = None, detail: XComDetail = "ranges"
    ) -> dict[str, Any]:
        """The JSON value handed to the training task; its size grows with the gaps, not the set.

        ``{"complete", "expected_count", "present_count", "present_ranges", "missing_ranges",
        "totals", "summary"}`` plus ``"expected"`` (the set's ``serialize()`` dict) when given.
        Ranges are ``[first, last]`` runs of consecutive expected keys, **both ends included**: a
        complete year of hours is one range, where the full key list was 631 KB (issue 17).
        :func:`xcom_keys` expands them on demand. ``detail="keys"`` adds the full
        ``present_keys``, ``missing_keys`` and per-key ``counts``.

        :param expected: the expected set's ``serialize()`` dict, so the ranges can be expanded.
        :param detail: ``"ranges"`` (default) or ``"keys"``.
        """
        if detail not in XCOM_DETAILS:
            raise ValueError(f"detail {detail!r} is not one of {XCOM_DETAILS}")
        value: dict[str, Any] = {
            "complete": self.is_complete,
            "expected_count": len(self.expected_keys),
            "present_count": len(self.present_keys),
            "present_ranges": key_ranges(self.present_keys, self.expected_keys),
            "missing_ranges": key_ranges(self.incomplete_keys, self.expected_keys),
            "totals": self.totals(),
            "summary": self.summary(),
        }
        if expected is not None:
            value["expected"] = dict(expected)
        if detail == "keys":
            value["present_keys"] = list(self.present_keys)
            value["missing_keys"] = list(self.incomplete_keys)
            value["counts"] = {key: self.observations[key].counts() for key in self.present_keys}
        return value


XComDetail = Literal["ranges", "keys"]
XCOM_DETAILS: tuple[str, ...] = ("ranges", "keys")


def key_ranges(keys: Sequence[str], order: Sequence[str]) -> list[list[str]]:
    """``keys`` as ``[first, last]`` runs of consecutive keys in ``order``, both ends included.

    Keys not in ``order`` become one-key runs at the end.
    """
    if not keys:
        return []
    if len(keys) == len(order) and tuple(keys) == tuple(order):
        return [[order[0], order[-1]]]  # the common case: a complete set
    position = {key: index for index, key in enumerate(order)}
    runs: list[list[int]] = []
    strays: list[str] = []
    for key in keys:
        index = position.get(key)
        if index is None:
            strays.append(key)
        elif runs and runs[-1][1] == index - 1:
            runs[-1][1] = index
        else:
            runs.append([index, index])
    return [[order[first], order[last]] for first, last in runs] + [[key, key] for key in strays]


def keys_in_ranges(ranges: Iterable[Sequence[str]], order: Sequence[str]) -> list[str]:
    """Expand ``[first, last]`` runs back into keys, in ``order``.

    :raises ValueError: when a range names a key that is not in ``order``.
    """
    position = {key: index for index, key in enumerate(order)}
    keys: list[str] = []
    for first, last in ranges:
        if first not in position or last not in position:
            raise ValueError(f"range [{first!r}, {last!r}] names a key that is not expected")
        keys.extend(order[position[first] : position[last] + 1])
    return keys


def xcom_keys(value: Mapping[str, Any], which: Literal["present", "missing"] = "present") -> list[str]:
    """The full list of present (or missing) keys of a completeness XCom value, on demand.

    ``xcom_keys(ti.xcom_pull(task_ids="wait_for_partitions"))`` gives every present key in
    expected order, rebuilt from the ranges and the expected set in the value.

    :raises ValueError: when the value holds neither the key list nor the expected set.
    """
    listed = value.get(f"{which}_keys")
    if listed is not None:
        return list(listed)
    if "expected" not in value:
        raise ValueError(
            "this completeness value has ranges but no 'expected' set to expand them with; pass "
            "xcom_detail='keys' to the sensor to get the full key lists"
        )
    from airflow_training_guard.partitions.expected import ExpectedPartitions

    order = ExpectedPartitions.deserialize(dict(value["expected"])).keys()
    return keys_in_ranges(value[f"{which}_ranges"], order)


def format_key_ranges(
    keys: Iterable[str], order: Sequence[str], *, max_ranges: int = DEFAULT_MAX_RANGES
) -> str:
    """Write ``keys`` compactly as runs of consecutive keys in ``order``.

    Runs of three or more become ``first..last (n)``; composite keys that share leading parts
    print them once (``paris|2026-11-01..2026-11-07 (7)``). After ``max_ranges`` runs the rest is
    counted: ``... and 40 more in 9 ranges``. Keys not in ``order`` are listed at the end.

    :param keys: the keys to write (e.g. the missing ones).
    :param order: the expected keys in their order; consecutive means adjacent here.
    :param max_ranges: how many runs to write out.
    """
    position = {key: index for index, key in enumerate(order)}
    wanted = list(dict.fromkeys(keys))
    known = sorted(position[key] for key in wanted if key in position)
    strays = [key for key in wanted if key not in position]
    runs: list[tuple[int, int]] = []
    for index in known:
        if runs and runs[-1][1] == index - 1:
            runs[-1] = (runs[-1][0], index)
        else:
            runs.append((index, index))
    pieces = [
        (_run_text(order[first], order[last], last - first + 1), last - first + 1) for first, last in runs
    ]
    pieces.extend((key, 1) for key in strays)
    if not pieces:
        return "none"
    shown = ", ".join(text for text, _ in pieces[:max_ranges])
    hidden = pieces[max_ranges:]
    if not hidden:
        return shown
    more = sum(count for _, count in hidden)
    return f"{shown}, ... and {more} more in {len(hidden)} more range(s)"


def _run_text(first: str, last: str, count: int) -> str:
    if count == 1:
        return first
    if count == 2:
        return f"{first}, {last}"
    head, tail = first.split(DELIMITER), last.split(DELIMITER)
    shared = 0
    while shared < len(head) - 1 and head[shared] == tail[shared]:
        shared += 1
    return f"{first}..{DELIMITER.join(tail[shared:])} ({count})"


def late_message(result: CompletenessResult, *, deadline: datetime, grace_period: timedelta | None) -> str:
    """The failure when data is still incomplete after the grace period."""
    grace = (
        f" (the expected window's end + grace_period {format_duration(grace_period)})" if grace_period else ""
    )
    return (
        f"partitions still incomplete at the grace deadline {deadline.isoformat()}{grace}: "
        f"{result.summary()}. Training on a partial set is what this sensor prevents; backfill the "
        "missing partitions upstream, then clear this task"
    )


def timeout_message(result: CompletenessResult | None, *, timeout: timedelta) -> str:
    """The failure when the sensor's ``timeout`` passes before the set is complete."""
    seen = result.summary() if result is not None else "no check finished"
    return (
        f"timed out after {format_duration(timeout)} waiting for complete partitions: {seen}. Find out "
        "why the upstream writer has not finished them, then clear this task"
    )
