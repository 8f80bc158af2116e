"""Validation of everything a person can type into a backfill trigger form.

A backfill request is a date range, one selection per categorical dimension (``city``) and a
reprocess mode. Every problem is collected and reported at once, in words a UI user can act on:
the value, what is wrong, and what to type instead. The backfill DAG's first task calls
:func:`validate_request`; when it raises, the error is in that task's log, the run fails and no
unit of work starts.

Pure Python, no Airflow import.
"""

from __future__ import annotations

import datetime as dt
import difflib
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.partitions.keys import RESERVED_FIELD_NAMES, format_key, validate_part
from airflow_training_guard.partitions.ledger import ReprocessMode

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")

#: Conf keys of a backfill request (the trigger form's field names).
START_FIELD = "start_date"
END_FIELD = "end_date"
REPROCESS_FIELD = "reprocess"


class BackfillRequestError(GuardConfigError):
    """A backfill request is invalid; ``problems`` lists every reason, the message joins them."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(f"- {problem}" for problem in self.problems)
        super().__init__(f"the backfill request is invalid; nothing was started:\n{lines}")


@dataclass(frozen=True)
class Dimension:
    """A categorical partition dimension with its known values: ``Dimension("city", ("berlin", ...))``.

    :param name: lower-case identifier, used as the form field and the path placeholder.
    :param values: every known value; each must be a valid key part.
    """

    name: str
    values: tuple[str, ...]

    def __post_init__(self) -> None:
        if (
            not isinstance(self.name, str)
            or not _NAME.fullmatch(self.name)
            or self.name in RESERVED_FIELD_NAMES
        ):
            raise GuardConfigError(
                f"dimension name {self.name!r} must be a lower-case identifier (e.g. 'city') and not one of "
                f"{sorted(RESERVED_FIELD_NAMES)}"
            )
        if isinstance(self.values, str) or not self.values:
            raise GuardConfigError(
                f"dimension {self.name!r} needs a non-empty list of values, e.g. ('berlin', 'paris'); got "
                f"{self.values!r}"
            )
        values = tuple(self.values)
        for value in values:
            validate_part(value)
        duplicated = sorted({value for value in values if values.count(value) > 1})
        if duplicated:
            raise GuardConfigError(f"dimension {self.name!r} lists {duplicated} more than once")
        object.__setattr__(self, "values", values)


@dataclass(frozen=True)
class BackfillRequest:
    """A validated request: dates inclusive on both ends, selections in the dimensions' own order."""

    start: dt.date
    end: dt.date
    selections: tuple[tuple[str, tuple[str, ...]], ...]
    reprocess: ReprocessMode

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def dates(self) -> tuple[str, ...]:
        return tuple((self.start + dt.timedelta(days=offset)).isoformat() for offset in range(self.days))

    def partition_keys(self) -> tuple[str, ...]:
        """Every partition key, ``city|date``; the dimensions vary slowest, the date fastest."""
        value_lists = [values for _, values in self.selections]
        return tuple(format_key(*combo) for combo in itertools.product(*value_lists, self.dates()))

    def describe(self) -> str:
        picked = "; ".join(
            f"{name}: {len(values)} ({', '.join(values[:5])}{'...' if len(values) > 5 else ''})"
            for name, values in self.selections
        )
        return (
            f"{self.start.isoformat()}..{self.end.isoformat()} ({self.days} days, both included)"
            + (f"; {picked}" if picked else "")
            + f"; reprocess={self.reprocess.value}; {len(self.partition_keys())} partition keys"
        )


def _parse_date(value: object, field: str, problems: list[str]) -> dt.date | None:
    if isinstance(value, dt.datetime):
        value = value.date().isoformat()
    elif isinstance(value, dt.date):
        value = value.isoformat()
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        problems.append(f"{field} {value!r} is not a date in the form YYYY-MM-DD (e.g. '2026-11-01')")
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        problems.append(f"{field} {value!r} is not a real calendar date (check the month and the day)")
        return None


