"""Expected sets of partitions: which keys must all be present before training may start.

Immutable value types (equal, hashable and printable by value, like Dagster's partition
definitions), each with :meth:`~ExpectedPartitions.keys` in a stable order:

- :class:`HoursOfDay`: the hours of one local day in a time zone: 24, or 23 on a spring-forward
  day and 25 on a fall-back day, computed with pendulum's time zone database;
- :class:`HoursOfRange`: the hours of every day from ``start`` to ``end``, both included;
- :class:`DaysOfRange`: the days from ``start`` to ``end``, both included;
- :class:`Product`: composite keys, every combination of its sets (cities x dates);
- :class:`ExplicitKeys`: a list of keys written out.

Hour keys are the local wall-clock hour in the form Airflow's temporal partition mappers read
(``%Y-%m-%dT%H:%M:%S``): ``2026-11-01T09:00:00`` in UTC. In any other time zone every key carries
its UTC offset, ``2026-10-25T02:00:00+02:00`` and ``2026-10-25T02:00:00+01:00``, because a fall-back
day has two 02:00 hours that must stay two partitions (parse them with ``%Y-%m-%dT%H:%M:%S%z``).

Dates may be Jinja templates (``HoursOfDay("{{ macros.ds_add(ds, -1) }}")``): everything else is
checked when the DAG is parsed, the dates when the sensor renders its fields
(:meth:`ExpectedPartitions.render`).

Standard library and pendulum only: no Airflow import.
"""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import itertools
import re
import zoneinfo
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import pendulum
from pendulum.tz.exceptions import InvalidTimezone

from airflow_training_guard.exceptions import GuardConfigError
from airflow_training_guard.partitions.keys import (
    DELIMITER,
    RESERVED_FIELD_NAMES,
    format_key,
    parse_key,
    parse_temporal,
)
from airflow_training_guard.partitions.registry import class_of, register_kind

#: More keys than this is almost always a typo (year 20260); one check would list them all.
MAX_EXPECTED_KEYS = 100_000

#: Turns a template string into its rendered value (the sensor passes Jinja rendering).
Renderer = Callable[[str], object]

_UTC_NAMES = frozenset({"UTC", "Etc/UTC"})

# A date-time as sources return it: ``T`` or a space, optional seconds and fractions, and an offset
# written ``Z``, ``+00``, ``+0000`` or ``+00:00`` (PostgreSQL's text form, ``strftime``, isoformat).
_SOURCE_DATETIME = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[T ](?P<hour>\d{2})(?::(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.\d+)?)?)?"
    r" ?(?P<offset>Z|[+-]\d{2}(?::?\d{2})?)?"
)
_SAMPLE_STEP = 900  # seconds: every offset in use is a multiple of 15 minutes


