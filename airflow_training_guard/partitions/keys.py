"""Partition keys: one canonical, validated text form, shared by every guard of the package.

A partition key names one unit of data or work: ``"2026-11-01"``, ``"2026-11-01T09:00:00"``,
``"berlin|2026-11-01"``. Composite keys join their parts with :data:`DELIMITER` (``"|"``), the
delimiter of Airflow's ``ProductMapper``, so a key written here is the ``DagRun.partition_key``
Airflow produces and the other way round.

:class:`PartitionKey` is that text, parsed once: a ``str`` (so everything that stores, compares,
logs or sends keys as strings keeps working) that also knows its :attr:`~PartitionKey.parts` and,
when given, the names of its :attr:`~PartitionKey.dimensions` (``("city", "date")``), like
Dagster's ``MultiPartitionKey``. Code that needs the parts of a key asks the key instead of
splitting the text again.

Keys end up in object-storage paths, file names, SQL parameters, log lines and shell commands, so
every part must pass a conservative allow-list: ASCII letters, digits and ``- _ . : +``, starting
with a letter or a digit, never ``..``. That is enough for the forms Airflow's mappers write
(``2026-11-01``, ``2026-11-01T09``, ``2026-11-01T09:00:00``, ``2026-11-01T09:00:00+01:00``,
``2026-Q1``, ``us``) and rejects what could escape a path or a command (``/``, ``\\``, ``..``,
whitespace, control characters, ``;&$`<>*?'"(){}[]!~#%=,@^``). Every rejection is a
:class:`~airflow_training_guard.exceptions.GuardConfigError` naming the value and the rule.

:func:`key_fields` derives the placeholders a path template may use from a key: its parts by
position (``{0}``), by dimension name (``{city}``), and calendar fields of its one date or
date-time part (``{date}``, ``{hour}``, ``{utc_hour}`` ...).

Standard library only: no Airflow import.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, NoReturn

from airflow_training_guard.exceptions import GuardConfigError

#: Joins the parts of a composite key; the default delimiter of Airflow's ``ProductMapper``.
DELIMITER = "|"

#: Longest key accepted: ``DagRun.partition_key`` is a 250-character column in Airflow 3.3.
MAX_KEY_LENGTH = 250

#: Characters a key part may contain besides ASCII letters and digits.
ALLOWED_PUNCTUATION = "-_.:+"

#: Characters with a meaning to a shell, a glob or a template; named in error messages.
SHELL_METACHARACTERS = frozenset(";&$`<>*?'\"(){}[]!~#%=,@^")

_ALLOWED = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+-]*")
_ALLOWED_HINT = (
    "a part may hold ASCII letters, digits and - _ . : + only, and must start with a letter or a "
    "digit (e.g. 'berlin', '2026-11-01', '2026-11-01T09:00:00+01:00')"
)

#: Placeholder names :func:`key_fields` derives itself; dimension names must not reuse them.
RESERVED_FIELD_NAMES = frozenset(
    {
        "partition_key",
        "date",
        "year",
        "month",
        "day",
        "hour",
        "minute",
        "second",
        "offset",
        "utc_date",
        "utc_hour",
    }
)

_TEMPORAL = re.compile(
    r"(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2})(?::(?P<minute>\d{2})(?::(?P<second>\d{2}))?)?"
    r"(?P<offset>Z|[+-]\d{2}:\d{2})?)?"
)


def _reject(part: str, key: str | None, rule: str) -> GuardConfigError:
    where = f"partition key part {part!r}" + (f" of {key!r}" if key is not None and key != part else "")
    return GuardConfigError(f"{where} {rule}; {_ALLOWED_HINT}")


def validate_part(part: object, *, key: str | None = None) -> str:
    """Return ``part`` if it is a valid key part, else raise naming the rule it breaks.

    :param part: one part of a key (``"berlin"``, ``"2026-11-01"``).
    :param key: the whole key the part belongs to, for the error message.
    :raises GuardConfigError: for anything but a non-empty string of allowed characters.
    """
    if (
        isinstance(part, str)
        and len(part) <= MAX_KEY_LENGTH
        and _ALLOWED.fullmatch(part)
        and ".." not in part
    ):
        return part  # the common case; the checks below only explain a rejection
    if not isinstance(part, str):
        hint = " (use .isoformat() for dates)" if isinstance(part, date) else ""
        raise GuardConfigError(
            f"partition key part {part!r} is a {type(part).__name__}, not a string{hint}; {_ALLOWED_HINT}"
        )
    if not part:
        raise _reject(part, key, "is empty (two delimiters in a row, or one at an end?)")
    if part != part.strip():
        raise _reject(part, key, "has whitespace at the start or the end")
    if DELIMITER in part:
        raise _reject(part, key, f"contains the delimiter {DELIMITER!r}; pass the parts separately")
    for separator in ("/", "\\"):
        if separator in part:
            raise _reject(part, key, f"contains {separator!r}, a path separator")
    for char in part:
        if ord(char) < 32 or 127 <= ord(char) < 160:
            raise _reject(part, key, f"contains the control character {char!r}")
    if ".." in part:
        raise _reject(part, key, "contains '..', which climbs out of a directory")
    for char in part:
        if char in SHELL_METACHARACTERS:
            raise _reject(part, key, f"contains {char!r}, a shell or glob metacharacter")
    for char in part:
        if char.isspace():
            raise _reject(part, key, f"contains whitespace {char!r}")
    for char in part:
        if not char.isascii():
            raise _reject(part, key, f"contains the non-ASCII character {char!r}")
    if not part[0].isalnum():
        raise _reject(part, key, f"starts with {part[0]!r}")
    if not _ALLOWED.fullmatch(part):
        bad = next(char for char in part if not (char.isalnum() or char in ALLOWED_PUNCTUATION))
        raise _reject(part, key, f"contains {bad!r}, which is not allowed")
    if len(part) > MAX_KEY_LENGTH:
        raise _reject(part[:40] + "...", key, f"is longer than {MAX_KEY_LENGTH} characters")
    return part


class PartitionKey(str):
    """A validated partition key that knows its parts: ``PartitionKey("berlin|2026-11-01")``.

    The text is parsed and checked once, when the key is made; afterwards :attr:`parts` and
    :attr:`dimensions` are read, never re-split. Making a key from a key is free (the same object
    comes back), so functions can accept ``str | PartitionKey`` and call ``PartitionKey(value)``.

    It *is* the string (``PartitionKey("a|b") == "a|b"``, same hash, same ``repr``), so ledger
    rows, XCom values, dict keys, log lines and SQL parameters see exactly the text they saw before.
    Dimension names are metadata for the reader: they take no part in equality.

    Immutable: assigning an attribute raises ``AttributeError``.

    :param text: the key, ``|``-delimited (:data:`DELIMITER`).
    :param dimensions: optional names of the parts in order, e.g. ``("city", "date")``; when given,
        the key must have exactly that many parts. ``None`` keeps the names ``text`` already has
        (when it is a :class:`PartitionKey`), else the key is unnamed.
    :raises GuardConfigError: the key is not valid (the message names the value and the rule), or
        has a different number of parts than ``dimensions`` names.
    """

    parts: tuple[str, ...]
    dimensions: tuple[str, ...]

    def __new__(cls, text: object, *, dimensions: Sequence[str] | None = None) -> PartitionKey:
        if isinstance(text, PartitionKey):
            if dimensions is None or tuple(dimensions) == text.dimensions:
                return text  # already parsed and checked
            parts = text.parts
        else:
            parts = _split(text)
        names = _check_dimensions(str(text), parts, dimensions)
        key = super().__new__(cls, DELIMITER.join(parts))
        object.__setattr__(key, "parts", parts)
        object.__setattr__(key, "dimensions", names)
        return key

    @classmethod
    def from_parts(cls, *parts: str, dimensions: Sequence[str] | None = None) -> PartitionKey:
        """Join ``parts`` into a key: ``PartitionKey.from_parts("berlin", "2026-11-01")``.

        :raises GuardConfigError: when there are no parts, a part is invalid (see
            :func:`validate_part`) or the key is longer than :data:`MAX_KEY_LENGTH`.
        """
        if not parts:
            raise GuardConfigError(
                "a partition key needs at least one part, e.g. "
                "PartitionKey.from_parts('berlin', '2026-11-01')"
            )
        for part in parts:
            validate_part(part)
        text = DELIMITER.join(parts)
        _check_length(text)
        names = _check_dimensions(text, parts, dimensions)
        key = str.__new__(cls, text)
        object.__setattr__(key, "parts", tuple(parts))
        object.__setattr__(key, "dimensions", names)
        return key

    @property
    def parts_by_dimension(self) -> dict[str, str]:
        """The parts by dimension name: ``{"city": "berlin", "date": "2026-11-01"}``.

        :raises GuardConfigError: when the key was made without dimension names.
        """
        if not self.dimensions:
            raise GuardConfigError(
                f"partition key {str(self)!r} has no dimension names; make it with "
                f"PartitionKey({str(self)!r}, dimensions=(...)) naming its {len(self.parts)} part(s), "
                "e.g. ('city', 'date')"
            )
        return dict(zip(self.dimensions, self.parts, strict=True))

    def part(self, dimension: str) -> str:
        """The part of one named dimension: ``key.part("date") == "2026-11-01"``.

        :raises GuardConfigError: for a name the key does not have, listing the names it has.
        """
        by_dimension = self.parts_by_dimension
        if dimension not in by_dimension:
            raise GuardConfigError(
                f"partition key {str(self)!r} has no dimension {dimension!r}; its dimensions are "
                f"{list(self.dimensions)}"
            )
        return by_dimension[dimension]

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"PartitionKey is immutable; cannot set {name!r}")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"PartitionKey is immutable; cannot delete {name!r}")

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled (multiprocessing, deepcopy) as text and names; unpickling re-validates.
        return (_rebuild, (str(self), self.dimensions or None))


def _rebuild(text: str, dimensions: Sequence[str] | None) -> PartitionKey:
    return PartitionKey(text, dimensions=dimensions)


def _split(text: object) -> tuple[str, ...]:
    """The validated parts of ``text``; the one place a key's text is split."""
    if not isinstance(text, str):
        hint = "; use .isoformat() for dates" if isinstance(text, date) else ""
        raise GuardConfigError(f"partition key {text!r} is a {type(text).__name__}, not a string{hint}")
    if not text:
        raise GuardConfigError(f"partition key {text!r} is empty; {_ALLOWED_HINT}")
    _check_length(text)
    parts = tuple(text.split(DELIMITER))
    for part in parts:
        validate_part(part, key=text)
    return parts