def validate_selection(dimension: Dimension, raw: object, problems: list[str]) -> tuple[str, ...]:
    """Check one multi-select value against the dimension's known values; append problems."""
    if raw is None:
        return dimension.values
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, Sequence) or isinstance(raw, (bytes, bytearray)):
        problems.append(
            f"{dimension.name} {raw!r} must be a list of values, e.g. {list(dimension.values[:2])}"
        )
        return ()
    if not raw:
        problems.append(f"select at least one {dimension.name} (known: {', '.join(dimension.values)})")
        return ()
    chosen: list[str] = []
    known = set(dimension.values)
    for value in raw:
        try:
            validate_part(value)
        except GuardConfigError as err:
            problems.append(f"{dimension.name} {value!r} is not allowed: {err}")
            continue
        if value not in known:
            close = difflib.get_close_matches(value, dimension.values, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(
                f"{dimension.name} {value!r} is not a known {dimension.name}{hint} (known: "
                f"{', '.join(dimension.values)})"
            )
            continue
        if value not in chosen:
            chosen.append(value)
    order = {value: index for index, value in enumerate(dimension.values)}
    return tuple(sorted(chosen, key=order.__getitem__))


def validate_request(
    conf: Mapping[str, object],
    *,
    dimensions: Sequence[Dimension] = (),
    max_days: int,
    today: dt.date | None = None,
    earliest: dt.date | None = None,
    max_keys: int | None = None,
) -> BackfillRequest:
    """Validate a trigger form's values (``dag_run.conf``) and return the request.

    :param conf: the run's conf: ``start_date``, ``end_date``, one list per dimension, ``reprocess``.
    :param dimensions: the categorical dimensions and their known values.
    :param max_days: the longest range allowed (both ends included).
    :param today: the current UTC date (injectable for tests); the newest date allowed is the day
        before: today's partitions belong to the daily run.
    :param earliest: the oldest date allowed (e.g. the pipeline's start date), if any.
    :param max_keys: the most partition keys one run may produce (Airflow's ``[core] max_map_length``).
    :raises BackfillRequestError: listing every problem found.
    """
    problems: list[str] = []
    today = today or dt.datetime.now(dt.UTC).date()
    latest = today - dt.timedelta(days=1)
    start = _parse_date(conf.get(START_FIELD), START_FIELD, problems)
    end = _parse_date(conf.get(END_FIELD), END_FIELD, problems)
    if start is not None and end is not None:
        if start > end:
            problems.append(
                f"{START_FIELD} {start.isoformat()} is after {END_FIELD} {end.isoformat()}; swap them (both "
                "ends are included)"
            )
        elif (end - start).days + 1 > max_days:
            problems.append(
                f"the range {start.isoformat()}..{end.isoformat()} is {(end - start).days + 1} days; at most "
                f"{max_days} are allowed per backfill. Split it into several backfills (they may overlap "
                "safely) or raise max_backfill_days in the pipeline"
            )
    for field, value in ((START_FIELD, start), (END_FIELD, end)):
        if value is not None and value > latest:
            problems.append(
                f"{field} {value.isoformat()} is in the future or today (today is {today.isoformat()} UTC); "
                f"the newest date a backfill may cover is {latest.isoformat()}: today's partitions belong to "
                "the daily run"
            )
        if value is not None and earliest is not None and value < earliest:
            problems.append(
                f"{field} {value.isoformat()} is before the pipeline's first date {earliest.isoformat()}"
            )
    selections = tuple(
        (dimension.name, validate_selection(dimension, conf.get(dimension.name), problems))
        for dimension in dimensions
    )
    try:
        reprocess = ReprocessMode.parse(conf.get(REPROCESS_FIELD, ReprocessMode.MISSING.value))
    except GuardConfigError as err:
        problems.append(str(err))
        reprocess = ReprocessMode.MISSING
    known_fields = {START_FIELD, END_FIELD, REPROCESS_FIELD, *(dimension.name for dimension in dimensions)}
    unknown = sorted(str(name) for name in conf if name not in known_fields)
    if unknown:
        problems.append(f"unknown field(s) {unknown}; the form has {sorted(known_fields)}")
    if problems:
        raise BackfillRequestError(problems)
    assert start is not None and end is not None
    request = BackfillRequest(start=start, end=end, selections=selections, reprocess=reprocess)
    if max_keys is not None:
        count = request.days
        for _, values in selections:
            count *= len(values)
        if count > max_keys:
            raise BackfillRequestError(
                [
                    f"the request makes {count} partition keys, more than the {max_keys} one run may map "
                    "(Airflow's [core] max_map_length); narrow the range or the selection, or raise "
                    "AIRFLOW__CORE__MAX_MAP_LENGTH"
                ]
            )
    return request