def is_template(value: object) -> bool:
    """Whether ``value`` is a Jinja template string, rendered at run time."""
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def _resolve_timezone(name: object) -> pendulum.Timezone:
    if not isinstance(name, str) or not name:
        raise GuardConfigError(
            f"timezone {name!r} must be an IANA time zone name such as 'UTC' or 'Europe/Berlin'"
        )
    try:
        return pendulum.timezone(name)
    except (InvalidTimezone, ValueError, zoneinfo.ZoneInfoNotFoundError):
        close = difflib.get_close_matches(name, sorted(zoneinfo.available_timezones()), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise GuardConfigError(
            f"timezone {name!r} is not a known IANA time zone{hint} (e.g. 'UTC', 'Europe/Berlin', "
            "'America/New_York')"
        ) from None


def _normalise_timezone(name: object) -> str:
    zone = _resolve_timezone(name)
    return "UTC" if zone.name in _UTC_NAMES else zone.name


def _parse_date(value: object, *, name: str) -> str:
    """Return ``value`` as ``YYYY-MM-DD`` (or unchanged when it is a template)."""
    if isinstance(value, dt.datetime):
        raise GuardConfigError(
            f"{name} {value!r} is a datetime; pass a date such as {value.date().isoformat()!r} (the "
            "time zone of the set says which local day it is)"
        )
    if isinstance(value, dt.date):
        return value.isoformat()
    if is_template(value):
        return str(value)
    if isinstance(value, str) and len(value.strip()) == 10:
        try:
            return dt.date.fromisoformat(value.strip()).isoformat()
        except ValueError:
            pass
    raise GuardConfigError(
        f"{name} {value!r} is not a date; use 'YYYY-MM-DD' (e.g. '2026-11-01'), a datetime.date, or a "
        "Jinja template such as '{{ ds }}' or \"{{ macros.ds_add(ds, -1) }}\""
    )


def _check_name(name: object, *, owner: str) -> str | None:
    if name is None:
        return None
    if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
        raise GuardConfigError(
            f"{owner} name {name!r} must be a Python identifier such as 'city'; it becomes the path "
            "template placeholder {" + str(name) + "}"
        )
    if name in RESERVED_FIELD_NAMES:
        raise GuardConfigError(
            f"{owner} name {name!r} is reserved: {{{name}}} is derived from the key itself; leave the "
            f"name out or pick another one (reserved: {', '.join(sorted(RESERVED_FIELD_NAMES))})"
        )
    return name


def _midnight(day: dt.date, zone: pendulum.Timezone) -> pendulum.DateTime:
    # pendulum moves a midnight that does not exist (a DST jump at 00:00) to the first instant after.
    return pendulum.datetime(day.year, day.month, day.day, tz=zone)


def _utc(instant: dt.datetime) -> dt.datetime:
    """A plain aware ``datetime`` in UTC (JSON- and trigger-kwargs-friendly, unlike pendulum's)."""
    return dt.datetime.fromtimestamp(instant.timestamp(), dt.UTC)


def _hour_keys(day: dt.date, zone: pendulum.Timezone, *, with_offset: bool) -> list[str]:
    """The wall-clock hours of ``day`` in ``zone``, each hour with a different UTC offset apart."""
    start = int(_midnight(day, zone).timestamp())
    end = int(_midnight(day + dt.timedelta(days=1), zone).timestamp())
    keys: dict[tuple[int, dt.timedelta | None], str] = {}
    for instant in range(start, end, _SAMPLE_STEP):
        local = dt.datetime.fromtimestamp(instant, zone)
        ident = (local.hour, local.utcoffset())
        if ident not in keys:
            key = f"{local:%Y-%m-%dT%H}:00:00"
            if with_offset:
                offset = local.strftime("%z")
                key += f"{offset[:3]}:{offset[3:]}"
            keys[ident] = key
    return list(keys.values())


def instant_text(value: dt.datetime) -> str:
    """One text per instant: ``2026-01-15T00:00:00Z``. A naive value is UTC (the rule for keys)."""
    if value.tzinfo is not None and value.utcoffset() is not None:
        value = value.astimezone(dt.UTC)
    return f"{value:%Y-%m-%dT%H:%M:%S}Z"


def _part_instant(part: str) -> str | None:
    match = _SOURCE_DATETIME.fullmatch(part.strip())
    if match is None:
        return None
    offset_text = match["offset"]
    offset = dt.timedelta(0)
    if offset_text and offset_text != "Z":
        digits = offset_text[1:].replace(":", "")
        minutes = int(digits[:2]) * 60 + (int(digits[2:4]) if len(digits) > 2 else 0)
        offset = dt.timedelta(minutes=-minutes if offset_text[0] == "-" else minutes)
    try:
        local = dt.datetime.fromisoformat(f"{match['date']}T{match['hour']}:00:00").replace(
            minute=int(match["minute"] or 0), second=int(match["second"] or 0), tzinfo=dt.timezone(offset)
        )
    except ValueError:
        return None
    return instant_text(local)


def canonical_key(value: object) -> str:
    """The text two spellings of one partition share, for matching what a source returns.

    Date-time parts become the UTC instant they name, so ``2026-01-15T00:00:00+00:00`` (a London
    winter hour key), ``2026-01-15T00:00:00Z``, ``2026-01-15 00:00:00+00`` (PostgreSQL's text) and
    an aware ``datetime`` at that instant are one partition, and ``2026-01-15T05:30:00+05:30``
    (Kolkata) equals ``2026-01-15T00:00:00Z``. A date-time without an offset is UTC, the package's
    rule for keys. Other parts (dates, cities) are compared as written.
    """
    if isinstance(value, dt.datetime):
        return instant_text(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        value = value.decode()
    text = str(value)
    return DELIMITER.join(_part_instant(part) or part for part in text.split(DELIMITER))


class ExpectedPartitions(ABC):
    """The complete set of partition keys a training run needs; subclasses are immutable values.

    Derived behaviour is written once here: ``len()``, iteration and ``in`` over :meth:`keys`,
    the size limit, rendering of templated fields and (de)serialisation by ``kind``.
    """

    #: The name :meth:`serialize` writes and :meth:`deserialize` reads, set by ``register_kind``.
    kind: ClassVar[str]

    # -- the contract ---------------------------------------------------------------------------

    @abstractmethod
    def _compute_keys(self) -> tuple[str, ...]:
        """Every key, in a stable order (time order, then the order sets were given)."""

    @property
    @abstractmethod
    def names(self) -> tuple[str | None, ...]:
        """The name of each dimension (part) of a key, or None; names become path placeholders."""

    @property
    @abstractmethod
    def is_templated(self) -> bool:
        """Whether some field is a Jinja template still to be rendered."""

    @abstractmethod
    def render(self, renderer: Renderer) -> ExpectedPartitions:
        """Return this set with every templated field rendered and checked."""

    @abstractmethod
    def serialize(self) -> dict[str, Any]:
        """A JSON-compatible dict that :meth:`deserialize` turns back into an equal set."""

    @abstractmethod
    def describe(self) -> str:
        """A short human description for logs: ``24 hours of 2026-11-01 (UTC)``."""

    def example(self) -> ExpectedPartitions | None:
        """A concrete stand-in used to check a path template at parse time, or None if unknown."""
        return None if self.is_templated else self

    def closes_at(self) -> dt.datetime | None:
        """The instant the last expected partition's period ends, used for ``grace_period``.

        The default reads it from the keys: the latest end of their one date or date-time part
        (a date ends at the next midnight UTC, an hour one hour after it starts). None when a key
        has no such part.
        """
        ends: list[dt.datetime] = []
        for key in self.keys():
            temporal = [found for part in parse_key(key) if (found := parse_temporal(part)) is not None]
            if len(temporal) != 1:
                return None
            ends.append(temporal[0].end)
        return max(ends) if ends else None

    # -- derived behaviour ----------------------------------------------------------------------

    def keys(self) -> tuple[str, ...]:
        """Every expected key in a stable order.

        :raises GuardConfigError: when a field is still a template (render first).
        """
        return self._keys

    @functools.cached_property
    def _keys(self) -> tuple[str, ...]:
        if self.is_templated:
            raise GuardConfigError(
                f"{self!r} has Jinja templates that are not rendered yet; the sensor renders them "
                "when the task runs (call .render(...) to do it yourself)"
            )
        keys = self._compute_keys()
        if not keys:
            raise GuardConfigError(f"{self!r} expects no partitions at all; a completeness check needs some")
        return keys

    @functools.cached_property
    def _key_set(self) -> frozenset[str]:
        return frozenset(self.keys())

    @functools.cached_property
    def _canonical_index(self) -> dict[str, str]:
        return {canonical_key(key): key for key in self.keys()}

    def match_key(self, value: object) -> str | None:
        """The expected key a source's value names, or None when it names none of them.

        Sources return keys in their own spelling: a database an aware ``datetime`` in its session
        time zone, a function ``...Z``. The comparison is :func:`canonical_key` on both sides, so a
        zero offset (London in winter, Reykjavik), a half-hour offset (Kolkata, Adelaide) and both
        hours of a fall-back day match exactly one expected key each (issue 13).
        """
        if isinstance(value, str) and value in self._key_set:
            return value
        return self._canonical_index.get(canonical_key(value))

    @property
    def dimensions(self) -> int:
        """How many parts every key has."""
        return len(self.names)

    def __len__(self) -> int:
        return len(self.keys())

    def __bool__(self) -> bool:
        # A set is never empty (checked when it is built); without this, truth tests would compute
        # every key, or fail on a set whose dates are still templates.
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __contains__(self, key: object) -> bool:
        return key in self._key_set

    @staticmethod
    def deserialize(data: dict[str, Any]) -> ExpectedPartitions:
        """Rebuild a set from :meth:`serialize` output."""
        cls = class_of(data, ExpectedPartitions, "an expected set")
        return cls._from_dict({k: v for k, v in data.items() if k != "kind"})  # type: ignore[no-any-return]

    @classmethod
    def _from_dict(cls, data: dict[str, Any]) -> ExpectedPartitions:
        return cls(**data)


def _check_size(count: int, owner: object) -> None:
    if count > MAX_EXPECTED_KEYS:
        raise GuardConfigError(
            f"{owner!r} expects {count:,} partitions, more than the limit of {MAX_EXPECTED_KEYS:,}; "
            "check the dates for a typo, or split the check into several sensors"
        )


@register_kind("hours_of_day")
@dataclass(frozen=True, init=False)
class HoursOfDay(ExpectedPartitions):
    """The hours of one local day: 24, or 23/25 on the days daylight saving time starts/ends.

    :param date: the local day, ``"YYYY-MM-DD"``, a ``datetime.date`` or a Jinja template
        (``"{{ macros.ds_add(ds, -1) }}"``).
    :param timezone: the IANA time zone the day and its hours are counted in (default ``"UTC"``).
        Keys carry their UTC offset unless the zone is UTC.
    :param name: optional dimension name, usable as a path placeholder for the whole hour key.
    """

    date: str
    timezone: str
    name: str | None

    def __init__(self, date: str | dt.date, timezone: str = "UTC", *, name: str | None = None) -> None:
        object.__setattr__(self, "date", _parse_date(date, name="HoursOfDay date"))
        object.__setattr__(self, "timezone", _normalise_timezone(timezone))
        object.__setattr__(self, "name", _check_name(name, owner="HoursOfDay"))

    @property
    def names(self) -> tuple[str | None, ...]:
        return (self.name,)

    @property
    def is_templated(self) -> bool:
        return is_template(self.date)

    def _compute_keys(self) -> tuple[str, ...]:
        zone = _resolve_timezone(self.timezone)
        day = dt.date.fromisoformat(self.date)
        return tuple(_hour_keys(day, zone, with_offset=self.timezone != "UTC"))

    def closes_at(self) -> dt.datetime | None:
        if self.is_templated:
            return None
        day = dt.date.fromisoformat(self.date) + dt.timedelta(days=1)
        return _utc(_midnight(day, _resolve_timezone(self.timezone)))

    def render(self, renderer: Renderer) -> HoursOfDay:
        if not self.is_templated:
            return self
        return HoursOfDay(str(renderer(self.date)).strip(), self.timezone, name=self.name)

    def example(self) -> HoursOfDay:
        if not self.is_templated:
            return self
        # The longest day of the zone: its repeated hour is where a path template collides.
        return HoursOfDay(_longest_day(self.timezone), self.timezone, name=self.name)

    def serialize(self) -> dict[str, Any]:
        return {"kind": self.kind, "date": self.date, "timezone": self.timezone, "name": self.name}

    def describe(self) -> str:
        if self.is_templated:
            return f"the hours of {self.date} ({self.timezone})"
        return f"{len(self)} hours of {self.date} ({self.timezone})"

    def __repr__(self) -> str:
        name = f", name={self.name!r}" if self.name else ""
        return f"HoursOfDay({self.date!r}, timezone={self.timezone!r}{name})"


@functools.lru_cache(maxsize=64)
def _longest_day(zone_name: str, year: int = 2026) -> str:
    zone = _resolve_timezone(zone_name)
    best, best_length = dt.date(year, 1, 1), 0.0
    day = best
    while day.year == year:
        length = _midnight(day + dt.timedelta(days=1), zone).timestamp() - _midnight(day, zone).timestamp()
        if length > best_length:
            best, best_length = day, length
        day += dt.timedelta(days=1)
    return best.isoformat()


class _DateRange(ExpectedPartitions):
    """Shared checks of sets spanning ``start`` to ``end``, both included."""

    start: str
    end: str
    timezone: str
    name: str | None

    def _init_range(self, start: object, end: object, timezone: str, name: str | None) -> None:
        owner = type(self).__name__
        object.__setattr__(self, "start", _parse_date(start, name=f"{owner} start"))
        object.__setattr__(self, "end", _parse_date(end, name=f"{owner} end"))
        object.__setattr__(self, "timezone", _normalise_timezone(timezone))
        object.__setattr__(self, "name", _check_name(name, owner=owner))
        if not self.is_templated:
            first, last = dt.date.fromisoformat(self.start), dt.date.fromisoformat(self.end)
            if first > last:
                raise GuardConfigError(
                    f"{owner} start {self.start} is after end {self.end}: the range is reversed. Both ends "
                    f"are included, so write {owner}({self.end!r}, {self.start!r})"
                )
            _check_size(((last - first).days + 1) * self._per_day, self)

    _per_day: ClassVar[int] = 1

    @property
    def names(self) -> tuple[str | None, ...]:
        return (self.name,)

    @property
    def is_templated(self) -> bool:
        return is_template(self.start) or is_template(self.end)

    def _days(self) -> Iterator[dt.date]:
        day, last = dt.date.fromisoformat(self.start), dt.date.fromisoformat(self.end)
        while day <= last:
            yield day
            day += dt.timedelta(days=1)

    def closes_at(self) -> dt.datetime | None:
        if self.is_templated:
            return None
        return _utc(
            _midnight(
                dt.date.fromisoformat(self.end) + dt.timedelta(days=1), _resolve_timezone(self.timezone)
            )
        )

    def render(self, renderer: Renderer) -> ExpectedPartitions:
        if not self.is_templated:
            return self

        def _render(value: str) -> str:
            return str(renderer(value)).strip() if is_template(value) else value

        return type(self)(_render(self.start), _render(self.end), self.timezone, name=self.name)  # type: ignore[call-arg]

    def example(self) -> ExpectedPartitions:
        if not self.is_templated:
            return self
        # Three days around the zone's longest day: where a path template would collide.
        around = dt.date.fromisoformat(_longest_day(self.timezone))
        first = (
            around - dt.timedelta(days=1) if is_template(self.start) else dt.date.fromisoformat(self.start)
        )
        last = around + dt.timedelta(days=1) if is_template(self.end) else dt.date.fromisoformat(self.end)
        if is_template(self.start) and first > last:
            first = last - dt.timedelta(days=2)
        if is_template(self.end) and last < first:
            last = first + dt.timedelta(days=2)
        return type(self)(first, last, self.timezone, name=self.name)  # type: ignore[call-arg]

    def serialize(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "start": self.start,
            "end": self.end,
            "timezone": self.timezone,
            "name": self.name,
        }

    def __repr__(self) -> str:
        name = f", name={self.name!r}" if self.name else ""
        zone = (
            f", timezone={self.timezone!r}" if self.timezone != "UTC" or self.kind == "hours_of_range" else ""
        )
        return f"{type(self).__name__}({self.start!r}, {self.end!r}{zone}{name})"


@register_kind("days_of_range")
@dataclass(frozen=True, init=False, repr=False)
class DaysOfRange(_DateRange):
    """The days from ``start`` to ``end``, **both included**: ``DaysOfRange("2026-11-01", "2026-11-07")``
    is 7 keys, ``2026-11-01`` ... ``2026-11-07``.

    :param start: first day, ``"YYYY-MM-DD"``, a ``datetime.date`` or a Jinja template.
    :param end: last day (included), same forms.
    :param timezone: the zone in which the last day ends (for ``grace_period``); keys are plain dates.
    :param name: optional dimension name for path placeholders (``{date}`` exists anyway).
    :raises GuardConfigError: when ``start`` is after ``end`` (reversed range).
    """

    start: str
    end: str
    timezone: str
    name: str | None

    def __init__(
        self, start: str | dt.date, end: str | dt.date, timezone: str = "UTC", *, name: str | None = None
    ) -> None:
        self._init_range(start, end, timezone, name)

    def _compute_keys(self) -> tuple[str, ...]:
        return tuple(day.isoformat() for day in self._days())

    def describe(self) -> str:
        if self.is_templated:
            return f"the days {self.start}..{self.end} (both included)"
        return f"{len(self)} days {self.start}..{self.end} (both included)"


@register_kind("hours_of_range")
@dataclass(frozen=True, init=False, repr=False)
class HoursOfRange(_DateRange):
    """The hours of every local day from ``start`` to ``end``, **both days included**.

    The same keys as :class:`HoursOfDay` for each day, one after the other.

    :param start: first day, ``"YYYY-MM-DD"``, a ``datetime.date`` or a Jinja template.
    :param end: last day (included), same forms.
    :param timezone: the IANA zone the days and hours are counted in (default ``"UTC"``).
    :param name: optional dimension name for path placeholders.
    """

    start: str
    end: str
    timezone: str
    name: str | None

    _per_day: ClassVar[int] = 24

    def __init__(
        self, start: str | dt.date, end: str | dt.date, timezone: str = "UTC", *, name: str | None = None
    ) -> None:
        self._init_range(start, end, timezone, name)

    def _compute_keys(self) -> tuple[str, ...]:
        zone = _resolve_timezone(self.timezone)
        with_offset = self.timezone != "UTC"
        return tuple(key for day in self._days() for key in _hour_keys(day, zone, with_offset=with_offset))

    def describe(self) -> str:
        if self.is_templated:
            return f"the hours of {self.start}..{self.end} ({self.timezone}, both days included)"
        return f"{len(self)} hours of {self.start}..{self.end} ({self.timezone}, both days included)"


def _as_names(names: object, *, owner: str) -> tuple[str | None, ...] | None:
    if names is None:
        return None
    if isinstance(names, str):
        return (_check_name(names, owner=owner),)
    if isinstance(names, Sequence):
        return tuple(_check_name(name, owner=owner) for name in names)
    raise GuardConfigError(f"{owner} names {names!r} must be a name or a list of names, one per key part")


@register_kind("explicit_keys")
@dataclass(frozen=True, init=False)
class ExplicitKeys(ExpectedPartitions):
    """A list of keys written out: ``ExplicitKeys(["berlin", "paris"], names="city")``.

    :param keys: the keys (at least one, no duplicates, all with the same number of parts); each
        key may be a Jinja template (``"{{ dag_run.partition_key }}"``).
    :param names: optional dimension name(s): one name, or one per part of a composite key.
    """

    keys_: tuple[str, ...]
    names_: tuple[str | None, ...] | None

    def __init__(self, keys: Sequence[str], *, names: str | Sequence[str | None] | None = None) -> None:
        if isinstance(keys, str) or not isinstance(keys, Sequence | frozenset | set):
            raise GuardConfigError(
                f"ExplicitKeys keys {keys!r} must be a list of keys, e.g. ExplicitKeys(['berlin', 'paris'])"
            )
        values = tuple(keys)
        if not values:
            raise GuardConfigError(
                "ExplicitKeys([]) is empty: an empty expected set would pass every check without looking "
                "at any data; list the keys the training run needs"
            )
        seen: set[str] = set()
        dims: set[int] = set()
        for key in values:
            if is_template(key):
                continue
            dims.add(len(parse_key(key)))
            if key in seen:
                raise GuardConfigError(
                    f"ExplicitKeys lists {key!r} twice; list every key once (duplicates hide a typo)"
                )
            seen.add(key)
        if len(dims) > 1:
            raise GuardConfigError(
                f"ExplicitKeys mixes keys with {sorted(dims)} parts; every key of a set must have the same "
                f"number of {DELIMITER!r}-separated parts"
            )
        _check_size(len(values), f"ExplicitKeys({len(values)} keys)")
        object.__setattr__(self, "keys_", values)
        checked = _as_names(names, owner="ExplicitKeys")
        if checked is not None and dims and len(checked) != next(iter(dims)):
            raise GuardConfigError(
                f"ExplicitKeys names {names!r} give {len(checked)} name(s) but the keys have "
                f"{next(iter(dims))} part(s); give one name per part (None for an unnamed part)"
            )
        object.__setattr__(self, "names_", checked)

    @property
    def names(self) -> tuple[str | None, ...]:
        if self.names_ is not None:
            return self.names_
        for key in self.keys_:
            if not is_template(key):
                return (None,) * len(parse_key(key))
        return (None,)

    @property
    def is_templated(self) -> bool:
        return any(is_template(key) for key in self.keys_)

    def _compute_keys(self) -> tuple[str, ...]:
        return self.keys_

    def render(self, renderer: Renderer) -> ExplicitKeys:
        if not self.is_templated:
            return self
        rendered = [str(renderer(key)).strip() if is_template(key) else key for key in self.keys_]
        return ExplicitKeys(rendered, names=self.names_)

    def serialize(self) -> dict[str, Any]:
        return {"kind": self.kind, "keys": list(self.keys_), "names": _names_out(self.names_)}

    def describe(self) -> str:
        return f"{len(self.keys_)} listed keys"

    def __repr__(self) -> str:
        shown = list(self.keys_[:5]) + (["..."] if len(self.keys_) > 5 else [])
        names = f", names={self.names_!r}" if self.names_ else ""
        return f"ExplicitKeys({shown!r}{names})"


def _names_out(names: tuple[str | None, ...] | None) -> list[str | None] | None:
    return list(names) if names is not None else None


def _as_set(value: object, *, position: int) -> ExpectedPartitions:
    if isinstance(value, ExpectedPartitions):
        return value
    if isinstance(value, str):
        raise GuardConfigError(
            f"Product argument {position} is the string {value!r}; pass a list of keys (['berlin', "
            "'paris']) or an expected set such as DaysOfRange(...)"
        )
    if isinstance(value, Sequence):
        return ExplicitKeys(value)
    raise GuardConfigError(
        f"Product argument {position} {value!r} is a {type(value).__name__}; pass expected sets "
        "(HoursOfDay, DaysOfRange, ExplicitKeys ...) or lists of keys"
    )


@register_kind("product")
@dataclass(frozen=True, init=False)
class Product(ExpectedPartitions):
    """Composite keys: every combination of the given sets, like Airflow's ``ProductMapper``.

    ``Product(ExplicitKeys(["berlin", "paris"], names="city"), DaysOfRange("2026-11-01", "2026-11-07"))``
    is 14 keys ``berlin|2026-11-01`` ... ``paris|2026-11-07``: the first set varies slowest.

    :param sets: two or more expected sets or plain lists of keys.
    """

    sets: tuple[ExpectedPartitions, ...]

    def __init__(self, *sets: ExpectedPartitions | Sequence[str]) -> None:
        if len(sets) < 2:
            raise GuardConfigError(
                f"Product needs at least two sets to combine (got {len(sets)}); for one set use it directly"
            )
        children = tuple(_as_set(value, position=index) for index, value in enumerate(sets))
        names = [name for child in children for name in child.names if name]
        duplicated = sorted({name for name in names if names.count(name) > 1})
        if duplicated:
            raise GuardConfigError(
                f"Product dimensions share the name(s) {duplicated}; give every dimension its own name so "
                "the path template placeholders are unambiguous"
            )
        if not any(child.is_templated for child in children):
            total = 1
            for child in children:
                total *= len(child)
            _check_size(total, f"Product of {len(children)} sets")
        object.__setattr__(self, "sets", children)

    @property
    def names(self) -> tuple[str | None, ...]:
        return tuple(name for child in self.sets for name in child.names)

    @property
    def is_templated(self) -> bool:
        return any(child.is_templated for child in self.sets)

    def _compute_keys(self) -> tuple[str, ...]:
        return tuple(
            format_key(*combo) for combo in itertools.product(*(child.keys() for child in self.sets))
        )

    def closes_at(self) -> dt.datetime | None:
        ends = [end for child in self.sets if (end := child.closes_at()) is not None]
        return max(ends) if ends else None

    def render(self, renderer: Renderer) -> Product:
        if not self.is_templated:
            return self
        return Product(*(child.render(renderer) for child in self.sets))

    def example(self) -> Product | None:
        examples = [child.example() for child in self.sets]
        if any(example is None for example in examples):
            return None
        return Product(*examples)  # type: ignore[arg-type]

    def serialize(self) -> dict[str, Any]:
        return {"kind": self.kind, "sets": [child.serialize() for child in self.sets]}

    @classmethod
    def _from_dict(cls, data: dict[str, Any]) -> Product:
        return cls(*(ExpectedPartitions.deserialize(child) for child in data["sets"]))

    def describe(self) -> str:
        inner = " x ".join(child.describe() for child in self.sets)
        return inner if self.is_templated else f"{len(self)} keys: {inner}"

    def __repr__(self) -> str:
        return f"Product({', '.join(repr(child) for child in self.sets)})"


def as_expected(value: object) -> ExpectedPartitions:
    """Accept an expected set, or a plain list of keys (made an :class:`ExplicitKeys`)."""
    if isinstance(value, ExpectedPartitions):
        return value
    if isinstance(value, Sequence) and not isinstance(value, str):
        return ExplicitKeys(value)
    raise GuardConfigError(
        f"expected {value!r} is not an expected set; use HoursOfDay(...), HoursOfRange(...), "
        "DaysOfRange(...), Product(...), ExplicitKeys([...]) or a list of keys"
    )