def _check_dimensions(text: str, parts: Sequence[str], dimensions: Sequence[str] | None) -> tuple[str, ...]:
    if dimensions is None:
        return ()
    if isinstance(dimensions, str):
        raise GuardConfigError(
            f"dimensions {dimensions!r} of partition key {text!r} must be a sequence of names such as "
            "('city', 'date'), not one string"
        )
    names = tuple(dimensions)
    if len(set(names)) != len(names) or not all(isinstance(name, str) and name for name in names):
        raise GuardConfigError(
            f"dimension names {list(names)} of partition key {text!r} must be distinct, non-empty strings"
        )
    if len(parts) != len(names):
        raise GuardConfigError(
            f"partition key {text!r} has {len(parts)} part(s) but {len(names)} are expected "
            f"({DELIMITER.join(names)}); composite keys join their parts with {DELIMITER!r}, e.g. "
            f"'berlin|2026-11-01'"
        )
    return names


def as_partition_keys(keys: Iterable[object]) -> tuple[PartitionKey, ...]:
    """Every key of ``keys`` as a :class:`PartitionKey` (each parsed once; keys already parsed are kept)."""
    return tuple(PartitionKey(key) for key in keys)


def format_key(*parts: str) -> PartitionKey:
    """Join ``parts`` into one key: ``format_key("berlin", "2026-11-01") == "berlin|2026-11-01"``.

    The same as :meth:`PartitionKey.from_parts` without dimension names.

    :raises GuardConfigError: when there are no parts, a part is invalid (see :func:`validate_part`)
        or the key is longer than :data:`MAX_KEY_LENGTH`.
    """
    if not parts:
        raise GuardConfigError(
            "format_key() needs at least one part, e.g. format_key('berlin', '2026-11-01')"
        )
    return PartitionKey.from_parts(*parts)


