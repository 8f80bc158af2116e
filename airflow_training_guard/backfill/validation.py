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
import math
import re
import reprlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.partitions.keys import (
    RESERVED_FIELD_NAMES,
    PartitionKey,
    validate_part,
)
from airflow_training_guard.partitions.ledger import ReprocessMode

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")

#: Conf keys of a backfill request (the trigger form's field names).
START_FIELD = "start_date"
END_FIELD = "end_date"
REPROCESS_FIELD = "reprocess"

#: Longest text of a typed value quoted in an error: a million-character city gave a
#: 1,000,332-character error (issue 14), which the task log, the UI and XCom all carry.
QUOTE_LIMIT = 60
#: Bad values of one field listed one by one; the rest are counted.
MAX_LISTED_PROBLEMS = 5


class _ShortRepr(reprlib.Repr):
    """``reprlib`` with bounded depth and size that never raises on big integers or deep nesting."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 3
        self.maxlist = self.maxtuple = self.maxdict = self.maxset = self.maxfrozenset = 4
        self.maxstring = self.maxother = QUOTE_LIMIT
        self.maxlong = 24

    def repr_int(self, x: int, level: int) -> str:
        return _show_int(x)

    def repr_str(self, x: str, level: int) -> str:
        return _show_str(x)


def _show_int(value: int) -> str:
    # repr() of an integer over 4,300 digits raises ValueError (issue 14: a 5,000-digit integer).
    if value.bit_length() <= 64:
        return repr(value)
    digits = int(value.bit_length() * math.log10(2)) + 1
    return f"<an integer of about {digits:,} digits>"


def _show_str(value: str) -> str:
    if len(value) <= QUOTE_LIMIT:
        return repr(value)
    return f"{value[:QUOTE_LIMIT]!r}... ({len(value):,} characters)"


_SHORT_REPR = _ShortRepr()


def show_value(value: object) -> str:
    """A short, safe quotation of any typed value for an error message.

    Long strings are cut with their length, huge integers are described, nested lists and dicts
    are shown a few levels and items deep. Never raises (no ``ValueError`` on a 5,000-digit
    integer, no ``RecursionError`` on a 5,000-deep list) and never returns more than a few hundred
    characters.
    """
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        return _show_int(value)
    if isinstance(value, str):
        return _show_str(value)
    try:
        text = _SHORT_REPR.repr(value)
    except Exception:  # an odd object's own __repr__; the type still helps the reader
        text = f"<a {type(value).__name__}>"
    return text if len(text) <= 4 * QUOTE_LIMIT else f"{text[: 4 * QUOTE_LIMIT]}..."


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

    def partition_keys(self) -> tuple[PartitionKey, ...]:
        """Every partition key, ``city|date``; the dimensions vary slowest, the date fastest.

        Each is a :class:`~airflow_training_guard.partitions.keys.PartitionKey` named by the
        dimensions (``("city", "date")``).
        """
        names = (*(name for name, _ in self.selections), "date")
        value_lists = [values for _, values in self.selections]
        return tuple(
            PartitionKey.from_parts(*combo, dimensions=names)
            for combo in itertools.product(*value_lists, self.dates())
        )

    @property
    def key_count(self) -> int:
        """How many partition keys the request makes (without building them)."""
        count = self.days
        for _, values in self.selections:
            count *= len(values)
        return count

    def to_conf(self) -> dict[str, Any]:
        """The trigger-form conf that describes exactly this request (validates back to it)."""
        conf: dict[str, Any] = {START_FIELD: self.start.isoformat(), END_FIELD: self.end.isoformat()}
        for name, values in self.selections:
            conf[name] = list(values)
        conf[REPROCESS_FIELD] = self.reprocess.value
        return conf

    def describe(self) -> str:
        picked = "; ".join(
            f"{name}: {len(values)} ({', '.join(values[:5])}{'...' if len(values) > 5 else ''})"
            for name, values in self.selections
        )
        return (
            f"{self.start.isoformat()}..{self.end.isoformat()} ({self.days} days, both included)"
            + (f"; {picked}" if picked else "")
            + f"; reprocess={self.reprocess.value}; {self.key_count} partition keys"
        )


def require_splittable(request: BackfillRequest, max_keys: int) -> tuple[BackfillRequest, ...]:
    """The parts a request is run as, or :class:`BackfillRequestError` when it needs too many.

    One run maps at most ``max_keys`` keys (``[core] max_map_length``), and a request with more is
    run as part runs of at most ``max_keys`` keys each, which the first run starts as one mapped
    task: so at most ``max_keys`` parts. The backfill DAG, the coverage page and ``partitions plan``
    apply this one rule, so none of them accepts what another refuses.
    """
    parts = split_request(request, max_keys)
    if len(parts) > max_keys:
        raise BackfillRequestError(
            [
                f"the request makes {request.key_count} partition keys: {len(parts)} part runs of at most "
                f"{max_keys} keys, and one run may start at most {max_keys} ([core] max_map_length); raise "
                "AIRFLOW__CORE__MAX_MAP_LENGTH or narrow the range or the selection"
            ]
        )
    return parts


def split_request(request: BackfillRequest, max_keys: int) -> tuple[BackfillRequest, ...]:
    """Cut ``request`` into requests of at most ``max_keys`` keys each, together covering it exactly.

    One mapped task holds at most Airflow's ``[core] max_map_length`` instances (1,024 by default:
    34 days of 30 cities), so a year of 30 cities (10,950 keys) cannot be one run (issue 17). The
    parts are rectangles, each a valid request of its own: whole days of every selected value when a
    day fits (30 cities x 34 days, oldest first), else one day with the first dimension's values
    split (and so on inward). A request that fits is returned as the only part.

    :param request: a validated request.
    :param max_keys: the most keys one part may make (>= 1).
    """
    if max_keys < 1:
        raise GuardConfigError(f"max_keys {max_keys} must be >= 1 (Airflow's [core] max_map_length)")
    if request.key_count <= max_keys:
        return (request,)
    dates = [request.start + dt.timedelta(days=offset) for offset in range(request.days)]
    # Axes from outermost to innermost: the date first, so parts progress through time.
    axes: list[tuple[str, tuple[Any, ...]]] = [("date", tuple(dates)), *request.selections]
    # The outermost axis that must be cut: everything inside it fits in one part.
    inner = 1
    cut = len(axes) - 1
    sizes = [len(values) for _, values in axes]
    for index in range(len(axes) - 1, -1, -1):
        if inner * sizes[index] > max_keys:
            cut = index
            break
        inner *= sizes[index]
    chunk = max(1, max_keys // inner)
    fixed_axes = axes[:cut]
    cut_name, cut_values = axes[cut]
    parts: list[BackfillRequest] = []
    for fixed in itertools.product(*(values for _, values in fixed_axes)):
        for start in range(0, len(cut_values), chunk):
            piece = cut_values[start : start + chunk]
            chosen: dict[str, tuple[Any, ...]] = {
                name: (value,) for (name, _), value in zip(fixed_axes, fixed, strict=True)
            }
            chosen[cut_name] = piece
            days = chosen.get("date", tuple(dates))
            parts.append(
                BackfillRequest(
                    start=days[0],
                    end=days[-1],
                    selections=tuple(
                        (name, tuple(chosen.get(name, values))) for name, values in request.selections
                    ),
                    reprocess=request.reprocess,
                )
            )
    return tuple(parts)


def _parse_date(value: object, field: str, problems: list[str]) -> dt.date | None:
    if isinstance(value, dt.datetime):
        value = value.date().isoformat()
    elif isinstance(value, dt.date):
        value = value.isoformat()
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        problems.append(
            f"{field} {show_value(value)} is not a date in the form YYYY-MM-DD (e.g. '2026-11-01')"
        )
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        problems.append(f"{field} {value!r} is not a real calendar date (check the month and the day)")
        return None


def validate_selection(dimension: Dimension, raw: object, problems: list[str]) -> tuple[str, ...]:
    """Check one multi-select value against the dimension's known values; append problems.

    At most :data:`MAX_LISTED_PROBLEMS` bad values are named (each quoted short); the rest are counted.
    """
    if raw is None:
        return dimension.values
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, Sequence) or isinstance(raw, (bytes, bytearray)):
        problems.append(
            f"{dimension.name} {show_value(raw)} must be a list of values, e.g. {list(dimension.values[:2])}"
        )
        return ()
    if not raw:
        problems.append(f"select at least one {dimension.name} (known: {', '.join(dimension.values)})")
        return ()
    chosen: list[str] = []
    known = set(dimension.values)
    bad: list[str] = []
    for value in raw:
        problem = _selection_problem(dimension, value, known)
        if problem is not None:
            bad.append(problem)
        elif value not in chosen:
            chosen.append(value)
    problems.extend(bad[:MAX_LISTED_PROBLEMS])
    if len(bad) > MAX_LISTED_PROBLEMS:
        problems.append(
            f"... and {len(bad) - MAX_LISTED_PROBLEMS:,} more {dimension.name} value(s) rejected the same way "
            f"(known: {', '.join(dimension.values)})"
        )
    order = {value: index for index, value in enumerate(dimension.values)}
    return tuple(sorted(chosen, key=order.__getitem__))


def _selection_problem(dimension: Dimension, value: object, known: set[str]) -> str | None:
    """Why ``value`` cannot be selected, or None when it is a known value."""
    name = dimension.name
    if not isinstance(value, str):
        return (
            f"{name} {show_value(value)} is of type {type(value).__name__}, not a string; pick from the known "
            f"values ({', '.join(dimension.values)})"
        )
    if value in known:
        return None
    if len(value) > QUOTE_LIMIT:
        # Its own error would quote all of it; no known value is this long anyway.
        return f"{name} {show_value(value)} is not a known {name} (known: {', '.join(dimension.values)})"
    try:
        validate_part(value)
    except GuardConfigError as err:
        return f"{name} {value!r} is not allowed: {err}"
    close = difflib.get_close_matches(value, dimension.values, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{name} {value!r} is not a known {name}{hint} (known: {', '.join(dimension.values)})"


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
    raw_mode = conf.get(REPROCESS_FIELD, ReprocessMode.MISSING.value)
    try:
        if not isinstance(raw_mode, str) or len(raw_mode) > QUOTE_LIMIT:
            raise GuardConfigError(
                f"reprocess mode {show_value(raw_mode)} is not valid; use 'missing' (only keys never done), "
                "'failed' (missing and failed keys) or 'all' (redo every key, replacing its committed output)"
            )
        reprocess = ReprocessMode.parse(raw_mode)
    except GuardConfigError as err:
        problems.append(str(err))
        reprocess = ReprocessMode.MISSING
    known_fields = {START_FIELD, END_FIELD, REPROCESS_FIELD, *(dimension.name for dimension in dimensions)}
    unknown = sorted(
        (name for name in conf if name not in known_fields),
        key=lambda name: name if isinstance(name, str) else show_value(name),
    )
    if unknown:
        listed = ", ".join(show_value(name) for name in unknown[:MAX_LISTED_PROBLEMS])
        more = (
            f" and {len(unknown) - MAX_LISTED_PROBLEMS:,} more" if len(unknown) > MAX_LISTED_PROBLEMS else ""
        )
        problems.append(f"unknown field(s) [{listed}]{more}; the form has {sorted(known_fields)}")
    if problems:
        raise BackfillRequestError(problems)
    assert start is not None and end is not None
    request = BackfillRequest(start=start, end=end, selections=selections, reprocess=reprocess)
    if max_keys is not None:
        count = request.key_count
        if count > max_keys:
            raise BackfillRequestError(
                [
                    f"the request makes {count} partition keys, more than the {max_keys} one run may map "
                    "(Airflow's [core] max_map_length); narrow the range or the selection, or raise "
                    "AIRFLOW__CORE__MAX_MAP_LENGTH"
                ]
            )
    return request