def parse_key(text: str, *, dimensions: int | None = None) -> tuple[str, ...]:
    """Split a key into its validated parts: ``parse_key("berlin|2026-11-01") == ("berlin", "2026-11-01")``.

    ``parse_key(format_key(*parts)) == parts`` for every valid tuple of parts. Prefer
    :class:`PartitionKey`, which keeps the parts with the key.

    :param text: the key (a :class:`PartitionKey` is not parsed again).
    :param dimensions: the number of parts the key must have, if known.
    :raises GuardConfigError: when the text is not a valid key or has the wrong number of parts.
    """
    parts = text.parts if isinstance(text, PartitionKey) else _split(text)
    if dimensions is not None and len(parts) != dimensions:
        raise GuardConfigError(
            f"partition key {text!r} has {len(parts)} part(s) but {dimensions} are expected; composite "
            f"keys join their parts with {DELIMITER!r}, e.g. 'berlin|2026-11-01'"
        )
    return parts


def require_key(text: object, *, name: str = "partition_key") -> PartitionKey:
    """Return ``text`` as a :class:`PartitionKey` if it is a valid key, else raise naming the parameter.

    What operators call on their ``partition_key`` argument (when the DAG is parsed, or after
    rendering when it is templated) and on the run's ``partition_key``: the key reaches the
    training program's environment, paths and logs, so an unsafe one is refused, never escaped.

    :param text: the key as given.
    :param name: the parameter's name for the message.
    :raises GuardConfigError: ``partition_key '<value>' is refused: <the rule it breaks>``.
    """
    try:
        return PartitionKey(text)
    except GuardConfigError as err:
        raise GuardConfigError(f"{name} {text!r} is refused: {err}") from None


def is_valid_key(text: object) -> bool:
    """Whether ``text`` is a valid key (see :class:`PartitionKey`); never raises."""
    try:
        PartitionKey(text)
    except GuardConfigError:
        return False
    return True


def _check_length(key: str) -> None:
    if len(key) > MAX_KEY_LENGTH:
        raise GuardConfigError(
            f"partition key {key[:60] + '...'!r} is {len(key)} characters long; Airflow stores at most "
            f"{MAX_KEY_LENGTH} (DagRun.partition_key): use shorter parts"
        )


@dataclass(frozen=True)
class TemporalPart:
    """A key part that is a calendar date or a date-time, in one of the canonical forms.

    Forms: ``YYYY-MM-DD``; ``YYYY-MM-DDTHH``; ``YYYY-MM-DDTHH:MM``; ``YYYY-MM-DDTHH:MM:SS``; each
    date-time optionally followed by a UTC offset ``+HH:MM``/``-HH:MM`` or ``Z``. A date-time
    without an offset is taken as UTC, which is what
    :class:`~airflow_training_guard.partitions.expected.HoursOfDay` writes for ``timezone="UTC"``.

    :param start: the instant the period starts (aware, in the key's own offset); for a date,
        midnight UTC.
    :param has_time: False for a plain date.
    :param offset: the UTC offset written in the key, or None when it has none.
    """

    start: datetime
    has_time: bool
    offset: timedelta | None

    @property
    def end(self) -> datetime:
        """The instant the period ends: the next midnight for a date, one hour later for a time."""
        return self.start + (timedelta(hours=1) if self.has_time else timedelta(days=1))


def parse_temporal(part: str) -> TemporalPart | None:
    """Read a date or date-time key part, or return None when the part is not one."""
    match = _TEMPORAL.fullmatch(part)
    if match is None:
        return None
    groups = match.groupdict()
    offset_text = groups["offset"]
    offset: timedelta | None = None
    if offset_text == "Z":
        offset = timedelta(0)
    elif offset_text:
        sign = -1 if offset_text[0] == "-" else 1
        offset = sign * timedelta(hours=int(offset_text[1:3]), minutes=int(offset_text[4:6]))
    try:
        start = datetime(
            int(groups["year"]),
            int(groups["month"]),
            int(groups["day"]),
            int(groups["hour"] or 0),
            int(groups["minute"] or 0),
            int(groups["second"] or 0),
            tzinfo=timezone(offset) if offset is not None else UTC,
        )
    except ValueError:
        return None
    return TemporalPart(start=start, has_time=groups["hour"] is not None, offset=offset)


def key_fields(key: str, names: Sequence[str | None] | None = None) -> dict[str, str]:
    """The placeholders a path template may use for ``key``, with their values.

    - ``{partition_key}``: the whole key; ``{0}``, ``{1}`` ...: its parts by position;
    - ``{<name>}`` for every named dimension (``names=("city", None)`` gives ``{city}``);
    - when exactly one part is a date or date-time: ``{date}`` (``2026-11-01``), ``{year}``,
      ``{month}``, ``{day}``; for date-times also ``{hour}`` (``09``), ``{minute}``, ``{second}``,
      ``{offset}`` (``+0100``, empty when the key has none) and the UTC ``{utc_date}`` /
      ``{utc_hour}`` (a key without an offset is UTC).

    :param key: a valid key.
    :param names: optional dimension names, one per part.
    """
    partition_key = PartitionKey(key)
    parts = partition_key.parts
    fields: dict[str, str] = {"partition_key": str(partition_key)}
    for index, part in enumerate(parts):
        fields[str(index)] = part
    for name, part in zip(names or (), parts, strict=False):
        if name:
            fields[name] = part
    temporal = [found for part in parts if (found := parse_temporal(part)) is not None]
    if len(temporal) == 1:
        found = temporal[0]
        local = found.start
        fields.update(date=f"{local:%Y-%m-%d}", year=f"{local:%Y}", month=f"{local:%m}", day=f"{local:%d}")
        if found.has_time:
            utc = local.astimezone(UTC)
            fields.update(
                hour=f"{local:%H}",
                minute=f"{local:%M}",
                second=f"{local:%S}",
                offset=f"{local:%z}" if found.offset is not None else "",
                utc_date=f"{utc:%Y-%m-%d}",
                utc_hour=f"{utc:%H}",
            )
    return fields
